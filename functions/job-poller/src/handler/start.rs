//! Starting: a new report (an S3 `ObjectCreated` notice) → its object version claimed
//! once → its job started with the version's idempotency key → generation 0's turn
//! recorded, and the job followed. Decides what is not a report (skipped), what
//! already has a job (a duplicate, or a start an earlier attempt left unfinished),
//! and that a start the job API rejects is a `FAILED` outcome.

use sluice_aws::retry::{Transient, retry_transient_if};
use sluice_events::S3Notice;

use super::reclaim::{OwnWrite, Reread, after_conflict};
use super::summary::report;
use super::{API_RETRY, Action, Invocation, JobReport, Poller, PollerError, Turn};
use crate::event::ObjectVersion;
use crate::job_api::{ApiError, JobApi, JobSource, StartRequest};
use crate::table::{JobState, Outcome, SourceClaim};

impl<A: JobApi> Poller<A> {
    pub(super) async fn start_for(
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
            SourceClaim::Exists(record) if OwnWrite::first_turn(&inv.request_id).is_in(&record) => {
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
                let own = OwnWrite::turn(&inv.request_id, 0, &job_id);
                match after_conflict(&self.table, source_id, own, &work).await? {
                    Reread::Mine(record) => {
                        tracing::info!(%source_id, %job_id, "start recorded by this invocation's earlier attempt");
                        let budget = self.config.max_generations - 1;
                        self.resume(record, 0, budget, 0, inv).await
                    }
                    Reread::Theirs(_) => {
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
}
