//! kinesis-archiver: the lifecycle is `sluice_lambda::serve`'s, the function is
//! [`kinesis_archiver::handler::Archiver`].
// The SDK futures nest deeply; the default limit (128) is too low for `main`'s layout.
#![recursion_limit = "256"]

#[tokio::main]
async fn main() -> Result<(), sluice_lambda::Error> {
    sluice_lambda::serve::<kinesis_archiver::handler::Archiver>().await
}
