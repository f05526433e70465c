//! The reporter's decisions against stateful fakes of S3, DynamoDB and SNS built from
//! aws-smithy-mocks rules (no network): every conditional write is checked as the
//! service checks it, so ordering and redelivery are exercised, not assumed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_dynamodb::operation::get_item::GetItemOutput;
use aws_sdk_dynamodb::operation::put_item::{PutItemError, PutItemOutput};
use aws_sdk_dynamodb::operation::query::{QueryError, QueryOutput};
use aws_sdk_dynamodb::operation::update_item::{UpdateItemError, UpdateItemOutput};
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::types::error::ConditionalCheckFailedException;
use aws_sdk_s3::operation::get_object::{GetObjectError, GetObjectOutput};
use aws_sdk_s3::operation::put_object::{PutObjectError, PutObjectOutput};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::error::NoSuchKey;
use aws_sdk_sns::operation::publish::{PublishError, PublishInput, PublishOutput};
use aws_smithy_mocks::{MockResponse, Rule, RuleMode, mock, mock_client};
use aws_smithy_types::error::ErrorMetadata;
use counter_reporter::alert::AlertMessage;
use counter_reporter::config::{LimitsSource, ReporterConfig};
use counter_reporter::handler::{BatchOutcome, Clients, RecordFailure, Reporter};
use counter_reporter::limits::Limits;
use serde_json::{Value, json};
use sluice_aws::Deadline;
use sluice_events::aws_lambda_events::dynamodb::Event;
use sluice_lambda::metrics::Metrics;

const DATE: &str = "2015-11-16";
const SNAPSHOT_KEY: &str = "totals/2015-11-16/totals.jsonl";

type Item = HashMap<String, AttributeValue>;

/// The state behind the fakes.
#[derive(Default)]
struct World {
    /// key -> (body, etag)
    objects: HashMap<String, (Vec<u8>, String)>,
    etags: u32,
    /// Aggregate items the `ByDate` query returns.
    table: Vec<Item>,
    /// (Counter, Date) -> alert item
    alerts: HashMap<(String, String), Item>,
    published: Vec<PublishInput>,
    /// Publish calls still to fail.
    publish_failures: usize,
    /// Puts of the snapshot to lose to "another writer" (412) before one succeeds.
    put_races: usize,
    puts: usize,
    queries: usize,
}

type Shared = Arc<Mutex<World>>;

fn s(v: &AttributeValue) -> &str {
    v.as_s().map(String::as_str).unwrap_or("")
}

