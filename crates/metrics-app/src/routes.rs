//! The router and the public handlers.

use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};

use crate::admin;
use crate::error::AppError;
use crate::faults;
use crate::middleware;
use crate::state::AppState;

/// Content type of plain answers.
const TEXT: HeaderValue = HeaderValue::from_static("text/plain; charset=utf-8");
/// Bodies are tiny (a log filter at most); anything bigger is refused with 413.
const MAX_BODY_BYTES: usize = 1024;

/// Every route path, for the bounded `route` metric label.
pub const ROUTES: [&str; 7] = [
    "/",
    "/counter",
    "/healthz",
    "/readyz",
    "/metrics",
    "/admin/counter/reset",
    "/admin/log-level",
];

/// The routes answering `GET`: their `GET` → 200 metric series exist from the start.
pub const GET_ROUTES: [&str; 5] = ["/", "/counter", "/healthz", "/readyz", "/metrics"];

/// The whole HTTP application, ready for `oneshot` tests or a server.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/", get(root))
        .route("/counter", get(counter))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/admin/counter/reset", post(admin::reset_counter))
        .route("/admin/log-level", put(admin::set_log_level))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::ObserveLayer::new(state.clone()))
        .with_state(state)
}

fn text(status: StatusCode, body: impl Into<String>) -> Response {
    (status, [(header::CONTENT_TYPE, TEXT)], body.into()).into_response()
}

async fn root() -> Response {
    text(StatusCode::OK, "Metrics Dashboard 📈")
}

/// `GET /counter`: one increment, one answer. With fault modes on, reproduces the original bugs
/// after the increment, so the value itself stays correct.
async fn counter(State(state): State<AppState>) -> Result<Response, AppError> {
    let value = state.store.increment().await?;
    state
        .metrics
        .counter_value
        .set(i64::try_from(value).unwrap_or(i64::MAX));
    if let Some(mb) = state.faults.leak_mb {
        let leak_state = state.clone();
        // Filling hundreds of megabytes takes a while: keep it off the async workers.
        let retained = tokio::task::spawn_blocking(move || leak_state.leak.retain(mb))
            .await
            .map_err(|e| AppError::Internal(format!("leak fault task failed: {e}")))?;
        state.metrics.leaked_bytes.set(retained);
    }
    if let Some(wait) = state.faults.slow_even.filter(|_| value % 2 == 0) {
        slow_even(&state, wait).await;
    }
    Ok(text(StatusCode::OK, format!("Counter value: {value}")))
}

/// The original's synchronous "background collection": burners start, the request waits.
async fn slow_even(state: &AppState, wait: Duration) {
    let started = faults::spawn_burners(wait);
    state.metrics.fault_children_started.inc_by(started as u64);
    tokio::time::sleep(wait).await;
}

async fn healthz() -> Response {
    text(StatusCode::OK, "ok")
}

/// `GET /readyz`: ready when not draining and the store answers.
async fn readyz(State(state): State<AppState>) -> Response {
    if state.is_draining() {
        return text(StatusCode::SERVICE_UNAVAILABLE, "draining");
    }
    match state.store.ping().await {
        Ok(()) => {
            state.metrics.ready.set(1);
            text(StatusCode::OK, "ready")
        }
        Err(error) => {
            state.metrics.ready.set(0);
            tracing::warn!(%error, "not ready");
            text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("{} store unavailable", state.store.kind()),
            )
        }
    }
}

/// `GET /metrics`: OpenMetrics for scrapers that ask for it, classic text otherwise.
async fn metrics(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
) -> Result<Response, AppError> {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let format = crate::metrics::Format::from_accept(accept);
    let body = state
        .metrics
        .encode(format)
        .map_err(|e| AppError::Internal(format!("metrics encoding failed: {e}")))?;
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, format.content_type())],
        body,
    )
        .into_response())
}

async fn not_found() -> Response {
    text(StatusCode::NOT_FOUND, "not found")
}

async fn method_not_allowed() -> Response {
    text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
}
