//! Unit-test plumbing: a [`Context`] whose clients answer from aws-smithy-mocks rules
//! (a call no rule matches fails the test), and the records AWS would hold.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use aws_config::SdkConfig;
use aws_sdk_lambda::operation::get_function_configuration::GetFunctionConfigurationOutput;
use aws_sdk_lambda::operation::invoke::{InvokeInput, InvokeOutput};
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::EnvironmentResponse;
use aws_sdk_sqs::operation::get_queue_attributes::GetQueueAttributesOutput;
use aws_sdk_sqs::operation::receive_message::{ReceiveMessageInput, ReceiveMessageOutput};
use aws_sdk_sqs::types::{Message, MessageSystemAttributeName, QueueAttributeName};
use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};
use serde_json::{Value, json};

use crate::aws::Clients;
use crate::context::Context;
use crate::stack::Stack;

/// Mock rules per service; services without rules refuse every call.
pub struct Rules<'a> {
    pub s3: Vec<&'a Rule>,
    pub sqs: Vec<&'a Rule>,
    pub lambda: Vec<&'a Rule>,
    pub streams: Vec<&'a Rule>,
    pub kinesis: Vec<&'a Rule>,
    pub logs: Vec<&'a Rule>,
    pub cloudwatch: Vec<&'a Rule>,
}

impl Rules<'_> {
    /// No rules yet: add each service's.
    pub fn none() -> Self {
        Rules {
            s3: Vec::new(),
            sqs: Vec::new(),
            lambda: Vec::new(),
            streams: Vec::new(),
            kinesis: Vec::new(),
            logs: Vec::new(),
            cloudwatch: Vec::new(),
        }
    }
}

pub const STACK: &[(&str, &str)] = &[
    ("AvroConverterFunctionName", "sluice-avro"),
    ("AvroConverterFailureQueueUrl", "http://sqs/avro-failures"),
    ("AvroRawBucketName", "raw"),
    ("CrashRouterFunctionName", "sluice-crash"),
    ("CrashNotificationDlqUrl", "http://sqs/crash-dlq"),
    (
        "CrashNotificationQueueUrl",
        "http://sqs/crash-notifications",
    ),
    ("CounterMapperFunctionName", "sluice-mapper"),
    ("CounterMapperFailureQueueUrl", "http://sqs/mapper-failures"),
    (
        "CounterUploadsDeliveryQueueUrl",
        "http://sqs/mapper-deliveries",
    ),
    ("CountersBucketName", "counters"),
    ("CounterAggregatorFunctionName", "sluice-aggregator"),
    (
        "CounterAggregatorFailureQueueUrl",
        "http://sqs/aggregator-failures",
    ),
    ("KinesisArchiverFunctionName", "sluice-archiver"),
    ("ArchiverFailureBucketName", "archiver-failures"),
    ("ArchiverFailureQueueUrl", "http://sqs/archiver-failures"),
    ("ArchiveBucketName", "archive"),
    ("EventStreamName", "events"),
    (
        "EventStreamArn",
        "arn:aws:kinesis:us-east-1:000000000000:stream/events",
    ),
    ("IngestApiFunctionName", "sluice-ingest"),
    ("JobPollerFunctionName", "sluice-jobs"),
    ("JobPollerFailureQueueUrl", "http://sqs/job-failures"),
    ("JobReportsBucketName", "reports"),
];

pub fn context(rules: Rules<'_>) -> Context {
    let config = SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .build();
    let mut clients = Clients::from_config(config, true);
    clients.s3 = mock_client!(aws_sdk_s3, RuleMode::MatchAny, rules.s3);
    clients.sqs = mock_client!(aws_sdk_sqs, RuleMode::MatchAny, rules.sqs);
    clients.lambda = mock_client!(aws_sdk_lambda, RuleMode::MatchAny, rules.lambda);
    clients.streams = mock_client!(aws_sdk_dynamodbstreams, RuleMode::MatchAny, rules.streams);
    clients.kinesis = mock_client!(aws_sdk_kinesis, RuleMode::MatchAny, rules.kinesis);
    clients.logs = mock_client!(aws_sdk_cloudwatchlogs, RuleMode::MatchAny, rules.logs);
    clients.cloudwatch = mock_client!(aws_sdk_cloudwatch, RuleMode::MatchAny, rules.cloudwatch);
    let outputs: BTreeMap<String, String> = STACK
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    Context {
        clients,
        stack: Stack::new("sluice", outputs),
        progress: false,
    }
}

/// `GetFunctionConfiguration` answering for any function, with `env`.
pub fn function_config(env: &[(&str, &str)]) -> Rule {
    let variables: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    mock!(aws_sdk_lambda::Client::get_function_configuration).then_output(move || {
        GetFunctionConfigurationOutput::builder()
            .timeout(30)
            .environment(
                EnvironmentResponse::builder()
                    .set_variables(Some(variables.clone()))
                    .build(),
            )
            .build()
    })
}

