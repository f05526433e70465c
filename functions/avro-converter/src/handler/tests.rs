//! The handler's decisions against a mocked S3 (aws-smithy-mocks, no network): what is
//! written where, what is ignored, and which failures fail the invocation.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use aws_sdk_s3::Client;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::operation::get_object::{GetObjectError, GetObjectOutput};
use aws_sdk_s3::operation::put_object::PutObjectOutput;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::error::NoSuchKey;
use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};
use serde_json::{Value, json};
use sluice_aws::test_support::xml_error;
use sluice_codec::avro::read_container;
use sluice_codec::snappy::{compress_framed, compress_raw};
use sluice_lambda::config::Env;

use super::*;
use crate::config::{INPUT_BUCKET, INPUT_PREFIX, OUTPUT_BUCKET};
use crate::sample::{ndjson, player_event};
use crate::schema::RecordSchema;

/// 2024-05-14T09:59:58Z: with 1 s steps, two events in hour 09, the rest in hour 10.
const NEAR_TEN: i64 = 1_715_680_798_000;
const KEY: &str = "incoming/2024/05/14/player 0001.json.snappy";
/// As S3 puts it in the notification (form-encoded).
const RAW_KEY: &str = "incoming/2024/05/14/player+0001.json.snappy";

fn config() -> Config {
    Config::from_env(&Env::from_pairs([
        (INPUT_BUCKET, "raw"),
        (INPUT_PREFIX, "incoming/"),
        (OUTPUT_BUCKET, "curated"),
    ]))
    .unwrap()
}

fn converter(config: &Config) -> Converter {
    Converter::new(
        RecordSchema::player_event(),
        config.codec,
        config.timestamp.clone(),
        config.max_decompressed_bytes,
        config.output.prefix.clone(),
    )
}

fn handler(rules: &[&Rule]) -> Handler {
    let config = config();
    let converter = converter(&config);
    Handler::new(config, converter, client(rules))
}

fn client(rules: &[&Rule]) -> Client {
    mock_client!(aws_sdk_s3, RuleMode::MatchAny, rules, |c| c
        .retry_config(RetryConfig::disabled()))
}

fn deadline() -> Deadline {
    Deadline::after(Duration::from_secs(30))
}

/// An S3 → Lambda event as S3 sends it.
fn s3_event(bucket: &str, raw_key: &str, event_name: &str) -> Value {
    json!({"Records": [s3_record(bucket, raw_key, event_name)]})
}

fn s3_record(bucket: &str, raw_key: &str, event_name: &str) -> Value {
    json!({
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "us-east-1",
        "eventTime": "2024-05-14T10:00:03.120Z",
        "eventName": event_name,
        "userIdentity": {"principalId": "AWS:AIDAEXAMPLE"},
        "requestParameters": {"sourceIPAddress": "203.0.113.7"},
        "responseElements": {"x-amz-request-id": "C3D13FE58DE4C810", "x-amz-id-2": "FMyUVURIY8/IgAtTv8xRjskZQpcIZ9KG4V5Wp6S7S/JRWeUWerMUE5JgHvANOjpD"},
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "avro-converter",
            "bucket": {"name": bucket, "ownerIdentity": {"principalId": "A3NL1KOZZKExample"}, "arn": format!("arn:aws:s3:::{bucket}")},
            "object": {"key": raw_key, "size": 2048, "eTag": "9b2cf535f27731c974343645a3985328", "sequencer": "0066433E2F8B4A1D9C"}
        }
    })
}

