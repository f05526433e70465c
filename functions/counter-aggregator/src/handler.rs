//! The aggregator's decisions for one DynamoDB stream batch.
//!
//! 1. Every `INSERT`/`MODIFY` record's new image is read as an [`InstanceItem`];
//!    `REMOVE` records are skipped (a removed day changes no total worth keeping).
//! 2. Records of the same key (`Counter`, `Date`) are coalesced: only the newest
//!    image (highest item `Version`, then highest sequence number) is summed and
//!    written — it already holds every instance's latest value.
//! 3. Each total is written only if its image is not older than the one the total
//!    came from: the image's `Version` (the instance item's write count, see
//!    counter-mapper) is kept in the aggregate as `SourceVersion`, so a record
//!    processed after a newer one (a replay, a redriven failure range, a retried
//!    batch) can never put an older total back:
//!
//!    ```text
//!    1. SET Value = :total, UpdatedAt = :now, SourceVersion = :src ADD Version 1
//!       IF (attribute_not_exists(SourceVersion) OR SourceVersion <= :src)
//!          AND (attribute_not_exists(Value) OR Value <> :total)     -> written
//!    2. SET SourceVersion = :src
//!       IF (attribute_not_exists(SourceVersion) OR SourceVersion < :src)
//!          AND Value = :total                                        -> unchanged
//!    3. SET SourceVersion = :src
//!       IF attribute_not_exists(SourceVersion) OR SourceVersion < :src
//!                                                      failed       -> stale
//!    4. SET Value = :total, UpdatedAt = :now ADD Version 1
//!       IF SourceVersion = :src AND Value <> :total      -> written (else unchanged)
//!    ```
//!
//!    The common cases take one request (a changed total) or two (an unchanged
//!    total from a newer image: 2 records the newer source version, so that an older
//!    image with a different total is refused later — the aggregate's own A-B-A;
//!    an exact redelivery: 2 fails on the equal version, 3 says "not newer"). Steps
//!    3 and 4 only run when another writer changed the total between 1 and 2; a
//!    failure between 3 and 4 is retried through the checkpoint, and step 1 (`<=`)
//!    then writes the total under the version 3 recorded. A stale image is the
//!    normal no-op ("already newer"), not an error.
//!
//!    `Version` still counts the changes of the total, by one, and nothing else
//!    (counter-reporter's "newest `Version` wins"): step 2 changes only
//!    `SourceVersion`, so the aggregate stream record it makes carries the same
//!    `Version` and total, which the reporter already has.
//!
//!    An image without `Version` (written before the mapper recorded one) is written
//!    as before, `IF attribute_not_exists(SourceVersion) AND Value <> :total`: it is
//!    older than every versioned image of its item.
//! 4. Failures (unreadable image, overflowing total, a write that still fails
//!    after retries within the deadline) are reported with stream semantics: the
//!    lowest sequence number among the failed records is the checkpoint, and Lambda
//!    redelivers from there (an earlier record of a coalesced key needs no
//!    redelivery: the written image is newer). Rewriting a total is idempotent.

use std::cmp::Ordering;
use std::collections::HashMap;

use aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;
use aws_sdk_dynamodb::types::AttributeValue;
use futures::stream::{self, StreamExt};
use sluice_aws::{Backoff, Deadline, DynamoError, UpdateOutcome, update_conditional};
use sluice_events::aws_lambda_events::dynamodb::Event;
use sluice_events::aws_lambda_events::streams::DynamoDbEventResponse;
use sluice_events::{ChangeKind, compare_sequence_numbers, stream_changes};
use sluice_lambda::batch::StreamCheckpoint;
use sluice_lambda::metrics::Metrics;
use sluice_lambda::{FunctionError, LambdaEvent};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::config::AggregatorConfig;
use crate::item::{InstanceItem, SumOverflow};

/// Attribute names of the aggregate table.
pub mod attr {
    pub const COUNTER: &str = "Counter";
    pub const DATE: &str = "Date";
    pub const VALUE: &str = "Value";
    pub const UPDATED_AT: &str = "UpdatedAt";
    pub const VERSION: &str = "Version";
    /// The instance item's `Version` the total was summed from (the ordering guard).
    pub const SOURCE_VERSION: &str = "SourceVersion";
}

/// Step 1: the total and its source version, if the image is not older and the total changed.
pub const WRITE_TOTAL: &str = "SET #val = :val, #at = :at, #src = :src ADD #ver :one";
pub const WRITE_TOTAL_IF_NOT_OLDER_AND_CHANGED: &str = "(attribute_not_exists(#src) OR #src <= :src) \
     AND (attribute_not_exists(#val) OR #val <> :val)";
