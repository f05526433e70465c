//! ingest-api: the lifecycle is `sluice_lambda::serve`'s, the function is
//! [`ingest_api::handler::Ingest`] (one API Gateway request per invocation).
// The SDK futures nest deeply; the default limit (128) is too low for `main`'s layout.
#![recursion_limit = "256"]

#[tokio::main]
async fn main() -> Result<(), sluice_lambda::Error> {
    sluice_lambda::serve::<ingest_api::handler::Ingest>().await
}
