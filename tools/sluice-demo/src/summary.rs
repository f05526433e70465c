//! The summary: one row per function — what went in, what came out and where, expected
//! and observed counts, end-to-end latency — as a text table and as JSON.

use serde::Serialize;
use std::fmt::Write as _;

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// Function (or functions of one path).
    pub function: String,
    /// What was sent, e.g. `2000 events in 20 POSTs`.
    pub input: String,
    /// What came out, e.g. `2000 records in 3 bzip2 objects`.
    pub output: String,
    /// Where it came out: bucket/key prefix, queue, table.
    pub location: String,
    /// Count the output must reach, and the count observed.
    pub expected: u64,
    pub observed: u64,
    /// First input sent -> last output observed (polling resolution ~1 s).
    pub latency_ms: Option<u64>,
    pub ok: bool,
    /// Why it is not ok, or extra detail.
    pub note: String,
}

impl Row {
    pub fn new(function: &str) -> Row {
        Row {
            function: function.to_owned(),
            input: String::new(),
            output: String::new(),
            location: String::new(),
            expected: 0,
            observed: 0,
            latency_ms: None,
            ok: false,
            note: String::new(),
        }
    }

    /// A row for a path that could not run at all.
    pub fn failed(function: &str, why: impl Into<String>) -> Row {
        Row {
            note: why.into(),
            ..Row::new(function)
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Summary {
    pub run: String,
    pub scale: String,
    pub stack_outputs: String,
    pub ok: bool,
    pub rows: Vec<Row>,
}

impl Summary {
    pub fn new(run: &str, scale: &str, outputs: &str, rows: Vec<Row>) -> Summary {
        Summary {
            run: run.to_owned(),
            scale: scale.to_owned(),
            stack_outputs: outputs.to_owned(),
            ok: !rows.is_empty() && rows.iter().all(|r| r.ok),
            rows,
        }
    }

    pub fn table(&self) -> String {
        let width = self
            .rows
            .iter()
            .map(|r| r.function.chars().count())
            .max()
            .unwrap_or(8)
            .max(8);
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<width$}  {:>9}  {:>8}  status",
            "function", "count", "latency"
        );
        let _ = writeln!(out, "{}", "-".repeat(width + 33));
        for r in &self.rows {
            let latency = r
                .latency_ms
                .map_or("-".to_owned(), |ms| format!("{:.1} s", ms as f64 / 1000.0));
            let count = format!("{}/{}", r.observed, r.expected);
            let status = if r.ok { "ok" } else { "FAIL" };
            let _ = writeln!(
                out,
                "{:<width$}  {count:>9}  {latency:>8}  {status}",
                r.function
            );
            for (label, text) in [
                ("in", &r.input),
                ("out", &r.output),
                ("where", &r.location),
                ("note", &r.note),
            ] {
                if !text.is_empty() {
                    let _ = writeln!(out, "    {label:<6}{text}");
                }
            }
        }
        let _ = writeln!(
            out,
            "\nrun {} (scale {}): {}",
            self.run,
            self.scale,
            if self.ok {
                "every path complete"
            } else {
                "SOME PATHS FAILED"
            }
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(ok: bool) -> Row {
        Row {
            input: "10 events".into(),
            output: "10 records".into(),
            location: "s3://b/p/".into(),
            expected: 10,
            observed: if ok { 10 } else { 9 },
            latency_ms: Some(1500),
            ok,
            ..Row::new("ingest-api")
        }
    }

    #[test]
    fn ok_only_when_every_row_is() {
        assert!(Summary::new("r", "small", "", vec![row(true), row(true)]).ok);
        assert!(!Summary::new("r", "small", "", vec![row(true), row(false)]).ok);
        assert!(!Summary::new("r", "small", "", vec![]).ok);
    }

    #[test]
    fn table_shows_counts_latency_and_failures() {
        let table = Summary::new("r", "small", "", vec![row(true), row(false)]).table();
        assert!(table.contains("10/10"), "{table}");
        assert!(table.contains("9/10"), "{table}");
        assert!(table.contains("1.5 s"), "{table}");
        assert!(table.contains("FAIL"), "{table}");
        assert!(table.contains("SOME PATHS FAILED"), "{table}");
    }
}
