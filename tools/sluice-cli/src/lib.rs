//! sluice's operator command line, as a library: one module per verb (`status`, `redrive`,
//! `backfill`, `replay`), the stack's outputs (`stack`), where each function parks what it
//! cannot process (`pipeline`), and the readers they share (`parked`, `queue`, `streams`,
//! `lambda`). `main.rs` only parses the command line and calls [`run`].

pub mod aws;
pub mod backfill;
pub mod cli;
pub mod context;
pub mod error;
pub mod lambda;
pub mod parked;
pub mod pipeline;
pub mod progress;
pub mod queue;
pub mod redrive;
pub mod replay;
pub mod s3uri;
pub mod stack;
pub mod status;
pub mod streams;
pub mod table;

#[cfg(test)]
mod test_support;

use std::io::IsTerminal;

use serde::Serialize;

use crate::aws::Clients;
use crate::cli::{Cli, Command};
use crate::context::Context;
use crate::error::{CliError, EXIT_INCOMPLETE, EXIT_OK};
use crate::stack::Stack;

/// Runs a parsed command line; returns the exit code (errors are printed on stderr).
pub async fn run(cli: Cli) -> u8 {
    match execute(cli).await {
        Ok(code) => code,
        Err(err) => {
            eprintln!("sluice: {err}");
            err.exit_code()
        }
    }
}

fn print_json(value: &impl Serialize) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("reports serialise")
    );
}

async fn execute(cli: Cli) -> Result<u8, CliError> {
    let global = cli.global;
    let clients = Clients::load(global.endpoint_url.as_deref(), global.region.as_deref()).await;
    let stack = Stack::load(&clients.cloudformation, &global.stack).await?;
    let ctx = Context {
        clients,
        stack,
        progress: !global.json && !global.quiet && std::io::stderr().is_terminal(),
    };
    match cli.command {
        Command::Status => {
            let status = status::status(&ctx).await?;
            if global.json {
                print_json(&status);
            } else {
                print!("{}", status::render(&status));
            }
            Ok(if status.parked > 0 {
                EXIT_INCOMPLETE
            } else {
                EXIT_OK
            })
        }
        Command::Redrive(args) => {
            let options = redrive::Options {
                dry_run: args.dry_run,
                max: args.max,
                concurrency: usize::from(args.concurrency),
            };
            let mut reports = Vec::new();
            for function in args.function.functions() {
                let report = redrive::redrive(&ctx, function, options).await?;
                if !global.json {
                    print!("{}", redrive::render(&report));
                }
                reports.push(report);
            }
            let summary = redrive::Summary::of(&ctx.stack.name, args.dry_run, reports);
            if global.json {
                print_json(&summary);
            } else if summary.functions.len() > 1 {
                println!(
                    "all: redriven {}, failed again {}, skipped {}",
                    summary.redriven, summary.failed_again, summary.skipped
                );
            }
            Ok(if summary.failed_again > 0 {
                EXIT_INCOMPLETE
            } else {
                EXIT_OK
            })
        }
        Command::Backfill(args) => {
            let report = backfill::backfill(
                &ctx,
                backfill::Options {
                    source: args.source,
                    since: args.since,
                    until: args.until,
                    concurrency: usize::from(args.concurrency),
                    dry_run: args.dry_run,
                },
            )
            .await?;
            if global.json {
                print_json(&report);
            } else {
                print!("{}", backfill::render(&report));
            }
            Ok(if report.failed > 0 {
                EXIT_INCOMPLETE
            } else {
                EXIT_OK
            })
        }
        Command::Replay(args) => {
            let report = replay::replay(
                &ctx,
                replay::Options {
                    source: args.source,
                    rate: args.rate,
                    max: args.max,
                    dry_run: args.dry_run,
                    checkpoint: args.checkpoint,
                    resume: args.resume,
                },
            )
            .await?;
            if global.json {
                print_json(&report);
            } else {
                print!("{}", replay::render(&report));
            }
            Ok(if report.stopped_at.is_some() && !report.dry_run {
                EXIT_INCOMPLETE
            } else {
                EXIT_OK
            })
        }
    }
}
