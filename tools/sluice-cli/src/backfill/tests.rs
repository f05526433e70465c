//! Which raw objects are converted again, with which event, and what is counted.

use aws_sdk_s3::operation::list_objects_v2::ListObjectsV2Output;
use aws_smithy_mocks::mock;
use sluice_events::{S3Notice, s3_notices_from_value};

use super::*;
use crate::error::{EXIT_NOT_FOUND, EXIT_USAGE};
use crate::test_support::{Invocations, Rules, context, function_config};

fn raw(key: &str, modified: i64) -> RawObject {
    RawObject {
        key: key.into(),
        size: 1234,
        etag: Some("\"9b2cf535f27731c974343645a3985328\"".into()),
        last_modified: OffsetDateTime::from_unix_timestamp(modified).unwrap(),
    }
}

#[test]
fn the_event_is_the_one_s3_sends_and_names_the_object_exactly() {
    let object = raw(
        "incoming/2026/11/22/player 01+x%.json.snappy",
        1_795_000_000,
    );
    let event = s3_put_event("us-east-1", "raw", &object);
    let notices = s3_notices_from_value(&event).unwrap();
    let [S3Notice::Object(notice)] = &notices[..] else {
        panic!("one object notice")
    };
    assert_eq!(notice.bucket, "raw");
    assert_eq!(notice.key, object.key, "the key decodes back exactly once");
    assert_eq!(
        notice.raw_key,
        "incoming/2026/11/22/player+01%2Bx%25.json.snappy"
    );
    assert!(notice.is_object_created());
    assert_eq!(notice.size, Some(1234));
    assert_eq!(
        notice.etag.as_deref(),
        Some("9b2cf535f27731c974343645a3985328"),
        "unquoted, as in S3's notifications"
    );
    assert_eq!(event["Records"][0]["eventTime"], "2026-11-18T11:06:40Z");
}

#[test]
fn the_functions_answer_is_counted() {
    let converted = json!({"objects": [{"outcome": "converted", "bucket": "raw", "key": "k", "records": 249,
                                        "rejected": 1, "files": ["a", "b"], "errors_file": "e"}]});
    assert!(matches!(
        read_answer("k", &converted),
        ObjectResult::Converted {
            records: 249,
            rejected: 1,
            files: 2,
            ..
        }
    ));
    let rejected = json!({"objects": [{"outcome": "input_rejected", "key": "k", "reason": "not_snappy: bad CRC",
                                       "errors_file": "e", "copy": "c"}]});
    assert!(
        matches!(read_answer("k", &rejected), ObjectResult::InputRejected { reason, .. } if reason == "not_snappy: bad CRC")
    );
    assert!(matches!(
        read_answer("k", &json!({})),
        ObjectResult::Failed { .. }
    ));
}

fn listing(objects: Vec<RawObject>) -> aws_smithy_mocks::Rule {
    mock!(aws_sdk_s3::Client::list_objects_v2).then_output(move || {
        let mut out = ListObjectsV2Output::builder();
        for o in &objects {
            out = out.contents(
                aws_sdk_s3::types::Object::builder()
                    .key(&o.key)
                    .size(o.size)
                    .set_e_tag(o.etag.clone())
                    .last_modified(aws_smithy_types::DateTime::from_secs(
                        o.last_modified.unix_timestamp(),
                    ))
                    .build(),
            );
        }
        out.build()
    })
}

fn options(prefix: &str) -> Options {
    Options {
        source: S3Uri {
            bucket: "raw".into(),
            prefix: prefix.into(),
        },
        since: Some(OffsetDateTime::from_unix_timestamp(1_795_000_000).unwrap()),
        until: None,
        concurrency: 2,
        dry_run: false,
    }
}

