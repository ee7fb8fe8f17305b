//! Real processes for the integration tests: the metrics-app binary, Python standard-library
//! fixtures, and nginx as a reverse proxy — each on 127.0.0.1 and a free port, in a temp dir,
//! stopped by PID when dropped (also when a test fails).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A free TCP port on 127.0.0.1 (released before use; the OS rarely reuses it at once).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The workspace's target directory, where `scripts/test` built every binary.
fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"),
    }
}

/// The real metrics-app binary (built by `scripts/test` before the tests run).
pub fn metrics_app_bin() -> PathBuf {
    let bin = target_dir().join("debug/metrics-app");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build --workspace --bins` first (scripts/test does)",
        bin.display()
    );
    bin
}

/// Waits until `GET url` answers anything, or panics after `deadline`.
pub fn wait_http(url: &str, deadline: Duration) {
    let start = Instant::now();
    let addr = url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_string();
    while start.elapsed() < deadline {
        if std::net::TcpStream::connect(&addr).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("{url} did not come up within {deadline:?}");
}

/// A child process killed when dropped.
pub struct Proc {
    pub child: Child,
    pub port: u16,
    pub name: &'static str,
}

impl Proc {
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The real metrics-app with `args`, ready to serve.
pub fn metrics_app(args: &[&str]) -> Proc {
    let port = free_port();
    let child = Command::new(metrics_app_bin())
        .args([
            "--bind",
            &format!("127.0.0.1:{port}"),
            "--instance",
            "test-app",
        ])
        .args(["--drain-delay", "0s"])
        .args(args)
        .env("PASSWORD", "test-password")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let p = Proc {
        child,
        port,
        name: "metrics-app",
    };
    wait_http(&p.url("/healthz"), Duration::from_secs(10));
    p
}

/// A Python standard-library server from `source`, given its port as the first argument.
pub fn python(dir: &Path, name: &'static str, source: &str) -> Proc {
    let path = dir.join(format!("{name}.py"));
    std::fs::write(&path, source).unwrap();
    let port = free_port();
    let child = Command::new("python3")
        .arg(&path)
        .arg(port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 is required for the diagnose fixtures");
    let p = Proc { child, port, name };
    wait_http(&p.url("/"), Duration::from_secs(10));
    p
}

/// nginx (Debian package) proxying to `backend_port`, as an ingress would.
pub fn nginx(dir: &Path, backend_port: u16) -> Proc {
    let port = free_port();
    let d = dir.display();
    let conf = format!(
        "master_process off;\n\
         daemon off;\n\
         pid {d}/nginx.pid;\n\
         error_log {d}/nginx-error.log warn;\n\
         events {{ worker_connections 64; }}\n\
         http {{\n\
           access_log off;\n\
           client_body_temp_path {d}/client_body;\n\
           proxy_temp_path {d}/proxy;\n\
           fastcgi_temp_path {d}/fastcgi;\n\
           uwsgi_temp_path {d}/uwsgi;\n\
           scgi_temp_path {d}/scgi;\n\
           upstream app {{ server 127.0.0.1:{backend_port}; }}\n\
           server {{\n\
             listen 127.0.0.1:{port};\n\
             location / {{ proxy_pass http://app; proxy_read_timeout 30s; }}\n\
           }}\n\
         }}\n"
    );
    let conf_path = dir.join("nginx.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let bin = ["/usr/sbin/nginx", "nginx"]
        .into_iter()
        .find(|b| Path::new(b).exists() || *b == "nginx")
        .unwrap();
    let child = Command::new(bin)
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(&conf_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nginx (Debian package) is required");
    let p = Proc {
        child,
        port,
        name: "nginx",
    };
    wait_http(&p.url("/"), Duration::from_secs(10));
    p
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
