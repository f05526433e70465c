//! "Did my earlier attempt win?": after a conditional write of this invocation's
//! fails, the item is read back and compared with what the write would have left.
//! Lambda retries an asynchronous invocation with the same request id, so a write
//! that failed its condition may have lost to this very invocation's earlier attempt
//! (which wrote, then lost its answer, crashed or timed out): then the invocation
//! carries on from what it recorded; otherwise another invocation won and this one
//! stops. Decides only which; every step that writes conditionally asks it here.

use sluice_aws::retry::Deadline;

use super::PollerError;
use crate::table::{JobRecord, JobsTable};

/// What a conditional write of this invocation's leaves in the item: the turn of
/// `generation` held by `request_id` and, when it names one, that job; for an
/// outcome, a terminal state as well.
#[derive(Debug, Clone, Copy)]
pub(super) struct OwnWrite<'a> {
    request_id: &'a str,
    generation: u32,
    job_id: Option<&'a str>,
    terminal: bool,
}

impl<'a> OwnWrite<'a> {
    /// Generation `generation`'s turn on job `job_id` (the start recorded for
    /// generation 0, or a later generation's turn claimed).
    pub(super) fn turn(request_id: &'a str, generation: u32, job_id: &'a str) -> Self {
        OwnWrite {
            request_id,
            generation,
            job_id: Some(job_id),
            terminal: false,
        }
    }

    /// Generation 0's turn on whichever job the item names: what an object version's
    /// claim finds when this invocation started its job before.
    pub(super) fn first_turn(request_id: &'a str) -> Self {
        OwnWrite {
            request_id,
            generation: 0,
            job_id: None,
            terminal: false,
        }
    }

    /// An outcome recorded while holding generation `generation`'s turn.
    pub(super) fn outcome(request_id: &'a str, generation: u32) -> Self {
        OwnWrite {
            request_id,
            generation,
            job_id: None,
            terminal: true,
        }
    }

    /// Whether `record` is as this write leaves it: this invocation (an earlier
    /// attempt of it) made it.
    pub(super) fn is_in(&self, record: &JobRecord) -> bool {
        record.held_by(self.generation, self.request_id)
            && self
                .job_id
                .is_none_or(|job_id| record.job_id.as_deref() == Some(job_id))
            && (!self.terminal || record.state.is_terminal())
    }
}

/// The item as read back after a conditional write failed.
#[derive(Debug)]
pub(super) enum Reread {
    /// This invocation's earlier attempt made the write: carry on from the item.
    Mine(JobRecord),
    /// Another invocation's write is there.
    Theirs(JobRecord),
}

/// Reads `source_id`'s item back (strongly consistent) after `own` failed its
/// condition, and tells whose write is there. A missing item is
/// [`PollerError::UnknownSource`].
pub(super) async fn after_conflict(
    table: &JobsTable,
    source_id: &str,
    own: OwnWrite<'_>,
    deadline: &Deadline,
) -> Result<Reread, PollerError> {
    let record = table
        .load(source_id, deadline)
        .await?
        .ok_or_else(|| PollerError::UnknownSource(source_id.to_owned()))?;
    Ok(if own.is_in(&record) {
        Reread::Mine(record)
    } else {
        Reread::Theirs(record)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job_api::JobSource;
    use crate::table::JobState;

    fn record(state: JobState, job_id: &str, generation: u32, owner: &str) -> JobRecord {
        JobRecord {
            source_id: "src".to_owned(),
            source: JobSource {
                bucket: "reports-bucket".to_owned(),
                key: "reports/sales.csv".to_owned(),
                etag: None,
                sequencer: None,
                version_id: None,
                uri: "s3://reports-bucket/reports/sales.csv".to_owned(),
            },
            idempotency_key: "key".to_owned(),
            state,
            job_id: Some(job_id.to_owned()),
            generation: Some(generation),
            turn_owner: Some(owner.to_owned()),
            claimed_at_ms: 0,
            started_at_ms: None,
            finished_at_ms: None,
            outcome_detail: None,
            notified: false,
            turn_expires_at_ms: None,
            notify_owner: None,
        }
    }

    #[test]
    fn a_turn_is_mine_only_with_my_request_id_generation_and_job() {
        let own = OwnWrite::turn("me", 2, "job-1");
        assert!(own.is_in(&record(JobState::Running, "job-1", 2, "me")));
        assert!(own.is_in(&record(JobState::Succeeded, "job-1", 2, "me")));
        assert!(!own.is_in(&record(JobState::Running, "job-2", 2, "me")));
        assert!(!own.is_in(&record(JobState::Running, "job-1", 2, "other")));
        assert!(!own.is_in(&record(JobState::Running, "job-1", 3, "me")));
    }

    #[test]
    fn a_first_turn_is_mine_whichever_job_it_names() {
        let own = OwnWrite::first_turn("me");
        assert!(own.is_in(&record(JobState::Running, "job-9", 0, "me")));
        assert!(!own.is_in(&record(JobState::Running, "job-9", 1, "me")));
        assert!(!own.is_in(&record(JobState::Running, "job-9", 0, "other")));
    }

    #[test]
    fn an_outcome_is_mine_only_once_recorded_in_my_turn() {
        let own = OwnWrite::outcome("me", 1);
        assert!(own.is_in(&record(JobState::Failed, "job-1", 1, "me")));
        assert!(!own.is_in(&record(JobState::Running, "job-1", 1, "me")));
        assert!(!own.is_in(&record(JobState::Failed, "job-1", 1, "other")));
        assert!(!own.is_in(&record(JobState::Failed, "job-1", 2, "me")));
    }
}
