//! The job API's bearer token, read from AWS Secrets Manager and cached.
//!
//! The secret holds either the token itself or a JSON object with a `token` field.
//! It is read once at cold start (a missing or empty secret fails the cold start,
//! naming it) and again only when the API refuses the cached token, so a rotated
//! token is picked up without a redeploy.

use std::future::Future;
use std::sync::Mutex;

use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueError;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use sluice_aws::retry::{Backoff, Deadline, error_code, is_transient, retry_sdk_call};
use std::time::Duration;

/// How long reading the secret may keep retrying transient failures.
const READ_BUDGET: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("reading secret {secret_id:?} failed: {code}")]
    Read {
        secret_id: String,
        code: String,
        transient: bool,
    },
    #[error(
        "secret {secret_id:?} holds no token (empty, binary, or JSON without a \"token\" string)"
    )]
    Empty { secret_id: String },
}

impl TokenError {
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            TokenError::Read {
                transient: true,
                ..
            }
        )
    }
}

/// Where the bearer token comes from.
pub trait TokenSource: Send + Sync + 'static {
    /// The current token (cached).
    fn token(&self) -> impl Future<Output = Result<String, TokenError>> + Send;
    /// Reads the token again, bypassing the cache.
    fn refresh(&self) -> impl Future<Output = Result<String, TokenError>> + Send;
}

/// The token in a Secrets Manager secret. Its `Debug` shows the secret id and whether a
/// token is cached, never the token.
pub struct SecretToken {
    client: Client,
    secret_id: String,
    cached: Mutex<Option<String>>,
}

impl std::fmt::Debug for SecretToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let cached = self.cached.lock().map(|c| c.is_some()).unwrap_or(false);
        f.debug_struct("SecretToken")
            .field("secret_id", &self.secret_id)
            .field("cached", &cached)
            .finish_non_exhaustive()
    }
}

impl SecretToken {
    pub fn new(client: Client, secret_id: impl Into<String>) -> Self {
        SecretToken {
            client,
            secret_id: secret_id.into(),
            cached: Mutex::new(None),
        }
    }

    async fn read(&self) -> Result<String, TokenError> {
        let deadline = Deadline::after(READ_BUDGET);
        let answer = retry_sdk_call(&Backoff::default(), &deadline, &deadline, || {
            self.client
                .get_secret_value()
                .secret_id(&self.secret_id)
                .send()
        })
        .await
        .map_err(
            |e: SdkError<GetSecretValueError, HttpResponse>| TokenError::Read {
                secret_id: self.secret_id.clone(),
                code: error_code(&e),
                transient: is_transient(&e),
            },
        )?;
        let token = answer
            .secret_string()
            .and_then(token_from_secret)
            .ok_or_else(|| TokenError::Empty {
                secret_id: self.secret_id.clone(),
            })?;
        *self.cached.lock().unwrap() = Some(token.clone());
        Ok(token)
    }
}

/// The token in a secret string: the string itself, or `{"token": "..."}`.
pub fn token_from_secret(secret: &str) -> Option<String> {
    let trimmed = secret.trim();
    let token = match serde_json::from_str::<serde_json::Value>(trimmed) {
        Ok(serde_json::Value::Object(fields)) => fields.get("token")?.as_str()?.trim().to_owned(),
        _ => trimmed.to_owned(),
    };
    (!token.is_empty()).then_some(token)
}

impl TokenSource for SecretToken {
    async fn token(&self) -> Result<String, TokenError> {
        let cached = self.cached.lock().unwrap().clone();
        match cached {
            Some(token) => Ok(token),
            None => self.read().await,
        }
    }

    async fn refresh(&self) -> Result<String, TokenError> {
        self.read().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_secretsmanager::config::retry::RetryConfig;
    use aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueOutput;
    use aws_smithy_mocks::{RuleMode, mock, mock_client};
    use aws_smithy_types::body::SdkBody;

    #[test]
    fn secret_is_the_token_or_a_json_object_with_one() {
        assert_eq!(token_from_secret(" abc123\n"), Some("abc123".to_owned()));
        assert_eq!(
            token_from_secret(r#"{"token": "t-1", "user": "etl"}"#),
            Some("t-1".to_owned())
        );
        assert_eq!(token_from_secret(r#"{"user": "etl"}"#), None);
        assert_eq!(token_from_secret("  "), None);
    }

    #[tokio::test(start_paused = true)]
    async fn token_is_read_once_and_cached_until_refreshed() {
        let rule = mock!(Client::get_secret_value)
            .match_requests(|r| r.secret_id() == Some("jobs/api-token"))
            .sequence()
            .output(|| GetSecretValueOutput::builder().secret_string("old").build())
            .output(|| {
                GetSecretValueOutput::builder()
                    .secret_string("rotated")
                    .build()
            })
            .build();
        let client = mock_client!(aws_sdk_secretsmanager, RuleMode::Sequential, [&rule], |c| c
            .retry_config(RetryConfig::disabled()));
        let tokens = SecretToken::new(client, "jobs/api-token");
        assert_eq!(tokens.token().await.unwrap(), "old");
        assert_eq!(tokens.token().await.unwrap(), "old");
        assert_eq!(rule.num_calls(), 1);
        assert_eq!(tokens.refresh().await.unwrap(), "rotated");
        assert_eq!(tokens.token().await.unwrap(), "rotated");
        assert_eq!(rule.num_calls(), 2);
        let shown = format!("{tokens:?}");
        assert!(
            !shown.contains("rotated"),
            "the token never shows in Debug: {shown}"
        );
        assert!(
            shown.contains("jobs/api-token") && shown.contains("cached: true"),
            "{shown}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn missing_secret_is_a_permanent_error_naming_it() {
        let rule = mock!(Client::get_secret_value).then_http_response(|| {
            let mut response = HttpResponse::new(
                400.try_into().unwrap(),
                SdkBody::from(
                    r#"{"__type":"ResourceNotFoundException","Message":"Secrets Manager can't find the specified secret."}"#,
                ),
            );
            response
                .headers_mut()
                .insert("content-type", "application/x-amz-json-1.1");
            response
        });
        let client = mock_client!(aws_sdk_secretsmanager, RuleMode::Sequential, [&rule], |c| c
            .retry_config(RetryConfig::disabled()));
        let err = SecretToken::new(client, "jobs/api-token")
            .token()
            .await
            .unwrap_err();
        assert!(!err.is_transient());
        assert!(err.to_string().contains("\"jobs/api-token\""), "{err}");
        assert!(
            err.to_string().contains("ResourceNotFoundException"),
            "{err}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn empty_secret_is_an_error() {
        let rule = mock!(Client::get_secret_value)
            .then_output(|| GetSecretValueOutput::builder().secret_string(" ").build());
        let client = mock_client!(aws_sdk_secretsmanager, RuleMode::Sequential, [&rule], |c| c
            .retry_config(RetryConfig::disabled()));
        let err = SecretToken::new(client, "s").token().await.unwrap_err();
        assert_eq!(
            err,
            TokenError::Empty {
                secret_id: "s".to_owned()
            }
        );
    }
}
