//! The plan of `appctl up`: an ordered list of steps computed by a pure function from what was
//! observed (tools, cluster, platform) and the options. Every step says why it runs or why it
//! is skipped, so `--dry-run` explains itself and a second `up` shows only skips and checks.
//! With `--gitops flux` the GitOps engine's steps are Flux's ([`super::flux`]); the cluster,
//! image, secret backend, push and image commit are the same for both engines.
//!
//! - `observed`: what the plan is computed from;
//! - `prerequisites`: the tools `up` needs, and how to get each.

mod observed;
mod prerequisites;
#[cfg(test)]
mod tests;

use serde::Serialize;

use super::flux::{self, FluxAction};

pub use observed::*;
pub use prerequisites::*;

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
