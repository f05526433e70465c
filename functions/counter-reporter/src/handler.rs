//! The reporter's decisions for one aggregate-table stream batch.
//!
//! 1. Every `INSERT`/`MODIFY` record's new image is read as an [`AggregateItem`];
//!    `REMOVE` records change nothing (a snapshot keeps a day's last totals).
//! 2. **Snapshots.** Per day in the batch: read `<prefix><day>/totals.jsonl` with its
//!    ETag (a day without one is seeded from the aggregate table's `ByDate` index),
//!    merge the batch's totals newest-version-wins ([`crate::snapshot`]) and, if that
//!    changed anything, write it back with `If-Match` (`If-None-Match: *` for a new
//!    day). A lost race re-reads and merges again. An older record can never put an
//!    older total back, and an unchanged day is not rewritten.
//! 3. **Alerts.** Per counter with limits, every image in sequence order goes through
//!    the alert state machine ([`crate::alert`]): a transition is recorded before it
//!    is published and marked after, so a redelivered batch or an unchanged total
//!    sends nothing, and a failed publish is sent by the redelivery.
//! 4. Failures are reported with stream semantics: the lowest failed sequence number
//!    is the checkpoint, and Lambda redelivers from there (snapshots and alert state
//!    are idempotent, so the redelivered records change nothing already done).

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};

use aws_sdk_dynamodb::types::AttributeValue;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use futures::stream::{self, StreamExt};
use sluice_aws::retry::{error_code, error_message, is_transient, retry_sdk_call};
use sluice_aws::{
    Backoff, Deadline, DynamoError, PutCondition, PutOutcome, S3Error, UpdateOutcome,
    get_object_bytes, get_object_with_etag, put_conditional, put_object_if, update_conditional,
};
use sluice_events::aws_lambda_events::dynamodb::Event;
use sluice_events::aws_lambda_events::streams::DynamoDbEventResponse;
use sluice_events::{ChangeKind, compare_sequence_numbers};
use sluice_lambda::batch::{
    StreamCheckpoint, StreamRecord, UncheckpointableRecord, dynamodb_answer,
    dynamodb_stream_records,
};
use sluice_lambda::config::Env;
use sluice_lambda::metrics::Metrics;
use sluice_lambda::{Function, FunctionError, Invocation};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::alert::{self, AlertItem, AlertMessage, Decision, attr};
use crate::config::{LimitsSource, ReporterConfig};
use crate::limits::{Limits, LimitsError, Range};
use crate::snapshot::{AggregateItem, Snapshot, TotalLine, is_key_date, snapshot_key};

/// Read-merge-write rounds for one day's snapshot before the record is retried later.
const SNAPSHOT_ROUNDS: usize = 5;
/// Read-decide-write rounds for one counter's alert state.
const ALERT_ROUNDS: usize = 5;

/// The SDK clients the reporter calls.
#[derive(Debug, Clone)]
pub struct Clients {
    pub s3: aws_sdk_s3::Client,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub sns: aws_sdk_sns::Client,
}

