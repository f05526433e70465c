//! What is redriven where, and what is skipped and why — against mocked AWS.

use std::sync::{Arc, Mutex};

use aws_sdk_dynamodbstreams::operation::get_records::GetRecordsOutput;
use aws_sdk_dynamodbstreams::operation::get_shard_iterator::GetShardIteratorOutput;
use aws_sdk_s3::operation::get_object::GetObjectOutput;
use aws_sdk_s3::operation::head_object::HeadObjectOutput;
use aws_sdk_s3::operation::list_objects_v2::ListObjectsV2Output;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_sqs::operation::change_message_visibility_batch::ChangeMessageVisibilityBatchOutput;
use aws_sdk_sqs::operation::delete_message_batch::DeleteMessageBatchOutput;
use aws_sdk_sqs::operation::send_message_batch::SendMessageBatchOutput;
use aws_sdk_sqs::types::SendMessageBatchResultEntry;
use aws_smithy_mocks::{Rule, mock};
use serde_json::json;
use sluice_aws::test_support::http_response;

use super::*;
use crate::test_support::{
    Invocations, Rules, async_record, context, function_config, queue, s3_event,
};

/// Receipts deleted and given back, per queue.
#[derive(Clone, Default)]
struct Ledger {
    deleted: Arc<Mutex<Vec<String>>>,
    released: Arc<Mutex<Vec<String>>>,
    sent: Arc<Mutex<Vec<(String, String)>>>,
}

impl Ledger {
    fn rules(&self) -> Vec<Rule> {
        let deleted = self.deleted.clone();
        let released = self.released.clone();
        let sent = self.sent.clone();
        vec![
            mock!(aws_sdk_sqs::Client::delete_message_batch).then_compute_output(move |r| {
                deleted
                    .lock()
                    .unwrap()
                    .extend(r.entries().iter().map(|e| e.receipt_handle().to_owned()));
                DeleteMessageBatchOutput::builder()
                    .set_successful(Some(Vec::new()))
                    .set_failed(Some(Vec::new()))
                    .build()
                    .unwrap()
            }),
            mock!(aws_sdk_sqs::Client::change_message_visibility_batch).then_compute_output(
                move |r| {
                    released.lock().unwrap().extend(
                        r.entries()
                            .iter()
                            .filter(|e| e.visibility_timeout() == Some(0))
                            .map(|e| e.receipt_handle().to_owned()),
                    );
                    ChangeMessageVisibilityBatchOutput::builder()
                        .set_successful(Some(Vec::new()))
                        .set_failed(Some(Vec::new()))
                        .build()
                        .unwrap()
                },
            ),
            mock!(aws_sdk_sqs::Client::send_message_batch).then_compute_output(move |r| {
                let mut out = SendMessageBatchOutput::builder()
                    .set_successful(Some(Vec::new()))
                    .set_failed(Some(Vec::new()));
                for entry in r.entries() {
                    sent.lock().unwrap().push((
                        r.queue_url().unwrap().to_owned(),
                        entry.message_body().to_owned(),
                    ));
                    out = out.successful(
                        SendMessageBatchResultEntry::builder()
                            .id(entry.id())
                            .message_id(format!("moved-{}", entry.id()))
                            .md5_of_message_body("x")
                            .build()
                            .unwrap(),
                    );
                }
                out.build().unwrap()
            }),
        ]
    }

    fn deleted(&self) -> Vec<String> {
        let mut d = self.deleted.lock().unwrap().clone();
        d.sort();
        d
    }

    fn released(&self) -> Vec<String> {
        let mut r = self.released.lock().unwrap().clone();
        r.sort();
        r
    }
}

fn options() -> Options {
    Options {
        dry_run: false,
        max: None,
        concurrency: 4,
    }
}

fn receipt(url: &str, i: usize) -> String {
    format!("receipt-{url}#{i}")
}

const AVRO_QUEUE: &str = "http://sqs/avro-failures";

fn avro_failures() -> Vec<String> {
    vec![
        async_record(
            s3_event("raw", "incoming/a.json.snappy"),
            "Permanent.S3",
            "AccessDenied",
        ),
        // The same event again (a duplicated notification that failed twice).
        async_record(
            s3_event("raw", "incoming/a.json.snappy"),
            "Permanent.S3",
            "AccessDenied",
        ),
        async_record(
            s3_event("raw", "incoming/still-broken.json.snappy"),
            "Permanent.S3",
            "AccessDenied",
        ),
        async_record(
            json!({"hello": "world"}),
            "InvalidEvent",
            "not an S3 notification",
        ),
        "not json at all".to_owned(),
    ]
}