fn n(v: Option<&AttributeValue>) -> u64 {
    v.and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn rules(world: &Shared) -> Vec<Rule> {
    let w = Arc::clone(world);
    let get = mock!(aws_sdk_s3::Client::get_object).then_compute_response(move |req| {
        let w = w.lock().unwrap();
        match w.objects.get(req.key().unwrap_or_default()) {
            Some((body, etag)) => MockResponse::Output(
                GetObjectOutput::builder()
                    .body(ByteStream::from(body.clone()))
                    .e_tag(etag.clone())
                    .build(),
            ),
            None => MockResponse::Error(GetObjectError::NoSuchKey(NoSuchKey::builder().build())),
        }
    });
    let w = Arc::clone(world);
    let put = mock!(aws_sdk_s3::Client::put_object).then_compute_response(move |req| {
        let mut w = w.lock().unwrap();
        w.puts += 1;
        let key = req.key().unwrap_or_default().to_owned();
        let current = w.objects.get(&key).map(|(_, etag)| etag.clone());
        let holds = match (req.if_none_match(), req.if_match(), &current) {
            (Some("*"), None, None) => true,
            (None, Some(want), Some(etag)) => want == etag,
            _ => false,
        };
        if !holds || w.put_races > 0 {
            w.put_races = w.put_races.saturating_sub(1);
            return MockResponse::Error(PutObjectError::generic(
                ErrorMetadata::builder()
                    .code("PreconditionFailed")
                    .message("At least one of the pre-conditions you specified did not hold")
                    .build(),
            ));
        }
        w.etags += 1;
        let etag = format!("\"etag-{}\"", w.etags);
        let body = req.body().bytes().unwrap_or_default().to_vec();
        w.objects.insert(key, (body, etag.clone()));
        MockResponse::Output(PutObjectOutput::builder().e_tag(etag).build())
    });
    let w = Arc::clone(world);
    let query = mock!(aws_sdk_dynamodb::Client::query).then_compute_response(move |req| {
        let mut w = w.lock().unwrap();
        w.queries += 1;
        if req.index_name() != Some("ByDate") {
            return MockResponse::Error(QueryError::generic(
                ErrorMetadata::builder().code("ValidationException").build(),
            ));
        }
        let date = req
            .expression_attribute_values()
            .and_then(|v| v.get(":d"))
            .map(s)
            .unwrap_or("");
        let items: Vec<Item> = w
            .table
            .iter()
            .filter(|i| i.get("Date").map(s) == Some(date))
            .cloned()
            .collect();
        MockResponse::Output(QueryOutput::builder().set_items(Some(items)).build())
    });
    let w = Arc::clone(world);
    let get_item = mock!(aws_sdk_dynamodb::Client::get_item).then_compute_response(move |req| {
        let w = w.lock().unwrap();
        let key = req.key().unwrap();
        let id = (s(&key["Counter"]).to_owned(), s(&key["Date"]).to_owned());
        assert_eq!(
            req.consistent_read(),
            Some(true),
            "alert state is read consistently"
        );
        MockResponse::Output(
            GetItemOutput::builder()
                .set_item(w.alerts.get(&id).cloned())
                .build(),
        )
    });
    let w = Arc::clone(world);
    let put_item = mock!(aws_sdk_dynamodb::Client::put_item).then_compute_response(move |req| {
        let mut w = w.lock().unwrap();
        let item = req.item().unwrap().clone();
        let id = (s(&item["Counter"]).to_owned(), s(&item["Date"]).to_owned());
        let read = n(req
            .expression_attribute_values()
            .and_then(|v| v.get(":read")));
        let holds = match w.alerts.get(&id) {
            None => true,
            Some(stored) => n(stored.get("Version")) == read,
        };
        if !holds {
            return MockResponse::Error(PutItemError::ConditionalCheckFailedException(
                ConditionalCheckFailedException::builder().build(),
            ));
        }
        w.alerts.insert(id, item);
        MockResponse::Output(PutItemOutput::builder().build())
    });
    let w = Arc::clone(world);
    let mark = mock!(aws_sdk_dynamodb::Client::update_item).then_compute_response(move |req| {
        let mut w = w.lock().unwrap();
        let key = req.key().unwrap();
        let id = (s(&key["Counter"]).to_owned(), s(&key["Date"]).to_owned());
        let cv = n(req.expression_attribute_values().and_then(|v| v.get(":cv")));
        match w.alerts.get_mut(&id) {
            Some(stored)
                if n(stored.get("ChangedVersion")) == cv
                    && stored.get("Notified") == Some(&AttributeValue::Bool(false)) =>
            {
                stored.insert("Notified".into(), AttributeValue::Bool(true));
                MockResponse::Output(UpdateItemOutput::builder().build())
            }
            _ => MockResponse::Error(UpdateItemError::ConditionalCheckFailedException(
                ConditionalCheckFailedException::builder().build(),
            )),
        }
    });
    let w = Arc::clone(world);
    let publish = mock!(aws_sdk_sns::Client::publish).then_compute_response(move |req| {
        let mut w = w.lock().unwrap();
        if w.publish_failures > 0 {
            w.publish_failures -= 1;
            return MockResponse::Error(PublishError::generic(
                ErrorMetadata::builder()
                    .code("InternalError")
                    .message("mocked")
                    .build(),
            ));
        }
        w.published.push(req.clone());
        MockResponse::Output(
            PublishOutput::builder()
                .message_id(format!("msg-{}", w.published.len()))
                .build(),
        )
    });
    vec![get, put, query, get_item, put_item, mark, publish]
}

fn reporter(world: &Shared, limits: &str) -> Reporter {
    let rules = rules(world);
    let refs: Vec<&Rule> = rules.iter().collect();
    let s3 = mock_client!(aws_sdk_s3, RuleMode::MatchAny, &refs[..2], |c| c
        .retry_config(aws_sdk_s3::config::retry::RetryConfig::disabled()));
    let dynamodb = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, &refs[2..6], |c| c
        .retry_config(aws_sdk_dynamodb::config::retry::RetryConfig::disabled()));
    let sns = mock_client!(aws_sdk_sns, RuleMode::MatchAny, &refs[6..], |c| c
        .retry_config(aws_sdk_sns::config::retry::RetryConfig::disabled()));
    let config = ReporterConfig {
        totals_bucket: "totals-bucket".into(),
        totals_prefix: "totals/".into(),
        aggregate_table: "aggregates".into(),
        aggregate_date_index: "ByDate".into(),
        alerts_table: "alerts".into(),
        alert_topic_arn: "arn:aws:sns:us-east-1:000000000000:alerts".into(),
        limits: LimitsSource::None,
        max_concurrent_writes: 4,
        deadline_margin: Duration::from_millis(100),
    };
    Reporter::new(
        Clients { s3, dynamodb, sns },
        config,
        Limits::parse(limits).unwrap(),
    )
}

