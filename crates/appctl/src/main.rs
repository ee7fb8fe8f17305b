//! The `appctl` binary: parses the command line and dispatches to the library.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Bring the metrics-app platform up on a laptop, and diagnose a misbehaving app.
#[derive(Debug, Parser)]
#[command(name = "appctl", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Probe a URL and report why the app behind it misbehaves.
    Diagnose(appctl::diagnose::DiagnoseArgs),
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Diagnose(args) => appctl::diagnose::run(args).await,
    }
}
