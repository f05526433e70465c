//! S3 object notifications, whichever envelope they arrive in.
//!
//! Every entry point funnels into one `serde_json::Value` walker, which
//! recognises, at any depth:
//!
//! | shape                                                   | what it is                          |
//! |---------------------------------------------------------|-------------------------------------|
//! | `Records[].eventSource == "aws:s3"`                     | S3 event (S3 → Lambda, raw SQS/SNS) |
//! | `Records[].EventSource == "aws:sns"`, `Sns.Message`     | SNS → Lambda                        |
//! | `Records[].eventSource == "aws:sqs"`, `body`            | SQS → Lambda                        |
//! | `Type == "Notification"`, `Message`                     | SNS envelope in an SQS body         |
//! | `source == "aws.s3"`, `detail-type`, `detail`           | EventBridge (direct, or via SQS/SNS)|
//! | `Event == "s3:TestEvent"`                               | S3's configuration test message     |
//!
//! Message bodies (`body`, `Message`) are JSON strings and are parsed and
//! walked again, so SNS-in-SQS and EventBridge-in-SQS need no special case.
//!
//! Key encoding: S3 *notifications* form-encode object keys, and this module
//! decodes them exactly once ([`decode_s3_key`]). *EventBridge* events carry
//! the key as-is (not form-encoded): it is taken verbatim, and
//! `raw_key == key` for them. (The AWS docs only say "the object key name"
//! for EventBridge; emulators that URL-encode there, such as older LocalStack,
//! disagree with S3 and are not followed.)

use std::cmp::Ordering;

use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::error::EnvelopeError;
use crate::key::{compare_sequencers, decode_s3_key};

/// One object-level S3 event, independent of the envelope it came in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3ObjectEvent {
    pub bucket: String,
    /// The object key, decoded: pass this to the S3 API.
    pub key: String,
    /// The key exactly as it appeared in the event (form-encoded for S3
    /// notifications, verbatim for EventBridge).
    pub raw_key: String,
    pub size: Option<i64>,
    pub etag: Option<String>,
    pub sequencer: Option<String>,
    pub version_id: Option<String>,
    /// Notification event name without the `s3:` prefix, for example
    /// `ObjectCreated:Put`. EventBridge events are mapped onto the same names
    /// (`Object Created` + reason `PutObject` → `ObjectCreated:Put`).
    pub event_name: String,
    pub event_time: Option<OffsetDateTime>,
}

impl S3ObjectEvent {
    /// Any `ObjectCreated:*` event.
    pub fn is_object_created(&self) -> bool {
        self.event_name == "ObjectCreated" || self.event_name.starts_with("ObjectCreated:")
    }

    /// `ObjectCreated:Put` (a single PutObject; not multipart, copy or POST).
    pub fn is_object_created_put(&self) -> bool {
        self.event_name == "ObjectCreated:Put"
    }

    /// Any `ObjectRemoved:*` event (explicit deletes; lifecycle expirations
    /// are `LifecycleExpiration:*`).
    pub fn is_object_removed(&self) -> bool {
        self.event_name == "ObjectRemoved" || self.event_name.starts_with("ObjectRemoved:")
    }

    /// Orders two events of the same bucket and key by their sequencers.
    /// `None` when the objects differ or either event has no sequencer.
    pub fn sequencer_cmp(&self, other: &S3ObjectEvent) -> Option<Ordering> {
        if self.bucket != other.bucket || self.key != other.key {
            return None;
        }
        Some(compare_sequencers(
            self.sequencer.as_deref()?,
            other.sequencer.as_deref()?,
        ))
    }
}

/// What one S3 notification record means to a consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum S3Notice {
    Object(S3ObjectEvent),
    /// The `s3:TestEvent` S3 sends when a notification configuration is
    /// saved. Carries no object; callers skip it (it is not an error).
    TestEvent {
        bucket: Option<String>,
    },
}

impl S3Notice {
    pub fn as_object(&self) -> Option<&S3ObjectEvent> {
        match self {
            S3Notice::Object(event) => Some(event),
            S3Notice::TestEvent { .. } => None,
        }
    }

    pub fn into_object(self) -> Option<S3ObjectEvent> {
        match self {
            S3Notice::Object(event) => Some(event),
            S3Notice::TestEvent { .. } => None,
        }
    }
}

