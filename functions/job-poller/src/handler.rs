//! The poller's decisions: start one job per object version, follow it while time
//! remains, hand over to the next generation before the deadline, and finish with
//! one recorded outcome and one notification.
//!
//! Invariants, and the write that keeps each (see [`crate::table`]):
//! - one job per object version: the `STARTING` claim (put-if-absent), and an
//!   idempotency key derived from the object version on every start call, so a start
//!   retried after a crash between claim and call finds the same job;
//! - one live chain per job: generation `g` runs only after a conditional write
//!   `generation = g - 1 → g`; a duplicate invocation loses it and exits quietly;
//! - one outcome, one notification: the outcome is written only by the turn holder,
//!   the notification only by whoever claims `notify_owner` first, and never again
//!   once `notified_at` is set. A retry of the same invocation (Lambda retries async
//!   invocations with the same request id) may resume its own turn or claim.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_lambda::types::InvocationType;
use aws_sdk_sns::types::MessageAttributeValue;
use aws_smithy_types::Blob;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sluice_aws::retry::Transient;
use sluice_aws::retry::{
    Backoff, Deadline, error_code, is_transient, retry_sdk_call, retry_transient_if,
};
use sluice_events::S3Notice;
use sluice_lambda::metrics::Metrics;
use sluice_lambda::{FunctionError, LambdaEvent};

use crate::config::Config;
use crate::event::{Continuation, InvalidEvent, NotificationRecord, ObjectVersion, PollerEvent};
use crate::job_api::{ApiError, JobApi, JobSource, JobStatus, StartRequest};
use crate::outcome_text;
use crate::table::{
    JobRecord, JobState, JobsTable, MAX_DETAIL_BYTES, Outcome, SourceClaim, TableError,
    truncate_detail,
};

/// Kept after every AWS call's deadline for answering the runtime.
const RESPONSE_RESERVE: Duration = Duration::from_millis(300);
/// Retries of one job API call (on top of the poll interval).
const API_RETRY: Backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(2), 2.0);
/// Retries of SNS publish and Lambda invoke beyond the SDK's own.
const AWS_RETRY: Backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(1), 2.0);
/// No `Publish` attempt starts with less than this (at most half the safety margin)
/// left before the work deadline. A publish cut off at the deadline has an unknown
/// outcome, and the retry it causes may notify twice: starting only with time to spare
/// keeps that to a call slower than this.
const PUBLISH_RESERVE: Duration = Duration::from_secs(1);

/// What one invocation is: who it is (request id, for turn ownership), how to invoke
/// itself again, and when it must be done.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub request_id: String,
    pub function_arn: String,
    pub deadline: Deadline,
}

/// What happened to one job (or object) in this invocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Not a report: outside the prefix, a folder marker, not `ObjectCreated`, a test event.
    Skipped,
    /// The object version already has a job, or this generation's turn was taken.
    Duplicate,
    /// Still running: the next generation was invoked.
    HandedOff,
    /// The outcome was recorded and notified.
    Finished,
    /// The outcome was notified; `notified_at` could not be recorded here, so a
    /// `record-notification` invocation was sent to record it.
    RecordHandedOff,
    /// A `record-notification` invocation recorded `notified_at`.
    NotificationRecorded,
    /// The outcome was notified, but `notified_at` could neither be recorded nor
    /// handed over (logged as an error). Not retried: a retry would notify twice.
    NotifiedUnrecorded,
    /// The outcome had been notified before (by this job's chain).
    AlreadyNotified,
    /// The turn moved on while this invocation worked; it recorded nothing.
    Superseded,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobReport {
    /// The jobs table key, or the object key for skipped objects.
    pub source: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generation: Option<u32>,
    pub action: Action,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The invocation's answer (visible to synchronous callers and in logs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub jobs: Vec<JobReport>,
}

impl Summary {
    /// One count per job under its action's metric name, and one `Outcome.<STATE>`
    /// per outcome this invocation notified.
    pub fn emit_metrics(&self) {
        let mut metrics = Metrics::for_function();
        for job in &self.jobs {
            let name = match job.action {
                Action::Skipped => "Skipped",
                Action::Duplicate => "Duplicates",
                Action::HandedOff => "HandOffs",
                Action::Finished => "JobsFinished",
                Action::RecordHandedOff => "NotificationRecordsHandedOff",
                Action::NotificationRecorded => "NotificationsRecorded",
                Action::NotifiedUnrecorded => "NotifiedUnrecorded",
                Action::AlreadyNotified => "AlreadyNotified",
                Action::Superseded => "Superseded",
            };
            metrics.count(name, 1);
            if matches!(
                job.action,
                Action::Finished | Action::RecordHandedOff | Action::NotifiedUnrecorded
            ) && let Some(outcome) = &job.detail
            {
                metrics.count(&format!("Outcome.{outcome}"), 1);
            }
        }
        metrics.emit();
    }
}

