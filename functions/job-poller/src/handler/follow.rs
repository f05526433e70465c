//! Following: poll the job while time remains before the safety margin, then finish
//! it or hand over to the next generation by invoking this function again
//! asynchronously. Decides who follows a job: the holder of the generation's turn
//! (claimed `g - 1 → g`), or, when the holder is gone (its lease ended), whoever takes
//! it over as the next generation; everyone else is a duplicate and exits.

use sluice_aws::retry::{Backoff, Transient, retry_transient_if};

use super::reclaim::{OwnWrite, Reread, after_conflict};
use super::summary::report;
use super::{API_RETRY, Action, Invocation, JobReport, Notification, Poller, PollerError, Turn};
use crate::event::{Continuation, InvalidEvent};
use crate::job_api::{ApiError, JobApi, JobStatus};
use crate::table::{JobRecord, JobState, Outcome, TableError};

impl<A: JobApi> Poller<A> {
    pub(super) async fn continue_job(
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
        let own = OwnWrite::turn(&inv.request_id, next.generation, &next.job_id);
        let record = match after_conflict(&self.table, &next.source_id, own, &work).await? {
            Reread::Mine(record) => {
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
            Reread::Theirs(record) => record,
        };
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

    /// A job left by an invocation that is gone (its lease ended: it failed, and its
    /// event went to Lambda's retries or the failure queue) is taken over: a running
    /// job by claiming the next generation and following it, a finished one by
    /// notifying it if nobody did. `None` when the job is not left (still held, or
    /// done): the caller reports the duplicate.
    pub(super) async fn take_over_if_gone(
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
    pub(super) async fn resume(
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
    pub(super) async fn follow(
        &self,
        turn: Turn,
        inv: &Invocation,
    ) -> Result<JobReport, PollerError> {
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
}
