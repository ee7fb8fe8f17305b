//! The real `metrics-app` binary, started as a process.
//!
//! `config`: configuration errors and exit codes; `lifecycle`: the two listeners, graceful
//! shutdown under load and signals; `logs`: the secret never leaking, access events and the
//! exposition promtool accepts; `faults`: the fault modes.
#![allow(clippy::unwrap_used, missing_docs)]

#[path = "../common/mod.rs"]
mod common;
mod config;
mod faults;
mod lifecycle;
mod logs;

use std::time::{Duration, Instant};

use base64::Engine;
use common::{Binary, PASSWORD, client, counter_value, get_text, wait_until_ok};

/// The value of the first sample of `name` in a text exposition.
fn gauge(exposition: &str, name: &str) -> f64 {
    exposition
        .lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("{name} not in exposition"))
}
