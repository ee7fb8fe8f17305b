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

use super::ROUTES;
use crate::metrics::{HttpLabels, Method};
use crate::state::AppState;

/// Header naming the instance that answered.
static X_INSTANCE: HeaderName = HeaderName::from_static("x-instance");
/// Header correlating a request across the proxy, the service and the logs.
static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Route label of requests that matched no route.
pub(crate) const UNMATCHED: &str = "unmatched";

/// Longest request id accepted from a client; longer or odd ones are replaced.
const MAX_REQUEST_ID_LEN: usize = 128;

/// Counts and times the request, logs its access event (when enabled) and names the instance
/// on the response.
pub(super) async fn observe(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .and_then(|m| ROUTES.iter().find(|r| **r == m.as_str()).copied())
        .unwrap_or(UNMATCHED);
    let method = request.method().clone();
    state.metrics.http_in_flight.inc();
    // Decrements the gauge even if the request is dropped (client gone, shutdown timeout).
    let _in_flight = InFlight(&state);
    let mut response = next.run(request).await;
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
pub(super) async fn drop_odd_request_id(mut request: Request) -> Request {
    let odd = request.headers().get(&X_REQUEST_ID).is_some_and(|v| {
        let bytes = v.as_bytes();
        bytes.is_empty()
            || bytes.len() > MAX_REQUEST_ID_LEN
            || !bytes.iter().all(u8::is_ascii_graphic)
    });
    if odd {
        request.headers_mut().remove(&X_REQUEST_ID);
    }
    request
}

/// RFC 9112 §3.2: an HTTP/1.1 request without a `Host` header, or with more than one, gets 400.
pub(super) async fn require_one_host(request: Request, next: Next) -> Response {
    let hosts = request.headers().get_all(header::HOST).iter().count();
    let required = request.version() == Version::HTTP_11;
    if hosts > 1 || (required && hosts == 0) {
        return (
            StatusCode::BAD_REQUEST,
            "an HTTP/1.1 request needs exactly one Host header",
        )
            .into_response();
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn odd_request_ids_are_dropped_and_sane_ones_kept() {
        for (id, kept) in [("abc-123", true), ("has space", false), ("", false)] {
            let request = Request::builder()
                .header(&X_REQUEST_ID, id)
                .body(axum::body::Body::empty())
                .unwrap_or_default();
            let request = drop_odd_request_id(request).await;
            assert_eq!(
                request.headers().contains_key(&X_REQUEST_ID),
                kept,
                "{id:?}"
            );
        }
    }
}
