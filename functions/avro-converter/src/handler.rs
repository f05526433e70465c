//! The decisions for one S3 event: which objects to convert, what to do with each outcome,
//! and which failures fail the invocation (so Lambda retries it) and which do not.
//!
//! | situation | what happens | invocation |
//! |---|---|---|
//! | object converted | Avro files per hour; rejected records to `<stem>.errors.jsonl` | succeeds |
//! | input not snappy / not JSON / empty | reason to `<stem>.errors.jsonl`, input copied to the error prefix | succeeds |
//! | input larger than any that decompresses within `MAX_DECOMPRESSED_BYTES` | refused from its `Content-Length` before reading; reason to `<stem>.errors.jsonl`, input copied server-side (≤ 5 GiB) | succeeds |
//! | key under our own output or error prefix, other bucket, outside the filter, not `ObjectCreated` | ignored, logged | succeeds |
//! | object gone since the event (`NoSuchKey`) | ignored, logged as a warning | succeeds |
//! | S3 read/write failure, transient or permanent | nothing skipped | **fails** (async retries, then the on-failure destination) |
//! | event that is not an S3 notification | | **fails** (lands in the on-failure destination) |
//!
//! Every write is idempotent (same input key and bytes → same output keys and bytes), so a
//! retried invocation overwrites what an earlier attempt wrote.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use serde::Serialize;
use serde_json::{Value, json};
use sluice_aws::{
    Deadline, S3Error, copy_object, get_object_bytes_within, head_object_etag, put_object_bytes,
};
use sluice_events::{EnvelopeError, S3Notice, S3ObjectEvent, s3_notices_from_value};
use sluice_lambda::config::Env;
use sluice_lambda::metrics::Metrics;
use sluice_lambda::{Function, FunctionError, Invocation};

use crate::config::Config;
use crate::convert::{Conversion, ConvertError, Converter, InputError};
use crate::layout;
use crate::schema::RecordSchema;

const AVRO_CONTENT_TYPE: &str = "application/avro";
const JSONL_CONTENT_TYPE: &str = "application/x-ndjson";
/// Output objects written at once.
const PUT_CONCURRENCY: usize = 4;
/// Kept back from the Lambda deadline for logging and answering the runtime.
pub const DEADLINE_MARGIN: Duration = Duration::from_millis(750);

/// Why an invocation fails. The one place that says what is retryable.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error("the event is not an S3 notification: {0}")]
    Envelope(#[from] EnvelopeError),
    #[error("reading the input failed: {0}")]
    Read(S3Error),
    #[error("writing the output failed: {0}")]
    Write(S3Error),
    #[error("converting s3://{bucket}/{key} failed: {reason}")]
    Conversion {
        bucket: String,
        key: String,
        reason: String,
    },
}

impl HandlerError {
    /// Whether a later attempt of the same event could succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            HandlerError::Read(e) | HandlerError::Write(e) => e.is_transient(),
            HandlerError::Envelope(_) | HandlerError::Conversion { .. } => false,
        }
    }

    /// What failed: the `<Kind>` of the `errorType` Lambda reports (`Retryable.<Kind>` or
    /// `Permanent.<Kind>`, as the on-failure destination records it).
    pub fn kind(&self) -> &'static str {
        match self {
            HandlerError::Read(_) | HandlerError::Write(_) => "S3",
            HandlerError::Envelope(_) => "InvalidEvent",
            HandlerError::Conversion { .. } => "ConversionFailed",
        }
    }
}

impl From<HandlerError> for FunctionError {
    fn from(err: HandlerError) -> Self {
        FunctionError::classed(err.is_retryable(), err.kind(), err.to_string())
    }
}

/// Why an object was not converted, without that being an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Ignored {
    /// Under the output prefix: our own Avro file.
    OwnOutput,
    /// Under the error prefix: our own reject.
    OwnErrors,
    /// Not in the configured input bucket.
    OtherBucket,
    /// In the input bucket but outside the prefix/suffix filter.
    OutsideFilter,
    /// Not an `ObjectCreated` event.
    NotCreated,
    /// Deleted before it could be read.
    Gone,
}

