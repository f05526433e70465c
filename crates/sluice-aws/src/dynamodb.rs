//! Conditional DynamoDB writes where a failed condition is an outcome, not an error.
//!
//! Counters and idempotency markers are written with a condition (`attribute_not_exists`,
//! `version = :seen`, …). When the condition fails the caller learns
//! [`UpdateOutcome::ConditionFailed`] and decides (skip a duplicate, re-read, …).
//! Throttling (`ProvisionedThroughputExceededException`, `ThrottlingException`,
//! `RequestLimitExceeded`), 5xx and connection errors are retried with backoff within
//! the deadline (see [`crate::retry::is_transient`]); anything else becomes a
//! [`DynamoError`] naming the table and key.

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::get_item::builders::GetItemFluentBuilder;
use aws_sdk_dynamodb::operation::put_item::builders::PutItemFluentBuilder;
use aws_sdk_dynamodb::operation::put_item::{PutItemError, PutItemOutput};
use aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;
use aws_sdk_dynamodb::operation::update_item::{UpdateItemError, UpdateItemOutput};
use aws_sdk_dynamodb::types::AttributeValue;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::error::{AwsError, ErrorKind};
use crate::retry::{Backoff, Deadline, retry_sdk_call, retry_transient};

const CONDITIONAL_CHECK_FAILED: &str = "ConditionalCheckFailedException";

/// The result of a conditional write that reached DynamoDB.
#[derive(Debug, Clone, PartialEq)]
pub enum UpdateOutcome {
    /// The write happened; `attributes` as requested with `ReturnValues`.
    Applied {
        attributes: Option<HashMap<String, AttributeValue>>,
    },
    /// The condition expression evaluated to false; nothing was written.
    ConditionFailed,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DynamoError {
    /// Retrying will not help (validation, missing table, access denied, …).
    #[error("DynamoDB {operation} on table {table:?}, key {key}, failed: {code}: {message}")]
    Permanent {
        operation: &'static str,
        table: String,
        key: String,
        code: String,
        message: String,
    },
    /// Still failing transiently when the deadline left no time for another attempt.
    #[error(
        "DynamoDB {operation} on table {table:?}, key {key}, still failing when time ran out: {code}: {message}"
    )]
    OutOfTime {
        operation: &'static str,
        table: String,
        key: String,
        code: String,
        message: String,
    },
}

impl DynamoError {
    /// What the failure means, in the classification every service shares.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Permanent { .. } => ErrorKind::Permanent,
            Self::OutOfTime { .. } => ErrorKind::OutOfTime,
        }
    }

    /// Whether a later attempt (e.g. the event's redelivery) could succeed.
    pub fn is_transient(&self) -> bool {
        self.kind().is_retryable()
    }

    pub fn code(&self) -> &str {
        match self {
            Self::Permanent { code, .. } | Self::OutOfTime { code, .. } => code,
        }
    }

    pub(crate) fn from_sdk<E>(
        operation: &'static str,
        table: String,
        key: String,
        err: &SdkError<E, HttpResponse>,
    ) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        Self::on_item(AwsError::from_sdk("DynamoDB", operation, err), table, key)
    }

    /// A classified call's failure, about the item `key` of `table`. The helpers retry
    /// transient failures until time runs out, so a transient one is
    /// [`DynamoError::OutOfTime`].
    pub fn on_item(err: AwsError, table: String, key: String) -> Self {
        let AwsError {
            kind,
            operation,
            code,
            message,
            ..
        } = err;
        if kind.is_retryable() {
            Self::OutOfTime {
                operation,
                table,
                key,
                code,
                message,
            }
        } else {
            Self::Permanent {
                operation,
                table,
                key,
                code,
                message,
            }
        }
    }
}

impl From<DynamoError> for AwsError {
    fn from(err: DynamoError) -> Self {
        let kind = err.kind();
        let message = err.to_string();
        let (DynamoError::Permanent {
            operation, code, ..
        }
        | DynamoError::OutOfTime {
            operation, code, ..
        }) = err;
        Self {
            kind,
            service: "DynamoDB",
            operation,
            code,
            message,
        }
    }
}

