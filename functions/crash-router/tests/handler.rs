//! The router's decisions on whole SQS batches, with SQS mocked (aws-smithy-mocks,
//! no network, SDK retries off, tokio time paused so backoff costs nothing).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lambda_events::sqs::SqsEvent;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::config::retry::RetryConfig;
use aws_sdk_sqs::operation::send_message_batch::SendMessageBatchOutput;
use aws_sdk_sqs::types::{BatchResultErrorEntry, SendMessageBatchResultEntry};
use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};
use crash_router::config::Config;
use crash_router::crash::CrashId;
use crash_router::handler::{Router, plan_batch};
use serde_json::json;
use sluice_aws::test_support::sqs_query_compatible_error;
use sluice_aws::{Backoff, Deadline, SendBatchWriter};
use sluice_lambda::config::Env;
use sluice_lambda::metrics::Metrics;

const STANDARD: &str = "http://localhost:4566/000000000000/crash-standard";
const SUBMITTER: &str = "http://localhost:4566/000000000000/crash-submitter";
const BUCKET: &str = "crash-bucket";

fn config() -> Config {
    Config::from_env(&Env::from_pairs([
        ("PROCESSING_QUEUE_URL", STANDARD),
        ("EXTRA_ROUTES", &format!("15:{SUBMITTER}")),
    ]))
    .unwrap()
}

/// An accepted crash id dated 2018-03-13 whose sample bucket satisfies `wanted`;
/// `skip` picks a later one so tests can have several distinct ids.
fn crash_id(wanted: impl Fn(u8) -> bool, skip: usize) -> String {
    (0u32..)
        .map(|n| format!("{n:08x}-2d1c-4865-af09-80bc00180313"))
        .filter(|id| wanted(CrashId::parse(id).unwrap().sample_bucket()))
        .nth(skip)
        .unwrap()
}

fn sampled(skip: usize) -> String {
    crash_id(|b| b < 15, skip)
}

fn unsampled(skip: usize) -> String {
    crash_id(|b| b >= 15, skip)
}

fn key(id: &str) -> String {
    format!("v2/raw_crash/{}/20180313/{id}", &id[..3])
}

/// An S3 notification body as S3 puts it on the notification queue.
fn s3_body(event_name: &str, raw_keys: &[&str]) -> String {
    let records: Vec<_> = raw_keys
        .iter()
        .map(|k| {
            json!({
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "awsRegion": "us-east-1",
                "eventTime": "2018-03-13T12:00:00.000Z",
                "eventName": event_name,
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "configurationId": "raw-crash-uploads",
                    "bucket": {"name": BUCKET, "arn": format!("arn:aws:s3:::{BUCKET}")},
                    "object": {"key": k, "size": 1024, "eTag": "d41d8cd98f00b204e9800998ecf8427e",
                               "sequencer": "0055AED6DCD90281E5"}
                }
            })
        })
        .collect();
    json!({ "Records": records }).to_string()
}

fn put(raw_key: &str) -> String {
    s3_body("ObjectCreated:Put", &[raw_key])
}

fn batch(messages: &[(&str, String)]) -> SqsEvent {
    let records: Vec<_> = messages
        .iter()
        .map(|(id, body)| {
            json!({
                "messageId": id,
                "receiptHandle": format!("rh-{id}"),
                "body": body,
                "attributes": {"ApproximateReceiveCount": "1"},
                "messageAttributes": {},
                "md5OfBody": "00000000000000000000000000000000",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:000000000000:crash-notifications",
                "awsRegion": "us-east-1"
            })
        })
        .collect();
    serde_json::from_value(json!({ "Records": records })).unwrap()
}

/// Every SendMessageBatch call: (queue URL, bodies delivered).
type Calls = Vec<(String, Vec<String>)>;

#[derive(Clone, Default)]
struct Sent(Arc<Mutex<Calls>>);

