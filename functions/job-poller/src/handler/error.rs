//! Every way an invocation can fail, and the decision Lambda's retries and the
//! on-failure destination see: retryable or permanent, and the `errorType`
//! (`Retryable.<Kind>` / `Permanent.<Kind>`).

use sluice_aws::retry::Transient;
use sluice_lambda::FunctionError;

use crate::event::InvalidEvent;
use crate::job_api::ApiError;
use crate::table::TableError;

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
        FunctionError::classed(e.is_retryable(), e.kind(), e.to_string())
    }
}
