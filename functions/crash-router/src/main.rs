//! crash-router binary: reads configuration and builds the SQS client once at cold
//! start (a bad variable fails the cold start naming it), then serves batches from
//! the notification queue.

use aws_lambda_events::sqs::SqsEvent;
use crash_router::config::Config;
use crash_router::handler::Router;
use sluice_aws::{Backoff, SendBatchWriter, clients};
use sluice_lambda::config::Env;
use sluice_lambda::{Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let config = sluice_lambda::init(Config::from_env(&Env::from_process())).await?;
    let sdk = clients::load_sdk_config().await;
    let writer = SendBatchWriter::new(clients::sqs(&sdk), Backoff::default());
    let router = Router::new(config, writer);
    let router = &router;
    sluice_lambda::run(move |event: LambdaEvent<SqsEvent>| router.handle(event)).await
}
