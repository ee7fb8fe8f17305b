//! The admin API, protected by the service password and rate limited per client address.
//!
//! Accepts `Authorization: Bearer PASSWORD` or HTTP Basic with any user name and the password.
//! Comparison is constant-time; failures answer 401 with `WWW-Authenticate` and are logged
//! with the client address, never with the expected or the offered secret. A client address
//! gets a burst of admin requests and then one per second (429 beyond), checked before the
//! password, so guessing is slow whatever the answers say.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;

use super::error::AppError;
use crate::logging::parse_filter;
use crate::state::AppState;

/// Bodies are tiny (a log filter); anything bigger is refused with 413.
const MAX_BODY_BYTES: usize = 1024;

/// The client's address, as the connection saw it (the proxy's, behind one: per-address
/// limits then apply to the proxy as a whole, which errs on the safe side).
fn client(request: &Request) -> IpAddr {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip())
}

/// Admits the request if its client address is within its allowance and it carries the
/// password.
fn authorize(state: &AppState, headers: &HeaderMap, client: IpAddr) -> Result<(), AppError> {
    if !state.admit_admin_request(client) {
        state.metrics.admin_rate_limited.inc();
        tracing::warn!(%client, "admin request refused: too many from this address");
        return Err(AppError::RateLimited);
    }
    let Some(offered) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| offered_secret(v.as_bytes()))
    else {
        tracing::warn!(%client, "admin request without usable credentials");
        return Err(AppError::Unauthorized);
    };
    if state.password.matches(&offered) {
        Ok(())
    } else {
        tracing::warn!(%client, "admin request with a wrong password");
        Err(AppError::Unauthorized)
    }
}

/// Extracts the offered secret from a Bearer or Basic credential. Works on bytes: a password
/// outside ASCII is valid in both schemes.
fn offered_secret(value: &[u8]) -> Option<Vec<u8>> {
    let value = value.trim_ascii();
    let space = value.iter().position(|&b| b == b' ')?;
    let (scheme, rest) = (&value[..space], value[space..].trim_ascii());
    if scheme.eq_ignore_ascii_case(b"bearer") && !rest.is_empty() {
        return Some(rest.to_vec());
    }
    if scheme.eq_ignore_ascii_case(b"basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .ok()?;
        let colon = decoded.iter().position(|&b| b == b':')?;
        return Some(decoded[colon + 1..].to_vec());
    }
    None
}

/// `POST /admin/counter/reset`.
pub(super) async fn reset_counter(
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, AppError> {
    let client = client(&request);
    authorize(&state, request.headers(), client)?;
    state.store.reset().await?;
    state.metrics.counter_value.set(0);
    tracing::warn!(%client, "counter reset by the admin API");
    Ok("counter reset".into_response())
}

/// `PUT /admin/log-level`: the body is a `RUST_LOG`-style filter. The change is logged before
/// it takes effect, so even a filter that hides later lines leaves a record of itself.
pub(super) async fn set_log_level(
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, AppError> {
    let client = client(&request);
    authorize(&state, request.headers(), client)?;
    let refused = |error: AppError| {
        tracing::warn!(%client, %error, "admin request refused");
        error
    };
    let body = read_body(request.into_body()).await.map_err(refused)?;
    let filter = parse_filter(&body).map_err(|e| refused(bad_request(&e.to_string())))?;
    let Some(control) = &state.log_control else {
        return Err(AppError::Internal(
            "log level control is not installed".into(),
        ));
    };
    let directives = body.trim();
    tracing::warn!(%client, filter = %directives, "log filter changed by the admin API");
    control(filter).map_err(AppError::Internal)?;
    Ok(format!("log filter set to {directives}").into_response())
}

/// Reads a whole request body of at most [`MAX_BODY_BYTES`] of UTF-8.
async fn read_body(body: Body) -> Result<String, AppError> {
    let bytes = axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|error| {
            let top: &(dyn std::error::Error + 'static) = &error;
            let causes = || std::iter::successors(Some(top), |e| e.source());
            if causes().any(|e| e.is::<http_body_util::LengthLimitError>()) {
                AppError::Refused(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "request body too large".into(),
                )
            } else if causes().any(|e| e.is::<tower_http::timeout::TimeoutError>()) {
                AppError::Refused(StatusCode::REQUEST_TIMEOUT, "request body timed out".into())
            } else {
                bad_request("the request body could not be read")
            }
        })?;
    String::from_utf8(bytes.to_vec())
        .map_err(|_| bad_request("the request body must be UTF-8 text"))
}

fn bad_request(reason: &str) -> AppError {
    AppError::Refused(StatusCode::BAD_REQUEST, reason.into())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn bearer_and_basic_credentials_are_understood_in_any_encoding() {
        assert_eq!(offered_secret(b"Bearer s3cret"), Some(b"s3cret".to_vec()));
        // "admin:s3cret"
        assert_eq!(
            offered_secret(b"Basic YWRtaW46czNjcmV0"),
            Some(b"s3cret".to_vec())
        );
        let encoded = base64::engine::general_purpose::STANDARD.encode("u:pw:x");
        assert_eq!(
            offered_secret(format!("basic {encoded}").as_bytes()),
            Some(b"pw:x".to_vec())
        );
        // A UTF-8 password works with Bearer as it does with Basic.
        let utf8 = "pässwörd-密码";
        assert_eq!(
            offered_secret(format!("Bearer {utf8}").as_bytes()),
            Some(utf8.as_bytes().to_vec())
        );
        let encoded = base64::engine::general_purpose::STANDARD.encode(format!("u:{utf8}"));
        assert_eq!(
            offered_secret(format!("Basic {encoded}").as_bytes()),
            Some(utf8.as_bytes().to_vec())
        );
    }

    #[test]
    fn malformed_credentials_offer_nothing() {
        for bad in [
            "",
            "Bearer",
            "Bearer ",
            "Basic !!!",
            "Basic Zm9v",
            "Digest abc",
            "s3cret",
        ] {
            assert_eq!(offered_secret(bad.as_bytes()), None, "{bad}");
        }
    }
}
