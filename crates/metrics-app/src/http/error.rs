//! The error type of the HTTP handlers.
//!
//! Client-facing bodies are short and generic; the detail of a 5xx goes to the log, never to
//! the client (it could name internal hosts, and must never carry a secret).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::store::StoreError;

/// A failed request.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AppError {
    /// The counter store cannot serve; the client should retry later.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Missing or wrong admin credentials.
    #[error("unauthorized")]
    Unauthorized,
    /// The client sent too many admin requests recently.
    #[error("too many requests")]
    RateLimited,
    /// The request cannot be served as sent (400, 408, 413), with the reason for the client.
    #[error("refused ({0}): {1}")]
    Refused(StatusCode, String),
    /// Something failed that the client cannot fix.
    #[error("internal error: {0}")]
    Internal(String),
}

/// `Retry-After: 1`: the condition is expected to pass soon.
const RETRY: [(header::HeaderName, HeaderValue); 1] =
    [(header::RETRY_AFTER, HeaderValue::from_static("1"))];

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        match self {
            AppError::Store(StoreError::Unavailable(error)) => {
                tracing::warn!(%error, "store call failed");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    RETRY,
                    "counter store unavailable",
                )
                    .into_response()
            }
            AppError::Store(StoreError::Corrupt(error)) => {
                tracing::error!(%error, "the counter store holds an invalid counter");
                let body = "the counter store holds an invalid counter value";
                (StatusCode::INTERNAL_SERVER_ERROR, body).into_response()
            }
            AppError::Unauthorized => {
                let challenge = |v| (header::WWW_AUTHENTICATE, HeaderValue::from_static(v));
                let mut response = (StatusCode::UNAUTHORIZED, "unauthorized").into_response();
                response.headers_mut().extend([
                    challenge(r#"Basic realm="metrics-app admin", charset="UTF-8""#),
                    challenge(r#"Bearer realm="metrics-app admin""#),
                ]);
                response
            }
            AppError::RateLimited => (
                StatusCode::TOO_MANY_REQUESTS,
                RETRY,
                "too many admin requests",
            )
                .into_response(),
            AppError::Refused(status, reason) => (status, reason).into_response(),
            AppError::Internal(error) => {
                tracing::error!(%error, "internal error");
                (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
            }
        }
    }
}
