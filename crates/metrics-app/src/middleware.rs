//! What every request goes through, around its handler: request id, instance header, metrics
//! and the access log. [`crate::routes::App`] starts an [`Observation`] when a request arrives
//! and its [`ObserveFuture`] finishes it when the answer is ready.
//!
//! Requests are labelled by the [`Route`] that answered, so `/counter?x=1` and a scan of random
//! paths cost no new series: unknown paths all become `unmatched`.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::http::header::HeaderName;
use axum::http::{HeaderValue, Request};
use axum::response::Response;

use tracing::Level;

use crate::logging::access::AccessRecord;
use crate::metrics::{HttpLabels, Method};
use crate::routes::Route;
use crate::state::AppState;

/// Header naming the instance that answered.
pub static X_INSTANCE: HeaderName = HeaderName::from_static("x-instance");
/// Header correlating a request across the proxy, the service and the logs.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Route label of requests that matched no route.
pub const UNMATCHED: &str = "unmatched";

/// Longest request id accepted from a client; longer or odd ones are replaced.
const MAX_REQUEST_ID_LEN: usize = 128;

/// What is noted about a request when it arrives, to record it when it is answered.
pub struct Observation {
    started: Instant,
    route: Option<Route>,
    // Kept for the log line as sent (the metric label folds unusual methods into OTHER).
    http_method: axum::http::Method,
    // Moved into the response's headers when it is ready.
    request_id: HeaderValue,
    // Decrements the in-flight gauge even if the request is dropped (client gone, shutdown
    // timeout); also the handle on the shared state.
    in_flight: InFlight,
}

impl Observation {
    /// Starts observing `request`, which `route` answers (`None`: no route matched).
    pub fn start<B>(state: &AppState, request: &Request<B>, route: Option<Route>) -> Self {
        let started = Instant::now();
        let request_id = request
            .headers()
            .get(&X_REQUEST_ID)
            .filter(|v| is_sane_request_id(v))
            .cloned()
            .unwrap_or_else(new_request_id);
        state.metrics.http_in_flight.inc();
        Self {
            started,
            route,
            http_method: request.method().clone(),
            request_id,
            in_flight: InFlight(state.clone()),
        }
    }

    /// Records the answer: metrics, access log, `X-Instance` and `X-Request-Id`.
    fn finish(&mut self, response: &mut Response) {
        let state = &self.in_flight.0;
        let elapsed = self.started.elapsed();
        let status = response.status().as_u16();
        let route = self.route.map_or(UNMATCHED, Route::path);
        record(
            state,
            self.route,
            HttpLabels {
                route,
                method: Method::from(&self.http_method),
                status,
            },
            elapsed,
        );
        // Finished once: leave an empty value behind.
        let request_id = std::mem::replace(&mut self.request_id, HeaderValue::from_static(""));
        access_log(
            state,
            self.route,
            &self.http_method,
            status,
            elapsed,
            &request_id,
        );
        let headers = response.headers_mut();
        headers.insert(X_INSTANCE.clone(), state.instance.clone());
        headers.insert(X_REQUEST_ID.clone(), request_id);
    }
}

pin_project_lite::pin_project! {
    /// A request being answered and observed: records it when the answer is ready. A named
    /// future rather than a boxed `async` block: no allocation, and no copy of the inner
    /// future into the heap, on every request.
    pub struct ObserveFuture<F> {
        #[pin]
        inner: F,
        observation: Observation,
    }
}

impl<F> ObserveFuture<F> {
    /// `inner`'s answer, recorded by `observation`.
    pub fn new(inner: F, observation: Observation) -> Self {
        Self { inner, observation }
    }
}

impl<F> Future for ObserveFuture<F>
where
    F: Future<Output = Response>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = std::task::ready!(this.inner.poll(cx));
        this.observation.finish(&mut response);
        Poll::Ready(Ok(response))
    }
}

/// Counts the request and records its latency, through the pre-resolved handles when the
/// series is a `GET` → 200 one.
fn record(state: &AppState, route: Option<Route>, labels: HttpLabels, elapsed: Duration) {
    let seconds = elapsed.as_secs_f64();
    let fast = match (route, labels.method, labels.status) {
        (Some(route), Method::GET, 200) => state
            .metrics
            .http_ok_get
            .get(route.index())
            .and_then(Option::as_ref),
        _ => None,
    };
    if let Some((requests, duration)) = fast {
        requests.inc();
        duration.observe(seconds);
    } else {
        state.metrics.http_requests.get_or_create(&labels).inc();
        state
            .metrics
            .http_duration
            .get_or_create(&labels)
            .observe(seconds);
    }
}

/// One access-log event. Probes and scrapes arrive every few seconds for ever: they are kept
/// out of the default (info) log unless they fail.
fn access_log(
    state: &AppState,
    route: Option<Route>,
    method: &axum::http::Method,
    status: u16,
    elapsed: Duration,
    request_id: &HeaderValue,
) {
    let quiet =
        matches!(route, Some(Route::Healthz | Route::Readyz | Route::Metrics)) && status < 400;
    let level = if quiet { Level::DEBUG } else { Level::INFO };
    if !state.access_log.enabled(level) {
        return;
    }
    state.access_log.write(&AccessRecord {
        level,
        method: method.as_str(),
        route: route.map_or(UNMATCHED, Route::path),
        status,
        latency_micros: u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
        instance: state.instance.to_str().unwrap_or_default(),
        request_id: request_id.to_str().unwrap_or_default(),
    });
}

struct InFlight(AppState);

impl Drop for InFlight {
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
