//! counter-mapper configuration, read and validated once at cold start.

use std::time::Duration;

use sluice_lambda::config::{ConfigError, Env};

/// Instance table name (hash `Counter`, range `Date`). Required.
pub const INSTANCE_TABLE: &str = "INSTANCE_TABLE";
/// Key prefix of counter files (`<prefix><YYYY-MM-DD>/values_<instance>`). Default empty.
pub const COUNTER_PREFIX: &str = "COUNTER_PREFIX";
/// Conditional updates in flight at once, per file. Default 16, 1–128.
pub const MAX_CONCURRENT_UPDATES: &str = "MAX_CONCURRENT_UPDATES";
/// Time kept back from the invocation deadline for reporting, in ms. Default 1000.
pub const DEADLINE_MARGIN_MS: &str = "DEADLINE_MARGIN_MS";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapperConfig {
    pub instance_table: String,
    pub counter_prefix: String,
    pub max_concurrent_updates: usize,
    pub deadline_margin: Duration,
}

impl MapperConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(MapperConfig {
            instance_table: env.required(INSTANCE_TABLE)?,
            counter_prefix: env.string_or(COUNTER_PREFIX, ""),
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
        let config = MapperConfig::from_env(&Env::from_pairs([(INSTANCE_TABLE, "t")])).unwrap();
        assert_eq!(
            config,
            MapperConfig {
                instance_table: "t".into(),
                counter_prefix: String::new(),
                max_concurrent_updates: 16,
                deadline_margin: Duration::from_secs(1),
            }
        );
        let err = MapperConfig::from_env(&Env::default()).unwrap_err();
        assert!(err.to_string().contains(INSTANCE_TABLE), "{err}");
    }

    #[test]
    fn bad_values_name_the_variable() {
        let err = MapperConfig::from_env(&Env::from_pairs([
            (INSTANCE_TABLE, "t"),
            (MAX_CONCURRENT_UPDATES, "0"),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains(MAX_CONCURRENT_UPDATES), "{err}");
        let err = MapperConfig::from_env(&Env::from_pairs([
            (INSTANCE_TABLE, "t"),
            (DEADLINE_MARGIN_MS, "soon"),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains(DEADLINE_MARGIN_MS), "{err}");
    }
}
