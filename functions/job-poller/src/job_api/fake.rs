//! An in-memory job API for handler tests: scripted answers per call, and a record
//! of what was asked. Decides nothing; it answers as scripted.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use super::{ApiError, JobApi, JobStatus, StartRequest};

#[derive(Debug, Default)]
pub struct InMemoryJobApi {
    inner: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// idempotency key → job id (the API's own deduplication).
    jobs: HashMap<String, String>,
    start_errors: VecDeque<ApiError>,
    /// job id → answers, in order; the last one repeats.
    statuses: HashMap<String, VecDeque<Result<JobStatus, ApiError>>>,
    starts: Vec<StartRequest>,
    status_calls: Vec<tokio::time::Instant>,
}

impl InMemoryJobApi {
    pub fn new() -> Self {
        Self::default()
    }

    /// The next start calls fail with these errors, in order.
    pub fn fail_starts(&self, errors: impl IntoIterator<Item = ApiError>) {
        self.inner.lock().unwrap().start_errors.extend(errors);
    }

    /// Status answers for `job_id`, in order; the last repeats forever.
    pub fn script(
        &self,
        job_id: &str,
        answers: impl IntoIterator<Item = Result<JobStatus, ApiError>>,
    ) {
        self.inner
            .lock()
            .unwrap()
            .statuses
            .insert(job_id.to_owned(), answers.into_iter().collect());
    }

    pub fn starts(&self) -> Vec<StartRequest> {
        self.inner.lock().unwrap().starts.clone()
    }

    pub fn status_calls(&self) -> usize {
        self.inner.lock().unwrap().status_calls.len()
    }

    /// When each status call was made (tokio's clock, paused in tests).
    pub fn status_call_times(&self) -> Vec<tokio::time::Instant> {
        self.inner.lock().unwrap().status_calls.clone()
    }
}

pub fn running() -> Result<JobStatus, ApiError> {
    Ok(JobStatus::Running {
        status: "RUNNING".to_owned(),
    })
}

/// Handlers under test borrow the API, so tests can inspect it afterwards.
impl JobApi for &InMemoryJobApi {
    async fn start(&self, request: &StartRequest) -> Result<String, ApiError> {
        (**self).start(request).await
    }

    async fn status(&self, job_id: &str) -> Result<JobStatus, ApiError> {
        (**self).status(job_id).await
    }
}

impl JobApi for InMemoryJobApi {
    async fn start(&self, request: &StartRequest) -> Result<String, ApiError> {
        let mut state = self.inner.lock().unwrap();
        state.starts.push(request.clone());
        if let Some(err) = state.start_errors.pop_front() {
            return Err(err);
        }
        let next = format!("job-{}", state.jobs.len() + 1);
        Ok(state
            .jobs
            .entry(request.idempotency_key.clone())
            .or_insert(next)
            .clone())
    }

    async fn status(&self, job_id: &str) -> Result<JobStatus, ApiError> {
        let mut state = self.inner.lock().unwrap();
        state.status_calls.push(tokio::time::Instant::now());
        let Some(answers) = state.statuses.get_mut(job_id) else {
            return Err(ApiError::UnknownJob {
                job_id: job_id.to_owned(),
            });
        };
        if answers.len() > 1 {
            answers.pop_front().unwrap()
        } else {
            answers.front().cloned().unwrap_or_else(running)
        }
    }
}
