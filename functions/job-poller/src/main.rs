//! job-poller entry point: cold start once, then serve; [`job_poller`] decides.

use serde_json::Value;
use sluice_lambda::{Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let poller = sluice_lambda::init(job_poller::cold_start().await).await?;
    let poller = &poller;
    sluice_lambda::run(move |event: LambdaEvent<Value>| poller.invoke(event)).await
}
