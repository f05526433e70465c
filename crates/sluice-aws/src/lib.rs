//! AWS access for the sluice functions: SDK clients built from the environment,
//! retries with full-jitter backoff bounded by the invocation's deadline, and
//! batch writers that respect service limits and resend only what failed.
//!
//! What lives here:
//! - [`clients`]: one `SdkConfig` from the environment (LocalStack via
//!   `AWS_ENDPOINT_URL[_<SERVICE>]`, S3 switched to path-style addressing then).
//! - [`retry`]: [`Deadline`], [`Backoff`], [`retry_transient`] and the one place
//!   where SDK errors are classified transient or permanent ([`is_transient`]).
//! - [`error`]: [`ErrorKind`] and [`AwsError`] — that classification as one error for
//!   every service; [`S3Error`] and [`DynamoError`] answer `kind()` from it.
//! - [`kinesis`]: [`PutRecordsWriter`] — ≤500 records / ≤5 MiB per call, oversize
//!   records rejected up front, only failed entries resent.
//! - [`sqs`]: [`SendBatchWriter`] — ≤10 entries / ≤256 KiB per call, caller ids mapped
//!   to valid batch entry ids, only failed non-sender-fault entries resent.
//! - [`dynamodb`]: conditional `UpdateItem` / `PutItem` whose failed condition is an
//!   outcome ([`UpdateOutcome::ConditionFailed`]), not an error.
//! - [`idempotency`]: [`IdempotencyStore`] — a key's first request does the work and
//!   stores its answer, a repeat within the window gets it back (DynamoDB with TTL).
//! - [`s3`]: whole-object get/put with `NotFound` / transient / permanent errors, and
//!   conditional puts (`If-Match` / `If-None-Match`) for read-modify-write.
//!
//! What does not: event parsing (`sluice-events`), handler plumbing and configuration
//! (`sluice-lambda`), and any decision about what a function does with a failure —
//! the writers report, the handler decides (partial batch response, DLQ, error prefix).
//!
//! Retry layering: the SDK clients keep their own standard retry (a few quick attempts
//! on throttling, 5xx and connection errors). The loops here sit on top of it and add
//! what the SDK cannot know: partial batch failures (a `PutRecords` or
//! `SendMessageBatch` that *succeeds* with failed entries) and the Lambda deadline.
//! Every loop checks the deadline before each sleep and never sleeps past it.

mod batch_send;
mod batching;
pub mod clients;
pub mod dynamodb;
pub mod error;
pub mod idempotency;
pub mod kinesis;
pub mod retry;
pub mod s3;
pub mod sqs;

#[cfg(any(test, feature = "test-util"))]
pub mod test_support;

pub use dynamodb::{
    DynamoError, UpdateOutcome, get_item, put_conditional, put_if_absent, update_conditional,
};
pub use error::{AwsError, ErrorKind};
pub use idempotency::{Begin, IdempotencyStore};
pub use kinesis::{
    FailedRecord, OutgoingRecord, PutRecordsWriter, PutReport, RejectReason, Rejected,
};
pub use retry::{
    Backoff, Deadline, Transient, error_code, is_transient, retry_transient, retry_transient_if,
};
pub use s3::{
    PutCondition, PutOutcome, S3Error, copy_object, get_object_bytes, get_object_bytes_within,
    get_object_version_bytes, get_object_with_etag, head_object_etag, put_object_bytes,
    put_object_if,
};
pub use sqs::{FailedMessage, OutgoingMessage, SendBatchWriter, SendReport};
