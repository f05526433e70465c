//! `sluice backfill avro-converter s3://raw/prefix`: the conversion run again over raw
//! inputs already in the bucket (after a schema change, a fix, lost outputs), by invoking
//! the function once per object with the event S3 would have sent for it — so the outputs
//! are the function's own: the same keys, and for the same input and schema the same
//! bytes (the converter's files are reproducible).
//!
//! Objects are those under the prefix that the bucket's notification filter passes (the
//! function's `INPUT_PREFIX` / `INPUT_SUFFIX`), optionally last modified within
//! `[--since, --until)`. Invocations are synchronous, `--concurrency` at a time; the
//! answer of each says what it converted and rejected.

use std::time::Instant;

use futures::StreamExt;
use serde::Serialize;
use serde_json::{Value, json};
use sluice_events::encode_s3_key;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::context::Context;
use crate::error::{CliError, sdk, service_code};
use crate::lambda::{Invoked, invoke};
use crate::parked::snippet;
use crate::pipeline::Function;
use crate::progress;
use crate::s3uri::S3Uri;

#[derive(Debug, Clone)]
pub struct Options {
    pub source: S3Uri,
    pub since: Option<OffsetDateTime>,
    pub until: Option<OffsetDateTime>,
    pub concurrency: usize,
    pub dry_run: bool,
}

/// One raw object listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawObject {
    pub key: String,
    pub size: i64,
    pub etag: Option<String>,
    pub last_modified: OffsetDateTime,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum ObjectResult {
    Converted {
        key: String,
        records: u64,
        rejected: u64,
        files: usize,
    },
    InputRejected {
        key: String,
        reason: String,
    },
    Ignored {
        key: String,
        why: String,
    },
    Failed {
        key: String,
        error: String,
    },
    WouldConvert {
        key: String,
    },
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub stack: String,
    pub function: String,
    pub source: String,
    pub dry_run: bool,
    /// Objects under the prefix.
    pub listed: usize,
    /// Outside the notification filter (prefix, suffix): S3 would never have sent them.
    pub outside_filter: usize,
    /// Last modified outside `[since, until)`.
    pub outside_window: usize,
    /// Invoked (or, dry run, that would be).
    pub objects: usize,
    pub converted: usize,
    pub records_converted: u64,
    pub records_rejected: u64,
    /// Whole inputs rejected (not snappy, not JSON, empty, too large).
    pub inputs_rejected: usize,
    pub ignored: usize,
    pub failed: usize,
    pub avro_files: usize,
    pub seconds: f64,
    pub results: Vec<ObjectResult>,
}

/// The event S3 sends for a new object, for this one (S3 event notification 2.1).
pub fn s3_put_event(region: &str, bucket: &str, object: &RawObject) -> Value {
    let event_time = object
        .last_modified
        .format(&Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".into());
    let mut s3_object = json!({"key": encode_s3_key(&object.key), "size": object.size});
    if let Some(etag) = &object.etag {
        // Listings quote the ETag; notifications do not.
        s3_object["eTag"] = json!(etag.trim_matches('"'));
    }
    json!({"Records": [{
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": region,
        "eventTime": event_time,
        "eventName": "ObjectCreated:Put",
        "userIdentity": {"principalId": "sluice-backfill"},
        "requestParameters": {"sourceIPAddress": "127.0.0.1"},
        "responseElements": {},
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "sluice-backfill",
            "bucket": {"name": bucket, "ownerIdentity": {"principalId": "sluice-backfill"}, "arn": format!("arn:aws:s3:::{bucket}")},
            "object": s3_object
        }
    }]})
}

