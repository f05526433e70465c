//! Lambda support shared by every sluice function.
//!
//! What each function's `main.rs` needs and nothing more:
//! - [`serve`] and [`Function`]: the one lifecycle (cold start, an [`Invocation`] per event
//!   with the deadline margin applied, metrics emitted); `main` becomes one line;
//! - [`run`]: serve a handler on the Lambda Runtime API with structured JSON logs;
//! - [`init`]: turn a failed cold start (bad configuration, a client that can't be
//!   built) into a Runtime API init error that names what was wrong;
//! - [`config::Env`]: typed configuration from environment variables;
//! - [`metrics::Metrics`]: CloudWatch Embedded Metric Format lines;
//! - [`batch`]: partial batch responses for Kinesis, DynamoDB streams and SQS;
//! - [`FunctionError`]: a handler error with an explicit, stable error type.
//!
//! Not for: AWS clients or retries (`sluice-aws`), event envelopes (`sluice-events`).

pub mod batch;
pub mod config;
pub mod lifecycle;
pub mod logging;
pub mod metrics;

use std::fmt;
use std::future::Future;

pub use lambda_runtime::{Context, Diagnostic, Error, LambdaEvent};
pub use lifecycle::{Function, Invocation, serve};

/// Serves `handler` until the runtime shuts the process down. Logging is
/// initialised here if `main` has not done it already.
pub async fn run<A, R, F, Fut>(handler: F) -> Result<(), Error>
where
    A: serde::de::DeserializeOwned + Send + 'static,
    R: serde::Serialize + Send + 'static,
    F: Fn(LambdaEvent<A>) -> Fut,
    Fut: Future<Output = Result<R, FunctionError>>,
{
    logging::init();
    lambda_runtime::run(lambda_runtime::service_fn(handler)).await
}

/// Unwraps a cold-start result. On error, logs it, reports it to the Runtime
/// API as `Runtime.InitError` (so `Invoke` shows the reason instead of a bare
/// exit code) and returns it for `main` to exit with.
pub async fn init<T, E: fmt::Display>(result: Result<T, E>) -> Result<T, Error> {
    match result {
        Ok(value) => Ok(value),
        Err(err) => {
            logging::init();
            let message = err.to_string();
            tracing::error!(error = %message, "cold start failed");
            report_init_error(&message).await;
            Err(message.into())
        }
    }
}

async fn report_init_error(message: &str) {
    let Ok(api) = std::env::var("AWS_LAMBDA_RUNTIME_API") else {
        return; // not under a Lambda runtime (unit test, plain exec)
    };
    let diagnostic = Diagnostic {
        error_type: "Runtime.InitError".to_string(),
        error_message: message.to_string(),
    };
    let sent = async {
        let client = lambda_runtime_api_client::Client::builder()
            .with_endpoint(format!("http://{api}").parse()?)
            .build()?;
        let req = lambda_runtime_api_client::build_request()
            .method(http::Method::POST)
            .uri("/2018-06-01/runtime/init/error")
            .header("lambda-runtime-function-error-type", "Runtime.InitError")
            .body(serde_json::to_vec(&diagnostic)?.into())?;
        client.call(req).await?;
        Ok::<_, Error>(())
    }
    .await;
    if let Err(e) = sent {
        tracing::warn!(error = %e, "could not report the init error to the Runtime API");
    }
}

/// A handler failure with a stable error type, reported to Lambda as the
/// invocation's `errorType` (visible in `FunctionError` responses, async
/// retries and on-failure destinations).
///
/// Every function's `errorType` has one shape, `<Class>.<Kind>`:
/// - `Retryable.<Kind>`: the same event may succeed later (a throttle, a timeout, a
///   dependency down); Lambda's retries or a redrive are worth it;
/// - `Permanent.<Kind>`: the same event fails the same way until something changes (the
///   event is malformed or not the function's, or a permission or resource is missing).
///
/// `<Kind>` names what failed (`S3`, `InvalidEvent`, `JobsTable`, …). The constructors are
/// the only way to build one outside this crate (`non_exhaustive` forbids a struct
/// literal there), so no other shape can appear.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FunctionError {
    pub error_type: String,
    pub message: String,
}

impl FunctionError {
    /// `Retryable.<kind>`: a later attempt of the same event may succeed.
    pub fn retryable(kind: &str, message: impl Into<String>) -> Self {
        Self::classed(true, kind, message)
    }

    /// `Permanent.<kind>`: the same event fails the same way until something changes.
    pub fn permanent(kind: &str, message: impl Into<String>) -> Self {
        Self::classed(false, kind, message)
    }

    /// [`retryable`](Self::retryable) or [`permanent`](Self::permanent) by `retryable`.
    pub fn classed(retryable: bool, kind: &str, message: impl Into<String>) -> Self {
        let class = if retryable { "Retryable" } else { "Permanent" };
        FunctionError {
            error_type: format!("{class}.{kind}"),
            message: message.into(),
        }
    }

    /// Whether the class is `Retryable`.
    pub fn is_retryable(&self) -> bool {
        self.error_type.starts_with("Retryable.")
    }
}

impl fmt::Display for FunctionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.error_type, self.message)
    }
}

impl std::error::Error for FunctionError {}

impl From<FunctionError> for Diagnostic {
    fn from(e: FunctionError) -> Self {
        Diagnostic {
            error_type: e.error_type,
            error_message: e.message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_error_becomes_a_diagnostic_with_its_type() {
        let d: Diagnostic = FunctionError::retryable("S3", "GetObject timed out").into();
        assert_eq!(d.error_type, "Retryable.S3");
        assert_eq!(d.error_message, "GetObject timed out");
    }

    #[test]
    fn every_error_type_is_a_class_and_a_kind() {
        let permanent = FunctionError::permanent("InvalidEvent", "not JSON");
        assert_eq!(permanent.error_type, "Permanent.InvalidEvent");
        assert!(!permanent.is_retryable());
        assert_eq!(
            FunctionError::classed(true, "JobsTable", "throttled").error_type,
            "Retryable.JobsTable"
        );
        assert!(FunctionError::classed(true, "JobsTable", "throttled").is_retryable());
        assert_eq!(
            FunctionError::classed(false, "JobsTable", "no such table").to_string(),
            "Permanent.JobsTable: no such table"
        );
    }

    #[tokio::test]
    async fn init_passes_values_through_and_turns_errors_into_messages() {
        assert_eq!(init(Ok::<_, String>(7)).await.unwrap(), 7);
        let err = init(Err::<(), _>(config::ConfigError::missing("OUTPUT_BUCKET")))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("OUTPUT_BUCKET"), "{err}");
    }
}
