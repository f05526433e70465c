//! S3 notifications in every envelope (`sluice_events`): what avro-converter, crash-router,
//! counter-mapper and job-poller read first, from S3, SNS, SQS and EventBridge.
//!
//! Checks, for any bytes: `decode_s3_key` never panics, never grows the key, points a
//! malformed-escape error at a `%`, and agrees with an independent form encoder (encode
//! the decoded key, decode it: the same key); decoding an already-decoded key again
//! (the double-decode bug it exists to prevent) may fail but never panics. Every envelope
//! entry point either returns notices or an error, and every notification's `key` is
//! its `raw_key` decoded exactly once.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_events::aws_lambda_events::{eventbridge, s3, sns, sqs};
use sluice_events::{
    KeyError, S3Notice, compare_sequencers, decode_s3_key, eventbridge_notices, s3_event_notices,
    s3_notices_from_str, s3_notices_from_value, sns_event_notices, sqs_message_notices,
};

/// S3's notification key encoding (`application/x-www-form-urlencoded`), written
/// independently of the decoder under test.
fn form_encode(key: &str) -> String {
    let mut out = String::with_capacity(key.len() * 3);
    for b in key.bytes() {
        match b {
            b' ' => out.push('+'),
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' | b'/' => {
                out.push(char::from(b));
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn check_key(raw: &str) {
    match decode_s3_key(raw) {
        Ok(key) => {
            assert!(key.len() <= raw.len(), "decoding grew {raw:?} to {key:?}");
            assert_eq!(
                decode_s3_key(&form_encode(&key)).as_deref(),
                Ok(key.as_str())
            );
            // Decoding twice is the bug this function prevents; it must still be safe.
            let _ = decode_s3_key(&key);
        }
        Err(KeyError::MalformedEscape { key, offset }) => {
            assert_eq!(key, raw);
            assert_eq!(
                raw.as_bytes().get(offset),
                Some(&b'%'),
                "offset {offset} in {raw:?}"
            );
        }
        Err(KeyError::InvalidUtf8 { key, .. }) => assert_eq!(key, raw),
    }
}

fn check_notices(notices: &[S3Notice]) {
    for notice in notices {
        if let S3Notice::Object(event) = notice {
            // Notifications: key is raw_key decoded once. EventBridge: verbatim.
            if event.key != event.raw_key {
                assert_eq!(
                    decode_s3_key(&event.raw_key).as_deref(),
                    Ok(event.key.as_str())
                );
            }
            if let Some(seq) = &event.sequencer {
                assert_eq!(compare_sequencers(seq, seq), std::cmp::Ordering::Equal);
            }
            let _ = (event.is_object_created(), event.is_object_removed());
            assert_eq!(
                event.sequencer_cmp(event).is_some(),
                event.sequencer.is_some()
            );
        }
    }
}

/// Any single allocation over 64 MiB is a crash (hostile length headers).
#[global_allocator]
static ALLOC: sluice_fuzz::LimitedAlloc = sluice_fuzz::LimitedAlloc;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    check_key(text);
    if let Some((a, b)) = text.split_once('\n') {
        assert_eq!(compare_sequencers(a, b), compare_sequencers(b, a).reverse());
    }

    if let Ok(notices) = s3_notices_from_str(text) {
        check_notices(&notices);
    }
    let Ok(value) = serde_json::from_str::<serde_json::Value>(text) else {
        return;
    };
    if let Ok(notices) = s3_notices_from_value(&value) {
        check_notices(&notices);
    }
    // The typed Lambda events, as the runtime deserialises them.
    if let Ok(event) = serde_json::from_value::<sqs::SqsEvent>(value.clone()) {
        for (_, notices) in sqs_message_notices(&event) {
            if let Ok(notices) = notices {
                check_notices(&notices);
            }
        }
    }
    if let Ok(event) = serde_json::from_value::<sns::SnsEvent>(value.clone())
        && let Ok(notices) = sns_event_notices(&event)
    {
        check_notices(&notices);
    }
    if let Ok(event) = serde_json::from_value::<s3::S3Event>(value.clone())
        && let Ok(notices) = s3_event_notices(&event)
    {
        check_notices(&notices);
    }
    if let Ok(event) = serde_json::from_value::<eventbridge::EventBridgeEvent>(value)
        && let Ok(notices) = eventbridge_notices(&event)
    {
        check_notices(&notices);
    }
});