/// The one notification per job, published to SNS as JSON (the `default` message;
/// email subscribers get it as text, see [`crate::outcome_text`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    /// `None` when the job could not even be started.
    pub job_id: Option<String>,
    pub source: JobSource,
    pub source_id: String,
    /// `SUCCEEDED`, `FAILED` or `BUDGET_EXHAUSTED`.
    pub outcome: String,
    pub detail: String,
    pub duration_ms: u64,
    /// Invocations the job used (generations 0..n-1).
    pub generations: u32,
    pub started_at_ms: u64,
    pub finished_at_ms: u64,
}

impl Notification {
    fn from_record(record: &JobRecord) -> Self {
        let started = record.started_at_ms.unwrap_or(record.claimed_at_ms);
        let finished = record.finished_at_ms.unwrap_or(started);
        Notification {
            job_id: record.job_id.clone(),
            source: record.source.clone(),
            source_id: record.source_id.clone(),
            outcome: record.state.as_str().to_owned(),
            // Bounded here too: an item recorded before details were bounded may hold more.
            detail: truncate_detail(
                record.outcome_detail.clone().unwrap_or_default(),
                MAX_DETAIL_BYTES,
            ),
            duration_ms: finished.saturating_sub(started),
            generations: record.generation.unwrap_or(0) + 1,
            started_at_ms: started,
            finished_at_ms: finished,
        }
    }
}

/// Every way an invocation can fail, classified in [`PollerError::is_retryable`].
#[derive(Debug, thiserror::Error)]
pub enum PollerError {
    #[error(transparent)]
    InvalidEvent(#[from] InvalidEvent),
    #[error(
        "S3 event for s3://{bucket}/{key} names no object version (no sequencer, version id or etag)"
    )]
    Unversioned { bucket: String, key: String },
    #[error(
        "S3 event for s3://{bucket}/{key}: not the reports bucket ({expected}); a forged or misrouted notification, no job started"
    )]
    ForeignBucket {
        bucket: String,
        key: String,
        expected: String,
    },
    #[error(transparent)]
    Table(#[from] TableError),
    #[error("the jobs table has no item {0:?}")]
    UnknownSource(String),
    #[error("starting the job for {source_id}: {source}")]
    Start { source_id: String, source: ApiError },
    #[error("invoking the next generation ({function}) failed: {code}")]
    HandOff {
        function: String,
        code: String,
        transient: bool,
    },
    #[error("publishing the outcome of {source_id} to {topic} failed: {code}")]
    Publish {
        source_id: String,
        topic: String,
        code: String,
        transient: bool,
    },
    #[error(
        "the outcome of {source_id} was not published: {left_ms} ms left, a publish needs {needed_ms} ms"
    )]
    PublishDeferred {
        source_id: String,
        left_ms: u128,
        needed_ms: u128,
    },
}

impl PollerError {
    /// Whether a retry of this invocation (Lambda's own async retry) can succeed.
    /// Every step is idempotent, so retrying a permanent failure is harmless; this
    /// only names it, in the error type the on-failure destination records.
    pub fn is_retryable(&self) -> bool {
        match self {
            PollerError::InvalidEvent(_)
            | PollerError::Unversioned { .. }
            | PollerError::ForeignBucket { .. }
            | PollerError::UnknownSource(_) => false,
            PollerError::Table(e) => e.is_transient(),
            PollerError::Start { source, .. } => source.is_transient(),
            PollerError::HandOff { transient, .. } | PollerError::Publish { transient, .. } => {
                *transient
            }
            PollerError::PublishDeferred { .. } => true,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            PollerError::InvalidEvent(_) => "InvalidEvent",
            PollerError::Unversioned { .. } => "UnversionedObject",
            PollerError::ForeignBucket { .. } => "ForeignBucket",
            PollerError::Table(_) => "JobsTable",
            PollerError::UnknownSource(_) => "UnknownSource",
            PollerError::Start { .. } => "JobStart",
            PollerError::HandOff { .. } => "HandOff",
            PollerError::Publish { .. } | PollerError::PublishDeferred { .. } => "Notify",
        }
    }
}