fn converter(invocations: &Invocations) -> Rule {
    invocations.rule(|event| {
        let key = event["Records"][0]["s3"]["object"]["key"]
            .as_str()
            .unwrap_or("");
        if key.contains("still-broken") {
            Err(("Permanent.S3".into(), "AccessDenied: GetObject".into()))
        } else {
            Ok(
                json!({"objects": [{"outcome": "converted", "bucket": "raw", "key": key,
                                   "records": 10, "rejected": 1, "files": ["avro/x.avro"]}]}),
            )
        }
    })
}

#[tokio::test]
async fn async_failures_are_reinvoked_with_their_event_and_leave_the_queue_only_when_they_succeed()
{
    let ledger = Ledger::default();
    let ledger_rules = ledger.rules();
    let (attributes, receive) = queue(AVRO_QUEUE, avro_failures());
    let config = function_config(&[]);
    let invocations = Invocations::default();
    let invoke = converter(&invocations);
    let mut rules = Rules::none();
    rules.sqs = vec![&attributes, &receive];
    rules.sqs.extend(ledger_rules.iter());
    rules.lambda = vec![&config, &invoke];
    let ctx = context(rules);

    let report = redrive(&ctx, Function::AvroConverter, options())
        .await
        .unwrap();
    let path = &report.paths[0];
    assert_eq!(path.examined, 5);
    assert_eq!((path.redriven, path.failed_again, path.skipped), (1, 1, 3));
    assert_eq!(
        path.skipped_by_reason,
        BTreeMap::from([
            (DUPLICATE.to_owned(), 1),
            (NOT_A_FAILURE_RECORD.to_owned(), 1),
            (NOT_AN_EVENT_IT_READS.to_owned(), 1),
        ])
    );

    // Each distinct event once, synchronously, exactly as it was recorded.
    let calls = invocations.all();
    assert_eq!(calls.len(), 2);
    assert!(
        calls
            .iter()
            .all(|(f, t, _)| f == "sluice-avro" && t == "RequestResponse")
    );
    assert_eq!(calls[0].2, s3_event("raw", "incoming/a.json.snappy"));

    // Redriven and its copy leave the queue; what failed again or was skipped stays.
    assert_eq!(
        ledger.deleted(),
        vec![receipt(AVRO_QUEUE, 0), receipt(AVRO_QUEUE, 1)]
    );
    assert_eq!(
        ledger.released(),
        vec![
            receipt(AVRO_QUEUE, 2),
            receipt(AVRO_QUEUE, 3),
            receipt(AVRO_QUEUE, 4)
        ]
    );
    let failed = path
        .items
        .iter()
        .find(|i| i.outcome == Outcome::FailedAgain)
        .unwrap();
    assert_eq!(failed.detail, "Permanent.S3: AccessDenied: GetObject");
    let done = path
        .items
        .iter()
        .find(|i| i.outcome == Outcome::Redriven)
        .unwrap();
    assert_eq!(
        done.detail,
        "incoming/a.json.snappy: 10 records converted, 1 rejected"
    );
    assert_eq!(report.failed_again(), 1);
}

#[tokio::test]
async fn a_dry_run_reads_and_checks_everything_and_changes_nothing() {
    let ledger = Ledger::default();
    let ledger_rules = ledger.rules();
    let (attributes, receive) = queue(AVRO_QUEUE, avro_failures());
    let config = function_config(&[]);
    let mut rules = Rules::none();
    rules.sqs = vec![&attributes, &receive];
    rules.sqs.extend(ledger_rules.iter());
    rules.lambda = vec![&config];
    let ctx = context(rules);

    let report = redrive(
        &ctx,
        Function::AvroConverter,
        Options {
            dry_run: true,
            ..options()
        },
    )
    .await
    .unwrap();
    let path = &report.paths[0];
    assert_eq!((path.redriven, path.failed_again, path.skipped), (2, 0, 3));
    assert!(
        path.items
            .iter()
            .any(|i| i.outcome == Outcome::WouldRedrive)
    );
    assert!(ledger.deleted().is_empty(), "a dry run deletes nothing");
    assert_eq!(ledger.released().len(), 5, "every message is given back");
}

