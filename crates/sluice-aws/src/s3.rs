//! Whole-object S3 reads and writes with errors a handler can act on: a missing object
//! ([`S3Error::NotFound`], permanent — often a notification for an object deleted
//! since), a transient failure (retry or let the event be redelivered), or a
//! permanent one.

use aws_sdk_s3::Client;
use aws_sdk_s3::operation::get_object::GetObjectError;
use aws_sdk_s3::primitives::ByteStream;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;
use bytes::Bytes;

use std::future::Future;

use crate::error::{AwsError, ErrorKind};
use crate::retry::{Backoff, Deadline, retry_transient_if};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum S3Error {
    #[error("s3://{bucket}/{key} does not exist")]
    NotFound { bucket: String, key: String },
    #[error("S3 {operation} s3://{bucket}/{key} failed transiently: {code}: {message}")]
    Transient {
        operation: &'static str,
        bucket: String,
        key: String,
        code: String,
        message: String,
    },
    #[error("S3 {operation} s3://{bucket}/{key} failed: {code}: {message}")]
    Permanent {
        operation: &'static str,
        bucket: String,
        key: String,
        code: String,
        message: String,
    },
    /// The object is larger than the reader's limit; its body was not read (permanent).
    #[error("s3://{bucket}/{key} is {size} bytes, over the limit of {limit} bytes; not read")]
    TooLarge {
        bucket: String,
        key: String,
        size: u64,
        limit: u64,
    },
}

impl S3Error {
    /// What the failure means, in the classification every service shares.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::NotFound { .. } => ErrorKind::NotFound,
            Self::Transient { .. } => ErrorKind::Transient,
            Self::Permanent { .. } | Self::TooLarge { .. } => ErrorKind::Permanent,
        }
    }

    /// Whether a later attempt could succeed.
    pub fn is_transient(&self) -> bool {
        self.kind().is_retryable()
    }

    /// Whether this is an attempt cut off at the deadline (no answer, cause unknown).
    fn is_deadline_cut(&self) -> bool {
        matches!(self, Self::Transient { code, .. } if code == "TimeoutError")
    }

    /// This (earlier) error, noting that the attempt after it was cut off at the deadline.
    fn then_cut_off(mut self) -> Self {
        if let Self::Transient { message, .. } | Self::Permanent { message, .. } = &mut self {
            message.push_str(" (the last attempt got no answer before the invocation deadline)");
        }
        self
    }

    fn from_sdk<E>(
        operation: &'static str,
        bucket: &str,
        key: &str,
        err: &SdkError<E, HttpResponse>,
    ) -> Self
    where
        E: aws_smithy_types::error::metadata::ProvideErrorMetadata + std::error::Error + 'static,
    {
        Self::on_object(AwsError::from_sdk("S3", operation, err), bucket, key)
    }

    /// A classified call's failure, about `s3://bucket/key`.
    pub fn on_object(err: AwsError, bucket: &str, key: &str) -> Self {
        let (bucket, key) = (bucket.to_owned(), key.to_owned());
        let AwsError {
            kind,
            operation,
            code,
            message,
            ..
        } = err;
        match kind {
            ErrorKind::NotFound => Self::NotFound { bucket, key },
            ErrorKind::Transient | ErrorKind::OutOfTime => Self::Transient {
                operation,
                bucket,
                key,
                code,
                message,
            },
            ErrorKind::Permanent => Self::Permanent {
                operation,
                bucket,
                key,
                code,
                message,
            },
        }
    }
}

impl From<S3Error> for AwsError {
    fn from(err: S3Error) -> Self {
        let kind = err.kind();
        let message = err.to_string();
        let (operation, code) = match err {
            S3Error::Transient {
                operation, code, ..
            }
            | S3Error::Permanent {
                operation, code, ..
            } => (operation, code),
            S3Error::NotFound { .. } => ("GetObject", "NoSuchKey".to_owned()),
            S3Error::TooLarge { .. } => ("GetObject", "TooLarge".to_owned()),
        };
        Self {
            kind,
            service: "S3",
            operation,
            code,
            message,
        }
    }
}

