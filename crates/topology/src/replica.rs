//! One `metrics-app` replica: the real binary built by cargo, with the Redis store (one server
//! or Sentinels), a distinct instance name, the ports port 0 gave it at its first start (nginx
//! and Prometheus list them, so a restarted replica comes back on them), and optional extra
//! flags (fault modes).

use std::time::Duration;

use anyhow::Result;
use testkit::metrics_app::{self, MetricsApp};
use testkit::process::{Proc, wait_http_ok};

/// The password every replica gets in `PASSWORD` (local only, never a real secret).
pub use testkit::PASSWORD;

/// How a replica is started.
#[derive(Clone, Debug)]
pub struct ReplicaSpec {
    /// Name reported in `X-Instance`.
    pub instance: String,
    /// Where the shared counter is: `--redis-url URL`, or `--redis-sentinels …` and its options.
    pub redis_args: Vec<String>,
    /// `--drain-delay` (time serving after SIGTERM before the listener closes).
    pub drain_delay: String,
    /// Extra arguments, e.g. `["--fault", "slow-even=2s"]`.
    pub extra_args: Vec<String>,
}

/// A running replica.
pub struct Replica {
    /// What it was started with.
    pub spec: ReplicaSpec,
    /// The public port (`/counter`), behind nginx.
    pub port: u16,
    /// The management port (`/healthz`, `/readyz`, `/metrics`), scraped by Prometheus.
    pub management_port: u16,
    /// The process.
    pub proc: Proc,
}

impl Replica {
    /// Starts the replica on `port` and `management_port` (0: any free port, read back from its
    /// log); waits until it listens, not until it is ready.
    pub fn start(spec: ReplicaSpec, port: u16, management_port: u16) -> Result<Self> {
        let mut cmd = metrics_app::command(&metrics_app::metrics_app_bin()?);
        cmd.env("RUST_LOG", "info")
            .args(["--bind", &format!("127.0.0.1:{port}")])
            .args(["--management-bind", &format!("127.0.0.1:{management_port}")])
            .args(["--store", "redis"])
            .args(&spec.redis_args)
            .args(["--instance", &spec.instance])
            .args(["--drain-delay", &spec.drain_delay])
            .args(["--shutdown-timeout", "10s"])
            .args(&spec.extra_args);
        let app = MetricsApp::start(&spec.instance, cmd)?;
        Ok(Self {
            spec,
            port: app.public.port(),
            management_port: app.management.port(),
            proc: app.proc,
        })
    }

    /// `http://127.0.0.1:PORT` (public).
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:MANAGEMENT_PORT`.
    pub fn management_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.management_port)
    }

    /// Waits until `/readyz` answers 200.
    pub async fn wait_ready(&self, deadline: Duration) -> Result<()> {
        wait_http_ok(&format!("{}/readyz", self.management_url()), deadline).await
    }
}
