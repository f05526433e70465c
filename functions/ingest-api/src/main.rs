//! ingest-api entry point: configuration and the Kinesis client at cold start, then
//! one [`Ingest::handle`] per API Gateway request.
// The SDK futures nest deeply; the default limit (128) is too low for `main`'s layout.
#![recursion_limit = "256"]

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lambda_events::event::apigw::{ApiGatewayProxyRequest, ApiGatewayProxyResponse};
use ingest_api::handler::{Ingest, IngestConfig, request_facts};
use sluice_aws::idempotency::IdempotencyStore;
use sluice_aws::kinesis::PutRecordsWriter;
use sluice_aws::retry::{Backoff, Deadline};
use sluice_lambda::config::{ConfigError, Env};
use sluice_lambda::metrics::Metrics;
use sluice_lambda::{Error, FunctionError, LambdaEvent};

/// Time kept back from the invocation deadline to answer API Gateway.
const ANSWER_MARGIN: Duration = Duration::from_millis(500);
/// No PutRecords call starts with less than this left: a call cut off at the deadline
/// may have been written, and the client would then resend events it was told failed.
const CALL_RESERVE: Duration = Duration::from_secs(1);

async fn cold_start() -> Result<Ingest, ConfigError> {
    let config = IngestConfig::from_env(&Env::from_process())?;
    let sdk = sluice_aws::clients::load_sdk_config().await;
    // The writer makes every attempt itself (resending only failed entries, within the
    // deadline and the call reserve); SDK-level retries would start calls it cannot see.
    let kinesis = aws_sdk_kinesis::Client::from_conf(
        aws_sdk_kinesis::config::Builder::from(&sdk)
            .retry_config(aws_sdk_kinesis::config::retry::RetryConfig::disabled())
            .build(),
    );
    let writer = PutRecordsWriter::new(kinesis, config.stream.clone(), Backoff::default())
        .with_call_reserve(CALL_RESERVE);
    let idempotency = config.idempotency_table.clone().map(|table| {
        IdempotencyStore::new(
            sluice_aws::clients::dynamodb(&sdk),
            table,
            config.idempotency_window,
        )
    });
    let ingest = Ingest::new(config, writer);
    Ok(match idempotency {
        Some(store) => ingest.with_idempotency(store),
        None => ingest,
    })
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let ingest = Arc::new(sluice_lambda::init(cold_start().await).await?);
    sluice_lambda::run(move |event: LambdaEvent<ApiGatewayProxyRequest>| {
        let ingest = Arc::clone(&ingest);
        async move {
            let now_ms = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
            let facts = request_facts(&event.payload, &event.context.request_id, now_ms);
            let deadline = Deadline::at_epoch_ms(event.context.deadline).with_margin(ANSWER_MARGIN);
            let mut metrics = Metrics::for_function();
            let response: ApiGatewayProxyResponse = ingest
                .handle(&event.payload, &facts, &deadline, &mut metrics)
                .await;
            metrics.emit();
            Ok::<_, FunctionError>(response)
        }
    })
    .await
}
