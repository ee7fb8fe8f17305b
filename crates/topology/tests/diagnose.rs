//! `appctl diagnose` pointed at the gateway names the one replica started with a fault mode
//! (finding `instance-skew`), although every request went through nginx.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::PathBuf;
use std::process::Command;

use topology::{Options, Topology};

/// `APPCTL_BIN`, else `target/debug/appctl` (built by `scripts/test`).
fn appctl_bin() -> PathBuf {
    std::env::var_os("APPCTL_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/debug/appctl")
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appctl_diagnose_through_nginx_names_the_slow_replica() {
    let bin = appctl_bin();
    assert!(
        bin.exists(),
        "{} missing: run `cargo build -p appctl`",
        bin.display()
    );
    let topo = Topology::start(Options {
        extra_args: vec![(0, vec!["--fault".into(), "slow-even=1s".into()])],
        ..Options::default()
    })
    .await
    .unwrap();
    let url = topo.url("/counter");
    // --timeout above the fault's 1 s so slow answers arrive with their X-Instance header.
    let out = tokio::task::spawn_blocking(move || {
        Command::new(bin)
            .args([
                "diagnose",
                &url,
                "--output",
                "json",
                "--timeout",
                "5s",
                "--max-time",
                "60s",
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "appctl printed no JSON ({e}); stderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let findings = report["findings"].as_array().cloned().unwrap_or_default();
    let skew: Vec<_> = findings
        .iter()
        .filter(|f| f["kind"] == "instance-skew")
        .collect();
    eprintln!(
        "appctl findings: {:?}",
        findings.iter().map(|f| &f["title"]).collect::<Vec<_>>()
    );
    assert_eq!(
        skew.len(),
        1,
        "one instance-skew finding expected: {findings:#?}"
    );
    assert_eq!(skew[0]["instance"], "replica-1");
}