impl From<PollerError> for FunctionError {
    fn from(e: PollerError) -> Self {
        let class = if e.is_retryable() {
            "Retryable"
        } else {
            "Permanent"
        };
        FunctionError::new(format!("{class}.{}", e.kind()), e.to_string())
    }
}

/// The turn one invocation holds on one job.
#[derive(Debug, Clone)]
struct Turn {
    source_id: String,
    source: JobSource,
    job_id: String,
    generation: u32,
    budget_remaining: u32,
    poll_attempt: u32,
    started_at_ms: u64,
}

/// Wall-clock milliseconds since the Unix epoch.
pub fn system_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or_default()
}

pub struct Poller<A> {
    config: Config,
    table: JobsTable,
    api: A,
    sns: aws_sdk_sns::Client,
    lambda: aws_sdk_lambda::Client,
    now_ms: fn() -> u64,
}

fn report(
    source: &str,
    job_id: Option<&str>,
    generation: Option<u32>,
    action: Action,
    detail: impl Into<Option<String>>,
) -> JobReport {
    JobReport {
        source: source.to_owned(),
        job_id: job_id.map(str::to_owned),
        generation,
        action,
        detail: detail.into(),
    }
}

impl<A: JobApi> Poller<A> {
    pub fn new(
        config: Config,
        table: JobsTable,
        api: A,
        sns: aws_sdk_sns::Client,
        lambda: aws_sdk_lambda::Client,
        now_ms: fn() -> u64,
    ) -> Self {
        Poller {
            config,
            table,
            api,
            sns,
            lambda,
            now_ms,
        }
    }

    /// One Lambda invocation: the event handled, its metrics emitted; a failure is
    /// logged and answered with its `errorType`.
    pub async fn invoke(&self, event: LambdaEvent<Value>) -> Result<Summary, FunctionError> {
        let invocation = Invocation {
            request_id: event.context.request_id.clone(),
            function_arn: event.context.invoked_function_arn.clone(),
            deadline: Deadline::at_epoch_ms(event.context.deadline),
        };
        match self.handle(&event.payload, &invocation).await {
            Ok(summary) => {
                summary.emit_metrics();
                Ok(summary)
            }
            Err(e) => {
                tracing::error!(error = %e, retryable = e.is_retryable(), "invocation failed");
                Err(FunctionError::from(e))
            }
        }
    }

    pub async fn handle(&self, event: &Value, inv: &Invocation) -> Result<Summary, PollerError> {
        match PollerEvent::parse(event)? {
            PollerEvent::Continue(next) => Ok(Summary {
                jobs: vec![self.continue_job(&next, inv).await?],
            }),
            PollerEvent::Record(record) => Ok(Summary {
                jobs: vec![self.record_notification(&record, inv).await?],
            }),
            PollerEvent::Objects(notices) => {
                // S3 sends one record per event; several are followed side by side.
                let results =
                    futures::future::join_all(notices.into_iter().map(|n| self.start_for(n, inv)))
                        .await;
                let mut jobs = Vec::new();
                let mut first_error = None;
                for result in results {
                    match result {
                        Ok(job) => jobs.push(job),
                        Err(e) => {
                            tracing::error!(error = %e, retryable = e.is_retryable(), "object not handled");
                            first_error.get_or_insert(e);
                        }
                    }
                }
                match first_error {
                    Some(e) => Err(e),
                    None => Ok(Summary { jobs }),
                }
            }
        }
    }

    fn work_deadline(&self, inv: &Invocation) -> Deadline {
        inv.deadline.with_margin(RESPONSE_RESERVE)
    }

    fn poll_deadline(&self, inv: &Invocation) -> Deadline {
        inv.deadline.with_margin(self.config.safety_margin)
    }