/// Why the cold start failed.
#[derive(Debug, thiserror::Error)]
pub enum ColdStartError {
    #[error("{0}")]
    Config(#[from] sluice_lambda::config::ConfigError),
    #[error("{0}")]
    Limits(#[from] LimitsError),
    #[error("reading the counter limits: {0}")]
    LimitsObject(#[from] S3Error),
}

/// The Lambda function: a partial batch response per stream batch.
impl Function for Reporter {
    type Event = Event;
    type Response = DynamoDbEventResponse;
    type InitError = ColdStartError;

    fn answer_margin(&self) -> std::time::Duration {
        self.config.deadline_margin
    }

    /// Reads and checks the configuration, builds the clients and loads the limits.
    async fn cold_start() -> Result<Self, ColdStartError> {
        let config = ReporterConfig::from_env(&Env::from_process())?;
        let sdk = sluice_aws::clients::load_sdk_config().await;
        let clients = Clients {
            s3: sluice_aws::clients::s3(&sdk),
            dynamodb: sluice_aws::clients::dynamodb(&sdk),
            sns: sluice_aws::clients::sns(&sdk),
        };
        Reporter::with_limits(clients, config).await
    }

    async fn handle(
        &self,
        event: Event,
        invocation: &mut Invocation,
    ) -> Result<DynamoDbEventResponse, FunctionError> {
        let outcome = self
            .handle(&event, &invocation.deadline, &mut invocation.metrics)
            .await;
        dynamodb_answer(outcome.map(|o| o.checkpoint))
    }
}

/// A failed call whose retries are used up: its code, message and whether a later
/// attempt (the redelivery) could succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{operation} failed: {code}: {message}")]
pub struct CallFailure {
    pub operation: &'static str,
    pub code: String,
    pub message: String,
    pub transient: bool,
}

impl CallFailure {
    fn from_sdk<E: ProvideErrorMetadata + std::error::Error + 'static>(
        operation: &'static str,
        err: &SdkError<E, HttpResponse>,
    ) -> Self {
        CallFailure {
            operation,
            code: error_code(err),
            message: error_message(err),
            transient: is_transient(err),
        }
    }
}

/// Why a record failed (logged; its sequence number goes into the checkpoint).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RecordFailure {
    #[error("record {sequence_number}: {message}")]
    Unreadable {
        sequence_number: String,
        message: String,
    },
    #[error(
        "record {sequence_number}: {kind:?} without a new image (the stream view must be NEW_IMAGE or NEW_AND_OLD_IMAGES)"
    )]
    NoNewImage {
        sequence_number: String,
        kind: ChangeKind,
    },
    #[error(
        "record {sequence_number}: date {date:?} is not YYYY-MM-DD; no snapshot key can hold it"
    )]
    BadDate {
        sequence_number: String,
        date: String,
    },
    #[error("record {sequence_number}: snapshot of {date}: {source}")]
    SnapshotS3 {
        sequence_number: String,
        date: String,
        #[source]
        source: S3Error,
    },
    #[error("record {sequence_number}: snapshot of {date}: {source}")]
    SnapshotCall {
        sequence_number: String,
        date: String,
        #[source]
        source: CallFailure,
    },
    #[error("record {sequence_number}: alert state of {counter} on {date}: {source}")]
    AlertState {
        sequence_number: String,
        counter: String,
        date: String,
        #[source]
        source: DynamoError,
    },
    #[error("record {sequence_number}: alert of {counter} on {date}: {source}")]
    AlertCall {
        sequence_number: String,
        counter: String,
        date: String,
        #[source]
        source: CallFailure,
    },
    #[error("record {sequence_number}: {what} kept changing under concurrent writers")]
    Contended {
        sequence_number: String,
        what: String,
    },
    #[error("record {sequence_number}: not done, the invocation's time ran out")]
    OutOfTime { sequence_number: String },
}

impl RecordFailure {
    pub fn sequence_number(&self) -> &str {
        match self {
            RecordFailure::Unreadable {
                sequence_number, ..
            }
            | RecordFailure::NoNewImage {
                sequence_number, ..
            }
            | RecordFailure::BadDate {
                sequence_number, ..
            }
            | RecordFailure::SnapshotS3 {
                sequence_number, ..
            }
            | RecordFailure::SnapshotCall {
                sequence_number, ..
            }
            | RecordFailure::AlertState {
                sequence_number, ..
            }
            | RecordFailure::AlertCall {
                sequence_number, ..
            }
            | RecordFailure::Contended {
                sequence_number, ..
            }
            | RecordFailure::OutOfTime { sequence_number } => sequence_number,
        }
    }

    /// Could a redelivery succeed? Permanent failures still go through the checkpoint
    /// (never dropped): after the mapping's bounded retries the batch's range goes to
    /// the on-failure destination.
    pub fn is_retryable(&self) -> bool {
        match self {
            RecordFailure::SnapshotS3 { source, .. } => source.is_transient(),
            RecordFailure::SnapshotCall { source, .. }
            | RecordFailure::AlertCall { source, .. } => source.transient,
            RecordFailure::AlertState { source, .. } => source.is_transient(),
            RecordFailure::Contended { .. } | RecordFailure::OutOfTime { .. } => true,
            RecordFailure::Unreadable { .. }
            | RecordFailure::NoNewImage { .. }
            | RecordFailure::BadDate { .. } => false,
        }
    }

