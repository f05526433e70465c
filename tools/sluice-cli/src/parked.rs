//! What a failure path holds, read: Lambda's invocation records (async on-failure, stream
//! on-failure, a Kinesis batch kept on S3) and why each item was parked, in a line an
//! operator can act on.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `requestContext` / `responseContext` / `responsePayload` of an invocation record: why
/// Lambda gave the item up.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Reason {
    /// `RetriesExhausted`, `EventAgeExceeded`, `RetryAttemptsExhausted`, `RecordAgeExceeded`, …
    #[serde(skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    /// The function's `errorType` (`Retryable.S3`, `Permanent.InvalidEvent`, …), when it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    /// Attempts Lambda made (`approximateInvokeCount`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u64>,
    /// Free text when the record is of another kind (a DLQ message, an SNS delivery).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Reason {
    fn from_record(record: &Value) -> Reason {
        let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
        let request = record.get("requestContext");
        let response = record.get("responsePayload");
        let response = match response {
            // A function's error payload may arrive as a JSON string.
            Some(Value::String(s)) => serde_json::from_str(s).ok(),
            other => other.cloned(),
        };
        let function_error = text(record.pointer("/responseContext/functionError"));
        Reason {
            condition: text(request.and_then(|r| r.get("condition")))
                .or_else(|| text(record.get("condition"))),
            error_type: response
                .as_ref()
                .and_then(|r| text(r.get("errorType")))
                .or(function_error),
            error_message: response.as_ref().and_then(|r| text(r.get("errorMessage"))),
            attempts: request
                .and_then(|r| r.get("approximateInvokeCount"))
                .and_then(Value::as_u64),
            note: None,
        }
    }

    pub fn note(note: impl Into<String>) -> Reason {
        Reason {
            note: Some(note.into()),
            ..Reason::default()
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        match (&self.error_type, &self.error_message) {
            (Some(t), Some(m)) => parts.push(format!("{t}: {m}")),
            (Some(t), None) => parts.push(t.clone()),
            (None, Some(m)) => parts.push(m.clone()),
            (None, None) => {}
        }
        let mut after = Vec::new();
        if let Some(c) = &self.condition {
            after.push(c.clone());
        }
        if let Some(n) = self.attempts {
            after.push(format!("{n} attempts"));
        }
        if !after.is_empty() {
            if parts.is_empty() {
                parts.push(after.join(", "));
            } else {
                parts.push(format!("({})", after.join(", ")));
            }
        }
        if let Some(note) = &self.note {
            parts.push(note.clone());
        }
        f.write_str(&parts.join(" "))
    }
}

/// Why a record could not be read as what its path holds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unreadable {
    #[error("not JSON: {0}")]
    NotJson(String),
    #[error("no {0}: not a Lambda invocation record")]
    Missing(&'static str),
}

/// A record from an async on-failure destination (avro-converter, counter-mapper,
/// job-poller): the event the function was given, and why it failed.
#[derive(Debug, Clone, PartialEq)]
pub struct AsyncFailure {
    pub payload: Value,
    pub reason: Reason,
}

pub fn parse_async_failure(body: &str) -> Result<AsyncFailure, Unreadable> {
    let record: Value =
        serde_json::from_str(body).map_err(|e| Unreadable::NotJson(e.to_string()))?;
    let payload = record
        .get("requestPayload")
        .filter(|p| !p.is_null())
        .cloned()
        .ok_or(Unreadable::Missing("requestPayload"))?;
    // Lambda records a payload that was not JSON as a string; such an event is kept as is.
    Ok(AsyncFailure {
        payload,
        reason: Reason::from_record(&record),
    })
}

/// `DDBStreamBatchInfo` (DynamoDB stream mappings) / `KinesisBatchInfo` (Kinesis): the
/// shard and the sequence range of a batch Lambda gave up on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchInfo {
    pub shard_id: String,
    pub start_sequence_number: String,
    pub end_sequence_number: String,
    #[serde(default)]
    pub batch_size: Option<u64>,
    pub stream_arn: String,
    #[serde(default)]
    pub approximate_arrival_of_first_record: Option<String>,
}

/// A record from a stream mapping's on-failure queue (counter-aggregator, counter-reporter).
#[derive(Debug, Clone, PartialEq)]
pub struct StreamFailure {
    pub info: BatchInfo,
    pub reason: Reason,
}

pub fn parse_stream_failure(body: &str) -> Result<StreamFailure, Unreadable> {
    let record: Value =
        serde_json::from_str(body).map_err(|e| Unreadable::NotJson(e.to_string()))?;
    let info = record
        .get("DDBStreamBatchInfo")
        .or_else(|| record.get("KinesisBatchInfo"))
        .ok_or(Unreadable::Missing("DDBStreamBatchInfo"))?;
    let info: BatchInfo = serde_json::from_value(info.clone()).map_err(|_| {
        Unreadable::Missing("shardId/startSequenceNumber/endSequenceNumber/streamArn")
    })?;
    Ok(StreamFailure {
        info,
        reason: Reason::from_record(&record),
    })
}

/// A Kinesis batch the archiver's mapping kept whole on S3: the batch's records as the
/// function was given them (`payload`), and the batch's place on the stream.
#[derive(Debug, Clone, PartialEq)]
pub struct KeptBatch {
    pub info: BatchInfo,
    pub payload: Value,
    pub reason: Reason,
}

