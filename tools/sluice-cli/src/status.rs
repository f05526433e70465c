//! `sluice status`: per function, what its failure paths hold (how many items, the oldest
//! one's age and why it was parked), its errors in the last hour, and its stream mappings'
//! state and iterator age.
//!
//! Sources: the failure queues' attributes and a look at up to 10 of their messages
//! (`VisibilityTimeout` 0: nothing is taken); the archiver's failure bucket listing and its
//! oldest kept batch; the function's log group (lines logged at `ERROR` in the last hour:
//! every sluice function logs a failure it reports, partial batch failures included); the
//! `AWS/Lambda` metrics `Errors` (failed invocations) and `IteratorAge`.

use std::time::{SystemTime, UNIX_EPOCH};

use aws_sdk_cloudwatch::types::{Dimension, Statistic};
use futures::future::join_all;
use serde::Serialize;
use serde_json::Value;
use sluice_aws::{Deadline, get_object_bytes};
use sluice_events::{S3Notice, s3_notices_from_str, s3_notices_from_value};

use crate::context::Context;
use crate::error::{CliError, sdk, service_code};
use crate::parked::{Reason, parse_async_failure, parse_kept_batch, parse_stream_failure, snippet};
use crate::pipeline::{FailurePath, Function};
use crate::queue::{self, Held};
use crate::redrive::KEPT_PREFIX;
use crate::table;

/// Log lines counted at most per level (the count says "at least" beyond).
const MAX_LOG_LINES: usize = 10_000;

