//! The aggregator's decisions for one DynamoDB stream batch.
//!
//! 1. Every `INSERT`/`MODIFY` record's new image is read as an [`InstanceItem`];
//!    `REMOVE` records are skipped (a removed day changes no total worth keeping).
//! 2. Records of the same key (`Counter`, `Date`) are coalesced: only the newest
//!    image (highest sequence number) is summed and written — it already holds
//!    every instance's latest value.
//! 3. Each total is written with one conditional update:
//!
//!    ```text
//!    SET Value = :total, UpdatedAt = :now ADD Version :one
//!    IF  attribute_not_exists(Value) OR Value <> :total
//!    ```
//!
//!    A failed condition means "unchanged": the normal no-op, not an error.
//!    `Version` counts the writes, so "no write happened" is observable.
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
}

pub const WRITE_TOTAL: &str = "SET #val = :val, #at = :at ADD #ver :one";
pub const WRITE_TOTAL_IF_CHANGED: &str = "attribute_not_exists(#val) OR #val <> :val";

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
    /// Totals unchanged (condition failed).
    pub unchanged: usize,
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
                        Some(current)
                            if compare_sequence_numbers(
                                &current.sequence_number,
                                &candidate.sequence_number,
                            ) == Ordering::Greater =>
                        {
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
        let results: Vec<Result<UpdateOutcome, RecordFailure>> = stream::iter(writes)
            .map(|(newest, total)| {
                let now = now.as_str();
                async move {
                    if deadline.is_past() {
                        return Err(RecordFailure::OutOfTime {
                            sequence_number: newest.sequence_number,
                        });
                    }
                    update_conditional(
                        self.write_total_request(&newest.item, total, now),
                        &self.backoff,
                        deadline,
                    )
                    .await
                    .inspect(|outcome| {
                        if matches!(outcome, UpdateOutcome::Applied { .. }) {
                            tracing::info!(counter = %newest.item.counter, date = %newest.item.date,
                                total, instances = newest.item.instances.len(), "total written");
                        }
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
                Ok(UpdateOutcome::Applied { .. }) => outcome.written += 1,
                Ok(UpdateOutcome::ConditionFailed) => outcome.unchanged += 1,
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
            .count("Coalesced", outcome.coalesced as u64)
            .count("Removed", outcome.removed as u64)
            .count("FailedRecords", outcome.failures.len() as u64);
        tracing::info!(records = event.records.len(), written = outcome.written, unchanged = outcome.unchanged,
            coalesced = outcome.coalesced, removed = outcome.removed, failed = outcome.failures.len(),
            checkpoint = ?outcome.checkpoint.first_failed(), "batch done");
        Ok(outcome)
    }

    fn write_total_request(
        &self,
        item: &InstanceItem,
        total: i64,
        now: &str,
    ) -> UpdateItemFluentBuilder {
        self.dynamodb
            .update_item()
            .table_name(&self.config.aggregate_table)
            .key(attr::COUNTER, AttributeValue::S(item.counter.clone()))
            .key(attr::DATE, AttributeValue::S(item.date.clone()))
            .update_expression(WRITE_TOTAL)
            .condition_expression(WRITE_TOTAL_IF_CHANGED)
            .expression_attribute_names("#val", attr::VALUE)
            .expression_attribute_names("#at", attr::UPDATED_AT)
            .expression_attribute_names("#ver", attr::VERSION)
            .expression_attribute_values(":val", AttributeValue::N(total.to_string()))
            .expression_attribute_values(":at", AttributeValue::S(now.to_owned()))
            .expression_attribute_values(":one", AttributeValue::N("1".to_owned()))
    }
}
