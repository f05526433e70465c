//! What `status` reports per failure path, from mocked queues, bucket, logs and metrics.

use aws_sdk_cloudwatch::operation::get_metric_statistics::GetMetricStatisticsOutput;
use aws_sdk_cloudwatch::types::Datapoint;
use aws_sdk_cloudwatchlogs::operation::filter_log_events::FilterLogEventsOutput;
use aws_sdk_cloudwatchlogs::types::FilteredLogEvent;
use aws_sdk_lambda::operation::list_event_source_mappings::ListEventSourceMappingsOutput;
use aws_sdk_lambda::types::EventSourceMappingConfiguration;
use aws_sdk_s3::operation::get_object::GetObjectOutput;
use aws_sdk_s3::operation::list_objects_v2::ListObjectsV2Output;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_sqs::operation::get_queue_attributes::GetQueueAttributesOutput;
use aws_sdk_sqs::operation::receive_message::ReceiveMessageOutput;
use aws_sdk_sqs::types::QueueAttributeName;
use aws_smithy_mocks::mock;
use serde_json::json;

use super::*;
use crate::test_support::{Rules, async_record, context, message, s3_event};

#[test]
fn level_lines_are_json_lines_at_that_level_or_plain_lines_naming_it() {
    assert!(is_level_line(
        r#"{"level":"ERROR","message":"not sent","error":"AccessDenied"}"#,
        "ERROR"
    ));
    assert!(!is_level_line(
        r#"{"level":"INFO","message":"retrying","errorType":"ERROR"}"#,
        "ERROR"
    ));
    assert!(is_level_line(
        "2026-11-22T10:00:00Z ERROR Lambda runtime: handler failed",
        "ERROR"
    ));
    assert!(!is_level_line(
        "START RequestId: 1 Version: $LATEST",
        "ERROR"
    ));
    let warning = r#"{"level":"WARN","message":"group not archived","reason":"AccessDenied"}"#;
    assert!(is_level_line(warning, "WARN") && !is_level_line(warning, "ERROR"));
    assert_eq!(line_gist(warning), "group not archived: AccessDenied");
}

#[test]
fn event_sources_are_named_by_what_they_are() {
    assert_eq!(
        source_name("arn:aws:kinesis:us-east-1:000000000000:stream/sluice-player-events"),
        "stream sluice-player-events"
    );
    assert_eq!(
        source_name(
            "arn:aws:dynamodb:us-east-1:000000000000:table/sluice-instances/stream/2026-11-22T10:00:00.000"
        ),
        "table sluice-instances stream"
    );
    assert_eq!(
        source_name("arn:aws:sqs:us-east-1:000000000000:crash-notifications"),
        "queue crash-notifications"
    );
}

#[test]
fn every_parked_kind_says_why_and_what_about() {
    let held = |body: String| crate::queue::Held {
        message_id: "m".into(),
        receipt: "r".into(),
        body,
        sent_at_ms: Some(0),
        receive_count: Some(5),
        attributes: Default::default(),
    };
    let avro = Function::AvroConverter.failure_paths()[0];
    let (why, what) = describe_message(
        Function::AvroConverter,
        &avro,
        &held(async_record(
            s3_event("raw", "incoming/a+b.json.snappy"),
            "Permanent.S3",
            "AccessDenied on GetObject",
        )),
    );
    assert_eq!(
        why,
        "Permanent.S3: AccessDenied on GetObject (RetriesExhausted, 3 attempts)"
    );
    assert_eq!(what.as_deref(), Some("s3://raw/incoming/a b.json.snappy"));

    let dlq = Function::CrashRouter.failure_paths()[0];
    let (why, what) = describe_message(Function::CrashRouter, &dlq, &held("poison".into()));
    assert!(
        why.starts_with("not an S3 notification (it fails every time)"),
        "{why}"
    );
    assert_eq!(what.as_deref(), Some("poison"));
    let (why, what) = describe_message(
        Function::CrashRouter,
        &dlq,
        &held(s3_event("crashes", "v2/raw_crash/x").to_string()),
    );
    assert_eq!(
        why,
        "failed every receive until the DLQ; the function's log says why"
    );
    assert_eq!(what.as_deref(), Some("s3://crashes/v2/raw_crash/x"));

    let jobs = Function::JobPoller.failure_paths()[0];
    let continuation = json!({"kind": "job-poller/continue", "job_id": "etl-7f3a9c"});
    let (_, what) = describe_message(
        Function::JobPoller,
        &jobs,
        &held(async_record(continuation, "Retryable.JobApi", "503")),
    );
    assert_eq!(what.as_deref(), Some("job-poller/continue job etl-7f3a9c"));
}

