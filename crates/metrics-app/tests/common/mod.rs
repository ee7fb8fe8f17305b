//! Helpers shared by the integration tests: the service in this test process on two port-0
//! listeners, and the real binary and a real `redis-server` through the workspace harness
//! (`testkit`).
#![allow(dead_code, clippy::unwrap_used, missing_docs)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use clap::Parser;
use metrics_app::{Cli, Config, Listeners, Password};

pub use testkit::PASSWORD;
pub use testkit::http::client;

/// A configuration as the binary would build it from `args`, with [`PASSWORD`].
pub fn config(args: &[&str]) -> Config {
    config_with_password(args, PASSWORD)
}

/// A configuration as the binary would build it from `args`, with `password`.
pub fn config_with_password(args: &[&str], password: &str) -> Config {
    let mut full = vec!["metrics-app"];
    if !args.contains(&"--instance") {
        full.extend(["--instance", "test-instance"]);
    }
    full.extend_from_slice(args);
    Cli::try_parse_from(full)
        .unwrap()
        .validate(Password::fixed(password.into()))
        .unwrap()
}

/// A service running inside the test process on 127.0.0.1, both listeners on port 0.
pub struct TestApp {
    pub addr: SocketAddr,
    pub management: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<metrics_app::Stopped>>,
}

impl TestApp {
    pub async fn spawn(args: &[&str]) -> Self {
        Self::spawn_with(config(args)).await
    }

    pub async fn spawn_with(config: Config) -> Self {
        let public = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let management = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (addr, management_addr) = (
            public.local_addr().unwrap(),
            management.local_addr().unwrap(),
        );
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let handle = tokio::spawn(async move {
            metrics_app::run(Listeners { public, management }, config, None, async {
                let _ = rx.await;
            })
            .await
            .unwrap()
        });
        Self {
            addr,
            management: management_addr,
            shutdown: Some(tx),
            handle: Some(handle),
        }
    }

    /// A public URL.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// A management URL.
    pub fn mgmt(&self, path: &str) -> String {
        format!("http://{}{}", self.management, path)
    }

    /// Triggers shutdown (without waiting for it).
    pub fn begin_stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    /// Waits for the server to stop, after [`TestApp::begin_stop`].
    pub async fn stopped(mut self) -> metrics_app::Stopped {
        self.handle.take().unwrap().await.unwrap()
    }

    /// Triggers shutdown and waits for the server to stop.
    pub async fn stop(mut self) -> metrics_app::Stopped {
        self.begin_stop();
        self.stopped().await
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            handle.abort();
        }
    }
}

/// The body of `GET url`, which must answer.
pub async fn get_text(http: &reqwest::Client, url: &str) -> String {
    http.get(url).send().await.unwrap().text().await.unwrap()
}

/// Parses `Counter value: N`.
pub fn counter_value(body: &str) -> u64 {
    testkit::http::counter_value(body).unwrap_or_else(|| panic!("unexpected body {body:?}"))
}

/// Polls `url` until it answers 200 or the deadline passes.
pub async fn wait_until_ok(url: &str, deadline: Duration) {
    if let Err(error) = testkit::process::wait_http_ok(url, deadline).await {
        panic!("{error:#}");
    }
}

/// The instance name every [`Binary`] runs as.
pub const BINARY_INSTANCE: &str = "bin-under-test";

/// The real `metrics-app` binary as a child process, its output captured.
pub struct Binary {
    pub app: testkit::MetricsApp,
}

impl Binary {
    /// The binary with a clean environment, `PASSWORD` set and both listeners on port 0.
    pub fn command() -> std::process::Command {
        testkit::metrics_app::command(std::path::Path::new(env!("CARGO_BIN_EXE_metrics-app")))
    }

    /// Starts the binary with `args` and `envs`; returns once it listens.
    pub fn start(args: &[&str], envs: &[(&str, &str)]) -> Self {
        let mut cmd = Self::command();
        cmd.env("INSTANCE", BINARY_INSTANCE)
            .args(args)
            .envs(envs.iter().copied());
        Self {
            app: testkit::MetricsApp::start("metrics-app", cmd).unwrap(),
        }
    }

    /// A public URL.
    pub fn url(&self, path: &str) -> String {
        self.app.url(path)
    }

    /// A management URL.
    pub fn mgmt(&self, path: &str) -> String {
        self.app.management_url(path)
    }

    pub fn pid(&self) -> u32 {
        self.app.proc.pid().unwrap()
    }

    pub fn signal(&self, signal: &str) {
        self.app.proc.signal(signal).unwrap();
    }

    /// Waits for the process to exit, at most `deadline`.
    pub fn wait_exit(&mut self, deadline: Duration) -> std::process::ExitStatus {
        self.app.proc.wait_exit(deadline).unwrap()
    }

    pub fn output(&self) -> String {
        self.app.proc.output()
    }

    /// Waits until the output contains `needle`, at most `deadline`.
    pub fn wait_for_output(&self, needle: &str, deadline: Duration) -> bool {
        self.app.proc.wait_for_output(needle, deadline)
    }
}

/// A real `redis-server` (Debian package) on a free port, data in a temp dir, AOF on.
pub struct RedisServer(testkit::Redis);

impl RedisServer {
    pub fn start() -> Self {
        Self(testkit::Redis::start().unwrap())
    }

    pub fn url(&self) -> String {
        self.0.url()
    }

    pub fn port(&self) -> u16 {
        self.0.port
    }

    /// Graceful stop (SIGTERM: Redis flushes the AOF), waiting for the exit.
    pub fn stop(&mut self) {
        self.0.stop().unwrap();
    }

    pub fn restart(&mut self) {
        self.0.restart().unwrap();
    }

    /// A replica of this server, once it has synced with it.
    pub async fn start_replica(&self) -> RedisServer {
        let replica = RedisServer(testkit::Redis::start_replica_of(&self.0).unwrap());
        replica
            .0
            .wait_synced(Duration::from_secs(10))
            .await
            .unwrap();
        replica
    }
}

/// Runs `redis-cli` against `redis` with `args`; its stdout.
pub fn redis_cli(redis: &RedisServer, args: &[&str]) -> String {
    redis.0.cli(args).unwrap()
}

/// Waits until `check` holds, polling every 10 ms, at most `deadline`.
pub async fn eventually(deadline: Duration, mut check: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + deadline;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