/// A queue holding messages: `ReceiveMessage` hands each out once (then nothing), and
/// `GetQueueAttributes` counts them.
pub fn queue(url: &'static str, bodies: Vec<String>) -> (Rule, Rule) {
    let pending = Arc::new(Mutex::new(
        bodies
            .into_iter()
            .enumerate()
            .map(|(i, body)| message(&format!("{url}#{i}"), &body))
            .collect::<Vec<_>>(),
    ));
    let count = pending.lock().unwrap().len();
    let attributes = mock!(aws_sdk_sqs::Client::get_queue_attributes)
        .match_requests(move |r| r.queue_url() == Some(url))
        .then_output(move || {
            GetQueueAttributesOutput::builder()
                .attributes(
                    QueueAttributeName::ApproximateNumberOfMessages,
                    count.to_string(),
                )
                .attributes(
                    QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
                    "0",
                )
                .build()
        });
    let receive = mock!(aws_sdk_sqs::Client::receive_message)
        .match_requests(move |r: &ReceiveMessageInput| r.queue_url() == Some(url))
        .then_compute_output(move |r| {
            let mut pending = pending.lock().unwrap();
            let n = (r.max_number_of_messages().unwrap_or(1) as usize).min(pending.len());
            ReceiveMessageOutput::builder()
                .set_messages(Some(pending.drain(..n).collect()))
                .build()
        });
    (attributes, receive)
}

pub fn message(id: &str, body: &str) -> Message {
    Message::builder()
        .message_id(id)
        .receipt_handle(format!("receipt-{id}"))
        .body(body)
        .attributes(MessageSystemAttributeName::SentTimestamp, "1790000000000")
        .attributes(MessageSystemAttributeName::ApproximateReceiveCount, "5")
        .build()
}

/// Every `Invoke`: (function, invocation type, event); answered by `answer(event)`.
#[derive(Clone, Default)]
pub struct Invocations(pub Arc<Mutex<Vec<(String, String, Value)>>>);

impl Invocations {
    pub fn all(&self) -> Vec<(String, String, Value)> {
        self.0.lock().unwrap().clone()
    }

    /// `Invoke` answering `answer(event)`: `Ok(response)` or `Err((errorType, message))`.
    pub fn rule(
        &self,
        answer: impl Fn(&Value) -> Result<Value, (String, String)> + Send + Sync + 'static,
    ) -> Rule {
        let calls = self.0.clone();
        mock!(aws_sdk_lambda::Client::invoke).then_compute_output(move |input: &InvokeInput| {
            let event: Value = serde_json::from_slice(input.payload().unwrap().as_ref()).unwrap();
            calls.lock().unwrap().push((
                input.function_name().unwrap_or_default().to_owned(),
                input
                    .invocation_type()
                    .map(|t| t.as_str().to_owned())
                    .unwrap_or_default(),
                event.clone(),
            ));
            match answer(&event) {
                Ok(response) => InvokeOutput::builder()
                    .status_code(200)
                    .payload(Blob::new(response.to_string()))
                    .build(),
                Err((error_type, message)) => InvokeOutput::builder()
                    .status_code(200)
                    .function_error("Unhandled")
                    .payload(Blob::new(
                        json!({"errorType": error_type, "errorMessage": message}).to_string(),
                    ))
                    .build(),
            }
        })
    }
}

/// An S3 put notification for `bucket`/`key`, as S3 sends it.
pub fn s3_event(bucket: &str, key: &str) -> Value {
    json!({"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
        "eventTime": "2026-11-22T10:00:00.000Z", "eventName": "ObjectCreated:Put",
        "s3": {"s3SchemaVersion": "1.0", "bucket": {"name": bucket, "arn": format!("arn:aws:s3:::{bucket}")},
               "object": {"key": key, "size": 10, "eTag": "abc", "sequencer": "0055AED6DCD90281E5"}}
    }]})
}

/// An async on-failure record for `payload` (AWS documentation's shape).
pub fn async_record(payload: Value, error_type: &str, message: &str) -> String {
    json!({
        "version": "1.0",
        "timestamp": "2026-11-22T10:00:00.000Z",
        "requestContext": {
            "requestId": "e4b46cbf-b738-xmpl-8880-a18cdf61200e",
            "functionArn": "arn:aws:lambda:us-east-1:000000000000:function:f:$LATEST",
            "condition": "RetriesExhausted",
            "approximateInvokeCount": 3
        },
        "requestPayload": payload,
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        "responsePayload": {"errorType": error_type, "errorMessage": message}
    })
    .to_string()
}
