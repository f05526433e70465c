//! The Avro schema records are converted to: the player-event schema shipped in this crate
//! (`schema/player_event.avsc`), or an override read from S3 or a file at cold start. A schema
//! that does not parse, is not a record, or cannot be written into a container file fails the
//! cold start with the reason.

use sluice_codec::avro::{
    AvroError, CoercionPlan, ContainerCodec, ContainerWriter, Schema, parse_schema,
};

use crate::config::SchemaSource;

/// The built-in player-event schema.
pub const PLAYER_EVENT_AVSC: &str = include_str!("../schema/player_event.avsc");

/// Why the configured schema cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("Avro schema from {source_name} is invalid: {reason}")]
    Invalid { source_name: String, reason: String },
    #[error("Avro schema file {path} cannot be read: {error}")]
    File { path: String, error: std::io::Error },
    #[error("Avro schema s3://{bucket}/{key} cannot be read: {error}")]
    S3 {
        bucket: String,
        key: String,
        error: Box<sluice_aws::S3Error>,
    },
}

/// A parsed record schema with its coercion plan, built once per cold start.
#[derive(Debug)]
pub struct RecordSchema {
    pub schema: Schema,
    pub plan: CoercionPlan,
}

impl RecordSchema {
    /// The built-in player-event schema.
    pub fn player_event() -> Self {
        Self::from_avsc(PLAYER_EVENT_AVSC, &SchemaSource::BuiltIn)
            .expect("the built-in player_event.avsc is valid (tested)")
    }

    /// Parses and checks `avsc` (the text of an `.avsc` file) from `source`.
    pub fn from_avsc(avsc: &str, source: &SchemaSource) -> Result<Self, SchemaError> {
        let invalid = |reason: String| SchemaError::Invalid {
            source_name: source.to_string(),
            reason,
        };
        let schema = parse_schema(avsc).map_err(|e| invalid(error_chain(&e)))?;
        if !matches!(schema, Schema::Record(_)) {
            return Err(invalid(format!(
                "the top-level type must be a record (one JSON object per event), found {:?}",
                schema.canonical_form()
            )));
        }
        // Writing a header proves the schema resolves and serialises for container files.
        ContainerWriter::new(&schema, ContainerCodec::Null, b"", Vec::new())
            .map_err(|e| invalid(error_chain(&e)))?;
        let plan = CoercionPlan::new(&schema);
        Ok(Self { schema, plan })
    }

    /// Loads the schema named by `source`; S3 through `s3`, retrying transient failures
    /// for at most [`SCHEMA_READ_LIMIT`].
    pub async fn load(source: &SchemaSource, s3: &aws_sdk_s3::Client) -> Result<Self, SchemaError> {
        let text = match source {
            SchemaSource::BuiltIn => return Ok(Self::player_event()),
            SchemaSource::File(path) => {
                std::fs::read_to_string(path).map_err(|error| SchemaError::File {
                    path: path.display().to_string(),
                    error,
                })?
            }
            SchemaSource::S3 { bucket, key } => {
                // At cold start: the init phase's own limit (10 s in AWS) bounds it too.
                let deadline = sluice_aws::Deadline::after(SCHEMA_READ_LIMIT);
                let bytes = sluice_aws::get_object_bytes(s3, bucket, key, &deadline)
                    .await
                    .map_err(|error| SchemaError::S3 {
                        bucket: bucket.clone(),
                        key: key.clone(),
                        error: Box::new(error),
                    })?;
                String::from_utf8_lossy(&bytes).into_owned()
            }
        };
        Self::from_avsc(&text, source)
    }
}

/// How long a cold start keeps retrying the schema read from S3.
pub const SCHEMA_READ_LIMIT: std::time::Duration = std::time::Duration::from_secs(8);

fn error_chain(err: &AvroError) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_s3::operation::get_object::GetObjectOutput;
    use aws_sdk_s3::primitives::ByteStream;
    use aws_smithy_mocks::{RuleMode, mock, mock_client};

    #[test]
    fn built_in_schema_is_a_player_event_record() {
        let schema = RecordSchema::player_event();
        let Schema::Record(record) = &schema.schema else {
            panic!("not a record");
        };
        assert_eq!(record.name.fullname(None), "sluice.player.PlayerEvent");
        assert!(record.fields.iter().any(|f| f.name == "PTS"));
    }

    #[test]
    fn invalid_schema_text_gives_the_reason() {
        let err = RecordSchema::from_avsc(
            r#"{"type":"record","name":"E","fields":[{"name":"a","type":"strin"}]}"#,
            &SchemaSource::File("/opt/e.avsc".into()),
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("/opt/e.avsc"), "{msg}");
        assert!(msg.contains("strin"), "{msg}");
    }

    #[test]
    fn non_record_schema_is_refused() {
        let err = RecordSchema::from_avsc(r#""string""#, &SchemaSource::BuiltIn).unwrap_err();
        assert!(err.to_string().contains("must be a record"), "{err}");
    }

    #[tokio::test]
    async fn missing_schema_file_is_named() {
        let source = SchemaSource::File("/nonexistent/x.avsc".into());
        let err = RecordSchema::load(&source, &client(&[])).await.unwrap_err();
        assert!(err.to_string().contains("/nonexistent/x.avsc"), "{err}");
    }

    fn client(rules: &[&aws_smithy_mocks::Rule]) -> aws_sdk_s3::Client {
        mock_client!(aws_sdk_s3, RuleMode::MatchAny, rules, |c| c
            .retry_config(aws_sdk_s3::config::retry::RetryConfig::disabled()))
    }

    #[tokio::test]
    async fn loads_an_override_from_s3() {
        let avsc = r#"{"type":"record","name":"Tiny","fields":[{"name":"PTS","type":"long"}]}"#;
        let rule = mock!(aws_sdk_s3::Client::get_object)
            .match_requests(|r| r.bucket() == Some("schemas") && r.key() == Some("tiny.avsc"))
            .then_output(move || {
                GetObjectOutput::builder()
                    .body(ByteStream::from_static(avsc.as_bytes()))
                    .build()
            });
        let source = SchemaSource::S3 {
            bucket: "schemas".into(),
            key: "tiny.avsc".into(),
        };
        let schema = RecordSchema::load(&source, &client(&[&rule]))
            .await
            .unwrap();
        assert_eq!(
            schema.schema.canonical_form(),
            r#"{"name":"Tiny","type":"record","fields":[{"name":"PTS","type":"long"}]}"#
        );
    }
}