    /// A stable, short name for metrics (`FailedRecords.<reason>`).
    pub fn reason(&self) -> &'static str {
        match self {
            RecordFailure::Unreadable { .. } => "unreadable",
            RecordFailure::NoNewImage { .. } => "no_new_image",
            RecordFailure::BadDate { .. } => "bad_date",
            RecordFailure::SnapshotS3 { .. } | RecordFailure::SnapshotCall { .. } => "snapshot",
            RecordFailure::AlertState { .. } | RecordFailure::AlertCall { .. } => "alert",
            RecordFailure::Contended { .. } => "contended",
            RecordFailure::OutOfTime { .. } => "out_of_time",
        }
    }
}

/// The outcome of one batch.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BatchOutcome {
    pub checkpoint: StreamCheckpoint,
    pub failures: Vec<RecordFailure>,
    pub snapshots_written: usize,
    pub snapshots_unchanged: usize,
    /// Lost `If-Match` races (re-read and merged again).
    pub snapshot_conflicts: usize,
    pub alerts_published: usize,
    /// Images not newer than the alert state (redelivered or replayed).
    pub stale_images: usize,
    pub removed: usize,
}

enum SnapshotResult {
    Written,
    Unchanged,
}

/// One record's image with its sequence number.
struct Change {
    sequence_number: String,
    item: AggregateItem,
}

#[derive(Default)]
struct AlertCounts {
    published: usize,
    stale: usize,
}

pub struct Reporter {
    clients: Clients,
    config: ReporterConfig,
    limits: Limits,
    backoff: Backoff,
}

impl Reporter {
    pub fn new(clients: Clients, config: ReporterConfig, limits: Limits) -> Self {
        Reporter {
            clients,
            config,
            limits,
            backoff: Backoff::default(),
        }
    }

    /// Reads the limits (inline or from S3) once; invalid limits fail the cold start.
    /// The reporter with its limits read (inline or from S3) and parsed.
    pub async fn with_limits(
        clients: Clients,
        config: ReporterConfig,
    ) -> Result<Reporter, ColdStartError> {
        let text = match &config.limits {
            LimitsSource::None => None,
            LimitsSource::Inline(text) => Some(text.clone()),
            LimitsSource::S3 { bucket, key } => {
                let deadline = Deadline::after(std::time::Duration::from_secs(5));
                let body = get_object_bytes(&clients.s3, bucket, key, &deadline).await?;
                Some(String::from_utf8_lossy(&body).into_owned())
            }
        };
        let limits = text
            .map(|t| Limits::parse(&t))
            .transpose()?
            .unwrap_or_default();
        tracing::info!(rules = limits.len(), "counter limits loaded");
        Ok(Reporter::new(clients, config, limits))
    }

