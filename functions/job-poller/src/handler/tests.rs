//! The poller's decisions, with DynamoDB, SNS and Lambda mocked (aws-smithy-mocks)
//! and the job API in memory. Time is tokio's paused clock: sleeps cost nothing.

use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::operation::get_item::GetItemOutput;
use aws_sdk_dynamodb::operation::put_item::{PutItemError, PutItemOutput};
use aws_sdk_dynamodb::operation::update_item::{
    UpdateItemError, UpdateItemInput, UpdateItemOutput,
};
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::types::error::ConditionalCheckFailedException;
use aws_sdk_lambda::operation::invoke::InvokeOutput;
use aws_sdk_sns::operation::publish::PublishOutput;
use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use serde_json::json;
use tokio::time::Instant;

use super::*;
use crate::event::{Continuation, NotificationRecord};
use crate::job_api::fake::{InMemoryJobApi, running};
use crate::job_api::{ApiError, JobStatus};
use crate::table::JobState;
use crate::table::test_items::{item, lapsed};

const ME: &str = "req-me";
const OTHER: &str = "req-other";
const FUNCTION: &str = "arn:aws:lambda:us-east-1:000000000000:function:sluice-job-poller";
const SOURCE_ID: &str = "s3://reports-bucket/reports/2026/11/21/sales.csv#0055AED6DCD90281E5:0123456789abcdef0123456789abcdef";
const NOW: u64 = 1_700_000_100_000;
const MARGIN: Duration = Duration::from_secs(2);

fn config() -> Config {
    Config {
        jobs_table: "jobs".to_owned(),
        topic_arn: "arn:aws:sns:us-east-1:000000000000:job-outcomes".to_owned(),
        api_base_url: "https://bi.example.com/api".to_owned(),
        token_secret: "job-api-token".to_owned(),
        reports_bucket: "reports-bucket".to_owned(),
        report_prefix: "reports/".to_owned(),
        safety_margin: MARGIN,
        poll_initial: Duration::from_millis(500),
        poll_max: Duration::from_secs(1),
        max_generations: 3,
        api_timeout: Duration::from_secs(1),
        api_max_answer_bytes: 1 << 20,
        lease_grace: Duration::from_secs(60),
    }
}

fn fixed_now() -> u64 {
    NOW
}

fn invocation(timeout: Duration) -> Invocation {
    Invocation {
        request_id: ME.to_owned(),
        function_arn: FUNCTION.to_owned(),
        deadline: Deadline::after(timeout),
    }
}

/// The mocked AWS side of one test: rules, and what SNS and Lambda were sent.
#[derive(Default)]
struct Aws {
    dynamodb: Vec<Rule>,
    /// The `default` (JSON) message of each publish, parsed.
    published: Arc<Mutex<Vec<Value>>>,
    /// The Subject and `email` text of each publish.
    emails: Arc<Mutex<Vec<(String, String)>>>,
    invoked: Arc<Mutex<Vec<Value>>>,
    sns: Vec<Rule>,
    lambda: Vec<Rule>,
    /// SNS / Lambda that take each request and never answer (a hung service).
    silent_sns: bool,
    silent_lambda: bool,
}

/// An HTTP client that never answers: a call through it ends only when something
/// else cuts it off.
#[derive(Debug, Clone, Copy)]
struct Silent;

impl HttpConnector for Silent {
    fn call(&self, _request: HttpRequest) -> HttpConnectorFuture {
        HttpConnectorFuture::new(std::future::pending())
    }
}

impl HttpClient for Silent {
    fn http_connector(
        &self,
        _settings: &HttpConnectorSettings,
        _components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(*self)
    }
}

/// A client of `$sdk` whose every call hangs (no SDK retries, no stall protection).
macro_rules! silent_client {
    ($sdk:ident) => {
        $sdk::Client::from_conf(
            $sdk::Config::builder()
                .behavior_version($sdk::config::BehaviorVersion::latest())
                .region($sdk::config::Region::new("us-east-1"))
                .credentials_provider($sdk::config::Credentials::new(
                    "AKIDTEST", "secret", None, None, "test",
                ))
                .http_client(Silent)
                .retry_config($sdk::config::retry::RetryConfig::disabled())
                .stalled_stream_protection($sdk::config::StalledStreamProtectionConfig::disabled())
                .build(),
        )
    };
}

impl Aws {
    fn with(rules: Vec<Rule>) -> Self {
        let mut aws = Aws {
            dynamodb: rules,
            ..Aws::default()
        };
        let (published, emails) = (aws.published.clone(), aws.emails.clone());
        aws.sns.push(
            mock!(aws_sdk_sns::Client::publish)
                .match_requests(move |r| {
                    assert_eq!(r.message_structure(), Some("json"));
                    // SNS refuses a message over 256 KiB (`InvalidParameter`).
                    let size = r.message().unwrap().len() + r.subject().map_or(0, str::len);
                    assert!(size <= SNS_MAX_MESSAGE_BYTES, "SNS refuses {size} bytes");
                    let message: Value = serde_json::from_str(r.message().unwrap()).unwrap();
                    let default = message["default"].as_str().expect("a default message");
                    published
                        .lock()
                        .unwrap()
                        .push(serde_json::from_str(default).unwrap());
                    emails.lock().unwrap().push((
                        r.subject().expect("a Subject").to_owned(),
                        message["email"]
                            .as_str()
                            .expect("an email message")
                            .to_owned(),
                    ));
                    true
                })
                .then_output(|| PublishOutput::builder().message_id("msg-1").build()),
        );
        let invoked = aws.invoked.clone();
        aws.lambda.push(
            mock!(aws_sdk_lambda::Client::invoke)
                .match_requests(move |r| {
                    assert_eq!(r.function_name(), Some(FUNCTION));
                    assert_eq!(r.invocation_type(), Some(&InvocationType::Event));
                    let payload = serde_json::from_slice(r.payload().unwrap().as_ref()).unwrap();
                    invoked.lock().unwrap().push(payload);
                    true
                })
                .then_output(|| InvokeOutput::builder().status_code(202).build()),
        );
        aws
    }

