"""The platform as a whole: every upstream chart at its pinned version with our values, plus
our own chart and manifests, checked together (scripts/validate-platform is the entry point).

Layout:
- sources: where upstream charts come from - `helm pull` (`--pull`), a directory of
  checkouts at the pinned tags (`--charts-dir`), or nowhere (`--offline`: the recorded facts);
- rendering: `helm template` as ArgoCD runs it (release name, namespace, value files,
  --include-crds, the cluster's API versions), with dependencies resolved from the sources;
- summaries: what the checks need of a rendering (CRDs, custom resources, Services,
  workloads' pod labels and ports, NetworkPolicies, whether each value key we set exists);
  recorded in upstream-facts.json for the offline mode, re-derived and compared with sources;
- checks: CRD before use (sync waves), kind's port mappings on NodePort Services, the
  ArgoCD Application health check, selectors of our objects, value keys, NetworkPolicy flows
  (platform-flows.yaml, evaluated by netpol.py), schemas (with sources only).
"""

import argparse
import copy
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from netpol import Cluster, External, Pod, selector_matches  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LIB = os.path.join(ROOT, "scripts", "lib")
FACTS = os.path.join(LIB, "upstream-facts.json")
FLOWS = os.path.join(LIB, "platform-flows.yaml")
HELM = os.path.join(ROOT, ".tools", "bin", "helm")
KUBE_VERSION = "1.33.1"
# appctl applies ArgoCD's install manifest and deploy/bootstrap before the root Application.
BOOTSTRAP_WAVE = -100
APPCTL_UP_RS = os.path.join(ROOT, "crates", "appctl", "src", "platform", "up.rs")

BUILTIN_GROUPS = {"", "apps", "batch", "autoscaling", "policy", "networking.k8s.io", "rbac.authorization.k8s.io",
                  "storage.k8s.io", "admissionregistration.k8s.io", "apiextensions.k8s.io", "apiregistration.k8s.io",
                  "scheduling.k8s.io", "coordination.k8s.io", "discovery.k8s.io", "node.k8s.io",
                  "certificates.k8s.io", "flowcontrol.apiserver.k8s.io"}
CLUSTER_SCOPED_BUILTIN = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "StorageClass",
                          "PriorityClass", "ValidatingWebhookConfiguration", "MutatingWebhookConfiguration",
                          "APIService", "PersistentVolume", "ValidatingAdmissionPolicy",
                          "ValidatingAdmissionPolicyBinding", "IngressClass", "RuntimeClass", "CSIDriver",
                          "FlowSchema", "PriorityLevelConfiguration"}
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}


class SetupError(Exception):
    """Bad flags or missing sources/tools: exit 2 with what to do."""


# --- small helpers -------------------------------------------------------------------------

def run(cmd, cwd=None):
    """Runs a command; on failure raises SetupError with its stderr between dividers."""
    p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if p.returncode != 0:
        raise SetupError(f"command failed: {' '.join(cmd)}\n--- stderr ---\n{p.stderr.strip()}\n--- end ---")
    return p.stdout


class Loader(yaml.SafeLoader):
    """SafeLoader without PyYAML's YAML 1.1 `=` (value) tag, which Kubernetes' YAML 1.2 parser
    reads as the string "=" (CRD enums contain it)."""


Loader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:value"]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def load_docs(text):
    out = []
    for doc in yaml.load_all(text, Loader=Loader):
        if not doc:
            continue
        if doc.get("kind", "").endswith("List") and "items" in doc:
            out.extend(d for d in doc["items"] if d)
        else:
            out.append(doc)
    return out


def load_file_docs(path):
    with open(path) as fh:
        return load_docs(fh.read())


def read_yaml(path):
    with open(path) as fh:
        return yaml.safe_load(fh)


def read_json(path):
    with open(path) as fh:
        return json.load(fh)


def read_text(path):
    with open(path, errors="replace") as fh:
        return fh.read()


def group_of(api_version):
    return api_version.rsplit("/", 1)[0] if "/" in api_version else ""


def sha256_file(path):
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def deep_merge(base, over):
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for k, v in over.items():
            out[k] = deep_merge(base.get(k), v) if k in base else v
        return out
    return over


def get_path(values, dotted):
    cur = values
    for part in dotted.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None, False
        cur = cur[part]
    return cur, True


def leaf_paths(values, prefix=""):
    """Dotted paths of every leaf of a values tree (lists and scalars are leaves)."""
    out = []
    for k, v in values.items():
        p = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.extend(leaf_paths(v, p + "."))
        else:
            out.append(p)
    return out


# --- our own objects and the Applications -----------------------------------------------------

class App:
    """One ArgoCD Application of the root chart (or the bootstrap that appctl applies)."""

    def __init__(self, name, wave, namespace, kind, **info):
        self.name, self.wave, self.namespace, self.kind = name, wave, namespace, kind
        self.info = info

    def __repr__(self):
        return f"App({self.name}, wave {self.wave}, {self.kind})"


def render_root():
    """The root chart (deploy/argocd) with its defaults: the Applications and the AppProject."""
    return load_docs(run([HELM, "template", "root", os.path.join(ROOT, "deploy/argocd"), "--namespace", "argocd"]))


def applications(root_objects):
    """Parses the rendered Applications into App records."""
    root_values = read_yaml(os.path.join(ROOT, "deploy/argocd/values.yaml"))
    own_repo = root_values["repoURL"]
    apps = []
    for o in root_objects:
        if o.get("kind") != "Application":
            continue
        meta, spec = o["metadata"], o["spec"]
        wave = int((meta.get("annotations") or {}).get("argocd.argoproj.io/sync-wave", "0"))
        ns = spec["destination"]["namespace"]
        if "sources" in spec:
            chart = next(s for s in spec["sources"] if "chart" in s)
            value_files = [vf.replace("$values/", "") for vf in chart.get("helm", {}).get("valueFiles", [])]
            apps.append(App(meta["name"], wave, ns, "chart", repoURL=chart["repoURL"], chart=chart["chart"],
                            version=str(chart["targetRevision"]), release=chart["helm"].get("releaseName", meta["name"]),
                            value_files=value_files))
        else:
            src = spec["source"]
            if src["repoURL"] == own_repo:
                path = src["path"]
                if os.path.isfile(os.path.join(ROOT, path, "Chart.yaml")):
                    helm = src.get("helm", {})
                    apps.append(App(meta["name"], wave, ns, "own-chart", path=path,
                                    release=helm.get("releaseName", meta["name"]),
                                    value_files=[os.path.join(path, f) for f in helm.get("valueFiles", [])],
                                    parameters={p["name"]: p["value"] for p in helm.get("parameters", [])},
                                    environment=(meta.get("labels") or {}).get("metrics-app/environment")))
                else:
                    apps.append(App(meta["name"], wave, ns, "own-path", path=path))
            else:
                apps.append(App(meta["name"], wave, ns, "git", repoURL=src["repoURL"],
                                version=str(src["targetRevision"]), path=src["path"]))
    return apps


