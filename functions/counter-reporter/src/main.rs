//! counter-reporter entry point: configuration, clients and limits once, then serve.

use std::sync::Arc;

use counter_reporter::config::ReporterConfig;
use counter_reporter::handler::{Clients, Reporter};
use sluice_events::aws_lambda_events::dynamodb::Event;
use sluice_lambda::config::Env;
use sluice_lambda::{Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let config = sluice_lambda::init(ReporterConfig::from_env(&Env::from_process())).await?;
    let sdk = sluice_aws::clients::load_sdk_config().await;
    let clients = Clients {
        s3: sluice_aws::clients::s3(&sdk),
        dynamodb: sluice_aws::clients::dynamodb(&sdk),
        sns: sluice_aws::clients::sns(&sdk),
    };
    let reporter =
        Arc::new(sluice_lambda::init(Reporter::cold_start(clients, config).await).await?);
    sluice_lambda::run(move |event: LambdaEvent<Event>| {
        let reporter = Arc::clone(&reporter);
        async move { reporter.invoke(event).await }
    })
    .await
}
