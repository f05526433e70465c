//! Crash ids and raw-crash keys (`crash_router::crash`), and the routing verdict built on
//! them (`crash_router::handler::classify`).
//!
//! Checks, for any text: parsing never panics (multi-byte characters at any offset
//! included); a parsed id is the input itself, 36 bytes, dated in 20yy, with a sample
//! bucket in 0..100; a parsed key rebuilds to the input (prefix, entropy, the id's date
//! as yyyymmdd, the id); every rejection has one of the documented reasons; a Put of the
//! key is routed or deferred exactly when the key parses.
#![no_main]

use crash_router::crash::{CRASH_ID_LEN, CrashId, CrashKey, Throttle};
use crash_router::handler::{Verdict, classify};
use libfuzzer_sys::fuzz_target;
use sluice_events::{S3Notice, S3ObjectEvent};

const PREFIX: &str = "v2/raw_crash/";
const REASONS: [&str; 4] = [
    "wrong_prefix",
    "malformed_key",
    "malformed_crash_id",
    "date_mismatch",
];

fn check_id(text: &str) {
    match CrashId::parse(text) {
        Ok(id) => {
            assert_eq!(id.as_str(), text);
            assert_eq!(id.to_string(), text);
            assert_eq!(text.len(), CRASH_ID_LEN);
            assert!((2000..2100).contains(&id.date().year()), "{:?}", id.date());
            assert!(id.sample_bucket() < 100);
            let expected = if text.as_bytes()[29] == b'0' {
                Throttle::Accept
            } else {
                Throttle::Defer
            };
            assert_eq!(id.throttle(), expected);
        }
        Err(err) => assert!(!err.to_string().is_empty()),
    }
}

fn check_key(key: &str, prefix: &str) {
    let parsed = CrashKey::parse(key, prefix);
    match &parsed {
        Ok(parsed) => {
            let d = parsed.crash_id.date();
            let rebuilt = format!(
                "{prefix}{}/{:04}{:02}{:02}/{}",
                parsed.entropy,
                d.year(),
                u8::from(d.month()),
                d.day(),
                parsed.crash_id
            );
            assert_eq!(rebuilt, key);
        }
        Err(rejection) => {
            assert!(REASONS.contains(&rejection.reason()), "{rejection:?}");
            assert!(!rejection.to_string().is_empty());
        }
    }
    let notice = S3Notice::Object(S3ObjectEvent {
        bucket: "crashes".into(),
        key: key.to_owned(),
        raw_key: key.to_owned(),
        size: None,
        etag: None,
        sequencer: None,
        version_id: None,
        event_name: "ObjectCreated:Put".into(),
        event_time: None,
    });
    match (classify(&notice, prefix), parsed) {
        (Verdict::Route(id) | Verdict::Defer(id), Ok(parsed)) => assert_eq!(id, parsed.crash_id),
        (Verdict::Skip { reason, .. }, Err(rejection)) => assert_eq!(reason, rejection.reason()),
        (verdict, parsed) => panic!("verdict {verdict:?} for parse result {parsed:?}"),
    }
}

/// Any single allocation over 64 MiB is a crash (hostile length headers).
#[global_allocator]
static ALLOC: sluice_fuzz::LimitedAlloc = sluice_fuzz::LimitedAlloc;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    check_id(text);
    check_key(text, PREFIX);
    // A first line, when there is one, is a prefix of its own (the CRASH_PREFIX setting).
    if let Some((prefix, key)) = text.split_once('\n') {
        check_id(key);
        check_key(key, prefix);
        check_key(&format!("{PREFIX}{key}"), PREFIX);
    }
});
