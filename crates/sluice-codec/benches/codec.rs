//! Throughput of the codecs on realistic pipeline payloads.
//!
//! `cargo bench -p sluice-codec` (a few minutes on 2 cores); add `-- --quick` for a smoke run.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use sluice_codec::avro::{CoercionPlan, ContainerCodec, ContainerWriter, parse_schema};
use sluice_codec::{bzip2, snappy};

/// xorshift64: deterministic pseudo-random numbers without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// One game-telemetry event as a JSON line, like the ingest function receives.
fn player_event(rng: &mut Rng, i: u64) -> String {
    const KINDS: [&str; 4] = ["login", "match_start", "match_end", "purchase"];
    const OS: [&str; 3] = ["ios", "android", "web"];
    let r = rng.next();
    let os_version = if r.is_multiple_of(3) {
        "null".to_string()
    } else {
        format!("\"{}.{}\"", 14 + r % 4, r % 10)
    };
    format!(
        concat!(
            r#"{{"event_id":"6f1c9a1e-8b1d-4f5e-9a7c-{:012x}","player_id":"player-{:06}","#,
            r#""kind":"{}","ts":{},"level":{},"xp":{},"score":{:.2},"premium":{},"#,
            r#""tags":["ranked","season-{}"],"attrs":{{"map":{},"mode":{}}},"#,
            r#""device":{{"os":"{}","os_version":{}}},"session_ms":{}}}"#
        ),
        i,
        r % 200_000,
        KINDS[(r % 4) as usize],
        1_714_560_000_000 + i * 37,
        r % 80,
        r % 10_000_000,
        (r % 100_000) as f64 / 7.0,
        r.is_multiple_of(11),
        r % 4,
        r % 12,
        r % 5,
        OS[(r % 3) as usize],
        os_version,
        r % 3_600_000,
    )
}

const PLAYER_EVENT_SCHEMA: &str = r#"{
  "type": "record", "name": "PlayerEvent", "namespace": "sluice.games",
  "fields": [
    {"name": "event_id", "type": {"type": "string", "logicalType": "uuid"}},
    {"name": "player_id", "type": "string"},
    {"name": "kind", "type": {"type": "enum", "name": "Kind", "symbols": ["login", "match_start", "match_end", "purchase"]}},
    {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    {"name": "level", "type": "int"},
    {"name": "xp", "type": "long"},
    {"name": "score", "type": "double"},
    {"name": "premium", "type": "boolean"},
    {"name": "tags", "type": {"type": "array", "items": "string"}},
    {"name": "attrs", "type": {"type": "map", "values": "long"}},
    {"name": "device", "type": {"type": "record", "name": "Device", "fields": [
      {"name": "os", "type": {"type": "enum", "name": "Os", "symbols": ["ios", "android", "web"]}},
      {"name": "os_version", "type": ["null", "string"], "default": null}
    ]}},
    {"name": "session_ms", "type": ["null", "long"], "default": null},
    {"name": "region", "type": "string", "default": "eu-west-1"}
  ]
}"#;

fn json_lines(target_bytes: usize) -> Vec<u8> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut out = Vec::with_capacity(target_bytes + 512);
    let mut i = 0;
    while out.len() < target_bytes {
        out.extend_from_slice(player_event(&mut rng, i).as_bytes());
        out.push(b'\n');
        i += 1;
    }
    out
}

fn snappy_decompress(c: &mut Criterion) {
    let data = json_lines(16 << 20);
    let raw = snappy::compress_raw(&data);
    let framed = snappy::compress_framed(&data);
    let mut group = c.benchmark_group("snappy_decompress_16MiB_json");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Bytes(data.len() as u64));
    group.bench_function("raw", |b| {
        b.iter(|| snappy::decompress(black_box(&raw)).unwrap())
    });
    group.bench_function("framed", |b| {
        b.iter(|| snappy::decompress(black_box(&framed)).unwrap())
    });
    group.finish();
}

fn bzip2_compress(c: &mut Criterion) {
    let data = json_lines(5 << 20);
    let all = bzip2::available_threads();
    let mut group = c.benchmark_group("bzip2_compress_5MiB_json");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(15))
        .throughput(Throughput::Bytes(data.len() as u64));
    let mut thread_counts = vec![1];
    if all > 1 {
        thread_counts.push(all);
    }
    for threads in thread_counts {
        group.bench_with_input(BenchmarkId::new("threads", threads), &threads, |b, &t| {
            b.iter(|| bzip2::compress_parallel(black_box(&data), 9, t))
        });
    }
    group.finish();
}

fn avro_write(c: &mut Criterion) {
    let schema = parse_schema(PLAYER_EVENT_SCHEMA).unwrap();
    let plan = CoercionPlan::new(&schema);
    let mut rng = Rng(42);
    let lines: Vec<String> = (0..100_000).map(|i| player_event(&mut rng, i)).collect();
    let json_bytes: usize = lines.iter().map(|l| l.len() + 1).sum();
    let records: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut group = c.benchmark_group("avro_write_100k_player_events");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .throughput(Throughput::Bytes(json_bytes as u64));
    group.bench_function("coerce_and_write_snappy", |b| {
        b.iter(|| {
            let mut writer =
                ContainerWriter::new(&schema, ContainerCodec::Snappy, b"bench", Vec::new())
                    .unwrap();
            for json in &records {
                writer.append(&plan.coerce(json).unwrap()).unwrap();
            }
            writer.finish().unwrap()
        })
    });
    group.bench_function("coerce_only", |b| {
        b.iter(|| {
            for json in &records {
                black_box(plan.coerce(json).unwrap());
            }
        })
    });
    group.finish();
}

criterion_group!(benches, snappy_decompress, bzip2_compress, avro_write);
criterion_main!(benches);
