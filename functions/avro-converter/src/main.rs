//! avro-converter entry point: read and check the configuration, build the S3 client, load
//! the schema (all at cold start, failing it with the reason), then serve S3 events.

use avro_converter::config::Config;
use avro_converter::convert::Converter;
use avro_converter::handler::{DEADLINE_MARGIN, Handler};
use avro_converter::schema::RecordSchema;
use serde_json::Value;
use sluice_aws::Deadline;
use sluice_lambda::config::Env;
use sluice_lambda::{Error, FunctionError, LambdaEvent};

async fn cold_start() -> Result<Handler, String> {
    let config = Config::from_env(&Env::from_process()).map_err(|e| e.to_string())?;
    let sdk = sluice_aws::clients::load_sdk_config().await;
    let s3 = sluice_aws::clients::s3(&sdk);
    let schema = RecordSchema::load(&config.schema, &s3)
        .await
        .map_err(|e| e.to_string())?;
    let converter = Converter::new(
        schema,
        config.codec,
        config.timestamp.clone(),
        config.max_decompressed_bytes,
        config.output.prefix.clone(),
    );
    tracing::info!(
        input_bucket = config.input.bucket,
        output = %config.output,
        errors = %config.errors,
        codec = %config.codec,
        schema = %config.schema,
        "avro-converter ready"
    );
    Ok(Handler::new(config, converter, s3))
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    sluice_lambda::logging::init();
    let handler = sluice_lambda::init(cold_start().await).await?;
    let handler = &handler;
    sluice_lambda::run(move |event: LambdaEvent<Value>| async move {
        let deadline = Deadline::at_epoch_ms(event.context.deadline).with_margin(DEADLINE_MARGIN);
        handler.handle(&event.payload, deadline).await.map_err(|e| {
            tracing::error!(error = %e, retryable = e.is_retryable(), "invocation failed");
            FunctionError::from(e)
        })
    })
    .await
}
