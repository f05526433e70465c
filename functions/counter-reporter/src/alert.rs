//! The alert state of one counter on one day, and the messages people read.
//!
//! The alert table holds one item per (`Counter`, `Date`) with limits:
//!
//! ```text
//! { Counter, Date, Standing, Previous, Total, Version, ChangedVersion, ChangedAt,
//!   Limits, Notified, NotifiedAt?, MessageId? }
//! ```
//!
//! `Version` is the newest aggregate version seen, the ordering guard: an image whose
//! version is not above it changes nothing (a redelivered or replayed record). A new
//! `Standing` is a transition: it is written with `Notified = false` *before* the alert
//! is published (an outbox), and marked `Notified = true` after. A pending transition
//! found later (a publish that failed, a mark that failed) is published then; one
//! transition is never overwritten by the next before its alert went out. Every write
//! is conditional on the version read (`attribute_not_exists(Counter) OR Version = :read`),
//! so concurrent deliveries cannot both claim a transition.
//!
//! So: exactly one alert per transition, except when a publish succeeds and its
//! `Notified` mark then fails — the next delivery publishes it again (at least once).

use serde::{Deserialize, Serialize};

use crate::limits::{Range, Standing};

/// Attribute names of the alert table.
pub mod attr {
    pub const COUNTER: &str = "Counter";
    pub const DATE: &str = "Date";
    pub const VERSION: &str = "Version";
    pub const CHANGED_VERSION: &str = "ChangedVersion";
    pub const NOTIFIED: &str = "Notified";
    pub const NOTIFIED_AT: &str = "NotifiedAt";
    pub const MESSAGE_ID: &str = "MessageId";
}

/// Written unless someone else wrote since it was read.
pub const WRITE_IF_UNCHANGED: &str = "attribute_not_exists(#counter) OR #ver = :read";
/// Marks the transition `ChangedVersion = :cv` as notified.
pub const MARK_NOTIFIED: &str = "SET #notified = :true, #at = :at, #mid = :mid";
pub const MARK_NOTIFIED_IF: &str = "#cver = :cv AND #notified = :false";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertItem {
    #[serde(rename = "Counter")]
    pub counter: String,
    #[serde(rename = "Date")]
    pub date: String,
    /// `below` | `in_range` | `above`.
    #[serde(rename = "Standing")]
    pub standing: String,
    /// The standing before the last transition.
    #[serde(rename = "Previous")]
    pub previous: String,
    #[serde(rename = "Total")]
    pub total: i64,
    #[serde(rename = "Version")]
    pub version: u64,
    /// The version at which `Standing` last changed.
    #[serde(rename = "ChangedVersion")]
    pub changed_version: u64,
    /// The total and time of that change.
    #[serde(rename = "ChangedTotal")]
    pub changed_total: i64,
    #[serde(rename = "ChangedAt")]
    pub changed_at: String,
    /// The limits at that change, as people read them (`0..100`, `..100`).
    #[serde(rename = "Limits")]
    pub limits: String,
    #[serde(rename = "Notified")]
    pub notified: bool,
}

impl AlertItem {
    /// Whether a transition is recorded but its alert not yet published.
    pub fn is_pending(&self) -> bool {
        !self.notified
    }
}

/// What one newer total does to the alert state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The image is not newer than the state (redelivered, replayed): nothing to write.
    Stale,
    /// Write this item (a transition when `notified` is false).
    Write(AlertItem),
}

/// `..100`, `0..`, `0..100`.
pub fn render_range(range: &Range) -> String {
    let end = |v: Option<i64>| v.map(|v| v.to_string()).unwrap_or_default();
    format!("{}..{}", end(range.min), end(range.max))
}

/// The state after the aggregate total `total` at `version`, given the current state.
/// A first total in range starts the state without an alert; a first total out of
/// range is a transition from `in_range`.
pub fn decide(
    current: Option<&AlertItem>,
    counter: &str,
    date: &str,
    total: i64,
    version: u64,
    updated_at: &str,
    range: &Range,
) -> Decision {
    let standing = range.classify(total);
    match current {
        Some(cur) if cur.version >= version => Decision::Stale,
        Some(cur) if cur.standing == standing.as_str() => Decision::Write(AlertItem {
            total,
            version,
            ..cur.clone()
        }),
        _ => {
            let previous = current.map_or(Standing::InRange.as_str(), |c| c.standing.as_str());
            let transition = previous != standing.as_str();
            Decision::Write(AlertItem {
                counter: counter.to_owned(),
                date: date.to_owned(),
                standing: standing.as_str().to_owned(),
                previous: previous.to_owned(),
                total,
                version,
                changed_version: version,
                changed_total: total,
                changed_at: updated_at.to_owned(),
                limits: render_range(range),
                notified: !transition,
            })
        }
    }
}

/// The machine-readable alert (the topic's `default` message: queues, Lambda, HTTPS).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertMessage {
    pub kind: String,
    pub counter: String,
    pub date: String,
    pub standing: String,
    pub previous: String,
    pub total: i64,
    pub limits: String,
    pub version: u64,
    pub changed_at: String,
    pub snapshot: String,
}

impl AlertMessage {
    pub fn of(item: &AlertItem, snapshot_uri: &str) -> AlertMessage {
        AlertMessage {
            kind: "counter_limit".to_owned(),
            counter: item.counter.clone(),
            date: item.date.clone(),
            standing: item.standing.clone(),
            previous: item.previous.clone(),
            total: item.changed_total,
            limits: item.limits.clone(),
            version: item.changed_version,
            changed_at: item.changed_at.clone(),
            snapshot: snapshot_uri.to_owned(),
        }
    }

