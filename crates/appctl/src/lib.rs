//! appctl: the metrics-app platform on a laptop, and diagnosis of a misbehaving app.
//!
//! # Layout
//! - [`diagnose`]: `appctl diagnose URL` — HTTP, process, metrics and Kubernetes evidence,
//!   pure analysis, and a ranked root-cause report.
//! - [`platform`]: `appctl up/status/credentials/rollback/down/load` — the kind + ArgoCD
//!   platform brought up from this checkout in one command.

pub mod diagnose;
pub mod platform;
