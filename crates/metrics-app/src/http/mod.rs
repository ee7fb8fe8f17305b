//! The HTTP layer: the axum routers of the two listeners and what wraps them.
//!
//! - [`App::public`]: `/`, `/counter` and the admin API, on the public listener;
//! - [`App::management`]: `/healthz`, `/readyz` and `/metrics`, on the management listener,
//!   so that probes and scrapes never queue behind public traffic.
//!
//! Every request on either goes through [`App::handle`] (metrics, access log, request id,
//! `X-Instance`, the single-`Host` rule), then the router. The one route that reads a body has
//! a deadline for the whole body (tower-http) and a size limit.

mod admin;
mod counter;
mod error;
mod observe;
mod probes;

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post, put};
use http_body::Body as _;
use tower::ServiceExt;
use tower_http::timeout::RequestBodyDeadlineLayer;

use crate::metrics::HttpLabels;
use crate::state::AppState;

/// One listener's application: its routes and the state they share. Cheap to clone.
#[derive(Clone)]
pub struct App {
    router: Router,
    state: AppState,
    /// The paths this listener answers, which are also the `route` label of its metrics (every
    /// route is a plain path, so a route's template is the path it answers), each with the
    /// metric series of its `GET`s answered 200, looked up once.
    routes: Arc<[(&'static str, OnceLock<observe::Series>)]>,
    /// Probes and scrapes arrive every few seconds for ever: their access events are logged at
    /// debug unless they fail.
    quiet: bool,
}

impl App {
    /// The public application: the counter and the admin API.
    pub fn public(state: AppState, body_read_timeout: Duration) -> Self {
        // The busiest handler gets the state by closure capture (axum's documented
        // alternative to `State`): the extractor would split and rebuild every request.
        let counter = {
            let state = state.clone();
            move || counter::counter(state.clone())
        };
        let body_timeout = RequestBodyDeadlineLayer::new(body_read_timeout);
        let routes = [
            ("/", get(counter::root)),
            ("/counter", get(counter).head(counter::counter_head)),
            ("/admin/counter/reset", post(admin::reset_counter)),
            (
                "/admin/log-level",
                put(admin::set_log_level).layer(body_timeout),
            ),
        ];
        Self::new(state, routes, false)
    }

    /// The management application: liveness, readiness and metrics.
    pub fn management(state: AppState) -> Self {
        let routes = [
            ("/healthz", get(probes::healthz)),
            ("/readyz", get(probes::readyz)),
            ("/metrics", get(probes::metrics)),
        ];
        Self::new(state, routes, true)
    }

    fn new<const N: usize>(
        state: AppState,
        routes: [(&'static str, MethodRouter<AppState>); N],
        quiet: bool,
    ) -> Self {
        let paths = routes
            .iter()
            .map(|(path, _)| (*path, OnceLock::new()))
            .collect();
        let router = routes
            .into_iter()
            .fold(Router::new(), |router, (path, route)| {
                router.route(path, route)
            })
            .fallback(|| async { (StatusCode::NOT_FOUND, "not found") })
            .with_state(state.clone());
        Self {
            router,
            state,
            routes: paths,
            quiet,
        }
    }

    /// Answers one request from `peer`: counts and times it, logs its access event (when
    /// enabled), and puts the request id and the instance on the response. A client's request
    /// id is kept if it is a short token of visible ASCII, else one is generated. An HTTP/1.1
    /// request without exactly one `Host` is answered 400 (RFC 9112 §3.2).
    ///
    /// A plain function around the router rather than an axum `from_fn` layer plus
    /// tower-http's request-id layers: together they cost a boxed future, a boxed clone of the
    /// inner service, a matched-path extension and two request-id extensions per request, a
    /// large share of the service's instructions per `/counter` (measured: bench/README.md).
    pub async fn handle<B>(&self, peer: SocketAddr, mut request: Request<B>) -> Response
    where
        B: http_body::Body<Data = axum::body::Bytes> + Send + 'static,
        B::Error: Into<axum::BoxError>,
    {
        let started = Instant::now();
        let state = &self.state;
        let request_id = request
            .headers()
            .get(&observe::X_REQUEST_ID)
            .filter(|id| observe::is_sane_request_id(id))
            .cloned()
            .unwrap_or_else(observe::new_request_id);
        let path = request.uri().path();
        let known = self.routes.iter().find(|(r, _)| *r == path);
        let route = known.map_or(observe::UNMATCHED, |(r, _)| r);
        if route.starts_with("/admin/") {
            // Only the admin API needs the client's address (rate limit, audit lines).
            request.extensions_mut().insert(ConnectInfo(peer));
        }
        let method = request.method().clone();
        state.metrics.http_in_flight.inc();
        // Decrements the gauge even if the request is dropped (client gone, shutdown timeout).
        let _in_flight = observe::InFlight(state);
        let mut response = if observe::has_one_host(&request) {
            match self.router.clone().oneshot(request).await {
                Ok(response) => response,
                Err(never) => match never {},
            }
        } else {
            let reason = "an HTTP/1.1 request needs exactly one Host header";
            (StatusCode::BAD_REQUEST, reason).into_response()
        };
        let elapsed = started.elapsed();
        let status = response.status();
        if status == StatusCode::METHOD_NOT_ALLOWED
            && response.body().size_hint().exact() == Some(0)
        {
            // axum's 405 has the `Allow` header but no body; the contract promises one.
            *response.body_mut() = "method not allowed".into();
        }
        let labels = HttpLabels {
            route,
            method: crate::metrics::method_label(&method),
            status: status.as_u16(),
        };
        let series = || {
            let metrics = &state.metrics;
            let requests = metrics.http_requests.get_or_create(&labels).clone();
            (
                requests,
                metrics.http_duration.get_or_create(&labels).clone(),
            )
        };
        let record = |(requests, duration): &observe::Series| {
            requests.inc();
            duration.observe(elapsed.as_secs_f64());
        };
        // Nearly every request is a `GET` answered 200: its series is looked up once, instead
        // of hashing its labels into the families' maps every time.
        match known.filter(|_| method == Method::GET && status == StatusCode::OK) {
            Some((_, hot)) => record(hot.get_or_init(series)),
            None => record(&series()),
        }
        if state.access_log {
            let quiet = self.quiet && status.as_u16() < 400;
            observe::log_access(state, quiet, status, route, &method, elapsed, &request_id);
        }
        let headers = response.headers_mut();
        headers.insert(observe::X_REQUEST_ID.clone(), request_id);
        headers.insert(observe::X_INSTANCE.clone(), state.instance.clone());
        response
    }
}