fn is_not_found(err: &SdkError<GetObjectError, HttpResponse>) -> bool {
    if matches!(err.as_service_error(), Some(GetObjectError::NoSuchKey(_))) {
        return true;
    }
    match err {
        SdkError::ServiceError(service) => {
            let code = aws_smithy_types::error::metadata::ProvideErrorMetadata::code(service.err());
            code == Some("NoSuchKey")
                || (service.raw().status().as_u16() == 404 && code != Some("NoSuchBucket"))
        }
        _ => false,
    }
}

/// Reads a whole object, retrying transient failures (throttling, 5xx, dropped or
/// stalled connections) with [`Backoff::default`] within `deadline`; a call still
/// unanswered at the deadline is cut off and reported as transient.
pub async fn get_object_bytes(
    client: &Client,
    bucket: &str,
    key: &str,
    deadline: &Deadline,
) -> Result<Bytes, S3Error> {
    get_object_version_bytes(client, bucket, key, None, deadline).await
}

/// Reads a whole object at `version_id` (the version an event names, on a versioned
/// bucket), or the current one when `None`, retrying as [`get_object_bytes`] does. A
/// version that no longer exists is [`S3Error::NotFound`].
pub async fn get_object_version_bytes(
    client: &Client,
    bucket: &str,
    key: &str,
    version_id: Option<&str>,
    deadline: &Deadline,
) -> Result<Bytes, S3Error> {
    get_retried(client, bucket, key, version_id, None, deadline)
        .await
        .map(|(body, _)| body)
}

/// Reads a whole object (at `version_id`, or the current one) with its ETag, only if it
/// is at most `limit` bytes: a larger one is [`S3Error::TooLarge`] before its body is
/// read — from `Content-Length`, or, without one, as soon as the bytes read pass the
/// limit — so an object of any size costs at most `limit` bytes of memory. Retries as
/// [`get_object_bytes`] does.
pub async fn get_object_bytes_within(
    client: &Client,
    bucket: &str,
    key: &str,
    version_id: Option<&str>,
    limit: u64,
    deadline: &Deadline,
) -> Result<(Bytes, Option<String>), S3Error> {
    get_retried(client, bucket, key, version_id, Some(limit), deadline).await
}

/// The current ETag of an object (`HeadObject`), `None` if it does not exist; retries
/// transient failures within `deadline`.
pub async fn head_object_etag(
    client: &Client,
    bucket: &str,
    key: &str,
    deadline: &Deadline,
) -> Result<Option<String>, S3Error> {
    let earlier = std::sync::Mutex::new(None);
    let result = retry_transient_if(&Backoff::default(), deadline, S3Error::is_transient, || {
        let request = client.head_object().bucket(bucket).key(key);
        remember_cause(&earlier, async move {
            match deadline.bound(request.send()).await {
                Ok(output) => Ok(Some(output.e_tag.unwrap_or_default())),
                Err(err)
                    if matches!(err.as_service_error(), Some(e) if e.is_not_found())
                        || err
                            .raw_response()
                            .is_some_and(|r| r.status().as_u16() == 404) =>
                {
                    Ok(None)
                }
                Err(err) => Err(S3Error::from_sdk("HeadObject", bucket, key, &err)),
            }
        })
    })
    .await;
    with_cause(result, earlier)
}

/// Copies an object (at `version_id`, or the current one) server-side, without reading
/// it (`CopyObject`: up to 5 GiB), retrying transient failures within `deadline`.
pub async fn copy_object(
    client: &Client,
    from: (&str, &str, Option<&str>),
    to: (&str, &str),
    deadline: &Deadline,
) -> Result<(), S3Error> {
    let (from_bucket, from_key, version_id) = from;
    let (to_bucket, to_key) = to;
    let mut source = format!("{from_bucket}/{}", copy_source_key(from_key));
    if let Some(version) = version_id {
        source.push_str("?versionId=");
        source.push_str(&copy_source_key(version));
    }
    let earlier = std::sync::Mutex::new(None);
    let result = retry_transient_if(&Backoff::default(), deadline, S3Error::is_transient, || {
        let request = client
            .copy_object()
            .copy_source(&source)
            .bucket(to_bucket)
            .key(to_key);
        remember_cause(&earlier, async move {
            deadline
                .bound(request.send())
                .await
                .map(|_| ())
                .map_err(|err| S3Error::from_sdk("CopyObject", to_bucket, to_key, &err))
        })
    })
    .await;
    with_cause(result, earlier)
}