def render_own_app(app):
    if app.kind == "own-chart":
        cmd = [HELM, "template", app.info["release"], os.path.join(ROOT, app.info["path"]), "--namespace", app.namespace,
               "--kube-version", KUBE_VERSION]
        for vf in app.info["value_files"]:
            cmd += ["-f", os.path.join(ROOT, vf)]
        for k, v in app.info["parameters"].items():
            cmd += ["--set-string", f"{k}={v}"]
        return load_docs(run(cmd))
    docs = []
    d = os.path.join(ROOT, app.info["path"])
    for f in sorted(os.listdir(d)):
        if f.endswith((".yaml", ".yml")):
            docs.extend(load_file_docs(os.path.join(d, f)))
    return docs


def bootstrap_objects():
    d = os.path.join(ROOT, "deploy/bootstrap")
    docs = []
    for f in sorted(os.listdir(d)):
        if f.endswith(".yaml"):
            docs.extend(load_file_docs(os.path.join(d, f)))
    return docs


def argocd_pin():
    """(version, sha256) of the ArgoCD install manifest, as appctl pins them."""
    try:
        text = read_text(APPCTL_UP_RS)
    except OSError as e:
        raise SetupError(f"cannot read the ArgoCD pin from {APPCTL_UP_RS}: {e}")
    v = re.search(r'ARGOCD_VERSION: &str = "([^"]+)"', text)
    s = re.search(r'ARGOCD_MANIFEST_SHA256: &str =\s*"([0-9a-f]{64})"', text)
    if not v or not s:
        raise SetupError(f"{APPCTL_UP_RS}: ARGOCD_VERSION / ARGOCD_MANIFEST_SHA256 constants not found")
    return v.group(1), s.group(1)


# --- summaries -------------------------------------------------------------------------------

def with_namespace(objects, namespace, cluster_kinds):
    for o in objects:
        meta = o.setdefault("metadata", {})
        if o["kind"] not in CLUSTER_SCOPED_BUILTIN and o["kind"] not in cluster_kinds and not meta.get("namespace"):
            meta["namespace"] = namespace
    return objects


def pod_template(o):
    if o["kind"] in WORKLOAD_KINDS:
        return (o.get("spec") or {}).get("template") or {}
    if o["kind"] == "Pod":
        return o
    if o["kind"] == "CronJob":
        return o["spec"]["jobTemplate"]["spec"]["template"]
    return None


def summarize(objects):
    """What the checks need of a rendering; JSON-serialisable and sorted (stable to record)."""
    crds, crs, services, workloads, policies = [], [], [], [], []
    for o in objects:
        kind, api = o.get("kind"), o.get("apiVersion", "")
        meta = o.get("metadata") or {}
        ref = f"{meta.get('namespace', '')}/{meta.get('name')}".lstrip("/")
        if kind == "CustomResourceDefinition":
            spec = o["spec"]
            crds.append({"kind": f"{spec['group']}/{spec['names']['kind']}", "scope": spec["scope"],
                         "versions": sorted(v["name"] for v in spec["versions"] if v.get("served", True))})
        elif group_of(api) not in BUILTIN_GROUPS:
            skip = "SkipDryRunOnMissingResource=true" in (meta.get("annotations") or {}).get("argocd.argoproj.io/sync-options", "")
            crs.append({"kind": f"{group_of(api)}/{kind}", "apiVersion": api, "name": ref, "skip_dry_run": skip})
        elif kind == "Service":
            spec = o.get("spec") or {}
            services.append({"name": ref, "type": spec.get("type", "ClusterIP"), "selector": spec.get("selector") or {},
                             "labels": meta.get("labels") or {},
                             "ports": [{k: p[k] for k in ("name", "port", "targetPort", "nodePort", "protocol") if k in p}
                                       for p in spec.get("ports") or []]})
        elif kind == "NetworkPolicy":
            policies.append({"metadata": {"namespace": meta.get("namespace"), "name": meta.get("name")}, "spec": o.get("spec") or {}})
        tpl = pod_template(o)
        if tpl is not None:
            ports = []
            for c in (tpl.get("spec") or {}).get("containers") or []:
                for p in c.get("ports") or []:
                    ports.append([p.get("name"), p["containerPort"], p.get("protocol", "TCP")])
            entry = {"name": ref, "kind": kind, "labels": (tpl.get("metadata") or {}).get("labels") or {}, "ports": ports}
            if kind != "Pod":
                entry["selector"] = (o.get("spec") or {}).get("selector") or {}
            if kind == "Pod":
                entry["hook"] = "helm.sh/hook" in (meta.get("annotations") or {})
            workloads.append(entry)
    key = lambda d: (d.get("kind", ""), d.get("name", ""))  # noqa: E731
    return {"crds": sorted(crds, key=key), "custom_resources": sorted(crs, key=key),
            "services": sorted(services, key=key), "workloads": sorted(workloads, key=key),
            "network_policies": sorted(policies, key=lambda p: (p["metadata"]["namespace"] or "", p["metadata"]["name"]))}


# --- upstream sources ------------------------------------------------------------------------

