//! The command line (clap): `sluice status | redrive | backfill | replay`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::pipeline::Function;
use crate::s3uri::S3Uri;

const AFTER_HELP: &str = "\
Exit codes: 0 done; 1 an error stopped the command; 2 usage; 3 not found (stack, output,
function, bucket, or a prefix with nothing in it); 4 incomplete (items failed again, a
replay stopped before the end, or `status` found items parked).

Credentials and region come from the normal AWS chain (environment, AWS_PROFILE, SSO).
LocalStack: --endpoint-url http://localhost:4566 with AWS_ACCESS_KEY_ID=test
AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1.";

/// The operator's command line for a deployed sluice stack: see what its failure paths
/// hold, get it back through the pipeline, re-run the Avro conversion, replay the archive.
#[derive(Debug, Parser)]
#[command(name = "sluice", version, after_help = AFTER_HELP, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Global {
    /// The deployed stack (its outputs name every resource)
    #[arg(
        long,
        global = true,
        env = "SLUICE_STACK",
        default_value = "sluice",
        value_name = "NAME"
    )]
    pub stack: String,
    /// Send every AWS call to this endpoint (LocalStack: http://localhost:4566)
    #[arg(long, global = true, value_name = "URL")]
    pub endpoint_url: Option<String>,
    /// AWS region (default: from the environment or profile)
    #[arg(long, global = true)]
    pub region: Option<String>,
    /// Print the result as JSON on stdout (no progress bars)
    #[arg(long, global = true)]
    pub json: bool,
    /// No progress bars
    #[arg(long, short, global = true)]
    pub quiet: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Per function: failure queue / DLQ depth, the oldest parked item's age and reason,
    /// errors in the last hour, stream mappings and iterator age
    Status,
    /// Move what a function's failure path holds back through its trigger
    #[command(long_about = REDRIVE_ABOUT)]
    Redrive(RedriveArgs),
    /// Run the Avro conversion again over raw inputs already in the bucket
    #[command(long_about = BACKFILL_ABOUT)]
    Backfill(BackfillArgs),
    /// Put archived events back on the event stream
    #[command(long_about = REPLAY_ABOUT)]
    Replay(ReplayArgs),
}

const REDRIVE_ABOUT: &str = "\
Move what a function's failure path holds back through its trigger, the way each kind needs:
  avro-converter, counter-mapper  invoke the function with each on-failure record's requestPayload
  job-poller                      the same, asynchronously (a generation may poll for its whole timeout)
  counter-mapper (SNS deliveries) invoke the function with each notification SNS could not deliver
  crash-router                    move each DLQ message unchanged back to the notification queue
  kinesis-archiver                invoke the function with each batch kept in the failure bucket,
                                  then delete the kept object and its announcement
  counter-aggregator, -reporter   read each failed range back from the table's stream and replay it
An item leaves its failure path only when its redrive succeeded; one that fails again stays,
with its new reason. Items that would fail again for certain are skipped and named. The
functions are idempotent, so a second redrive moves nothing new.";

const BACKFILL_ABOUT: &str = "\
Run the Avro conversion again over raw inputs already in the bucket (after a schema change,
a fix, lost outputs): avro-converter is invoked once per object under the prefix with the
event S3 would have sent, so it writes what it always writes, to the same keys. Only objects
the bucket's notification filter passes are taken.";

const REPLAY_ABOUT: &str = "\
Put archived events back on the stack's event stream (for a new consumer, or after a
downstream fix): every line of every archive object under the prefix, in key order, one
record each with its bytes as archived, at most --rate records per second. The position is
kept in a checkpoint file after every batch: a replay stopped by --max, Ctrl-C or a failure
says where it stopped, and --resume continues it. Objects written after the replay began
(its own output among them) are never replayed.";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RedriveTarget {
    IngestApi,
    KinesisArchiver,
    AvroConverter,
    CrashRouter,
    CounterMapper,
    CounterAggregator,
    CounterReporter,
    JobPoller,
    /// Every function, in pipeline order
    All,
}

impl RedriveTarget {
    pub fn functions(self) -> Vec<Function> {
        match self {
            RedriveTarget::All => Function::ALL.to_vec(),
            RedriveTarget::IngestApi => vec![Function::IngestApi],
            RedriveTarget::KinesisArchiver => vec![Function::KinesisArchiver],
            RedriveTarget::AvroConverter => vec![Function::AvroConverter],
            RedriveTarget::CrashRouter => vec![Function::CrashRouter],
            RedriveTarget::CounterMapper => vec![Function::CounterMapper],
            RedriveTarget::CounterAggregator => vec![Function::CounterAggregator],
            RedriveTarget::CounterReporter => vec![Function::CounterReporter],
            RedriveTarget::JobPoller => vec![Function::JobPoller],
        }
    }
}

