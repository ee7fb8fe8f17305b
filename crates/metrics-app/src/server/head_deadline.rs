//! The slowloris guard: every request head must arrive within the header read timeout of the
//! moment the connection became ready for it (accepted, or the previous response was done).
//! Idle keep-alive connections are closed by the same rule.
//!
//! hyper has this built in (`header_read_timeout`), but it allocates and arms a timer for
//! every request head and cancels it once the head is parsed, which cost about 5 % of the
//! throughput in `bench/run.sh`. Here each connection shares a deadline with its service:
//! the service clears it when a request arrives and sets it when the response is ready (two
//! atomic stores per request), and one timer per connection wakes only when that deadline
//! may have passed, at most about once per timeout.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

// tokio's clock, so tests can run time forward; the same monotonic clock in production.
use tokio::time::Instant;

use axum::http::Request;
use axum::response::Response;

use crate::middleware::ObserveFuture;
use crate::routes::{App, ResponseFuture};

/// [`HeadClock::deadline_nanos`] while a request is being handled: no deadline.
const HANDLING: u64 = u64::MAX;

/// One connection's head deadline.
#[derive(Debug)]
pub struct HeadClock {
    /// Origin of `deadline_nanos`: when the connection was accepted.
    base: Instant,
    /// Time a client has to send a complete request head.
    timeout: Duration,
    /// Deadline for the next request head, in nanoseconds after `base`, or [`HANDLING`].
    deadline_nanos: AtomicU64,
}

impl HeadClock {
    /// A clock for a connection accepted now: its first head is due within `timeout`.
    pub fn start(timeout: Duration) -> Arc<Self> {
        Arc::new(Self {
            base: Instant::now(),
            timeout,
            deadline_nanos: AtomicU64::new(nanos(timeout)),
        })
    }

    /// A request head has arrived: no deadline while it is handled (a slow handler is not a
    /// slow client).
    fn head_received(&self) {
        self.deadline_nanos.store(HANDLING, Ordering::Relaxed);
    }

    /// The response is ready: the next head is due within the timeout.
    fn response_ready(&self) {
        let due = self.base.elapsed() + self.timeout;
        self.deadline_nanos.store(nanos(due), Ordering::Relaxed);
    }

    /// When the next head is due, or `None` while a request is handled.
    fn deadline(&self) -> Option<Instant> {
        match self.deadline_nanos.load(Ordering::Relaxed) {
            HANDLING => None,
            n => Some(self.base + Duration::from_nanos(n)),
        }
    }
}

fn nanos(d: Duration) -> u64 {
    // u64 nanoseconds last 584 years; saturate below the HANDLING marker.
    u64::try_from(d.as_nanos())
        .unwrap_or(HANDLING - 1)
        .min(HANDLING - 1)
}

/// Resolves once the connection's next request head is overdue.
pub async fn head_overdue(clock: &HeadClock) {
    let sleep = tokio::time::sleep(clock.timeout);
    tokio::pin!(sleep);
    loop {
        sleep.as_mut().await;
        let now = Instant::now();
        let next = match clock.deadline() {
            Some(due) if due <= now => return,
            Some(due) => due,
            // A request is being handled; look again one timeout from now.
            None => now + clock.timeout,
        };
        sleep.as_mut().reset(next);
    }
}

/// A connection's service: the application, reporting request arrivals and completions to
/// the connection's [`HeadClock`].
///
/// A hyper service itself rather than a tower one behind `TowerToHyperService`, which would
/// clone the application and wrap every request in a readiness-polling `Oneshot`: the
/// application is always ready and answers through `&self`.
#[derive(Clone)]
pub struct TrackHeads {
    app: App,
    clock: Arc<HeadClock>,
}

impl TrackHeads {
    /// `app`, reporting request arrivals and completions to `clock`.
    pub fn new(app: App, clock: Arc<HeadClock>) -> Self {
        Self { app, clock }
    }
}

impl<B> hyper::service::Service<Request<B>> for TrackHeads
where
    B: http_body::Body<Data = axum::body::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Tracked<ObserveFuture<ResponseFuture>>;

    fn call(&self, request: Request<B>) -> Self::Future {
        self.clock.head_received();
        Tracked {
            inner: self.app.handle(request),
            clock: self.clock.clone(),
        }
    }
}

pin_project_lite::pin_project! {
    /// A request's future; restarts the head deadline when the response is ready.
    pub struct Tracked<F> {
        #[pin]
        inner: F,
        clock: Arc<HeadClock>,
    }
}

impl<F: Future> Future for Tracked<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let output = std::task::ready!(this.inner.poll(cx));
        this.clock.response_ready();
        Poll::Ready(output)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_is_overdue_after_one_timeout() {
        let clock = HeadClock::start(Duration::from_secs(10));
        let started = Instant::now();
        head_overdue(&clock).await;
        assert_eq!(started.elapsed(), Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_being_handled_has_no_deadline_and_its_response_restarts_it() {
        let clock = HeadClock::start(Duration::from_secs(10));
        let started = Instant::now();
        clock.head_received();
        let watcher = {
            let clock = clock.clone();
            tokio::spawn(async move { head_overdue(&clock).await })
        };
        // The handler takes 25 s (longer than two timeouts): the connection stays.
        tokio::time::sleep(Duration::from_secs(25)).await;
        assert!(!watcher.is_finished());
        clock.response_ready();
        watcher.await.unwrap();
        // Overdue one timeout after the response, not earlier.
        assert!(
            started.elapsed() >= Duration::from_secs(35),
            "{:?}",
            started.elapsed()
        );
        assert!(
            started.elapsed() <= Duration::from_secs(36),
            "{:?}",
            started.elapsed()
        );
    }
}
