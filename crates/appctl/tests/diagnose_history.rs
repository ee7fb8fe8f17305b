//! `--prometheus URL --since`: the history read from a real Prometheus (Debian's `prometheus`
//! package, temp config and storage, 127.0.0.1) scraping a real metrics-app every second. The
//! app leaks (`--fault leak=16`) and is restarted, and the report written afterwards names the
//! restart and the memory growth from Prometheus alone (`--no-process`, no `--metrics`).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::{diagnose_json, finding};
use testkit::prometheus::Prometheus;

/// metrics-app leaking 16 MB per request, on the ports the kernel gives it; or, to restart it
/// where Prometheus scrapes it, on `ports` (public, management).
fn start_app(ports: Option<(u16, u16)>) -> common::Proc {
    let mut args = vec!["--fault".to_string(), "leak=16".to_string()];
    if let Some((public, management)) = ports {
        args.extend([
            "--bind".to_string(),
            format!("127.0.0.1:{public}"),
            "--management-bind".to_string(),
            format!("127.0.0.1:{management}"),
        ]);
    }
    common::metrics_app(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// GET over HTTP/1.0 with the standard library; the body.
fn get(port: u16, path_and_query: &str) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path_and_query} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.split_once("\r\n\r\n")
        .map(|x| x.1.to_string())
        .unwrap_or_default()
}

/// The value of an instant PromQL query, if it has one.
fn promql(port: u16, query: &str) -> Option<f64> {
    let q: String = query
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let body = get(port, &format!("/api/v1/query?query={q}"));
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
}

/// Polls `query` until its value satisfies `ok`, or panics after 60 s.
fn wait_for(port: u16, query: &str, ok: impl Fn(f64) -> bool) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        if promql(port, query).is_some_and(&ok) {
            return;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!("Prometheus never answered {query:?} as expected");
}

/// Prometheus scraping `target` every second as job `metrics-app-test`.
fn prometheus(target: u16) -> Prometheus {
    Prometheus::start(
        |_| {
            Ok(format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: metrics-app-test\n    static_configs:\n\
                 \x20     - targets: ['127.0.0.1:{target}']\n"
            ))
        },
        &["--log.level=warn"],
    )
    .unwrap()
}

#[test]
fn a_restart_and_memory_growth_are_named_from_prometheus_after_the_fact() {
    let app = start_app(None);
    let (port, management) = (app.port, app.management);
    let prometheus = prometheus(management);
    let prom = prometheus.port;
    let job = "job=\"metrics-app-test\"";
    wait_for(prom, &format!("up{{{job}}}"), |v| v == 1.0);
    // One request first, so its series exist in Prometheus before the rest: an increase is
    // only seen between two samples of a series.
    get(port, "/counter");
    wait_for(prom, &format!("sum(http_requests_total{{{job}}})"), |v| {
        v >= 1.0
    });
    for _ in 0..5 {
        get(port, "/counter");
    }
    // The leak is in Prometheus (96 MB kept, its RSS sampled on an interval), then the restart.
    wait_for(
        prom,
        &format!(
            "max_over_time(process_resident_memory_bytes{{{job}}}[5m]) - min_over_time(process_resident_memory_bytes{{{job}}}[5m])"
        ),
        |v| v >= 64.0 * 1024.0 * 1024.0,
    );
    drop(app);
    let _app = start_app(Some((port, management)));
    wait_for(
        prom,
        &format!("changes(process_start_time_seconds{{{job}}}[5m])"),
        |v| v >= 1.0,
    );

    let (code, report) = diagnose_json(&[
        &format!("http://127.0.0.1:{port}/healthz-not-counted"),
        "--requests",
        "2",
        "--no-process",
        "--prometheus",
        &format!("http://127.0.0.1:{prom}"),
        "--since",
        "5m",
        "--prom-match",
        job,
    ]);
    assert_eq!(code, 1, "{report:#}");
    let r = finding(&report, "restarts");
    assert!(
        r["title"].as_str().unwrap().contains("Prometheus history"),
        "{r:#}"
    );
    assert!(r["restarts"].as_u64().unwrap() >= 1, "{r:#}");
    let m = finding(&report, "memory-growth");
    assert!(
        m["title"].as_str().unwrap().contains("Prometheus history"),
        "{m:#}"
    );
    let h = &report["history"];
    assert!(h["requests"].as_f64().unwrap() >= 6.0, "{h:#}");
    assert!(h["p50_ms"].as_f64().is_some(), "{h:#}");
    assert_eq!(
        h["memory"].as_array().unwrap().len(),
        1,
        "one instance: {h:#}"
    );
    assert!(
        report["notes"]
            .to_string()
            .contains("no kube-state-metrics series"),
        "{report:#}"
    );
}
