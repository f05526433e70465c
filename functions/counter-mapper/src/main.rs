//! counter-mapper entry point: the lifecycle serves [`counter_mapper::handler::Mapper`].
// The SDK futures nest deeply; the default limit (128) is too low for `main`'s layout.
#![recursion_limit = "256"]

#[tokio::main]
async fn main() -> Result<(), sluice_lambda::Error> {
    sluice_lambda::serve::<counter_mapper::handler::Mapper>().await
}
