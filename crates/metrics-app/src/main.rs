//! The `metrics-app` binary: parse and validate configuration, set up logging, serve until
//! SIGTERM, SIGINT or SIGQUIT, drain, exit.
//!
//! Exit codes: 0 clean shutdown, 1 runtime failure, 2 configuration error.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use metrics_app::{Cli, Command, Config, Listeners, Stopped};
use tokio::net::TcpListener;

/// jemalloc rather than the system allocator: fewer instructions per request and the smallest
/// resident set of the allocators measured (`bench/README.md`).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::BurnCpu { seconds, parent }) = cli.command {
        metrics_app::burn_cpu(seconds, parent);
        return ExitCode::SUCCESS;
    }
    let env_password = std::env::var("PASSWORD").ok();
    let config = metrics_app::load_password(env_password, cli.password_file.as_deref())
        .map_err(anyhow::Error::from)
        .and_then(|password| Ok(cli.validate(password)?));
    let config = match config {
        Ok(config) => config,
        Err(error) => {
            eprintln!("metrics-app: {error}");
            return ExitCode::from(2);
        }
    };
    // Keep the guard until the end of main: dropping it writes the pending log lines.
    let (log_control, _log_flush) = metrics_app::init_logging(config.options.log_format);
    match serve(config, log_control) {
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

fn serve(config: Config, log_control: metrics_app::LogControl) -> anyhow::Result<Stopped> {
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let shutdown = signals::shutdown().context("cannot listen for signals")?;
        let listeners = Listeners {
            public: listen("public", config.options.bind).await?,
            management: listen("management", config.options.management_bind).await?,
        };
        metrics_app::run(listeners, config, Some(log_control), shutdown)
            .await
            .context("cannot set up the counter store")
    })
}

async fn listen(name: &str, address: SocketAddr) -> anyhow::Result<TcpListener> {
    let listener = TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen on {address} ({name} listener)"))?;
    tracing::info!(listener = name, address = %listener.local_addr()?, "listening");
    Ok(listener)
}

/// Which signals stop the service and which are only noted.
mod signals {
    use tokio::signal::unix::{SignalKind, signal};

    /// Listens from now on and returns a future that resolves on the first stopping signal.
    /// Registering before anything else starts means a signal that arrives during start-up
    /// leads to a clean stop (with the pending log lines written), not to the default action
    /// of killing the process.
    ///
    /// - SIGTERM (Kubernetes), SIGINT (ctrl-c) and SIGQUIT (ctrl-\, and what nginx and others
    ///   take as "stop gracefully"): drain and stop.
    /// - SIGHUP, SIGUSR1, SIGUSR2: logged and ignored. Nothing here needs a reload signal (the
    ///   password file is re-read when it changes, the log filter changes through the admin
    ///   API), and their default action would kill the process without draining.
    pub(crate) fn shutdown() -> std::io::Result<impl std::future::Future<Output = ()>> {
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let mut quit = signal(SignalKind::quit())?;
        for (kind, name) in [
            (SignalKind::hangup(), "SIGHUP"),
            (SignalKind::user_defined1(), "SIGUSR1"),
            (SignalKind::user_defined2(), "SIGUSR2"),
        ] {
            let mut ignored = signal(kind)?;
            tokio::spawn(async move {
                while ignored.recv().await.is_some() {
                    tracing::warn!(
                        signal = name,
                        "signal ignored: send SIGTERM to stop the service"
                    );
                }
            });
        }
        Ok(async move {
            let name = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
                _ = quit.recv() => "SIGQUIT",
            };
            tracing::info!(signal = name, "shutdown signal received");
        })
    }
}
