//! The one middleware every request passes: request id, instance header, metrics and the
//! access log.
//!
//! Routes are labelled by the router's matched path, so `/counter?x=1` and a scan of random
//! paths cost no new series: unknown paths all become `unmatched`.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::HeaderValue;
use axum::http::header::HeaderName;
use axum::middleware::Next;
use axum::response::Response;

use crate::metrics::{HttpLabels, Method};
use crate::state::AppState;

/// Header naming the instance that answered.
pub static X_INSTANCE: HeaderName = HeaderName::from_static("x-instance");
/// Header correlating a request across the proxy, the service and the logs.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Route label of requests that matched no route.
pub const UNMATCHED: &str = "unmatched";

/// Longest request id accepted from a client; longer or odd ones are replaced.
const MAX_REQUEST_ID_LEN: usize = 128;

/// Observes one request: see the module documentation.
pub async fn observe(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let request_id = request
        .headers()
        .get(&X_REQUEST_ID)
        .filter(|v| is_sane_request_id(v))
        .cloned()
        .unwrap_or_else(new_request_id);
    let route = route_label(request.extensions().get::<MatchedPath>());
    let method = request.method().clone();

    state.metrics.http_in_flight.inc();
    // Decrement even if the handler future is dropped (client gone, shutdown timeout).
    let _in_flight = InFlight(&state);
    let mut response = next.run(request).await;
    let elapsed = started.elapsed();

    let headers = response.headers_mut();
    headers.insert(X_INSTANCE.clone(), state.instance.clone());
    headers.insert(X_REQUEST_ID.clone(), request_id.clone());

    let status = response.status().as_u16();
    let labels = HttpLabels {
        route,
        method: Method::from(&method),
        status,
    };
    state.metrics.http_requests.get_or_create(&labels).inc();
    state
        .metrics
        .http_duration
        .get_or_create(&labels)
        .observe(elapsed.as_secs_f64());

    let request_id = request_id.to_str().unwrap_or_default();
    let instance = state.instance.to_str().unwrap_or_default();
    // Microsecond resolution is plenty and keeps log lines short.
    let latency_ms = elapsed.as_micros() as f64 / 1000.0;
    // Probes and scrapes arrive every few seconds for ever: keep them out of the default log.
    if matches!(labels.route, "/healthz" | "/readyz" | "/metrics") && status < 400 {
        tracing::debug!(target: "access", method = %method, route = %labels.route, status, latency_ms, instance, request_id, "request");
    } else {
        tracing::info!(target: "access", method = %method, route = %labels.route, status, latency_ms, instance, request_id, "request");
    }
    response
}

/// The route label: one of the router's own paths, so labels are `'static` and allocation-free.
fn route_label(matched: Option<&MatchedPath>) -> &'static str {
    let Some(matched) = matched else {
        return UNMATCHED;
    };
    crate::routes::ROUTES
        .iter()
        .copied()
        .find(|r| *r == matched.as_str())
        .unwrap_or(UNMATCHED)
}

struct InFlight<'a>(&'a AppState);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.metrics.http_in_flight.dec();
    }
}

fn is_sane_request_id(value: &HeaderValue) -> bool {
    let bytes = value.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_REQUEST_ID_LEN
        && bytes.iter().all(|b| b.is_ascii_graphic())
}

/// A new request id: 16 random hex digits drawn once per process, then a 16-digit sequence
/// number. Unique across replicas and restarts without asking the OS for randomness, or
/// formatting through `fmt`, on every request (this is on the hot path).
fn new_request_id() -> HeaderValue {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    static PREFIX: OnceLock<[u8; 16]> = OnceLock::new();
    static SEQUENCE: AtomicU64 = AtomicU64::new(0);
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let prefix = PREFIX.get_or_init(|| {
        let mut p = [0u8; 16];
        p.copy_from_slice(&uuid::Uuid::new_v4().simple().to_string().as_bytes()[..16]);
        p
    });
    let mut id = [0u8; 32];
    id[..16].copy_from_slice(prefix);
    let seq = SEQUENCE.fetch_add(1, Ordering::Relaxed);
    for (i, byte) in id[16..].iter_mut().enumerate() {
        *byte = HEX[((seq >> (60 - 4 * i)) & 0xf) as usize];
    }
    HeaderValue::from_bytes(&id).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_must_be_short_visible_ascii() {
        assert!(is_sane_request_id(&HeaderValue::from_static("abc-123")));
        assert!(!is_sane_request_id(&HeaderValue::from_static("")));
        assert!(!is_sane_request_id(&HeaderValue::from_static("has space")));
        let long = "x".repeat(MAX_REQUEST_ID_LEN + 1);
        assert!(!is_sane_request_id(
            &HeaderValue::from_str(&long).unwrap_or(HeaderValue::from_static(""))
        ));
        let (a, b) = (new_request_id(), new_request_id());
        assert!(is_sane_request_id(&a) && a != b);
    }
}