class Sources:
    """Upstream chart and manifest sources: `helm pull` or a directory of checkouts."""

    def __init__(self, charts_dir=None, pull=False, workdir=None):
        self.charts_dir, self.pull, self.workdir = charts_dir, pull, workdir
        self._index = None

    def describe(self):
        return f"--charts-dir {self.charts_dir}" if self.charts_dir else "helm pull"

    def index(self):
        """(name, version) -> chart directory, for every Chart.yaml under --charts-dir."""
        if self._index is None:
            self._index = {}
            for dirpath, dirnames, filenames in os.walk(self.charts_dir):
                dirnames[:] = [d for d in dirnames if d not in (".git", "node_modules", "tests", "ci")]
                if dirpath[len(self.charts_dir):].count(os.sep) > 7:
                    dirnames[:] = []
                if "Chart.yaml" in filenames:
                    meta = read_yaml(os.path.join(dirpath, "Chart.yaml"))
                    self._index.setdefault((meta["name"], str(meta["version"])), dirpath)
        return self._index

    def find_chart(self, name, version, hint):
        if self.charts_dir:
            idx = self.index()
            if (name, version) in idx:
                return idx[(name, version)]
            if version.endswith(".*") or any(c in version for c in "^~><x"):
                # A range (e.g. "0.12.*"): the highest checked-out version that matches.
                prefix = version.rstrip("*").rstrip("x").rstrip(".")
                cands = sorted((v for (n, v) in idx if n == name and v.startswith(prefix)),
                               key=lambda v: [int(x) if x.isdigit() else 0 for x in re.split(r"[.-]", v)])
                if cands:
                    return idx[(name, cands[-1])]
            raise SetupError(f"chart {name} {version} not found under {self.charts_dir}: check out {hint} at the tag "
                             f"of that release (e.g. `git worktree add DIR/{name}-{version} <tag>`)")
        dest = tempfile.mkdtemp(dir=self.workdir)
        run([HELM, "pull", name, "--repo", hint, "--version", version, "--untar", "--untardir", dest])
        return os.path.join(dest, name)

    def git_path(self, repo_url, version, path):
        """A directory of plain manifests from a git repository at a tag. Under --charts-dir:
        a folder <anything>/<path> whose files say they are that release (the Gateway API's
        bundle-version annotation) or, lacking such a marker, whose location names the tag."""
        if self.charts_dir:
            base_depth = self.charts_dir.rstrip(os.sep).count(os.sep)
            for dirpath, dirnames, _ in os.walk(self.charts_dir):
                dirnames[:] = [d for d in dirnames if d != ".git"]
                if dirpath.count(os.sep) - base_depth >= 3:
                    dirnames[:] = []
                cand = os.path.join(dirpath, path)
                if not os.path.isdir(cand):
                    continue
                marker = self._bundle_version(cand)
                if marker == version or (marker is None and version in dirpath):
                    return cand
            raise SetupError(f"{repo_url} {path} at {version} not found under {self.charts_dir}: "
                             f"`git --git-dir=<clone> archive {version} {path} | tar -x -C DIR/<name>@{version}`")
        dest = tempfile.mkdtemp(dir=self.workdir)
        run(["git", "clone", "--quiet", "--depth", "1", "--branch", version, repo_url, dest])
        return os.path.join(dest, path)

    @staticmethod
    def _bundle_version(d):
        for f in sorted(os.listdir(d)):
            if f.endswith(".yaml"):
                with open(os.path.join(d, f)) as fh:
                    m = re.search(r"gateway.networking.k8s.io/bundle-version: (\S+)", fh.read(4000))
                if m:
                    return m.group(1)
        return None

    def argocd_manifest(self, version, sha):
        if self.charts_dir:
            for dirpath, dirnames, filenames in os.walk(self.charts_dir):
                dirnames[:] = [d for d in dirnames if d != ".git"]
                if dirpath.endswith(os.sep + "manifests") and "install.yaml" in filenames:
                    p = os.path.join(dirpath, "install.yaml")
                    if sha256_file(p) == sha:
                        return p
            raise SetupError(f"no manifests/install.yaml with SHA-256 {sha} (ArgoCD {version}) under {self.charts_dir}: "
                             f"`git --git-dir=<argo-cd clone> show {version}:manifests/install.yaml`")
        url = f"https://raw.githubusercontent.com/argoproj/argo-cd/{version}/manifests/install.yaml"
        p = os.path.join(self.workdir, f"argocd-{version}.yaml")
        with urllib.request.urlopen(url, timeout=60) as r, open(p, "wb") as fh:
            fh.write(r.read())
        if sha256_file(p) != sha:
            raise SetupError(f"{url}: SHA-256 {sha256_file(p)} differs from the pin {sha} in {APPCTL_UP_RS}")
        return p


def eso_generate_crds(src_dir, dest):
    """external-secrets keeps its CRDs out of git under templates/crds; its release packaging
    (hack/helm.generate.sh) generates them from deploy/crds/bundle.yaml, each wrapped in
    `if .Values.installCRDs` (and crds.create<Kind> for the cluster-wide kinds and
    PushSecret), with the conversion webhook pointed at the release. Reproduced here for
    checkouts; a pulled chart already has them."""
    crd_dir = os.path.join(dest, "templates", "crds")
    if any(f.endswith((".yaml", ".yml")) for f in os.listdir(crd_dir)):
        return
    bundle = os.path.join(src_dir, "..", "..", "crds", "bundle.yaml")
    if not os.path.exists(bundle):
        raise SetupError(f"external-secrets checkout without deploy/crds/bundle.yaml next to {src_dir}: check out the "
                         "whole deploy/ folder at the tag")
    for doc in read_text(bundle).split("\n---"):
        if "kind: CustomResourceDefinition" not in doc:
            continue
        crd = yaml.safe_load(doc)
        kind, singular = crd["spec"]["names"]["kind"], crd["spec"]["names"]["singular"]
        flag = f"create{kind}"
        cond = (f"and (.Values.installCRDs) (.Values.crds.{flag})" if "Cluster" in flag or "PushSecret" in flag
                else ".Values.installCRDs")
        body = doc.strip().lstrip("-").strip()
        body = body.replace("name: kubernetes", 'name: {{ include "external-secrets.fullname" . }}-webhook')
        body = body.replace("namespace: default", "namespace: {{ .Release.Namespace | quote }}")
        with open(os.path.join(crd_dir, f"{singular}.yaml"), "w") as fh:
            fh.write(f"{{{{- if {cond} }}}}\n{body}\n{{{{- end }}}}\n")


# Charts whose git sources lack files their release packaging generates.
PACKAGING_STEPS = {"external-secrets": eso_generate_crds}


