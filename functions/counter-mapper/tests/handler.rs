//! The mapper's decisions against mocked S3 and DynamoDB (no network).

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::operation::update_item::{UpdateItemError, UpdateItemOutput};
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::types::error::ConditionalCheckFailedException;
use aws_sdk_s3::operation::get_object::{GetObjectError, GetObjectOutput};
use aws_sdk_s3::operation::put_object::{PutObjectError, PutObjectOutput};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::error::NoSuchKey;
use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};
use aws_smithy_types::error::ErrorMetadata;
use counter_mapper::config::MapperConfig;
use counter_mapper::handler::{
    CREATE_MAP, CREATE_MAP_IF_ABSENT, Mapper, MapperError, Recorded, SET_ENTRY, SET_ENTRY_IF_NEWER,
    Summary,
};

/// `<bucket>/<key>` and body of every object written.
type Kept = Arc<Mutex<Vec<(String, String)>>>;

/// Every PutObject the mapper sends (key, body), answered with success.
fn kept_objects() -> (Rule, Kept) {
    let kept = Arc::new(Mutex::new(Vec::new()));
    let recorder = Arc::clone(&kept);
    let rule = mock!(aws_sdk_s3::Client::put_object)
        .match_requests(move |req| {
            let body = req
                .body()
                .bytes()
                .map(|b| String::from_utf8_lossy(b).into_owned());
            recorder.lock().unwrap().push((
                format!(
                    "{}/{}",
                    req.bucket().unwrap_or_default(),
                    req.key().unwrap_or_default()
                ),
                body.unwrap_or_default(),
            ));
            true
        })
        .then_output(|| PutObjectOutput::builder().build());
    (rule, kept)
}

fn records_of(body: &str) -> Vec<Value> {
    body.lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}
use serde_json::{Value, json};
use sluice_aws::Deadline;
use sluice_lambda::metrics::Metrics;
use sluice_lambda::{Context, Function, FunctionError, Invocation};

#[path = "support/fake_table.rs"]
mod fake_table;
use fake_table::FakeTable;

const TABLE: &str = "counter-instances";
const BUCKET: &str = "sluice-counters-000000000000";
const KEY: &str = "counters/2015-11-16/values_i-deadbeef";
const SEQUENCER: &str = "0055AED6DCD90281E5";
const STAMP: &str = "0055AED6DCD90281E500000000000000";

fn config(max_concurrent_updates: usize) -> MapperConfig {
    MapperConfig {
        instance_table: TABLE.into(),
        counters_bucket: BUCKET.into(),
        counter_prefix: "counters/".into(),
        error_prefix: "errors/".into(),
        max_concurrent_updates,
        deadline_margin: Duration::from_millis(500),
    }
}

fn mapper(s3_rules: &[&Rule], ddb_rules: &[&Rule]) -> Mapper {
    let s3 = mock_client!(aws_sdk_s3, RuleMode::MatchAny, s3_rules, |c| c
        .retry_config(aws_sdk_s3::config::retry::RetryConfig::disabled()));
    let ddb = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, ddb_rules, |c| c
        .retry_config(aws_sdk_dynamodb::config::retry::RetryConfig::disabled()));
    Mapper::new(s3, ddb, config(4))
}

/// An S3 ObjectCreated:Put notification inside an SNS → Lambda event.
fn sns_event(key: &str, sequencer: Option<&str>, version: Option<&str>) -> Value {
    let mut object = json!({"key": key, "size": 16, "eTag": "a3d5e2c0f1b4a8e2"});
    if let Some(s) = sequencer {
        object["sequencer"] = json!(s);
    }
    if let Some(v) = version {
        object["versionId"] = json!(v);
    }
    let s3 = json!({"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
        "eventTime": "2015-11-16T22:08:36.682Z", "eventName": "ObjectCreated:Put",
        "s3": {"s3SchemaVersion": "1.0", "bucket": {"name": BUCKET, "arn": format!("arn:aws:s3:::{BUCKET}")},
               "object": object}
    }]});
    json!({"Records": [{
        "EventVersion": "1.0", "EventSource": "aws:sns",
        "Sns": {"Type": "Notification", "MessageId": "m-1", "Subject": "Amazon S3 Notification",
                "TopicArn": "arn:aws:sns:us-east-1:000000000000:uploads", "Message": s3.to_string(),
                "Timestamp": "2015-11-16T22:08:36.726Z"}
    }]})
}

