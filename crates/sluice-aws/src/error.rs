//! One classification of AWS failures for every service.
//!
//! [`ErrorKind`] says what a failure means for the caller: try again later
//! ([`ErrorKind::Transient`], [`ErrorKind::OutOfTime`]), give up
//! ([`ErrorKind::Permanent`]), or the thing is not there ([`ErrorKind::NotFound`]).
//! [`AwsError`] is one failed call, classified once (by [`is_transient`]) with the
//! service, operation, code and message. The S3, DynamoDB, Kinesis and SQS helpers all
//! classify through it; [`crate::S3Error`] and [`crate::DynamoError`] add the object or
//! item the call was about, and answer [`kind`](crate::S3Error::kind) from the same
//! classification.

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::retry::{error_code, error_message, is_transient};

/// What a failure means for the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// A passing condition (throttling, 5xx, a dropped connection): a later attempt
    /// could succeed.
    Transient,
    /// Retrying will not help (validation, access denied, a missing table or bucket, …).
    Permanent,
    /// The object or item asked for does not exist (permanent for that request).
    NotFound,
    /// Still failing transiently when the deadline left no time for another attempt:
    /// a later invocation could succeed.
    OutOfTime,
}

impl ErrorKind {
    /// The kind of one SDK error: [`ErrorKind::Transient`] when [`is_transient`] says
    /// so, else [`ErrorKind::Permanent`].
    pub fn of<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> Self {
        if is_transient(err) {
            Self::Transient
        } else {
            Self::Permanent
        }
    }

    /// Whether a later attempt (a retry, the event's redelivery) could succeed.
    pub fn is_retryable(self) -> bool {
        matches!(self, Self::Transient | Self::OutOfTime)
    }
}

/// One failed AWS call, classified.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{service} {operation} failed: {code}: {message}")]
pub struct AwsError {
    pub kind: ErrorKind,
    /// `S3`, `DynamoDB`, `Kinesis`, `SQS`, …
    pub service: &'static str,
    pub operation: &'static str,
    /// The service's error code, or the kind of failure ([`error_code`]).
    pub code: String,
    pub message: String,
}

impl AwsError {
    pub fn from_sdk<E>(
        service: &'static str,
        operation: &'static str,
        err: &SdkError<E, HttpResponse>,
    ) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        Self {
            kind: ErrorKind::of(err),
            service,
            operation,
            code: error_code(err),
            message: error_message(err),
        }
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Whether a later attempt could succeed.
    pub fn is_transient(&self) -> bool {
        self.kind.is_retryable()
    }

    pub fn code(&self) -> &str {
        &self.code
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::http_response;
    use aws_sdk_kinesis::operation::put_records::PutRecordsError;

    fn service_error(status: u16, code: &str) -> SdkError<PutRecordsError, HttpResponse> {
        let meta = aws_smithy_types::error::ErrorMetadata::builder()
            .code(code)
            .message("m")
            .build();
        SdkError::service_error(PutRecordsError::generic(meta), http_response(status, ""))
    }

    #[test]
    fn one_call_is_classified_with_its_code_and_message() {
        let throttled = AwsError::from_sdk(
            "Kinesis",
            "PutRecords",
            &service_error(400, "ThrottlingException"),
        );
        assert_eq!(throttled.kind(), ErrorKind::Transient);
        assert!(throttled.is_transient());
        assert_eq!(
            throttled.to_string(),
            "Kinesis PutRecords failed: ThrottlingException: m"
        );
        let denied = AwsError::from_sdk(
            "Kinesis",
            "PutRecords",
            &service_error(403, "AccessDeniedException"),
        );
        assert_eq!(denied.kind(), ErrorKind::Permanent);
        assert_eq!(denied.code(), "AccessDeniedException");
        assert!(!denied.is_transient());
    }

    #[test]
    fn only_transient_and_out_of_time_are_retryable() {
        assert!(ErrorKind::Transient.is_retryable());
        assert!(ErrorKind::OutOfTime.is_retryable());
        assert!(!ErrorKind::Permanent.is_retryable());
        assert!(!ErrorKind::NotFound.is_retryable());
    }
}