/// The function's answer for one object (its `objects[0]`).
pub fn read_answer(key: &str, answer: &Value) -> ObjectResult {
    let Some(object) = answer
        .get("objects")
        .and_then(Value::as_array)
        .and_then(|o| o.first())
    else {
        return ObjectResult::Failed {
            key: key.to_owned(),
            error: format!("unexpected answer: {}", snippet(&answer.to_string(), 120)),
        };
    };
    let text = |k: &str| {
        object
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    let number = |k: &str| object.get(k).and_then(Value::as_u64).unwrap_or(0);
    match object.get("outcome").and_then(Value::as_str) {
        Some("converted") => ObjectResult::Converted {
            key: key.to_owned(),
            records: number("records"),
            rejected: number("rejected"),
            files: object
                .get("files")
                .and_then(Value::as_array)
                .map_or(0, Vec::len),
        },
        Some("input_rejected") => ObjectResult::InputRejected {
            key: key.to_owned(),
            reason: text("reason"),
        },
        Some("ignored") => ObjectResult::Ignored {
            key: key.to_owned(),
            why: text("why"),
        },
        other => ObjectResult::Failed {
            key: key.to_owned(),
            error: format!("unexpected outcome {other:?}"),
        },
    }
}

/// Whether `object` is in the window.
fn in_window(
    object: &RawObject,
    since: Option<OffsetDateTime>,
    until: Option<OffsetDateTime>,
) -> bool {
    since.is_none_or(|s| object.last_modified >= s)
        && until.is_none_or(|u| object.last_modified < u)
}

pub async fn backfill(ctx: &Context, options: Options) -> Result<Report, CliError> {
    let started = Instant::now();
    let deployed = ctx.function(Function::AvroConverter).await?;
    let input_bucket = deployed
        .env("INPUT_BUCKET")
        .map(str::to_owned)
        .or_else(|| ctx.stack.get("AvroRawBucketName").map(str::to_owned))
        .ok_or_else(|| CliError::NotFound("avro-converter has no INPUT_BUCKET".into()))?;
    if options.source.bucket != input_bucket {
        return Err(CliError::Usage(format!(
            "s3://{}/ is not avro-converter's input bucket; stack {} converts from s3://{input_bucket}/",
            options.source.bucket, ctx.stack.name
        )));
    }
    let input_prefix = deployed.env("INPUT_PREFIX").unwrap_or("").to_owned();
    let input_suffix = deployed
        .env("INPUT_SUFFIX")
        .unwrap_or(".json.snappy")
        .to_owned();
    let listed = list(ctx, &options.source).await?;
    let mut report = Report {
        stack: ctx.stack.name.clone(),
        function: deployed.name.clone(),
        source: options.source.to_string(),
        dry_run: options.dry_run,
        listed: listed.len(),
        ..Report::default()
    };
    if listed.is_empty() {
        return Err(CliError::NotFound(format!(
            "nothing under {}",
            options.source
        )));
    }
    let mut todo = Vec::new();
    for object in listed {
        if !(object.key.starts_with(&input_prefix) && object.key.ends_with(&input_suffix)) {
            report.outside_filter += 1;
        } else if !in_window(&object, options.since, options.until) {
            report.outside_window += 1;
        } else {
            todo.push(object);
        }
    }
    report.objects = todo.len();
    if todo.is_empty() {
        return Err(CliError::NotFound(format!(
            "none of the {} objects under {} is an input to convert ({} outside the notification filter {input_prefix}*{input_suffix}, {} outside --since/--until)",
            report.listed, options.source, report.outside_filter, report.outside_window
        )));
    }
    if options.dry_run {
        report.results = todo
            .iter()
            .map(|o| ObjectResult::WouldConvert { key: o.key.clone() })
            .collect();
        report.seconds = started.elapsed().as_secs_f64();
        return Ok(report);
    }
    let region = ctx.clients.region();
    let bar = progress::bar(todo.len() as u64, "avro-converter backfill", ctx.progress);
    let lambda = &ctx.clients.lambda;
    let function_name = deployed.name.as_str();
    let bucket = input_bucket.as_str();
    let mut results = futures::stream::iter(todo.iter())
        .map(|object| {
            let event = s3_put_event(&region, bucket, object);
            async move {
                match invoke(lambda, function_name, &event, true).await {
                    Ok(Invoked::Returned(answer)) => Ok(read_answer(&object.key, &answer)),
                    Ok(Invoked::Failed {
                        error_type,
                        message,
                    }) => Ok(ObjectResult::Failed {
                        key: object.key.clone(),
                        error: format!("{error_type}: {}", snippet(&message, 200)),
                    }),
                    Ok(Invoked::Queued) => unreachable!("invoked synchronously"),
                    Err(CliError::NotFound(m)) => Err(CliError::NotFound(m)),
                    Err(other) => Ok(ObjectResult::Failed {
                        key: object.key.clone(),
                        error: other.to_string(),
                    }),
                }
            }
        })
        .buffer_unordered(options.concurrency.max(1));
    while let Some(result) = results.next().await {
        let result = result?;
        match &result {
            ObjectResult::Converted {
                records,
                rejected,
                files,
                ..
            } => {
                report.converted += 1;
                report.records_converted += records;
                report.records_rejected += rejected;
                report.avro_files += files;
            }
            ObjectResult::InputRejected { .. } => report.inputs_rejected += 1,
            ObjectResult::Ignored { .. } => report.ignored += 1,
            ObjectResult::Failed { .. } => report.failed += 1,
            ObjectResult::WouldConvert { .. } => {}
        }
        report.results.push(result);
        bar.inc(1);
        bar.set_message(format!(
            "records {} rejected {} failed {}",
            report.records_converted, report.records_rejected, report.failed
        ));
    }
    bar.finish_and_clear();
    report
        .results
        .sort_by(|a, b| result_key(a).cmp(result_key(b)));
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

fn result_key(result: &ObjectResult) -> &str {
    match result {
        ObjectResult::Converted { key, .. }
        | ObjectResult::InputRejected { key, .. }
        | ObjectResult::Ignored { key, .. }
        | ObjectResult::Failed { key, .. }
        | ObjectResult::WouldConvert { key } => key,
    }
}

/// Every object under `source` (backfill's inputs, replay's archive); a bucket that does not
/// exist is `NotFound`.
pub(crate) async fn list(ctx: &Context, source: &S3Uri) -> Result<Vec<RawObject>, CliError> {
    let mut out = Vec::new();
    let mut pages = ctx
        .clients
        .s3
        .list_objects_v2()
        .bucket(&source.bucket)
        .prefix(&source.prefix)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| {
            if service_code(&e).as_deref() == Some("NoSuchBucket") {
                CliError::NotFound(format!("bucket {} does not exist", source.bucket))
            } else {
                sdk(format!("listing {source}"), e)
            }
        })?;
        for object in page.contents() {
            let Some(key) = object.key() else { continue };
            let last_modified = object
                .last_modified()
                .and_then(|t| OffsetDateTime::from_unix_timestamp(t.secs()).ok())
                .unwrap_or(OffsetDateTime::UNIX_EPOCH);
            out.push(RawObject {
                key: key.to_owned(),
                size: object.size().unwrap_or(0),
                etag: object.e_tag().map(str::to_owned),
                last_modified,
            });
        }
    }
    Ok(out)
}

