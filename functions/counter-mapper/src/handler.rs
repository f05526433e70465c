//! The mapper's decisions: which notifications are counter files, and how each
//! counter is recorded in the instance table without losing updates.
//!
//! Instance table item (hash `Counter`, range `Date` = `<YYYY-MM-DD>#<shard>`, see
//! [`sluice_counters`]): an instance's entries live in the shard item
//! [`sluice_counters::shard_of`] names, so no item holds more than about a 32nd of a
//! counter's instances for a day.
//!
//! ```text
//! { Counter: S, Date: S, Version: N, Instances: M { <instance-id>: M { Value: N, Seq: S } } }
//! ```
//!
//! `Seq` is the [`OrderingStamp`] of the newest upload seen for that instance. One
//! counter is recorded with one conditional `UpdateItem`:
//!
//! ```text
//! SET Instances.<id> = {Value, Seq} ADD Version 1
//! IF  attribute_not_exists(Instances.<id>)
//!  OR Instances.<id>.Seq < :seq
//!  OR (Instances.<id>.Seq = :seq AND Instances.<id>.Value <> :val)
//! ```
//!
//! - An upload older than the stored stamp never overwrites it (lost-update guard).
//! - A *newer* upload is always written, even with an unchanged value: the stored
//!   stamp always advances to the newest upload seen. Otherwise an older upload with
//!   a different value, delivered after it, would pass the ordering check against the
//!   stale stamp and win (A-B-A: `5`, `7`, `5` delivered in the order 1, 3, 2 ended
//!   at `7`). Such a write changes only `Seq` (and `Version`); its stream record gives
//!   the aggregator an unchanged subtotal, which it does not write.
//! - An equal stamp is, on S3, the same event (a redelivery, same content): with the
//!   same value it fails the condition and writes nothing (idempotent, no stream
//!   record). With a different value it is written: S3 never does that, but
//!   emulators that give every event the same sequencer (LocalStack) do, and there
//!   the newer upload must still count.
//! - `Version` counts the item's writes: a monotonic version of the whole item that
//!   its stream images carry, so counter-aggregator can tell an older image (a
//!   replayed or redriven record) from a newer one.
//!
//! A document path cannot be set under a map that does not exist: on a new item
//! (or an item without `Instances`) the update fails with a `ValidationException`
//! whose message says the document path is invalid. Only that error creates the
//! map with the entry in it (`SET Instances = {<id>: …} ADD Version 1 IF
//! attribute_not_exists(Instances)`); if another writer created it first, that
//! condition fails and the entry update is sent once more, now against an existing
//! map (the map is never removed). Any other `ValidationException` (an item over
//! DynamoDB's 400 KB, a bad name) is that error, reported with its message: the
//! counter is not recorded and the file fails for the on-failure destination. The
//! common case (item and map exist) is one request.

use std::collections::HashMap;

use aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;
use aws_sdk_dynamodb::types::AttributeValue;
use futures::stream::{self, StreamExt};
use serde::Serialize;
use serde_json::Value;
use sluice_aws::{
    Backoff, Deadline, DynamoError, S3Error, UpdateOutcome, get_object_version_bytes,
    put_object_bytes, update_conditional,
};
use sluice_counters::ShardKey;
use sluice_events::{EnvelopeError, S3Notice, S3ObjectEvent, s3_notices_from_value};
use sluice_lambda::config::Env;
use sluice_lambda::metrics::Metrics;
use sluice_lambda::{Function, FunctionError, Invocation};

use crate::config::MapperConfig;
use crate::counter_file::{CounterValue, MalformedLine, parse_counter_file};
use crate::counter_key::CounterFileKey;
use crate::stamp::{OrderingStamp, StampError};

/// Attribute names of the instance table (shared with counter-aggregator).
pub use sluice_counters::instance_attr as attr;

