//! The generated scenario: player events, snappy JSON files, crash uploads, counter files
//! and one report, sized by [`Scale`]. Pure functions of a seeded RNG (no I/O), so the
//! expected outputs are known before anything is sent.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// How much data each path gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scale {
    pub name: &'static str,
    /// Player events POSTed to the ingest API.
    pub events: usize,
    /// Events per POST.
    pub events_per_post: usize,
    /// Snappy JSON files for the avro-converter, and records in each (one of them invalid).
    pub avro_files: usize,
    pub records_per_file: usize,
    /// Raw-crash uploads (accepted, deferred and malformed mixed).
    pub crashes: usize,
    /// Counter files (one per instance) and counters in each.
    pub instances: usize,
    pub counters: usize,
}

impl Scale {
    pub const FULL: Scale = Scale {
        name: "full",
        events: 2000,
        events_per_post: 100,
        avro_files: 8,
        records_per_file: 250,
        crashes: 60,
        instances: 40,
        counters: 25,
    };
    pub const SMALL: Scale = Scale {
        name: "small",
        events: 200,
        events_per_post: 50,
        avro_files: 3,
        records_per_file: 40,
        crashes: 20,
        instances: 8,
        counters: 10,
    };

    pub fn parse(name: &str) -> Option<Scale> {
        match name {
            "full" => Some(Self::FULL),
            "small" => Some(Self::SMALL),
            _ => None,
        }
    }
}

/// A seeded RNG for one run.
pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

const EVENT_TYPES: [&str; 6] = [
    "login",
    "match_start",
    "match_end",
    "purchase",
    "level_up",
    "logout",
];
const PLATFORMS: [&str; 4] = ["ios", "android", "web", "switch"];

/// Player events for the ingest API: each carries the run id and its sequence number.
pub fn player_events(rng: &mut StdRng, run: &str, count: usize, now_ms: i64) -> Vec<Value> {
    (0..count)
        .map(|seq| {
            let kind = EVENT_TYPES[rng.random_range(0..EVENT_TYPES.len())];
            let mut event = json!({
                "player_id": format!("player-{:06}", rng.random_range(0..5000)),
                "event_type": kind,
                "demo_run": run,
                "seq": seq,
                "ts": (now_ms - rng.random_range(0..60_000)),
                "platform": (PLATFORMS[rng.random_range(0..PLATFORMS.len())]),
                "session_id": format!("s-{:016x}", rng.random::<u64>()),
            });
            match kind {
                "match_end" => event["score"] = json!(rng.random_range(0..50_000)),
                "purchase" => {
                    event["sku"] = json!(format!("skin.{:03}", rng.random_range(0..200)));
                    event["price_cents"] = json!(rng.random_range(99..4999));
                }
                "level_up" => event["level"] = json!(rng.random_range(2..80)),
                _ => {}
            }
            event
        })
        .collect()
}

/// NDJSON body of `events`.
pub fn ndjson(events: &[Value]) -> Vec<u8> {
    let mut out = Vec::new();
    for event in events {
        out.extend_from_slice(event.to_string().as_bytes());
        out.push(b'\n');
    }
    out
}

/// One snappy JSON input for the avro-converter.
#[derive(Debug, Clone)]
pub struct AvroFile {
    /// File name without directory, e.g. `demo-ab12cd34-03` (plus `.json.snappy`).
    pub stem: String,
    pub ndjson: Vec<u8>,
    /// Valid records per UTC hour (`(year, month, day, hour)`).
    pub per_hour: BTreeMap<(i32, u8, u8, u8), usize>,
    /// Records the schema rejects (exactly one per file).
    pub rejected: usize,
}