#[tokio::test]
async fn status_counts_what_each_path_holds_with_the_oldest_items_reason() {
    let now = now_ms();
    let attributes = mock!(aws_sdk_sqs::Client::get_queue_attributes).then_compute_output(|r| {
        let n = match r.queue_url() {
            Some("http://sqs/avro-failures") => "2",
            Some("http://sqs/archiver-failures") => "1",
            _ => "0",
        };
        GetQueueAttributesOutput::builder()
            .attributes(QueueAttributeName::ApproximateNumberOfMessages, n)
            .attributes(
                QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
                "0",
            )
            .build()
    });
    let peek = mock!(aws_sdk_sqs::Client::receive_message)
        .match_requests(|r| {
            r.queue_url() == Some("http://sqs/avro-failures") && r.visibility_timeout() == Some(0)
        })
        .then_output(move || {
            let mut newer = message(
                "m-new",
                &async_record(
                    s3_event("raw", "incoming/new.json.snappy"),
                    "Permanent.S3",
                    "SlowDown",
                ),
            );
            let mut older = message(
                "m-old",
                &async_record(
                    s3_event("raw", "incoming/old.json.snappy"),
                    "Permanent.S3",
                    "AccessDenied",
                ),
            );
            newer.attributes.as_mut().unwrap().insert(
                aws_sdk_sqs::types::MessageSystemAttributeName::SentTimestamp,
                (now - 60_000).to_string(),
            );
            older.attributes.as_mut().unwrap().insert(
                aws_sdk_sqs::types::MessageSystemAttributeName::SentTimestamp,
                (now - 3_700_000).to_string(),
            );
            ReceiveMessageOutput::builder()
                .messages(newer)
                .messages(older)
                .build()
        });
    let kept_key = "aws/lambda/uuid/shardId-000000000000/2026/11/22/kept";
    let listing = mock!(aws_sdk_s3::Client::list_objects_v2).then_output(move || {
        ListObjectsV2Output::builder()
            .contents(
                aws_sdk_s3::types::Object::builder()
                    .key(kept_key)
                    .last_modified(aws_smithy_types::DateTime::from_millis(now - 120_000))
                    .build(),
            )
            .build()
    });
    let kept = mock!(aws_sdk_s3::Client::get_object).then_output(|| {
        let body = json!({"requestContext": {"condition": "RetryAttemptsExhausted", "approximateInvokeCount": 6},
                          "KinesisBatchInfo": {"shardId": "shardId-000000000000", "startSequenceNumber": "1", "endSequenceNumber": "5",
                                               "batchSize": 5, "streamArn": "arn:s"},
                          "payload": {"Records": []}});
        GetObjectOutput::builder().body(ByteStream::from(body.to_string().into_bytes())).build()
    });
    let logs = mock!(aws_sdk_cloudwatchlogs::Client::filter_log_events).then_compute_output(|r| {
        let mut out = FilterLogEventsOutput::builder();
        if r.log_group_name() == Some("/aws/lambda/sluice-archiver") && r.filter_pattern() == Some("ERROR") {
            for (at, line) in [
                (1, r#"{"level":"ERROR","message":"group not archived","error":"AccessDenied"}"#),
                (2, r#"{"level":"INFO","message":"ERROR is only a word here"}"#),
                (3, r#"{"level":"ERROR","message":"group not archived","error":"AccessDenied again"}"#),
            ] {
                out = out.events(FilteredLogEvent::builder().timestamp(at).message(line).build());
            }
        }
        out.build()
    });
    let metrics =
        mock!(aws_sdk_cloudwatch::Client::get_metric_statistics).then_compute_output(|r| {
            let mut out = GetMetricStatisticsOutput::builder();
            let function = r.dimensions()[0].value().unwrap_or_default();
            match (r.metric_name(), function) {
                (Some("Errors"), "sluice-archiver") => {
                    out = out.datapoints(Datapoint::builder().sum(6.0).build());
                }
                (Some("IteratorAge"), "sluice-archiver") => {
                    out = out
                        .datapoints(
                            Datapoint::builder()
                                .timestamp(aws_smithy_types::DateTime::from_secs(10))
                                .maximum(90_000.0)
                                .build(),
                        )
                        .datapoints(
                            Datapoint::builder()
                                .timestamp(aws_smithy_types::DateTime::from_secs(20))
                                .maximum(4_000.0)
                                .build(),
                        );
                }
                _ => {}
            }
            out.build()
        });
    let mappings =
        mock!(aws_sdk_lambda::Client::list_event_source_mappings).then_compute_output(|r| {
            let mut out = ListEventSourceMappingsOutput::builder();
            if r.function_name() == Some("sluice-archiver") {
                out = out.event_source_mappings(
                    EventSourceMappingConfiguration::builder()
                        .event_source_arn("arn:aws:kinesis:us-east-1:000000000000:stream/events")
                        .state("Enabled")
                        .last_processing_result("OK")
                        .build(),
                );
            }
            out.build()
        });
    let mut rules = Rules::none();
    rules.sqs = vec![&attributes, &peek];
    rules.s3 = vec![&listing, &kept];
    rules.logs = vec![&logs];
    rules.cloudwatch = vec![&metrics];
    rules.lambda = vec![&mappings];
    let ctx = context(rules);

    let status = status(&ctx).await.unwrap();
    assert_eq!(status.parked, 3, "2 failure records and 1 kept batch");
    let of = |f: Function| status.functions.iter().find(|s| s.function == f).unwrap();

    let avro = &of(Function::AvroConverter).failure_paths[0];
    assert_eq!(avro.parked, 2);
    assert_eq!(
        avro.oldest_reason.as_deref(),
        Some("Permanent.S3: AccessDenied (RetriesExhausted, 3 attempts)")
    );
    assert_eq!(
        avro.oldest_subject.as_deref(),
        Some("s3://raw/incoming/old.json.snappy")
    );
    assert!(
        (3699..=3702).contains(&avro.oldest_age_seconds.unwrap()),
        "{:?}",
        avro.oldest_age_seconds
    );

    let archiver = of(Function::KinesisArchiver);
    let kept_path = &archiver.failure_paths[0];
    assert_eq!((kept_path.parked, kept_path.announcements), (1, Some(1)));
    assert_eq!(
        kept_path.oldest_reason.as_deref(),
        Some("RetryAttemptsExhausted, 6 attempts")
    );
    assert_eq!(
        kept_path.oldest_subject.as_deref(),
        Some("5 records of shardId-000000000000 (1..5)")
    );
    assert_eq!(
        archiver.errors_last_hour.count, 2,
        "the INFO line is not an error"
    );
    assert_eq!(
        archiver.errors_last_hour.latest.as_deref(),
        Some("group not archived: AccessDenied again")
    );
    assert_eq!(archiver.failed_invocations_last_hour, Some(6));
    assert_eq!(
        archiver.mappings[0].iterator_age_ms,
        Some(4_000.0),
        "the latest datapoint"
    );

    let ingest = of(Function::IngestApi);
    assert!(ingest.failure_paths.is_empty() && ingest.note.is_some());
    assert_eq!(of(Function::CrashRouter).failure_paths[0].parked, 0);

    let table = render(&status);
    assert!(
        table.starts_with("stack sluice (CREATE_COMPLETE, us-east-1): 3 items parked"),
        "{table}"
    );
    assert!(table.contains("kinesis-archiver"), "{table}");
    assert!(
        table.contains("1h01m"),
        "the oldest avro failure's age: {table}"
    );
}
