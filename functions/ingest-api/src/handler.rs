//! `POST /events`: decides the HTTP answer for one API Gateway proxy request.
//!
//! - `202 {"accepted": n}` only when every event was written to the stream;
//! - `503` with counts and the positions of the events not written after retries
//!   (the client resends those; nothing is ever reported accepted that was not written);
//! - `400`/`413`/`415` with a message naming the problem, before anything is written;
//! - `405` for any method other than POST.
//!
//! With an `Idempotency-Key` header (and `IDEMPOTENCY_TABLE` set), a request is done
//! once per key within `IDEMPOTENCY_WINDOW_SECONDS`: a resend gets the first answer
//! back (header `Idempotent-Replayed: true`) and writes nothing; `409` while the first
//! is still working, `422` for the same key with a different body.
//!
//! The one place where outcomes become statuses is [`Rejection::status`] and
//! [`Ingest::handle_request`].

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lambda_events::encodings::Body;
use aws_lambda_events::event::apigw::{ApiGatewayProxyRequest, ApiGatewayProxyResponse};
use http::header::{CONTENT_ENCODING, CONTENT_TYPE, HeaderMap, HeaderValue};
use serde_json::json;
use sha2::{Digest, Sha256};
use sluice_aws::idempotency::{Begin, IdempotencyStore};
use sluice_aws::kinesis::{OutgoingRecord, PutRecordsWriter, PutReport};
use sluice_aws::retry::{Backoff, Deadline};
use sluice_lambda::config::{ConfigError, Env};
use sluice_lambda::metrics::Metrics;
use sluice_lambda::{Function, FunctionError, Invocation};

use crate::body::{BodyError, BodyFormat, Position, decode_body, split_events};
use crate::record::{RecordError, RecordSettings, RequestFacts, build_records};

/// Lambda's limit on a synchronous request payload (6 MB, as Lambda counts it: 6 MiB).
pub const LAMBDA_SYNC_PAYLOAD_BYTES: usize = 6 * 1024 * 1024;
/// What the proxy event holds besides the body: API Gateway allows 10 KiB of headers, and
/// the event carries them twice (`headers`, `multiValueHeaders`), plus the request context.
pub const EVENT_ENVELOPE_RESERVE: usize = 24 * 1024;
/// Default `MAX_BODY_BYTES`, before and after gzip: the largest raw body whose event still
/// fits Lambda's payload limit. The stage declares every media type binary, so API Gateway
/// hands the body base64-encoded (4 bytes per 3): (6 MiB − 24 KiB) × 3/4 = 4,700,160 bytes.
/// A larger body never reaches the function (API Gateway answers 413 itself).
pub const DEFAULT_MAX_BODY_BYTES: usize =
    (LAMBDA_SYNC_PAYLOAD_BYTES - EVENT_ENVELOPE_RESERVE) / 4 * 3;

/// Default `MAX_EVENTS`: events accepted in one request. Each is one Kinesis record, and a
/// shard takes 1,000 records/s, so 10,000 is about the function's 10 s on one shard.
pub const DEFAULT_MAX_EVENTS: usize = 10_000;
/// The largest `MAX_EVENTS` allowed: a `503` lists every unwritten event's position (at most
/// 20 bytes each, `"array index 99999",`), so its body stays ~2 MB, well under Lambda's 6 MB
/// response limit — beyond it, a partial write could end in a bodiless 5xx instead.
pub const MAX_EVENTS_LIMIT: usize = 100_000;

/// Configuration, read once at cold start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestConfig {
    /// `STREAM_NAME` (required): stream name or ARN.
    pub stream: String,
    pub records: RecordSettings,
    /// `MAX_BODY_BYTES`: largest body accepted, as received and after inflating.
    pub max_body_bytes: usize,
    /// `MAX_EVENTS`: most events accepted in one request (1 – [`MAX_EVENTS_LIMIT`]).
    pub max_events: usize,
    /// `IDEMPOTENCY_TABLE` (optional): where `Idempotency-Key`s are kept; unset, the
    /// header is ignored.
    pub idempotency_table: Option<String>,
    /// `IDEMPOTENCY_WINDOW_SECONDS` (default 3600, 60–604800): how long a key is kept.
    pub idempotency_window: std::time::Duration,
}

/// The request header naming a request for idempotent resends.
pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";
/// Longest `Idempotency-Key` accepted.
pub const MAX_IDEMPOTENCY_KEY_BYTES: usize = 256;

impl IngestConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let received_at_field = env.string_or("RECEIVED_AT_FIELD", "received_at");
        let request_id_field = env.string_or("REQUEST_ID_FIELD", "request_id");
        if received_at_field == request_id_field {
            return Err(ConfigError::invalid(
                "REQUEST_ID_FIELD",
                &request_id_field,
                "must differ from RECEIVED_AT_FIELD",
            ));
        }
        Ok(IngestConfig {
            stream: env.required("STREAM_NAME")?,
            records: RecordSettings {
                partition_key_field: env.optional("PARTITION_KEY_FIELD"),
                received_at_field,
                request_id_field,
            },
            max_body_bytes: env.number_in(
                "MAX_BODY_BYTES",
                DEFAULT_MAX_BODY_BYTES,
                1..=64 * 1024 * 1024,
            )?,
            max_events: env.number_in("MAX_EVENTS", DEFAULT_MAX_EVENTS, 1..=MAX_EVENTS_LIMIT)?,
            idempotency_table: env.optional("IDEMPOTENCY_TABLE"),
            idempotency_window: std::time::Duration::from_secs(env.number_in(
                "IDEMPOTENCY_WINDOW_SECONDS",
                3600u64,
                60..=604_800,
            )?),
        })
    }
}

