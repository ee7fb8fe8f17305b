//! `redis-server` (Debian package) on a free port with its data in a temp dir and AOF on with
//! `appendfsync always`, so a restart resumes from exactly the last acknowledged increment.

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::process::{Proc, find_binary, free_port, wait_tcp};

/// A Redis server that can be stopped and started again on the same port and data dir.
pub struct Redis {
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    dir: tempfile::TempDir,
    proc: Option<Proc>,
    /// The primary's port, for a replica.
    replica_of: Option<u16>,
}

impl Redis {
    /// Starts Redis on a free port and waits until it accepts connections.
    pub fn start() -> Result<Self> {
        let mut redis = Self {
            port: free_port()?,
            dir: tempfile::tempdir().context("creating the redis data dir")?,
            proc: None,
            replica_of: None,
        };
        redis.launch()?;
        Ok(redis)
    }

    /// Starts a replica of `primary` on a free port; waits until it accepts connections (not
    /// until it has synced: ask `INFO replication` for that).
    pub fn start_replica_of(primary: &Redis) -> Result<Self> {
        let mut redis = Self {
            port: free_port()?,
            dir: tempfile::tempdir().context("creating the redis data dir")?,
            proc: None,
            replica_of: Some(primary.port),
        };
        redis.launch()?;
        Ok(redis)
    }

    fn launch(&mut self) -> Result<()> {
        let mut cmd = Command::new(find_binary(&["/usr/bin/redis-server"], "redis-server")?);
        cmd.args([
            "--port",
            &self.port.to_string(),
            "--bind",
            "127.0.0.1",
            "--dir",
        ])
        .arg(self.dir.path())
        .args([
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--save",
            "",
            "--daemonize",
            "no",
        ]);
        if let Some(primary) = self.replica_of {
            cmd.args(["--replicaof", "127.0.0.1", &primary.to_string()]);
        }
        self.proc = Some(Proc::spawn("redis", cmd)?);
        wait_tcp(self.port, Duration::from_secs(10), "redis-server")
    }

    /// `redis://127.0.0.1:PORT/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// The PID of the running server, if any.
    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().and_then(Proc::pid)
    }

    /// Graceful stop (SIGTERM: Redis flushes the AOF) and wait for the exit.
    pub fn stop(&mut self) -> Result<()> {
        if let Some(mut proc) = self.proc.take() {
            proc.signal("TERM")?;
            proc.wait_exit(Duration::from_secs(10))?;
        }
        Ok(())
    }

    /// Starts the server again (same port, same AOF).
    pub fn start_again(&mut self) -> Result<()> {
        self.launch()
    }

    /// Kills the server at once (SIGKILL), as a crashed node or a lost machine would stop.
    pub fn kill(&mut self) {
        if let Some(mut proc) = self.proc.take() {
            proc.kill();
        }
    }

    /// `redis-cli -p PORT ARGS…`; its standard output.
    pub fn cli(&self, args: &[&str]) -> Result<String> {
        cli(self.port, args)
    }

    /// Waits until this replica reports its link to the primary up (it has synced).
    pub async fn wait_synced(&self, deadline: Duration) -> Result<()> {
        let until = std::time::Instant::now() + deadline;
        loop {
            if self
                .cli(&["INFO", "replication"])
                .is_ok_and(|info| info.contains("master_link_status:up"))
            {
                return Ok(());
            }
            if std::time::Instant::now() >= until {
                anyhow::bail!(
                    "redis on port {} did not sync with its primary within {deadline:?}",
                    self.port
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// [`Redis::stop`], then [`Redis::start_again`].
    pub fn restart(&mut self) -> Result<()> {
        self.stop()?;
        self.start_again()
    }
}

/// `redis-cli -h 127.0.0.1 -p PORT ARGS…`; its standard output, or an error with its stderr.
pub fn cli(port: u16, args: &[&str]) -> Result<String> {
    let out = Command::new(find_binary(&["/usr/bin/redis-cli"], "redis-tools")?)
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()
        .context("running redis-cli")?;
    if !out.status.success() {
        anyhow::bail!(
            "redis-cli -p {port} {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
