//! `appctl up/status/credentials/rollback/down/load`: the kind + ArgoCD platform from this
//! checkout in one command, and the commands to look at it, roll it back and load it.
//!
//! - [`plan`]: the pure plan of `up` from observed state, with a reason per step.
//! - [`tools`], [`runner`]: the machine (docker, kind, kubectl, git) — shelling out only to
//!   those, showing the command line and stderr when they fail.
//! - [`cluster`]: every Kubernetes API call, via kube-rs.
//! - [`up`], [`commands`]: executing the plan and the other commands.
//! - [`load`]: a bounded load test with a live progress line.
//!
//! Exit codes: 0 ok, 1 failed, 2 usage error or missing prerequisite.

pub mod cluster;
pub mod commands;
pub mod load;
pub mod plan;
pub mod runner;
pub mod tools;
pub mod up;

use std::time::Duration;

/// Everything that can go wrong in the platform commands.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// A child process failed.
    #[error(transparent)]
    Run(#[from] runner::RunError),
    /// A manifest could not be read.
    #[error("bad manifest: {0}")]
    Manifest(String),
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
    /// Prerequisites are missing: nothing was changed.
    #[error("missing prerequisites:\n{0}")]
    Prerequisites(String),
    /// The user's input cannot be used.
    #[error("{0}")]
    Usage(String),
    /// Local I/O.
    #[error("I/O: {0}")]
    Io(String),
    /// An HTTP request failed.
    #[error("HTTP: {0}")]
    Http(String),
}

impl Error {
    /// The process exit code for this error: 2 for usage and prerequisites, else 1.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Prerequisites(_) | Self::Usage(_) => 2,
            _ => 1,
        }
    }
}

/// Result of the platform commands.
pub type Result<T, E = Error> = std::result::Result<T, E>;
