//! metrics-app: the `/counter` service.
//!
//! A web service that hands out a counter (`GET /counter` → `Counter value: N`) with health
//! probes, Prometheus metrics, a password-protected admin API, graceful shutdown, and opt-in
//! reproductions of the two bugs of the original Python service. The contract (endpoints,
//! configuration, metric names) is documented in `docs/service.md`.
//!
//! # Layout
//! Each module uses only the ones listed before it:
//! - `duration`: human durations; `secret`: the admin password; `faults`: the opt-in fault
//!   modes; `config`: flags and environment, validated into a [`Config`].
//! - `metrics`: the Prometheus registry and the process collector; `store`: the counter
//!   backends (in-process atomic, Redis `INCRBY`); `logging`: tracing set-up with a reloadable
//!   filter.
//! - `state`: what every request shares.
//! - `http`: the axum routers of the two listeners, their handlers and layers.
//! - `server`: listeners, connection budgets, drain and graceful shutdown.
//! - this file: [`run`], which puts them together.

#[cfg(not(unix))]
compile_error!("metrics-app runs on Linux (its image) and macOS: it relies on unix signals");

mod config;
mod duration;
mod faults;
mod http;
mod logging;
mod metrics;
mod secret;
mod server;
mod state;
mod store;

use std::future::Future;

pub use config::{Cli, Command, Config, ConfigError, LogFormat, Options};
pub use faults::burn_cpu;
pub use http::App;
pub use logging::{LogControl, init as init_logging};
pub use secrecy::SecretString;
pub use secret::{Password, PasswordError, load_password};
pub use server::{Listeners, Stopped};
pub use state::AppState;
pub use store::StoreError;

/// Runs the whole service on `listeners` until `shutdown` resolves, then drains and stops.
pub async fn run(
    listeners: Listeners,
    config: Config,
    log_control: Option<LogControl>,
    shutdown: impl Future<Output = ()>,
) -> Result<Stopped, StoreError> {
    let state = AppState::new(&config, log_control)?;
    announce(&config);
    Ok(server::run(listeners, state, &config.options, shutdown).await)
}

/// Logs the start-up line and a warning for each fault mode.
fn announce(config: &Config) {
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        commit = env!("METRICS_APP_GIT_COMMIT"),
        instance = %config.instance,
        store = match config.store { config::StoreConfig::Memory => "memory", config::StoreConfig::Redis { .. } => "redis" },
        access_log = config.options.access_log,
        "metrics-app starting"
    );
    if let Some(wait) = config.faults.slow_even {
        tracing::warn!(
            fault = "slow-even",
            wait_ms = wait.as_millis() as u64,
            "FAULT MODE ON: every even /counter value waits and starts CPU-burning child processes (reproduces the original bug)"
        );
    }
    if let Some(mb) = config.faults.leak_mb {
        tracing::warn!(
            fault = "leak",
            mb_per_request = mb,
            "FAULT MODE ON: every /counter request retains memory until the process is killed (reproduces the original bug)"
        );
    }
}