pub const SET_ENTRY: &str = "SET #inst.#id = :entry ADD #ver :one";
/// Newer always wins (the stamp advances even if the value is unchanged); an equal
/// stamp only with a different value (see the module documentation).
pub const SET_ENTRY_IF_NEWER: &str = "attribute_not_exists(#inst.#id) OR #inst.#id.#seq < :seq \
     OR (#inst.#id.#seq = :seq AND #inst.#id.#val <> :val)";
pub const CREATE_MAP: &str = "SET #inst = :map ADD #ver :one";
pub const CREATE_MAP_IF_ABSENT: &str = "attribute_not_exists(#inst)";

/// What happened to one counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// The entry was written (a newer upload: its value and stamp, or only the
    /// advanced stamp if the value is unchanged): the stream carries a record.
    Written,
    /// The stored entry is from this upload already, or from a newer one.
    NotNewer,
}

impl From<UpdateOutcome> for Recorded {
    fn from(outcome: UpdateOutcome) -> Self {
        match outcome {
            UpdateOutcome::Applied { .. } => Recorded::Written,
            UpdateOutcome::ConditionFailed => Recorded::NotNewer,
        }
    }
}

/// What one invocation did (the function's response, and its log line).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub files: usize,
    pub skipped: usize,
    pub counters: usize,
    pub written: usize,
    pub not_newer: usize,
    pub malformed_lines: usize,
    /// Error objects written (one per file with lines or a file that did not count).
    pub error_records: usize,
}

/// Longest line text kept in an error record, in bytes.
pub const MAX_KEPT_LINE_BYTES: usize = 64 * 1024;

/// One line of an error object: what did not count, where it was and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErrorRecord {
    /// `s3://<bucket>/<key>`
    pub source: String,
    pub version_id: Option<String>,
    pub sequencer: Option<String>,
    /// 1-based line number; none when the whole file did not count.
    pub line: Option<usize>,
    /// The line as uploaded (invalid UTF-8 replaced), at most [`MAX_KEPT_LINE_BYTES`].
    pub text: Option<String>,
    pub reason: String,
    /// A stable short name (`bad_value`, `missing_object`, …).
    pub reason_code: &'static str,
}

/// `<error prefix><file key>.<stamp>.errors.jsonl`: one object per upload (the
/// stamp tells the versions of a file apart), the same key and bytes for a
/// redelivery.
pub fn error_key(error_prefix: &str, key: &str, stamp: &OrderingStamp) -> String {
    format!("{error_prefix}{key}.{}.errors.jsonl", stamp.as_str())
}

fn line_records(
    object: &S3ObjectEvent,
    bytes: &[u8],
    malformed: &[MalformedLine],
) -> Vec<ErrorRecord> {
    let lines: Vec<&[u8]> = bytes.split(|b| *b == b'\n').collect();
    malformed
        .iter()
        .map(|bad| {
            let raw = lines.get(bad.line - 1).copied().unwrap_or_default();
            let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
            let raw = &raw[..raw.len().min(MAX_KEPT_LINE_BYTES)];
            ErrorRecord {
                line: Some(bad.line),
                text: Some(String::from_utf8_lossy(raw).into_owned()),
                reason: bad.problem.to_string(),
                reason_code: bad.problem.reason(),
                ..file_record(object, String::new(), "")
            }
        })
        .collect()
}

fn file_record(object: &S3ObjectEvent, reason: String, reason_code: &'static str) -> ErrorRecord {
    ErrorRecord {
        source: format!("s3://{}/{}", object.bucket, object.key),
        version_id: object.version_id.clone(),
        sequencer: object.sequencer.clone(),
        line: None,
        text: None,
        reason,
        reason_code,
    }
}

/// One counter that was not recorded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpdateFailure {
    #[error("counter {counter:?}: {source}")]
    Dynamo {
        counter: String,
        #[source]
        source: DynamoError,
    },
    #[error("counter {counter:?}: not attempted, the invocation's time ran out")]
    OutOfTime { counter: String },
}