    async fn start_for(
        &self,
        notice: S3Notice,
        inv: &Invocation,
    ) -> Result<JobReport, PollerError> {
        let event = match notice {
            S3Notice::TestEvent { bucket } => {
                let bucket = bucket.unwrap_or_default();
                tracing::info!(%bucket, "s3:TestEvent skipped");
                return Ok(report(
                    &bucket,
                    None,
                    None,
                    Action::Skipped,
                    "s3:TestEvent".to_owned(),
                ));
            }
            S3Notice::Object(event) => event,
        };
        if event.bucket != self.config.reports_bucket {
            return Err(PollerError::ForeignBucket {
                bucket: event.bucket.clone(),
                key: event.key.clone(),
                expected: self.config.reports_bucket.clone(),
            });
        }
        let skip = |why: &str| {
            tracing::info!(bucket = %event.bucket, key = %event.key, event = %event.event_name, why, "object skipped");
            Ok(report(
                &event.key,
                None,
                None,
                Action::Skipped,
                why.to_owned(),
            ))
        };
        if !event.is_object_created() {
            return skip("not an ObjectCreated event");
        }
        if !event.key.starts_with(&self.config.report_prefix) {
            return skip("outside REPORT_PREFIX");
        }
        if event.key.ends_with('/') {
            return skip("folder marker");
        }
        let version = ObjectVersion::of(&event).ok_or_else(|| PollerError::Unversioned {
            bucket: event.bucket.clone(),
            key: event.key.clone(),
        })?;
        let key = version.idempotency_key();
        let now = (self.now_ms)();
        let claim = self
            .table
            .claim_source(
                &version.source_id,
                &version.source,
                &key,
                now,
                &self.work_deadline(inv),
            )
            .await?;
        match claim {
            SourceClaim::Claimed => {
                self.start_job(&version.source_id, &version.source, &key, now, inv)
                    .await
            }
            SourceClaim::Exists(record) if record.state == JobState::Starting => {
                // An earlier attempt claimed the version but did not record a job (it
                // crashed, or is still at it): the same idempotency key finds the same job.
                tracing::info!(source_id = %record.source_id, "resuming an unfinished start");
                self.start_job(
                    &record.source_id,
                    &record.source,
                    &record.idempotency_key,
                    record.claimed_at_ms,
                    inv,
                )
                .await
            }
            SourceClaim::Exists(record) if record.held_by(0, &inv.request_id) => {
                let budget = self.config.max_generations - 1;
                self.resume(*record, 0, budget, 0, inv).await
            }
            SourceClaim::Exists(record) => {
                if let Some(report) = self.take_over_if_gone(&record, inv).await? {
                    return Ok(report);
                }
                tracing::info!(
                    source_id = %record.source_id,
                    job_id = record.job_id.as_deref().unwrap_or(""),
                    state = record.state.as_str(),
                    "object version already has a job; redelivered event ignored"
                );
                Ok(report(
                    &record.source_id,
                    record.job_id.as_deref(),
                    record.generation,
                    Action::Duplicate,
                    format!("already {}", record.state.as_str()),
                ))
            }
        }
    }

    async fn start_job(
        &self,
        source_id: &str,
        source: &JobSource,
        idempotency_key: &str,
        claimed_at_ms: u64,
        inv: &Invocation,
    ) -> Result<JobReport, PollerError> {
        let request = StartRequest {
            source: source.clone(),
            idempotency_key: idempotency_key.to_owned(),
        };
        let started = retry_transient_if(
            &API_RETRY,
            &self.poll_deadline(inv),
            ApiError::is_transient,
            || self.api.start(&request),
        )
        .await;
        let turn = |job_id: String, started_at_ms: u64| Turn {
            source_id: source_id.to_owned(),
            source: source.clone(),
            job_id,
            generation: 0,
            budget_remaining: self.config.max_generations - 1,
            poll_attempt: 0,
            started_at_ms,
        };
        match started {
            Ok(job_id) => {
                let now = (self.now_ms)();
                let work = self.work_deadline(inv);
                if self
                    .table
                    .record_started(
                        source_id,
                        &job_id,
                        &inv.request_id,
                        now,
                        self.lease_until(inv),
                        &work,
                    )
                    .await?
                {
                    tracing::info!(%source_id, %job_id, "job started");
                    return self.follow(turn(job_id, now), inv).await;
                }
                // The condition failed: another delivery recorded the start, or this very
                // invocation did and the answer was lost (the retried write then finds
                // its own turn). Only the turn's holder follows the job.
                let record = self
                    .table
                    .load(source_id, &work)
                    .await?
                    .ok_or_else(|| PollerError::UnknownSource(source_id.to_owned()))?;
                if record.held_by(0, &inv.request_id)
                    && record.job_id.as_deref() == Some(job_id.as_str())
                {
                    tracing::info!(%source_id, %job_id, "start recorded by this invocation's earlier attempt");
                    let budget = self.config.max_generations - 1;
                    self.resume(record, 0, budget, 0, inv).await
                } else {
                    tracing::info!(%source_id, %job_id, "a concurrent delivery recorded the start first");
                    Ok(report(
                        source_id,
                        Some(&job_id),
                        Some(0),
                        Action::Duplicate,
                        "start recorded by another invocation".to_owned(),
                    ))
                }
            }
            Err(e) if e.is_transient() => Err(PollerError::Start {
                source_id: source_id.to_owned(),
                source: e,
            }),
            Err(e) => {
                tracing::error!(%source_id, error = %e, "job could not be started");
                let outcome = Outcome {
                    state: JobState::Failed,
                    detail: format!("job could not be started: {e}"),
                };
                let failed = turn(String::new(), claimed_at_ms);
                self.finish(&failed, JobState::Starting, outcome, inv).await
            }
        }
    }