/// Why a request was refused before anything was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error(transparent)]
    Body(#[from] BodyError),
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error(
        "the request holds {count} events, over the limit of {limit} events per request (MAX_EVENTS); send them in smaller requests"
    )]
    TooManyEvents { count: usize, limit: usize },
}

impl Rejection {
    pub fn status(&self) -> u16 {
        match self {
            Rejection::Body(e) => e.status(),
            Rejection::Record(e) => e.status(),
            Rejection::TooManyEvents { .. } => 413,
        }
    }
}

/// Time kept back from the invocation deadline to answer API Gateway.
const ANSWER_MARGIN: Duration = Duration::from_millis(500);
/// No PutRecords call starts with less than this left: a call cut off at the deadline
/// may have been written, and the client would then resend events it was told failed.
const CALL_RESERVE: Duration = Duration::from_secs(1);

impl Function for Ingest {
    type Event = ApiGatewayProxyRequest;
    type Response = ApiGatewayProxyResponse;
    type InitError = ConfigError;

    fn answer_margin(&self) -> Duration {
        ANSWER_MARGIN
    }

    async fn cold_start() -> Result<Self, ConfigError> {
        let config = IngestConfig::from_env(&Env::from_process())?;
        let sdk = sluice_aws::clients::load_sdk_config().await;
        // The writer makes every attempt itself (resending only failed entries, within the
        // deadline and the call reserve); SDK-level retries would start calls it cannot see.
        let kinesis = aws_sdk_kinesis::Client::from_conf(
            aws_sdk_kinesis::config::Builder::from(&sdk)
                .retry_config(aws_sdk_kinesis::config::retry::RetryConfig::disabled())
                .build(),
        );
        let writer = PutRecordsWriter::new(kinesis, config.stream.clone(), Backoff::default())
            .with_call_reserve(CALL_RESERVE);
        let idempotency = config.idempotency_table.clone().map(|table| {
            IdempotencyStore::new(
                sluice_aws::clients::dynamodb(&sdk),
                table,
                config.idempotency_window,
            )
        });
        let ingest = Ingest::new(config, writer);
        Ok(match idempotency {
            Some(store) => ingest.with_idempotency(store),
            None => ingest,
        })
    }

    async fn handle(
        &self,
        request: ApiGatewayProxyRequest,
        invocation: &mut Invocation,
    ) -> Result<ApiGatewayProxyResponse, FunctionError> {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        let facts = request_facts(&request, &invocation.request_id, now_ms);
        Ok(self
            .handle_request(
                &request,
                &facts,
                &invocation.deadline,
                &mut invocation.metrics,
            )
            .await)
    }
}

/// The function: configuration, the stream writer and the idempotency store.
pub struct Ingest {
    config: IngestConfig,
    writer: PutRecordsWriter,
    idempotency: Option<IdempotencyStore>,
}

impl Ingest {
    pub fn new(config: IngestConfig, writer: PutRecordsWriter) -> Self {
        Ingest {
            config,
            writer,
            idempotency: None,
        }
    }

    /// Keeps `Idempotency-Key`s in `store`.
    pub fn with_idempotency(mut self, store: IdempotencyStore) -> Self {
        self.idempotency = Some(store);
        self
    }

    /// Answers one request; every outcome is an HTTP response (a handler error would
    /// reach the client as an opaque `502`).
    pub async fn handle_request(
        &self,
        request: &ApiGatewayProxyRequest,
        facts: &RequestFacts,
        deadline: &Deadline,
        metrics: &mut Metrics,
    ) -> ApiGatewayProxyResponse {
        if request.http_method != http::Method::POST {
            let mut response = json_response(
                405,
                &json!({"message": format!("method {} is not allowed; use POST", request.http_method)}),
            );
            response
                .headers
                .insert(http::header::ALLOW, HeaderValue::from_static("POST"));
            return response;
        }
        if let (Some(store), Some(key)) = (
            &self.idempotency,
            header(&request.headers, IDEMPOTENCY_HEADER),
        ) {
            return self
                .answer_once(store, key, request, facts, deadline, metrics)
                .await;
        }
        self.answer(request, facts, deadline, metrics).await
    }

