//! `appctl diagnose` on targets that never answer well: client errors (a fixture answering
//! 404 or 401 on every request) are findings that say what the status suggests, and failed
//! requests are named by their cause — refused (a closed port) and DNS (a name in the
//! reserved `.invalid` domain, which never resolves) — in the text output.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;
#[path = "fixtures/mod.rs"]
mod fixtures;

use common::{diagnose_json, finding};
use fixtures::fixture;

#[test]
fn a_target_answering_404_every_time_is_a_wrong_path_finding_not_healthy() {
    let server = fixture("status_server.py", &["404"]);
    let (code, report) =
        diagnose_json(&[&server.url("/countr"), "--requests", "10", "--no-process"]);
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(report["verdict"], "findings");
    let f = finding(&report, "client-errors");
    assert_eq!(f["status"], 404);
    assert_eq!(f["severity"], "high");
    assert_eq!(f["count"], report["probe"]["requests_sent"]);
    assert!(
        f["title"]
            .as_str()
            .unwrap()
            .contains("wrong path or route missing"),
        "{f:#}"
    );
    let text = common::appctl(&["diagnose", &server.url("/countr"), "--requests", "5"]);
    assert_eq!(text.status.code(), Some(1));
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("client-errors"), "{text}");
    assert!(!text.contains("healthy"), "{text}");
}

#[test]
fn a_target_answering_401_is_named_as_needing_authentication() {
    let server = fixture("status_server.py", &["401"]);
    let (code, report) = diagnose_json(&[&server.url("/admin"), "--requests", "5", "--no-process"]);
    assert_eq!(code, 1, "{report:#}");
    let f = finding(&report, "client-errors");
    assert_eq!(f["status"], 401);
    assert!(
        f["title"].as_str().unwrap().contains("authentication"),
        "{f:#}"
    );
}

#[test]
fn a_closed_port_is_named_as_refused_with_a_count_in_the_text() {
    let port = common::free_port();
    let out = common::appctl(&[
        "diagnose",
        &format!("http://127.0.0.1:{port}/counter"),
        "--requests",
        "3",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("failed: refused ×3: connection refused"),
        "{text}"
    );
}

#[test]
fn a_name_that_does_not_resolve_is_named_as_dns_in_the_text() {
    let out = common::appctl(&[
        "diagnose",
        "http://nonexistent.invalid/counter",
        "--requests",
        "2",
    ]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("failed: dns ×2: the hostname did not resolve"),
        "{text}"
    );
    let (_, report) = diagnose_json(&["http://nonexistent.invalid/counter", "--requests", "2"]);
    assert_eq!(report["outcomes"]["dns"], 2, "{report:#}");
    assert_eq!(report["samples"][0]["outcome"]["kind"], "dns");
}