/// Player (video) events fitting the avro-converter's schema, spread over the last 90
/// minutes (so over two or three hour partitions), one invalid record per file.
pub fn avro_files(
    rng: &mut StdRng,
    run: &str,
    files: usize,
    records: usize,
    now_ms: i64,
) -> Vec<AvroFile> {
    (0..files)
        .map(|f| {
            let mut lines = Vec::with_capacity(records);
            let mut per_hour = BTreeMap::new();
            let bad = rng.random_range(0..records);
            for i in 0..records {
                let pts = now_ms - rng.random_range(0..5_400_000);
                let mut event = json!({
                    "PTS": pts,
                    "event_id": format!("{run}-{f:02}-{i:05}"),
                    "event_type": (["play", "heartbeat", "bitrate_change", "pause", "seek"][i % 5]),
                    "session_id": format!("s-{:016x}", rng.random::<u64>()),
                    "content_id": format!("title-{:05}", rng.random_range(0..3000)),
                    "user_id": if i % 7 == 0 { Value::Null } else { json!(format!("u-{:08}", rng.random_range(0..1_000_000))) },
                    "device_id": format!("d-{:012x}", rng.random::<u64>() >> 16),
                    "content_type": if i % 3 == 0 { "live" } else { "vod" },
                    "position_ms": rng.random_range(0..5_400_000_i64),
                    "duration_ms": 5_400_000,
                    "bitrate_kbps": ([800, 1800, 3000, 5000, 8000][rng.random_range(0..5)]),
                    "resolution": "1920x1080",
                    "buffer_ms": rng.random_range(0..30_000),
                    "volume": 0.75,
                    "muted": false,
                    "cdn": (["cloudfront", "fastly", "akamai"][i % 3]),
                    "country": (["GB", "DE", "US", "BR", "JP"][rng.random_range(0..5)]),
                    "player": {"name": "shaka", "version": "4.7.11"},
                    "device": {"platform": (PLATFORMS[rng.random_range(0..PLATFORMS.len())]), "os_version": "14.4"},
                    "custom": {"page": "watch"},
                });
                if i % 2 == 0 {
                    event["experiments"] = json!(["abr-v2"]);
                }
                if i == bad {
                    event["bitrate_kbps"] = json!("high");
                } else {
                    *per_hour.entry(hour_of(pts)).or_insert(0) += 1;
                }
                lines.push(event);
            }
            AvroFile {
                stem: format!("demo-{run}-{f:02}"),
                ndjson: ndjson(&lines),
                per_hour,
                rejected: 1,
            }
        })
        .collect()
}

/// The UTC hour of an epoch-millisecond timestamp.
pub fn hour_of(ms: i64) -> (i32, u8, u8, u8) {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    (t.year(), u8::from(t.month()), t.day(), t.hour())
}

/// `year=YYYY/month=MM/day=DD/hour=HH/`
pub fn hive_path((y, m, d, h): (i32, u8, u8, u8)) -> String {
    format!("year={y:04}/month={m:02}/day={d:02}/hour={h:02}/")
}

/// What the crash router should do with an upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashKind {
    Accept,
    Defer,
    Malformed,
}

#[derive(Debug, Clone)]
pub struct Crash {
    pub id: String,
    pub key: String,
    pub kind: CrashKind,
}

/// Raw-crash uploads for `yyyymmdd`: ~70% accepted, ~20% deferred, ~10% malformed ids.
pub fn crashes(rng: &mut StdRng, prefix: &str, yyyymmdd: &str, count: usize) -> Vec<Crash> {
    (0..count)
        .map(|i| {
            let kind = match i % 10 {
                0 => CrashKind::Malformed,
                1 | 2 => CrashKind::Defer,
                _ => CrashKind::Accept,
            };
            let throttle = if kind == CrashKind::Defer { '1' } else { '0' };
            let h = format!("{:016x}{:08x}", rng.random::<u64>(), rng.random::<u32>());
            let mut id = format!(
                "{}-{}-4{}-{}-{}{}{}",
                &h[..8],
                &h[8..12],
                &h[12..15],
                &h[15..19],
                &h[19..24],
                throttle,
                &yyyymmdd[2..]
            );
            if kind == CrashKind::Malformed {
                id = id.to_uppercase();
            }
            let key = format!("{prefix}{}/{yyyymmdd}/{id}", &id[..3].to_lowercase());
            Crash { id, key, kind }
        })
        .collect()
}

/// The router's sampling bucket: FNV-1a 64 of the crash id, mod 100.
pub fn sample_bucket(crash_id: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in crash_id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h % 100
}

