//! Criterion bench of the conversion's pure path, end to end in memory: snappy-framed NDJSON
//! of 100k generated player events (≈50 MB of JSON spanning two UTC hours) → decompress →
//! parse → coerce → partition → two snappy-codec Avro files. Prints records/s and MB/s once,
//! then lets criterion measure (throughput in records).

use std::hint::black_box;
use std::time::{Duration, Instant};

use avro_converter::config::TimestampField;
use avro_converter::convert::Converter;
use avro_converter::sample::ndjson;
use avro_converter::schema::RecordSchema;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sluice_codec::avro::ContainerCodec;
use sluice_codec::snappy::compress_framed;
use sluice_partition::TimeUnit;

const RECORDS: u64 = 100_000;
/// 2024-05-14T09:30:00Z; 36 ms apart the events cover one hour, so two hour files.
const START_MS: i64 = 1_715_679_000_000;
const KEY: &str = "raw/2024/05/14/player-bench.json.snappy";

fn convert(c: &mut Criterion) {
    let text = ndjson(RECORDS, START_MS, 36);
    let compressed = compress_framed(&text);
    let converter = Converter::new(
        RecordSchema::player_event(),
        ContainerCodec::Snappy,
        TimestampField {
            name: "PTS".into(),
            unit: TimeUnit::Milliseconds,
        },
        1 << 30,
        "avro/",
    );
    let mb = text.len() as f64 / 1e6;

    let started = Instant::now();
    let conversion = converter.convert(&compressed, KEY).expect("converts");
    let secs = started.elapsed().as_secs_f64();
    let avro: usize = conversion.files.iter().map(|f| f.bytes.len()).sum();
    assert_eq!(conversion.converted(), RECORDS as usize);
    println!(
        "avro-converter: {RECORDS} records, {mb:.1} MB JSON ({:.1} MB snappy) → {} Avro files, {:.1} MB: {:.0} records/s, {:.1} MB/s (single run, {secs:.2} s)",
        compressed.len() as f64 / 1e6,
        conversion.files.len(),
        avro as f64 / 1e6,
        RECORDS as f64 / secs,
        mb / secs,
    );

    let mut group = c.benchmark_group("avro-converter");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(15));
    group.warm_up_time(Duration::from_secs(1));
    group.throughput(Throughput::Elements(RECORDS));
    group.bench_function("convert_100k_player_events_50MB", |b| {
        b.iter(|| {
            converter
                .convert(black_box(&compressed), KEY)
                .expect("converts")
        })
    });
    group.finish();
    println!(
        "(JSON bytes per record: {}; MB/s = records/s × that / 1e6)",
        text.len() as u64 / RECORDS
    );
}

criterion_group!(benches, convert);
criterion_main!(benches);
