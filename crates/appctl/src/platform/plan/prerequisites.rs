//! The tools `appctl up` needs (docker, kind, kubectl, git), their oldest usable versions, and
//! for each problem how to fix it. Every problem is reported at once.

use serde::Serialize;

use super::observed::{Observed, Tool};

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
