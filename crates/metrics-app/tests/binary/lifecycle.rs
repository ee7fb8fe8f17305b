//! The process's life: the two listeners, graceful shutdown under load, and signals.

use super::*;

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
