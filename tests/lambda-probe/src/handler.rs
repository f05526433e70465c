//! The probe's decisions. The shape of the event picks the behaviour:
//!
//! | event | behaviour |
//! |---|---|
//! | SQS / Kinesis / DynamoDB Streams batch | one `PROBE-RECORD` line per record; a record whose content contains `probe-fail-once` is reported in `batchItemFailures` on its first delivery, `probe-fail-always` on every delivery |
//! | S3 notification, SNS message | one `PROBE-S3` / `PROBE-SNS` line per record |
//! | API Gateway REST proxy request | `statusCode` from the `status` query parameter (default 200), after sleeping `sleep_ms` if given; JSON body describing the request |
//! | `respond_bytes`, `allocate_mb`, `tmp`, `chain` | Lambda limits, see `limits.rs` |
//! | anything else (direct invoke) | `{"sleep_ms": n}` sleeps, `{"log": "m"}` writes `m` to stdout and stderr, `{"exit": code}` exits the process, `{"fail": "msg"}` fails with error type `ProbeFailure`; otherwise echoes the event with the invocation context |

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use aws_lambda_events::apigw::{ApiGatewayProxyRequest, ApiGatewayProxyResponse};
use aws_lambda_events::dynamodb::Event as DynamoDbEvent;
use aws_lambda_events::encodings::Body;
use aws_lambda_events::kinesis::KinesisEvent;
use aws_lambda_events::s3::S3Event;
use aws_lambda_events::sns::SnsEvent;
use aws_lambda_events::sqs::SqsEvent;
use aws_lambda_events::streams::{
    DynamoDbBatchItemFailure, DynamoDbEventResponse, KinesisBatchItemFailure, KinesisEventResponse,
    SqsBatchItemFailure, SqsEventResponse,
};
use lambda_runtime::{Context, Diagnostic, LambdaEvent};
use serde_json::{Value, json};

/// Environment variables the echo reports, so tests can check what the runtime was given.
const REPORTED_ENV: &[&str] = &[
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_LOG_GROUP_NAME",
    "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_REGION",
    "AWS_ENDPOINT_URL",
    "LAMBDA_TASK_ROOT",
    "_HANDLER",
    "PROBE_SETTING",
];

#[derive(Debug)]
pub enum ProbeError {
    /// The caller asked for a failure with `{"fail": "<message>"}`.
    Requested(String),
    /// A record batch did not have the shape its `eventSource` promises.
    MalformedEvent {
        source: &'static str,
        reason: String,
    },
}

impl From<ProbeError> for Diagnostic {
    fn from(error: ProbeError) -> Self {
        match error {
            ProbeError::Requested(message) => Diagnostic {
                error_type: "ProbeFailure".into(),
                error_message: message,
            },
            ProbeError::MalformedEvent { source, reason } => Diagnostic {
                error_type: "MalformedEvent".into(),
                error_message: format!("{source} event: {reason}"),
            },
        }
    }
}

pub async fn handle(event: LambdaEvent<Value>) -> Result<Value, ProbeError> {
    let (payload, context) = event.into_parts();
    println!(
        "PROBE-INVOKE request_id={} event={}",
        context.request_id,
        shorten(&payload.to_string(), 400)
    );
    match record_source(&payload).as_deref() {
        Some("aws:sqs") => sqs_batch(payload),
        Some("aws:kinesis") => kinesis_batch(payload),
        Some("aws:dynamodb") => dynamodb_batch(payload),
        Some("aws:s3") => Ok(s3_notification(payload)),
        Some("aws:sns") => Ok(sns_message(payload)),
        _ if payload.get("httpMethod").is_some() => Ok(api_gateway(payload).await),
        _ => direct(payload, &context).await,
    }
}

fn record_source(event: &Value) -> Option<String> {
    let first = event.get("Records")?.get(0)?;
    let source = first
        .get("eventSource")
        .or_else(|| first.get("EventSource"))?;
    source.as_str().map(str::to_owned)
}

