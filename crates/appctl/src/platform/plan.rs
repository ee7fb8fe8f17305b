//! The plan of `appctl up`: an ordered list of steps computed by a pure function from what was
//! observed (tools, cluster, platform) and the options. Every step says why it runs or why it
//! is skipped, so `--dry-run` explains itself and a second `up` shows only skips and checks.
//! With `--gitops flux` the GitOps engine's steps are Flux's ([`super::flux`]); the cluster,
//! image, secret backend, push and image commit are the same for both engines.

use serde::Serialize;

use super::flux::{self, FluxAction};

/// The GitOps engine `up` installs and hands the platform to (`--gitops`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum GitOps {
    /// ArgoCD: the root Application of deploy/argocd (app of apps).
    #[default]
    #[value(name = "argocd")]
    ArgoCd,
    /// Flux: the GitRepository and Kustomizations of deploy/flux.
    Flux,
}

impl GitOps {
    /// The engine's name, as people write it.
    pub fn name(self) -> &'static str {
        match self {
            Self::ArgoCd => "ArgoCD",
            Self::Flux => "Flux",
        }
    }
}

/// A command-line tool appctl needs, as found on this machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum Tool {
    /// Found, with this version.
    Present {
        /// Parsed version, e.g. `0.29.0`.
        version: String,
    },
    /// Not on PATH.
    Missing,
    /// Found but not usable (e.g. the Docker daemon is not reachable).
    Broken {
        /// What is wrong.
        reason: String,
    },
}

/// State of one ArgoCD Application.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AppState {
    /// Application name.
    pub name: String,
    /// `Synced`, `OutOfSync`, `Unknown`.
    pub sync: String,
    /// `Healthy`, `Progressing`, `Degraded`, `Missing`, …
    pub health: String,
    /// Revision last synced.
    pub revision: String,
}

impl AppState {
    /// Synced and Healthy.
    pub fn is_ready(&self) -> bool {
        self.sync == "Synced" && self.health == "Healthy"
    }
}

/// What the root Application points at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RootApp {
    /// Repository URL.
    pub repo_url: String,
    /// Revision.
    pub revision: String,
    /// Its Helm parameters (name, value), as [`root_parameters`] makes them.
    pub parameters: Vec<(String, String)>,
    /// Automated sync on (off after `appctl rollback`).
    pub auto_sync: bool,
}

/// The root Application's Helm parameters: where ArgoCD reads the repository, which
/// environments run (`environments` lists every environment of the file, in order, with
/// whether `--env` selected it), and — for a remote repository only, where appctl commits
/// nothing — the image tag of each selected environment. With the in-cluster repository the
/// images are commits ([`super::environments`]), which a parameter would override.
pub fn root_parameters(
    repo_url: &str,
    revision: &str,
    environments: &[(String, bool)],
    remote_tag: Option<&str>,
) -> Vec<(String, String)> {
    let mut p = vec![
        ("repoURL".to_string(), repo_url.to_string()),
        ("targetRevision".to_string(), revision.to_string()),
    ];
    for (env, enabled) in environments {
        p.push((format!("environments.{env}.enabled"), enabled.to_string()));
    }
    if let Some(tag) = remote_tag {
        for (env, _) in environments.iter().filter(|(_, on)| *on) {
            p.push((format!("environments.{env}.image.tag"), tag.to_string()));
        }
    }
    p
}

/// What OpenBao (the secret backend) says, asked through a port-forward with the token from
/// Secret `openbao/openbao-token` for the app's password. The synced Kubernetes Secret is not
/// evidence: External Secrets keeps it after OpenBao (dev mode, in memory) lost its data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum Backend {
    /// OpenBao answered with the password.
    PasswordPresent,
    /// OpenBao accepted the token but has no password: it restarted (dev mode keeps
    /// everything in memory) or the password was never written.
    PasswordMissing,
    /// OpenBao refused the token: it runs with a root token that is no longer the one in
    /// Secret `openbao-token` (that Secret was lost and recreated).
    TokenRejected,
    /// OpenBao runs, but Secret `openbao/openbao-token` with its root token is gone.
    RunningWithoutToken,
    /// Nothing to ask: OpenBao is not installed or not ready, or did not answer.
    NotRunning {
        /// Why, e.g. `no ready pod app.kubernetes.io/name=openbao`.
        reason: String,
    },
}

impl Backend {
    /// From the status code of OpenBao's answer to a KV v2 read of the password.
    pub fn from_kv_status(status: u16) -> Self {
        match status {
            200 => Self::PasswordPresent,
            404 => Self::PasswordMissing,
            401 | 403 => Self::TokenRejected,
            other => Self::NotRunning {
                reason: format!("OpenBao answered {other}"),
            },
        }
    }
}

