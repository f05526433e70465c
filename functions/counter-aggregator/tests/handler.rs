//! The aggregator's decisions against a mocked DynamoDB (no network).

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::operation::update_item::{
    UpdateItemError, UpdateItemInput, UpdateItemOutput,
};
use aws_sdk_dynamodb::types::AttributeValue;
use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};
use aws_smithy_types::error::ErrorMetadata;
use counter_aggregator::config::AggregatorConfig;
use counter_aggregator::handler::{
    Aggregator, BatchOutcome, RecordFailure, WRITE_TOTAL, WRITE_TOTAL_IF_NOT_OLDER_AND_CHANGED,
    WRITE_VALUE, WRITE_VALUE_IF_UNVERSIONED_AND_CHANGED,
};
use serde_json::{Value, json};
use sluice_aws::Deadline;
use sluice_events::aws_lambda_events::dynamodb::Event;
use sluice_lambda::metrics::Metrics;
use sluice_lambda::{Context, LambdaEvent};

#[path = "../../counter-mapper/tests/support/fake_table.rs"]
mod fake_table;
use fake_table::{FakeTable, Item};

const TABLE: &str = "counter-aggregates";
const STAMP: &str = "0055AED6DCD90281E500000000000000";

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

fn image(counter: &str, values: &[(&str, i64)]) -> Value {
    let instances: serde_json::Map<String, Value> = values
        .iter()
        .map(|(id, v)| {
            (
                (*id).to_owned(),
                json!({"M": {"Value": {"N": v.to_string()}, "Seq": {"S": STAMP}}}),
            )
        })
        .collect();
    json!({"Counter": {"S": counter}, "Date": {"S": "2015-11-16"}, "Instances": {"M": instances}})
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
    versionless_record(name, seq, counter, new_image)
}