/// Notices from any supported envelope, given as parsed JSON: an S3, SNS or
/// SQS Lambda event, an EventBridge event, an SNS notification, or an
/// `s3:TestEvent`. Fails on the first record that cannot be read.
pub fn s3_notices_from_value(event: &Value) -> Result<Vec<S3Notice>, EnvelopeError> {
    notices_from_value(event, "event")
}

/// Notices from one message body: an SQS `body`, an SNS `Message`, or a raw
/// S3 / EventBridge event; wrappers inside are unwrapped.
pub fn s3_notices_from_str(message: &str) -> Result<Vec<S3Notice>, EnvelopeError> {
    notices_from_str(message, "message")
}

/// Notices per SQS message, in batch order, keyed by `messageId`, so a
/// caller can report failures as `batchItemFailures`. A message without a
/// `messageId` (never sent by SQS) gets an empty id.
pub fn sqs_message_notices(
    event: &aws_lambda_events::sqs::SqsEvent,
) -> Vec<(String, Result<Vec<S3Notice>, EnvelopeError>)> {
    event
        .records
        .iter()
        .map(|message| {
            let id = message.message_id.clone().unwrap_or_default();
            let at = format!("SQS message {id}");
            let notices = match &message.body {
                Some(body) => notices_from_str(body, &at),
                None => Err(EnvelopeError::MissingField {
                    at,
                    field: "body",
                    expected: "a string",
                }),
            };
            (id, notices)
        })
        .collect()
}

/// Notices from an SNS → Lambda event (all records, in order).
pub fn sns_event_notices(
    event: &aws_lambda_events::sns::SnsEvent,
) -> Result<Vec<S3Notice>, EnvelopeError> {
    let mut notices = Vec::new();
    for record in &event.records {
        let at = format!("SNS message {}", record.sns.message_id);
        notices.extend(notices_from_str(&record.sns.message, &at)?);
    }
    Ok(notices)
}

/// Notices from an S3 → Lambda event.
pub fn s3_event_notices(
    event: &aws_lambda_events::s3::S3Event,
) -> Result<Vec<S3Notice>, EnvelopeError> {
    let at = "S3 event";
    let value = serde_json::to_value(event).map_err(|source| EnvelopeError::Reserialise {
        at: at.into(),
        source,
    })?;
    notices_from_value(&value, at)
}

/// Notices from an EventBridge → Lambda event (S3 `Object Created` /
/// `Object Deleted`).
pub fn eventbridge_notices(
    event: &aws_lambda_events::eventbridge::EventBridgeEvent,
) -> Result<Vec<S3Notice>, EnvelopeError> {
    let at = match &event.id {
        Some(id) => format!("EventBridge event {id}"),
        None => "EventBridge event".to_owned(),
    };
    let value = serde_json::to_value(event).map_err(|source| EnvelopeError::Reserialise {
        at: at.clone(),
        source,
    })?;
    notices_from_value(&value, &at)
}

fn notices_from_str(message: &str, at: &str) -> Result<Vec<S3Notice>, EnvelopeError> {
    let value: Value =
        serde_json::from_str(message).map_err(|source| EnvelopeError::InvalidJson {
            at: at.to_owned(),
            snippet: snippet(message),
            source,
        })?;
    notices_from_value(&value, at)
}

fn snippet(message: &str) -> String {
    const MAX_CHARS: usize = 80;
    let mut chars = message.chars();
    let mut out: String = chars.by_ref().take(MAX_CHARS).collect();
    if chars.next().is_some() {
        out.push('…');
    }
    out
}

