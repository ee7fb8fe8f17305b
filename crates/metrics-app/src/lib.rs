//! metrics-app: the `/counter` service.
//!
//! A web service that hands out a counter (`GET /counter` → `Counter value: N`) with health
//! probes, Prometheus metrics, a password-protected admin API, graceful shutdown, and opt-in
//! reproductions of the two bugs of the original Python service. The contract (endpoints,
//! configuration, metric names) is documented in `docs/service.md`.
//!
//! # Layout
//! - [`config`]: flags and environment, validated into a [`config::Config`].
//! - [`secret`]: the admin password, unprintable, compared in constant time.
//! - [`store`]: the counter backends (in-process atomic, Redis `INCR`).
//! - [`routes`]: the router ([`app`]) and public handlers; [`admin`]: the admin API.
//! - [`middleware`]: request id, instance header, metrics and access log for every request.
//! - [`metrics`]: the Prometheus registry; [`process_stats`]: the background sampler.
//! - [`faults`]: the opt-in fault modes.
//! - [`server`]: accept loop, limits, timeouts, drain and graceful shutdown ([`run`]).
//! - [`logging`]: tracing set-up with a reloadable filter.

pub mod admin;
pub mod config;
pub mod error;
pub mod faults;
pub mod logging;
pub mod metrics;
pub mod middleware;
pub mod process_stats;
pub mod routes;
pub mod secret;
pub mod server;
pub mod state;
pub mod store;

use std::future::Future;
use std::sync::Arc;

pub use routes::app;
pub use server::{ServerOptions, Stopped};
pub use state::AppState;

use config::Config;
use logging::Logging;
use process_stats::ProcessStats;

/// Builds the shared state from a checked configuration. Must run inside a tokio runtime.
pub fn build_state(
    config: &Config,
    logging: Option<Logging>,
) -> store::Result<(AppState, Arc<ProcessStats>)> {
    let process = Arc::new(ProcessStats::default());
    let metrics = metrics::Metrics::new(&config.faults, process.clone());
    let store = store::Store::new(&config.store, metrics.clone())?;
    let state = AppState::new(
        store,
        metrics,
        &config.instance,
        config.password.clone(),
        config.faults.clone(),
        logging,
    );
    Ok((state, process))
}

/// Runs the whole service on `listener` until `shutdown` resolves, then drains and stops:
/// the state, the background process sampler and the HTTP server.
pub async fn run(
    listener: tokio::net::TcpListener,
    config: Config,
    logging: Option<Logging>,
    shutdown: impl Future<Output = ()>,
) -> store::Result<Stopped> {
    let (state, process) = build_state(&config, logging)?;
    announce(&config);
    let (stop_sampler, sampler_stopped) = tokio::sync::oneshot::channel::<()>();
    let sampler = tokio::spawn(process_stats::run_sampler(
        process,
        config.collect_interval,
        async {
            let _ = sampler_stopped.await;
        },
    ));
    let options = ServerOptions {
        max_connections: config.max_connections,
        drain_delay: config.drain_delay,
        shutdown_timeout: config.shutdown_timeout,
        header_read_timeout: config.header_read_timeout,
    };
    let stopped = server::run(listener, state, options, shutdown).await;
    let _ = stop_sampler.send(());
    let _ = sampler.await;
    Ok(stopped)
}

/// Logs the start-up line and a warning for each fault mode.
fn announce(config: &Config) {
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        commit = env!("METRICS_APP_GIT_COMMIT"),
        instance = %config.instance,
        store = match config.store { config::StoreConfig::Memory => "memory", config::StoreConfig::Redis { .. } => "redis" },
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
