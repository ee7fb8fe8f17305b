//! `appctl up --gitops flux`: Flux instead of ArgoCD as the GitOps engine, the pure part —
//! which Flux, how its install manifest is checked before anything is applied, and the
//! ordered actions that bring the platform up from `deploy/flux/` (docs/gitops-engines.md).
//!
//! - [`FLUX_VERSION`], [`flux_manifest_url`], [`FLUX_IMAGES`]: the pinned release.
//! - [`verify_install_manifest`]: the downloaded manifest, checked and made content-addressed.
//! - [`plan`]: the actions, as data, for the chosen environments.
//! - [`git_repository`], [`set_overlay_image_tag`]: the two edits appctl makes to
//!   `deploy/flux` files (where Flux reads this repository; an environment's image).
//!
//! Why no SHA-256 of the install manifest: Flux publishes `install.yaml` only as a release
//! asset, and its checksum only in another release asset (`flux_<v>_checksums.txt`, signed
//! with cosign) — neither is a file in a repository that could be read when this was pinned,
//! and a digest must never be made up. What the manifest runs is pinned instead: every
//! container image must be one of the seven controller images of the release, and is
//! rewritten to `image:tag@sha256:…` with the digests the Flux maintainers publish in
//! controlplaneio-fluxcd/distribution (`images/v2.9.4/upstream-alpine.yaml`), so the kubelet
//! refuses anything else; the manifest may only create the kinds Flux's own installation
//! has, in `flux-system`, and must serve the API versions deploy/flux uses.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

/// The Flux release installed: the newest stable 2.x in fluxcd/flux2 when pinned.
// renovate: datasource=github-releases depName=fluxcd/flux2
pub const FLUX_VERSION: &str = "v2.9.4";

/// Where Flux's install manifest is fetched from (`kustomize build manifests/install` of
/// [`FLUX_VERSION`], published with the release).
pub fn flux_manifest_url() -> String {
    format!("https://github.com/fluxcd/flux2/releases/download/{FLUX_VERSION}/install.yaml")
}

/// The namespace Flux runs in and its objects (deploy/flux) live in.
pub const FLUX_NAMESPACE: &str = "flux-system";

/// A controller image of the release, pinned by digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PinnedImage {
    /// e.g. `ghcr.io/fluxcd/source-controller`.
    pub name: &'static str,
    /// The tag the install manifest names, e.g. `v1.9.4`.
    pub tag: &'static str,
    /// `sha256:…` of the image (its multi-arch index).
    pub digest: &'static str,
}

impl PinnedImage {
    /// `name:tag`, as the install manifest writes it.
    pub fn tagged(&self) -> String {
        format!("{}:{}", self.name, self.tag)
    }
    /// `name:tag@digest`, what is applied: the tag for people, the digest for the kubelet.
    pub fn pinned(&self) -> String {
        format!("{}:{}@{}", self.name, self.tag, self.digest)
    }
}

/// The controller images of [`FLUX_VERSION`], from controlplaneio-fluxcd/distribution
/// `images/v2.9.4/upstream-alpine.yaml` (commit 8353f7a1cf75e2dba4733cfd9b12652ec0cdad81);
/// the tags agree with fluxcd/flux2 `manifests/` at v2.9.4. Bump with [`FLUX_VERSION`].
pub const FLUX_IMAGES: &[PinnedImage] = &[
    PinnedImage {
        name: "ghcr.io/fluxcd/source-controller",
        tag: "v1.9.4",
        digest: "sha256:8a8ed0a57b8b86f561d5a4309a69f65e62f0cebe4de8801593c5ff35a3bc3c23",
    },
    PinnedImage {
        name: "ghcr.io/fluxcd/kustomize-controller",
        tag: "v1.9.4",
        digest: "sha256:2b8bec54ffb6caf421bd2a6c005d27f567d5dd4db7feb55794fb51fcabd69b8f",
    },
    PinnedImage {
        name: "ghcr.io/fluxcd/helm-controller",
        tag: "v1.6.3",
        digest: "sha256:16ada99456385100698a5d7adf90aba8a2089d987ab541c9566b6d7b0e897038",
    },
    PinnedImage {
        name: "ghcr.io/fluxcd/notification-controller",
        tag: "v1.9.3",
        digest: "sha256:071c351a0fb163eeb6a2bb82f1e894f51b6b0734216d2e97d3d99c9ab9d710b9",
    },
    PinnedImage {
        name: "ghcr.io/fluxcd/image-reflector-controller",
        tag: "v1.2.4",
        digest: "sha256:d63550296dc9a6c2b7c9246cb7ef6e52d7469d5b104cd329622301b46971e255",
    },
    PinnedImage {
        name: "ghcr.io/fluxcd/image-automation-controller",
        tag: "v1.2.4",
        digest: "sha256:0286cbba95a2606a006e370052cb642f4370cb42ceea8353b5cba922cf47770c",
    },
    PinnedImage {
        name: "ghcr.io/fluxcd/source-watcher",
        tag: "v2.2.3",
        digest: "sha256:40f35415a78f4514aea41cf4d6dd299d59bc646eb4a73365eac831c8ced2445a",
    },
];

/// The kinds Flux's installation consists of (fluxcd/flux2 `manifests/install`): anything else
/// in the downloaded manifest is refused.
pub const INSTALL_KINDS: &[&str] = &[
    "Namespace",
    "CustomResourceDefinition",
    "ServiceAccount",
    "ClusterRole",
    "ClusterRoleBinding",
    "ResourceQuota",
    "Service",
    "Deployment",
    "NetworkPolicy",
];
const CLUSTER_SCOPED: &[&str] = &[
    "Namespace",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleBinding",
];