fn notices_from_value(value: &Value, at: &str) -> Result<Vec<S3Notice>, EnvelopeError> {
    let Some(object) = value.as_object() else {
        return Err(EnvelopeError::UnrecognisedEnvelope {
            at: at.to_owned(),
            fields: format!("none, a JSON {}", json_kind(value)),
        });
    };

    if let Some(records) = object.get("Records").and_then(Value::as_array) {
        let mut notices = Vec::with_capacity(records.len());
        for (index, record) in records.iter().enumerate() {
            let at = format!("{at} › Records[{index}]");
            notices.extend(notices_from_record(record, &at)?);
        }
        return Ok(notices);
    }

    if object.get("Event").and_then(Value::as_str) == Some("s3:TestEvent") {
        let bucket = object
            .get("Bucket")
            .and_then(Value::as_str)
            .map(str::to_owned);
        return Ok(vec![S3Notice::TestEvent { bucket }]);
    }

    if object.get("Type").and_then(Value::as_str) == Some("Notification") {
        let id = object
            .get("MessageId")
            .and_then(Value::as_str)
            .unwrap_or("?");
        let at = format!("{at} › SNS notification {id}");
        let message = object
            .get("Message")
            .and_then(Value::as_str)
            .ok_or_else(|| EnvelopeError::MissingField {
                at: at.clone(),
                field: "Message",
                expected: "a string",
            })?;
        return notices_from_str(message, &at);
    }

    if object.get("source").and_then(Value::as_str) == Some("aws.s3")
        && object.contains_key("detail-type")
    {
        return eventbridge_object_event(value, at).map(|event| vec![S3Notice::Object(event)]);
    }

    let mut fields: Vec<&str> = object.keys().map(String::as_str).take(12).collect();
    if object.len() > fields.len() {
        fields.push("…");
    }
    Err(EnvelopeError::UnrecognisedEnvelope {
        at: at.to_owned(),
        fields: fields.join(", "),
    })
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn notices_from_record(record: &Value, at: &str) -> Result<Vec<S3Notice>, EnvelopeError> {
    // S3 and SQS records spell it `eventSource`, SNS records `EventSource`.
    let event_source = record
        .get("eventSource")
        .or_else(|| record.get("EventSource"))
        .and_then(Value::as_str)
        .unwrap_or("");
    match event_source {
        "aws:s3" => Ok(vec![S3Notice::Object(notification_object_event(
            record, at,
        )?)]),
        "aws:sns" => {
            let id = str_at(record, &["Sns", "MessageId"]).unwrap_or("?");
            let at = format!("{at} (SNS message {id})");
            let message =
                str_at(record, &["Sns", "Message"]).ok_or_else(|| EnvelopeError::MissingField {
                    at: at.clone(),
                    field: "Sns.Message",
                    expected: "a string",
                })?;
            notices_from_str(message, &at)
        }
        "aws:sqs" => {
            let id = str_at(record, &["messageId"]).unwrap_or("?");
            let at = format!("{at} (SQS message {id})");
            let body = str_at(record, &["body"]).ok_or_else(|| EnvelopeError::MissingField {
                at: at.clone(),
                field: "body",
                expected: "a string",
            })?;
            notices_from_str(body, &at)
        }
        other => Err(EnvelopeError::UnsupportedEventSource {
            at: at.to_owned(),
            event_source: other.to_owned(),
        }),
    }
}

/// One `Records[]` entry of an S3 event notification (event version 2.x).
fn notification_object_event(record: &Value, at: &str) -> Result<S3ObjectEvent, EnvelopeError> {
    let event_name = required_str(record, &["eventName"], "eventName", at)?;
    let event_name = event_name.strip_prefix("s3:").unwrap_or(event_name);
    let bucket = required_str(record, &["s3", "bucket", "name"], "s3.bucket.name", at)?;
    let raw_key = required_str(record, &["s3", "object", "key"], "s3.object.key", at)?;
    let key = decode_s3_key(raw_key).map_err(|source| EnvelopeError::Key {
        at: at.to_owned(),
        source,
    })?;
    Ok(S3ObjectEvent {
        bucket: bucket.to_owned(),
        key,
        raw_key: raw_key.to_owned(),
        size: optional_size(record, &["s3", "object", "size"], "s3.object.size", at)?,
        etag: optional_str(record, &["s3", "object", "eTag"]),
        sequencer: optional_str(record, &["s3", "object", "sequencer"]),
        version_id: optional_str(record, &["s3", "object", "versionId"]),
        event_name: event_name.to_owned(),
        event_time: optional_time(record, &["eventTime"], "eventTime", at)?,
    })
}

/// An EventBridge event from `aws.s3`.
fn eventbridge_object_event(event: &Value, at: &str) -> Result<S3ObjectEvent, EnvelopeError> {
    let at = match str_at(event, &["id"]) {
        Some(id) => format!("{at} › EventBridge event {id}"),
        None => format!("{at} › EventBridge event"),
    };
    let at = at.as_str();
    let detail_type = required_str(event, &["detail-type"], "detail-type", at)?;
    let reason = str_at(event, &["detail", "reason"]);
    let event_name = match detail_type {
        "Object Created" => match reason {
            Some("PutObject") => "ObjectCreated:Put".to_owned(),
            Some("PostObject") => "ObjectCreated:Post".to_owned(),
            Some("CopyObject") => "ObjectCreated:Copy".to_owned(),
            Some("CompleteMultipartUpload") => "ObjectCreated:CompleteMultipartUpload".to_owned(),
            Some(other) => format!("ObjectCreated:{other}"),
            None => "ObjectCreated".to_owned(),
        },
        "Object Deleted" => {
            let marker =
                str_at(event, &["detail", "deletion-type"]) == Some("Delete Marker Created");
            match (reason, marker) {
                (Some("Lifecycle Expiration"), false) => "LifecycleExpiration:Delete".to_owned(),
                (Some("Lifecycle Expiration"), true) => {
                    "LifecycleExpiration:DeleteMarkerCreated".to_owned()
                }
                (_, false) => "ObjectRemoved:Delete".to_owned(),
                (_, true) => "ObjectRemoved:DeleteMarkerCreated".to_owned(),
            }
        }
        other => {
            return Err(EnvelopeError::UnsupportedDetailType {
                at: at.to_owned(),
                detail_type: other.to_owned(),
            });
        }
    };
    let bucket = required_str(
        event,
        &["detail", "bucket", "name"],
        "detail.bucket.name",
        at,
    )?;
    let key = required_str(event, &["detail", "object", "key"], "detail.object.key", at)?;
    Ok(S3ObjectEvent {
        bucket: bucket.to_owned(),
        key: key.to_owned(),
        raw_key: key.to_owned(),
        size: optional_size(
            event,
            &["detail", "object", "size"],
            "detail.object.size",
            at,
        )?,
        etag: optional_str(event, &["detail", "object", "etag"]),
        sequencer: optional_str(event, &["detail", "object", "sequencer"]),
        version_id: optional_str(event, &["detail", "object", "version-id"]),
        event_name,
        event_time: optional_time(event, &["time"], "time", at)?,
    })
}

fn value_at<'v>(value: &'v Value, path: &[&str]) -> Option<&'v Value> {
    path.iter().try_fold(value, |v, segment| v.get(segment))
}