fn image(counter: &str, date: &str, value: i64, version: u64) -> Value {
    json!({"Counter": {"S": counter}, "Date": {"S": date}, "Value": {"N": value.to_string()},
           "Version": {"N": version.to_string()}, "UpdatedAt": {"S": format!("{date}T00:00:{version:02}Z")}})
}

fn item(counter: &str, value: i64, version: u64) -> Item {
    serde_json::from_value::<serde_dynamo::Item>(image(counter, DATE, value, version))
        .map(Into::into)
        .unwrap()
}

fn record(seq: &str, name: &str, new_image: Option<Value>) -> Value {
    let mut dynamodb = json!({
        "Keys": {"Counter": {"S": "k"}, "Date": {"S": DATE}},
        "SequenceNumber": seq, "SizeBytes": 100, "StreamViewType": "NEW_IMAGE",
        "ApproximateCreationDateTime": 1447711716.0
    });
    if let Some(img) = new_image {
        dynamodb["NewImage"] = img;
    }
    json!({"eventID": format!("e-{seq}"), "eventName": name, "eventVersion": "1.1",
           "eventSource": "aws:dynamodb", "awsRegion": "us-east-1", "dynamodb": dynamodb,
           "eventSourceARN": "arn:aws:dynamodb:us-east-1:000000000000:table/a/stream/2015"})
}

fn modify(seq: &str, counter: &str, value: i64, version: u64) -> Value {
    record(seq, "MODIFY", Some(image(counter, DATE, value, version)))
}

async fn run(reporter: &Reporter, records: Vec<Value>) -> BatchOutcome {
    let event: Event = serde_json::from_value(json!({ "Records": records })).unwrap();
    reporter
        .handle(
            &event,
            &Deadline::after(Duration::from_secs(3)),
            &mut Metrics::new("test", "counter-reporter"),
        )
        .await
        .unwrap()
}

