//! job-poller: a report lands on S3 → an external job is started for it → the job is
//! followed past one invocation's time limit by invoking this function again
//! asynchronously, one generation at a time, until it succeeds, fails or runs out of
//! budget → one SNS notification.
//!
//! This file wires configuration, clients and the API token; `handler` decides.

mod config;
mod event;
mod handler;
mod job_api;
mod outcome_text;
mod table;
mod token;

use serde_json::Value;
use sluice_aws::clients;
use sluice_aws::retry::Deadline;
use sluice_lambda::config::Env;
use sluice_lambda::metrics::Metrics;
use sluice_lambda::{Error, FunctionError, LambdaEvent};

use crate::config::Config;
use crate::handler::{Action, Invocation, Poller, Summary, system_now_ms};
use crate::job_api::HttpJobApi;
use crate::table::JobsTable;
use crate::token::{SecretToken, TokenSource};

async fn cold_start() -> Result<Poller<HttpJobApi<SecretToken>>, String> {
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

fn emit_metrics(summary: &Summary) {
    let mut metrics = Metrics::for_function();
    for job in &summary.jobs {
        let name = match job.action {
            Action::Skipped => "Skipped",
            Action::Duplicate => "Duplicates",
            Action::HandedOff => "HandOffs",
            Action::Finished => "JobsFinished",
            Action::RecordHandedOff => "NotificationRecordsHandedOff",
            Action::NotificationRecorded => "NotificationsRecorded",
            Action::NotifiedUnrecorded => "NotifiedUnrecorded",
            Action::AlreadyNotified => "AlreadyNotified",
            Action::Superseded => "Superseded",
        };
        metrics.count(name, 1);
        if matches!(
            job.action,
            Action::Finished | Action::RecordHandedOff | Action::NotifiedUnrecorded
        ) && let Some(outcome) = &job.detail
        {
            metrics.count(&format!("Outcome.{outcome}"), 1);
        }
    }
    metrics.emit();
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let poller = sluice_lambda::init(cold_start().await).await?;
    let poller = &poller;
    sluice_lambda::run(move |event: LambdaEvent<Value>| async move {
        let invocation = Invocation {
            request_id: event.context.request_id.clone(),
            function_arn: event.context.invoked_function_arn.clone(),
            deadline: Deadline::at_epoch_ms(event.context.deadline),
        };
        match poller.handle(&event.payload, &invocation).await {
            Ok(summary) => {
                emit_metrics(&summary);
                Ok(summary)
            }
            Err(e) => {
                tracing::error!(error = %e, retryable = e.is_retryable(), "invocation failed");
                Err(FunctionError::from(e))
            }
        }
    })
    .await
}
