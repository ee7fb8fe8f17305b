//! The error type of the HTTP handlers.
//!
//! Client-facing bodies are short and generic; the detail of a 5xx goes to the log, never to
//! the client (it could name internal hosts, and must never carry a secret).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::store::StoreError;

/// A failed request.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The counter store cannot serve; the client should retry later.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Missing or wrong admin credentials.
    #[error("unauthorized")]
    Unauthorized,
    /// The client sent too many admin requests recently.
    #[error("too many requests")]
    RateLimited,
    /// The request is understood but its content is not acceptable.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The request body is longer than the endpoint accepts.
    #[error("request body too large")]
    TooLarge,
    /// The request body did not arrive in time.
    #[error("request body timed out")]
    BodyTimeout,
    /// Something failed that the client cannot fix.
    #[error("internal error: {0}")]
    Internal(String),
}

fn text(status: StatusCode, body: &'static str) -> Response {
    (status, body).into_response()
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        match self {
            AppError::Store(StoreError::Unavailable(error)) => {
                tracing::warn!(%error, "store call failed");
                let mut response =
                    text(StatusCode::SERVICE_UNAVAILABLE, "counter store unavailable");
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                response
            }
            AppError::Store(StoreError::Corrupt(error)) => {
                tracing::error!(%error, "the counter store holds an invalid counter");
                text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the counter store holds an invalid counter value",
                )
            }
            AppError::Unauthorized => {
                let mut response = text(StatusCode::UNAUTHORIZED, "unauthorized");
                let headers = response.headers_mut();
                headers.append(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(r#"Basic realm="metrics-app admin", charset="UTF-8""#),
                );
                headers.append(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(r#"Bearer realm="metrics-app admin""#),
                );
                response
            }
            AppError::RateLimited => {
                let mut response = text(StatusCode::TOO_MANY_REQUESTS, "too many admin requests");
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                response
            }
            AppError::BadRequest(message) => (StatusCode::BAD_REQUEST, message).into_response(),
            AppError::TooLarge => text(StatusCode::PAYLOAD_TOO_LARGE, "request body too large"),
            AppError::BodyTimeout => text(StatusCode::REQUEST_TIMEOUT, "request body timed out"),
            AppError::Internal(error) => {
                tracing::error!(%error, "internal error");
                text(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
            }
        }
    }
}
