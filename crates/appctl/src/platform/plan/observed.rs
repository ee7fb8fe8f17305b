//! What `appctl up` observed, the input of its plan: the tools on this machine, the cluster, the
//! platform in it (GitOps engine, secret backend, Applications), and what the root Application
//! points at.

use serde::Serialize;

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
/// images are commits ([`crate::platform::environments`]), which a parameter would override.
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
    /// Flux's controllers ([`crate::platform::flux::REQUIRED_CONTROLLERS`]) are installed.
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