/// Everything `up` looks at before acting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Observed {
    /// `docker` and its daemon.
    pub docker: Tool,
    /// `kind`.
    pub kind: Tool,
    /// `kubectl` (for the user's follow-up commands; appctl talks to the API itself).
    pub kubectl: Tool,
    /// `git`.
    pub git: Tool,
    /// The kind cluster exists.
    pub cluster_exists: bool,
    /// The image tag is already loaded into the node.
    pub image_loaded: bool,
    /// ArgoCD's CRDs and server are installed.
    pub argocd_installed: bool,
    /// Flux's controllers ([`flux::REQUIRED_CONTROLLERS`]) are installed.
    pub flux_installed: bool,
    /// The in-cluster git server (deploy/bootstrap/git-server.yaml) is applied.
    pub git_server_applied: bool,
    /// The bootstrap manifests (git server, ArgoCD UI service) are applied.
    pub bootstrap_applied: bool,
    /// Digest of deploy/bootstrap when appctl last applied it (ConfigMap
    /// `gitops/appctl-state`, key `bootstrap-sha256`).
    pub bootstrap_digest: Option<String>,
    /// The secret backend's token Secrets exist in `openbao` and `external-secrets` and agree.
    pub backend_token_present: bool,
    /// Commit the in-cluster git server has on `main`, if reachable.
    pub git_server_revision: Option<String>,
    /// Image tag appctl last committed for the first environment (dev) in the in-cluster
    /// repository (ConfigMap `gitops/appctl-state`, key `deployed-image`).
    pub deployed_image: Option<String>,
    /// What OpenBao says about the password and the token.
    pub backend: Backend,
    /// The root Application, if it exists.
    pub root_app: Option<RootApp>,
    /// Every Application's state.
    pub apps: Vec<AppState>,
}

impl Observed {
    /// A machine with nothing installed and no cluster.
    pub fn nothing() -> Self {
        Self {
            docker: Tool::Missing,
            kind: Tool::Missing,
            kubectl: Tool::Missing,
            git: Tool::Missing,
            cluster_exists: false,
            image_loaded: false,
            argocd_installed: false,
            flux_installed: false,
            git_server_applied: false,
            bootstrap_applied: false,
            bootstrap_digest: None,
            backend_token_present: false,
            git_server_revision: None,
            deployed_image: None,
            backend: Backend::NotRunning {
                reason: "no cluster".into(),
            },
            root_app: None,
            apps: Vec::new(),
        }
    }
}

/// Where ArgoCD reads the manifests from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Source {
    /// This checkout, pushed to the in-cluster git server.
    Local {
        /// The commit pushed (HEAD of the checkout).
        commit: String,
    },
    /// A remote repository (`--repo-url`, `--revision`): nothing is pushed.
    Remote {
        /// Repository URL.
        url: String,
        /// Branch, tag or commit.
        revision: String,
    },
}

/// What the user asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UpOptions {
    /// Image tag: the git commit, `-dirty` for uncommitted changes.
    pub image_tag: String,
    /// Manifest source.
    pub source: Source,
    /// Digest of the deploy/bootstrap files the engine applies, in this checkout (every one
    /// for ArgoCD, git-server.yaml for Flux).
    pub bootstrap_digest: String,
    /// The GitOps engine.
    pub gitops: GitOps,
    /// Every environment of deploy/argocd/values.yaml, in order, and whether `--env` selects
    /// it; the first one is where `up` deploys the image it built.
    pub environments: Vec<(String, bool)>,
}

/// Repository URL of the in-cluster git server (docs/platform-contract.md).
pub const IN_CLUSTER_REPO: &str =
    "http://git-server.gitops.svc.cluster.local/appctl/metrics-app.git";

/// One thing `up` does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Action {
    /// `kind create cluster --config deploy/kind/cluster.yaml`.
    CreateCluster,
    /// `docker build` of the metrics-app image.
    BuildImage {
        /// Tag.
        tag: String,
    },
    /// `kind load docker-image`.
    LoadImage {
        /// Tag.
        tag: String,
    },
    /// ArgoCD's pinned install manifest, server-side applied.
    InstallArgoCd,
    /// deploy/bootstrap/*.yaml: the git server, the ArgoCD UI NodePort, ArgoCD settings.
    ApplyBootstrap,
    /// Secret `openbao-token` in `openbao` and `external-secrets`.
    CreateBackendToken,
    /// Restart OpenBao so it runs with the token in Secret `openbao-token` (dev mode: it
    /// starts empty, so the password is written again after it).
    RestartSecretBackend,
    /// `git push` of the checkout to the in-cluster git server.
    PushCheckout {
        /// Commit pushed.
        commit: String,
    },
    /// A commit in the in-cluster repository: the first environment runs the image built,
    /// the others keep theirs ([`super::environments::plan_deploy`]).
    CommitImage {
        /// The environment (dev).
        env: String,
        /// Image tag.
        tag: String,
    },
    /// The root Application, pointing at the source, with the selected environments.
    ApplyRootApp {
        /// Repository URL.
        repo_url: String,
        /// Revision.
        revision: String,
        /// Helm parameters ([`root_parameters`]).
        parameters: Vec<(String, String)>,
    },
    /// PASSWORD into OpenBao (once OpenBao runs).
    WritePassword,
    /// Wait until every Application is Synced and Healthy.
    WaitSynced,
    /// `GET http://metrics-app.localtest.me/counter` through the gateway.
    CheckGateway,
    /// deploy/bootstrap/git-server.yaml only (`--gitops flux`: the other bootstrap files
    /// configure ArgoCD).
    ApplyGitServer,
    /// A step of Flux's ([`flux::actions`]): install, wait for the controllers, apply the
    /// GitRepository and Kustomizations, wait for them to be Ready.
    Flux(FluxAction),
}

/// A step: the action, whether it runs, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    /// What.
    #[serde(flatten)]
    pub action: Action,
    /// False when the observed state already has it.
    pub run: bool,
    /// Why it runs or is skipped.
    pub reason: String,
}

