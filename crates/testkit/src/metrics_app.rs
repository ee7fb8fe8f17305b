//! The real `metrics-app` binary as a child process.
//!
//! Both listeners bind port 0 unless the caller fixes the public one (the local topology
//! restarts a replica on the same port, because nginx lists it); the ports the kernel gave
//! are read back from the `listening` lines the service logs at start-up, so no test races
//! another for a "free" port.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::process::Proc;

/// The password every harness-started service gets in `PASSWORD` (never a real secret).
pub const PASSWORD: &str = "test-Pa55word-do-not-leak";

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

/// A `metrics-app` command with a clean environment (only `PATH`) and `PASSWORD` set, bound to
/// 127.0.0.1 port 0 on both listeners (through `BIND` and `MANAGEMENT_BIND`, so that a
/// `--bind` flag added by the caller wins).
pub fn command(binary: &std::path::Path) -> Command {
    let mut cmd = Command::new(binary);
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("PASSWORD", PASSWORD)
        .env("BIND", "127.0.0.1:0")
        .env("MANAGEMENT_BIND", "127.0.0.1:0");
    cmd
}

/// A running `metrics-app`.
pub struct MetricsApp {
    /// The process, its output captured.
    pub proc: Proc,
    /// Where `/`, `/counter` and the admin API answer.
    pub public: SocketAddr,
    /// Where `/healthz`, `/readyz` and `/metrics` answer.
    pub management: SocketAddr,
}

impl MetricsApp {
    /// Starts `cmd` (from [`command`]) and waits until it logs both listening addresses.
    pub fn start(name: &str, cmd: Command) -> Result<Self> {
        let mut proc = Proc::spawn(name, cmd)?;
        let (public, management) = proc.wait_output(
            Duration::from_secs(20),
            "pair of listening addresses",
            |output| {
                Some((
                    listening(output, "public")?,
                    listening(output, "management")?,
                ))
            },
        )?;
        Ok(Self {
            proc,
            public,
            management,
        })
    }

    /// `http://PUBLIC{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.public, path)
    }

    /// `http://MANAGEMENT{path}`.
    pub fn management_url(&self, path: &str) -> String {
        format!("http://{}{}", self.management, path)
    }

    /// Waits until `/readyz` answers 200.
    pub async fn wait_ready(&self, deadline: Duration) -> Result<()> {
        crate::process::wait_http_ok(&self.management_url("/readyz"), deadline)
            .await
            .with_context(|| self.proc.output())
    }
}

/// The address of the `listener` in the service's `listening` log line, JSON or text.
fn listening(output: &str, listener: &str) -> Option<SocketAddr> {
    output
        .lines()
        .filter(|l| l.contains("listening"))
        .filter(|l| {
            l.contains(&format!("\"listener\":\"{listener}\""))
                || l.contains(&format!("listener={listener} "))
                || l.contains(&format!("listener=\"{listener}\""))
        })
        .find_map(|l| {
            let rest = l
                .split_once("\"address\":\"")
                .map(|(_, r)| r.split('"').next().unwrap_or_default())
                .or_else(|| {
                    l.split_once("address=")
                        .map(|(_, r)| r.split_whitespace().next().unwrap_or_default())
                })?;
            rest.parse().ok()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listening_addresses_are_read_from_json_and_text_lines() {
        let json = r#"{"level":"INFO","message":"listening","listener":"management","address":"127.0.0.1:41234"}"#;
        assert_eq!(
            listening(json, "management"),
            "127.0.0.1:41234".parse().ok()
        );
        assert_eq!(listening(json, "public"), None);
        let text = "2026-12-01T00:00:00Z  INFO metrics_app: listening listener=\"public\" address=127.0.0.1:5000";
        assert_eq!(listening(text, "public"), "127.0.0.1:5000".parse().ok());
        assert_eq!(listening(text, "management"), None);
    }
}