    fn what(&self) -> &'static str {
        match self.standing.as_str() {
            "above" => "is above its limit",
            "below" => "is below its limit",
            _ => "is back within its limits",
        }
    }

    /// An SNS subject: at most 100 printable ASCII characters.
    pub fn subject(&self) -> String {
        let text = format!(
            "sluice: counter {} on {} {} (total {})",
            self.counter,
            self.date,
            self.what(),
            self.total
        );
        let ascii: String = text
            .chars()
            .map(|c| {
                if c.is_ascii_graphic() || c == ' ' {
                    c
                } else {
                    '?'
                }
            })
            .collect();
        if ascii.len() <= 100 {
            ascii
        } else {
            format!("{}...", &ascii[..97])
        }
    }

    /// The text an email subscriber reads.
    pub fn text(&self) -> String {
        let readable = |s: &str| s.replace('_', " ");
        format!(
            "Counter {counter} on {date} {what}.\n\n\
             \x20 total:    {total}\n\
             \x20 limits:   {limits} (inclusive)\n\
             \x20 previous: {previous}\n\
             \x20 changed:  {changed_at} (total version {version})\n\n\
             The day's totals: {snapshot}\n\n\
             sluice sends one alert when a counter's total leaves its limits and one when it returns.\n",
            counter = self.counter,
            date = self.date,
            what = self.what(),
            total = self.total,
            limits = self.limits,
            previous = readable(&self.previous),
            changed_at = self.changed_at,
            version = self.version,
            snapshot = self.snapshot,
        )
    }

    /// The `MessageStructure=json` body: `default` for machines, `email` for people.
    pub fn sns_message(&self) -> String {
        let default = serde_json::to_string(self).unwrap_or_default();
        serde_json::json!({ "default": default, "email": self.text() }).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX_100: Range = Range {
        min: None,
        max: Some(100),
    };

    fn step(cur: Option<&AlertItem>, total: i64, version: u64) -> Decision {
        decide(
            cur,
            "C1",
            "2015-11-16",
            total,
            version,
            "2015-11-16T00:00:00Z",
            &MAX_100,
        )
    }

    fn written(d: Decision) -> AlertItem {
        match d {
            Decision::Write(item) => item,
            Decision::Stale => panic!("expected a write"),
        }
    }

    #[test]
    fn a_first_total_in_range_starts_quietly_out_of_range_alerts() {
        let quiet = written(step(None, 50, 1));
        assert!(!quiet.is_pending());
        assert_eq!(quiet.standing, "in_range");
        let loud = written(step(None, 150, 1));
        assert!(loud.is_pending());
        assert_eq!(
            (loud.previous.as_str(), loud.standing.as_str()),
            ("in_range", "above")
        );
        assert_eq!(loud.limits, "..100");
    }

    #[test]
    fn leaving_and_returning_are_one_transition_each() {
        let s1 = written(step(None, 50, 1));
        let s2 = written(step(Some(&s1), 150, 2));
        assert!(s2.is_pending());
        let s2 = AlertItem {
            notified: true,
            ..s2
        };
        let s3 = written(step(Some(&s2), 170, 3));
        assert!(!s3.is_pending(), "still above: no new alert");
        assert_eq!(
            s3.changed_version, 2,
            "the transition stays the one at version 2"
        );
        let s4 = written(step(Some(&s3), 90, 4));
        assert!(s4.is_pending());
        assert_eq!(
            (s4.previous.as_str(), s4.standing.as_str()),
            ("above", "in_range")
        );
    }

    #[test]
    fn an_older_or_repeated_version_is_stale() {
        let s2 = written(step(None, 150, 2));
        assert_eq!(step(Some(&s2), 50, 1), Decision::Stale);
        assert_eq!(step(Some(&s2), 150, 2), Decision::Stale);
    }

    #[test]
    fn messages_read_well_and_subjects_obey_sns_rules() {
        let item = written(step(None, 150, 2));
        let msg = AlertMessage::of(&item, "s3://b/totals/2015-11-16/totals.jsonl");
        assert_eq!(
            msg.subject(),
            "sluice: counter C1 on 2015-11-16 is above its limit (total 150)"
        );
        assert_eq!(
            msg.text(),
            "Counter C1 on 2015-11-16 is above its limit.\n\n  total:    150\n  limits:   ..100 (inclusive)\n  \
             previous: in range\n  changed:  2015-11-16T00:00:00Z (total version 2)\n\n\
             The day's totals: s3://b/totals/2015-11-16/totals.jsonl\n\n\
             sluice sends one alert when a counter's total leaves its limits and one when it returns.\n"
        );
        let body: serde_json::Value = serde_json::from_str(&msg.sns_message()).unwrap();
        let default: AlertMessage =
            serde_json::from_str(body["default"].as_str().unwrap()).unwrap();
        assert_eq!(default, msg);
        assert_eq!(body["email"].as_str().unwrap(), msg.text());

        let long = AlertMessage {
            counter: format!("é{}", "x".repeat(200)),
            ..msg
        };
        let subject = long.subject();
        assert_eq!(subject.len(), 100);
        assert!(
            subject.chars().all(|c| c.is_ascii_graphic() || c == ' '),
            "{subject}"
        );
    }
}
