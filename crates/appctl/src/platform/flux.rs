//! `appctl up --gitops flux`: Flux instead of ArgoCD as the GitOps engine, the pure part —
//! which Flux, how its install manifest is checked before anything is applied, and the
//! ordered actions that bring the platform up from `deploy/flux/` (docs/gitops-engines.md).
//!
//! - [`FLUX_VERSION`], [`flux_manifest_url`], [`FLUX_IMAGES`]: the pinned release.
//! - [`verify_install_manifest`]: the downloaded manifest, checked and made content-addressed
//!   (module `manifest`).
//! - [`plan`]: the actions, as data, for the chosen environments.
//! - [`git_repository`], [`set_overlay_image_tag`]: the two edits appctl makes to
//!   `deploy/flux` files (where Flux reads this repository; an environment's image; module
//!   `edits`).
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

mod edits;
mod manifest;
#[cfg(test)]
mod tests;

use std::collections::BTreeSet;

pub use edits::*;
pub use manifest::*;

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
