//! The jobs table: one item per object version, and every conditional write that
//! keeps one job per object version, one live chain per job, and one notification.
//!
//! Item (partition key `source_id` = `s3://bucket/key#<sequencer:versionId:eTag>`):
//!
//! | attribute | meaning |
//! |---|---|
//! | `job_state` | `STARTING` (claimed, job not yet started) → `RUNNING` → `SUCCEEDED` / `FAILED` / `BUDGET_EXHAUSTED` |
//! | `idempotency_key` | sent with every start call for this object version, so a retried start finds the same job |
//! | `job_id`, `generation`, `turn_owner` | the job, the generation holding the turn, and the request id of that invocation |
//! | `chain` | one `{generation, request_id, claimed_at}` per claimed turn: the chain, readable |
//! | `turn_expires_at` | when the turn's lease ends (epoch ms): the holder's invocation deadline plus a grace |
//! | `notify_owner`, `notified_at`, `notification_id` | who publishes the outcome, and that it was published |
//!
//! Every write after a claim is conditioned on still holding the turn
//! (`generation = :g AND turn_owner = :me`), so a stale invocation can never record
//! an outcome over a newer generation. A turn (or notification claim) whose lease has
//! ended belongs to an invocation that is gone (it failed, and its event may be in the
//! failure queue): another invocation takes it over by claiming the *next* generation
//! ([`JobsTable::take_over_turn`]), so a late event of the old chain can no longer claim
//! anything, and one chain stays.

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use sluice_aws::dynamodb::{DynamoError, UpdateOutcome, put_if_absent, update_conditional};
use sluice_aws::retry::{Backoff, Deadline, error_code, is_transient, retry_sdk_call};

use crate::job_api::JobSource;

pub const PARTITION_KEY: &str = "source_id";

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    Starting,
    Running,
    Succeeded,
    Failed,
    BudgetExhausted,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Starting => "STARTING",
            JobState::Running => "RUNNING",
            JobState::Succeeded => "SUCCEEDED",
            JobState::Failed => "FAILED",
            JobState::BudgetExhausted => "BUDGET_EXHAUSTED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "STARTING" => JobState::Starting,
            "RUNNING" => JobState::Running,
            "SUCCEEDED" => JobState::Succeeded,
            "FAILED" => JobState::Failed,
            "BUDGET_EXHAUSTED" => JobState::BudgetExhausted,
            _ => return None,
        })
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Failed | JobState::BudgetExhausted
        )
    }
}

/// A job's item as read back.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRecord {
    pub source_id: String,
    pub source: JobSource,
    pub idempotency_key: String,
    pub state: JobState,
    pub job_id: Option<String>,
    pub generation: Option<u32>,
    pub turn_owner: Option<String>,
    pub claimed_at_ms: u64,
    pub started_at_ms: Option<u64>,
    pub finished_at_ms: Option<u64>,
    pub outcome_detail: Option<String>,
    pub notified: bool,
    /// `turn_expires_at`: when the turn holder's lease ends; `None` on items written
    /// before leases (treated as ended).
    pub turn_expires_at_ms: Option<u64>,
    pub notify_owner: Option<String>,
}

impl JobRecord {
    /// Whether `request_id` holds generation `generation`'s turn (a retry of the
    /// invocation that claimed it, which Lambda gives the same request id).
    pub fn held_by(&self, generation: u32, request_id: &str) -> bool {
        self.generation == Some(generation) && self.turn_owner.as_deref() == Some(request_id)
    }

    /// Whether the turn holder's lease has ended at `now_ms`.
    pub fn lease_ended(&self, now_ms: u64) -> bool {
        self.turn_expires_at_ms.is_none_or(|at| at < now_ms)
    }
}

/// What claiming an object version found.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceClaim {
    /// New: this invocation wrote the `STARTING` item.
    Claimed,
    /// Already there (a redelivered event, or a retry).
    Exists(Box<JobRecord>),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    #[error(transparent)]
    Dynamo(#[from] DynamoError),
    #[error("DynamoDB GetItem on table {table:?}, source {source_id:?}, failed: {code}")]
    Read {
        table: String,
        source_id: String,
        code: String,
        transient: bool,
    },
    #[error("jobs table item {source_id:?} is malformed: {why}")]
    Malformed { source_id: String, why: String },
}

impl TableError {
    pub fn is_transient(&self) -> bool {
        match self {
            TableError::Dynamo(e) => e.is_transient(),
            TableError::Read { transient, .. } => *transient,
            TableError::Malformed { .. } => false,
        }
    }
}

