//! Request bodies of ingest-api's `POST /events` (`ingest_api::body`, `ingest_api::record`):
//! base64 and gzip decoding within a size limit, splitting JSON / JSON arrays / NDJSON into
//! events, and the Kinesis records built from them.
//!
//! The first byte's bit 0 picks NDJSON (else JSON), bit 1 sends the rest through the
//! base64 + `Content-Encoding: gzip` path (as raw gzip bytes); the rest is the body.
//!
//! Checks: nothing panics; decoded bodies never exceed the limit, and gzip of any body
//! decodes back to it; every event's text is a slice of the body that parses to exactly
//! the event's object, compacts to one line that parses to the same object, and becomes
//! a record that is that object plus the two server fields; NDJSON lines and array
//! indexes come in order.
#![no_main]

use std::io::Write;

use ingest_api::body::{BodyFormat, Position, compact, decode_body, split_events};
use ingest_api::record::{RecordSettings, RequestFacts, build_records};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const LIMIT: usize = 64 * 1024;

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(data).expect("in memory");
    encoder.finish().expect("in memory")
}

fn check_split(body: &[u8], format: BodyFormat) {
    let Ok(events) = split_events(body, format) else {
        return;
    };
    assert!(!events.is_empty());
    let range = body.as_ptr_range();
    let mut last = None;
    for event in &events {
        assert!(
            range.contains(&event.json.as_ptr()),
            "event text outside the body"
        );
        let parsed: Value = serde_json::from_slice(event.json).expect("event text parses");
        assert_eq!(parsed, Value::Object(event.object.clone()));
        let one_line = compact(event.json);
        assert!(!one_line.contains(&b'\n'));
        let reparsed: Value = serde_json::from_slice(&one_line).expect("compact text parses");
        assert_eq!(reparsed, parsed);
        let order = match (format, event.position) {
            (BodyFormat::Ndjson, Position::Line(n)) => n,
            (BodyFormat::Json, Position::Index(i)) => i + 1,
            (BodyFormat::Json, Position::Body) if events.len() == 1 => 1,
            (format, position) => panic!("{position:?} in a {format:?} body"),
        };
        assert!(last < Some(order), "positions out of order");
        last = Some(order);
    }

    let settings = RecordSettings {
        partition_key_field: Some("player_id".into()),
        received_at_field: "received_at".into(),
        request_id_field: "request_id".into(),
    };
    let facts = RequestFacts {
        request_id: "c6af9ac6-7b61-11e6-9a41-93e8deadbeef".into(),
        received_at_ms: 1_714_560_000_123,
    };
    let Ok(records) = build_records(&events, &settings, &facts, || "random".into()) else {
        return;
    };
    assert_eq!(records.len(), events.len());
    for (record, event) in records.iter().zip(&events) {
        assert_eq!(record.position, event.position);
        assert!(!record.data.contains(&b'\n'));
        let Value::Object(mut data) = serde_json::from_slice(&record.data).expect("record parses")
        else {
            panic!("record is not an object");
        };
        assert_eq!(
            data.remove("received_at"),
            Some(facts.received_at_ms.into())
        );
        assert_eq!(
            data.remove("request_id"),
            Some(facts.request_id.clone().into())
        );
        assert_eq!(data, event.object);
        assert!(!record.partition_key.is_empty());
    }
}

/// Any single allocation over 64 MiB is a crash (hostile length headers).
#[global_allocator]
static ALLOC: sluice_fuzz::LimitedAlloc = sluice_fuzz::LimitedAlloc;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let format = if flags & 1 == 1 {
        BodyFormat::Ndjson
    } else {
        BodyFormat::Json
    };
    if flags & 2 == 2 {
        // Hostile gzip (any bytes): bounded, never panics.
        let encoded = aws_smithy_types::base64::encode(rest);
        if let Ok(body) = decode_body(Some(&encoded), true, Some("gzip"), LIMIT) {
            assert!(body.len() <= LIMIT);
            check_split(&body, format);
        }
        // Real gzip of the bytes: decodes back to them; a limit below their size is refused.
        let encoded = aws_smithy_types::base64::encode(gzip(rest));
        let decoded = decode_body(Some(&encoded), true, Some("gzip"), LIMIT);
        if rest.len() <= LIMIT {
            assert_eq!(&*decoded.expect("gzip round trip"), rest);
        } else {
            assert!(decoded.is_err());
        }
        if !rest.is_empty() {
            assert!(decode_body(Some(&encoded), true, Some("gzip"), rest.len() - 1).is_err());
        }
    } else {
        if let Ok(text) = std::str::from_utf8(rest) {
            match decode_body(Some(text), false, None, LIMIT) {
                Ok(body) => assert_eq!(&*body, rest),
                Err(err) => assert!(rest.len() > LIMIT, "{err}"),
            }
        }
        check_split(rest, format);
    }
});
