//! `sluice-demo`: the scenario driver behind `just demo` (and `tests/e2e/test_demo.py`).
//!
//! Reads a deployed pipeline stack's outputs (`infra/deploy.py --json`), pushes
//! realistic generated data through every function the stack has — player events to the
//! ingest API, snappy JSON files to the avro-converter, raw crashes to the crash bucket,
//! counter files from many instances, one report job (served by a fake job API on the
//! loopback address the stack names) — waits for the real outputs, and prints a summary
//! table: per function what went in, what came out and where, counts and end-to-end
//! latency. Exits 1 if any path's counts are wrong, 2 if it could not start.
//!
//! ```text
//! sluice-demo --outputs outputs.json [--scale full|small] [--json summary.json]
//!             [--timeout 300] [--seed N] [--endpoint-url http://localhost:4566]
//! ```

mod job_api;
mod paths;
mod scenario;
mod summary;

use aws_config::Region;
use paths::{Ctx, Outputs};
use scenario::Scale;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use summary::Summary;

const USAGE: &str = "usage: sluice-demo --outputs <stack-outputs.json> [--scale full|small] \
[--json <summary.json>] [--timeout <seconds>] [--seed <n>] [--endpoint-url <url>]";

#[derive(Debug)]
struct Args {
    outputs: String,
    scale: Scale,
    json: Option<String>,
    timeout: Duration,
    seed: Option<u64>,
    endpoint: String,
}

fn parse_args(mut argv: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut args = Args {
        outputs: String::new(),
        scale: Scale::FULL,
        json: None,
        timeout: Duration::from_secs(300),
        seed: None,
        endpoint: std::env::var("AWS_ENDPOINT_URL")
            .ok()
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| "http://localhost:4566".to_owned()),
    };
    while let Some(flag) = argv.next() {
        let mut value = || argv.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--outputs" => args.outputs = value()?,
            "--scale" => {
                let v = value()?;
                args.scale =
                    Scale::parse(&v).ok_or_else(|| format!("--scale {v}: full or small"))?;
            }
            "--json" => args.json = Some(value()?),
            "--timeout" => {
                let v = value()?;
                args.timeout =
                    Duration::from_secs(v.parse().map_err(|_| format!("--timeout {v}"))?);
            }
            "--seed" => {
                let v = value()?;
                args.seed = Some(v.parse().map_err(|_| format!("--seed {v}"))?);
            }
            "--endpoint-url" => args.endpoint = value()?.trim_end_matches('/').to_owned(),
            "-h" | "--help" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    if args.outputs.is_empty() {
        return Err(format!("--outputs is required\n{USAGE}"));
    }
    Ok(args)
}

fn read_outputs(path: &str) -> Result<Outputs, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    serde_json::from_str(&text).map_err(|e| format!("{path}: not a JSON object of strings: {e}"))
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("sluice-demo: {e}");
            return ExitCode::from(2);
        }
    };
    let outputs = match read_outputs(&args.outputs) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("sluice-demo: {e}");
            return ExitCode::from(2);
        }
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let seed = args.seed.unwrap_or(now.as_nanos() as u64);
    let run = format!("{:08x}", (seed ^ (seed >> 32)) as u32);

    // LocalStack: fixed test credentials; every client goes to the endpoint.
    let credentials =
        aws_sdk_s3::config::Credentials::new("test", "test", None, None, "sluice-demo");
    let config = sluice_aws::clients::loader()
        .region(Region::new("us-east-1"))
        .credentials_provider(credentials)
        .endpoint_url(&args.endpoint)
        .load()
        .await;
    let endpoint = args.endpoint.clone();
    let s3 = aws_sdk_s3::Client::from_conf(
        sluice_aws::clients::s3_config(&config, |name| {
            (name == sluice_aws::clients::ENDPOINT_URL).then(|| endpoint.clone())
        })
        .build(),
    );
    let ctx = Ctx {
        endpoint: args.endpoint.clone(),
        outputs,
        run: run.clone(),
        scale: args.scale,
        seed,
        now_ms: now.as_millis() as i64,
        timeout: args.timeout,
        s3,
        sqs: sluice_aws::clients::sqs(&config),
        dynamodb: sluice_aws::clients::dynamodb(&config),
        secrets: aws_sdk_secretsmanager::Client::new(&config),
        apigateway: aws_sdk_apigateway::Client::new(&config),
    };
    let stack = ctx.outputs.get("StackName").cloned().unwrap_or_default();
    println!(
        "sluice-demo: run {run}, scale {}, stack {stack} at {}",
        args.scale.name, args.endpoint
    );
    let started = Instant::now();

    // A function missing from the stack is simply not in the demo.
    let (ingest, avro, crash, counters, job) = tokio::join!(
        async {
            if ctx.has(&["IngestApiId", "ArchiveBucketName"]) {
                paths::ingest(&ctx).await
            } else {
                vec![]
            }
        },
        async {
            if ctx.has(&["AvroRawBucketName"]) {
                paths::avro(&ctx).await
            } else {
                vec![]
            }
        },
        async {
            if ctx.has(&["CrashBucketName"]) {
                paths::crash(&ctx).await
            } else {
                vec![]
            }
        },
        async {
            if ctx.has(&["CountersBucketName", "AggregateTableName"]) {
                paths::counters(&ctx).await
            } else {
                vec![]
            }
        },
        async {
            if ctx.has(&["JobReportsBucketName"]) {
                paths::job(&ctx).await
            } else {
                vec![]
            }
        },
    );
    let rows: Vec<_> = [ingest, avro, crash, counters, job]
        .into_iter()
        .flatten()
        .collect();
    let summary = Summary::new(&run, args.scale.name, &stack, rows);
    println!(
        "\nsluice-demo summary ({:.1} s):\n",
        started.elapsed().as_secs_f64()
    );
    print!("{}", summary.table());
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&summary).unwrap_or_default();
        if let Err(e) = std::fs::write(path, text) {
            eprintln!("sluice-demo: writing {path}: {e}");
            return ExitCode::from(2);
        }
    }
    if summary.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, String> {
        parse_args(args.iter().map(|s| (*s).to_owned()))
    }

    #[test]
    fn outputs_are_required_and_scale_is_checked() {
        assert!(parse(&[]).unwrap_err().contains("--outputs"));
        assert!(parse(&["--outputs", "o.json", "--scale", "huge"]).is_err());
        let a = parse(&[
            "--outputs",
            "o.json",
            "--scale",
            "small",
            "--json",
            "s.json",
            "--timeout",
            "60",
        ])
        .unwrap();
        assert_eq!(a.scale, Scale::SMALL);
        assert_eq!(a.json.as_deref(), Some("s.json"));
        assert_eq!(a.timeout, Duration::from_secs(60));
    }
}