/// A terminal outcome to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub state: JobState,
    pub detail: String,
}

/// Longest outcome detail kept (in the item and the notification): the job API's
/// message can be any size, an item holds 400 KB and an SNS message 256 KB.
pub const MAX_DETAIL_BYTES: usize = 16 * 1024;

impl Outcome {
    /// The outcome with its detail cut to `MAX_DETAIL_BYTES`, saying so.
    pub fn bounded(self) -> Self {
        Outcome {
            state: self.state,
            detail: truncate_detail(self.detail, MAX_DETAIL_BYTES),
        }
    }
}

/// `detail` whole when it has at most `limit` bytes; otherwise its first bytes (cut at a
/// character boundary) and a note of the whole length, `limit` bytes or fewer in all.
/// Deterministic: the same detail and limit always give the same text.
pub fn truncate_detail(detail: String, limit: usize) -> String {
    if detail.len() <= limit {
        return detail;
    }
    let note = format!(" … [truncated: {} bytes in all]", detail.len());
    let mut end = limit.saturating_sub(note.len());
    while !detail.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{note}", &detail[..end])
}

/// The jobs table and its conditional writes.
#[derive(Debug, Clone)]
pub struct JobsTable {
    client: Client,
    table: String,
    backoff: Backoff,
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn chain_link(generation: u32, request_id: &str, now_ms: u64) -> AttributeValue {
    AttributeValue::L(vec![AttributeValue::M(HashMap::from([
        ("generation".to_owned(), n(generation)),
        ("request_id".to_owned(), s(request_id)),
        ("claimed_at".to_owned(), n(now_ms)),
    ]))])
}

impl JobsTable {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        JobsTable {
            client,
            table: table.into(),
            backoff: Backoff::default(),
        }
    }

