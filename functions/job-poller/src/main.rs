//! job-poller entry point: the lifecycle serves [`job_poller::DeployedPoller`] (its cold
//! start reads the configuration, builds the clients and reads the API token once).

#[tokio::main]
async fn main() -> Result<(), sluice_lambda::Error> {
    sluice_lambda::serve::<job_poller::DeployedPoller>().await
}