    pub async fn handle(
        &self,
        event: &Event,
        deadline: &Deadline,
        metrics: &mut Metrics,
    ) -> Result<BatchOutcome, UncheckpointableRecord> {
        let mut outcome = BatchOutcome::default();
        metrics.count("Records", event.records.len() as u64);
        let mut by_key: BTreeMap<(String, String), Vec<Change>> = BTreeMap::new();
        for record in dynamodb_stream_records::<AggregateItem>(event)? {
            let change = match record {
                StreamRecord::Change(change) => change,
                StreamRecord::Unreadable {
                    sequence_number,
                    message,
                } => {
                    outcome.failures.push(RecordFailure::Unreadable {
                        sequence_number,
                        message,
                    });
                    continue;
                }
            };
            match (change.kind, change.new_image) {
                (ChangeKind::Remove, _) => outcome.removed += 1,
                (kind, None) => outcome.failures.push(RecordFailure::NoNewImage {
                    sequence_number: change.sequence_number,
                    kind,
                }),
                (_, Some(item)) if !is_key_date(&item.date) => {
                    outcome.failures.push(RecordFailure::BadDate {
                        sequence_number: change.sequence_number,
                        date: item.date,
                    })
                }
                (_, Some(item)) => by_key
                    .entry((item.counter.clone(), item.date.clone()))
                    .or_default()
                    .push(Change {
                        sequence_number: change.sequence_number,
                        item,
                    }),
            }
        }
        for changes in by_key.values_mut() {
            changes
                .sort_by(|a, b| compare_sequence_numbers(&a.sequence_number, &b.sequence_number));
        }

        // Snapshots: one per day, from the newest image of each counter.
        let mut days: BTreeMap<String, (String, Vec<TotalLine>)> = BTreeMap::new();
        for ((_, date), changes) in &by_key {
            let day = days
                .entry(date.clone())
                .or_insert_with(|| (changes[0].sequence_number.clone(), Vec::new()));
            if compare_sequence_numbers(&changes[0].sequence_number, &day.0) == Ordering::Less {
                day.0 = changes[0].sequence_number.clone();
            }
            day.1.extend(changes.iter().map(|c| c.item.line()));
        }
        let snapshots: Vec<(Result<SnapshotResult, RecordFailure>, usize)> = stream::iter(days)
            .map(|(date, (first_sequence, lines))| async move {
                let mut conflicts = 0;
                let result = self
                    .write_snapshot(&date, &first_sequence, &lines, deadline, &mut conflicts)
                    .await;
                (result, conflicts)
            })
            .buffer_unordered(self.config.max_concurrent_writes)
            .collect()
            .await;
        for (result, conflicts) in snapshots {
            outcome.snapshot_conflicts += conflicts;
            match result {
                Ok(SnapshotResult::Written) => outcome.snapshots_written += 1,
                Ok(SnapshotResult::Unchanged) => outcome.snapshots_unchanged += 1,
                Err(failure) => outcome.failures.push(failure),
            }
        }

        // Alerts: every image of each counter with limits, in order.
        if !self.limits.is_empty() {
            let followed: Vec<(AlertCounts, Option<RecordFailure>)> =
                stream::iter(by_key.iter().filter_map(|((counter, _), changes)| {
                    self.limits
                        .for_counter(counter)
                        .map(|range| (changes, range))
                }))
                .map(|(changes, range)| self.follow_alerts(changes, range, deadline))
                .buffer_unordered(self.config.max_concurrent_writes)
                .collect()
                .await;
            for (counts, failure) in followed {
                outcome.alerts_published += counts.published;
                outcome.stale_images += counts.stale;
                outcome.failures.extend(failure);
            }
        }

        for failure in &outcome.failures {
            if failure.is_retryable() {
                tracing::warn!(error = %failure, "record failed; the batch resumes from it");
            } else {
                tracing::error!(error = %failure, "record failed permanently; after the mapping's retries it goes to the on-failure destination");
            }
            metrics.count(&format!("FailedRecords.{}", failure.reason()), 1);
            outcome.checkpoint.fail(failure.sequence_number());
        }
        metrics
            .count("SnapshotsWritten", outcome.snapshots_written as u64)
            .count("SnapshotsUnchanged", outcome.snapshots_unchanged as u64)
            .count("SnapshotConflicts", outcome.snapshot_conflicts as u64)
            .count("AlertsPublished", outcome.alerts_published as u64)
            .count("StaleImages", outcome.stale_images as u64)
            .count("Removed", outcome.removed as u64)
            .count("FailedRecords", outcome.failures.len() as u64);
        tracing::info!(records = event.records.len(), snapshots_written = outcome.snapshots_written,
            snapshots_unchanged = outcome.snapshots_unchanged, conflicts = outcome.snapshot_conflicts,
            alerts = outcome.alerts_published, stale = outcome.stale_images, removed = outcome.removed,
            failed = outcome.failures.len(), checkpoint = ?outcome.checkpoint.first_failed(), "batch done");
        Ok(outcome)
    }