impl UpdateFailure {
    fn is_transient(&self) -> bool {
        match self {
            UpdateFailure::Dynamo { source, .. } => source.is_transient(),
            UpdateFailure::OutOfTime { .. } => true,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MapperError {
    #[error("the event carries no readable S3 notification: {0}")]
    Envelope(#[from] EnvelopeError),
    #[error("s3://{bucket}/{key}: {source}")]
    Unordered {
        bucket: String,
        key: String,
        #[source]
        source: StampError,
    },
    #[error(
        "s3://{bucket}/{key}: not the counters bucket ({expected}); a forged or misrouted notification, nothing recorded"
    )]
    ForeignBucket {
        bucket: String,
        key: String,
        expected: String,
    },
    #[error(transparent)]
    Read(S3Error),
    #[error("s3://{bucket}/{key}: its error record could not be kept: {source}")]
    KeepErrors {
        bucket: String,
        key: String,
        #[source]
        source: S3Error,
    },
    #[error(
        "s3://{bucket}/{key}: {failed} of {total} counter updates failed (the others are recorded; redelivery is safe); first: {first}"
    )]
    Updates {
        bucket: String,
        key: String,
        failed: usize,
        total: usize,
        first: UpdateFailure,
        retryable: bool,
    },
}

impl MapperError {
    /// The one place failures are classified: could a redelivery succeed?
    /// (Lambda retries an asynchronous invocation either way; this decides the
    /// reported error type and the log level.)
    pub fn is_retryable(&self) -> bool {
        match self {
            MapperError::Envelope(_)
            | MapperError::Unordered { .. }
            | MapperError::ForeignBucket { .. } => false,
            MapperError::Read(err) | MapperError::KeepErrors { source: err, .. } => {
                err.is_transient()
            }
            MapperError::Updates { retryable, .. } => *retryable,
        }
    }

    /// What failed: the `<Kind>` of the `errorType` Lambda reports (`Retryable.<Kind>` or
    /// `Permanent.<Kind>` by [`is_retryable`](Self::is_retryable)).
    pub fn kind(&self) -> &'static str {
        match self {
            MapperError::Envelope(_) => "InvalidEvent",
            MapperError::Unordered { .. } => "UnorderedUpload",
            MapperError::ForeignBucket { .. } => "ForeignBucket",
            MapperError::Read(_) => "Read",
            MapperError::KeepErrors { .. } => "Keep",
            MapperError::Updates { .. } => "Update",
        }
    }
}

impl From<&MapperError> for FunctionError {
    fn from(err: &MapperError) -> Self {
        FunctionError::classed(err.is_retryable(), err.kind(), err.to_string())
    }
}

/// The Lambda function: every counter file an event names, or the error Lambda reports.
impl Function for Mapper {
    type Event = Value;
    type Response = Summary;
    type InitError = sluice_lambda::config::ConfigError;

    fn answer_margin(&self) -> std::time::Duration {
        self.config.deadline_margin
    }

    /// Reads and checks the configuration and builds the S3 and DynamoDB clients.
    async fn cold_start() -> Result<Self, Self::InitError> {
        let config = MapperConfig::from_env(&Env::from_process())?;
        let sdk = sluice_aws::clients::load_sdk_config().await;
        Ok(Mapper::new(
            sluice_aws::clients::s3(&sdk),
            sluice_aws::clients::dynamodb(&sdk),
            config,
        ))
    }

    async fn handle(
        &self,
        event: Value,
        invocation: &mut Invocation,
    ) -> Result<Summary, FunctionError> {
        let result = self
            .handle(&event, &invocation.deadline, &mut invocation.metrics)
            .await;
        result.map_err(|err| {
            let failure = FunctionError::from(&err);
            if failure.is_retryable() {
                tracing::warn!(error = %err, error_type = %failure.error_type, "invocation failed; Lambda will retry it");
            } else {
                tracing::error!(error = %err, error_type = %failure.error_type, "invocation failed permanently; it will end in the on-failure destination");
            }
            failure
        })
    }
}

