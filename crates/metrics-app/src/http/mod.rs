//! The HTTP layer: two axum routers and the tower layers around them.
//!
//! - [`public_router`]: `/`, `/counter` and the admin API, on the public listener;
//! - [`management_router`]: `/healthz`, `/readyz` and `/metrics`, on the management listener,
//!   so that probes and scrapes never queue behind public traffic.
//!
//! Every request on either goes through the same layers, outermost first: `observe` (metrics,
//! access log, `X-Instance`, request-id hygiene, the single-`Host` rule), request id (a missing
//! one generated, the id echoed on the response), and a deadline between pieces of a request
//! body.

mod admin;
mod counter;
mod error;
mod observe;
mod probes;

use std::time::Duration;

use axum::Router;
use axum::routing::{get, post, put};
use tower::ServiceBuilder;
use tower_http::request_id::{PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::RequestBodyTimeoutLayer;

use crate::state::AppState;

/// The public application: the counter and the admin API.
pub fn public_router(state: AppState, body_read_timeout: Duration) -> Router {
    let router = Router::new()
        .route("/", get(counter::root))
        .route(
            "/counter",
            get(counter::counter).head(counter::counter_head),
        )
        .route("/admin/counter/reset", post(admin::reset_counter))
        .route("/admin/log-level", put(admin::set_log_level));
    layered(router, state, body_read_timeout)
}

/// The management application: liveness, readiness and metrics.
pub fn management_router(state: AppState, body_read_timeout: Duration) -> Router {
    let router = Router::new()
        .route("/healthz", get(probes::healthz))
        .route("/readyz", get(probes::readyz))
        .route("/metrics", get(probes::metrics));
    layered(router, state, body_read_timeout)
}

/// The layers every route shares, and the 404 for everything else.
fn layered(router: Router<AppState>, state: AppState, body_read_timeout: Duration) -> Router {
    router
        .fallback(observe::not_found)
        .layer(
            ServiceBuilder::new()
                .layer(axum::middleware::from_fn_with_state(
                    state.clone(),
                    observe::observe,
                ))
                .layer(SetRequestIdLayer::x_request_id(observe::SequentialIds))
                .layer(PropagateRequestIdLayer::x_request_id())
                .layer(RequestBodyTimeoutLayer::new(body_read_timeout)),
        )
        .with_state(state)
}
