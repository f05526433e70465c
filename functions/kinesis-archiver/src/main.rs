//! kinesis-archiver entry point: configuration and the S3 client at cold start, then
//! one [`Archiver::handle`] per Kinesis batch.
// The SDK futures nest deeply; the default limit (128) is too low for `main`'s layout.
#![recursion_limit = "256"]

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::streams::KinesisEventResponse;
use kinesis_archiver::handler::{Archiver, ArchiverConfig};
use serde_json::value::RawValue;
use sluice_aws::retry::Deadline;
use sluice_lambda::config::{ConfigError, Env};
use sluice_lambda::metrics::Metrics;
use sluice_lambda::{Error, FunctionError, LambdaEvent};

/// Time kept back from the invocation deadline to answer the event source mapping.
const ANSWER_MARGIN: Duration = Duration::from_secs(1);

async fn cold_start() -> Result<Archiver, ConfigError> {
    let config = ArchiverConfig::from_env(&Env::from_process())?;
    let sdk = sluice_aws::clients::load_sdk_config().await;
    Ok(Archiver::new(config, sluice_aws::clients::s3(&sdk)))
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let archiver = Arc::new(sluice_lambda::init(cold_start().await).await?);
    sluice_lambda::run(move |event: LambdaEvent<Box<RawValue>>| {
        let archiver = Arc::clone(&archiver);
        async move {
            let deadline = Deadline::at_epoch_ms(event.context.deadline).with_margin(ANSWER_MARGIN);
            let mut metrics = Metrics::for_function();
            let result: Result<KinesisEventResponse, FunctionError> = archiver
                .handle(event.payload.get(), &deadline, &mut metrics)
                .await;
            metrics.emit();
            result
        }
    })
    .await
}