/// The CRDs and the version of each that deploy/flux uses: the manifest must serve them.
pub const REQUIRED_APIS: &[(&str, &str)] = &[
    ("gitrepositories.source.toolkit.fluxcd.io", "v1"),
    ("helmrepositories.source.toolkit.fluxcd.io", "v1"),
    ("helmcharts.source.toolkit.fluxcd.io", "v1"),
    ("kustomizations.kustomize.toolkit.fluxcd.io", "v1"),
    ("helmreleases.helm.toolkit.fluxcd.io", "v2"),
];

/// The controllers `up` waits for before applying deploy/flux: the ones that reconcile
/// GitRepository, HelmRepository, Kustomization and HelmRelease.
pub const REQUIRED_CONTROLLERS: &[&str] = &[
    "source-controller",
    "kustomize-controller",
    "helm-controller",
];

/// Why a downloaded install manifest, a deploy/flux file or an option was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FluxError {
    /// The manifest is not YAML, or an object lacks kind/name.
    #[error("Flux install manifest ({url}): {detail}")]
    Manifest {
        /// Where it came from.
        url: String,
        /// What is wrong.
        detail: String,
    },
    /// A deploy/flux file is not what appctl can edit.
    #[error("{file}: {detail}")]
    File {
        /// Which file, relative to the repository root.
        file: String,
        /// What is wrong, and what to do.
        detail: String,
    },
    /// `--env` names an environment deploy/flux does not have.
    #[error(
        "no Flux environment {env}: deploy/flux has {known}; add deploy/flux/apps/{env}/kustomization.yaml and deploy/flux/bootstrap/metrics-app-{env}.yaml"
    )]
    UnknownEnvironment {
        /// The name given.
        env: String,
        /// The ones there are, comma-separated.
        known: String,
    },
    /// An option value that cannot be used.
    #[error("{0}")]
    Usage(String),
}

fn manifest_error(detail: impl Into<String>) -> FluxError {
    FluxError::Manifest {
        url: flux_manifest_url(),
        detail: detail.into(),
    }
}

/// The install manifest after [`verify_install_manifest`]: the objects to apply, in the
/// manifest's order, with every image pinned by digest.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedManifest {
    /// The objects, as JSON.
    pub objects: Vec<Value>,
    /// The Deployments it creates (what to wait for).
    pub deployments: Vec<String>,
}

/// Checks the downloaded Flux install manifest and pins its images (see the module doc):
/// only [`INSTALL_KINDS`], namespaced objects only in [`FLUX_NAMESPACE`], every container image
/// one of [`FLUX_IMAGES`] by its tag (rewritten to tag@digest), each of them used, the
/// [`REQUIRED_APIS`] served, the [`REQUIRED_CONTROLLERS`] present.
pub fn verify_install_manifest(yaml: &str) -> Result<VerifiedManifest, FluxError> {
    let by_tag: BTreeMap<String, &PinnedImage> =
        FLUX_IMAGES.iter().map(|i| (i.tagged(), i)).collect();
    let mut objects = Vec::new();
    let mut deployments = Vec::new();
    let mut used = BTreeSet::new();
    let mut served: BTreeSet<(String, String)> = BTreeSet::new();
    for doc in serde_yaml_ng::Deserializer::from_str(yaml) {
        let value: serde_yaml_ng::Value = serde::Deserialize::deserialize(doc)
            .map_err(|e| manifest_error(format!("not YAML: {e}")))?;
        if value.is_null() {
            continue;
        }
        let mut obj: Value = serde_json::to_value(&value)
            .map_err(|e| manifest_error(format!("not a JSON-compatible object: {e}")))?;
        let kind = obj["kind"].as_str().unwrap_or_default().to_string();
        let name = obj["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if kind.is_empty() || name.is_empty() {
            return Err(manifest_error("an object without kind or metadata.name"));
        }
        let what = format!("{kind}/{name}");
        if !INSTALL_KINDS.contains(&kind.as_str()) {
            return Err(manifest_error(format!(
                "{what}: Flux's installation has no {kind} objects; refusing the manifest"
            )));
        }
        let namespace = obj["metadata"]["namespace"].as_str();
        if CLUSTER_SCOPED.contains(&kind.as_str()) {
            if kind == "Namespace" && name != FLUX_NAMESPACE {
                return Err(manifest_error(format!(
                    "{what}: only the {FLUX_NAMESPACE} namespace may be created"
                )));
            }
        } else if namespace != Some(FLUX_NAMESPACE) {
            return Err(manifest_error(format!(
                "{what} is in namespace {namespace:?}, not {FLUX_NAMESPACE}"
            )));
        }
        match kind.as_str() {
            "Deployment" => {
                pin_images(&mut obj, &what, &by_tag, &mut used)?;
                deployments.push(name);
            }
            "CustomResourceDefinition" => {
                for v in obj["spec"]["versions"].as_array().into_iter().flatten() {
                    if let (Some(true), Some(version)) = (v["served"].as_bool(), v["name"].as_str())
                    {
                        served.insert((name.clone(), version.to_string()));
                    }
                }
            }
            _ => {}
        }
        objects.push(obj);
    }
    let unused: Vec<String> = FLUX_IMAGES
        .iter()
        .filter(|i| !used.contains(i.name))
        .map(PinnedImage::tagged)
        .collect();
    if !unused.is_empty() {
        return Err(manifest_error(format!(
            "no Deployment runs {}: this is not the {FLUX_VERSION} manifest",
            unused.join(", ")
        )));
    }
    for (crd, version) in REQUIRED_APIS {
        if !served.contains(&(crd.to_string(), version.to_string())) {
            return Err(manifest_error(format!(
                "CRD {crd} does not serve {version}, which deploy/flux uses"
            )));
        }
    }
    for c in REQUIRED_CONTROLLERS {
        if !deployments.iter().any(|d| d == c) {
            return Err(manifest_error(format!("no Deployment {c}")));
        }
    }
    Ok(VerifiedManifest {
        objects,
        deployments,
    })
}

