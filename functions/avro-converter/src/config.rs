//! The converter's configuration, read once at cold start from environment variables and
//! checked there: a missing or malformed variable, or a layout in which the function's own
//! output could trigger it again, fails the cold start naming the variable.

use std::path::PathBuf;

use sluice_codec::avro::ContainerCodec;
use sluice_lambda::config::{ConfigError, Env};
use sluice_partition::TimeUnit;

/// Raw bucket whose `ObjectCreated` events trigger the function (required).
pub const INPUT_BUCKET: &str = "INPUT_BUCKET";
/// Key prefix of the notification filter (default: empty, the whole bucket).
pub const INPUT_PREFIX: &str = "INPUT_PREFIX";
/// Key suffix of the notification filter (default `.json.snappy`).
pub const INPUT_SUFFIX: &str = "INPUT_SUFFIX";
/// Bucket the Avro files go to (required).
pub const OUTPUT_BUCKET: &str = "OUTPUT_BUCKET";
/// Key prefix of the Avro files (default `avro/`).
pub const OUTPUT_PREFIX: &str = "OUTPUT_PREFIX";
/// Bucket for rejects (default: the output bucket).
pub const ERROR_BUCKET: &str = "ERROR_BUCKET";
/// Key prefix for rejects (default `errors/`).
pub const ERROR_PREFIX: &str = "ERROR_PREFIX";
/// Avro block codec: `snappy` (default), `deflate` or `null`.
pub const AVRO_CODEC: &str = "AVRO_CODEC";
/// Record field holding the event time (default `PTS`).
pub const TIMESTAMP_FIELD: &str = "TIMESTAMP_FIELD";
/// Unit of that field: `s`, `ms` (default), `us` or `ns`.
pub const TIMESTAMP_UNIT: &str = "TIMESTAMP_UNIT";
/// Schema override: `s3://bucket/key.avsc` or a file path (default: the built-in player schema).
pub const AVRO_SCHEMA: &str = "AVRO_SCHEMA";
/// Largest decompressed input accepted, in bytes (default 256 MiB).
pub const MAX_DECOMPRESSED_BYTES: &str = "MAX_DECOMPRESSED_BYTES";

pub const DEFAULT_INPUT_SUFFIX: &str = ".json.snappy";
pub const DEFAULT_OUTPUT_PREFIX: &str = "avro/";
pub const DEFAULT_ERROR_PREFIX: &str = "errors/";
pub const DEFAULT_TIMESTAMP_FIELD: &str = "PTS";
pub const DEFAULT_MAX_DECOMPRESSED_BYTES: usize = 256 << 20;

/// Suffix of every Avro file the function writes.
pub const AVRO_SUFFIX: &str = ".avro";

/// Which objects trigger the function: the notification filter of the raw bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputFilter {
    pub bucket: String,
    pub prefix: String,
    pub suffix: String,
}

impl InputFilter {
    /// Whether an object in `bucket` at `key` passes the filter.
    pub fn matches(&self, bucket: &str, key: &str) -> bool {
        bucket == self.bucket && key.starts_with(&self.prefix) && key.ends_with(&self.suffix)
    }
}

/// A bucket and a key prefix (empty or ending in `/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub bucket: String,
    pub prefix: String,
}

impl Location {
    /// Whether `key` in `bucket` lies under this location.
    pub fn contains(&self, bucket: &str, key: &str) -> bool {
        bucket == self.bucket && key.starts_with(&self.prefix)
    }

    /// Whether some key could lie under both this location and under `prefix` of `bucket`.
    fn overlaps(&self, bucket: &str, prefix: &str) -> bool {
        bucket == self.bucket
            && (self.prefix.starts_with(prefix) || prefix.starts_with(&self.prefix))
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.prefix)
    }
}

/// The record field that carries the event time, and its unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimestampField {
    pub name: String,
    pub unit: TimeUnit,
}

/// Where the Avro schema comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemaSource {
    /// The player-event schema shipped in this crate.
    BuiltIn,
    S3 {
        bucket: String,
        key: String,
    },
    File(PathBuf),
}

impl SchemaSource {
    fn parse(value: &str) -> Result<Self, ConfigError> {
        if let Some(rest) = value.strip_prefix("s3://") {
            return match rest.split_once('/') {
                Some((bucket, key)) if !bucket.is_empty() && !key.is_empty() => Ok(Self::S3 {
                    bucket: bucket.to_owned(),
                    key: key.to_owned(),
                }),
                _ => Err(ConfigError::invalid(
                    AVRO_SCHEMA,
                    value,
                    "an S3 URI needs a bucket and a key: s3://bucket/path/schema.avsc",
                )),
            };
        }
        Ok(Self::File(PathBuf::from(value)))
    }
}

impl std::fmt::Display for SchemaSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SchemaSource::BuiltIn => f.write_str("built-in player_event.avsc"),
            SchemaSource::S3 { bucket, key } => write!(f, "s3://{bucket}/{key}"),
            SchemaSource::File(path) => write!(f, "{}", path.display()),
        }
    }
}