fn str_at<'v>(value: &'v Value, path: &[&str]) -> Option<&'v str> {
    value_at(value, path).and_then(Value::as_str)
}

fn required_str<'v>(
    value: &'v Value,
    path: &[&str],
    field: &'static str,
    at: &str,
) -> Result<&'v str, EnvelopeError> {
    str_at(value, path).ok_or_else(|| EnvelopeError::MissingField {
        at: at.to_owned(),
        field,
        expected: "a string",
    })
}

/// A string field; absent, `null` and `""` are all `None` (S3-compatible
/// stores send `"versionId": ""` for unversioned buckets).
fn optional_str(value: &Value, path: &[&str]) -> Option<String> {
    str_at(value, path)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// Object size: a JSON integer (AWS), or a decimal string (some
/// S3-compatible stores). Absent or `null` (delete events) is `None`.
fn optional_size(
    value: &Value,
    path: &[&str],
    field: &'static str,
    at: &str,
) -> Result<Option<i64>, EnvelopeError> {
    match value_at(value, path) {
        None | Some(Value::Null) => Some(None),
        Some(Value::Number(n)) => n.as_i64().map(Some),
        Some(Value::String(s)) => s.parse::<i64>().ok().map(Some),
        Some(_) => None,
    }
    .ok_or_else(|| EnvelopeError::MissingField {
        at: at.to_owned(),
        field,
        expected: "an integer",
    })
}

fn optional_time(
    value: &Value,
    path: &[&str],
    field: &'static str,
    at: &str,
) -> Result<Option<OffsetDateTime>, EnvelopeError> {
    match value_at(value, path) {
        None | Some(Value::Null) => Ok(None),
        // Checked: `9999-12-31T23:59:59-01:00` parses but is past year 9999 in UTC, where
        // the unchecked `to_offset` panics (found by the s3_envelope fuzz target).
        Some(Value::String(s)) => OffsetDateTime::parse(s, &Rfc3339)
            .ok()
            .and_then(|t| t.checked_to_offset(time::UtcOffset::UTC))
            .map(Some)
            .ok_or_else(|| EnvelopeError::InvalidTime {
                at: at.to_owned(),
                field,
                value: s.clone(),
            }),
        Some(other) => Err(EnvelopeError::InvalidTime {
            at: at.to_owned(),
            field,
            value: other.to_string(),
        }),
    }
}
