//! The counter store: where `/counter` values come from.
//!
//! Two backends behind one type: [`memory`] (an in-process atomic, the zero-setup default)
//! and [`redis`] (atomic `INCRBY` on one key, coalesced, so every replica shares one sequence).
//! [`Store`] times every call (the `ping` operation label is the readiness check) and counts failures in the metrics, whatever the backend.

mod coalesce;
pub mod memory;
pub mod redis;

use std::time::Instant;

use crate::config::StoreConfig;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;

use crate::metrics::{Metrics, StoreLabels};

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

/// Result alias for store calls.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The configured backend.
#[derive(Debug)]
enum Backend {
    Memory(memory::MemoryStore),
    Redis(redis::RedisStore),
}

/// Latency histogram and error counter of one store operation, resolved once so the hot path
/// does no label lookups.
#[derive(Debug, Clone)]
struct OpMetrics {
    duration: Histogram,
    errors: Counter,
}

impl OpMetrics {
    fn new(metrics: &Metrics, store: &'static str, operation: &'static str) -> Self {
        let labels = StoreLabels { store, operation };
        Self {
            duration: metrics.store_duration.get_or_create(&labels).clone(),
            errors: metrics.store_errors.get_or_create(&labels).clone(),
        }
    }

    fn record(&self, started: Instant, ok: bool) {
        self.duration.observe(started.elapsed().as_secs_f64());
        if !ok {
            self.errors.inc();
        }
    }
}

/// The counter store used by the handlers.
#[derive(Debug)]
pub struct Store {
    /// The backend doing the work.
    backend: Backend,
    /// Metrics of `increment`.
    increment: OpMetrics,
    /// Metrics of `reset`.
    reset: OpMetrics,
    /// Metrics of `ping`.
    ping: OpMetrics,
}

impl Store {
    /// Builds the configured backend. Redis connects lazily, so start-up never waits for it and
    /// a Redis outage at start-up only shows as "not ready".
    pub fn new(config: &StoreConfig, metrics: Metrics) -> Result<Self> {
        let backend = match config {
            StoreConfig::Memory => Backend::Memory(memory::MemoryStore::default()),
            StoreConfig::Redis { target, key, wait } => {
                Backend::Redis(redis::RedisStore::new(target, key.clone(), *wait)?)
            }
        };
        let kind = match backend {
            Backend::Memory(_) => "memory",
            Backend::Redis(_) => "redis",
        };
        Ok(Self {
            backend,
            increment: OpMetrics::new(&metrics, kind, "increment"),
            reset: OpMetrics::new(&metrics, kind, "reset"),
            ping: OpMetrics::new(&metrics, kind, "ping"),
        })
    }

    /// `memory` or `redis`.
    pub fn kind(&self) -> &'static str {
        match self.backend {
            Backend::Memory(_) => "memory",
            Backend::Redis(_) => "redis",
        }
    }

    /// Increments the counter once and returns the new value.
    pub async fn increment(&self) -> Result<u64> {
        let started = Instant::now();
        let result = match &self.backend {
            Backend::Memory(m) => Ok(m.increment()),
            Backend::Redis(r) => r.increment().await,
        };
        self.increment.record(started, result.is_ok());
        result
    }

    /// Sets the counter back to zero.
    pub async fn reset(&self) -> Result<()> {
        let started = Instant::now();
        let result = match &self.backend {
            Backend::Memory(m) => {
                m.reset();
                Ok(())
            }
            Backend::Redis(r) => r.reset().await,
        };
        self.reset.record(started, result.is_ok());
        result
    }

    /// Checks that the store can serve: reachable, and holding a usable counter.
    pub async fn check(&self) -> Result<()> {
        let started = Instant::now();
        let result = match &self.backend {
            Backend::Memory(_) => Ok(()),
            Backend::Redis(r) => r.check().await,
        };
        self.ping.record(started, result.is_ok());
        result
    }
}