    /// The request done once per `key`: the first answer stored, a repeat answered with it.
    async fn answer_once(
        &self,
        store: &IdempotencyStore,
        key: &str,
        request: &ApiGatewayProxyRequest,
        facts: &RequestFacts,
        deadline: &Deadline,
        metrics: &mut Metrics,
    ) -> ApiGatewayProxyResponse {
        if key.is_empty()
            || key.len() > MAX_IDEMPOTENCY_KEY_BYTES
            || !key.bytes().all(|b| b.is_ascii_graphic())
        {
            metrics.count("Refused.400", 1);
            return json_response(
                400,
                &json!({"message": format!("Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_BYTES} visible ASCII characters")}),
            );
        }
        // Keys are the caller's own: two API keys never share one.
        let caller = request
            .request_context
            .identity
            .api_key_id
            .as_deref()
            .unwrap_or("-");
        let scoped = format!("{caller}:{key}");
        let now = u64::try_from(facts.received_at_ms).unwrap_or_default();
        let until =
            now.saturating_add(u64::try_from(deadline.remaining().as_millis()).unwrap_or(0));
        match store
            .begin(&scoped, &payload_hash(request), now, until, deadline)
            .await
        {
            Err(e) => {
                tracing::error!(error = %e, idempotency_key = %scoped, "idempotency record not readable or writable; nothing written");
                let mut response = json_response(
                    503,
                    &json!({"message": format!("the Idempotency-Key could not be checked ({e}); nothing was written: resend the request with the same key")}),
                );
                response
                    .headers
                    .insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
                response
            }
            Ok(Begin::InProgress) => {
                metrics.count("Refused.409", 1);
                let mut response = json_response(
                    409,
                    &json!({"message": "a request with this Idempotency-Key is still being processed; resend it after that one has answered"}),
                );
                response
                    .headers
                    .insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
                response
            }
            Ok(Begin::PayloadMismatch) => {
                metrics.count("Refused.422", 1);
                json_response(
                    422,
                    &json!({"message": format!("this Idempotency-Key was used for a different request in the last {} s; use a new key for a new request", store.window().as_secs())}),
                )
            }
            Ok(Begin::Completed { response }) => match decode_stored(&response) {
                Some(mut answer) => {
                    metrics.count("IdempotentReplays", 1);
                    tracing::info!(idempotency_key = %scoped, status = answer.status_code, "resend answered with the first answer; nothing written");
                    answer
                        .headers
                        .insert("idempotent-replayed", HeaderValue::from_static("true"));
                    answer
                }
                None => {
                    tracing::error!(idempotency_key = %scoped, "stored answer unreadable; answering 500, nothing written");
                    json_response(
                        500,
                        &json!({"message": "the first answer to this Idempotency-Key could not be read back; nothing was written"}),
                    )
                }
            },
            Ok(Begin::New) => {
                let answer = self.answer(request, facts, deadline, metrics).await;
                match store
                    .complete(&scoped, &encode_stored(&answer), deadline)
                    .await
                {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::warn!(idempotency_key = %scoped, "answer too large to keep; a resend with this key will be processed again")
                    }
                    Err(e) => {
                        tracing::error!(error = %e, idempotency_key = %scoped, "answer not stored; the key stays in progress until this request's deadline, then a resend is processed again")
                    }
                }
                answer
            }
        }
    }

    /// The answer to one request, without idempotency.
    async fn answer(
        &self,
        request: &ApiGatewayProxyRequest,
        facts: &RequestFacts,
        deadline: &Deadline,
        metrics: &mut Metrics,
    ) -> ApiGatewayProxyResponse {
        let records = match self.records_of(request, facts) {
            Ok(records) => records,
            Err(rejection) => {
                let status = rejection.status();
                tracing::info!(status, reason = %rejection, request_id = %facts.request_id, "request refused");
                metrics.count(&format!("Refused.{status}"), 1);
                return json_response(status, &json!({"message": rejection.to_string()}));
            }
        };
        let positions: Vec<Position> = records.iter().map(|r| r.position).collect();
        let outgoing = records
            .into_iter()
            .map(|r| OutgoingRecord::new(r.partition_key, r.data))
            .collect();
        let report = self.writer.put_all(outgoing, deadline).await;
        metrics.count("EventsAccepted", report.written as u64);
        if report.is_complete() {
            return json_response(202, &json!({"accepted": report.written}));
        }
        metrics.count(
            "EventsNotWritten",
            (positions.len() - report.written) as u64,
        );
        unwritten_response(&report, &positions, &facts.request_id)
    }

    fn records_of(
        &self,
        request: &ApiGatewayProxyRequest,
        facts: &RequestFacts,
    ) -> Result<Vec<crate::record::EventRecord>, Rejection> {
        let body = decode_body(
            request.body.as_deref(),
            request.is_base64_encoded,
            header(&request.headers, CONTENT_ENCODING.as_str()),
            self.config.max_body_bytes,
        )?;
        let format = BodyFormat::from_content_type(header(&request.headers, CONTENT_TYPE.as_str()));
        let events = split_events(&body, format)?;
        if events.len() > self.config.max_events {
            return Err(Rejection::TooManyEvents {
                count: events.len(),
                limit: self.config.max_events,
            });
        }
        Ok(build_records(
            &events,
            &self.config.records,
            facts,
            random_partition_key,
        )?)
    }
}

/// The request id and receive time API Gateway recorded, else the Lambda request id
/// and `now_ms`.
pub fn request_facts(
    request: &ApiGatewayProxyRequest,
    lambda_request_id: &str,
    now_ms: i64,
) -> RequestFacts {
    let context = &request.request_context;
    RequestFacts {
        request_id: context
            .request_id
            .clone()
            .filter(|id| !id.is_empty())
            .unwrap_or_else(|| lambda_request_id.to_owned()),
        received_at_ms: if context.request_time_epoch > 0 {
            context.request_time_epoch
        } else {
            now_ms
        },
    }
}

/// What a key was first used for: the body as received and how to read it.
fn payload_hash(request: &ApiGatewayProxyRequest) -> String {
    let mut hash = Sha256::new();
    for part in [
        header(&request.headers, CONTENT_TYPE.as_str()).unwrap_or(""),
        header(&request.headers, CONTENT_ENCODING.as_str()).unwrap_or(""),
        if request.is_base64_encoded {
            "b64"
        } else {
            "text"
        },
        request.body.as_deref().unwrap_or(""),
    ] {
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(part.as_bytes());
    }
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// An answer as stored for resends: status, headers and body as JSON, gzip-compressed
/// (a `503` listing thousands of positions shrinks about tenfold).
fn encode_stored(response: &ApiGatewayProxyResponse) -> Vec<u8> {
    let headers: serde_json::Map<String, serde_json::Value> = response
        .headers
        .iter()
        .filter_map(|(name, value)| Some((name.to_string(), json!(value.to_str().ok()?))))
        .collect();
    let body = match &response.body {
        Some(Body::Text(text)) => text.clone(),
        _ => String::new(),
    };
    let json = json!({"status": response.status_code, "headers": headers, "body": body});
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut encoder, json.to_string().as_bytes())
        .and_then(|()| encoder.finish())
        .unwrap_or_default()
}

