//! Test-only Lambda function for the end-to-end tests of the local Lambda
//! environment (LocalStack + the sluice host executor). Not part of the pipeline.
//!
//! What it does is chosen by the event it receives (see `handler.rs`); every
//! invocation and every batch record is written to stdout as one `PROBE-…` line,
//! so tests can observe deliveries through the CloudWatch Logs API.
//!
//! Cold-start behaviour is chosen by `PROBE_INIT`:
//! - unset: start normally;
//! - `exit`: print a line and exit with status 1 before asking for work (a crash during init);
//! - `report`: report an init error through the Runtime API (`/runtime/init/error`), then exit.

mod handler;
mod init_error;
mod limits;

use lambda_runtime::{Error, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    match std::env::var("PROBE_INIT").as_deref() {
        Ok("exit") => {
            println!("PROBE-INIT failing cold start on purpose (PROBE_INIT=exit)");
            std::process::exit(1);
        }
        Ok("report") => {
            println!("PROBE-INIT reporting an init error on purpose (PROBE_INIT=report)");
            init_error::report("ProbeInitFailure", "cold start refused: PROBE_INIT=report").await?;
            std::process::exit(1);
        }
        _ => {}
    }
    println!("PROBE-INIT ready pid={}", std::process::id());
    run(service_fn(handler::handle)).await
}