    fn update(
        &self,
        source_id: &str,
    ) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
        self.client
            .update_item()
            .table_name(&self.table)
            .key(PARTITION_KEY, s(source_id))
    }

    async fn applied(
        &self,
        builder: aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder,
        deadline: &Deadline,
    ) -> Result<bool, TableError> {
        Ok(matches!(
            update_conditional(builder, &self.backoff, deadline).await?,
            UpdateOutcome::Applied { .. }
        ))
    }

    /// Claims an object version before anything is started for it: writes the
    /// `STARTING` item if none exists, else returns the existing one.
    pub async fn claim_source(
        &self,
        source_id: &str,
        source: &JobSource,
        idempotency_key: &str,
        now_ms: u64,
        deadline: &Deadline,
    ) -> Result<SourceClaim, TableError> {
        let mut item = HashMap::from([
            (PARTITION_KEY.to_owned(), s(source_id)),
            ("bucket".to_owned(), s(&source.bucket)),
            ("object_key".to_owned(), s(&source.key)),
            ("uri".to_owned(), s(&source.uri)),
            ("idempotency_key".to_owned(), s(idempotency_key)),
            ("job_state".to_owned(), s(JobState::Starting.as_str())),
            ("claimed_at".to_owned(), n(now_ms)),
        ]);
        for (name, value) in [
            ("etag", &source.etag),
            ("sequencer", &source.sequencer),
            ("version_id", &source.version_id),
        ] {
            if let Some(value) = value {
                item.insert(name.to_owned(), s(value));
            }
        }
        match put_if_absent(
            &self.client,
            &self.table,
            item,
            &[PARTITION_KEY],
            &self.backoff,
            deadline,
        )
        .await?
        {
            UpdateOutcome::Applied { .. } => Ok(SourceClaim::Claimed),
            UpdateOutcome::ConditionFailed => match self.load(source_id, deadline).await? {
                Some(record) => Ok(SourceClaim::Exists(Box::new(record))),
                None => Err(TableError::Malformed {
                    source_id: source_id.to_owned(),
                    why: "claim failed on an existing item that then could not be read".to_owned(),
                }),
            },
        }
    }

    /// Records the started job and takes generation 0's turn; `false` if another
    /// invocation did first.
    pub async fn record_started(
        &self,
        source_id: &str,
        job_id: &str,
        request_id: &str,
        now_ms: u64,
        lease_until_ms: u64,
        deadline: &Deadline,
    ) -> Result<bool, TableError> {
        let builder = self
            .update(source_id)
            .update_expression(
                "SET #job_id = :job, #state = :running, #gen = :zero, #owner = :me, \
                 #started = :now, #chain = :link, #expires = :lease",
            )
            .expression_attribute_names("#expires", "turn_expires_at")
            .expression_attribute_values(":lease", n(lease_until_ms))
            .condition_expression("#state = :starting")
            .expression_attribute_names("#job_id", "job_id")
            .expression_attribute_names("#state", "job_state")
            .expression_attribute_names("#gen", "generation")
            .expression_attribute_names("#owner", "turn_owner")
            .expression_attribute_names("#started", "started_at")
            .expression_attribute_names("#chain", "chain")
            .expression_attribute_values(":job", s(job_id))
            .expression_attribute_values(":running", s(JobState::Running.as_str()))
            .expression_attribute_values(":starting", s(JobState::Starting.as_str()))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":me", s(request_id))
            .expression_attribute_values(":now", n(now_ms))
            .expression_attribute_values(":link", chain_link(0, request_id, now_ms));
        self.applied(builder, deadline).await
    }

    /// Takes generation `generation`'s turn (`generation ≥ 1`): only if the job is
    /// still running and the previous turn was exactly `generation - 1`. Returns the
    /// item as it now is, or `None` if the turn was not available.
    #[allow(clippy::too_many_arguments)]
    pub async fn claim_turn(
        &self,
        source_id: &str,
        job_id: &str,
        generation: u32,
        request_id: &str,
        now_ms: u64,
        lease_until_ms: u64,
        deadline: &Deadline,
    ) -> Result<Option<JobRecord>, TableError> {
        let builder = self
            .update(source_id)
            .update_expression(
                "SET #gen = :gen, #owner = :me, #expires = :lease, #chain = list_append(if_not_exists(#chain, :empty), :link)",
            )
            .return_values(ReturnValue::AllNew)
            .condition_expression("#state = :running AND #job_id = :job AND #gen = :prev")
            .expression_attribute_names("#expires", "turn_expires_at")
            .expression_attribute_values(":lease", n(lease_until_ms))
            .expression_attribute_names("#gen", "generation")
            .expression_attribute_names("#owner", "turn_owner")
            .expression_attribute_names("#chain", "chain")
            .expression_attribute_names("#state", "job_state")
            .expression_attribute_names("#job_id", "job_id")
            .expression_attribute_values(":gen", n(generation))
            .expression_attribute_values(":prev", n(generation.saturating_sub(1)))
            .expression_attribute_values(":me", s(request_id))
            .expression_attribute_values(":running", s(JobState::Running.as_str()))
            .expression_attribute_values(":job", s(job_id))
            .expression_attribute_values(":empty", AttributeValue::L(Vec::new()))
            .expression_attribute_values(":link", chain_link(generation, request_id, now_ms));
        self.claimed(source_id, builder, deadline).await
    }

    /// Takes the turn over from `from_owner`, who held generation `from_generation` and
    /// whose lease has ended, by claiming generation `from_generation + 1`: only if the
    /// item is still exactly as read (running, that job, that generation and holder) and
    /// the lease has ended at `now_ms`. Returns the item as it now is, or `None` if the
    /// turn moved on (the holder, or a queued next generation, was first).
    #[allow(clippy::too_many_arguments)]
    pub async fn take_over_turn(
        &self,
        source_id: &str,
        job_id: &str,
        from_generation: u32,
        from_owner: &str,
        request_id: &str,
        now_ms: u64,
        lease_until_ms: u64,
        deadline: &Deadline,
    ) -> Result<Option<JobRecord>, TableError> {
        let generation = from_generation + 1;
        let builder = self
            .update(source_id)
            .update_expression(
                "SET #gen = :gen, #owner = :me, #expires = :lease, #chain = list_append(if_not_exists(#chain, :empty), :link)",
            )
            .return_values(ReturnValue::AllNew)
            .condition_expression(
                "#state = :running AND #job_id = :job AND #gen = :prev AND #owner = :old \
                 AND (attribute_not_exists(#expires) OR #expires < :now)",
            )
            .expression_attribute_names("#gen", "generation")
            .expression_attribute_names("#owner", "turn_owner")
            .expression_attribute_names("#expires", "turn_expires_at")
            .expression_attribute_names("#chain", "chain")
            .expression_attribute_names("#state", "job_state")
            .expression_attribute_names("#job_id", "job_id")
            .expression_attribute_values(":gen", n(generation))
            .expression_attribute_values(":prev", n(from_generation))
            .expression_attribute_values(":old", s(from_owner))
            .expression_attribute_values(":me", s(request_id))
            .expression_attribute_values(":now", n(now_ms))
            .expression_attribute_values(":lease", n(lease_until_ms))
            .expression_attribute_values(":running", s(JobState::Running.as_str()))
            .expression_attribute_values(":job", s(job_id))
            .expression_attribute_values(":empty", AttributeValue::L(Vec::new()))
            .expression_attribute_values(":link", chain_link(generation, request_id, now_ms));
        self.claimed(source_id, builder, deadline).await
    }

    /// The item a claim returned, or `None` when its condition failed.
    async fn claimed(
        &self,
        source_id: &str,
        builder: aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder,
        deadline: &Deadline,
    ) -> Result<Option<JobRecord>, TableError> {
        match update_conditional(builder, &self.backoff, deadline).await? {
            UpdateOutcome::Applied {
                attributes: Some(item),
            } => parse_record(source_id, &item).map(Some),
            UpdateOutcome::Applied { attributes: None } => Err(TableError::Malformed {
                source_id: source_id.to_owned(),
                why: "turn claimed but the item was not returned".to_owned(),
            }),
            UpdateOutcome::ConditionFailed => Ok(None),
        }
    }

    /// Records a terminal outcome while holding generation `generation`'s turn
    /// (`from` is the state the item must still be in: `RUNNING`, or `STARTING` for a
    /// job that could not be started). `false` if the turn was no longer ours.
    #[allow(clippy::too_many_arguments)]
    pub async fn record_outcome(
        &self,
        source_id: &str,
        from: JobState,
        generation: u32,
        request_id: &str,
        outcome: &Outcome,
        now_ms: u64,
        deadline: &Deadline,
    ) -> Result<bool, TableError> {
        let builder = self
            .update(source_id)
            .update_expression(
                "SET #state = :outcome, #detail = :detail, #finished = :now, #gen = :gen, #owner = :me",
            )
            .expression_attribute_names("#state", "job_state")
            .expression_attribute_names("#detail", "outcome_detail")
            .expression_attribute_names("#finished", "finished_at")
            .expression_attribute_names("#gen", "generation")
            .expression_attribute_names("#owner", "turn_owner")
            .expression_attribute_values(":outcome", s(outcome.state.as_str()))
            .expression_attribute_values(":detail", s(&outcome.detail))
            .expression_attribute_values(":now", n(now_ms))
            .expression_attribute_values(":gen", n(generation))
            .expression_attribute_values(":me", s(request_id))
            .expression_attribute_values(":from", s(from.as_str()));
        let builder = if from == JobState::Starting {
            builder.condition_expression("#state = :from")
        } else {
            builder.condition_expression("#state = :from AND #gen = :gen AND #owner = :me")
        };
        self.applied(builder, deadline).await
    }

    /// Claims the right to publish the outcome notification: only if none was
    /// published and nobody else claimed it (a retry of the claimer may re-claim).
    pub async fn claim_notification(
        &self,
        source_id: &str,
        request_id: &str,
        deadline: &Deadline,
    ) -> Result<bool, TableError> {
        let builder = self
            .update(source_id)
            .update_expression("SET #nowner = :me")
            .condition_expression(
                "attribute_not_exists(#notified) AND (attribute_not_exists(#nowner) OR #nowner = :me)",
            )
            .expression_attribute_names("#nowner", "notify_owner")
            .expression_attribute_names("#notified", "notified_at")
            .expression_attribute_values(":me", s(request_id));
        self.applied(builder, deadline).await
    }

    /// Takes the notification claim over from `from_owner`, whose lease (the turn it
    /// recorded the outcome in) has ended without the notification being published:
    /// only if nothing was published, the claim is still `from_owner`'s and the lease
    /// has ended at `now_ms`.
    pub async fn take_over_notification(
        &self,
        source_id: &str,
        from_owner: &str,
        request_id: &str,
        now_ms: u64,
        deadline: &Deadline,
    ) -> Result<bool, TableError> {
        let builder = self
            .update(source_id)
            .update_expression("SET #nowner = :me")
            .condition_expression(
                "attribute_not_exists(#notified) AND #nowner = :old \
                 AND (attribute_not_exists(#expires) OR #expires < :now)",
            )
            .expression_attribute_names("#nowner", "notify_owner")
            .expression_attribute_names("#notified", "notified_at")
            .expression_attribute_names("#expires", "turn_expires_at")
            .expression_attribute_values(":old", s(from_owner))
            .expression_attribute_values(":me", s(request_id))
            .expression_attribute_values(":now", n(now_ms));
        self.applied(builder, deadline).await
    }

    /// Marks the outcome notification as published, by the invocation `owner` that
    /// claimed it (`notify_owner`). A repeat keeps the first `notified_at`. `false` if
    /// the claim is not `owner`'s (or the item is gone).
    pub async fn mark_notified(
        &self,
        source_id: &str,
        owner: &str,
        message_id: &str,
        now_ms: u64,
        deadline: &Deadline,
    ) -> Result<bool, TableError> {
        let builder = self
            .update(source_id)
            .update_expression(
                "SET #notified = if_not_exists(#notified, :now), #message = :message",
            )
            .condition_expression("#nowner = :me")
            .expression_attribute_names("#notified", "notified_at")
            .expression_attribute_names("#message", "notification_id")
            .expression_attribute_names("#nowner", "notify_owner")
            .expression_attribute_values(":now", n(now_ms))
            .expression_attribute_values(":message", s(message_id))
            .expression_attribute_values(":me", s(owner));
        self.applied(builder, deadline).await
    }

    /// The item for `source_id` (strongly consistent), if any.
    pub async fn load(
        &self,
        source_id: &str,
        deadline: &Deadline,
    ) -> Result<Option<JobRecord>, TableError> {
        let output = retry_sdk_call(&self.backoff, deadline, deadline, || {
            self.client
                .get_item()
                .table_name(&self.table)
                .key(PARTITION_KEY, s(source_id))
                .consistent_read(true)
                .send()
        })
        .await
        .map_err(|e| TableError::Read {
            table: self.table.clone(),
            source_id: source_id.to_owned(),
            code: error_code(&e),
            transient: is_transient(&e),
        })?;
        output
            .item
            .map(|item| parse_record(source_id, &item))
            .transpose()
    }
}