#[derive(Debug, Args)]
pub struct RedriveArgs {
    /// The function whose failure paths to redrive (or `all`)
    #[arg(value_enum)]
    pub function: RedriveTarget,
    /// Read and check every item, say what would be done, change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Look at most at N items per failure path
    #[arg(long, value_name = "N")]
    pub max: Option<usize>,
    /// Items worked on at once
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64), value_name = "N")]
    pub concurrency: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackfillFunction {
    AvroConverter,
}

#[derive(Debug, Args)]
pub struct BackfillArgs {
    /// The function to backfill (avro-converter)
    #[arg(value_enum)]
    pub function: BackfillFunction,
    /// Raw inputs: s3://<AvroRawBucketName>/<prefix>
    #[arg(value_parser = parse_s3_uri, value_name = "S3_URI")]
    pub source: S3Uri,
    /// Only objects last modified at or after this (RFC 3339, or YYYY-MM-DD in UTC)
    #[arg(long, value_parser = parse_time, value_name = "TIME")]
    pub since: Option<OffsetDateTime>,
    /// Only objects last modified before this (RFC 3339, or YYYY-MM-DD in UTC)
    #[arg(long, value_parser = parse_time, value_name = "TIME")]
    pub until: Option<OffsetDateTime>,
    /// Invocations at once
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64), value_name = "N")]
    pub concurrency: u16,
    /// List what would be converted, invoke nothing
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReplaySource {
    /// kinesis-archiver's archive (output ArchiveLocation)
    Archive,
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// What to replay (archive)
    #[arg(value_enum)]
    pub from: ReplaySource,
    /// Archive objects: s3://<ArchiveBucketName>/<prefix>, e.g. s3://archive/2026/11/
    #[arg(value_parser = parse_s3_uri, value_name = "S3_URI")]
    pub source: S3Uri,
    /// Records per second put on the stream (N, N/s or N/m)
    #[arg(long, default_value = "500/s", value_parser = crate::replay::parse_rate, value_name = "RATE")]
    pub rate: f64,
    /// Stop after putting N records (resume later with --resume)
    #[arg(long, value_name = "N")]
    pub max: Option<u64>,
    /// Count what would be put, put nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Checkpoint file (default: sluice-replay-<stack>-<hash of the source>.json here)
    #[arg(long, value_name = "FILE")]
    pub checkpoint: Option<PathBuf>,
    /// Continue the replay its checkpoint says stopped
    #[arg(long)]
    pub resume: bool,
}

fn parse_s3_uri(text: &str) -> Result<S3Uri, String> {
    text.parse()
}

/// RFC 3339 (`2026-11-22T10:00:00Z`) or a UTC day (`2026-11-22`, its midnight).
pub fn parse_time(text: &str) -> Result<OffsetDateTime, String> {
    if let Ok(t) = OffsetDateTime::parse(text, &Rfc3339) {
        return Ok(t);
    }
    let day = time::Date::parse(
        text,
        time::macros::format_description!("[year]-[month]-[day]"),
    )
    .map_err(|_| {
        format!("{text:?} is neither RFC 3339 (2026-11-22T10:00:00Z) nor a day (2026-11-22)")
    })?;
    Ok(day.midnight().assume_utc())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn verbs_parse_as_the_issue_writes_them() {
        let cli = Cli::try_parse_from([
            "sluice",
            "redrive",
            "avro-converter",
            "--dry-run",
            "--max",
            "5",
        ])
        .unwrap();
        let Command::Redrive(args) = cli.command else {
            panic!()
        };
        assert_eq!(args.function, RedriveTarget::AvroConverter);
        assert!(args.dry_run);
        assert_eq!(args.max, Some(5));

        let cli = Cli::try_parse_from([
            "sluice",
            "backfill",
            "avro-converter",
            "s3://raw/incoming/",
            "--since",
            "2026-11-01",
            "--until",
            "2026-11-02T12:00:00Z",
            "--stack",
            "prod",
        ])
        .unwrap();
        assert_eq!(cli.global.stack, "prod");
        let Command::Backfill(args) = cli.command else {
            panic!()
        };
        assert_eq!(args.source.prefix, "incoming/");
        assert_eq!(args.since.unwrap().unix_timestamp(), 1_793_491_200);

        let cli = Cli::try_parse_from([
            "sluice",
            "replay",
            "archive",
            "s3://archive/2026/11/",
            "--rate",
            "50/s",
        ])
        .unwrap();
        let Command::Replay(args) = cli.command else {
            panic!()
        };
        assert_eq!(args.rate, 50.0);
    }

    #[test]
    fn an_unknown_function_is_a_usage_error_listing_the_known_ones() {
        let err = Cli::try_parse_from(["sluice", "redrive", "avro-convertr"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        let text = err.to_string();
        assert!(text.contains("avro-converter"), "{text}");
        let err =
            Cli::try_parse_from(["sluice", "backfill", "crash-router", "s3://b/p"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        let err =
            Cli::try_parse_from(["sluice", "replay", "archive", "archive/2026/"]).unwrap_err();
        assert!(err.to_string().contains("s3://"), "{err}");
    }
}
