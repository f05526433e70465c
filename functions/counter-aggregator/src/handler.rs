//! The aggregator's decisions for one DynamoDB stream batch.
//!
//! The instance table keeps a counter's day in [`sluice_counters::SHARDS`] shard
//! items; the aggregate keeps, per counter and day, the total and every shard's
//! subtotal with the instance item `Version` it came from (see [`sluice_counters`]).
//!
//! 1. Every `INSERT`/`MODIFY` record's new image is read as an [`InstanceItem`]
//!    (a shard item); `REMOVE` records are skipped (a removed day changes no total
//!    worth keeping).
//! 2. Records of the same shard item (`Counter`, `Date#shard`) are coalesced: only
//!    the newest image (highest item `Version`, then highest sequence number) is
//!    summed — it already holds every instance's latest value in that shard.
//! 3. The subtotals of one counter's day (every shard item of it in the batch) go
//!    into its aggregate by one consistent read and one conditional write that only
//!    succeeds if each of those shards' entries is still the one read, so shards of
//!    one counter written at the same time never lose each other's change and an
//!    older image never puts an older subtotal back:
//!
//!    ```text
//!    read Value, Shards
//!    no Shards map yet:  SET Shards = {s: {Total, SourceVersion}, …}, Value = :sum, UpdatedAt
//!                        ADD Version 1   IF attribute_not_exists(Shards)            -> written
//!    a shard whose entry is from an image not older (SourceVersion >= Version)      -> stale
//!    the other shards:   SET Shards.s = {…}, … [, UpdatedAt ADD Value :delta, Version 1]
//!                        IF Shards.s.SourceVersion = :seen AND … (attribute_not_exists for a new one)
//!                        -> written (its subtotal changed) / unchanged (only its source version)
//!    a condition failed (another writer in between): read again, at most 8 times
//!    ```
//!
//!    `Value` is always the sum of the shards' `Total`s: each write adds exactly the
//!    change of its shards' subtotals, and only over the entries it read. A batch costs
//!    one read and at most one write per counter and day, not per shard. A shard
//!    entry's `SourceVersion` only grows, so "the entry is the one read" is a
//!    comparison of that one number. `Version` counts the changes of the total, by
//!    one, and nothing else (counter-reporter's "newest `Version` wins"): an
//!    unchanged subtotal from a newer image only records the newer source version
//!    (so that an older image with a different subtotal is refused later — the
//!    aggregate's own A-B-A), and its stream record carries the same `Version` and
//!    total. An exact redelivery reads its own source version back: stale, no write.
//!    A stale image is the normal no-op ("already newer"), not an error. An
//!    aggregate written before the table was sharded (no `Shards`) starts again
//!    from its shards' subtotals.
//! 4. Failures (unreadable image, a subtotal or total outside the signed 64-bit
//!    range, a write that still fails after retries within the deadline, a shard
//!    still contended after 8 reads) are reported with stream semantics: the lowest
//!    sequence number among the failed records is the checkpoint, and Lambda
//!    redelivers from there (an earlier record of a coalesced key needs no
//!    redelivery: the written image is newer). Rewriting a subtotal is idempotent.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};

use aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;
use aws_sdk_dynamodb::types::AttributeValue;
use futures::stream::{self, StreamExt};
use sluice_aws::{Backoff, Deadline, DynamoError, UpdateOutcome, get_item, update_conditional};
use sluice_counters::{AggregateItem, ShardKey, SumOverflow};
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

use crate::config::AggregatorConfig;
use crate::item::InstanceItem;

/// Attribute names of the aggregate table (shared with counter-reporter's reading).
pub use sluice_counters::aggregate_attr as attr;

/// The first subtotal of a counter's day (or of an aggregate from before sharding).
pub const CREATE_SHARDS: &str = "SET #sh = :shards, #val = :val, #at = :at ADD #ver :one";
pub const CREATE_SHARDS_IF_ABSENT: &str = "attribute_not_exists(#sh)";
/// Every other write is built for the day's shards in the batch (`<n>` their place):
///
/// ```text
/// SET #sh.#s<n> = :e<n>, … [, #at = :at ADD #val :delta, #ver :one   (if the total changes)]
/// IF  #sh.#s<n>.#src = :seen<n> AND attribute_not_exists(#sh.#s<m>) AND …
/// ```
/// Reads of the aggregate per counter and day before a contended write is retried
/// through the checkpoint.
pub const MAX_ATTEMPTS: usize = 8;