fn get_rule(bucket: &'static str, key: &'static str, body: Vec<u8>) -> Rule {
    mock!(Client::get_object)
        .match_requests(move |r| r.bucket() == Some(bucket) && r.key() == Some(key))
        .then_output(move || {
            GetObjectOutput::builder()
                .body(ByteStream::from(body.clone()))
                .build()
        })
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Stored {
    bucket: String,
    key: String,
    body: Vec<u8>,
    content_type: Option<String>,
    metadata: HashMap<String, String>,
}

/// A PutObject rule that accepts everything and records what was put, in call order.
fn put_recorder() -> (Rule, Arc<Mutex<Vec<Stored>>>) {
    let stored = Arc::new(Mutex::new(Vec::new()));
    let sink = stored.clone();
    let rule = mock!(Client::put_object)
        .match_requests(move |r| {
            sink.lock().unwrap().push(Stored {
                bucket: r.bucket().unwrap_or_default().to_owned(),
                key: r.key().unwrap_or_default().to_owned(),
                body: r.body().bytes().unwrap_or_default().to_vec(),
                content_type: r.content_type().map(str::to_owned),
                metadata: r.metadata().cloned().unwrap_or_default(),
            });
            true
        })
        .sequence()
        .output(|| PutObjectOutput::builder().build())
        .repeatedly()
        .build();
    (rule, stored)
}

fn stored_by_key(stored: &Mutex<Vec<Stored>>) -> HashMap<String, Stored> {
    stored
        .lock()
        .unwrap()
        .iter()
        .map(|s| (format!("s3://{}/{}", s.bucket, s.key), s.clone()))
        .collect()
}

fn jsonl(body: &[u8]) -> Vec<Value> {
    body.split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect()
}

fn events(n: u64) -> Vec<Value> {
    (0..n).map(|i| player_event(i, NEAR_TEN, 1_000)).collect()
}

#[tokio::test(start_paused = true)]
async fn converts_an_object_into_hourly_avro_files_traced_to_their_source() {
    let input = ndjson(5, NEAR_TEN, 1_000);
    let get = get_rule("raw", KEY, compress_raw(&input));
    let (put, stored) = put_recorder();
    let summary = handler(&[&get, &put])
        .handle_event(&s3_event("raw", RAW_KEY, "ObjectCreated:Put"), deadline())
        .await
        .unwrap();

    let tag = sluice_partition::source_tag(KEY);
    let hour9 = &format!("avro/year=2024/month=05/day=14/hour=09/player 0001.{tag}.avro");
    let hour10 = &format!("avro/year=2024/month=05/day=14/hour=10/player 0001.{tag}.avro");
    assert_eq!(
        summary.objects,
        [ObjectOutcome::Converted {
            bucket: "raw".into(),
            key: KEY.into(),
            records: 5,
            rejected: 0,
            files: vec![hour9.into(), hour10.into()],
            errors_file: None,
        }]
    );
    assert_eq!(get.num_calls(), 1, "the key is decoded once and read once");
    let stored = stored_by_key(&stored);
    assert_eq!(stored.len(), 2);
    let expected = converter(&config()).convert_json(&input, KEY).unwrap();
    for file in &expected.files {
        let put = &stored[&format!("s3://curated/{}", file.key)];
        assert_eq!(put.body, file.bytes);
        assert_eq!(put.content_type.as_deref(), Some("application/avro"));
        assert_eq!(put.metadata["source-bucket"], "raw");
        assert_eq!(
            put.metadata["source-key"],
            "incoming/2024/05/14/player%200001.json.snappy"
        );
        assert_eq!(
            put.metadata["source-etag"],
            "9b2cf535f27731c974343645a3985328"
        );
    }
    let hour10_records = read_container(&stored[&format!("s3://curated/{hour10}")].body).unwrap();
    assert_eq!(hour10_records.len(), 3);
}

/// Reads of `KEY`: `first` (ETag "v1") once, then `then` (ETag "v2") on every later read.
fn replaced_input(first: Vec<u8>, then: Vec<u8>) -> Rule {
    mock!(Client::get_object)
        .match_requests(|r| r.key() == Some(KEY))
        .sequence()
        .output(move || {
            GetObjectOutput::builder()
                .e_tag("\"v1\"")
                .body(ByteStream::from(first.clone()))
                .build()
        })
        .output(move || {
            GetObjectOutput::builder()
                .e_tag("\"v2\"")
                .body(ByteStream::from(then.clone()))
                .build()
        })
        .repeatedly()
        .build()
}

fn head_etag(etag: &'static str) -> Rule {
    mock!(Client::head_object)
        .match_requests(|r| r.key() == Some(KEY))
        .sequence()
        .output(move || {
            aws_sdk_s3::operation::head_object::HeadObjectOutput::builder()
                .e_tag(etag)
                .build()
        })
        .repeatedly()
        .build()
}

#[tokio::test(start_paused = true)]
async fn an_input_replaced_while_converting_ends_with_the_newest_versions_output() {
    // The version read (v1) was replaced by v2 before the outputs were written: v1's files
    // are stale, so v2 is converted and written over them, as the newest always must be.
    let (v1, v2) = (ndjson(5, NEAR_TEN, 1_000), ndjson(5, NEAR_TEN, 2_000));
    let get = replaced_input(compress_raw(&v1), compress_raw(&v2));
    let head = head_etag("\"v2\"");
    let (put, stored) = put_recorder();
    let summary = handler(&[&get, &head, &put])
        .handle_event(&s3_event("raw", RAW_KEY, "ObjectCreated:Put"), deadline())
        .await
        .unwrap();
    assert_eq!((get.num_calls(), head.num_calls()), (2, 2));
    assert!(matches!(
        &summary.objects[0],
        ObjectOutcome::Converted { records: 5, .. }
    ));
    let last = stored_by_key(&stored);
    let newest = converter(&config()).convert_json(&v2, KEY).unwrap();
    assert_eq!(last.len(), newest.files.len());
    for file in &newest.files {
        assert_eq!(
            last[&format!("s3://curated/{}", file.key)].body,
            file.bytes,
            "{}",
            file.key
        );
    }
}

#[tokio::test(start_paused = true)]
async fn an_input_replaced_during_every_conversion_is_left_to_a_retry() {
    let input = compress_raw(&ndjson(5, NEAR_TEN, 1_000));
    let get = replaced_input(input.clone(), input);
    let head = head_etag("\"v3\"");
    let (put, _) = put_recorder();
    let err = handler(&[&get, &head, &put])
        .handle_event(&s3_event("raw", RAW_KEY, "ObjectCreated:Put"), deadline())
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert!(err.to_string().contains("InputKeptChanging"), "{err}");
    assert_eq!(get.num_calls(), 3);
}

#[tokio::test(start_paused = true)]
async fn rejected_records_go_to_the_errors_file_and_the_rest_convert() {
    let mut records = events(3);
    records[1]["position_ms"] = json!("12s");
    let mut text = Vec::new();
    for r in &records {
        text.extend_from_slice(r.to_string().as_bytes());
        text.push(b'\n');
    }
    let get = get_rule("raw", KEY, compress_framed(&text));
    let (put, stored) = put_recorder();
    let summary = handler(&[&get, &put])
        .handle_event(&s3_event("raw", RAW_KEY, "ObjectCreated:Put"), deadline())
        .await
        .unwrap();
    let errors_key = "errors/incoming/2024/05/14/player 0001.errors.jsonl";
    let ObjectOutcome::Converted {
        records: converted,
        rejected,
        errors_file,
        ..
    } = &summary.objects[0]
    else {
        panic!("{summary:?}");
    };
    assert_eq!((*converted, *rejected), (2, 1));
    assert_eq!(
        errors_file.as_deref(),
        Some(&*format!("s3://curated/{errors_key}"))
    );

    let stored = stored_by_key(&stored);
    let errors = &stored[&format!("s3://curated/{errors_key}")];
    assert_eq!(errors.content_type.as_deref(), Some("application/x-ndjson"));
    let lines = jsonl(&errors.body);
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["record"], records[1]);
    assert_eq!(lines[0]["path"], "$.position_ms");
    assert_eq!(lines[0]["expected"], "long");
    assert_eq!(lines[0]["source"], format!("s3://raw/{KEY}"));
    let avro_records: usize = stored
        .values()
        .filter(|s| s.key.ends_with(".avro"))
        .map(|s| read_container(&s.body).unwrap().len())
        .sum();
    assert_eq!(avro_records, 2);
}