/// A record whose image is exactly `new_image` (an item the mapper wrote before it
/// recorded a `Version`).
fn versionless_record(name: &str, seq: &str, counter: &str, new_image: Option<Value>) -> Value {
    let mut dynamodb = json!({
        "Keys": {"Counter": {"S": counter}, "Date": {"S": "2015-11-16"}},
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

fn counter_of(req: &UpdateItemInput) -> String {
    match req.key().and_then(|k| k.get("Counter")) {
        Some(AttributeValue::S(s)) => s.clone(),
        other => panic!("{other:?}"),
    }
}

fn total_of(req: &UpdateItemInput) -> String {
    match req
        .expression_attribute_values()
        .and_then(|v| v.get(":val"))
    {
        Some(AttributeValue::N(n)) => n.clone(),
        other => panic!("{other:?}"),
    }
}

/// Applies every update and records (counter, total) pairs.
fn recording_rule() -> (Rule, Arc<Mutex<Vec<UpdateItemInput>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let recorder = Arc::clone(&seen);
    let rule = mock!(aws_sdk_dynamodb::Client::update_item)
        .match_requests(move |req| {
            recorder.lock().unwrap().push(req.clone());
            true
        })
        .then_output(|| UpdateItemOutput::builder().build());
    (rule, seen)
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

fn a_minute() -> Deadline {
    Deadline::after(Duration::from_secs(60))
}

fn metrics() -> Metrics {
    Metrics::new("test", "counter-aggregator")
}

async fn run(rules: &[&Rule], records: Vec<Value>) -> BatchOutcome {
    aggregator(rules)
        .handle(&event(records), &a_minute(), &mut metrics())
        .await
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn writes_the_seed_total_conditionally_with_a_version_bump() {
    let (rule, seen) = recording_rule();
    let outcome = run(
        &[&rule],
        vec![record(
            "MODIFY",
            "100",
            "COUNTER1",
            Some(image(
                "COUNTER1",
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
    assert_eq!(req.update_expression(), Some(WRITE_TOTAL));
    assert_eq!(
        req.condition_expression(),
        Some(WRITE_TOTAL_IF_NOT_OLDER_AND_CHANGED)
    );
    assert_eq!(total_of(&req), "191122");
    let names = req.expression_attribute_names().unwrap();
    assert_eq!(
        (
            names["#val"].as_str(),
            names["#at"].as_str(),
            names["#ver"].as_str(),
            names["#src"].as_str()
        ),
        ("Value", "UpdatedAt", "Version", "SourceVersion")
    );
    let values = req.expression_attribute_values().unwrap();
    assert_eq!(values[":one"], AttributeValue::N("1".into()));
    assert_eq!(values[":src"], AttributeValue::N("100".into()));
    assert!(matches!(&values[":at"], AttributeValue::S(at) if at.ends_with('Z')));
    assert_eq!(
        req.key().unwrap()["Date"],
        AttributeValue::S("2015-11-16".into())
    );
}

#[tokio::test(start_paused = true)]
async fn an_unchanged_total_is_the_normal_no_op() {
    let table = FakeTable::new();
    let rule = table.rule();
    let aggregator = aggregator(&[&rule]);
    let batch = event(vec![record(
        "INSERT",
        "1",
        "C",
        Some(image("C", &[("i-1", 0)])),
    )]);
    let first = aggregator
        .handle(&batch, &a_minute(), &mut metrics())
        .await
        .unwrap();
    assert_eq!(first.written, 1);
    // A newer image with the same total: only the source version advances.
    let newer = event(vec![record(
        "MODIFY",
        "2",
        "C",
        Some(image("C", &[("i-1", 0)])),
    )]);
    let outcome = aggregator
        .handle(&newer, &a_minute(), &mut metrics())
        .await
        .unwrap();
    assert_eq!(
        (outcome.written, outcome.unchanged, outcome.stale),
        (0, 1, 0)
    );
    assert!(outcome.checkpoint.is_clean());
    assert!(outcome.failures.is_empty());
    assert_eq!(aggregate(&table, "C"), (0, 1, Some(2)));
}

#[tokio::test(start_paused = true)]
async fn an_image_without_a_version_is_written_as_before_while_the_total_has_none() {
    let (rule, seen) = recording_rule();
    let outcome = run(
        &[&rule],
        vec![versionless_record(
            "INSERT",
            "1",
            "C",
            Some(image("C", &[("i-1", 4)])),
        )],
    )
    .await;
    assert_eq!(outcome.written, 1);
    let req = seen.lock().unwrap()[0].clone();
    assert_eq!(req.update_expression(), Some(WRITE_VALUE));
    assert_eq!(
        req.condition_expression(),
        Some(WRITE_VALUE_IF_UNVERSIONED_AND_CHANGED)
    );
    assert!(
        !req.expression_attribute_values()
            .unwrap()
            .contains_key(":src")
    );

    // Against the fake: written once, a redelivery changes nothing, and once a
    // versioned image has been written an unversioned (older) one is refused.
    let table = FakeTable::new();
    let rule = table.rule();
    let aggregator = aggregator(&[&rule]);
    let old = event(vec![versionless_record(
        "INSERT",
        "1",
        "C",
        Some(image("C", &[("i-1", 4)])),
    )]);
    for _ in 0..2 {
        aggregator
            .handle(&old, &a_minute(), &mut metrics())
            .await
            .unwrap();
    }
    assert_eq!(aggregate(&table, "C"), (4, 1, None));
    let versioned = event(vec![record(
        "MODIFY",
        "5",
        "C",
        Some(image("C", &[("i-1", 6)])),
    )]);
    aggregator
        .handle(&versioned, &a_minute(), &mut metrics())
        .await
        .unwrap();
    aggregator
        .handle(&old, &a_minute(), &mut metrics())
        .await
        .unwrap();
    assert_eq!(aggregate(&table, "C"), (6, 2, Some(5)));
}

#[tokio::test(start_paused = true)]
async fn records_of_one_key_are_coalesced_to_the_newest_image() {
    let (rule, seen) = recording_rule();
    let outcome = run(
        &[&rule],
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
    let mut writes: Vec<(String, String)> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|r| (counter_of(r), total_of(r)))
        .collect();
    writes.sort();
    assert_eq!(
        writes,
        [
            ("A".to_owned(), "7".to_owned()),
            ("B".to_owned(), "10".to_owned())
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn the_sample_batch_writes_one_total_per_key() {
    let (rule, seen) = recording_rule();
    let event: Event = serde_json::from_str(include_str!(
        "../../../events/counter-aggregator/stream-batch.json"
    ))
    .unwrap();
    let outcome = aggregator(&[&rule])
        .handle(&event, &a_minute(), &mut metrics())
        .await
        .unwrap();
    assert_eq!((outcome.written, outcome.coalesced), (2, 2));
    let mut writes: Vec<(String, String)> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|r| (counter_of(r), total_of(r)))
        .collect();
    writes.sort();
    assert_eq!(
        writes,
        [
            ("COUNTER1".to_owned(), "191122".to_owned()),
            ("COUNTER2".to_owned(), "54321".to_owned())
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn remove_records_are_skipped() {
    let (rule, seen) = recording_rule();
    let event: Event = serde_json::from_str(include_str!(
        "../../../events/counter-aggregator/stream-remove.json"
    ))
    .unwrap();
    let outcome = aggregator(&[&rule])
        .handle(&event, &a_minute(), &mut metrics())
        .await
        .unwrap();
    assert_eq!(outcome.removed, 1);
    assert!(seen.lock().unwrap().is_empty());
    assert!(outcome.checkpoint.is_clean());
}

#[tokio::test(start_paused = true)]
async fn an_overflowing_total_fails_its_record_and_the_rest_is_written() {
    let (rule, seen) = recording_rule();
    let mut m = metrics();
    let outcome = aggregator(&[&rule])
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
    assert_eq!(counter_of(&seen.lock().unwrap()[0]), "OK");
    assert_eq!(m.get("FailedRecords.overflow"), Some(1.0));
}

#[tokio::test(start_paused = true)]
async fn the_checkpoint_is_the_lowest_failed_sequence_number() {
    let failing = mock!(aws_sdk_dynamodb::Client::update_item)
        .match_requests(|req| counter_of(req) != "OK")
        .then_error(ddb_error("ValidationException"));
    let ok = mock!(aws_sdk_dynamodb::Client::update_item)
        .match_requests(|req| counter_of(req) == "OK")
        .then_output(|| UpdateItemOutput::builder().build());
    let outcome = run(
        &[&failing, &ok],
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
    let outcome = run(
        &[&failing],
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
async fn throttled_writes_are_retried_then_fail_the_record_at_the_deadline() {
    let throttled = mock!(aws_sdk_dynamodb::Client::update_item)
        .sequence()
        .error(ddb_error("ProvisionedThroughputExceededException"))
        .output(|| UpdateItemOutput::builder().build())
        .build();
    let outcome = run(
        &[&throttled],
        vec![record("INSERT", "1", "A", Some(image("A", &[("i-1", 1)])))],
    )
    .await;
    assert_eq!((outcome.written, throttled.num_calls()), (1, 2));

    let always = mock!(aws_sdk_dynamodb::Client::update_item)
        .sequence()
        .error(ddb_error("ThrottlingException"))
        .repeatedly()
        .build();
    let outcome = aggregator(&[&always])
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
    let (rule, seen) = recording_rule();
    let outcome = aggregator(&[&rule])
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
    assert!(seen.lock().unwrap().is_empty());
    assert!(matches!(
        &outcome.failures[..],
        [RecordFailure::OutOfTime { .. }]
    ));
    assert_eq!(outcome.checkpoint.first_failed(), Some("7"));
}

#[tokio::test(start_paused = true)]
async fn unreadable_images_and_missing_new_images_fail_their_records() {
    let (rule, seen) = recording_rule();
    let bad_image = json!({"Counter": {"S": "A"}, "Date": {"S": "2015-11-16"},
        "Instances": {"M": {"i-1": {"M": {"Value": {"S": "not a number"}}}}}});
    let outcome = run(
        &[&rule],
        vec![
            record("INSERT", "50", "A", Some(bad_image)),
            record("MODIFY", "40", "B", None),
            record("INSERT", "60", "C", Some(image("C", &[("i-1", 1)]))),
        ],
    )
    .await;
    assert_eq!(outcome.written, 1);
    assert_eq!(counter_of(&seen.lock().unwrap()[0]), "C");
    let reasons: Vec<&str> = outcome.failures.iter().map(RecordFailure::reason).collect();
    assert_eq!(reasons, ["unreadable", "no_new_image"]);
    assert_eq!(outcome.checkpoint.first_failed(), Some("40"));
}

#[tokio::test(start_paused = true)]
async fn an_item_without_instances_totals_zero() {
    let (rule, seen) = recording_rule();
    let outcome = run(
        &[&rule],
        vec![record(
            "INSERT",
            "1",
            "A",
            Some(json!({"Counter": {"S": "A"}, "Date": {"S": "2015-11-16"}})),
        )],
    )
    .await;
    assert_eq!(outcome.written, 1);
    assert_eq!(total_of(&seen.lock().unwrap()[0]), "0");
}

#[tokio::test]
async fn invoke_answers_with_the_partial_batch_response() {
    let failing =
        mock!(aws_sdk_dynamodb::Client::update_item).then_error(ddb_error("AccessDeniedException"));
    let mut context = Context::default();
    context.deadline = (SystemTime::now() + Duration::from_secs(30))
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let response = aggregator(&[&failing])
        .invoke(LambdaEvent::new(
            event(vec![record(
                "INSERT",
                "77",
                "A",
                Some(image("A", &[("i-1", 1)])),
            )]),
            context,
        ))
        .await
        .unwrap();
    assert_eq!(
        serde_json::to_value(response).unwrap(),
        json!({"batchItemFailures": [{"itemIdentifier": "77"}]})
    );
}

/// `(Value, Version, SourceVersion)` of counter's aggregate in the fake table.
fn aggregate(table: &FakeTable, counter: &str) -> (i64, u64, Option<u64>) {
    let item = table
        .item(&[("Counter", counter), ("Date", "2015-11-16")])
        .expect("the aggregate");
    let n = |name: &str| {
        item.get(name)
            .map(|v| v.as_n().unwrap().parse::<u64>().unwrap())
    };
    (
        item["Value"].as_n().unwrap().parse().unwrap(),
        n("Version").unwrap(),
        n("SourceVersion"),
    )
}

fn number(item: &Item, name: &str) -> i64 {
    item[name].as_n().unwrap().parse().unwrap()
}

/// counter-reporter's contract, over the aggregate table's stream: `Version` never
/// goes back, and grows by exactly one with every change of the total (a record
/// with the same `Version` carries the same total).
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
    let rule = table.rule();
    let aggregator = aggregator(&[&rule]);
    let older = batch_of("200", 12);
    let newer = batch_of("300", 10);
    aggregator
        .handle(&older, &a_minute(), &mut metrics())
        .await
        .unwrap();
    aggregator
        .handle(&newer, &a_minute(), &mut metrics())
        .await
        .unwrap();
    assert_eq!(aggregate(&table, "C"), (10, 2, Some(300)));
    let records = table.stream().len();

    // The replay (a redriven range, a retried batch) of the older record.
    let mut m = metrics();
    let replay = aggregator
        .handle(&older, &a_minute(), &mut m)
        .await
        .unwrap();
    assert_eq!(
        aggregate(&table, "C"),
        (10, 2, Some(300)),
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
async fn an_unchanged_total_from_a_newer_image_still_refuses_an_older_different_one() {
    // The aggregate's own A-B-A: 10 (v1), 12 (v2), 10 (v3), processed v1, v3, v2.
    let table = FakeTable::new();
    let rule = table.rule();
    let aggregator = aggregator(&[&rule]);
    for seq in ["1", "3"] {
        aggregator
            .handle(&batch_of(seq, 10), &a_minute(), &mut metrics())
            .await
            .unwrap();
    }
    assert_eq!(
        aggregate(&table, "C"),
        (10, 1, Some(3)),
        "the source version advanced, the total's Version did not"
    );
    let late = aggregator
        .handle(&batch_of("2", 12), &a_minute(), &mut metrics())
        .await
        .unwrap();
    assert_eq!(late.stale, 1);
    assert_eq!(aggregate(&table, "C"), (10, 1, Some(3)));
    assert_reporter_contract(&table);
}

#[tokio::test(start_paused = true)]
async fn every_processing_order_with_redeliveries_ends_at_the_newest_total() {
    let images = [("1", 10), ("2", 12), ("3", 10)];
    let orders = [
        [0, 1, 2],
        [0, 2, 1],
        [1, 0, 2],
        [1, 2, 0],
        [2, 0, 1],
        [2, 1, 0],
    ];
    for order in orders {
        let table = FakeTable::new();
        let rule = table.rule();
        let aggregator = aggregator(&[&rule]);
        for i in order.into_iter().flat_map(|i| [i, i]) {
            let (seq, total) = images[i];
            let outcome = aggregator
                .handle(&batch_of(seq, total), &a_minute(), &mut metrics())
                .await
                .unwrap();
            assert!(outcome.checkpoint.is_clean(), "{order:?}");
        }
        let (value, _, source) = aggregate(&table, "C");
        assert_eq!((value, source), (10, Some(3)), "order {order:?}");
        assert_reporter_contract(&table);
    }
}

#[tokio::test(start_paused = true)]
async fn a_total_changed_by_another_writer_between_the_steps_still_ends_newest() {
    let table = FakeTable::new();
    let rule = table.rule();
    let aggregator = aggregator(&[&rule]);
    aggregator
        .handle(&batch_of("5", 10), &a_minute(), &mut metrics())
        .await
        .unwrap();
    // Our record (v7, total 10) finds the total unchanged at step 1; before step 2 an
    // older image (v6, total 12) is written by another invocation.
    table.before_request(2, |items| {
        let item = items.values_mut().next().unwrap();
        item.insert("Value".into(), AttributeValue::N("12".into()));
        item.insert("SourceVersion".into(), AttributeValue::N("6".into()));
        item.insert("Version".into(), AttributeValue::N("2".into()));
    });
    let requests = table.requests();
    let outcome = aggregator
        .handle(&batch_of("7", 10), &a_minute(), &mut metrics())
        .await
        .unwrap();
    assert_eq!(
        table.requests() - requests,
        4,
        "write, restamp, claim, write"
    );
    assert_eq!(outcome.written, 1);
    assert_eq!(aggregate(&table, "C"), (10, 3, Some(7)));
}

#[tokio::test(start_paused = true)]
async fn a_claimed_version_whose_total_was_not_written_is_written_by_the_redelivery() {
    // As left by a failure between step 3 (version claimed) and step 4.
    let table = FakeTable::new();
    table.put(
        &["Counter", "Date"],
        Item::from([
            ("Counter".into(), AttributeValue::S("C".into())),
            ("Date".into(), AttributeValue::S("2015-11-16".into())),
            ("Value".into(), AttributeValue::N("12".into())),
            ("Version".into(), AttributeValue::N("2".into())),
            ("SourceVersion".into(), AttributeValue::N("7".into())),
        ]),
    );
    let rule = table.rule();
    let outcome = aggregator(&[&rule])
        .handle(&batch_of("7", 10), &a_minute(), &mut metrics())
        .await
        .unwrap();
    assert_eq!(outcome.written, 1);
    assert_eq!(aggregate(&table, "C"), (10, 3, Some(7)));
}

#[tokio::test(start_paused = true)]
async fn coalescing_keeps_the_image_with_the_highest_item_version() {
    // An emulator may number a stale image after a newer one (LocalStack builds
    // images by reading the item later): the item's Version decides, not the order.
    let table = FakeTable::new();
    let rule = table.rule();
    let outcome = aggregator(&[&rule])
        .handle(
            &event(vec![
                record("MODIFY", "20", "C", Some(json!({"Counter": {"S": "C"}, "Date": {"S": "2015-11-16"},
                    "Version": {"N": "9"}, "Instances": {"M": {"i-1": {"M": {"Value": {"N": "9"}}}}}}))),
                record("MODIFY", "21", "C", Some(json!({"Counter": {"S": "C"}, "Date": {"S": "2015-11-16"},
                    "Version": {"N": "8"}, "Instances": {"M": {"i-1": {"M": {"Value": {"N": "8"}}}}}}))),
            ]),
            &a_minute(),
            &mut metrics(),
        )
        .await
        .unwrap();
    assert_eq!((outcome.written, outcome.coalesced), (1, 1));
    assert_eq!(aggregate(&table, "C"), (9, 1, Some(9)));
}