/// A key as `x-amz-copy-source` wants it: URL-encoded, `/` kept.
fn copy_source_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for byte in key.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(byte as char);
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// Reads the current object with its ETag, for a read-modify-write guarded by
/// [`put_object_if`]; `None` when the object does not exist. Retries as
/// [`get_object_bytes`] does.
pub async fn get_object_with_etag(
    client: &Client,
    bucket: &str,
    key: &str,
    deadline: &Deadline,
) -> Result<Option<(Bytes, String)>, S3Error> {
    match get_retried(client, bucket, key, None, None, deadline).await {
        Ok((body, etag)) => Ok(Some((body, etag.unwrap_or_default()))),
        Err(S3Error::NotFound { .. }) => Ok(None),
        Err(err) => Err(err),
    }
}

async fn get_retried(
    client: &Client,
    bucket: &str,
    key: &str,
    version_id: Option<&str>,
    limit: Option<u64>,
    deadline: &Deadline,
) -> Result<(Bytes, Option<String>), S3Error> {
    let earlier = std::sync::Mutex::new(None);
    let result = retry_transient_if(&Backoff::default(), deadline, S3Error::is_transient, || {
        remember_cause(
            &earlier,
            get_once(client, bucket, key, version_id, limit, deadline),
        )
    })
    .await;
    with_cause(result, earlier)
}

/// Runs one attempt, keeping its error (unless it is a cut at the deadline) in `earlier`.
async fn remember_cause<T>(
    earlier: &std::sync::Mutex<Option<S3Error>>,
    attempt: impl Future<Output = Result<T, S3Error>>,
) -> Result<T, S3Error> {
    let outcome = attempt.await;
    if let Err(err) = &outcome
        && !err.is_deadline_cut()
        && let Ok(mut slot) = earlier.lock()
    {
        *slot = Some(err.clone());
    }
    outcome
}

/// The final result of a retried call; when the last attempt was only cut off at the
/// deadline, the error reported is the one that caused the retries (a `SlowDown`, a
/// 500), which says more than "no answer".
fn with_cause<T>(
    result: Result<T, S3Error>,
    earlier: std::sync::Mutex<Option<S3Error>>,
) -> Result<T, S3Error> {
    match result {
        Err(err) if err.is_deadline_cut() => match earlier.into_inner().ok().flatten() {
            Some(cause) => Err(cause.then_cut_off()),
            None => Err(err),
        },
        other => other,
    }
}