    async fn continue_job(
        &self,
        next: &Continuation,
        inv: &Invocation,
    ) -> Result<JobReport, PollerError> {
        let work = self.work_deadline(inv);
        let now = (self.now_ms)();
        let claimed = self
            .table
            .claim_turn(
                &next.source_id,
                &next.job_id,
                next.generation,
                &inv.request_id,
                now,
                self.lease_until(inv),
                &work,
            )
            .await?;
        if let Some(record) = claimed {
            tracing::info!(source_id = %next.source_id, job_id = %next.job_id, generation = next.generation, budget_remaining = next.budget_remaining, "turn claimed");
            return self
                .resume(
                    record,
                    next.generation,
                    next.budget_remaining,
                    next.poll_attempt,
                    inv,
                )
                .await;
        }
        let record = self
            .table
            .load(&next.source_id, &work)
            .await?
            .ok_or_else(|| PollerError::UnknownSource(next.source_id.clone()))?;
        if record.held_by(next.generation, &inv.request_id)
            && record.job_id.as_deref() == Some(next.job_id.as_str())
        {
            tracing::info!(source_id = %next.source_id, generation = next.generation, "retry resumes its own turn");
            return self
                .resume(
                    record,
                    next.generation,
                    next.budget_remaining,
                    next.poll_attempt,
                    inv,
                )
                .await;
        }
        if record.job_id.as_deref() == Some(next.job_id.as_str())
            && let Some(report) = self.take_over_if_gone(&record, inv).await?
        {
            return Ok(report);
        }
        tracing::info!(
            source_id = %next.source_id,
            job_id = %next.job_id,
            generation = next.generation,
            recorded_generation = record.generation,
            state = record.state.as_str(),
            "turn already taken; duplicate invocation exits"
        );
        Ok(report(
            &next.source_id,
            Some(&next.job_id),
            Some(next.generation),
            Action::Duplicate,
            format!(
                "turn not available: job is {} at generation {}",
                record.state.as_str(),
                record.generation.map_or("-".to_owned(), |g| g.to_string())
            ),
        ))
    }

    /// When this invocation's lease on a turn it claims now ends (epoch ms): its
    /// deadline plus `TURN_LEASE_GRACE_MS`. Past it the holder is certainly gone
    /// (Lambda stops an invocation at its deadline), so a redriven or retried event
    /// may take the job over.
    fn lease_until(&self, inv: &Invocation) -> u64 {
        let left = u64::try_from(inv.deadline.remaining().as_millis()).unwrap_or(u64::MAX);
        let grace = u64::try_from(self.config.lease_grace.as_millis()).unwrap_or(u64::MAX);
        (self.now_ms)().saturating_add(left).saturating_add(grace)
    }

    /// A job left by an invocation that is gone (its lease ended: it failed, and its
    /// event went to Lambda's retries or the failure queue) is taken over: a running
    /// job by claiming the next generation and following it, a finished one by
    /// notifying it if nobody did. `None` when the job is not left (still held, or
    /// done): the caller reports the duplicate.
    async fn take_over_if_gone(
        &self,
        record: &JobRecord,
        inv: &Invocation,
    ) -> Result<Option<JobReport>, PollerError> {
        let now = (self.now_ms)();
        if !record.lease_ended(now) {
            return Ok(None);
        }
        if record.state.is_terminal() {
            if record.notified {
                return Ok(None);
            }
            if let Some(owner) = record.notify_owner.as_deref()
                && owner != inv.request_id
                && !self
                    .table
                    .take_over_notification(
                        &record.source_id,
                        owner,
                        &inv.request_id,
                        now,
                        &self.work_deadline(inv),
                    )
                    .await?
            {
                return Ok(None);
            }
            tracing::warn!(source_id = %record.source_id, state = record.state.as_str(), "outcome recorded but never notified, and its lease ended: notifying it");
            return self
                .notify_once(&Notification::from_record(record), inv)
                .await
                .map(Some);
        }
        let (Some(job_id), Some(generation), Some(owner)) = (
            record.job_id.as_deref(),
            record.generation,
            record.turn_owner.as_deref(),
        ) else {
            return Ok(None);
        };
        if record.state != JobState::Running || owner == inv.request_id {
            return Ok(None);
        }
        let taken = self
            .table
            .take_over_turn(
                &record.source_id,
                job_id,
                generation,
                owner,
                &inv.request_id,
                now,
                self.lease_until(inv),
                &self.work_deadline(inv),
            )
            .await?;
        let Some(taken) = taken else {
            return Ok(None);
        };
        let next = generation + 1;
        let budget = self.config.max_generations.saturating_sub(next + 1);
        tracing::warn!(source_id = %record.source_id, %job_id, generation = next, gone = %owner, budget_remaining = budget, "took the job over: the generation holding it is gone (lease ended)");
        self.resume(taken, next, budget, 0, inv).await.map(Some)
    }