fn parse<T: serde::de::DeserializeOwned>(
    source: &'static str,
    event: Value,
) -> Result<T, ProbeError> {
    serde_json::from_value(event).map_err(|e| ProbeError::MalformedEvent {
        source,
        reason: e.to_string(),
    })
}

/// How often each record has been seen by this process, keyed by source and record id.
fn deliveries() -> &'static Mutex<HashMap<String, u32>> {
    static SEEN: OnceLock<Mutex<HashMap<String, u32>>> = OnceLock::new();
    SEEN.get_or_init(Default::default)
}

/// Logs the record and decides whether to report it as failed.
/// `delivery` is the source's own count when it has one (SQS receive count), else this process's.
fn record_fails(source: &str, id: &str, content: &str, delivery: Option<u32>) -> bool {
    let seen = {
        let mut map = deliveries()
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let count = map.entry(format!("{source}/{id}")).or_insert(0);
        *count += 1;
        *count
    };
    let delivery = delivery.unwrap_or(seen);
    let fails = content.contains("probe-fail-always")
        || (content.contains("probe-fail-once") && delivery == 1);
    println!(
        "PROBE-RECORD source={source} id={id} delivery={delivery} outcome={} content={}",
        if fails { "failed" } else { "ok" },
        shorten(content, 400)
    );
    fails
}

fn sqs_batch(event: Value) -> Result<Value, ProbeError> {
    let batch: SqsEvent = parse("sqs", event)?;
    let mut response = SqsEventResponse::default();
    for message in batch.records {
        let id = message.message_id.unwrap_or_default();
        let receive_count = message
            .attributes
            .get("ApproximateReceiveCount")
            .and_then(|count| count.parse().ok());
        if record_fails(
            "sqs",
            &id,
            message.body.as_deref().unwrap_or_default(),
            receive_count,
        ) {
            let mut failure = SqsBatchItemFailure::default();
            failure.item_identifier = Some(id);
            response.batch_item_failures.push(failure);
        }
    }
    Ok(serde_json::to_value(response).unwrap_or_default())
}

fn kinesis_batch(event: Value) -> Result<Value, ProbeError> {
    let batch: KinesisEvent = parse("kinesis", event)?;
    let mut response = KinesisEventResponse::default();
    for record in batch.records {
        let sequence_number = record.kinesis.sequence_number;
        let data = String::from_utf8_lossy(&record.kinesis.data.0).into_owned();
        if record_fails("kinesis", &sequence_number, &data, None) {
            let mut failure = KinesisBatchItemFailure::default();
            failure.item_identifier = Some(sequence_number);
            response.batch_item_failures.push(failure);
        }
    }
    Ok(serde_json::to_value(response).unwrap_or_default())
}

fn dynamodb_batch(event: Value) -> Result<Value, ProbeError> {
    let batch: DynamoDbEvent = parse("dynamodb", event)?;
    let mut response = DynamoDbEventResponse::default();
    for record in batch.records {
        let sequence_number = record.change.sequence_number.unwrap_or_default();
        let image = serde_json::to_string(&record.change.new_image).unwrap_or_default();
        let content = format!("{} {image}", record.event_name);
        if record_fails("dynamodb", &sequence_number, &content, None) {
            let mut failure = DynamoDbBatchItemFailure::default();
            failure.item_identifier = Some(sequence_number);
            response.batch_item_failures.push(failure);
        }
    }
    Ok(serde_json::to_value(response).unwrap_or_default())
}

fn s3_notification(event: Value) -> Value {
    match serde_json::from_value::<S3Event>(event.clone()) {
        Ok(notification) => {
            for record in &notification.records {
                println!(
                    "PROBE-S3 event={} bucket={} key={}",
                    record.event_name.as_deref().unwrap_or_default(),
                    record.s3.bucket.name.as_deref().unwrap_or_default(),
                    record.s3.object.key.as_deref().unwrap_or_default()
                );
            }
            json!({ "records": notification.records.len() })
        }
        Err(e) => {
            println!(
                "PROBE-S3 unparsed ({e}) raw={}",
                shorten(&event.to_string(), 400)
            );
            json!({ "records": 0 })
        }
    }
}