/// A prerequisite that stops `up` before it changes anything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Missing {
    /// The tool.
    pub tool: &'static str,
    /// What is wrong.
    pub problem: String,
    /// How to fix it.
    pub fix: &'static str,
}

/// Oldest kind release whose node images and config this project uses.
pub const MIN_KIND: (u64, u64) = (0, 29);
/// Oldest kubectl minor supported against the 1.33 cluster (one minor of skew).
pub const MIN_KUBECTL: (u64, u64) = (1, 32);

/// `major.minor` of a version string like `0.29.0` or `v1.33.1`.
pub fn major_minor(version: &str) -> Option<(u64, u64)> {
    let v = version.trim().trim_start_matches('v');
    let mut it = v.split(['.', '-', '+']);
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

/// Checks the tools; every problem is reported at once.
pub fn prerequisites(o: &Observed) -> Vec<Missing> {
    let mut out = Vec::new();
    let mut check = |tool: &'static str,
                     state: &Tool,
                     min: Option<(u64, u64)>,
                     fix: &'static str| {
        match state {
            Tool::Missing => out.push(Missing {
                tool,
                problem: "not found on PATH".into(),
                fix,
            }),
            Tool::Broken { reason } => out.push(Missing {
                tool,
                problem: reason.clone(),
                fix,
            }),
            Tool::Present { version } => {
                if let Some(min) = min
                    && major_minor(version).is_none_or(|v| v < min)
                {
                    out.push(Missing {
                        tool,
                        problem: format!("version {version} is older than {}.{}", min.0, min.1),
                        fix,
                    });
                }
            }
        }
    };
    check(
        "docker",
        &o.docker,
        None,
        "install Docker Engine or Docker Desktop and start it (https://docs.docker.com/engine/install/)",
    );
    check(
        "kind",
        &o.kind,
        Some(MIN_KIND),
        "install kind v0.29 or newer (https://kind.sigs.k8s.io/docs/user/quick-start/#installation)",
    );
    check(
        "kubectl",
        &o.kubectl,
        Some(MIN_KUBECTL),
        "install kubectl 1.32 or newer (https://kubernetes.io/docs/tasks/tools/)",
    );
    check(
        "git",
        &o.git,
        None,
        "install git (https://git-scm.com/downloads)",
    );
    out
}

/// Why `up --gitops gitops` refuses this cluster: the other engine runs there, and two
/// engines would fight over the same objects. `None`: go ahead.
pub fn engine_conflict(o: &Observed, gitops: GitOps) -> Option<String> {
    let other = match gitops {
        GitOps::ArgoCd if o.flux_installed => GitOps::Flux,
        GitOps::Flux if o.argocd_installed => GitOps::ArgoCd,
        _ => return None,
    };
    let flag = match other {
        GitOps::ArgoCd => "argocd",
        GitOps::Flux => "flux",
    };
    Some(format!(
        "the cluster runs {} and --gitops chose {}: keep it with `appctl up --gitops {flag}`, \
         or delete the cluster (`appctl down --yes`) and run `appctl up` again",
        other.name(),
        gitops.name()
    ))
}

/// Computes the ordered steps of `up`, or the missing prerequisites (nothing is done then).
pub fn plan(o: &Observed, opts: &UpOptions) -> Result<Vec<Step>, Vec<Missing>> {
    let missing = prerequisites(o);
    if !missing.is_empty() {
        return Err(missing);
    }
    Ok(steps(o, opts))
}