    fn snapshot_uri(&self, date: &str) -> String {
        format!(
            "s3://{}/{}",
            self.config.totals_bucket,
            snapshot_key(&self.config.totals_prefix, date)
        )
    }

    /// Read, merge, write-if-unchanged; a lost race reads again.
    async fn write_snapshot(
        &self,
        date: &str,
        first_sequence: &str,
        lines: &[TotalLine],
        deadline: &Deadline,
        conflicts: &mut usize,
    ) -> Result<SnapshotResult, RecordFailure> {
        let key = snapshot_key(&self.config.totals_prefix, date);
        let bucket = &self.config.totals_bucket;
        let s3_failure = |source| RecordFailure::SnapshotS3 {
            sequence_number: first_sequence.to_owned(),
            date: date.to_owned(),
            source,
        };
        for _ in 0..SNAPSHOT_ROUNDS {
            if deadline.is_past() {
                return Err(RecordFailure::OutOfTime {
                    sequence_number: first_sequence.to_owned(),
                });
            }
            let current = get_object_with_etag(&self.clients.s3, bucket, &key, deadline)
                .await
                .map_err(s3_failure)?;
            let (mut snapshot, condition, rebuilt) = match current {
                Some((body, etag)) => match Snapshot::parse(date, &body) {
                    Ok(snapshot) => (snapshot, PutCondition::Unchanged(etag), false),
                    Err(err) => {
                        tracing::error!(bucket = %bucket, key = %key, error = %err,
                            "snapshot unreadable; rebuilding it from the aggregate table");
                        let day = self.day_from_table(date, first_sequence, deadline).await?;
                        (day, PutCondition::Unchanged(etag), true)
                    }
                },
                None => (
                    self.day_from_table(date, first_sequence, deadline).await?,
                    PutCondition::Absent,
                    true,
                ),
            };
            let changed = snapshot.merge_all(lines);
            if !changed && !rebuilt {
                return Ok(SnapshotResult::Unchanged);
            }
            match put_object_if(
                &self.clients.s3,
                bucket,
                &key,
                snapshot.render(),
                "application/x-ndjson",
                &condition,
                deadline,
            )
            .await
            .map_err(s3_failure)?
            {
                PutOutcome::Written => {
                    tracing::info!(date, key = %key, counters = snapshot.len(), "snapshot written");
                    return Ok(SnapshotResult::Written);
                }
                PutOutcome::PreconditionFailed => *conflicts += 1,
            }
        }
        Err(RecordFailure::Contended {
            sequence_number: first_sequence.to_owned(),
            what: format!("the snapshot s3://{bucket}/{key}"),
        })
    }

