//! `sluice redrive <function>`: what a function's failure path holds, back through its
//! trigger the way each kind needs —
//!
//! | path | redriven by |
//! |---|---|
//! | async on-failure queue (avro-converter, counter-mapper, job-poller) | invoking the function with each record's `requestPayload` (job-poller asynchronously) |
//! | SNS delivery queue (counter-mapper) | invoking the function with each notification SNS could not deliver |
//! | SQS DLQ (crash-router) | moving each message, unchanged, back to the notification queue |
//! | kept batches on S3 (kinesis-archiver) | invoking the function with each kept batch's records; then deleting the kept object and its announcement |
//! | stream on-failure queue (counter-aggregator, counter-reporter) | reading the described range back from the table's stream and replaying it into the function |
//!
//! An item is removed from its failure path only once its redrive succeeded; an item that
//! fails again stays, with its new reason in the report. Items that would fail again for
//! certain (not an event the function reads, a bucket it refuses, an event it already
//! refused as unreadable or not its own, a range no longer on the stream) are skipped with
//! the reason and left in place. Every function is idempotent on
//! redelivery (README), and an event found twice in one run is redriven once (the copy is
//! deleted, counted as a duplicate): running redrive twice moves nothing the second time.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use futures::StreamExt;
use serde::Serialize;
use serde_json::Value;
use sluice_aws::{Backoff, Deadline, OutgoingMessage, S3Error, SendBatchWriter, get_object_bytes};
use sluice_events::{
    S3Notice, kinesis_records_from_value, s3_notices_from_str, s3_notices_from_value,
};

use crate::context::Context;
use crate::error::{CliError, sdk};
use crate::lambda::{Invoked, invoke};
use crate::parked::{parse_async_failure, parse_kept_batch, parse_stream_failure, snippet};
use crate::pipeline::{FailurePath, Function, Invocation};
use crate::progress;
use crate::queue::{Held, QueueRun};
use crate::streams::{Range, read_range};

/// Where kept batches live in the archiver's failure bucket (Lambda's S3 destination layout).
pub const KEPT_PREFIX: &str = "aws/lambda/";

#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub dry_run: bool,
    /// Examine at most this many items per failure path.
    pub max: Option<usize>,
    /// Items worked on at once.
    pub concurrency: usize,
}

/// What happened to one item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Redriven,
    WouldRedrive,
    FailedAgain,
    Skipped,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Item {
    /// Message id, or the kept object's key.
    pub id: String,
    pub outcome: Outcome,
    pub detail: String,
}

/// One failure path's redrive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PathReport {
    pub function: Function,
    pub path: &'static str,
    /// Queue URL, or `s3://bucket/aws/lambda/`.
    pub store: String,
    /// How items are redriven.
    pub action: String,
    pub dry_run: bool,
    pub examined: usize,
    /// Redriven (or, in a dry run, that would be).
    pub redriven: usize,
    pub failed_again: usize,
    pub skipped: usize,
    pub skipped_by_reason: BTreeMap<String, usize>,
    /// Stream records replayed or batch records re-archived, where items hold records.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub records: Option<usize>,
    /// Archiver: announcements of batches no longer kept, removed from its queue.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub announcements_removed: Option<usize>,
    pub items: Vec<Item>,
}

impl PathReport {
    fn new(
        function: Function,
        path: &'static str,
        store: String,
        action: String,
        dry_run: bool,
    ) -> Self {
        PathReport {
            function,
            path,
            store,
            action,
            dry_run,
            examined: 0,
            redriven: 0,
            failed_again: 0,
            skipped: 0,
            skipped_by_reason: BTreeMap::new(),
            records: None,
            announcements_removed: None,
            items: Vec::new(),
        }
    }

    fn redriven(&mut self, id: &str, detail: String) {
        self.redriven += 1;
        let outcome = if self.dry_run {
            Outcome::WouldRedrive
        } else {
            Outcome::Redriven
        };
        self.items.push(Item {
            id: id.to_owned(),
            outcome,
            detail,
        });
    }

    fn failed(&mut self, id: &str, detail: String) {
        self.failed_again += 1;
        self.items.push(Item {
            id: id.to_owned(),
            outcome: Outcome::FailedAgain,
            detail,
        });
    }

