//! The job API over HTTP(S): what goes on the wire and how each answer is read and
//! classified (transient, rejected, unauthorized, too large). Decides only that
//! classification; what to do about it is the handler's.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Deserialize;

use super::{
    ApiError, DEFAULT_MAX_ANSWER_BYTES, JobApi, JobStatus, MAX_JOB_ID_BYTES, StartRequest,
};
use crate::token::TokenSource;

#[derive(Debug, Deserialize)]
struct StartAnswer {
    job_id: String,
}

#[derive(Debug, Deserialize)]
struct StatusAnswer {
    status: String,
    #[serde(default)]
    message: Option<String>,
}

/// Characters escaped in a job id path segment (everything but `A-Za-z0-9-._~`).
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Longest response body kept in an error message.
const BODY_SNIPPET: usize = 300;

/// The job API over HTTP(S), with the bearer token from `T`.
#[derive(Clone)]
pub struct HttpJobApi<T> {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    base: String,
    tokens: Arc<T>,
    request_timeout: Duration,
    max_answer_bytes: usize,
}

impl<T: TokenSource> HttpJobApi<T> {
    /// `base` is the validated base URL (no trailing slash needed); each request
    /// gives up after `request_timeout`.
    pub fn new(base: &str, tokens: T, request_timeout: Duration) -> std::io::Result<Self> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = hyper_rustls::HttpsConnectorBuilder::new();
        let builder = match builder.with_provider_and_native_roots(provider.clone()) {
            Ok(builder) => builder,
            // No system roots: fine for a plain-http API (loopback), fatal for https.
            Err(e) if base.starts_with("https://") => return Err(e),
            Err(_) => hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(
                rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .map_err(std::io::Error::other)?
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth(),
            ),
        };
        let connector = builder.https_or_http().enable_http1().build();
        Ok(HttpJobApi {
            client: Client::builder(TokioExecutor::new()).build(connector),
            base: base.trim_end_matches('/').to_owned(),
            tokens: Arc::new(tokens),
            request_timeout,
            max_answer_bytes: DEFAULT_MAX_ANSWER_BYTES,
        })
    }

    /// Reads at most `limit` bytes of any answer (default [`DEFAULT_MAX_ANSWER_BYTES`]).
    pub fn with_max_answer_bytes(mut self, limit: usize) -> Self {
        self.max_answer_bytes = limit;
        self
    }

    async fn send_once(
        &self,
        operation: &'static str,
        method: &Method,
        uri: &Uri,
        body: &Bytes,
        idempotency_key: Option<&str>,
        token: &str,
    ) -> Result<(StatusCode, Bytes), ApiError> {
        let mut request = Request::builder()
            .method(method.clone())
            .uri(uri.clone())
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header(header::ACCEPT, "application/json");
        if !body.is_empty() {
            request = request.header(header::CONTENT_TYPE, "application/json");
        }
        if let Some(key) = idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        let request = request
            .body(Full::new(body.clone()))
            .map_err(|e| ApiError::Rejected {
                operation,
                status: 0,
                body: format!("request could not be built: {e}"),
            })?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| ApiError::Transient {
                    operation,
                    detail: format!("{e:?}"),
                })?;
            let status = response.status();
            let limit = self.max_answer_bytes;
            let bytes = Limited::new(response.into_body(), limit)
                .collect()
                .await
                .map_err(|e| {
                    if e.is::<LengthLimitError>() {
                        ApiError::TooLarge { operation, limit }
                    } else {
                        ApiError::Transient {
                            operation,
                            detail: format!("reading the answer: {e}"),
                        }
                    }
                })?
                .to_bytes();
            Ok((status, bytes))
        };
        tokio::time::timeout(self.request_timeout, exchange)
            .await
            .map_err(|_| ApiError::Transient {
                operation,
                detail: format!("no answer within {:?}", self.request_timeout),
            })?
    }

    /// One call; on 401/403 the token is re-read once (it may have been rotated).
    async fn call(
        &self,
        operation: &'static str,
        method: Method,
        path: &str,
        body: Bytes,
        idempotency_key: Option<&str>,
    ) -> Result<(StatusCode, Bytes), ApiError> {
        let uri: Uri =
            format!("{}{}", self.base, path)
                .parse()
                .map_err(|e| ApiError::Rejected {
                    operation,
                    status: 0,
                    body: format!("invalid URL {}{path}: {e}", self.base),
                })?;
        let token = self.tokens.token().await?;
        let (status, bytes) = self
            .send_once(operation, &method, &uri, &body, idempotency_key, &token)
            .await?;
        if !is_auth_failure(status) {
            return Ok((status, bytes));
        }
        tracing::warn!(
            operation,
            status = status.as_u16(),
            "job API refused the token; re-reading it"
        );
        let token = self.tokens.refresh().await?;
        self.send_once(operation, &method, &uri, &body, idempotency_key, &token)
            .await
    }
}