/// What happened to one object of the event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum ObjectOutcome {
    Converted {
        bucket: String,
        key: String,
        records: usize,
        rejected: usize,
        files: Vec<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        errors_file: Option<String>,
    },
    InputRejected {
        bucket: String,
        key: String,
        reason: String,
        errors_file: String,
        copy: String,
    },
    Ignored {
        bucket: String,
        key: String,
        why: Ignored,
    },
    TestEvent,
}

/// The invocation's answer: one outcome per notice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub objects: Vec<ObjectOutcome>,
}

impl Function for Handler {
    type Event = Value;
    type Response = Summary;
    type InitError = String;

    fn answer_margin(&self) -> Duration {
        DEADLINE_MARGIN
    }

    /// Reads and checks the configuration, builds the S3 client and loads the schema.
    async fn cold_start() -> Result<Self, String> {
        let config = Config::from_env(&Env::from_process()).map_err(|e| e.to_string())?;
        let sdk = sluice_aws::clients::load_sdk_config().await;
        let s3 = sluice_aws::clients::s3(&sdk);
        let schema = RecordSchema::load(&config.schema, &s3)
            .await
            .map_err(|e| e.to_string())?;
        let converter = Converter::new(
            schema,
            config.codec,
            config.timestamp.clone(),
            config.max_decompressed_bytes,
            config.output.prefix.clone(),
        );
        tracing::info!(
            input_bucket = config.input.bucket,
            output = %config.output,
            errors = %config.errors,
            codec = %config.codec,
            schema = %config.schema,
            "avro-converter ready"
        );
        Ok(Handler::new(config, converter, s3))
    }

    async fn handle(
        &self,
        event: Value,
        invocation: &mut Invocation,
    ) -> Result<Summary, FunctionError> {
        self.handle_notices(&event, invocation.deadline, &mut invocation.metrics)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, retryable = e.is_retryable(), "invocation failed");
                FunctionError::from(e)
            })
    }
}

/// Configuration, converter and client, shared by every invocation of a process.
pub struct Handler {
    config: Config,
    converter: Arc<Converter>,
    s3: aws_sdk_s3::Client,
}

impl Handler {
    pub fn new(config: Config, converter: Converter, s3: aws_sdk_s3::Client) -> Self {
        Self {
            config,
            converter: Arc::new(converter),
            s3,
        }
    }

    /// Handles one S3 event (any envelope `sluice-events` reads; S3 → Lambda in practice)
    /// with metrics of its own (the Lambda path uses the invocation's: [`Function::handle`]).
    pub async fn handle_event(
        &self,
        event: &Value,
        deadline: Deadline,
    ) -> Result<Summary, HandlerError> {
        let mut metrics = Metrics::for_function();
        let result = self.handle_notices(event, deadline, &mut metrics).await;
        metrics.emit();
        result
    }

    async fn handle_notices(
        &self,
        event: &Value,
        deadline: Deadline,
        metrics: &mut Metrics,
    ) -> Result<Summary, HandlerError> {
        let notices = s3_notices_from_value(event)?;
        let mut objects = Vec::with_capacity(notices.len());
        for notice in notices {
            let outcome = match notice {
                S3Notice::TestEvent { bucket } => {
                    tracing::info!(bucket = ?bucket, "s3:TestEvent: nothing to convert");
                    ObjectOutcome::TestEvent
                }
                S3Notice::Object(object) => self.handle_object(&object, &deadline, metrics).await?,
            };
            objects.push(outcome);
        }
        Ok(Summary { objects })
    }

