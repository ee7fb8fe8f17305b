//! Prometheus and Alertmanager (Debian packages) with generated configuration, and a tiny
//! webhook server that records what Alertmanager delivers.

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::process::{Proc, find_binary, free_port, wait_http_ok};
use crate::rules;

/// Alerts received by the webhook: every POSTed Alertmanager payload, parsed.
#[derive(Clone, Default)]
pub struct Webhook {
    /// The port it listens on.
    pub port: u16,
    received: Arc<Mutex<Vec<serde_json::Value>>>,
}

impl Webhook {
    /// Binds a free port and serves until the runtime ends.
    pub async fn start() -> Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let hook = Self {
            port: listener.local_addr()?.port(),
            received: Arc::default(),
        };
        let received = hook.received.clone();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let received = received.clone();
                tokio::spawn(async move {
                    if let Some(body) = read_request_body(&mut sock).await
                        && let Ok(v) = serde_json::from_slice(&body)
                        && let Ok(mut r) = received.lock()
                    {
                        r.push(v);
                    }
                    let _ = sock
                        .write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                        )
                        .await;
                });
            }
        });
        Ok(hook)
    }

    /// Names (`labels.alertname`) and instances of every firing alert received so far.
    pub fn firing(&self) -> Vec<(String, String)> {
        let Ok(received) = self.received.lock() else {
            return Vec::new();
        };
        received
            .iter()
            .flat_map(|p| p["alerts"].as_array().cloned().unwrap_or_default())
            .filter(|a| a["status"] == "firing")
            .map(|a| {
                let l = &a["labels"];
                (
                    l["alertname"].as_str().unwrap_or_default().to_string(),
                    l["instance"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }
}

/// Reads one HTTP/1.1 request with a `content-length` body (at most 1 MiB).
async fn read_request_body(sock: &mut tokio::net::TcpStream) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            while buf.len() < end + 4 + len && buf.len() < 1 << 20 {
                let n = sock.read(&mut chunk).await.ok()?;
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            return Some(buf[end + 4..].to_vec());
        }
        if buf.len() > 1 << 20 {
            return None;
        }
    }
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
    /// The web port.
    pub port: u16,
    /// The alerts loaded from the chart's PrometheusRule.
    pub alert_names: Vec<String>,
    /// The process.
    pub proc: Proc,
    _dir: tempfile::TempDir,
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
    /// Starts Prometheus; `for_override` shortens every rule's `for:` (tests only).
    pub async fn start(
        targets: &[u16],
        alertmanager_port: u16,
        for_override: Option<&str>,
    ) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let port = free_port()?;
        let rules_path = dir.path().join("rules.yaml");
        let alert_names = rules::write_checked(&rules_path, for_override)?;
        let conf = dir.path().join("prometheus.yml");
        std::fs::write(
            &conf,
            prometheus_config(&rules_path, targets, alertmanager_port),
        )?;
        let mut cmd = Command::new(find_binary(&["/usr/bin/prometheus"], "prometheus")?);
        cmd.arg(format!("--config.file={}", conf.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--rules.alert.resend-delay=1s");
        let proc = Proc::spawn("prometheus", cmd)?;
        wait_http_ok(
            &format!("http://127.0.0.1:{port}/-/ready"),
            Duration::from_secs(30),
        )
        .await
        .with_context(|| proc.output())?;
        Ok(Self {
            port,
            alert_names,
            proc,
            _dir: dir,
        })
    }
}