fn file_rule(body: &'static str) -> Rule {
    mock!(aws_sdk_s3::Client::get_object)
        .match_requests(|req| req.bucket() == Some(BUCKET) && req.key() == Some(KEY))
        .then_output(move || {
            GetObjectOutput::builder()
                .body(ByteStream::from_static(body.as_bytes()))
                .build()
        })
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

/// DynamoDB's answer to a path set under a map that does not exist.
fn missing_map() -> UpdateItemError {
    UpdateItemError::generic(
        ErrorMetadata::builder()
            .code("ValidationException")
            .message("The document path provided in the update expression is invalid for update")
            .build(),
    )
}

/// `2015-11-16#<shard of instance>`
fn shard_date(instance: &str) -> String {
    sluice_counters::ShardKey::of("2015-11-16", instance).to_string()
}

fn condition_failed() -> UpdateItemError {
    UpdateItemError::ConditionalCheckFailedException(
        ConditionalCheckFailedException::builder()
            .message("The conditional request failed")
            .build(),
    )
}

fn is_set_entry(req: &aws_sdk_dynamodb::operation::update_item::UpdateItemInput) -> bool {
    req.update_expression() == Some(SET_ENTRY)
}

fn is_create_map(req: &aws_sdk_dynamodb::operation::update_item::UpdateItemInput) -> bool {
    req.update_expression() == Some(CREATE_MAP)
}

fn counter_of(req: &aws_sdk_dynamodb::operation::update_item::UpdateItemInput) -> String {
    match req.key().and_then(|k| k.get("Counter")) {
        Some(AttributeValue::S(s)) => s.clone(),
        other => panic!("no Counter key: {other:?}"),
    }
}

fn a_minute() -> Deadline {
    Deadline::after(Duration::from_secs(60))
}

fn metrics() -> Metrics {
    Metrics::new("test", "counter-mapper")
}

#[tokio::test(start_paused = true)]
async fn records_every_counter_with_the_stamp_and_value_in_the_condition() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let recorder = Arc::clone(&seen);
    let update = mock!(aws_sdk_dynamodb::Client::update_item)
        .match_requests(move |req| {
            recorder.lock().unwrap().push(req.clone());
            is_set_entry(req)
        })
        .then_output(|| UpdateItemOutput::builder().build());
    let file = file_rule("COUNTER1 123456\nCOUNTER2 -7\n");
    let mapper = mapper(&[&file], &[&update]);
    let summary = mapper
        .handle(
            &sns_event(KEY, Some(SEQUENCER), None),
            &a_minute(),
            &mut metrics(),
        )
        .await
        .unwrap();
    assert_eq!(
        summary,
        Summary {
            files: 1,
            skipped: 0,
            counters: 2,
            written: 2,
            not_newer: 0,
            malformed_lines: 0,
            error_records: 0,
        }
    );
    let mut requests = seen.lock().unwrap().clone();
    requests.sort_by_key(counter_of);
    assert_eq!(requests.len(), 2);
    let req = &requests[0];
    assert_eq!(req.table_name(), Some(TABLE));
    // The instance's shard item of the day (the shared contract's hash).
    assert_eq!(
        req.key().unwrap().get("Date"),
        Some(&AttributeValue::S(shard_date("i-deadbeef")))
    );
    assert_eq!(req.condition_expression(), Some(SET_ENTRY_IF_NEWER));
    let names = req.expression_attribute_names().unwrap();
    assert_eq!(names["#inst"], "Instances");
    assert_eq!(names["#id"], "i-deadbeef");
    assert_eq!(names["#seq"], "Seq");
    assert_eq!(names["#val"], "Value");
    assert_eq!(names["#ver"], "Version");
    let values = req.expression_attribute_values().unwrap();
    assert_eq!(values[":one"], AttributeValue::N("1".into()));
    assert_eq!(values[":seq"], AttributeValue::S(STAMP.into()));
    assert_eq!(values[":val"], AttributeValue::N("123456".into()));
    let entry = values[":entry"].as_m().unwrap();
    assert_eq!(entry["Value"], AttributeValue::N("123456".into()));
    assert_eq!(entry["Seq"], AttributeValue::S(STAMP.into()));
    assert_eq!(
        requests[1].expression_attribute_values().unwrap()[":val"],
        AttributeValue::N("-7".into())
    );
}