impl Sent {
    fn bodies(&self, queue: &str) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|(q, _)| q == queue)
            .flat_map(|(_, bodies)| bodies.clone())
            .collect()
    }
    fn calls(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

/// Answers calls to `queue`: `fail(call number to this queue, body)` returns
/// `Some((code, sender_fault))` for an entry to fail.
fn queue_answering(
    sent: &Sent,
    queue: &'static str,
    fail: impl Fn(usize, &str) -> Option<(&'static str, bool)> + Send + Sync + 'static,
) -> Rule {
    let sent = sent.clone();
    mock!(Client::send_message_batch)
        .match_requests(move |input| input.queue_url() == Some(queue))
        .then_compute_output(move |input| {
            let call = sent
                .0
                .lock()
                .unwrap()
                .iter()
                .filter(|(q, _)| q == queue)
                .count();
            let mut output = SendMessageBatchOutput::builder()
                .set_successful(Some(Vec::new()))
                .set_failed(Some(Vec::new()));
            let mut delivered = Vec::new();
            for entry in input.entries() {
                output = match fail(call, entry.message_body()) {
                    None => {
                        delivered.push(entry.message_body().to_owned());
                        output.successful(
                            SendMessageBatchResultEntry::builder()
                                .id(entry.id())
                                .message_id(format!("m-{call}-{}", entry.id()))
                                .md5_of_message_body("x")
                                .build()
                                .unwrap(),
                        )
                    }
                    Some((code, sender_fault)) => output.failed(
                        BatchResultErrorEntry::builder()
                            .id(entry.id())
                            .code(code)
                            .message(format!("{code} for this entry"))
                            .sender_fault(sender_fault)
                            .build()
                            .unwrap(),
                    ),
                };
            }
            sent.0.lock().unwrap().push((queue.to_owned(), delivered));
            output.build().unwrap()
        })
}

fn accepting(sent: &Sent, queue: &'static str) -> Rule {
    queue_answering(sent, queue, |_, _| None)
}

/// SQS's answer for a queue that does not exist (awsJson with the query error header).
fn queue_missing(queue: &'static str) -> Rule {
    mock!(Client::send_message_batch)
        .match_requests(move |input| input.queue_url() == Some(queue))
        .then_http_response(|| {
            sqs_query_compatible_error(
                400,
                "com.amazonaws.sqs#QueueDoesNotExist",
                "AWS.SimpleQueueService.NonExistentQueue",
                "The specified queue does not exist.",
            )
        })
}

fn router(rules: &[&Rule]) -> Router {
    let client = mock_client!(aws_sdk_sqs, RuleMode::MatchAny, rules, |c| c
        .retry_config(RetryConfig::disabled()));
    Router::new(
        config(),
        SendBatchWriter::new(
            client,
            Backoff::new(Duration::from_millis(50), Duration::from_millis(500), 2.0),
        ),
    )
}

fn a_minute() -> Deadline {
    Deadline::after(Duration::from_secs(60))
}

fn metrics() -> Metrics {
    Metrics::new("sluice", "crash-router")
}

#[tokio::test(start_paused = true)]
async fn accepted_ids_go_to_the_standard_queue_and_the_sampled_share_to_the_extra_queue() {
    let (a, b, c) = (sampled(0), unsampled(0), unsampled(1));
    let sent = Sent::default();
    let router = router(&[&accepting(&sent, STANDARD), &accepting(&sent, SUBMITTER)]);
    let event = batch(&[
        ("m1", put(&key(&a))),
        ("m2", put(&key(&b))),
        ("m3", put(&key(&c))),
    ]);
    let mut m = metrics();
    let failures = router.route_batch(&event, &a_minute(), &mut m).await;
    assert!(failures.is_clean(), "{:?}", failures.failed_ids());
    assert_eq!(sent.bodies(STANDARD), [a.clone(), b, c]);
    assert_eq!(sent.bodies(SUBMITTER), [a]);
    assert_eq!(m.get("Accepted"), Some(3.0));
    assert_eq!(m.get("Routed.crash-standard"), Some(3.0));
    assert_eq!(m.get("Routed.crash-submitter"), Some(1.0));
    assert_eq!(m.get("FailedMessages"), None);
}

#[tokio::test(start_paused = true)]
async fn raw_crashes_created_by_copy_post_or_multipart_upload_are_routed_too() {
    let (a, b, c) = (unsampled(4), unsampled(5), unsampled(6));
    let sent = Sent::default();
    let router = router(&[&accepting(&sent, STANDARD), &accepting(&sent, SUBMITTER)]);
    let event = batch(&[
        ("copy", s3_body("ObjectCreated:Copy", &[&key(&a)])),
        ("post", s3_body("ObjectCreated:Post", &[&key(&b)])),
        (
            "multipart",
            s3_body("ObjectCreated:CompleteMultipartUpload", &[&key(&c)]),
        ),
    ]);
    let mut m = metrics();
    let failures = router.route_batch(&event, &a_minute(), &mut m).await;
    assert!(failures.is_clean(), "{:?}", failures.failed_ids());
    assert_eq!(sent.bodies(STANDARD), [a, b, c]);
    assert_eq!(m.get("Accepted"), Some(3.0));
    assert_eq!(m.get("Skipped.not_object_created"), None);
}

#[tokio::test(start_paused = true)]
async fn redelivered_message_routes_to_the_same_queues() {
    let a = sampled(1);
    let sent = Sent::default();
    let router = router(&[&accepting(&sent, STANDARD), &accepting(&sent, SUBMITTER)]);
    let event = batch(&[("m1", put(&key(&a)))]);
    for _ in 0..2 {
        assert!(
            router
                .route_batch(&event, &a_minute(), &mut metrics())
                .await
                .is_clean()
        );
    }
    assert_eq!(sent.bodies(STANDARD), [a.clone(), a.clone()]);
    assert_eq!(sent.bodies(SUBMITTER), [a.clone(), a]);
}

#[tokio::test(start_paused = true)]
async fn every_skip_reason_is_counted_and_nothing_is_sent_or_failed() {
    let id = unsampled(2);
    let deferred = "de1bb258-cbbf-4589-a673-34f801180313";
    let sent = Sent::default();
    let router = router(&[&accepting(&sent, STANDARD), &accepting(&sent, SUBMITTER)]);
    let test_event = json!({
        "Service": "Amazon S3", "Event": "s3:TestEvent", "Time": "2018-03-13T12:00:00.000Z",
        "Bucket": BUCKET, "RequestId": "5582815E1AEA5ADF", "HostId": "8cLeGAmw098X5cv4Zkwcmo8vvZa3eH3eKxsPzbB9wrR+YstdA6Knx4Ip8EXAMPLE"
    })
    .to_string();
    let event = batch(&[
        ("t", test_event),
        ("rm", s3_body("ObjectRemoved:Delete", &[&key(&id)])),
        ("prefix", put(&format!("v1/raw_crash/000/20180313/{id}"))),
        ("dump", put(&format!("v2/dump/{id}"))),
        ("shape", put(&format!("v2/raw_crash/20180313/{id}"))),
        (
            "badid",
            put("v2/raw_crash/000/20180313/00007bd0-2d1c-4865-af09-80bc0018031"),
        ),
        ("date", put(&format!("v2/raw_crash/000/20180314/{id}"))),
        (
            "defer",
            put(&format!("v2/raw_crash/de1/20180313/{deferred}")),
        ),
        // Decoded once: `+` is a space, which makes the id malformed.
        ("space", put(&format!("v2/raw_crash/000/20180313/{id}+"))),
    ]);
    let mut m = metrics();
    let failures = router.route_batch(&event, &a_minute(), &mut m).await;
    assert!(failures.is_clean(), "{:?}", failures.failed_ids());
    assert_eq!(sent.calls(), 0);
    assert_eq!(m.get("Accepted"), Some(0.0));
    assert_eq!(m.get("Deferred"), Some(1.0));
    assert_eq!(m.get("Skipped.test_event"), Some(1.0));
    assert_eq!(m.get("Skipped.not_object_created"), Some(1.0));
    assert_eq!(m.get("Skipped.wrong_prefix"), Some(2.0));
    assert_eq!(m.get("Skipped.malformed_key"), Some(1.0));
    assert_eq!(m.get("Skipped.malformed_crash_id"), Some(2.0));
    assert_eq!(m.get("Skipped.date_mismatch"), Some(1.0));
}

#[tokio::test(start_paused = true)]
async fn url_encoded_keys_are_decoded_exactly_once() {
    let id = unsampled(3);
    let sent = Sent::default();
    let router = router(&[&accepting(&sent, STANDARD)]);
    let event = batch(&[
        // Entropy "0 0%" as S3 form-encodes it.
        ("enc", put(&format!("v2/raw_crash/0+0%25/20180313/{id}"))),
        // Every slash encoded: decodes to a valid key.
        (
            "slashes",
            put(&format!("v2%2Fraw_crash%2F000%2F20180313%2F{id}")),
        ),
        // Entropy "0%2F0" (a key with a literal `%`): decoding twice would split it.
        ("twice", put(&format!("v2/raw_crash/0%252F0/20180313/{id}"))),
        // `%2F` after the id decodes to a fourth segment.
        ("extra", put(&format!("v2/raw_crash/000/20180313/{id}%2Fx"))),
    ]);
    let mut m = metrics();
    assert!(
        router
            .route_batch(&event, &a_minute(), &mut m)
            .await
            .is_clean()
    );
    assert_eq!(sent.bodies(STANDARD), [id.clone(), id.clone(), id]);
    assert_eq!(m.get("Accepted"), Some(3.0));
    assert_eq!(m.get("Skipped.malformed_key"), Some(1.0));
}

#[tokio::test(start_paused = true)]
async fn unreadable_message_is_reported_failed_and_the_rest_still_routes() {
    let id = unsampled(4);
    let sent = Sent::default();
    let router = router(&[&accepting(&sent, STANDARD)]);
    let event = batch(&[
        ("garbage", "not json at all".to_owned()),
        ("other", json!({"hello": "world"}).to_string()),
        ("badescape", put("v2/raw_crash/000/20180313/%zz")),
        ("ok", put(&key(&id))),
    ]);
    let mut m = metrics();
    let failures = router.route_batch(&event, &a_minute(), &mut m).await;
    assert_eq!(failures.failed_ids(), ["garbage", "other", "badescape"]);
    assert_eq!(sent.bodies(STANDARD), [id]);
    assert_eq!(m.get("Unreadable"), Some(3.0));
    assert_eq!(m.get("FailedMessages"), Some(3.0));
}

#[tokio::test(start_paused = true)]
async fn missing_extra_queue_fails_only_the_messages_routed_there() {
    let (a, b, c) = (sampled(2), unsampled(5), sampled(3));
    let sent = Sent::default();
    let router = router(&[&accepting(&sent, STANDARD), &queue_missing(SUBMITTER)]);
    let event = batch(&[
        ("m1", put(&key(&a))),
        ("m2", put(&key(&b))),
        ("m3", put(&key(&c))),
    ]);
    let mut m = metrics();
    let failures = router.route_batch(&event, &a_minute(), &mut m).await;
    // m1 and m3 reached the standard queue but not the submitter queue: redelivered.
    assert_eq!(failures.failed_ids(), ["m1", "m3"]);
    assert_eq!(sent.bodies(STANDARD), [a, b, c]);
    assert_eq!(m.get("SendFailed.crash-submitter"), Some(2.0));
    assert_eq!(m.get("Routed.crash-submitter"), Some(0.0));
    assert_eq!(m.get("FailedMessages"), Some(2.0));
}

#[tokio::test(start_paused = true)]
async fn transient_entry_failure_is_resent_and_nothing_is_reported() {
    let (a, b) = (unsampled(6), unsampled(7));
    let sent = Sent::default();
    let flaky_b = b.clone();
    let rule = queue_answering(&sent, STANDARD, move |call, body| {
        (call == 0 && body == flaky_b).then_some(("InternalError", false))
    });
    let router = router(&[&rule]);
    let event = batch(&[("m1", put(&key(&a))), ("m2", put(&key(&b)))]);
    let failures = router
        .route_batch(&event, &a_minute(), &mut metrics())
        .await;
    assert!(failures.is_clean(), "{:?}", failures.failed_ids());
    assert_eq!(sent.bodies(STANDARD), [a, b]);
    assert_eq!(sent.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn sender_fault_entry_fails_its_message_without_resending() {
    let (a, b) = (unsampled(8), unsampled(9));
    let sent = Sent::default();
    let bad = a.clone();
    let rule = queue_answering(&sent, STANDARD, move |_, body| {
        (body == bad).then_some(("InvalidParameterValue", true))
    });
    let router = router(&[&rule]);
    let event = batch(&[("m1", put(&key(&a))), ("m2", put(&key(&b)))]);
    let failures = router
        .route_batch(&event, &a_minute(), &mut metrics())
        .await;
    assert_eq!(failures.failed_ids(), ["m1"]);
    assert_eq!(sent.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn entry_failing_until_the_deadline_fails_its_message() {
    let (a, b) = (unsampled(10), unsampled(11));
    let sent = Sent::default();
    let flaky = a.clone();
    let rule = queue_answering(&sent, STANDARD, move |_, body| {
        (body == flaky).then_some(("ServiceUnavailable", false))
    });
    let router = router(&[&rule]);
    let event = batch(&[("m1", put(&key(&a))), ("m2", put(&key(&b)))]);
    let deadline = Deadline::after(Duration::from_secs(2));
    let failures = router.route_batch(&event, &deadline, &mut metrics()).await;
    assert_eq!(failures.failed_ids(), ["m1"]);
    assert!(sent.calls() > 2, "resent before giving up");
    assert!(
        tokio::time::Instant::now() < deadline.instant(),
        "never sleeps past the deadline"
    );
}

#[tokio::test(start_paused = true)]
async fn a_message_with_two_records_fails_if_either_is_not_sent() {
    let (good, bad) = (unsampled(12), unsampled(13));
    let sent = Sent::default();
    let reject = bad.clone();
    let rule = queue_answering(&sent, STANDARD, move |_, body| {
        (body == reject).then_some(("InvalidParameterValue", true))
    });
    let router = router(&[&rule]);
    let event = batch(&[(
        "two",
        s3_body("ObjectCreated:Put", &[&key(&good), &key(&bad)]),
    )]);
    let failures = router
        .route_batch(&event, &a_minute(), &mut metrics())
        .await;
    assert_eq!(failures.failed_ids(), ["two"]);
    assert_eq!(sent.bodies(STANDARD), [good]);
}

#[tokio::test(start_paused = true)]
async fn past_deadline_fails_messages_without_calling_sqs() {
    let a = unsampled(14);
    let sent = Sent::default();
    let router = router(&[&accepting(&sent, STANDARD)]);
    let event = batch(&[("m1", put(&key(&a)))]);
    let failures = router
        .route_batch(&event, &Deadline::after(Duration::ZERO), &mut metrics())
        .await;
    assert_eq!(failures.failed_ids(), ["m1"]);
    assert_eq!(sent.calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn more_than_ten_ids_for_a_queue_go_in_several_batch_calls() {
    let ids: Vec<String> = (0..23).map(|i| unsampled(20 + i)).collect();
    let sent = Sent::default();
    let router = router(&[&accepting(&sent, STANDARD)]);
    let messages: Vec<(String, String)> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| (format!("m{i}"), put(&key(id))))
        .collect();
    let messages: Vec<(&str, String)> = messages
        .iter()
        .map(|(m, b)| (m.as_str(), b.clone()))
        .collect();
    let failures = router
        .route_batch(&batch(&messages), &a_minute(), &mut metrics())
        .await;
    assert!(failures.is_clean());
    assert_eq!(sent.calls(), 3);
    assert_eq!(sent.bodies(STANDARD), ids);
}

#[tokio::test(start_paused = true)]
async fn sample_events_plan_as_documented() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../events/crash-router");
    let read = |name: &str| -> SqsEvent {
        serde_json::from_str(&std::fs::read_to_string(format!("{dir}/{name}")).unwrap()).unwrap()
    };
    let plan = plan_batch(&read("sqs-accepted.json"), &config());
    assert_eq!((plan.accepted, plan.failures.len()), (1, 0));
    assert_eq!(
        plan.dispatches[0][0].crash_id.as_str(),
        "00007bd0-2d1c-4865-af09-80bc00180313"
    );
    let plan = plan_batch(&read("sqs-mixed-batch.json"), &config());
    assert_eq!(plan.accepted, 2);
    assert_eq!(plan.deferred, 1);
    assert_eq!(
        plan.skipped,
        [
            ("test_event", 1),
            ("wrong_prefix", 1),
            ("date_mismatch", 1),
            ("malformed_crash_id", 1)
        ]
    );
    assert!(plan.failures.is_empty());
}
