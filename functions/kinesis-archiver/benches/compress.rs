//! Compressing a 5 MiB Kinesis batch of player events into one archive object, on one
//! core and on every core (`sluice_codec::bzip2::compress_parallel`), in MB/s.
//!
//! `cargo bench -p kinesis-archiver --bench compress`

use std::hint::black_box;
use std::time::Duration;

use criterion::{
    BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use kinesis_archiver::archive::{compress, hour_groups};
use sluice_codec::bzip2::available_threads;
use sluice_events::KinesisRecordData;
use time::OffsetDateTime;

/// One enriched player event as ingest-api writes it to the stream.
fn player_event(i: u64) -> Vec<u8> {
    const KINDS: [&str; 4] = ["login", "match_start", "match_end", "purchase"];
    const OS: [&str; 3] = ["ios", "android", "web"];
    let r = i.wrapping_mul(6_364_136_223_846_793_005).rotate_left(17);
    format!(
        concat!(
            r#"{{"event_id":"6f1c9a1e-8b1d-4f5e-9a7c-{:012x}","player_id":"player-{:06}","#,
            r#""kind":"{}","ts":{},"level":{},"xp":{},"score":{:.2},"premium":{},"#,
            r#""tags":["ranked","season-{}"],"device":{{"os":"{}","app":"2.{}.{}"}},"session_ms":{},"#,
            r#""received_at":{},"request_id":"c6af9ac6-7b61-11e6-{:04x}-93e8deadbeef"}}"#
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
        1_714_560_000_000 + i * 40,
        i / 500,
    )
    .into_bytes()
}

/// A 5 MiB batch from one shard within one hour.
fn batch() -> Vec<KinesisRecordData> {
    let arrival = OffsetDateTime::from_unix_timestamp(1_714_560_000).unwrap();
    let mut records = Vec::new();
    let mut bytes = 0;
    let mut i = 0u64;
    while bytes < 5 * 1024 * 1024 {
        let data = player_event(i);
        bytes += data.len() + 1;
        records.push(KinesisRecordData {
            shard_id: "shardId-000000000000".into(),
            sequence_number: format!("4959033827149025660855969253836157109592157598913{i:07}"),
            partition_key: format!("player-{i}"),
            data,
            arrival,
        });
        i += 1;
    }
    records
}

fn bench_compress(c: &mut Criterion) {
    let records = batch();
    let groups = hour_groups(&records);
    assert_eq!(groups.len(), 1);
    let payload = groups[0].payload();
    let mut group = c.benchmark_group("archive_5MiB_batch_bzip2");
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(6))
        .throughput(Throughput::Bytes(payload.len() as u64));
    let all = available_threads();
    for threads in [1, all] {
        let label = if threads == 1 {
            "1 core".to_owned()
        } else {
            format!("all {threads} cores")
        };
        group.bench_with_input(
            BenchmarkId::new("compress", label),
            &threads,
            |b, &threads| b.iter(|| black_box(compress(black_box(&payload), 9, threads)).len()),
        );
        if all == 1 {
            break;
        }
    }
    group.finish();
}

criterion_group!(benches, bench_compress);
criterion_main!(benches);
