//! SDK clients from the environment.
//!
//! [`load_sdk_config`] reads region, credentials, retry settings and endpoints the
//! standard way. `aws-config` itself honours `AWS_ENDPOINT_URL` (every service) and
//! `AWS_ENDPOINT_URL_<SERVICE>` (`_S3`, `_KINESIS`, `_SQS`, `_SNS`, `_DYNAMODB`,
//! `_LAMBDA`; the per-service one wins), unless `AWS_IGNORE_CONFIGURED_ENDPOINT_URLS=true`.
//! The one thing it does not do is switch S3 to path-style addressing, which an
//! endpoint such as LocalStack on `localhost:4566` needs: [`s3`] does that.
//!
//! It also shortens the SDK's own retry pauses ([`SDK_INITIAL_BACKOFF`],
//! [`SDK_MAX_BACKOFF`]): every call here already runs inside a deadline-aware retry
//! loop ([`crate::retry`]), and the SDK's defaults (a first pause of up to 1 s,
//! growing to 20 s) would spend an invocation's last seconds asleep instead of
//! trying again.
//!
//! Every client talks HTTPS through [`https_client`]: rustls with the ring crypto
//! provider, the SDK's own hyper client otherwise. The SDK's default (the same client
//! with aws-lc) is compiled out of the workspace; tools build their configuration with
//! [`loader`] so they get the same client.
//!
//! Build one config and the clients once, at cold start, and reuse them.

use std::time::Duration;

use aws_config::{BehaviorVersion, ConfigLoader, SdkConfig};
use aws_smithy_http_client::tls;
use aws_smithy_runtime_api::client::http::SharedHttpClient;
use aws_smithy_types::retry::RetryConfig;

/// Set to a non-empty value, overrides every service's endpoint.
pub const ENDPOINT_URL: &str = "AWS_ENDPOINT_URL";
/// Set to a non-empty value, overrides the S3 endpoint.
pub const ENDPOINT_URL_S3: &str = "AWS_ENDPOINT_URL_S3";
/// `true` makes the SDK ignore the two variables above.
pub const IGNORE_CONFIGURED_ENDPOINT_URLS: &str = "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS";

/// The SDK configuration from the environment (and profile files, if any).
/// Retry mode and attempts (`AWS_RETRY_MODE`, `AWS_MAX_ATTEMPTS`) are the
/// environment's; the pauses between the SDK's attempts are [`with_short_backoff`]'s.
pub async fn load_sdk_config() -> SdkConfig {
    with_short_backoff(&loader().load().await)
}

/// `aws_config::defaults` (latest behaviour version) with [`https_client`]: what every
/// sluice binary, Lambda or tool, builds its SDK configuration from.
pub fn loader() -> ConfigLoader {
    aws_config::defaults(BehaviorVersion::latest()).http_client(https_client())
}

/// The SDK's hyper-based HTTPS client with rustls on the ring provider (HTTP/1.1 and
/// HTTP/2, the platform's root certificates, the SDK's connection pooling and timeouts).
pub fn https_client() -> SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https()
}

/// The SDK's first retry pause is drawn from `[0, SDK_INITIAL_BACKOFF)` (SDK default: 1 s).
pub const SDK_INITIAL_BACKOFF: Duration = Duration::from_millis(100);
/// The SDK's longest retry pause (SDK default: 20 s).
pub const SDK_MAX_BACKOFF: Duration = Duration::from_secs(1);

/// `config` with the SDK's retry pauses shortened to [`SDK_INITIAL_BACKOFF`] and
/// [`SDK_MAX_BACKOFF`]; the retry mode and the number of attempts are kept (standard
/// mode, 3 attempts, when `config` names none).
pub fn with_short_backoff(config: &SdkConfig) -> SdkConfig {
    let retry = config
        .retry_config()
        .cloned()
        .unwrap_or_else(RetryConfig::standard)
        .with_initial_backoff(SDK_INITIAL_BACKOFF)
        .with_max_backoff(SDK_MAX_BACKOFF);
    config.to_builder().retry_config(retry).build()
}

/// Whether S3 must use path-style addressing, given a way to read environment
/// variables: yes when an endpoint override for S3 is in effect (virtual-host style
/// would put the bucket name in front of `localhost`).
pub fn s3_needs_path_style(env: impl Fn(&str) -> Option<String>) -> bool {
    let is_set = |name: &str| env(name).is_some_and(|value| !value.trim().is_empty());
    let ignored = env(IGNORE_CONFIGURED_ENDPOINT_URLS)
        .is_some_and(|value| value.trim().eq_ignore_ascii_case("true"));
    !ignored && (is_set(ENDPOINT_URL) || is_set(ENDPOINT_URL_S3))
}

