//! The HTTP API through each listener's application (`App::handle`) and through real sockets in this process.
//!
//! Here the public contract and the metrics; `admin`: the admin API (credentials, filters, rate
//! limit); `connections`: what a connection can do to the server (malformed or slow heads,
//! stalled bodies, saturation, drain, maximum age).
#![allow(clippy::unwrap_used, missing_docs)]

mod admin;
#[path = "../common/mod.rs"]
mod common;
mod connections;

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

/// The status code of the first response in `answer` (0 if there is none).
fn status_of(answer: &str) -> u16 {
    answer
        .lines()
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
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
