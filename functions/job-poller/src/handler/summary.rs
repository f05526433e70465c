//! What one invocation answers (a [`Summary`] of one [`JobReport`] per job or object,
//! the JSON synchronous callers and logs see) and the CloudWatch metrics it emits:
//! decides each action's metric name.

use serde::Serialize;
use sluice_lambda::metrics::Metrics;

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
    pub fn count_into(&self, metrics: &mut Metrics) {
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
    }
}

pub(super) fn report(
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
