//! counter-mapper configuration, read and validated once at cold start.

use std::time::Duration;

use sluice_lambda::config::{ConfigError, Env};

/// Instance table name (hash `Counter`, range `Date`). Required.
pub const INSTANCE_TABLE: &str = "INSTANCE_TABLE";
/// The counters bucket: notifications naming any other bucket are refused. Required.
pub const COUNTERS_BUCKET: &str = "COUNTERS_BUCKET";
/// Where the lines and files that did not count are kept, in the counters bucket
/// (`<prefix><file key>.<stamp>.errors.jsonl`). Default `errors/`; not under
/// `COUNTER_PREFIX`.
pub const ERROR_PREFIX: &str = "ERROR_PREFIX";
/// Key prefix of counter files (`<prefix><YYYY-MM-DD>/values_<instance>`). Default empty.
pub const COUNTER_PREFIX: &str = "COUNTER_PREFIX";
/// Conditional updates in flight at once, per file. Default 16, 1–128.
pub const MAX_CONCURRENT_UPDATES: &str = "MAX_CONCURRENT_UPDATES";
/// Time kept back from the invocation deadline for reporting, in ms. Default 1000.
pub const DEADLINE_MARGIN_MS: &str = "DEADLINE_MARGIN_MS";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapperConfig {
    pub instance_table: String,
    pub counters_bucket: String,
    pub counter_prefix: String,
    pub error_prefix: String,
    pub max_concurrent_updates: usize,
    pub deadline_margin: Duration,
}

impl MapperConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let counter_prefix = env.string_or(COUNTER_PREFIX, "");
        let error_prefix = env.string_or(ERROR_PREFIX, "errors/");
        if !counter_prefix.is_empty() && error_prefix.starts_with(&counter_prefix) {
            return Err(ConfigError::invalid(
                ERROR_PREFIX,
                &error_prefix,
                format!(
                    "is under {COUNTER_PREFIX} {counter_prefix:?}: error records would be read as counter files"
                ),
            ));
        }
        Ok(MapperConfig {
            instance_table: env.required(INSTANCE_TABLE)?,
            counters_bucket: env.required(COUNTERS_BUCKET)?,
            counter_prefix,
            error_prefix,
            max_concurrent_updates: env.number_in(MAX_CONCURRENT_UPDATES, 16usize, 1..=128)?,
            deadline_margin: env.millis_or(DEADLINE_MARGIN_MS, Duration::from_secs(1))?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_apply_and_the_table_is_required() {
        let config = MapperConfig::from_env(&Env::from_pairs([
            (INSTANCE_TABLE, "t"),
            (COUNTERS_BUCKET, "b"),
        ]))
        .unwrap();
        assert_eq!(
            config,
            MapperConfig {
                instance_table: "t".into(),
                counters_bucket: "b".into(),
                counter_prefix: String::new(),
                error_prefix: "errors/".into(),
                max_concurrent_updates: 16,
                deadline_margin: Duration::from_secs(1),
            }
        );
        let err = MapperConfig::from_env(&Env::from_pairs([(COUNTERS_BUCKET, "b")])).unwrap_err();
        assert!(err.to_string().contains(INSTANCE_TABLE), "{err}");
        let err = MapperConfig::from_env(&Env::from_pairs([(INSTANCE_TABLE, "t")])).unwrap_err();
        assert!(err.to_string().contains(COUNTERS_BUCKET), "{err}");
    }

    #[test]
    fn the_error_prefix_is_never_under_the_counter_prefix() {
        let env = |counter: &str, error: &str| {
            MapperConfig::from_env(&Env::from_pairs([
                (INSTANCE_TABLE, "t"),
                (COUNTERS_BUCKET, "b"),
                (COUNTER_PREFIX, counter),
                (ERROR_PREFIX, error),
            ]))
        };
        let err = env("counters/", "counters/errors/").unwrap_err();
        assert!(err.to_string().contains(ERROR_PREFIX), "{err}");
        assert!(env("counters/", "errors/").is_ok());
        assert!(env("", "errors/").is_ok());
    }

    #[test]
    fn bad_values_name_the_variable() {
        let err = MapperConfig::from_env(&Env::from_pairs([
            (INSTANCE_TABLE, "t"),
            (COUNTERS_BUCKET, "b"),
            (MAX_CONCURRENT_UPDATES, "0"),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains(MAX_CONCURRENT_UPDATES), "{err}");
        let err = MapperConfig::from_env(&Env::from_pairs([
            (INSTANCE_TABLE, "t"),
            (COUNTERS_BUCKET, "b"),
            (DEADLINE_MARGIN_MS, "soon"),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains(DEADLINE_MARGIN_MS), "{err}");
    }
}
