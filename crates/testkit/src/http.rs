//! HTTP helpers for tests.

use std::time::Duration;

/// An HTTP client that never reuses a connection across tests and never hangs for long.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

/// Parses `Counter value: N`.
pub fn counter_value(body: &str) -> Option<u64> {
    body.trim().strip_prefix("Counter value: ")?.parse().ok()
}
