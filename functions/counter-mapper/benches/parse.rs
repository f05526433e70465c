//! Parsing counter files of realistic size: the seed's 100 counters per
//! instance, and a 100-file × 100-counter minute of uploads.

use std::hint::black_box;

use counter_mapper::counter_file::parse_counter_file;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

/// `counters` lines like an instance writes them (`COUNTER_<n> <value>`), with a
/// blank line and a malformed one every 50 lines so those paths are measured too.
fn counter_file(instance: u64, counters: u64) -> Vec<u8> {
    let mut text = String::new();
    for n in 0..counters {
        let value = (instance * 7_919 + n * 104_729) % 10_000_000;
        text.push_str(&format!("COUNTER_{n:03} {value}\n"));
        if n % 50 == 49 {
            text.push_str("\nBROKEN line here\n");
        }
    }
    text.into_bytes()
}

fn bench_parse(c: &mut Criterion) {
    let one = counter_file(1, 100);
    let minute: Vec<Vec<u8>> = (0..100).map(|i| counter_file(i, 100)).collect();
    let mut group = c.benchmark_group("counter_file");
    group.sample_size(20);
    group.throughput(Throughput::Bytes(one.len() as u64));
    group.bench_function("parse_100_counters", |b| {
        b.iter(|| parse_counter_file(black_box(&one)))
    });
    let bytes: usize = minute.iter().map(Vec::len).sum();
    group.throughput(Throughput::Bytes(bytes as u64));
    group.bench_function("parse_100_files_x_100_counters", |b| {
        b.iter(|| {
            minute
                .iter()
                .map(|f| parse_counter_file(black_box(f)).counters.len())
                .sum::<usize>()
        })
    });
    group.finish();
}

criterion_group!(benches, bench_parse);
criterion_main!(benches);