/// What one shard's subtotal did to its day's aggregate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TotalWrite {
    /// The subtotal changed and was written (the total with it, `Version` + 1, unless
    /// another shard's change of the same write cancelled it out), or the aggregate
    /// was created.
    Written,
    /// The subtotal is unchanged (at most its source version advanced).
    Unchanged,
    /// The shard's subtotal is from this image (a redelivery) or a newer one
    /// already: this record changes nothing ("already newer", not an error).
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
    #[error("record {sequence_number}: the stored aggregate cannot be read: {message}")]
    BadAggregate {
        sequence_number: String,
        message: String,
    },
    #[error("record {sequence_number}: {source}")]
    Write {
        sequence_number: String,
        #[source]
        source: DynamoError,
    },
    #[error(
        "record {sequence_number}: the shard's entry changed under each of {MAX_ATTEMPTS} writes; retried through the checkpoint"
    )]
    Contended { sequence_number: String },
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
            | RecordFailure::BadAggregate {
                sequence_number, ..
            }
            | RecordFailure::Write {
                sequence_number, ..
            }
            | RecordFailure::Contended { sequence_number }
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
            RecordFailure::OutOfTime { .. } | RecordFailure::Contended { .. } => true,
            RecordFailure::Unreadable { .. }
            | RecordFailure::NoNewImage { .. }
            | RecordFailure::Overflow { .. }
            | RecordFailure::BadAggregate { .. } => false,
        }
    }

    /// A stable, short name for metrics (`FailedRecords.<reason>`).
    pub fn reason(&self) -> &'static str {
        match self {
            RecordFailure::Unreadable { .. } => "unreadable",
            RecordFailure::NoNewImage { .. } => "no_new_image",
            RecordFailure::Overflow { .. } => "overflow",
            RecordFailure::BadAggregate { .. } => "bad_aggregate",
            RecordFailure::Write { .. } => "write",
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
    /// Totals written (changed).
    pub written: usize,
    /// Subtotals unchanged (at most their source version advanced).
    pub unchanged: usize,
    /// Subtotals already from the batch's image or a newer one (redelivered or
    /// replayed records).
    pub stale: usize,
    /// Records folded into a newer record of the same shard item.
    pub coalesced: usize,
    pub removed: usize,
    /// Aggregate reads repeated because another writer changed the shard's entry.
    pub rereads: usize,
}

/// The newest image of one shard item in the batch.
struct Latest {
    sequence_number: String,
    item: InstanceItem,
}

/// One counter's day: its shard items, what each did (or why none was written), and
/// the aggregate's rereads.
type DayWrite = (Vec<Latest>, Result<Vec<TotalWrite>, WriteFailure>, usize);

/// Why one counter's day was not written (every shard record of it fails).
#[derive(Clone)]
enum WriteFailure {
    Dynamo(DynamoError),
    Overflow(SumOverflow),
    BadAggregate(String),
    Contended,
    OutOfTime,
}

impl From<DynamoError> for WriteFailure {
    fn from(err: DynamoError) -> Self {
        WriteFailure::Dynamo(err)
    }
}

impl WriteFailure {
    fn for_record(self, sequence_number: String) -> RecordFailure {
        match self {
            WriteFailure::Dynamo(source) => RecordFailure::Write {
                sequence_number,
                source,
            },
            WriteFailure::Overflow(source) => RecordFailure::Overflow {
                sequence_number,
                source,
            },
            WriteFailure::BadAggregate(message) => RecordFailure::BadAggregate {
                sequence_number,
                message,
            },
            WriteFailure::Contended => RecordFailure::Contended { sequence_number },
            WriteFailure::OutOfTime => RecordFailure::OutOfTime { sequence_number },
        }
    }
}

