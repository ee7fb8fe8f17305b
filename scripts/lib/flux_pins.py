"""The two GitOps engines must deploy the same thing: checks the rendered Flux objects
(deploy/flux) against deploy/argocd/values.yaml, where every version is pinned.

    .tools/venv/bin/python scripts/lib/flux_pins.py --argocd-values deploy/argocd/values.yaml \\
        --platform-dir deploy/platform RENDERED.yaml...

RENDERED files hold the output of `kubectl kustomize` of the deploy/flux directories. Checked:
- every ArgoCD component has a HelmRelease of the same name with the same chart, version,
  chart repository URL and namespace, whose values ConfigMap holds exactly
  deploy/platform/<name>-values.yaml; likewise redis-ha-<env> (the `redisHA` pin, release
  redis-ha, deploy/platform/redis-ha-values.yaml) for each environment with redisHA, which
  metrics-app-<env> depends on; and no HelmRelease from a chart repository is extra;
- the Gateway API CRDs come from the same repository, tag and path;
- this repository is read from the same URL and branch;
- every environment has a HelmRelease metrics-app-<env> with the same namespace, values
  profile, hostname, image repository and secret path, and a Flux Kustomization building
  deploy/flux/apps/<env>; no Flux environment is extra.
Image tags are not compared: they change by promotion, a commit to one engine's files.
Exit codes: 0 agree, 1 a difference (each printed), 2 usage error.
"""

import argparse
import os
import sys

import yaml

CHART_DIR = "./charts/metrics-app"


def _index(objects):
    by_kind = {}
    for o in objects:
        by_kind.setdefault(o.get("kind"), {})[o.get("metadata", {}).get("name")] = o
    return by_kind


def _get(obj, *keys):
    for k in keys:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(k)
    return obj


