//! `appctl diagnose`: find out from the outside why an app misbehaves.
//!
//! Entry points used by the binary: [`DiagnoseArgs`] (the flags) and [`run`].

use std::process::ExitCode;

/// Flags of `appctl diagnose`.
#[derive(Debug, Clone, clap::Args)]
pub struct DiagnoseArgs {
    /// URL to probe, e.g. http://metrics-app.localtest.me/counter
    pub url: String,
}

/// Runs a diagnosis and prints the report; the exit code is 0 healthy, 1 findings, 2 usage or
/// unreachable target.
pub async fn run(args: DiagnoseArgs) -> ExitCode {
    eprintln!("appctl diagnose {}: not implemented in this build yet", args.url);
    ExitCode::from(2)
}
