//! One `metrics-app` replica: the real binary built by cargo, with the Redis store, a distinct
//! instance name, a free port, and optional extra flags (fault modes).

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{Result, bail};

use crate::process::{Proc, free_port, wait_http_ok};

/// The password every replica gets in `PASSWORD` (local only, never a real secret).
pub const PASSWORD: &str = "topology-local-only";

/// Where the `metrics-app` binary is: `METRICS_APP_BIN`, else `target/debug/metrics-app` of
/// this workspace (`scripts/test` builds every workspace binary before the tests run).
pub fn metrics_app_bin() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("METRICS_APP_BIN") {
        return Ok(PathBuf::from(path));
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let path = target.join("debug/metrics-app");
    if !path.exists() {
        bail!(
            "{} does not exist: run `cargo build -p metrics-app` or set METRICS_APP_BIN",
            path.display()
        );
    }
    Ok(path)
}

/// How a replica is started.
#[derive(Clone, Debug)]
pub struct ReplicaSpec {
    /// Name reported in `X-Instance`.
    pub instance: String,
    /// Redis URL of the shared counter.
    pub redis_url: String,
    /// `--drain-delay` (time serving after SIGTERM before the listener closes).
    pub drain_delay: String,
    /// Extra arguments, e.g. `["--fault", "slow-even=2s"]`.
    pub extra_args: Vec<String>,
}

/// A running replica.
pub struct Replica {
    /// What it was started with.
    pub spec: ReplicaSpec,
    /// The port it listens on.
    pub port: u16,
    /// The process.
    pub proc: Proc,
}

impl Replica {
    /// Starts the replica on `port` (a free one when `None`); does not wait for readiness.
    pub fn start(spec: ReplicaSpec, port: Option<u16>) -> Result<Self> {
        let port = match port {
            Some(p) => p,
            None => free_port()?,
        };
        let mut cmd = Command::new(metrics_app_bin()?);
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("PASSWORD", PASSWORD)
            .env("RUST_LOG", "info")
            .args(["--bind", &format!("127.0.0.1:{port}")])
            .args(["--store", "redis", "--redis-url", &spec.redis_url])
            .args(["--instance", &spec.instance])
            .args(["--drain-delay", &spec.drain_delay])
            .args(["--shutdown-timeout", "10s", "--collect-interval", "1s"])
            .args(&spec.extra_args);
        let proc = Proc::spawn(&spec.instance, cmd)?;
        Ok(Self { spec, port, proc })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Waits until `/readyz` answers 200.
    pub async fn wait_ready(&self, deadline: Duration) -> Result<()> {
        wait_http_ok(&format!("{}/readyz", self.base_url()), deadline).await
    }
}
