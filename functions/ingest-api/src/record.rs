//! From a client's event to the Kinesis record written for it: the event's own JSON
//! (compacted to one line, every value as the client wrote it — numbers are not
//! re-printed) with the receive time and request id appended, and its partition key.
//!
//! Pure: the caller supplies the request facts and the random-key source.

use serde_json::Value;
use sluice_aws::kinesis::{MAX_PARTITION_KEY_CHARS, MAX_RECORD_BYTES};

use crate::body::{Position, RawEvent, compact};

/// Which fields the record gets and where its partition key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordSettings {
    /// Top-level field whose value is the partition key; `None`: always random.
    pub partition_key_field: Option<String>,
    /// Field that receives the receive time, epoch milliseconds.
    pub received_at_field: String,
    /// Field that receives the API Gateway request id.
    pub request_id_field: String,
}

/// What the server knows about the request, the same for every event in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestFacts {
    pub request_id: String,
    pub received_at_ms: i64,
}

/// A record ready for `PutRecords`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRecord {
    pub position: Position,
    pub partition_key: String,
    pub data: Vec<u8>,
}

/// Why an otherwise well-formed event cannot become a record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error(
        "event at {position} already has a {field:?} field; the server sets it (rename the field)"
    )]
    ReservedField { position: Position, field: String },
    #[error("event at {position}: partition key field {field:?} {problem}")]
    PartitionKey {
        position: Position,
        field: String,
        problem: String,
    },
    #[error(
        "event at {position} makes a {size}-byte record (data + partition key), over the Kinesis limit of {limit} bytes; nothing was written"
    )]
    TooLarge {
        position: Position,
        size: usize,
        limit: usize,
    },
}

impl RecordError {
    /// `413` for an oversize record, `400` otherwise.
    pub fn status(&self) -> u16 {
        match self {
            RecordError::TooLarge { .. } => 413,
            _ => 400,
        }
    }
}

