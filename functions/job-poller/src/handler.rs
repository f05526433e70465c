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
//!   invocations with the same request id) may resume its own turn or claim: `reclaim`
//!   tells, after a conditional write fails, whether that earlier attempt made it.
//!
//! One module per concern, each deciding one thing:
//! - `start`: a new report → claim its object version, start its job (or find the
//!   one an earlier attempt started), and hold generation 0's turn;
//! - `follow`: poll while time remains, then hand over to the next generation by an
//!   asynchronous self-invoke, claim (or take over) a generation's turn;
//! - `notify`: record the outcome while holding the turn, publish the one SNS
//!   notification, and record that it was published;
//! - `reclaim`: after a conditional write lost, whether it lost to this
//!   invocation's own earlier attempt (the one check every step uses);
//! - `summary`: what the invocation answers, and the metrics it emits;
//! - `error`: every failure, and whether a retry can succeed.

mod error;
mod follow;
mod notify;
mod reclaim;
mod start;
mod summary;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_lambda::types::InvocationType;
use aws_smithy_types::Blob;
use serde_json::Value;
use sluice_aws::retry::{Backoff, Deadline, error_code, is_transient, retry_sdk_call};
use sluice_lambda::FunctionError;

use crate::config::Config;
use crate::event::PollerEvent;
use crate::job_api::{JobApi, JobSource};
use crate::table::JobsTable;

pub use self::error::PollerError;
pub use self::notify::Notification;
pub use self::summary::{Action, JobReport, Summary};

/// Kept after every AWS call's deadline for answering the runtime: the function's
/// answer margin, so [`Invocation::deadline`] is already this much before the runtime's.
pub(crate) const RESPONSE_RESERVE: Duration = Duration::from_millis(300);
/// Retries of one job API call (on top of the poll interval).
const API_RETRY: Backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(2), 2.0);
/// Retries of SNS publish and Lambda invoke beyond the SDK's own.
const AWS_RETRY: Backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(1), 2.0);

/// What one invocation is: who it is (request id, for turn ownership), how to invoke
/// itself again (its ARN), and when its work must be done (the runtime's deadline less
/// [`RESPONSE_RESERVE`], applied by `sluice_lambda::serve`); its metrics.
pub use sluice_lambda::Invocation;

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

    /// One Lambda invocation: the event handled and its counts added to the invocation's
    /// metrics; a failure is logged and answered with its `errorType`.
    pub async fn invoke(
        &self,
        event: &Value,
        inv: &mut Invocation,
    ) -> Result<Summary, FunctionError> {
        match self.handle(event, inv).await {
            Ok(summary) => {
                summary.count_into(&mut inv.metrics);
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

    /// Every AWS call's deadline: the invocation's (the runtime's less RESPONSE_RESERVE).
    fn work_deadline(&self, inv: &Invocation) -> Deadline {
        inv.deadline
    }

    /// Polling stops `SAFETY_MARGIN_MS` before the runtime's deadline (never after the
    /// work deadline).
    fn poll_deadline(&self, inv: &Invocation) -> Deadline {
        inv.deadline
            .with_margin(self.config.safety_margin.saturating_sub(RESPONSE_RESERVE))
    }

    /// When this invocation's lease on a turn it claims now ends (epoch ms): its
    /// deadline plus `TURN_LEASE_GRACE_MS`. Past it the holder is certainly gone
    /// (Lambda stops an invocation at its deadline), so a redriven or retried event
    /// may take the job over.
    fn lease_until(&self, inv: &Invocation) -> u64 {
        let left = u64::try_from((inv.deadline.remaining() + RESPONSE_RESERVE).as_millis())
            .unwrap_or(u64::MAX);
        let grace = u64::try_from(self.config.lease_grace.as_millis()).unwrap_or(u64::MAX);
        (self.now_ms)().saturating_add(left).saturating_add(grace)
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
}

#[cfg(test)]
mod tests;
