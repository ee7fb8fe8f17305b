//! The real `metrics-app` binary: configuration errors and exit codes, graceful shutdown under
//! load, the secret never leaking, the exposition accepted by promtool, and the fault modes.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::time::{Duration, Instant};

use base64::Engine;
use common::{Binary, PASSWORD, client, counter_value, wait_until_ok};

fn run_to_end(args: &[&str], envs: &[(&str, &str)]) -> (i32, String, String) {
    let out = Binary::command()
        .args(args)
        .envs(envs.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn without_a_password_it_exits_2_with_one_line_naming_both_options() {
    let (code, stdout, stderr) = run_to_end(&["--bind", "127.0.0.1:0"], &[]);
    assert_eq!(code, 2);
    assert!(stdout.is_empty(), "{stdout}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("PASSWORD") && stderr.contains("PASSWORD_FILE"),
        "{stderr}"
    );
}

#[test]
fn a_password_file_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pw");
    std::fs::write(&file, "from-a-file\n").unwrap();
    // An unreadable file is reported with its path and exit code 2.
    let (code, _, stderr) = run_to_end(&["--password-file", "/nonexistent/pw"], &[]);
    assert_eq!(code, 2);
    assert!(stderr.contains("/nonexistent/pw"), "{stderr}");
    // A readable one gets past configuration: the next failure is the bad bind address.
    let (code, _, stderr) = run_to_end(
        &["--bind", "nope"],
        &[("PASSWORD_FILE", file.to_str().unwrap())],
    );
    assert_eq!(code, 2);
    assert!(stderr.contains("--bind/BIND"), "{stderr}");
}

#[test]
fn bad_values_exit_2_naming_the_flag_the_value_and_what_is_accepted() {
    let cases: [(&[&str], &[&str]); 7] = [
        (
            &["--drain-delay", "soon"],
            &["--drain-delay/DRAIN_DELAY", "soon", "500ms"],
        ),
        (
            &["--bind", "localhost"],
            &["--bind/BIND", "localhost", "0.0.0.0:8080"],
        ),
        (&["--store", "redis"], &["REDIS_URL"]),
        (
            &["--fault", "explode"],
            &["--fault/FAULTS", "explode", "slow-even", "leak"],
        ),
        (&["--fault", "leak=lots"], &["leak=lots", "MB"]),
        (&["--max-connections=-3"], &["MAX_CONNECTIONS", "-3"]),
        // clap's own validation, also exit 2.
        (&["--store", "disk"], &["disk", "memory", "redis"]),
    ];
    for (args, expected) in cases {
        let (code, _, stderr) = run_to_end(args, &[("PASSWORD", "x")]);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        for needle in expected {
            assert!(
                stderr.contains(needle),
                "{args:?}: {needle:?} not in {stderr:?}"
            );
        }
    }
    // Environment fallbacks are validated the same way.
    let (code, _, stderr) = run_to_end(&[], &[("PASSWORD", "x"), ("SHUTDOWN_TIMEOUT", "forever")]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("SHUTDOWN_TIMEOUT") && stderr.contains("forever"),
        "{stderr}"
    );
}

#[test]
fn version_names_the_commit_and_help_documents_every_flag() {
    let (code, stdout, _) = run_to_end(&["--version"], &[]);
    assert_eq!(code, 0);
    assert!(
        stdout.contains(env!("CARGO_PKG_VERSION")) && stdout.contains("commit"),
        "{stdout}"
    );
    let (code, help, _) = run_to_end(&["--help"], &[]);
    assert_eq!(code, 0);
    for flag in [
        "--bind",
        "--store",
        "--redis-url",
        "--redis-key",
        "--instance",
        "--log-format",
        "--drain-delay",
        "--shutdown-timeout",
        "--collect-interval",
        "--header-read-timeout",
        "--max-connections",
        "--fault",
        "--password-file",
        "PASSWORD",
    ] {
        assert!(help.contains(flag), "{flag} not documented in --help");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_with_readyz_503_finishes_in_flight_requests_and_exits_0() {
    // Request 2 is slow (fault mode), so it is still in flight when the listener closes.
    let mut app = Binary::start(
        &[
            "--drain-delay",
            "800ms",
            "--shutdown-timeout",
            "5s",
            "--fault",
            "slow-even=1500ms",
        ],
        &[],
    );
    wait_until_ok(&app.url("/readyz"), Duration::from_secs(10)).await;
    let http = client();
    assert_eq!(
        counter_value(
            &http
                .get(app.url("/counter"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        ),
        1
    );
    let slow = tokio::spawn(http.get(app.url("/counter")).send());
    // Let the slow request reach the server before the signal.
    tokio::time::sleep(Duration::from_millis(100)).await;
    app.signal("TERM");

    // During the drain: readiness fails, yet requests are still served.
    let started = Instant::now();
    let mut saw_draining = false;
    let mut served_during_drain = 0;
    while started.elapsed() < Duration::from_millis(500) {
        let ready = http.get(app.url("/readyz")).send().await.unwrap();
        if ready.status() == 503 {
            assert_eq!(ready.text().await.unwrap(), "draining");
            saw_draining = true;
        }
        let r = http.get(app.url("/healthz")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        served_during_drain += 1;
    }
    assert!(saw_draining, "/readyz never answered 503 during the drain");
    assert!(served_during_drain > 0);

    let slow = slow.await.unwrap().unwrap();
    assert_eq!(slow.status(), 200);
    assert_eq!(counter_value(&slow.text().await.unwrap()), 2);
    let status = app.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{}", app.output());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_password_never_appears_in_logs_metrics_or_error_bodies() {
    let redis_password = "redis-Secret-42";
    let redis_url = format!("redis://:{redis_password}@127.0.0.1:1/0");
    let mut app = Binary::start(
        &["--store", "redis", "--drain-delay", "0s"],
        &[("REDIS_URL", redis_url.as_str()), ("RUST_LOG", "trace")],
    );
    wait_until_ok(&app.url("/healthz"), Duration::from_secs(10)).await;
    let http = client();
    let mut bodies = Vec::new();
    let wrong_basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("admin:nope")
    );
    let right_basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("admin:{PASSWORD}"))
    );
    for (method, path, auth) in [
        ("POST", "/admin/counter/reset", None),
        ("POST", "/admin/counter/reset", Some(wrong_basic.clone())),
        (
            "POST",
            "/admin/counter/reset",
            Some("Bearer nope".to_string()),
        ),
        ("POST", "/admin/counter/reset", Some(right_basic.clone())),
        (
            "PUT",
            "/admin/log-level",
            Some(format!("Bearer {PASSWORD}")),
        ),
        ("GET", "/counter", None),
        ("GET", "/readyz", None),
        ("GET", "/metrics", None),
    ] {
        let mut req = http
            .request(method.parse().unwrap(), app.url(path))
            .body("trace");
        if let Some(auth) = auth {
            req = req.header("authorization", auth);
        }
        let r = req.send().await.unwrap();
        bodies.push(format!("{} {}", r.status(), r.text().await.unwrap()));
    }
    // The store is down: the counter and readiness fail, without inventing a number.
    assert!(
        bodies[5].starts_with("503") && !bodies[5].contains("Counter value"),
        "{}",
        bodies[5]
    );
    assert!(bodies[6].starts_with("503"), "{}", bodies[6]);
    app.signal("TERM");
    assert_eq!(app.wait_exit(Duration::from_secs(10)).code(), Some(0));
    let logs = app.output();
    assert!(
        logs.contains("access"),
        "the access log is missing:\n{logs}"
    );
    for secret in [PASSWORD, redis_password] {
        assert!(!logs.contains(secret), "secret in logs:\n{logs}");
        for body in &bodies {
            assert!(!body.contains(secret), "secret in a response: {body}");
        }
    }
    let b64 = base64::engine::general_purpose::STANDARD.encode(format!("admin:{PASSWORD}"));
    assert!(!logs.contains(&b64), "encoded credentials in logs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_have_one_access_event_per_request_and_promtool_accepts_the_metrics() {
    let mut app = Binary::start(&["--drain-delay", "0s", "--collect-interval", "50ms"], &[]);
    wait_until_ok(&app.url("/healthz"), Duration::from_secs(10)).await;
    let http = client();
    for _ in 0..3 {
        http.get(app.url("/counter"))
            .header("x-request-id", "trace-me")
            .send()
            .await
            .unwrap();
    }
    let exposition = http
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    app.signal("TERM");
    assert_eq!(app.wait_exit(Duration::from_secs(10)).code(), Some(0));

    let access: Vec<serde_json::Value> = app
        .output()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["target"] == "access" && v["route"] == "/counter")
        .collect();
    assert_eq!(access.len(), 3, "{}", app.output());
    for event in &access {
        assert_eq!(event["method"], "GET");
        assert_eq!(event["status"], 200);
        assert_eq!(event["request_id"], "trace-me");
        assert_eq!(event["instance"], format!("bin-{}", app.port));
        assert!(event["latency_ms"].as_f64().unwrap() >= 0.0);
    }

    let promtool = std::path::Path::new("/usr/bin/promtool");
    assert!(
        promtool.exists(),
        "promtool is required (Debian package prometheus; .ci/run installs it)"
    );
    let mut child = std::process::Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(exposition.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "promtool rejected the exposition:\n{report}\n{exposition}"
    );
    assert!(
        exposition.contains("process_resident_memory_bytes"),
        "{exposition}"
    );
}

/// Access lines for `/counter` carrying request id `id` in the binary's output so far.
fn access_lines_for(app: &Binary, id: &str) -> usize {
    app.output()
        .lines()
        .filter(|l| l.contains("access") && l.contains(id))
        .count()
}

#[tokio::test]
async fn the_access_log_follows_rust_log_and_the_run_time_filter_in_json_and_text() {
    for format in ["json", "text"] {
        let mut app = Binary::start(
            &["--drain-delay", "0s", "--log-format", format],
            &[("RUST_LOG", "warn")],
        );
        wait_until_ok(&app.url("/healthz"), Duration::from_secs(10)).await;
        let http = client();
        let get = |id: &'static str| {
            http.get(app.url("/counter"))
                .header("x-request-id", id)
                .send()
        };
        get("while-warn").await.unwrap();
        let put = http
            .put(app.url("/admin/log-level"))
            .bearer_auth(PASSWORD)
            .body("info")
            .send()
            .await
            .unwrap();
        assert_eq!(put.status(), 200);
        get("after-info").await.unwrap();
        app.signal("TERM");
        assert_eq!(app.wait_exit(Duration::from_secs(10)).code(), Some(0));
        // Lines are all written by exit (the flush guard): no waiting needed.
        assert_eq!(
            access_lines_for(&app, "while-warn"),
            0,
            "{format}: {}",
            app.output()
        );
        assert_eq!(
            access_lines_for(&app, "after-info"),
            1,
            "{format}: {}",
            app.output()
        );
    }
}

/// Children of `pid` whose command line contains `needle`.
fn children_running(pid: u32, needle: &str) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|child| {
            let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
            // Field 4 (after the parenthesised command name) is the parent pid.
            let ppid = stat
                .rsplit_once(") ")
                .and_then(|(_, rest)| rest.split(' ').nth(1)?.parse::<u32>().ok());
            let cmdline = std::fs::read(format!("/proc/{child}/cmdline")).unwrap_or_default();
            ppid == Some(pid) && String::from_utf8_lossy(&cmdline).contains(needle)
        })
        .count()
}