pub struct Mapper {
    s3: aws_sdk_s3::Client,
    dynamodb: aws_sdk_dynamodb::Client,
    config: MapperConfig,
    backoff: Backoff,
}

impl Mapper {
    pub fn new(
        s3: aws_sdk_s3::Client,
        dynamodb: aws_sdk_dynamodb::Client,
        config: MapperConfig,
    ) -> Self {
        Mapper {
            s3,
            dynamodb,
            config,
            backoff: Backoff::default(),
        }
    }

    /// Every S3 notification in `event` (direct, SNS, SQS, EventBridge). All files
    /// are processed; the first failure is returned after the others had their turn.
    pub async fn handle(
        &self,
        event: &Value,
        deadline: &Deadline,
        metrics: &mut Metrics,
    ) -> Result<Summary, MapperError> {
        let notices = s3_notices_from_value(event)?;
        let mut summary = Summary::default();
        let mut first_error = None;
        for notice in notices {
            let S3Notice::Object(object) = notice else {
                tracing::info!("s3:TestEvent skipped");
                metrics.count("SkippedTestEvents", 1);
                continue;
            };
            if let Err(err) = self
                .handle_object(&object, deadline, metrics, &mut summary)
                .await
            {
                tracing::warn!(bucket = %object.bucket, key = %object.key, error = %err, "counter file not fully recorded");
                first_error.get_or_insert(err);
            }
        }
        tracing::info!(?summary, "done");
        match first_error {
            Some(err) => Err(err),
            None => Ok(summary),
        }
    }

    async fn handle_object(
        &self,
        object: &S3ObjectEvent,
        deadline: &Deadline,
        metrics: &mut Metrics,
        summary: &mut Summary,
    ) -> Result<(), MapperError> {
        if object.bucket != self.config.counters_bucket {
            metrics.count("ForeignBucket", 1);
            return Err(MapperError::ForeignBucket {
                bucket: object.bucket.clone(),
                key: object.key.clone(),
                expected: self.config.counters_bucket.clone(),
            });
        }
        if !object.is_object_created() {
            tracing::info!(key = %object.key, event = %object.event_name, "not an ObjectCreated event; skipped");
            metrics.count("SkippedEvents", 1);
            summary.skipped += 1;
            return Ok(());
        }
        if object.key.starts_with(&self.config.error_prefix) {
            // only reachable with an empty COUNTER_PREFIX: the mapper's own error records
            metrics.count("SkippedKeys.error_record", 1);
            summary.skipped += 1;
            return Ok(());
        }
        let file_key = match CounterFileKey::parse(&object.key, &self.config.counter_prefix) {
            Ok(file_key) => file_key,
            Err(mismatch) => {
                tracing::info!(key = %object.key, reason = %mismatch, "not a counter file; skipped");
                metrics.count(&format!("SkippedKeys.{}", mismatch.reason()), 1);
                summary.skipped += 1;
                return Ok(());
            }
        };
        let stamp =
            OrderingStamp::from_sequencer(object.sequencer.as_deref()).map_err(|source| {
                MapperError::Unordered {
                    bucket: object.bucket.clone(),
                    key: object.key.clone(),
                    source,
                }
            })?;
        let bytes = match get_object_version_bytes(
            &self.s3,
            &object.bucket,
            &object.key,
            object.version_id.as_deref(),
            deadline,
        )
        .await
        {
            Ok(bytes) => bytes,
            Err(err @ S3Error::NotFound { .. }) => {
                // Deleted since the event (or its version expired): nothing to record,
                // and a redelivery would not find it either. Kept as an error record.
                tracing::warn!(key = %object.key, version = ?object.version_id, "counter file no longer exists; kept as an error record");
                metrics.count("MissingObjects", 1);
                summary.skipped += 1;
                let record = file_record(
                    object,
                    format!("the uploaded file could not be read, nothing of it counted: {err}"),
                    "missing_object",
                );
                self.keep_errors(object, &stamp, &[record], deadline)
                    .await?;
                summary.error_records += 1;
                metrics.count("ErrorRecords", 1);
                return Ok(());
            }
            Err(err) => return Err(MapperError::Read(err)),
        };
        summary.files += 1;
        metrics.count("Files", 1);

        let file = parse_counter_file(&bytes);
        for bad in &file.malformed {
            tracing::warn!(key = %object.key, line = bad.line, reason = %bad.problem, text = %bad.snippet, "counter line skipped");
            metrics.count(&format!("MalformedLines.{}", bad.problem.reason()), 1);
        }
        metrics.count("MalformedLines", file.malformed.len() as u64);
        summary.malformed_lines += file.malformed.len();

        let records = line_records(object, &bytes, &file.malformed);
        drop(bytes);

        let total = file.counters.len();
        summary.counters += total;
        metrics.count("Counters", total as u64);
        let results = self
            .record_all(&file_key, &stamp, file.counters, deadline)
            .await;
        let mut failures = Vec::new();
        let (mut written, mut not_newer) = (0, 0);
        for result in results {
            match result {
                Ok(Recorded::Written) => written += 1,
                Ok(Recorded::NotNewer) => not_newer += 1,
                Err(failure) => failures.push(failure),
            }
        }
        summary.written += written;
        summary.not_newer += not_newer;
        metrics.count("Written", written as u64);
        metrics.count("NotNewer", not_newer as u64);
        tracing::info!(key = %object.key, date = %file_key.date, instance = %file_key.instance,
            stamp = stamp.as_str(), written, not_newer, failed = failures.len(), "counter file recorded");
        // The lines that did not count are kept whatever happened to the others (the
        // same key and bytes again on a redelivery).
        let kept = if records.is_empty() {
            Ok(())
        } else {
            let kept = self.keep_errors(object, &stamp, &records, deadline).await;
            if kept.is_ok() {
                summary.error_records += 1;
                metrics.count("ErrorRecords", 1);
            }
            kept
        };
        if failures.is_empty() {
            return kept;
        }
        metrics.count("FailedUpdates", failures.len() as u64);
        let retryable = failures.iter().any(UpdateFailure::is_transient);
        let failed = failures.len();
        Err(MapperError::Updates {
            bucket: object.bucket.clone(),
            key: object.key.clone(),
            failed,
            total,
            first: failures.swap_remove(0),
            retryable,
        })
    }