    /// Carries on with a turn this invocation holds, as recorded in `record`.
    async fn resume(
        &self,
        record: JobRecord,
        generation: u32,
        budget_remaining: u32,
        poll_attempt: u32,
        inv: &Invocation,
    ) -> Result<JobReport, PollerError> {
        if record.state.is_terminal() {
            return self
                .notify_once(&Notification::from_record(&record), inv)
                .await;
        }
        let Some(job_id) = record.job_id.clone() else {
            return Err(TableError::Malformed {
                source_id: record.source_id.clone(),
                why: "RUNNING without a job_id".to_owned(),
            }
            .into());
        };
        let turn = Turn {
            started_at_ms: record.started_at_ms.unwrap_or(record.claimed_at_ms),
            source_id: record.source_id,
            source: record.source,
            job_id,
            generation,
            budget_remaining,
            poll_attempt,
        };
        self.follow(turn, inv).await
    }

    /// Polls while time remains before the safety margin; then finishes, or hands over.
    async fn follow(&self, turn: Turn, inv: &Invocation) -> Result<JobReport, PollerError> {
        let poll_deadline = self.poll_deadline(inv);
        let schedule = Backoff::new(self.config.poll_initial, self.config.poll_max, 2.0);
        let mut attempt = turn.poll_attempt;
        if poll_deadline.is_past() {
            tracing::warn!(
                "no time to poll: SAFETY_MARGIN_MS is not below the time this invocation had"
            );
        }
        while !poll_deadline.is_past() {
            let polled = tokio::time::timeout(
                poll_deadline.remaining(),
                retry_transient_if(&API_RETRY, &poll_deadline, ApiError::is_transient, || {
                    self.api.status(&turn.job_id)
                }),
            )
            .await;
            let outcome = match polled {
                Err(_) => {
                    tracing::warn!(job_id = %turn.job_id, "status poll still unanswered at the safety margin");
                    break;
                }
                Ok(Ok(JobStatus::Running { status })) => {
                    tracing::debug!(job_id = %turn.job_id, %status, "job still running");
                    None
                }
                Ok(Ok(JobStatus::Succeeded { message })) => Some(Outcome {
                    state: JobState::Succeeded,
                    detail: message.unwrap_or_else(|| "job succeeded".to_owned()),
                }),
                Ok(Ok(JobStatus::Failed { message })) => Some(Outcome {
                    state: JobState::Failed,
                    detail: message.unwrap_or_else(|| "job failed".to_owned()),
                }),
                Ok(Err(e)) if e.is_transient() => {
                    tracing::warn!(job_id = %turn.job_id, error = %e, "status poll failing transiently");
                    None
                }
                Ok(Err(e)) => Some(Outcome {
                    state: JobState::Failed,
                    detail: e.to_string(),
                }),
            };
            if let Some(outcome) = outcome {
                return self.finish(&turn, JobState::Running, outcome, inv).await;
            }
            let interval = schedule.ceiling(attempt);
            attempt = attempt.saturating_add(1);
            if !poll_deadline.allows_sleep(interval) {
                break;
            }
            tokio::time::sleep(interval).await;
        }
        if turn.budget_remaining == 0 {
            let outcome = Outcome {
                state: JobState::BudgetExhausted,
                detail: format!(
                    "job {} still running after {} generations (MAX_GENERATIONS); no longer followed",
                    turn.job_id,
                    turn.generation + 1
                ),
            };
            return self.finish(&turn, JobState::Running, outcome, inv).await;
        }
        self.hand_off(&turn, attempt, inv).await
    }