/// Builds every record, or refuses the whole request on the first event that cannot
/// be written as sent (so a refused request writes nothing).
pub fn build_records(
    events: &[RawEvent<'_>],
    settings: &RecordSettings,
    facts: &RequestFacts,
    mut random_key: impl FnMut() -> String,
) -> Result<Vec<EventRecord>, RecordError> {
    let suffix = enrichment_suffix(settings, facts);
    events
        .iter()
        .map(|event| {
            for field in [&settings.received_at_field, &settings.request_id_field] {
                if event.object.contains_key(field) {
                    return Err(RecordError::ReservedField {
                        position: event.position,
                        field: field.clone(),
                    });
                }
            }
            let partition_key = match &settings.partition_key_field {
                Some(field) => partition_key_of(event, field)?.unwrap_or_else(&mut random_key),
                None => random_key(),
            };
            let data = enrich(&compact(event.json), &suffix);
            let size = data.len() + partition_key.len();
            if size > MAX_RECORD_BYTES {
                return Err(RecordError::TooLarge {
                    position: event.position,
                    size,
                    limit: MAX_RECORD_BYTES,
                });
            }
            Ok(EventRecord {
                position: event.position,
                partition_key,
                data,
            })
        })
        .collect()
}

/// `"received_at":1714560000123,"request_id":"…"` (names and values JSON-escaped).
fn enrichment_suffix(settings: &RecordSettings, facts: &RequestFacts) -> Vec<u8> {
    let json = |s: &str| Value::String(s.to_owned()).to_string();
    format!(
        "{}:{},{}:{}",
        json(&settings.received_at_field),
        facts.received_at_ms,
        json(&settings.request_id_field),
        json(&facts.request_id)
    )
    .into_bytes()
}

/// Appends `members` to a compact JSON object.
fn enrich(object: &[u8], members: &[u8]) -> Vec<u8> {
    let body = object
        .strip_suffix(b"}")
        .expect("a compact JSON object ends with }");
    let mut out = Vec::with_capacity(object.len() + members.len() + 1);
    out.extend_from_slice(body);
    if body != b"{" {
        out.push(b',');
    }
    out.extend_from_slice(members);
    out.push(b'}');
    out
}

/// The key from `field`: strings as they are, numbers and booleans as JSON text;
/// `None` (random key) when the field is absent, null or an empty string.
fn partition_key_of(event: &RawEvent<'_>, field: &str) -> Result<Option<String>, RecordError> {
    let problem = |problem: String| RecordError::PartitionKey {
        position: event.position,
        field: field.to_owned(),
        problem,
    };
    let key = match event.object.get(field) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) if s.is_empty() => return Ok(None),
        Some(Value::String(s)) => s.clone(),
        Some(v @ (Value::Number(_) | Value::Bool(_))) => v.to_string(),
        Some(Value::Array(_) | Value::Object(_)) => {
            return Err(problem(
                "is an array or object; it must be a string, number or boolean".into(),
            ));
        }
    };
    let chars = key.chars().count();
    if chars > MAX_PARTITION_KEY_CHARS {
        return Err(problem(format!(
            "has {chars} characters; Kinesis partition keys have at most {MAX_PARTITION_KEY_CHARS}"
        )));
    }
    Ok(Some(key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::{BodyFormat, split_events};

    fn settings(key_field: Option<&str>) -> RecordSettings {
        RecordSettings {
            partition_key_field: key_field.map(str::to_owned),
            received_at_field: "received_at".into(),
            request_id_field: "request_id".into(),
        }
    }

    fn facts() -> RequestFacts {
        RequestFacts {
            request_id: "c6af9ac6-7b61-11e6-9a41-93e8deadbeef".into(),
            received_at_ms: 1_714_560_000_123,
        }
    }

    fn build(body: &str, key_field: Option<&str>) -> Result<Vec<EventRecord>, RecordError> {
        let events = split_events(body.as_bytes(), BodyFormat::Ndjson).unwrap();
        let mut n = 0;
        build_records(&events, &settings(key_field), &facts(), || {
            n += 1;
            format!("random-{n}")
        })
    }

    fn text(record: &EventRecord) -> &str {
        std::str::from_utf8(&record.data).unwrap()
    }

    #[test]
    fn record_is_the_event_as_sent_plus_receive_time_and_request_id() {
        let records = build(
            "{\"player_id\": \"p-7\", \"score\": 1.50, \"big\": 12345678901234567890123}\n{}",
            None,
        )
        .unwrap();
        assert_eq!(
            text(&records[0]),
            r#"{"player_id":"p-7","score":1.50,"big":12345678901234567890123,"received_at":1714560000123,"request_id":"c6af9ac6-7b61-11e6-9a41-93e8deadbeef"}"#
        );
        assert_eq!(
            text(&records[1]),
            r#"{"received_at":1714560000123,"request_id":"c6af9ac6-7b61-11e6-9a41-93e8deadbeef"}"#
        );
        let parsed: Value = serde_json::from_slice(&records[0].data).unwrap();
        assert_eq!(parsed["received_at"], 1_714_560_000_123_i64);
    }

    #[test]
    fn partition_key_comes_from_the_configured_field_else_random() {
        let records = build(
            "{\"player_id\":\"p-7\"}\n{\"player_id\":42}\n{\"other\":1}\n{\"player_id\":null}\n{\"player_id\":\"\"}",
            Some("player_id"),
        )
        .unwrap();
        let keys: Vec<&str> = records.iter().map(|r| r.partition_key.as_str()).collect();
        assert_eq!(keys, ["p-7", "42", "random-1", "random-2", "random-3"]);
    }

    #[test]
    fn without_a_key_field_every_event_gets_a_random_key() {
        let records = build("{\"player_id\":\"p-7\"}\n{\"player_id\":\"p-7\"}", None).unwrap();
        let keys: Vec<&str> = records.iter().map(|r| r.partition_key.as_str()).collect();
        assert_eq!(keys, ["random-1", "random-2"]);
    }

    #[test]
    fn object_valued_or_overlong_partition_keys_are_refused() {
        let err = build("{\"p\":1}\n{\"p\":{\"x\":1}}", Some("p")).unwrap_err();
        assert!(
            matches!(
                err,
                RecordError::PartitionKey {
                    position: Position::Line(2),
                    ..
                }
            ),
            "{err:?}"
        );
        let long = "k".repeat(257);
        let err = build(&format!("{{\"p\":\"{long}\"}}"), Some("p")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "event at line 1: partition key field \"p\" has 257 characters; Kinesis partition keys have at most 256"
        );
        assert_eq!(err.status(), 400);
    }

    #[test]
    fn an_event_carrying_a_server_field_is_refused() {
        let err = build("{\"n\":1}\n{\"request_id\":\"mine\"}", None).unwrap_err();
        assert_eq!(
            err,
            RecordError::ReservedField {
                position: Position::Line(2),
                field: "request_id".into()
            }
        );
    }

    #[test]
    fn a_record_over_one_mib_is_refused_not_truncated() {
        let filler = "x".repeat(MAX_RECORD_BYTES);
        let err = build(&format!("{{\"n\":1}}\n{{\"blob\":\"{filler}\"}}"), None).unwrap_err();
        match &err {
            RecordError::TooLarge { position, size, .. } => {
                assert_eq!(*position, Position::Line(2));
                assert!(*size > MAX_RECORD_BYTES);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(err.status(), 413);
    }

    #[test]
    fn a_record_exactly_at_the_limit_is_accepted() {
        let overhead =
            build("{\"b\":\"\"}", Some("none")).unwrap()[0].data.len() + "random-1".len();
        let filler = "y".repeat(MAX_RECORD_BYTES - overhead);
        let records = build(&format!("{{\"b\":\"{filler}\"}}"), None).unwrap();
        assert_eq!(
            records[0].data.len() + records[0].partition_key.len(),
            MAX_RECORD_BYTES
        );
    }

    #[test]
    fn field_names_and_request_ids_are_json_escaped() {
        let events = split_events(b"{\"a\":1}", BodyFormat::Json).unwrap();
        let settings = RecordSettings {
            partition_key_field: None,
            received_at_field: "meta\"at".into(),
            request_id_field: "rid".into(),
        };
        let facts = RequestFacts {
            request_id: "a\\b".into(),
            received_at_ms: 5,
        };
        let records = build_records(&events, &settings, &facts, || "k".into()).unwrap();
        let parsed: Value = serde_json::from_slice(&records[0].data).unwrap();
        assert_eq!(parsed["meta\"at"], 5);
        assert_eq!(parsed["rid"], "a\\b");
    }
}
