//! The admin API, protected by the service password.
//!
//! Accepts `Authorization: Bearer PASSWORD` or HTTP Basic with any user name and the password.
//! Comparison is constant-time; failures answer 401 with `WWW-Authenticate`, and neither the
//! expected nor the offered secret is ever logged.

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;

use crate::error::AppError;
use crate::state::AppState;

/// Bodies are tiny (a log filter); anything bigger is refused with 413.
const MAX_BODY_BYTES: usize = 1024;

/// Checks the `Authorization` header against the password.
pub fn authorize(headers: &HeaderMap, state: &AppState) -> Result<(), AppError> {
    let offered = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(offered_secret)
        .ok_or(AppError::Unauthorized)?;
    if state.password.matches(&offered) {
        Ok(())
    } else {
        tracing::warn!("admin request with a wrong password");
        Err(AppError::Unauthorized)
    }
}

/// Extracts the offered secret from a Bearer or Basic credential.
fn offered_secret(value: &str) -> Option<Vec<u8>> {
    let (scheme, rest) = value.trim().split_once(' ')?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(rest.as_bytes().to_vec());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .ok()?;
        let colon = decoded.iter().position(|&b| b == b':')?;
        return Some(decoded[colon + 1..].to_vec());
    }
    None
}

/// `POST /admin/counter/reset`.
pub async fn reset_counter(state: &AppState, headers: &HeaderMap) -> Result<Response, AppError> {
    authorize(headers, state)?;
    state.store.reset().await?;
    state.metrics.counter_value.set(0);
    tracing::info!("counter reset by the admin API");
    Ok((StatusCode::OK, "counter reset").into_response())
}

/// `PUT /admin/log-level`: the body is a `RUST_LOG`-style filter.
pub async fn set_log_level(state: &AppState, request: Request<Body>) -> Result<Response, AppError> {
    authorize(request.headers(), state)?;
    let body = read_body(request.into_body()).await?;
    let filter = body.trim();
    if filter.is_empty() || filter.len() > 512 {
        return Err(AppError::BadRequest(
            "the body must be a log filter such as `debug` or `metrics_app=trace,info`".into(),
        ));
    }
    let Some(control) = &state.log_control else {
        return Err(AppError::Internal(
            "log level control is not installed".into(),
        ));
    };
    control(filter).map_err(AppError::BadRequest)?;
    tracing::info!(%filter, "log filter changed by the admin API");
    Ok((StatusCode::OK, format!("log filter set to {filter}")).into_response())
}

/// Reads a whole request body of at most [`MAX_BODY_BYTES`] of UTF-8.
async fn read_body(body: Body) -> Result<String, AppError> {
    let bytes = axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|error| {
            let too_long = std::error::Error::source(&error)
                .is_some_and(|e| e.is::<http_body_util::LengthLimitError>());
            if too_long {
                AppError::TooLarge
            } else {
                AppError::BadRequest("the request body could not be read".into())
            }
        })?;
    String::from_utf8(bytes.to_vec())
        .map_err(|_| AppError::BadRequest("the request body must be UTF-8 text".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_and_basic_credentials_are_understood() {
        assert_eq!(offered_secret("Bearer s3cret"), Some(b"s3cret".to_vec()));
        // "admin:s3cret"
        assert_eq!(
            offered_secret("Basic YWRtaW46czNjcmV0"),
            Some(b"s3cret".to_vec())
        );
        // ":pw:with:colons" keeps everything after the first colon
        let encoded = base64::engine::general_purpose::STANDARD.encode("u:pw:x");
        assert_eq!(
            offered_secret(&format!("basic {encoded}")),
            Some(b"pw:x".to_vec())
        );
    }

    #[test]
    fn malformed_credentials_offer_nothing() {
        for bad in [
            "",
            "Bearer",
            "Basic !!!",
            "Basic Zm9v",
            "Digest abc",
            "s3cret",
        ] {
            assert_eq!(offered_secret(bad), None, "{bad}");
        }
    }
}
