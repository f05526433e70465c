//! Partial batch responses.
//!
//! Stream sources (Kinesis, DynamoDB streams) checkpoint: Lambda resumes the
//! shard at the lowest sequence number reported, so only the first failed
//! record matters and everything after it is redelivered. SQS deletes every
//! message not reported, so each failed message id must be listed.
//! These builders encode those two rules once.

use std::cmp::Ordering;

use aws_lambda_events::event::sqs::SqsBatchResponse;
use aws_lambda_events::event::streams::{
    DynamoDbBatchItemFailure, DynamoDbEventResponse, KinesisEventResponse,
};
use sluice_events::compare_sequence_numbers;

/// A stream record without a sequence number cannot be checkpointed: the whole batch
/// fails (Lambda retries it, bisecting), as `Permanent.UncheckpointableRecord`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stream record {event_id} has no sequence number; failing the whole batch")]
pub struct UncheckpointableRecord {
    pub event_id: String,
}

impl From<UncheckpointableRecord> for crate::FunctionError {
    fn from(err: UncheckpointableRecord) -> Self {
        crate::FunctionError::permanent("UncheckpointableRecord", err.to_string())
    }
}

/// The failure report of a Kinesis or DynamoDB stream batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamCheckpoint {
    first_failed: Option<String>,
}

impl StreamCheckpoint {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a failed record; keeps the lowest sequence number seen.
    pub fn fail(&mut self, sequence_number: &str) {
        let lower = match &self.first_failed {
            None => true,
            Some(cur) => compare_sequence_numbers(sequence_number, cur) == Ordering::Less,
        };
        if lower {
            self.first_failed = Some(sequence_number.to_string());
        }
    }

    /// The sequence number Lambda will resume from, if any record failed.
    pub fn first_failed(&self) -> Option<&str> {
        self.first_failed.as_deref()
    }

    pub fn is_clean(&self) -> bool {
        self.first_failed.is_none()
    }

    pub fn kinesis_response(&self) -> KinesisEventResponse {
        let mut r = KinesisEventResponse::default();
        if let Some(seq) = &self.first_failed {
            r.add_failure(seq.clone());
        }
        r
    }

    pub fn dynamodb_response(&self) -> DynamoDbEventResponse {
        let mut r = DynamoDbEventResponse::default();
        if let Some(seq) = &self.first_failed {
            let mut failure = DynamoDbBatchItemFailure::default();
            failure.item_identifier = Some(seq.clone());
            r.batch_item_failures.push(failure);
        }
        r
    }
}

/// The failure report of an SQS batch: every failed message id, once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SqsFailures {
    ids: Vec<String>,
}

impl SqsFailures {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn fail(&mut self, message_id: &str) {
        if !self.ids.iter().any(|id| id == message_id) {
            self.ids.push(message_id.to_string());
        }
    }

    pub fn failed_ids(&self) -> &[String] {
        &self.ids
    }

    pub fn is_clean(&self) -> bool {
        self.ids.is_empty()
    }

    pub fn response(&self) -> SqsBatchResponse {
        let mut r = SqsBatchResponse::default();
        for id in &self.ids {
            r.add_failure(id.clone());
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reports_lowest_failed_sequence_number_as_the_only_kinesis_failure() {
        let mut c = StreamCheckpoint::new();
        c.fail("49590338271490256608559692540925702759324208523137515618");
        c.fail("49590338271490256608559692538361571095921575989136588898");
        c.fail("49590338271490256608559692541000000000000000000000000000");
        let body = serde_json::to_value(c.kinesis_response()).unwrap();
        assert_eq!(
            body,
            json!({"batchItemFailures": [{"itemIdentifier": "49590338271490256608559692538361571095921575989136588898"}]})
        );
    }

    #[test]
    fn sequence_numbers_compare_numerically_not_lexically() {
        assert_eq!(compare_sequence_numbers("900", "1000"), Ordering::Less);
        assert_eq!(compare_sequence_numbers("0100", "100"), Ordering::Equal);
        let mut c = StreamCheckpoint::new();
        c.fail("1000");
        c.fail("900");
        assert_eq!(c.first_failed(), Some("900"));
    }

    #[test]
    fn clean_stream_batch_reports_no_failures() {
        let c = StreamCheckpoint::new();
        assert!(c.is_clean());
        let body = serde_json::to_value(c.dynamodb_response()).unwrap();
        assert_eq!(body, json!({"batchItemFailures": []}));
    }

    #[test]
    fn sqs_failures_list_each_message_once() {
        let mut f = SqsFailures::new();
        f.fail("m-1");
        f.fail("m-3");
        f.fail("m-1");
        let body = serde_json::to_value(f.response()).unwrap();
        assert_eq!(
            body,
            json!({"batchItemFailures": [{"itemIdentifier": "m-1"}, {"itemIdentifier": "m-3"}]})
        );
    }
}
