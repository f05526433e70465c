//! `sluice`: the operator's command line for a deployed sluice stack (README, "Operating
//! sluice"). The work is in the library's modules; this parses, runs and exits.

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = sluice_cli::cli::Cli::parse();
    ExitCode::from(sluice_cli::run(cli).await)
}
