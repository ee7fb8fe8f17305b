//! The HTTP server: two listeners, their connection budgets, and graceful shutdown.
//!
//! Built on hyper's connection API rather than `axum::serve`, which has no header-read
//! timeout, no connection budget and no way to close idle connections first at shutdown.
//! Each listener ([`listener`]) serves its router with hyper's own header-read timeout
//! (slowloris and idle keep-alive connections), a connection budget beyond which new
//! connections get a fast 503, and a maximum connection age.
//!
//! Shutdown, when the `shutdown` future resolves: `/readyz` turns 503 at once, both listeners
//! keep serving for the drain delay (endpoints and proxies stop sending traffic, like a
//! preStop sleep), then they stop accepting; idle connections (including ones that sent only
//! part of a request head) are closed at once, and requests in flight get the shutdown timeout
//! to finish. The fault mode's child processes are ended last.

mod listener;

use std::future::Future;

use tokio::net::TcpListener;
use tokio_util::task::TaskTracker;

use crate::config::Options;
use crate::http::App;
use crate::state::AppState;
use listener::Listener;

/// Connections the management listener serves at once: probes from the kubelet, scrapes from
/// Prometheus and a few people, never the public's load.
pub(crate) const MANAGEMENT_CONNECTIONS: usize = 64;

/// The two bound listeners.
#[derive(Debug)]
pub struct Listeners {
    /// `/`, `/counter`, the admin API.
    pub public: TcpListener,
    /// `/healthz`, `/readyz`, `/metrics`.
    pub management: TcpListener,
}

/// How the server stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// Every request finished within the shutdown timeout.
    Clean,
    /// Requests were still being answered when the shutdown timeout expired.
    TimedOut {
        /// Connections cut off.
        open_connections: usize,
    },
}

/// Serves `state` on both listeners until `shutdown` resolves, then drains and stops.
pub async fn run(
    listeners: Listeners,
    state: AppState,
    options: &Options,
    shutdown: impl Future<Output = ()>,
) -> Stopped {
    let (closing, closed) = tokio::sync::watch::channel(false);
    let connections = TaskTracker::new();
    let accepting = TaskTracker::new();
    let public = App::public(state.clone(), options.body_read_timeout);
    for (name, app, connections_at_once, socket) in [
        (
            "public",
            public,
            options.max_connections as usize,
            listeners.public,
        ),
        (
            "management",
            App::management(state.clone()),
            MANAGEMENT_CONNECTIONS,
            listeners.management,
        ),
    ] {
        let listener = Listener {
            name,
            app,
            budget: connections_at_once,
            header_read_timeout: options.header_read_timeout,
            max_connection_age: options.max_connection_age,
        };
        accepting.spawn(listener.accept_until_closed(
            socket,
            state.clone(),
            closed.clone(),
            connections.clone(),
        ));
    }
    accepting.close();

    // Phase 1: serve until the shutdown signal.
    shutdown.await;
    // Phase 2: drain — still serving, but readiness fails so traffic moves away.
    state.start_draining();
    tracing::info!(
        drain_delay_ms = options.drain_delay.as_millis() as u64,
        "shutdown requested: /readyz now answers 503, still serving during the drain delay"
    );
    tokio::time::sleep(options.drain_delay).await;

    // Phase 3: stop accepting, close idle connections, let requests in flight finish.
    let _ = closing.send(true);
    accepting.wait().await;
    connections.close();
    let open = connections.len();
    tracing::info!(
        open_connections = open,
        "listeners closed, idle connections closed, waiting for requests in flight"
    );
    let stopped = match tokio::time::timeout(options.shutdown_timeout, connections.wait()).await {
        Ok(()) => Stopped::Clean,
        Err(_) => Stopped::TimedOut {
            open_connections: connections.len(),
        },
    };
    let burners = state.burners.stop_all();
    if burners > 0 {
        tracing::info!(burners, "fault-mode child processes stopped");
    }
    tracing::info!(?stopped, "server stopped");
    stopped
}
