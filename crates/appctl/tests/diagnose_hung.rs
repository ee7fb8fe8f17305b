//! The hung-service finding on real processes: a fixture that stops answering from its 4th
//! request on while it keeps accepting connections, once waiting (threads blocked, no CPU: a
//! deadlock or exhausted pool) and once spinning (a CPU loop); and a slow but answering
//! control with jitter, probed one at a time and under concurrent load, that must stay quiet.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;
#[path = "fixtures/mod.rs"]
mod fixtures;

use common::{diagnose_json, finding, kinds};
use fixtures::fixture;

#[test]
fn a_service_that_waits_forever_from_request_4_is_hung_and_idle() {
    let server = fixture("hang_server.py", &["idle", "4"]);
    let (code, report) = diagnose_json(&[&server.url("/work"), "--timeout", "500ms"]);
    assert_eq!(code, 1, "{report:#}");
    let h = finding(&report, "hung");
    assert_eq!(h["severity"], "high");
    assert_eq!(h["from_request"], 4, "{h:#}");
    assert_eq!(h["served_before"], 3, "{h:#}");
    assert_eq!(h["recovered_at"], serde_json::Value::Null);
    assert_eq!(h["state"], "idle", "{h:#}");
    // /healthz has its own path through the server and still answers: a liveness probe on it
    // would never restart this process.
    assert_eq!(h["health_endpoints"], "answer", "{h:#}");
    // Each abandoned request leaves a handler that never closes its side.
    assert!(h["close_wait"].as_u64().unwrap() >= 1, "{h:#}");
    assert!(h["threads"].as_u64().unwrap() >= 2, "{h:#}");
    assert_eq!(
        report["hang"]["connect"]["result"], "accepted",
        "{report:#}"
    );
    // Stopped once certain, and not described as latency noise.
    assert!(report["probe"]["requests_sent"].as_u64().unwrap() <= 10);
    let k = kinds(&report);
    assert!(!k.contains(&"slow-outliers".to_string()), "{k:?}");
    assert_eq!(h["named_at_request"], 6, "{h:#}");
}

#[test]
fn a_service_that_spins_from_request_3_is_hung_and_burning_cpu() {
    let server = fixture("hang_server.py", &["spin", "3"]);
    let (code, report) = diagnose_json(&[&server.url("/work"), "--timeout", "500ms"]);
    assert_eq!(code, 1, "{report:#}");
    let h = finding(&report, "hung");
    assert_eq!(h["from_request"], 3, "{h:#}");
    assert_eq!(h["state"], "spin", "{h:#}");
    assert!(h["cpu_ratio"].as_f64().unwrap() >= 0.5, "{h:#}");
    assert!(h["cause"].as_str().unwrap().contains("spins"), "{h:#}");
}

#[test]
fn a_slow_but_answering_service_is_not_hung() {
    let server = fixture("hang_server.py", &["slow", "250"]);
    let (code, report) =
        diagnose_json(&[&server.url("/work"), "--requests", "12", "--timeout", "2s"]);
    assert_eq!(kinds(&report), Vec::<String>::new(), "{report:#}");
    assert_eq!(code, 0);
    assert_eq!(report["hang"], serde_json::Value::Null);
}

#[test]
fn a_slow_jittery_service_under_concurrent_load_is_not_hung() {
    let server = fixture("hang_server.py", &["slow", "200"]);
    let (code, report) = diagnose_json(&[
        &server.url("/work"),
        "--requests",
        "40",
        "--concurrency",
        "8",
        "--timeout",
        "2s",
        "--no-early-stop",
    ]);
    assert_eq!(kinds(&report), Vec::<String>::new(), "{report:#}");
    assert_eq!(code, 0);
    assert_eq!(report["probe"]["requests_sent"], 40);
}
