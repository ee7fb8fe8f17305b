//! Prometheus (Debian package) on a free port of 127.0.0.1, with its configuration and storage
//! in a temp dir: what scrapes metrics-app in the local topology and in the tests that read
//! history from a real Prometheus.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::process::{Proc, find_binary, free_port, wait_http_ok, wait_tcp};

/// A running Prometheus, killed when dropped.
pub struct Prometheus {
    /// The web port (API, UI, `/-/ready`).
    pub port: u16,
    /// The process.
    pub proc: Proc,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts Prometheus with the `prometheus.yml` that `config` returns, given the temp dir
    /// (where it may write rule files the configuration names), and the extra flags `args`;
    /// waits until the web port accepts connections. [`Prometheus::wait_ready`] waits for
    /// `/-/ready`.
    pub fn start(config: impl FnOnce(&Path) -> Result<String>, args: &[&str]) -> Result<Self> {
        let dir = tempfile::tempdir().context("creating the Prometheus dir")?;
        let port = free_port()?;
        let conf = dir.path().join("prometheus.yml");
        std::fs::write(&conf, config(dir.path())?)?;
        let mut cmd = Command::new(find_binary(&["/usr/bin/prometheus"], "prometheus")?);
        cmd.arg(format!("--config.file={}", conf.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .args(args);
        let proc = Proc::spawn("prometheus", cmd)?;
        wait_tcp(port, Duration::from_secs(30), "prometheus").with_context(|| proc.output())?;
        Ok(Self {
            port,
            proc,
            _dir: dir,
        })
    }

    /// Waits until `/-/ready` answers 200 (the storage is open and the rules are loaded).
    pub async fn wait_ready(&self, deadline: Duration) -> Result<()> {
        wait_http_ok(&format!("{}/-/ready", self.base_url()), deadline)
            .await
            .with_context(|| self.proc.output())
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}
