//! The aggregator's pure path on the seed's scale: 100 counters whose items each
//! hold 100 instances (a minute of uploads from 100 instances × 100 counters),
//! read from stream images and summed.

use std::hint::black_box;

use counter_aggregator::item::InstanceItem;
use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::{Value, json};

fn stream_image(counter: u64, instances: u64) -> serde_dynamo::Item {
    let map: serde_json::Map<String, Value> = (0..instances)
        .map(|i| {
            (
                format!("i-{:017x}", 0xdead_beef_u64 + i),
                json!({"M": {
                    "Value": {"N": ((counter * 7_919 + i * 104_729) % 10_000_000).to_string()},
                    "Seq": {"S": format!("0055AED6DCD9{:04X}E500000000000000", i)}
                }}),
            )
        })
        .collect();
    serde_json::from_value(json!({
        "Counter": {"S": format!("COUNTER_{counter:03}")},
        "Date": {"S": "2015-11-16#00"},
        "Version": {"N": "1"},
        "Instances": {"M": map}
    }))
    .unwrap()
}

fn bench_sum(c: &mut Criterion) {
    let images: Vec<serde_dynamo::Item> = (0..100).map(|c| stream_image(c, 100)).collect();
    let items: Vec<InstanceItem> = images
        .iter()
        .map(|i| serde_dynamo::from_item(i.clone()).unwrap())
        .collect();
    let mut group = c.benchmark_group("aggregate");
    group.sample_size(20);
    group.bench_function("sum_100_counters_x_100_instances", |b| {
        b.iter(|| {
            black_box(&items)
                .iter()
                .map(|i| i.subtotal().unwrap())
                .fold(0i64, i64::wrapping_add)
        })
    });
    group.bench_function("read_images_and_sum_100_x_100", |b| {
        b.iter(|| {
            black_box(&images)
                .iter()
                .map(|i| {
                    serde_dynamo::from_item::<_, InstanceItem>(i.clone())
                        .unwrap()
                        .subtotal()
                        .unwrap()
                })
                .fold(0i64, i64::wrapping_add)
        })
    });
    group.finish();
}

criterion_group!(benches, bench_sum);
criterion_main!(benches);