/// The ordered steps of `up` whatever the prerequisites say: what `--dry-run` shows, next to
/// the missing prerequisites a real run would stop on.
pub fn steps(o: &Observed, opts: &UpOptions) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut step = |action: Action, run: bool, reason: &str| {
        steps.push(Step {
            action,
            run,
            reason: reason.to_string(),
        })
    };
    let fresh = !o.cluster_exists;
    step(
        Action::CreateCluster,
        fresh,
        if fresh {
            "no kind cluster named metrics-app"
        } else {
            "cluster exists, skipping"
        },
    );
    let tag = opts.image_tag.clone();
    let loaded = o.image_loaded && !fresh;
    step(
        Action::BuildImage { tag: tag.clone() },
        !loaded,
        if loaded {
            "image already in the node, skipping"
        } else {
            "image tag not in the node yet"
        },
    );
    step(
        Action::LoadImage { tag: tag.clone() },
        !loaded,
        if loaded {
            "image already in the node, skipping"
        } else {
            "the node pulls nothing: images are loaded"
        },
    );
    let remote = match &opts.source {
        Source::Local { .. } => None,
        Source::Remote { url, revision } => Some((url.as_str(), revision.as_str())),
    };
    // With a remote repository nothing is committed: the built image is an override, as the
    // root Application's parameters are for ArgoCD.
    let selected: Vec<String> = opts
        .environments
        .iter()
        .filter(|(_, on)| *on)
        .map(|(e, _)| e.clone())
        .collect();
    // Flux's steps: install and wait for the controllers; apply the GitRepository, the
    // platform and each environment; wait for them to be Ready (always five or more).
    let flux_plan = flux::actions(&selected, remote, Some(opts.image_tag.as_str()));
    let (flux_install, rest) = flux_plan.split_at(2);
    let (flux_applies, flux_wait) = rest.split_at(rest.len() - 1);
    let engine_installed = match opts.gitops {
        GitOps::ArgoCd => {
            install_argocd(o, opts, fresh, &mut step);
            o.argocd_installed
        }
        GitOps::Flux => {
            install_flux(o, opts, fresh, flux_install, &mut step);
            o.flux_installed
        }
    };
    let token = o.backend_token_present && !fresh;
    step(
        Action::CreateBackendToken,
        !token,
        if token {
            "secret backend token present, skipping"
        } else if fresh || !engine_installed {
            "secret backend token missing (generated, never written to git or disk)"
        } else {
            "secret backend token lost or the two copies differ: a new one (generated, never written to git or disk)"
        },
    );
    let backend_runs = !fresh && !matches!(o.backend, Backend::NotRunning { .. });
    let rejected = !fresh && o.backend == Backend::TokenRejected;
    let restart = backend_runs && (!token || rejected);
    step(
        Action::RestartSecretBackend,
        restart,
        if rejected {
            "OpenBao rejects the token in Secret openbao-token (its root token was lost): restarting it with that token"
        } else if restart {
            "OpenBao runs with the lost token: restarting it with the new one"
        } else if backend_runs {
            "OpenBao accepts the token, skipping"
        } else {
            "OpenBao not running yet, nothing to restart"
        },
    );
    let first_env = opts
        .environments
        .first()
        .map(|(e, _)| e.clone())
        .unwrap_or_else(|| "dev".into());
    let (repo_url, revision, remote_tag) = match &opts.source {
        Source::Local { commit } => {
            let pushed = o.git_server_revision.as_deref() == Some(commit.as_str()) && !fresh;
            step(
                Action::PushCheckout {
                    commit: commit.clone(),
                },
                !pushed,
                if pushed {
                    "git server already has this commit, skipping"
                } else {
                    "git server does not have this commit"
                },
            );
            let deployed = !fresh && pushed && o.deployed_image.as_deref() == Some(tag.as_str());
            step(
                Action::CommitImage {
                    env: first_env.clone(),
                    tag: tag.clone(),
                },
                !deployed,
                if deployed {
                    "the git server's environments already name this image, skipping"
                } else if !pushed {
                    "the push replaces the git server's history: images committed again (this one for dev, the others kept)"
                } else {
                    "the git server's environments name another image"
                },
            );
            (IN_CLUSTER_REPO.to_string(), "main".to_string(), None)
        }
        Source::Remote { url, revision } => (url.clone(), revision.clone(), Some(tag.as_str())),
    };
    let root_ok = match opts.gitops {
        GitOps::ArgoCd => {
            apply_root_app(o, opts, fresh, (repo_url, revision, remote_tag), &mut step)
        }
        GitOps::Flux => {
            for a in flux_applies {
                step(
                    Action::Flux(a.clone()),
                    true,
                    "server-side apply: unchanged objects stay as they are",
                );
            }
            false
        }
    };
    let pw = !fresh && !restart && o.backend == Backend::PasswordPresent;
    step(
        Action::WritePassword,
        !pw,
        match &o.backend {
            _ if pw => "password present in OpenBao, skipping",
            _ if restart => "OpenBao restarts empty (dev mode): writing the password again",
            Backend::PasswordMissing => {
                "password lost from OpenBao (dev mode keeps it in memory, gone after a restart): writing it again"
            }
            _ => "password not in OpenBao yet: written once OpenBao runs",
        },
    );
    match opts.gitops {
        GitOps::ArgoCd => {
            let all_ready = !o.apps.is_empty() && o.apps.iter().all(AppState::is_ready) && root_ok;
            step(
                Action::WaitSynced,
                true,
                if all_ready {
                    "every Application Synced and Healthy: verifying"
                } else {
                    "waiting for every Application to be Synced and Healthy"
                },
            );
        }
        GitOps::Flux => {
            for a in flux_wait {
                step(
                    Action::Flux(a.clone()),
                    true,
                    "waiting for the platform and each environment to be Ready, in order",
                );
            }
        }
    }
    step(
        Action::CheckGateway,
        true,
        "/counter must answer through the gateway",
    );
    steps
}

/// ArgoCD and deploy/bootstrap, unless present.
fn install_argocd(
    o: &Observed,
    opts: &UpOptions,
    fresh: bool,
    step: &mut impl FnMut(Action, bool, &str),
) {
    let argocd = o.argocd_installed && !fresh;
    step(
        Action::InstallArgoCd,
        !argocd,
        if argocd {
            "ArgoCD installed, skipping"
        } else {
            "ArgoCD not installed"
        },
    );
    let present = o.bootstrap_applied && !fresh;
    let boot = present && o.bootstrap_digest.as_deref() == Some(opts.bootstrap_digest.as_str());
    step(
        Action::ApplyBootstrap,
        !boot,
        if boot {
            "git server and ArgoCD UI service present, skipping"
        } else if present {
            "deploy/bootstrap changed since appctl applied it"
        } else {
            "git server and ArgoCD UI service missing"
        },
    );
}

/// Flux (the first two of `actions`: install, wait for the controllers) and the git server,
/// unless present.
fn install_flux(
    o: &Observed,
    opts: &UpOptions,
    fresh: bool,
    actions: &[FluxAction],
    step: &mut impl FnMut(Action, bool, &str),
) {
    let installed = o.flux_installed && !fresh;
    for a in actions {
        let (run, reason) = match a {
            FluxAction::InstallFlux if installed => (false, "Flux installed, skipping"),
            FluxAction::InstallFlux => (
                true,
                "Flux not installed (install manifest checked: kinds, namespace, images pinned by digest)",
            ),
            _ if installed => (true, "Flux installed: verifying its CRDs and controllers"),
            _ => (true, "the Kustomizations need Flux's CRDs and controllers"),
        };
        step(Action::Flux(a.clone()), run, reason);
    }
    let present = o.git_server_applied && !fresh;
    let same = present && o.bootstrap_digest.as_deref() == Some(opts.bootstrap_digest.as_str());
    step(
        Action::ApplyGitServer,
        !same,
        if same {
            "git server present, skipping"
        } else if present {
            "deploy/bootstrap/git-server.yaml changed since appctl applied it"
        } else {
            "git server missing (the rest of deploy/bootstrap configures ArgoCD)"
        },
    );
}

