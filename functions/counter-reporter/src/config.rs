//! counter-reporter configuration, read and validated once at cold start.

use std::time::Duration;

use sluice_lambda::config::{ConfigError, Env};

/// Bucket of the totals snapshots. Required.
pub const TOTALS_BUCKET: &str = "TOTALS_BUCKET";
/// Key prefix of the snapshots (`<prefix><YYYY-MM-DD>/totals.jsonl`). Default `totals/`.
pub const TOTALS_PREFIX: &str = "TOTALS_PREFIX";
/// The aggregate table (hash `Counter`, range `Date`): a day's first snapshot is seeded
/// from it, so a reporter deployed mid-day still reports every counter. Required.
pub const AGGREGATE_TABLE: &str = "AGGREGATE_TABLE";
/// The aggregate table's index keyed by `Date`. Default `ByDate`.
pub const AGGREGATE_DATE_INDEX: &str = "AGGREGATE_DATE_INDEX";
/// The alert state table (hash `Counter`, range `Date`). Required.
pub const ALERTS_TABLE: &str = "ALERTS_TABLE";
/// The SNS topic for limit alerts. Required.
pub const ALERT_TOPIC_ARN: &str = "ALERT_TOPIC_ARN";
/// Limits inline, as JSON (see [`crate::limits`]). Default: none.
pub const COUNTER_LIMITS: &str = "COUNTER_LIMITS";
/// Limits in an S3 object (`s3://bucket/key`, JSON), read at cold start. Default: none.
pub const COUNTER_LIMITS_S3_URI: &str = "COUNTER_LIMITS_S3_URI";
/// Snapshot and alert work in flight at once, per batch. Default 8, 1–64.
pub const MAX_CONCURRENT_WRITES: &str = "MAX_CONCURRENT_WRITES";
/// Time kept back from the invocation deadline for reporting, in ms. Default 1000.
pub const DEADLINE_MARGIN_MS: &str = "DEADLINE_MARGIN_MS";

/// Where the limits come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitsSource {
    None,
    Inline(String),
    S3 { bucket: String, key: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReporterConfig {
    pub totals_bucket: String,
    pub totals_prefix: String,
    pub aggregate_table: String,
    pub aggregate_date_index: String,
    pub alerts_table: String,
    pub alert_topic_arn: String,
    pub limits: LimitsSource,
    pub max_concurrent_writes: usize,
    pub deadline_margin: Duration,
}

impl ReporterConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let inline = env
            .optional(COUNTER_LIMITS)
            .filter(|v| !v.trim().is_empty());
        let uri = env
            .optional(COUNTER_LIMITS_S3_URI)
            .filter(|v| !v.trim().is_empty());
        let limits = match (inline, uri) {
            (None, None) => LimitsSource::None,
            (Some(json), None) => LimitsSource::Inline(json),
            (None, Some(uri)) => {
                let (bucket, key) = parse_s3_uri(&uri).ok_or_else(|| {
                    ConfigError::invalid(COUNTER_LIMITS_S3_URI, &uri, "not s3://bucket/key")
                })?;
                LimitsSource::S3 { bucket, key }
            }
            (Some(_), Some(uri)) => {
                return Err(ConfigError::invalid(
                    COUNTER_LIMITS_S3_URI,
                    &uri,
                    format!("set {COUNTER_LIMITS} or {COUNTER_LIMITS_S3_URI}, not both"),
                ));
            }
        };
        let totals_prefix = env.string_or(TOTALS_PREFIX, "totals/");
        if !(totals_prefix.is_empty() || totals_prefix.ends_with('/')) {
            return Err(ConfigError::invalid(
                TOTALS_PREFIX,
                &totals_prefix,
                "must be empty or end with '/'",
            ));
        }
        Ok(ReporterConfig {
            totals_bucket: env.required(TOTALS_BUCKET)?,
            totals_prefix,
            aggregate_table: env.required(AGGREGATE_TABLE)?,
            aggregate_date_index: env.string_or(AGGREGATE_DATE_INDEX, "ByDate"),
            alerts_table: env.required(ALERTS_TABLE)?,
            alert_topic_arn: env.required(ALERT_TOPIC_ARN)?,
            limits,
            max_concurrent_writes: env.number_in(MAX_CONCURRENT_WRITES, 8usize, 1..=64)?,
            deadline_margin: env.millis_or(DEADLINE_MARGIN_MS, Duration::from_secs(1))?,
        })
    }
}

