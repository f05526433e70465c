//! Configuration, read once at cold start from environment variables.

use std::time::Duration;

use sluice_lambda::config::{ConfigError, Env};

use crate::routes::{Route, Routes};

/// Required: URL of the standard processing queue; every accepted crash id goes there.
pub const PROCESSING_QUEUE_URL: &str = "PROCESSING_QUEUE_URL";
/// Optional: extra routes `<percent>:<queue url>,…` (e.g. `15:https://…/submitter`).
pub const EXTRA_ROUTES: &str = "EXTRA_ROUTES";
/// Optional: the raw-crash key prefix, default [`DEFAULT_RAW_CRASH_PREFIX`].
pub const RAW_CRASH_PREFIX: &str = "RAW_CRASH_PREFIX";
/// Optional: milliseconds kept free before the invocation deadline, default 1000.
pub const DEADLINE_MARGIN_MS: &str = "DEADLINE_MARGIN_MS";

pub const DEFAULT_RAW_CRASH_PREFIX: &str = "v2/raw_crash/";
pub const DEFAULT_DEADLINE_MARGIN: Duration = Duration::from_millis(1000);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub routes: Routes,
    /// Always ends in `/`.
    pub raw_crash_prefix: String,
    /// Sends stop retrying this long before the invocation deadline, so the
    /// function still answers with its partial batch response.
    pub deadline_margin: Duration,
}

impl Config {
    pub fn from_env(env: &Env) -> Result<Config, ConfigError> {
        let processing = env.required(PROCESSING_QUEUE_URL)?;
        let extra = env.string_or(EXTRA_ROUTES, "");
        let processing = Route::new(&processing, 100)
            .map_err(|e| ConfigError::invalid(PROCESSING_QUEUE_URL, &processing, e))?;
        let routes = Routes::new(processing, &extra)
            .map_err(|e| ConfigError::invalid(EXTRA_ROUTES, &extra, e))?;
        let mut raw_crash_prefix = env.string_or(RAW_CRASH_PREFIX, DEFAULT_RAW_CRASH_PREFIX);
        if !raw_crash_prefix.ends_with('/') {
            raw_crash_prefix.push('/');
        }
        let deadline_margin = env.millis_or(DEADLINE_MARGIN_MS, DEFAULT_DEADLINE_MARGIN)?;
        Ok(Config {
            routes,
            raw_crash_prefix,
            deadline_margin,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STANDARD: &str = "http://localhost:4566/000000000000/crash-standard";

    fn env(pairs: &[(&str, &str)]) -> Env {
        Env::from_pairs(pairs.iter().copied())
    }

    #[test]
    fn defaults_apply_with_only_the_processing_queue() {
        let config = Config::from_env(&env(&[(PROCESSING_QUEUE_URL, STANDARD)])).unwrap();
        assert_eq!(config.routes.all().len(), 1);
        assert_eq!(config.raw_crash_prefix, "v2/raw_crash/");
        assert_eq!(config.deadline_margin, Duration::from_secs(1));
    }

    #[test]
    fn missing_processing_queue_is_named() {
        let err = Config::from_env(&env(&[])).unwrap_err();
        assert_eq!(err.name, PROCESSING_QUEUE_URL);
    }

    #[test]
    fn bad_values_name_their_variable() {
        let err = Config::from_env(&env(&[(PROCESSING_QUEUE_URL, "crash-standard")])).unwrap_err();
        assert_eq!(err.name, PROCESSING_QUEUE_URL);
        let err = Config::from_env(&env(&[
            (PROCESSING_QUEUE_URL, STANDARD),
            (EXTRA_ROUTES, "150:http://localhost:4566/000000000000/other"),
        ]))
        .unwrap_err();
        assert_eq!(err.name, EXTRA_ROUTES);
        assert!(err.to_string().contains("150:"), "{err}");
        let err = Config::from_env(&env(&[
            (PROCESSING_QUEUE_URL, STANDARD),
            (DEADLINE_MARGIN_MS, "soon"),
        ]))
        .unwrap_err();
        assert_eq!(err.name, DEADLINE_MARGIN_MS);
    }

    #[test]
    fn prefix_gets_a_trailing_slash_and_routes_parse() {
        let config = Config::from_env(&env(&[
            (PROCESSING_QUEUE_URL, STANDARD),
            (
                EXTRA_ROUTES,
                "15:http://localhost:4566/000000000000/submitter",
            ),
            (RAW_CRASH_PREFIX, "v3/raw"),
            (DEADLINE_MARGIN_MS, "250"),
        ]))
        .unwrap();
        assert_eq!(config.raw_crash_prefix, "v3/raw/");
        assert_eq!(config.routes.all()[1].queue_name, "submitter");
        assert_eq!(config.deadline_margin, Duration::from_millis(250));
    }
}
