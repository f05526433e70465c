//! Notifying: the outcome recorded while holding the turn, then the one SNS
//! notification per job (published only by whoever claims `notify_owner`, never again
//! once `notified_at` is set), and the record that it was published. Decides that a
//! notification once out is never retried: a record that cannot be written here is
//! handed to a `record-notification` invocation, or logged.

use std::time::Duration;

use aws_sdk_sns::types::MessageAttributeValue;
use serde::{Deserialize, Serialize};
use sluice_aws::retry::{error_code, is_transient, retry_sdk_call};

use super::reclaim::{OwnWrite, Reread, after_conflict};
use super::summary::report;
use super::{AWS_RETRY, Action, Invocation, JobReport, Poller, PollerError, Turn};
use crate::event::{InvalidEvent, NotificationRecord};
use crate::job_api::{JobApi, JobSource};
use crate::outcome_text;
use crate::table::{JobRecord, JobState, MAX_DETAIL_BYTES, Outcome, truncate_detail};

/// No `Publish` attempt starts with less than this (at most half the safety margin)
/// left before the work deadline. A publish cut off at the deadline has an unknown
/// outcome, and the retry it causes may notify twice: starting only with time to spare
/// keeps that to a call slower than this.
const PUBLISH_RESERVE: Duration = Duration::from_secs(1);

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
    pub(super) fn from_record(record: &JobRecord) -> Self {
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

impl<A: JobApi> Poller<A> {
    /// Records a notification published by an earlier invocation that could not
    /// record it itself. Failing is safe here (nothing is published), so table errors
    /// are returned and Lambda retries the event.
    pub(super) async fn record_notification(
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
    pub(super) async fn finish(
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
            let own = OwnWrite::outcome(&inv.request_id, turn.generation);
            let record = match after_conflict(&self.table, &turn.source_id, own, &work).await? {
                Reread::Mine(record) => {
                    return self
                        .notify_once(&Notification::from_record(&record), inv)
                        .await;
                }
                Reread::Theirs(record) => record,
            };
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
    pub(super) async fn notify_once(
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