fn pin_images(
    obj: &mut Value,
    what: &str,
    by_tag: &BTreeMap<String, &PinnedImage>,
    used: &mut BTreeSet<&'static str>,
) -> Result<(), FluxError> {
    let spec = &mut obj["spec"]["template"]["spec"];
    let mut count = 0;
    for list in ["initContainers", "containers"] {
        for c in spec[list].as_array_mut().into_iter().flatten() {
            let image = c["image"].as_str().unwrap_or_default().to_string();
            let Some(pin) = by_tag.get(&image) else {
                return Err(manifest_error(format!(
                    "{what}: image {image:?} is not one of the {FLUX_VERSION} controller images"
                )));
            };
            c["image"] = Value::String(pin.pinned());
            used.insert(pin.name);
            count += 1;
        }
    }
    if count == 0 {
        return Err(manifest_error(format!("{what} has no containers")));
    }
    Ok(())
}

/// The bootstrap files, relative to the repository root: the GitRepository of this
/// repository, then the root Kustomization that builds deploy/flux/platform.
pub const GIT_REPOSITORY_FILE: &str = "deploy/flux/bootstrap/git-repository.yaml";
/// See [`GIT_REPOSITORY_FILE`].
pub const PLATFORM_FILE: &str = "deploy/flux/bootstrap/platform.yaml";

/// The Flux Kustomization of environment `env` (bootstrap), relative to the repository root.
pub fn environment_file(env: &str) -> String {
    format!("deploy/flux/bootstrap/metrics-app-{env}.yaml")
}
/// The kustomize overlay of environment `env`, which holds its image tag.
pub fn overlay_file(env: &str) -> String {
    format!("deploy/flux/apps/{env}/kustomization.yaml")
}

/// The Flux Kustomizations of the platform, in ArgoCD's sync-wave order (-3, -2, -1, -1),
/// after the root `platform` that creates them (deploy/flux/platform/layers.yaml).
pub const PLATFORM_KUSTOMIZATIONS: &[&str] = &[
    "platform",
    "gateway-api-crds",
    "platform-operators",
    "platform-addons",
    "platform-manifests",
];

/// One thing `up --gitops flux` does, in order.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "flux", rename_all = "kebab-case")]
pub enum FluxAction {
    /// GET [`flux_manifest_url`], [`verify_install_manifest`], server-side apply the objects.
    InstallFlux,
    /// Wait for the CRDs of [`REQUIRED_APIS`] to be Established and the Deployments of
    /// [`REQUIRED_CONTROLLERS`] to be Available.
    WaitControllers,
    /// Apply [`GIT_REPOSITORY_FILE`] as [`git_repository`] makes it.
    ApplyGitRepository {
        /// Where Flux reads this repository.
        url: String,
        /// Branch, tag (`refs/tags/…`) or commit.
        revision: String,
    },
    /// Apply a bootstrap file as it is.
    ApplyFile {
        /// Relative to the repository root.
        file: String,
    },
    /// Apply an environment's Kustomization ([`environment_file`]) as
    /// [`environment_kustomization`] makes it.
    ApplyEnvironment {
        /// e.g. `dev`.
        env: String,
        /// The image tag it runs instead of its overlay's: with a remote repository, where
        /// appctl commits nothing (ArgoCD gets it as a parameter instead).
        image_tag: Option<String>,
    },
    /// Wait for these Flux Kustomizations to be Ready, in order (each waits for what it
    /// applied: `wait: true`).
    WaitReady {
        /// Kustomization names in flux-system.
        kustomizations: Vec<String>,
    },
}

impl FluxAction {
    /// One line for the plan printout.
    pub fn describe(&self) -> String {
        match self {
            FluxAction::InstallFlux => format!(
                "install Flux {FLUX_VERSION} ({}; {} controller images pinned by digest)",
                flux_manifest_url(),
                FLUX_IMAGES.len()
            ),
            FluxAction::WaitControllers => format!(
                "wait for the Flux CRDs and {}",
                REQUIRED_CONTROLLERS.join(", ")
            ),
            FluxAction::ApplyGitRepository { url, revision } => {
                format!("apply {GIT_REPOSITORY_FILE} ({url} at {revision})")
            }
            FluxAction::ApplyFile { file } => format!("apply {file}"),
            FluxAction::ApplyEnvironment { env, image_tag } => match image_tag {
                None => format!("apply {}", environment_file(env)),
                Some(tag) => format!(
                    "apply {} (image tag {tag}, not the overlay's)",
                    environment_file(env)
                ),
            },
            FluxAction::WaitReady { kustomizations } => {
                format!(
                    "wait for Kustomizations {} Ready",
                    kustomizations.join(", ")
                )
            }
        }
    }
}

/// The in-cluster repository Flux reads by default (deploy/argocd/values.yaml's repoURL).
pub const IN_CLUSTER_REPO: &str =
    "http://git-server.gitops.svc.cluster.local/appctl/metrics-app.git";

/// The actions of `up --gitops flux` for environments `envs` (in `--env` order, each one of
/// `available`, the environments deploy/flux has), reading this repository at `remote`
/// (`--repo-url`, `--revision`) or the in-cluster git server's `main`. Building, loading and
/// pushing the image and commit are the same as with ArgoCD and not repeated here.
/// With `remote`, each environment runs `image_tag` (the image `up` built and loaded) instead
/// of the tag its overlay names there.
pub fn plan(
    envs: &[String],
    available: &[String],
    remote: Option<(&str, &str)>,
    image_tag: Option<&str>,
) -> Result<Vec<FluxAction>, FluxError> {
    check_environments(envs, available)?;
    Ok(actions(envs, remote, image_tag))
}

