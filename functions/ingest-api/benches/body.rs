//! Parsing a realistic NDJSON request body into enriched Kinesis records: the pure
//! path of every `POST /events` (decode, split, validate, compact, enrich, key).
//!
//! `cargo bench -p ingest-api --bench body`

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ingest_api::body::{BodyFormat, decode_body, split_events};
use ingest_api::record::{RecordSettings, RequestFacts, build_records};

/// One game-telemetry event as a JSON line, as a game client sends it.
fn player_event(i: u64) -> String {
    const KINDS: [&str; 4] = ["login", "match_start", "match_end", "purchase"];
    const OS: [&str; 3] = ["ios", "android", "web"];
    let r = i.wrapping_mul(6_364_136_223_846_793_005).rotate_left(17);
    format!(
        concat!(
            r#"{{"event_id":"6f1c9a1e-8b1d-4f5e-9a7c-{:012x}","player_id":"player-{:06}","#,
            r#""kind":"{}","ts":{},"level":{},"xp":{},"score":{:.2},"premium":{},"#,
            r#""tags":["ranked","season-{}"],"device":{{"os":"{}","app":"2.{}.{}"}},"session_ms":{}}}"#
        ),
        i,
        r % 200_000,
        KINDS[(r % 4) as usize],
        1_714_560_000_000 + i * 37,
        r % 80,
        r % 10_000_000,
        (r % 100_000) as f64 / 7.0,
        r.is_multiple_of(11),
        r % 12,
        OS[(r % 3) as usize],
        r % 40,
        r % 10,
        r % 3_600_000,
    )
}

fn bench_parse(c: &mut Criterion) {
    // 1000 events (~330 kB): a batch a game backend flushes every few seconds.
    let body: String = (0..1000).map(|i| player_event(i) + "\n").collect();
    let settings = RecordSettings {
        partition_key_field: Some("player_id".into()),
        received_at_field: "received_at".into(),
        request_id_field: "request_id".into(),
    };
    let facts = RequestFacts {
        request_id: "c6af9ac6-7b61-11e6-9a41-93e8deadbeef".into(),
        received_at_ms: 1_714_560_000_123,
    };
    let mut group = c.benchmark_group("ingest_body");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("ndjson_1000_events_to_records", |b| {
        b.iter(|| {
            let bytes = decode_body(Some(black_box(&body)), false, None, 6 << 20).unwrap();
            let events = split_events(&bytes, BodyFormat::Ndjson).unwrap();
            let records =
                build_records(&events, &settings, &facts, || "random".to_owned()).unwrap();
            black_box(records.len())
        })
    });
    group.finish();
}

criterion_group!(benches, bench_parse);
criterion_main!(benches);
