//! Probe coverage on real processes: `--probe URL` health endpoints are checked all through
//! the probe on their own connections and compared with what the target did — a readiness
//! endpoint answering 200 while the endpoint users call answers 503 is `probe-blind`; a
//! health endpoint failing while the service works is `probe-false-alarm`; agreement is quiet.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;
#[path = "fixtures/mod.rs"]
mod fixtures;

use common::{diagnose_json, finding, kinds};
use fixtures::fixture;

#[test]
fn a_readiness_endpoint_saying_200_while_the_target_answers_503_is_blind() {
    let server = fixture("status_server.py", &["503", "200"]);
    let (code, report) = diagnose_json(&[
        &server.url("/counter"),
        "--requests",
        "10",
        "--probe",
        &server.url("/readyz"),
    ]);
    assert_eq!(code, 1, "{report:#}");
    let f = finding(&report, "probe-blind");
    assert_eq!(f["severity"], "high");
    assert_eq!(f["endpoints"][0], server.url("/readyz"));
    let checks = report["health"][0]["checks"].as_array().unwrap();
    assert!(!checks.is_empty());
    assert!(
        checks.iter().all(|c| c["outcome"]["code"] == 200),
        "{checks:?}"
    );
    assert!(kinds(&report).contains(&"server-errors".to_string()));
}

#[test]
fn a_health_endpoint_failing_while_the_target_works_is_a_false_alarm() {
    let server = fixture("status_server.py", &["200", "500"]);
    let (code, report) = diagnose_json(&[
        &server.url("/counter"),
        "--requests",
        "10",
        "--probe",
        &server.url("/healthz"),
    ]);
    assert_eq!(code, 1, "{report:#}");
    let f = finding(&report, "probe-false-alarm");
    assert!(f["evidence"].to_string().contains("500 ×"), "{f:#}");
}

#[test]
fn probes_that_agree_with_a_healthy_target_say_nothing() {
    let server = fixture("status_server.py", &["200", "200"]);
    let (code, report) = diagnose_json(&[
        &server.url("/counter"),
        "--requests",
        "10",
        "--probe",
        &server.url("/healthz"),
        "--probe",
        &server.url("/readyz"),
    ]);
    assert_eq!(kinds(&report), Vec::<String>::new(), "{report:#}");
    assert_eq!(code, 0);
    assert_eq!(report["health"].as_array().unwrap().len(), 2);
}
