//! Prometheus and Alertmanager (Debian packages) with generated configuration, and a tiny
//! webhook server that records what Alertmanager delivers.

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::rules;
use testkit::process::{Proc, find_binary, free_port, wait_http_ok};

/// Alerts received by the webhook: every payload Alertmanager POSTs, parsed. `GET /alerts`
/// on its port shows them (newest last) as JSON; [`Webhook::subscribe`] tells of each new
/// alert as it arrives.
#[derive(Clone)]
pub struct Webhook {
    /// The port it listens on.
    pub port: u16,
    received: Arc<Mutex<Vec<serde_json::Value>>>,
    arrivals: tokio::sync::broadcast::Sender<Alert>,
}

/// One alert as delivered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Alert {
    /// `firing` or `resolved`.
    pub status: String,
    /// `labels.alertname`.
    pub name: String,
    /// `labels.instance` (empty for alerts about no single instance).
    pub instance: String,
}

/// Most payloads kept (a long-running `topology up` must not grow without bound).
const KEEP_PAYLOADS: usize = 1000;

impl Webhook {
    /// Binds a free port and serves until the runtime ends.
    pub async fn start() -> Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let (arrivals, _) = tokio::sync::broadcast::channel(256);
        let hook = Self {
            port: listener.local_addr()?.port(),
            received: Arc::default(),
            arrivals,
        };
        let app = axum::Router::new()
            .route("/", axum::routing::post(receive))
            .route("/alerts", axum::routing::get(show).post(receive))
            .with_state(hook.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(hook)
    }

    /// Tells of every alert that arrives from now on.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Alert> {
        self.arrivals.subscribe()
    }

    /// Names and instances of every firing alert received so far.
    pub fn firing(&self) -> Vec<(String, String)> {
        let Ok(received) = self.received.lock() else {
            return Vec::new();
        };
        received
            .iter()
            .flat_map(alerts)
            .filter(|a| a.status == "firing")
            .map(|a| (a.name, a.instance))
            .collect()
    }
}

/// The alerts of one Alertmanager payload.
fn alerts(payload: &serde_json::Value) -> Vec<Alert> {
    payload["alerts"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|a| {
            let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
            Alert {
                status: text(&a["status"]),
                name: text(&a["labels"]["alertname"]),
                instance: text(&a["labels"]["instance"]),
            }
        })
        .collect()
}

async fn receive(
    axum::extract::State(hook): axum::extract::State<Webhook>,
    axum::Json(payload): axum::Json<serde_json::Value>,
) -> &'static str {
    for alert in alerts(&payload) {
        // Nobody listening is fine.
        let _ = hook.arrivals.send(alert);
    }
    if let Ok(mut received) = hook.received.lock() {
        if received.len() >= KEEP_PAYLOADS {
            received.remove(0);
        }
        received.push(payload);
    }
    "ok"
}

async fn show(
    axum::extract::State(hook): axum::extract::State<Webhook>,
) -> axum::Json<serde_json::Value> {
    let received = hook.received.lock().map(|r| r.clone()).unwrap_or_default();
    axum::Json(serde_json::Value::Array(received))
}

/// A running Alertmanager delivering every alert to a webhook quickly.
pub struct Alertmanager {
    /// The web port.
    pub port: u16,
    /// The process.
    pub proc: Proc,
    _dir: tempfile::TempDir,
}

impl Alertmanager {
    /// Starts Alertmanager (clustering off) routing everything to `webhook_port`.
    pub async fn start(webhook_port: u16) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let port = free_port()?;
        let conf = dir.path().join("alertmanager.yml");
        std::fs::write(
            &conf,
            format!(
                "route:\n  receiver: webhook\n  group_by: [alertname, instance]\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n  - name: webhook\n    webhook_configs:\n      - url: http://127.0.0.1:{webhook_port}/alerts\n        send_resolved: false\n"
            ),
        )?;
        let mut cmd = Command::new(find_binary(
            &["/usr/bin/prometheus-alertmanager"],
            "prometheus-alertmanager",
        )?);
        cmd.arg(format!("--config.file={}", conf.display()))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=");
        let proc = Proc::spawn("alertmanager", cmd)?;
        wait_http_ok(
            &format!("http://127.0.0.1:{port}/-/ready"),
            Duration::from_secs(20),
        )
        .await
        .with_context(|| proc.output())?;
        Ok(Self {
            port,
            proc,
            _dir: dir,
        })
    }
}

/// A running Prometheus scraping every replica each second with the chart's rules.
pub struct Prometheus {
    /// The server (its port, its process).
    pub server: testkit::prometheus::Prometheus,
    /// The alerts loaded from the chart's PrometheusRule.
    pub alert_names: Vec<String>,
}

/// The Prometheus configuration: 1 s scrape and evaluation, replicas as targets.
pub fn prometheus_config(rules: &Path, targets: &[u16], alertmanager_port: u16) -> String {
    let targets = targets
        .iter()
        .map(|p| format!("\"127.0.0.1:{p}\""))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\nalerting:\n  alertmanagers:\n    - static_configs:\n        - targets: [\"127.0.0.1:{alertmanager_port}\"]\nscrape_configs:\n  - job_name: {job}\n    static_configs:\n      - targets: [{targets}]\n        labels:\n          namespace: {namespace}\n",
        rules.display(),
        job = rules::JOB,
        namespace = rules::NAMESPACE
    )
}

impl Prometheus {
    /// How many scrape targets Prometheus reached at its last scrape (`up == 1`): an alert
    /// test means nothing until every replica is scraped.
    pub async fn targets_up(&self) -> Result<usize> {
        let url = format!("{}/api/v1/query?query=up", self.server.base_url());
        let body = reqwest::get(&url)
            .await
            .with_context(|| format!("querying {url}"))?
            .bytes()
            .await
            .with_context(|| format!("reading the answer of {url}"))?;
        let answer: serde_json::Value = serde_json::from_slice(&body)
            .with_context(|| format!("the answer of {url} is not JSON"))?;
        Ok(answer["data"]["result"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .filter(|series| series["value"][1] == "1")
            .count())
    }

    /// Waits until every one of `targets` scrape targets is up, at most `deadline`.
    pub async fn wait_targets_up(&self, targets: usize, deadline: Duration) -> Result<()> {
        let until = std::time::Instant::now() + deadline;
        loop {
            let up = self.targets_up().await.unwrap_or(0);
            if up >= targets {
                return Ok(());
            }
            if std::time::Instant::now() > until {
                anyhow::bail!("Prometheus scrapes {up} of {targets} targets after {deadline:?}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Starts Prometheus; `for_override` shortens every rule's `for:` (tests only).
    pub async fn start(
        targets: &[u16],
        alertmanager_port: u16,
        for_override: Option<&str>,
    ) -> Result<Self> {
        let mut alert_names = Vec::new();
        let server = testkit::prometheus::Prometheus::start(
            |dir| {
                let rules_path = dir.join("rules.yaml");
                alert_names = rules::write_checked(&rules_path, for_override)?;
                Ok(prometheus_config(&rules_path, targets, alertmanager_port))
            },
            &["--rules.alert.resend-delay=1s"],
        )?;
        server.wait_ready(Duration::from_secs(30)).await?;
        Ok(Self {
            server,
            alert_names,
        })
    }
}