def check(argocd, flux_objects, platform_values):
    """Differences between deploy/argocd's values (`argocd`, parsed) and the rendered Flux
    objects; `platform_values` maps a component name to the text of its values file."""
    errors = []
    idx = _index(flux_objects)
    releases = idx.get("HelmRelease", {})
    helm_repos = idx.get("HelmRepository", {})
    git_repos = idx.get("GitRepository", {})
    configmaps = idx.get("ConfigMap", {})
    kustomizations = idx.get("Kustomization", {})

    def chart_release(name, pin, namespace, values_name, release_name=None):
        """The HelmRelease `name` deploys chart `pin` into `namespace` with the values file
        deploy/platform/<values_name>-values.yaml."""
        hr = releases.get(name)
        if hr is None:
            return [f"no HelmRelease {name} in deploy/flux"]
        errs = []
        chart = _get(hr, "spec", "chart", "spec") or {}
        if chart.get("chart") != pin["chart"]:
            errs.append(f"HelmRelease {name}: chart {chart.get('chart')!r}, deploy/argocd pins {pin['chart']!r}")
        if str(chart.get("version")) != str(pin["version"]):
            errs.append(f"HelmRelease {name}: chart version {chart.get('version')!r}, deploy/argocd pins {pin['version']!r}")
        ref = chart.get("sourceRef") or {}
        repo = helm_repos.get(ref.get("name")) if ref.get("kind") == "HelmRepository" else None
        if repo is None:
            errs.append(f"HelmRelease {name}: sourceRef {ref} is not a HelmRepository in deploy/flux")
        elif _get(repo, "spec", "url") != pin["repoURL"]:
            errs.append(f"HelmRelease {name}: chart repository {_get(repo, 'spec', 'url')!r}, deploy/argocd uses {pin['repoURL']!r}")
        if _get(hr, "spec", "targetNamespace") != namespace:
            errs.append(f"HelmRelease {name}: targetNamespace {_get(hr, 'spec', 'targetNamespace')!r}, deploy/argocd uses {namespace!r}")
        if release_name and _get(hr, "spec", "releaseName") != release_name:
            errs.append(f"HelmRelease {name}: releaseName {_get(hr, 'spec', 'releaseName')!r}, deploy/argocd uses {release_name!r}")
        refs = _get(hr, "spec", "valuesFrom") or []
        if len(refs) != 1 or refs[0].get("kind") != "ConfigMap":
            errs.append(f"HelmRelease {name}: valuesFrom must be the one ConfigMap made from deploy/platform/{values_name}-values.yaml")
            return errs
        cm = configmaps.get(refs[0].get("name"))
        key = refs[0].get("valuesKey", "values.yaml")
        if cm is None:
            errs.append(f"HelmRelease {name}: values ConfigMap {refs[0].get('name')!r} is not rendered")
        elif _get(cm, "data", key) != platform_values.get(values_name):
            errs.append(f"HelmRelease {name}: ConfigMap {refs[0].get('name')}/{key} is not deploy/platform/{values_name}-values.yaml")
        return errs

    # --- upstream charts ---
    components = argocd.get("components") or {}
    for name, c in sorted(components.items()):
        errors += [e if e.startswith("HelmRelease") else f"component {name}: {e}"
                   for e in chart_release(name, c, c["namespace"], name)]
    # redis-ha per environment with redisHA (ArgoCD: Application redis-ha-<env>).
    envs = argocd.get("environments") if isinstance(argocd.get("environments"), dict) else {}
    redis = argocd.get("redisHA")
    expected = set(components)
    for env, e in sorted(envs.items()):
        name = f"redis-ha-{env}"
        if e.get("redisHA"):
            expected.add(name)
            if not redis:
                errors.append(f"environment {env}: redisHA is on, but deploy/argocd/values.yaml has no redisHA chart pin")
                continue
            errors += [x if x.startswith("HelmRelease") else f"environment {env}: {x} (redisHA: true)"
                       for x in chart_release(name, redis, e.get("namespace"), "redis-ha", "redis-ha")]
            deps = [d.get("name") for d in _get(releases.get(f"metrics-app-{env}"), "spec", "dependsOn") or []]
            if f"metrics-app-{env}" in releases and name not in deps:
                errors.append(f"environment {env}: HelmRelease metrics-app-{env} must dependsOn {name} (ArgoCD: wave -1 before 0)")
    for name, hr in sorted(releases.items()):
        kind = _get(hr, "spec", "chart", "spec", "sourceRef", "kind")
        if kind == "HelmRepository" and name not in expected:
            errors.append(f"HelmRelease {name}: not a component of deploy/argocd/values.yaml"
                          + (" (its environment has no redisHA)" if name.startswith("redis-ha-") else ""))

    # --- the Gateway API CRDs ---
    gw = argocd.get("gatewayAPI") or {}
    crds = [k for k in kustomizations.values() if _get(k, "spec", "sourceRef", "kind") == "GitRepository"
            and _get(git_repos.get(_get(k, "spec", "sourceRef", "name")), "spec", "url") == gw.get("repoURL")]
    if len(crds) != 1:
        errors.append(f"Gateway API CRDs: want one Kustomization from a GitRepository of {gw.get('repoURL')!r}, found {len(crds)}")
    else:
        src = git_repos[_get(crds[0], "spec", "sourceRef", "name")]
        if _get(src, "spec", "ref", "tag") != gw.get("version"):
            errors.append(f"Gateway API CRDs: tag {_get(src, 'spec', 'ref', 'tag')!r}, deploy/argocd pins {gw.get('version')!r}")
        if os.path.normpath(_get(crds[0], "spec", "path") or "") != os.path.normpath(gw.get("path", "")):
            errors.append(f"Gateway API CRDs: path {_get(crds[0], 'spec', 'path')!r}, deploy/argocd uses {gw.get('path')!r}")

    # --- this repository ---
    own = git_repos.get("metrics-app")
    if own is None:
        errors.append("GitRepository metrics-app (this repository) is missing")
    else:
        if _get(own, "spec", "url") != argocd.get("repoURL"):
            errors.append(f"GitRepository metrics-app: url {_get(own, 'spec', 'url')!r}, deploy/argocd uses {argocd.get('repoURL')!r}")
        if _get(own, "spec", "ref", "branch") != argocd.get("targetRevision"):
            errors.append(f"GitRepository metrics-app: branch {_get(own, 'spec', 'ref', 'branch')!r}, "
                          f"deploy/argocd uses {argocd.get('targetRevision')!r}")

    # --- environments ---
    envs = argocd.get("environments")
    if not isinstance(envs, dict) or not envs:
        errors.append("deploy/argocd/values.yaml has no `environments` map to compare the Flux environments with")
        return errors
    app_releases = {n: hr for n, hr in releases.items()
                    if _get(hr, "spec", "chart", "spec", "sourceRef", "kind") == "GitRepository"}
    for env, e in sorted(envs.items()):
        name = f"metrics-app-{env}"
        hr = app_releases.get(name)
        if hr is None:
            errors.append(f"environment {env}: no HelmRelease {name} (add deploy/flux/apps/{env}/kustomization.yaml)")
        else:
            spec = hr["spec"]
            want_files = [f"{CHART_DIR}/values.yaml"] + [f"{CHART_DIR}/{f}" for f in e.get("valueFiles", [])]
            got = {
                "targetNamespace": spec.get("targetNamespace"),
                "chart": _get(spec, "chart", "spec", "chart"),
                "valuesFiles": _get(spec, "chart", "spec", "valuesFiles"),
                "hostname": _get(spec, "values", "httpRoute", "hostnames"),
                "ingress host": _get(spec, "values", "ingress", "host"),
                "image repository": _get(spec, "values", "image", "repository"),
                "secret path": _get(spec, "values", "secret", "externalSecret", "remoteKey"),
            }
            want = {
                "targetNamespace": e.get("namespace"),
                "chart": CHART_DIR,
                "valuesFiles": want_files,
                "hostname": [e.get("host")],
                "ingress host": e.get("host"),
                "image repository": _get(e, "image", "repository"),
                "secret path": e.get("secretPath"),
            }
            for field in want:
                if got[field] != want[field]:
                    errors.append(f"environment {env}: HelmRelease {name} {field} {got[field]!r}, deploy/argocd has {want[field]!r}")
        ks = kustomizations.get(name)
        if ks is None:
            errors.append(f"environment {env}: no Flux Kustomization {name} (add deploy/flux/bootstrap/{name}.yaml)")
        elif os.path.normpath(_get(ks, "spec", "path") or "") != f"deploy/flux/apps/{env}":
            errors.append(f"environment {env}: Kustomization {name} builds {_get(ks, 'spec', 'path')!r}, not ./deploy/flux/apps/{env}")
    for name in sorted(app_releases):
        if name.removeprefix("metrics-app-") not in envs:
            errors.append(f"HelmRelease {name}: no such environment in deploy/argocd/values.yaml")
    return errors


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--argocd-values", required=True)
    ap.add_argument("--platform-dir", required=True)
    ap.add_argument("rendered", nargs="+")
    args = ap.parse_args(argv)
    try:
        argocd = yaml.safe_load(open(args.argocd_values))
        objects = [d for f in args.rendered for d in yaml.safe_load_all(open(f)) if d]
        platform_values = {}
        for name in list(argocd.get("components") or {}) + (["redis-ha"] if argocd.get("redisHA") else []):
            path = os.path.join(args.platform_dir, f"{name}-values.yaml")
            if os.path.exists(path):
                platform_values[name] = open(path).read()
    except (OSError, yaml.YAMLError) as e:
        print(f"flux_pins: {e}", file=sys.stderr)
        return 2
    errors = check(argocd, objects, platform_values)
    for e in errors:
        print(f"DIFFERS {e}")
    if not errors:
        n = len(argocd.get("components") or {})
        envs = argocd.get("environments") or {}
        redis = sum(1 for e in envs.values() if e.get("redisHA"))
        print(f"flux and argocd agree: {n} charts, the Gateway API CRDs, this repository, "
              f"{len(envs)} environments ({redis} with redis-ha)")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
