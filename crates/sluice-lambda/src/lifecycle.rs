//! One lifecycle for every function: cold start, then one [`Invocation`] per event.
//!
//! A function is a type implementing [`Function`]: how it starts (configuration read and
//! checked, clients built; a failure fails the cold start with its reason) and what it does
//! with one event. [`serve`] does the rest, the same way for all of them:
//! - JSON logs before anything else runs;
//! - a failed cold start reported to the Runtime API as `Runtime.InitError` ([`crate::init`]);
//! - per event, an [`Invocation`]: request id, function ARN, and the deadline less the
//!   function's [`Function::answer_margin`] (the one place a margin is applied);
//! - the invocation's [`Metrics`] emitted once the handler returns, whether it succeeded or
//!   not (a failed invocation's counters are often the ones an operator needs).
//!
//! A binary's `main` is then one line: `sluice_lambda::serve::<MyFunction>().await`.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use sluice_aws::retry::Deadline;

use crate::metrics::Metrics;
use crate::{Context, Error, FunctionError, LambdaEvent};

/// What one invocation knows about itself.
#[derive(Debug)]
pub struct Invocation {
    /// The runtime's request id (`Lambda-Runtime-Aws-Request-Id`).
    pub request_id: String,
    /// The ARN this invocation was made through (qualified when invoked by version/alias).
    pub function_arn: String,
    /// The runtime's deadline less the function's answer margin: work must be done by then.
    pub deadline: Deadline,
    /// Counters for this invocation, emitted by [`serve`] when the handler returns.
    pub metrics: Metrics,
}

impl Invocation {
    /// The invocation described by the runtime's `context`, `answer_margin` before its
    /// deadline.
    pub fn new(context: &Context, answer_margin: Duration) -> Self {
        Self {
            request_id: context.request_id.clone(),
            function_arn: context.invoked_function_arn.clone(),
            deadline: Deadline::at_epoch_ms(context.deadline).with_margin(answer_margin),
            metrics: Metrics::for_function(),
        }
    }
}

/// A Lambda function: how it starts and what it does with one event.
pub trait Function: Sized + Send + Sync + 'static {
    /// The event as the runtime delivers it (a typed event, `serde_json::Value`, or raw text).
    type Event: DeserializeOwned + Send + 'static;
    /// The answer (a partial batch response, an API Gateway response, a summary).
    type Response: Serialize + Send + 'static;
    /// The cold start's error: its text is what `Runtime.InitError` reports.
    type InitError: fmt::Display;

    /// Time kept back from the runtime's deadline to answer it (and to log and emit metrics):
    /// a constant, or a setting read at cold start.
    fn answer_margin(&self) -> Duration;

    /// Reads and checks the configuration and builds the clients, once per process.
    fn cold_start() -> impl Future<Output = Result<Self, Self::InitError>>;

    /// Handles one event; an error becomes the invocation's `errorType` and message.
    fn handle(
        &self,
        event: Self::Event,
        invocation: &mut Invocation,
    ) -> impl Future<Output = Result<Self::Response, FunctionError>>;
}

/// Starts `F` and serves its events until the runtime shuts the process down.
pub async fn serve<F: Function>() -> Result<(), Error> {
    crate::logging::init();
    let function = crate::init(F::cold_start().await).await?;
    let function = &function;
    crate::run(move |event: LambdaEvent<F::Event>| async move {
        let mut invocation = Invocation::new(&event.context, function.answer_margin());
        let result = function.handle(event.payload, &mut invocation).await;
        invocation.metrics.emit();
        result
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invocation_keeps_the_margin_before_the_runtime_deadline() {
        let mut context = Context::default();
        context.request_id = "req-1".into();
        context.invoked_function_arn = "arn:aws:lambda:us-east-1:1:function:f".into();
        let in_ten_seconds = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64
            + 10_000;
        context.deadline = in_ten_seconds;
        let invocation = Invocation::new(&context, Duration::from_secs(3));
        assert_eq!(invocation.request_id, "req-1");
        assert_eq!(
            invocation.function_arn,
            "arn:aws:lambda:us-east-1:1:function:f"
        );
        let left = invocation.deadline.remaining();
        assert!(
            left <= Duration::from_secs(7) && left > Duration::from_secs(6),
            "{left:?}"
        );
        // A margin longer than the time left: the deadline is now, not in the past's past.
        context.deadline = in_ten_seconds - 9_000;
        assert!(
            Invocation::new(&context, Duration::from_secs(3))
                .deadline
                .is_past()
        );
    }
}