/// `s3://bucket/key` → (bucket, key); both non-empty.
pub fn parse_s3_uri(uri: &str) -> Option<(String, String)> {
    let (bucket, key) = uri.strip_prefix("s3://")?.split_once('/')?;
    (!bucket.is_empty() && !key.is_empty()).then(|| (bucket.to_owned(), key.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Vec<(&'static str, &'static str)> {
        vec![
            (TOTALS_BUCKET, "totals-bucket"),
            (AGGREGATE_TABLE, "agg"),
            (ALERTS_TABLE, "alerts"),
            (ALERT_TOPIC_ARN, "arn:aws:sns:us-east-1:000000000000:alerts"),
        ]
    }

    #[test]
    fn defaults_apply() {
        let config = ReporterConfig::from_env(&Env::from_pairs(base())).unwrap();
        assert_eq!(config.totals_prefix, "totals/");
        assert_eq!(config.aggregate_date_index, "ByDate");
        assert_eq!(config.limits, LimitsSource::None);
        assert_eq!(config.max_concurrent_writes, 8);
        assert_eq!(config.deadline_margin, Duration::from_secs(1));
    }

    #[test]
    fn every_required_variable_is_named_when_missing() {
        for missing in [
            TOTALS_BUCKET,
            AGGREGATE_TABLE,
            ALERTS_TABLE,
            ALERT_TOPIC_ARN,
        ] {
            let pairs: Vec<_> = base().into_iter().filter(|(k, _)| *k != missing).collect();
            let err = ReporterConfig::from_env(&Env::from_pairs(pairs)).unwrap_err();
            assert!(err.to_string().contains(missing), "{err}");
        }
    }

    #[test]
    fn limits_come_inline_or_from_s3_never_both() {
        let mut pairs = base();
        pairs.push((COUNTER_LIMITS, r#"[{"counter":"C*","max":5}]"#));
        let config = ReporterConfig::from_env(&Env::from_pairs(pairs.clone())).unwrap();
        assert!(matches!(config.limits, LimitsSource::Inline(_)));

        let mut s3 = base();
        s3.push((COUNTER_LIMITS_S3_URI, "s3://cfg/limits/counters.json"));
        let config = ReporterConfig::from_env(&Env::from_pairs(s3)).unwrap();
        assert_eq!(
            config.limits,
            LimitsSource::S3 {
                bucket: "cfg".into(),
                key: "limits/counters.json".into()
            }
        );

        pairs.push((COUNTER_LIMITS_S3_URI, "s3://cfg/limits.json"));
        let err = ReporterConfig::from_env(&Env::from_pairs(pairs)).unwrap_err();
        assert!(err.to_string().contains("not both"), "{err}");

        let mut bad = base();
        bad.push((COUNTER_LIMITS_S3_URI, "https://cfg/limits.json"));
        let err = ReporterConfig::from_env(&Env::from_pairs(bad)).unwrap_err();
        assert!(err.to_string().contains(COUNTER_LIMITS_S3_URI), "{err}");
    }

    #[test]
    fn a_prefix_must_end_with_a_slash() {
        let mut pairs = base();
        pairs.push((TOTALS_PREFIX, "totals"));
        let err = ReporterConfig::from_env(&Env::from_pairs(pairs)).unwrap_err();
        assert!(err.to_string().contains(TOTALS_PREFIX), "{err}");
    }
}