    /// Why `object` is not to be converted, if it is not.
    fn ignore_reason(&self, object: &S3ObjectEvent) -> Option<Ignored> {
        let (bucket, key) = (object.bucket.as_str(), object.key.as_str());
        if self.config.output.contains(bucket, key) {
            Some(Ignored::OwnOutput)
        } else if self.config.errors.contains(bucket, key) {
            Some(Ignored::OwnErrors)
        } else if !object.is_object_created() {
            Some(Ignored::NotCreated)
        } else if bucket != self.config.input.bucket {
            Some(Ignored::OtherBucket)
        } else if !self.config.input.matches(bucket, key) {
            Some(Ignored::OutsideFilter)
        } else {
            None
        }
    }

    async fn handle_object(
        &self,
        object: &S3ObjectEvent,
        deadline: &Deadline,
        metrics: &mut Metrics,
    ) -> Result<ObjectOutcome, HandlerError> {
        let (bucket, key) = (object.bucket.clone(), object.key.clone());
        let ignored = |why| ObjectOutcome::Ignored {
            bucket: bucket.clone(),
            key: key.clone(),
            why,
        };
        if let Some(why) = self.ignore_reason(object) {
            tracing::info!(bucket, key, event = object.event_name, why = ?why, "object ignored");
            metrics.count("ObjectsIgnored", 1);
            return Ok(ignored(why));
        }
        // Converge on the newest version: an older, slower conversion may write after a
        // newer one, so once the outputs are written the input must still be the version
        // converted; if it changed meanwhile, the newest one is converted again (same keys).
        for round in 1..=MAX_CONVERSION_ROUNDS {
            let (outcome, converted_etag) = self.convert_current(object, deadline, metrics).await?;
            let Some(converted_etag) = converted_etag else {
                return Ok(outcome);
            };
            match head_object_etag(&self.s3, &bucket, &key, deadline)
                .await
                .map_err(HandlerError::Read)?
            {
                Some(current) if current != converted_etag => {
                    tracing::warn!(
                        bucket,
                        key,
                        converted = converted_etag,
                        current,
                        round,
                        "input replaced while converting; converting its newest version"
                    );
                    metrics.count("Reconverted", 1);
                }
                // Still the version converted, or deleted since (its outputs stay).
                _ => return Ok(outcome),
            }
        }
        Err(HandlerError::Read(S3Error::Transient {
            operation: "GetObject",
            bucket,
            key,
            code: "InputKeptChanging".to_owned(),
            message: format!(
                "replaced during each of {MAX_CONVERSION_ROUNDS} conversions; retried later"
            ),
        }))
    }

