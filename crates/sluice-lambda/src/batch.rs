//! Partial batch responses.
//!
//! Stream sources (Kinesis, DynamoDB streams) checkpoint: Lambda resumes the
//! shard at the lowest sequence number reported, so only the first failed
//! record matters and everything after it is redelivered. SQS deletes every
//! message not reported, so each failed message id must be listed.
//! These builders encode those two rules once.

use std::cmp::Ordering;

use aws_lambda_events::event::dynamodb::Event as DynamoDbEvent;
use aws_lambda_events::event::sqs::SqsBatchResponse;
use aws_lambda_events::event::streams::{
    DynamoDbBatchItemFailure, DynamoDbEventResponse, KinesisEventResponse,
};
use serde::de::DeserializeOwned;
use sluice_events::{StreamChange, compare_sequence_numbers, stream_changes};

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

/// A DynamoDB stream record as a handler gets it.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamRecord<T> {
    /// Read, its images as `T`.
    Change(StreamChange<T>),
    /// Not readable: its sequence number (to report it as failed) and why.
    Unreadable {
        sequence_number: String,
        message: String,
    },
}

/// Every record of a DynamoDB stream batch, in order, its images read as `T`. A record
/// that cannot be read and has no sequence number cannot be reported as failed: the
/// batch fails whole ([`UncheckpointableRecord`]).
pub fn dynamodb_stream_records<T: DeserializeOwned>(
    event: &DynamoDbEvent,
) -> Result<Vec<StreamRecord<T>>, UncheckpointableRecord> {
    event
        .records
        .iter()
        .zip(stream_changes::<T>(event))
        .map(|(record, change)| match change {
            Ok(change) => Ok(StreamRecord::Change(change)),
            Err(err) => match record.change.sequence_number.clone() {
                Some(sequence_number) => Ok(StreamRecord::Unreadable {
                    sequence_number,
                    message: err.to_string(),
                }),
                None => Err(UncheckpointableRecord {
                    event_id: record.event_id.clone(),
                }),
            },
        })
        .collect()
}

/// A DynamoDB stream batch's answer: the partial batch response of its checkpoint, or,
/// when a record could not be checkpointed, the whole batch failed (logged).
pub fn dynamodb_answer(
    checkpoint: Result<StreamCheckpoint, UncheckpointableRecord>,
) -> Result<DynamoDbEventResponse, crate::FunctionError> {
    match checkpoint {
        Ok(checkpoint) => Ok(checkpoint.dynamodb_response()),
        Err(err) => {
            tracing::error!(error = %err, "batch failed");
            Err(err.into())
        }
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

    #[derive(Debug, Clone, PartialEq, serde::Deserialize)]
    struct Counter {
        value: i64,
    }

    fn dynamodb_event(records: serde_json::Value) -> DynamoDbEvent {
        serde_json::from_value(json!({ "Records": records })).unwrap()
    }

    fn record(
        event_id: &str,
        sequence_number: Option<&str>,
        value: serde_json::Value,
    ) -> serde_json::Value {
        let mut change = json!({
            "Keys": {"pk": {"S": "c"}},
            "NewImage": {"value": value},
            "StreamViewType": "NEW_AND_OLD_IMAGES",
            "SizeBytes": 10
        });
        if let Some(seq) = sequence_number {
            change["SequenceNumber"] = json!(seq);
        }
        json!({"eventID": event_id, "eventName": "INSERT", "eventSource": "aws:dynamodb",
               "awsRegion": "us-east-1", "dynamodb": change})
    }

    #[test]
    fn stream_records_keep_an_unreadable_record_with_its_sequence_number_and_why() {
        let event = dynamodb_event(json!([
            record("e1", Some("100"), json!({"N": "7"})),
            record("e2", Some("200"), json!({"S": "seven"})),
        ]));
        let records = dynamodb_stream_records::<Counter>(&event).unwrap();
        assert_eq!(records.len(), 2);
        let StreamRecord::Change(change) = &records[0] else {
            panic!("{:?}", records[0]);
        };
        assert_eq!(change.new_image, Some(Counter { value: 7 }));
        let StreamRecord::Unreadable {
            sequence_number,
            message,
        } = &records[1]
        else {
            panic!("{:?}", records[1]);
        };
        assert_eq!(sequence_number, "200");
        assert!(!message.is_empty());
    }

    #[test]
    fn an_unreadable_record_without_a_sequence_number_fails_the_batch_as_permanent() {
        let event = dynamodb_event(json!([
            record("e1", Some("100"), json!({"N": "7"})),
            record("e2", None, json!({"N": "8"})),
        ]));
        let err = dynamodb_stream_records::<Counter>(&event).unwrap_err();
        assert_eq!(err.event_id, "e2");
        let answer = dynamodb_answer(Err(err)).unwrap_err();
        assert_eq!(answer.error_type, "Permanent.UncheckpointableRecord");

        let mut checkpoint = StreamCheckpoint::new();
        checkpoint.fail("100");
        let answer = dynamodb_answer(Ok(checkpoint)).unwrap();
        assert_eq!(
            serde_json::to_value(answer).unwrap(),
            json!({"batchItemFailures": [{"itemIdentifier": "100"}]})
        );
    }

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