    fn skip(&mut self, id: &str, reason: &str, detail: String) {
        self.skipped += 1;
        *self.skipped_by_reason.entry(reason.to_owned()).or_default() += 1;
        self.items.push(Item {
            id: id.to_owned(),
            outcome: Outcome::Skipped,
            detail: if detail.is_empty() {
                reason.to_owned()
            } else {
                format!("{reason}: {detail}")
            },
        });
    }

    fn add_records(&mut self, n: usize) {
        *self.records.get_or_insert(0) += n;
    }
}

/// Every failure path of one function.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub stack: String,
    pub function: Function,
    pub dry_run: bool,
    /// Why there is nothing to redrive (ingest-api).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub paths: Vec<PathReport>,
}

impl Report {
    pub fn failed_again(&self) -> usize {
        self.paths.iter().map(|p| p.failed_again).sum()
    }
}

// Skip reasons (the keys of `skipped_by_reason`).
pub const NOT_A_FAILURE_RECORD: &str = "not a Lambda on-failure record";
pub const NOT_AN_EVENT_IT_READS: &str = "not an event the function reads (it would fail again)";
pub const REFUSED_EVENT: &str = "the function refused the event itself (it would fail again)";
pub const FOREIGN_BUCKET: &str =
    "names a bucket the function refuses (it would fail again as ForeignBucket)";
pub const DUPLICATE: &str = "duplicate of an item redriven in this run (removed)";
pub const DUPLICATE_OF_FAILED: &str = "duplicate of an item that failed again (kept)";
pub const GONE_FROM_STREAM: &str = "range no longer on the stream (past its retention)";
pub const OTHER_STREAM: &str = "kept from another stream than this stack's";
pub const UNREADABLE_BATCH: &str = "kept object is not a readable batch";
pub const ALREADY_GONE: &str = "kept object gone meanwhile";

pub async fn redrive(
    ctx: &Context,
    function: Function,
    options: Options,
) -> Result<Report, CliError> {
    let deployed = ctx.function(function).await?;
    let mut report = Report {
        stack: ctx.stack.name.clone(),
        function,
        dry_run: options.dry_run,
        note: None,
        paths: Vec::new(),
    };
    if function.failure_paths().is_empty() {
        report.note = Some(
            "ingest-api parks nothing: it answers synchronously, and a 503 lists the events its caller must resend"
                .into(),
        );
        return Ok(report);
    }
    let own_bucket = match function.own_bucket_output() {
        Some(output) => Some(ctx.stack.output(output)?.to_owned()),
        None => None,
    };
    for path in function.failure_paths() {
        let path_report = match *path {
            FailurePath::KeptBatches {
                bucket,
                announcements,
            } => {
                let kept = KeptBatches {
                    ctx,
                    function,
                    function_name: &deployed.name,
                    bucket: ctx.stack.output(bucket)?,
                    announcements: ctx.stack.output(announcements)?,
                    stream_arn: ctx.stack.get("EventStreamArn"),
                    options,
                };
                kept.run().await?
            }
            other => {
                let kind = match other {
                    FailurePath::AsyncFailureQueue { invocation, .. } => {
                        Kind::AsyncFailure(invocation)
                    }
                    FailurePath::SnsDeliveryQueue { .. } => Kind::SnsDelivery,
                    FailurePath::DeadLetterQueue { source, .. } => {
                        Kind::DeadLetter(ctx.stack.output(source)?.to_owned())
                    }
                    FailurePath::StreamFailureQueue { .. } => Kind::StreamFailure,
                    FailurePath::KeptBatches { .. } => unreachable!("handled above"),
                };
                let queue = QueueRedrive {
                    ctx,
                    function,
                    function_name: &deployed.name,
                    own_bucket: own_bucket.as_deref(),
                    kind,
                    url: ctx.stack.output(other.store_output())?,
                    label: other.label(),
                    // A taken message stays invisible while a batch of invocations runs.
                    visibility: deployed
                        .timeout_seconds
                        .saturating_mul(2)
                        .saturating_add(60),
                    options,
                };
                queue.run().await?
            }
        };
        report.paths.push(path_report);
    }
    Ok(report)
}

/// How a queue's items are redriven.
#[derive(Debug, Clone)]
enum Kind {
    AsyncFailure(Invocation),
    SnsDelivery,
    DeadLetter(String),
    StreamFailure,
}

