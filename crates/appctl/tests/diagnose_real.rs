//! `appctl diagnose` against real processes: the metrics-app binary with each fault mode, and
//! two independent Python fixtures behind a real nginx, so the 502s come from a real proxy.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{diagnose_json, finding, kinds, metrics_app, nginx, python};

/// Slow on every 3rd request (by its own hit count), fast otherwise; no counter in the body, so
/// the period must be found by request number.
const SLOW_EVERY_THIRD: &str = r#"
import sys, time, threading
from http.server import ThreadingHTTPServer, BaseHTTPRequestHandler
hits = 0
lock = threading.Lock()
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        global hits
        with lock:
            hits += 1
            n = hits
        if n % 3 == 0:
            time.sleep(0.6)
        body = b"hello\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H)
# Port 0 takes any free port; the harness reads the one taken from this line.
print("listening on 127.0.0.1:%d" % server.server_address[1], flush=True)
server.serve_forever()
"#;

/// Keeps 40 MB per request and dies like an OOM kill (exit 137) once it holds more than
/// 150 MB: the original leak, in miniature. Only `/counter` requests keep memory.
const LEAK_AND_DIE: &str = r#"
import os, sys
from http.server import HTTPServer, BaseHTTPRequestHandler
kept = []
count = 0
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        global count
        if self.path.startswith("/counter"):
            chunk = bytearray(40 * 1024 * 1024)
            for i in range(0, len(chunk), 4096):
                chunk[i] = 1
            kept.append(chunk)
            count += 1
            if len(kept) * 40 > 150:
                os._exit(137)
        body = ("Counter value: %d\n" % count).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
server = HTTPServer(("127.0.0.1", int(sys.argv[1])), H)
# Port 0 takes any free port; the harness reads the one taken from this line.
print("listening on 127.0.0.1:%d" % server.server_address[1], flush=True)
server.serve_forever()
"#;

#[test]
fn slow_even_fault_is_named_as_a_period_with_child_processes() {
    let app = metrics_app(&["--fault", "slow-even=1s"]);
    let (code, report) = diagnose_json(&[&app.url("/counter"), "--timeout", "300ms"]);
    assert_eq!(code, 1, "{report:#}");
    let p = finding(&report, "periodic-latency");
    assert_eq!(p["period"], 2);
    assert_eq!(p["phase"], 0);
    assert_eq!(p["keyed_by"], "counter-value");
    assert!(p["slow_ms"].as_f64().unwrap() >= 299.0);
    assert!(p["fast_ms"].as_f64().unwrap() < 100.0);
    let c = finding(&report, "child-processes");
    assert!(c["count"].as_u64().unwrap() >= 1);
    assert!(
        c["evidence"].to_string().contains("burn-cpu"),
        "the burner's command line is evidence: {c:#}"
    );
    assert!(p["named_at_request"].as_u64().unwrap() <= 12, "{p:#}");
    // Named within 12 requests, then stopped.
    let sent = report["probe"]["requests_sent"].as_u64().unwrap();
    assert!(sent <= 12, "took {sent} requests");
    assert_eq!(report["probe"]["stopped_early"], true);
}

#[test]
fn a_healthy_metrics_app_has_no_findings() {
    let app = metrics_app(&[]);
    let (code, report) = diagnose_json(&[
        &app.url("/counter"),
        "--requests",
        "30",
        "--metrics",
        &app.management_url("/metrics"),
    ]);
    assert_eq!(kinds(&report), Vec::<String>::new(), "{report:#}");
    assert_eq!(code, 0);
    assert_eq!(report["verdict"], "healthy");
    assert_eq!(report["probe"]["requests_sent"], 30);
    assert!(report["metrics"]["before"]["rss_bytes"].as_f64().unwrap() > 0.0);
    assert!(report["process"]["before"]["pid"].as_i64().unwrap() == i64::from(app.pid()));
}

