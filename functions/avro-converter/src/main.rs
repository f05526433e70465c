//! avro-converter: the lifecycle is `sluice_lambda::serve`'s, the function is
//! [`avro_converter::handler::Handler`] (its cold start reads and checks the configuration,
//! builds the S3 client and loads the schema, failing with the reason).

#[tokio::main]
async fn main() -> Result<(), sluice_lambda::Error> {
    sluice_lambda::serve::<avro_converter::handler::Handler>().await
}