fn gauge(exposition: &str, name: &str) -> f64 {
    exposition
        .lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("{name} not in exposition"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_even_makes_even_values_slow_and_leaves_burner_processes_running() {
    let app = Binary::start(&["--fault", "slow-even=700ms", "--drain-delay", "0s"], &[]);
    wait_until_ok(&app.url("/healthz"), Duration::from_secs(10)).await;
    assert!(
        app.wait_for_output("FAULT MODE ON", Duration::from_secs(5)),
        "{}",
        app.output()
    );
    let http = client();
    let mut timings = Vec::new();
    for _ in 0..4 {
        let started = Instant::now();
        let body = http
            .get(app.url("/counter"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        timings.push((counter_value(&body), started.elapsed()));
    }
    for (value, took) in &timings {
        if value % 2 == 0 {
            assert!(
                *took >= Duration::from_millis(700),
                "value {value} took {took:?}"
            );
        } else {
            assert!(
                *took < Duration::from_millis(300),
                "value {value} took {took:?}"
            );
        }
    }
    // Burners outlive the request (3 x 700 ms), like the original's collectors.
    let burners = children_running(app.child.id(), "burn-cpu");
    assert!(
        burners >= 2,
        "expected burner children still running, found {burners}"
    );
    let exposition = http
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        gauge(
            &exposition,
            "metrics_app_fault_child_processes_started_total"
        ),
        4.0
    );
    assert!(
        exposition.contains("metrics_app_fault_active{mode=\"slow-even\"} 1"),
        "{exposition}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leak_retains_touched_memory_per_request() {
    let app = Binary::start(
        &[
            "--fault",
            "leak=16",
            "--collect-interval",
            "50ms",
            "--drain-delay",
            "0s",
        ],
        &[],
    );
    wait_until_ok(&app.url("/healthz"), Duration::from_secs(10)).await;
    let http = client();
    let rss = |text: &str| gauge(text, "process_resident_memory_bytes");
    let before = http
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for _ in 0..4 {
        http.get(app.url("/counter")).send().await.unwrap();
    }
    // Wait for a process sample taken after the requests.
    let deadline = Instant::now() + Duration::from_secs(5);
    let after = loop {
        let text = http
            .get(app.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if rss(&text) - rss(&before) > 60.0 * 1024.0 * 1024.0 || Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        gauge(&after, "metrics_app_leaked_bytes"),
        64.0 * 1024.0 * 1024.0
    );
    let grown = rss(&after) - rss(&before);
    assert!(
        grown > 60.0 * 1024.0 * 1024.0,
        "RSS grew by only {grown} bytes"
    );
}