#[tokio::test(start_paused = true)]
async fn unchanged_or_older_values_are_not_newer_and_not_an_error() {
    let update = mock!(aws_sdk_dynamodb::Client::update_item)
        .match_requests(is_set_entry)
        .then_error(condition_failed);
    let file = file_rule("COUNTER1 123456\nCOUNTER2 7\n");
    let mut m = metrics();
    let summary = mapper(&[&file], &[&update])
        .handle(&sns_event(KEY, Some(SEQUENCER), None), &a_minute(), &mut m)
        .await
        .unwrap();
    assert_eq!((summary.written, summary.not_newer), (0, 2));
    assert_eq!(
        update.num_calls(),
        2,
        "one request per counter, no fallback"
    );
    assert_eq!(m.get("NotNewer"), Some(2.0));
}

#[tokio::test(start_paused = true)]
async fn the_first_write_to_a_new_item_creates_the_instance_map() {
    let set_entry = mock!(aws_sdk_dynamodb::Client::update_item)
        .match_requests(is_set_entry)
        .then_error(missing_map);
    let created = Arc::new(Mutex::new(None));
    let recorder = Arc::clone(&created);
    let create_map = mock!(aws_sdk_dynamodb::Client::update_item)
        .match_requests(move |req| {
            *recorder.lock().unwrap() = Some(req.clone());
            is_create_map(req)
        })
        .then_output(|| UpdateItemOutput::builder().build());
    let file = file_rule("COUNTER1 1000\n");
    let summary = mapper(&[&file], &[&set_entry, &create_map])
        .handle(
            &sns_event(KEY, Some(SEQUENCER), None),
            &a_minute(),
            &mut metrics(),
        )
        .await
        .unwrap();
    assert_eq!(summary.written, 1);
    assert_eq!((set_entry.num_calls(), create_map.num_calls()), (1, 1));
    let req = created.lock().unwrap().clone().unwrap();
    assert_eq!(req.condition_expression(), Some(CREATE_MAP_IF_ABSENT));
    assert_eq!(
        req.expression_attribute_names().unwrap()["#inst"],
        "Instances"
    );
    let map = req.expression_attribute_values().unwrap()[":map"]
        .as_m()
        .unwrap()
        .clone();
    let entry = map["i-deadbeef"].as_m().unwrap();
    assert_eq!(entry["Value"], AttributeValue::N("1000".into()));
    assert_eq!(entry["Seq"], AttributeValue::S(STAMP.into()));
}

#[tokio::test(start_paused = true)]
async fn a_map_created_by_another_writer_meanwhile_gets_the_entry_on_a_second_try() {
    let set_entry = mock!(aws_sdk_dynamodb::Client::update_item)
        .match_requests(is_set_entry)
        .sequence()
        .error(missing_map)
        .output(|| UpdateItemOutput::builder().build())
        .build();
    let create_map = mock!(aws_sdk_dynamodb::Client::update_item)
        .match_requests(is_create_map)
        .then_error(condition_failed);
    let file = file_rule("COUNTER1 1000\n");
    let summary = mapper(&[&file], &[&set_entry, &create_map])
        .handle(
            &sns_event(KEY, Some(SEQUENCER), None),
            &a_minute(),
            &mut metrics(),
        )
        .await
        .unwrap();
    assert_eq!(summary.written, 1);
    assert_eq!((set_entry.num_calls(), create_map.num_calls()), (2, 1));
}

