//! A day's totals snapshot: every counter of that day with its total, as JSON lines.
//!
//! ```text
//! s3://<bucket>/<prefix><YYYY-MM-DD>/totals.jsonl
//! {"counter":"C1","date":"2015-11-16","total":191122,"version":7,"updated_at":"2015-11-16T22:48:36Z"}
//! ```
//!
//! One line per counter, sorted by counter, so the same totals are the same bytes.
//! The ordering guard is each counter's `version`: the aggregate table's `Version`
//! attribute, which counter-aggregator increments on every change of that total.
//! Merging keeps, per counter, the line with the highest version, so redelivered,
//! replayed or reordered stream records (and a stale index read) can never put an
//! older total back: the merge is commutative and idempotent, and every order of
//! the same records converges on the same snapshot.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The name of a day's snapshot object under the prefix.
pub const SNAPSHOT_NAME: &str = "totals.jsonl";

/// One counter's total on one day, as the aggregate table holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TotalLine {
    pub counter: String,
    pub date: String,
    pub total: i64,
    pub version: u64,
    pub updated_at: String,
}

/// The aggregate table's item as its stream and index show it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct AggregateItem {
    #[serde(rename = "Counter")]
    pub counter: String,
    #[serde(rename = "Date")]
    pub date: String,
    #[serde(rename = "Value")]
    pub value: i64,
    #[serde(rename = "Version")]
    pub version: u64,
    #[serde(rename = "UpdatedAt", default)]
    pub updated_at: String,
}

impl AggregateItem {
    pub fn line(&self) -> TotalLine {
        TotalLine {
            counter: self.counter.clone(),
            date: self.date.clone(),
            total: self.value,
            version: self.version,
            updated_at: self.updated_at.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("snapshot line {line}: {problem}")]
pub struct SnapshotError {
    pub line: usize,
    pub problem: String,
}

/// `<prefix><date>/totals.jsonl`.
pub fn snapshot_key(prefix: &str, date: &str) -> String {
    format!("{prefix}{date}/{SNAPSHOT_NAME}")
}

/// Whether `date` is a `YYYY-MM-DD` key segment (the only dates a snapshot key is made of).
pub fn is_key_date(date: &str) -> bool {
    let b = date.as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
}

/// One day's totals, keyed by counter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    lines: BTreeMap<String, TotalLine>,
}

impl Snapshot {
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads a snapshot written by [`Snapshot::render`]; every line must be for `date`.
    pub fn parse(date: &str, body: &[u8]) -> Result<Snapshot, SnapshotError> {
        let text = std::str::from_utf8(body).map_err(|e| SnapshotError {
            line: 0,
            problem: format!("not UTF-8: {e}"),
        })?;
        let mut snapshot = Snapshot::new();
        for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.is_empty()) {
            let parsed: TotalLine = serde_json::from_str(line).map_err(|e| SnapshotError {
                line: n + 1,
                problem: e.to_string(),
            })?;
            if parsed.date != date {
                return Err(SnapshotError {
                    line: n + 1,
                    problem: format!("date {:?} in the snapshot of {date}", parsed.date),
                });
            }
            snapshot.merge(parsed);
        }
        Ok(snapshot)
    }

    /// Keeps `line` if its counter is new or its version is higher; returns whether
    /// the snapshot changed.
    pub fn merge(&mut self, line: TotalLine) -> bool {
        match self.lines.get(&line.counter) {
            Some(current) if current.version >= line.version => false,
            _ => {
                self.lines.insert(line.counter.clone(), line);
                true
            }
        }
    }