fn sns_message(event: Value) -> Value {
    match serde_json::from_value::<SnsEvent>(event.clone()) {
        Ok(notification) => {
            for record in &notification.records {
                println!(
                    "PROBE-SNS topic={} message={}",
                    record.sns.topic_arn,
                    shorten(&record.sns.message, 400)
                );
            }
            json!({ "records": notification.records.len() })
        }
        Err(e) => {
            println!(
                "PROBE-SNS unparsed ({e}) raw={}",
                shorten(&event.to_string(), 400)
            );
            json!({ "records": 0 })
        }
    }
}

async fn api_gateway(event: Value) -> Value {
    let request: ApiGatewayProxyRequest = match serde_json::from_value(event) {
        Ok(request) => request,
        Err(e) => return proxy_response(400, json!({ "error": e.to_string() })),
    };
    let status = request
        .query_string_parameters
        .first("status")
        .and_then(|status| status.parse().ok())
        .unwrap_or(200);
    if let Some(ms) = request
        .query_string_parameters
        .first("sleep_ms")
        .and_then(|ms| ms.parse().ok())
    {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    println!(
        "PROBE-HTTP method={} path={} status={status}",
        request.http_method,
        request.path.as_deref().unwrap_or_default()
    );
    proxy_response(
        status,
        json!({
            "method": request.http_method.as_str(),
            "path": request.path,
            "resource": request.resource,
            "pathParameters": request.path_parameters,
            "body": request.body,
        }),
    )
}

fn proxy_response(status: i64, body: Value) -> Value {
    let mut response = ApiGatewayProxyResponse::default();
    response.status_code = status;
    response.headers.insert(
        "content-type",
        "application/json".parse().expect("static header value"),
    );
    response.body = Some(Body::Text(body.to_string()));
    serde_json::to_value(response).unwrap_or_default()
}

async fn direct(payload: Value, context: &Context) -> Result<Value, ProbeError> {
    if let Some(n) = payload.get("respond_bytes").and_then(Value::as_u64) {
        return Ok(crate::limits::respond_bytes(n));
    }
    if let Some(mb) = payload.get("allocate_mb").and_then(Value::as_u64) {
        return Ok(crate::limits::allocate(mb));
    }
    if let Some(spec) = payload.get("tmp") {
        return Ok(crate::limits::tmp(spec).await);
    }
    if let Some(spec) = payload.get("chain") {
        return crate::limits::chain(spec, context.xray_trace_id.as_deref()).await;
    }
    if let Some(ms) = payload.get("sleep_ms").and_then(Value::as_u64) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if let Some(marker) = payload.get("log").and_then(Value::as_str) {
        println!("PROBE-LOG stdout {marker}");
        eprintln!("PROBE-LOG stderr {marker}");
    }
    if let Some(code) = payload.get("exit").and_then(Value::as_i64) {
        println!("PROBE-EXIT exiting with status {code}");
        std::process::exit(i32::try_from(code).unwrap_or(1));
    }
    if let Some(message) = payload.get("fail").and_then(Value::as_str) {
        println!("PROBE-FAIL {message}");
        return Err(ProbeError::Requested(message.to_owned()));
    }
    let env: serde_json::Map<String, Value> = REPORTED_ENV
        .iter()
        .filter_map(|name| {
            std::env::var(name)
                .ok()
                .map(|value| ((*name).to_owned(), Value::String(value)))
        })
        .collect();
    let localstack_vars: Vec<String> = std::env::vars()
        .map(|(name, _)| name)
        .filter(|name| name.starts_with("LOCALSTACK_"))
        .collect();
    Ok(json!({
        "echo": payload,
        "request_id": context.request_id,
        "invoked_function_arn": context.invoked_function_arn,
        "deadline_ms": context.deadline,
        "xray_trace_id": context.xray_trace_id,
        "pid": std::process::id(),
        "cwd": std::env::current_dir().map(|dir| dir.display().to_string()).unwrap_or_default(),
        "env": env,
        "localstack_vars": localstack_vars,
    }))
}

fn shorten(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}
