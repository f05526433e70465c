//! A deployed stack, known by its outputs (`infra/pipeline.yaml`, section `Outputs`): every
//! bucket, queue, stream and function the commands touch is named there, so the stack name
//! is all an operator gives.

use std::collections::BTreeMap;

use aws_sdk_cloudformation::Client;

use crate::error::{CliError, sdk, service_code};

/// A stack's outputs by key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stack {
    pub name: String,
    pub status: String,
    outputs: BTreeMap<String, String>,
}

impl Stack {
    pub fn new(name: impl Into<String>, outputs: BTreeMap<String, String>) -> Self {
        Stack {
            name: name.into(),
            status: "CREATE_COMPLETE".into(),
            outputs,
        }
    }

    /// Reads the stack's outputs (`DescribeStacks`). A stack that does not exist is
    /// [`CliError::NotFound`]; one without outputs (still creating, rolled back) too,
    /// naming its status.
    pub async fn load(cloudformation: &Client, name: &str) -> Result<Stack, CliError> {
        let described = match cloudformation
            .describe_stacks()
            .stack_name(name)
            .send()
            .await
        {
            Ok(described) => described,
            Err(err) => {
                let missing = service_code(&err).as_deref() == Some("ValidationError")
                    && err
                        .as_service_error()
                        .and_then(|e| {
                            aws_smithy_types::error::metadata::ProvideErrorMetadata::message(e)
                        })
                        .is_some_and(|m| m.contains("does not exist"));
                if missing {
                    return Err(CliError::NotFound(format!(
                        "stack {name} does not exist (give the deployed stack with --stack, or set SLUICE_STACK)"
                    )));
                }
                return Err(sdk(format!("reading stack {name}"), err));
            }
        };
        let Some(stack) = described.stacks().first() else {
            return Err(CliError::NotFound(format!("stack {name} does not exist")));
        };
        let status = stack
            .stack_status()
            .map(|s| s.as_str().to_owned())
            .unwrap_or_default();
        let outputs: BTreeMap<String, String> = stack
            .outputs()
            .iter()
            .filter_map(|o| Some((o.output_key()?.to_owned(), o.output_value()?.to_owned())))
            .collect();
        if outputs.is_empty() {
            return Err(CliError::NotFound(format!(
                "stack {name} has no outputs (status {status}): it is not deployed, or its deployment failed"
            )));
        }
        Ok(Stack {
            name: stack.stack_name().unwrap_or(name).to_owned(),
            status,
            outputs,
        })
    }

    /// The output `key`; its absence is [`CliError::NotFound`], naming the stack (a stack
    /// deployed from an older template lacks newer outputs).
    pub fn output(&self, key: &str) -> Result<&str, CliError> {
        self.outputs
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| {
                CliError::NotFound(format!(
                    "stack {} has no output {key}: deploy it from this version of infra/pipeline.yaml",
                    self.name
                ))
            })
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.outputs
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_cloudformation::operation::describe_stacks::DescribeStacksOutput;
    use aws_sdk_cloudformation::types::{Output, Stack as CfnStack, StackStatus};
    use aws_smithy_mocks::{RuleMode, mock, mock_client};
    use sluice_aws::test_support::http_response;

    fn described(outputs: &[(&str, &str)]) -> DescribeStacksOutput {
        let mut stack = CfnStack::builder()
            .stack_name("sluice")
            .stack_status(StackStatus::UpdateComplete)
            .creation_time(aws_smithy_types::DateTime::from_secs(0));
        for (k, v) in outputs {
            stack = stack.outputs(Output::builder().output_key(*k).output_value(*v).build());
        }
        DescribeStacksOutput::builder()
            .stacks(stack.build())
            .build()
    }

    #[tokio::test]
    async fn outputs_are_read_by_key_and_a_missing_one_is_named() {
        let out = described(&[("AvroConverterFunctionName", "sluice-avro"), ("Empty", "")]);
        let rule = mock!(Client::describe_stacks).then_output(move || out.clone());
        let client = mock_client!(aws_sdk_cloudformation, RuleMode::MatchAny, [&rule]);
        let stack = Stack::load(&client, "sluice").await.unwrap();
        assert_eq!(
            stack.output("AvroConverterFunctionName").unwrap(),
            "sluice-avro"
        );
        assert_eq!(stack.status, "UPDATE_COMPLETE");
        let err = stack.output("Empty").unwrap_err();
        assert_eq!(err.exit_code(), crate::error::EXIT_NOT_FOUND);
        assert!(
            err.to_string().contains("stack sluice has no output Empty"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_stack_that_does_not_exist_is_not_found() {
        let rule = mock!(Client::describe_stacks).then_http_response(|| {
            http_response(
                400,
                "<ErrorResponse><Error><Type>Sender</Type><Code>ValidationError</Code>\
                 <Message>Stack with id nope does not exist</Message></Error></ErrorResponse>",
            )
        });
        let client = mock_client!(aws_sdk_cloudformation, RuleMode::MatchAny, [&rule]);
        let err = Stack::load(&client, "nope").await.unwrap_err();
        assert_eq!(err.exit_code(), crate::error::EXIT_NOT_FOUND, "{err}");
        assert!(
            err.to_string().starts_with("stack nope does not exist"),
            "{err}"
        );
    }
}