#[test]
fn leak_fault_is_memory_growth_seen_by_process_and_metrics() {
    let app = metrics_app(&["--fault", "leak=16"]);
    let (code, report) = diagnose_json(&[
        &app.url("/counter"),
        "--requests",
        "8",
        "--timeout",
        "5s",
        "--metrics",
        &app.management_url("/metrics"),
    ]);
    assert_eq!(code, 1, "{report:#}");
    let m = finding(&report, "memory-growth");
    let per = m["bytes_per_request"].as_f64().unwrap();
    assert!(per >= 10.0 * 1024.0 * 1024.0, "{m:#}");
    let evidence = m["evidence"].to_string();
    assert!(
        evidence.contains("process") && evidence.contains("metrics endpoint"),
        "{m:#}"
    );
}

#[test]
fn python_server_slow_every_third_request_behind_nginx_is_period_three() {
    let dir = tempfile::tempdir().unwrap();
    let backend = python(dir.path(), "slow_every_third", SLOW_EVERY_THIRD);
    let proxy = nginx(backend.port);
    // The harness only opened a TCP connection to check readiness, so request n of the probe
    // is the backend's hit n: the slow ones are requests 3, 6, 9, ... (phase 0 of 3).
    let (code, report) = diagnose_json(&[&proxy.url("/"), "--requests", "18", "--no-process"]);
    assert_eq!(code, 1, "{report:#}");
    let p = finding(&report, "periodic-latency");
    assert_eq!(p["period"], 3, "{p:#}");
    assert_eq!(p["phase"], 0, "{p:#}");
    assert_eq!(p["keyed_by"], "request-number");
    assert!(p["slow_ms"].as_f64().unwrap() >= 550.0);
}

#[test]
fn python_server_that_leaks_and_dies_behind_nginx_is_unavailable_with_502s() {
    let dir = tempfile::tempdir().unwrap();
    let backend = python(dir.path(), "leak_and_die", LEAK_AND_DIE);
    let proxy = nginx(backend.port);
    let (code, report) = diagnose_json(&[
        &proxy.url("/counter"),
        "--requests",
        "20",
        "--timeout",
        "5s",
        "--pid",
        &backend.pid().to_string(),
    ]);
    assert_eq!(code, 1, "{report:#}");
    let u = finding(&report, "unavailable");
    // Three requests are served (40, 80, 120 MB); the 4th kills it.
    assert_eq!(u["from_request"], 4, "{u:#}");
    assert_eq!(u["recovered_at"], serde_json::Value::Null);
    // Named at the second failed request: one 502 alone is not an outage.
    assert_eq!(u["named_at_request"], 5, "{u:#}");
    let e = finding(&report, "server-errors");
    assert!(e["gateway_errors"].as_u64().unwrap() >= 2);
    assert_eq!(
        report["outcomes"]["502"].as_u64().unwrap(),
        e["count"].as_u64().unwrap()
    );
    // The crash is named within the first requests after it: the probe stopped early.
    assert!(report["probe"]["requests_sent"].as_u64().unwrap() <= 9);
}

#[test]
fn nothing_listening_is_unreachable_exit_2() {
    let port = common::free_port();
    let (code, report) = diagnose_json(&[
        &format!("http://127.0.0.1:{port}/counter"),
        "--requests",
        "3",
    ]);
    assert_eq!(code, 2);
    assert_eq!(report["verdict"], "unreachable");
    assert_eq!(report["outcomes"]["refused"], 3);
}

#[test]
fn usage_errors_exit_2_and_name_the_flag() {
    let out = common::appctl(&["diagnose", "http://127.0.0.1:1/", "--concurrency", "0"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--concurrency 0"), "{err}");
    let out = common::appctl(&["diagnose", "not a url"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn text_and_markdown_reports_explain_the_finding() {
    let app = metrics_app(&["--fault", "slow-even=1s"]);
    let url = app.url("/counter");
    let text = common::appctl(&["diagnose", &url, "--timeout", "300ms"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("every 2nd request (even counter values) is slow"),
        "{text}"
    );
    assert!(text.contains("suggested fix:"), "{text}");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("report.md");
    let md = common::appctl(&[
        "diagnose",
        &url,
        "--timeout",
        "300ms",
        "--output",
        "markdown",
        "--report",
        path.to_str().unwrap(),
    ]);
    let md = String::from_utf8_lossy(&md.stdout);
    assert!(md.starts_with("# Diagnosis:"), "{md}");
    assert!(md.contains("**Suggested fix:**"));
    assert!(
        std::fs::read_to_string(&path)
            .unwrap()
            .contains("## Findings")
    );
}