/// What to do with one message.
#[derive(Debug, Clone, PartialEq)]
enum Decision {
    Skip {
        reason: &'static str,
        detail: String,
    },
    Redrive {
        key: String,
        work: Work,
    },
}

#[derive(Debug, Clone, PartialEq)]
enum Work {
    /// Invoke the function with this event.
    Invoke(Value),
    /// Send this body and these attributes to the source queue.
    Move(
        String,
        HashMap<String, aws_sdk_sqs::types::MessageAttributeValue>,
    ),
    /// Read this range from the stream and replay it.
    Replay(crate::parked::BatchInfo),
}

/// How one redrive attempt ended.
#[derive(Debug, Clone, PartialEq)]
enum Attempt {
    Done {
        detail: String,
        records: usize,
    },
    Failed(String),
    Skip {
        reason: &'static str,
        detail: String,
    },
}

/// Error types (after a `Permanent.` class) by which a function says the event itself is
/// wrong — unreadable, not its own, naming nothing it can act on — so no fix elsewhere
/// makes a redelivery succeed. Other errors, permanent ones too (`AccessDenied` before a
/// policy is fixed), are worth a redrive.
const EVENT_DEFECTS: &[&str] = &[
    "InvalidEvent",
    "ForeignBucket",
    "UnversionedObject",
    "UnknownSource",
];

/// Whether the recorded error says the event itself is at fault.
fn refused_event(reason: &crate::parked::Reason) -> Option<&str> {
    let error_type = reason.error_type.as_deref()?;
    let kind = error_type.strip_prefix("Permanent.").unwrap_or(error_type);
    EVENT_DEFECTS.contains(&kind).then_some(error_type)
}