#[tokio::test(start_paused = true)]
async fn an_input_that_is_not_snappy_is_copied_to_the_error_prefix_and_does_not_fail() {
    let body = br#"{"PTS": 1715680798000}"#.to_vec();
    let get = get_rule("raw", KEY, body.clone());
    let (put, stored) = put_recorder();
    let summary = handler(&[&get, &put])
        .handle_event(&s3_event("raw", RAW_KEY, "ObjectCreated:Put"), deadline())
        .await
        .unwrap();
    let ObjectOutcome::InputRejected {
        reason,
        errors_file,
        copy,
        ..
    } = &summary.objects[0]
    else {
        panic!("{summary:?}");
    };
    assert!(reason.contains("not snappy-compressed"), "{reason}");
    assert_eq!(copy, &format!("s3://curated/errors/{KEY}"));
    let stored = stored_by_key(&stored);
    assert_eq!(stored.len(), 2, "copy and reason, no Avro");
    assert_eq!(stored[copy].body, body);
    let lines = jsonl(&stored[errors_file].body);
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["kind"], "not_snappy");
    assert_eq!(lines[0]["source"], format!("s3://raw/{KEY}"));
    assert_eq!(lines[0]["etag"], "9b2cf535f27731c974343645a3985328");
    assert_eq!(lines[0]["copy"], copy.as_str());
}

