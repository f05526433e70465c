//! The deployed functions: their configuration (does it exist, its timeout, its
//! environment) and invoking them with an event, as their trigger would.

use std::collections::HashMap;

use aws_sdk_lambda::Client;
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::InvocationType;
use serde_json::Value;

use crate::error::{CliError, sdk, service_code};

/// What a command needs of a deployed function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployed {
    pub name: String,
    pub timeout_seconds: i32,
    pub environment: HashMap<String, String>,
}

impl Deployed {
    pub fn env(&self, name: &str) -> Option<&str> {
        self.environment
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
}

/// The function's configuration; a function that does not exist is [`CliError::NotFound`].
pub async fn deployed(lambda: &Client, name: &str) -> Result<Deployed, CliError> {
    match lambda
        .get_function_configuration()
        .function_name(name)
        .send()
        .await
    {
        Ok(config) => Ok(Deployed {
            name: name.to_owned(),
            timeout_seconds: config.timeout().unwrap_or(3),
            environment: config
                .environment()
                .and_then(|e| e.variables())
                .cloned()
                .unwrap_or_default(),
        }),
        Err(err) if service_code(&err).as_deref() == Some("ResourceNotFoundException") => Err(
            CliError::NotFound(format!("function {name} does not exist")),
        ),
        Err(err) => Err(sdk(format!("reading function {name}"), err)),
    }
}

/// How one invocation ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Invoked {
    /// The function returned; its answer.
    Returned(Value),
    /// The function failed (`errorType`, `errorMessage`).
    Failed { error_type: String, message: String },
    /// Handed to Lambda's asynchronous queue (`Event`): its outcome is Lambda's to report.
    Queued,
}

impl Invoked {
    /// For stream-triggered functions: the partial batch response's first failed item,
    /// if any (`batchItemFailures[0].itemIdentifier`).
    pub fn batch_item_failure(&self) -> Option<String> {
        match self {
            Invoked::Returned(answer) => answer
                .get("batchItemFailures")
                .and_then(Value::as_array)
                .and_then(|f| f.first())
                .map(|f| {
                    f.get("itemIdentifier")
                        .and_then(Value::as_str)
                        .unwrap_or("?")
                        .to_owned()
                }),
            _ => None,
        }
    }
}

/// Invokes `function` with `event`, synchronously (`RequestResponse`) or not (`Event`).
/// A function that does not exist is [`CliError::NotFound`]; other refusals of the call
/// (payload too large, throttled after the SDK's retries) are errors of this one item.
pub async fn invoke(
    lambda: &Client,
    function: &str,
    event: &Value,
    synchronous: bool,
) -> Result<Invoked, CliError> {
    let kind = if synchronous {
        InvocationType::RequestResponse
    } else {
        InvocationType::Event
    };
    let payload = serde_json::to_vec(event).expect("a JSON value serialises");
    let answer = match lambda
        .invoke()
        .function_name(function)
        .invocation_type(kind)
        .payload(Blob::new(payload))
        .send()
        .await
    {
        Ok(answer) => answer,
        Err(err) if service_code(&err).as_deref() == Some("ResourceNotFoundException") => {
            return Err(CliError::NotFound(format!(
                "function {function} does not exist"
            )));
        }
        Err(err) => return Err(sdk(format!("invoking {function}"), err)),
    };
    if !synchronous {
        return Ok(Invoked::Queued);
    }
    let body: Value = answer
        .payload()
        .map(|p| p.as_ref())
        .filter(|b| !b.is_empty())
        .map(|b| {
            serde_json::from_slice(b)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(b).into_owned()))
        })
        .unwrap_or(Value::Null);
    if answer.function_error().is_some() {
        let field = |name: &str| body.get(name).and_then(Value::as_str).map(str::to_owned);
        return Ok(Invoked::Failed {
            error_type: field("errorType")
                .unwrap_or_else(|| answer.function_error().unwrap_or("Unhandled").to_owned()),
            message: field("errorMessage").unwrap_or_else(|| body.to_string()),
        });
    }
    Ok(Invoked::Returned(body))
}
