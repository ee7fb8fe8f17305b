//! The counter store: where `/counter` values come from.
//!
//! Two backends behind one type: an in-process atomic (the zero-setup default: one sequence per
//! process, restarting at 1 with it) and [`redis`] (atomic `INCRBY` on one key, coalesced, so
//! every replica shares one sequence). [`Store`] times every call (the `ping` operation label is
//! the readiness check) and counts failures in the metrics, whatever the backend.

mod coalesce;
mod redis;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;

use crate::config::StoreConfig;
use crate::metrics::{Metrics, StoreLabels};
use coalesce::Coalescer;

/// A store call that failed. The text is for logs only: clients get a generic message.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The backend could not be reached or did not answer in time.
    #[error("counter store unavailable: {0}")]
    Unavailable(String),
    /// The backend holds something that is not a counter: a data problem that waiting does not
    /// fix.
    #[error("counter store holds an invalid counter: {0}")]
    Corrupt(String),
}

pub(crate) type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The counter store used by the handlers.
pub(crate) struct Store {
    backend: Backend,
    increment: OpMetrics,
    reset: OpMetrics,
    ping: OpMetrics,
}

enum Backend {
    /// The last value handed out by this process.
    Memory(AtomicU64),
    Redis(Arc<Coalescer<redis::Redis>>),
}

impl Backend {
    fn kind(&self) -> &'static str {
        match self {
            Backend::Memory(_) => "memory",
            Backend::Redis(_) => "redis",
        }
    }
}

/// Latency histogram and error counter of one store operation, resolved once so the hot path
/// does no label lookups.
struct OpMetrics {
    duration: Histogram,
    errors: Counter,
}

impl OpMetrics {
    fn record<T>(&self, started: Instant, result: Result<T>) -> Result<T> {
        self.duration.observe(started.elapsed().as_secs_f64());
        if result.is_err() {
            self.errors.inc();
        }
        result
    }
}

impl Store {
    /// Builds the configured backend. Redis connects lazily, so start-up never waits for it and
    /// a Redis outage at start-up only shows as "not ready".
    pub(crate) fn new(config: &StoreConfig, metrics: Metrics) -> Result<Self> {
        let backend = match config {
            StoreConfig::Memory => Backend::Memory(AtomicU64::new(0)),
            StoreConfig::Redis { target, key, wait } => Backend::Redis(Coalescer::new(
                redis::Redis::new(target, key.clone(), *wait)?,
            )),
        };
        let store = backend.kind();
        let op = |operation| {
            let labels: StoreLabels = [("store", store), ("operation", operation)];
            OpMetrics {
                duration: metrics.store_duration.get_or_create(&labels).clone(),
                errors: metrics.store_errors.get_or_create(&labels).clone(),
            }
        };
        Ok(Self {
            increment: op("increment"),
            reset: op("reset"),
            ping: op("ping"),
            backend,
        })
    }

    /// `memory` or `redis`.
    pub(crate) fn kind(&self) -> &'static str {
        self.backend.kind()
    }

    /// Increments the counter once and returns the new value.
    pub(crate) async fn increment(&self) -> Result<u64> {
        let started = Instant::now();
        let result = match &self.backend {
            // `fetch_add` gives concurrent calls distinct, consecutive values: none lost,
            // duplicated or skipped. Relaxed suffices: the counter orders nothing but itself.
            Backend::Memory(last) => Ok(last.fetch_add(1, Ordering::Relaxed).wrapping_add(1)),
            Backend::Redis(redis) => redis.increment().await,
        };
        self.increment.record(started, result)
    }

    /// Sets the counter back to zero.
    pub(crate) async fn reset(&self) -> Result<()> {
        let started = Instant::now();
        let result = match &self.backend {
            Backend::Memory(last) => {
                last.store(0, Ordering::Relaxed);
                Ok(())
            }
            Backend::Redis(redis) => redis.backend.reset().await,
        };
        self.reset.record(started, result)
    }

    /// Checks that the store can serve: reachable, and holding a usable counter.
    pub(crate) async fn check(&self) -> Result<()> {
        let started = Instant::now();
        let result = match &self.backend {
            Backend::Memory(_) => Ok(()),
            Backend::Redis(redis) => redis.backend.check().await,
        };
        self.ping.record(started, result)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::sync::Arc;

    /// The values `tasks` concurrent tasks got from `each` calls of `increment` each, sorted.
    pub(super) async fn increments_from<S, F, Fut>(
        store: Arc<S>,
        tasks: usize,
        each: usize,
        increment: F,
    ) -> Vec<u64>
    where
        S: Send + Sync + 'static,
        F: Fn(Arc<S>) -> Fut + Copy + Send + 'static,
        Fut: Future<Output = Result<u64>> + Send,
    {
        let tasks: Vec<_> = (0..tasks)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move {
                    let mut values = Vec::new();
                    for _ in 0..each {
                        values.push(increment(store.clone()).await.unwrap());
                    }
                    values
                })
            })
            .collect();
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        all.sort_unstable();
        all
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_memory_increments_hand_out_each_value_once() {
        let metrics = Metrics::new(&crate::faults::Faults::default());
        let store = Arc::new(Store::new(&StoreConfig::Memory, metrics).unwrap());
        let all = increments_from(
            store.clone(),
            8,
            1000,
            |s| async move { s.increment().await },
        )
        .await;
        assert_eq!(all, (1..=8000).collect::<Vec<_>>());
        store.reset().await.unwrap();
        assert_eq!(store.increment().await.unwrap(), 1);
    }
}
