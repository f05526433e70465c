//! Typed configuration from environment variables.
//!
//! Every function reads its configuration once, at cold start, through an
//! [`Env`]; any missing or malformed variable becomes a [`ConfigError`] that
//! names the variable and what was wrong with it, and the cold start fails
//! with that message (see [`crate::init`]).

use std::collections::HashMap;
use std::fmt::Display;
use std::str::FromStr;
use std::time::Duration;

/// A variable that is missing or does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("configuration error: {name} {problem}")]
pub struct ConfigError {
    pub name: String,
    pub problem: String,
}

impl ConfigError {
    pub fn missing(name: &str) -> Self {
        ConfigError {
            name: name.to_string(),
            problem: "is not set (required)".to_string(),
        }
    }

    pub fn invalid(name: &str, value: &str, why: impl Display) -> Self {
        ConfigError {
            name: name.to_string(),
            problem: format!("={value:?} is invalid: {why}"),
        }
    }
}

/// A snapshot of environment variables. Empty values count as unset.
#[derive(Debug, Clone, Default)]
pub struct Env {
    vars: HashMap<String, String>,
}

impl Env {
    /// The process environment.
    pub fn from_process() -> Self {
        Env {
            vars: std::env::vars().collect(),
        }
    }

    /// Explicit pairs (tests, tools).
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Env {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    /// The value, if set and not blank.
    pub fn optional(&self, name: &str) -> Option<String> {
        self.vars
            .get(name)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    }

    /// The value, or an error naming the variable.
    pub fn required(&self, name: &str) -> Result<String, ConfigError> {
        self.optional(name)
            .ok_or_else(|| ConfigError::missing(name))
    }

    /// The value, or `default` when unset.
    pub fn string_or(&self, name: &str, default: &str) -> String {
        self.optional(name).unwrap_or_else(|| default.to_string())
    }

    /// A required value parsed with `FromStr`.
    pub fn parse<T>(&self, name: &str) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: Display,
    {
        let raw = self.required(name)?;
        raw.parse().map_err(|e| ConfigError::invalid(name, &raw, e))
    }

    /// An optional value parsed with `FromStr`.
    pub fn parse_optional<T>(&self, name: &str) -> Result<Option<T>, ConfigError>
    where
        T: FromStr,
        T::Err: Display,
    {
        match self.optional(name) {
            None => Ok(None),
            Some(raw) => raw
                .parse()
                .map(Some)
                .map_err(|e| ConfigError::invalid(name, &raw, e)),
        }
    }

    /// A value parsed with `FromStr`, or `default` when unset.
    pub fn parse_or<T>(&self, name: &str, default: T) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: Display,
    {
        Ok(self.parse_optional(name)?.unwrap_or(default))
    }

    /// A whole number within `range`, or `default` when unset.
    pub fn number_in<T>(
        &self,
        name: &str,
        default: T,
        range: std::ops::RangeInclusive<T>,
    ) -> Result<T, ConfigError>
    where
        T: FromStr + PartialOrd + Display + Copy,
        T::Err: Display,
    {
        let v = self.parse_or(name, default)?;
        if range.contains(&v) {
            Ok(v)
        } else {
            Err(ConfigError::invalid(
                name,
                &v.to_string(),
                format!("must be between {} and {}", range.start(), range.end()),
            ))
        }
    }

    /// A duration given in milliseconds, or `default` when unset.
    pub fn millis_or(&self, name: &str, default: Duration) -> Result<Duration, ConfigError> {
        Ok(self
            .parse_optional::<u64>(name)?
            .map(Duration::from_millis)
            .unwrap_or(default))
    }

    /// `true/false/1/0/yes/no/on/off`, or `default` when unset.
    pub fn bool_or(&self, name: &str, default: bool) -> Result<bool, ConfigError> {
        match self.optional(name) {
            None => Ok(default),
            Some(raw) => match raw.to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" => Ok(true),
                "false" | "0" | "no" | "off" => Ok(false),
                _ => Err(ConfigError::invalid(name, &raw, "expected true or false")),
            },
        }
    }

    /// A comma-separated list; unset means empty. Blank items are dropped.
    pub fn list(&self, name: &str) -> Vec<String> {
        self.optional(name)
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        Env::from_pairs(pairs.iter().copied())
    }

    #[test]
    fn missing_required_variable_names_it() {
        let err = env(&[]).required("OUTPUT_BUCKET").unwrap_err();
        assert_eq!(
            err.to_string(),
            "configuration error: OUTPUT_BUCKET is not set (required)"
        );
    }

    #[test]
    fn blank_values_count_as_unset() {
        let e = env(&[("PREFIX", "  ")]);
        assert_eq!(e.optional("PREFIX"), None);
        assert!(e.required("PREFIX").is_err());
        assert_eq!(e.string_or("PREFIX", "raw/"), "raw/");
    }

    #[test]
    fn malformed_number_names_variable_value_and_reason() {
        let err = env(&[("MAX_BODY_BYTES", "ten")])
            .parse::<u64>("MAX_BODY_BYTES")
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("MAX_BODY_BYTES"), "{msg}");
        assert!(msg.contains("\"ten\""), "{msg}");
        assert!(msg.contains("invalid digit"), "{msg}");
    }

    #[test]
    fn numbers_outside_their_range_are_rejected() {
        let e = env(&[("CONCURRENCY", "0")]);
        let err = e.number_in("CONCURRENCY", 16u32, 1..=256).unwrap_err();
        assert!(err.to_string().contains("between 1 and 256"), "{err}");
        assert_eq!(env(&[]).number_in("CONCURRENCY", 16u32, 1..=256), Ok(16));
    }

    #[test]
    fn defaults_apply_only_when_unset() {
        let e = env(&[("POLL_MS", "250"), ("GZIP", "off")]);
        assert_eq!(
            e.millis_or("POLL_MS", Duration::from_secs(1)).unwrap(),
            Duration::from_millis(250)
        );
        assert_eq!(
            e.millis_or("OTHER_MS", Duration::from_secs(1)).unwrap(),
            Duration::from_secs(1)
        );
        assert!(!e.bool_or("GZIP", true).unwrap());
        assert!(e.bool_or("MISSING", true).unwrap());
        assert!(env(&[("GZIP", "maybe")]).bool_or("GZIP", true).is_err());
    }

    #[test]
    fn lists_split_on_commas_and_drop_blanks() {
        let e = env(&[("QUEUES", " a, b ,,c ")]);
        assert_eq!(e.list("QUEUES"), vec!["a", "b", "c"]);
        assert!(e.list("NONE").is_empty());
    }
}
