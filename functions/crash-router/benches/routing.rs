//! The router's pure path on 10k generated raw-crash keys: parse each key into a
//! crash id and pick its queues; and planning a whole 10k-message SQS batch
//! (JSON bodies, envelope walk, key decoding, classification, routing).

use aws_lambda_events::sqs::SqsEvent;
use crash_router::config::Config;
use crash_router::crash::CrashKey;
use crash_router::handler::plan_batch;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::json;
use sluice_lambda::config::Env;
use std::hint::black_box;

const N: usize = 10_000;
const PREFIX: &str = "v2/raw_crash/";

/// Realistic keys: random-looking ids over a month, 1 in 10 deferred, 1 in 50 malformed.
fn keys() -> Vec<String> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..N)
        .map(|i| {
            let (a, b) = (next(), next());
            let day = 1 + (i % 28);
            let throttle = u8::from(i % 10 == 0);
            let id = format!(
                "{:08x}-{:04x}-4{:03x}-{:04x}-{:05x}{throttle}1803{day:02}",
                a as u32,
                (a >> 32) as u16,
                (a >> 48) as u16 & 0xfff,
                b as u16,
                (b >> 16) as u32 & 0xf_ffff,
            );
            let id = if i % 50 == 5 { id.to_uppercase() } else { id };
            format!("{PREFIX}{}/201803{day:02}/{id}", &id[..3])
        })
        .collect()
}

fn config() -> Config {
    Config::from_env(&Env::from_pairs([
        (
            "PROCESSING_QUEUE_URL",
            "https://sqs.us-east-1.amazonaws.com/123456789012/standard",
        ),
        (
            "EXTRA_ROUTES",
            "15:https://sqs.us-east-1.amazonaws.com/123456789012/submitter",
        ),
    ]))
    .unwrap()
}

fn sqs_batch(keys: &[String]) -> SqsEvent {
    let records: Vec<_> = keys
        .iter()
        .enumerate()
        .map(|(i, key)| {
            let body = json!({"Records": [{
                "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
                "eventTime": "2018-03-13T17:45:59.480Z", "eventName": "ObjectCreated:Put",
                "s3": {"s3SchemaVersion": "1.0", "configurationId": "raw-crash-uploads",
                       "bucket": {"name": "sluice-crashes", "arn": "arn:aws:s3:::sluice-crashes"},
                       "object": {"key": key, "size": 18432, "eTag": "b21b84d653bb07b05b1e6b33684dc11b",
                                  "sequencer": "0055AED6DCD90281E5"}}}]});
            json!({"messageId": format!("m-{i}"), "body": body.to_string(),
                   "eventSource": "aws:sqs", "awsRegion": "us-east-1"})
        })
        .collect();
    serde_json::from_value(json!({ "Records": records })).unwrap()
}

fn routing(c: &mut Criterion) {
    let keys = keys();
    let config = config();
    let event = sqs_batch(&keys);
    // The data is what it claims: 1 in 50 malformed, 1 in 10 deferred, the rest accepted.
    let plan = plan_batch(&event, &config);
    assert_eq!((plan.accepted, plan.deferred), (8_800, 1_000));

    let mut group = c.benchmark_group("crash-router");
    group
        .sample_size(20)
        .warm_up_time(std::time::Duration::from_secs(1))
        .measurement_time(std::time::Duration::from_secs(4));
    group.throughput(Throughput::Elements(N as u64));
    group.bench_function("parse_and_route_10k_keys", |b| {
        b.iter(|| {
            let mut routed = 0usize;
            for key in &keys {
                if let Ok(key) = CrashKey::parse(black_box(key), PREFIX) {
                    routed += config.routes.destinations(&key.crash_id).count();
                }
            }
            black_box(routed)
        })
    });
    group.bench_function("plan_10k_message_sqs_batch", |b| {
        b.iter(|| black_box(plan_batch(black_box(&event), &config).accepted))
    });
    group.finish();
}

criterion_group!(benches, routing);
criterion_main!(benches);