#[tokio::test]
async fn each_input_the_filter_passes_is_converted_again_once_and_counted() {
    let list = listing(vec![
        raw("incoming/a.json.snappy", 1_795_000_100),
        raw("incoming/b.json.snappy", 1_795_000_200),
        raw("incoming/notes.txt", 1_795_000_300),
        raw("incoming/old.json.snappy", 1_700_000_000),
    ]);
    let config = function_config(&[
        ("INPUT_BUCKET", "raw"),
        ("INPUT_PREFIX", "incoming/"),
        ("INPUT_SUFFIX", ".json.snappy"),
    ]);
    let invocations = Invocations::default();
    let invoke = invocations.rule(|event| {
        let key = event["Records"][0]["s3"]["object"]["key"]
            .as_str()
            .unwrap()
            .to_owned();
        if key.contains("b.json") {
            return Err(("Retryable.S3".into(), "SlowDown".into()));
        }
        Ok(
            json!({"objects": [{"outcome": "converted", "bucket": "raw", "key": key, "records": 10,
                               "rejected": 2, "files": ["x.avro"]}]}),
        )
    });
    let mut rules = Rules::none();
    rules.s3 = vec![&list];
    rules.lambda = vec![&config, &invoke];
    let ctx = context(rules);

    let report = backfill(&ctx, options("incoming/")).await.unwrap();
    assert_eq!(
        (
            report.listed,
            report.outside_filter,
            report.outside_window,
            report.objects
        ),
        (4, 1, 1, 2)
    );
    assert_eq!((report.converted, report.failed), (1, 1));
    assert_eq!(
        (
            report.records_converted,
            report.records_rejected,
            report.avro_files
        ),
        (10, 2, 1)
    );
    let mut keys: Vec<String> = invocations
        .all()
        .into_iter()
        .map(|(f, t, e)| {
            assert_eq!((f.as_str(), t.as_str()), ("sluice-avro", "RequestResponse"));
            e["Records"][0]["s3"]["object"]["key"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    keys.sort();
    assert_eq!(keys, ["incoming/a.json.snappy", "incoming/b.json.snappy"]);
    assert!(render(&report).contains("FAILED   incoming/b.json.snappy: Retryable.S3: SlowDown"));
}

#[tokio::test]
async fn another_bucket_or_an_empty_prefix_is_refused_before_anything_is_invoked() {
    let empty = listing(Vec::new());
    let config = function_config(&[("INPUT_BUCKET", "raw"), ("INPUT_PREFIX", "incoming/")]);
    let mut rules = Rules::none();
    rules.s3 = vec![&empty];
    rules.lambda = vec![&config];
    let ctx = context(rules);

    let mut elsewhere = options("incoming/");
    elsewhere.source.bucket = "avro".into();
    let err = backfill(&ctx, elsewhere).await.unwrap_err();
    assert_eq!(err.exit_code(), EXIT_USAGE);
    assert!(err.to_string().contains("converts from s3://raw/"), "{err}");

    let err = backfill(&ctx, options("incoming/nothing-here/"))
        .await
        .unwrap_err();
    assert_eq!(err.exit_code(), EXIT_NOT_FOUND);
    assert_eq!(
        err.to_string(),
        "nothing under s3://raw/incoming/nothing-here/"
    );
}

#[tokio::test]
async fn a_dry_run_lists_and_invokes_nothing() {
    let list = listing(vec![raw("incoming/a.json.snappy", 1_795_000_100)]);
    let config = function_config(&[("INPUT_BUCKET", "raw"), ("INPUT_PREFIX", "incoming/")]);
    let mut rules = Rules::none();
    rules.s3 = vec![&list];
    rules.lambda = vec![&config];
    let ctx = context(rules);
    let report = backfill(
        &ctx,
        Options {
            dry_run: true,
            ..options("incoming/")
        },
    )
    .await
    .unwrap();
    assert_eq!(report.objects, 1);
    assert!(
        matches!(&report.results[..], [ObjectResult::WouldConvert { key }] if key == "incoming/a.json.snappy")
    );
}
