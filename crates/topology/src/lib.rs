//! The cluster topology built from real local processes, for tests and for people to explore.
//!
//! # Layout
//! - processes, Redis and the `metrics-app` binary come from the workspace's test harness,
//!   `testkit`.
//! - [`replica`]: the real `metrics-app` binary with the Redis store.
//! - [`nginx`]: the gateway, retrying only on connection errors (the reasoning is there).
//! - [`rules`]: alert rules extracted from the chart's PrometheusRule, checked by promtool.
//! - [`monitoring`]: Prometheus, Alertmanager and the webhook that records alerts.
//! - [`topology`]: all of the above started together.
//! - [`load`]: a bounded load generator and checks on the counter values it saw.

pub mod load;
pub mod monitoring;
pub mod nginx;
pub mod replica;
pub mod rules;
pub mod topology;

pub use topology::{Options, Topology};
