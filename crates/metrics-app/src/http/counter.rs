//! The public endpoints: the dashboard title and the counter.

use std::time::Duration;

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use super::error::AppError;
use crate::state::AppState;

/// `GET /`.
pub(super) async fn root() -> &'static str {
    "Metrics Dashboard 📈"
}

/// A counter value is never the same twice: no cache may keep or share one.
const NO_STORE: HeaderValue = HeaderValue::from_static("no-store");

/// `GET /counter`: one increment, one answer. With fault modes on, reproduces the original bugs
/// after the increment, so the value itself stays correct.
pub(super) async fn counter(state: AppState) -> Result<Response, AppError> {
    let value = state.store.increment().await?;
    state
        .metrics
        .counter_value
        .set(i64::try_from(value).unwrap_or(i64::MAX));
    if !state.faults.is_empty() {
        with_faults(&state, value).await?;
    }
    // itoa rather than `format!`: this is the busiest answer.
    let body = ["Counter value: ", itoa::Buffer::new().format(value)].concat();
    Ok(([(header::CACHE_CONTROL, NO_STORE)], body).into_response())
}

/// `HEAD /counter`: the headers a `GET` would carry, without spending a counter value (HEAD is
/// safe: probes and caches send it expecting no effect). No `Content-Length`: the length of the
/// next value is not known without taking it.
pub(super) async fn counter_head() -> Response {
    (
        [
            (header::CACHE_CONTROL, NO_STORE),
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            ),
        ],
        axum::body::Body::empty(),
    )
        .into_response()
}

/// The fault modes' work after the increment of `value`.
async fn with_faults(state: &AppState, value: u64) -> Result<(), AppError> {
    if let Some(mb) = state.faults.leak_mb {
        let leak_state = state.clone();
        // Filling hundreds of megabytes takes a while: keep it off the async workers.
        let retained = tokio::task::spawn_blocking(move || leak_state.leak.retain(mb))
            .await
            .map_err(|e| AppError::Internal(format!("leak fault task failed: {e}")))?;
        state.metrics.leaked_bytes.set(retained);
    }
    if let Some(wait) = state.faults.slow_even.filter(|_| value % 2 == 0) {
        slow_even(state, wait).await;
    }
    Ok(())
}

/// The original's synchronous "background collection": burners start, the request waits.
async fn slow_even(state: &AppState, wait: Duration) {
    let started = state.burners.spawn(wait);
    state.metrics.fault_children_started.inc_by(started as u64);
    tokio::time::sleep(wait).await;
}
