//! The management endpoints: liveness, readiness and the Prometheus exposition.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::error::AppError;
use crate::state::AppState;
use crate::store::StoreError;

/// `GET /healthz`: the process and its event loop answer.
pub(super) async fn healthz() -> &'static str {
    "ok"
}

/// `GET /readyz`: ready when not draining and the store can serve `/counter` — reachable, and
/// holding a usable counter (a corrupt key fails every `/counter`, so the pod must not look
/// ready).
pub(super) async fn readyz(State(state): State<AppState>) -> Response {
    if state.is_draining() {
        return (StatusCode::SERVICE_UNAVAILABLE, "draining").into_response();
    }
    match state.store.check().await {
        Ok(()) => {
            state.metrics.ready.set(1);
            "ready".into_response()
        }
        Err(error) => {
            state.metrics.ready.set(0);
            tracing::warn!(%error, "not ready");
            let reason = match error {
                StoreError::Unavailable(_) => format!("{} store unavailable", state.store.kind()),
                StoreError::Corrupt(_) => format!(
                    "{} store holds an invalid counter value (not a whole number INCRBY can increment): repair or delete the key",
                    state.store.kind()
                ),
            };
            (StatusCode::SERVICE_UNAVAILABLE, reason).into_response()
        }
    }
}

/// `GET /metrics`: OpenMetrics for scrapers that ask for it, classic text otherwise.
pub(super) async fn metrics(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let (content_type, body) = state
        .metrics
        .encode(accept)
        .map_err(|e| AppError::Internal(format!("metrics encoding failed: {e}")))?;
    Ok(([(header::CONTENT_TYPE, content_type)], body).into_response())
}
