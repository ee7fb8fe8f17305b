//! The HTTP API through each listener's application (`App::handle`) and through real sockets in this process.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::collections::HashSet;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine;
use common::{PASSWORD, TestApp, client, config, counter_value, get_text};
use http_body_util::BodyExt;

/// Both routers over one state, each path sent where the service serves it.
#[derive(Clone)]
struct App {
    public: metrics_app::App,
    management: metrics_app::App,
}

fn router() -> App {
    app_with(None)
}

fn app_with(control: Option<metrics_app::LogControl>) -> App {
    let state = metrics_app::AppState::new(&config(&[]), control).unwrap();
    App {
        public: metrics_app::App::public(state.clone(), Duration::from_secs(10)),
        management: metrics_app::App::management(state),
    }
}

async fn call(app: &App, request: Request<Body>) -> (StatusCode, axum::http::HeaderMap, String) {
    let app = match request.uri().path() {
        "/healthz" | "/readyz" | "/metrics" => &app.management,
        _ => &app.public,
    };
    let response = app.handle(CLIENT, request).await;
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8(body.to_vec()).unwrap())
}

/// The client address the requests come from.
const CLIENT: std::net::SocketAddr =
    std::net::SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 40000);

/// A request as a client sends it: HTTP/1.1 with one `Host` header.
fn request(method: &str, path: &str) -> axum::http::request::Builder {
    Request::builder()
        .method(method)
        .uri(path)
        .header("host", "metrics-app.test")
}

fn get(path: &str) -> Request<Body> {
    request("GET", path).body(Body::empty()).unwrap()
}

#[tokio::test]
async fn root_answers_the_dashboard_title_as_utf8_text() {
    let (status, headers, body) = call(&router(), get("/")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "Metrics Dashboard 📈");
    assert_eq!(headers["content-type"], "text/plain; charset=utf-8");
}

#[tokio::test]
async fn counter_counts_from_one_and_every_response_names_instance_and_request() {
    let app = router();
    for expected in 1..=3 {
        let (status, headers, body) = call(&app, get("/counter")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, format!("Counter value: {expected}"));
        assert_eq!(headers["x-instance"], "test-instance");
        // A generated id (32 hex digits), unless the client sent a sane id of its own.
        assert_eq!(headers["x-request-id"].len(), 32);
    }
}

#[tokio::test]
async fn a_sane_request_id_is_echoed_and_an_odd_one_replaced() {
    let app = router();
    let req = request("GET", "/healthz")
        .header("x-request-id", "abc-123")
        .body(Body::empty())
        .unwrap();
    assert_eq!(call(&app, req).await.1["x-request-id"], "abc-123");
    let req = request("GET", "/healthz")
        .header("x-request-id", "x".repeat(500))
        .body(Body::empty())
        .unwrap();
    let id = call(&app, req).await.1["x-request-id"].clone();
    assert_ne!(id.to_str().unwrap(), "x".repeat(500));
    assert_eq!(id.len(), 32);
}

#[tokio::test]
async fn probes_answer_ok_and_ready() {
    let app = router();
    assert_eq!(call(&app, get("/healthz")).await.2, "ok");
    let (status, _, body) = call(&app, get("/readyz")).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ready"));
}

#[tokio::test]
async fn unknown_paths_are_404_and_wrong_methods_405_with_short_bodies() {
    let app = router();
    let (status, headers, body) = call(&app, get("/nope/%ff/../etc/passwd")).await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::NOT_FOUND, "not found")
    );
    assert_eq!(headers["x-instance"], "test-instance");
    let req = request("DELETE", "/counter").body(Body::empty()).unwrap();
    let (status, headers, body) = call(&app, req).await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
    );
    assert_eq!(headers["allow"], "GET,HEAD");
    let (status, headers, _) = call(&app, get("/admin/counter/reset")).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(headers["allow"], "POST");
    // Near misses of a route are unknown paths, not the route.
    for near in ["/counter/", "/Counter", "/c%6Funter", "//counter"] {
        assert_eq!(
            call(&app, get(near)).await.0,
            StatusCode::NOT_FOUND,
            "{near}"
        );
    }
    // A 405 must not count.
    assert_eq!(call(&app, get("/counter")).await.2, "Counter value: 1");
}

