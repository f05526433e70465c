//! The external job API: the contract the poller relies on (its calls, answers,
//! errors and limits). It decides nothing about jobs; [`http`] speaks it over HTTPS,
//! and the handler sees only the [`JobApi`] trait, so its decisions are tested with an
//! in-memory API and no network.
//!
//! A small REST contract modelled on BI tools that ingest a report and run an ETL
//! job over it (the seed's Birst):
//!
//! | call | request | answer |
//! |---|---|---|
//! | start | `POST {base}/jobs`, body `{"source": {...}, "idempotency_key": "..."}`, header `Idempotency-Key` | `200/201/202 {"job_id": "...", "status": "RUNNING"}`; the same key always answers the same `job_id` |
//! | status | `GET {base}/jobs/{job_id}` | `200 {"job_id": "...", "status": "RUNNING" \| "SUCCEEDED" \| "FAILED", "message": "..."}`; `404` for a job it does not know |
//!
//! Every call carries `Authorization: Bearer <token>`. `429`, `5xx`, connection
//! failures, timeouts and unreadable answers are transient; `401`/`403` mean the token
//! is wrong (the token is re-read once before giving up); other `4xx` are rejections.
//! An answer is read up to a size limit (`JOB_API_MAX_ANSWER_BYTES`): a longer one is
//! refused as [`ApiError::TooLarge`] without reading the rest, and a `job_id` longer
//! than [`MAX_JOB_ID_BYTES`] is refused as unusable.

#[cfg(test)]
pub mod fake;
pub mod http;

use std::future::Future;

use serde::{Deserialize, Serialize};
use sluice_aws::retry::Transient;

use crate::token::TokenError;

pub use self::http::HttpJobApi;

/// Default for `JOB_API_MAX_ANSWER_BYTES`: the longest answer read (1 MiB).
pub const DEFAULT_MAX_ANSWER_BYTES: usize = 1 << 20;

/// Longest `job_id` accepted from a start answer: it goes into a URL path, the jobs
/// table item and the notification.
pub const MAX_JOB_ID_BYTES: usize = 1024;

/// The object a job is started for, as sent to the job API and in notifications.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSource {
    pub bucket: String,
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequencer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    /// `s3://bucket/key`, for people and tools that want one string.
    pub uri: String,
}

/// `POST /jobs` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StartRequest {
    pub source: JobSource,
    pub idempotency_key: String,
}

/// What the API says about a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobStatus {
    /// Not finished; `status` as the API spelled it (`RUNNING`, `QUEUED`, …).
    Running {
        status: String,
    },
    Succeeded {
        message: Option<String>,
    },
    Failed {
        message: Option<String>,
    },
}

impl JobStatus {
    /// Maps the API's status word: `SUCCEEDED` and `FAILED` (or `CANCELLED`) are
    /// terminal, anything else means the job is still going.
    pub fn from_wire(status: &str, message: Option<String>) -> Self {
        match status.to_ascii_uppercase().as_str() {
            "SUCCEEDED" => JobStatus::Succeeded { message },
            "FAILED" | "CANCELLED" | "CANCELED" => JobStatus::Failed { message },
            _ => JobStatus::Running {
                status: status.to_owned(),
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// Worth another attempt: 429, 5xx, connection failure, timeout, unreadable answer.
    #[error("job API {operation} failed transiently: {detail}")]
    Transient {
        operation: &'static str,
        detail: String,
    },
    /// `GET /jobs/{id}` answered 404.
    #[error("job API does not know job {job_id:?} (HTTP 404)")]
    UnknownJob { job_id: String },
    /// 401/403, still after re-reading the token.
    #[error("job API refused the token for {operation} (HTTP {status})")]
    Unauthorized {
        operation: &'static str,
        status: u16,
    },
    /// Any other 4xx: the request itself is wrong and will stay wrong.
    #[error("job API rejected {operation} (HTTP {status}): {body}")]
    Rejected {
        operation: &'static str,
        status: u16,
        body: String,
    },
    /// The answer was longer than the poller reads (`JOB_API_MAX_ANSWER_BYTES`).
    #[error(
        "job API's answer to {operation} is longer than {limit} bytes (JOB_API_MAX_ANSWER_BYTES); not read"
    )]
    TooLarge {
        operation: &'static str,
        limit: usize,
    },
    /// The token could not be read from its store.
    #[error(transparent)]
    Token(#[from] TokenError),
}

impl Transient for ApiError {
    fn is_transient(&self) -> bool {
        match self {
            ApiError::Transient { .. } => true,
            ApiError::Token(e) => e.is_transient(),
            ApiError::UnknownJob { .. }
            | ApiError::Unauthorized { .. }
            | ApiError::Rejected { .. }
            | ApiError::TooLarge { .. } => false,
        }
    }
}

/// The two calls the poller makes. `Send` futures, so handlers can be spawned.
pub trait JobApi: Send + Sync {
    /// Starts (or, for a known idempotency key, finds) the job; returns its id.
    fn start(
        &self,
        request: &StartRequest,
    ) -> impl Future<Output = Result<String, ApiError>> + Send;
    /// The job's current status.
    fn status(&self, job_id: &str) -> impl Future<Output = Result<JobStatus, ApiError>> + Send;
}
