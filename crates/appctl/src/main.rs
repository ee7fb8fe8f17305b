//! The `appctl` binary: parses the command line and dispatches to the library.
//!
//! Exit codes: [`EXIT_CODES`] (the platform commands' are in `appctl::platform::exit`).

use std::process::ExitCode;

use appctl::platform::{self, commands, load, runner::System};
use clap::{Parser, Subcommand};

/// The exit-code table shown by `appctl --help`; one code per cause in every subcommand.
const EXIT_CODES: &str = "\
Exit codes:
  0  ok (`up --dry-run` too, even when prerequisites are missing: it lists them)
  1  failed while running: a step, a wait, an API call, a child process; `load` with failed
     requests; `diagnose`: findings reported
  2  usage or configuration error, or a missing prerequisite (docker, kind, kubectl, git):
     nothing was changed; `diagnose`: target unreachable
  3  no cluster: no kubeconfig, no kind-metrics-app context in it (run `appctl up` first),
     or its API server does not answer (Docker stopped)";

/// Bring the metrics-app platform up on a laptop, and diagnose a misbehaving app.
#[derive(Debug, Parser)]
#[command(name = "appctl", version, about, after_long_help = EXIT_CODES)]
struct Cli {
    /// More detail (also: RUST_LOG).
    #[arg(long, short, global = true)]
    verbose: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create or reuse the kind cluster and bring the whole platform up from this checkout,
    /// with ArgoCD or (`--gitops flux`) Flux.
    Up(commands::UpArgs),
    /// The GitOps engine; per environment: the image wanted and running, sync, health,
    /// gateway; then Applications (or Flux's Kustomizations), pods and HPAs.
    Status {
        /// Output format.
        #[arg(long, value_enum, default_value_t = commands::Format::Text)]
        output: commands::Format,
    },
    /// The ArgoCD and Grafana logins, read from the cluster.
    Credentials,
    /// Give an environment another environment's image, as a commit the cluster's GitOps
    /// engine (ArgoCD or Flux) rolls out.
    Promote(commands::PromoteArgs),
    /// Revert an environment's last promotion (--env), or roll an Application back through
    /// its ArgoCD history.
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
        // kube's client logs every failed request at ERROR; appctl reports them itself, with
        // what it was doing, so that line would say the same thing twice.
        "warn,kube_client::client::builder=off"
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
        Command::Promote(args) => commands::promote(&System, args).await,
        Command::Rollback(args) => commands::rollback(&System, args).await,
        Command::Down(args) => commands::down(&System, args),
        Command::Load(args) => load::command(args).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // The whole chain, once: what was being done, then each cause.
            eprintln!("appctl: {e}");
            let mut cause = std::error::Error::source(&e);
            while let Some(c) = cause {
                eprintln!("  caused by: {c}");
                cause = c.source();
            }
            ExitCode::from(e.exit_code())
        }
    }
}