#[tokio::test]
async fn head_on_the_counter_answers_its_headers_without_spending_a_value() {
    let app = router();
    for _ in 0..3 {
        let head = request("HEAD", "/counter").body(Body::empty()).unwrap();
        let (status, headers, body) = call(&app, head).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, "");
        assert_eq!(headers["content-type"], "text/plain; charset=utf-8");
        assert_eq!(headers["cache-control"], "no-store");
        assert!(headers.contains_key("x-request-id"));
    }
    assert_eq!(call(&app, get("/counter")).await.2, "Counter value: 1");
    // HEAD on the other GET routes is axum's: the GET answer without its body.
    let head = request("HEAD", "/").body(Body::empty()).unwrap();
    assert_eq!(call(&app, head).await.0, StatusCode::OK);
}

#[tokio::test]
async fn requests_without_exactly_one_host_are_refused_with_400() {
    let app = router();
    let none = Request::get("/counter").body(Body::empty()).unwrap();
    let (status, _, body) = call(&app, none).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("Host"), "{body}");
    let two = request("GET", "/counter")
        .header("host", "other.test")
        .body(Body::empty())
        .unwrap();
    assert_eq!(call(&app, two).await.0, StatusCode::BAD_REQUEST);
    // HTTP/1.0 may omit it.
    let old = Request::get("/counter")
        .version(axum::http::Version::HTTP_10)
        .body(Body::empty())
        .unwrap();
    let (status, _, body) = call(&app, old).await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, "Counter value: 1")
    );
}

