//! One listener: its accept loop, its connection budget and its connections' lifetime.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio_util::task::TaskTracker;

use crate::http::App;
use crate::state::AppState;

/// Largest request head (request line plus headers) accepted.
const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Most headers accepted in one request.
const MAX_HEADERS: usize = 64;
/// Connections being turned away at once; beyond this they are closed without an answer.
const SHED_AT_ONCE: usize = 256;
/// Time a turned-away connection gets to take its answer.
const SHED_LINGER: Duration = Duration::from_secs(1);

/// The answer to a connection beyond the budget. Written by hand because hyper can only
/// answer on a connection it serves, and serving it would take the budget this protects.
const SHED_ANSWER: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: 34\r\n\r\nserver busy: too many connections\n";

/// A listener's application and limits.
pub(super) struct Listener {
    pub(super) name: &'static str,
    pub(super) app: App,
    /// Connections served at once; beyond them new ones are turned away.
    pub(super) budget: usize,
    pub(super) header_read_timeout: Duration,
    pub(super) max_connection_age: Duration,
}

impl Listener {
    /// Accepts connections until `closed` turns true, serving each on a task of
    /// `connections`; then drops the socket (new connections are refused).
    pub(super) async fn accept_until_closed(
        self,
        socket: TcpListener,
        state: AppState,
        mut closed: watch::Receiver<bool>,
        connections: TaskTracker,
    ) {
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(self.header_read_timeout)
            .max_buf_size(MAX_HEAD_BYTES)
            .max_headers(MAX_HEADERS)
            .keep_alive(true);
        let builder = Arc::new(builder);
        // One application per listener, shared by its connections.
        let (app, max_age) = (Arc::new(self.app), self.max_connection_age);
        let serving = Arc::new(Semaphore::new(self.budget));
        let shedding = Arc::new(Semaphore::new(SHED_AT_ONCE));
        let shed = state
            .metrics
            .connections_shed
            .get_or_create(&[("listener", self.name)])
            .clone();
        loop {
            let (stream, peer) = tokio::select! {
                biased;
                () = closing(&mut closed) => return,
                accepted = socket.accept() => match accepted {
                    Ok(pair) => pair,
                    Err(error) => {
                        // EMFILE and friends: back off briefly instead of spinning.
                        tracing::warn!(listener = self.name, %error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let _ = stream.set_nodelay(true);
            match serving.clone().try_acquire_owned() {
                Ok(permit) => {
                    let (app, builder, closed) = (app.clone(), builder.clone(), closed.clone());
                    connections.spawn(async move {
                        serve(stream, peer, app, &builder, max_age, closed).await;
                        // The connection holds its place in the budget for as long as it lives.
                        drop(permit);
                    });
                }
                Err(_) => {
                    shed.inc();
                    if let Ok(permit) = shedding.clone().try_acquire_owned() {
                        tokio::spawn(turn_away(stream, permit));
                    }
                    // Past both budgets the connection is simply closed.
                }
            }
        }
    }
}

/// Serves one connection until the client or the server ends it: after `max_age` it closes
/// after the current response; at shutdown it closes at once if no request is being answered
/// (an idle keep-alive connection, or one that sent only part of a head), else after the
/// current response.
async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    app: Arc<App>,
    builder: &http1::Builder,
    max_age: Duration,
    mut closed: watch::Receiver<bool>,
) {
    // One token per request being answered: the connection is idle when there is none.
    let answering = TaskTracker::new();
    let tracker = answering.clone();
    let service =
        hyper::service::service_fn(move |request: axum::http::Request<hyper::body::Incoming>| {
            let (app, token) = (app.clone(), tracker.token());
            async move {
                let response = app.handle(peer, request).await;
                drop(token);
                Ok::<_, std::convert::Infallible>(response)
            }
        });
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let age = tokio::time::sleep(max_age);
    tokio::pin!(age);
    let (mut aged, mut shutting) = (false, false);
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%peer, %error, "connection ended with an error");
                }
                return;
            }
            () = &mut age, if !aged => {
                aged = true;
                conn.as_mut().graceful_shutdown();
            }
            () = closing(&mut closed), if !shutting => {
                shutting = true;
                if answering.is_empty() {
                    // Dropping the connection closes the socket.
                    return;
                }
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// Resolves once shutdown closes the listeners (or the server is gone).
async fn closing(closed: &mut watch::Receiver<bool>) {
    // The borrowed value is dropped here, so the future stays `Send`.
    let _ = closed.wait_for(|c| *c).await;
}

/// Answers 503 to a connection beyond the budget and closes it. What the client sent is read
/// and discarded first, so that closing does not reset the connection before the client has
/// read the answer.
async fn turn_away(mut stream: TcpStream, _permit: OwnedSemaphorePermit) {
    let _ = tokio::time::timeout(SHED_LINGER, async {
        stream.write_all(SHED_ANSWER).await?;
        stream.shutdown().await?;
        let mut discard = [0u8; 1024];
        while stream.read(&mut discard).await? > 0 {}
        std::io::Result::Ok(())
    })
    .await;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_shed_answer_declares_its_exact_length() {
        let text = std::str::from_utf8(SHED_ANSWER).unwrap_or_default();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or_default();
        let declared = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .and_then(|n| n.parse::<usize>().ok());
        assert_eq!(declared, Some(body.len()));
    }
}