    /// Reads and converts the current version of `object`, writing its outputs; with the
    /// ETag of the version read (`None` when nothing was read or S3 gave none).
    async fn convert_current(
        &self,
        object: &S3ObjectEvent,
        deadline: &Deadline,
        metrics: &mut Metrics,
    ) -> Result<(ObjectOutcome, Option<String>), HandlerError> {
        let (bucket, key) = (object.bucket.clone(), object.key.clone());
        let metadata = SourceMetadata::new(object);
        let limit = self.converter.max_input_bytes();
        let (input, etag) =
            match get_object_bytes_within(&self.s3, &bucket, &key, None, limit, deadline).await {
                Ok(read) => read,
                Err(S3Error::TooLarge { size, limit, .. }) => {
                    let reason = InputError::TooLarge { size, limit };
                    // Refused from its size alone: no version to converge on.
                    return self
                        .reject_input(
                            object,
                            Rejected::Unread { size },
                            &reason,
                            &metadata,
                            deadline,
                        )
                        .await
                        .map(|outcome| {
                            metrics.count("InputsRejected", 1);
                            (outcome, None)
                        });
                }
                Err(S3Error::NotFound { .. }) => {
                    tracing::warn!(bucket, key, "object no longer exists; nothing to convert");
                    metrics.count("ObjectsIgnored", 1);
                    return Ok((
                        ObjectOutcome::Ignored {
                            bucket,
                            key,
                            why: Ignored::Gone,
                        },
                        None,
                    ));
                }
                Err(e) => return Err(HandlerError::Read(e)),
            };
        metrics.count("InputBytes", input.len() as u64);

        let converter = Arc::clone(&self.converter);
        let (task_input, task_key) = (input.clone(), key.clone());
        let converted =
            tokio::task::spawn_blocking(move || converter.convert(&task_input, &task_key))
                .await
                .map_err(|e| HandlerError::Conversion {
                    bucket: bucket.clone(),
                    key: key.clone(),
                    reason: e.to_string(),
                })?;
        let source = format!("s3://{bucket}/{key}");
        match converted {
            Ok(conversion) => {
                let (records, rejected) = (conversion.converted(), conversion.rejects.len());
                let files: Vec<String> = conversion.files.iter().map(|f| f.key.clone()).collect();
                let errors_body = (rejected > 0).then(|| conversion.errors_jsonl(&source));
                let Conversion {
                    files: avro_files,
                    decompressed_bytes,
                    .. // the rejects are in `errors_body` now, and freed here
                } = conversion;
                let mut puts = Vec::with_capacity(files.len() + 1);
                // Moved, not copied: the Avro bytes are the largest thing left in memory.
                for file in avro_files {
                    puts.push(Put {
                        bucket: &self.config.output.bucket,
                        key: file.key,
                        body: Bytes::from(file.bytes),
                        content_type: AVRO_CONTENT_TYPE,
                    });
                }
                let errors_file = errors_body.map(|body| {
                    let errors_key = layout::errors_key(&self.config.errors.prefix, &key);
                    let uri = format!("s3://{}/{errors_key}", self.config.errors.bucket);
                    puts.push(Put {
                        bucket: &self.config.errors.bucket,
                        key: errors_key,
                        body: Bytes::from(body),
                        content_type: JSONL_CONTENT_TYPE,
                    });
                    uri
                });
                self.put_all(puts, &metadata, deadline).await?;
                tracing::info!(
                    bucket,
                    key,
                    records,
                    rejected,
                    files = ?files,
                    decompressed_bytes,
                    "converted"
                );
                if rejected > 0 {
                    tracing::warn!(bucket, key, rejected, errors_file = ?errors_file, "records rejected");
                }
                metrics
                    .count("RecordsConverted", records as u64)
                    .count("RecordsRejected", rejected as u64)
                    .count("AvroFilesWritten", files.len() as u64);
                Ok((
                    ObjectOutcome::Converted {
                        bucket,
                        key,
                        records,
                        rejected,
                        files,
                        errors_file,
                    },
                    etag,
                ))
            }
            Err(ConvertError::Input(reason)) => self
                .reject_input(object, Rejected::Read(input), &reason, &metadata, deadline)
                .await
                .map(|outcome| {
                    metrics.count("InputsRejected", 1);
                    (outcome, etag)
                }),
            Err(ConvertError::Writer(e)) => Err(HandlerError::Conversion {
                bucket,
                key,
                reason: e.to_string(),
            }),
        }
    }

