//! What every request goes through around its handler: metrics and the access event
//! ([`observe`]), request-id hygiene, and the `Host` rule of HTTP/1.1.
//!
//! Requests are labelled by the route template that answered, so `/counter?x=1` and a scan of
//! random paths cost no new series: unknown paths all become `unmatched`.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header::HeaderName;
use axum::http::{StatusCode, Version, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body::Body as _;
use tracing::Level;

use crate::metrics::{HttpLabels, Method};
use crate::state::AppState;

/// Header naming the instance that answered.
static X_INSTANCE: HeaderName = HeaderName::from_static("x-instance");
/// Header correlating a request across the proxy, the service and the logs.
static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Route templates of both routers, which are also the `route` label of the metrics (a test
/// checks that every route the routers answer is here).
const ROUTES: [&str; 7] = [
    "/",
    "/counter",
    "/admin/counter/reset",
    "/admin/log-level",
    "/healthz",
    "/readyz",
    "/metrics",
];

/// Route label of requests that matched no route.
pub(crate) const UNMATCHED: &str = "unmatched";

/// Longest request id accepted from a client; longer or odd ones are replaced.
const MAX_REQUEST_ID_LEN: usize = 128;

/// Counts and times the request, logs its access event (when enabled) and names the instance
/// on the response. Before the inner layers see the request: a client's odd request id is
/// dropped (so a fresh one is generated), and an HTTP/1.1 request without exactly one `Host`
/// is answered 400 (RFC 9112 §3.2). One middleware rather than three: each `from_fn` layer
/// costs a boxed future and a clone of the inner service per request.
pub(super) async fn observe(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    drop_odd_request_id(&mut request);
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .and_then(|m| ROUTES.iter().find(|r| **r == m.as_str()).copied())
        .unwrap_or(UNMATCHED);
    let method = request.method().clone();
    state.metrics.http_in_flight.inc();
    // Decrements the gauge even if the request is dropped (client gone, shutdown timeout).
    let _in_flight = InFlight(&state);
    let mut response = if has_one_host(&request) {
        next.run(request).await
    } else {
        (
            StatusCode::BAD_REQUEST,
            "an HTTP/1.1 request needs exactly one Host header",
        )
            .into_response()
    };
    let elapsed = started.elapsed();
    let status = response.status();
    if status == StatusCode::METHOD_NOT_ALLOWED && response.body().size_hint().exact() == Some(0) {
        // axum's 405 has the `Allow` header but no body; the contract promises one.
        *response.body_mut() = "method not allowed".into();
    }
    let labels = HttpLabels {
        route,
        method: Method::from(&method),
        status: status.as_u16(),
    };
    state.metrics.http_requests.get_or_create(&labels).inc();
    state
        .metrics
        .http_duration
        .get_or_create(&labels)
        .observe(elapsed.as_secs_f64());
    if state.access_log {
        // Probes and scrapes arrive every few seconds for ever: debug unless they fail.
        let quiet = matches!(route, "/healthz" | "/readyz" | "/metrics") && status.as_u16() < 400;
        let request_id = response
            .headers()
            .get(&X_REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let latency_ms = elapsed.as_micros() as f64 / 1000.0;
        let instance = state.instance.to_str().unwrap_or_default();
        macro_rules! access {
            ($level:expr) => {
                tracing::event!(target: "access", $level, method = method.as_str(), route, status = status.as_u16(), latency_ms, instance, request_id, "request")
            };
        }
        if quiet {
            access!(Level::DEBUG);
        } else {
            access!(Level::INFO);
        }
    }
    response
        .headers_mut()
        .insert(X_INSTANCE.clone(), state.instance.clone());
    response
}

struct InFlight<'a>(&'a AppState);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.metrics.http_in_flight.dec();
    }
}

/// The answer for paths no route matches.
pub(super) async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "not found").into_response()
}

/// Drops a client's request id that is not a short token of visible ASCII, so that a fresh
/// one is generated in its place (ids end up in logs and headers).
fn drop_odd_request_id(request: &mut Request) {
    let odd = request.headers().get(&X_REQUEST_ID).is_some_and(|v| {
        let bytes = v.as_bytes();
        bytes.is_empty()
            || bytes.len() > MAX_REQUEST_ID_LEN
            || !bytes.iter().all(u8::is_ascii_graphic)
    });
    if odd {
        request.headers_mut().remove(&X_REQUEST_ID);
    }
}

/// RFC 9112 §3.2: an HTTP/1.1 request carries exactly one `Host` header (HTTP/1.0 may omit it).
fn has_one_host(request: &Request) -> bool {
    let hosts = request.headers().get_all(header::HOST).iter().count();
    hosts == 1 || (hosts == 0 && request.version() != Version::HTTP_11)
}

/// Request ids for requests that came without one: 16 random hex digits drawn once per
/// process, then a 16-digit sequence number. Unique across replicas and restarts without
/// asking the OS for randomness on every request, as a random UUID per request would; written
/// digit by digit, because `format!` with `{:x}` was a tenth of the service's own instructions
/// per request (callgrind, bench/README.md).
#[derive(Clone, Copy, Default)]
pub(super) struct SequentialIds;

impl tower_http::request_id::MakeRequestId for SequentialIds {
    fn make_request_id<B>(
        &mut self,
        _: &axum::http::Request<B>,
    ) -> Option<tower_http::request_id::RequestId> {
        use std::hash::{BuildHasher, Hasher};
        use std::sync::OnceLock;
        use std::sync::atomic::{AtomicU64, Ordering};
        static PREFIX: OnceLock<u64> = OnceLock::new();
        static SEQUENCE: AtomicU64 = AtomicU64::new(0);
        // std's hasher keys are random per process: a source of randomness without a crate.
        let prefix = *PREFIX.get_or_init(|| {
            let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
            hasher.write_u32(std::process::id());
            hasher.finish()
        });
        let sequence = SEQUENCE.fetch_add(1, Ordering::Relaxed);
        let mut id = [0u8; 32];
        for (i, digit) in id.iter_mut().enumerate() {
            let word = if i < 16 { prefix } else { sequence };
            *digit = b"0123456789abcdef"[((word >> (60 - 4 * (i % 16))) & 0xf) as usize];
        }
        axum::http::HeaderValue::from_bytes(&id)
            .ok()
            .map(tower_http::request_id::RequestId::new)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn generated_ids_are_32_hex_digits_with_a_fixed_prefix_and_a_sequence() {
        use tower_http::request_id::MakeRequestId;
        let request = Request::new(axum::body::Body::empty());
        let mut ids = SequentialIds;
        let a = ids.make_request_id(&request).unwrap();
        let b = ids.make_request_id(&request).unwrap();
        let (a, b) = (
            a.header_value().to_str().unwrap(),
            b.header_value().to_str().unwrap(),
        );
        assert_eq!((a.len(), b.len()), (32, 32));
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(a[..16], b[..16]);
        let sequence = |id: &str| u64::from_str_radix(&id[16..], 16).unwrap();
        assert_eq!(sequence(b), sequence(a) + 1);
    }

    #[test]
    fn odd_request_ids_are_dropped_and_sane_ones_kept() {
        for (id, kept) in [("abc-123", true), ("has space", false), ("", false)] {
            let mut request = Request::builder()
                .header(&X_REQUEST_ID, id)
                .body(axum::body::Body::empty())
                .unwrap_or_default();
            drop_odd_request_id(&mut request);
            assert_eq!(
                request.headers().contains_key(&X_REQUEST_ID),
                kept,
                "{id:?}"
            );
        }
    }
}