def prepare_chart(sources, chart_dir, values, workdir):
    """A copy of chart_dir whose dependencies are present (from the sources) or dropped when
    their condition is false with our values (they render nothing then)."""
    dest = tempfile.mkdtemp(dir=workdir)
    dest = os.path.join(dest, os.path.basename(chart_dir))
    shutil.copytree(chart_dir, dest)
    meta = read_yaml(os.path.join(dest, "Chart.yaml"))
    if meta["name"] in PACKAGING_STEPS:
        PACKAGING_STEPS[meta["name"]](chart_dir, dest)
    deps = meta.get("dependencies") or []
    if not deps:
        return dest
    vf = os.path.join(dest, "values.yaml")
    defaults = (read_yaml(vf) or {}) if os.path.exists(vf) else {}
    merged = deep_merge(defaults, values)
    kept = []
    charts = os.path.join(dest, "charts")
    os.makedirs(charts, exist_ok=True)
    # A pulled chart carries its dependencies as archives: unpack them, so that their values
    # and templates are read like those of a checkout (helm renders either).
    for f in os.listdir(charts):
        if f.endswith(".tgz"):
            with tarfile.open(os.path.join(charts, f)) as tar:
                # The "data" filter (no links out, no special files) where Python has it (3.11.4+).
                tar.extractall(charts, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
            os.remove(os.path.join(charts, f))
    present = set(os.listdir(charts))
    for dep in deps:
        cond = dep.get("condition")
        enabled = True
        if cond:
            for c in cond.split(","):
                v, found = get_path(merged, c.strip())
                if found:
                    enabled = bool(v)
                    break
        if not enabled:
            continue
        kept.append(dep)
        if dep["name"] in present or any(p.startswith(dep["name"] + "-") and p.endswith(".tgz") for p in present):
            continue
        src = sources.find_chart(dep["name"], str(dep["version"]), dep.get("repository", "?"))
        shutil.copytree(prepare_chart(sources, src, {}, workdir), os.path.join(dest, "charts", dep["name"]))
    meta["dependencies"] = kept
    with open(os.path.join(dest, "Chart.yaml"), "w") as fh:
        yaml.safe_dump(meta, fh, sort_keys=False)
    if os.path.exists(os.path.join(dest, "Chart.lock")):
        os.remove(os.path.join(dest, "Chart.lock"))
    return dest


def value_key_facts(chart_dir, values):
    """For each leaf path of our values: does the upstream chart know it? Known = present in
    its values.yaml (or a subchart's, under the subchart's name), below a free-form default
    map ({}), or read by a template as .Values.<path>."""
    def chart_tree(d):
        vf = os.path.join(d, "values.yaml")
        defaults = (read_yaml(vf) or {}) if os.path.exists(vf) else {}
        text = ""
        for dirpath, _, files in os.walk(os.path.join(d, "templates")):
            for f in files:
                text += read_text(os.path.join(dirpath, f))
        subs = {}
        cdir = os.path.join(d, "charts")
        if os.path.isdir(cdir):
            for s in os.listdir(cdir):
                if os.path.isfile(os.path.join(cdir, s, "Chart.yaml")):
                    subs[s] = chart_tree(os.path.join(cdir, s))
        return defaults, text, subs

    def known(tree, path):
        defaults, text, subs = tree
        head = path.split(".", 1)
        if head[0] in subs and len(head) == 2 and known(subs[head[0]], head[1]):
            return True
        if f".Values.{path}" in text:
            return True
        cur = defaults
        parts = path.split(".")
        for i, part in enumerate(parts):
            if isinstance(cur, dict) and part in cur:
                cur = cur[part]
                continue
            if isinstance(cur, dict) and i > 0 and ranged(text, ".".join(parts[:i])):
                return True  # a map every entry of which a template renders (e.g. redis.conf lines)
            return isinstance(cur, dict) and cur == {} and i > 0
        return True

    def ranged(text, parent):
        return re.search(r"range\s+\$\w+\s*,\s*\$\w+\s*:=\s*\.Values\." + re.escape(parent) + r"\s*}}", text) is not None

    tree = chart_tree(chart_dir)
    return {p: known(tree, p) for p in leaf_paths(values)}


def api_versions_from(crds):
    out = set()
    for c in crds:
        group, kind = c["kind"].rsplit("/", 1)
        for v in c["versions"]:
            out.add(f"{group}/{v}")
            out.add(f"{group}/{v}/{kind}")
    return sorted(out)


def render_upstream(apps, sources, workdir, extra_api_versions):
    """{app name: (objects, source info, value key facts)} for every upstream component."""
    out = {}
    for app in apps:
        if app.kind == "chart":
            values = {}
            for vf in app.info["value_files"]:
                values = deep_merge(values, read_yaml(os.path.join(ROOT, vf)) or {})
            src = sources.find_chart(app.info["chart"], app.info["version"], app.info["repoURL"])
            chart = prepare_chart(sources, src, values, workdir)
            cmd = [HELM, "template", app.info["release"], chart, "--namespace", app.namespace, "--include-crds",
                   "--kube-version", KUBE_VERSION]
            for a in extra_api_versions:
                cmd += ["--api-versions", a]
            for vf in app.info["value_files"]:
                cmd += ["-f", os.path.join(ROOT, vf)]
            objects = load_docs(run(cmd))
            out[app.name] = (objects, {"chart": app.info["chart"], "version": app.info["version"],
                                       "repoURL": app.info["repoURL"]}, value_key_facts(chart, values))
        elif app.kind == "git":
            d = sources.git_path(app.info["repoURL"], app.info["version"], app.info["path"])
            objects = []
            for f in sorted(os.listdir(d)):
                if f.endswith(".yaml"):
                    objects.extend(load_file_docs(os.path.join(d, f)))
            out[app.name] = (objects, {"repoURL": app.info["repoURL"], "version": app.info["version"],
                                       "path": app.info["path"]}, {})
    return out


# --- the platform model ----------------------------------------------------------------------

class Platform:
    """Every Application's summary (ours rendered now; upstream from sources or the record)."""

    def __init__(self):
        self.apps = []          # App records, including "bootstrap" and "argocd"
        self.summaries = {}     # app name -> summary
        self.own_objects = {}   # app name -> full objects (ours only)
        self.values = {}        # upstream app name -> our merged values for it
        self.value_keys = {}    # upstream app name -> {path: known}
        self.kind_config = {}
        self.upstream = set()   # names whose summary comes from upstream sources/record

    def app(self, name):
        return next(a for a in self.apps if a.name == name)

    def all_workloads(self):
        for a in self.apps:
            for w in self.summaries.get(a.name, {}).get("workloads", []):
                yield a.name, w

    def all_services(self):
        for a in self.apps:
            for s in self.summaries.get(a.name, {}).get("services", []):
                yield a.name, s


def cluster_scoped_kinds(summaries):
    return {c["kind"].rsplit("/", 1)[1] for s in summaries for c in s.get("crds", []) if c["scope"] == "Cluster"}


def build_own(platform):
    """Renders our chart and manifests into the platform; returns the rendered root objects."""
    root = render_root()
    apps = applications(root)
    platform.apps = [App("argocd", BOOTSTRAP_WAVE, "argocd", "argocd"),
                     App("bootstrap", BOOTSTRAP_WAVE, "argocd", "bootstrap"),
                     App("root", BOOTSTRAP_WAVE + 1, "argocd", "root")] + sorted(apps, key=lambda a: (a.wave, a.name))
    platform.own_objects["bootstrap"] = bootstrap_objects()
    platform.own_objects["root"] = root
    for a in apps:
        if a.kind in ("own-chart", "own-path"):
            platform.own_objects[a.name] = render_own_app(a)
        elif a.kind == "chart":
            vals = {}
            for vf in a.info["value_files"]:
                vals = deep_merge(vals, read_yaml(os.path.join(ROOT, vf)) or {})
            platform.values[a.name] = vals
    platform.kind_config = load_file_docs(os.path.join(ROOT, "deploy/kind/cluster.yaml"))[0]
    return root


def finish_own(platform):
    """Summaries of our own objects (namespaces defaulted once cluster-scoped kinds are known)."""
    cluster_kinds = cluster_scoped_kinds(platform.summaries.values())
    for name, objs in platform.own_objects.items():
        ns = platform.app(name).namespace
        platform.summaries[name] = summarize(with_namespace(copy.deepcopy(objs), ns, cluster_kinds))


def values_sha(platform, app):
    h = hashlib.sha256()
    for vf in app.info["value_files"]:
        with open(os.path.join(ROOT, vf), "rb") as fh:
            h.update(fh.read())
    return h.hexdigest()


def load_recorded(platform, facts):
    """Upstream summaries from the record; returns staleness problems (the record no longer
    describes what we pin or the values we pass)."""
    problems = []
    comps = facts.get("components", {})
    version, sha = argocd_pin()
    for a in platform.apps:
        if a.kind not in ("chart", "git", "argocd"):
            continue
        rec = comps.get(a.name)
        if rec is None:
            problems.append(f"{a.name}: no recorded facts; record them: scripts/validate-platform --charts-dir DIR --record")
            continue
        src = rec["source"]
        if a.kind == "argocd":
            if (src.get("version"), src.get("sha256")) != (version, sha):
                problems.append(f"argocd: recorded for {src.get('version')} ({src.get('sha256', '')[:12]}...), appctl pins "
                                f"{version} ({sha[:12]}...); re-record with sources")
        elif str(src.get("version")) != a.info["version"]:
            problems.append(f"{a.name}: recorded for version {src.get('version')}, deploy/argocd/values.yaml pins "
                            f"{a.info['version']}; re-record with sources")
        if a.kind == "chart" and rec.get("values_sha256") != values_sha(platform, a):
            problems.append(f"{a.name}: {', '.join(a.info['value_files'])} changed since the facts were recorded; "
                            "re-record with sources (scripts/validate-platform --charts-dir DIR --record)")
        platform.summaries[a.name] = rec["summary"]
        platform.value_keys[a.name] = rec.get("value_keys", {})
        platform.upstream.add(a.name)
    return problems


# --- checks ----------------------------------------------------------------------------------
# Each returns a list of failures (strings); empty = pass.

def check_crd_waves(p):
    """Every custom resource has its CRD from an earlier wave, the same Application, or the
    same wave with SkipDryRunOnMissingResource."""
    providers = {}
    for a in p.apps:
        for c in p.summaries.get(a.name, {}).get("crds", []):
            providers.setdefault(c["kind"], []).append(a)
    fails = []
    for a in p.apps:
        for cr in p.summaries.get(a.name, {}).get("custom_resources", []):
            prov = providers.get(cr["kind"], [])
            if any(q.wave < a.wave or q.name == a.name or (q.wave == a.wave and cr["skip_dry_run"]) for q in prov):
                continue
            where = ", ".join(f"{q.name} (wave {q.wave})" for q in prov) or "no Application installs it"
            fails.append(f"{a.name} (wave {a.wave}) creates {cr['kind']} {cr['name']}: its CRD is not installed by an "
                         f"earlier wave ({where})")
    return fails


def check_application_health(p):
    """Waves gate only if ArgoCD has a health check for Applications (argocd-cm)."""
    waves = {a.wave for a in p.apps if a.kind in ("chart", "git", "own-chart", "own-path")}
    if len(waves) < 2:
        return []
    for o in p.own_objects.get("bootstrap", []):
        if o.get("kind") == "ConfigMap" and o["metadata"]["name"] == "argocd-cm" and o["metadata"].get("namespace") == "argocd":
            lua = (o.get("data") or {}).get("resource.customizations.health.argoproj.io_Application", "")
            if "obj.status.health" in lua and "return hs" in lua:
                return []
            return ["deploy/bootstrap: argocd-cm has no resource.customizations.health.argoproj.io_Application "
                    "check reading obj.status.health: sync waves would not wait for Applications to be Healthy"]
    return [f"deploy/bootstrap: no argocd-cm with the Application health check, but the Applications use "
            f"{len(waves)} sync waves ({sorted(waves)}): a wave would not wait for the previous one"]


def check_kind_nodeports(p):
    """Every containerPort kind maps from the host is the nodePort of a NodePort Service."""
    fails = []
    for node in p.kind_config.get("nodes", []):
        for m in node.get("extraPortMappings") or []:
            cp = m["containerPort"]
            hits = [(a, s, port) for a, s in p.all_services() for port in s["ports"] if port.get("nodePort") == cp]
            if not hits:
                fails.append(f"kind maps host {m.get('hostPort')} -> {cp}, but no Service has nodePort {cp}")
                continue
            for a, s, port in hits:
                if s["type"] != "NodePort":
                    fails.append(f"kind maps host {m.get('hostPort')} -> {cp}: Service {s['name']} ({a}) has nodePort {cp} "
                                 f"but type {s['type']} (it must be NodePort; a LoadBalancer never gets an address in kind "
                                 "and ArgoCD keeps it Progressing)")
            if len(hits) > 1:
                fails.append(f"nodePort {cp} is claimed by {len(hits)} Services: {[h[1]['name'] for h in hits]}")
    return fails


def check_value_keys(p):
    """Every key we set in an upstream chart's values exists in that chart at the pinned version."""
    fails = []
    for name, values in sorted(p.values.items()):
        keys = p.value_keys.get(name)
        if keys is None:
            continue
        for path in leaf_paths(values):
            if path not in keys:
                fails.append(f"{name}: {path} is not in the recorded facts (set after they were recorded); re-record with sources")
            elif not keys[path]:
                ver = p.app(name).info["version"]
                fails.append(f"{name}: {path} is not a key of {p.app(name).info['chart']} {ver} (values.yaml, templates): "
                             "the chart ignores it")
    return fails


def workload_matches(w, selector_labels):
    return selector_matches({"matchLabels": selector_labels}, w["labels"])


def check_own_selectors(p):
    """Our Services, PDBs, workloads and ServiceMonitors select exactly the pods they mean."""
    fails = []
    own = [a.name for a in p.apps if a.name in p.own_objects]
    for name in own:
        s = p.summaries[name]
        ns_workloads = lambda ns: [w for _, w in p.all_workloads() if w["name"].split("/")[0] == ns and not w.get("hook")]  # noqa: E731
        for svc in s["services"]:
            if not svc["selector"]:
                continue
            ns = svc["name"].split("/")[0]
            sel = [w for w in ns_workloads(ns) if workload_matches(w, svc["selector"])]
            if len(sel) != 1:
                fails.append(f"Service {svc['name']} selects the pods of {len(sel)} workloads {[w['name'] for w in sel]}, not 1")
            for w in sel:
                for port in svc["ports"]:
                    tp = port.get("targetPort", port["port"])
                    if isinstance(tp, str) and not any(wp[0] == tp for wp in w["ports"]):
                        fails.append(f"Service {svc['name']} port {port.get('name')} targets {tp!r}, which {w['name']} does not have")
        for w in s["workloads"]:
            if w["kind"] == "Pod":
                continue
            ns = w["name"].split("/")[0]
            sel = w.get("selector") or {}
            others = [o for o in ns_workloads(ns) if o["name"] != w["name"] and selector_matches(sel, o["labels"])]
            if others:
                fails.append(f"{w['kind']} {w['name']}'s selector also matches the pods of {[o['name'] for o in others]} "
                             "(its PDB, HPA, Service and NetworkPolicy would cover them)")
        objs = p.own_objects[name]
        for o in objs:
            if o.get("kind") == "PodDisruptionBudget":
                ns = o["metadata"].get("namespace") or p.app(name).namespace
                sel = [w for w in ns_workloads(ns) if selector_matches(o["spec"]["selector"], w["labels"])]
                if len(sel) != 1:
                    fails.append(f"PodDisruptionBudget {ns}/{o['metadata']['name']} covers {len(sel)} workloads "
                                 f"{[w['name'] for w in sel]}, not 1")
            if o.get("kind") == "ServiceMonitor":
                ns = o["metadata"].get("namespace") or p.app(name).namespace
                ports = {e.get("port") for e in o["spec"].get("endpoints", [])}
                for _, svc in p.all_services():
                    if svc["name"].split("/")[0] == ns and selector_matches(o["spec"]["selector"], svc["labels"]):
                        missing = ports - {pt.get("name") for pt in svc["ports"]}
                        if missing:
                            fails.append(f"ServiceMonitor {ns}/{o['metadata']['name']} selects Service {svc['name']}, "
                                         f"which has no port {sorted(missing)}")
    return fails


def check_gateway_listeners(p):
    """Each Gateway listener port is a container port of the gateway controller's pods."""
    fails = []
    classes = {}
    for objs in p.own_objects.values():
        for o in objs:
            if o.get("kind") == "GatewayClass":
                classes[o["metadata"]["name"]] = o["spec"]["controllerName"]
    ports = {wp[1] for _, w in p.all_workloads() for wp in w["ports"]
             if "traefik" in w["name"]}
    for objs in p.own_objects.values():
        for o in objs:
            if o.get("kind") == "Gateway" and classes.get(o["spec"]["gatewayClassName"], "").startswith("traefik.io/"):
                for lst in o["spec"]["listeners"]:
                    if lst["port"] not in ports:
                        fails.append(f"Gateway {o['metadata']['name']} listener {lst['name']} port {lst['port']} is not a "
                                     f"Traefik entrypoint port ({sorted(ports)})")
    return fails


MATCHER = re.compile(r'^\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"?(.*?)"?\s*$')


def route_receiver(route, labels):
    """The receiver Alertmanager's routing tree picks for an alert with `labels` (the first
    matching child, depth first; `continue` is not needed here and not followed)."""
    for child in route.get("routes") or []:
        if route_matches(child, labels):
            return route_receiver(dict(child, receiver=child.get("receiver", route.get("receiver"))), labels)
    return route.get("receiver")


def route_matches(route, labels):
    for m in route.get("matchers") or []:
        g = MATCHER.match(m)
        if not g:
            raise SetupError(f"alertmanager matcher {m!r}: not understood")
        name, op, value = g.groups()
        v = labels.get(name, "")
        ok = {"=": v == value, "!=": v != value, "=~": re.fullmatch(value, v) is not None,
              "!~": re.fullmatch(value, v) is None}[op]
        if not ok:
            return False
    for name, value in (route.get("match") or {}).items():
        if labels.get(name) != value:
            return False
    for name, value in (route.get("match_re") or {}).items():
        if not re.fullmatch(value, labels.get(name, "")):
            return False
    return True


def check_alert_routes(p):
    """Every alert of our PrometheusRules reaches a receiver other than kube-prometheus-stack's
    default "null" (whose alerts nobody is meant to look at)."""
    config = (p.values.get("kube-prometheus-stack", {}).get("alertmanager") or {}).get("config") or {}
    route = config.get("route")
    if not route:
        return ["kube-prometheus-stack-values.yaml sets no alertmanager.config.route: the chart's default sends "
                "every alert to the receiver \"null\""]
    receivers = {r["name"] for r in config.get("receivers") or []}
    fails = []
    for name, objs in p.own_objects.items():
        for o in objs:
            if o.get("kind") != "PrometheusRule":
                continue
            for g in o["spec"]["groups"]:
                for r in g["rules"]:
                    if "alert" not in r:
                        continue
                    labels = dict(r.get("labels") or {}, alertname=r["alert"],
                                  namespace=o["metadata"].get("namespace") or p.app(name).namespace)
                    rcv = route_receiver(route, labels)
                    if rcv not in receivers:
                        fails.append(f"alert {r['alert']} goes to receiver {rcv}, which alertmanager.config.receivers "
                                     "does not define")
                    elif rcv == "null":
                        fails.append(f"alert {r['alert']} goes to receiver null: nobody sees it")
    return fails


def build_cluster(p, flows):
    pods, by_name = [], {}
    for _, w in p.all_workloads():
        ns, name = w["name"].split("/", 1)
        pod = Pod(ns, name, dict(w["labels"]), [tuple(x) for x in w["ports"]])
        # A helm test hook runs to completion: a source of flows, never a Service endpoint.
        pod.hook = bool(w.get("hook"))
        pods.append(pod)
        by_name[w["name"]] = pod
    for sp in flows.get("synthetic_pods", []):
        pod = Pod(sp["namespace"], sp["name"], dict(sp["labels"]), [tuple(x) for x in sp.get("ports", [])])
        pods.append(pod)
        by_name[f"{sp['namespace']}/{sp['name']}"] = pod
    policies = [np for a in p.apps for np in p.summaries.get(a.name, {}).get("network_policies", [])]
    namespaces = {a.namespace: {} for a in p.apps}
    return Cluster(namespaces, pods, policies), by_name


def resolve_targets(p, by_name, to, port):
    """[(pod, container port)] a flow's destination means: a workload, a Service's pods, or an
    address outside the cluster."""
    if "external" in to:
        return [(External(to["external"]), port)]
    if "workload" in to:
        if to["workload"] not in by_name:
            raise SetupError(f"flow destination {to['workload']}: no such workload in the rendered platform")
        return [(by_name[to["workload"]], port)]
    svc = next((s for _, s in p.all_services() if s["name"] == to["service"]), None)
    if svc is None:
        raise SetupError(f"flow destination Service {to['service']}: not in the rendered platform")
    sp = next((x for x in svc["ports"] if x.get("name") == port or x["port"] == port), None)
    if sp is None:
        raise SetupError(f"Service {to['service']} has no port {port!r}")
    ns = svc["name"].split("/")[0]
    pods = [pod for key, pod in by_name.items() if pod.namespace == ns and svc["selector"] and not getattr(pod, "hook", False)
            and selector_matches({"matchLabels": svc["selector"]}, pod.labels)]
    return [(pod, sp.get("targetPort", sp["port"])) for pod in pods]


def environments(p):
    """The metrics-app environments the root chart renders (deploy/argocd `environments`, one
    Application metrics-app-<name> labelled metrics-app/environment each):
    [(name, namespace, bundles Valkey, runs redis-ha)], Valkey from the values the Application
    passes (chart defaults, its value files), redis-ha from the environment's `redisHA`."""
    declared = (read_yaml(os.path.join(ROOT, "deploy/argocd/values.yaml")) or {}).get("environments") or {}
    envs = []
    for a in p.apps:
        env = a.info.get("environment")
        if a.kind != "own-chart" or not env:
            continue
        vals = read_yaml(os.path.join(ROOT, a.info["path"], "values.yaml")) or {}
        for vf in a.info["value_files"]:
            vals = deep_merge(vals, read_yaml(os.path.join(ROOT, vf)) or {})
        envs.append((env, a.namespace, bool(get_path(vals, "redis.enabled")[0]),
                     bool((declared.get(env) or {}).get("redisHA"))))
    return sorted(envs)


def expand_flows(flows, envs):
    """platform-flows.yaml with its per-environment flows (`each_environment: all`, `valkey` for
    the environments that bundle Valkey, `redis_ha` for those that run redis-ha) repeated for
    each environment: `{ns}` is its namespace, `{other_ns}` another environment's, `{env}` its
    name."""
    out = {}
    for kind in ("required", "forbidden"):
        out[kind] = []
        for f in flows.get(kind, []):
            each = f.get("each_environment")
            if each is None:
                out[kind].append(f)
                continue
            if each not in ("all", "valkey", "redis_ha"):
                raise SetupError(f"flow {f['name']}: each_environment must be all, valkey or redis_ha, not {each!r}")
            for env, ns, valkey, redis_ha in envs:
                if (each == "valkey" and not valkey) or (each == "redis_ha" and not redis_ha):
                    continue
                others = [o[1] for o in envs if o[1] != ns]
                if "{other_ns}" in yaml.safe_dump(f) and not others:
                    continue
                subst = {"{ns}": ns, "{env}": env, "{other_ns}": others[0] if others else ""}

                def fill(v):
                    if isinstance(v, dict):
                        return {k: fill(x) for k, x in v.items() if k != "each_environment"}
                    if isinstance(v, str):
                        for k, x in subst.items():
                            v = v.replace(k, x)
                    return v
                out[kind].append(fill(f))
    return out


def check_flows(p, flows):
    """Required flows are allowed by every NetworkPolicy on the way; forbidden ones are denied."""
    flows = {**flows, **expand_flows(flows, environments(p))}
    cluster, by_name = build_cluster(p, flows)
    fails, lines = [], []
    for kind in ("required", "forbidden"):
        for f in flows.get(kind, []):
            src = f["from"]
            if "external" in src:
                source = External(src["external"])
            else:
                if src["workload"] not in by_name:
                    raise SetupError(f"flow {f['name']}: no workload {src['workload']} in the rendered platform")
                source = by_name[src["workload"]]
            targets = resolve_targets(p, by_name, f["to"], f["port"])
            if not targets:
                fails.append(f"{kind} flow '{f['name']}': {f['to']} selects no pods")
                continue
            for pod, port in targets:
                ok, why = cluster.can_connect(source, pod, port)
                verdict = "allowed" if ok else "denied"
                where = f"{pod.namespace}/{pod.name}" if isinstance(pod, Pod) else pod.ip
                lines.append(f"{kind:9} {verdict:7} {f['name']} [{where}:{port}] ({why})")
                if ok != (kind == "required"):
                    fails.append(f"{kind} flow '{f['name']}' is {verdict}: {why}")
    return fails, lines


# --- schemas (with sources only) -------------------------------------------------------------

def crd_schema(crd, version):
    """A strict JSON schema for one served version of a CRD (unknown fields fail, as with
    kubectl's strict field validation)."""
    ver = next(v for v in crd["spec"]["versions"] if v["name"] == version)
    schema = copy.deepcopy(ver.get("schema", {}).get("openAPIV3Schema", {}))

    def fix(s):
        if not isinstance(s, dict):
            return
        if s.pop("x-kubernetes-int-or-string", False):
            s.pop("type", None)
            s["anyOf"] = [{"type": "integer"}, {"type": "string"}]
        if s.pop("nullable", False) and "type" in s:
            s["type"] = [s["type"], "null"]
        preserve = s.pop("x-kubernetes-preserve-unknown-fields", False)
        for k in list(s):
            if k.startswith("x-kubernetes"):
                s.pop(k)
        if "properties" in s and "additionalProperties" not in s and not preserve:
            s["additionalProperties"] = False
        for v in (s.get("properties") or {}).values():
            fix(v)
        for key in ("items", "additionalProperties"):
            if isinstance(s.get(key), dict):
                fix(s[key])
        for key in ("anyOf", "oneOf", "allOf"):
            for v in s.get(key) or []:
                fix(v)
    fix(schema)
    props = schema.setdefault("properties", {})
    props.setdefault("apiVersion", {"type": "string"})
    props.setdefault("kind", {"type": "string"})
    props["metadata"] = {"type": "object"}
    return schema


def check_schemas(p, upstream_objects, workdir):
    """kubernetes-validate --strict on every built-in object; every custom resource against its
    CRD's schema from the rendered platform."""
    import jsonschema
    fails = []
    everything = [o for objs in upstream_objects.values() for o in objs] + \
                 [o for objs in p.own_objects.values() for o in objs]
    builtin = [o for o in everything if group_of(o.get("apiVersion", "")) in BUILTIN_GROUPS]
    path = os.path.join(workdir, "builtin.yaml")
    with open(path, "w") as fh:
        yaml.safe_dump_all(builtin, fh, sort_keys=False)
    kv = os.path.join(ROOT, ".tools", "venv", "bin", "kubernetes-validate")
    r = subprocess.run([kv, "-k", KUBE_VERSION.rsplit(".", 1)[0] + ".0", "--strict", "--quiet", path],
                       capture_output=True, text=True)
    if r.returncode != 0:
        fails.append(f"kubernetes-validate --strict ({len(builtin)} built-in objects):\n" + (r.stdout + r.stderr).strip())
    crds = {}
    for o in everything:
        if o.get("kind") == "CustomResourceDefinition":
            crds[(o["spec"]["group"], o["spec"]["names"]["kind"])] = o
    checked = 0
    for o in everything:
        g = group_of(o.get("apiVersion", ""))
        if g in BUILTIN_GROUPS:
            continue
        crd = crds.get((g, o["kind"]))
        name = f"{o['kind']} {o['metadata'].get('namespace', '')}/{o['metadata']['name']}"
        if crd is None:
            fails.append(f"{name} ({o['apiVersion']}): no CRD in the rendered platform")
            continue
        version = o["apiVersion"].split("/")[-1]
        if version not in [v["name"] for v in crd["spec"]["versions"] if v.get("served", True)]:
            fails.append(f"{name}: version {version} is not served by its CRD")
            continue
        errors = sorted(jsonschema.Draft7Validator(crd_schema(crd, version)).iter_errors(o), key=lambda e: list(e.path))
        for e in errors[:3]:
            fails.append(f"{name}: at {'/'.join(str(x) for x in e.path)}: {e.message}")
        checked += 1
    return fails, len(builtin), checked


# --- entry point -----------------------------------------------------------------------------

def upstream_summaries(p, sources, workdir):
    """Renders ArgoCD's manifest and every upstream Application; returns their full objects."""
    version, sha = argocd_pin()
    argocd_objects = load_file_docs(sources.argocd_manifest(version, sha))
    objects = {"argocd": with_namespace(argocd_objects, "argocd", set())}
    p.summaries["argocd"] = summarize(objects["argocd"])
    p.summaries["argocd"]["_source"] = {"version": version, "sha256": sha}
    p.upstream.add("argocd")
    # CRDs first (plain manifests), so charts see their API versions as ArgoCD's cluster would.
    git_apps = [a for a in p.apps if a.kind == "git"]
    chart_apps = [a for a in p.apps if a.kind == "chart"]
    rendered = render_upstream(git_apps, sources, workdir, [])
    crds_so_far = [c for s in [p.summaries["argocd"]] for c in s["crds"]]
    for name, (objs, src, keys) in rendered.items():
        crds_so_far += summarize(objs)["crds"]
    # Two passes: the CRDs every chart ships, then each chart with all of them known.
    first = render_upstream(chart_apps, sources, workdir, api_versions_from(crds_so_far))
    for objs, _, _ in first.values():
        crds_so_far += summarize(objs)["crds"]
    rendered.update(render_upstream(chart_apps, sources, workdir, api_versions_from(crds_so_far)))
    cluster_kinds = cluster_scoped_kinds([{"crds": crds_so_far}])
    for name, (objs, src, keys) in rendered.items():
        objects[name] = with_namespace(objs, p.app(name).namespace, cluster_kinds)
        p.summaries[name] = summarize(objects[name])
        p.summaries[name]["_source"] = src
        p.value_keys[name] = keys
        p.upstream.add(name)
    return objects


def facts_from(p):
    comps = {}
    for a in p.apps:
        if a.name not in p.upstream:
            continue
        s = dict(p.summaries[a.name])
        src = s.pop("_source")
        rec = {"source": src, "summary": s}
        if a.kind == "chart":
            rec["values_sha256"] = values_sha(p, a)
            rec["value_keys"] = p.value_keys[a.name]
        comps[a.name] = rec
    return {"_about": "Recorded by `scripts/validate-platform --charts-dir DIR --record` (or --pull --record) from the "
                      "upstream sources at the pinned versions, rendered with deploy/platform values; the offline mode "
                      "checks against these, the source modes re-derive them and fail when they differ.",
            "components": comps}


def compare_facts(recorded, derived):
    fails = []
    rc, dc = recorded.get("components", {}), derived["components"]
    for name in sorted(set(rc) | set(dc)):
        if name not in rc:
            fails.append(f"{name}: not recorded")
        elif name not in dc:
            fails.append(f"{name}: recorded but no longer part of the platform")
        else:
            for key in ("source", "values_sha256", "value_keys", "summary"):
                if rc[name].get(key) != dc[name].get(key):
                    detail = ""
                    if key == "summary":
                        diff = [k for k in dc[name]["summary"] if rc[name]["summary"].get(k) != dc[name]["summary"][k]]
                        detail = f" ({', '.join(diff)})"
                    fails.append(f"{name}: recorded {key} differs from the sources{detail}")
    return fails


class Report:
    def __init__(self):
        self.failed = []

    def step(self, name, fails, detail=()):
        print(("PASS  " if not fails else "FAIL  ") + name)
        for d in detail:
            print("      " + d)
        for f in fails:
            print("      - " + f.replace("\n", "\n        "))
        if fails:
            self.failed.append(name)


def run_checks(p, report, flows, verbose_flows=True):
    report.step("every custom resource has its CRD from an earlier sync wave", check_crd_waves(p))
    report.step("sync waves gate: ArgoCD has the Application health check (argocd-cm)", check_application_health(p))
    report.step("kind's extraPortMappings land on NodePort Services with that nodePort", check_kind_nodeports(p))
    report.step("the Gateway's listener ports are Traefik entrypoints", check_gateway_listeners(p))
    report.step("every value key we set exists in the upstream chart at its pinned version", check_value_keys(p))
    report.step("our Services, PDBs, workloads and ServiceMonitors select only their own pods", check_own_selectors(p))
    report.step("every alert of our PrometheusRules reaches an Alertmanager receiver", check_alert_routes(p))
    fails, lines = check_flows(p, flows)
    envs = environments(p)
    expanded = expand_flows(flows, envs)
    report.step(f"NetworkPolicy flows ({len(expanded['required'])} required, {len(expanded['forbidden'])} forbidden; "
                f"environments {', '.join(f'{e[0]} ({e[1]})' for e in envs) or 'none'})",
                fails, lines if verbose_flows else ())


def main(argv=None):
    ap = argparse.ArgumentParser(prog="scripts/validate-platform", description=__doc__.split("\n\n")[0])
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--offline", action="store_true", help="no network, no sources: our objects + recorded facts")
    mode.add_argument("--charts-dir", metavar="DIR", help="checkouts of the upstream repositories at the pinned tags")
    mode.add_argument("--pull", action="store_true", help="helm pull / git clone / download the pinned sources")
    ap.add_argument("--record", action="store_true", help="with sources: rewrite scripts/lib/upstream-facts.json")
    ap.add_argument("--quiet-flows", action="store_true", help="do not list every evaluated flow")
    args = ap.parse_args(argv)
    if args.record and args.offline:
        ap.error("--record needs sources (--charts-dir DIR or --pull)")
    if args.charts_dir and not os.path.isdir(args.charts_dir):
        ap.error(f"--charts-dir {args.charts_dir}: not a directory")
    if not os.access(HELM, os.X_OK):
        print(f"validate-platform: {HELM} is missing; run: bash scripts/install-tools", file=sys.stderr)
        return 2
    flows = read_yaml(FLOWS)
    report = Report()
    p = Platform()
    try:
        with tempfile.TemporaryDirectory() as workdir:
            build_own(p)
            if args.offline:
                facts = read_json(FACTS)
                stale = load_recorded(p, facts)
                finish_own(p)
                print(f"validate-platform: offline - our rendered objects + {os.path.relpath(FACTS, ROOT)}")
                report.step("recorded upstream facts match the pins and our values files", stale)
                run_checks(p, report, flows, not args.quiet_flows)
            else:
                sources = Sources(args.charts_dir and os.path.abspath(args.charts_dir), args.pull, workdir)
                print(f"validate-platform: upstream sources from {sources.describe()}")
                objects = upstream_summaries(p, sources, workdir)
                finish_own(p)
                for a in p.apps:
                    if a.name in objects:
                        src = p.summaries[a.name]["_source"]
                        print(f"      rendered {a.name:22} wave {a.wave if a.wave > BOOTSTRAP_WAVE else 'bootstrap':>9}  "
                              f"{len(objects[a.name]):4} objects  {src.get('chart', src.get('path', 'install.yaml'))} "
                              f"{src['version']}")
                fails, nb, nc = check_schemas(p, objects, workdir)
                report.step(f"schemas: {nb} built-in objects (kubernetes-validate --strict, Kubernetes {KUBE_VERSION}), "
                            f"{nc} custom resources against their CRDs", fails)
                run_checks(p, report, flows, not args.quiet_flows)
                derived = facts_from(p)
                if args.record:
                    with open(FACTS, "w") as fh:
                        json.dump(derived, fh, indent=1, sort_keys=True)
                        fh.write("\n")
                    print(f"      recorded {os.path.relpath(FACTS, ROOT)}")
                else:
                    recorded = read_json(FACTS) if os.path.exists(FACTS) else {}
                    report.step("the recorded upstream facts agree with the sources", compare_facts(recorded, derived))
    except SetupError as e:
        print(f"validate-platform: {e}", file=sys.stderr)
        return 2
    print()
    if report.failed:
        print(f"validate-platform: {len(report.failed)} check(s) failed")
        return 1
    print("validate-platform: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
