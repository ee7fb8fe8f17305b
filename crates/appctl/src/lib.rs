//! appctl: the metrics-app platform on a laptop, and diagnosis of a misbehaving app.
//!
//! # Layout
//! - [`diagnose`]: `appctl diagnose URL` — HTTP, process, metrics and Kubernetes evidence,
//!   pure analysis, and a ranked root-cause report.
//! - [`platform`]: `appctl up/status/credentials/promote/rollback/down/load` — the kind + ArgoCD
//!   platform brought up from this checkout in one command.
//! - [`kubeapi`]: Kubernetes helpers both use (client, listing with errors that keep their
//!   cause, RBAC denial vs missing API, container statuses, quantities).

pub mod diagnose;
pub mod kubeapi;
pub mod platform;

/// The plain-HTTP client builder every probe and check uses (the targets are local: the kind
/// gateway, port-forwards, 127.0.0.1). HTTPS (rustls) is used once, in [`platform::up`].
pub fn http() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
}