#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub stack: String,
    pub stack_status: String,
    pub region: String,
    /// Items parked in every failure path.
    pub parked: u64,
    pub functions: Vec<FunctionStatus>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FunctionStatus {
    pub function: Function,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub failure_paths: Vec<PathStatus>,
    /// Log lines at `ERROR` in the last hour.
    pub errors_last_hour: LogLines,
    /// Log lines at `WARN` in the last hour (failures that will be retried).
    pub warnings_last_hour: LogLines,
    /// `AWS/Lambda` `Errors` summed over the last hour; `None` without metric data.
    pub failed_invocations_last_hour: Option<u64>,
    pub mappings: Vec<MappingStatus>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PathStatus {
    pub path: &'static str,
    /// Queue URL or `s3://bucket/aws/lambda/`.
    pub store: String,
    /// Items waiting there.
    pub parked: u64,
    /// Queue messages taken by someone right now (a redrive running).
    pub in_flight: u64,
    /// Age of the oldest item looked at (queues: of up to 10 messages).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oldest_age_seconds: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oldest_reason: Option<String>,
    /// What the oldest item is about (an object, a job, a stream range).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oldest_subject: Option<String>,
    /// Archiver: messages on the queue announcing kept batches.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub announcements: Option<u64>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct LogLines {
    pub count: u64,
    /// More lines matched than were counted.
    pub at_least: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latest: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MappingStatus {
    pub source: String,
    pub state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_result: Option<String>,
    /// `AWS/Lambda` `IteratorAge` (maximum of the last datapoint in 15 minutes), stream
    /// sources only; `None` without metric data.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iterator_age_ms: Option<f64>,
}

pub async fn status(ctx: &Context) -> Result<Status, CliError> {
    let functions = join_all(Function::ALL.iter().map(|f| function_status(ctx, *f))).await;
    let functions = functions.into_iter().collect::<Result<Vec<_>, _>>()?;
    Ok(Status {
        stack: ctx.stack.name.clone(),
        stack_status: ctx.stack.status.clone(),
        region: ctx.clients.region(),
        parked: functions
            .iter()
            .flat_map(|f| f.failure_paths.iter())
            .map(|p| p.parked)
            .sum(),
        functions,
    })
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

async fn function_status(ctx: &Context, function: Function) -> Result<FunctionStatus, CliError> {
    let Some(name) = ctx.stack.get(function.name_output()) else {
        return Ok(FunctionStatus {
            function,
            name: String::new(),
            note: Some(format!(
                "not in this stack (no output {})",
                function.name_output()
            )),
            failure_paths: Vec::new(),
            errors_last_hour: LogLines::default(),
            warnings_last_hour: LogLines::default(),
            failed_invocations_last_hour: None,
            mappings: Vec::new(),
        });
    };
    let mut failure_paths = Vec::new();
    for path in function.failure_paths() {
        failure_paths.push(path_status(ctx, function, path).await?);
    }
    let note = function
        .failure_paths()
        .is_empty()
        .then(|| "no failure path: a 503 tells the caller what to resend".to_owned());
    Ok(FunctionStatus {
        function,
        name: name.to_owned(),
        note,
        failure_paths,
        errors_last_hour: log_lines(&ctx.clients.logs, name, "ERROR").await?,
        warnings_last_hour: log_lines(&ctx.clients.logs, name, "WARN").await?,
        failed_invocations_last_hour: failed_invocations(&ctx.clients.cloudwatch, name).await?,
        mappings: mappings(ctx, name).await?,
    })
}

async fn path_status(
    ctx: &Context,
    function: Function,
    path: &FailurePath,
) -> Result<PathStatus, CliError> {
    let store = ctx.stack.output(path.store_output())?;
    if let FailurePath::KeptBatches { announcements, .. } = path {
        return kept_status(ctx, store, ctx.stack.output(announcements)?).await;
    }
    let sqs = &ctx.clients.sqs;
    let (parked, in_flight) = queue::depth(sqs, store).await?;
    let mut status = PathStatus {
        path: path.label(),
        store: store.to_owned(),
        parked,
        in_flight,
        oldest_age_seconds: None,
        oldest_reason: None,
        oldest_subject: None,
        announcements: None,
    };
    if parked > 0 {
        let looked = queue::peek(sqs, store, 10).await?;
        if let Some(oldest) = looked
            .iter()
            .min_by_key(|m| m.sent_at_ms.unwrap_or(i64::MAX))
        {
            status.oldest_age_seconds = oldest
                .sent_at_ms
                .map(|at| ((now_ms() - at).max(0) / 1000) as u64);
            let (reason, subject) = describe_message(function, path, oldest);
            status.oldest_reason = Some(reason);
            status.oldest_subject = subject;
        }
    }
    Ok(status)
}

/// Why a parked message is there, and what it is about.
pub fn describe_message(
    function: Function,
    path: &FailurePath,
    held: &Held,
) -> (String, Option<String>) {
    match path {
        FailurePath::AsyncFailureQueue { .. } => match parse_async_failure(&held.body) {
            Ok(failure) => (
                failure.reason.to_string(),
                event_subject(function, &failure.payload),
            ),
            Err(e) => (format!("unreadable: {e}"), None),
        },
        FailurePath::StreamFailureQueue { .. } => match parse_stream_failure(&held.body) {
            Ok(failure) => (
                failure.reason.to_string(),
                Some(format!(
                    "{} records of {} ({}..{})",
                    failure
                        .info
                        .batch_size
                        .map_or("?".into(), |n| n.to_string()),
                    failure.info.shard_id,
                    failure.info.start_sequence_number,
                    failure.info.end_sequence_number
                )),
            ),
            Err(e) => (format!("unreadable: {e}"), None),
        },
        // Not its receive count: every look (this one too) adds to it.
        FailurePath::DeadLetterQueue { .. } => match s3_notices_from_str(&held.body) {
            Ok(notices) => (
                Reason::note("failed every receive until the DLQ; the function's log says why")
                    .to_string(),
                notices_subject(&notices),
            ),
            Err(e) => (
                format!(
                    "not an S3 notification (it fails every time): {}",
                    snippet(&e.to_string(), 80)
                ),
                Some(snippet(&held.body, 60)),
            ),
        },
        FailurePath::SnsDeliveryQueue { .. } => (
            "SNS could not deliver it to the function".into(),
            s3_notices_from_str(&held.body)
                .ok()
                .and_then(|n| notices_subject(&n)),
        ),
        FailurePath::KeptBatches { .. } => ("kept batch".into(), None),
    }
}

fn notices_subject(notices: &[S3Notice]) -> Option<String> {
    let objects: Vec<String> = notices
        .iter()
        .filter_map(S3Notice::as_object)
        .map(|o| format!("s3://{}/{}", o.bucket, o.key))
        .collect();
    match objects.len() {
        0 => None,
        1 => Some(objects[0].clone()),
        n => Some(format!("{} (+{} more)", objects[0], n - 1)),
    }
}

fn event_subject(function: Function, event: &Value) -> Option<String> {
    if function == Function::JobPoller
        && let Some(kind) = event.get("kind").and_then(Value::as_str)
    {
        let job = event.get("job_id").and_then(Value::as_str).unwrap_or("?");
        return Some(format!("{kind} job {job}"));
    }
    s3_notices_from_value(event)
        .ok()
        .and_then(|n| notices_subject(&n))
}

async fn kept_status(
    ctx: &Context,
    bucket: &str,
    announcements: &str,
) -> Result<PathStatus, CliError> {
    let s3 = &ctx.clients.s3;
    let mut count = 0;
    let mut oldest: Option<(i64, String)> = None;
    let mut pages = s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix(KEPT_PREFIX)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| {
            if service_code(&e).as_deref() == Some("NoSuchBucket") {
                CliError::NotFound(format!("bucket {bucket} does not exist"))
            } else {
                sdk(format!("listing s3://{bucket}/{KEPT_PREFIX}"), e)
            }
        })?;
        for object in page.contents() {
            count += 1;
            let at = object
                .last_modified()
                .map(|t| t.to_millis().unwrap_or(0))
                .unwrap_or(0);
            if oldest.as_ref().is_none_or(|(t, _)| at < *t) {
                oldest = Some((at, object.key().unwrap_or_default().to_owned()));
            }
        }
    }
    let (waiting, _) = queue::depth(&ctx.clients.sqs, announcements).await?;
    let mut status = PathStatus {
        path: "kept batches",
        store: format!("s3://{bucket}/{KEPT_PREFIX}"),
        parked: count,
        in_flight: 0,
        oldest_age_seconds: None,
        oldest_reason: None,
        oldest_subject: None,
        announcements: Some(waiting),
    };
    if let Some((at, key)) = oldest {
        status.oldest_age_seconds = Some(((now_ms() - at).max(0) / 1000) as u64);
        let deadline = Deadline::after(std::time::Duration::from_secs(60));
        match get_object_bytes(s3, bucket, &key, &deadline)
            .await
            .map(|b| parse_kept_batch(&b))
        {
            Ok(Ok(batch)) => {
                status.oldest_reason = Some(batch.reason.to_string());
                status.oldest_subject = Some(format!(
                    "{} records of {} ({}..{})",
                    batch.info.batch_size.map_or("?".into(), |n| n.to_string()),
                    batch.info.shard_id,
                    batch.info.start_sequence_number,
                    batch.info.end_sequence_number
                ));
            }
            Ok(Err(e)) => status.oldest_reason = Some(format!("unreadable: {e}")),
            Err(e) => status.oldest_reason = Some(format!("not read: {e}")),
        }
    }
    Ok(status)
}

/// Whether a log line is at `level` (`ERROR`, `WARN`): a JSON line logged at it, or a
/// plain line (the runtime's own) naming it.
pub fn is_level_line(line: &str, level: &str) -> bool {
    match serde_json::from_str::<Value>(line.trim()) {
        Ok(Value::Object(fields)) => fields
            .get("level")
            .and_then(Value::as_str)
            .is_some_and(|l| l.eq_ignore_ascii_case(level)),
        _ => line.contains(level),
    }
}

/// The gist of a log line: its message and error fields.
fn line_gist(line: &str) -> String {
    match serde_json::from_str::<Value>(line.trim()) {
        Ok(Value::Object(fields)) => {
            let text = |k: &str| fields.get(k).and_then(Value::as_str).map(str::to_owned);
            let parts: Vec<String> = [text("message"), text("error"), text("reason")]
                .into_iter()
                .flatten()
                .collect();
            snippet(&parts.join(": "), 160)
        }
        _ => snippet(line, 160),
    }
}

/// Lines logged at `level` in the last hour.
async fn log_lines(
    logs: &aws_sdk_cloudwatchlogs::Client,
    function_name: &str,
    level: &str,
) -> Result<LogLines, CliError> {
    let group = format!("/aws/lambda/{function_name}");
    let since = now_ms() - 3_600_000;
    let mut pages = logs
        .filter_log_events()
        .log_group_name(&group)
        .start_time(since)
        .filter_pattern(level)
        .into_paginator()
        .send();
    let mut counted = LogLines::default();
    let mut latest_at = i64::MIN;
    let mut seen = 0;
    while let Some(page) = pages.next().await {
        let page = match page {
            Ok(page) => page,
            Err(err) if service_code(&err).as_deref() == Some("ResourceNotFoundException") => {
                return Ok(counted); // no log group yet: never invoked
            }
            Err(err) => return Err(sdk(format!("reading {group}"), err)),
        };
        for event in page.events() {
            seen += 1;
            let message = event.message().unwrap_or_default();
            if is_level_line(message, level) {
                counted.count += 1;
                let at = event.timestamp().unwrap_or(0);
                if at >= latest_at {
                    latest_at = at;
                    counted.latest = Some(line_gist(message));
                }
            }
        }
        if seen >= MAX_LOG_LINES {
            counted.at_least = true;
            break;
        }
    }
    Ok(counted)
}

async fn metric(
    cloudwatch: &aws_sdk_cloudwatch::Client,
    function_name: &str,
    name: &str,
    statistic: Statistic,
    window_seconds: i64,
    period: i32,
) -> Result<Vec<(i64, f64)>, CliError> {
    let end = aws_smithy_types::DateTime::from_millis(now_ms());
    let start = aws_smithy_types::DateTime::from_millis(now_ms() - window_seconds * 1000);
    let answer = cloudwatch
        .get_metric_statistics()
        .namespace("AWS/Lambda")
        .metric_name(name)
        .dimensions(
            Dimension::builder()
                .name("FunctionName")
                .value(function_name)
                .build(),
        )
        .start_time(start)
        .end_time(end)
        .period(period)
        .statistics(statistic.clone())
        .send()
        .await
        .map_err(|e| {
            sdk(
                format!("reading metric AWS/Lambda {name} of {function_name}"),
                e,
            )
        })?;
    Ok(answer
        .datapoints()
        .iter()
        .filter_map(|d| {
            let value = match statistic {
                Statistic::Maximum => d.maximum(),
                _ => d.sum(),
            }?;
            Some((
                d.timestamp().and_then(|t| t.to_millis().ok()).unwrap_or(0),
                value,
            ))
        })
        .collect())
}

async fn failed_invocations(
    cloudwatch: &aws_sdk_cloudwatch::Client,
    function_name: &str,
) -> Result<Option<u64>, CliError> {
    let points = metric(
        cloudwatch,
        function_name,
        "Errors",
        Statistic::Sum,
        3600,
        3600,
    )
    .await?;
    Ok((!points.is_empty()).then(|| points.iter().map(|(_, v)| *v).sum::<f64>() as u64))
}

async fn mappings(ctx: &Context, function_name: &str) -> Result<Vec<MappingStatus>, CliError> {
    let answer = ctx
        .clients
        .lambda
        .list_event_source_mappings()
        .function_name(function_name)
        .send()
        .await
        .map_err(|e| {
            sdk(
                format!("listing the event source mappings of {function_name}"),
                e,
            )
        })?;
    let mut out = Vec::new();
    for mapping in answer.event_source_mappings() {
        let arn = mapping.event_source_arn().unwrap_or_default();
        let stream = arn.starts_with("arn:aws:kinesis:")
            || arn.contains(":table/") && arn.contains("/stream/");
        let iterator_age_ms = if stream {
            metric(
                &ctx.clients.cloudwatch,
                function_name,
                "IteratorAge",
                Statistic::Maximum,
                900,
                60,
            )
            .await?
            .into_iter()
            .max_by_key(|(at, _)| *at)
            .map(|(_, v)| v)
        } else {
            None
        };
        out.push(MappingStatus {
            source: source_name(arn),
            state: mapping.state().unwrap_or("?").to_owned(),
            last_result: mapping.last_processing_result().map(str::to_owned),
            iterator_age_ms,
        });
    }
    Ok(out)
}

/// `stream <name>` / `table <name> stream` / `queue <name>` from an event source ARN.
pub fn source_name(arn: &str) -> String {
    let resource = arn.splitn(6, ':').nth(5).unwrap_or(arn);
    if let Some(stream) = resource.strip_prefix("stream/") {
        return format!("stream {stream}");
    }
    if let Some(table) = resource.strip_prefix("table/") {
        return format!("table {} stream", table.split('/').next().unwrap_or(table));
    }
    if arn.starts_with("arn:aws:sqs:") {
        return format!("queue {resource}");
    }
    arn.to_owned()
}

/// The status as a table.
pub fn render(status: &Status) -> String {
    let mut rows = Vec::new();
    for f in &status.functions {
        let count =
            |lines: &LogLines| format!("{}{}", lines.count, if lines.at_least { "+" } else { "" });
        let errors = format!(
            "{}/{}",
            count(&f.errors_last_hour),
            count(&f.warnings_last_hour)
        );
        let failed = f
            .failed_invocations_last_hour
            .map_or("-".into(), |n| n.to_string());
        let age = if f.function.is_stream_triggered() {
            let ages: Vec<String> = f
                .mappings
                .iter()
                .map(|m| {
                    m.iterator_age_ms
                        .map_or("no data".into(), |ms| table::duration((ms / 1000.0) as u64))
                })
                .collect();
            if ages.is_empty() {
                "no mapping".into()
            } else {
                ages.join(", ")
            }
        } else {
            "-".into()
        };
        let first = |row: usize, value: String| if row == 0 { value } else { String::new() };
        if f.failure_paths.is_empty() {
            rows.push(vec![
                f.function.to_string(),
                "none".into(),
                "-".into(),
                "-".into(),
                f.note.clone().unwrap_or_default(),
                errors,
                failed,
                age,
            ]);
            continue;
        }
        for (i, p) in f.failure_paths.iter().enumerate() {
            let mut parked = p.parked.to_string();
            if p.in_flight > 0 {
                parked.push_str(&format!(" (+{} in flight)", p.in_flight));
            }
            let mut reason = p.oldest_reason.clone().unwrap_or_else(|| "-".into());
            if let Some(subject) = &p.oldest_subject {
                reason = format!("{reason} — {subject}");
            }
            rows.push(vec![
                first(i, f.function.to_string()),
                p.path.to_owned(),
                parked,
                p.oldest_age_seconds.map_or("-".into(), table::duration),
                snippet(&reason, 90),
                first(i, errors.clone()),
                first(i, failed.clone()),
                first(i, age.clone()),
            ]);
        }
    }
    let mut out = format!(
        "stack {} ({}, {}): {} item{} parked\n\n",
        status.stack,
        status.stack_status,
        status.region,
        status.parked,
        if status.parked == 1 { "" } else { "s" }
    );
    out.push_str(&table::render(
        &[
            "FUNCTION",
            "FAILURE PATH",
            "PARKED",
            "OLDEST",
            "WHY (OLDEST)",
            "ERR/WARN LOGS 1H",
            "FAILED INV 1H",
            "ITERATOR AGE",
        ],
        &rows,
    ));
    let stale: Vec<String> = status
        .functions
        .iter()
        .flat_map(|f| f.mappings.iter().map(move |m| (f, m)))
        .filter(|(_, m)| m.state != "Enabled")
        .map(|(f, m)| format!("  {}: mapping from {} is {}", f.function, m.source, m.state))
        .collect();
    if !stale.is_empty() {
        out.push_str("\nmappings not enabled:\n");
        out.push_str(&stale.join("\n"));
        out.push('\n');
    }
    if status.parked > 0 {
        out.push_str("\nsluice redrive <function> brings parked items back (--dry-run first to see what it would do).\n");
    }
    out
}

#[cfg(test)]
mod tests;