/// Counter files: instance id -> file text, and the expected total per counter.
#[derive(Debug, Clone)]
pub struct Counters {
    pub files: Vec<(String, String)>,
    pub totals: BTreeMap<String, i64>,
    pub malformed_lines: usize,
}

const COUNTER_NAMES: [&str; 8] = [
    "matches_played",
    "matches_won",
    "purchases",
    "coins_spent",
    "sessions",
    "crashes",
    "friends_added",
    "levels_gained",
];

pub fn counters(rng: &mut StdRng, instances: usize, counters: usize) -> Counters {
    let names: Vec<String> = (0..counters)
        .map(|k| format!("{}_{k:02}", COUNTER_NAMES[k % COUNTER_NAMES.len()]))
        .collect();
    let mut totals: BTreeMap<String, i64> = names.iter().map(|n| (n.clone(), 0)).collect();
    let mut files = Vec::with_capacity(instances);
    for i in 0..instances {
        let instance = format!("i-{:08x}{i:03}", rng.random::<u32>());
        let mut text = String::new();
        for name in &names {
            let value: i64 = rng.random_range(0..100_000);
            *totals.get_mut(name).unwrap() += value;
            text.push_str(&format!("{name} {value}\n"));
        }
        if i == 0 {
            text.push_str("this line is malformed\n");
        }
        files.push((instance, text));
    }
    Counters {
        files,
        totals,
        malformed_lines: 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crash_ids_have_the_router_shape_and_the_mix() {
        let mut r = rng(7);
        let all = crashes(&mut r, "v2/raw_crash/", "20260314", 20);
        assert_eq!(
            all.iter().filter(|c| c.kind == CrashKind::Accept).count(),
            14
        );
        assert_eq!(all.iter().filter(|c| c.kind == CrashKind::Defer).count(), 4);
        for c in &all {
            assert_eq!(c.id.len(), 36, "{}", c.id);
            assert!(c.key.starts_with("v2/raw_crash/"));
            assert!(c.key.ends_with(&c.id));
            assert!(c.key.contains("/20260314/"));
            match c.kind {
                CrashKind::Accept => assert_eq!(&c.id[29..], "0260314"),
                CrashKind::Defer => assert_eq!(&c.id[29..], "1260314"),
                CrashKind::Malformed => assert_ne!(c.id, c.id.to_lowercase()),
            }
        }
    }

    #[test]
    fn sample_bucket_matches_fnv1a() {
        // FNV-1a 64 of "a" is 0xaf63dc4c8601ec8c.
        assert_eq!(sample_bucket("a"), 0xaf63_dc4c_8601_ec8c % 100);
    }

    #[test]
    fn counter_totals_sum_every_instance() {
        let mut r = rng(1);
        let c = counters(&mut r, 3, 4);
        assert_eq!(c.files.len(), 3);
        let mut sums: BTreeMap<String, i64> = BTreeMap::new();
        for (_, text) in &c.files {
            for line in text.lines() {
                let parts: Vec<_> = line.split_whitespace().collect();
                if let [name, value] = parts[..] {
                    *sums.entry(name.to_owned()).or_default() += value.parse::<i64>().unwrap();
                }
            }
        }
        assert_eq!(sums, c.totals);
    }

    #[test]
    fn avro_files_count_one_reject_and_every_valid_record_in_an_hour() {
        let mut r = rng(3);
        let files = avro_files(&mut r, "run1", 2, 30, 1_715_680_797_000);
        for f in &files {
            assert_eq!(f.per_hour.values().sum::<usize>() + f.rejected, 30);
            assert_eq!(f.ndjson.iter().filter(|b| **b == b'\n').count(), 30);
        }
        assert_eq!(
            hive_path(hour_of(1_715_680_797_000)),
            "year=2024/month=05/day=14/hour=09/"
        );
    }

    #[test]
    fn player_events_carry_run_and_sequence() {
        let mut r = rng(5);
        let events = player_events(&mut r, "run1", 5, 1_000_000);
        assert_eq!(events.len(), 5);
        assert_eq!(events[4]["seq"], 4);
        assert_eq!(events[0]["demo_run"], "run1");
        assert_eq!(ndjson(&events).iter().filter(|b| **b == b'\n').count(), 5);
    }
}