pub fn parse_kept_batch(bytes: &[u8]) -> Result<KeptBatch, Unreadable> {
    let record: Value =
        serde_json::from_slice(bytes).map_err(|e| Unreadable::NotJson(e.to_string()))?;
    let info = record
        .get("KinesisBatchInfo")
        .ok_or(Unreadable::Missing("KinesisBatchInfo"))?;
    let info: BatchInfo = serde_json::from_value(info.clone()).map_err(|_| {
        Unreadable::Missing("shardId/startSequenceNumber/endSequenceNumber/streamArn")
    })?;
    // LocalStack writes the event as an object; AWS documents `"payload": "<Whole Event>"`,
    // the event as a JSON string: both are read.
    let payload = match record.get("payload") {
        Some(Value::String(text)) => {
            serde_json::from_str(text).map_err(|e| Unreadable::NotJson(format!("payload: {e}")))?
        }
        Some(Value::Object(map)) => Value::Object(map.clone()),
        _ => return Err(Unreadable::Missing("payload")),
    };
    Ok(KeptBatch {
        info,
        payload,
        reason: Reason::from_record(&record),
    })
}

/// The first `max` characters of `text` on one line, for tables and skip reasons.
pub fn snippet(text: &str, max: usize) -> String {
    let one_line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let one_line = one_line.trim();
    if one_line.chars().count() <= max {
        one_line.to_owned()
    } else {
        let cut: String = one_line.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::async_record;
    use serde_json::json;

    #[test]
    fn an_async_failure_gives_its_event_and_why_it_failed() {
        let payload = json!({"Records": [{"eventSource": "aws:s3"}]});
        let failure = parse_async_failure(&async_record(
            payload.clone(),
            "Permanent.S3",
            "AccessDenied on GetObject",
        ))
        .unwrap();
        assert_eq!(failure.payload, payload);
        assert_eq!(
            failure.reason.to_string(),
            "Permanent.S3: AccessDenied on GetObject (RetriesExhausted, 3 attempts)"
        );
    }

    #[test]
    fn an_error_payload_given_as_a_string_is_read_too() {
        let body = json!({
            "requestContext": {"condition": "EventAgeExceeded"},
            "requestPayload": {"kind": "job-poller/continue"},
            "responsePayload": "{\"errorType\":\"Retryable.JobApi\",\"errorMessage\":\"503\"}"
        })
        .to_string();
        let failure = parse_async_failure(&body).unwrap();
        assert_eq!(
            failure.reason.error_type.as_deref(),
            Some("Retryable.JobApi")
        );
        assert_eq!(
            failure.reason.to_string(),
            "Retryable.JobApi: 503 (EventAgeExceeded)"
        );
    }

    #[test]
    fn a_message_that_is_not_an_invocation_record_says_so() {
        assert!(matches!(
            parse_async_failure("nope"),
            Err(Unreadable::NotJson(_))
        ));
        assert_eq!(
            parse_async_failure("{\"Records\": []}")
                .unwrap_err()
                .to_string(),
            "no requestPayload: not a Lambda invocation record"
        );
    }

    #[test]
    fn a_stream_failure_names_its_shard_and_range() {
        let body = json!({
            "requestContext": {"requestId": "r", "functionArn": "f", "condition": "RetryAttemptsExhausted", "approximateInvokeCount": 6},
            "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
            "version": "1.0",
            "timestamp": "2026-11-22T10:00:00.000Z",
            "DDBStreamBatchInfo": {
                "shardId": "shardId-00000001",
                "startSequenceNumber": "100",
                "endSequenceNumber": "105",
                "approximateArrivalOfFirstRecord": "2026-11-22T09:59:00Z",
                "approximateArrivalOfLastRecord": "2026-11-22T09:59:01Z",
                "batchSize": 6,
                "streamArn": "arn:aws:dynamodb:us-east-1:000000000000:table/t/stream/2026"
            }
        })
        .to_string();
        let failure = parse_stream_failure(&body).unwrap();
        assert_eq!(failure.info.shard_id, "shardId-00000001");
        assert_eq!(
            (
                failure.info.start_sequence_number.as_str(),
                failure.info.end_sequence_number.as_str()
            ),
            ("100", "105")
        );
        assert_eq!(failure.info.batch_size, Some(6));
        assert_eq!(
            failure.reason.to_string(),
            "Unhandled (RetryAttemptsExhausted, 6 attempts)"
        );
    }

    #[test]
    fn a_kept_batch_payload_is_read_as_an_object_or_a_json_string() {
        let event = json!({"Records": [{"kinesis": {"data": "eA=="}}]});
        let info = json!({"shardId": "shardId-000000000000", "startSequenceNumber": "1",
                          "endSequenceNumber": "2", "batchSize": 2, "streamArn": "arn:s"});
        for payload in [event.clone(), Value::String(event.to_string())] {
            let kept = json!({"requestContext": {"condition": "RetryAttemptsExhausted"},
                              "KinesisBatchInfo": info, "payload": payload});
            let batch = parse_kept_batch(kept.to_string().as_bytes()).unwrap();
            assert_eq!(batch.payload, event);
            assert_eq!(batch.info.end_sequence_number, "2");
            assert_eq!(
                batch.reason.condition.as_deref(),
                Some("RetryAttemptsExhausted")
            );
        }
        let without = json!({"KinesisBatchInfo": info});
        assert_eq!(
            parse_kept_batch(without.to_string().as_bytes()).unwrap_err(),
            Unreadable::Missing("payload")
        );
    }

    #[test]
    fn snippets_are_one_line_and_cut() {
        assert_eq!(snippet("a\nb", 10), "a b");
        assert_eq!(snippet("abcdefghij", 5), "abcd…");
    }
}
