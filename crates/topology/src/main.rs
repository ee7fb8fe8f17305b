//! `topology up`: starts the local production topology for a person to explore, prints the
//! URLs and every alert the webhook receives, and stops everything on ctrl-c or SIGTERM.
//!
//! Exit codes: 0 stopped by a signal, 1 the topology could not start (the message says which
//! process and why), 2 bad arguments.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokio::signal::unix::{SignalKind, signal};
use topology::{Options, Topology};

/// The metrics-app production topology from local processes: nginx in front of N replicas
/// sharing Redis, with Prometheus (the chart's alert rules), Alertmanager and a webhook that
/// records alerts. Needs the Debian packages redis-server, nginx, prometheus and
/// prometheus-alertmanager, and helm (`bash scripts/install-tools`).
#[derive(Debug, Parser)]
#[command(name = "topology", version)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Start everything, print the URLs, print alerts as they arrive; ctrl-c stops all.
    Up {
        /// metrics-app replicas behind nginx.
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=16))]
        replicas: u16,
        /// A fault mode for replica-1, e.g. `slow-even=2s` or `leak=50`.
        #[arg(long)]
        fault: Option<String>,
        /// Redis as the HA profile runs it: a primary, two replicas and three Sentinels
        /// (needs redis-sentinel); metrics-app follows a failover. Try `kill -9` on the primary.
        #[arg(long)]
        redis_ha: bool,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let Cmd::Up {
        replicas,
        fault,
        redis_ha,
    } = cli.command;
    let options = Options {
        replicas: usize::from(replicas),
        monitoring: true,
        redis_ha,
        extra_args: fault
            .map(|f| vec![(0, vec!["--fault".to_string(), f])])
            .unwrap_or_default(),
        ..Options::default()
    };
    // Listening before anything starts: a signal during start-up drops what has started
    // (each process is killed with its guard) instead of killing this process and orphaning it.
    let listen = |kind: SignalKind, name: &str| {
        signal(kind).map_err(|error| eprintln!("topology: cannot listen for {name}: {error}"))
    };
    let (Ok(mut term), Ok(mut int)) = (
        listen(SignalKind::terminate(), "SIGTERM"),
        listen(SignalKind::interrupt(), "SIGINT"),
    ) else {
        return ExitCode::from(1);
    };
    let started = tokio::select! {
        started = Topology::start(options) => started,
        _ = int.recv() => return stopped_during_start_up(),
        _ = term.recv() => return stopped_during_start_up(),
    };
    let topology = match started {
        Ok(t) => t,
        Err(error) => {
            eprintln!("topology: cannot start: {error:#}");
            return ExitCode::from(1);
        }
    };
    println!("{}", topology.describe());
    println!("alerts are printed here as they arrive; ctrl-c (or SIGTERM) stops everything");
    let mut alerts = topology.monitoring.as_ref().map(|m| m.webhook.subscribe());
    loop {
        tokio::select! {
            _ = int.recv() => break,
            _ = term.recv() => break,
            Some(alert) = next_alert(&mut alerts) => {
                println!("alert {}: {} {}", alert.status, alert.name, alert.instance);
            }
        }
    }
    drop(topology);
    println!("stopped");
    ExitCode::SUCCESS
}

/// A stop requested while starting: what had started is already stopped (its guards dropped).
fn stopped_during_start_up() -> ExitCode {
    println!("stopped during start-up");
    ExitCode::SUCCESS
}

/// The next alert, or never when there is no webhook (or it is gone).
async fn next_alert(
    alerts: &mut Option<tokio::sync::broadcast::Receiver<topology::monitoring::Alert>>,
) -> Option<topology::monitoring::Alert> {
    loop {
        match alerts.as_mut() {
            Some(rx) => match rx.recv().await {
                Ok(alert) => return Some(alert),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => *alerts = None,
            },
            None => std::future::pending::<()>().await,
        }
    }
}