/// `envs` (from `--env`) are at least one, each once, each one deploy/flux has (`available`).
pub fn check_environments(envs: &[String], available: &[String]) -> Result<(), FluxError> {
    if envs.is_empty() {
        return Err(FluxError::Usage(
            "no environment chosen: --env needs at least one (e.g. --env dev)".into(),
        ));
    }
    let mut seen = BTreeSet::new();
    for env in envs {
        if !available.contains(env) {
            return Err(FluxError::UnknownEnvironment {
                env: env.clone(),
                known: available.join(", "),
            });
        }
        if !seen.insert(env) {
            return Err(FluxError::Usage(format!(
                "--env names {env} twice; name each environment once"
            )));
        }
    }
    Ok(())
}

/// [`plan`]'s actions for environments already checked ([`check_environments`]).
pub fn actions(
    envs: &[String],
    remote: Option<(&str, &str)>,
    image_tag: Option<&str>,
) -> Vec<FluxAction> {
    let (url, revision) = remote.unwrap_or((IN_CLUSTER_REPO, "main"));
    // In-cluster: the tags are commits appctl makes, no override.
    let image_tag = remote.and(image_tag).map(str::to_string);
    let mut actions = vec![
        FluxAction::InstallFlux,
        FluxAction::WaitControllers,
        FluxAction::ApplyGitRepository {
            url: url.into(),
            revision: revision.into(),
        },
        FluxAction::ApplyFile {
            file: PLATFORM_FILE.into(),
        },
    ];
    actions.extend(envs.iter().map(|e| FluxAction::ApplyEnvironment {
        env: e.clone(),
        image_tag: image_tag.clone(),
    }));
    let mut ready: Vec<String> = PLATFORM_KUSTOMIZATIONS
        .iter()
        .map(|k| k.to_string())
        .collect();
    ready.extend(envs.iter().map(|e| format!("metrics-app-{e}")));
    actions.push(FluxAction::WaitReady {
        kustomizations: ready,
    });
    actions
}

/// The environments deploy/flux has, from the names of the files in deploy/flux/bootstrap
/// (`metrics-app-<env>.yaml`), sorted.
pub fn environments_from_files<S: AsRef<str>>(names: &[S]) -> Vec<String> {
    let mut envs: Vec<String> = names
        .iter()
        .filter_map(|n| {
            n.as_ref()
                .strip_prefix("metrics-app-")?
                .strip_suffix(".yaml")
                .map(str::to_string)
        })
        .filter(|e| !e.is_empty())
        .collect();
    envs.sort();
    envs
}

/// `spec.ref` of a GitRepository for `revision`: a 40-hex commit, a full ref name
/// (`refs/tags/v1`, `refs/heads/x`), else a branch.
pub fn git_ref(revision: &str) -> Value {
    if revision.len() == 40 && revision.bytes().all(|b| b.is_ascii_hexdigit()) {
        serde_json::json!({ "commit": revision.to_ascii_lowercase() })
    } else if revision.starts_with("refs/") {
        serde_json::json!({ "name": revision })
    } else {
        serde_json::json!({ "branch": revision })
    }
}

/// [`GIT_REPOSITORY_FILE`]'s object (`text`) with `url` and `revision` (see [`git_ref`]).
pub fn git_repository(text: &str, url: &str, revision: &str) -> Result<Value, FluxError> {
    let bad = |detail: String| FluxError::File {
        file: GIT_REPOSITORY_FILE.into(),
        detail,
    };
    if !(url.starts_with("http://") || url.starts_with("https://") || url.starts_with("ssh://")) {
        return Err(FluxError::Usage(format!(
            "--repo-url {url:?}: Flux needs an http(s):// or ssh:// URL"
        )));
    }
    if revision.trim().is_empty() {
        return Err(FluxError::Usage("--revision is empty".into()));
    }
    let value: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(text).map_err(|e| bad(format!("not YAML: {e}")))?;
    let mut obj = serde_json::to_value(value).map_err(|e| bad(e.to_string()))?;
    if obj["kind"] != "GitRepository" || obj["metadata"]["name"] != "metrics-app" {
        return Err(bad("expected the GitRepository metrics-app".into()));
    }
    obj["spec"]["url"] = Value::String(url.into());
    obj["spec"]["ref"] = git_ref(revision);
    Ok(obj)
}

/// The Kustomization of environment `env` (`text`: [`environment_file`]), with `image_tag`
/// when given: a JSON patch appended to `spec.patches` that sets the metrics-app
/// HelmRelease's `spec.values.image.tag` after the overlay's own patches (which give every
/// environment `values.image`). The target's name is a kustomize regex, so it matches before
/// and after the overlay's `nameSuffix`; redis-ha's HelmRelease is not matched.
pub fn environment_kustomization(
    text: &str,
    env: &str,
    image_tag: Option<&str>,
) -> Result<Value, FluxError> {
    let file = environment_file(env);
    let bad = |detail: String| FluxError::File {
        file: file.clone(),
        detail,
    };
    let value: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(text).map_err(|e| bad(format!("not YAML: {e}")))?;
    let mut obj = serde_json::to_value(value).map_err(|e| bad(e.to_string()))?;
    let name = format!("metrics-app-{env}");
    if obj["kind"] != "Kustomization" || obj["metadata"]["name"] != name.as_str() {
        return Err(bad(format!("expected the Flux Kustomization {name}")));
    }
    if let Some(tag) = image_tag {
        check_tag(tag)?;
        let patch = serde_json::json!({
            "target": {"group": "helm.toolkit.fluxcd.io", "kind": "HelmRelease", "name": "metrics-app.*"},
            "patch": serde_json::json!([
                {"op": "add", "path": "/spec/values/image/tag", "value": tag}
            ]).to_string()
        });
        match obj["spec"]["patches"].as_array_mut() {
            Some(patches) => patches.push(patch),
            None => obj["spec"]["patches"] = Value::Array(vec![patch]),
        }
    }
    Ok(obj)
}

