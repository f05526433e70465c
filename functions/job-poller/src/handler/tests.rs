//! The poller's decisions, with DynamoDB, SNS and Lambda mocked (aws-smithy-mocks)
//! and the job API in memory. Time is tokio's paused clock: sleeps cost nothing.
//!
//! This file is the harness; the tests are beside their concern: [`start`],
//! [`follow`] (next generations and take-overs) and [`notify`].

mod follow;
mod notify;
mod start;

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
use sluice_lambda::metrics::Metrics;
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
    // As `serve` builds it: the runtime's deadline (`timeout` from now) less the answer
    // margin.
    Invocation {
        request_id: ME.to_owned(),
        function_arn: FUNCTION.to_owned(),
        deadline: Deadline::after(timeout).with_margin(RESPONSE_RESERVE),
        metrics: Metrics::new("sluice", "job-poller"),
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