fn decode_stored(stored: &[u8]) -> Option<ApiGatewayProxyResponse> {
    let mut text = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(stored), &mut text).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    let mut response = ApiGatewayProxyResponse::default();
    response.status_code = json["status"].as_i64()?;
    for (name, value) in json["headers"].as_object()? {
        let name = http::HeaderName::from_bytes(name.as_bytes()).ok()?;
        response
            .headers
            .insert(name, HeaderValue::from_str(value.as_str()?).ok()?);
    }
    response.body = Some(Body::Text(json["body"].as_str()?.to_owned()));
    Some(response)
}

fn random_partition_key() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// `503`: some events were not written; says which, so the client resends only those.
fn unwritten_response(
    report: &PutReport,
    positions: &[Position],
    request_id: &str,
) -> ApiGatewayProxyResponse {
    let mut not_written: Vec<(usize, String)> = report
        .failed
        .iter()
        .map(|f| (f.index, f.error_code.clone()))
        .chain(
            report
                .rejected
                .iter()
                .map(|r| (r.index, r.reason.to_string())),
        )
        .collect();
    not_written.sort_by_key(|(index, _)| *index);
    let failed = not_written.len();
    let mut codes: Vec<&str> = not_written.iter().map(|(_, c)| c.as_str()).collect();
    codes.sort_unstable();
    codes.dedup();
    tracing::warn!(
        request_id,
        written = report.written,
        failed,
        codes = ?codes,
        "events not written to the stream"
    );
    let failed_events: Vec<String> = not_written
        .iter()
        .map(|(index, _)| positions[*index].to_string())
        .collect();
    let mut response = json_response(
        503,
        &json!({
            "message": format!(
                "{failed} of {} events could not be written to the stream after retries ({}); resend the events listed in failedEvents",
                positions.len(),
                codes.join(", ")
            ),
            "accepted": report.written,
            "failed": failed,
            "failedEvents": failed_events,
        }),
    );
    response
        .headers
        .insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

fn json_response(status: u16, body: &serde_json::Value) -> ApiGatewayProxyResponse {
    let mut response = ApiGatewayProxyResponse::default();
    response.status_code = i64::from(status);
    response
        .headers
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response.body = Some(Body::Text(body.to_string()));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_kinesis::Client;
    use aws_sdk_kinesis::config::retry::RetryConfig;
    use aws_sdk_kinesis::operation::put_records::{PutRecordsInput, PutRecordsOutput};
    use aws_sdk_kinesis::types::PutRecordsResultEntry;
    use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};
    use serde_json::Value;
    use sluice_aws::retry::Backoff;
    use std::io::Write;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    /// One PutRecords call: (partition key, data) per entry.
    type Call = Vec<(String, Vec<u8>)>;

    /// Every PutRecords call.
    #[derive(Clone, Default)]
    struct Sent(Arc<Mutex<Vec<Call>>>);

    impl Sent {
        fn record(&self, input: &PutRecordsInput) -> usize {
            let mut calls = self.0.lock().unwrap();
            calls.push(
                input
                    .records()
                    .iter()
                    .map(|e| {
                        (
                            e.partition_key().unwrap_or_default().to_owned(),
                            e.data().as_ref().to_vec(),
                        )
                    })
                    .collect(),
            );
            calls.len() - 1
        }

        fn entries(&self) -> Vec<(String, Vec<u8>)> {
            self.0.lock().unwrap().concat()
        }

        fn calls(&self) -> usize {
            self.0.lock().unwrap().len()
        }
    }

    fn ok_entry() -> PutRecordsResultEntry {
        PutRecordsResultEntry::builder()
            .sequence_number("49590338271490256608559692538361571095921575989136588898")
            .shard_id("shardId-000000000000")
            .build()
    }

    fn failed_entry(code: &str) -> PutRecordsResultEntry {
        PutRecordsResultEntry::builder()
            .error_code(code)
            .error_message("Rate exceeded for shard shardId-000000000000")
            .build()
    }

    fn output(entries: Vec<PutRecordsResultEntry>) -> PutRecordsOutput {
        let failed = entries.iter().filter(|e| e.error_code().is_some()).count();
        PutRecordsOutput::builder()
            .set_records(Some(entries))
            .failed_record_count(i32::try_from(failed).unwrap())
            .build()
            .unwrap()
    }

    /// Answers each call; `fail(call, partition key, data)` decides which entries fail.
    fn kinesis(sent: &Sent, fail: impl Fn(usize, &[u8]) -> bool + Send + Sync + 'static) -> Rule {
        let sent = sent.clone();
        mock!(Client::put_records).then_compute_output(move |input| {
            let call = sent.record(input);
            output(
                input
                    .records()
                    .iter()
                    .map(|e| {
                        if fail(call, e.data().as_ref()) {
                            failed_entry("ProvisionedThroughputExceededException")
                        } else {
                            ok_entry()
                        }
                    })
                    .collect(),
            )
        })
    }

    fn ingest(rule: &Rule, env: &[(&str, &str)]) -> Ingest {
        let mut pairs = vec![("STREAM_NAME", "events")];
        pairs.extend_from_slice(env);
        let config = IngestConfig::from_env(&Env::from_pairs(pairs)).unwrap();
        let client = mock_client!(aws_sdk_kinesis, RuleMode::MatchAny, &[rule], |c| c
            .retry_config(RetryConfig::disabled()));
        let writer = PutRecordsWriter::new(
            client,
            config.stream.clone(),
            Backoff::new(Duration::from_millis(50), Duration::from_millis(400), 2.0),
        );
        Ingest::new(config, writer)
    }

    fn request(body: Option<&str>, headers: &[(&'static str, &str)]) -> ApiGatewayProxyRequest {
        let mut request = ApiGatewayProxyRequest::default();
        request.http_method = http::Method::POST;
        request.path = Some("/events".into());
        request.body = body.map(str::to_owned);
        for (name, value) in headers {
            request
                .headers
                .insert(*name, HeaderValue::from_str(value).unwrap());
        }
        request.request_context.request_id = Some("req-1".into());
        request.request_context.request_time_epoch = 1_714_560_000_123;
        request
    }

    fn facts() -> RequestFacts {
        RequestFacts {
            request_id: "req-1".into(),
            received_at_ms: 1_714_560_000_123,
        }
    }

    async fn call(ingest: &Ingest, request: &ApiGatewayProxyRequest) -> (u16, Value, Metrics) {
        let mut metrics = Metrics::new("sluice", "ingest-api");
        let response = ingest
            .handle_request(
                request,
                &facts(),
                &Deadline::after(Duration::from_secs(5)),
                &mut metrics,
            )
            .await;
        let body = match response.body {
            Some(Body::Text(text)) => serde_json::from_str(&text).unwrap(),
            other => panic!("expected a JSON text body, got {other:?}"),
        };
        (u16::try_from(response.status_code).unwrap(), body, metrics)
    }

    #[tokio::test(start_paused = true)]
    async fn accepts_ndjson_and_writes_enriched_records_keyed_by_the_field() {
        let sent = Sent::default();
        let ingest = ingest(
            &kinesis(&sent, |_, _| false),
            &[("PARTITION_KEY_FIELD", "player_id")],
        );
        let body = "{\"player_id\":\"p-1\",\"kind\":\"login\"}\n{\"player_id\":\"p-2\",\"kind\":\"match_start\"}\n";
        let (status, answer, metrics) = call(
            &ingest,
            &request(Some(body), &[("content-type", "application/x-ndjson")]),
        )
        .await;
        assert_eq!((status, answer), (202, json!({"accepted": 2})));
        let entries = sent.entries();
        assert_eq!(entries[0].0, "p-1");
        assert_eq!(
            String::from_utf8(entries[0].1.clone()).unwrap(),
            r#"{"player_id":"p-1","kind":"login","received_at":1714560000123,"request_id":"req-1"}"#
        );
        assert_eq!(entries[1].0, "p-2");
        assert_eq!(metrics.get("EventsAccepted"), Some(2.0));
    }

    type Items = Arc<
        Mutex<
            std::collections::HashMap<
                String,
                std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>,
            >,
        >,
    >;

    /// An idempotency table: conditional put on absence, consistent reads, completion.
    fn idempotency_table(items: &Items) -> IdempotencyStore {
        use aws_sdk_dynamodb::operation::get_item::GetItemOutput;
        use aws_sdk_dynamodb::operation::put_item::{PutItemError, PutItemOutput};
        use aws_sdk_dynamodb::operation::update_item::UpdateItemOutput;
        use aws_sdk_dynamodb::types::error::ConditionalCheckFailedException;
        let key_of = |item: &std::collections::HashMap<
            String,
            aws_sdk_dynamodb::types::AttributeValue,
        >| { item["idempotency_key"].as_s().unwrap().clone() };
        let (absent, put, taken, read, done) = (
            items.clone(),
            items.clone(),
            items.clone(),
            items.clone(),
            items.clone(),
        );
        let rules = [
            mock!(aws_sdk_dynamodb::Client::put_item)
                .match_requests(move |r| {
                    !absent
                        .lock()
                        .unwrap()
                        .contains_key(&key_of(r.item().unwrap()))
                })
                .then_compute_output(move |r| {
                    let item = r.item().unwrap().clone();
                    put.lock().unwrap().insert(key_of(&item), item);
                    PutItemOutput::builder().build()
                }),
            mock!(aws_sdk_dynamodb::Client::put_item)
                .match_requests(move |r| {
                    taken
                        .lock()
                        .unwrap()
                        .contains_key(&key_of(r.item().unwrap()))
                })
                .then_error(|| {
                    PutItemError::ConditionalCheckFailedException(
                        ConditionalCheckFailedException::builder().build(),
                    )
                }),
            mock!(aws_sdk_dynamodb::Client::get_item).then_compute_output(move |r| {
                let key = r.key().unwrap()["idempotency_key"].as_s().unwrap();
                GetItemOutput::builder()
                    .set_item(read.lock().unwrap().get(key).cloned())
                    .build()
            }),
            mock!(aws_sdk_dynamodb::Client::update_item).then_compute_output(move |r| {
                let key = r.key().unwrap()["idempotency_key"].as_s().unwrap();
                let values = r.expression_attribute_values().unwrap();
                let mut items = done.lock().unwrap();
                let item = items.get_mut(key).unwrap();
                item.insert("status".into(), values[":completed"].clone());
                item.insert("response".into(), values[":response"].clone());
                UpdateItemOutput::builder().build()
            }),
        ];
        let rules: Vec<&Rule> = rules.iter().collect();
        let client = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, &rules, |c| c
            .retry_config(aws_sdk_dynamodb::config::retry::RetryConfig::disabled()));
        IdempotencyStore::new(client, "idempotency", Duration::from_secs(3600))
    }

    async fn answered(
        ingest: &Ingest,
        request: &ApiGatewayProxyRequest,
    ) -> ApiGatewayProxyResponse {
        ingest
            .handle_request(
                request,
                &facts(),
                &Deadline::after(Duration::from_secs(5)),
                &mut Metrics::new("sluice", "ingest-api"),
            )
            .await
    }

    #[tokio::test(start_paused = true)]
    async fn a_resend_with_the_same_idempotency_key_gets_the_first_answer_and_writes_nothing() {
        let sent = Sent::default();
        let items = Items::default();
        let rule = kinesis(&sent, |_, _| false);
        let ingest = ingest(&rule, &[]).with_idempotency(idempotency_table(&items));
        let ndjson = [
            ("content-type", "application/x-ndjson"),
            ("idempotency-key", "order-42"),
        ];
        let mut first = request(Some("{\"n\":1}\n{\"n\":2}\n{\"n\":3}\n"), &ndjson);
        first.request_context.identity.api_key_id = Some("key-a".into());

        let answer = answered(&ingest, &first).await;
        assert_eq!(answer.status_code, 202);
        assert_eq!(answer.body, Some(Body::Text(r#"{"accepted":3}"#.into())));
        assert_eq!(sent.calls(), 1);
        assert!(answer.headers.get("idempotent-replayed").is_none());

        // The client lost the answer and sends the same request again.
        let again = answered(&ingest, &first).await;
        assert_eq!((again.status_code, &again.body), (202, &answer.body));
        assert_eq!(again.headers["idempotent-replayed"], "true");
        assert_eq!(again.headers["content-type"], "application/json");
        assert_eq!(sent.calls(), 1, "nothing written twice");
        assert_eq!(sent.entries().len(), 3);

        // The same key for other content is a client error, and writes nothing.
        let mut other = request(Some("{\"n\":4}\n"), &ndjson);
        other.request_context.identity.api_key_id = Some("key-a".into());
        assert_eq!(answered(&ingest, &other).await.status_code, 422);
        assert_eq!(sent.calls(), 1);

        // Another caller's key of the same name is its own.
        let mut theirs = first.clone();
        theirs.request_context.identity.api_key_id = Some("key-b".into());
        assert_eq!(answered(&ingest, &theirs).await.status_code, 202);
        assert_eq!(sent.calls(), 2);
        assert_eq!(items.lock().unwrap().len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stored_503_is_answered_again_with_the_same_unwritten_positions() {
        let sent = Sent::default();
        let items = Items::default();
        // The second event never goes in: the first answer is a 503 listing it.
        let rule = kinesis(&sent, |_, data| data.starts_with(b"{\"n\":2"));
        let ingest = ingest(&rule, &[]).with_idempotency(idempotency_table(&items));
        let req = request(
            Some("{\"n\":1}\n{\"n\":2}\n"),
            &[
                ("content-type", "application/x-ndjson"),
                ("idempotency-key", "batch-7"),
            ],
        );
        let first = answered(&ingest, &req).await;
        assert_eq!(first.status_code, 503);
        let calls = sent.calls();
        let again = answered(&ingest, &req).await;
        assert_eq!((again.status_code, &again.body), (503, &first.body));
        assert_eq!(again.headers["retry-after"], "1");
        assert_eq!(
            sent.calls(),
            calls,
            "the resend wrote nothing: event 1 is not duplicated"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_unusable_idempotency_key_is_refused_before_anything_is_written() {
        let sent = Sent::default();
        let items = Items::default();
        let rule = kinesis(&sent, |_, _| false);
        let ingest = ingest(&rule, &[]).with_idempotency(idempotency_table(&items));
        let long = "k".repeat(MAX_IDEMPOTENCY_KEY_BYTES + 1);
        for key in ["has space", long.as_str(), "tab\there"] {
            let req = request(Some("{\"n\":1}"), &[("idempotency-key", key)]);
            let (status, answer, _) = call(&ingest, &req).await;
            assert_eq!(status, 400, "{key:?}");
            assert!(
                answer["message"]
                    .as_str()
                    .unwrap()
                    .contains("Idempotency-Key")
            );
        }
        assert_eq!(sent.calls(), 0);
        assert!(items.lock().unwrap().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn accepts_a_gzip_base64_json_array_with_random_keys() {
        let sent = Sent::default();
        let ingest = ingest(&kinesis(&sent, |_, _| false), &[]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(br#"[{"n":1},{"n":2},{"n":3}]"#).unwrap();
        let encoded = aws_smithy_types::base64::encode(gz.finish().unwrap());
        let mut req = request(
            Some(&encoded),
            &[
                ("content-type", "application/json"),
                ("content-encoding", "gzip"),
            ],
        );
        req.is_base64_encoded = true;
        let (status, answer, _) = call(&ingest, &req).await;
        assert_eq!((status, answer), (202, json!({"accepted": 3})));
        let entries = sent.entries();
        assert_eq!(entries.len(), 3);
        let keys: std::collections::HashSet<&str> =
            entries.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys.len(), 3, "each event gets its own random key");
        assert!(keys.iter().all(|k| k.len() == 32));
    }

    #[tokio::test(start_paused = true)]
    async fn every_refusal_has_its_status_and_message_and_writes_nothing() {
        let sent = Sent::default();
        let ingest = ingest(
            &kinesis(&sent, |_, _| false),
            &[("MAX_BODY_BYTES", "64"), ("MAX_EVENTS", "3")],
        );
        let ndjson = [("content-type", "application/x-ndjson")];
        let cases: Vec<(ApiGatewayProxyRequest, u16, &str)> = vec![
            (request(None, &[]), 400, "request body is empty"),
            (request(Some("  \n"), &ndjson), 400, "request body is empty"),
            (
                request(Some("{\"a\":1,}"), &[]),
                400,
                "malformed JSON at line 1, column 8: trailing comma",
            ),
            (
                request(Some("{\"a\":1}\n{\"a\":2\n"), &ndjson),
                400,
                "malformed JSON on NDJSON line 2, column 6: EOF while parsing an object",
            ),
            (
                request(Some("[{\"a\":1},\"x\"]"), &[]),
                400,
                "array index 1 is a string, not a JSON object",
            ),
            (
                request(Some("{\"a\":1}\n42\n"), &ndjson),
                400,
                "line 2 is a number, not a JSON object",
            ),
            (
                request(Some("[]"), &[]),
                400,
                "the JSON array holds no events",
            ),
            (
                request(Some("{\"request_id\":\"mine\"}"), &[]),
                400,
                "already has a \"request_id\" field",
            ),
            (
                request(Some(&format!("{{\"pad\":\"{}\"}}", "x".repeat(60))), &[]),
                413,
                "over the limit of 64 bytes",
            ),
            (
                request(Some("[{},{},{},{}]"), &[]),
                413,
                "the request holds 4 events, over the limit of 3 events per request (MAX_EVENTS)",
            ),
            (
                request(Some("{}\n{}\n{}\n{}\n{}\n"), &ndjson),
                413,
                "the request holds 5 events, over the limit of 3 events per request",
            ),
            (
                request(Some("{}"), &[("content-encoding", "br")]),
                415,
                "Content-Encoding \"br\" is not supported",
            ),
        ];
        for (req, expected_status, expected_message) in cases {
            let (status, answer, metrics) = call(&ingest, &req).await;
            let message = answer["message"].as_str().unwrap();
            assert_eq!(status, expected_status, "{message}");
            assert!(message.contains(expected_message), "{message}");
            assert_eq!(
                metrics.get(&format!("Refused.{expected_status}")),
                Some(1.0)
            );
        }
        assert_eq!(sent.calls(), 0, "no refused request wrote anything");
    }

    #[tokio::test(start_paused = true)]
    async fn an_oversize_event_refuses_the_whole_request_before_writing() {
        let sent = Sent::default();
        let ingest = ingest(&kinesis(&sent, |_, _| false), &[]);
        let body = format!(
            "{{\"n\":1}}\n{{\"blob\":\"{}\"}}\n",
            "z".repeat(sluice_aws::kinesis::MAX_RECORD_BYTES)
        );
        let (status, answer, _) = call(
            &ingest,
            &request(Some(&body), &[("content-type", "application/x-ndjson")]),
        )
        .await;
        assert_eq!(status, 413);
        assert!(
            answer["message"]
                .as_str()
                .unwrap()
                .starts_with("event at line 2 makes a 1048"),
            "{answer}"
        );
        assert_eq!(sent.calls(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn resent_entries_that_succeed_still_earn_202() {
        let sent = Sent::default();
        // The first call fails the second event; the resend succeeds.
        let ingest = ingest(
            &kinesis(&sent, |call, data| {
                call == 0 && data.starts_with(b"{\"n\":2")
            }),
            &[],
        );
        let (status, answer, _) = call(&ingest, &request(Some("[{\"n\":1},{\"n\":2}]"), &[])).await;
        assert_eq!((status, answer), (202, json!({"accepted": 2})));
        assert_eq!(sent.calls(), 2);
        assert_eq!(
            sent.0.lock().unwrap()[1].len(),
            1,
            "only the failed entry resent"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn entries_failing_until_the_deadline_earn_503_with_counts_and_positions() {
        let sent = Sent::default();
        let ingest = ingest(
            &kinesis(&sent, |_, data| data.starts_with(b"{\"n\":2")),
            &[],
        );
        let body = "{\"n\":1}\n{\"n\":2}\n{\"n\":3}\n";
        let mut metrics = Metrics::new("sluice", "ingest-api");
        let response = ingest
            .handle_request(
                &request(Some(body), &[("content-type", "application/x-ndjson")]),
                &facts(),
                &Deadline::after(Duration::from_secs(2)),
                &mut metrics,
            )
            .await;
        assert_eq!(response.status_code, 503);
        assert_eq!(response.headers["retry-after"], "1");
        let Some(Body::Text(text)) = response.body else {
            panic!("text body")
        };
        let answer: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(answer["accepted"], 2);
        assert_eq!(answer["failed"], 1);
        assert_eq!(answer["failedEvents"], json!(["line 2"]));
        assert!(
            answer["message"]
                .as_str()
                .unwrap()
                .contains("ProvisionedThroughputExceededException"),
            "{answer}"
        );
        assert!(sent.calls() > 2, "kept resending while there was time");
        assert_eq!(metrics.get("EventsNotWritten"), Some(1.0));
    }

    #[test]
    fn a_503_listing_the_most_events_allowed_fits_lambdas_response_limit() {
        let n = MAX_EVENTS_LIMIT;
        let report = PutReport {
            written: 0,
            failed: (0..n)
                .map(|index| sluice_aws::kinesis::FailedRecord {
                    index,
                    error_code: "ProvisionedThroughputExceededException".into(),
                    message: "Rate exceeded for shard shardId-000000000000".into(),
                })
                .collect(),
            rejected: Vec::new(),
        };
        let positions: Vec<Position> = (0..n).map(Position::Index).collect();
        let response = unwritten_response(&report, &positions, "req-1");
        let bytes = serde_json::to_vec(&response).unwrap().len();
        assert!(
            bytes < LAMBDA_SYNC_PAYLOAD_BYTES / 2,
            "{bytes} bytes of response for {n} unwritten events"
        );
        let Some(Body::Text(text)) = response.body else {
            panic!("text body")
        };
        let answer: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(answer["failedEvents"].as_array().unwrap().len(), n);
    }

    #[tokio::test(start_paused = true)]
    async fn a_missing_stream_fails_every_event_with_503() {
        let missing = mock!(Client::put_records).then_http_response(|| {
            sluice_aws::test_support::json_error(
                400,
                "ResourceNotFoundException",
                "Stream events not found",
            )
        });
        let ingest = ingest(&missing, &[]);
        let (status, answer, _) = call(&ingest, &request(Some("[{\"n\":1},{\"n\":2}]"), &[])).await;
        assert_eq!(status, 503);
        assert_eq!(answer["accepted"], 0);
        assert_eq!(
            answer["failedEvents"],
            json!(["array index 0", "array index 1"])
        );
    }

    #[tokio::test(start_paused = true)]
    async fn methods_other_than_post_are_not_allowed() {
        let sent = Sent::default();
        let ingest = ingest(&kinesis(&sent, |_, _| false), &[]);
        let mut req = request(Some("{}"), &[]);
        req.http_method = http::Method::GET;
        let (status, _, _) = call(&ingest, &req).await;
        assert_eq!(status, 405);
        assert_eq!(sent.calls(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn sample_events_get_the_answers_their_names_promise() {
        let samples = [
            (
                include_str!("../../../events/ingest-api/post-ndjson.json"),
                202,
            ),
            (
                include_str!("../../../events/ingest-api/post-json-array-gzip.json"),
                202,
            ),
            (
                include_str!("../../../events/ingest-api/post-single-object-text.json"),
                202,
            ),
            (
                include_str!("../../../events/ingest-api/post-malformed-ndjson.json"),
                400,
            ),
            (
                include_str!("../../../events/ingest-api/post-not-an-object.json"),
                400,
            ),
        ];
        for (sample, expected) in samples {
            let sent = Sent::default();
            let ingest = ingest(
                &kinesis(&sent, |_, _| false),
                &[("PARTITION_KEY_FIELD", "player_id")],
            );
            let req: ApiGatewayProxyRequest = serde_json::from_str(sample).unwrap();
            let facts = request_facts(&req, "lambda-req", 0);
            assert_eq!(facts.request_id, "c6af9ac6-7b61-11e6-9a41-93e8deadbeef");
            let mut metrics = Metrics::new("sluice", "ingest-api");
            let response = ingest
                .handle_request(
                    &req,
                    &facts,
                    &Deadline::after(Duration::from_secs(5)),
                    &mut metrics,
                )
                .await;
            assert_eq!(response.status_code, expected, "{:?}", response.body);
            if expected == 202 {
                assert!(
                    sent.entries()
                        .iter()
                        .all(|(key, _)| key.starts_with("player-"))
                );
            } else {
                assert_eq!(sent.calls(), 0);
            }
        }
    }

    #[test]
    fn request_facts_prefer_api_gateway_values() {
        let req = request(Some("{}"), &[]);
        assert_eq!(
            request_facts(&req, "lambda-req", 99),
            RequestFacts {
                request_id: "req-1".into(),
                received_at_ms: 1_714_560_000_123
            }
        );
        let bare = ApiGatewayProxyRequest::default();
        assert_eq!(
            request_facts(&bare, "lambda-req", 99),
            RequestFacts {
                request_id: "lambda-req".into(),
                received_at_ms: 99
            }
        );
    }

    #[test]
    fn config_requires_the_stream_and_distinct_field_names() {
        let err = IngestConfig::from_env(&Env::from_pairs([("MAX_BODY_BYTES", "10")])).unwrap_err();
        assert!(err.to_string().contains("STREAM_NAME"), "{err}");
        let err = IngestConfig::from_env(&Env::from_pairs([
            ("STREAM_NAME", "s"),
            ("RECEIVED_AT_FIELD", "meta"),
            ("REQUEST_ID_FIELD", "meta"),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("REQUEST_ID_FIELD"), "{err}");
        let err = IngestConfig::from_env(&Env::from_pairs([
            ("STREAM_NAME", "s"),
            ("MAX_BODY_BYTES", "lots"),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("MAX_BODY_BYTES"), "{err}");
        let config = IngestConfig::from_env(&Env::from_pairs([("STREAM_NAME", "s")])).unwrap();
        assert_eq!(config.max_body_bytes, DEFAULT_MAX_BODY_BYTES);
        assert_eq!(config.max_events, DEFAULT_MAX_EVENTS);
        for bad in ["0", "100001", "many"] {
            let err = IngestConfig::from_env(&Env::from_pairs([
                ("STREAM_NAME", "s"),
                ("MAX_EVENTS", bad),
            ]))
            .unwrap_err();
            assert!(err.to_string().contains("MAX_EVENTS"), "{bad}: {err}");
        }
        assert_eq!(config.records.partition_key_field, None);
        assert_eq!(config.records.received_at_field, "received_at");
        assert_eq!(config.records.request_id_field, "request_id");
    }

    #[test]
    fn a_default_sized_body_fits_lambdas_payload_limit_as_api_gateway_sends_it() {
        // The sample event with the largest headers API Gateway allows (10 KiB, carried
        // twice) and a default-sized body, base64-encoded as the binary stage sends it.
        let mut event: serde_json::Value =
            serde_json::from_str(include_str!("../../../events/ingest-api/post-ndjson.json"))
                .unwrap();
        let padding = "x".repeat(10 * 1024 - 512);
        event["headers"]["X-Padding"] = serde_json::Value::String(padding.clone());
        event["multiValueHeaders"]["X-Padding"] = serde_json::json!([padding]);
        // Base64 of n bytes is 4 characters per 3 bytes, padded: only its length matters here.
        event["body"] = "A".repeat(DEFAULT_MAX_BODY_BYTES.div_ceil(3) * 4).into();
        event["isBase64Encoded"] = true.into();
        let payload = serde_json::to_vec(&event).unwrap();
        assert!(
            payload.len() <= LAMBDA_SYNC_PAYLOAD_BYTES,
            "{} bytes of event for a {DEFAULT_MAX_BODY_BYTES}-byte body: over the 6 MB limit",
            payload.len()
        );
        assert_eq!(DEFAULT_MAX_BODY_BYTES, 4_700_160);
    }
}
