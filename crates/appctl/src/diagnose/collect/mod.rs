//! Collectors: one per evidence source. [`http`] sends the probe requests, [`process`] reads
//! the local process from /proc, [`metrics`] scrapes the Prometheus endpoint, [`health`] asks
//! the health endpoints and the port on their own connections, [`ramp`] steps concurrency up
//! (`--ramp`), [`prometheus`] reads the history (`--prometheus`). (Kubernetes evidence has its
//! own module, `diagnose::kube`.)

pub mod health;
pub mod http;
pub mod metrics;
pub mod process;
pub mod prometheus;
pub mod ramp;