/// A tag Docker accepts, which also keeps the YAML written with it a plain string.
fn check_tag(tag: &str) -> Result<(), FluxError> {
    if tag.is_empty()
        || tag.len() > 128
        || !tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        || tag.starts_with(['.', '-'])
    {
        return Err(FluxError::Usage(format!(
            "image tag {tag:?}: up to 128 letters, digits, '.', '_' or '-', not starting with '.' or '-'"
        )));
    }
    Ok(())
}

/// Overlay `text` (`deploy/flux/apps/<env>/kustomization.yaml`) with the image tag `tag`:
/// what `up` (dev's built image) and a promotion commit. Edited as text, one line, so the
/// comments survive; the result is parsed again and must carry the new tag.
pub fn set_overlay_image_tag(text: &str, env: &str, tag: &str) -> Result<String, FluxError> {
    let file = overlay_file(env);
    let bad = |detail: String| FluxError::File {
        file: file.clone(),
        detail,
    };
    check_tag(tag)?;
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let tag_lines: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.trim_start().starts_with("tag:"))
        .map(|(i, _)| i)
        .collect();
    let [i] = tag_lines[..] else {
        return Err(bad(format!(
            "expected exactly one `tag:` line (the image tag in the HelmRelease patch), found {}",
            tag_lines.len()
        )));
    };
    let line = lines[i];
    let indent = &line[..line.len() - line.trim_start().len()];
    let newline = if line.ends_with('\n') { "\n" } else { "" };
    let mut out = String::with_capacity(text.len() + tag.len());
    for (j, l) in lines.iter().enumerate() {
        if j == i {
            out.push_str(&format!("{indent}tag: \"{tag}\"{newline}"));
        } else {
            out.push_str(l);
        }
    }
    if overlay_image_tag(&out).map_err(bad)? != tag {
        return Err(bad(
            "the `tag:` line is not the HelmRelease's values.image.tag".into(),
        ));
    }
    Ok(out)
}