fn is_auth_failure(status: StatusCode) -> bool {
    status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN
}

/// The error for a non-2xx answer (other than a status call's 404).
fn classify_failure(operation: &'static str, status: StatusCode, body: &[u8]) -> ApiError {
    let text = snippet(body);
    if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        ApiError::Transient {
            operation,
            detail: format!("HTTP {}: {text}", status.as_u16()),
        }
    } else if is_auth_failure(status) {
        ApiError::Unauthorized {
            operation,
            status: status.as_u16(),
        }
    } else {
        ApiError::Rejected {
            operation,
            status: status.as_u16(),
            body: text,
        }
    }
}

fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut out: String = text.chars().take(BODY_SNIPPET).collect();
    if text.chars().count() > BODY_SNIPPET {
        out.push('…');
    }
    out
}

fn unreadable(operation: &'static str, err: serde_json::Error, body: &[u8]) -> ApiError {
    ApiError::Transient {
        operation,
        detail: format!("unreadable answer ({err}): {}", snippet(body)),
    }
}

/// Parses a start answer (any 2xx).
pub fn parse_start(status: StatusCode, body: &[u8]) -> Result<String, ApiError> {
    const OP: &str = "start job";
    if !status.is_success() {
        return Err(classify_failure(OP, status, body));
    }
    let answer: StartAnswer = serde_json::from_slice(body).map_err(|e| unreadable(OP, e, body))?;
    if answer.job_id.trim().is_empty() {
        return Err(ApiError::Transient {
            operation: OP,
            detail: "answer carried an empty job_id".to_owned(),
        });
    }
    if answer.job_id.len() > MAX_JOB_ID_BYTES {
        return Err(ApiError::Rejected {
            operation: OP,
            status: status.as_u16(),
            body: format!(
                "answer carried a job_id of {} bytes (at most {MAX_JOB_ID_BYTES}): {}",
                answer.job_id.len(),
                snippet(answer.job_id.as_bytes())
            ),
        });
    }
    Ok(answer.job_id)
}

/// Parses a status answer; 404 is [`ApiError::UnknownJob`].
pub fn parse_status(job_id: &str, status: StatusCode, body: &[u8]) -> Result<JobStatus, ApiError> {
    const OP: &str = "get job status";
    if status == StatusCode::NOT_FOUND {
        return Err(ApiError::UnknownJob {
            job_id: job_id.to_owned(),
        });
    }
    if !status.is_success() {
        return Err(classify_failure(OP, status, body));
    }
    let answer: StatusAnswer = serde_json::from_slice(body).map_err(|e| unreadable(OP, e, body))?;
    Ok(JobStatus::from_wire(&answer.status, answer.message))
}

impl<T: TokenSource> JobApi for HttpJobApi<T> {
    async fn start(&self, request: &StartRequest) -> Result<String, ApiError> {
        let body = serde_json::to_vec(request).map_err(|e| ApiError::Rejected {
            operation: "start job",
            status: 0,
            body: format!("request could not be encoded: {e}"),
        })?;
        let (status, answer) = self
            .call(
                "start job",
                Method::POST,
                "/jobs",
                Bytes::from(body),
                Some(&request.idempotency_key),
            )
            .await?;
        parse_start(status, &answer)
    }

