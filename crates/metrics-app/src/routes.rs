//! The routes, the application service that dispatches to them, and the public handlers.
//!
//! Every path is fixed, so routing is one `match` on the path and one on the method, written
//! out in [`Route`]: the same table names the `route` label of the metrics, so a label can
//! never disagree with what answered. axum's `Router` is built for parameterised paths and
//! nested services; on this service it cost about a tenth of the throughput per request
//! (boxed service clones, a matched-path and a path-parameter extension on every request;
//! `bench/README.md`). For the same reason the handlers are plain functions of the state and
//! of what they read from the request, called directly rather than through axum's extractor
//! machinery (a boxed future and a request taken apart and rebuilt per call); they answer
//! with axum's responses.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body::Body as _;
use tower::Service;

use crate::admin;
use crate::error::AppError;
use crate::faults;
use crate::middleware::{self, ObserveFuture};
use crate::state::AppState;

/// Content type of plain answers.
const TEXT: HeaderValue = HeaderValue::from_static("text/plain; charset=utf-8");

/// A route of the service: a fixed path and the one method it answers (`GET` routes also
/// answer `HEAD`, with the headers and no body).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `GET /`: the dashboard title.
    Root,
    /// `GET /counter`: the next counter value.
    Counter,
    /// `GET /healthz`: liveness.
    Healthz,
    /// `GET /readyz`: readiness.
    Readyz,
    /// `GET /metrics`: Prometheus exposition.
    Metrics,
    /// `POST /admin/counter/reset`.
    ResetCounter,
    /// `PUT /admin/log-level`.
    LogLevel,
}

impl Route {
    /// Every route, in a fixed order (the index of a route here is stable).
    pub const ALL: [Route; 7] = [
        Route::Root,
        Route::Counter,
        Route::Healthz,
        Route::Readyz,
        Route::Metrics,
        Route::ResetCounter,
        Route::LogLevel,
    ];

    /// The route answering `path`, compared exactly: no decoding, no trailing-slash folding.
    pub fn from_path(path: &str) -> Option<Route> {
        Some(match path {
            "/" => Route::Root,
            "/counter" => Route::Counter,
            "/healthz" => Route::Healthz,
            "/readyz" => Route::Readyz,
            "/metrics" => Route::Metrics,
            "/admin/counter/reset" => Route::ResetCounter,
            "/admin/log-level" => Route::LogLevel,
            _ => return None,
        })
    }

    /// The path, which is also the route's metric label.
    pub fn path(self) -> &'static str {
        match self {
            Route::Root => "/",
            Route::Counter => "/counter",
            Route::Healthz => "/healthz",
            Route::Readyz => "/readyz",
            Route::Metrics => "/metrics",
            Route::ResetCounter => "/admin/counter/reset",
            Route::LogLevel => "/admin/log-level",
        }
    }

    /// Position in [`Route::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// The method the route answers.
    pub fn method(self) -> Method {
        match self {
            Route::Root | Route::Counter | Route::Healthz | Route::Readyz | Route::Metrics => {
                Method::GET
            }
            Route::ResetCounter => Method::POST,
            Route::LogLevel => Method::PUT,
        }
    }

    /// The `Allow` header of a 405 from this route.
    fn allow(self) -> HeaderValue {
        match self.method() {
            Method::GET => HeaderValue::from_static("GET,HEAD"),
            Method::POST => HeaderValue::from_static("POST"),
            _ => HeaderValue::from_static("PUT"),
        }
    }
}

/// A response being produced by a handler: known already, or still being worked on. Most
/// answers (every memory-store `/counter`, probes, scrapes, 404s) are known when the handler
/// returns, and are carried as they are instead of in a heap-allocated future.
pub struct ResponseFuture(Answer);

enum Answer {
    /// Answered already.
    Known(std::future::Ready<Response>),
    /// A handler still at work (Redis, readiness, admin, fault modes).
    Working(Pin<Box<dyn Future<Output = Response> + Send>>),
}

impl ResponseFuture {
    /// A response that is already known.
    pub fn ready(response: Response) -> Self {
        Self(Answer::Known(std::future::ready(response)))
    }

    /// A response that `future` will produce.
    pub fn working(future: impl Future<Output = Response> + Send + 'static) -> Self {
        Self(Answer::Working(Box::pin(future)))
    }

    /// The same answer, mapped by `f` once it is known.
    fn map(self, f: fn(Response) -> Response) -> Self {
        match self.0 {
            Answer::Known(ready) => Self::ready(f(ready.into_inner())),
            Answer::Working(future) => Self::working(async move { f(future.await) }),
        }
    }
}

impl Future for ResponseFuture {
    type Output = Response;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Response> {
        match &mut self.get_mut().0 {
            Answer::Known(ready) => Pin::new(ready).poll(cx),
            Answer::Working(future) => future.as_mut().poll(cx),
        }
    }
}

/// The whole HTTP application: dispatch to the handlers, observed by
/// [`middleware`] (request id, instance header, metrics, access log). A tower service, for
/// `oneshot` tests and for the server.
#[derive(Clone)]
pub struct App {
    state: AppState,
}

/// The whole HTTP application, ready for `oneshot` tests or a server.
pub fn app(state: AppState) -> App {
    App { state }
}

impl<B> Service<Request<B>> for App
where
    B: http_body::Body<Data = axum::body::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = ObserveFuture<ResponseFuture>;

    /// Always ready: requests are bounded by the server's connection limit, not here.
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        self.handle(request)
    }
}