#[tokio::test]
async fn at_most_max_items_are_examined() {
    let ledger = Ledger::default();
    let ledger_rules = ledger.rules();
    let (attributes, receive) = queue(AVRO_QUEUE, avro_failures());
    let config = function_config(&[]);
    let invocations = Invocations::default();
    let invoke = converter(&invocations);
    let mut rules = Rules::none();
    rules.sqs = vec![&attributes, &receive];
    rules.sqs.extend(ledger_rules.iter());
    rules.lambda = vec![&config, &invoke];
    let ctx = context(rules);

    let report = redrive(
        &ctx,
        Function::AvroConverter,
        Options {
            max: Some(1),
            ..options()
        },
    )
    .await
    .unwrap();
    assert_eq!(report.paths[0].examined, 1);
    assert_eq!(invocations.all().len(), 1);
    assert_eq!(receive.num_calls(), 1, "no message is taken beyond --max");
}

#[tokio::test]
async fn mapper_events_naming_another_bucket_are_skipped_and_sns_deliveries_redriven() {
    const FAILURES: &str = "http://sqs/mapper-failures";
    const DELIVERIES: &str = "http://sqs/mapper-deliveries";
    let ledger = Ledger::default();
    let ledger_rules = ledger.rules();
    let sns = |bucket: &str, key: &str| json!({"Records": [{"EventSource": "aws:sns", "Sns": {"MessageId": "m", "Message": s3_event(bucket, key).to_string()}}]});
    let (failures_attributes, failures) = queue(
        FAILURES,
        vec![
            async_record(
                sns("counters", "counters/2026-11-22/values_i-1"),
                "Retryable.Update",
                "throttled",
            ),
            async_record(
                sns("elsewhere", "counters/2026-11-22/values_i-2"),
                "ForeignBucket",
                "not ours",
            ),
        ],
    );
    // What an SNS subscription's redrive queue holds: the notification, in SNS's envelope.
    let envelope = json!({"Type": "Notification", "MessageId": "n-1", "TopicArn": "arn:aws:sns:us-east-1:000000000000:uploads",
                          "Message": s3_event("counters", "counters/2026-11-22/values_i-3").to_string()});
    let (deliveries_attributes, deliveries) = queue(DELIVERIES, vec![envelope.to_string()]);
    let config = function_config(&[]);
    let invocations = Invocations::default();
    let invoke = invocations.rule(|_| Ok(json!({"files": 1, "counters": 2, "written": 2})));
    let mut rules = Rules::none();
    rules.sqs = vec![
        &failures_attributes,
        &failures,
        &deliveries_attributes,
        &deliveries,
    ];
    rules.sqs.extend(ledger_rules.iter());
    rules.lambda = vec![&config, &invoke];
    let ctx = context(rules);

    let report = redrive(&ctx, Function::CounterMapper, options())
        .await
        .unwrap();
    let [failure_path, delivery_path] = &report.paths[..] else {
        panic!("two failure paths")
    };
    assert_eq!((failure_path.redriven, failure_path.skipped), (1, 1));
    assert_eq!(
        failure_path.skipped_by_reason.keys().next().unwrap(),
        FOREIGN_BUCKET
    );
    assert_eq!((delivery_path.redriven, delivery_path.skipped), (1, 0));
    let events: Vec<Value> = invocations.all().into_iter().map(|(_, _, e)| e).collect();
    assert_eq!(
        events,
        vec![sns("counters", "counters/2026-11-22/values_i-1"), envelope]
    );
    assert_eq!(
        ledger.deleted(),
        vec![receipt(DELIVERIES, 0), receipt(FAILURES, 0)]
    );
    assert_eq!(ledger.released(), vec![receipt(FAILURES, 1)]);
}

#[test]
fn an_event_the_function_refused_as_such_is_not_worth_a_redrive() {
    let reason = |error_type: &str| crate::parked::Reason {
        error_type: Some(error_type.to_owned()),
        ..Default::default()
    };
    assert_eq!(
        refused_event(&reason("Permanent.InvalidEvent")),
        Some("Permanent.InvalidEvent")
    );
    assert_eq!(
        refused_event(&reason("ForeignBucket")),
        Some("ForeignBucket")
    );
    assert_eq!(
        refused_event(&reason("Permanent.UnknownSource")),
        Some("Permanent.UnknownSource")
    );
    // Permanent only until someone fixes the cause: redriven.
    assert_eq!(refused_event(&reason("Permanent.JobsTable")), None);
    assert_eq!(refused_event(&reason("Permanent.S3")), None);
    assert_eq!(refused_event(&crate::parked::Reason::default()), None);
}