fn snapshot_lines(world: &Shared) -> Vec<Value> {
    let w = world.lock().unwrap();
    let body = &w.objects[SNAPSHOT_KEY].0;
    std::str::from_utf8(body)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn totals(world: &Shared) -> Vec<(String, i64, u64)> {
    snapshot_lines(world)
        .iter()
        .map(|l| {
            (
                l["counter"].as_str().unwrap().to_owned(),
                l["total"].as_i64().unwrap(),
                l["version"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn alerts(world: &Shared) -> Vec<AlertMessage> {
    world
        .lock()
        .unwrap()
        .published
        .iter()
        .map(|p| {
            let body: Value = serde_json::from_str(p.message().unwrap()).unwrap();
            serde_json::from_str(body["default"].as_str().unwrap()).unwrap()
        })
        .collect()
}

#[tokio::test]
async fn the_sample_removal_is_counted_and_touches_nothing() {
    let world = Shared::default();
    let reporter = reporter(&world, "[]");
    let event: Value = serde_json::from_str(include_str!(
        "../../../events/counter-reporter/stream-remove.json"
    ))
    .unwrap();
    let outcome = run(&reporter, event["Records"].as_array().unwrap().clone()).await;
    assert_eq!(outcome.removed, 1);
    assert!(outcome.checkpoint.is_clean(), "{:?}", outcome.failures);
    // No snapshot written, no alert published.
    assert!(world.lock().unwrap().objects.is_empty());
    assert!(alerts(&world).is_empty());
}

#[tokio::test]
async fn a_new_day_is_seeded_from_the_table_and_written_if_absent() {
    let world = Shared::default();
    world.lock().unwrap().table = vec![item("C0", 3, 1), item("C1", 10, 1)];
    let reporter = reporter(&world, "[]");
    let outcome = run(
        &reporter,
        vec![modify("100", "C1", 15, 2), modify("101", "C2", -4, 1)],
    )
    .await;
    assert!(outcome.checkpoint.is_clean(), "{:?}", outcome.failures);
    assert_eq!(outcome.snapshots_written, 1);
    assert_eq!(
        totals(&world),
        vec![
            ("C0".into(), 3, 1),
            ("C1".into(), 15, 2),
            ("C2".into(), -4, 1)
        ],
        "every counter of the day, the stream's newer C1 over the table's"
    );
    assert_eq!(
        snapshot_lines(&world)[1]["updated_at"],
        "2015-11-16T00:00:02Z"
    );
    assert_eq!(world.lock().unwrap().queries, 1);
}

#[tokio::test]
async fn redelivered_or_older_records_never_rewrite_or_regress_the_snapshot() {
    let world = Shared::default();
    let reporter = reporter(&world, "[]");
    run(
        &reporter,
        vec![
            modify("100", "C1", 5, 1),
            modify("101", "C1", 7, 2),
            modify("102", "C1", 5, 3),
        ],
    )
    .await;
    assert_eq!(totals(&world), vec![("C1".into(), 5, 3)]);
    let before = world.lock().unwrap().objects[SNAPSHOT_KEY].clone();
    let puts = world.lock().unwrap().puts;

    // The same batch again, and the middle record replayed alone.
    let again = run(
        &reporter,
        vec![
            modify("100", "C1", 5, 1),
            modify("101", "C1", 7, 2),
            modify("102", "C1", 5, 3),
        ],
    )
    .await;
    let replay = run(&reporter, vec![modify("101", "C1", 7, 2)]).await;
    for outcome in [&again, &replay] {
        assert!(outcome.checkpoint.is_clean());
        assert_eq!(
            (outcome.snapshots_written, outcome.snapshots_unchanged),
            (0, 1)
        );
    }
    assert_eq!(
        world.lock().unwrap().objects[SNAPSHOT_KEY],
        before,
        "same bytes, same ETag"
    );
    assert_eq!(world.lock().unwrap().puts, puts, "nothing written");
}

#[tokio::test]
async fn a_lost_write_race_is_read_and_merged_again() {
    let world = Shared::default();
    let reporter = reporter(&world, "[]");
    run(&reporter, vec![modify("100", "C1", 1, 1)]).await;
    world.lock().unwrap().put_races = 2;
    let outcome = run(&reporter, vec![modify("200", "C2", 2, 1)]).await;
    assert!(outcome.checkpoint.is_clean());
    assert_eq!(
        (outcome.snapshots_written, outcome.snapshot_conflicts),
        (1, 2)
    );
    assert_eq!(
        totals(&world),
        vec![("C1".into(), 1, 1), ("C2".into(), 2, 1)]
    );

    // Always losing: the record fails retryably and is the checkpoint.
    world.lock().unwrap().put_races = 100;
    let outcome = run(&reporter, vec![modify("300", "C3", 3, 1)]).await;
    assert_eq!(outcome.checkpoint.first_failed(), Some("300"));
    assert!(matches!(
        outcome.failures[..],
        [RecordFailure::Contended { .. }]
    ));
    assert!(outcome.failures[0].is_retryable());
}

#[tokio::test]
async fn an_unreadable_snapshot_is_rebuilt_from_the_table() {
    let world = Shared::default();
    {
        let mut w = world.lock().unwrap();
        w.objects.insert(
            SNAPSHOT_KEY.into(),
            (b"not json\n".to_vec(), "\"etag-0\"".into()),
        );
        w.table = vec![item("C0", 3, 4)];
    }
    let reporter = reporter(&world, "[]");
    let outcome = run(&reporter, vec![modify("100", "C1", 1, 1)]).await;
    assert!(outcome.checkpoint.is_clean(), "{:?}", outcome.failures);
    assert_eq!(
        totals(&world),
        vec![("C0".into(), 3, 4), ("C1".into(), 1, 1)]
    );
}

#[tokio::test]
async fn unusable_records_are_permanent_failures_at_their_sequence_number() {
    let world = Shared::default();
    let reporter = reporter(&world, "[]");
    let outcome = run(
        &reporter,
        vec![
            modify("100", "C1", 1, 1),
            record("101", "MODIFY", None),
            record("102", "INSERT", Some(image("C9", "2015/11/16", 1, 1))),
            record("103", "REMOVE", None),
            record("104", "MODIFY", Some(json!({"Counter": {"S": "C8"}}))),
        ],
    )
    .await;
    assert_eq!(outcome.checkpoint.first_failed(), Some("101"));
    let reasons: Vec<_> = outcome
        .failures
        .iter()
        .map(|f| (f.sequence_number().to_owned(), f.reason(), f.is_retryable()))
        .collect();
    assert_eq!(
        reasons,
        vec![
            ("101".into(), "no_new_image", false),
            ("102".into(), "bad_date", false),
            ("104".into(), "unreadable", false),
        ]
    );
    assert_eq!(outcome.removed, 1);
    assert_eq!(
        totals(&world),
        vec![("C1".into(), 1, 1)],
        "the good record still counts"
    );
}

const LIMITS: &str = r#"[{"counter":"HOT","max":100},{"counter":"LOW*","min":10}]"#;

#[tokio::test]
async fn leaving_the_range_alerts_once_and_returning_once_more() {
    let world = Shared::default();
    let reporter = reporter(&world, LIMITS);
    run(
        &reporter,
        vec![
            modify("100", "HOT", 50, 1),
            modify("101", "OTHER", 1_000_000, 1),
        ],
    )
    .await;
    assert!(
        alerts(&world).is_empty(),
        "a first total in range (and a counter without limits) is quiet"
    );

    let out = run(&reporter, vec![modify("200", "HOT", 150, 2)]).await;
    assert_eq!(out.alerts_published, 1);
    let sent = alerts(&world);
    assert_eq!(
        (
            sent[0].standing.as_str(),
            sent[0].previous.as_str(),
            sent[0].total
        ),
        ("above", "in_range", 150)
    );
    assert_eq!(
        sent[0].snapshot,
        "s3://totals-bucket/totals/2015-11-16/totals.jsonl"
    );
    {
        let w = world.lock().unwrap();
        let p = &w.published[0];
        assert_eq!(p.message_structure(), Some("json"));
        assert_eq!(
            p.subject(),
            Some("sluice: counter HOT on 2015-11-16 is above its limit (total 150)")
        );
        let body: Value = serde_json::from_str(p.message().unwrap()).unwrap();
        assert!(
            body["email"]
                .as_str()
                .unwrap()
                .starts_with("Counter HOT on 2015-11-16 is above its limit.")
        );
    }

    // The same batch redelivered, and a newer total still above: nothing more.
    run(&reporter, vec![modify("200", "HOT", 150, 2)]).await;
    let out = run(&reporter, vec![modify("300", "HOT", 170, 3)]).await;
    assert_eq!((out.alerts_published, out.stale_images), (0, 0));
    assert_eq!(alerts(&world).len(), 1);

    // Back in range: one recovery; an older record replayed afterwards changes nothing.
    run(&reporter, vec![modify("400", "HOT", 90, 4)]).await;
    let out = run(&reporter, vec![modify("200", "HOT", 150, 2)]).await;
    assert_eq!(out.stale_images, 1);
    let sent = alerts(&world);
    assert_eq!(sent.len(), 2);
    assert_eq!(
        (
            sent[1].standing.as_str(),
            sent[1].previous.as_str(),
            sent[1].total
        ),
        ("in_range", "above", 90)
    );
}

#[tokio::test]
async fn an_excursion_inside_one_batch_still_alerts_both_ways() {
    let world = Shared::default();
    let reporter = reporter(&world, LIMITS);
    let out = run(
        &reporter,
        vec![
            modify("102", "LOW1", 20, 3),
            modify("100", "LOW1", 20, 1),
            modify("101", "LOW1", 5, 2),
        ],
    )
    .await;
    assert!(out.checkpoint.is_clean());
    let sent: Vec<_> = alerts(&world)
        .into_iter()
        .map(|a| (a.standing, a.total))
        .collect();
    assert_eq!(
        sent,
        vec![("below".to_owned(), 5), ("in_range".to_owned(), 20)],
        "in sequence order"
    );
    assert_eq!(totals(&world), vec![("LOW1".into(), 20, 3)]);
}

#[tokio::test]
async fn a_failed_publish_is_sent_by_the_redelivery_exactly_once() {
    let world = Shared::default();
    let reporter = reporter(&world, LIMITS);
    world.lock().unwrap().publish_failures = 1000;
    let out = run(
        &reporter,
        vec![
            modify("100", "HOT", 50, 1),
            modify("101", "HOT", 500, 2),
            modify("102", "OTHER", 1, 1),
        ],
    )
    .await;
    assert_eq!(out.checkpoint.first_failed(), Some("101"));
    assert!(out.failures[0].is_retryable(), "{:?}", out.failures);
    assert!(alerts(&world).is_empty());
    assert_eq!(
        totals(&world).len(),
        2,
        "the snapshot is written regardless"
    );

    world.lock().unwrap().publish_failures = 0;
    // Lambda redelivers from the checkpoint.
    let out = run(
        &reporter,
        vec![modify("101", "HOT", 500, 2), modify("102", "OTHER", 1, 1)],
    )
    .await;
    assert!(out.checkpoint.is_clean(), "{:?}", out.failures);
    assert_eq!(out.alerts_published, 1);
    run(&reporter, vec![modify("101", "HOT", 500, 2)]).await;
    let sent = alerts(&world);
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!((sent[0].standing.as_str(), sent[0].total), ("above", 500));
}

#[tokio::test]
async fn a_pending_transition_goes_out_before_the_next_one_replaces_it() {
    let world = Shared::default();
    let reporter = reporter(&world, LIMITS);
    world.lock().unwrap().publish_failures = 1000;
    run(&reporter, vec![modify("100", "HOT", 500, 1)]).await;
    world.lock().unwrap().publish_failures = 0;
    // A newer record (not the redelivery) arrives first, back in range.
    run(&reporter, vec![modify("200", "HOT", 5, 2)]).await;
    let sent: Vec<_> = alerts(&world)
        .into_iter()
        .map(|a| (a.standing, a.previous))
        .collect();
    assert_eq!(
        sent,
        vec![
            ("above".to_owned(), "in_range".to_owned()),
            ("in_range".to_owned(), "above".to_owned())
        ]
    );
}
