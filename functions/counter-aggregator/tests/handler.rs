//! The aggregator's decisions against a mocked DynamoDB (no network): request
//! shapes against recording rules, outcomes against a stateful fake table.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::operation::get_item::GetItemOutput;
use aws_sdk_dynamodb::operation::update_item::{
    UpdateItemError, UpdateItemInput, UpdateItemOutput,
};
use aws_sdk_dynamodb::types::AttributeValue;
use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};
use aws_smithy_types::error::ErrorMetadata;
use counter_aggregator::config::AggregatorConfig;
use counter_aggregator::handler::{
    Aggregator, BatchOutcome, CREATE_SHARDS, CREATE_SHARDS_IF_ABSENT, MAX_ATTEMPTS, RecordFailure,
};
use serde_json::{Value, json};
use sluice_aws::Deadline;
use sluice_events::aws_lambda_events::dynamodb::Event;
use sluice_lambda::metrics::Metrics;
use sluice_lambda::{Context, Function, Invocation};

#[path = "../../counter-mapper/tests/support/fake_table.rs"]
mod fake_table;
use fake_table::{FakeTable, Item};

const TABLE: &str = "counter-aggregates";
const STAMP: &str = "0055AED6DCD90281E500000000000000";
const DAY: &str = "2015-11-16";

fn aggregator(rules: &[&Rule]) -> Aggregator {
    let ddb = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, rules, |c| c
        .retry_config(aws_sdk_dynamodb::config::retry::RetryConfig::disabled()));
    Aggregator::new(
        ddb,
        AggregatorConfig {
            aggregate_table: TABLE.into(),
            max_concurrent_updates: 4,
            deadline_margin: Duration::from_millis(500),
        },
    )
}

/// An aggregator over `table` (reads and writes).
fn over(table: &FakeTable) -> Aggregator {
    aggregator(&[&table.get_rule(), &table.rule()])
}

/// A shard item's image (shard `shard` of the day).
fn image_in(counter: &str, shard: u16, values: &[(&str, i64)]) -> Value {
    let instances: serde_json::Map<String, Value> = values
        .iter()
        .map(|(id, v)| {
            (
                (*id).to_owned(),
                json!({"M": {"Value": {"N": v.to_string()}, "Seq": {"S": STAMP}}}),
            )
        })
        .collect();
    json!({"Counter": {"S": counter}, "Date": {"S": format!("{DAY}#{shard:02}")},
           "Instances": {"M": instances}})
}

fn image(counter: &str, values: &[(&str, i64)]) -> Value {
    image_in(counter, 0, values)
}

/// A stream record; an image without `Version` gets the sequence number as its
/// version (the instance item's write count grows with its stream records).
fn record(name: &str, seq: &str, counter: &str, new_image: Option<Value>) -> Value {
    let new_image = new_image.map(|mut img| {
        if img.get("Version").is_none() {
            img["Version"] = json!({"N": seq});
        }
        img
    });
    raw_record(name, seq, counter, new_image)
}

/// A record whose image is exactly `new_image`.
fn raw_record(name: &str, seq: &str, counter: &str, new_image: Option<Value>) -> Value {
    let date = new_image
        .as_ref()
        .and_then(|img| img["Date"]["S"].as_str())
        .unwrap_or("2015-11-16#00")
        .to_owned();
    let mut dynamodb = json!({
        "Keys": {"Counter": {"S": counter}, "Date": {"S": date}},
        "SequenceNumber": seq, "SizeBytes": 200, "StreamViewType": "NEW_IMAGE",
        "ApproximateCreationDateTime": 1447711716.0
    });
    if let Some(img) = new_image {
        dynamodb["NewImage"] = img;
    }
    json!({"eventID": format!("e-{seq}"), "eventName": name, "eventVersion": "1.1",
           "eventSource": "aws:dynamodb", "awsRegion": "us-east-1", "dynamodb": dynamodb,
           "eventSourceARN": "arn:aws:dynamodb:us-east-1:000000000000:table/i/stream/2015"})
}

fn event(records: Vec<Value>) -> Event {
    serde_json::from_value(json!({ "Records": records })).unwrap()
}

fn counter_of_update(req: &UpdateItemInput) -> String {
    match req.key().and_then(|k| k.get("Counter")) {
        Some(AttributeValue::S(s)) => s.clone(),
        other => panic!("{other:?}"),
    }
}

