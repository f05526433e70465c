//! Counter files, their keys and ordering stamps (`counter_mapper::{counter_file,
//! counter_key, stamp}`): everything counter-mapper reads from an instance's upload.
//!
//! Checks, for any bytes: parsing never panics; every non-blank line is accounted for
//! exactly once, as a counter value (the last line of each counter) or as a named problem
//! (`counters + malformed == non-blank lines`); counters are unique, non-empty, free of
//! whitespace and within the name limit, and each value is what `parse_line` reads from
//! its last line; problems are sorted by line and have a stable reason. Keys rebuild to
//! the input when they parse; stamps order exactly as their S3 sequencers do.
#![no_main]

use std::collections::HashSet;

use counter_mapper::counter_file::{MAX_COUNTER_BYTES, parse_counter_file, parse_line};
use counter_mapper::counter_key::{CounterFileKey, FILE_PREFIX};
use counter_mapper::stamp::OrderingStamp;
use libfuzzer_sys::fuzz_target;
use sluice_events::compare_sequencers;

const REASONS: [&str; 6] = [
    "missing_value",
    "too_many_fields",
    "bad_value",
    "counter_too_long",
    "not_utf8",
    "superseded",
];

fn check_file(data: &[u8]) {
    let file = parse_counter_file(data);
    let lines: Vec<&[u8]> = data.split(|b| *b == b'\n').collect();
    let blank = |i: usize, line: &[u8]| {
        let line = if i == 0 {
            line.strip_prefix("\u{feff}".as_bytes()).unwrap_or(line)
        } else {
            line
        };
        std::str::from_utf8(line).is_ok_and(|t| t.split_whitespace().next().is_none())
    };
    let non_blank = lines
        .iter()
        .enumerate()
        .filter(|(i, l)| !blank(*i, l))
        .count();
    assert_eq!(file.counters.len() + file.malformed.len(), non_blank);

    let mut names = HashSet::new();
    for cv in &file.counters {
        assert!(names.insert(cv.counter.as_str()), "{:?} twice", cv.counter);
        assert!(!cv.counter.is_empty() && cv.counter.len() <= MAX_COUNTER_BYTES);
        assert!(!cv.counter.chars().any(char::is_whitespace));
    }
    // The value kept is the one on the counter's last line.
    for (i, line) in lines.iter().enumerate().rev() {
        let Ok(text) = std::str::from_utf8(line) else {
            continue;
        };
        let text = if i == 0 {
            text.strip_prefix('\u{feff}').unwrap_or(text)
        } else {
            text
        };
        if let Ok(Some(cv)) = parse_line(text)
            && names.remove(cv.counter.as_str())
        {
            assert!(file.counters.contains(&cv), "{cv:?} is not the kept value");
        }
    }
    assert!(names.is_empty(), "counters without a line: {names:?}");
    assert!(file.malformed.windows(2).all(|w| w[0].line <= w[1].line));
    for m in &file.malformed {
        assert!((1..=lines.len()).contains(&m.line));
        assert!(REASONS.contains(&m.problem.reason()), "{m:?}");
        assert!(m.snippet.chars().count() <= 81);
    }
}

fn check_key(key: &str, prefix: &str) {
    if let Ok(parsed) = CounterFileKey::parse(key, prefix) {
        assert_eq!(
            format!("{prefix}{}/{FILE_PREFIX}{}", parsed.date, parsed.instance),
            key
        );
    }
}

/// Any single allocation over 64 MiB is a crash (hostile length headers).
#[global_allocator]
static ALLOC: sluice_fuzz::LimitedAlloc = sluice_fuzz::LimitedAlloc;

fuzz_target!(|data: &[u8]| {
    check_file(data);
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    check_key(text, "counters/");
    check_key(text, "");
    if let Some((a, b)) = text.split_once('\n') {
        check_key(b, a);
        if let (Ok(sa), Ok(sb)) = (
            OrderingStamp::from_sequencer(Some(a)),
            OrderingStamp::from_sequencer(Some(b)),
        ) {
            assert_eq!(sa.cmp(&sb), compare_sequencers(a.trim(), b.trim()));
        }
    }
});