async fn get_once(
    client: &Client,
    bucket: &str,
    key: &str,
    version_id: Option<&str>,
    limit: Option<u64>,
    deadline: &Deadline,
) -> Result<(Bytes, Option<String>), S3Error> {
    let call = client
        .get_object()
        .bucket(bucket)
        .key(key)
        .set_version_id(version_id.map(str::to_owned))
        .send();
    let output = deadline.bound(call).await.map_err(|err| {
        if is_not_found(&err) {
            S3Error::NotFound {
                bucket: bucket.to_owned(),
                key: key.to_owned(),
            }
        } else {
            S3Error::from_sdk("GetObject", bucket, key, &err)
        }
    })?;
    let body_error = |code: &str, message: String| S3Error::Transient {
        operation: "GetObject",
        bucket: bucket.to_owned(),
        key: key.to_owned(),
        code: code.to_owned(),
        message,
    };
    let etag = output.e_tag.clone();
    let too_large = |size: u64, limit: u64| S3Error::TooLarge {
        bucket: bucket.to_owned(),
        key: key.to_owned(),
        size,
        limit,
    };
    let length = output.content_length.and_then(|n| u64::try_from(n).ok());
    if let (Some(limit), Some(size)) = (limit, length)
        && size > limit
    {
        return Err(too_large(size, limit));
    }
    let mut body = output.body;
    let read = async {
        match (limit, length) {
            // No length given: read no more than the limit.
            (Some(limit), None) => {
                let mut read = bytes::BytesMut::new();
                while let Some(chunk) = body.try_next().await? {
                    let size = (read.len() + chunk.len()) as u64;
                    if size > limit {
                        return Ok(Err(too_large(size, limit)));
                    }
                    read.extend_from_slice(&chunk);
                }
                Ok(Ok(read.freeze()))
            }
            // No limit, or a length within it: the whole body.
            _ => body.collect().await.map(|b| Ok(b.into_bytes())),
        }
    };
    match tokio::time::timeout_at(deadline.instant(), read).await {
        Ok(Ok(Ok(bytes))) => Ok((bytes, etag)),
        Ok(Ok(Err(too_large))) => Err(too_large),
        Ok(Err(err)) => Err(body_error(
            "BodyReadError",
            DisplayErrorContext(&err).to_string(),
        )),
        Err(_) => Err(body_error(
            "TimeoutError",
            "body not read before the invocation deadline".to_owned(),
        )),
    }
}

/// Writes a whole object with its content type and user metadata (`x-amz-meta-*`),
/// retrying transient failures with [`Backoff::default`] within `deadline`.
pub async fn put_object_bytes(
    client: &Client,
    bucket: &str,
    key: &str,
    body: impl Into<Bytes>,
    content_type: &str,
    metadata: &[(&str, &str)],
    deadline: &Deadline,
) -> Result<(), S3Error> {
    let body = body.into();
    let earlier = std::sync::Mutex::new(None);
    // The fluent builder holds a one-shot body stream, so each attempt builds afresh.
    let result = retry_transient_if(&Backoff::default(), deadline, S3Error::is_transient, || {
        let request = metadata
            .iter()
            .fold(client.put_object(), |request, (name, value)| {
                request.metadata(*name, *value)
            })
            .bucket(bucket)
            .key(key)
            .content_type(content_type)
            .body(ByteStream::from(body.clone()));
        remember_cause(&earlier, async move {
            deadline
                .bound(request.send())
                .await
                .map(|_| ())
                .map_err(|err| S3Error::from_sdk("PutObject", bucket, key, &err))
        })
    })
    .await;
    with_cause(result, earlier)
}

/// The precondition of a [`put_object_if`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutCondition {
    /// Only if no object has the key yet (`If-None-Match: *`).
    Absent,
    /// Only if the current object still has this ETag (`If-Match`).
    Unchanged(String),
}

/// What a conditional put did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutOutcome {
    Written,
    /// The precondition did not hold (412, or 409 for a concurrent conditional
    /// write): somebody else wrote first; read again and decide again.
    PreconditionFailed,
}

/// Writes a whole object only if `condition` holds (S3 conditional writes), retrying
/// transient failures within `deadline`. A failed precondition is an outcome, not an
/// error: the caller re-reads and merges.
pub async fn put_object_if(
    client: &Client,
    bucket: &str,
    key: &str,
    body: impl Into<Bytes>,
    content_type: &str,
    condition: &PutCondition,
    deadline: &Deadline,
) -> Result<PutOutcome, S3Error> {
    let body = body.into();
    let earlier = std::sync::Mutex::new(None);
    let result = retry_transient_if(&Backoff::default(), deadline, S3Error::is_transient, || {
        let request = client
            .put_object()
            .bucket(bucket)
            .key(key)
            .content_type(content_type)
            .body(ByteStream::from(body.clone()));
        let request = match condition {
            PutCondition::Absent => request.if_none_match("*"),
            PutCondition::Unchanged(etag) => request.if_match(etag),
        };
        remember_cause(&earlier, async move {
            match deadline.bound(request.send()).await {
                Ok(_) => Ok(PutOutcome::Written),
                Err(err) if is_precondition_failure(&err) => Ok(PutOutcome::PreconditionFailed),
                Err(err) => Err(S3Error::from_sdk("PutObject", bucket, key, &err)),
            }
        })
    })
    .await;
    with_cause(result, earlier)
}