/// The root Application for `target` (repository URL, revision, remote image tag), unless it
/// is there with automated sync on; returns whether it was.
fn apply_root_app(
    o: &Observed,
    opts: &UpOptions,
    fresh: bool,
    (repo_url, revision, remote_tag): (String, String, Option<&str>),
    step: &mut impl FnMut(Action, bool, &str),
) -> bool {
    let parameters = root_parameters(&repo_url, &revision, &opts.environments, remote_tag);
    let same_target = o.root_app.as_ref().is_some_and(|r| {
        r.repo_url == repo_url && r.revision == revision && {
            let (mut a, mut b) = (r.parameters.clone(), parameters.clone());
            a.sort();
            b.sort();
            a == b
        }
    }) && !fresh;
    let auto_sync = o.root_app.as_ref().is_some_and(|r| r.auto_sync);
    let root_ok = same_target && auto_sync;
    step(
        Action::ApplyRootApp {
            repo_url,
            revision,
            parameters,
        },
        !root_ok,
        if root_ok {
            "root Application up to date, skipping"
        } else if same_target {
            "root Application has automated sync off (after a rollback): re-enabling"
        } else if o.root_app.is_some() {
            "root Application points elsewhere or selects other environments: updating"
        } else {
            "root Application missing"
        },
    );
    root_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tools() -> Observed {
        Observed {
            docker: Tool::Present {
                version: "27.3.1".into(),
            },
            kind: Tool::Present {
                version: "0.29.0".into(),
            },
            kubectl: Tool::Present {
                version: "v1.33.1".into(),
            },
            git: Tool::Present {
                version: "2.47.3".into(),
            },
            ..Observed::nothing()
        }
    }

    fn envs(selected: &[&str]) -> Vec<(String, bool)> {
        ["dev", "staging", "prod"]
            .iter()
            .map(|e| (e.to_string(), selected.contains(e)))
            .collect()
    }

    fn local() -> UpOptions {
        UpOptions {
            image_tag: "3f2a1c0".into(),
            source: Source::Local {
                commit: "3f2a1c0".into(),
            },
            bootstrap_digest: "b1".into(),
            gitops: GitOps::ArgoCd,
            environments: envs(&["dev"]),
        }
    }

    fn running(steps: &[Step]) -> Vec<&Action> {
        steps.iter().filter(|s| s.run).map(|s| &s.action).collect()
    }

    #[test]
    fn fresh_machine_runs_every_step_in_order() {
        let steps = plan(&tools(), &local()).expect("plan");
        assert!(
            steps
                .iter()
                .all(|s| s.run != (s.action == Action::RestartSecretBackend)),
            "everything runs but the restart of an OpenBao that does not exist yet: {steps:#?}"
        );
        let names: Vec<String> = steps
            .iter()
            .map(|s| {
                format!("{:?}", s.action)
                    .split([' ', '{'])
                    .next()
                    .unwrap_or_default()
                    .to_string()
            })
            .collect();
        assert_eq!(
            names,
            [
                "CreateCluster",
                "BuildImage",
                "LoadImage",
                "InstallArgoCd",
                "ApplyBootstrap",
                "CreateBackendToken",
                "RestartSecretBackend",
                "PushCheckout",
                "CommitImage",
                "ApplyRootApp",
                "WritePassword",
                "WaitSynced",
                "CheckGateway"
            ]
        );
    }

    fn everything_up() -> Observed {
        Observed {
            cluster_exists: true,
            image_loaded: true,
            argocd_installed: true,
            bootstrap_applied: true,
            bootstrap_digest: Some("b1".into()),
            backend_token_present: true,
            git_server_revision: Some("3f2a1c0".into()),
            deployed_image: Some("3f2a1c0".into()),
            backend: Backend::PasswordPresent,
            root_app: Some(RootApp {
                repo_url: IN_CLUSTER_REPO.into(),
                revision: "main".into(),
                parameters: root_parameters(IN_CLUSTER_REPO, "main", &envs(&["dev"]), None),
                auto_sync: true,
            }),
            apps: vec![AppState {
                name: "metrics-app".into(),
                sync: "Synced".into(),
                health: "Healthy".into(),
                revision: "3f2a1c0".into(),
            }],
            ..tools()
        }
    }

    #[test]
    fn second_up_only_verifies() {
        let steps = plan(&everything_up(), &local()).expect("plan");
        assert_eq!(
            running(&steps),
            vec![&Action::WaitSynced, &Action::CheckGateway]
        );
        assert!(steps[0].reason.contains("cluster exists, skipping"));
    }

    #[test]
    fn existing_cluster_with_a_new_commit_builds_pushes_and_updates_the_root_app() {
        let mut o = everything_up();
        o.image_loaded = false;
        let opts = UpOptions {
            image_tag: "9b8c7d6-dirty".into(),
            source: Source::Local {
                commit: "9b8c7d6".into(),
            },
            bootstrap_digest: "b1".into(),
            gitops: GitOps::ArgoCd,
            environments: envs(&["dev"]),
        };
        let steps = plan(&o, &opts).expect("plan");
        let run = running(&steps);
        assert!(run.contains(&&Action::BuildImage {
            tag: "9b8c7d6-dirty".into()
        }));
        assert!(run.contains(&&Action::PushCheckout {
            commit: "9b8c7d6".into()
        }));
        // The force push replaces the history: dev's new image and the others' are committed.
        let commit = step(
            &steps,
            &Action::CommitImage {
                env: "dev".into(),
                tag: "9b8c7d6-dirty".into(),
            },
        );
        assert!(
            commit.run && commit.reason.contains("replaces"),
            "{commit:?}"
        );
        assert!(!run.contains(&&Action::CreateCluster) && !run.contains(&&Action::InstallArgoCd));
        // Same commit, uncommitted changes: nothing to push, but dev's image changes.
        let opts = UpOptions {
            image_tag: "3f2a1c0-dirty".into(),
            ..local()
        };
        let mut o = everything_up();
        o.image_loaded = false;
        let steps = plan(&o, &opts).expect("plan");
        assert_eq!(
            running(&steps),
            vec![
                &Action::BuildImage {
                    tag: "3f2a1c0-dirty".into()
                },
                &Action::LoadImage {
                    tag: "3f2a1c0-dirty".into()
                },
                &Action::CommitImage {
                    env: "dev".into(),
                    tag: "3f2a1c0-dirty".into()
                },
                &Action::WaitSynced,
                &Action::CheckGateway
            ]
        );
    }

    #[test]
    fn selecting_other_environments_updates_the_root_application_only() {
        let opts = UpOptions {
            environments: envs(&["dev", "prod"]),
            ..local()
        };
        let steps = plan(&everything_up(), &opts).expect("plan");
        let root = steps
            .iter()
            .find(|s| matches!(s.action, Action::ApplyRootApp { .. }))
            .expect("root step");
        assert!(
            root.run && root.reason.contains("other environments"),
            "{root:?}"
        );
        assert_eq!(
            running(&steps).len(),
            3,
            "root app, wait and check: {steps:#?}"
        );
        let Action::ApplyRootApp { parameters, .. } = &root.action else {
            unreachable!()
        };
        let enabled: Vec<&str> = parameters
            .iter()
            .filter(|(k, v)| k.ends_with(".enabled") && v == "true")
            .map(|(k, _)| k.as_str())
            .collect();
        assert_eq!(
            enabled,
            ["environments.dev.enabled", "environments.prod.enabled"]
        );
        assert!(
            parameters
                .iter()
                .any(|(k, v)| k == "environments.staging.enabled" && v == "false")
        );
        assert!(
            !parameters.iter().any(|(k, _)| k.contains("image")),
            "in-cluster repository: images are commits, not parameters"
        );
    }

    fn step<'a>(steps: &'a [Step], action: &Action) -> &'a Step {
        steps
            .iter()
            .find(|s| &s.action == action)
            .expect("the step is planned")
    }

    #[test]
    fn partly_synced_platform_waits_and_rewrites_a_password_openbao_lost() {
        // OpenBao restarted (dev mode): the synced Kubernetes Secret is still there, but
        // OpenBao answers 404 for the password.
        let mut o = everything_up();
        o.backend = Backend::from_kv_status(404);
        o.apps[0].health = "Progressing".into();
        let steps = plan(&o, &local()).expect("plan");
        assert_eq!(
            running(&steps),
            vec![
                &Action::WritePassword,
                &Action::WaitSynced,
                &Action::CheckGateway
            ]
        );
        assert!(
            step(&steps, &Action::WritePassword)
                .reason
                .contains("password lost from OpenBao")
        );
        assert!(
            step(&steps, &Action::WaitSynced)
                .reason
                .starts_with("waiting")
        );
    }

    #[test]
    fn a_lost_openbao_root_token_restarts_openbao_and_writes_the_password_again() {
        // The token Secret was deleted: a new token is made, OpenBao (still running with the
        // old one) is restarted with it, and the password written into the empty OpenBao.
        let mut o = everything_up();
        o.backend_token_present = false;
        let steps = plan(&o, &local()).expect("plan");
        assert_eq!(
            running(&steps)[..3],
            [
                &Action::CreateBackendToken,
                &Action::RestartSecretBackend,
                &Action::WritePassword
            ]
        );
        assert!(
            step(&steps, &Action::CreateBackendToken)
                .reason
                .contains("lost")
        );
        // The token Secret is present but OpenBao refuses it.
        let mut o = everything_up();
        o.backend = Backend::from_kv_status(403);
        let steps = plan(&o, &local()).expect("plan");
        assert_eq!(
            running(&steps)[..2],
            [&Action::RestartSecretBackend, &Action::WritePassword]
        );
        assert!(
            step(&steps, &Action::RestartSecretBackend)
                .reason
                .contains("rejects the token")
        );
    }

    #[test]
    fn openbao_not_running_yet_is_not_restarted_and_gets_the_password_later() {
        let mut o = everything_up();
        o.backend = Backend::NotRunning {
            reason: "no ready pod".into(),
        };
        let steps = plan(&o, &local()).expect("plan");
        assert!(!step(&steps, &Action::RestartSecretBackend).run);
        let write = step(&steps, &Action::WritePassword);
        assert!(
            write.run && write.reason.contains("once OpenBao runs"),
            "{write:?}"
        );
        assert_eq!(Backend::from_kv_status(200), Backend::PasswordPresent);
        assert_eq!(Backend::from_kv_status(401), Backend::TokenRejected);
        assert!(matches!(
            Backend::from_kv_status(503),
            Backend::NotRunning { .. }
        ));
    }

    #[test]
    fn a_changed_bootstrap_directory_is_applied_again() {
        // E.g. a new deploy/bootstrap/argocd-cm.yaml on a cluster made before it existed.
        let mut o = everything_up();
        o.bootstrap_digest = Some("b0".into());
        let steps = plan(&o, &local()).expect("plan");
        assert_eq!(
            running(&steps),
            vec![
                &Action::ApplyBootstrap,
                &Action::WaitSynced,
                &Action::CheckGateway
            ]
        );
        assert!(
            step(&steps, &Action::ApplyBootstrap)
                .reason
                .contains("changed")
        );
    }

    #[test]
    fn after_a_rollback_up_re_enables_automated_sync() {
        let mut o = everything_up();
        if let Some(r) = o.root_app.as_mut() {
            r.auto_sync = false;
        }
        let steps = plan(&o, &local()).expect("plan");
        let root = steps
            .iter()
            .find(|s| matches!(s.action, Action::ApplyRootApp { .. }))
            .expect("root step");
        assert!(root.run && root.reason.contains("re-enabling"), "{root:?}");
    }

    #[test]
    fn a_remote_repository_pushes_nothing() {
        let opts = UpOptions {
            image_tag: "3f2a1c0".into(),
            source: Source::Remote {
                url: "https://github.com/you/metrics-app.git".into(),
                revision: "v1.2.0".into(),
            },
            bootstrap_digest: "b1".into(),
            gitops: GitOps::ArgoCd,
            environments: envs(&["dev", "staging"]),
        };
        let steps = plan(&tools(), &opts).expect("plan");
        assert!(!steps.iter().any(|s| matches!(
            s.action,
            Action::PushCheckout { .. } | Action::CommitImage { .. }
        )));
        // Nothing is committed there: the selected environments' images are parameters.
        let url = "https://github.com/you/metrics-app.git";
        assert!(steps.iter().any(|s| s.action
            == Action::ApplyRootApp {
                repo_url: url.into(),
                revision: "v1.2.0".into(),
                parameters: vec![
                    ("repoURL".into(), url.into()),
                    ("targetRevision".into(), "v1.2.0".into()),
                    ("environments.dev.enabled".into(), "true".into()),
                    ("environments.staging.enabled".into(), "true".into()),
                    ("environments.prod.enabled".into(), "false".into()),
                    ("environments.dev.image.tag".into(), "3f2a1c0".into()),
                    ("environments.staging.image.tag".into(), "3f2a1c0".into()),
                ]
            }));
    }

    #[test]
    fn without_prerequisites_the_steps_are_still_the_fresh_machine_plan() {
        // What --dry-run shows on a machine without the tools: the whole plan, plus the list
        // of what a real run would stop on.
        let o = Observed::nothing();
        assert_eq!(prerequisites(&o).len(), 4);
        assert_eq!(steps(&o, &local()), plan(&tools(), &local()).expect("plan"));
    }

    #[test]
    fn missing_prerequisites_are_all_reported_and_nothing_is_planned() {
        let mut o = tools();
        o.docker = Tool::Broken {
            reason: "Cannot connect to the Docker daemon".into(),
        };
        o.kind = Tool::Present {
            version: "0.20.0".into(),
        };
        o.kubectl = Tool::Missing;
        let missing = plan(&o, &local()).expect_err("must refuse");
        let tools: Vec<&str> = missing.iter().map(|m| m.tool).collect();
        assert_eq!(tools, ["docker", "kind", "kubectl"]);
        assert!(missing[1].problem.contains("older than 0.29"));
        assert!(missing[2].fix.contains("kubernetes.io"));
    }

    #[test]
    fn versions_parse_with_or_without_v_and_suffixes() {
        assert_eq!(major_minor("v1.33.1"), Some((1, 33)));
        assert_eq!(major_minor("0.29.0"), Some((0, 29)));
        assert_eq!(major_minor("1.32.0-gke.1"), Some((1, 32)));
        assert_eq!(major_minor("garbage"), None);
    }

    fn flux(selected: &[&str]) -> UpOptions {
        UpOptions {
            gitops: GitOps::Flux,
            environments: envs(selected),
            ..local()
        }
    }

    fn names(steps: &[Step]) -> Vec<String> {
        steps
            .iter()
            .map(|s| match &s.action {
                Action::Flux(a) => a.describe(),
                other => format!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn flux_on_a_fresh_machine_installs_flux_and_applies_deploy_flux_instead_of_argocd() {
        let steps = plan(&tools(), &flux(&["dev", "prod"])).expect("plan");
        assert_eq!(
            names(&steps),
            [
                "CreateCluster".to_string(),
                "BuildImage { tag: \"3f2a1c0\" }".into(),
                "LoadImage { tag: \"3f2a1c0\" }".into(),
                FluxAction::InstallFlux.describe(),
                FluxAction::WaitControllers.describe(),
                "ApplyGitServer".into(),
                "CreateBackendToken".into(),
                "RestartSecretBackend".into(),
                "PushCheckout { commit: \"3f2a1c0\" }".into(),
                "CommitImage { env: \"dev\", tag: \"3f2a1c0\" }".into(),
                format!(
                    "apply deploy/flux/bootstrap/git-repository.yaml ({IN_CLUSTER_REPO} at main)"
                ),
                "apply deploy/flux/bootstrap/platform.yaml".into(),
                "apply deploy/flux/bootstrap/metrics-app-dev.yaml".into(),
                "apply deploy/flux/bootstrap/metrics-app-prod.yaml".into(),
                "WritePassword".into(),
                "wait for Kustomizations platform, gateway-api-crds, platform-operators, \
                 platform-addons, platform-manifests, metrics-app-dev, metrics-app-prod Ready"
                    .into(),
                "CheckGateway".into(),
            ]
        );
        assert!(
            steps
                .iter()
                .all(|s| s.run != (s.action == Action::RestartSecretBackend)),
            "{steps:#?}"
        );
        let install = step(&steps, &Action::Flux(FluxAction::InstallFlux));
        assert!(install.reason.contains("pinned by digest"), "{install:?}");
    }

    #[test]
    fn flux_a_second_time_skips_the_install_the_git_server_and_the_commit() {
        let mut o = everything_up();
        o.argocd_installed = false;
        o.root_app = None;
        o.apps.clear();
        o.flux_installed = true;
        o.git_server_applied = true;
        let steps = plan(&o, &flux(&["dev"])).expect("plan");
        let run: Vec<String> = names(&steps)
            .into_iter()
            .zip(&steps)
            .filter(|(_, s)| s.run)
            .map(|(n, _)| n)
            .collect();
        assert_eq!(
            run,
            [
                FluxAction::WaitControllers.describe(),
                format!(
                    "apply deploy/flux/bootstrap/git-repository.yaml ({IN_CLUSTER_REPO} at main)"
                ),
                "apply deploy/flux/bootstrap/platform.yaml".into(),
                "apply deploy/flux/bootstrap/metrics-app-dev.yaml".into(),
                "wait for Kustomizations platform, gateway-api-crds, platform-operators, \
                 platform-addons, platform-manifests, metrics-app-dev Ready"
                    .into(),
                "CheckGateway".into(),
            ]
        );
        assert!(
            step(&steps, &Action::Flux(FluxAction::InstallFlux))
                .reason
                .contains("skipping")
        );
        // A changed git-server.yaml is applied again.
        o.bootstrap_digest = Some("b0".into());
        let steps = plan(&o, &flux(&["dev"])).expect("plan");
        let git = step(&steps, &Action::ApplyGitServer);
        assert!(git.run && git.reason.contains("changed"), "{git:?}");
    }

    #[test]
    fn flux_with_a_remote_repository_reads_it_and_pushes_nothing() {
        let opts = UpOptions {
            source: Source::Remote {
                url: "https://github.com/you/metrics-app.git".into(),
                revision: "v1.2.0".into(),
            },
            ..flux(&["staging"])
        };
        let steps = plan(&tools(), &opts).expect("plan");
        assert!(!steps.iter().any(|s| matches!(
            s.action,
            Action::PushCheckout { .. } | Action::CommitImage { .. }
        )));
        step(
            &steps,
            &Action::Flux(FluxAction::ApplyGitRepository {
                url: "https://github.com/you/metrics-app.git".into(),
                revision: "v1.2.0".into(),
            }),
        );
        // Nothing is committed there: the built image overrides the overlay's tag.
        step(
            &steps,
            &Action::Flux(FluxAction::ApplyEnvironment {
                env: "staging".into(),
                image_tag: Some("3f2a1c0".into()),
            }),
        );
    }

    #[test]
    fn no_argocd_step_runs_under_flux_and_no_flux_step_under_argocd() {
        let flux_steps = plan(&tools(), &flux(&["dev"])).expect("plan");
        assert!(!flux_steps.iter().any(|s| matches!(
            s.action,
            Action::InstallArgoCd
                | Action::ApplyBootstrap
                | Action::ApplyRootApp { .. }
                | Action::WaitSynced
        )));
        let argo = plan(&tools(), &local()).expect("plan");
        assert!(
            !argo
                .iter()
                .any(|s| matches!(s.action, Action::Flux(_) | Action::ApplyGitServer))
        );
        // The JSON of a Flux step names both.
        let json = serde_json::to_value(step(&flux_steps, &Action::Flux(FluxAction::InstallFlux)))
            .expect("serializes");
        assert_eq!(json["action"], "flux");
        assert_eq!(json["flux"], "install-flux");
    }

    #[test]
    fn a_cluster_running_the_other_engine_is_refused_saying_how_to_switch() {
        let mut o = everything_up();
        assert_eq!(engine_conflict(&o, GitOps::ArgoCd), None);
        let e = engine_conflict(&o, GitOps::Flux).expect("refused");
        assert!(
            e.starts_with("the cluster runs ArgoCD and --gitops chose Flux")
                && e.contains("appctl up --gitops argocd")
                && e.contains("appctl down --yes"),
            "{e}"
        );
        o.argocd_installed = false;
        o.flux_installed = true;
        assert_eq!(engine_conflict(&o, GitOps::Flux), None);
        assert!(engine_conflict(&o, GitOps::ArgoCd).is_some());
        assert_eq!(engine_conflict(&Observed::nothing(), GitOps::Flux), None);
    }
}