/// The Lambda function: a partial batch response per stream batch.
impl Function for Aggregator {
    type Event = Event;
    type Response = DynamoDbEventResponse;
    type InitError = sluice_lambda::config::ConfigError;

    fn answer_margin(&self) -> std::time::Duration {
        self.config.deadline_margin
    }

    /// Reads and checks the configuration and builds the DynamoDB client.
    async fn cold_start() -> Result<Self, Self::InitError> {
        let config = AggregatorConfig::from_env(&Env::from_process())?;
        let sdk = sluice_aws::clients::load_sdk_config().await;
        Ok(Aggregator::new(sluice_aws::clients::dynamodb(&sdk), config))
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

    pub async fn handle(
        &self,
        event: &Event,
        deadline: &Deadline,
        metrics: &mut Metrics,
    ) -> Result<BatchOutcome, UncheckpointableRecord> {
        let mut outcome = BatchOutcome::default();
        let mut latest: HashMap<(String, ShardKey), Latest> = HashMap::new();
        metrics.count("Records", event.records.len() as u64);

        for record in dynamodb_stream_records::<InstanceItem>(event)? {
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
                (_, Some(item)) => {
                    let key = (item.counter.clone(), item.key.clone());
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

        // The newest image of every shard item, by the day's aggregate it adds to: one
        // read and one write per counter and day, whatever the number of its shards.
        let mut days: BTreeMap<(String, String), Vec<Latest>> = BTreeMap::new();
        for newest in latest.into_values() {
            if let Err(source) = newest.item.subtotal() {
                outcome.failures.push(RecordFailure::Overflow {
                    sequence_number: newest.sequence_number,
                    source,
                });
                continue;
            }
            let day = (newest.item.counter.clone(), newest.item.key.date.clone());
            days.entry(day).or_default().push(newest);
        }
        let now = OffsetDateTime::now_utc()
            .format(&Rfc3339)
            .unwrap_or_default();
        let results: Vec<DayWrite> = stream::iter(days)
            .map(|((counter, date), shards)| {
                let now = now.as_str();
                async move {
                    if deadline.is_past() {
                        return (shards, Err(WriteFailure::OutOfTime), 0);
                    }
                    let (result, rereads) = self
                        .write_day(&counter, &date, &shards, now, deadline)
                        .await;
                    (shards, result, rereads)
                }
            })
            .buffer_unordered(self.config.max_concurrent_updates)
            .collect()
            .await;
        for (shards, result, rereads) in results {
            outcome.rereads += rereads;
            match result {
                Ok(writes) => {
                    for (shard, written) in shards.iter().zip(writes) {
                        let item = &shard.item;
                        match written {
                            TotalWrite::Written => outcome.written += 1,
                            TotalWrite::Unchanged => outcome.unchanged += 1,
                            TotalWrite::Stale => {
                                outcome.stale += 1;
                                tracing::info!(counter = %item.counter, date = %item.key.date, shard = item.key.shard,
                                    source_version = item.version, sequence_number = %shard.sequence_number,
                                    "subtotal already from a newer image; this older record changes nothing");
                            }
                        }
                    }
                }
                Err(failure) => {
                    for shard in shards {
                        outcome
                            .failures
                            .push(failure.clone().for_record(shard.sequence_number));
                    }
                }
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
            .count("Rereads", outcome.rereads as u64)
            .count("FailedRecords", outcome.failures.len() as u64);
        tracing::info!(records = event.records.len(), written = outcome.written, unchanged = outcome.unchanged,
            stale = outcome.stale, coalesced = outcome.coalesced, removed = outcome.removed,
            rereads = outcome.rereads, failed = outcome.failures.len(),
            checkpoint = ?outcome.checkpoint.first_failed(), "batch done");
        Ok(outcome)
    }

    /// The subtotals of one counter's day (one per shard item) into its aggregate
    /// (step 3 of the module documentation): each shard's outcome, in order, and how
    /// many times the aggregate was read again.
    async fn write_day(
        &self,
        counter: &str,
        date: &str,
        shards: &[Latest],
        now: &str,
        deadline: &Deadline,
    ) -> (Result<Vec<TotalWrite>, WriteFailure>, usize) {
        for attempt in 0..MAX_ATTEMPTS {
            match self
                .try_write_day(counter, date, shards, now, deadline)
                .await
            {
                Ok(Some(written)) => return (Ok(written), attempt),
                Ok(None) => continue,
                Err(failure) => return (Err(failure), attempt),
            }
        }
        (Err(WriteFailure::Contended), MAX_ATTEMPTS)
    }

    /// One read and one conditional write: `None` if another writer changed one of
    /// the shards' entries (or created the map) in between.
    async fn try_write_day(
        &self,
        counter: &str,
        date: &str,
        shards: &[Latest],
        now: &str,
        deadline: &Deadline,
    ) -> Result<Option<Vec<TotalWrite>>, WriteFailure> {
        let stored = self.read_aggregate(counter, date, deadline).await?;
        let subtotal = |shard: &Latest| shard.item.subtotal().map(i128::from);
        let overflow = |total: i128, what: String| {
            WriteFailure::Overflow(SumOverflow {
                counter: counter.to_owned(),
                date: date.to_owned(),
                what,
                total,
            })
        };
        // DynamoDB refuses names and values an expression does not use: each request
        // carries exactly its own.
        let number = |n: i128| AttributeValue::N(n.to_string());
        let Some(stored_shards) = &stored.shards else {
            let mut entries = HashMap::new();
            let mut total = 0i128;
            for shard in shards {
                let sub = subtotal(shard).map_err(WriteFailure::Overflow)?;
                total += sub;
                entries.insert(
                    shard.item.key.shard_name(),
                    shard_entry(sub as i64, shard.item.version),
                );
            }
            if i64::try_from(total).is_err() {
                return Err(overflow(total, format!("over {} shards", shards.len())));
            }
            let request = self
                .key_request(counter, date, &[SH, VAL, AT, VER])
                .update_expression(CREATE_SHARDS)
                .condition_expression(CREATE_SHARDS_IF_ABSENT)
                .expression_attribute_values(":shards", AttributeValue::M(entries))
                .expression_attribute_values(":val", number(total))
                .expression_attribute_values(":at", AttributeValue::S(now.to_owned()))
                .expression_attribute_values(":one", number(1));
            let applied = self.send(request, deadline).await?;
            return Ok(applied.then(|| vec![TotalWrite::Written; shards.len()]));
        };

        let mut outcomes = Vec::with_capacity(shards.len());
        let mut request = self.key_request(counter, date, &[SH]);
        let (mut sets, mut conditions, mut delta, mut needs_src) =
            (Vec::new(), Vec::new(), 0i128, false);
        for (n, shard) in shards.iter().enumerate() {
            let old = stored_shards.get(&shard.item.key.shard_name());
            if old.is_some_and(|old| old.source_version >= shard.item.version) {
                outcomes.push(TotalWrite::Stale);
                continue;
            }
            let sub = subtotal(shard).map_err(WriteFailure::Overflow)?;
            let change = sub - old.map_or(0, |old| i128::from(old.total));
            delta += change;
            outcomes.push(if change == 0 {
                TotalWrite::Unchanged
            } else {
                TotalWrite::Written
            });
            let name = format!("#s{n}");
            sets.push(format!("#sh.{name} = :e{n}"));
            request = request
                .expression_attribute_names(&name, shard.item.key.shard_name())
                .expression_attribute_values(
                    format!(":e{n}"),
                    shard_entry(sub as i64, shard.item.version),
                );
            match old {
                None => conditions.push(format!("attribute_not_exists(#sh.{name})")),
                Some(old) => {
                    needs_src = true;
                    conditions.push(format!("#sh.{name}.#src = :seen{n}"));
                    request = request.expression_attribute_values(
                        format!(":seen{n}"),
                        number(old.source_version.into()),
                    );
                }
            }
        }
        if sets.is_empty() {
            return Ok(Some(outcomes));
        }
        let total = i128::from(stored.value.unwrap_or(0)) + delta;
        if i64::try_from(total).is_err() {
            return Err(overflow(total, format!("the day, changing by {delta}")));
        }
        let mut update = format!("SET {}", sets.join(", "));
        if delta != 0 {
            update.push_str(", #at = :at ADD #val :delta, #ver :one");
            request = [VAL, AT, VER]
                .iter()
                .fold(request, |r, (p, n)| r.expression_attribute_names(*p, *n))
                .expression_attribute_values(":at", AttributeValue::S(now.to_owned()))
                .expression_attribute_values(":delta", number(delta))
                .expression_attribute_values(":one", number(1));
        }
        if needs_src {
            request = request.expression_attribute_names(SRC.0, SRC.1);
        }
        let request = request
            .update_expression(update)
            .condition_expression(conditions.join(" AND "));
        let applied = self.send(request, deadline).await?;
        if applied && delta != 0 {
            tracing::info!(counter, date, total, change = %delta, shards = shards.len(), "total written");
        }
        Ok(applied.then_some(outcomes))
    }

    /// Whether the conditional write was applied.
    async fn send(
        &self,
        request: UpdateItemFluentBuilder,
        deadline: &Deadline,
    ) -> Result<bool, DynamoError> {
        Ok(matches!(
            update_conditional(request, &self.backoff, deadline).await?,
            UpdateOutcome::Applied { .. }
        ))
    }

    /// The day's aggregate as stored now (a consistent read of its total and shards).
    async fn read_aggregate(
        &self,
        counter: &str,
        date: &str,
        deadline: &Deadline,
    ) -> Result<AggregateItem, WriteFailure> {
        let request = self
            .dynamodb
            .get_item()
            .table_name(&self.config.aggregate_table)
            .key(attr::COUNTER, AttributeValue::S(counter.to_owned()))
            .key(attr::DATE, AttributeValue::S(date.to_owned()))
            .consistent_read(true)
            .projection_expression("#val, #sh")
            .expression_attribute_names(VAL.0, VAL.1)
            .expression_attribute_names(SH.0, SH.1);
        match get_item(request, &self.backoff, deadline).await? {
            None => Ok(AggregateItem::default()),
            Some(stored) => serde_dynamo::from_item(stored)
                .map_err(|err| WriteFailure::BadAggregate(err.to_string())),
        }
    }

    /// An update of a counter's day's aggregate, with these attribute names.
    fn key_request(
        &self,
        counter: &str,
        date: &str,
        names: &[(&'static str, &'static str)],
    ) -> UpdateItemFluentBuilder {
        names.iter().fold(
            self.dynamodb
                .update_item()
                .table_name(&self.config.aggregate_table)
                .key(attr::COUNTER, AttributeValue::S(counter.to_owned()))
                .key(attr::DATE, AttributeValue::S(date.to_owned())),
            |request, (placeholder, name)| request.expression_attribute_names(*placeholder, *name),
        )
    }
}

const VAL: (&str, &str) = ("#val", attr::VALUE);
const AT: (&str, &str) = ("#at", attr::UPDATED_AT);
const VER: (&str, &str) = ("#ver", attr::VERSION);
const SH: (&str, &str) = ("#sh", attr::SHARDS);
const SRC: (&str, &str) = ("#src", attr::SOURCE_VERSION);

/// `{Total: N, SourceVersion: N}`, one shard's entry in the aggregate.
pub fn shard_entry(subtotal: i64, source_version: u64) -> AttributeValue {
    AttributeValue::M(HashMap::from([
        (
            attr::TOTAL.to_owned(),
            AttributeValue::N(subtotal.to_string()),
        ),
        (
            attr::SOURCE_VERSION.to_owned(),
            AttributeValue::N(source_version.to_string()),
        ),
    ]))
}

/// Which of two images of one shard item is newer: the item's `Version` first,
/// then the stream's sequence number.
fn newer_image(a: &Latest, b: &Latest) -> Ordering {
    a.item
        .version
        .cmp(&b.item.version)
        .then_with(|| compare_sequence_numbers(&a.sequence_number, &b.sequence_number))
}