#[tokio::test]
async fn job_poller_events_are_handed_to_lambda_asynchronously() {
    const QUEUE: &str = "http://sqs/job-failures";
    let ledger = Ledger::default();
    let ledger_rules = ledger.rules();
    let continuation = json!({"kind": "job-poller/continue", "source_id": "s3://reports/a.csv#1", "job_id": "j-1",
                              "generation": 3, "budget_remaining": 8, "poll_attempt": 7});
    let (attributes, receive) = queue(
        QUEUE,
        vec![
            async_record(continuation.clone(), "Retryable.JobApi", "503"),
            // A continuation it could not read: the same event fails the same way.
            async_record(
                json!({"kind": "job-poller/continue"}),
                "Permanent.InvalidEvent",
                "continuation event: missing field `source_id`",
            ),
        ],
    );
    let config = function_config(&[]);
    let invocations = Invocations::default();
    let invoke = invocations.rule(|_| Ok(Value::Null));
    let mut rules = Rules::none();
    rules.sqs = vec![&attributes, &receive];
    rules.sqs.extend(ledger_rules.iter());
    rules.lambda = vec![&config, &invoke];
    let ctx = context(rules);

    let report = redrive(&ctx, Function::JobPoller, options()).await.unwrap();
    assert_eq!(report.paths[0].redriven, 1);
    assert_eq!(
        invocations.all(),
        vec![("sluice-jobs".to_owned(), "Event".to_owned(), continuation)]
    );
    assert_eq!(ledger.deleted(), vec![receipt(QUEUE, 0)]);
    assert_eq!(
        report.paths[0].skipped_by_reason,
        BTreeMap::from([(REFUSED_EVENT.to_owned(), 1)])
    );
    assert_eq!(ledger.released(), vec![receipt(QUEUE, 1)]);
}

#[tokio::test]
async fn dead_lettered_notifications_move_back_to_their_queue_unchanged() {
    const DLQ: &str = "http://sqs/crash-dlq";
    let ledger = Ledger::default();
    let ledger_rules = ledger.rules();
    let first = s3_event(
        "crashes",
        "v2/raw_crash/000/20261122/00007bd0-2d1c-4865-af09-80bc00261122",
    )
    .to_string();
    let second = s3_event(
        "crashes",
        "v2/raw_crash/000/20261122/11117bd0-2d1c-4865-af09-80bc00261122",
    )
    .to_string();
    let (attributes, receive) = queue(
        DLQ,
        vec![
            first.clone(),
            "poison".into(),
            second.clone(),
            first.clone(),
        ],
    );
    let config = function_config(&[]);
    let mut rules = Rules::none();
    rules.sqs = vec![&attributes, &receive];
    rules.sqs.extend(ledger_rules.iter());
    rules.lambda = vec![&config];
    let ctx = context(rules);

    let report = redrive(&ctx, Function::CrashRouter, options())
        .await
        .unwrap();
    let path = &report.paths[0];
    assert_eq!((path.redriven, path.failed_again, path.skipped), (2, 0, 2));
    let sent = ledger.sent.lock().unwrap().clone();
    assert_eq!(
        sent,
        vec![
            ("http://sqs/crash-notifications".to_owned(), first),
            ("http://sqs/crash-notifications".to_owned(), second)
        ],
        "each notification once, byte for byte, to the notification queue"
    );
    assert_eq!(
        ledger.deleted(),
        vec![receipt(DLQ, 0), receipt(DLQ, 2), receipt(DLQ, 3)],
        "moved, and the copy of one moved"
    );
    assert_eq!(
        ledger.released(),
        vec![receipt(DLQ, 1)],
        "the poison stays in the DLQ"
    );
}

fn stream_failure(start: &str, end: &str) -> String {
    json!({
        "requestContext": {"requestId": "r", "functionArn": "f", "condition": "RetryAttemptsExhausted", "approximateInvokeCount": 6},
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        "version": "1.0", "timestamp": "2026-11-22T10:00:00.000Z",
        "DDBStreamBatchInfo": {"shardId": "shard-1", "startSequenceNumber": start, "endSequenceNumber": end,
                               "batchSize": 2, "streamArn": "arn:aws:dynamodb:us-east-1:000000000000:table/i/stream/1"}
    })
    .to_string()
}

