//! counter-aggregator entry point: the lifecycle serves [`counter_aggregator::handler::Aggregator`].

#[tokio::main]
async fn main() -> Result<(), sluice_lambda::Error> {
    sluice_lambda::serve::<counter_aggregator::handler::Aggregator>().await
}
