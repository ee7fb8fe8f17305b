//! `appctl up/status/credentials/promote/rollback/down/load`: the kind + ArgoCD platform from this
//! checkout in one command, and the commands to look at it, roll it back and load it.
//!
//! - [`plan`]: the pure plan of `up` from observed state, with a reason per step.
//! - [`environments`]: the environments of deploy/argocd and the pure planning of their
//!   image commits (`up`, `promote`, `rollback --env`); [`gitops`] makes the commits.
//! - [`flux`]: `up --gitops flux`, the pure part: the pinned Flux release, the check of its
//!   install manifest, and the edits appctl makes to deploy/flux (docs/gitops-engines.md).
//! - [`tools`], [`runner`]: the machine (docker, kind, kubectl, git) — shelling out only to
//!   those, showing the command line and stderr when they fail.
//! - [`cluster`]: every Kubernetes API call, via kube-rs.
//! - [`up`], [`commands`]: executing the plan and the other commands.
//! - [`load`]: a bounded load test with a live progress line.
//!
//! Exit codes: [`exit`] — 0 ok, 1 failed, 2 usage error or missing prerequisite, 3 no cluster.

pub mod cluster;
pub mod commands;
pub mod environments;
pub mod flux;
pub mod gitops;
pub mod load;
mod openbao;
pub mod plan;
pub mod runner;
pub mod tools;
pub mod up;

use std::time::Duration;

/// Exit codes of every platform subcommand (and of clap's own usage errors), one per cause.
pub mod exit {
    /// Done.
    pub const OK: u8 = 0;
    /// Something failed while running: a step, a wait, an API call, a child process, failed
    /// requests of `load`.
    pub const FAILED: u8 = 1;
    /// Usage or configuration error, or a missing prerequisite: nothing was changed.
    pub const USAGE: u8 = 2;
    /// No cluster: no kubeconfig, no `kind-metrics-app` context in it (`appctl up` first), or
    /// its API server does not answer.
    pub const NO_CLUSTER: u8 = 3;
}

/// Everything that can go wrong in the platform commands. Each variant names what was being
/// done; the underlying error is kept as its `source`, so `main` prints the whole chain.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed.
    #[error("Kubernetes API: {what}")]
    Kube {
        /// The call, e.g. `get Secret gitops/git-server-admin`.
        what: String,
        /// kube-rs's error.
        #[source]
        source: kube::Error,
    },
    /// A child process failed.
    #[error(transparent)]
    Run(#[from] runner::RunError),
    /// A manifest could not be parsed or turned into an object.
    #[error("bad manifest: {what}")]
    Manifest {
        /// Which manifest or object.
        what: String,
        /// The parser's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Something expected is not there.
    #[error("not found: {0}")]
    NotFound(String),
    /// Waiting took too long.
    #[error("timed out after {after:?} waiting for {what}: {detail}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long.
        after: Duration,
        /// The state at the end.
        detail: String,
    },
    /// Watching an object for a condition failed.
    #[error("waiting for {what}")]
    Wait {
        /// What was awaited.
        what: String,
        /// kube-runtime's error.
        #[source]
        source: kube::runtime::wait::Error,
    },
    /// Prerequisites are missing: nothing was changed.
    #[error("missing prerequisites:\n{0}")]
    Prerequisites(String),
    /// The user's input cannot be used.
    #[error("{0}")]
    Usage(String),
    /// There is no kind cluster to talk to.
    #[error("no cluster found (kubeconfig {kubeconfig}: {reason}): run `appctl up` first")]
    NoCluster {
        /// The kubeconfig file(s) looked at.
        kubeconfig: String,
        /// What is missing there.
        reason: String,
    },
    /// The kubeconfig has the cluster, but its API server does not answer.
    #[error(
        "cluster {context} does not answer at {server}: is Docker running (`docker ps` lists \
         {}-control-plane)? Else `appctl down --yes && appctl up`",
        tools::CLUSTER
    )]
    ClusterUnreachable {
        /// The kubeconfig context.
        context: String,
        /// The API server's URL.
        server: String,
        /// kube-rs's error (boxed: it is large, and this is the rare path).
        #[source]
        source: Box<kube::Error>,
    },
    /// Local I/O.
    #[error("{what}")]
    Io {
        /// What was being done, e.g. `reading deploy/bootstrap/git-server.yaml`.
        what: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// An HTTP request failed.
    #[error("HTTP: {what}")]
    Http {
        /// The request.
        what: String,
        /// reqwest's error.
        #[source]
        source: reqwest::Error,
    },
    /// An HTTP request got an answer that is not a success.
    #[error("HTTP: {what} answered {status}")]
    HttpStatus {
        /// The request.
        what: String,
        /// The status code.
        status: u16,
    },
    /// A download does not have the pinned digest: nothing from it was applied.
    #[error(
        "{url}: SHA-256 mismatch, expected {expected} (pinned), got {actual}; nothing was applied"
    )]
    Checksum {
        /// Where it came from.
        url: String,
        /// The pinned digest.
        expected: String,
        /// The digest of what was downloaded.
        actual: String,
    },
    /// Some requests of `appctl load` failed.
    #[error("{failed} requests failed: {causes}")]
    LoadErrors {
        /// How many.
        failed: usize,
        /// Why, as [`load::describe_causes`] lists them.
        causes: String,
    },
}

impl Error {
    /// The process exit code for this error ([`exit`]).
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Prerequisites(_) | Self::Usage(_) => exit::USAGE,
            // A tool that vanished from PATH after the checks is still a missing prerequisite.
            Self::Run(runner::RunError::NotFound { .. }) => exit::USAGE,
            Self::NoCluster { .. } | Self::ClusterUnreachable { .. } => exit::NO_CLUSTER,
            _ => exit::FAILED,
        }
    }

    /// A [`Error::Kube`] for the call `what`.
    pub fn kube(what: impl Into<String>) -> impl FnOnce(kube::Error) -> Self {
        let what = what.into();
        move |source| Self::Kube { what, source }
    }

    /// A [`Error::Manifest`] for the manifest or object `what`.
    pub fn manifest<E: std::error::Error + Send + Sync + 'static>(
        what: impl Into<String>,
    ) -> impl FnOnce(E) -> Self {
        let what = what.into();
        move |source| Self::Manifest {
            what,
            source: Box::new(source),
        }
    }

    /// A [`Error::Io`] while doing `what`.
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let what = what.into();
        move |source| Self::Io { what, source }
    }

    /// A [`Error::Http`] for the request `what`.
    pub fn http(what: impl Into<String>) -> impl FnOnce(reqwest::Error) -> Self {
        let what = what.into();
        move |source| Self::Http { what, source }
    }
}

impl From<flux::FluxError> for Error {
    /// A bad `--env` or option value is the user's to fix (exit 2); a manifest or deploy/flux
    /// file that cannot be used is a failure (exit 1), with Flux's message as the cause.
    fn from(e: flux::FluxError) -> Self {
        match e {
            flux::FluxError::Usage(_) | flux::FluxError::UnknownEnvironment { .. } => {
                Self::Usage(e.to_string())
            }
            flux::FluxError::File { ref file, .. } => Self::Manifest {
                what: file.clone(),
                source: Box::new(e),
            },
            other => Self::Manifest {
                what: "Flux".into(),
                source: Box::new(other),
            },
        }
    }
}

/// Result of the platform commands.
pub type Result<T, E = Error> = std::result::Result<T, E>;