    async fn hand_off(
        &self,
        turn: &Turn,
        poll_attempt: u32,
        inv: &Invocation,
    ) -> Result<JobReport, PollerError> {
        let next = Continuation::new(
            &turn.source_id,
            &turn.job_id,
            turn.generation + 1,
            turn.budget_remaining - 1,
            poll_attempt,
        );
        let payload = serde_json::to_vec(&next)
            .map_err(|e| InvalidEvent(format!("continuation could not be encoded: {e}")))?;
        self.invoke_self(payload, inv, &self.work_deadline(inv))
            .await?;
        tracing::info!(
            source_id = %turn.source_id,
            job_id = %turn.job_id,
            generation = next.generation,
            budget_remaining = next.budget_remaining,
            "handed over to the next generation"
        );
        Ok(report(
            &turn.source_id,
            Some(&turn.job_id),
            Some(turn.generation),
            Action::HandedOff,
            format!("generation {} invoked", next.generation),
        ))
    }

    /// Invokes this function again, asynchronously, with `payload`; transient failures
    /// are retried until `deadline`.
    async fn invoke_self(
        &self,
        payload: Vec<u8>,
        inv: &Invocation,
        deadline: &Deadline,
    ) -> Result<(), PollerError> {
        retry_sdk_call(&AWS_RETRY, deadline, deadline, || {
            self.lambda
                .invoke()
                .function_name(&inv.function_arn)
                .invocation_type(InvocationType::Event)
                .payload(Blob::new(payload.clone()))
                .send()
        })
        .await
        .map(|_| ())
        .map_err(|e| PollerError::HandOff {
            function: inv.function_arn.clone(),
            code: error_code(&e),
            transient: is_transient(&e),
        })
    }

    /// Records a notification published by an earlier invocation that could not
    /// record it itself. Failing is safe here (nothing is published), so table errors
    /// are returned and Lambda retries the event.
    async fn record_notification(
        &self,
        record: &NotificationRecord,
        inv: &Invocation,
    ) -> Result<JobReport, PollerError> {
        let source_id = &record.source_id;
        let recorded = self
            .table
            .mark_notified(
                source_id,
                &record.notify_owner,
                &record.message_id,
                record.notified_at_ms,
                &self.work_deadline(inv),
            )
            .await?;
        let done = |action| report(source_id, None, None, action, record.outcome.clone());
        if !recorded {
            tracing::warn!(%source_id, notify_owner = %record.notify_owner, message_id = %record.message_id, "notification not recorded: the item is gone or its notification claim is not this publisher's");
            return Ok(done(Action::Superseded));
        }
        tracing::info!(%source_id, message_id = %record.message_id, outcome = %record.outcome, "outcome notified (recorded by a record-notification invocation)");
        Ok(done(Action::NotificationRecorded))
    }

    /// Records the outcome while holding the turn, then notifies once.
    async fn finish(
        &self,
        turn: &Turn,
        from: JobState,
        outcome: Outcome,
        inv: &Invocation,
    ) -> Result<JobReport, PollerError> {
        // The job API's message can be any size: cut to what the item and one SNS
        // message hold, saying so, so the outcome is always recorded and notified.
        let outcome = outcome.bounded();
        let now = (self.now_ms)();
        let work = self.work_deadline(inv);
        let recorded = self
            .table
            .record_outcome(
                &turn.source_id,
                from,
                turn.generation,
                &inv.request_id,
                &outcome,
                now,
                &work,
            )
            .await?;
        if !recorded {
            let record = self
                .table
                .load(&turn.source_id, &work)
                .await?
                .ok_or_else(|| PollerError::UnknownSource(turn.source_id.clone()))?;
            if record.state.is_terminal() && record.held_by(turn.generation, &inv.request_id) {
                return self
                    .notify_once(&Notification::from_record(&record), inv)
                    .await;
            }
            tracing::warn!(
                source_id = %turn.source_id,
                generation = turn.generation,
                recorded_generation = record.generation,
                state = record.state.as_str(),
                "turn moved on; this invocation records nothing"
            );
            return Ok(report(
                &turn.source_id,
                (!turn.job_id.is_empty()).then_some(turn.job_id.as_str()),
                Some(turn.generation),
                Action::Superseded,
                None,
            ));
        }
        tracing::info!(source_id = %turn.source_id, job_id = %turn.job_id, outcome = outcome.state.as_str(), detail = %outcome.detail, "outcome recorded");
        let notification = Notification {
            job_id: (!turn.job_id.is_empty()).then(|| turn.job_id.clone()),
            source: turn.source.clone(),
            source_id: turn.source_id.clone(),
            outcome: outcome.state.as_str().to_owned(),
            detail: outcome.detail,
            duration_ms: now.saturating_sub(turn.started_at_ms),
            generations: turn.generation + 1,
            started_at_ms: turn.started_at_ms,
            finished_at_ms: now,
        };
        self.notify_once(&notification, inv).await
    }

