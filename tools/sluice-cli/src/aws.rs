//! The AWS clients a command uses, from the normal credential chain (environment,
//! `AWS_PROFILE`, SSO, instance role) and region; `--endpoint-url` sends every call
//! elsewhere (LocalStack), with S3 addressed path-style as `sluice_aws::clients` does
//! for the functions.

use aws_config::{Region, SdkConfig};

/// One client per service, built once.
#[derive(Clone, Debug)]
pub struct Clients {
    pub config: SdkConfig,
    pub cloudformation: aws_sdk_cloudformation::Client,
    pub cloudwatch: aws_sdk_cloudwatch::Client,
    pub logs: aws_sdk_cloudwatchlogs::Client,
    pub streams: aws_sdk_dynamodbstreams::Client,
    pub kinesis: aws_sdk_kinesis::Client,
    pub lambda: aws_sdk_lambda::Client,
    pub s3: aws_sdk_s3::Client,
    pub sqs: aws_sdk_sqs::Client,
}

impl Clients {
    pub async fn load(endpoint_url: Option<&str>, region: Option<&str>) -> Clients {
        let mut loader = sluice_aws::clients::loader();
        if let Some(url) = endpoint_url {
            loader = loader.endpoint_url(url);
        }
        if let Some(region) = region {
            loader = loader.region(Region::new(region.to_owned()));
        }
        let config = loader.load().await;
        Clients::from_config(config, endpoint_url.is_some())
    }

    /// Clients for `config`; `endpoint_override` (a flag given, or `AWS_ENDPOINT_URL[_S3]`
    /// in the environment) makes S3 path-style.
    pub fn from_config(config: SdkConfig, endpoint_override: bool) -> Clients {
        let s3 = aws_sdk_s3::Client::from_conf(
            sluice_aws::clients::s3_config(&config, |name| {
                if endpoint_override && name == sluice_aws::clients::ENDPOINT_URL {
                    Some("set by --endpoint-url".to_owned())
                } else {
                    std::env::var(name).ok()
                }
            })
            .build(),
        );
        Clients {
            cloudformation: aws_sdk_cloudformation::Client::new(&config),
            cloudwatch: aws_sdk_cloudwatch::Client::new(&config),
            logs: aws_sdk_cloudwatchlogs::Client::new(&config),
            streams: aws_sdk_dynamodbstreams::Client::new(&config),
            kinesis: aws_sdk_kinesis::Client::new(&config),
            lambda: aws_sdk_lambda::Client::new(&config),
            sqs: aws_sdk_sqs::Client::new(&config),
            s3,
            config,
        }
    }

    pub fn region(&self) -> String {
        self.config
            .region()
            .map(|r| r.as_ref().to_owned())
            .unwrap_or_else(|| "(no region)".to_owned())
    }
}