    fn poller<'a>(&self, api: &'a InMemoryJobApi) -> Poller<&'a InMemoryJobApi> {
        let dynamodb_rules: Vec<&Rule> = self.dynamodb.iter().collect();
        let sns_rules: Vec<&Rule> = self.sns.iter().collect();
        let lambda_rules: Vec<&Rule> = self.lambda.iter().collect();
        let dynamodb = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, &dynamodb_rules, |c| c
            .retry_config(aws_sdk_dynamodb::config::retry::RetryConfig::disabled()));
        let sns = if self.silent_sns {
            silent_client!(aws_sdk_sns)
        } else {
            mock_client!(aws_sdk_sns, RuleMode::MatchAny, &sns_rules, |c| c
                .retry_config(aws_sdk_sns::config::retry::RetryConfig::disabled()))
        };
        let lambda = if self.silent_lambda {
            silent_client!(aws_sdk_lambda)
        } else {
            mock_client!(aws_sdk_lambda, RuleMode::MatchAny, &lambda_rules, |c| c
                .retry_config(aws_sdk_lambda::config::retry::RetryConfig::disabled()))
        };
        Poller::new(
            config(),
            JobsTable::new(dynamodb, "jobs"),
            api,
            sns,
            lambda,
            fixed_now,
        )
    }

    /// `event` handled by one invocation of `timeout`, which must answer by its
    /// deadline (the runtime would kill it there).
    async fn handle(
        &self,
        api: &InMemoryJobApi,
        event: &Value,
        timeout: Duration,
    ) -> Result<Summary, PollerError> {
        let inv = invocation(timeout);
        tokio::time::timeout_at(inv.deadline.instant(), self.poller(api).handle(event, &inv))
            .await
            .expect("still working at the invocation's deadline")
    }

    /// The one job report of `event` handled by a 10 s invocation that succeeds.
    async fn one(&self, api: &InMemoryJobApi, event: &Value) -> JobReport {
        self.one_within(api, event, Duration::from_secs(10)).await
    }

    /// The one job report of `event` handled by an invocation of `timeout` that succeeds.
    async fn one_within(
        &self,
        api: &InMemoryJobApi,
        event: &Value,
        timeout: Duration,
    ) -> JobReport {
        only(self.handle(api, event, timeout).await.unwrap())
    }

    fn published(&self) -> Vec<Value> {
        self.published.lock().unwrap().clone()
    }

    fn emails(&self) -> Vec<(String, String)> {
        self.emails.lock().unwrap().clone()
    }

    fn invoked(&self) -> Vec<Value> {
        self.invoked.lock().unwrap().clone()
    }
}

fn ccf_update() -> UpdateItemError {
    UpdateItemError::ConditionalCheckFailedException(
        ConditionalCheckFailedException::builder()
            .message("The conditional request failed")
            .build(),
    )
}

/// Which conditional write an `UpdateItem` is, by a word only its expression has.
fn is_update(input: &UpdateItemInput, marker: &str) -> bool {
    input
        .update_expression()
        .is_some_and(|e| e.contains(marker))
}

fn value<'a>(input: &'a UpdateItemInput, name: &str) -> Option<&'a str> {
    input
        .expression_attribute_values()
        .and_then(|v| v.get(name))
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
}

const STARTED: &str = "#started";
const TURN: &str = "list_append";
const OUTCOME: &str = "#detail";
const NOTIFY: &str = "#nowner";
const NOTIFIED: &str = "#message";

fn update_ok(marker: &'static str) -> Rule {
    mock!(aws_sdk_dynamodb::Client::update_item)
        .match_requests(move |r| is_update(r, marker))
        .then_output(|| UpdateItemOutput::builder().build())
}

fn update_fails(marker: &'static str) -> Rule {
    mock!(aws_sdk_dynamodb::Client::update_item)
        .match_requests(move |r| is_update(r, marker))
        .then_error(ccf_update)
}

fn outcome_ok(expected: JobState) -> Rule {
    mock!(aws_sdk_dynamodb::Client::update_item)
        .match_requests(move |r| {
            is_update(r, OUTCOME) && value(r, ":outcome") == Some(expected.as_str())
        })
        .then_output(|| UpdateItemOutput::builder().build())
}

fn turn_claimed(generation: u32) -> Rule {
    mock!(aws_sdk_dynamodb::Client::update_item)
        .match_requests(move |r| {
            is_update(r, TURN)
                && r.expression_attribute_values()
                    .and_then(|v| v.get(":prev"))
                    .and_then(|v| v.as_n().ok())
                    == Some(&(generation - 1).to_string())
        })
        .then_output(move || {
            UpdateItemOutput::builder()
                .set_attributes(Some(item(
                    SOURCE_ID,
                    JobState::Running,
                    Some("job-1"),
                    Some(generation),
                    Some(ME),
                )))
                .build()
        })
}

/// Generation 1's turn claimed, a `SUCCEEDED` outcome recorded, the notification
/// claimed; `notified` answers the write of `notified_at`.
fn finishing_turn(notified: Rule) -> Vec<Rule> {
    vec![
        turn_claimed(1),
        outcome_ok(JobState::Succeeded),
        update_ok(NOTIFY),
        notified,
    ]
}

/// A retry of generation 1's final step (same request id): the turn claim fails, and
/// the item shows the turn this invocation's, its `SUCCEEDED` outcome recorded; `rest`
/// answers what follows.
fn retried_final_step(rest: Vec<Rule>) -> Vec<Rule> {
    let mut rules = vec![update_fails(TURN), stored_turn(JobState::Succeeded, 1, ME)];
    rules.extend(rest);
    rules
}

fn claim_ok() -> Rule {
    mock!(aws_sdk_dynamodb::Client::put_item)
        .match_requests(|r| r.condition_expression() == Some("attribute_not_exists(#pk)"))
        .then_output(|| PutItemOutput::builder().build())
}

fn claim_exists() -> Rule {
    mock!(aws_sdk_dynamodb::Client::put_item).then_error(|| {
        PutItemError::ConditionalCheckFailedException(
            ConditionalCheckFailedException::builder().build(),
        )
    })
}

fn stored(item: std::collections::HashMap<String, AttributeValue>) -> Rule {
    mock!(aws_sdk_dynamodb::Client::get_item)
        .match_requests(|r| r.consistent_read() == Some(true))
        .then_output(move || {
            GetItemOutput::builder()
                .set_item(Some(item.clone()))
                .build()
        })
}

/// What a consistent read finds: job-1's item in `state`, its turn at `generation`
/// taken by the invocation `owner`.
fn stored_turn(state: JobState, generation: u32, owner: &str) -> Rule {
    stored(item(
        SOURCE_ID,
        state,
        Some("job-1"),
        Some(generation),
        Some(owner),
    ))
}

fn num_calls(rules: &[Rule]) -> usize {
    rules.iter().map(Rule::num_calls).sum()
}