/// The summary for a terminal.
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    let verb = if report.dry_run {
        "would convert"
    } else {
        "converted"
    };
    out.push_str(&format!(
        "backfill {} over {} (stack {}): {} objects listed, {} outside the notification filter, {} outside --since/--until\n",
        report.function, report.source, report.stack, report.listed, report.outside_filter, report.outside_window
    ));
    if report.dry_run {
        out.push_str(&format!(
            "{verb} {} objects (dry run: nothing invoked)\n",
            report.objects
        ));
        for r in report.results.iter().take(20) {
            out.push_str(&format!("  {}\n", result_key(r)));
        }
        if report.results.len() > 20 {
            out.push_str(&format!("  … and {} more\n", report.results.len() - 20));
        }
        return out;
    }
    out.push_str(&format!(
        "objects {}: converted {}, inputs rejected {}, ignored {}, failed {}\nrecords converted {}, rejected {}; Avro files written {}; {:.1} s\n",
        report.objects,
        report.converted,
        report.inputs_rejected,
        report.ignored,
        report.failed,
        report.records_converted,
        report.records_rejected,
        report.avro_files,
        report.seconds
    ));
    for r in &report.results {
        match r {
            ObjectResult::InputRejected { key, reason } => {
                out.push_str(&format!("  rejected {key}: {reason}\n"))
            }
            ObjectResult::Ignored { key, why } => {
                out.push_str(&format!("  ignored  {key}: {why}\n"))
            }
            ObjectResult::Failed { key, error } => {
                out.push_str(&format!("  FAILED   {key}: {error}\n"))
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests;