    /// Writes `records` as the upload's error object (JSON lines).
    async fn keep_errors(
        &self,
        object: &S3ObjectEvent,
        stamp: &OrderingStamp,
        records: &[ErrorRecord],
        deadline: &Deadline,
    ) -> Result<(), MapperError> {
        let mut body = Vec::new();
        for record in records {
            serde_json::to_writer(&mut body, record).expect("an error record serializes");
            body.push(b'\n');
        }
        let key = error_key(&self.config.error_prefix, &object.key, stamp);
        put_object_bytes(
            &self.s3,
            &object.bucket,
            &key,
            body,
            "application/x-ndjson",
            &[],
            deadline,
        )
        .await
        .map_err(|source| MapperError::KeepErrors {
            bucket: object.bucket.clone(),
            key: object.key.clone(),
            source,
        })?;
        tracing::info!(key = %object.key, error_key = %key, records = records.len(), "kept what did not count");
        Ok(())
    }

    /// Records every counter, at most `max_concurrent_updates` at a time; a counter
    /// whose turn comes after the deadline is not attempted.
    async fn record_all(
        &self,
        file_key: &CounterFileKey,
        stamp: &OrderingStamp,
        counters: Vec<CounterValue>,
        deadline: &Deadline,
    ) -> Vec<Result<Recorded, UpdateFailure>> {
        stream::iter(counters)
            .map(|cv| async move {
                if deadline.is_past() {
                    return Err(UpdateFailure::OutOfTime {
                        counter: cv.counter,
                    });
                }
                self.record(file_key, stamp, &cv, deadline)
                    .await
                    .map_err(|source| UpdateFailure::Dynamo {
                        counter: cv.counter.clone(),
                        source,
                    })
            })
            .buffer_unordered(self.config.max_concurrent_updates)
            .collect()
            .await
    }

