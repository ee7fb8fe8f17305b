//! `--report FILE.svg` and `FILE.html`: the evidence drawn with plotters from a real probe —
//! metrics-app with `slow-even` (timeouts every second request, so both outcome series, the
//! timeout crosses and the slow threshold appear), its memory over the probe, and a short ramp.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use common::metrics_app;

#[test]
fn an_svg_report_draws_latency_by_outcome_timeouts_and_memory() {
    let app = metrics_app(&["--fault", "slow-even=1s"]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("evidence.svg");
    let out = common::appctl(&[
        "diagnose",
        &app.url("/counter"),
        "--timeout",
        "300ms",
        "--report",
        path.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let svg = std::fs::read_to_string(&path).unwrap();
    assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(200)]);
    assert!(svg.trim_end().ends_with("</svg>"));
    for series in [
        "Latency by request",
        "2xx/3xx",
        "timeout",
        "slow threshold",
        "Resident memory of the target",
        "resident memory (MiB)",
    ] {
        assert!(svg.contains(series), "no {series:?} in the SVG");
    }
    // One cross (two lines) per timed-out request; points for the answered ones.
    assert!(svg.matches("<circle").count() >= 3);
    // Self-contained: nothing to fetch.
    assert!(
        !svg.contains("href=\"http"),
        "external reference in the SVG"
    );
}

#[test]
fn an_html_report_embeds_the_ramp_chart_and_the_text_report() {
    let app = metrics_app(&["--max-connections", "16"]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("evidence.html");
    let out = common::appctl(&[
        "diagnose",
        &app.url("/counter"),
        "--requests",
        "5",
        "--ramp",
        "--ramp-max",
        "64",
        "--ramp-step",
        "500ms",
        "--probe",
        &app.management_url("/healthz"),
        "--report",
        path.to_str().unwrap(),
    ]);
    assert!(out.status.code().is_some_and(|c| c <= 1), "{out:?}");
    let html = std::fs::read_to_string(&path).unwrap();
    assert!(html.starts_with("<!doctype html>"));
    for part in [
        "<svg",
        "Saturation ramp",
        "throughput (req/s)",
        "p99 latency (ms)",
        "<pre>appctl diagnose",
        "throughput by connections:",
    ] {
        assert!(html.contains(part), "no {part:?} in the HTML");
    }
    assert!(
        !html.contains("<script"),
        "no scripts: readable without a network"
    );
}
