//! crash-router entry point: the lifecycle serves [`crash_router::handler::Router`] (its
//! cold start reads and checks the configuration, naming a bad variable, and builds the
//! SQS writer).

#[tokio::main]
async fn main() -> Result<(), sluice_lambda::Error> {
    sluice_lambda::serve::<crash_router::handler::Router>().await
}