/// Steps 2 and 3: only the source version advances.
pub const RESTAMP: &str = "SET #src = :src";
pub const RESTAMP_IF_NEWER_AND_UNCHANGED: &str =
    "(attribute_not_exists(#src) OR #src < :src) AND #val = :val";
pub const RESTAMP_IF_NEWER: &str = "attribute_not_exists(#src) OR #src < :src";
/// Step 4, and images without a version: the total alone.
pub const WRITE_VALUE: &str = "SET #val = :val, #at = :at ADD #ver :one";
pub const WRITE_VALUE_IF_RESTAMPED_AND_CHANGED: &str =
    "#src = :src AND (attribute_not_exists(#val) OR #val <> :val)";
pub const WRITE_VALUE_IF_UNVERSIONED_AND_CHANGED: &str =
    "attribute_not_exists(#src) AND (attribute_not_exists(#val) OR #val <> :val)";

/// What one total's write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TotalWrite {
    /// The total changed and was written (`Version` + 1).
    Written,
    /// The total is already this image's (at most its source version advanced).
    Unchanged,
    /// The total is from this image (a redelivery) or a newer one already: this
    /// record changes nothing ("already newer", not an error).
    Stale,
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
    #[error("record {sequence_number}: {source}")]
    Overflow {
        sequence_number: String,
        #[source]
        source: SumOverflow,
    },
    #[error("record {sequence_number}: {source}")]
    Write {
        sequence_number: String,
        #[source]
        source: DynamoError,
    },
    #[error("record {sequence_number}: not written, the invocation's time ran out")]
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
            | RecordFailure::Overflow {
                sequence_number, ..
            }
            | RecordFailure::Write {
                sequence_number, ..
            }
            | RecordFailure::OutOfTime { sequence_number } => sequence_number,
        }
    }

    /// The one place failures are classified: could a redelivery succeed?
    /// Permanent failures still go through the checkpoint (never silently
    /// dropped); the mapping's bounded retries then hand them to the on-failure
    /// destination.
    pub fn is_retryable(&self) -> bool {
        match self {
            RecordFailure::Write { source, .. } => source.is_transient(),
            RecordFailure::OutOfTime { .. } => true,
            RecordFailure::Unreadable { .. }
            | RecordFailure::NoNewImage { .. }
            | RecordFailure::Overflow { .. } => false,
        }
    }

    /// A stable, short name for metrics (`FailedRecords.<reason>`).
    pub fn reason(&self) -> &'static str {
        match self {
            RecordFailure::Unreadable { .. } => "unreadable",
            RecordFailure::NoNewImage { .. } => "no_new_image",
            RecordFailure::Overflow { .. } => "overflow",
            RecordFailure::Write { .. } => "write",
            RecordFailure::OutOfTime { .. } => "out_of_time",
        }
    }
}

/// A record without a sequence number cannot be checkpointed: the whole batch
/// fails (Lambda retries it, bisecting).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stream record {event_id} has no sequence number; failing the whole batch")]
pub struct UncheckpointableRecord {
    pub event_id: String,
}

/// The outcome of one batch.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BatchOutcome {
    pub checkpoint: StreamCheckpoint,
    pub failures: Vec<RecordFailure>,
    /// Totals written (changed).
    pub written: usize,
    /// Totals unchanged (at most their source version advanced).
    pub unchanged: usize,
    /// Totals already from the batch's image or a newer one (redelivered or
    /// replayed records).
    pub stale: usize,
    /// Records folded into a newer record of the same key.
    pub coalesced: usize,
    pub removed: usize,
}

/// The newest image of one key in the batch.
struct Latest {
    sequence_number: String,
    item: InstanceItem,
}

pub struct Aggregator {
    dynamodb: aws_sdk_dynamodb::Client,
    config: AggregatorConfig,
    backoff: Backoff,
}

impl Aggregator {
    pub fn new(dynamodb: aws_sdk_dynamodb::Client, config: AggregatorConfig) -> Self {
        Aggregator {
            dynamodb,
            config,
            backoff: Backoff::default(),
        }
    }

