//! The `appctl` binary: parses the command line and dispatches to the library.
//!
//! Exit codes: 0 ok, 1 failed (or, for `diagnose`, findings), 2 usage error or missing
//! prerequisite (or, for `diagnose`, target unreachable).

use std::process::ExitCode;

use appctl::platform::{self, commands, load, runner::System};
use clap::{Parser, Subcommand};

/// Bring the metrics-app platform up on a laptop, and diagnose a misbehaving app.
#[derive(Debug, Parser)]
#[command(name = "appctl", version, about)]
struct Cli {
    /// More detail (also: RUST_LOG).
    #[arg(long, short, global = true)]
    verbose: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create or reuse the kind cluster and bring the whole platform up from this checkout.
    Up(commands::UpArgs),
    /// Applications, pods, HPA and gateway reachability.
    Status {
        /// Output format.
        #[arg(long, value_enum, default_value_t = commands::Format::Text)]
        output: commands::Format,
    },
    /// The ArgoCD and Grafana logins, read from the cluster.
    Credentials,
    /// Roll metrics-app back to an earlier revision of its ArgoCD history.
    Rollback(commands::RollbackArgs),
    /// Delete the kind cluster.
    Down(commands::DownArgs),
    /// A bounded load test with a live progress line.
    Load(load::LoadArgs),
    /// Probe a URL and report why the app behind it misbehaves.
    Diagnose(appctl::diagnose::DiagnoseArgs),
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = if cli.verbose {
        "appctl=debug,kube=debug"
    } else {
        "warn"
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter)),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let result: platform::Result<()> = match cli.command {
        Command::Diagnose(args) => return appctl::diagnose::run(args).await,
        Command::Up(args) => commands::up(&System, args).await,
        Command::Status { output } => commands::status(output).await,
        Command::Credentials => commands::credentials().await,
        Command::Rollback(args) => commands::rollback(args).await,
        Command::Down(args) => commands::down(&System, args),
        Command::Load(args) => load::command(args).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("appctl: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