    /// Publishes the notification unless it was (or is being) published already.
    async fn notify_once(
        &self,
        notification: &Notification,
        inv: &Invocation,
    ) -> Result<JobReport, PollerError> {
        let work = self.work_deadline(inv);
        let source_id = &notification.source_id;
        let done = |action| {
            report(
                source_id,
                notification.job_id.as_deref(),
                Some(notification.generations - 1),
                action,
                notification.outcome.clone(),
            )
        };
        if !self
            .table
            .claim_notification(source_id, &inv.request_id, &work)
            .await?
        {
            tracing::info!(%source_id, "outcome already notified");
            return Ok(done(Action::AlreadyNotified));
        }
        // `default` is the JSON every machine subscriber (SQS, Lambda, https) has always
        // received, unchanged; email subscribers get the same outcome as text.
        let json = serde_json::to_string(notification)
            .map_err(|e| InvalidEvent(format!("notification could not be encoded: {e}")))?;
        let text = outcome_text::email_text(notification, &self.config.jobs_table);
        let message = outcome_text::per_protocol_message(&json, &text)
            .map_err(|e| InvalidEvent(format!("notification could not be encoded: {e}")))?;
        let subject = outcome_text::subject(notification);
        let outcome = MessageAttributeValue::builder()
            .data_type("String")
            .string_value(&notification.outcome)
            .build()
            .map_err(|e| InvalidEvent(format!("notification attribute: {e}")))?;
        // Nothing was published yet: a retry with a fresh deadline is safe.
        let reserve = PUBLISH_RESERVE.min(self.config.safety_margin / 2);
        let attempts = work.with_margin(reserve);
        if attempts.is_past() {
            return Err(PollerError::PublishDeferred {
                source_id: source_id.clone(),
                left_ms: work.remaining().as_millis(),
                needed_ms: reserve.as_millis(),
            });
        }
        let published = retry_sdk_call(&AWS_RETRY, &attempts, &work, || {
            self.sns
                .publish()
                .topic_arn(&self.config.topic_arn)
                .message(&message)
                .message_structure("json")
                .subject(&subject)
                .message_attributes("outcome", outcome.clone())
                .send()
        })
        .await
        .map_err(|e| PollerError::Publish {
            source_id: source_id.clone(),
            topic: self.config.topic_arn.clone(),
            code: error_code(&e),
            transient: is_transient(&e),
        })?;
        let message_id = published.message_id.unwrap_or_default();
        // The notification is out. Failing now would make Lambda retry this invocation,
        // and the retry (holding the same claim) would publish a second time; so a
        // failure to record it is handed to a fresh invocation, or logged: never
        // returned. Nothing else can publish: the claim is this request id's.
        let record = NotificationRecord::new(
            source_id,
            &inv.request_id,
            &message_id,
            (self.now_ms)(),
            &notification.outcome,
        );
        // Recording stops half the publish reserve before the work deadline: the rest is
        // kept for handing the record to a fresh invocation.
        let record_until = work.with_margin(reserve / 2);
        let why = match self
            .table
            .mark_notified(
                source_id,
                &record.notify_owner,
                &message_id,
                record.notified_at_ms,
                &record_until,
            )
            .await
        {
            Ok(true) => {
                tracing::info!(%source_id, %message_id, outcome = %notification.outcome, generations = notification.generations, "outcome notified");
                return Ok(done(Action::Finished));
            }
            Ok(false) => {
                tracing::error!(%source_id, %message_id, "outcome notified, but notified_at not recorded: the notification claim is no longer this invocation's");
                return Ok(done(Action::NotifiedUnrecorded));
            }
            Err(err) => err,
        };
        let payload = serde_json::to_vec(&record)
            .map_err(|e| InvalidEvent(format!("notification record could not be encoded: {e}")))?;
        match self.invoke_self(payload, inv, &work).await {
            Ok(()) => {
                tracing::warn!(%source_id, %message_id, outcome = %notification.outcome, error = %why, "outcome notified; notified_at not recorded here, handed to a record-notification invocation");
                Ok(done(Action::RecordHandedOff))
            }
            Err(err) => {
                tracing::error!(%source_id, %message_id, error = %why, handover = %err, "outcome notified, but notified_at not recorded nor handed over; the claim (notify_owner) keeps others from publishing");
                Ok(done(Action::NotifiedUnrecorded))
            }
        }
    }
}

#[cfg(test)]
#[path = "handler_tests.rs"]
mod tests;