#[tokio::test]
async fn stream_failures_are_replayed_from_the_stream_into_the_function() {
    const QUEUE: &str = "http://sqs/aggregator-failures";
    let ledger = Ledger::default();
    let ledger_rules = ledger.rules();
    let (attributes, receive) = queue(
        QUEUE,
        vec![
            stream_failure("100", "101"),
            stream_failure("5", "6"),
            stream_failure("200", "200"),
        ],
    );
    let config = function_config(&[]);
    let invocations = Invocations::default();
    let invoke = invocations.rule(|event| {
        let first = event["Records"][0]["dynamodb"]["SequenceNumber"]
            .as_str()
            .unwrap();
        if first == "200" {
            Ok(json!({"batchItemFailures": [{"itemIdentifier": "200"}]}))
        } else {
            Ok(json!({"batchItemFailures": []}))
        }
    });
    let iterator =
        mock!(aws_sdk_dynamodbstreams::Client::get_shard_iterator).then_compute_output(|r| {
            GetShardIteratorOutput::builder()
                .shard_iterator(format!("it-{}", r.sequence_number().unwrap()))
                .build()
        });
    let trimmed = mock!(aws_sdk_dynamodbstreams::Client::get_records)
        .match_requests(|r| r.shard_iterator() == Some("it-5"))
        .then_output(|| {
            GetRecordsOutput::builder()
                .records(crate::streams::tests::stream_record("90", "C1", 1))
                .build()
        });
    let records = mock!(aws_sdk_dynamodbstreams::Client::get_records).then_compute_output(|r| {
        let from: u64 = r
            .shard_iterator()
            .unwrap()
            .trim_start_matches("it-")
            .parse()
            .unwrap();
        GetRecordsOutput::builder()
            .records(crate::streams::tests::stream_record(
                &from.to_string(),
                "C1",
                1,
            ))
            .records(crate::streams::tests::stream_record(
                &(from + 1).to_string(),
                "C2",
                2,
            ))
            .records(crate::streams::tests::stream_record(
                &(from + 2).to_string(),
                "C3",
                3,
            ))
            .build()
    });
    let mut rules = Rules::none();
    rules.sqs = vec![&attributes, &receive];
    rules.sqs.extend(ledger_rules.iter());
    rules.lambda = vec![&config, &invoke];
    rules.streams = vec![&iterator, &trimmed, &records];
    let ctx = context(rules);

    let report = redrive(&ctx, Function::CounterAggregator, options())
        .await
        .unwrap();
    let path = &report.paths[0];
    assert_eq!((path.redriven, path.failed_again, path.skipped), (1, 1, 1));
    assert_eq!(path.records, Some(2), "records 100 and 101, not 102");
    assert_eq!(
        path.skipped_by_reason.keys().next().unwrap(),
        GONE_FROM_STREAM
    );
    let replayed: Vec<Vec<String>> = invocations
        .all()
        .iter()
        .map(|(_, _, e)| {
            e["Records"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["dynamodb"]["SequenceNumber"].as_str().unwrap().to_owned())
                .collect()
        })
        .collect();
    assert!(
        replayed.contains(&vec!["100".to_owned(), "101".to_owned()]),
        "{replayed:?}"
    );
    assert!(replayed.contains(&vec!["200".to_owned()]), "{replayed:?}");
    assert_eq!(ledger.deleted(), vec![receipt(QUEUE, 0)]);
    assert_eq!(
        ledger.released(),
        vec![receipt(QUEUE, 1), receipt(QUEUE, 2)]
    );
}

fn kept_batch(stream_arn: &str) -> String {
    let records: Vec<Value> = [1, 2]
        .iter()
        .map(|n| {
            json!({
                "kinesis": {"kinesisSchemaVersion": "1.0", "partitionKey": "p", "sequenceNumber": format!("4900{n}"),
                            "data": "eyJuIjoxfQ==", "approximateArrivalTimestamp": 1790000000.5},
                "eventSource": "aws:kinesis", "eventVersion": "1.0",
                "eventID": format!("shardId-000000000000:4900{n}"), "eventName": "aws:kinesis:record",
                "invokeIdentityArn": "arn:aws:iam::000000000000:role/r", "awsRegion": "us-east-1",
                "eventSourceARN": stream_arn
            })
        })
        .collect();
    json!({
        "requestContext": {"requestId": "r", "functionArn": "f", "condition": "RetryAttemptsExhausted", "approximateInvokeCount": 6},
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": null},
        "version": "1.0",
        "KinesisBatchInfo": {"shardId": "shardId-000000000000", "startSequenceNumber": "49001", "endSequenceNumber": "49002",
                             "batchSize": 2, "streamArn": stream_arn},
        "payload": {"Records": records}
    })
    .to_string()
}

