//! The workspace's one test harness: real processes on 127.0.0.1, for the tests of every crate
//! and for the local topology.
//!
//! # Layout
//! - [`process`]: child processes with captured output, signals by PID, a drop guard that kills
//!   the process even when a test fails, and polling helpers with deadlines.
//! - [`metrics_app`]: the real `metrics-app` binary, started on port 0 for both listeners; the
//!   ports it got are read back from its `listening` log lines.
//! - [`redis`]: `redis-server` with AOF (`appendfsync always`) in a temp dir.
//! - [`sentinel`]: `redis-sentinel` watching a primary, with failover timings of seconds.
//! - [`redis_ha`]: two replicas and three Sentinels around a primary, as values-ha deploys them.
//! - [`nginx`]: nginx in front of a backend, as a gateway; [`prometheus`]: Prometheus
//!   scraping what the caller's configuration names.
//! - [`http`]: an HTTP client that never hangs for long, and `Counter value: N` parsing.

pub mod http;
pub mod metrics_app;
pub mod nginx;
pub mod process;
pub mod prometheus;
pub mod redis;
pub mod redis_ha;
pub mod sentinel;

pub use metrics_app::{MetricsApp, PASSWORD};
pub use process::Proc;
pub use redis::Redis;
