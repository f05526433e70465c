//! counter-aggregator entry point: configuration and client once, then serve.

use std::sync::Arc;

use counter_aggregator::config::AggregatorConfig;
use counter_aggregator::handler::Aggregator;
use sluice_events::aws_lambda_events::dynamodb::Event;
use sluice_lambda::config::Env;
use sluice_lambda::{Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let config = sluice_lambda::init(AggregatorConfig::from_env(&Env::from_process())).await?;
    let sdk = sluice_aws::clients::load_sdk_config().await;
    let aggregator = Arc::new(Aggregator::new(sluice_aws::clients::dynamodb(&sdk), config));
    sluice_lambda::run(move |event: LambdaEvent<Event>| {
        let aggregator = Arc::clone(&aggregator);
        async move { aggregator.invoke(event).await }
    })
    .await
}
