//! Per-counter limits: which totals are out of range.
//!
//! Configured as a JSON list, read once at cold start (inline or from S3):
//!
//! ```json
//! [
//!   {"counter": "errors.5xx", "max": 100},
//!   {"counter": "queue.*", "min": 0, "max": 50000},
//!   {"counter": "heartbeats.?", "min": 1}
//! ]
//! ```
//!
//! `counter` is a name or a glob (`*` any run of characters, `?` one character). An
//! exact name wins over globs; among globs the first in the list wins. `min` and
//! `max` are inclusive; either may be left out, not both. A counter no rule matches
//! has no limits (its totals are still in the snapshot, never alerted on). Invalid
//! configuration fails the cold start with the rule's position and the problem.

use serde::Deserialize;
use wildmatch::WildMatch;

/// Where a total stands against its limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Standing {
    Below,
    InRange,
    Above,
}

impl Standing {
    pub fn as_str(self) -> &'static str {
        match self {
            Standing::Below => "below",
            Standing::InRange => "in_range",
            Standing::Above => "above",
        }
    }

    pub fn parse(text: &str) -> Option<Standing> {
        match text {
            "below" => Some(Standing::Below),
            "in_range" => Some(Standing::InRange),
            "above" => Some(Standing::Above),
            _ => None,
        }
    }
}

/// One counter's inclusive range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub min: Option<i64>,
    pub max: Option<i64>,
}

impl Range {
    pub fn classify(&self, total: i64) -> Standing {
        match (self.min, self.max) {
            (Some(min), _) if total < min => Standing::Below,
            (_, Some(max)) if total > max => Standing::Above,
            _ => Standing::InRange,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Rule {
    counter: String,
    #[serde(default)]
    min: Option<i64>,
    #[serde(default)]
    max: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitsError {
    #[error("counter limits are not a JSON list of {{counter, min, max}} rules: {0}")]
    Json(String),
    #[error("counter limit #{index} ({counter:?}): {problem}")]
    Rule {
        index: usize,
        counter: String,
        problem: String,
    },
}

/// The configured limits.
#[derive(Debug, Default)]
pub struct Limits {
    exact: Vec<(String, Range)>,
    globs: Vec<(WildMatch, Range)>,
}

impl Limits {
    pub fn none() -> Self {
        Limits::default()
    }

    pub fn parse(text: &str) -> Result<Limits, LimitsError> {
        let rules: Vec<Rule> =
            serde_json::from_str(text).map_err(|e| LimitsError::Json(e.to_string()))?;
        let mut limits = Limits::default();
        for (index, rule) in rules.into_iter().enumerate() {
            let problem = |problem: &str| LimitsError::Rule {
                index,
                counter: rule.counter.clone(),
                problem: problem.to_owned(),
            };
            if rule.counter.is_empty() {
                return Err(problem("empty counter name"));
            }
            if rule.min.is_none() && rule.max.is_none() {
                return Err(problem("needs min, max or both"));
            }
            if let (Some(min), Some(max)) = (rule.min, rule.max)
                && min > max
            {
                return Err(problem(&format!("min {min} is above max {max}")));
            }
            let range = Range {
                min: rule.min,
                max: rule.max,
            };
            if rule.counter.contains(['*', '?']) {
                limits.globs.push((WildMatch::new(&rule.counter), range));
            } else if limits.exact.iter().any(|(name, _)| *name == rule.counter) {
                return Err(problem("the same counter is listed twice"));
            } else {
                limits.exact.push((rule.counter, range));
            }
        }
        Ok(limits)
    }

    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.globs.is_empty()
    }

    pub fn len(&self) -> usize {
        self.exact.len() + self.globs.len()
    }

    /// The range for `counter`: its exact rule, else the first glob that matches.
    pub fn for_counter(&self, counter: &str) -> Option<Range> {
        self.exact
            .iter()
            .find(|(name, _)| name == counter)
            .map(|(_, range)| *range)
            .or_else(|| {
                self.globs
                    .iter()
                    .find(|(glob, _)| glob.matches(counter))
                    .map(|(_, range)| *range)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_inclusive_ranges() {
        let r = Range {
            min: Some(0),
            max: Some(10),
        };
        assert_eq!(r.classify(-1), Standing::Below);
        assert_eq!(r.classify(0), Standing::InRange);
        assert_eq!(r.classify(10), Standing::InRange);
        assert_eq!(r.classify(11), Standing::Above);
        let max_only = Range {
            min: None,
            max: Some(5),
        };
        assert_eq!(max_only.classify(i64::MIN), Standing::InRange);
        assert_eq!(max_only.classify(6), Standing::Above);
    }

    #[test]
    fn exact_names_win_over_globs_and_the_first_glob_wins() {
        let limits = Limits::parse(
            r#"[{"counter":"queue.*","max":1},{"counter":"queue.depth","max":2},
                {"counter":"q*","max":3},{"counter":"h?","min":4}]"#,
        )
        .unwrap();
        assert_eq!(limits.len(), 4);
        assert_eq!(limits.for_counter("queue.depth").unwrap().max, Some(2));
        assert_eq!(limits.for_counter("queue.age").unwrap().max, Some(1));
        assert_eq!(limits.for_counter("qx").unwrap().max, Some(3));
        assert_eq!(limits.for_counter("h1").unwrap().min, Some(4));
        assert_eq!(limits.for_counter("h12"), None);
        assert_eq!(limits.for_counter("other"), None);
    }

    #[test]
    fn invalid_rules_name_their_position_and_problem() {
        for (text, needle) in [
            ("{}", "not a JSON list"),
            (r#"[{"counter":"a"}]"#, "#0 (\"a\"): needs min, max or both"),
            (
                r#"[{"counter":"a","max":1},{"counter":"b","min":5,"max":1}]"#,
                "#1",
            ),
            (r#"[{"counter":"","max":1}]"#, "empty counter name"),
            (
                r#"[{"counter":"a","max":1},{"counter":"a","max":2}]"#,
                "twice",
            ),
            (r#"[{"counter":"a","maximum":1}]"#, "unknown field"),
            (r#"[{"counter":"a","max":1.5}]"#, "not a JSON list"),
        ] {
            let err = Limits::parse(text).unwrap_err().to_string();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }

    #[test]
    fn standings_round_trip_through_their_names() {
        for s in [Standing::Below, Standing::InRange, Standing::Above] {
            assert_eq!(Standing::parse(s.as_str()), Some(s));
        }
        assert_eq!(Standing::parse("high"), None);
    }
}