#[tokio::test(start_paused = true)]
async fn a_validation_error_against_an_existing_map_is_a_permanent_failure() {
    let set_entry = mock!(aws_sdk_dynamodb::Client::update_item)
        .match_requests(is_set_entry)
        .then_error(missing_map);
    let create_map = mock!(aws_sdk_dynamodb::Client::update_item)
        .match_requests(is_create_map)
        .then_error(condition_failed);
    let file = file_rule("COUNTER1 1000\n");
    let err = mapper(&[&file], &[&set_entry, &create_map])
        .handle(
            &sns_event(KEY, Some(SEQUENCER), None),
            &a_minute(),
            &mut metrics(),
        )
        .await
        .unwrap_err();
    assert!(!err.is_retryable());
    assert_eq!(FunctionError::from(&err).error_type, "Permanent.Update");
    assert_eq!(set_entry.num_calls(), 2, "no endless fallback loop");
    assert!(err.to_string().contains("COUNTER1"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn an_item_over_the_size_limit_is_that_error_not_a_missing_map() {
    // It used to be misread as "no map yet": the map was "created" (condition
    // failed), the entry sent again and the error reported as a validation error
    // of an existing map, its reason lost.
    let set_entry = mock!(aws_sdk_dynamodb::Client::update_item)
        .match_requests(is_set_entry)
        .then_error(|| {
            UpdateItemError::generic(
                ErrorMetadata::builder()
                    .code("ValidationException")
                    .message("Item size to update has exceeded the maximum allowed size")
                    .build(),
            )
        });
    let create_map = mock!(aws_sdk_dynamodb::Client::update_item)
        .match_requests(is_create_map)
        .then_error(condition_failed);
    let file = file_rule("COUNTER1 1000\n");
    let err = mapper(&[&file], &[&set_entry, &create_map])
        .handle(
            &sns_event(KEY, Some(SEQUENCER), None),
            &a_minute(),
            &mut metrics(),
        )
        .await
        .unwrap_err();
    assert_eq!((set_entry.num_calls(), create_map.num_calls()), (1, 0));
    assert!(!err.is_retryable());
    assert!(
        err.to_string().contains("maximum allowed size"),
        "the reason is kept: {err}"
    );
}

#[tokio::test(start_paused = true)]
async fn ten_thousand_instances_with_the_longest_ids_are_all_recorded_under_the_item_limit() {
    // One item per counter and day held every instance and hit 400 KB at about
    // 1,300 instances with long ids; sharded, 10,000 fit with room to spare.
    let table = FakeTable::without_stream();
    let update = table.rule();
    let mapper = mapper(&[], &[&update]);
    let stamp = counter_mapper::stamp::OrderingStamp::from_sequencer(Some(SEQUENCER)).unwrap();
    let instances = 10_000;
    for i in 0..instances {
        let file_key = counter_mapper::counter_key::CounterFileKey {
            date: "2015-11-16".into(),
            instance: format!("{i:0>256}"),
        };
        let cv = counter_mapper::counter_file::CounterValue {
            counter: "C".into(),
            value: i64::from(i) - 5_000,
        };
        let recorded = mapper.record(&file_key, &stamp, &cv, &a_minute()).await;
        assert_eq!(recorded, Ok(Recorded::Written), "instance {i}");
    }
    let items = table.items();
    let entries: usize = items
        .iter()
        .map(|item| item["Instances"].as_m().unwrap().len())
        .sum();
    let total: i64 = items
        .iter()
        .flat_map(|item| item["Instances"].as_m().unwrap().values())
        .map(|e| {
            e.as_m().unwrap()["Value"]
                .as_n()
                .unwrap()
                .parse::<i64>()
                .unwrap()
        })
        .sum();
    assert_eq!(entries, instances as usize);
    assert_eq!(
        total,
        (0..i64::from(instances)).map(|i| i - 5_000).sum::<i64>()
    );
    assert_eq!(items.len(), usize::from(sluice_counters::SHARDS));
    assert!(
        table.largest_item() < fake_table::MAX_ITEM_BYTES / 3,
        "the fullest shard item is {} bytes",
        table.largest_item()
    );
}

#[tokio::test(start_paused = true)]
async fn throttled_updates_are_retried_with_backoff() {
    let update = mock!(aws_sdk_dynamodb::Client::update_item)
        .match_requests(is_set_entry)
        .sequence()
        .error(ddb_error("ProvisionedThroughputExceededException"))
        .error(ddb_error("ThrottlingException"))
        .output(|| UpdateItemOutput::builder().build())
        .build();
    let file = file_rule("COUNTER1 1\n");
    let summary = mapper(&[&file], &[&update])
        .handle(
            &sns_event(KEY, Some(SEQUENCER), None),
            &a_minute(),
            &mut metrics(),
        )
        .await
        .unwrap();
    assert_eq!(summary.written, 1);
    assert_eq!(update.num_calls(), 3);
}

#[tokio::test(start_paused = true)]
async fn one_failing_counter_fails_the_invocation_after_the_others_are_recorded() {
    let denied = mock!(aws_sdk_dynamodb::Client::update_item)
        .match_requests(|req| is_set_entry(req) && counter_of(req) == "COUNTER2")
        .then_error(ddb_error("AccessDeniedException"));
    let applied = mock!(aws_sdk_dynamodb::Client::update_item)
        .match_requests(|req| is_set_entry(req) && counter_of(req) != "COUNTER2")
        .then_output(|| UpdateItemOutput::builder().build());
    let file = file_rule("COUNTER1 1\nCOUNTER2 2\nCOUNTER3 3\n");
    let mut m = metrics();
    let err = mapper(&[&file], &[&denied, &applied])
        .handle(&sns_event(KEY, Some(SEQUENCER), None), &a_minute(), &mut m)
        .await
        .unwrap_err();
    match &err {
        MapperError::Updates { failed, total, .. } => assert_eq!((*failed, *total), (1, 3)),
        other => panic!("{other:?}"),
    }
    assert_eq!(applied.num_calls(), 2);
    assert_eq!(m.get("Written"), Some(2.0));
    assert_eq!(m.get("FailedUpdates"), Some(1.0));
    assert!(err.to_string().contains("AccessDeniedException"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn throttling_until_the_deadline_is_a_retryable_failure() {
    let update = mock!(aws_sdk_dynamodb::Client::update_item)
        .match_requests(is_set_entry)
        .sequence()
        .error(ddb_error("ProvisionedThroughputExceededException"))
        .repeatedly()
        .build();
    let file = file_rule("COUNTER1 1\n");
    let deadline = Deadline::after(Duration::from_secs(3));
    let err = mapper(&[&file], &[&update])
        .handle(
            &sns_event(KEY, Some(SEQUENCER), None),
            &deadline,
            &mut metrics(),
        )
        .await
        .unwrap_err();
    assert!(err.is_retryable());
    assert_eq!(FunctionError::from(&err).error_type, "Retryable.Update");
    assert!(update.num_calls() > 1);
    assert!(!deadline.is_past(), "gave up before the deadline");
}

#[tokio::test(start_paused = true)]
async fn counters_whose_turn_comes_after_the_deadline_are_not_attempted() {
    let update = mock!(aws_sdk_dynamodb::Client::update_item)
        .then_output(|| UpdateItemOutput::builder().build());
    let file = file_rule("COUNTER1 1\nCOUNTER2 2\n");
    let err = mapper(&[&file], &[&update])
        .handle(
            &sns_event(KEY, Some(SEQUENCER), None),
            &Deadline::after(Duration::ZERO),
            &mut metrics(),
        )
        .await
        .unwrap_err();
    assert_eq!(update.num_calls(), 0);
    assert!(err.is_retryable());
    assert!(err.to_string().contains("time ran out"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn malformed_lines_are_skipped_and_counted_while_the_rest_is_recorded() {
    let update = mock!(aws_sdk_dynamodb::Client::update_item)
        .match_requests(|req| is_set_entry(req) && counter_of(req) == "GOOD")
        .then_output(|| UpdateItemOutput::builder().build());
    let file = file_rule("GOOD 5\nBAD five\n\nALSO BAD 1 2\r\n");
    let (put, kept) = kept_objects();
    let mut m = metrics();
    let summary = mapper(&[&file, &put], &[&update])
        .handle(
            &sns_event(KEY, Some(SEQUENCER), Some("v7")),
            &a_minute(),
            &mut m,
        )
        .await
        .unwrap();
    assert_eq!((summary.written, summary.malformed_lines), (1, 2));
    assert_eq!(summary.error_records, 1);
    assert_eq!(m.get("MalformedLines"), Some(2.0));
    assert_eq!(m.get("MalformedLines.bad_value"), Some(1.0));
    assert_eq!(m.get("MalformedLines.too_many_fields"), Some(1.0));
    // the lines that did not count are kept: file, line number, the line, the reason
    let kept = kept.lock().unwrap().clone();
    assert_eq!(kept.len(), 1);
    let (key, body) = &kept[0];
    assert_eq!(key, &format!("{BUCKET}/errors/{KEY}.{STAMP}.errors.jsonl"));
    let records = records_of(body);
    assert_eq!(records.len(), 2);
    assert_eq!(records[0]["source"], format!("s3://{BUCKET}/{KEY}"));
    assert_eq!(records[0]["version_id"], "v7");
    assert_eq!(records[0]["sequencer"], SEQUENCER);
    assert_eq!(
        (records[0]["line"].clone(), records[0]["text"].clone()),
        (json!(2), json!("BAD five"))
    );
    assert_eq!(records[0]["reason_code"], "bad_value");
    assert!(records[0]["reason"].as_str().unwrap().contains("five"));
    assert_eq!(
        (records[1]["line"].clone(), records[1]["text"].clone()),
        (json!(4), json!("ALSO BAD 1 2"))
    );
    assert_eq!(records[1]["reason_code"], "too_many_fields");
}

#[tokio::test(start_paused = true)]
async fn a_redelivery_keeps_the_same_error_object_with_the_same_bytes() {
    let update = mock!(aws_sdk_dynamodb::Client::update_item)
        .then_output(|| UpdateItemOutput::builder().build());
    let file = file_rule("GOOD 5\nBAD\n");
    let (put, kept) = kept_objects();
    let mapper = mapper(&[&file, &put], &[&update]);
    for _ in 0..2 {
        mapper
            .handle(
                &sns_event(KEY, Some(SEQUENCER), None),
                &a_minute(),
                &mut metrics(),
            )
            .await
            .unwrap();
    }
    let kept = kept.lock().unwrap().clone();
    assert_eq!(kept.len(), 2);
    assert_eq!(kept[0], kept[1]);
}

#[tokio::test(start_paused = true)]
async fn an_error_object_that_cannot_be_written_fails_the_file_for_a_retry() {
    let update = mock!(aws_sdk_dynamodb::Client::update_item)
        .then_output(|| UpdateItemOutput::builder().build());
    let file = file_rule("GOOD 5\nBAD\n");
    let refused = mock!(aws_sdk_s3::Client::put_object)
        .then_error(|| PutObjectError::generic(ErrorMetadata::builder().code("SlowDown").build()));
    let err = mapper(&[&file, &refused], &[&update])
        .handle(
            &sns_event(KEY, Some(SEQUENCER), None),
            &Deadline::after(Duration::from_secs(2)),
            &mut metrics(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, MapperError::KeepErrors { .. }), "{err:?}");
    assert!(err.is_retryable());
    assert_eq!(FunctionError::from(&err).error_type, "Retryable.Keep");
}

#[tokio::test(start_paused = true)]
async fn a_notification_naming_another_bucket_changes_nothing_and_is_refused() {
    let file = mock!(aws_sdk_s3::Client::get_object).then_output(|| {
        GetObjectOutput::builder()
            .body(ByteStream::from_static(b"C 99\n"))
            .build()
    });
    let (put, kept) = kept_objects();
    let update = mock!(aws_sdk_dynamodb::Client::update_item)
        .then_output(|| UpdateItemOutput::builder().build());
    let forged = serde_json::to_string(&sns_event(KEY, Some("FFFFFFFFFFFFFFFFFF"), None))
        .unwrap()
        .replace(BUCKET, "someone-elses-bucket");
    let mut m = metrics();
    let err = mapper(&[&file, &put], &[&update])
        .handle(&serde_json::from_str(&forged).unwrap(), &a_minute(), &mut m)
        .await
        .unwrap_err();
    assert!(matches!(err, MapperError::ForeignBucket { .. }), "{err:?}");
    assert_eq!(
        FunctionError::from(&err).error_type,
        "Permanent.ForeignBucket"
    );
    assert!(!err.is_retryable());
    assert!(err.to_string().contains("someone-elses-bucket"), "{err}");
    assert_eq!((file.num_calls(), update.num_calls()), (0, 0));
    assert!(kept.lock().unwrap().is_empty());
    assert_eq!(m.get("ForeignBucket"), Some(1.0));
}

#[tokio::test(start_paused = true)]
async fn keys_outside_the_counter_layout_are_skipped_without_reading() {
    let file = file_rule("COUNTER1 1\n");
    let update = mock!(aws_sdk_dynamodb::Client::update_item)
        .then_output(|| UpdateItemOutput::builder().build());
    let mapper = mapper(&[&file], &[&update]);
    let mut m = metrics();
    for key in [
        "elsewhere/2015-11-16/values_i-1",
        "counters/2015-11-16/readme.txt",
        "counters/2015-02-30/values_i-1",
    ] {
        let summary = mapper
            .handle(&sns_event(key, Some(SEQUENCER), None), &a_minute(), &mut m)
            .await
            .unwrap();
        assert_eq!(summary.skipped, 1, "{key}");
    }
    assert_eq!((file.num_calls(), update.num_calls()), (0, 0));
    assert_eq!(m.get("SkippedKeys.outside_prefix"), Some(1.0));
    assert_eq!(m.get("SkippedKeys.shape"), Some(1.0));
    assert_eq!(m.get("SkippedKeys.bad_date"), Some(1.0));
}

#[tokio::test(start_paused = true)]
async fn the_s3_test_event_is_skipped() {
    let event: Value = serde_json::from_str(include_str!(
        "../../../events/counter-mapper/sns-s3-test-event.json"
    ))
    .unwrap();
    let mut m = metrics();
    let summary = mapper(&[], &[])
        .handle(&event, &a_minute(), &mut m)
        .await
        .unwrap();
    assert_eq!(summary, Summary::default());
    assert_eq!(m.get("SkippedTestEvents"), Some(1.0));
}

#[tokio::test(start_paused = true)]
async fn a_notification_without_a_sequencer_is_rejected_as_unordered() {
    let file = file_rule("COUNTER1 1\n");
    let err = mapper(&[&file], &[])
        .handle(&sns_event(KEY, None, None), &a_minute(), &mut metrics())
        .await
        .unwrap_err();
    assert!(matches!(err, MapperError::Unordered { .. }), "{err:?}");
    assert_eq!(
        FunctionError::from(&err).error_type,
        "Permanent.UnorderedUpload"
    );
    assert!(!err.is_retryable());
    assert_eq!(file.num_calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_deleted_object_is_kept_as_an_error_record() {
    let gone = mock!(aws_sdk_s3::Client::get_object)
        .then_error(|| GetObjectError::NoSuchKey(NoSuchKey::builder().build()));
    let (put, kept) = kept_objects();
    let mut m = metrics();
    let summary = mapper(&[&gone, &put], &[])
        .handle(
            &sns_event(KEY, Some(SEQUENCER), Some("v3")),
            &a_minute(),
            &mut m,
        )
        .await
        .unwrap();
    assert_eq!((summary.skipped, summary.error_records), (1, 1));
    assert_eq!(m.get("MissingObjects"), Some(1.0));
    let kept = kept.lock().unwrap().clone();
    assert_eq!(kept.len(), 1);
    assert_eq!(
        kept[0].0,
        format!("{BUCKET}/errors/{KEY}.{STAMP}.errors.jsonl")
    );
    let records = records_of(&kept[0].1);
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["reason_code"], "missing_object");
    assert_eq!(records[0]["version_id"], "v3");
    assert_eq!(records[0]["line"], Value::Null);
}

#[tokio::test(start_paused = true)]
async fn a_failing_read_is_retryable_when_transient() {
    let unavailable = mock!(aws_sdk_s3::Client::get_object)
        .then_http_response(|| sluice_aws::test_support::http_response(503, ""));
    let err = mapper(&[&unavailable], &[])
        .handle(
            &sns_event(KEY, Some(SEQUENCER), None),
            &a_minute(),
            &mut metrics(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, MapperError::Read(_)), "{err:?}");
    assert!(err.is_retryable());
    assert_eq!(FunctionError::from(&err).error_type, "Retryable.Read");
}

#[tokio::test(start_paused = true)]
async fn reads_exactly_the_version_the_event_names() {
    let versioned = mock!(aws_sdk_s3::Client::get_object)
        .match_requests(|req| req.version_id() == Some("v-older"))
        .then_output(|| {
            GetObjectOutput::builder()
                .body(ByteStream::from_static(b"COUNTER1 1\n"))
                .build()
        });
    let update = mock!(aws_sdk_dynamodb::Client::update_item)
        .then_output(|| UpdateItemOutput::builder().build());
    let summary = mapper(&[&versioned], &[&update])
        .handle(
            &sns_event(KEY, Some(SEQUENCER), Some("v-older")),
            &a_minute(),
            &mut metrics(),
        )
        .await
        .unwrap();
    assert_eq!(summary.written, 1);
    assert_eq!(versioned.num_calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn an_event_that_is_no_s3_notification_is_invalid() {
    let err = mapper(&[], &[])
        .handle(&json!({"hello": "world"}), &a_minute(), &mut metrics())
        .await
        .unwrap_err();
    assert_eq!(
        FunctionError::from(&err).error_type,
        "Permanent.InvalidEvent"
    );
    assert!(!err.is_retryable());
}

fn context_with(deadline_in: Duration) -> Context {
    let mut context = Context::default();
    context.deadline = (SystemTime::now() + deadline_in)
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    context
}

#[tokio::test]
async fn invoke_handles_the_sample_event_and_reports_errors_with_their_type() {
    let event: Value = serde_json::from_str(include_str!(
        "../../../events/counter-mapper/sns-s3-put.json"
    ))
    .unwrap();
    let versioned = mock!(aws_sdk_s3::Client::get_object)
        .match_requests(|req| {
            req.key() == Some(KEY) && req.version_id() == Some("3HL4kqtJlcpXroDTDmjVBH40Nrjfkd")
        })
        .then_output(|| {
            GetObjectOutput::builder()
                .body(ByteStream::from_static(b"COUNTER1 123456\n"))
                .build()
        });
    let update = mock!(aws_sdk_dynamodb::Client::update_item)
        .then_output(|| UpdateItemOutput::builder().build());
    let mapper = mapper(&[&versioned], &[&update]);
    let invocation = || {
        Invocation::new(
            &context_with(Duration::from_secs(30)),
            mapper.answer_margin(),
        )
    };
    let summary = Function::handle(&mapper, event.clone(), &mut invocation())
        .await
        .unwrap();
    assert_eq!(summary.written, 1);

    let err = Function::handle(&mapper, json!([]), &mut invocation())
        .await
        .unwrap_err();
    assert_eq!(err.error_type, "Permanent.InvalidEvent");
}

/// Three uploads of one instance's file (S3 sequencers increase with each upload).
const VERSIONS: [(&str, &str, &str); 3] = [
    ("v1", "0055AED6DCD90281E5", "C 5\n"),
    ("v2", "0055AED6DCD90281E6", "C 7\n"),
    ("v3", "0055AED6DCD90281E7", "C 5\n"),
];

fn stamp_of(sequencer: &str) -> String {
    format!("{sequencer}{}", "0".repeat(32 - sequencer.len()))
}

/// Every version of the file, read by the version id the event names.
fn versioned_files() -> Rule {
    mock!(aws_sdk_s3::Client::get_object).then_compute_output(|req| {
        let (_, _, body) = VERSIONS
            .iter()
            .find(|(id, _, _)| req.version_id() == Some(*id))
            .expect("a known version");
        GetObjectOutput::builder()
            .body(ByteStream::from_static(body.as_bytes()))
            .build()
    })
}

/// The instance entry `(Value, Seq)` of counter `C` in the fake table, and the item's Version.
fn stored_entry(table: &FakeTable) -> ((String, String), String) {
    let item = table
        .item(&[("Counter", "C"), ("Date", &shard_date("i-deadbeef"))])
        .expect("the item");
    let entry = item["Instances"].as_m().unwrap()["i-deadbeef"]
        .as_m()
        .unwrap()
        .clone();
    (
        (
            entry["Value"].as_n().unwrap().clone(),
            entry["Seq"].as_s().unwrap().clone(),
        ),
        item["Version"].as_n().unwrap().clone(),
    )
}

async fn deliver(mapper: &Mapper, version: usize) -> Summary {
    let (id, sequencer, _) = VERSIONS[version];
    mapper
        .handle(
            &sns_event(KEY, Some(sequencer), Some(id)),
            &a_minute(),
            &mut metrics(),
        )
        .await
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_newer_upload_of_an_unchanged_value_advances_the_stamp_so_an_older_one_cannot_win() {
    // A-B-A: `C 5`, `C 7`, `C 5`, delivered v1, v3, v2. The old condition
    // (`Seq <= :seq AND Value <> :val`) left v1's stamp under v3's unchanged value,
    // so v2 passed and the table ended at 7.
    let table = FakeTable::new();
    let (files, update) = (versioned_files(), table.rule());
    let mapper = mapper(&[&files], &[&update]);

    let first = deliver(&mapper, 0).await;
    let third = deliver(&mapper, 2).await;
    let second = deliver(&mapper, 1).await;
    assert_eq!(
        stored_entry(&table),
        (("5".to_owned(), stamp_of(VERSIONS[2].1)), "2".to_owned()),
        "ends at the newest upload's value and stamp; Version counts the two writes"
    );
    assert_eq!(first.written, 1);
    assert_eq!(
        (third.written, third.not_newer),
        (1, 0),
        "the newer upload records its stamp even though the value is unchanged"
    );
    assert_eq!(
        (second.written, second.not_newer),
        (0, 1),
        "the older upload is refused"
    );

    // Idempotent: the newest version delivered again changes nothing and makes no
    // stream record (so no aggregator work).
    let records = table.stream().len();
    let again = deliver(&mapper, 2).await;
    assert_eq!((again.written, again.not_newer), (0, 1));
    assert_eq!(table.stream().len(), records);
}

#[tokio::test(start_paused = true)]
async fn every_delivery_order_with_redeliveries_ends_at_the_newest_upload() {
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
        let (files, update) = (versioned_files(), table.rule());
        let mapper = mapper(&[&files], &[&update]);
        let mut written = 0;
        // Each delivered twice in a row (SNS and Lambda's async retries both redeliver).
        for version in order.into_iter().flat_map(|v| [v, v]) {
            written += deliver(&mapper, version).await.written;
        }
        let ((value, seq), item_version) = stored_entry(&table);
        assert_eq!(
            (value.as_str(), seq.as_str()),
            ("5", stamp_of(VERSIONS[2].1).as_str()),
            "order {order:?}"
        );
        assert_eq!(
            table.stream().len(),
            written,
            "one stream record per write, none for a redelivery: {order:?}"
        );
        assert!(written <= 3, "{order:?}: {written} writes");
        assert_eq!(item_version, written.to_string(), "{order:?}");
    }
}