/// Whether `event` is something `function` reads, checked with the same envelope reader
/// the functions use: an event it would refuse for certain is not worth redriving.
fn check_event(
    function: Function,
    event: &Value,
    own_bucket: Option<&str>,
) -> Result<(), (&'static str, String)> {
    if function == Function::JobPoller {
        let kind = event.get("kind").and_then(Value::as_str);
        if matches!(
            kind,
            Some("job-poller/continue" | "job-poller/record-notification")
        ) {
            return Ok(());
        }
    }
    let notices = s3_notices_from_value(event)
        .map_err(|e| (NOT_AN_EVENT_IT_READS, snippet(&e.to_string(), 160)))?;
    if let Some(own) = own_bucket {
        for notice in &notices {
            if let S3Notice::Object(object) = notice
                && object.bucket != own
            {
                return Err((
                    FOREIGN_BUCKET,
                    format!(
                        "s3://{}/{} (its bucket is {own})",
                        object.bucket, object.key
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// What a function answered, in a few words.
fn describe_answer(function: Function, answer: &Value) -> String {
    match function {
        Function::AvroConverter => {
            let objects = answer
                .get("objects")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let parts: Vec<String> = objects
                .iter()
                .map(|o| {
                    let key = o.get("key").and_then(Value::as_str).unwrap_or("");
                    match o.get("outcome").and_then(Value::as_str) {
                        Some("converted") => format!(
                            "{key}: {} records converted, {} rejected",
                            o.get("records").and_then(Value::as_u64).unwrap_or(0),
                            o.get("rejected").and_then(Value::as_u64).unwrap_or(0)
                        ),
                        Some("input_rejected") => format!(
                            "{key}: input rejected ({})",
                            o.get("reason").and_then(Value::as_str).unwrap_or("")
                        ),
                        Some("ignored") => format!(
                            "{key}: ignored ({})",
                            o.get("why").and_then(Value::as_str).unwrap_or("")
                        ),
                        Some(other) => other.to_owned(),
                        None => snippet(&o.to_string(), 80),
                    }
                })
                .collect();
            parts.join("; ")
        }
        _ => snippet(&answer.to_string(), 160),
    }
}

struct QueueRedrive<'a> {
    ctx: &'a Context,
    function: Function,
    function_name: &'a str,
    own_bucket: Option<&'a str>,
    kind: Kind,
    url: &'a str,
    label: &'static str,
    visibility: i32,
    options: Options,
}

impl QueueRedrive<'_> {
    fn action(&self) -> String {
        match &self.kind {
            Kind::AsyncFailure(Invocation::Sync) => format!(
                "invoke {} with each record's requestPayload (RequestResponse)",
                self.function_name
            ),
            Kind::AsyncFailure(Invocation::Async) => format!(
                "invoke {} with each record's requestPayload (Event: a failure returns to this queue)",
                self.function_name
            ),
            Kind::SnsDelivery => format!(
                "invoke {} with each notification SNS could not deliver (RequestResponse)",
                self.function_name
            ),
            Kind::DeadLetter(source) => format!("move each message unchanged back to {source}"),
            Kind::StreamFailure => format!(
                "read each range back from the stream and replay it into {} (RequestResponse)",
                self.function_name
            ),
        }
    }

    fn decide(&self, held: &Held) -> Decision {
        let skip = |reason: &'static str, detail: String| Decision::Skip { reason, detail };
        match &self.kind {
            Kind::AsyncFailure(_) => match parse_async_failure(&held.body) {
                Err(e) => skip(NOT_A_FAILURE_RECORD, e.to_string()),
                Ok(failure) => {
                    match check_event(self.function, &failure.payload, self.own_bucket) {
                        Err((reason, detail)) => skip(reason, detail),
                        Ok(()) => match refused_event(&failure.reason) {
                            Some(error_type) => skip(
                                REFUSED_EVENT,
                                format!(
                                    "{error_type}: {}",
                                    snippet(
                                        failure.reason.error_message.as_deref().unwrap_or(""),
                                        160
                                    )
                                ),
                            ),
                            None => Decision::Redrive {
                                key: failure.payload.to_string(),
                                work: Work::Invoke(failure.payload),
                            },
                        },
                    }
                }
            },
            Kind::SnsDelivery => match serde_json::from_str::<Value>(&held.body) {
                Err(e) => skip(NOT_AN_EVENT_IT_READS, format!("not JSON: {e}")),
                Ok(event) => match check_event(self.function, &event, self.own_bucket) {
                    Err((reason, detail)) => skip(reason, detail),
                    Ok(()) => Decision::Redrive {
                        key: event.to_string(),
                        work: Work::Invoke(event),
                    },
                },
            },
            Kind::DeadLetter(_) => match s3_notices_from_str(&held.body) {
                Err(e) => skip(NOT_AN_EVENT_IT_READS, snippet(&e.to_string(), 160)),
                Ok(_) => Decision::Redrive {
                    key: held.body.clone(),
                    work: Work::Move(held.body.clone(), held.attributes.clone()),
                },
            },
            Kind::StreamFailure => match parse_stream_failure(&held.body) {
                Err(e) => skip(NOT_A_FAILURE_RECORD, e.to_string()),
                Ok(failure) => Decision::Redrive {
                    key: format!(
                        "{}/{}/{}-{}",
                        failure.info.stream_arn,
                        failure.info.shard_id,
                        failure.info.start_sequence_number,
                        failure.info.end_sequence_number
                    ),
                    work: Work::Replay(failure.info),
                },
            },
        }
    }

    async fn attempt_one(&self, work: Work) -> Result<Attempt, CliError> {
        let lambda = &self.ctx.clients.lambda;
        match work {
            Work::Invoke(event) => {
                let synchronous = !matches!(self.kind, Kind::AsyncFailure(Invocation::Async));
                Ok(
                    match invoke(lambda, self.function_name, &event, synchronous).await {
                        Ok(Invoked::Returned(answer)) => Attempt::Done {
                            detail: describe_answer(self.function, &answer),
                            records: 0,
                        },
                        Ok(Invoked::Queued) => Attempt::Done {
                            detail: "handed to Lambda (asynchronous invoke)".into(),
                            records: 0,
                        },
                        Ok(Invoked::Failed {
                            error_type,
                            message,
                        }) => Attempt::Failed(format!("{error_type}: {}", snippet(&message, 200))),
                        Err(CliError::NotFound(m)) => return Err(CliError::NotFound(m)),
                        Err(other) => Attempt::Failed(other.to_string()),
                    },
                )
            }
            Work::Replay(info) => match read_range(&self.ctx.clients.streams, &info).await {
                Err(CliError::NotFound(m)) => Err(CliError::NotFound(m)),
                Err(other) => Ok(Attempt::Failed(format!("range not read: {other}"))),
                Ok(Range::Gone(why)) => Ok(Attempt::Skip {
                    reason: GONE_FROM_STREAM,
                    detail: why,
                }),
                Ok(Range::Records(records)) => {
                    let n = records.len();
                    let event = serde_json::json!({ "Records": records });
                    self.replay(event, n, &info).await
                }
            },
            Work::Move(..) => unreachable!("moves are sent in batches"),
        }
    }

    async fn replay(
        &self,
        event: Value,
        n: usize,
        info: &crate::parked::BatchInfo,
    ) -> Result<Attempt, CliError> {
        let lambda = &self.ctx.clients.lambda;
        Ok(
            match invoke(lambda, self.function_name, &event, true).await {
                Ok(invoked @ Invoked::Returned(_)) => match invoked.batch_item_failure() {
                    None => Attempt::Done {
                        detail: format!(
                            "{n} records of {} ({}..{}) replayed",
                            info.shard_id, info.start_sequence_number, info.end_sequence_number
                        ),
                        records: n,
                    },
                    Some(seq) => Attempt::Failed(format!("records from {seq} on failed again")),
                },
                Ok(Invoked::Failed {
                    error_type,
                    message,
                }) => Attempt::Failed(format!("{error_type}: {}", snippet(&message, 200))),
                Ok(Invoked::Queued) => unreachable!("invoked synchronously"),
                Err(CliError::NotFound(m)) => return Err(CliError::NotFound(m)),
                Err(other) => Attempt::Failed(other.to_string()),
            },
        )
    }

    /// Redrives one batch of work items; the attempts in the same order.
    async fn attempt(&self, works: Vec<Work>) -> Result<Vec<Attempt>, CliError> {
        if let Kind::DeadLetter(source) = &self.kind {
            let messages: Vec<OutgoingMessage> = works
                .iter()
                .enumerate()
                .map(|(i, work)| match work {
                    Work::Move(body, attributes) => {
                        let mut message = OutgoingMessage::new(i.to_string(), body.clone());
                        message.attributes = attributes.clone();
                        message
                    }
                    _ => unreachable!("a DLQ's work is moves"),
                })
                .collect();
            let writer = SendBatchWriter::new(self.ctx.clients.sqs.clone(), Backoff::default());
            let sent = writer
                .send_all(source, messages, &Deadline::after(Duration::from_secs(60)))
                .await;
            let mut attempts: Vec<Attempt> = (0..works.len())
                .map(|_| Attempt::Done {
                    detail: format!("moved to {source}"),
                    records: 0,
                })
                .collect();
            for failed in sent.failed {
                let i: usize = failed.id.parse().expect("ids are positions");
                attempts[i] =
                    Attempt::Failed(format!("not moved: {}: {}", failed.code, failed.message));
            }
            return Ok(attempts);
        }
        let results: Vec<(usize, Result<Attempt, CliError>)> =
            futures::stream::iter(works.into_iter().enumerate())
                .map(|(i, work)| async move { (i, self.attempt_one(work).await) })
                .buffer_unordered(self.options.concurrency.max(1))
                .collect()
                .await;
        let mut ordered: Vec<Option<Attempt>> = (0..results.len()).map(|_| None).collect();
        for (i, result) in results {
            ordered[i] = Some(result?);
        }
        Ok(ordered
            .into_iter()
            .map(|a| a.expect("every item attempted"))
            .collect())
    }

    async fn run(&self) -> Result<PathReport, CliError> {
        let sqs = &self.ctx.clients.sqs;
        let mut report = PathReport::new(
            self.function,
            self.label,
            self.url.to_owned(),
            self.action(),
            self.options.dry_run,
        );
        let (waiting, _) = crate::queue::depth(sqs, self.url).await?;
        let bar = progress::bar(
            self.options.max.map_or(waiting, |m| waiting.min(m as u64)),
            &format!("{} {}", self.function, self.label),
            self.ctx.progress,
        );
        let mut run = QueueRun::new(sqs, self.url, self.visibility);
        let drained = self.drain(&mut run, &mut report, &bar).await;
        // What was kept is given back even when the run stopped on an error.
        let given_back = run.finish().await;
        bar.finish_and_clear();
        drained?;
        given_back?;
        Ok(report)
    }

    async fn drain(
        &self,
        run: &mut QueueRun<'_>,
        report: &mut PathReport,
        bar: &indicatif::ProgressBar,
    ) -> Result<(), CliError> {
        // Event (or range) -> whether its redrive succeeded, for copies met later in the run.
        let mut done: HashMap<String, bool> = HashMap::new();
        let batch_size = self.options.concurrency.clamp(1, 10);
        loop {
            let room = self.options.max.map_or(usize::MAX, |m| m - report.examined);
            let batch = run.next(room.min(batch_size)).await?;
            if batch.is_empty() {
                break;
            }
            report.examined += batch.len();
            let mut work: Vec<(Held, String, Work)> = Vec::new();
            let mut copies: Vec<(Held, String)> = Vec::new();
            for held in batch {
                match self.decide(&held) {
                    Decision::Skip { reason, detail } => {
                        report.skip(&held.message_id, reason, detail);
                        run.keep(held.receipt);
                    }
                    Decision::Redrive { key, work: w } => {
                        if done.contains_key(&key) || work.iter().any(|(_, k, _)| *k == key) {
                            copies.push((held, key));
                        } else {
                            work.push((held, key, w));
                        }
                    }
                }
            }
            let mut delete = Vec::new();
            if self.options.dry_run {
                for (held, key, w) in work {
                    let detail = match &w {
                        Work::Invoke(_) => "would invoke the function with it".to_owned(),
                        Work::Move(..) => "would move it back".to_owned(),
                        Work::Replay(info) => format!(
                            "would replay {} ({}..{})",
                            info.shard_id, info.start_sequence_number, info.end_sequence_number
                        ),
                    };
                    report.redriven(&held.message_id, detail);
                    done.insert(key, true);
                    run.keep(held.receipt);
                }
            } else {
                let (helds, rest): (Vec<(Held, String)>, Vec<Work>) =
                    work.into_iter().map(|(h, k, w)| ((h, k), w)).unzip();
                let attempts = self.attempt(rest).await?;
                for ((held, key), attempt) in helds.into_iter().zip(attempts) {
                    match attempt {
                        Attempt::Done { detail, records } => {
                            if records > 0 || matches!(self.kind, Kind::StreamFailure) {
                                report.add_records(records);
                            }
                            report.redriven(&held.message_id, detail);
                            done.insert(key, true);
                            delete.push(held.receipt);
                        }
                        Attempt::Failed(detail) => {
                            report.failed(&held.message_id, detail);
                            done.insert(key, false);
                            run.keep(held.receipt);
                        }
                        Attempt::Skip { reason, detail } => {
                            report.skip(&held.message_id, reason, detail);
                            run.keep(held.receipt);
                        }
                    }
                }
            }
            for (held, key) in copies {
                if done.get(&key) == Some(&true) {
                    report.skip(&held.message_id, DUPLICATE, String::new());
                    if self.options.dry_run {
                        run.keep(held.receipt);
                    } else {
                        delete.push(held.receipt);
                    }
                } else {
                    report.skip(&held.message_id, DUPLICATE_OF_FAILED, String::new());
                    run.keep(held.receipt);
                }
            }
            run.delete(&delete).await?;
            bar.set_position(report.examined as u64);
            bar.set_message(format!(
                "redriven {} failed {} skipped {}",
                report.redriven, report.failed_again, report.skipped
            ));
        }
        Ok(())
    }
}

struct KeptBatches<'a> {
    ctx: &'a Context,
    function: Function,
    function_name: &'a str,
    bucket: &'a str,
    announcements: &'a str,
    stream_arn: Option<&'a str>,
    options: Options,
}

impl KeptBatches<'_> {
    async fn list(&self) -> Result<Vec<String>, CliError> {
        let mut keys = Vec::new();
        let mut pages = self
            .ctx
            .clients
            .s3
            .list_objects_v2()
            .bucket(self.bucket)
            .prefix(KEPT_PREFIX)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page =
                page.map_err(|e| sdk(format!("listing s3://{}/{KEPT_PREFIX}", self.bucket), e))?;
            keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_owned)),
            );
        }
        keys.sort();
        Ok(keys)
    }

    /// Redrives one kept batch.
    async fn one(&self, key: &str) -> Result<Attempt, CliError> {
        let s3 = &self.ctx.clients.s3;
        let bytes = match get_object_bytes(
            s3,
            self.bucket,
            key,
            &Deadline::after(Duration::from_secs(120)),
        )
        .await
        {
            Ok(bytes) => bytes,
            Err(S3Error::NotFound { .. }) => {
                return Ok(Attempt::Skip {
                    reason: ALREADY_GONE,
                    detail: String::new(),
                });
            }
            Err(err) => return Ok(Attempt::Failed(format!("not read: {err}"))),
        };
        let batch = match parse_kept_batch(&bytes) {
            Ok(batch) => batch,
            Err(e) => {
                return Ok(Attempt::Skip {
                    reason: UNREADABLE_BATCH,
                    detail: e.to_string(),
                });
            }
        };
        if let Some(ours) = self.stream_arn
            && batch.info.stream_arn != ours
        {
            return Ok(Attempt::Skip {
                reason: OTHER_STREAM,
                detail: batch.info.stream_arn.clone(),
            });
        }
        let records = match kinesis_records_from_value(&batch.payload) {
            Ok(records) if !records.is_empty() => records.len(),
            Ok(_) => {
                return Ok(Attempt::Skip {
                    reason: UNREADABLE_BATCH,
                    detail: "no records".into(),
                });
            }
            Err(e) => {
                return Ok(Attempt::Skip {
                    reason: UNREADABLE_BATCH,
                    detail: snippet(&e.to_string(), 160),
                });
            }
        };
        let range = format!(
            "{records} records of {} ({}..{})",
            batch.info.shard_id, batch.info.start_sequence_number, batch.info.end_sequence_number
        );
        if self.options.dry_run {
            return Ok(Attempt::Done {
                detail: format!("would re-archive {range}"),
                records,
            });
        }
        let invoked = match invoke(
            &self.ctx.clients.lambda,
            self.function_name,
            &batch.payload,
            true,
        )
        .await
        {
            Ok(invoked) => invoked,
            Err(CliError::NotFound(m)) => return Err(CliError::NotFound(m)),
            Err(other) => return Ok(Attempt::Failed(other.to_string())),
        };
        match invoked {
            Invoked::Failed {
                error_type,
                message,
            } => Ok(Attempt::Failed(format!(
                "{error_type}: {}",
                snippet(&message, 200)
            ))),
            returned => match returned.batch_item_failure() {
                Some(seq) => Ok(Attempt::Failed(format!(
                    "records from {seq} on failed again"
                ))),
                None => match s3.delete_object().bucket(self.bucket).key(key).send().await {
                    Ok(_) => Ok(Attempt::Done {
                        detail: format!("re-archived {range}; kept object deleted"),
                        records,
                    }),
                    // Archived again, but kept: the next redrive rewrites the same objects.
                    Err(e) => Ok(Attempt::Failed(format!(
                        "re-archived {range}, but the kept object was not deleted: {}",
                        sdk("deleting it", e)
                    ))),
                },
            },
        }
    }

    async fn run(&self) -> Result<PathReport, CliError> {
        let mut report = PathReport::new(
            self.function,
            "kept batches",
            format!("s3://{}/{KEPT_PREFIX}", self.bucket),
            format!(
                "invoke {} with each kept batch's records (RequestResponse), then delete the kept object and its announcement",
                self.function_name
            ),
            self.options.dry_run,
        );
        let mut keys = self.list().await?;
        if let Some(max) = self.options.max {
            keys.truncate(max);
        }
        let bar = progress::bar(
            keys.len() as u64,
            &format!("{} kept batches", self.function),
            self.ctx.progress,
        );
        let attempts: Vec<(String, Result<Attempt, CliError>)> = futures::stream::iter(keys.iter())
            .map(|key| {
                let bar = &bar;
                async move {
                    let attempt = self.one(key).await;
                    bar.inc(1);
                    (key.clone(), attempt)
                }
            })
            .buffer_unordered(self.options.concurrency.max(1))
            .collect()
            .await;
        bar.finish_and_clear();
        let mut attempts = attempts;
        attempts.sort_by(|a, b| a.0.cmp(&b.0));
        for (key, attempt) in attempts {
            report.examined += 1;
            match attempt? {
                Attempt::Done { detail, records } => {
                    report.add_records(records);
                    report.redriven(&key, detail);
                }
                Attempt::Failed(detail) => report.failed(&key, detail),
                Attempt::Skip { reason, detail } => report.skip(&key, reason, detail),
            }
        }
        if !self.options.dry_run {
            report.announcements_removed = Some(self.clear_announcements().await?);
        }
        Ok(report)
    }

    /// Removes from the announcement queue every message naming only objects no longer
    /// kept (redriven now or before) and S3's test events; the others stay.
    async fn clear_announcements(&self) -> Result<usize, CliError> {
        let s3 = &self.ctx.clients.s3;
        let mut run = QueueRun::new(&self.ctx.clients.sqs, self.announcements, 60);
        let mut removed = 0;
        loop {
            let batch = run.next(10).await?;
            if batch.is_empty() {
                break;
            }
            let mut delete = Vec::new();
            for held in batch {
                let stale = match s3_notices_from_str(&held.body) {
                    Err(_) => false,
                    Ok(notices) => {
                        let mut all_gone = true;
                        for notice in &notices {
                            if let S3Notice::Object(object) = notice {
                                let gone = match s3
                                    .head_object()
                                    .bucket(&object.bucket)
                                    .key(&object.key)
                                    .send()
                                    .await
                                {
                                    Ok(_) => false,
                                    Err(err) => {
                                        err.as_service_error().is_some_and(|e| e.is_not_found())
                                            || err
                                                .raw_response()
                                                .is_some_and(|r| r.status().as_u16() == 404)
                                    }
                                };
                                all_gone &= gone;
                            }
                        }
                        all_gone
                    }
                };
                if stale {
                    delete.push(held.receipt);
                } else {
                    run.keep(held.receipt);
                }
            }
            removed += delete.len();
            run.delete(&delete).await?;
        }
        run.finish().await?;
        Ok(removed)
    }
}

