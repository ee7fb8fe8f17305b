//! `load` against the real metrics-app and a closed port, and its flag checks.

use super::*;

#[test]
fn load_runs_for_its_duration_with_a_progress_line_and_a_summary() {
    let app = common::metrics_app(&[]);
    let out = appctl()
        .args([
            "load",
            &app.url("/counter"),
            "--concurrency",
            "2",
            "--duration",
            "2s",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("requests") && stderr.contains("p99"),
        "progress line: {stderr}"
    );
    assert!(
        stdout.contains("requests in 2s") && stdout.contains(" 0 errors"),
        "{stdout}"
    );
    // The service counted what the load sent.
    let n: u64 = stdout.split_whitespace().next().unwrap().parse().unwrap();
    assert!(n > 10, "{stdout}");
}

#[test]
fn load_against_a_closed_port_says_the_requests_were_refused() {
    let port = common::free_port();
    let out = appctl()
        .args([
            "load",
            &format!("http://127.0.0.1:{port}/counter"),
            "--rate",
            "20",
            "--duration",
            "1s",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stdout.contains("refused ×"), "summary: {stdout}");
    assert!(
        stderr.contains("requests failed: refused ×"),
        "error: {stderr}"
    );
}

#[test]
fn load_rejects_bad_flags_with_exit_2() {
    for args in [
        vec!["load", "http://127.0.0.1:1/", "--rate", "0"],
        vec!["load", "http://127.0.0.1:1/", "--duration", "1h"],
        vec!["load", "ftp://x/"],
    ] {
        let out = appctl().args(&args).output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
