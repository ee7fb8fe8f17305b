//! The one middleware every request passes: request id, instance header, metrics and the
//! access log.
//!
//! Routes are labelled by the router's matched path, so `/counter?x=1` and a scan of random
//! paths cost no new series: unknown paths all become `unmatched`.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::http::HeaderValue;
use axum::http::header::HeaderName;
use axum::response::Response;
use tower::{Layer, Service};

use crate::metrics::{HttpLabels, Method};
use crate::state::AppState;

/// Header naming the instance that answered.
pub static X_INSTANCE: HeaderName = HeaderName::from_static("x-instance");
/// Header correlating a request across the proxy, the service and the logs.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Route label of requests that matched no route.
pub const UNMATCHED: &str = "unmatched";

/// Longest request id accepted from a client; longer or odd ones are replaced.
const MAX_REQUEST_ID_LEN: usize = 128;

/// Wraps every route in [`Observe`].
///
/// A hand-written layer rather than `axum::middleware::from_fn`: this runs on every request,
/// and the generic version costs an extra boxed service clone and extractor pass per request
/// (about a tenth of the throughput in `bench/run.sh`).
#[derive(Clone)]
pub struct ObserveLayer {
    state: AppState,
}

impl ObserveLayer {
    /// A layer recording into `state`'s metrics and naming `state`'s instance.
    pub fn new(state: AppState) -> Self {
        Self { state }
    }
}

impl<S> Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Observe<S> {
        Observe {
            inner,
            state: self.state.clone(),
        }
    }
}

/// Observes one request: see the module documentation.
#[derive(Clone)]
pub struct Observe<S> {
    inner: S,
    state: AppState,
}

impl<S> Service<Request> for Observe<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = ObserveFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let started = Instant::now();
        let request_id = request
            .headers()
            .get(&X_REQUEST_ID)
            .filter(|v| is_sane_request_id(v))
            .cloned()
            .unwrap_or_else(new_request_id);
        let (route_index, route) = route_label(request.extensions().get::<MatchedPath>());
        // Kept for the log line as sent (the metric label folds unusual methods into OTHER).
        let http_method = request.method().clone();
        self.state.metrics.http_in_flight.inc();
        ObserveFuture {
            inner: self.inner.call(request),
            started,
            request_id,
            route_index,
            route,
            http_method,
            in_flight: InFlight(self.state.clone()),
        }
    }
}

pin_project_lite::pin_project! {
    /// A request being observed: records it when the inner service answers. A named future
    /// rather than a boxed `async` block: no allocation, and no copy of the inner future
    /// into the heap, on every request.
    pub struct ObserveFuture<F> {
        #[pin]
        inner: F,
        started: Instant,
        // Moved into the response's headers when it is ready.
        request_id: HeaderValue,
        route_index: Option<usize>,
        route: &'static str,
        http_method: axum::http::Method,
        // Decrements the in-flight gauge even if the future is dropped (client gone,
        // shutdown timeout); also the handle on the shared state.
        in_flight: InFlight,
    }
}

impl<F> Future for ObserveFuture<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Ok(mut response) = std::task::ready!(this.inner.poll(cx));
        let state = &this.in_flight.0;
        let elapsed = this.started.elapsed();
        let status = response.status().as_u16();
        record(
            state,
            *this.route_index,
            HttpLabels {
                route: this.route,
                method: Method::from(&*this.http_method),
                status,
            },
            elapsed,
        );
        // A ready future is not polled again: leave an empty value behind.
        let request_id = std::mem::replace(this.request_id, HeaderValue::from_static(""));
        access_log(
            state,
            this.route,
            this.http_method,
            status,
            elapsed,
            &request_id,
        );
        let headers = response.headers_mut();
        headers.insert(X_INSTANCE.clone(), state.instance.clone());
        headers.insert(X_REQUEST_ID.clone(), request_id);
        Poll::Ready(Ok(response))
    }
}

/// Counts the request and records its latency, through the pre-resolved handles when the
/// series is a `GET` → 200 one.
fn record(state: &AppState, route_index: Option<usize>, labels: HttpLabels, elapsed: Duration) {
    let seconds = elapsed.as_secs_f64();
    let fast = match (route_index, labels.method, labels.status) {
        (Some(i), Method::GET, 200) => state.metrics.http_ok_get.get(i).and_then(Option::as_ref),
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
    route: &'static str,
    method: &axum::http::Method,
    status: u16,
    elapsed: Duration,
    request_id: &HeaderValue,
) {
    // Field values are evaluated by the macros only when the event is enabled: with the
    // access log filtered out this costs a level check.
    macro_rules! event {
        ($level:expr) => {
            tracing::event!(
                target: "access",
                $level,
                method = method.as_str(),
                route,
                status,
                // Microsecond resolution is plenty and keeps log lines short.
                latency_ms = elapsed.as_micros() as f64 / 1000.0,
                instance = state.instance.to_str().unwrap_or_default(),
                request_id = request_id.to_str().unwrap_or_default(),
                "request"
            )
        };
    }
    if matches!(route, "/healthz" | "/readyz" | "/metrics") && status < 400 {
        event!(tracing::Level::DEBUG);
    } else {
        event!(tracing::Level::INFO);
    }
}

/// The route label and its index in [`crate::routes::ROUTES`]: one of the router's own paths,
/// so labels are `'static` and allocation-free.
fn route_label(matched: Option<&MatchedPath>) -> (Option<usize>, &'static str) {
    let Some(matched) = matched else {
        return (None, UNMATCHED);
    };
    crate::routes::ROUTES
        .iter()
        .position(|r| *r == matched.as_str())
        .map_or((None, UNMATCHED), |i| (Some(i), crate::routes::ROUTES[i]))
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
