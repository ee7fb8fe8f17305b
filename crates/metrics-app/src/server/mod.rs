//! The HTTP server: accept loop, connection limits, timeouts and graceful shutdown.
//!
//! Built on hyper directly (rather than `axum::serve`) to bound what a client can hold:
//! a semaphore caps concurrent connections (backpressure: beyond it, connections wait in the
//! kernel's accept queue), each request head must arrive within the header read timeout
//! ([`head_deadline`]: slowloris, and idle keep-alive connections), and a request head larger
//! than [`MAX_HEAD_BYTES`] is refused by hyper with a 4xx.
//!
//! Shutdown, when the `shutdown` future resolves: `/readyz` turns 503 at once, the server
//! keeps serving for the drain delay (endpoints and proxies stop sending traffic, like a
//! preStop sleep), then stops accepting, lets in-flight requests finish within the shutdown
//! timeout, and returns.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

pub mod head_deadline;

use crate::routes::{App, app};
use crate::state::AppState;
use head_deadline::{HeadClock, TrackHeads, head_overdue};

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
    let service = app(state.clone());
    // HTTP/1.1 only: gateways and kubelet probes speak it to backends. No hyper timer: the
    // head deadline is kept per connection by `head_deadline`.
    let mut builder = http1::Builder::new();
    builder
        .max_buf_size(MAX_HEAD_BYTES)
        .max_headers(MAX_HEADERS)
        .keep_alive(true);
    let graceful = GracefulShutdown::new();
    let permits = Arc::new(Semaphore::new(options.max_connections));

    tokio::pin!(shutdown);
    // Phase 1: serve until the shutdown signal.
    let serving = Serving {
        builder: &builder,
        service: &service,
        graceful: &graceful,
        permits: &permits,
        header_read_timeout: options.header_read_timeout,
    };
    accept_until(&listener, &serving, &mut shutdown).await;

    // Phase 2: drain — still serving, but readiness fails so traffic moves away.
    state.start_draining();
    tracing::info!(
        drain_delay_ms = options.drain_delay.as_millis() as u64,
        "shutdown requested: /readyz now answers 503, still serving during the drain delay"
    );
    let drain = tokio::time::sleep(options.drain_delay);
    tokio::pin!(drain);
    accept_until(&listener, &serving, &mut drain).await;

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

/// What every accepted connection is served with.
struct Serving<'a> {
    builder: &'a http1::Builder,
    service: &'a App,
    graceful: &'a GracefulShutdown,
    permits: &'a Arc<Semaphore>,
    header_read_timeout: Duration,
}

/// Accepts and serves connections until `until` resolves.
async fn accept_until(
    listener: &TcpListener,
    serving: &Serving<'_>,
    until: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
) {
    loop {
        let permit = tokio::select! {
            biased;
            _ = until.as_mut() => return,
            permit = serving.permits.clone().acquire_owned() => match permit {
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
        let clock = HeadClock::start(serving.header_read_timeout);
        let service = TrackHeads::new(serving.service.clone(), clock.clone());
        let conn = serving
            .builder
            .serve_connection(TokioIo::new(stream), service);
        let conn = serving.graceful.watch(conn);
        let mut serve = tokio::spawn(async move {
            if let Err(error) = conn.await {
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
            drop(permit);
        });
        // The head deadline is watched by a task of its own: one that wakes only when the
        // deadline may have passed or the connection has ended. In the connection's task the
        // timer would be polled again every time the connection wakes, for every request.
        tokio::spawn(async move {
            tokio::select! {
                _ = &mut serve => {}
                () = head_overdue(&clock) => {
                    // Dropping the connection (and its permit) closes the socket.
                    serve.abort();
                    tracing::debug!(%peer, "connection closed: no request head within the header read timeout");
                }
            }
        });
    }
}