    /// Merges every line; returns whether any changed the snapshot.
    pub fn merge_all<'a>(&mut self, lines: impl IntoIterator<Item = &'a TotalLine>) -> bool {
        // Every line is merged (no short circuit); the result says whether any changed it.
        let mut changed = false;
        for line in lines {
            changed |= self.merge(line.clone());
        }
        changed
    }

    pub fn get(&self, counter: &str) -> Option<&TotalLine> {
        self.lines.get(counter)
    }

    pub fn len(&self) -> usize {
        self.lines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// JSON lines sorted by counter, each ending in `\n`.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.lines.len() * 96);
        for line in self.lines.values() {
            // A struct of strings and integers always serializes.
            serde_json::to_writer(&mut out, line).unwrap_or_default();
            out.push(b'\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(counter: &str, total: i64, version: u64) -> TotalLine {
        TotalLine {
            counter: counter.into(),
            date: "2015-11-16".into(),
            total,
            version,
            updated_at: format!("2015-11-16T00:00:{version:02}Z"),
        }
    }

    #[test]
    fn newest_version_wins_in_any_order() {
        let records = [
            line("C1", 5, 1),
            line("C1", 7, 2),
            line("C1", 5, 3),
            line("C2", 1, 1),
        ];
        let mut forward = Snapshot::new();
        assert!(forward.merge_all(&records));
        let mut backward = Snapshot::new();
        assert!(backward.merge_all(records.iter().rev()));
        assert_eq!(forward, backward);
        assert_eq!(forward.get("C1").unwrap().total, 5);
        assert_eq!(forward.get("C1").unwrap().version, 3);
        // Replaying an older record changes nothing.
        assert!(!forward.merge(line("C1", 7, 2)));
        assert!(!forward.merge(line("C1", 5, 3)));
        assert_eq!(forward.len(), 2);
    }

    #[test]
    fn renders_sorted_json_lines_that_parse_back() {
        let mut s = Snapshot::new();
        s.merge_all(&[line("b", 2, 1), line("a", -1, 4)]);
        let text = String::from_utf8(s.render()).unwrap();
        assert_eq!(
            text,
            "{\"counter\":\"a\",\"date\":\"2015-11-16\",\"total\":-1,\"version\":4,\"updated_at\":\"2015-11-16T00:00:04Z\"}\n\
             {\"counter\":\"b\",\"date\":\"2015-11-16\",\"total\":2,\"version\":1,\"updated_at\":\"2015-11-16T00:00:01Z\"}\n"
        );
        assert_eq!(Snapshot::parse("2015-11-16", text.as_bytes()).unwrap(), s);
        assert_eq!(Snapshot::new().render(), b"");
    }

    #[test]
    fn a_foreign_or_broken_line_is_an_error_with_its_number() {
        let err = Snapshot::parse("2015-11-17", &line_bytes()).unwrap_err();
        assert_eq!(err.line, 1);
        let err = Snapshot::parse("2015-11-16", b"\n{\"counter\":1}\n").unwrap_err();
        assert_eq!(err.line, 2);
    }

    fn line_bytes() -> Vec<u8> {
        let mut s = Snapshot::new();
        s.merge(line("a", 1, 1));
        s.render()
    }

    #[test]
    fn keys_are_made_of_calendar_shaped_dates_only() {
        assert_eq!(
            snapshot_key("totals/", "2015-11-16"),
            "totals/2015-11-16/totals.jsonl"
        );
        assert!(is_key_date("2015-11-16"));
        for bad in [
            "2015-11-1",
            "2015/11/16",
            "../../etc/x",
            "2015-11-16/",
            "abcd-ef-gh",
        ] {
            assert!(!is_key_date(bad), "{bad}");
        }
    }

    #[test]
    fn reads_the_aggregate_items_stream_image() {
        let image: serde_dynamo::Item = serde_json::from_value(serde_json::json!({
            "Counter": {"S": "C1"}, "Date": {"S": "2015-11-16"},
            "Value": {"N": "191122"}, "Version": {"N": "7"}, "UpdatedAt": {"S": "2015-11-16T22:48:36Z"}
        }))
        .unwrap();
        let item: AggregateItem = serde_dynamo::from_item(image).unwrap();
        assert_eq!(
            item.line(),
            TotalLine {
                counter: "C1".into(),
                date: "2015-11-16".into(),
                total: 191122,
                version: 7,
                updated_at: "2015-11-16T22:48:36Z".into(),
            }
        );
    }
}