fn is_precondition_failure<E>(err: &SdkError<E, HttpResponse>) -> bool
where
    E: aws_smithy_types::error::metadata::ProvideErrorMetadata,
{
    match err {
        SdkError::ServiceError(service) => {
            let code = aws_smithy_types::error::metadata::ProvideErrorMetadata::code(service.err());
            matches!(
                code,
                Some("PreconditionFailed") | Some("ConditionalRequestConflict")
            ) || matches!(service.raw().status().as_u16(), 412 | 409)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{http_response, xml_error};
    use aws_sdk_s3::config::retry::RetryConfig;
    use aws_sdk_s3::operation::get_object::GetObjectOutput;
    use aws_sdk_s3::operation::put_object::PutObjectOutput;
    use aws_sdk_s3::types::error::NoSuchKey;
    use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;
    use tokio::time::Instant;

    fn client(rules: &[&Rule]) -> Client {
        mock_client!(aws_sdk_s3, RuleMode::Sequential, rules, |c| c
            .retry_config(RetryConfig::disabled()))
    }

    #[tokio::test(start_paused = true)]
    async fn gets_the_whole_body() {
        let rule = mock!(Client::get_object)
            .match_requests(|req| req.bucket() == Some("raw") && req.key() == Some("a/b.json"))
            .then_output(|| {
                GetObjectOutput::builder()
                    .body(ByteStream::from_static(b"{\"n\":1}"))
                    .build()
            });
        let bytes = get_object_bytes(&client(&[&rule]), "raw", "a/b.json", &soon())
            .await
            .unwrap();
        assert_eq!(&bytes[..], b"{\"n\":1}");
    }

    #[tokio::test(start_paused = true)]
    async fn gets_the_version_asked_for() {
        let rule = mock!(Client::get_object)
            .match_requests(|req| req.key() == Some("k") && req.version_id() == Some("v-1"))
            .then_output(|| {
                GetObjectOutput::builder()
                    .body(ByteStream::from_static(b"old"))
                    .build()
            });
        let bytes = get_object_version_bytes(&client(&[&rule]), "raw", "k", Some("v-1"), &soon())
            .await
            .unwrap();
        assert_eq!(&bytes[..], b"old");
        assert_eq!(rule.num_calls(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn no_such_key_is_not_found() {
        let modeled = mock!(Client::get_object)
            .then_error(|| GetObjectError::NoSuchKey(NoSuchKey::builder().build()));
        let wire = mock!(Client::get_object).then_http_response(|| {
            xml_error(404, "NoSuchKey", "The specified key does not exist.")
        });
        let client = client(&[&modeled, &wire]);
        for _ in 0..2 {
            let err = get_object_bytes(&client, "raw", "gone.json", &soon())
                .await
                .unwrap_err();
            assert_eq!(
                err,
                S3Error::NotFound {
                    bucket: "raw".to_owned(),
                    key: "gone.json".to_owned()
                }
            );
            assert!(!err.is_transient());
        }
    }

    #[tokio::test(start_paused = true)]
    async fn missing_bucket_is_permanent_not_not_found() {
        let rule = mock!(Client::get_object).then_http_response(|| {
            xml_error(404, "NoSuchBucket", "The specified bucket does not exist")
        });
        let err = get_object_bytes(&client(&[&rule]), "nope", "k", &soon())
            .await
            .unwrap_err();
        assert!(
            matches!(&err, S3Error::Permanent { code, .. } if code == "NoSuchBucket"),
            "{err:?}"
        );
    }

    fn soon() -> Deadline {
        Deadline::after(Duration::from_secs(30))
    }

    #[tokio::test(start_paused = true)]
    async fn an_object_over_the_limit_is_refused_from_its_length_without_reading_it() {
        // 5 GB announced, a body that would fail if read: only the length is looked at.
        let rule = mock!(Client::get_object).then_output(|| {
            GetObjectOutput::builder()
                .content_length(5_000_000_000)
                .body(ByteStream::from_static(b"not the announced five gigabytes"))
                .build()
        });
        let err =
            get_object_bytes_within(&client(&[&rule]), "raw", "big", Some("v1"), 1000, &soon())
                .await
                .unwrap_err();
        assert_eq!(
            err,
            S3Error::TooLarge {
                bucket: "raw".to_owned(),
                key: "big".to_owned(),
                size: 5_000_000_000,
                limit: 1000
            }
        );
        assert!(!err.is_transient());
        assert_eq!(rule.num_calls(), 1, "not retried");
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_length_reading_stops_past_the_limit() {
        let under = mock!(Client::get_object).then_output(|| {
            GetObjectOutput::builder()
                .body(ByteStream::from_static(b"0123456789"))
                .build()
        });
        let over = mock!(Client::get_object).then_output(|| {
            GetObjectOutput::builder()
                .body(ByteStream::from_static(b"0123456789A"))
                .build()
        });
        let client = client(&[&under, &over]);
        let (bytes, _) = get_object_bytes_within(&client, "raw", "k", None, 10, &soon())
            .await
            .unwrap();
        assert_eq!(&bytes[..], b"0123456789");
        let err = get_object_bytes_within(&client, "raw", "k", None, 10, &soon())
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                S3Error::TooLarge {
                    size: 11,
                    limit: 10,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_object_within_the_limit_is_read_whole() {
        let rule = mock!(Client::get_object)
            .match_requests(|req| req.version_id() == Some("v2"))
            .then_output(|| {
                GetObjectOutput::builder()
                    .content_length(10)
                    .e_tag("\"e2\"")
                    .body(ByteStream::from_static(b"0123456789"))
                    .build()
            });
        let (bytes, etag) =
            get_object_bytes_within(&client(&[&rule]), "raw", "k", Some("v2"), 10, &soon())
                .await
                .unwrap();
        assert_eq!(&bytes[..], b"0123456789");
        assert_eq!(etag.as_deref(), Some("\"e2\""));
    }

    #[tokio::test(start_paused = true)]
    async fn head_gives_the_current_etag_or_none_when_gone() {
        let here = mock!(Client::head_object).then_output(|| {
            aws_sdk_s3::operation::head_object::HeadObjectOutput::builder()
                .e_tag("\"e3\"")
                .build()
        });
        let gone = mock!(Client::head_object).then_http_response(|| http_response(404, ""));
        let client = client(&[&here, &gone]);
        assert_eq!(
            head_object_etag(&client, "raw", "k", &soon())
                .await
                .unwrap()
                .as_deref(),
            Some("\"e3\"")
        );
        assert_eq!(
            head_object_etag(&client, "raw", "k", &soon())
                .await
                .unwrap(),
            None
        );
    }

    #[tokio::test(start_paused = true)]
    async fn copies_name_the_encoded_source_and_its_version() {
        let rule = mock!(Client::copy_object)
            .match_requests(|req| {
                req.copy_source() == Some("raw/incoming/a%20b%2Bc.json.snappy?versionId=v%2B1")
                    && req.bucket() == Some("raw")
                    && req.key() == Some("errors/a b+c.json.snappy")
            })
            .then_output(|| {
                aws_sdk_s3::operation::copy_object::CopyObjectOutput::builder().build()
            });
        copy_object(
            &client(&[&rule]),
            ("raw", "incoming/a b+c.json.snappy", Some("v+1")),
            ("raw", "errors/a b+c.json.snappy"),
            &soon(),
        )
        .await
        .unwrap();
        assert_eq!(rule.num_calls(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn slow_down_and_500_are_retried_within_the_deadline() {
        let failing = mock!(Client::get_object)
            .sequence()
            .http_response(|| xml_error(503, "SlowDown", "Please reduce your request rate."))
            .http_response(|| http_response(500, ""))
            .build();
        let ok = mock!(Client::get_object).then_output(|| {
            GetObjectOutput::builder()
                .body(ByteStream::from_static(b"late"))
                .build()
        });
        let client = client(&[&failing, &ok]);
        let bytes = get_object_bytes(&client, "raw", "k", &soon())
            .await
            .unwrap();
        assert_eq!(&bytes[..], b"late");
        assert_eq!(failing.num_calls(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn transient_until_the_deadline_is_transient_access_denied_is_permanent() {
        let slow = mock!(Client::get_object)
            .match_requests(|req| req.key() == Some("busy"))
            .then_http_response(|| xml_error(503, "SlowDown", "Please reduce your request rate."));
        let denied = mock!(Client::get_object)
            .then_http_response(|| xml_error(403, "AccessDenied", "Access Denied"));
        let client = mock_client!(aws_sdk_s3, RuleMode::MatchAny, &[&slow, &denied], |c| c
            .retry_config(RetryConfig::disabled()));
        let started = Instant::now();
        let deadline = Deadline::after(Duration::from_secs(5));
        let err = get_object_bytes(&client, "raw", "busy", &deadline)
            .await
            .unwrap_err();
        assert!(err.is_transient(), "{err:?}");
        assert!(err.to_string().contains("SlowDown"));
        assert!(slow.num_calls() > 1, "retried");
        assert!(Instant::now() - started < Duration::from_secs(5));
        let denied_err = get_object_bytes(&client, "raw", "k", &soon())
            .await
            .unwrap_err();
        assert!(
            matches!(&denied_err, S3Error::Permanent { code, .. } if code == "AccessDenied"),
            "{denied_err:?}"
        );
        assert_eq!(denied.num_calls(), 1, "a permanent error is not retried");
    }

    #[tokio::test(start_paused = true)]
    async fn a_read_cut_off_at_the_deadline_reports_what_caused_the_retries() {
        let slow_down = mock!(Client::get_object)
            .sequence()
            .http_response(|| xml_error(503, "SlowDown", "Please reduce your request rate."))
            .build();
        let client = client(&[&slow_down]);
        let earlier = std::sync::Mutex::new(None);
        let deadline = Deadline::after(Duration::from_secs(5));
        // An attempt that fails with SlowDown, then one that never answers.
        let first = remember_cause(
            &earlier,
            get_once(&client, "raw", "k", None, None, &deadline),
        )
        .await;
        assert!(first.is_err());
        let never = remember_cause(&earlier, async {
            tokio::time::sleep(Duration::from_secs(10)).await;
            Ok::<Bytes, S3Error>(Bytes::new())
        });
        let cut = deadline
            .bound(async { Ok::<_, SdkError<GetObjectError, HttpResponse>>(never.await) })
            .await;
        let cut = cut.map_err(|err| S3Error::from_sdk("GetObject", "raw", "k", &err));
        let err = with_cause(cut.and_then(|inner| inner), earlier).unwrap_err();
        assert!(err.is_transient());
        let text = err.to_string();
        assert!(text.contains("SlowDown"), "{text}");
        assert!(
            text.contains("no answer before the invocation deadline"),
            "{text}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn put_sends_content_type_and_metadata_and_retries_transient_failures() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let failing = mock!(Client::put_object)
            .sequence()
            .http_response(|| xml_error(503, "SlowDown", "Please reduce your request rate."))
            .build();
        let recorder = seen.clone();
        let accepting = mock!(Client::put_object)
            .match_requests(move |req| {
                recorder.lock().unwrap().push((
                    req.content_type().map(str::to_owned),
                    req.metadata().and_then(|m| m.get("source-key")).cloned(),
                ));
                true
            })
            .then_output(|| PutObjectOutput::builder().e_tag("\"abc\"").build());
        let client = client(&[&failing, &accepting]);
        put_object_bytes(
            &client,
            "archive",
            "year=2026/part-0.avro",
            Bytes::from_static(b"Obj\x01"),
            "application/avro",
            &[("source-key", "raw/a.json")],
            &Deadline::after(Duration::from_secs(30)),
        )
        .await
        .unwrap();
        assert_eq!(failing.num_calls(), 1);
        assert_eq!(accepting.num_calls(), 1);
        assert_eq!(
            seen.lock().unwrap().last().cloned().unwrap(),
            (
                Some("application/avro".to_owned()),
                Some("raw/a.json".to_owned())
            )
        );
    }

    #[tokio::test(start_paused = true)]
    async fn put_gives_up_at_the_deadline_with_a_transient_error() {
        let rule = mock!(Client::put_object)
            .sequence()
            .http_response(|| xml_error(503, "SlowDown", "Please reduce your request rate."))
            .repeatedly()
            .build();
        let deadline = Deadline::after(Duration::from_secs(1));
        let err = put_object_bytes(
            &client(&[&rule]),
            "archive",
            "k",
            Bytes::new(),
            "text/plain",
            &[],
            &deadline,
        )
        .await
        .unwrap_err();
        assert!(err.is_transient(), "{err:?}");
        assert!(rule.num_calls() > 1);
        assert!(Instant::now() < deadline.instant());
    }

    #[tokio::test(start_paused = true)]
    async fn put_does_not_retry_a_permanent_failure() {
        let rule = mock!(Client::put_object)
            .sequence()
            .http_response(|| xml_error(403, "AccessDenied", "Access Denied"))
            .repeatedly()
            .build();
        let err = put_object_bytes(
            &client(&[&rule]),
            "archive",
            "k",
            Bytes::new(),
            "text/plain",
            &[],
            &Deadline::after(Duration::from_secs(30)),
        )
        .await
        .unwrap_err();
        assert!(
            matches!(&err, S3Error::Permanent { code, .. } if code == "AccessDenied"),
            "{err:?}"
        );
        assert_eq!(rule.num_calls(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn conditional_put_sends_its_precondition_and_a_412_is_an_outcome() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let recorder = Arc::clone(&seen);
        let rule = mock!(Client::put_object)
            .match_requests(move |req| {
                recorder.lock().unwrap().push((
                    req.if_match().map(str::to_owned),
                    req.if_none_match().map(str::to_owned),
                ));
                true
            })
            .sequence()
            .http_response(|| {
                xml_error(
                    412,
                    "PreconditionFailed",
                    "At least one of the pre-conditions you specified did not hold",
                )
            })
            .http_response(|| xml_error(503, "SlowDown", "Reduce your request rate"))
            .output(|| PutObjectOutput::builder().build())
            .build();
        let s3 = client(&[&rule]);
        let put = |condition: PutCondition| {
            let s3 = s3.clone();
            async move {
                put_object_if(
                    &s3,
                    "b",
                    "k",
                    Bytes::from_static(b"x"),
                    "text/plain",
                    &condition,
                    &soon(),
                )
                .await
            }
        };
        assert_eq!(
            put(PutCondition::Unchanged("\"e1\"".into())).await,
            Ok(PutOutcome::PreconditionFailed)
        );
        // A transient failure is retried; the precondition goes with every attempt.
        assert_eq!(put(PutCondition::Absent).await, Ok(PutOutcome::Written));
        assert_eq!(
            *seen.lock().unwrap(),
            vec![
                (Some("\"e1\"".to_owned()), None),
                (None, Some("*".to_owned())),
                (None, Some("*".to_owned())),
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_read_with_its_etag_or_none_when_absent() {
        let found = mock!(Client::get_object)
            .match_requests(|req| req.key() == Some("there"))
            .then_output(|| {
                GetObjectOutput::builder()
                    .body(ByteStream::from_static(b"body"))
                    .e_tag("\"e7\"")
                    .build()
            });
        let missing = mock!(Client::get_object)
            .then_error(|| GetObjectError::NoSuchKey(NoSuchKey::builder().build()));
        let s3 = client(&[&found, &missing]);
        let got = get_object_with_etag(&s3, "b", "there", &soon())
            .await
            .unwrap();
        assert_eq!(
            got,
            Some((Bytes::from_static(b"body"), "\"e7\"".to_owned()))
        );
        assert_eq!(
            get_object_with_etag(&s3, "b", "gone", &soon()).await,
            Ok(None)
        );
    }
}