#[tokio::test]
async fn kept_batches_are_reinvoked_then_deleted_with_their_announcements() {
    const ANNOUNCEMENTS: &str = "http://sqs/archiver-failures";
    const OURS: &str = "aws/lambda/uuid/shardId-000000000000/2026/11/22/a";
    const THEIRS: &str = "aws/lambda/uuid/shardId-000000000000/2026/11/22/b";
    let ledger = Ledger::default();
    let ledger_rules = ledger.rules();
    let listing = mock!(aws_sdk_s3::Client::list_objects_v2).then_output(|| {
        ListObjectsV2Output::builder()
            .contents(aws_sdk_s3::types::Object::builder().key(THEIRS).build())
            .contents(aws_sdk_s3::types::Object::builder().key(OURS).build())
            .build()
    });
    let ours = mock!(aws_sdk_s3::Client::get_object)
        .match_requests(|r| r.key() == Some(OURS))
        .then_output(|| {
            GetObjectOutput::builder()
                .body(ByteStream::from(
                    kept_batch("arn:aws:kinesis:us-east-1:000000000000:stream/events").into_bytes(),
                ))
                .build()
        });
    let theirs = mock!(aws_sdk_s3::Client::get_object)
        .match_requests(|r| r.key() == Some(THEIRS))
        .then_output(|| {
            GetObjectOutput::builder()
                .body(ByteStream::from(
                    kept_batch("arn:aws:kinesis:us-east-1:000000000000:stream/old").into_bytes(),
                ))
                .build()
        });
    let deleted = Arc::new(Mutex::new(Vec::new()));
    let deleted_in = deleted.clone();
    let delete = mock!(aws_sdk_s3::Client::delete_object).then_compute_output(move |r| {
        deleted_in.lock().unwrap().push(r.key().unwrap().to_owned());
        aws_sdk_s3::operation::delete_object::DeleteObjectOutput::builder().build()
    });
    let gone = mock!(aws_sdk_s3::Client::head_object)
        .match_requests(|r| r.key() == Some(OURS))
        .then_http_response(|| http_response(404, ""));
    let still_there =
        mock!(aws_sdk_s3::Client::head_object).then_output(|| HeadObjectOutput::builder().build());
    let (attributes, receive) = queue(
        ANNOUNCEMENTS,
        vec![
            s3_event("archiver-failures", OURS).to_string(),
            s3_event("archiver-failures", THEIRS).to_string(),
        ],
    );
    let config = function_config(&[]);
    let invocations = Invocations::default();
    let invoke = invocations.rule(|_| Ok(json!({"batchItemFailures": []})));
    let mut rules = Rules::none();
    rules.s3 = vec![&listing, &ours, &theirs, &delete, &gone, &still_there];
    rules.sqs = vec![&attributes, &receive];
    rules.sqs.extend(ledger_rules.iter());
    rules.lambda = vec![&config, &invoke];
    let ctx = context(rules);

    let report = redrive(&ctx, Function::KinesisArchiver, options())
        .await
        .unwrap();
    let path = &report.paths[0];
    assert_eq!((path.examined, path.redriven, path.skipped), (2, 1, 1));
    assert_eq!(path.records, Some(2));
    assert_eq!(path.skipped_by_reason.keys().next().unwrap(), OTHER_STREAM);
    let calls = invocations.all();
    assert_eq!(calls.len(), 1);
    let kept: Value = serde_json::from_str(&kept_batch(
        "arn:aws:kinesis:us-east-1:000000000000:stream/events",
    ))
    .unwrap();
    assert_eq!(
        calls[0].2, kept["payload"],
        "the batch exactly as the function was first given it"
    );
    assert_eq!(*deleted.lock().unwrap(), vec![OURS.to_owned()]);
    assert_eq!(path.announcements_removed, Some(1));
    assert_eq!(ledger.deleted(), vec![receipt(ANNOUNCEMENTS, 0)]);
    assert_eq!(ledger.released(), vec![receipt(ANNOUNCEMENTS, 1)]);
}

#[tokio::test]
async fn ingest_api_has_nothing_to_redrive_and_says_why() {
    let config = function_config(&[]);
    let mut rules = Rules::none();
    rules.lambda = vec![&config];
    let ctx = context(rules);
    let report = redrive(&ctx, Function::IngestApi, options()).await.unwrap();
    assert!(report.paths.is_empty());
    assert!(report.note.unwrap().contains("503"));
}