    /// Every total of `date` in the aggregate table (its `ByDate` index).
    async fn day_from_table(
        &self,
        date: &str,
        first_sequence: &str,
        deadline: &Deadline,
    ) -> Result<Snapshot, RecordFailure> {
        let mut snapshot = Snapshot::new();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let request = self
                .clients
                .dynamodb
                .query()
                .table_name(&self.config.aggregate_table)
                .index_name(&self.config.aggregate_date_index)
                .key_condition_expression("#d = :d")
                .expression_attribute_names("#d", "Date")
                .expression_attribute_values(":d", AttributeValue::S(date.to_owned()))
                .set_exclusive_start_key(start.clone());
            let page = retry_sdk_call(&self.backoff, deadline, deadline, || request.clone().send())
                .await
                .map_err(|err| RecordFailure::SnapshotCall {
                    sequence_number: first_sequence.to_owned(),
                    date: date.to_owned(),
                    source: CallFailure::from_sdk("Query", &err),
                })?;
            for item in page.items.unwrap_or_default() {
                match serde_dynamo::from_item::<_, AggregateItem>(item) {
                    Ok(item) => {
                        snapshot.merge(item.line());
                    }
                    Err(err) => tracing::warn!(date, error = %err,
                        "aggregate item not readable; left out of the seed (its stream record brings it)"),
                }
            }
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(snapshot),
            }
        }
    }

    /// One counter's images through the alert state machine; stops at the first failure
    /// (the checkpoint then redelivers it and everything after it).
    async fn follow_alerts(
        &self,
        changes: &[Change],
        range: Range,
        deadline: &Deadline,
    ) -> (AlertCounts, Option<RecordFailure>) {
        let mut counts = AlertCounts::default();
        let mut current: Option<Option<AlertItem>> = None;
        for change in changes {
            if let Err(failure) = self
                .follow_one(change, &range, &mut current, &mut counts, deadline)
                .await
            {
                return (counts, Some(failure));
            }
        }
        (counts, None)
    }

    async fn follow_one(
        &self,
        change: &Change,
        range: &Range,
        current: &mut Option<Option<AlertItem>>,
        counts: &mut AlertCounts,
        deadline: &Deadline,
    ) -> Result<(), RecordFailure> {
        let item = &change.item;
        let seq = change.sequence_number.as_str();
        for _ in 0..ALERT_ROUNDS {
            if deadline.is_past() {
                return Err(RecordFailure::OutOfTime {
                    sequence_number: seq.to_owned(),
                });
            }
            let state = match current.take() {
                Some(state) => state,
                None => self.read_alert(item, seq, deadline).await?,
            };
            // A transition recorded but not yet sent goes out before anything replaces it.
            let state = match state {
                Some(pending) if pending.is_pending() => {
                    self.publish(&pending, seq, deadline).await?;
                    counts.published += 1;
                    Some(AlertItem {
                        notified: true,
                        ..pending
                    })
                }
                other => other,
            };
            let next = match alert::decide(
                state.as_ref(),
                &item.counter,
                &item.date,
                item.value,
                item.version,
                &item.updated_at,
                range,
            ) {
                Decision::Stale => {
                    counts.stale += 1;
                    *current = Some(state);
                    return Ok(());
                }
                Decision::Write(next) => next,
            };
            let read_version = state.as_ref().map_or(0, |s| s.version);
            match self.write_alert(&next, read_version, seq, deadline).await? {
                UpdateOutcome::Applied { .. } => {
                    if next.is_pending() {
                        self.publish(&next, seq, deadline).await?;
                        counts.published += 1;
                        *current = Some(Some(AlertItem {
                            notified: true,
                            ..next
                        }));
                    } else {
                        *current = Some(Some(next));
                    }
                    return Ok(());
                }
                // Someone else wrote since the read: read again and decide again.
                UpdateOutcome::ConditionFailed => *current = None,
            }
        }
        Err(RecordFailure::Contended {
            sequence_number: seq.to_owned(),
            what: format!("the alert state of {} on {}", item.counter, item.date),
        })
    }

    fn alert_key(&self, counter: &str, date: &str) -> HashMap<String, AttributeValue> {
        HashMap::from([
            (
                attr::COUNTER.to_owned(),
                AttributeValue::S(counter.to_owned()),
            ),
            (attr::DATE.to_owned(), AttributeValue::S(date.to_owned())),
        ])
    }

    async fn read_alert(
        &self,
        item: &AggregateItem,
        seq: &str,
        deadline: &Deadline,
    ) -> Result<Option<AlertItem>, RecordFailure> {
        let request = self
            .clients
            .dynamodb
            .get_item()
            .table_name(&self.config.alerts_table)
            .set_key(Some(self.alert_key(&item.counter, &item.date)))
            .consistent_read(true);
        let output = retry_sdk_call(&self.backoff, deadline, deadline, || request.clone().send())
            .await
            .map_err(|err| self.alert_call(item, seq, CallFailure::from_sdk("GetItem", &err)))?;
        match output.item {
            None => Ok(None),
            Some(stored) => serde_dynamo::from_item(stored).map(Some).map_err(|err| {
                self.alert_call(
                    item,
                    seq,
                    CallFailure {
                        operation: "GetItem",
                        code: "UnreadableAlertState".to_owned(),
                        message: err.to_string(),
                        transient: false,
                    },
                )
            }),
        }
    }

    async fn write_alert(
        &self,
        next: &AlertItem,
        read_version: u64,
        seq: &str,
        deadline: &Deadline,
    ) -> Result<UpdateOutcome, RecordFailure> {
        let item: HashMap<String, AttributeValue> =
            serde_dynamo::to_item(next).map_err(|err| RecordFailure::AlertCall {
                sequence_number: seq.to_owned(),
                counter: next.counter.clone(),
                date: next.date.clone(),
                source: CallFailure {
                    operation: "PutItem",
                    code: "Serialization".to_owned(),
                    message: err.to_string(),
                    transient: false,
                },
            })?;
        let request = self
            .clients
            .dynamodb
            .put_item()
            .table_name(&self.config.alerts_table)
            .set_item(Some(item))
            .condition_expression(alert::WRITE_IF_UNCHANGED)
            .expression_attribute_names("#counter", attr::COUNTER)
            .expression_attribute_names("#ver", attr::VERSION)
            .expression_attribute_values(":read", AttributeValue::N(read_version.to_string()));
        put_conditional(
            request,
            &[attr::COUNTER, attr::DATE],
            &self.backoff,
            deadline,
        )
        .await
        .map_err(|source| RecordFailure::AlertState {
            sequence_number: seq.to_owned(),
            counter: next.counter.clone(),
            date: next.date.clone(),
            source,
        })
    }

    /// Publishes a recorded transition, then marks it notified.
    async fn publish(
        &self,
        pending: &AlertItem,
        seq: &str,
        deadline: &Deadline,
    ) -> Result<(), RecordFailure> {
        let message = AlertMessage::of(pending, &self.snapshot_uri(&pending.date));
        let request = self
            .clients
            .sns
            .publish()
            .topic_arn(&self.config.alert_topic_arn)
            .subject(message.subject())
            .message_structure("json")
            .message(message.sns_message());
        let published =
            retry_sdk_call(&self.backoff, deadline, deadline, || request.clone().send())
                .await
                .map_err(|err| RecordFailure::AlertCall {
                    sequence_number: seq.to_owned(),
                    counter: pending.counter.clone(),
                    date: pending.date.clone(),
                    source: CallFailure::from_sdk("Publish", &err),
                })?;
        let message_id = published.message_id.unwrap_or_default();
        tracing::info!(counter = %pending.counter, date = %pending.date, standing = %pending.standing,
            previous = %pending.previous, total = pending.changed_total, message_id = %message_id,
            "limit alert published");
        let now = OffsetDateTime::now_utc()
            .format(&Rfc3339)
            .unwrap_or_default();
        let mark = self
            .clients
            .dynamodb
            .update_item()
            .table_name(&self.config.alerts_table)
            .set_key(Some(self.alert_key(&pending.counter, &pending.date)))
            .update_expression(alert::MARK_NOTIFIED)
            .condition_expression(alert::MARK_NOTIFIED_IF)
            .expression_attribute_names("#notified", attr::NOTIFIED)
            .expression_attribute_names("#at", attr::NOTIFIED_AT)
            .expression_attribute_names("#mid", attr::MESSAGE_ID)
            .expression_attribute_names("#cver", attr::CHANGED_VERSION)
            .expression_attribute_values(":true", AttributeValue::Bool(true))
            .expression_attribute_values(":false", AttributeValue::Bool(false))
            .expression_attribute_values(":at", AttributeValue::S(now))
            .expression_attribute_values(":mid", AttributeValue::S(message_id))
            .expression_attribute_values(
                ":cv",
                AttributeValue::N(pending.changed_version.to_string()),
            );
        // A failed condition: already marked, or a newer transition replaced it. Either is fine.
        update_conditional(mark, &self.backoff, deadline)
            .await
            .map(|_| ())
            .map_err(|source| RecordFailure::AlertState {
                sequence_number: seq.to_owned(),
                counter: pending.counter.clone(),
                date: pending.date.clone(),
                source,
            })
    }

    fn alert_call(&self, item: &AggregateItem, seq: &str, source: CallFailure) -> RecordFailure {
        RecordFailure::AlertCall {
            sequence_number: seq.to_owned(),
            counter: item.counter.clone(),
            date: item.date.clone(),
            source,
        }
    }
}