fn s3_put(key: &str) -> Value {
    json!({"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
        "eventTime": "2026-11-21T06:00:00.000Z", "eventName": "ObjectCreated:Put",
        "userIdentity": {"principalId": "AWS:AIDAEXAMPLE"},
        "requestParameters": {"sourceIPAddress": "10.0.0.1"},
        "responseElements": {"x-amz-request-id": "C3D13FE58DE4C810", "x-amz-id-2": "FMyUVURIY8/IgAtTv8xRjskZQpcIZ9KG4V5Wp6S7S/JRWeUWerMUE5JgHvANOjpD"},
        "s3": {"s3SchemaVersion": "1.0", "configurationId": "job-poller-reports",
               "bucket": {"name": "reports-bucket", "ownerIdentity": {"principalId": "A3NL1KOZZKExample"}, "arn": "arn:aws:s3:::reports-bucket"},
               "object": {"key": key, "size": 52_428, "eTag": "0123456789abcdef0123456789abcdef", "sequencer": "0055AED6DCD90281E5"}}
    }]})
}

fn continuation(generation: u32, budget_remaining: u32) -> Value {
    serde_json::to_value(Continuation::new(
        SOURCE_ID,
        "job-1",
        generation,
        budget_remaining,
        0,
    ))
    .unwrap()
}

/// SNS's largest message, attributes and Subject included.
const SNS_MAX_MESSAGE_BYTES: usize = 262_144;

fn succeeded() -> Result<JobStatus, ApiError> {
    Ok(JobStatus::Succeeded {
        message: Some("1200 rows loaded".to_owned()),
    })
}

fn only(summary: Summary) -> JobReport {
    assert_eq!(summary.jobs.len(), 1, "{summary:?}");
    summary.jobs.into_iter().next().unwrap()
}

// --- start ---------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn new_report_starts_one_job_follows_it_and_notifies_success_once() {
    let api = InMemoryJobApi::new();
    api.script("job-1", [running(), running(), succeeded()]);
    let aws = Aws::with(vec![
        claim_ok(),
        update_ok(STARTED),
        outcome_ok(JobState::Succeeded),
        update_ok(NOTIFY),
        update_ok(NOTIFIED),
    ]);

    let job = aws
        .one_within(
            &api,
            &s3_put("reports/2026/11/21/sales.csv"),
            Duration::from_secs(30),
        )
        .await;

    assert_eq!(job.action, Action::Finished);
    assert_eq!(job.job_id.as_deref(), Some("job-1"));
    let starts = api.starts();
    assert_eq!(starts.len(), 1);
    assert_eq!(
        starts[0].source.uri,
        "s3://reports-bucket/reports/2026/11/21/sales.csv"
    );
    assert!(starts[0].idempotency_key.starts_with("sluice-job-poller-"));
    assert_eq!(api.status_calls(), 3);
    let published = aws.published();
    assert_eq!(published.len(), 1);
    assert_eq!(published[0]["outcome"], "SUCCEEDED");
    assert_eq!(published[0]["job_id"], "job-1");
    assert_eq!(published[0]["generations"], 1);
    assert_eq!(published[0]["detail"], "1200 rows loaded");
    assert_eq!(
        published[0]["source"]["key"],
        "reports/2026/11/21/sales.csv"
    );
    assert_eq!(published[0]["source_id"], SOURCE_ID);
    let emails = aws.emails();
    assert_eq!(emails.len(), 1);
    let (subject, text) = &emails[0];
    assert!(
        subject.starts_with("sluice job job-1: SUCCEEDED in "),
        "{subject}"
    );
    assert!(
        text.starts_with("Job job-1 finished: it succeeded.\n"),
        "{text}"
    );
    assert!(text.contains("\nDetail:      1200 rows loaded\n"), "{text}");
    assert!(text.contains("jobs table jobs, source_id "), "{text}");
    assert!(aws.invoked().is_empty());
    assert_eq!(
        aws.dynamodb[4].num_calls(),
        1,
        "notification marked as sent"
    );
}

#[tokio::test(start_paused = true)]
async fn job_outlasting_the_invocation_hands_over_before_the_margin() {
    let api = InMemoryJobApi::new();
    api.script("job-1", [running()]);
    let aws = Aws::with(vec![claim_ok(), update_ok(STARTED)]);
    let poller = aws.poller(&api);
    let inv = invocation(Duration::from_secs(10));

    let job = only(
        poller
            .handle(&s3_put("reports/2026/11/21/sales.csv"), &inv)
            .await
            .unwrap(),
    );

    assert_eq!(job.action, Action::HandedOff);
    let invoked = aws.invoked();
    assert_eq!(invoked.len(), 1);
    assert_eq!(invoked[0]["kind"], "job-poller/continue");
    assert_eq!(invoked[0]["job_id"], "job-1");
    assert_eq!(invoked[0]["source_id"], SOURCE_ID);
    assert_eq!(invoked[0]["generation"], 1);
    assert_eq!(
        invoked[0]["budget_remaining"], 1,
        "MAX_GENERATIONS 3: generations 1 and 2 left"
    );
    assert!(
        Instant::now() <= inv.deadline.instant() - MARGIN,
        "never slept into the margin"
    );
    assert!(aws.published().is_empty());
}

#[tokio::test(start_paused = true)]
async fn poll_interval_backs_off_to_its_maximum_and_stops_before_the_margin() {
    let api = InMemoryJobApi::new();
    api.script("job-1", [running()]);
    let aws = Aws::with(vec![claim_ok(), update_ok(STARTED)]);
    let poller = aws.poller(&api);
    let inv = invocation(Duration::from_secs(10));
    let start = Instant::now();

    poller.handle(&s3_put("reports/a.csv"), &inv).await.unwrap();

    let times: Vec<Duration> = api.status_call_times().iter().map(|t| *t - start).collect();
    let expected: Vec<Duration> = [0, 500, 1500, 2500, 3500, 4500, 5500, 6500, 7500]
        .into_iter()
        .map(Duration::from_millis)
        .collect();
    assert_eq!(times, expected);
    // The handover carries where the interval had got to.
    assert_eq!(aws.invoked()[0]["poll_attempt"], 9);
}

#[tokio::test(start_paused = true)]
async fn redelivered_s3_event_starts_no_second_job() {
    let api = InMemoryJobApi::new();
    let aws = Aws::with(vec![
        claim_exists(),
        stored_turn(JobState::Running, 2, OTHER),
    ]);

    let job = aws
        .one_within(
            &api,
            &s3_put("reports/2026/11/21/sales.csv"),
            Duration::from_secs(30),
        )
        .await;

    assert_eq!(job.action, Action::Duplicate);
    assert_eq!(job.job_id.as_deref(), Some("job-1"));
    assert!(api.starts().is_empty());
    assert_eq!(api.status_calls(), 0);
    assert!(aws.invoked().is_empty() && aws.published().is_empty());
}

#[tokio::test(start_paused = true)]
async fn redelivery_after_a_finished_job_is_a_duplicate_too() {
    let api = InMemoryJobApi::new();
    let aws = Aws::with(vec![
        claim_exists(),
        stored_turn(JobState::Succeeded, 4, OTHER),
    ]);
    let job = aws
        .one_within(
            &api,
            &s3_put("reports/2026/11/21/sales.csv"),
            Duration::from_secs(30),
        )
        .await;
    assert_eq!(job.action, Action::Duplicate);
    assert_eq!(job.detail.as_deref(), Some("already SUCCEEDED"));
    assert!(api.starts().is_empty());
}

