//! The HTTP server: accept loop, connection limits, timeouts and graceful shutdown.
//!
//! Built on hyper directly (rather than `axum::serve`) to bound what a client can hold:
//! a semaphore caps concurrent connections (backpressure: beyond it, connections wait in the
//! kernel's accept queue), headers must arrive within the header read timeout (slowloris), and
//! a request head larger than [`MAX_HEAD_BYTES`] are refused by hyper with a 4xx, and connections idle without a request are closed.
//!
//! Shutdown, when the `shutdown` future resolves: `/readyz` turns 503 at once, the server
//! keeps serving for the drain delay (endpoints and proxies stop sending traffic, like a
//! preStop sleep), then stops accepting, lets in-flight requests finish within the shutdown
//! timeout, and returns.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::routes::app;
use crate::state::AppState;

/// Largest request head (request line plus headers) accepted.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Most headers accepted in one request.
const MAX_HEADERS: usize = 64;

/// Server limits and shutdown timing.
#[derive(Debug, Clone, Copy)]
pub struct ServerOptions {
    /// Connections served at once.
    pub max_connections: usize,
    /// Time serving with `/readyz` at 503 before the listener closes.
    pub drain_delay: Duration,
    /// Time in-flight requests get after the listener closes.
    pub shutdown_timeout: Duration,
    /// Time a client has to send a complete request head (slowloris bound).
    pub header_read_timeout: Duration,
}

/// How the server stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// Every connection finished within the shutdown timeout.
    Clean,
    /// Connections were still open when the shutdown timeout expired.
    TimedOut {
        /// Connections cut off.
        open_connections: usize,
    },
}

/// Serves `state` on `listener` until `shutdown` resolves, then drains and stops.
pub async fn run(
    listener: TcpListener,
    state: AppState,
    options: ServerOptions,
    shutdown: impl Future<Output = ()>,
) -> Stopped {
    let service = TowerToHyperService::new(app(state.clone()));
    // HTTP/1.1 only: gateways and kubelet probes speak it to backends, and hyper starts its
    // header timer as soon as it waits for a request head, which also bounds idle connections
    // (protocol auto-detection would read without that timer).
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout)
        .max_buf_size(MAX_HEAD_BYTES)
        .max_headers(MAX_HEADERS)
        .keep_alive(true);
    let builder = Arc::new(builder);
    let graceful = GracefulShutdown::new();
    let permits = Arc::new(Semaphore::new(options.max_connections));

    tokio::pin!(shutdown);
    // Phase 1: serve until the shutdown signal.
    accept_until(
        &listener,
        &builder,
        &service,
        &graceful,
        &permits,
        &mut shutdown,
    )
    .await;

    // Phase 2: drain — still serving, but readiness fails so traffic moves away.
    state.start_draining();
    tracing::info!(
        drain_delay_ms = options.drain_delay.as_millis() as u64,
        "shutdown requested: /readyz now answers 503, still serving during the drain delay"
    );
    let drain = tokio::time::sleep(options.drain_delay);
    tokio::pin!(drain);
    accept_until(
        &listener, &builder, &service, &graceful, &permits, &mut drain,
    )
    .await;

    // Phase 3: stop accepting; let in-flight requests finish.
    drop(listener);
    let open = graceful.count();
    tracing::info!(
        open_connections = open,
        "listener closed, waiting for in-flight requests"
    );
    let stopped = match tokio::time::timeout(options.shutdown_timeout, graceful.shutdown()).await {
        Ok(()) => Stopped::Clean,
        Err(_) => Stopped::TimedOut {
            open_connections: open,
        },
    };
    tracing::info!(?stopped, "server stopped");
    stopped
}

/// Accepts and serves connections until `until` resolves.
async fn accept_until(
    listener: &TcpListener,
    builder: &Arc<http1::Builder>,
    service: &TowerToHyperService<axum::Router>,
    graceful: &GracefulShutdown,
    permits: &Arc<Semaphore>,
    until: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
) {
    loop {
        let permit = tokio::select! {
            biased;
            _ = until.as_mut() => return,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => return, // never closed; nothing left to serve
            },
        };
        let (stream, peer) = tokio::select! {
            biased;
            _ = until.as_mut() => return,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let conn = builder.serve_connection(TokioIo::new(stream), service.clone());
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(error) = conn.await {
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
            drop(permit);
        });
    }
}
