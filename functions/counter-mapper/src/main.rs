//! counter-mapper entry point: configuration and clients once, then serve.
// The SDK futures nest deeply; the default limit (128) is too low for `main`'s layout.
#![recursion_limit = "256"]

use std::sync::Arc;

use counter_mapper::config::MapperConfig;
use counter_mapper::handler::Mapper;
use sluice_lambda::config::Env;
use sluice_lambda::{Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let config = sluice_lambda::init(MapperConfig::from_env(&Env::from_process())).await?;
    let sdk = sluice_aws::clients::load_sdk_config().await;
    let mapper = Arc::new(Mapper::new(
        sluice_aws::clients::s3(&sdk),
        sluice_aws::clients::dynamodb(&sdk),
        config,
    ));
    sluice_lambda::run(move |event: LambdaEvent<serde_json::Value>| {
        let mapper = Arc::clone(&mapper);
        async move { mapper.invoke(event).await }
    })
    .await
}
