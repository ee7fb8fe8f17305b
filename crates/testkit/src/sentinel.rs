//! `redis-sentinel` (Debian package) watching a primary on loopback, with timings short enough
//! for a test to see a failover in seconds: the primary is declared down after
//! [`DOWN_AFTER`] without an answer.

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::process::{Proc, find_binary, free_port, wait_tcp};
use crate::redis::cli;

/// The name the Sentinels know the primary by (the redis-ha chart's default too).
pub const MASTER: &str = "mymaster";
/// How long the primary must be silent before a Sentinel says it is down.
pub const DOWN_AFTER: Duration = Duration::from_millis(1000);

/// One Sentinel process, its config file in a temp dir (Sentinel rewrites it).
pub struct Sentinel {
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    _dir: tempfile::TempDir,
    proc: Proc,
}

impl Sentinel {
    /// Starts a Sentinel watching the primary on `primary_port` with `quorum` votes needed to
    /// declare it down; waits until it accepts connections.
    pub fn start(primary_port: u16, quorum: u32) -> Result<Self> {
        let port = free_port()?;
        let dir = tempfile::tempdir().context("creating the sentinel dir")?;
        let config = dir.path().join("sentinel.conf");
        std::fs::write(
            &config,
            format!(
                "port {port}\nbind 127.0.0.1\ndaemonize no\ndir {dir}\n\
                 sentinel monitor {MASTER} 127.0.0.1 {primary_port} {quorum}\n\
                 sentinel down-after-milliseconds {MASTER} {down}\n\
                 sentinel failover-timeout {MASTER} 10000\n\
                 sentinel parallel-syncs {MASTER} 1\n",
                dir = dir.path().display(),
                down = DOWN_AFTER.as_millis(),
            ),
        )
        .context("writing sentinel.conf")?;
        let mut cmd = Command::new(find_binary(&["/usr/bin/redis-sentinel"], "redis-sentinel")?);
        cmd.arg(&config);
        let proc = Proc::spawn("redis-sentinel", cmd)?;
        wait_tcp(port, Duration::from_secs(10), "redis-sentinel")?;
        Ok(Self {
            port,
            _dir: dir,
            proc,
        })
    }

    /// `127.0.0.1:PORT`, as `--redis-sentinels` takes it.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The primary's port as this Sentinel sees it now.
    pub fn primary_port(&self) -> Result<u16> {
        let out = cli(self.port, &["SENTINEL", "get-master-addr-by-name", MASTER])?;
        out.lines()
            .nth(1)
            .and_then(|p| p.trim().parse().ok())
            .with_context(|| format!("unexpected get-master-addr-by-name answer {out:?}"))
    }

    /// How many other Sentinels this one knows of (they find each other through the primary).
    pub fn other_sentinels(&self) -> Result<usize> {
        self.count(&["SENTINEL", "sentinels", MASTER])
    }

    /// How many replicas of the primary this one knows of (it asks the primary's `INFO`).
    pub fn known_replicas(&self) -> Result<usize> {
        self.count(&["SENTINEL", "replicas", MASTER])
    }

    /// The number of entries in a list of instances (each has one `runid` field).
    fn count(&self, args: &[&str]) -> Result<usize> {
        let out = cli(self.port, args)?;
        Ok(out.lines().filter(|l| l.trim() == "runid").count())
    }

    /// What it printed so far.
    pub fn output(&self) -> String {
        self.proc.output()
    }
}