    /// One counter: the entry update, falling back to creating the map.
    pub async fn record(
        &self,
        file_key: &CounterFileKey,
        stamp: &OrderingStamp,
        cv: &CounterValue,
        deadline: &Deadline,
    ) -> Result<Recorded, DynamoError> {
        let set_entry = || {
            update_conditional(
                self.set_entry_request(file_key, stamp, cv),
                &self.backoff,
                deadline,
            )
        };
        match set_entry().await {
            Ok(outcome) => Ok(outcome.into()),
            Err(err) if is_missing_map(&err) => {
                let created = update_conditional(
                    self.create_map_request(file_key, stamp, cv),
                    &self.backoff,
                    deadline,
                )
                .await?;
                match created {
                    UpdateOutcome::Applied { .. } => Ok(Recorded::Written),
                    // Another writer created the map in between: it exists now, and a
                    // failure of this second entry update is a real error.
                    UpdateOutcome::ConditionFailed => set_entry().await.map(Recorded::from),
                }
            }
            Err(err) => Err(err),
        }
    }

    fn item_update(&self, file_key: &CounterFileKey, cv: &CounterValue) -> UpdateItemFluentBuilder {
        self.dynamodb
            .update_item()
            .table_name(&self.config.instance_table)
            .key(attr::COUNTER, AttributeValue::S(cv.counter.clone()))
            .key(
                attr::DATE,
                AttributeValue::S(ShardKey::of(&file_key.date, &file_key.instance).to_string()),
            )
            .expression_attribute_names("#inst", attr::INSTANCES)
            .expression_attribute_names("#ver", attr::VERSION)
            .expression_attribute_values(":one", AttributeValue::N("1".to_owned()))
    }

    fn set_entry_request(
        &self,
        file_key: &CounterFileKey,
        stamp: &OrderingStamp,
        cv: &CounterValue,
    ) -> UpdateItemFluentBuilder {
        self.item_update(file_key, cv)
            .update_expression(SET_ENTRY)
            .condition_expression(SET_ENTRY_IF_NEWER)
            .expression_attribute_names("#id", &file_key.instance)
            .expression_attribute_names("#seq", attr::SEQ)
            .expression_attribute_names("#val", attr::VALUE)
            .expression_attribute_values(":entry", entry(stamp, cv.value))
            .expression_attribute_values(":seq", AttributeValue::S(stamp.as_str().to_owned()))
            .expression_attribute_values(":val", AttributeValue::N(cv.value.to_string()))
    }

    fn create_map_request(
        &self,
        file_key: &CounterFileKey,
        stamp: &OrderingStamp,
        cv: &CounterValue,
    ) -> UpdateItemFluentBuilder {
        let map = HashMap::from([(file_key.instance.clone(), entry(stamp, cv.value))]);
        self.item_update(file_key, cv)
            .update_expression(CREATE_MAP)
            .condition_expression(CREATE_MAP_IF_ABSENT)
            .expression_attribute_values(":map", AttributeValue::M(map))
    }
}

/// The one `ValidationException` that means "no `Instances` map to set a path in"
/// (DynamoDB: "The document path provided in the update expression is invalid for
/// update"). Every other one (an item over 400 KB, …) is an error of its own.
pub fn is_missing_map(err: &DynamoError) -> bool {
    matches!(err, DynamoError::Permanent { code, message, .. }
        if code == "ValidationException" && message.to_ascii_lowercase().contains("document path"))
}

/// `{Value: N, Seq: S}`, one instance's entry.
pub fn entry(stamp: &OrderingStamp, value: i64) -> AttributeValue {
    AttributeValue::M(HashMap::from([
        (attr::VALUE.to_owned(), AttributeValue::N(value.to_string())),
        (
            attr::SEQ.to_owned(),
            AttributeValue::S(stamp.as_str().to_owned()),
        ),
    ]))
}