/// The S3 client configuration for `config`, path-style when
/// [`s3_needs_path_style`] says so for `env`.
pub fn s3_config(
    config: &SdkConfig,
    env: impl Fn(&str) -> Option<String>,
) -> aws_sdk_s3::config::Builder {
    let builder = aws_sdk_s3::config::Builder::from(config);
    if s3_needs_path_style(env) {
        builder.force_path_style(true)
    } else {
        builder
    }
}

/// An S3 client; path-style addressing when an endpoint override is set in the
/// process environment.
pub fn s3(config: &SdkConfig) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(s3_config(config, |name| std::env::var(name).ok()).build())
}

pub fn kinesis(config: &SdkConfig) -> aws_sdk_kinesis::Client {
    aws_sdk_kinesis::Client::new(config)
}

pub fn sqs(config: &SdkConfig) -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::new(config)
}

pub fn sns(config: &SdkConfig) -> aws_sdk_sns::Client {
    aws_sdk_sns::Client::new(config)
}

pub fn dynamodb(config: &SdkConfig) -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::new(config)
}

pub fn lambda(config: &SdkConfig) -> aws_sdk_lambda::Client {
    aws_sdk_lambda::Client::new(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_config::Region;
    use aws_sdk_s3::config::Credentials;
    use aws_smithy_mocks::create_mock_http_client;
    use aws_smithy_runtime_api::box_error::BoxError;
    use aws_smithy_runtime_api::client::interceptors::Intercept;
    use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;
    use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
    use aws_smithy_types::config_bag::ConfigBag;
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn path_style_when_global_endpoint_is_set() {
        assert!(s3_needs_path_style(env_of(&[(
            ENDPOINT_URL,
            "http://localhost:4566"
        )])));
    }

    #[test]
    fn path_style_when_s3_endpoint_is_set() {
        assert!(s3_needs_path_style(env_of(&[(
            ENDPOINT_URL_S3,
            "http://127.0.0.1:4566"
        )])));
    }

    #[test]
    fn virtual_host_style_without_endpoint_override() {
        assert!(!s3_needs_path_style(env_of(&[])));
        assert!(!s3_needs_path_style(env_of(&[(
            "AWS_ENDPOINT_URL_SQS",
            "http://localhost:4566"
        )])));
    }

    #[test]
    fn empty_endpoint_variable_is_not_an_override() {
        assert!(!s3_needs_path_style(env_of(&[
            (ENDPOINT_URL, ""),
            (ENDPOINT_URL_S3, "  ")
        ])));
    }

    #[test]
    fn ignored_endpoint_urls_keep_virtual_host_style() {
        assert!(!s3_needs_path_style(env_of(&[
            (ENDPOINT_URL, "http://localhost:4566"),
            (IGNORE_CONFIGURED_ENDPOINT_URLS, "true"),
        ])));
    }

    /// Records the URI of every request the client is about to send.
    #[derive(Debug, Clone, Default)]
    struct UriRecorder(Arc<Mutex<Vec<String>>>);

    impl Intercept for UriRecorder {
        fn name(&self) -> &'static str {
            "UriRecorder"
        }

        fn read_before_transmit(
            &self,
            context: &BeforeTransmitInterceptorContextRef<'_>,
            _runtime_components: &RuntimeComponents,
            _cfg: &mut ConfigBag,
        ) -> Result<(), BoxError> {
            self.0
                .lock()
                .unwrap()
                .push(context.request().uri().to_owned());
            Ok(())
        }
    }

    async fn get_object_uri(config: &SdkConfig, env: impl Fn(&str) -> Option<String>) -> String {
        let recorder = UriRecorder::default();
        let client = aws_sdk_s3::Client::from_conf(
            s3_config(config, env)
                .http_client(create_mock_http_client())
                .retry_config(aws_sdk_s3::config::retry::RetryConfig::disabled())
                .interceptor(recorder.clone())
                .build(),
        );
        // The mock HTTP client answers 418; only the request matters here.
        let _ = client
            .get_object()
            .bucket("archive")
            .key("2026/01/a.json")
            .send()
            .await;
        recorder.0.lock().unwrap().pop().expect("one request sent")
    }

    fn sdk_config(endpoint: Option<&str>) -> SdkConfig {
        let mut builder = SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(aws_sdk_s3::config::SharedCredentialsProvider::new(
                Credentials::for_tests(),
            ));
        if let Some(endpoint) = endpoint {
            builder = builder.endpoint_url(endpoint);
        }
        builder.build()
    }

    #[tokio::test]
    async fn s3_client_addresses_bucket_in_path_against_endpoint_override() {
        let config = sdk_config(Some("http://localhost:4566"));
        let uri = get_object_uri(&config, env_of(&[(ENDPOINT_URL, "http://localhost:4566")])).await;
        assert!(
            uri.starts_with("http://localhost:4566/archive/2026/01/a.json"),
            "{uri}"
        );
    }

    #[tokio::test]
    async fn s3_client_addresses_bucket_in_host_against_aws() {
        let uri = get_object_uri(&sdk_config(None), env_of(&[])).await;
        assert!(
            uri.starts_with("https://archive.s3.us-east-1.amazonaws.com/2026/01/a.json"),
            "{uri}"
        );
    }

    const PROBE: &str = "SLUICE_AWS_ENDPOINT_PROBE";

    /// Runs in two roles. Normally it re-runs this test binary, filtered to this one test,
    /// with a controlled environment and checks what the child printed; the child (marked
    /// by `PROBE`) loads the config from that environment and prints where S3 and SQS
    /// requests would go. No process environment is mutated; no network is used.
    #[tokio::test]
    async fn sdk_config_honours_global_and_per_service_endpoint_variables() {
        if std::env::var_os(PROBE).is_some() {
            let config = load_sdk_config().await;
            println!(
                "PROBE s3 {}",
                get_object_uri(&config, |name| std::env::var(name).ok()).await
            );
            let recorder = UriRecorder::default();
            let sqs = aws_sdk_sqs::Client::from_conf(
                aws_sdk_sqs::config::Builder::from(&config)
                    .http_client(create_mock_http_client())
                    .retry_config(aws_sdk_sqs::config::retry::RetryConfig::disabled())
                    .interceptor(recorder.clone())
                    .build(),
            );
            let _ = sqs.list_queues().send().await;
            println!("PROBE sqs {}", recorder.0.lock().unwrap().pop().unwrap());
            let retry = config.retry_config().expect("a retry config");
            println!(
                "PROBE retry {:?} {} {:?} {:?}",
                retry.mode(),
                retry.max_attempts(),
                retry.initial_backoff(),
                retry.max_backoff()
            );
            return;
        }

        let output = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "clients::tests::sdk_config_honours_global_and_per_service_endpoint_variables",
                "--nocapture",
                "--test-threads=1",
            ])
            .env_clear()
            .env(PROBE, "1")
            .env("AWS_ENDPOINT_URL", "http://127.0.0.1:4566")
            .env("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:4599")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_CONFIG_FILE", "/nonexistent/sluice-aws-config")
            .env(
                "AWS_SHARED_CREDENTIALS_FILE",
                "/nonexistent/sluice-aws-credentials",
            )
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_RETRY_MODE", "adaptive")
            .env("AWS_MAX_ATTEMPTS", "5")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "child failed: {stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        // Per-service variable wins for S3, and S3 is path-style against it.
        assert!(
            stdout.contains("PROBE s3 http://127.0.0.1:4599/archive/2026/01/a.json"),
            "{stdout}"
        );
        // SQS has no per-service variable: the global one applies.
        assert!(
            stdout.contains("PROBE sqs http://127.0.0.1:4566"),
            "{stdout}"
        );
        // Retry mode and attempts come from the environment; the pauses are shortened.
        assert!(
            stdout.contains("PROBE retry Adaptive 5 100ms 1s"),
            "{stdout}"
        );
    }

    #[test]
    fn short_backoff_keeps_mode_and_attempts_and_defaults_to_standard() {
        let adaptive = SdkConfig::builder()
            .retry_config(RetryConfig::adaptive().with_max_attempts(7))
            .build();
        let retry = with_short_backoff(&adaptive)
            .retry_config()
            .cloned()
            .unwrap();
        assert_eq!(retry.mode(), aws_smithy_types::retry::RetryMode::Adaptive);
        assert_eq!(retry.max_attempts(), 7);
        assert_eq!(retry.initial_backoff(), SDK_INITIAL_BACKOFF);
        assert_eq!(retry.max_backoff(), SDK_MAX_BACKOFF);

        let none = with_short_backoff(&SdkConfig::builder().build());
        let retry = none.retry_config().cloned().unwrap();
        assert_eq!(retry.mode(), aws_smithy_types::retry::RetryMode::Standard);
        assert_eq!(retry.max_attempts(), 3);
        assert_eq!(retry.initial_backoff(), SDK_INITIAL_BACKOFF);
    }
}