    /// One Lambda invocation: metrics, deadline, the partial batch response.
    pub async fn invoke(
        &self,
        event: LambdaEvent<Event>,
    ) -> Result<DynamoDbEventResponse, FunctionError> {
        let deadline =
            Deadline::at_epoch_ms(event.context.deadline).with_margin(self.config.deadline_margin);
        let mut metrics = Metrics::for_function();
        let result = self.handle(&event.payload, &deadline, &mut metrics).await;
        metrics.emit();
        match result {
            Ok(outcome) => Ok(outcome.checkpoint.dynamodb_response()),
            Err(err) => {
                tracing::error!(error = %err, "batch failed");
                Err(FunctionError::new(
                    "UncheckpointableRecord",
                    err.to_string(),
                ))
            }
        }
    }

    pub async fn handle(
        &self,
        event: &Event,
        deadline: &Deadline,
        metrics: &mut Metrics,
    ) -> Result<BatchOutcome, UncheckpointableRecord> {
        let mut outcome = BatchOutcome::default();
        let mut latest: HashMap<(String, String), Latest> = HashMap::new();
        metrics.count("Records", event.records.len() as u64);

        for (record, change) in event
            .records
            .iter()
            .zip(stream_changes::<InstanceItem>(event))
        {
            let change = match change {
                Ok(change) => change,
                Err(err) => {
                    let Some(sequence_number) = record.change.sequence_number.clone() else {
                        return Err(UncheckpointableRecord {
                            event_id: record.event_id.clone(),
                        });
                    };
                    outcome.failures.push(RecordFailure::Unreadable {
                        sequence_number,
                        message: err.to_string(),
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
                (_, Some(item)) => {
                    let key = (item.counter.clone(), item.date.clone());
                    let candidate = Latest {
                        sequence_number: change.sequence_number,
                        item,
                    };
                    match latest.get(&key) {
                        Some(current) if newer_image(current, &candidate) == Ordering::Greater => {
                            outcome.coalesced += 1;
                        }
                        Some(_) => {
                            outcome.coalesced += 1;
                            latest.insert(key, candidate);
                        }
                        None => {
                            latest.insert(key, candidate);
                        }
                    }
                }
            }
        }

        let mut writes = Vec::with_capacity(latest.len());
        for newest in latest.into_values() {
            match newest.item.total() {
                Ok(total) => writes.push((newest, total)),
                Err(source) => outcome.failures.push(RecordFailure::Overflow {
                    sequence_number: newest.sequence_number,
                    source,
                }),
            }
        }
        let now = OffsetDateTime::now_utc()
            .format(&Rfc3339)
            .unwrap_or_default();
        let results: Vec<Result<TotalWrite, RecordFailure>> = stream::iter(writes)
            .map(|(newest, total)| {
                let now = now.as_str();
                async move {
                    if deadline.is_past() {
                        return Err(RecordFailure::OutOfTime {
                            sequence_number: newest.sequence_number,
                        });
                    }
                    self.write_total(&newest.item, total, now, deadline)
                        .await
                        .inspect(|written| match written {
                            TotalWrite::Written => {
                                tracing::info!(counter = %newest.item.counter, date = %newest.item.date,
                                    total, source_version = ?newest.item.version,
                                    instances = newest.item.instances.len(), "total written");
                            }
                            TotalWrite::Stale => {
                                tracing::info!(counter = %newest.item.counter, date = %newest.item.date,
                                    source_version = ?newest.item.version, sequence_number = %newest.sequence_number,
                                    "total already from a newer image; this older record changes nothing");
                            }
                            TotalWrite::Unchanged => {}
                        })
                        .map_err(|source| RecordFailure::Write {
                            sequence_number: newest.sequence_number,
                            source,
                        })
                }
            })
            .buffer_unordered(self.config.max_concurrent_updates)
            .collect()
            .await;
        for result in results {
            match result {
                Ok(TotalWrite::Written) => outcome.written += 1,
                Ok(TotalWrite::Unchanged) => outcome.unchanged += 1,
                Ok(TotalWrite::Stale) => outcome.stale += 1,
                Err(failure) => outcome.failures.push(failure),
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
            .count("Written", outcome.written as u64)
            .count("Unchanged", outcome.unchanged as u64)
            .count("Stale", outcome.stale as u64)
            .count("Coalesced", outcome.coalesced as u64)
            .count("Removed", outcome.removed as u64)
            .count("FailedRecords", outcome.failures.len() as u64);
        tracing::info!(records = event.records.len(), written = outcome.written, unchanged = outcome.unchanged,
            stale = outcome.stale, coalesced = outcome.coalesced, removed = outcome.removed, failed = outcome.failures.len(),
            checkpoint = ?outcome.checkpoint.first_failed(), "batch done");
        Ok(outcome)
    }

    /// One total, ordered by its image's source version (steps 1–4 of the module
    /// documentation; one step for an image without a version).
    async fn write_total(
        &self,
        item: &InstanceItem,
        total: i64,
        now: &str,
        deadline: &Deadline,
    ) -> Result<TotalWrite, DynamoError> {
        let send = |request| update_conditional(request, &self.backoff, deadline);
        // DynamoDB refuses names and values an expression does not use: each request
        // carries exactly its own.
        let value = || AttributeValue::N(total.to_string());
        let at = || AttributeValue::S(now.to_owned());
        let one = || AttributeValue::N("1".to_owned());
        let Some(source) = item.version else {
            let request = self
                .key_request(item, &[VAL, AT, VER, SRC])
                .update_expression(WRITE_VALUE)
                .condition_expression(WRITE_VALUE_IF_UNVERSIONED_AND_CHANGED)
                .expression_attribute_values(":val", value())
                .expression_attribute_values(":at", at())
                .expression_attribute_values(":one", one());
            return Ok(match send(request).await? {
                UpdateOutcome::Applied { .. } => TotalWrite::Written,
                UpdateOutcome::ConditionFailed => TotalWrite::Unchanged,
            });
        };
        let src = || AttributeValue::N(source.to_string());
        let write = self
            .key_request(item, &[VAL, AT, VER, SRC])
            .update_expression(WRITE_TOTAL)
            .condition_expression(WRITE_TOTAL_IF_NOT_OLDER_AND_CHANGED)
            .expression_attribute_values(":val", value())
            .expression_attribute_values(":at", at())
            .expression_attribute_values(":one", one())
            .expression_attribute_values(":src", src());
        if let UpdateOutcome::Applied { .. } = send(write).await? {
            return Ok(TotalWrite::Written);
        }
        let restamp = self
            .key_request(item, &[VAL, SRC])
            .update_expression(RESTAMP)
            .condition_expression(RESTAMP_IF_NEWER_AND_UNCHANGED)
            .expression_attribute_values(":val", value())
            .expression_attribute_values(":src", src());
        if let UpdateOutcome::Applied { .. } = send(restamp).await? {
            return Ok(TotalWrite::Unchanged);
        }
        // Neither: the stored source version is not older (stale, or this very image
        // already), or another writer changed the total since step 1. Claim the
        // version first, then write the total under it.
        let claim = self
            .key_request(item, &[SRC])
            .update_expression(RESTAMP)
            .condition_expression(RESTAMP_IF_NEWER)
            .expression_attribute_values(":src", src());
        if let UpdateOutcome::ConditionFailed = send(claim).await? {
            return Ok(TotalWrite::Stale);
        }
        let write_value = self
            .key_request(item, &[VAL, AT, VER, SRC])
            .update_expression(WRITE_VALUE)
            .condition_expression(WRITE_VALUE_IF_RESTAMPED_AND_CHANGED)
            .expression_attribute_values(":val", value())
            .expression_attribute_values(":at", at())
            .expression_attribute_values(":one", one())
            .expression_attribute_values(":src", src());
        Ok(match send(write_value).await? {
            UpdateOutcome::Applied { .. } => TotalWrite::Written,
            // The total is this image's already, or a newer image claimed it meanwhile.
            UpdateOutcome::ConditionFailed => TotalWrite::Unchanged,
        })
    }

    /// An update of the item's aggregate, with these attribute names.
    fn key_request(
        &self,
        item: &InstanceItem,
        names: &[(&'static str, &'static str)],
    ) -> UpdateItemFluentBuilder {
        names.iter().fold(
            self.dynamodb
                .update_item()
                .table_name(&self.config.aggregate_table)
                .key(attr::COUNTER, AttributeValue::S(item.counter.clone()))
                .key(attr::DATE, AttributeValue::S(item.date.clone())),
            |request, (placeholder, name)| request.expression_attribute_names(*placeholder, *name),
        )
    }
}

const VAL: (&str, &str) = ("#val", attr::VALUE);
const AT: (&str, &str) = ("#at", attr::UPDATED_AT);
const VER: (&str, &str) = ("#ver", attr::VERSION);
const SRC: (&str, &str) = ("#src", attr::SOURCE_VERSION);

/// Which of two images of one key is newer: the item's `Version` first (an image
/// without one is older than any with one), then the stream's sequence number.
fn newer_image(a: &Latest, b: &Latest) -> Ordering {
    a.item
        .version
        .cmp(&b.item.version)
        .then_with(|| compare_sequence_numbers(&a.sequence_number, &b.sequence_number))
}