#[tokio::test]
async fn metric_labels_stay_bounded_whatever_paths_clients_send() {
    let app = router();
    for i in 0..50 {
        call(&app, get(&format!("/random-{i}"))).await;
        call(&app, get(&format!("/counter?nonce={i}"))).await;
    }
    let (_, _, text) = call(&app, get("/metrics")).await;
    let routes: HashSet<String> = text
        .lines()
        .filter(|l| l.starts_with("http_requests_total{"))
        .map(|l| {
            l.split("route=\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap()
                .to_string()
        })
        .collect();
    // Only the routers' own paths and `unmatched`: the 100 distinct paths and queries sent
    // above created no series of their own.
    let allowed: HashSet<String> = [
        "unmatched",
        "/",
        "/counter",
        "/healthz",
        "/readyz",
        "/metrics",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert!(
        routes.is_subset(&allowed),
        "unexpected route labels: {routes:?}"
    );
    assert!(routes.contains("unmatched") && routes.contains("/counter"));
    assert!(
        text.contains("http_requests_total{route=\"unmatched\",method=\"GET\",status=\"404\"} 50"),
        "the 50 unknown paths must share one series:\n{text}"
    );
}

#[tokio::test]
async fn metrics_parse_and_carry_every_documented_family() {
    let app = router();
    call(&app, get("/counter")).await;
    call(&app, get("/counter")).await;
    let req = request("GET", "/metrics")
        .header(
            "accept",
            "application/openmetrics-text;version=1.0.0,text/plain;q=0.5",
        )
        .body(Body::empty())
        .unwrap();
    let (_, headers, openmetrics) = call(&app, req).await;
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    assert!(openmetrics.ends_with("# EOF\n"));
    let (status, headers, text) = call(&app, get("/metrics")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).unwrap();
    let names: HashSet<&str> = scrape.samples.iter().map(|s| s.metric.as_str()).collect();
    for family in [
        "http_requests_total",
        "http_request_duration_seconds",
        "http_requests_in_flight",
        "metrics_app_last_issued_value",
        "metrics_app_store_operation_duration_seconds",
        "metrics_app_ready",
        "metrics_app_draining",
        "metrics_app_build_info",
        "metrics_app_fault_active",
        "metrics_app_leaked_bytes",
        // Read at each scrape, so present from the first one.
        "process_resident_memory_bytes",
        "process_virtual_memory_bytes",
        "process_open_fds",
        "process_max_fds",
        "process_threads",
        "process_start_time_seconds",
        "process_cpu_seconds_total",
    ] {
        assert!(
            names.contains(family),
            "{family} missing from /metrics:\n{text}"
        );
    }
    let counter = scrape
        .samples
        .iter()
        .find(|s| s.metric == "metrics_app_last_issued_value")
        .unwrap();
    assert!(
        matches!(counter.value, prometheus_parse::Value::Gauge(v) if v == 2.0),
        "{counter:?}"
    );
    let faults: Vec<_> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == "metrics_app_fault_active")
        .collect();
    assert_eq!(faults.len(), 2);
    assert!(
        faults
            .iter()
            .all(|s| matches!(s.value, prometheus_parse::Value::Gauge(v) if v == 0.0))
    );
}

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

#[tokio::test]
async fn admin_reset_needs_the_password_and_answers_401_with_challenges() {
    let app = router();
    call(&app, get("/counter")).await;
    for auth in [
        None,
        Some("Bearer wrong".to_string()),
        Some(basic("admin", "wrong")),
        Some("Bearer".into()),
        Some("Basic %%%".into()),
    ] {
        let mut req = request("POST", "/admin/counter/reset");
        if let Some(auth) = &auth {
            req = req.header("authorization", auth);
        }
        let (status, headers, body) = call(&app, req.body(Body::empty()).unwrap()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{auth:?}");
        assert_eq!(body, "unauthorized");
        let challenges: Vec<_> = headers.get_all("www-authenticate").iter().collect();
        assert_eq!(challenges.len(), 2);
    }
    assert_eq!(
        call(&app, get("/counter")).await.2,
        "Counter value: 2",
        "a refused reset must not reset"
    );

    let req =
        request("POST", "/admin/counter/reset").header("authorization", basic("anyone", PASSWORD));
    assert_eq!(
        call(&app, req.body(Body::empty()).unwrap()).await.0,
        StatusCode::OK
    );
    assert_eq!(call(&app, get("/counter")).await.2, "Counter value: 1");
    let req = request("POST", "/admin/counter/reset")
        .header("authorization", format!("Bearer {PASSWORD}"));
    assert_eq!(
        call(&app, req.body(Body::empty()).unwrap()).await.0,
        StatusCode::OK
    );
    assert_eq!(call(&app, get("/counter")).await.2, "Counter value: 1");
}

#[tokio::test]
async fn log_level_changes_are_validated_and_bodies_are_bounded() {
    let calls = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let seen = calls.clone();
    let control: metrics_app::LogControl = std::sync::Arc::new(move |f| {
        seen.lock().unwrap().push(f.to_string());
        Ok(())
    });
    let app = app_with(Some(control));
    let put = |body: Vec<u8>, auth: bool| {
        let mut req = request("PUT", "/admin/log-level");
        if auth {
            req = req.header("authorization", format!("Bearer {PASSWORD}"));
        }
        req.body(Body::from(body)).unwrap()
    };
    assert_eq!(
        call(&app, put(b"debug".to_vec(), false)).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        call(&app, put(b"debug\n".to_vec(), true)).await.0,
        StatusCode::OK
    );
    // Filters that would enable nothing are refused, saying why.
    for (bad, why) in [
        (&b"[bad"[..], "invalid"),
        (b"debgu", "debgu"),
        (b"info\nwarn", "one line"),
        (b"off", "silence"),
    ] {
        let (status, _, body) = call(&app, put(bad.to_vec(), true)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(body.contains(why), "{body}");
    }
    assert_eq!(
        call(&app, put(vec![0xff, 0xfe], true)).await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        call(&app, put(vec![b'a'; 10_000], true)).await.0,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    assert_eq!(*calls.lock().unwrap(), vec!["debug".to_string()]);
}

#[tokio::test]
async fn admin_requests_are_rate_limited_per_client_even_with_the_right_password() {
    let app = router();
    let reset = |auth: String| {
        request("POST", "/admin/counter/reset")
            .header("authorization", auth)
            .body(Body::empty())
            .unwrap()
    };
    let mut statuses = Vec::new();
    for _ in 0..12 {
        statuses.push(call(&app, reset("Bearer guess".into())).await.0);
    }
    assert_eq!(statuses[..10], [StatusCode::UNAUTHORIZED; 10]);
    assert_eq!(statuses[10..], [StatusCode::TOO_MANY_REQUESTS; 2]);
    // Once limited, the right password gets no different answer: guessing learns nothing.
    let (status, headers, _) = call(&app, reset(format!("Bearer {PASSWORD}"))).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(headers["retry-after"], "1");
    let (_, _, text) = call(&app, get("/metrics")).await;
    assert!(
        text.contains("metrics_app_admin_rate_limited_total 3"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_four_tasks_of_five_hundred_requests_get_exactly_one_to_32000() {
    let app = TestApp::spawn(&[]).await;
    let client = client();
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let client = client.clone();
        let url = app.url("/counter");
        tasks.push(tokio::spawn(async move {
            let mut values = Vec::with_capacity(500);
            for _ in 0..500 {
                let body = get_text(&client, &url).await;
                values.push(counter_value(&body));
            }
            values
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort_unstable();
    assert_eq!(all.len(), 32_000);
    assert!(
        all.iter().copied().eq(1..=32_000),
        "values are not exactly 1..=32000"
    );
    assert_eq!(app.stop().await, metrics_app::Stopped::Clean);
}

/// Sends raw bytes and returns what the server answered before closing (at most 5 s).
fn raw_exchange(addr: std::net::SocketAddr, bytes: &[u8]) -> String {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let _ = stream.write_all(bytes);
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

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

/// The status code of the first response in `answer` (0 if there is none).
fn status_of(answer: &str) -> u16 {
    answer
        .lines()
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
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
    // Probes on the management port do not queue behind the public load.
    let http = client();
    let mut took = Vec::new();
    for path in ["/healthz", "/readyz", "/metrics"].repeat(5) {
        let started = Instant::now();
        let r = http.get(app.mgmt(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        r.bytes().await.unwrap();
        took.push(started.elapsed());
    }
    took.sort();
    let median = took[took.len() / 2];
    assert!(
        median < Duration::from_millis(100),
        "probes took {took:?} while the public listener was saturated"
    );
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_ascii_password_works_with_bearer_as_with_basic() {
    let password = "pässwörd-密码";
    let app = TestApp::spawn_with(common::config_with_password(
        &["--drain-delay", "0s"],
        password,
    ))
    .await;
    let addr = app.addr;
    let answers = tokio::task::spawn_blocking(move || {
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("admin:{password}"));
        [
            format!("Bearer {password}"),
            format!("Basic {basic}"),
            "Bearer pässwörd".to_string(),
        ]
        .map(|auth| {
            let request = format!(
                "POST /admin/counter/reset HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            status_of(&raw_exchange(addr, request.as_bytes()))
        })
    })
    .await
    .unwrap();
    assert_eq!(answers, [200, 200, 401]);
    app.stop().await;
}

#[tokio::test]
async fn every_route_is_labelled_by_its_own_template() {
    let app = router();
    for (method, path) in [
        ("GET", "/"),
        ("GET", "/counter"),
        ("POST", "/admin/counter/reset"),
        ("PUT", "/admin/log-level"),
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        ("GET", "/metrics"),
    ] {
        call(&app, request(method, path).body(Body::empty()).unwrap()).await;
    }
    let (_, _, text) = call(&app, get("/metrics")).await;
    for (method, path) in [
        ("GET", "/"),
        ("GET", "/counter"),
        ("POST", "/admin/counter/reset"),
        ("PUT", "/admin/log-level"),
        ("GET", "/healthz"),
        ("GET", "/readyz"),
    ] {
        let series = format!("http_requests_total{{route=\"{path}\",method=\"{method}\"");
        assert!(text.contains(&series), "{series} missing:\n{text}");
    }
    assert!(!text.contains("route=\"unmatched\""), "{text}");
}