/// Every function's redrive of one command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub stack: String,
    pub dry_run: bool,
    pub redriven: usize,
    pub failed_again: usize,
    pub skipped: usize,
    pub functions: Vec<Report>,
}

impl Summary {
    pub fn of(stack: &str, dry_run: bool, functions: Vec<Report>) -> Summary {
        let paths = || functions.iter().flat_map(|f| f.paths.iter());
        Summary {
            stack: stack.to_owned(),
            dry_run,
            redriven: paths().map(|p| p.redriven).sum(),
            failed_again: paths().map(|p| p.failed_again).sum(),
            skipped: paths().map(|p| p.skipped).sum(),
            functions,
        }
    }
}

/// Items listed per path in the terminal summary (all of them with `--json`).
const ITEMS_SHOWN: usize = 30;

/// One function's redrive for a terminal.
pub fn render(report: &Report) -> String {
    let mut out = format!(
        "redrive {} (stack {}){}\n",
        report.function,
        report.stack,
        if report.dry_run {
            ", dry run: nothing changed"
        } else {
            ""
        }
    );
    if let Some(note) = &report.note {
        out.push_str(&format!("  {note}\n"));
    }
    for path in &report.paths {
        let verb = if report.dry_run {
            "would redrive"
        } else {
            "redriven"
        };
        out.push_str(&format!(
            "  {} {}\n    {}\n",
            path.path, path.store, path.action
        ));
        let mut counts = format!(
            "    found {}: {verb} {}, failed again {}, skipped {}",
            path.examined, path.redriven, path.failed_again, path.skipped
        );
        if let Some(records) = path.records {
            counts.push_str(&format!("; {records} records"));
        }
        if let Some(removed) = path.announcements_removed {
            counts.push_str(&format!("; {removed} announcements removed"));
        }
        out.push_str(&counts);
        out.push('\n');
        for (reason, n) in &path.skipped_by_reason {
            out.push_str(&format!("      skipped {n}: {reason}\n"));
        }
        for item in path.items.iter().take(ITEMS_SHOWN) {
            let outcome = match item.outcome {
                Outcome::Redriven => "redriven",
                Outcome::WouldRedrive => "would",
                Outcome::FailedAgain => "FAILED",
                Outcome::Skipped => "skipped",
            };
            out.push_str(&format!(
                "      {outcome:<8} {}  {}\n",
                snippet(&item.id, 60),
                snippet(&item.detail, 140)
            ));
        }
        if path.items.len() > ITEMS_SHOWN {
            out.push_str(&format!(
                "      … {} more (--json lists every one)\n",
                path.items.len() - ITEMS_SHOWN
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests;
