//! job-poller: a report lands on S3 → an external job is started for it → the job is
//! followed past one invocation's time limit by invoking this function again
//! asynchronously, one generation at a time, until it succeeds, fails or runs out of
//! budget → one SNS notification.
//!
//! - [`handler`]: the poller's decisions, one module per concern (start, follow,
//!   notify, and the one "did my earlier attempt win?" check);
//! - [`table`]: the jobs table and every conditional write that keeps one job per
//!   object version, one live chain per job and one notification;
//! - [`job_api`]: the external job API's contract, its HTTP client (and an in-memory
//!   fake for tests);
//! - [`event`]: the three events the poller is invoked with;
//! - [`outcome_text`]: the notification as people read it;
//! - [`token`]: the job API's bearer token, from Secrets Manager;
//! - [`config`]: environment variables, read and checked at cold start.

pub mod config;
pub mod event;
pub mod handler;
pub mod job_api;
pub mod outcome_text;
pub mod table;
pub mod token;

use sluice_aws::clients;
use sluice_lambda::config::Env;

use crate::config::Config;
use crate::handler::{Poller, system_now_ms};
use crate::job_api::HttpJobApi;
use crate::table::JobsTable;
use crate::token::{SecretToken, TokenSource};

/// The poller as deployed: configuration, AWS clients and the job API over HTTPS.
pub type DeployedPoller = Poller<HttpJobApi<SecretToken>>;

/// Reads the configuration, builds the clients and reads the API token once; an
/// error names what is missing and fails the cold start.
pub async fn cold_start() -> Result<DeployedPoller, String> {
    let config = Config::from_env(&Env::from_process()).map_err(|e| e.to_string())?;
    let sdk = clients::load_sdk_config().await;
    let tokens = SecretToken::new(
        aws_sdk_secretsmanager::Client::new(&sdk),
        &config.token_secret,
    );
    // Read the token now: a missing secret fails the cold start, naming it.
    tokens
        .token()
        .await
        .map_err(|e| format!("job API token (JOB_API_TOKEN_SECRET): {e}"))?;
    let api = HttpJobApi::new(&config.api_base_url, tokens, config.api_timeout)
        .map_err(|e| format!("HTTPS client for JOB_API_BASE_URL: {e}"))?
        .with_max_answer_bytes(config.api_max_answer_bytes);
    let table = JobsTable::new(clients::dynamodb(&sdk), &config.jobs_table);
    Ok(Poller::new(
        config,
        table,
        api,
        clients::sns(&sdk),
        clients::lambda(&sdk),
        system_now_ms,
    ))
}

/// The deployed poller is the function `sluice_lambda::serve` runs.
impl sluice_lambda::Function for DeployedPoller {
    type Event = serde_json::Value;
    type Response = handler::Summary;
    type InitError = String;

    fn answer_margin(&self) -> std::time::Duration {
        handler::RESPONSE_RESERVE
    }

    async fn cold_start() -> Result<Self, String> {
        crate::cold_start().await
    }

    async fn handle(
        &self,
        event: serde_json::Value,
        invocation: &mut sluice_lambda::Invocation,
    ) -> Result<handler::Summary, sluice_lambda::FunctionError> {
        self.invoke(&event, invocation).await
    }
}
