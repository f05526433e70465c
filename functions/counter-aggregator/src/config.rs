//! counter-aggregator configuration, read and validated once at cold start.

use std::time::Duration;

use sluice_lambda::config::{ConfigError, Env};

/// Aggregate table name (hash `Counter`, range `Date`). Required.
pub const AGGREGATE_TABLE: &str = "AGGREGATE_TABLE";
/// Aggregate updates in flight at once, per batch. Default 16, 1–128.
pub const MAX_CONCURRENT_UPDATES: &str = "MAX_CONCURRENT_UPDATES";
/// Time kept back from the invocation deadline for reporting, in ms. Default 1000.
pub const DEADLINE_MARGIN_MS: &str = "DEADLINE_MARGIN_MS";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AggregatorConfig {
    pub aggregate_table: String,
    pub max_concurrent_updates: usize,
    pub deadline_margin: Duration,
}

impl AggregatorConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(AggregatorConfig {
            aggregate_table: env.required(AGGREGATE_TABLE)?,
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
        let config =
            AggregatorConfig::from_env(&Env::from_pairs([(AGGREGATE_TABLE, "agg")])).unwrap();
        assert_eq!(config.aggregate_table, "agg");
        assert_eq!(config.max_concurrent_updates, 16);
        assert_eq!(config.deadline_margin, Duration::from_secs(1));
        let err = AggregatorConfig::from_env(&Env::default()).unwrap_err();
        assert!(err.to_string().contains(AGGREGATE_TABLE), "{err}");
        let err = AggregatorConfig::from_env(&Env::from_pairs([
            (AGGREGATE_TABLE, "agg"),
            (MAX_CONCURRENT_UPDATES, "500"),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains(MAX_CONCURRENT_UPDATES), "{err}");
    }
}
