//! The real `metrics-app` binary: configuration errors and exit codes, graceful shutdown under
//! load, the secret never leaking, the exposition accepted by promtool, and the fault modes.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::time::{Duration, Instant};

use base64::Engine;
use common::{Binary, PASSWORD, client, counter_value, get_text, wait_until_ok};

/// Runs the binary to its end with `args` and only the environment in `envs` (no `PASSWORD`
/// unless given there).
fn run_to_end(args: &[&str], envs: &[(&str, &str)]) -> (i32, String, String) {
    let out = Binary::command()
        .env_remove("PASSWORD")
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
    assert!(
        stderr.contains("--bind") && stderr.contains("nope"),
        "{stderr}"
    );
}

#[test]
fn bad_values_exit_2_naming_the_flag_the_value_and_what_is_accepted() {
    let cases: [(&[&str], &[&str]); 7] = [
        (
            &["--drain-delay", "soon"],
            &["--drain-delay", "DRAIN_DELAY", "soon", "500ms"],
        ),
        (
            &["--bind", "localhost"],
            &["--bind", "localhost", "socket address"],
        ),
        (&["--store", "redis"], &["REDIS_URL"]),
        (
            &["--fault", "explode"],
            &["--fault", "explode", "slow-even", "leak"],
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
        "--header-read-timeout",
        "--max-connections",
        "--fault",
        "--password-file",
        "--management-bind",
        "--access-log",
        "--body-read-timeout",
        "--max-connection-age",
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
    wait_until_ok(&app.mgmt("/readyz"), Duration::from_secs(10)).await;
    let http = client();
    assert_eq!(
        counter_value(&get_text(&http, &app.url("/counter")).await),
        1
    );
    let slow = tokio::spawn(http.get(app.url("/counter")).send());
    // The signal goes out once the slow request is being handled (the in-flight gauge says so).
    let metrics_url = app.mgmt("/metrics");
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        let text = get_text(&http, &metrics_url).await;
        if gauge(&text, "http_requests_in_flight") >= 2.0 {
            // The scrape itself and the slow /counter.
            break;
        }
        assert!(
            Instant::now() < until,
            "the slow request never arrived:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    app.signal("TERM");

    // During the drain: readiness fails, yet requests are still served.
    let until = Instant::now() + Duration::from_secs(2);
    loop {
        let ready = http.get(app.mgmt("/readyz")).send().await.unwrap();
        if ready.status() == 503 {
            assert_eq!(ready.text().await.unwrap(), "draining");
            break;
        }
        assert!(
            Instant::now() < until,
            "/readyz never answered 503 during the drain"
        );
    }
    let during_drain = http.get(app.url("/counter")).send().await.unwrap();
    assert_eq!(
        during_drain.status(),
        200,
        "a request during the drain was refused"
    );
    assert_eq!(counter_value(&during_drain.text().await.unwrap()), 3);

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
        &["--store", "redis", "--drain-delay", "0s", "--access-log"],
        &[("REDIS_URL", redis_url.as_str()), ("RUST_LOG", "trace")],
    );
    wait_until_ok(&app.mgmt("/healthz"), Duration::from_secs(10)).await;
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
        let url = if path.starts_with("/admin") || path == "/counter" {
            app.url(path)
        } else {
            app.mgmt(path)
        };
        let mut req = http.request(method.parse().unwrap(), url).body("trace");
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
    let mut app = Binary::start(&["--drain-delay", "0s", "--access-log"], &[]);
    wait_until_ok(&app.mgmt("/healthz"), Duration::from_secs(10)).await;
    let http = client();
    for _ in 0..3 {
        http.get(app.url("/counter"))
            .header("x-request-id", "trace-me")
            .send()
            .await
            .unwrap();
    }
    let exposition = get_text(&http, &app.mgmt("/metrics")).await;
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
        assert_eq!(event["instance"], common::BINARY_INSTANCE);
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
            &[
                "--drain-delay",
                "0s",
                "--log-format",
                format,
                "--access-log",
            ],
            // The service's own info lines stay on: the harness reads the ports from them.
            &[("RUST_LOG", "warn,metrics_app=info")],
        );
        wait_until_ok(&app.mgmt("/healthz"), Duration::from_secs(10)).await;
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
    wait_until_ok(&app.mgmt("/healthz"), Duration::from_secs(10)).await;
    assert!(
        app.wait_for_output("FAULT MODE ON", Duration::from_secs(5)),
        "{}",
        app.output()
    );
    let http = client();
    let mut timings = Vec::new();
    for _ in 0..4 {
        let started = Instant::now();
        let body = get_text(&http, &app.url("/counter")).await;
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
    let burners = children_running(app.pid(), "burn-cpu");
    assert!(
        burners >= 2,
        "expected burner children still running, found {burners}"
    );
    let exposition = get_text(&http, &app.mgmt("/metrics")).await;
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
    let app = Binary::start(&["--fault", "leak=16", "--drain-delay", "0s"], &[]);
    wait_until_ok(&app.mgmt("/healthz"), Duration::from_secs(10)).await;
    let http = client();
    let rss = |text: &str| gauge(text, "process_resident_memory_bytes");
    let before = get_text(&http, &app.mgmt("/metrics")).await;
    for _ in 0..4 {
        let response = http.get(app.url("/counter")).send().await.unwrap();
        assert_eq!(response.status(), 200);
    }
    // Process figures are read at each scrape: the next one shows what the requests retained.
    let after = get_text(&http, &app.mgmt("/metrics")).await;
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

#[test]
fn a_password_in_the_environment_and_a_password_file_at_once_exit_2_naming_both() {
    let (code, _, stderr) = run_to_end(&["--password-file", "/nonexistent"], &[("PASSWORD", "x")]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("PASSWORD") && stderr.contains("--password-file"),
        "{stderr}"
    );
    let (code, _, stderr) = run_to_end(&[], &[("PASSWORD", "x"), ("PASSWORD_FILE", "/x")]);
    assert_eq!(code, 2, "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_flag_no_access_event_is_logged() {
    let mut app = Binary::start(&["--drain-delay", "0s"], &[]);
    wait_until_ok(&app.mgmt("/readyz"), Duration::from_secs(10)).await;
    let http = client();
    for _ in 0..3 {
        let r = http.get(app.url("/counter")).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    app.signal("TERM");
    assert_eq!(app.wait_exit(Duration::from_secs(10)).code(), Some(0));
    let output = app.output();
    assert!(output.contains("metrics-app starting"), "{output}");
    assert!(!output.contains("\"target\":\"access\""), "{output}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_answer_only_on_the_management_port_and_the_counter_only_on_the_public_one() {
    let app = Binary::start(&["--drain-delay", "0s"], &[]);
    wait_until_ok(&app.mgmt("/readyz"), Duration::from_secs(10)).await;
    let http = client();
    for path in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(
            http.get(app.url(path)).send().await.unwrap().status(),
            404,
            "{path}"
        );
        assert_eq!(
            http.get(app.mgmt(path)).send().await.unwrap().status(),
            200,
            "{path}"
        );
    }
    assert_eq!(
        http.get(app.mgmt("/counter"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        http.get(app.url("/counter")).send().await.unwrap().status(),
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hup_and_usr_signals_are_logged_and_ignored_and_quit_drains_and_exits_0() {
    let mut app = Binary::start(&["--drain-delay", "0s"], &[]);
    wait_until_ok(&app.mgmt("/readyz"), Duration::from_secs(10)).await;
    let http = client();
    for signal in ["HUP", "USR1", "USR2"] {
        app.signal(signal);
        assert!(
            app.wait_for_output(&format!("SIG{signal}"), Duration::from_secs(5)),
            "SIG{signal} not logged:\n{}",
            app.output()
        );
        let r = http.get(app.url("/counter")).send().await.unwrap();
        assert_eq!(r.status(), 200, "not serving after SIG{signal}");
    }
    assert!(app.output().contains("signal ignored"), "{}", app.output());
    app.signal("QUIT");
    assert_eq!(app.wait_exit(Duration::from_secs(10)).code(), Some(0));
    let output = app.output();
    assert!(output.contains("shutdown signal received"), "{output}");
    assert!(output.contains("server stopped"), "{output}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_mode_burners_end_when_the_service_stops() {
    let mut app = Binary::start(&["--fault", "slow-even=300ms", "--drain-delay", "0s"], &[]);
    wait_until_ok(&app.mgmt("/readyz"), Duration::from_secs(10)).await;
    let http = client();
    for _ in 0..2 {
        http.get(app.url("/counter")).send().await.unwrap();
    }
    let pid = app.pid();
    // Burners outlive the request (they run 3 × 300 ms, at least 1 s).
    assert!(children_running(pid, "burn-cpu") >= 2);
    let burner_pids = burner_pids(pid);
    app.signal("TERM");
    assert_eq!(app.wait_exit(Duration::from_secs(10)).code(), Some(0));
    // Killed at shutdown: gone at once, not after their own time runs out.
    let until = Instant::now() + Duration::from_millis(500);
    while burner_pids.iter().any(|p| alive(*p)) {
        assert!(
            Instant::now() < until,
            "burners {burner_pids:?} outlived the service"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// PIDs of the children of `pid` running `burn-cpu`.
fn burner_pids(pid: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|child| {
            let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<u32>().ok());
            let cmdline =
                std::fs::read_to_string(format!("/proc/{child}/cmdline")).unwrap_or_default();
            ppid == Some(pid) && cmdline.contains("burn-cpu")
        })
        .collect()
}

/// Whether `pid` is a running (not zombie) process.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next().map(|s| s != "Z"))
        })
        .unwrap_or(false)
}