/// The image tag an overlay gives its HelmRelease (`spec.values.image.tag` in its patch).
pub fn overlay_image_tag(text: &str) -> Result<String, String> {
    let k: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(text).map_err(|e| format!("not YAML: {e}"))?;
    let patches = k
        .get("patches")
        .and_then(|p| p.as_sequence())
        .ok_or("no patches")?;
    let mut tags = Vec::new();
    for p in patches {
        let Some(body) = p.get("patch").and_then(|b| b.as_str()) else {
            continue;
        };
        let hr: serde_yaml_ng::Value =
            serde_yaml_ng::from_str(body).map_err(|e| format!("a patch is not YAML: {e}"))?;
        if hr.get("kind").and_then(|k| k.as_str()) != Some("HelmRelease") {
            continue;
        }
        let tag = hr
            .get("spec")
            .and_then(|s| s.get("values"))
            .and_then(|v| v.get("image"))
            .and_then(|i| i.get("tag"));
        match tag {
            Some(serde_yaml_ng::Value::String(s)) => tags.push(s.clone()),
            Some(serde_yaml_ng::Value::Number(n)) => tags.push(n.to_string()),
            _ => {}
        }
    }
    match &tags[..] {
        [one] => Ok(one.clone()),
        _ => Err(format!(
            "expected one HelmRelease patch with spec.values.image.tag, found {}",
            tags.len()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The repository's own files: include_str! resolves relative to this file, so the tests
    // fail when deploy/flux and these constants drift apart.
    const GIT_REPOSITORY_YAML: &str =
        include_str!("../../../../deploy/flux/bootstrap/git-repository.yaml");
    const PLATFORM_YAML: &str = include_str!("../../../../deploy/flux/bootstrap/platform.yaml");
    const LAYERS_YAML: &str = include_str!("../../../../deploy/flux/platform/layers.yaml");
    const DEV_OVERLAY: &str = include_str!("../../../../deploy/flux/apps/dev/kustomization.yaml");
    const PROD_OVERLAY: &str = include_str!("../../../../deploy/flux/apps/prod/kustomization.yaml");
    const DEV_BOOTSTRAP: &str =
        include_str!("../../../../deploy/flux/bootstrap/metrics-app-dev.yaml");

    fn deployment(name: &str, image: &str) -> String {
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\n  namespace: flux-system\n\
             spec:\n  template:\n    spec:\n      containers:\n        - name: manager\n          image: {image}\n"
        )
    }

    fn crd(name: &str, versions: &[(&str, bool)]) -> String {
        let mut s = format!(
            "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: {name}\nspec:\n  versions:\n"
        );
        for (v, served) in versions {
            s.push_str(&format!("    - name: {v}\n      served: {served}\n"));
        }
        s
    }

    /// A manifest shaped like Flux's install.yaml: namespace, CRDs, RBAC, one Deployment per
    /// controller image.
    fn manifest() -> String {
        let mut docs = vec![
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: flux-system\n".to_string(),
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: crd-controller-flux-system\n".to_string(),
            "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: helm-controller\n  namespace: flux-system\n".to_string(),
        ];
        for (name, version) in REQUIRED_APIS {
            docs.push(crd(name, &[("v1beta2", true), (version, true)]));
        }
        for image in FLUX_IMAGES {
            let name = image.name.rsplit('/').next().expect("valid");
            docs.push(deployment(name, &image.tagged()));
        }
        docs.join("---\n")
    }

    fn err(r: Result<VerifiedManifest, FluxError>) -> String {
        r.expect_err("the manifest must be refused").to_string()
    }

    #[test]
    fn the_pinned_release_and_its_images_are_well_formed() {
        assert!(FLUX_VERSION.starts_with("v2."));
        assert_eq!(
            flux_manifest_url(),
            "https://github.com/fluxcd/flux2/releases/download/v2.9.4/install.yaml"
        );
        assert_eq!(FLUX_IMAGES.len(), 7);
        for i in FLUX_IMAGES {
            let hex = i.digest.strip_prefix("sha256:").expect("sha256: prefix");
            assert_eq!(hex.len(), 64, "{}", i.name);
            assert!(hex.bytes().all(|b| b.is_ascii_hexdigit()), "{}", i.name);
            assert!(i.name.starts_with("ghcr.io/fluxcd/"), "{}", i.name);
        }
        let names: BTreeSet<_> = FLUX_IMAGES.iter().map(|i| i.name).collect();
        assert_eq!(names.len(), FLUX_IMAGES.len(), "an image is listed twice");
    }

    #[test]
    fn a_manifest_like_fluxs_passes_with_every_image_pinned_by_digest() {
        let v = verify_install_manifest(&manifest()).expect("verified");
        assert_eq!(v.objects.len(), 3 + REQUIRED_APIS.len() + FLUX_IMAGES.len());
        for c in REQUIRED_CONTROLLERS {
            assert!(v.deployments.iter().any(|d| d == c), "{c}");
        }
        let sc = v
            .objects
            .iter()
            .find(|o| o["metadata"]["name"] == "source-controller")
            .expect("valid");
        assert_eq!(
            sc["spec"]["template"]["spec"]["containers"][0]["image"],
            "ghcr.io/fluxcd/source-controller:v1.9.4@sha256:8a8ed0a57b8b86f561d5a4309a69f65e62f0cebe4de8801593c5ff35a3bc3c23"
        );
    }

    #[test]
    fn an_image_that_is_not_a_pinned_controller_is_refused() {
        let m = manifest().replace(
            "ghcr.io/fluxcd/helm-controller:v1.6.3",
            "ghcr.io/fluxcd/helm-controller:v1.6.4",
        );
        let e = err(verify_install_manifest(&m));
        assert!(e.contains("\"ghcr.io/fluxcd/helm-controller:v1.6.4\" is not one of the v2.9.4 controller images"), "{e}");
        let extra = format!("{}---\n{}", manifest(), deployment("miner", "evil/miner:1"));
        assert!(err(verify_install_manifest(&extra)).contains("evil/miner:1"));
    }

    #[test]
    fn an_image_already_carrying_a_digest_is_refused_rather_than_trusted() {
        let m = manifest().replace(
            "ghcr.io/fluxcd/source-controller:v1.9.4",
            "ghcr.io/fluxcd/source-controller:v1.9.4@sha256:0000000000000000000000000000000000000000000000000000000000000000",
        );
        assert!(err(verify_install_manifest(&m)).contains("is not one of"));
    }

    #[test]
    fn another_release_is_refused_because_a_controller_image_is_missing() {
        let m = manifest().replace(
            &deployment("source-watcher", "ghcr.io/fluxcd/source-watcher:v2.2.3"),
            "",
        );
        let e = err(verify_install_manifest(&m));
        assert!(
            e.contains("no Deployment runs ghcr.io/fluxcd/source-watcher:v2.2.3"),
            "{e}"
        );
    }

    #[test]
    fn kinds_and_namespaces_outside_fluxs_installation_are_refused() {
        let secret =
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: x\n  namespace: flux-system\n";
        let e = err(verify_install_manifest(&format!(
            "{}---\n{secret}",
            manifest()
        )));
        assert!(
            e.contains("Secret/x: Flux's installation has no Secret objects"),
            "{e}"
        );
        let other_ns = manifest().replacen(
            "name: helm-controller\n  namespace: flux-system",
            "name: helm-controller\n  namespace: kube-system",
            1,
        );
        let e = err(verify_install_manifest(&other_ns));
        assert!(
            e.contains("ServiceAccount/helm-controller is in namespace Some(\"kube-system\")"),
            "{e}"
        );
        let ns = manifest().replace("name: flux-system\n---", "name: default\n---");
        assert!(err(verify_install_manifest(&ns)).contains("only the flux-system namespace"));
    }

    #[test]
    fn a_manifest_that_does_not_serve_the_apis_deploy_flux_uses_is_refused() {
        let m = manifest().replace(
            &crd(
                "helmreleases.helm.toolkit.fluxcd.io",
                &[("v1beta2", true), ("v2", true)],
            ),
            &crd(
                "helmreleases.helm.toolkit.fluxcd.io",
                &[("v1beta2", true), ("v2", false)],
            ),
        );
        let e = err(verify_install_manifest(&m));
        assert!(
            e.contains("helmreleases.helm.toolkit.fluxcd.io does not serve v2"),
            "{e}"
        );
    }

    #[test]
    fn text_that_is_not_a_manifest_is_refused() {
        let e = err(verify_install_manifest("kind: [Deployment\n"));
        assert!(e.contains("not YAML"), "{e}");
        // An HTML error page is a YAML string, not an object.
        let e = err(verify_install_manifest("<html>rate limited</html>\n"));
        assert!(e.contains("without kind or metadata.name"), "{e}");
        let e = err(verify_install_manifest("kind: Deployment\n"));
        assert!(e.contains("without kind or metadata.name"), "{e}");
        // An empty body is not Flux either.
        assert!(err(verify_install_manifest("")).contains("no Deployment runs"));
    }

    fn envs(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_plan_installs_flux_then_the_platform_then_each_chosen_environment() {
        let available = envs(&["dev", "prod", "staging"]);
        let plan = plan(&envs(&["dev", "prod"]), &available, None, None).expect("valid");
        assert_eq!(
            plan,
            vec![
                FluxAction::InstallFlux,
                FluxAction::WaitControllers,
                FluxAction::ApplyGitRepository {
                    url: IN_CLUSTER_REPO.into(),
                    revision: "main".into()
                },
                FluxAction::ApplyFile {
                    file: "deploy/flux/bootstrap/platform.yaml".into()
                },
                FluxAction::ApplyEnvironment {
                    env: "dev".into(),
                    image_tag: None
                },
                FluxAction::ApplyEnvironment {
                    env: "prod".into(),
                    image_tag: None
                },
                FluxAction::WaitReady {
                    kustomizations: envs(&[
                        "platform",
                        "gateway-api-crds",
                        "platform-operators",
                        "platform-addons",
                        "platform-manifests",
                        "metrics-app-dev",
                        "metrics-app-prod"
                    ])
                },
            ]
        );
        assert_eq!(
            plan[2].describe(),
            format!("apply deploy/flux/bootstrap/git-repository.yaml ({IN_CLUSTER_REPO} at main)")
        );
        let install = plan[0].describe();
        assert!(
            install.contains("7 controller images pinned by digest"),
            "{install}"
        );
    }

    fn plan_of(names: &[&str], remote: Option<(&str, &str)>, tag: Option<&str>) -> Vec<FluxAction> {
        plan(&envs(names), &envs(names), remote, tag).expect("valid")
    }

    #[test]
    fn an_environment_runs_the_given_tag_through_a_patch_after_its_overlays() {
        let obj = environment_kustomization(DEV_BOOTSTRAP, "dev", None).expect("valid");
        let as_is: serde_yaml_ng::Value = serde_yaml_ng::from_str(DEV_BOOTSTRAP).expect("valid");
        assert_eq!(
            obj,
            serde_json::to_value(as_is).expect("valid"),
            "unchanged"
        );
        let obj = environment_kustomization(DEV_BOOTSTRAP, "dev", Some("3f2a1c0")).expect("valid");
        let patches = obj["spec"]["patches"].as_array().expect("patches");
        let last = patches.last().expect("one");
        assert_eq!(last["target"]["kind"], "HelmRelease");
        // A kustomize regex: metrics-app before the overlay's nameSuffix, metrics-app-dev
        // after it; not redis-ha.
        assert_eq!(last["target"]["name"], "metrics-app.*");
        let ops: Value =
            serde_json::from_str(last["patch"].as_str().expect("text")).expect("JSON patch");
        assert_eq!(
            ops,
            serde_json::json!([{"op": "add", "path": "/spec/values/image/tag", "value": "3f2a1c0"}])
        );
        // The path exists in every overlay's HelmRelease patch (values.image), so `add`
        // replaces the overlay's tag.
        assert_eq!(overlay_image_tag(DEV_OVERLAY).expect("valid"), "dev");
        assert_eq!(overlay_image_tag(PROD_OVERLAY).expect("valid"), "dev");
        assert!(matches!(
            environment_kustomization(DEV_BOOTSTRAP, "dev", Some("a b")),
            Err(FluxError::Usage(_))
        ));
        let e = environment_kustomization(DEV_BOOTSTRAP, "prod", None).expect_err("wrong file");
        assert!(
            e.to_string()
                .contains("expected the Flux Kustomization metrics-app-prod"),
            "{e}"
        );
    }

    #[test]
    fn the_plan_reads_a_remote_repository_when_given() {
        let plan = plan_of(
            &["dev"],
            Some(("https://github.com/you/metrics-app.git", "feature")),
            Some("3f2a1c0"),
        );
        assert_eq!(
            plan[4],
            FluxAction::ApplyEnvironment {
                env: "dev".into(),
                image_tag: Some("3f2a1c0".into())
            }
        );
        assert_eq!(
            plan[4].describe(),
            "apply deploy/flux/bootstrap/metrics-app-dev.yaml (image tag 3f2a1c0, not the overlay's)"
        );
        // In-cluster, the tags are commits: no override even when a tag is given.
        let local = plan_of(&["dev"], None, Some("3f2a1c0"));
        assert_eq!(
            local[4],
            FluxAction::ApplyEnvironment {
                env: "dev".into(),
                image_tag: None
            }
        );
        assert_eq!(
            plan[2],
            FluxAction::ApplyGitRepository {
                url: "https://github.com/you/metrics-app.git".into(),
                revision: "feature".into()
            }
        );
    }

    #[test]
    fn the_plan_refuses_unknown_repeated_or_no_environments_saying_what_to_do() {
        let available = envs(&["dev", "staging"]);
        let e = plan(&envs(&["qa"]), &available, None, None)
            .expect_err("must be refused")
            .to_string();
        assert_eq!(
            e,
            "no Flux environment qa: deploy/flux has dev, staging; add deploy/flux/apps/qa/kustomization.yaml and deploy/flux/bootstrap/metrics-app-qa.yaml"
        );
        let e = plan(&envs(&["dev", "dev"]), &available, None, None)
            .expect_err("must be refused")
            .to_string();
        assert!(e.contains("--env names dev twice"), "{e}");
        let e = plan(&[], &available, None, None)
            .expect_err("must be refused")
            .to_string();
        assert!(e.contains("--env needs at least one"), "{e}");
    }

    #[test]
    fn environments_come_from_the_bootstrap_file_names() {
        let names = [
            "git-repository.yaml",
            "kustomization.yaml",
            "metrics-app-staging.yaml",
            "metrics-app-dev.yaml",
            "metrics-app-.yaml",
            "platform.yaml",
        ];
        assert_eq!(environments_from_files(&names), envs(&["dev", "staging"]));
    }

    #[test]
    fn the_repository_files_match_the_constants() {
        // The bootstrap GitRepository reads the in-cluster repository by default.
        let obj = git_repository(GIT_REPOSITORY_YAML, IN_CLUSTER_REPO, "main").expect("valid");
        let as_is: serde_yaml_ng::Value =
            serde_yaml_ng::from_str(GIT_REPOSITORY_YAML).expect("valid");
        assert_eq!(obj, serde_json::to_value(as_is).expect("valid"));
        // The root builds deploy/flux/platform, whose layers are the ones waited for.
        assert!(PLATFORM_YAML.contains("path: ./deploy/flux/platform"));
        let layers: Vec<String> = serde_yaml_ng::Deserializer::from_str(LAYERS_YAML)
            .map(|d| {
                let v: serde_yaml_ng::Value = serde::Deserialize::deserialize(d).expect("valid");
                v["metadata"]["name"].as_str().expect("valid").to_string()
            })
            .collect();
        assert_eq!(layers, PLATFORM_KUSTOMIZATIONS[1..]);
        assert!(DEV_BOOTSTRAP.contains("name: metrics-app-dev\n"));
        assert!(DEV_BOOTSTRAP.contains("path: ./deploy/flux/apps/dev\n"));
        assert_eq!(overlay_image_tag(DEV_OVERLAY).expect("valid"), "dev");
    }

    #[test]
    fn the_git_server_admits_fluxs_source_controller_on_the_port_argocd_uses() {
        const GIT_SERVER_YAML: &str = include_str!("../../../../deploy/bootstrap/git-server.yaml");
        let policy: serde_json::Value = serde_yaml_ng::Deserializer::from_str(GIT_SERVER_YAML)
            .map(|d| {
                let v: serde_yaml_ng::Value = serde::Deserialize::deserialize(d).expect("valid");
                serde_json::to_value(v).expect("valid")
            })
            .find(|v| v["kind"] == "NetworkPolicy")
            .expect("git-server.yaml has a NetworkPolicy");
        let rule = &policy["spec"]["ingress"][0];
        let flux = rule["from"]
            .as_array()
            .expect("peers")
            .iter()
            .find(|p| {
                p["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
                    == FLUX_NAMESPACE
            })
            .expect("a peer in Flux's namespace");
        // Only the source-controller (it fetches), on the port ArgoCD uses.
        assert_eq!(
            flux["podSelector"]["matchLabels"]["app"],
            "source-controller"
        );
        assert_eq!(rule["ports"][0]["port"], "http");
    }

    #[test]
    fn git_refs_are_commits_full_ref_names_or_branches() {
        let sha = "3F2A1C04B5D6E7F8091A2B3C4D5E6F708192A3B4";
        assert_eq!(
            git_ref(sha),
            serde_json::json!({"commit": sha.to_ascii_lowercase()})
        );
        assert_eq!(
            git_ref("refs/tags/v1.0.0"),
            serde_json::json!({"name": "refs/tags/v1.0.0"})
        );
        assert_eq!(git_ref("main"), serde_json::json!({"branch": "main"}));
        assert_eq!(git_ref("3f2a1c"), serde_json::json!({"branch": "3f2a1c"}));
    }

    #[test]
    fn the_git_repository_takes_a_remote_url_and_revision_and_refuses_bad_ones() {
        let obj = git_repository(
            GIT_REPOSITORY_YAML,
            "https://example.com/r.git",
            "refs/tags/v2",
        )
        .expect("valid");
        assert_eq!(obj["spec"]["url"], "https://example.com/r.git");
        assert_eq!(
            obj["spec"]["ref"],
            serde_json::json!({"name": "refs/tags/v2"})
        );
        assert_eq!(
            obj["spec"]["interval"], "1m",
            "the rest of the file is kept"
        );
        let e = git_repository(GIT_REPOSITORY_YAML, "git@github.com:you/r.git", "main")
            .expect_err("must be refused");
        assert!(
            e.to_string()
                .contains("Flux needs an http(s):// or ssh:// URL"),
            "{e}"
        );
        assert!(git_repository(GIT_REPOSITORY_YAML, IN_CLUSTER_REPO, " ").is_err());
        let e =
            git_repository(PLATFORM_YAML, IN_CLUSTER_REPO, "main").expect_err("must be refused");
        assert!(
            e.to_string()
                .contains("expected the GitRepository metrics-app"),
            "{e}"
        );
    }

    #[test]
    fn an_overlays_image_tag_is_one_line_changed_and_comments_survive() {
        let out = set_overlay_image_tag(DEV_OVERLAY, "dev", "3f2a1c04b5d6").expect("valid");
        assert_eq!(overlay_image_tag(&out).expect("valid"), "3f2a1c04b5d6");
        let changed: Vec<(&str, &str)> = DEV_OVERLAY
            .lines()
            .zip(out.lines())
            .filter(|(a, b)| a != b)
            .collect();
        assert_eq!(changed.len(), 1, "{changed:?}");
        assert_eq!(changed[0].1.trim(), "tag: \"3f2a1c04b5d6\"");
        assert_eq!(DEV_OVERLAY.lines().count(), out.lines().count());
        // prod's overlay also patches redis-ha: still exactly the one image tag.
        let out = set_overlay_image_tag(PROD_OVERLAY, "prod", "3f2a1c04b5d6").expect("valid");
        assert_eq!(overlay_image_tag(&out).expect("valid"), "3f2a1c04b5d6");
        // Numeric-looking tags stay strings.
        let out = set_overlay_image_tag(DEV_OVERLAY, "dev", "1234").expect("valid");
        assert_eq!(overlay_image_tag(&out).expect("valid"), "1234");
    }

    #[test]
    fn bad_tags_and_overlays_without_one_tag_line_are_refused() {
        for tag in ["", "-x", "a b", "a:b", &"x".repeat(129)] {
            let e = set_overlay_image_tag(DEV_OVERLAY, "dev", tag).expect_err("must be refused");
            assert!(matches!(e, FluxError::Usage(_)), "{tag:?}: {e}");
        }
        let two = format!("{DEV_OVERLAY}tag: old\n");
        let e = set_overlay_image_tag(&two, "dev", "x")
            .expect_err("must be refused")
            .to_string();
        assert!(
            e.starts_with(
                "deploy/flux/apps/dev/kustomization.yaml: expected exactly one `tag:` line"
            ),
            "{e}"
        );
        // A tag line that is not the HelmRelease's image tag.
        let wrong = "patches:\n  - patch: |-\n      kind: HelmRelease\n      spec:\n        values:\n          redis:\n            tag: x\n";
        let e = set_overlay_image_tag(wrong, "dev", "y")
            .expect_err("must be refused")
            .to_string();
        assert!(e.contains("found 0"), "{e}");
    }
}
