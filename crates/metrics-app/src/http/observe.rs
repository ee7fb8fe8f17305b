//! The pieces of what every request goes through around its router (`App::handle`): the
//! `route` label, the access event, the request id, and the `Host` rule of HTTP/1.1.
//!
//! Requests are labelled by the route template that answered, so `/counter?x=1` and a scan of
//! random paths cost no new series: unknown paths all become `unmatched`.

use std::sync::OnceLock;
use std::time::Duration;

use axum::http::header::HeaderName;
use axum::http::{HeaderValue, Method, Request, StatusCode, Version, header};
use prometheus_client::metrics::{counter::Counter, histogram::Histogram};
use tracing::Level;

use crate::state::AppState;

/// Header naming the instance that answered.
pub(super) static X_INSTANCE: HeaderName = HeaderName::from_static("x-instance");
/// Header correlating a request across the proxy, the service and the logs.
pub(super) static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Route label of requests that matched no route.
pub(crate) const UNMATCHED: &str = "unmatched";

/// Longest request id accepted from a client; longer or odd ones are replaced.
const MAX_REQUEST_ID_LEN: usize = 128;

/// The request counter and latency histogram of one label set.
pub(super) type Series = (Counter, Histogram);

/// The access event of an answered request, at debug when `quiet`, else at info.
pub(super) fn log_access(
    state: &AppState,
    quiet: bool,
    status: StatusCode,
    route: &str,
    method: &Method,
    elapsed: Duration,
    request_id: &HeaderValue,
) {
    let status = status.as_u16();
    let request_id = request_id.to_str().unwrap_or_default();
    let latency_ms = elapsed.as_micros() as f64 / 1000.0;
    let instance = state.instance.to_str().unwrap_or_default();
    macro_rules! access {
        ($level:expr) => {
            tracing::event!(target: "access", $level, method = method.as_str(), route, status, latency_ms, instance, request_id, "request")
        };
    }
    if quiet {
        access!(Level::DEBUG);
    } else {
        access!(Level::INFO);
    }
}

pub(super) struct InFlight<'a>(pub(super) &'a AppState);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.metrics.http_in_flight.dec();
    }
}

/// A client's request id is kept only as a short token of visible ASCII (ids end up in logs
/// and headers).
pub(super) fn is_sane_request_id(id: &HeaderValue) -> bool {
    let bytes = id.as_bytes();
    !bytes.is_empty() && bytes.len() <= MAX_REQUEST_ID_LEN && bytes.iter().all(u8::is_ascii_graphic)
}

/// RFC 9112 §3.2: an HTTP/1.1 request carries exactly one `Host` header (HTTP/1.0 may omit it).
pub(super) fn has_one_host<B>(request: &Request<B>) -> bool {
    let hosts = request.headers().get_all(header::HOST).iter().count();
    hosts == 1 || (hosts == 0 && request.version() != Version::HTTP_11)
}

/// A request id for a request that came without one: 16 random hex digits drawn once per
/// process, then a 16-digit sequence number. Unique across replicas and restarts without
/// asking the OS for randomness on every request, as a random UUID per request would; written
/// digit by digit, because `format!` with `{:x}` cost a measurable share of the service's own
/// instructions per request (callgrind figures: bench/README.md).
pub(super) fn new_request_id() -> HeaderValue {
    use std::hash::{BuildHasher, Hasher};
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
    HeaderValue::from_bytes(&id).unwrap_or(HeaderValue::from_static("0"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn generated_ids_are_32_hex_digits_with_a_fixed_prefix_and_a_sequence() {
        let (a, b) = (new_request_id(), new_request_id());
        let (a, b) = (a.to_str().unwrap(), b.to_str().unwrap());
        assert_eq!((a.len(), b.len()), (32, 32));
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(a[..16], b[..16]);
        let sequence = |id: &str| u64::from_str_radix(&id[16..], 16).unwrap();
        assert_eq!(sequence(b), sequence(a) + 1);
    }

    #[test]
    fn odd_request_ids_are_replaced_and_sane_ones_kept() {
        let long = "x".repeat(MAX_REQUEST_ID_LEN + 1);
        for (id, kept) in [
            ("abc-123", true),
            ("has space", false),
            ("", false),
            (&long, false),
        ] {
            let id = HeaderValue::from_str(id).unwrap();
            assert_eq!(is_sane_request_id(&id), kept, "{id:?}");
        }
    }
}
