//! Real processes for the integration tests — the metrics-app binary, Python standard-library
//! fixtures, and nginx as a reverse proxy — started through the workspace's test harness
//! (`testkit`): on 127.0.0.1, in a temp dir, output captured, stopped by PID when dropped (also
//! when a test fails). metrics-app and the Python servers bind port 0 and report the ports they
//! took; nginx, which cannot report one, takes a free port.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

/// A free TCP port on 127.0.0.1 where nothing listens (a closed port to aim at).
pub fn free_port() -> u16 {
    testkit::process::free_port().unwrap()
}

/// The real metrics-app binary (built by `scripts/test` before the tests run).
pub fn metrics_app_bin() -> PathBuf {
    testkit::metrics_app::metrics_app_bin().unwrap()
}

/// A process the harness started, killed when dropped.
pub struct Proc {
    pub proc: testkit::Proc,
    pub port: u16,
    /// metrics-app's management port (`/healthz`, `/readyz`, `/metrics`); `port` otherwise.
    pub management: u16,
    pub name: &'static str,
}

impl Proc {
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    pub fn management_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.management, path)
    }

    pub fn pid(&self) -> u32 {
        self.proc.pid().unwrap()
    }
}

/// The real metrics-app with `args`, listening (both ports bound and reported).
pub fn metrics_app(args: &[&str]) -> Proc {
    let mut cmd = testkit::metrics_app::command(&metrics_app_bin());
    cmd.args(["--instance", "test-app", "--drain-delay", "0s"])
        .args(args)
        // The service's own info lines stay on: the harness reads the ports from them.
        .env("RUST_LOG", "warn,metrics_app=info");
    let app = testkit::MetricsApp::start("metrics-app", cmd).unwrap();
    Proc {
        port: app.public.port(),
        management: app.management.port(),
        proc: app.proc,
        name: "metrics-app",
    }
}

/// A Python standard-library server from `source`, which takes its port as its first argument
/// and reports the one it took ([`python_server`]).
pub fn python(dir: &Path, name: &'static str, source: &str) -> Proc {
    let path = dir.join(format!("{name}.py"));
    std::fs::write(&path, source).unwrap();
    let mut cmd = Command::new("python3");
    cmd.arg(&path).arg("0");
    python_server(name, cmd)
}

/// Starts a Python server `cmd` given port 0, and reads back the port it took (it prints
/// `listening on 127.0.0.1:PORT` once its socket listens).
pub fn python_server(name: &'static str, cmd: Command) -> Proc {
    let mut proc =
        testkit::Proc::spawn(name, cmd).expect("python3 is required for the diagnose fixtures");
    let port = proc.reported_port(Duration::from_secs(10)).unwrap();
    Proc {
        proc,
        port,
        management: port,
        name,
    }
}

/// nginx (Debian package) proxying to `backend_port`, as an ingress would.
pub fn nginx(backend_port: u16) -> testkit::nginx::Nginx {
    testkit::nginx::Nginx::start(
        &format!("upstream app {{ server 127.0.0.1:{backend_port}; }}"),
        "location / { proxy_pass http://app; proxy_read_timeout 30s; }",
    )
    .unwrap()
}

/// Runs `appctl` with `args`.
pub fn appctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_appctl"))
        .args(args)
        .output()
        .unwrap()
}

/// Runs `appctl diagnose ... --output json` and returns (exit code, report).
pub fn diagnose_json(args: &[&str]) -> (i32, serde_json::Value) {
    let mut full = vec!["diagnose"];
    full.extend_from_slice(args);
    full.extend(["--output", "json"]);
    let out = appctl(&full);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), report)
}

/// The `kind`s of a report's findings.
pub fn kinds(report: &serde_json::Value) -> Vec<String> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["kind"].as_str().unwrap().to_string())
        .collect()
}

/// The first finding of `kind`.
pub fn finding<'a>(report: &'a serde_json::Value, kind: &str) -> &'a serde_json::Value {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} finding in {report:#}"))
}