#[tokio::test(start_paused = true)]
async fn an_input_too_large_to_decompress_within_the_limit_is_rejected_unread() {
    // 3 GB announced (a body that would fail to convert if it were read) and 7 GB.
    let big = |size: i64| {
        mock!(Client::get_object)
            .match_requests(move |r| r.key() == Some(KEY))
            .then_output(move || {
                GetObjectOutput::builder()
                    .content_length(size)
                    .body(ByteStream::from_static(b"never read"))
                    .build()
            })
    };
    let copy = mock!(Client::copy_object)
        .match_requests(|r| {
            r.copy_source() == Some("raw/incoming/2024/05/14/player%200001.json.snappy")
                && r.bucket() == Some("curated")
                && r.key() == Some(&format!("errors/{KEY}"))
        })
        .then_output(|| aws_sdk_s3::operation::copy_object::CopyObjectOutput::builder().build());
    for (size, copied) in [(3_000_000_000_i64, true), (7_000_000_000, false)] {
        let get = big(size);
        let (put, stored) = put_recorder();
        let calls_before = copy.num_calls();
        let summary = handler(&[&get, &copy, &put])
            .handle_event(&s3_event("raw", RAW_KEY, "ObjectCreated:Put"), deadline())
            .await
            .unwrap();
        let ObjectOutcome::InputRejected {
            reason,
            errors_file,
            ..
        } = &summary.objects[0]
        else {
            panic!("{summary:?}");
        };
        let limit = (256u64 << 20) + (256u64 << 20) / 6 + 1024;
        assert!(
            reason.contains(&format!("input is {size} bytes"))
                && reason.contains(&format!("({limit} bytes); not read")),
            "{reason}"
        );
        let stored = stored_by_key(&stored);
        assert_eq!(
            stored.len(),
            1,
            "only the reason is put; nothing of the input was read"
        );
        let line = &jsonl(&stored[errors_file].body)[0];
        assert_eq!(line["kind"], "too_large");
        assert_eq!(copy.num_calls() - calls_before, usize::from(copied));
        if copied {
            assert_eq!(line["copy"], format!("s3://curated/errors/{KEY}"));
        } else {
            assert_eq!(line["copy"], Value::Null);
            assert!(
                line["copy_skipped"]
                    .as_str()
                    .unwrap()
                    .contains("5368709120"),
                "{line}"
            );
        }
    }
}