    async fn status(&self, job_id: &str) -> Result<JobStatus, ApiError> {
        let path = format!("/jobs/{}", utf8_percent_encode(job_id, PATH_SEGMENT));
        let (status, answer) = self
            .call("get job status", Method::GET, &path, Bytes::new(), None)
            .await?;
        parse_status(job_id, status, &answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_aws::retry::Transient;

    #[test]
    fn start_answer_gives_the_job_id() {
        let id = parse_start(
            StatusCode::ACCEPTED,
            br#"{"job_id":"j-42","status":"RUNNING"}"#,
        );
        assert_eq!(id, Ok("j-42".to_owned()));
    }

    #[test]
    fn unreadable_or_empty_start_answers_are_transient() {
        let err = parse_start(StatusCode::OK, b"<html>gateway</html>").unwrap_err();
        assert!(err.is_transient(), "{err}");
        let err = parse_start(StatusCode::OK, br#"{"job_id":" "}"#).unwrap_err();
        assert!(err.is_transient(), "{err}");
    }

    #[test]
    fn server_errors_and_throttling_are_transient() {
        for status in [500, 502, 503, 429] {
            let err = parse_start(StatusCode::from_u16(status).unwrap(), b"busy").unwrap_err();
            assert!(err.is_transient(), "{status}: {err}");
        }
    }

    #[test]
    fn client_errors_are_rejections_naming_status_and_body() {
        let err = parse_start(
            StatusCode::UNPROCESSABLE_ENTITY,
            br#"{"error":"not a report"}"#,
        )
        .unwrap_err();
        assert!(!err.is_transient());
        assert_eq!(
            err.to_string(),
            r#"job API rejected start job (HTTP 422): {"error":"not a report"}"#
        );
    }

    #[test]
    fn refused_tokens_are_permanent() {
        let err = parse_status("j", StatusCode::FORBIDDEN, b"").unwrap_err();
        assert_eq!(
            err,
            ApiError::Unauthorized {
                operation: "get job status",
                status: 403
            }
        );
        assert!(!err.is_transient());
    }

    #[test]
    fn unknown_job_is_its_own_permanent_error() {
        let err = parse_status("j-9", StatusCode::NOT_FOUND, b"").unwrap_err();
        assert_eq!(
            err,
            ApiError::UnknownJob {
                job_id: "j-9".to_owned()
            }
        );
        assert!(!err.is_transient());
    }

    #[test]
    fn status_words_map_to_terminal_or_running() {
        let parse = |body: &str| parse_status("j", StatusCode::OK, body.as_bytes()).unwrap();
        assert_eq!(
            parse(r#"{"status":"SUCCEEDED","message":"42 rows"}"#),
            JobStatus::Succeeded {
                message: Some("42 rows".to_owned())
            }
        );
        assert_eq!(
            parse(r#"{"status":"failed"}"#),
            JobStatus::Failed { message: None }
        );
        assert_eq!(
            parse(r#"{"status":"CANCELLED"}"#),
            JobStatus::Failed { message: None }
        );
        assert_eq!(
            parse(r#"{"status":"QUEUED"}"#),
            JobStatus::Running {
                status: "QUEUED".to_owned()
            }
        );
    }

    #[test]
    fn long_bodies_are_cut_in_messages() {
        let body = "x".repeat(1000);
        let err = parse_start(StatusCode::BAD_REQUEST, body.as_bytes()).unwrap_err();
        assert!(err.to_string().ends_with('…'));
        assert!(err.to_string().len() < 400);
    }

    #[test]
    fn job_ids_are_escaped_as_one_path_segment() {
        let escaped = utf8_percent_encode("a/b c?", PATH_SEGMENT).to_string();
        assert_eq!(escaped, "a%2Fb%20c%3F");
    }
}

#[cfg(test)]
mod over_http {
    //! The HTTP client against a canned HTTP/1.1 server on 127.0.0.1 (this process).

    use super::*;
    use crate::job_api::JobSource;
    use crate::token::TokenError;
    use sluice_aws::retry::Transient;
    use std::sync::Mutex;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// Tokens: `first` until refreshed, then `rotated`.
    struct RotatingToken {
        current: Mutex<String>,
        rotated: String,
    }

    impl RotatingToken {
        fn new(first: &str, rotated: &str) -> Self {
            RotatingToken {
                current: Mutex::new(first.to_owned()),
                rotated: rotated.to_owned(),
            }
        }
    }

    impl TokenSource for RotatingToken {
        async fn token(&self) -> Result<String, TokenError> {
            Ok(self.current.lock().unwrap().clone())
        }

        async fn refresh(&self) -> Result<String, TokenError> {
            *self.current.lock().unwrap() = self.rotated.clone();
            Ok(self.rotated.clone())
        }
    }

    /// A recorded request: request line, headers (lowercased names), body.
    #[derive(Debug, Clone)]
    struct Seen {
        line: String,
        headers: Vec<(String, String)>,
        body: String,
    }

    impl Seen {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        }
    }

    /// Serves one canned answer per connection, chosen by `answer(request)`.
    async fn serve(
        answer: impl Fn(&Seen) -> (u16, String) + Send + Sync + 'static,
    ) -> (String, Arc<Mutex<Vec<Seen>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}/api", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                let mut raw = Vec::new();
                let mut buf = [0u8; 4096];
                let request = loop {
                    let n = socket.read(&mut buf).await.unwrap();
                    raw.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&raw).to_string();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let head = &text[..end];
                        let mut lines = head.split("\r\n");
                        let line = lines.next().unwrap().to_owned();
                        let headers: Vec<(String, String)> = lines
                            .filter_map(|l| l.split_once(':'))
                            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
                            .collect();
                        let length: usize = headers
                            .iter()
                            .find(|(n, _)| n == "content-length")
                            .map_or(0, |(_, v)| v.parse().unwrap());
                        if text.len() >= end + 4 + length {
                            let body = text[end + 4..end + 4 + length].to_owned();
                            break Seen {
                                line,
                                headers,
                                body,
                            };
                        }
                    }
                    if n == 0 {
                        return;
                    }
                };
                let (status, body) = answer(&request);
                log.lock().unwrap().push(request);
                let response = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                socket.write_all(response.as_bytes()).await.unwrap();
                let _ = socket.shutdown().await;
            }
        });
        (base, seen)
    }

