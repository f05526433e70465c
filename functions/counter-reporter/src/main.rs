//! counter-reporter entry point: the lifecycle serves [`counter_reporter::handler::Reporter`].

#[tokio::main]
async fn main() -> Result<(), sluice_lambda::Error> {
    sluice_lambda::serve::<counter_reporter::handler::Reporter>().await
}