/// Everything the converter is configured with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub input: InputFilter,
    pub output: Location,
    pub errors: Location,
    pub codec: ContainerCodec,
    pub timestamp: TimestampField,
    pub schema: SchemaSource,
    pub max_decompressed_bytes: usize,
}

/// `""` stays empty (bucket root); anything else ends with exactly one `/`.
fn folder_prefix(name: &str, value: String) -> Result<String, ConfigError> {
    if value.starts_with('/') {
        return Err(ConfigError::invalid(
            name,
            &value,
            "S3 keys do not start with '/'",
        ));
    }
    if value.is_empty() || value.ends_with('/') {
        Ok(value)
    } else {
        Ok(format!("{value}/"))
    }
}

impl Config {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let input = InputFilter {
            bucket: env.required(INPUT_BUCKET)?,
            prefix: env.string_or(INPUT_PREFIX, ""),
            suffix: env.string_or(INPUT_SUFFIX, DEFAULT_INPUT_SUFFIX),
        };
        let output = Location {
            bucket: env.required(OUTPUT_BUCKET)?,
            prefix: folder_prefix(
                OUTPUT_PREFIX,
                env.string_or(OUTPUT_PREFIX, DEFAULT_OUTPUT_PREFIX),
            )?,
        };
        let errors = Location {
            bucket: env.string_or(ERROR_BUCKET, &output.bucket),
            prefix: folder_prefix(
                ERROR_PREFIX,
                env.string_or(ERROR_PREFIX, DEFAULT_ERROR_PREFIX),
            )?,
        };
        let timestamp = TimestampField {
            name: env.string_or(TIMESTAMP_FIELD, DEFAULT_TIMESTAMP_FIELD),
            unit: env.parse_or(TIMESTAMP_UNIT, TimeUnit::Milliseconds)?,
        };
        let schema = match env.optional(AVRO_SCHEMA) {
            None => SchemaSource::BuiltIn,
            Some(value) => SchemaSource::parse(&value)?,
        };
        let config = Config {
            input,
            output,
            errors,
            codec: env.parse_or(AVRO_CODEC, ContainerCodec::Snappy)?,
            timestamp,
            schema,
            max_decompressed_bytes: env.number_in(
                MAX_DECOMPRESSED_BYTES,
                DEFAULT_MAX_DECOMPRESSED_BYTES,
                1..=(4usize << 30),
            )?,
        };
        config.refuse_loops()?;
        Ok(config)
    }

    /// Refuses layouts where what the function writes could trigger it again, or where
    /// rejects would be mixed into the Avro table.
    fn refuse_loops(&self) -> Result<(), ConfigError> {
        let input = &self.input;
        if self.output.overlaps(&input.bucket, &input.prefix)
            && AVRO_SUFFIX.ends_with(&input.suffix)
        {
            return Err(ConfigError::invalid(
                OUTPUT_PREFIX,
                &self.output.prefix,
                format!(
                    "Avro files written under {} would match the trigger filter (bucket {}, prefix {:?}, suffix {:?}) and invoke the function again; use another bucket or a prefix outside the input prefix",
                    self.output, input.bucket, input.prefix, input.suffix
                ),
            ));
        }
        // Rejected inputs are copied under the error prefix with their own key (and suffix),
        // so any overlap with the input prefix would loop.
        if self.errors.overlaps(&input.bucket, &input.prefix) {
            return Err(ConfigError::invalid(
                ERROR_PREFIX,
                &self.errors.prefix,
                format!(
                    "rejects written under {} would match the trigger filter (bucket {}, prefix {:?}) and invoke the function again; use another bucket or a prefix outside the input prefix",
                    self.errors, input.bucket, input.prefix
                ),
            ));
        }
        if self
            .errors
            .overlaps(&self.output.bucket, &self.output.prefix)
        {
            return Err(ConfigError::invalid(
                ERROR_PREFIX,
                &self.errors.prefix,
                format!(
                    "rejects under {} would land inside the Avro output {}; give them a separate prefix",
                    self.errors, self.output
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        Env::from_pairs(pairs.iter().copied())
    }

    fn base() -> Vec<(&'static str, &'static str)> {
        vec![(INPUT_BUCKET, "raw"), (OUTPUT_BUCKET, "curated")]
    }

    fn with(extra: &[(&'static str, &'static str)]) -> Result<Config, ConfigError> {
        let mut pairs = base();
        pairs.extend_from_slice(extra);
        Config::from_env(&env(&pairs))
    }

    #[test]
    fn defaults_apply_when_only_buckets_are_set() {
        let config = with(&[]).unwrap();
        assert_eq!(config.input.prefix, "");
        assert_eq!(config.input.suffix, ".json.snappy");
        assert_eq!(config.output.prefix, "avro/");
        assert_eq!(config.errors.bucket, "curated");
        assert_eq!(config.errors.prefix, "errors/");
        assert_eq!(config.codec, ContainerCodec::Snappy);
        assert_eq!(config.timestamp.name, "PTS");
        assert_eq!(config.timestamp.unit, TimeUnit::Milliseconds);
        assert_eq!(config.schema, SchemaSource::BuiltIn);
        assert_eq!(config.max_decompressed_bytes, 256 << 20);
    }

    #[test]
    fn missing_buckets_are_named() {
        let err = Config::from_env(&env(&[(OUTPUT_BUCKET, "curated")])).unwrap_err();
        assert_eq!(err.name, INPUT_BUCKET);
        let err = Config::from_env(&env(&[(INPUT_BUCKET, "raw")])).unwrap_err();
        assert_eq!(err.name, OUTPUT_BUCKET);
    }

    #[test]
    fn prefixes_get_one_trailing_slash() {
        let config = with(&[(OUTPUT_PREFIX, "player/avro"), (ERROR_PREFIX, "bad/")]).unwrap();
        assert_eq!(config.output.prefix, "player/avro/");
        assert_eq!(config.errors.prefix, "bad/");
        let err = with(&[(OUTPUT_PREFIX, "/avro")]).unwrap_err();
        assert_eq!(err.name, OUTPUT_PREFIX);
    }

    #[test]
    fn codec_unit_and_schema_parse() {
        let config = with(&[
            (AVRO_CODEC, "deflate"),
            (TIMESTAMP_FIELD, "event_time"),
            (TIMESTAMP_UNIT, "s"),
            (AVRO_SCHEMA, "s3://schemas/player/v2.avsc"),
        ])
        .unwrap();
        assert_eq!(config.codec, ContainerCodec::Deflate);
        assert_eq!(config.timestamp.name, "event_time");
        assert_eq!(config.timestamp.unit, TimeUnit::Seconds);
        assert_eq!(
            config.schema,
            SchemaSource::S3 {
                bucket: "schemas".into(),
                key: "player/v2.avsc".into()
            }
        );
        let file = with(&[(AVRO_SCHEMA, "/opt/schema.avsc")]).unwrap();
        assert_eq!(file.schema, SchemaSource::File("/opt/schema.avsc".into()));
    }

    #[test]
    fn malformed_values_name_their_variable() {
        for (name, value) in [
            (AVRO_CODEC, "zstd"),
            (TIMESTAMP_UNIT, "fortnights"),
            (AVRO_SCHEMA, "s3://only-bucket"),
            (MAX_DECOMPRESSED_BYTES, "0"),
        ] {
            let err = with(&[(name, value)]).unwrap_err();
            assert_eq!(err.name, name, "{err}");
        }
    }

    #[test]
    fn output_that_would_retrigger_the_function_is_refused() {
        // Same bucket, output under the input prefix, suffix filter that .avro passes.
        let err = Config::from_env(&env(&[
            (INPUT_BUCKET, "data"),
            (OUTPUT_BUCKET, "data"),
            (INPUT_PREFIX, "incoming/"),
            (INPUT_SUFFIX, ".avro"),
            (OUTPUT_PREFIX, "incoming/avro/"),
        ]))
        .unwrap_err();
        assert_eq!(err.name, OUTPUT_PREFIX);
        assert!(
            err.to_string().contains("invoke the function again"),
            "{err}"
        );
        // An empty input prefix and suffix matches everything in the bucket.
        let err = Config::from_env(&env(&[
            (INPUT_BUCKET, "data"),
            (OUTPUT_BUCKET, "data"),
            (INPUT_SUFFIX, ""),
        ]));
        assert!(err.is_err());
    }

    #[test]
    fn same_bucket_is_fine_when_the_filter_cannot_match_the_output() {
        // Suffix filter .json.snappy never matches .avro, and the prefixes are disjoint.
        let config = Config::from_env(&env(&[
            (INPUT_BUCKET, "data"),
            (OUTPUT_BUCKET, "data"),
            (INPUT_PREFIX, "raw/"),
            (OUTPUT_PREFIX, "avro/"),
        ]))
        .unwrap();
        assert_eq!(config.output.bucket, "data");
    }

    #[test]
    fn errors_under_the_input_prefix_are_refused() {
        let err = Config::from_env(&env(&[
            (INPUT_BUCKET, "data"),
            (OUTPUT_BUCKET, "curated"),
            (ERROR_BUCKET, "data"),
            (INPUT_PREFIX, "raw/"),
            (ERROR_PREFIX, "raw/errors/"),
        ]))
        .unwrap_err();
        assert_eq!(err.name, ERROR_PREFIX);
    }

    #[test]
    fn errors_inside_the_avro_output_are_refused() {
        let err =
            with(&[(OUTPUT_PREFIX, "tables/"), (ERROR_PREFIX, "tables/errors/")]).unwrap_err();
        assert_eq!(err.name, ERROR_PREFIX);
        assert!(err.to_string().contains("inside the Avro output"), "{err}");
    }

    #[test]
    fn input_filter_checks_bucket_prefix_and_suffix() {
        let filter = InputFilter {
            bucket: "raw".into(),
            prefix: "player/".into(),
            suffix: ".json.snappy".into(),
        };
        assert!(filter.matches("raw", "player/2024/a.json.snappy"));
        assert!(!filter.matches("raw", "other/a.json.snappy"));
        assert!(!filter.matches("raw", "player/a.json"));
        assert!(!filter.matches("curated", "player/a.json.snappy"));
    }
}