impl App {
    /// Answers `request`: [`Service::call`] without the `&mut` (the server shares one `App`
    /// between the requests of a connection instead of cloning it for each).
    pub fn handle<B>(&self, request: Request<B>) -> ObserveFuture<ResponseFuture>
    where
        B: http_body::Body<Data = axum::body::Bytes> + Send + 'static,
        B::Error: Into<axum::BoxError>,
    {
        let route = Route::from_path(request.uri().path());
        let observation = middleware::Observation::start(&self.state, &request, route);
        let response = dispatch(route, request, &self.state);
        ObserveFuture::new(response, observation)
    }
}

/// Hands `request` to the handler of `route`, or answers 404 or 405.
/// Only the handlers that outlive this call (the `async` ones) take a handle on the state.
/// The request body stays as it came (boxing it costs an allocation) unless the handler reads
/// it.
fn dispatch<B>(route: Option<Route>, request: Request<B>, state: &AppState) -> ResponseFuture
where
    B: http_body::Body<Data = axum::body::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    let Some(route) = route else {
        return ResponseFuture::ready(text(StatusCode::NOT_FOUND, "not found"));
    };
    let method = request.method();
    let head = method == Method::HEAD && route.method() == Method::GET;
    if !head && *method != route.method() {
        let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
        response.headers_mut().insert(header::ALLOW, route.allow());
        return ResponseFuture::ready(response);
    }
    let response = match route {
        Route::Root => ResponseFuture::ready(root()),
        Route::Healthz => ResponseFuture::ready(healthz()),
        Route::Metrics => ResponseFuture::ready(metrics(state, request.headers()).into_response()),
        Route::Counter => counter(state),
        Route::Readyz => {
            let state = state.clone();
            ResponseFuture::working(async move { readyz(&state).await })
        }
        Route::ResetCounter => {
            let state = state.clone();
            ResponseFuture::working(async move {
                admin::reset_counter(&state, request.headers())
                    .await
                    .into_response()
            })
        }
        Route::LogLevel => {
            let state = state.clone();
            ResponseFuture::working(async move {
                admin::set_log_level(&state, request.map(Body::new))
                    .await
                    .into_response()
            })
        }
    };
    if head {
        response.map(without_body)
    } else {
        response
    }
}

/// The answer to `HEAD`: the `GET` answer's headers, its length, no body.
fn without_body(response: Response) -> Response {
    let (mut parts, body) = response.into_parts();
    if let Some(length) = body.size_hint().exact() {
        parts
            .headers
            .entry(header::CONTENT_LENGTH)
            .or_insert_with(|| HeaderValue::from(length));
    }
    Response::from_parts(parts, Body::empty())
}

/// A plain-text response.
fn text(status: StatusCode, body: impl Into<Body>) -> Response {
    let mut response = Response::new(body.into());
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, TEXT);
    response
}

fn root() -> Response {
    text(StatusCode::OK, "Metrics Dashboard 📈")
}

/// `GET /counter`: one increment, one answer. With fault modes on, reproduces the original bugs
/// after the increment, so the value itself stays correct. Answered without an `async` block
/// when the store answers at once and no fault mode is on (the memory store's steady state).
fn counter(state: &AppState) -> ResponseFuture {
    match state.store.increment_now() {
        Some(result) => counted(state, result),
        None => {
            let state = state.clone();
            ResponseFuture::working(async move {
                let result = state.store.increment().await;
                counted(&state, result).await
            })
        }
    }
}

/// The answer to `/counter` once the store has answered.
fn counted(state: &AppState, result: crate::store::Result<u64>) -> ResponseFuture {
    let value = match result {
        Ok(value) => value,
        Err(error) => return ResponseFuture::ready(AppError::from(error).into_response()),
    };
    state
        .metrics
        .counter_value
        .set(i64::try_from(value).unwrap_or(i64::MAX));
    if state.faults.is_empty() {
        return ResponseFuture::ready(text(StatusCode::OK, counter_body(value)));
    }
    let state = state.clone();
    ResponseFuture::working(async move {
        match with_faults(&state, value).await {
            Ok(()) => text(StatusCode::OK, counter_body(value)),
            Err(error) => error.into_response(),
        }
    })
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

/// `Counter value: N`, written without `format!` (this is the busiest response).
fn counter_body(value: u64) -> String {
    const PREFIX: &str = "Counter value: ";
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(value);
    let mut body = String::with_capacity(PREFIX.len() + digits.len());
    body.push_str(PREFIX);
    body.push_str(digits);
    body
}

/// The original's synchronous "background collection": burners start, the request waits.
async fn slow_even(state: &AppState, wait: Duration) {
    let started = faults::spawn_burners(wait);
    state.metrics.fault_children_started.inc_by(started as u64);
    tokio::time::sleep(wait).await;
}

fn healthz() -> Response {
    text(StatusCode::OK, "ok")
}

/// `GET /readyz`: ready when not draining and the store answers.
async fn readyz(state: &AppState) -> Response {
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
fn metrics(state: &AppState, headers: &HeaderMap) -> Result<Response, AppError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_found_by_its_own_path_and_indexed_by_its_position() {
        for (i, route) in Route::ALL.into_iter().enumerate() {
            assert_eq!(Route::from_path(route.path()), Some(route));
            assert_eq!(route.index(), i);
        }
    }

    #[test]
    fn the_counter_body_is_the_value_in_decimal() {
        for value in [0, 1, 9, 10, 99, 100, 12_345, u64::MAX] {
            assert_eq!(counter_body(value), format!("Counter value: {value}"));
        }
    }

    #[test]
    fn near_misses_are_no_route() {
        for path in [
            "",
            "/counter/",
            "/Counter",
            "/c%6Funter",
            "//counter",
            "/counter?x",
            "/admin",
        ] {
            assert_eq!(Route::from_path(path), None, "{path:?}");
        }
    }
}
