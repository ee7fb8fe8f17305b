//! Helpers shared by the integration tests: an in-process server on a free port, the real
//! binary as a child process, and a real `redis-server`.
#![allow(dead_code, clippy::unwrap_used, missing_docs)]

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use metrics_app::config::{Cli, Config};
use metrics_app::secret::Secret;

pub const PASSWORD: &str = "test-Pa55word-do-not-leak";

/// A configuration as the binary would build it from `args`.
pub fn config(args: &[&str]) -> Config {
    let mut full = vec!["metrics-app"];
    if !args.contains(&"--instance") {
        full.extend(["--instance", "test-instance"]);
    }
    full.extend_from_slice(args);
    Cli::try_parse_from(full)
        .unwrap()
        .validate(Secret::new(PASSWORD.into()))
        .unwrap()
}

/// A service running inside the test process on 127.0.0.1 and a free port.
pub struct TestApp {
    pub addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<metrics_app::Stopped>>,
}

impl TestApp {
    pub async fn spawn(args: &[&str]) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let config = config(args);
        let handle = tokio::spawn(async move {
            metrics_app::run(listener, config, None, async {
                let _ = rx.await;
            })
            .await
            .unwrap()
        });
        Self {
            addr,
            shutdown: Some(tx),
            handle: Some(handle),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Triggers shutdown and waits for the server to stop.
    pub async fn stop(mut self) -> metrics_app::Stopped {
        let _ = self.shutdown.take().unwrap().send(());
        self.handle.take().unwrap().await.unwrap()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            handle.abort();
        }
    }
}

/// An HTTP client that never reuses a connection across tests and never hangs for long.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// Parses `Counter value: N`.
pub fn counter_value(body: &str) -> u64 {
    body.strip_prefix("Counter value: ")
        .unwrap_or_else(|| panic!("unexpected body {body:?}"))
        .parse()
        .unwrap()
}

/// A free TCP port on 127.0.0.1 (bound, then released for a child process to take).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `url` until it answers 200 or the deadline passes.
pub async fn wait_until_ok(url: &str, deadline: Duration) {
    let client = client();
    let until = Instant::now() + deadline;
    loop {
        if let Ok(r) = client.get(url).send().await
            && r.status().is_success()
        {
            return;
        }
        assert!(
            Instant::now() < until,
            "{url} did not answer 200 within {deadline:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The real `metrics-app` binary as a child process, its output captured.
pub struct Binary {
    pub child: Child,
    pub port: u16,
    pub output: Arc<Mutex<String>>,
    /// The threads copying stdout and stderr into `output`; they end when the pipes close.
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Binary {
    pub fn command() -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_metrics-app"));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default());
        cmd
    }

    /// Starts the binary on a free port with `PASSWORD` set and `args`.
    pub fn start(args: &[&str], envs: &[(&str, &str)]) -> Self {
        let port = free_port();
        let mut cmd = Self::command();
        cmd.env("PASSWORD", PASSWORD)
            .env("INSTANCE", format!("bin-{port}"))
            .args(["--bind", &format!("127.0.0.1:{port}")])
            .args(args)
            .envs(envs.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let output = Arc::new(Mutex::new(String::new()));
        let readers = [
            Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ]
        .into_iter()
        .map(|stream| {
            let output = output.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let mut out = output.lock().unwrap();
                    out.push_str(&line);
                    out.push('\n');
                }
            })
        })
        .collect();
        Self {
            child,
            port,
            output,
            readers,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit, at most `deadline`.
    pub fn wait_exit(&mut self, deadline: Duration) -> std::process::ExitStatus {
        let until = Instant::now() + deadline;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // Everything the process wrote is in `output` once its pipes are drained.
                for reader in self.readers.drain(..) {
                    reader.join().unwrap();
                }
                return status;
            }
            assert!(
                Instant::now() < until,
                "process did not exit within {deadline:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// Waits until the output contains `needle`, at most `deadline`: lines reach `output`
    /// through the service's log writer thread and this harness's reader threads.
    pub fn wait_for_output(&self, needle: &str, deadline: Duration) -> bool {
        let until = Instant::now() + deadline;
        loop {
            if self.output().contains(needle) {
                return true;
            }
            if Instant::now() >= until {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A real `redis-server` (Debian package) on a free port, data in a temp dir, AOF on.
pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl RedisServer {
    pub fn binary() -> PathBuf {
        let path = PathBuf::from("/usr/bin/redis-server");
        assert!(
            path.exists(),
            "redis-server is required (Debian package redis-server; .ci/run installs it)"
        );
        path
    }

    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut server = Self {
            child: None,
            port: free_port(),
            dir,
        };
        server.launch();
        server
    }

    fn launch(&mut self) {
        let child = Command::new(Self::binary())
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--dir",
                self.dir.path().to_str().unwrap(),
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
                "--daemonize",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let until = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < until, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Graceful stop (SIGTERM: Redis flushes the AOF), waiting for the exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