fn parse_record(
    source_id: &str,
    item: &HashMap<String, AttributeValue>,
) -> Result<JobRecord, TableError> {
    let malformed = |why: String| TableError::Malformed {
        source_id: source_id.to_owned(),
        why,
    };
    let text = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned();
    let number = |name: &str| -> Result<Option<u64>, TableError> {
        match item.get(name) {
            None => Ok(None),
            Some(v) => v
                .as_n()
                .ok()
                .and_then(|n| n.parse().ok())
                .map(Some)
                .ok_or_else(|| malformed(format!("{name} is not a whole number: {v:?}"))),
        }
    };
    let required = |name: &str| text(name).ok_or_else(|| malformed(format!("{name} is missing")));
    let state_text = required("job_state")?;
    let state = JobState::parse(&state_text)
        .ok_or_else(|| malformed(format!("job_state {state_text:?} is unknown")))?;
    let generation = number("generation")?
        .map(|g| u32::try_from(g).map_err(|_| malformed(format!("generation {g} is too large"))))
        .transpose()?;
    Ok(JobRecord {
        source_id: source_id.to_owned(),
        source: JobSource {
            bucket: required("bucket")?,
            key: required("object_key")?,
            etag: text("etag"),
            sequencer: text("sequencer"),
            version_id: text("version_id"),
            uri: required("uri")?,
        },
        idempotency_key: required("idempotency_key")?,
        state,
        job_id: text("job_id"),
        generation,
        turn_owner: text("turn_owner"),
        claimed_at_ms: number("claimed_at")?.unwrap_or_default(),
        started_at_ms: number("started_at")?,
        finished_at_ms: number("finished_at")?,
        outcome_detail: text("outcome_detail"),
        notified: item.contains_key("notified_at"),
        turn_expires_at_ms: number("turn_expires_at")?,
        notify_owner: text("notify_owner"),
    })
}