    fn source() -> JobSource {
        JobSource {
            bucket: "reports-bucket".to_owned(),
            key: "reports/sales.csv".to_owned(),
            etag: Some("abc".to_owned()),
            sequencer: Some("0055AED6DCD90281E5".to_owned()),
            version_id: None,
            uri: "s3://reports-bucket/reports/sales.csv".to_owned(),
        }
    }

    #[tokio::test]
    async fn start_posts_the_source_with_bearer_token_and_idempotency_key() {
        let (base, seen) =
            serve(|_| (201, r#"{"job_id":"j-77","status":"RUNNING"}"#.to_owned())).await;
        let api = HttpJobApi::new(
            &base,
            RotatingToken::new("tok-1", "tok-2"),
            Duration::from_secs(5),
        )
        .unwrap();
        let request = StartRequest {
            source: source(),
            idempotency_key: "sluice-job-poller-abc".to_owned(),
        };

        assert_eq!(api.start(&request).await, Ok("j-77".to_owned()));

        let seen = seen.lock().unwrap()[0].clone();
        assert_eq!(seen.line, "POST /api/jobs HTTP/1.1");
        assert_eq!(seen.header("authorization"), Some("Bearer tok-1"));
        assert_eq!(
            seen.header("idempotency-key"),
            Some("sluice-job-poller-abc")
        );
        assert_eq!(seen.header("content-type"), Some("application/json"));
        let body: serde_json::Value = serde_json::from_str(&seen.body).unwrap();
        assert_eq!(body["idempotency_key"], "sluice-job-poller-abc");
        assert_eq!(
            body["source"]["uri"],
            "s3://reports-bucket/reports/sales.csv"
        );
        assert_eq!(body["source"]["sequencer"], "0055AED6DCD90281E5");
    }

    #[tokio::test]
    async fn refused_token_is_re_read_once_and_the_call_repeated() {
        let (base, seen) = serve(|req| match req.header("authorization") {
            Some("Bearer rotated") => (200, r#"{"job_id":"j-1","status":"SUCCEEDED"}"#.to_owned()),
            _ => (401, r#"{"error":"token expired"}"#.to_owned()),
        })
        .await;
        let api = HttpJobApi::new(
            &base,
            RotatingToken::new("stale", "rotated"),
            Duration::from_secs(5),
        )
        .unwrap();

        assert_eq!(
            api.status("j-1").await,
            Ok(JobStatus::Succeeded { message: None })
        );
        assert_eq!(seen.lock().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn token_refused_twice_is_unauthorized() {
        let (base, seen) = serve(|_| (403, "{}".to_owned())).await;
        let api =
            HttpJobApi::new(&base, RotatingToken::new("a", "b"), Duration::from_secs(5)).unwrap();
        let err = api.status("j-1").await.unwrap_err();
        assert_eq!(
            err,
            ApiError::Unauthorized {
                operation: "get job status",
                status: 403
            }
        );
        assert_eq!(
            seen.lock().unwrap().len(),
            2,
            "one retry with the re-read token"
        );
    }

    #[tokio::test]
    async fn status_escapes_the_job_id_and_maps_404_to_unknown_job() {
        let (base, seen) = serve(|_| (404, r#"{"error":"no such job"}"#.to_owned())).await;
        let api =
            HttpJobApi::new(&base, RotatingToken::new("t", "t"), Duration::from_secs(5)).unwrap();
        let err = api.status("job 1/2").await.unwrap_err();
        assert_eq!(
            err,
            ApiError::UnknownJob {
                job_id: "job 1/2".to_owned()
            }
        );
        assert_eq!(
            seen.lock().unwrap()[0].line,
            "GET /api/jobs/job%201%2F2 HTTP/1.1"
        );
    }

    #[tokio::test]
    async fn an_answer_over_the_limit_is_refused_as_too_large_and_one_within_it_is_read() {
        let long_message = "m".repeat(5_000);
        let body = format!(r#"{{"job_id":"j-1","status":"SUCCEEDED","message":"{long_message}"}}"#);
        let answer = body.clone();
        let (base, _) = serve(move |_| (200, answer.clone())).await;
        let api = HttpJobApi::new(&base, RotatingToken::new("t", "t"), Duration::from_secs(5))
            .unwrap()
            .with_max_answer_bytes(4_096);
        let err = api.status("j-1").await.unwrap_err();
        assert_eq!(
            err,
            ApiError::TooLarge {
                operation: "get job status",
                limit: 4_096
            }
        );
        assert!(!err.is_transient(), "the same answer would come again");
        assert!(
            err.to_string().contains("JOB_API_MAX_ANSWER_BYTES"),
            "{err}"
        );

        let api = api.with_max_answer_bytes(body.len());
        assert_eq!(
            api.status("j-1").await,
            Ok(JobStatus::Succeeded {
                message: Some(long_message)
            })
        );
    }

    #[test]
    fn a_job_id_too_long_to_keep_is_refused() {
        let long = "j".repeat(MAX_JOB_ID_BYTES + 1);
        let body = format!(r#"{{"job_id":"{long}","status":"RUNNING"}}"#);
        let err = parse_start(StatusCode::CREATED, body.as_bytes()).unwrap_err();
        assert!(!err.is_transient());
        assert!(err.to_string().contains("1025 bytes"), "{err}");
        let fits = "j".repeat(MAX_JOB_ID_BYTES);
        let body = format!(r#"{{"job_id":"{fits}","status":"RUNNING"}}"#);
        assert_eq!(parse_start(StatusCode::CREATED, body.as_bytes()), Ok(fits));
    }

    #[tokio::test]
    async fn refused_connection_is_transient() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        let api =
            HttpJobApi::new(&base, RotatingToken::new("t", "t"), Duration::from_secs(5)).unwrap();
        let err = api.status("j").await.unwrap_err();
        assert!(err.is_transient(), "{err}");
    }

    #[tokio::test]
    async fn silent_server_times_out_as_transient() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let held = tokio::spawn(async move {
            let (socket, _) = listener.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(5)).await;
            drop(socket);
        });
        let api = HttpJobApi::new(
            &base,
            RotatingToken::new("t", "t"),
            Duration::from_millis(200),
        )
        .unwrap();
        let err = api.status("j").await.unwrap_err();
        assert!(err.is_transient(), "{err}");
        assert!(err.to_string().contains("no answer within"), "{err}");
        held.abort();
    }
}