/// `pk="abc", sk=42` — attributes sorted by name; binary and composite values shortened.
pub fn render_key(key: &HashMap<String, AttributeValue>) -> String {
    let mut names: Vec<&String> = key.keys().collect();
    names.sort();
    names
        .into_iter()
        .map(|name| {
            let value = match &key[name] {
                AttributeValue::S(s) => format!("{s:?}"),
                AttributeValue::N(n) => n.clone(),
                AttributeValue::B(b) => format!("<{} bytes>", b.as_ref().len()),
                other => format!("{other:?}"),
            };
            format!("{name}={value}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn is_condition_failed<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> bool {
    err.code() == Some(CONDITIONAL_CHECK_FAILED)
}

/// What one conditional write is: how to send it, how its modeled "condition failed"
/// error and its returned attributes look, and where it writes (for error messages).
struct ConditionalWrite<S, C, A> {
    operation: &'static str,
    table: Option<String>,
    key: String,
    send: S,
    is_condition_failure: C,
    attributes: A,
}

impl<S, C, A> ConditionalWrite<S, C, A> {
    /// Sends the write, retrying transient failures within `deadline`, each attempt cut
    /// off at the deadline.
    async fn run<T, E, Fut>(
        self,
        backoff: &Backoff,
        deadline: &Deadline,
    ) -> Result<UpdateOutcome, DynamoError>
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        S: Fn() -> Fut,
        Fut: Future<Output = Result<T, SdkError<E, HttpResponse>>>,
        C: Fn(&E) -> bool,
        A: Fn(T) -> Option<HashMap<String, AttributeValue>>,
    {
        let sent = retry_transient(backoff, deadline, || {
            let attempt = (self.send)();
            async {
                match deadline.bound(attempt).await {
                    Ok(output) => Ok(UpdateOutcome::Applied {
                        attributes: (self.attributes)(output),
                    }),
                    Err(err)
                        if err
                            .as_service_error()
                            .is_some_and(&self.is_condition_failure)
                            || is_condition_failed(&err) =>
                    {
                        Ok(UpdateOutcome::ConditionFailed)
                    }
                    Err(err) => Err(err),
                }
            }
        })
        .await;
        sent.map_err(|err| {
            DynamoError::from_sdk(
                self.operation,
                self.table.unwrap_or_default(),
                self.key,
                &err,
            )
        })
    }
}

/// Sends a conditional `UpdateItem` (the builder carries table, key, update and
/// condition expressions), retrying transient failures within `deadline`.
pub async fn update_conditional(
    builder: UpdateItemFluentBuilder,
    backoff: &Backoff,
    deadline: &Deadline,
) -> Result<UpdateOutcome, DynamoError> {
    ConditionalWrite {
        operation: "UpdateItem",
        table: builder.get_table_name().clone(),
        key: builder
            .get_key()
            .as_ref()
            .map(render_key)
            .unwrap_or_default(),
        send: || builder.clone().send(),
        is_condition_failure: |e: &UpdateItemError| {
            matches!(e, UpdateItemError::ConditionalCheckFailedException(_))
        },
        attributes: |output: UpdateItemOutput| output.attributes,
    }
    .run(backoff, deadline)
    .await
}

/// Sends a `GetItem` (the builder carries table, key and read options), retrying
/// transient failures within `deadline`: the item, or `None` if there is none.
pub async fn get_item(
    builder: GetItemFluentBuilder,
    backoff: &Backoff,
    deadline: &Deadline,
) -> Result<Option<HashMap<String, AttributeValue>>, DynamoError> {
    let table = builder.get_table_name().clone().unwrap_or_default();
    let key = builder
        .get_key()
        .as_ref()
        .map(render_key)
        .unwrap_or_default();
    retry_sdk_call(backoff, deadline, deadline, || builder.clone().send())
        .await
        .map(|out| out.item)
        .map_err(|e| DynamoError::from_sdk("GetItem", table, key, &e))
}

/// Sends a conditional `PutItem`, retrying transient failures within `deadline`.
/// `key_attributes` name the item's primary key attributes, for error messages.
pub async fn put_conditional(
    builder: PutItemFluentBuilder,
    key_attributes: &[&str],
    backoff: &Backoff,
    deadline: &Deadline,
) -> Result<UpdateOutcome, DynamoError> {
    let key = builder.get_item().as_ref().map(|item| {
        let key: HashMap<String, AttributeValue> = key_attributes
            .iter()
            .filter_map(|name| item.get(*name).map(|v| ((*name).to_owned(), v.clone())))
            .collect();
        render_key(&key)
    });
    ConditionalWrite {
        operation: "PutItem",
        table: builder.get_table_name().clone(),
        key: key.unwrap_or_default(),
        send: || builder.clone().send(),
        is_condition_failure: |e: &PutItemError| {
            matches!(e, PutItemError::ConditionalCheckFailedException(_))
        },
        attributes: |output: PutItemOutput| output.attributes,
    }
    .run(backoff, deadline)
    .await
}

/// Writes `item` only if no item with its primary key exists yet
/// (`attribute_not_exists(<partition key>)`): `ConditionFailed` means it already did.
/// `key_attributes` are the table's key attribute names, partition key first.
pub async fn put_if_absent(
    client: &Client,
    table: &str,
    item: HashMap<String, AttributeValue>,
    key_attributes: &[&str],
    backoff: &Backoff,
    deadline: &Deadline,
) -> Result<UpdateOutcome, DynamoError> {
    let Some(partition_key) = key_attributes.first() else {
        return Err(DynamoError::Permanent {
            operation: "PutItem",
            table: table.to_owned(),
            key: String::new(),
            code: "ValidationException".to_owned(),
            message: "put_if_absent needs the partition key attribute name".to_owned(),
        });
    };
    let builder = client
        .put_item()
        .table_name(table)
        .set_item(Some(item))
        .condition_expression("attribute_not_exists(#pk)")
        .expression_attribute_names("#pk", *partition_key);
    put_conditional(builder, key_attributes, backoff, deadline).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::json_error;
    use aws_sdk_dynamodb::config::retry::RetryConfig;
    use aws_sdk_dynamodb::operation::put_item::PutItemOutput;
    use aws_sdk_dynamodb::operation::update_item::UpdateItemOutput;
    use aws_sdk_dynamodb::types::ReturnValue;
    use aws_sdk_dynamodb::types::error::ConditionalCheckFailedException;
    use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};
    use std::time::Duration;
    use tokio::time::Instant;

    const TABLE: &str = "object-counts";

    fn client(rules: &[&Rule]) -> Client {
        mock_client!(aws_sdk_dynamodb, RuleMode::Sequential, rules, |c| c
            .retry_config(RetryConfig::disabled()))
    }

    fn increment(client: &Client) -> UpdateItemFluentBuilder {
        client
            .update_item()
            .table_name(TABLE)
            .key("prefix", AttributeValue::S("2026/01/15".to_owned()))
            .key("hour", AttributeValue::N("13".to_owned()))
            .update_expression("ADD objects :one")
            .condition_expression("attribute_not_exists(last_sequencer) OR last_sequencer < :seq")
            .expression_attribute_values(":one", AttributeValue::N("1".to_owned()))
            .expression_attribute_values(":seq", AttributeValue::S("0055AED6DCD90281E5".to_owned()))
            .return_values(ReturnValue::UpdatedNew)
    }

    fn updated(objects: &str) -> UpdateItemOutput {
        UpdateItemOutput::builder()
            .attributes("objects", AttributeValue::N(objects.to_owned()))
            .build()
    }

    fn throttled() -> aws_smithy_runtime_api::client::orchestrator::HttpResponse {
        json_error(
            400,
            "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
            "The level of configured provisioned throughput for the table was exceeded.",
        )
    }

    fn a_minute() -> Deadline {
        Deadline::after(Duration::from_secs(60))
    }

    #[tokio::test(start_paused = true)]
    async fn applied_update_returns_the_requested_attributes() {
        let rule = mock!(Client::update_item)
            .match_requests(|req| req.table_name() == Some(TABLE))
            .then_output(|| updated("7"));
        let client = client(&[&rule]);
        let outcome =
            update_conditional(increment(&client), &Backoff::default(), &a_minute()).await;
        let expected = HashMap::from([("objects".to_owned(), AttributeValue::N("7".to_owned()))]);
        assert_eq!(
            outcome,
            Ok(UpdateOutcome::Applied {
                attributes: Some(expected)
            })
        );
    }

    #[tokio::test(start_paused = true)]
    async fn conditional_check_failure_is_an_outcome_not_an_error() {
        let rule = mock!(Client::update_item).then_error(|| {
            UpdateItemError::ConditionalCheckFailedException(
                ConditionalCheckFailedException::builder()
                    .message("The conditional request failed")
                    .build(),
            )
        });
        let client = client(&[&rule]);
        let outcome =
            update_conditional(increment(&client), &Backoff::default(), &a_minute()).await;
        assert_eq!(outcome, Ok(UpdateOutcome::ConditionFailed));
        assert_eq!(rule.num_calls(), 1, "a failed condition is not retried");
    }

    #[tokio::test(start_paused = true)]
    async fn conditional_check_failure_from_the_wire_is_an_outcome() {
        let rule = mock!(Client::update_item).then_http_response(|| {
            json_error(
                400,
                "com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException",
                "The conditional request failed",
            )
        });
        let client = client(&[&rule]);
        let outcome =
            update_conditional(increment(&client), &Backoff::default(), &a_minute()).await;
        assert_eq!(outcome, Ok(UpdateOutcome::ConditionFailed));
    }

    #[tokio::test(start_paused = true)]
    async fn throttle_then_success_is_applied() {
        let rule = mock!(Client::update_item)
            .sequence()
            .http_response(throttled)
            .http_status(500, None)
            .output(|| updated("1"))
            .build();
        let client = client(&[&rule]);
        let outcome =
            update_conditional(increment(&client), &Backoff::default(), &a_minute()).await;
        assert!(
            matches!(outcome, Ok(UpdateOutcome::Applied { .. })),
            "{outcome:?}"
        );
        assert_eq!(rule.num_calls(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn permanent_error_names_table_and_key() {
        let rule = mock!(Client::update_item).then_http_response(|| {
            json_error(
                400,
                "com.amazonaws.dynamodb.v20120810#ResourceNotFoundException",
                "Requested resource not found",
            )
        });
        let client = client(&[&rule]);
        let err = update_conditional(increment(&client), &Backoff::default(), &a_minute())
            .await
            .unwrap_err();
        assert!(!err.is_transient());
        assert_eq!(err.code(), "ResourceNotFoundException");
        let text = err.to_string();
        assert!(text.contains("object-counts"), "{text}");
        assert!(text.contains(r#"hour=13, prefix="2026/01/15""#), "{text}");
        assert_eq!(rule.num_calls(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn throttling_until_the_deadline_is_a_transient_error() {
        let rule = mock!(Client::update_item)
            .sequence()
            .http_response(throttled)
            .repeatedly()
            .build();
        let client = client(&[&rule]);
        let deadline = Deadline::after(Duration::from_secs(2));
        let err = update_conditional(increment(&client), &Backoff::default(), &deadline)
            .await
            .unwrap_err();
        assert!(err.is_transient());
        assert_eq!(err.code(), "ProvisionedThroughputExceededException");
        assert!(rule.num_calls() > 1);
        assert!(Instant::now() < deadline.instant());
    }

    #[tokio::test(start_paused = true)]
    async fn put_if_absent_conditions_on_the_partition_key() {
        let rule = mock!(Client::put_item)
            .match_requests(|req| {
                req.condition_expression() == Some("attribute_not_exists(#pk)")
                    && req
                        .expression_attribute_names()
                        .and_then(|n| n.get("#pk"))
                        .map(String::as_str)
                        == Some("job_id")
            })
            .then_output(|| PutItemOutput::builder().build());
        let client = client(&[&rule]);
        let item = HashMap::from([
            ("job_id".to_owned(), AttributeValue::S("j-1".to_owned())),
            ("state".to_owned(), AttributeValue::S("queued".to_owned())),
        ]);
        let outcome = put_if_absent(
            &client,
            "jobs",
            item,
            &["job_id"],
            &Backoff::default(),
            &a_minute(),
        )
        .await;
        assert_eq!(outcome, Ok(UpdateOutcome::Applied { attributes: None }));
        assert_eq!(rule.num_calls(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn put_if_absent_reports_an_existing_item_as_condition_failed() {
        let rule = mock!(Client::put_item).then_http_response(|| {
            json_error(
                400,
                "com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException",
                "The conditional request failed",
            )
        });
        let client = client(&[&rule]);
        let item = HashMap::from([("job_id".to_owned(), AttributeValue::S("j-1".to_owned()))]);
        let outcome = put_if_absent(
            &client,
            "jobs",
            item,
            &["job_id"],
            &Backoff::default(),
            &a_minute(),
        )
        .await;
        assert_eq!(outcome, Ok(UpdateOutcome::ConditionFailed));
    }

    #[tokio::test(start_paused = true)]
    async fn put_error_names_the_key_attributes() {
        let rule = mock!(Client::put_item).then_http_response(|| {
            json_error(
                400,
                "com.amazonaws.dynamodb.v20120810#ValidationException",
                "One or more parameter values were invalid",
            )
        });
        let client = client(&[&rule]);
        let item = HashMap::from([
            ("job_id".to_owned(), AttributeValue::S("j-9".to_owned())),
            ("payload".to_owned(), AttributeValue::S("large".to_owned())),
        ]);
        let err = put_if_absent(
            &client,
            "jobs",
            item,
            &["job_id"],
            &Backoff::default(),
            &a_minute(),
        )
        .await
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains(r#"job_id="j-9""#) && !text.contains("payload"),
            "{text}"
        );
        assert_eq!(err.code(), "ValidationException");
    }
}