#[cfg(test)]
pub mod test_items {
    //! Items as DynamoDB returns them, for handler tests.

    use super::*;

    /// A lease end no test clock reaches.
    pub const LIVE_LEASE_MS: u64 = 9_999_999_999_999;

    /// `item` as left by a holder that is gone: its lease ended at `ended_ms`.
    pub fn lapsed(
        mut item: HashMap<String, AttributeValue>,
        ended_ms: u64,
    ) -> HashMap<String, AttributeValue> {
        item.insert("turn_expires_at".to_owned(), n(ended_ms));
        item
    }

    pub fn item(
        source_id: &str,
        state: JobState,
        job_id: Option<&str>,
        generation: Option<u32>,
        owner: Option<&str>,
    ) -> HashMap<String, AttributeValue> {
        let mut item = HashMap::from([
            (PARTITION_KEY.to_owned(), s(source_id)),
            ("bucket".to_owned(), s("reports-bucket")),
            ("object_key".to_owned(), s("reports/2026/11/21/sales.csv")),
            (
                "uri".to_owned(),
                s("s3://reports-bucket/reports/2026/11/21/sales.csv"),
            ),
            ("etag".to_owned(), s("0123456789abcdef0123456789abcdef")),
            ("sequencer".to_owned(), s("0055AED6DCD90281E5")),
            ("idempotency_key".to_owned(), s("sluice-job-poller-test")),
            ("job_state".to_owned(), s(state.as_str())),
            ("claimed_at".to_owned(), n(1_700_000_000_000u64)),
            ("started_at".to_owned(), n(1_700_000_001_000u64)),
            // A live holder: its lease ends long after the tests' clock.
            ("turn_expires_at".to_owned(), n(LIVE_LEASE_MS)),
        ]);
        if let Some(job_id) = job_id {
            item.insert("job_id".to_owned(), s(job_id));
        }
        if let Some(generation) = generation {
            item.insert("generation".to_owned(), n(generation));
        }
        if let Some(owner) = owner {
            item.insert("turn_owner".to_owned(), s(owner));
        }
        if state.is_terminal() {
            item.insert("finished_at".to_owned(), n(1_700_000_031_000u64));
            item.insert("outcome_detail".to_owned(), s("recorded earlier"));
        }
        item
    }
}