fn ddb_error(code: &'static str) -> impl Fn() -> UpdateItemError + Send + Sync + 'static {
    move || {
        UpdateItemError::generic(
            ErrorMetadata::builder()
                .code(code)
                .message("mocked")
                .build(),
        )
    }
}

/// Every read finds no aggregate.
fn nothing_stored() -> Rule {
    mock!(aws_sdk_dynamodb::Client::get_item).then_output(|| GetItemOutput::builder().build())
}

fn a_minute() -> Deadline {
    Deadline::after(Duration::from_secs(60))
}

fn metrics() -> Metrics {
    Metrics::new("test", "counter-aggregator")
}

async fn run(aggregator: &Aggregator, records: Vec<Value>) -> BatchOutcome {
    aggregator
        .handle(&event(records), &a_minute(), &mut metrics())
        .await
        .unwrap()
}

/// `(Value, Version, {shard: (Total, SourceVersion)})` of counter's aggregate.
type Aggregate = (i64, u64, BTreeMap<String, (i64, u64)>);

fn aggregate(table: &FakeTable, counter: &str) -> Aggregate {
    let item = table
        .item(&[("Counter", counter), ("Date", DAY)])
        .expect("the aggregate");
    let shards = item["Shards"]
        .as_m()
        .unwrap()
        .iter()
        .map(|(shard, entry)| {
            let entry = entry.as_m().unwrap();
            let n = |name: &str| entry[name].as_n().unwrap().parse::<i64>().unwrap();
            (shard.clone(), (n("Total"), n("SourceVersion") as u64))
        })
        .collect();
    (
        number(&item, "Value"),
        number(&item, "Version") as u64,
        shards,
    )
}

fn shards(entries: &[(&str, i64, u64)]) -> BTreeMap<String, (i64, u64)> {
    entries
        .iter()
        .map(|(s, total, src)| ((*s).to_owned(), (*total, *src)))
        .collect()
}

fn number(item: &Item, name: &str) -> i64 {
    item[name].as_n().unwrap().parse().unwrap()
}

/// counter-reporter's contract, over the aggregate table's stream: `Version` never
/// goes back, and grows by exactly one with every change of the total (a record
/// with the same `Version` carries the same total); and the total is the sum of
/// the shards' subtotals in every record.
fn assert_reporter_contract(table: &FakeTable) {
    let stream = table.stream();
    for pair in stream.windows(2) {
        let (before, after) = (&pair[0], &pair[1]);
        let (v0, v1) = (number(before, "Version"), number(after, "Version"));
        if number(before, "Value") == number(after, "Value") {
            assert_eq!(v1, v0, "an unchanged total kept its Version: {pair:?}");
        } else {
            assert_eq!(v1, v0 + 1, "a changed total is Version + 1: {pair:?}");
        }
    }
    for item in &stream {
        let sum: i64 = item["Shards"]
            .as_m()
            .unwrap()
            .values()
            .map(|e| {
                e.as_m().unwrap()["Total"]
                    .as_n()
                    .unwrap()
                    .parse::<i64>()
                    .unwrap()
            })
            .sum();
        assert_eq!(
            number(item, "Value"),
            sum,
            "total = sum of shards: {item:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn the_first_subtotal_creates_the_aggregate_with_its_shard_and_a_version() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let recorder = Arc::clone(&seen);
    let update = mock!(aws_sdk_dynamodb::Client::update_item)
        .match_requests(move |req| {
            recorder.lock().unwrap().push(req.clone());
            true
        })
        .then_output(|| UpdateItemOutput::builder().build());
    let read = nothing_stored();
    let outcome = run(
        &aggregator(&[&read, &update]),
        vec![record(
            "MODIFY",
            "100",
            "COUNTER1",
            Some(image_in(
                "COUNTER1",
                7,
                &[
                    ("i-deadbeef", 123456),
                    ("i-beefdead", 12345),
                    ("i-foobazzled", 54321),
                    ("i-flub", 1000),
                ],
            )),
        )],
    )
    .await;
    assert_eq!(outcome.written, 1);
    assert!(outcome.checkpoint.is_clean());
    let req = seen.lock().unwrap()[0].clone();
    assert_eq!(req.table_name(), Some(TABLE));
    assert_eq!(req.update_expression(), Some(CREATE_SHARDS));
    assert_eq!(req.condition_expression(), Some(CREATE_SHARDS_IF_ABSENT));
    assert_eq!(req.key().unwrap()["Date"], AttributeValue::S(DAY.into()));
    let names = req.expression_attribute_names().unwrap();
    assert_eq!(
        (
            names["#val"].as_str(),
            names["#at"].as_str(),
            names["#ver"].as_str(),
            names["#sh"].as_str()
        ),
        ("Value", "UpdatedAt", "Version", "Shards")
    );
    let values = req.expression_attribute_values().unwrap();
    assert_eq!(values[":val"], AttributeValue::N("191122".into()));
    assert_eq!(values[":one"], AttributeValue::N("1".into()));
    assert!(matches!(&values[":at"], AttributeValue::S(at) if at.ends_with('Z')));
    let entry = values[":shards"].as_m().unwrap()["07"].as_m().unwrap();
    assert_eq!(entry["Total"], AttributeValue::N("191122".into()));
    assert_eq!(entry["SourceVersion"], AttributeValue::N("100".into()));
}

#[tokio::test(start_paused = true)]
async fn the_shards_of_a_counter_sum_into_one_total_that_follows_each_change() {
    let table = FakeTable::new();
    let aggregator = over(&table);
    let first = run(
        &aggregator,
        vec![
            record(
                "INSERT",
                "1",
                "C",
                Some(image_in("C", 0, &[("a", 5), ("b", 1)])),
            ),
            record("INSERT", "2", "C", Some(image_in("C", 3, &[("c", 10)]))),
            record("INSERT", "3", "C", Some(image_in("C", 31, &[("d", -2)]))),
        ],
    )
    .await;
    assert!(first.checkpoint.is_clean(), "{first:?}");
    assert_eq!((first.written, first.coalesced), (3, 0));
    assert_eq!(
        table.requests(),
        1,
        "one write per counter and day, not per shard"
    );
    assert_eq!(
        aggregate(&table, "C"),
        (14, 1, shards(&[("00", 6, 1), ("03", 10, 2), ("31", -2, 3)]))
    );
    let seen = table.requests();
    let second = run(
        &aggregator,
        vec![record(
            "MODIFY",
            "4",
            "C",
            Some(image_in("C", 3, &[("c", 10), ("e", 7)])),
        )],
    )
    .await;
    assert_eq!(second.written, 1);
    assert_eq!(
        table.requests() - seen,
        1,
        "one conditional write per subtotal"
    );
    assert_eq!(
        aggregate(&table, "C"),
        (21, 2, shards(&[("00", 6, 1), ("03", 17, 4), ("31", -2, 3)]))
    );
    assert_reporter_contract(&table);
}

#[tokio::test(start_paused = true)]
async fn changes_of_two_shards_that_cancel_out_keep_the_total_and_its_version() {
    let table = FakeTable::new();
    let aggregator = over(&table);
    run(
        &aggregator,
        vec![
            record("INSERT", "1", "C", Some(image_in("C", 0, &[("a", 5)]))),
            record("INSERT", "1", "C", Some(image_in("C", 1, &[("b", 5)]))),
        ],
    )
    .await;
    let records = table.stream().len();
    let outcome = run(
        &aggregator,
        vec![
            record("MODIFY", "2", "C", Some(image_in("C", 0, &[("a", 8)]))),
            record("MODIFY", "2", "C", Some(image_in("C", 1, &[("b", 2)]))),
        ],
    )
    .await;
    assert_eq!((outcome.written, outcome.stale), (2, 0));
    assert_eq!(
        aggregate(&table, "C"),
        (10, 1, shards(&[("00", 8, 2), ("01", 2, 2)]))
    );
    assert_eq!(table.stream().len(), records + 1);
    assert_reporter_contract(&table);
}

#[tokio::test(start_paused = true)]
async fn a_changed_subtotal_adds_its_change_under_the_entry_it_read() {
    let table = FakeTable::new();
    let first = over(&table);
    run(
        &first,
        vec![record("INSERT", "1", "C", Some(image("C", &[("a", 5)])))],
    )
    .await;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let recorder = Arc::clone(&seen);
    let watch = mock!(aws_sdk_dynamodb::Client::update_item)
        .match_requests(move |req| {
            recorder.lock().unwrap().push(req.clone());
            false
        })
        .then_output(|| UpdateItemOutput::builder().build());
    let watched = aggregator(&[&watch, &table.get_rule(), &table.rule()]);
    run(
        &watched,
        vec![record("MODIFY", "2", "C", Some(image("C", &[("a", 8)])))],
    )
    .await;
    let req = seen.lock().unwrap()[0].clone();
    assert_eq!(
        req.update_expression(),
        Some("SET #sh.#s0 = :e0, #at = :at ADD #val :delta, #ver :one")
    );
    assert_eq!(req.condition_expression(), Some("#sh.#s0.#src = :seen0"));
    assert_eq!(req.expression_attribute_names().unwrap()["#s0"], "00");
    let values = req.expression_attribute_values().unwrap();
    assert_eq!(values[":delta"], AttributeValue::N("3".into()));
    assert_eq!(values[":seen0"], AttributeValue::N("1".into()));
    assert_eq!(aggregate(&table, "C"), (8, 2, shards(&[("00", 8, 2)])));
}

#[tokio::test(start_paused = true)]
async fn an_unchanged_total_is_the_normal_no_op() {
    let table = FakeTable::new();
    let aggregator = over(&table);
    let first = run(
        &aggregator,
        vec![record("INSERT", "1", "C", Some(image("C", &[("i-1", 0)])))],
    )
    .await;
    assert_eq!(first.written, 1);
    // A newer image with the same subtotal: only the source version advances.
    let outcome = run(
        &aggregator,
        vec![record("MODIFY", "2", "C", Some(image("C", &[("i-1", 0)])))],
    )
    .await;
    assert_eq!(
        (outcome.written, outcome.unchanged, outcome.stale),
        (0, 1, 0)
    );
    assert!(outcome.checkpoint.is_clean());
    assert!(outcome.failures.is_empty());
    assert_eq!(aggregate(&table, "C"), (0, 1, shards(&[("00", 0, 2)])));
    // A new shard whose subtotal is 0 changes no total either.
    let zero = run(
        &aggregator,
        vec![record(
            "INSERT",
            "3",
            "C",
            Some(image_in("C", 5, &[("i-9", 0)])),
        )],
    )
    .await;
    assert_eq!((zero.written, zero.unchanged), (0, 1));
    assert_eq!(
        aggregate(&table, "C"),
        (0, 1, shards(&[("00", 0, 2), ("05", 0, 3)]))
    );
    let stream = table.stream();
    assert_eq!(
        stream.last().and_then(|i| i.get("Version")),
        Some(&AttributeValue::N("1".into()))
    );
    assert_reporter_contract(&table);
}

#[tokio::test(start_paused = true)]
async fn records_of_one_shard_item_are_coalesced_to_the_newest_image() {
    let table = FakeTable::new();
    let outcome = run(
        &over(&table),
        vec![
            record("INSERT", "101", "A", Some(image("A", &[("i-1", 1)]))),
            record("INSERT", "102", "B", Some(image("B", &[("i-1", 10)]))),
            record(
                "MODIFY",
                "103",
                "A",
                Some(image("A", &[("i-1", 1), ("i-2", 2)])),
            ),
            record(
                "MODIFY",
                "104",
                "A",
                Some(image("A", &[("i-1", 5), ("i-2", 2)])),
            ),
        ],
    )
    .await;
    assert_eq!((outcome.written, outcome.coalesced), (2, 2));
    assert_eq!(aggregate(&table, "A"), (7, 1, shards(&[("00", 7, 104)])));
    assert_eq!(aggregate(&table, "B"), (10, 1, shards(&[("00", 10, 102)])));
}

#[tokio::test(start_paused = true)]
async fn the_sample_batch_writes_one_subtotal_per_shard_item() {
    let table = FakeTable::new();
    let event: Event = serde_json::from_str(include_str!(
        "../../../events/counter-aggregator/stream-batch.json"
    ))
    .unwrap();
    let outcome = over(&table)
        .handle(&event, &a_minute(), &mut metrics())
        .await
        .unwrap();
    assert!(outcome.failures.is_empty(), "{:?}", outcome.failures);
    assert_eq!((outcome.written, outcome.coalesced), (5, 1));
    assert_eq!(aggregate(&table, "COUNTER1").0, 191122);
    assert_eq!(aggregate(&table, "COUNTER2").0, 54321);
}

#[tokio::test(start_paused = true)]
async fn remove_records_are_skipped() {
    let table = FakeTable::new();
    let event: Event = serde_json::from_str(include_str!(
        "../../../events/counter-aggregator/stream-remove.json"
    ))
    .unwrap();
    let outcome = over(&table)
        .handle(&event, &a_minute(), &mut metrics())
        .await
        .unwrap();
    assert_eq!(outcome.removed, 1);
    assert_eq!(table.requests(), 0);
    assert!(outcome.checkpoint.is_clean());
}

#[tokio::test(start_paused = true)]
async fn an_overflowing_subtotal_fails_its_record_and_the_rest_is_written() {
    let table = FakeTable::new();
    let mut m = metrics();
    let outcome = over(&table)
        .handle(
            &event(vec![
                record("INSERT", "200", "OK", Some(image("OK", &[("i-1", 3)]))),
                record(
                    "MODIFY",
                    "201",
                    "BIG",
                    Some(image("BIG", &[("i-1", i64::MAX), ("i-2", 1)])),
                ),
            ]),
            &a_minute(),
            &mut m,
        )
        .await
        .unwrap();
    assert_eq!(outcome.written, 1);
    assert_eq!(outcome.checkpoint.first_failed(), Some("201"));
    assert!(matches!(
        &outcome.failures[..],
        [RecordFailure::Overflow { .. }]
    ));
    assert!(!outcome.failures[0].is_retryable());
    assert_eq!(aggregate(&table, "OK").0, 3);
    assert!(table.item(&[("Counter", "BIG"), ("Date", DAY)]).is_none());
    assert_eq!(m.get("FailedRecords.overflow"), Some(1.0));
}

#[tokio::test(start_paused = true)]
async fn a_day_total_over_the_shards_outside_i64_is_refused_not_wrapped() {
    let table = FakeTable::new();
    let aggregator = over(&table);
    run(
        &aggregator,
        vec![record(
            "INSERT",
            "1",
            "C",
            Some(image_in("C", 0, &[("a", i64::MAX)])),
        )],
    )
    .await;
    let outcome = run(
        &aggregator,
        vec![record(
            "INSERT",
            "2",
            "C",
            Some(image_in("C", 1, &[("b", 1)])),
        )],
    )
    .await;
    assert!(
        matches!(&outcome.failures[..], [RecordFailure::Overflow { source, .. }] if source.total == i128::from(i64::MAX) + 1),
        "{:?}",
        outcome.failures
    );
    assert_eq!(outcome.checkpoint.first_failed(), Some("2"));
    assert_eq!(
        aggregate(&table, "C"),
        (i64::MAX, 1, shards(&[("00", i64::MAX, 1)]))
    );
}

#[tokio::test(start_paused = true)]
async fn the_checkpoint_is_the_lowest_failed_sequence_number() {
    let table = FakeTable::new();
    let failing = mock!(aws_sdk_dynamodb::Client::update_item)
        .match_requests(|req| counter_of_update(req) != "OK")
        .then_error(ddb_error("ValidationException"));
    let aggregator = aggregator(&[&failing, &table.get_rule(), &table.rule()]);
    let outcome = run(
        &aggregator,
        vec![
            record("INSERT", "300", "OK", Some(image("OK", &[("i-1", 1)]))),
            record("INSERT", "1000", "X", Some(image("X", &[("i-1", 1)]))),
            record("INSERT", "900", "Y", Some(image("Y", &[("i-1", 1)]))),
        ],
    )
    .await;
    assert_eq!(outcome.written, 1);
    assert_eq!(outcome.failures.len(), 2);
    // Numeric, not lexicographic: 900 < 1000.
    assert_eq!(outcome.checkpoint.first_failed(), Some("900"));
    let response = serde_json::to_value(outcome.checkpoint.dynamodb_response()).unwrap();
    assert_eq!(
        response,
        json!({"batchItemFailures": [{"itemIdentifier": "900"}]})
    );
}

#[tokio::test(start_paused = true)]
async fn a_failed_coalesced_key_checkpoints_at_its_newest_record() {
    let failing =
        mock!(aws_sdk_dynamodb::Client::update_item).then_error(ddb_error("AccessDeniedException"));
    let read = nothing_stored();
    let outcome = run(
        &aggregator(&[&read, &failing]),
        vec![
            record("INSERT", "10", "A", Some(image("A", &[("i-1", 1)]))),
            record("MODIFY", "11", "A", Some(image("A", &[("i-1", 2)]))),
        ],
    )
    .await;
    assert_eq!(failing.num_calls(), 1);
    assert_eq!(outcome.checkpoint.first_failed(), Some("11"));
}

#[tokio::test(start_paused = true)]
async fn throttled_reads_and_writes_are_retried_then_fail_the_record_at_the_deadline() {
    let throttled = mock!(aws_sdk_dynamodb::Client::update_item)
        .sequence()
        .error(ddb_error("ProvisionedThroughputExceededException"))
        .output(|| UpdateItemOutput::builder().build())
        .build();
    let read = mock!(aws_sdk_dynamodb::Client::get_item)
        .sequence()
        .error(|| {
            aws_sdk_dynamodb::operation::get_item::GetItemError::generic(
                ErrorMetadata::builder()
                    .code("ThrottlingException")
                    .message("mocked")
                    .build(),
            )
        })
        .output(|| GetItemOutput::builder().build())
        .build();
    let outcome = run(
        &aggregator(&[&read, &throttled]),
        vec![record("INSERT", "1", "A", Some(image("A", &[("i-1", 1)])))],
    )
    .await;
    assert_eq!(
        (outcome.written, read.num_calls(), throttled.num_calls()),
        (1, 2, 2)
    );

    let always = mock!(aws_sdk_dynamodb::Client::update_item)
        .sequence()
        .error(ddb_error("ThrottlingException"))
        .repeatedly()
        .build();
    let read = nothing_stored();
    let outcome = aggregator(&[&read, &always])
        .handle(
            &event(vec![record(
                "INSERT",
                "5",
                "A",
                Some(image("A", &[("i-1", 1)])),
            )]),
            &Deadline::after(Duration::from_secs(3)),
            &mut metrics(),
        )
        .await
        .unwrap();
    assert_eq!(outcome.checkpoint.first_failed(), Some("5"));
    assert!(outcome.failures[0].is_retryable());
    assert!(always.num_calls() > 1);
}

#[tokio::test(start_paused = true)]
async fn writes_after_the_deadline_are_not_attempted() {
    let table = FakeTable::new();
    let outcome = over(&table)
        .handle(
            &event(vec![record(
                "INSERT",
                "7",
                "A",
                Some(image("A", &[("i-1", 1)])),
            )]),
            &Deadline::after(Duration::ZERO),
            &mut metrics(),
        )
        .await
        .unwrap();
    assert_eq!(table.requests(), 0);
    assert!(matches!(
        &outcome.failures[..],
        [RecordFailure::OutOfTime { .. }]
    ));
    assert_eq!(outcome.checkpoint.first_failed(), Some("7"));
}

#[tokio::test(start_paused = true)]
async fn unreadable_unsharded_unversioned_and_missing_images_fail_their_records() {
    let table = FakeTable::new();
    let bad_value = json!({"Counter": {"S": "A"}, "Date": {"S": "2015-11-16#00"}, "Version": {"N": "1"},
        "Instances": {"M": {"i-1": {"M": {"Value": {"S": "not a number"}}}}}});
    let unsharded = json!({"Counter": {"S": "D"}, "Date": {"S": "2015-11-16"}, "Version": {"N": "1"},
        "Instances": {"M": {"i-1": {"M": {"Value": {"N": "1"}}}}}});
    let unversioned = json!({"Counter": {"S": "E"}, "Date": {"S": "2015-11-16#01"},
        "Instances": {"M": {"i-1": {"M": {"Value": {"N": "1"}}}}}});
    let outcome = run(
        &over(&table),
        vec![
            raw_record("INSERT", "50", "A", Some(bad_value)),
            record("MODIFY", "40", "B", None),
            record("INSERT", "60", "C", Some(image("C", &[("i-1", 1)]))),
            raw_record("INSERT", "70", "D", Some(unsharded)),
            raw_record("INSERT", "80", "E", Some(unversioned)),
        ],
    )
    .await;
    assert_eq!(outcome.written, 1);
    assert_eq!(aggregate(&table, "C").0, 1);
    let reasons: Vec<&str> = outcome.failures.iter().map(RecordFailure::reason).collect();
    assert_eq!(
        reasons,
        ["unreadable", "no_new_image", "unreadable", "unreadable"]
    );
    assert!(
        outcome.failures[2]
            .to_string()
            .contains("<YYYY-MM-DD>#<shard"),
        "{}",
        outcome.failures[2]
    );
    assert_eq!(outcome.checkpoint.first_failed(), Some("40"));
}

#[tokio::test(start_paused = true)]
async fn an_item_without_instances_subtotals_zero() {
    let table = FakeTable::new();
    let outcome = run(
        &over(&table),
        vec![record(
            "INSERT",
            "1",
            "A",
            Some(json!({"Counter": {"S": "A"}, "Date": {"S": "2015-11-16#04"}})),
        )],
    )
    .await;
    assert_eq!(outcome.written, 1);
    assert_eq!(aggregate(&table, "A"), (0, 1, shards(&[("04", 0, 1)])));
}

fn invocation_with_30_seconds(aggregator: &Aggregator) -> Invocation {
    let mut context = Context::default();
    context.deadline = (SystemTime::now() + Duration::from_secs(30))
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    Invocation::new(&context, aggregator.answer_margin())
}

#[tokio::test]
async fn the_function_answers_with_the_partial_batch_response() {
    let failing =
        mock!(aws_sdk_dynamodb::Client::update_item).then_error(ddb_error("AccessDeniedException"));
    let read = nothing_stored();
    let aggregator = aggregator(&[&read, &failing]);
    let mut invocation = invocation_with_30_seconds(&aggregator);
    let response = Function::handle(
        &aggregator,
        event(vec![record(
            "INSERT",
            "77",
            "A",
            Some(image("A", &[("i-1", 1)])),
        )]),
        &mut invocation,
    )
    .await
    .unwrap();
    assert_eq!(
        serde_json::to_value(response).unwrap(),
        json!({"batchItemFailures": [{"itemIdentifier": "77"}]})
    );
}

#[tokio::test]
async fn a_record_without_a_sequence_number_fails_the_batch_as_permanent() {
    let aggregator = aggregator(&[]);
    let mut batch = event(vec![record(
        "INSERT",
        "78",
        "A",
        Some(image("A", &[("i-1", 1)])),
    )]);
    batch.records[0].change.sequence_number = None;
    let mut invocation = invocation_with_30_seconds(&aggregator);
    let err = Function::handle(&aggregator, batch, &mut invocation)
        .await
        .unwrap_err();
    assert_eq!(err.error_type, "Permanent.UncheckpointableRecord");
    assert!(err.message.contains("no sequence number"), "{err}");
}

fn batch_of(seq: &str, total: i64) -> Event {
    event(vec![record(
        "MODIFY",
        seq,
        "C",
        Some(image("C", &[("i-1", total - 1), ("i-2", 1)])),
    )])
}

#[tokio::test(start_paused = true)]
async fn an_older_record_replayed_after_a_newer_one_never_puts_the_old_total_back() {
    let table = FakeTable::new();
    let aggregator = over(&table);
    let older = batch_of("200", 12);
    let newer = batch_of("300", 10);
    for batch in [&older, &newer] {
        aggregator
            .handle(batch, &a_minute(), &mut metrics())
            .await
            .unwrap();
    }
    assert_eq!(aggregate(&table, "C"), (10, 2, shards(&[("00", 10, 300)])));
    let records = table.stream().len();

    // The replay (a redriven range, a retried batch) of the older record.
    let mut m = metrics();
    let replay = aggregator
        .handle(&older, &a_minute(), &mut m)
        .await
        .unwrap();
    assert_eq!(
        aggregate(&table, "C"),
        (10, 2, shards(&[("00", 10, 300)])),
        "the old total came back"
    );
    assert_eq!((replay.written, replay.unchanged, replay.stale), (0, 0, 1));
    assert!(
        replay.checkpoint.is_clean(),
        "already newer is not a failure"
    );
    assert!(replay.failures.is_empty());
    assert_eq!(m.get("Stale"), Some(1.0));
    assert_eq!(
        table.stream().len(),
        records,
        "no aggregate change, no reporter work"
    );

    // The newest record delivered again: nothing either.
    let again = aggregator
        .handle(&newer, &a_minute(), &mut metrics())
        .await
        .unwrap();
    assert_eq!((again.written, again.stale), (0, 1));
    assert_eq!(table.stream().len(), records);
    assert_reporter_contract(&table);
}

#[tokio::test(start_paused = true)]
async fn an_unchanged_subtotal_from_a_newer_image_still_refuses_an_older_different_one() {
    // The aggregate's own A-B-A: 10 (v1), 12 (v2), 10 (v3), processed v1, v3, v2.
    let table = FakeTable::new();
    let aggregator = over(&table);
    for seq in ["1", "3"] {
        aggregator
            .handle(&batch_of(seq, 10), &a_minute(), &mut metrics())
            .await
            .unwrap();
    }
    assert_eq!(
        aggregate(&table, "C"),
        (10, 1, shards(&[("00", 10, 3)])),
        "the source version advanced, the total's Version did not"
    );
    let late = aggregator
        .handle(&batch_of("2", 12), &a_minute(), &mut metrics())
        .await
        .unwrap();
    assert_eq!(late.stale, 1);
    assert_eq!(aggregate(&table, "C"), (10, 1, shards(&[("00", 10, 3)])));
    assert_reporter_contract(&table);
}

#[tokio::test(start_paused = true)]
async fn every_processing_order_of_two_shards_with_redeliveries_ends_at_the_newest_totals() {
    // Shard 00: 10 (v1), 12 (v2), 10 (v3); shard 01: 5 (v1), 9 (v2).
    let records = [
        record("MODIFY", "1", "C", Some(image_in("C", 0, &[("a", 10)]))),
        record("MODIFY", "2", "C", Some(image_in("C", 0, &[("a", 12)]))),
        record("MODIFY", "3", "C", Some(image_in("C", 0, &[("a", 10)]))),
        record("MODIFY", "1", "C", Some(image_in("C", 1, &[("b", 5)]))),
        record("MODIFY", "2", "C", Some(image_in("C", 1, &[("b", 9)]))),
    ];
    // Every rotation and its reverse, each record delivered twice in a row.
    let mut orders: Vec<Vec<usize>> = Vec::new();
    for start in 0..records.len() {
        let rotation: Vec<usize> = (0..records.len())
            .map(|i| (start + i) % records.len())
            .collect();
        orders.push(rotation.iter().rev().copied().collect());
        orders.push(rotation);
    }
    for order in orders {
        let table = FakeTable::new();
        let aggregator = over(&table);
        for i in order.iter().flat_map(|i| [*i, *i]) {
            let outcome = run(&aggregator, vec![records[i].clone()]).await;
            assert!(outcome.checkpoint.is_clean(), "{order:?}");
        }
        let (value, _, entries) = aggregate(&table, "C");
        assert_eq!(value, 19, "order {order:?}");
        assert_eq!(
            entries,
            shards(&[("00", 10, 3), ("01", 9, 2)]),
            "order {order:?}"
        );
        assert_reporter_contract(&table);
    }
}

#[tokio::test(start_paused = true)]
async fn a_shard_entry_changed_by_another_writer_after_the_read_is_read_again() {
    let table = FakeTable::new();
    let aggregator = over(&table);
    run(
        &aggregator,
        vec![record("MODIFY", "5", "C", Some(image("C", &[("a", 10)])))],
    )
    .await;
    // Our record (v7, subtotal 3) reads {Total 10, SourceVersion 5}; before its write
    // another invocation writes v6 (subtotal 12) into the same shard.
    table.before_request(1, |items| {
        let item = items.values_mut().next().unwrap();
        item.insert("Value".into(), AttributeValue::N("12".into()));
        item.insert("Version".into(), AttributeValue::N("2".into()));
        item.insert(
            "Shards".into(),
            AttributeValue::M(
                [(
                    "00".to_owned(),
                    counter_aggregator::handler::shard_entry(12, 6),
                )]
                .into(),
            ),
        );
    });
    let outcome = run(
        &aggregator,
        vec![record("MODIFY", "7", "C", Some(image("C", &[("a", 3)])))],
    )
    .await;
    assert_eq!((outcome.written, outcome.rereads), (1, 1));
    assert_eq!(aggregate(&table, "C"), (3, 3, shards(&[("00", 3, 7)])));
}

#[tokio::test(start_paused = true)]
async fn an_aggregate_created_by_another_shard_meanwhile_gets_this_shard_added() {
    let table = FakeTable::new();
    let aggregator = over(&table);
    table.before_request(1, |items| {
        let mut item = Item::new();
        item.insert("Counter".into(), AttributeValue::S("C".into()));
        item.insert("Date".into(), AttributeValue::S(DAY.into()));
        item.insert("Value".into(), AttributeValue::N("40".into()));
        item.insert("Version".into(), AttributeValue::N("1".into()));
        item.insert(
            "Shards".into(),
            AttributeValue::M(
                [(
                    "09".to_owned(),
                    counter_aggregator::handler::shard_entry(40, 2),
                )]
                .into(),
            ),
        );
        items.insert(
            fake_table::render_key(&Item::from([
                ("Counter".to_owned(), AttributeValue::S("C".into())),
                ("Date".to_owned(), AttributeValue::S(DAY.into())),
            ])),
            item,
        );
    });
    let outcome = run(
        &aggregator,
        vec![record("INSERT", "1", "C", Some(image("C", &[("a", 2)])))],
    )
    .await;
    assert_eq!((outcome.written, outcome.rereads), (1, 1));
    assert_eq!(
        aggregate(&table, "C"),
        (42, 2, shards(&[("00", 2, 1), ("09", 40, 2)]))
    );
}

#[tokio::test(start_paused = true)]
async fn a_shard_contended_at_every_read_is_retried_through_the_checkpoint() {
    let table = FakeTable::new();
    let aggregator = over(&table);
    run(
        &aggregator,
        vec![record("MODIFY", "1", "C", Some(image("C", &[("a", 1)])))],
    )
    .await;
    for n in 1..=MAX_ATTEMPTS {
        table.before_request(n, move |items| {
            let item = items.values_mut().next().unwrap();
            item.insert(
                "Shards".into(),
                AttributeValue::M(
                    [(
                        "00".to_owned(),
                        counter_aggregator::handler::shard_entry(1, 1 + n as u64),
                    )]
                    .into(),
                ),
            );
        });
    }
    let outcome = run(
        &aggregator,
        vec![record("MODIFY", "100", "C", Some(image("C", &[("a", 5)])))],
    )
    .await;
    assert!(
        matches!(&outcome.failures[..], [RecordFailure::Contended { .. }]),
        "{:?}",
        outcome.failures
    );
    assert!(outcome.failures[0].is_retryable());
    assert_eq!(outcome.checkpoint.first_failed(), Some("100"));
    // The redelivery, no longer contended, writes it.
    let again = run(
        &aggregator,
        vec![record("MODIFY", "100", "C", Some(image("C", &[("a", 5)])))],
    )
    .await;
    assert_eq!(again.written, 1);
    assert_eq!(aggregate(&table, "C").0, 5);
}

#[tokio::test(start_paused = true)]
async fn an_aggregate_from_before_sharding_starts_again_from_its_shards() {
    let table = FakeTable::new();
    table.put(
        &["Counter", "Date"],
        Item::from([
            ("Counter".into(), AttributeValue::S("C".into())),
            ("Date".into(), AttributeValue::S(DAY.into())),
            ("Value".into(), AttributeValue::N("999".into())),
            ("Version".into(), AttributeValue::N("4".into())),
            ("SourceVersion".into(), AttributeValue::N("30".into())),
        ]),
    );
    let outcome = run(
        &over(&table),
        vec![record("MODIFY", "2", "C", Some(image("C", &[("a", 6)])))],
    )
    .await;
    assert_eq!(outcome.written, 1);
    assert_eq!(aggregate(&table, "C"), (6, 5, shards(&[("00", 6, 2)])));
}

#[tokio::test(start_paused = true)]
async fn coalescing_keeps_the_image_with_the_highest_item_version() {
    // An emulator may number a stale image after a newer one (LocalStack builds
    // images by reading the item later): the item's Version decides, not the order.
    let table = FakeTable::new();
    let outcome = run(
        &over(&table),
        vec![
            record(
                "MODIFY",
                "20",
                "C",
                Some(
                    json!({"Counter": {"S": "C"}, "Date": {"S": "2015-11-16#00"},
                "Version": {"N": "9"}, "Instances": {"M": {"i-1": {"M": {"Value": {"N": "9"}}}}}}),
                ),
            ),
            record(
                "MODIFY",
                "21",
                "C",
                Some(
                    json!({"Counter": {"S": "C"}, "Date": {"S": "2015-11-16#00"},
                "Version": {"N": "8"}, "Instances": {"M": {"i-1": {"M": {"Value": {"N": "8"}}}}}}),
                ),
            ),
        ],
    )
    .await;
    assert_eq!((outcome.written, outcome.coalesced), (1, 1));
    assert_eq!(aggregate(&table, "C"), (9, 1, shards(&[("00", 9, 9)])));
}