#[tokio::test(start_paused = true)]
async fn start_claimed_but_never_recorded_is_resumed_with_the_stored_idempotency_key() {
    let api = InMemoryJobApi::new();
    api.script("job-1", [succeeded()]);
    let aws = Aws::with(vec![
        claim_exists(),
        stored(item(SOURCE_ID, JobState::Starting, None, None, None)),
        update_ok(STARTED),
        outcome_ok(JobState::Succeeded),
        update_ok(NOTIFY),
        update_ok(NOTIFIED),
    ]);

    let job = aws
        .one_within(
            &api,
            &s3_put("reports/2026/11/21/sales.csv"),
            Duration::from_secs(30),
        )
        .await;

    assert_eq!(job.action, Action::Finished);
    assert_eq!(api.starts().len(), 1);
    assert_eq!(api.starts()[0].idempotency_key, "sluice-job-poller-test");
    assert_eq!(aws.published().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn concurrent_delivery_that_loses_generation_zero_does_not_poll() {
    let api = InMemoryJobApi::new();
    api.script("job-1", [running()]);
    let aws = Aws::with(vec![
        claim_ok(),
        update_fails(STARTED),
        stored_turn(JobState::Running, 0, OTHER),
    ]);

    let job = aws
        .one_within(
            &api,
            &s3_put("reports/2026/11/21/sales.csv"),
            Duration::from_secs(30),
        )
        .await;

    assert_eq!(job.action, Action::Duplicate);
    assert_eq!(api.status_calls(), 0);
    assert!(aws.invoked().is_empty());
}

#[tokio::test(start_paused = true)]
async fn start_recorded_but_its_answer_lost_is_still_followed_by_this_invocation() {
    // The first `record_started` was applied but its answer never arrived; the retried
    // write fails its condition against this invocation's own turn (the fault proxy's
    // lost UpdateItem answer). Before, the job was started and never followed.
    let api = InMemoryJobApi::new();
    api.script("job-1", [running(), succeeded()]);
    let aws = Aws::with(vec![
        claim_ok(),
        update_fails(STARTED),
        stored_turn(JobState::Running, 0, ME),
        outcome_ok(JobState::Succeeded),
        update_ok(NOTIFY),
        update_ok(NOTIFIED),
    ]);

    let job = aws
        .one_within(
            &api,
            &s3_put("reports/2026/11/21/sales.csv"),
            Duration::from_secs(30),
        )
        .await;

    assert_eq!(job.action, Action::Finished);
    assert_eq!(api.starts().len(), 1);
    assert_eq!(api.status_calls(), 2);
    let published = aws.published();
    assert_eq!(published.len(), 1);
    assert_eq!(published[0]["outcome"], "SUCCEEDED");
    assert_eq!(published[0]["generations"], 1);
}

/// The ordinary next-turn claim (`#gen = :prev`) finds the turn not available.
fn next_turn_unavailable() -> Rule {
    mock!(aws_sdk_dynamodb::Client::update_item)
        .match_requests(|r| {
            is_update(r, TURN) && !r.condition_expression().unwrap_or("").contains(":old")
        })
        .then_error(ccf_update)
}

/// The take-over claim (holder `:old`, lease ended): applied or not, and what it asked.
fn take_over(applied: bool, seen: Arc<Mutex<Vec<(String, String, String)>>>) -> Rule {
    let rule = mock!(aws_sdk_dynamodb::Client::update_item).match_requests(move |r| {
        let matched = is_update(r, TURN) && r.condition_expression().unwrap_or("").contains(":old");
        if matched {
            let number = |name: &str| {
                r.expression_attribute_values()
                    .and_then(|v| v.get(name))
                    .and_then(|v| v.as_n().ok())
                    .cloned()
                    .unwrap_or_default()
            };
            seen.lock().unwrap().push((
                value(r, ":old").unwrap_or_default().to_owned(),
                number(":gen"),
                number(":now"),
            ));
        }
        matched
    });
    if applied {
        rule.then_output(|| {
            UpdateItemOutput::builder()
                .set_attributes(Some(item(
                    SOURCE_ID,
                    JobState::Running,
                    Some("job-1"),
                    Some(4),
                    Some(ME),
                )))
                .build()
        })
    } else {
        rule.then_error(ccf_update)
    }
}

#[tokio::test(start_paused = true)]
async fn a_redriven_generation_takes_over_a_job_whose_holder_is_gone_and_finishes_it() {
    // Generation 3 failed Lambda's retries: its event went to the failure queue and is
    // redriven, with a new request id. The item still names the dead invocation.
    let api = InMemoryJobApi::new();
    api.script("job-1", [succeeded()]);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let aws = Aws::with(vec![
        next_turn_unavailable(),
        stored(lapsed(
            item(
                SOURCE_ID,
                JobState::Running,
                Some("job-1"),
                Some(3),
                Some("req-dead"),
            ),
            NOW - 1,
        )),
        take_over(true, seen.clone()),
        outcome_ok(JobState::Succeeded),
        update_ok(NOTIFY),
        update_ok(NOTIFIED),
    ]);

    let job = aws.one(&api, &continuation(3, 20)).await;

    assert_eq!(job.action, Action::Finished, "{job:?}");
    assert_eq!(
        *seen.lock().unwrap(),
        [("req-dead".to_owned(), "4".to_owned(), NOW.to_string())],
        "took generation 4 from the dead holder of generation 3"
    );
    let published = aws.published();
    assert_eq!(published.len(), 1, "notified once");
    assert_eq!(published[0]["outcome"], "SUCCEEDED");
    assert_eq!(published[0]["generations"], 5);
}

#[tokio::test(start_paused = true)]
async fn a_redriven_s3_event_takes_over_a_started_job_whose_holder_is_gone() {
    let api = InMemoryJobApi::new();
    api.script("job-1", [succeeded()]);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let aws = Aws::with(vec![
        claim_exists(),
        stored(lapsed(
            item(
                SOURCE_ID,
                JobState::Running,
                Some("job-1"),
                Some(0),
                Some("req-dead"),
            ),
            NOW - 1,
        )),
        take_over(true, seen.clone()),
        outcome_ok(JobState::Succeeded),
        update_ok(NOTIFY),
        update_ok(NOTIFIED),
    ]);

    let job = aws.one(&api, &s3_put("reports/2026/11/21/sales.csv")).await;

    assert_eq!(job.action, Action::Finished, "{job:?}");
    assert_eq!(seen.lock().unwrap()[0].1, "1");
    assert_eq!(api.starts().len(), 0, "no second job started");
    assert_eq!(aws.published().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_holder_whose_lease_has_not_ended_keeps_the_job() {
    let api = InMemoryJobApi::new();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let aws = Aws::with(vec![
        next_turn_unavailable(),
        stored_turn(JobState::Running, 3, OTHER),
        take_over(true, seen.clone()),
    ]);

    let job = aws.one(&api, &continuation(3, 20)).await;

    assert_eq!(job.action, Action::Duplicate);
    assert!(seen.lock().unwrap().is_empty(), "no take-over tried");
    assert_eq!(api.status_calls(), 0);
    assert!(aws.published().is_empty() && aws.invoked().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_take_over_that_loses_the_race_does_nothing() {
    // The lease had ended, but a queued next generation (or the holder's own retry)
    // claimed first: the condition fails and this invocation leaves the job alone.
    let api = InMemoryJobApi::new();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let aws = Aws::with(vec![
        next_turn_unavailable(),
        stored(lapsed(
            item(
                SOURCE_ID,
                JobState::Running,
                Some("job-1"),
                Some(3),
                Some("req-dead"),
            ),
            NOW - 1,
        )),
        take_over(false, seen.clone()),
    ]);

    let job = aws.one(&api, &continuation(3, 20)).await;

    assert_eq!(job.action, Action::Duplicate);
    assert_eq!(seen.lock().unwrap().len(), 1);
    assert_eq!(api.status_calls(), 0);
    assert!(aws.published().is_empty());
}

#[tokio::test(start_paused = true)]
async fn an_outcome_whose_notifier_is_gone_is_notified_once_by_the_redrive() {
    let api = InMemoryJobApi::new();
    let mut stuck = lapsed(
        item(
            SOURCE_ID,
            JobState::Succeeded,
            Some("job-1"),
            Some(2),
            Some("req-dead"),
        ),
        NOW - 1,
    );
    stuck.insert(
        "notify_owner".to_owned(),
        AttributeValue::S("req-dead".to_owned()),
    );
    let taken = mock!(aws_sdk_dynamodb::Client::update_item)
        .match_requests(|r| {
            r.condition_expression()
                .is_some_and(|c| c.contains("#nowner = :old"))
                && value(r, ":old") == Some("req-dead")
                && value(r, ":me") == Some(ME)
        })
        .then_output(|| UpdateItemOutput::builder().build());
    let aws = Aws::with(vec![
        next_turn_unavailable(),
        stored(stuck),
        taken,
        update_ok(NOTIFY),
        update_ok(NOTIFIED),
    ]);

    let job = aws.one(&api, &continuation(3, 20)).await;

    assert_eq!(job.action, Action::Finished, "{job:?}");
    let published = aws.published();
    assert_eq!(published.len(), 1);
    assert_eq!(published[0]["outcome"], "SUCCEEDED");
    assert_eq!(published[0]["detail"], "recorded earlier");
}

#[tokio::test(start_paused = true)]
async fn an_oversized_job_message_is_truncated_recorded_and_notified_once() {
    // 300 KB of message: over SNS's 256 KiB. Before, the publish was refused after the
    // notification was claimed: the event went to the failure queue, then "already
    // notified", and nobody heard of the job.
    let message = format!(
        "{}\n\"{}\"",
        "row 1 loaded; ".repeat(20_000),
        "\u{1}".repeat(1_000)
    );
    let api = InMemoryJobApi::new();
    api.script(
        "job-1",
        [Ok(JobStatus::Succeeded {
            message: Some(message.clone()),
        })],
    );
    let recorded = Arc::new(Mutex::new(Vec::<String>::new()));
    let kept = recorded.clone();
    let outcome_recorded = mock!(aws_sdk_dynamodb::Client::update_item)
        .match_requests(move |r| {
            let matched = is_update(r, OUTCOME) && value(r, ":outcome") == Some("SUCCEEDED");
            if matched {
                kept.lock()
                    .unwrap()
                    .push(value(r, ":detail").unwrap().to_owned());
            }
            matched
        })
        .then_output(|| UpdateItemOutput::builder().build());
    let aws = Aws::with(vec![
        claim_ok(),
        update_ok(STARTED),
        outcome_recorded,
        update_ok(NOTIFY),
        update_ok(NOTIFIED),
    ]);

    let job = aws
        .one_within(
            &api,
            &s3_put("reports/2026/11/21/sales.csv"),
            Duration::from_secs(30),
        )
        .await;

    assert_eq!(job.action, Action::Finished);
    let published = aws.published();
    assert_eq!(published.len(), 1, "notified once");
    assert_eq!(published[0]["outcome"], "SUCCEEDED");
    let detail = published[0]["detail"].as_str().unwrap();
    assert!(
        detail.len() <= crate::table::MAX_DETAIL_BYTES,
        "{}",
        detail.len()
    );
    assert!(
        detail.ends_with(&format!(" … [truncated: {} bytes in all]", message.len())),
        "{}",
        &detail[detail.len() - 60..]
    );
    assert!(message.starts_with(detail.split(" … [truncated").next().unwrap()));
    assert_eq!(
        *recorded.lock().unwrap(),
        [detail.to_owned()],
        "the item keeps the same text"
    );
}

#[tokio::test(start_paused = true)]
async fn a_notification_at_every_bound_fits_one_sns_message() {
    // The worst case for size: every character of the detail and the key escaped in
    // both JSON layers (control characters become \u00XX, then \\u00XX).
    let key = format!("reports/{}", "\u{1}".repeat(1_016));
    let n = Notification {
        job_id: Some("\u{1}".repeat(crate::job_api::MAX_JOB_ID_BYTES)),
        source: JobSource {
            bucket: "reports-bucket".to_owned(),
            key: key.clone(),
            etag: Some("\u{1}".repeat(64)),
            sequencer: Some("0".repeat(64)),
            version_id: Some("\u{1}".repeat(1_024)),
            uri: format!("s3://reports-bucket/{key}"),
        },
        source_id: "s".repeat(64),
        outcome: "SUCCEEDED".to_owned(),
        detail: crate::table::truncate_detail(
            "\u{1}".repeat(1 << 20),
            crate::table::MAX_DETAIL_BYTES,
        ),
        duration_ms: u64::MAX,
        generations: u32::MAX,
        started_at_ms: u64::MAX,
        finished_at_ms: u64::MAX,
    };
    let json = serde_json::to_string(&n).unwrap();
    let text = crate::outcome_text::email_text(&n, "jobs-table");
    let message = crate::outcome_text::per_protocol_message(&json, &text).unwrap();
    let size = message.len() + crate::outcome_text::subject(&n).len();
    assert!(size <= SNS_MAX_MESSAGE_BYTES, "{size} bytes");
}

#[tokio::test(start_paused = true)]
async fn rejected_start_is_recorded_as_failed_and_notified_without_a_job_id() {
    let api = InMemoryJobApi::new();
    api.fail_starts([ApiError::Rejected {
        operation: "start job",
        status: 422,
        body: "not a report".to_owned(),
    }]);
    let outcome_from_starting = mock!(aws_sdk_dynamodb::Client::update_item)
        .match_requests(|r| {
            is_update(r, OUTCOME)
                && value(r, ":from") == Some("STARTING")
                && r.condition_expression() == Some("#state = :from")
        })
        .then_output(|| UpdateItemOutput::builder().build());
    let aws = Aws::with(vec![
        claim_ok(),
        outcome_from_starting,
        update_ok(NOTIFY),
        update_ok(NOTIFIED),
    ]);

    let job = aws
        .one_within(
            &api,
            &s3_put("reports/2026/11/21/sales.csv"),
            Duration::from_secs(30),
        )
        .await;

    assert_eq!(job.action, Action::Finished);
    let published = aws.published();
    assert_eq!(published.len(), 1);
    assert_eq!(published[0]["outcome"], "FAILED");
    assert_eq!(published[0]["job_id"], Value::Null);
    assert!(
        published[0]["detail"]
            .as_str()
            .unwrap()
            .contains("HTTP 422"),
        "{}",
        published[0]
    );
}

#[tokio::test(start_paused = true)]
async fn start_failing_transiently_past_the_margin_is_a_retryable_error() {
    let api = InMemoryJobApi::new();
    api.fail_starts((0..1000).map(|_| ApiError::Transient {
        operation: "start job",
        detail: "HTTP 503".to_owned(),
    }));
    let aws = Aws::with(vec![claim_ok(), update_ok(STARTED)]);

    let err = aws
        .handle(
            &api,
            &s3_put("reports/2026/11/21/sales.csv"),
            Duration::from_secs(10),
        )
        .await
        .unwrap_err();

    assert!(err.is_retryable(), "{err}");
    assert_eq!(FunctionError::from(err).error_type, "Retryable.JobStart");
    assert!(api.starts().len() > 1, "retried within the invocation");
    assert_eq!(aws.dynamodb[1].num_calls(), 0, "no job recorded");
}

#[tokio::test(start_paused = true)]
async fn non_reports_are_skipped_without_touching_the_table() {
    let api = InMemoryJobApi::new();
    let aws = Aws::with(vec![claim_ok()]);
    let mut removed = s3_put("reports/old.csv");
    removed["Records"][0]["eventName"] = json!("ObjectRemoved:Delete");
    let test_event = json!({"Service": "Amazon S3", "Event": "s3:TestEvent", "Time": "2026-11-21T06:00:00.000Z", "Bucket": "reports-bucket", "RequestId": "5582815E1AEA5ADF", "HostId": "8cLeGAmw098X5cv4Zkwcmo8vvZa3eH3eKxsPzbB9wrR+YstdA6Knx4Ip8EXAMPLE"});

    for (event, why) in [
        (s3_put("exports/sales.csv"), "outside REPORT_PREFIX"),
        (s3_put("reports/2026/"), "folder marker"),
        (removed, "not an ObjectCreated event"),
        (test_event, "s3:TestEvent"),
    ] {
        let job = aws.one_within(&api, &event, Duration::from_secs(30)).await;
        assert_eq!(job.action, Action::Skipped);
        assert_eq!(job.detail.as_deref(), Some(why));
    }
    assert_eq!(num_calls(&aws.dynamodb), 0);
    assert!(api.starts().is_empty());
}

#[tokio::test(start_paused = true)]
async fn unreadable_event_is_a_permanent_error() {
    let api = InMemoryJobApi::new();
    let aws = Aws::with(vec![]);
    let err = aws
        .handle(&api, &json!({"detail": "?"}), Duration::from_secs(30))
        .await
        .unwrap_err();
    assert!(!err.is_retryable());
    assert_eq!(
        FunctionError::from(err).error_type,
        "Permanent.InvalidEvent"
    );
}

#[tokio::test(start_paused = true)]
async fn a_notification_naming_another_bucket_starts_no_job_and_is_refused() {
    let api = InMemoryJobApi::new();
    let aws = Aws::with(vec![claim_ok()]);
    let forged: Value = serde_json::from_str(
        &s3_put("reports/2026/11/21/sales.csv")
            .to_string()
            .replace("reports-bucket", "someone-elses-bucket"),
    )
    .unwrap();
    let err = aws
        .handle(&api, &forged, Duration::from_secs(30))
        .await
        .unwrap_err();
    assert!(!err.is_retryable());
    assert!(err.to_string().contains("someone-elses-bucket"), "{err}");
    assert_eq!(
        FunctionError::from(err).error_type,
        "Permanent.ForeignBucket"
    );
    assert_eq!(num_calls(&aws.dynamodb), 0);
    assert!(api.starts().is_empty());
}

// --- continue ------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn next_generation_claims_its_turn_and_reports_generations_used() {
    let api = InMemoryJobApi::new();
    api.script("job-1", [running(), succeeded()]);
    let aws = Aws::with(vec![
        turn_claimed(2),
        outcome_ok(JobState::Succeeded),
        update_ok(NOTIFY),
        update_ok(NOTIFIED),
    ]);

    let job = aws.one(&api, &continuation(2, 0)).await;

    assert_eq!(job.action, Action::Finished);
    assert_eq!(job.generation, Some(2));
    let published = aws.published();
    assert_eq!(published.len(), 1);
    assert_eq!(published[0]["generations"], 3);
    assert_eq!(published[0]["started_at_ms"], 1_700_000_001_000u64);
    assert_eq!(published[0]["duration_ms"], NOW - 1_700_000_001_000);
}

#[tokio::test(start_paused = true)]
async fn duplicate_invocation_of_a_generation_loses_the_claim_and_exits_quietly() {
    let api = InMemoryJobApi::new();
    api.script("job-1", [running()]);
    let aws = Aws::with(vec![
        update_fails(TURN),
        stored_turn(JobState::Running, 1, OTHER),
    ]);

    let job = aws.one(&api, &continuation(1, 1)).await;

    assert_eq!(job.action, Action::Duplicate);
    assert_eq!(api.status_calls(), 0);
    assert!(aws.invoked().is_empty() && aws.published().is_empty());
}

#[tokio::test(start_paused = true)]
async fn retry_of_the_same_invocation_resumes_its_own_turn() {
    let api = InMemoryJobApi::new();
    api.script("job-1", [running()]);
    let aws = Aws::with(vec![
        update_fails(TURN),
        stored_turn(JobState::Running, 1, ME),
    ]);

    let job = aws
        .one_within(&api, &continuation(1, 1), Duration::from_secs(5))
        .await;

    assert_eq!(job.action, Action::HandedOff);
    assert!(api.status_calls() > 0);
    assert_eq!(aws.invoked()[0]["generation"], 2);
    assert_eq!(aws.invoked()[0]["budget_remaining"], 0);
}

#[tokio::test(start_paused = true)]
async fn last_generation_still_running_ends_with_budget_exhausted_once() {
    let api = InMemoryJobApi::new();
    api.script("job-1", [running()]);
    let aws = Aws::with(vec![
        turn_claimed(2),
        outcome_ok(JobState::BudgetExhausted),
        update_ok(NOTIFY),
        update_ok(NOTIFIED),
    ]);

    let job = aws
        .one_within(&api, &continuation(2, 0), Duration::from_secs(5))
        .await;

    assert_eq!(job.action, Action::Finished);
    assert!(aws.invoked().is_empty(), "no generation past the budget");
    let published = aws.published();
    assert_eq!(published.len(), 1);
    assert_eq!(published[0]["outcome"], "BUDGET_EXHAUSTED");
    assert_eq!(published[0]["generations"], 3);
}

#[tokio::test(start_paused = true)]
async fn job_unknown_to_the_api_is_a_failure_outcome() {
    let api = InMemoryJobApi::new(); // knows no job
    let aws = Aws::with(vec![
        turn_claimed(1),
        outcome_ok(JobState::Failed),
        update_ok(NOTIFY),
        update_ok(NOTIFIED),
    ]);

    let job = aws.one(&api, &continuation(1, 1)).await;

    assert_eq!(job.action, Action::Finished);
    let published = aws.published();
    assert_eq!(published[0]["outcome"], "FAILED");
    assert!(
        published[0]["detail"].as_str().unwrap().contains("404"),
        "{}",
        published[0]
    );
}

#[tokio::test(start_paused = true)]
async fn failed_job_is_a_failure_outcome_with_the_api_message() {
    let api = InMemoryJobApi::new();
    api.script(
        "job-1",
        [Ok(JobStatus::Failed {
            message: Some("column 7 is not a date".to_owned()),
        })],
    );
    let aws = Aws::with(vec![
        turn_claimed(1),
        outcome_ok(JobState::Failed),
        update_ok(NOTIFY),
        update_ok(NOTIFIED),
    ]);

    aws.handle(&api, &continuation(1, 1), Duration::from_secs(10))
        .await
        .unwrap();

    assert_eq!(aws.published()[0]["detail"], "column 7 is not a date");
}

#[tokio::test(start_paused = true)]
async fn transient_status_errors_are_retried_and_do_not_end_the_job() {
    let api = InMemoryJobApi::new();
    let flaky = || {
        Err(ApiError::Transient {
            operation: "get job status",
            detail: "HTTP 502".to_owned(),
        })
    };
    api.script("job-1", [flaky(), flaky(), succeeded()]);
    let aws = Aws::with(finishing_turn(update_ok(NOTIFIED)));

    let job = aws.one(&api, &continuation(1, 1)).await;

    assert_eq!(job.action, Action::Finished);
    assert_eq!(api.status_calls(), 3);
    assert_eq!(aws.published()[0]["outcome"], "SUCCEEDED");
}

#[tokio::test(start_paused = true)]
async fn api_down_for_a_whole_generation_hands_over_instead_of_failing() {
    let api = InMemoryJobApi::new();
    api.script(
        "job-1",
        [Err(ApiError::Transient {
            operation: "get job status",
            detail: "connection refused".to_owned(),
        })],
    );
    let aws = Aws::with(vec![turn_claimed(1)]);

    let job = aws.one(&api, &continuation(1, 1)).await;

    assert_eq!(job.action, Action::HandedOff);
    assert!(aws.published().is_empty());
}

#[tokio::test(start_paused = true)]
async fn continuation_for_an_unknown_item_is_a_permanent_error() {
    let api = InMemoryJobApi::new();
    let aws = Aws::with(vec![
        update_fails(TURN),
        mock!(aws_sdk_dynamodb::Client::get_item).then_output(|| GetItemOutput::builder().build()),
    ]);
    let err = aws
        .handle(&api, &continuation(1, 1), Duration::from_secs(10))
        .await
        .unwrap_err();
    assert_eq!(
        FunctionError::from(err).error_type,
        "Permanent.UnknownSource"
    );
}

#[tokio::test(start_paused = true)]
async fn failed_or_unanswered_hand_over_is_a_retryable_error() {
    for silent in [false, true] {
        let api = InMemoryJobApi::new();
        api.script("job-1", [running()]);
        let mut aws = Aws::with(vec![turn_claimed(1)]);
        aws.silent_lambda = silent;
        aws.lambda = vec![
            mock!(aws_sdk_lambda::Client::invoke)
                .sequence()
                .http_status(503, None)
                .repeatedly()
                .build(),
        ];

        let err = aws
            .handle(&api, &continuation(1, 1), Duration::from_secs(5))
            .await
            .unwrap_err();

        assert!(err.is_retryable(), "{err}");
        if silent {
            // Cut off at the deadline, not left hanging until the runtime kills it.
            assert!(err.to_string().ends_with("failed: TimeoutError"), "{err}");
        } else {
            assert!(aws.lambda[0].num_calls() > 1, "retried before giving up");
        }
        assert_eq!(FunctionError::from(err).error_type, "Retryable.HandOff");
    }
}

// --- finish --------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn stale_generation_records_nothing_once_the_turn_moved_on() {
    let api = InMemoryJobApi::new();
    api.script("job-1", [succeeded()]);
    let aws = Aws::with(vec![
        turn_claimed(1),
        update_fails(OUTCOME),
        stored_turn(JobState::Running, 2, OTHER),
    ]);

    let job = aws.one(&api, &continuation(1, 1)).await;

    assert_eq!(job.action, Action::Superseded);
    assert!(aws.published().is_empty());
}

#[tokio::test(start_paused = true)]
async fn retried_final_step_does_not_notify_twice() {
    // The first attempt recorded SUCCEEDED and published; a retry (same request id)
    // finds its own recorded outcome and a notification already sent.
    let api = InMemoryJobApi::new();
    let aws = Aws::with(retried_final_step(vec![update_fails(NOTIFY)]));

    let job = aws.one(&api, &continuation(1, 1)).await;

    assert_eq!(job.action, Action::AlreadyNotified);
    assert!(aws.published().is_empty());
    assert_eq!(api.status_calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn retried_final_step_publishes_if_the_first_attempt_did_not() {
    let api = InMemoryJobApi::new();
    let aws = Aws::with(retried_final_step(vec![
        update_ok(NOTIFY),
        update_ok(NOTIFIED),
    ]));

    let job = aws.one(&api, &continuation(1, 1)).await;

    assert_eq!(job.action, Action::Finished);
    let published = aws.published();
    assert_eq!(published.len(), 1);
    assert_eq!(published[0]["outcome"], "SUCCEEDED");
    assert_eq!(published[0]["detail"], "recorded earlier");
    assert_eq!(published[0]["generations"], 2);
    assert_eq!(published[0]["duration_ms"], 30_000);
}

#[tokio::test(start_paused = true)]
async fn failed_or_unanswered_publish_is_retryable_and_leaves_the_notification_unmarked() {
    for silent in [false, true] {
        let api = InMemoryJobApi::new();
        api.script("job-1", [succeeded()]);
        let mut aws = Aws::with(vec![
            turn_claimed(1),
            outcome_ok(JobState::Succeeded),
            update_ok(NOTIFY),
            update_ok(NOTIFIED),
        ]);
        aws.silent_sns = silent;
        aws.sns = vec![
            mock!(aws_sdk_sns::Client::publish)
                .sequence()
                .http_status(500, None)
                .repeatedly()
                .build(),
        ];

        let err = aws
            .handle(&api, &continuation(1, 1), Duration::from_secs(10))
            .await
            .unwrap_err();

        if silent {
            assert!(err.to_string().ends_with("failed: TimeoutError"), "{err}");
        }
        assert_eq!(FunctionError::from(err).error_type, "Retryable.Notify");
        assert_eq!(aws.dynamodb[3].num_calls(), 0, "notified_at not set");
    }
}

fn notified_fails_repeatedly() -> Rule {
    mock!(aws_sdk_dynamodb::Client::update_item)
        .match_requests(|r| is_update(r, NOTIFIED))
        .sequence()
        .http_status(500, None)
        .repeatedly()
        .build()
}

#[tokio::test(start_paused = true)]
async fn published_but_unrecorded_notification_is_handed_to_a_record_invocation() {
    // Publishing worked; recording notified_at keeps failing. An error would make Lambda
    // retry, and the retry (same claim) would publish again: the invocation ends well,
    // and hands what only it knows (who published, the message id) to a fresh one.
    let api = InMemoryJobApi::new();
    api.script("job-1", [succeeded()]);
    let aws = Aws::with(finishing_turn(notified_fails_repeatedly()));

    let job = aws.one(&api, &continuation(1, 1)).await;

    assert_eq!(job.action, Action::RecordHandedOff);
    assert_eq!(job.detail.as_deref(), Some("SUCCEEDED"));
    assert_eq!(aws.published().len(), 1);
    assert!(aws.dynamodb[3].num_calls() > 1, "recording was retried");
    let invoked = aws.invoked();
    assert_eq!(invoked.len(), 1, "{invoked:?}");
    assert_eq!(
        invoked[0],
        json!({"kind": "job-poller/record-notification", "source_id": SOURCE_ID,
               "notify_owner": ME, "message_id": "msg-1", "notified_at_ms": NOW,
               "outcome": "SUCCEEDED"})
    );
}

#[tokio::test(start_paused = true)]
async fn published_notification_neither_recorded_nor_handed_over_is_not_retried() {
    let api = InMemoryJobApi::new();
    api.script("job-1", [succeeded()]);
    let mut aws = Aws::with(finishing_turn(notified_fails_repeatedly()));
    aws.silent_lambda = true;

    let job = aws.one(&api, &continuation(1, 1)).await;

    assert_eq!(job.action, Action::NotifiedUnrecorded);
    assert_eq!(aws.published().len(), 1);
}

fn record_event() -> Value {
    serde_json::to_value(NotificationRecord::new(
        SOURCE_ID,
        OTHER,
        "msg-7",
        1_700_000_000_000,
        "FAILED",
    ))
    .unwrap()
}

#[tokio::test(start_paused = true)]
async fn record_invocation_records_the_publishers_notification_without_publishing() {
    let api = InMemoryJobApi::new();
    let aws = Aws::with(vec![
        mock!(aws_sdk_dynamodb::Client::update_item)
            .match_requests(|r| {
                is_update(r, NOTIFIED)
                    && value(r, ":me") == Some(OTHER)
                    && value(r, ":message") == Some("msg-7")
                    && r.expression_attribute_values()
                        .and_then(|v| v.get(":now"))
                        .and_then(|v| v.as_n().ok())
                        .is_some_and(|n| n == "1700000000000")
            })
            .then_output(|| UpdateItemOutput::builder().build()),
    ]);

    let job = aws.one(&api, &record_event()).await;

    assert_eq!(job.action, Action::NotificationRecorded);
    assert_eq!(job.detail.as_deref(), Some("FAILED"));
    assert_eq!(aws.dynamodb[0].num_calls(), 1);
    assert!(aws.published().is_empty());
    assert!(aws.invoked().is_empty());
}

#[tokio::test(start_paused = true)]
async fn record_invocation_for_a_claim_not_the_publishers_records_nothing() {
    let api = InMemoryJobApi::new();
    let aws = Aws::with(vec![update_fails(NOTIFIED)]);

    let job = aws.one(&api, &record_event()).await;

    assert_eq!(job.action, Action::Superseded);
    assert!(aws.published().is_empty());
}

#[tokio::test(start_paused = true)]
async fn record_invocation_that_cannot_write_fails_retryably() {
    let api = InMemoryJobApi::new();
    let aws = Aws::with(vec![notified_fails_repeatedly()]);

    let err = aws
        .handle(&api, &record_event(), Duration::from_secs(5))
        .await
        .unwrap_err();

    assert_eq!(FunctionError::from(err).error_type, "Retryable.JobsTable");
    assert!(
        aws.dynamodb[0].num_calls() > 1,
        "retried within the invocation"
    );
    assert!(aws.published().is_empty());
}

#[tokio::test(start_paused = true)]
async fn too_little_time_left_to_publish_defers_the_notification_unpublished() {
    // The retry of a final step finds its outcome recorded, but only 0.9 s of work time
    // is left: less than a publish may need, so it publishes nothing and asks for a retry.
    let api = InMemoryJobApi::new();
    let aws = Aws::with(retried_final_step(vec![
        update_ok(NOTIFY),
        update_ok(NOTIFIED),
    ]));

    let err = aws
        .handle(&api, &continuation(1, 1), Duration::from_millis(1200))
        .await
        .unwrap_err();

    assert!(err.is_retryable(), "{err}");
    assert!(err.to_string().contains("was not published"), "{err}");
    assert_eq!(FunctionError::from(err).error_type, "Retryable.Notify");
    assert!(aws.published().is_empty());
    assert_eq!(aws.dynamodb[3].num_calls(), 0, "notified_at not set");
}
