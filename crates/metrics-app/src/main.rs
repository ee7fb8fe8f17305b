//! The `metrics-app` binary: parse and validate configuration, set up logging, serve until
//! SIGTERM or ctrl-c, drain, exit.
//!
//! Exit codes: 0 clean shutdown, 1 runtime failure, 2 configuration error.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use metrics_app::config::{Cli, Command};
use metrics_app::{Stopped, faults, logging, secret};

/// jemalloc rather than the system allocator: a request makes about a dozen short-lived
/// allocations (futures, header maps, the body). Measured in `bench/README.md`: fewer
/// instructions per request than glibc or mimalloc (whose aligned-allocation path Rust's
/// allocator interface always takes), and the smallest resident set of the three.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::BurnCpu { seconds }) = cli.command {
        faults::burn_cpu(seconds);
        return ExitCode::SUCCESS;
    }
    let password =
        match secret::load_password(std::env::var("PASSWORD").ok(), cli.password_file.as_deref()) {
            Ok(p) => p,
            Err(error) => {
                eprintln!("metrics-app: {error}");
                return ExitCode::from(2);
            }
        };
    let config = match cli.validate(password) {
        Ok(c) => c,
        Err(error) => {
            eprintln!("metrics-app: {error}");
            return ExitCode::from(2);
        }
    };
    // Keep the guard until the end of main: dropping it flushes the buffered log lines.
    let (logging, _log_flush) = match logging::init(config.log_format) {
        Ok(logging) => logging,
        Err(error) => {
            eprintln!("metrics-app: cannot start the log writer thread: {error}");
            return ExitCode::from(1);
        }
    };
    match serve(config, logging) {
        Ok(Stopped::Clean) => ExitCode::SUCCESS,
        Ok(Stopped::TimedOut { open_connections }) => {
            // The orchestrator asked us to stop; cutting slow clients off is not a failure.
            tracing::warn!(
                open_connections,
                "shutdown timeout expired with requests in flight"
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "metrics-app failed");
            eprintln!("metrics-app: {error:#}");
            ExitCode::from(1)
        }
    }
}

fn serve(
    config: metrics_app::config::Config,
    logging: logging::Logging,
) -> anyhow::Result<Stopped> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let shutdown = shutdown_signal().context("cannot listen for SIGTERM and SIGINT")?;
        let listener = tokio::net::TcpListener::bind(config.bind)
            .await
            .with_context(|| format!("cannot listen on {}", config.bind))?;
        let local = listener
            .local_addr()
            .context("cannot read the bound address")?;
        tracing::info!(address = %local, "listening");
        metrics_app::run(listener, config, Some(logging), shutdown)
            .await
            .context("cannot set up the counter store")
    })
}

/// Listens for SIGTERM (Kubernetes) and SIGINT (ctrl-c) from now on, and returns a future
/// that resolves on the first of them. Registering before anything else starts means a signal
/// that arrives during start-up leads to a clean stop (with the pending log lines written),
/// not to the default action of killing the process.
#[cfg(unix)]
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => tracing::info!(signal = "SIGINT", "shutdown signal received"),
            _ = terminate.recv() => tracing::info!(signal = "SIGTERM", "shutdown signal received"),
        }
    })
}

/// Resolves on ctrl-c.
#[cfg(not(unix))]
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    Ok(async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
        tracing::info!(signal = "ctrl-c", "shutdown signal received");
    })
}