#[cfg(test)]
mod tests {
    use super::test_items::item;
    use super::*;

    #[test]
    fn a_long_detail_is_cut_at_a_character_boundary_and_says_its_length() {
        let short = "1200 rows loaded".to_owned();
        assert_eq!(truncate_detail(short.clone(), 100), short);
        let long = "é".repeat(10_000); // 20,000 bytes, two per character
        let cut = truncate_detail(long.clone(), 1_001);
        assert!(cut.len() <= 1_001, "{}", cut.len());
        assert!(cut.ends_with(" … [truncated: 20000 bytes in all]"), "{cut}");
        assert!(long.starts_with(cut.split(" … ").next().unwrap()));
        assert_eq!(truncate_detail(long.clone(), 1_001), cut, "deterministic");
        let outcome = Outcome {
            state: JobState::Succeeded,
            detail: "x".repeat(1 << 20),
        }
        .bounded();
        assert!(outcome.detail.len() <= MAX_DETAIL_BYTES);
        assert_eq!(outcome.state, JobState::Succeeded);
    }

    #[test]
    fn records_parse_back_with_their_turn() {
        let record = parse_record(
            "src",
            &item(
                "src",
                JobState::Running,
                Some("j-1"),
                Some(3),
                Some("req-3"),
            ),
        )
        .unwrap();
        assert_eq!(record.state, JobState::Running);
        assert_eq!(record.job_id.as_deref(), Some("j-1"));
        assert!(record.held_by(3, "req-3"));
        assert!(!record.held_by(3, "req-other"));
        assert!(!record.held_by(2, "req-3"));
        assert_eq!(record.source.key, "reports/2026/11/21/sales.csv");
        assert!(!record.notified);
    }

    #[test]
    fn malformed_items_name_the_attribute() {
        let mut bad = item("src", JobState::Running, None, None, None);
        bad.insert("job_state".to_owned(), s("DANCING"));
        let err = parse_record("src", &bad).unwrap_err();
        assert!(err.to_string().contains("DANCING"), "{err}");
        let mut bad = item("src", JobState::Running, None, None, None);
        bad.insert("generation".to_owned(), s("three"));
        let err = parse_record("src", &bad).unwrap_err();
        assert!(err.to_string().contains("generation"), "{err}");
        assert!(!err.is_transient());
    }

    #[test]
    fn only_outcomes_are_terminal() {
        for state in [
            JobState::Succeeded,
            JobState::Failed,
            JobState::BudgetExhausted,
        ] {
            assert!(state.is_terminal());
            assert_eq!(JobState::parse(state.as_str()), Some(state));
        }
        assert!(!JobState::Starting.is_terminal());
        assert!(!JobState::Running.is_terminal());
    }
}
