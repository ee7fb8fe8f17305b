//! What the binary writes: the secret never in logs, metrics or error bodies; access events
//! (off by default, following the filter); an exposition promtool accepts.

use super::*;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_lines_name_the_client_and_a_filter_change_is_logged_before_it_takes_effect() {
    let mut app = Binary::start(&["--drain-delay", "0s"], &[]);
    wait_until_ok(&app.mgmt("/readyz"), Duration::from_secs(10)).await;
    let http = client();
    let put = |auth: &str, filter: &'static str| {
        http.put(app.url("/admin/log-level"))
            .bearer_auth(auth)
            .body(filter)
            .send()
    };
    assert_eq!(put("guess", "info").await.unwrap().status(), 401);
    assert_eq!(put(PASSWORD, "debgu").await.unwrap().status(), 400);
    // `error` hides warnings from then on: the warning that records the change is written
    // only if it is logged before the new filter takes effect.
    assert_eq!(put(PASSWORD, "error").await.unwrap().status(), 200);
    app.signal("TERM");
    assert_eq!(app.wait_exit(Duration::from_secs(10)).code(), Some(0));
    let output = app.output();
    for message in [
        "admin request with a wrong password",
        "admin request refused",
        "log filter changed by the admin API",
    ] {
        let line = output.lines().find(|l| l.contains(message));
        assert!(
            line.is_some_and(|l| l.contains("\"client\":\"127.0.0.1\"")),
            "{message}: no line naming the client in\n{output}"
        );
    }
}