#[tokio::test(start_paused = true)]
async fn an_input_that_is_not_json_is_rejected_with_its_reason() {
    let get = get_rule(
        "raw",
        KEY,
        compress_raw(b"PTS,event_id\n1715680798000,e1\n"),
    );
    let (put, stored) = put_recorder();
    let summary = handler(&[&get, &put])
        .handle_event(&s3_event("raw", RAW_KEY, "ObjectCreated:Put"), deadline())
        .await
        .unwrap();
    let ObjectOutcome::InputRejected {
        reason,
        errors_file,
        ..
    } = &summary.objects[0]
    else {
        panic!("{summary:?}");
    };
    assert!(
        reason.starts_with("decompressed input is not JSON"),
        "{reason}"
    );
    let lines = jsonl(&stored_by_key(&stored)[errors_file].body);
    assert_eq!(lines[0]["kind"], "not_json");
}

#[tokio::test(start_paused = true)]
async fn keys_under_our_own_output_or_error_prefix_are_ignored_without_reading() {
    let get = mock!(Client::get_object).then_output(|| GetObjectOutput::builder().build());
    let (put, stored) = put_recorder();
    let handler = handler(&[&get, &put]);
    let cases = [
        (
            "curated",
            "avro/year=2024/month=05/day=14/hour=10/p.avro",
            "ObjectCreated:Put",
            Ignored::OwnOutput,
        ),
        (
            "curated",
            "errors/incoming/p.json.snappy",
            "ObjectCreated:Put",
            Ignored::OwnErrors,
        ),
        (
            "elsewhere",
            RAW_KEY,
            "ObjectCreated:Put",
            Ignored::OtherBucket,
        ),
        (
            "raw",
            "incoming/p.csv",
            "ObjectCreated:Put",
            Ignored::OutsideFilter,
        ),
        (
            "raw",
            "other/p.json.snappy",
            "ObjectCreated:Put",
            Ignored::OutsideFilter,
        ),
        ("raw", RAW_KEY, "ObjectRemoved:Delete", Ignored::NotCreated),
    ];
    for (bucket, key, event_name, why) in cases {
        let summary = handler
            .handle_event(&s3_event(bucket, key, event_name), deadline())
            .await
            .unwrap();
        assert!(
            matches!(&summary.objects[0], ObjectOutcome::Ignored { why: w, .. } if *w == why),
            "{bucket}/{key}: {summary:?}"
        );
    }
    assert_eq!(get.num_calls(), 0);
    assert!(stored.lock().unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn an_object_deleted_since_the_event_is_ignored() {
    let gone = mock!(Client::get_object)
        .then_error(|| GetObjectError::NoSuchKey(NoSuchKey::builder().build()));
    let (put, stored) = put_recorder();
    let summary = handler(&[&gone, &put])
        .handle_event(&s3_event("raw", RAW_KEY, "ObjectCreated:Put"), deadline())
        .await
        .unwrap();
    assert!(matches!(
        summary.objects[0],
        ObjectOutcome::Ignored {
            why: Ignored::Gone,
            ..
        }
    ));
    assert!(stored.lock().unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn the_s3_test_event_is_not_an_error() {
    let event = json!({
        "Service": "Amazon S3",
        "Event": "s3:TestEvent",
        "Time": "2024-05-14T09:00:00.000Z",
        "Bucket": "raw",
        "RequestId": "5582815E1AEA5ADF",
        "HostId": "8cLeGAmw098X5cv4Zkwcmo8vvZa3eH3eKxsPzbB9wrR+YstdA6Knx4Ip8EXAMPLE"
    });
    let summary = handler(&[]).handle_event(&event, deadline()).await.unwrap();
    assert_eq!(summary.objects, [ObjectOutcome::TestEvent]);
}

#[tokio::test(start_paused = true)]
async fn a_transient_read_failure_fails_the_invocation_for_a_retry() {
    let slow = mock!(Client::get_object)
        .then_http_response(|| xml_error(503, "SlowDown", "Please reduce your request rate."));
    let (put, stored) = put_recorder();
    let err = handler(&[&slow, &put])
        .handle_event(&s3_event("raw", RAW_KEY, "ObjectCreated:Put"), deadline())
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err}");
    let function_error = FunctionError::from(err);
    assert_eq!(function_error.error_type, "Retryable.S3");
    assert!(
        function_error.message.contains("SlowDown"),
        "{function_error}"
    );
    assert!(stored.lock().unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_permanent_read_failure_fails_the_invocation_without_retry_value() {
    let denied = mock!(Client::get_object)
        .then_http_response(|| xml_error(403, "AccessDenied", "Access Denied"));
    let err = handler(&[&denied])
        .handle_event(&s3_event("raw", RAW_KEY, "ObjectCreated:Put"), deadline())
        .await
        .unwrap_err();
    assert!(!err.is_retryable());
    assert!(err.to_string().contains("AccessDenied"), "{err}");
    assert_eq!(FunctionError::from(err).error_type, "Permanent.S3");
}

#[tokio::test(start_paused = true)]
async fn a_write_that_keeps_failing_transiently_fails_the_invocation() {
    let get = get_rule("raw", KEY, compress_raw(&ndjson(3, NEAR_TEN, 1_000)));
    let put = mock!(Client::put_object)
        .sequence()
        .http_response(|| xml_error(503, "SlowDown", "Please reduce your request rate."))
        .repeatedly()
        .build();
    let err = handler(&[&get, &put])
        .handle_event(
            &s3_event("raw", RAW_KEY, "ObjectCreated:Put"),
            Deadline::after(Duration::from_secs(3)),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, HandlerError::Write(_)), "{err}");
    assert!(err.is_retryable());
    assert!(
        put.num_calls() > 2,
        "writes were retried within the deadline"
    );
}

#[tokio::test(start_paused = true)]
async fn a_write_that_recovers_within_the_deadline_succeeds() {
    let get = get_rule("raw", KEY, compress_raw(&ndjson(3, NEAR_TEN, 1_000)));
    let flaky = mock!(Client::put_object)
        .sequence()
        .http_response(|| xml_error(500, "InternalError", "We encountered an internal error."))
        .times(2)
        .build();
    let (put, stored) = put_recorder();
    let handler = Handler::new(config(), converter(&config()), {
        mock_client!(
            aws_sdk_s3,
            RuleMode::Sequential,
            [&get, &flaky, &put],
            |c| c.retry_config(RetryConfig::disabled())
        )
    });
    let summary = handler
        .handle_event(&s3_event("raw", RAW_KEY, "ObjectCreated:Put"), deadline())
        .await
        .unwrap();
    assert!(matches!(
        summary.objects[0],
        ObjectOutcome::Converted { .. }
    ));
    assert_eq!(flaky.num_calls(), 2);
    assert_eq!(stored.lock().unwrap().len(), 2, "both hour files written");
}

#[tokio::test(start_paused = true)]
async fn redelivery_rewrites_the_same_keys_with_the_same_bytes() {
    let get = get_rule("raw", KEY, compress_raw(&ndjson(40, NEAR_TEN, 1_000)));
    let (put, stored) = put_recorder();
    let handler = handler(&[&get, &put]);
    let event = s3_event("raw", RAW_KEY, "ObjectCreated:Put");
    let first = handler.handle_event(&event, deadline()).await.unwrap();
    let first_puts = stored_by_key(&stored);
    stored.lock().unwrap().clear();
    let second = handler.handle_event(&event, deadline()).await.unwrap();
    assert_eq!(first, second);
    assert_eq!(first_puts, stored_by_key(&stored));
}

#[tokio::test(start_paused = true)]
async fn a_later_record_failing_fails_the_whole_event_after_the_first_converted() {
    // Both records are redone on retry; the first one's files are simply rewritten.
    let get_first = get_rule("raw", KEY, compress_raw(&ndjson(2, NEAR_TEN, 1_000)));
    let second_key = "incoming/p2.json.snappy";
    let get_second = mock!(Client::get_object)
        .match_requests(move |r| r.key() == Some(second_key))
        .then_http_response(|| xml_error(503, "SlowDown", "Please reduce your request rate."));
    let (put, stored) = put_recorder();
    let event = json!({"Records": [
        s3_record("raw", RAW_KEY, "ObjectCreated:Put"),
        s3_record("raw", second_key, "ObjectCreated:Put"),
    ]});
    let err = handler(&[&get_first, &get_second, &put])
        .handle_event(&event, deadline())
        .await
        .unwrap_err();
    assert!(err.is_retryable());
    assert_eq!(stored.lock().unwrap().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn an_event_that_is_not_an_s3_notification_fails_as_invalid() {
    let err = handler(&[])
        .handle_event(&json!({"detail": "nope"}), deadline())
        .await
        .unwrap_err();
    assert!(!err.is_retryable());
    assert_eq!(
        FunctionError::from(err).error_type,
        "Permanent.InvalidEvent"
    );
}

#[test]
fn metadata_keys_are_ascii() {
    assert_eq!(
        percent_encode("in/café (1).json"),
        "in/caf%C3%A9%20%281%29.json"
    );
}

/// The sample events in `events/avro-converter/` (for `just invoke`) are what the handler
/// expects: the puts are read with their key decoded once, the rest need no S3 at all.
#[tokio::test(start_paused = true)]
async fn sample_events_are_handled_as_documented() {
    let config = Config::from_env(&Env::from_pairs([
        (INPUT_BUCKET, "player-raw-local"),
        (INPUT_PREFIX, "incoming/"),
        (OUTPUT_BUCKET, "player-avro-local"),
    ]))
    .unwrap();
    let put_key = "incoming/2024/05/14/player-events 09h (eu-west-1).json.snappy";
    let multipart_key = "incoming/2024/05/14/player-events-10h.json.snappy";
    let put_get = get_rule(
        "player-raw-local",
        put_key,
        compress_raw(&ndjson(3, NEAR_TEN, 1_000)),
    );
    let multipart_get = get_rule(
        "player-raw-local",
        multipart_key,
        compress_framed(&ndjson(3, NEAR_TEN, 1_000)),
    );
    let (put, _stored) = put_recorder();
    let handler = Handler::new(
        config.clone(),
        converter(&config),
        client(&[&put_get, &multipart_get, &put]),
    );
    let parse = |text: &str| serde_json::from_str::<Value>(text).unwrap();

    let summary = handler
        .handle_event(
            &parse(include_str!(
                "../../../../events/avro-converter/s3-put.json"
            )),
            deadline(),
        )
        .await
        .unwrap();
    assert!(
        matches!(&summary.objects[0], ObjectOutcome::Converted { key, files, .. }
            if key == put_key && files[0] == format!("avro/year=2024/month=05/day=14/hour=09/player-events 09h (eu-west-1).{}.avro", sluice_partition::source_tag(put_key))),
        "{summary:?}"
    );
    let summary = handler
        .handle_event(
            &parse(include_str!(
                "../../../../events/avro-converter/s3-multipart-upload.json"
            )),
            deadline(),
        )
        .await
        .unwrap();
    assert!(matches!(
        &summary.objects[0],
        ObjectOutcome::Converted { records: 3, .. }
    ));
    let summary = handler
        .handle_event(
            &parse(include_str!(
                "../../../../events/avro-converter/s3-put-own-output.json"
            )),
            deadline(),
        )
        .await
        .unwrap();
    assert!(matches!(
        summary.objects[0],
        ObjectOutcome::Ignored {
            why: Ignored::OwnOutput,
            ..
        }
    ));
    let summary = handler
        .handle_event(
            &parse(include_str!(
                "../../../../events/avro-converter/s3-test-event.json"
            )),
            deadline(),
        )
        .await
        .unwrap();
    assert_eq!(summary.objects, [ObjectOutcome::TestEvent]);
    assert_eq!((put_get.num_calls(), multipart_get.num_calls()), (1, 1));
}
