//! `appctl diagnose --ramp` against the real metrics-app started with `--max-connections 16`,
//! so its connection limit shows within four short steps: the knee is at 64 connections and
//! of kind connection-limit; health probes on the management port (a budget of their own) do
//! not starve, while a check on the public port (here `/counter`, as a readiness check served
//! by the public listener would be) does.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use common::{diagnose_json, finding, metrics_app};

/// One ramp at a time: ramps running side by side on a small machine measure each other.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn ramp(url: &str, probe: &str) -> (i32, serde_json::Value) {
    diagnose_json(&[
        url,
        "--requests",
        "5",
        "--ramp",
        "--ramp-max",
        "64",
        "--ramp-step",
        "1s",
        "--probe",
        probe,
    ])
}

#[test]
fn the_connection_limit_of_metrics_app_is_the_knee_and_management_probes_do_not_starve() {
    let _one = serial();
    let app = metrics_app(&["--max-connections", "16"]);
    let (code, report) = ramp(&app.url("/counter"), &app.management_url("/healthz"));
    assert_eq!(code, 1, "{report:#}");
    let steps = report["ramp"]["steps"].as_array().unwrap();
    let conns: Vec<u64> = steps
        .iter()
        .map(|s| s["connections"].as_u64().unwrap())
        .collect();
    assert_eq!(conns, vec![1, 4, 16, 64]);
    for s in steps {
        assert!(s["throughput"].as_f64().unwrap() > 0.0, "{s:#}");
        assert!(s["p99_ms"].as_f64().is_some(), "{s:#}");
    }
    // Up to the cap every request is served; past it the excess is shed.
    assert_eq!(steps[2]["errors"], serde_json::json!({}), "{:#}", steps[2]);
    assert!(
        steps[3]["errors"]["503"].as_u64().unwrap_or(0) > 0,
        "{:#}",
        steps[3]
    );
    let f = finding(&report, "saturation");
    assert_eq!(f["knee_connections"], 64, "{f:#}");
    assert_eq!(f["last_good_connections"], 16, "{f:#}");
    assert_eq!(f["knee_kind"], "connection-limit", "{f:#}");
    assert_eq!(f["health_starved_at"], serde_json::Value::Null, "{f:#}");
    assert!(steps[3]["health_checks"].as_u64().unwrap() >= 2);
    assert_eq!(steps[3]["health_ok"], steps[3]["health_checks"]);
}

#[test]
fn a_check_on_the_public_port_starves_past_the_connection_limit() {
    let _one = serial();
    let app = metrics_app(&["--max-connections", "16"]);
    let (_, report) = ramp(&app.url("/counter"), &app.url("/counter"));
    let f = finding(&report, "saturation");
    assert_eq!(f["knee_kind"], "connection-limit", "{f:#}");
    let starved = f["health_starved_at"].as_u64().expect("starved");
    assert!(starved <= 64, "{f:#}");
    assert_eq!(f["severity"], "high");
}

#[test]
fn the_text_report_has_the_ramp_table_and_chart() {
    let _one = serial();
    let app = metrics_app(&["--max-connections", "16"]);
    let out = common::appctl(&[
        "diagnose",
        &app.url("/counter"),
        "--requests",
        "3",
        "--ramp",
        "--ramp-max",
        "64",
        "--ramp-step",
        "500ms",
        "--probe",
        &app.management_url("/healthz"),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("ramp (0.5 s per step):"), "{text}");
    assert!(text.contains("throughput by connections:"), "{text}");
    assert!(text.contains("<- knee"), "{text}");
}
