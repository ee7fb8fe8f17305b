//! What a connection can do to the server, through real sockets: malformed and oversized
//! requests, heads trickled or never finished, stalled bodies, more connections than the
//! budget, idle connections at shutdown, and the maximum connection age.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_oversized_requests_get_4xx_and_the_server_keeps_serving() {
    let app = TestApp::spawn(&["--drain-delay", "0s"]).await;
    let addr = app.addr;
    let answers = tokio::task::spawn_blocking(move || {
        let huge_header = format!(
            "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
            "a".repeat(64 * 1024)
        );
        let long_uri = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(64 * 1024));
        let many_headers = format!(
            "GET / HTTP/1.1\r\nHost: x\r\n{}\r\n",
            "X-A: b\r\n".repeat(200)
        );
        vec![
            raw_exchange(addr, b"THIS IS NOT HTTP\r\n\r\n"),
            raw_exchange(addr, huge_header.as_bytes()),
            raw_exchange(addr, long_uri.as_bytes()),
            raw_exchange(addr, many_headers.as_bytes()),
            raw_exchange(
                addr,
                b"GET /\xff\xfe HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            ),
            raw_exchange(
                addr,
                b"GET /counter HTTP/1.1\r\nHost: \xff\r\nConnection: close\r\n\r\n",
            ),
        ]
    })
    .await
    .unwrap();
    for (i, answer) in answers.iter().enumerate() {
        let status_line = answer.lines().next().unwrap_or("");
        let code: u16 = status_line
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        // Either an explicit 4xx or a closed connection; never a 5xx or a hang.
        assert!(
            answer.is_empty() || (400..500).contains(&code) || code == 200,
            "case {i}: {status_line:?}"
        );
    }
    // 431 for the oversized head, specifically.
    assert!(
        answers[1].starts_with("HTTP/1.1 431"),
        "{:?}",
        answers[1].lines().next()
    );
    // Still alive and counting correctly.
    let body = client()
        .get(app.url("/counter"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(body.starts_with("Counter value: "));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_trickled_byte_by_byte_is_cut_off_at_the_header_timeout_but_a_slow_handler_is_not() {
    // Slow-even fault: request 2 takes 1 s to handle, over three header timeouts.
    let app = TestApp::spawn(&[
        "--header-read-timeout",
        "300ms",
        "--drain-delay",
        "0s",
        "--fault",
        "slow-even=1s",
    ])
    .await;
    let addr = app.addr;
    let (trickled_for, slow_responses) = tokio::task::spawn_blocking(move || {
        // Every byte arrives well within the timeout, the head never completes: only a
        // deadline on the whole head (not an idle timer) stops this.
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        let started = Instant::now();
        let head = b"GET /counter HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
        for byte in head {
            if stream.write_all(&[*byte]).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let trickled_for = started.elapsed();
        // One keep-alive connection, two requests; the second is handled for 1 s.
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut responses = Vec::new();
        for _ in 0..2 {
            stream
                .write_all(b"GET /counter HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            let mut buf = [0u8; 1024];
            let n = stream.read(&mut buf).unwrap_or(0);
            responses.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        (trickled_for, responses)
    })
    .await
    .unwrap();
    // 70 bytes at 50 ms would take 3.5 s; the server must have closed the connection long
    // before (a write to a closed socket fails, or the loop ends).
    assert!(
        trickled_for < Duration::from_secs(3),
        "trickled head kept for {trickled_for:?}"
    );
    for response in &slow_responses {
        assert!(
            response.starts_with("HTTP/1.1 200"),
            "a request handled longer than the header timeout was cut: {slow_responses:?}"
        );
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_or_slowloris_connection_is_closed_after_the_header_timeout() {
    let app = TestApp::spawn(&["--header-read-timeout", "300ms", "--drain-delay", "0s"]).await;
    let addr = app.addr;
    let (idle, slow) = tokio::task::spawn_blocking(move || {
        let closed_after = |partial: &[u8]| {
            let mut stream = std::net::TcpStream::connect(addr).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            stream.write_all(partial).unwrap();
            let started = Instant::now();
            let mut buf = Vec::new();
            let _ = stream.read_to_end(&mut buf);
            started.elapsed()
        };
        (
            closed_after(b""),
            closed_after(b"GET /counter HTTP/1.1\r\nHost: x\r\nX-Slow: "),
        )
    })
    .await
    .unwrap();
    assert!(
        idle < Duration::from_secs(4),
        "idle connection held for {idle:?}"
    );
    assert!(
        slow < Duration::from_secs(4),
        "slowloris connection held for {slow:?}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_public_listener_saturated_probes_still_answer_at_once_and_newcomers_get_503() {
    let app = TestApp::spawn(&[
        "--max-connections",
        "8",
        "--header-read-timeout",
        "30s",
        "--drain-delay",
        "0s",
    ])
    .await;
    let addr = app.addr;
    // Twice the budget: half idle keep-alive connections, half slow partial heads.
    let mut held = Vec::new();
    for i in 0..16 {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        if i % 2 == 0 {
            stream
                .write_all(b"GET /counter HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                .unwrap();
        }
        held.push(stream);
    }
    // The budget is used up once a newcomer is turned away.
    let newcomer = tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let answer = raw_exchange(addr, b"GET /counter HTTP/1.1\r\nHost: x\r\n\r\n");
        (answer, started.elapsed())
    })
    .await
    .unwrap();
    assert_eq!(status_of(&newcomer.0), 503, "{:?}", newcomer.0);
    assert!(newcomer.0.contains("retry-after: 1"), "{:?}", newcomer.0);
    assert!(
        newcomer.1 < Duration::from_secs(2),
        "turned away only after {:?}",
        newcomer.1
    );
    // Probes on the management port do not queue behind the public load. Each on a new
    // connection, as the kubelet probes: through the management listener's accept and budget.
    let fresh = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let mut took = Vec::new();
    for path in ["/healthz", "/readyz", "/metrics"].repeat(5) {
        let started = Instant::now();
        let r = fresh.get(app.mgmt(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        r.bytes().await.unwrap();
        took.push(started.elapsed());
    }
    // Queued behind the public load, a probe would wait for the header timeout (30 s). Every
    // one answers within the kubelet's 1 s probe timeout, and all but one within 100 ms (one
    // scheduling stall of a busy 2-core CI machine is not what this test is about).
    took.sort();
    assert!(
        took[took.len() - 1] < Duration::from_secs(1)
            && took[took.len() - 2] < Duration::from_millis(100),
        "probes took {took:?} while the public listener was saturated"
    );
    let http = client();
    let metrics = get_text(&http, &app.mgmt("/metrics")).await;
    // The 8 held connections beyond the budget, and the newcomer.
    assert!(
        metrics.contains("metrics_app_connections_shed_total{listener=\"public\"} 9"),
        "{metrics}"
    );
    drop(held);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_stalls_gets_408_after_the_body_read_timeout() {
    let app = TestApp::spawn(&["--body-read-timeout", "300ms", "--drain-delay", "0s"]).await;
    let addr = app.addr;
    let (answer, took) = tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let head = format!(
            "PUT /admin/log-level HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {PASSWORD}\r\nContent-Length: 1000\r\n\r\ninf"
        );
        (raw_exchange(addr, head.as_bytes()), started.elapsed())
    })
    .await
    .unwrap();
    assert_eq!(status_of(&answer), 408, "{answer:?}");
    assert!(took < Duration::from_secs(4), "held for {took:?}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_trickles_in_gets_408_once_the_whole_body_is_late() {
    use std::io::ErrorKind;
    let app = TestApp::spawn(&["--body-read-timeout", "1s", "--drain-delay", "0s"]).await;
    let addr = app.addr;
    let (answer, took) = tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        write!(
            stream,
            "PUT /admin/log-level HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {PASSWORD}\r\nContent-Length: 100\r\n\r\n"
        )
        .unwrap();
        // One byte every 100 ms (the read timeout paces the loop): never a gap near the
        // timeout, for up to 6 s; stop as soon as the server answers.
        stream
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let mut answer = Vec::new();
        let mut buf = [0u8; 1024];
        for _ in 0..60 {
            if stream.write_all(b"i").is_err() {
                break;
            }
            match stream.read(&mut buf) {
                Ok(n) => {
                    answer.extend_from_slice(&buf[..n]);
                    break;
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => break,
            }
        }
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let _ = stream.read_to_end(&mut answer);
        (String::from_utf8_lossy(&answer).into_owned(), started.elapsed())
    })
    .await
    .unwrap();
    assert_eq!(status_of(&answer), 408, "{answer:?}");
    assert!(took < Duration::from_secs(4), "held for {took:?}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_partial_head_connections_do_not_hold_shutdown() {
    let mut app = TestApp::spawn(&[
        "--shutdown-timeout",
        "20s",
        "--header-read-timeout",
        "30s",
        "--drain-delay",
        "0s",
    ])
    .await;
    let mut partial = std::net::TcpStream::connect(app.addr).unwrap();
    partial
        .write_all(b"GET /counter HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .unwrap();
    let mut idle = std::net::TcpStream::connect(app.addr).unwrap();
    idle.write_all(b"GET /counter HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut buf = [0u8; 512];
    idle.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert!(idle.read(&mut buf).unwrap() > 0);
    // Both connections are known to the server (one answered, one mid-head).
    let started = Instant::now();
    app.begin_stop();
    let stopped = app.stopped().await;
    assert_eq!(stopped, metrics_app::Stopped::Clean);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "shutdown waited {:?} for idle connections",
        started.elapsed()
    );
    partial
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    assert_eq!(partial.read(&mut buf).unwrap_or(0), 0, "not closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_connections_are_closed_once_they_reach_the_maximum_age() {
    let app = TestApp::spawn(&["--max-connection-age", "300ms", "--drain-delay", "0s"]).await;
    let addr = app.addr;
    let (first, closed_after) = tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let started = Instant::now();
        stream
            .write_all(b"GET /counter HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut buf = [0u8; 512];
        let n = stream.read(&mut buf).unwrap();
        let first = String::from_utf8_lossy(&buf[..n]).into_owned();
        // Idle from now on: the server closes it when it reaches its age.
        let n = stream.read(&mut buf).unwrap_or(0);
        assert_eq!(n, 0, "expected the connection to be closed");
        (first, started.elapsed())
    })
    .await
    .unwrap();
    assert_eq!(status_of(&first), 200, "{first:?}");
    assert!(
        closed_after >= Duration::from_millis(300) && closed_after < Duration::from_secs(4),
        "closed after {closed_after:?}"
    );
    app.stop().await;
}