    /// Puts the reason and a copy of the input under the error prefix: the bytes read, or,
    /// for an input refused unread, a server-side copy (none over `CopyObject`'s 5 GiB: the
    /// reason then says the input stays only at its source).
    async fn reject_input(
        &self,
        object: &S3ObjectEvent,
        input: Rejected,
        reason: &InputError,
        metadata: &SourceMetadata,
        deadline: &Deadline,
    ) -> Result<ObjectOutcome, HandlerError> {
        let errors = &self.config.errors;
        let errors_key = layout::errors_key(&errors.prefix, &object.key);
        let copy_key = layout::rejected_input_key(&errors.prefix, &object.key);
        let copied = !matches!(input, Rejected::Unread { size } if size > MAX_COPY_BYTES);
        let copy = copied.then(|| format!("s3://{}/{copy_key}", errors.bucket));
        let kind = match reason {
            InputError::NotSnappy(_) => "not_snappy",
            InputError::NotJson { .. } => "not_json",
            InputError::Empty => "empty",
            InputError::TooLarge { .. } => "too_large",
        };
        let mut record = json!({
            "source": format!("s3://{}/{}", object.bucket, object.key),
            "etag": object.etag,
            "kind": kind,
            "reason": reason.to_string(),
            "copy": copy,
        });
        if !copied {
            record["copy_skipped"] = json!(format!(
                "over CopyObject's {MAX_COPY_BYTES} bytes: the input is kept only at its source"
            ));
        }
        let mut line = serde_json::to_vec(&record).expect("JSON values serialise");
        line.push(b'\n');
        let mut puts = Vec::with_capacity(2);
        match input {
            Rejected::Read(input) => puts.push(Put {
                bucket: &errors.bucket,
                key: copy_key,
                body: input,
                content_type: "application/octet-stream",
            }),
            Rejected::Unread { .. } if copied => copy_object(
                &self.s3,
                (&object.bucket, &object.key, None),
                (&errors.bucket, &copy_key),
                deadline,
            )
            .await
            .map_err(HandlerError::Write)?,
            Rejected::Unread { .. } => {}
        }
        puts.push(Put {
            bucket: &errors.bucket,
            key: errors_key.clone(),
            body: Bytes::from(line),
            content_type: JSONL_CONTENT_TYPE,
        });
        self.put_all(puts, metadata, deadline).await?;
        let copy = copy.unwrap_or_else(|| "(not copied)".to_owned());
        tracing::warn!(
            bucket = object.bucket,
            key = object.key,
            reason = %reason,
            copy,
            "input rejected"
        );
        Ok(ObjectOutcome::InputRejected {
            bucket: object.bucket.clone(),
            key: object.key.clone(),
            reason: reason.to_string(),
            errors_file: format!("s3://{}/{errors_key}", errors.bucket),
            copy,
        })
    }

    async fn put_all(
        &self,
        puts: Vec<Put<'_>>,
        metadata: &SourceMetadata,
        deadline: &Deadline,
    ) -> Result<(), HandlerError> {
        let metadata = metadata.pairs();
        futures::stream::iter(puts)
            .map(|put| {
                let metadata = &metadata;
                async move {
                    put_object_bytes(
                        &self.s3,
                        put.bucket,
                        &put.key,
                        put.body,
                        put.content_type,
                        metadata,
                        deadline,
                    )
                    .await
                }
            })
            .buffer_unordered(PUT_CONCURRENCY)
            .try_collect::<()>()
            .await
            .map_err(HandlerError::Write)
    }
}

/// What a rejected input's copy is made from.
enum Rejected {
    /// The bytes read (and found unusable).
    Read(Bytes),
    /// Nothing: refused from its size.
    Unread { size: u64 },
}

/// `CopyObject`'s limit for one request (5 GiB).
const MAX_COPY_BYTES: u64 = 5 << 30;

/// Conversions of one event before an input that keeps being replaced is left to a retry.
const MAX_CONVERSION_ROUNDS: usize = 3;

struct Put<'a> {
    bucket: &'a str,
    key: String,
    body: Bytes,
    content_type: &'static str,
}

/// `x-amz-meta-*` on every output, so any file can be traced to the input it came from.
struct SourceMetadata {
    bucket: String,
    key: String,
    etag: String,
}

impl SourceMetadata {
    fn new(object: &S3ObjectEvent) -> Self {
        Self {
            bucket: object.bucket.clone(),
            // Metadata travels as HTTP headers: ASCII only.
            key: percent_encode(&object.key),
            etag: object.etag.clone().unwrap_or_default(),
        }
    }

    fn pairs(&self) -> Vec<(&str, &str)> {
        vec![
            ("source-bucket", self.bucket.as_str()),
            ("source-key", self.key.as_str()),
            ("source-etag", self.etag.as_str()),
        ]
    }
}

/// Percent-encodes everything but unreserved characters and `/`.
fn percent_encode(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for &b in key.as_bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests;
