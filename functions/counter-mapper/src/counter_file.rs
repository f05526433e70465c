//! The counter file an instance uploads: one `COUNTER VALUE` pair per line.
//!
//! Pure parsing, no I/O. Fields are separated by whitespace (spaces, tabs; a
//! trailing `\r` is whitespace too), the value is a signed 64-bit decimal
//! integer, blank lines are ignored. A malformed line never spoils the file:
//! it is reported as a [`MalformedLine`] (line number, reason, a snippet) and
//! the other lines still count. A counter that appears twice keeps the value
//! of its *last* line (an instance appending to its file writes the newest
//! last); the earlier line is reported as superseded.

use std::collections::HashMap;

/// Counter names are DynamoDB partition keys (at most 2048 bytes); this leaves
/// room and rejects obviously broken lines early.
pub const MAX_COUNTER_BYTES: usize = 1024;

/// Longest line text kept in a [`MalformedLine`] (for logs).
const SNIPPET_CHARS: usize = 80;

/// One counter's value as the instance reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CounterValue {
    pub counter: String,
    pub value: i64,
}

/// What was wrong with a line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineProblem {
    #[error("missing value (expected `COUNTER VALUE`)")]
    MissingValue,
    #[error("{fields} fields (expected 2: `COUNTER VALUE`)")]
    TooManyFields { fields: usize },
    #[error("value {value:?} is not a signed 64-bit integer")]
    BadValue { value: String },
    #[error("counter name is {bytes} bytes (at most {MAX_COUNTER_BYTES})")]
    CounterTooLong { bytes: usize },
    #[error("line is not valid UTF-8")]
    NotUtf8,
    #[error("counter {counter:?} appears again on line {later}; the later line wins")]
    Superseded { counter: String, later: usize },
}

impl LineProblem {
    /// A stable, short name for metrics (`MalformedLines.<reason>`).
    pub fn reason(&self) -> &'static str {
        match self {
            LineProblem::MissingValue => "missing_value",
            LineProblem::TooManyFields { .. } => "too_many_fields",
            LineProblem::BadValue { .. } => "bad_value",
            LineProblem::CounterTooLong { .. } => "counter_too_long",
            LineProblem::NotUtf8 => "not_utf8",
            LineProblem::Superseded { .. } => "superseded",
        }
    }
}

/// A line that did not count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MalformedLine {
    /// 1-based.
    pub line: usize,
    pub problem: LineProblem,
    /// The start of the line, for logs.
    pub snippet: String,
}

/// A parsed counter file: the counters in order of first appearance, and the
/// lines that were skipped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CounterFile {
    pub counters: Vec<CounterValue>,
    pub malformed: Vec<MalformedLine>,
}

/// Parses a whole counter file.
pub fn parse_counter_file(bytes: &[u8]) -> CounterFile {
    let mut file = CounterFile::default();
    // counter name → (index in `counters`, line it came from)
    let mut seen: HashMap<String, (usize, usize)> = HashMap::new();
    for (index, raw) in bytes.split(|b| *b == b'\n').enumerate() {
        let line_no = index + 1;
        let raw = if index == 0 {
            raw.strip_prefix("\u{feff}".as_bytes()).unwrap_or(raw)
        } else {
            raw
        };
        let Ok(text) = std::str::from_utf8(raw) else {
            file.malformed.push(MalformedLine {
                line: line_no,
                problem: LineProblem::NotUtf8,
                snippet: snippet(&String::from_utf8_lossy(raw)),
            });
            continue;
        };
        match parse_line(text) {
            Ok(None) => {}
            Ok(Some(cv)) => match seen.get(&cv.counter).copied() {
                Some((at, earlier_line)) => {
                    file.malformed.push(MalformedLine {
                        line: earlier_line,
                        problem: LineProblem::Superseded {
                            counter: cv.counter.clone(),
                            later: line_no,
                        },
                        snippet: snippet(&format!("{} {}", cv.counter, file.counters[at].value)),
                    });
                    file.counters[at].value = cv.value;
                    seen.insert(cv.counter, (at, line_no));
                }
                None => {
                    seen.insert(cv.counter.clone(), (file.counters.len(), line_no));
                    file.counters.push(cv);
                }
            },
            Err(problem) => file.malformed.push(MalformedLine {
                line: line_no,
                problem,
                snippet: snippet(text),
            }),
        }
    }
    file.malformed.sort_by_key(|m| m.line);
    file
}

/// One line: `Ok(None)` for a blank line.
pub fn parse_line(text: &str) -> Result<Option<CounterValue>, LineProblem> {
    let mut fields = text.split_whitespace();
    let Some(counter) = fields.next() else {
        return Ok(None);
    };
    let Some(value) = fields.next() else {
        return Err(LineProblem::MissingValue);
    };
    let extra = fields.count();
    if extra > 0 {
        return Err(LineProblem::TooManyFields { fields: 2 + extra });
    }
    if counter.len() > MAX_COUNTER_BYTES {
        return Err(LineProblem::CounterTooLong {
            bytes: counter.len(),
        });
    }
    let value = value.parse::<i64>().map_err(|_| LineProblem::BadValue {
        value: snippet(value),
    })?;
    Ok(Some(CounterValue {
        counter: counter.to_owned(),
        value,
    }))
}

fn snippet(text: &str) -> String {
    let mut chars = text.trim_end().chars();
    let mut out: String = chars.by_ref().take(SNIPPET_CHARS).collect();
    if chars.next().is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cv(counter: &str, value: i64) -> CounterValue {
        CounterValue {
            counter: counter.to_owned(),
            value,
        }
    }

    /// Fuzz regression (counter_file): a superseded line's snippet was the whole counter
    /// name (up to 1 KiB), not cut at `SNIPPET_CHARS` like every other snippet.
    #[test]
    fn superseded_snippets_are_cut_like_the_others() {
        let name = "\0".repeat(200) + "A";
        let file = parse_counter_file(format!("{name} 4\n{name} 3\n").as_bytes());
        assert_eq!(file.counters, vec![cv(&name, 3)]);
        let [superseded] = &file.malformed[..] else {
            panic!("{:?}", file.malformed);
        };
        assert_eq!(superseded.problem.reason(), "superseded");
        assert_eq!(superseded.snippet.chars().count(), SNIPPET_CHARS + 1);
        assert!(superseded.snippet.ends_with('…'));
    }

    #[test]
    fn parses_the_seed_file_shape() {
        let file = parse_counter_file(b"COUNTER1 123456\nCOUNTER2 54321\n");
        assert_eq!(
            file.counters,
            vec![cv("COUNTER1", 123456), cv("COUNTER2", 54321)]
        );
        assert!(file.malformed.is_empty());
    }

    #[test]
    fn accepts_tabs_crlf_extra_spaces_and_signs() {
        let file = parse_counter_file(b"  A\t-5\r\nB    +7  \r\nC 0");
        assert_eq!(file.counters, vec![cv("A", -5), cv("B", 7), cv("C", 0)]);
        assert!(file.malformed.is_empty());
    }

    #[test]
    fn blank_and_whitespace_only_lines_are_ignored() {
        let file = parse_counter_file(b"\n\nA 1\n   \n\t\r\n\nB 2\n\n");
        assert_eq!(file.counters, vec![cv("A", 1), cv("B", 2)]);
        assert!(file.malformed.is_empty());
        assert_eq!(parse_counter_file(b""), CounterFile::default());
    }

    #[test]
    fn a_byte_order_mark_at_the_start_is_not_part_of_the_first_counter() {
        let file = parse_counter_file("\u{feff}A 1\n".as_bytes());
        assert_eq!(file.counters, vec![cv("A", 1)]);
    }

    #[test]
    fn i64_limits_parse_and_one_past_them_is_malformed() {
        let text = format!(
            "MAX {}\nMIN {}\nOVER 9223372036854775808\nUNDER -9223372036854775809\n",
            i64::MAX,
            i64::MIN
        );
        let file = parse_counter_file(text.as_bytes());
        assert_eq!(
            file.counters,
            vec![cv("MAX", i64::MAX), cv("MIN", i64::MIN)]
        );
        let lines: Vec<usize> = file.malformed.iter().map(|m| m.line).collect();
        assert_eq!(lines, [3, 4]);
        assert!(matches!(
            &file.malformed[0].problem,
            LineProblem::BadValue { value } if value == "9223372036854775808"
        ));
    }

    #[test]
    fn malformed_lines_are_skipped_with_line_number_and_reason_and_the_rest_counts() {
        let file = parse_counter_file(b"GOOD 1\nLONELY\nA 1 2\nB 1.5\nC ten\nD 0x10\nGOOD2 2\n");
        assert_eq!(file.counters, vec![cv("GOOD", 1), cv("GOOD2", 2)]);
        let got: Vec<(usize, &str)> = file
            .malformed
            .iter()
            .map(|m| (m.line, m.problem.reason()))
            .collect();
        assert_eq!(
            got,
            [
                (2, "missing_value"),
                (3, "too_many_fields"),
                (4, "bad_value"),
                (5, "bad_value"),
                (6, "bad_value")
            ]
        );
        assert_eq!(file.malformed[1].snippet, "A 1 2");
        assert_eq!(
            file.malformed[1].problem.to_string(),
            "3 fields (expected 2: `COUNTER VALUE`)"
        );
    }

    #[test]
    fn a_line_that_is_not_utf8_is_malformed_alone() {
        let file = parse_counter_file(b"A 1\nB\xff 2\nC 3\n");
        assert_eq!(file.counters, vec![cv("A", 1), cv("C", 3)]);
        assert_eq!(file.malformed.len(), 1);
        assert_eq!(file.malformed[0].line, 2);
        assert_eq!(file.malformed[0].problem, LineProblem::NotUtf8);
    }

    #[test]
    fn an_overlong_counter_name_is_malformed() {
        let name = "X".repeat(MAX_COUNTER_BYTES + 1);
        let file = parse_counter_file(format!("{name} 1\nOK 2").as_bytes());
        assert_eq!(file.counters, vec![cv("OK", 2)]);
        assert_eq!(
            file.malformed[0].problem,
            LineProblem::CounterTooLong {
                bytes: MAX_COUNTER_BYTES + 1
            }
        );
        assert!(file.malformed[0].snippet.ends_with('…'));
        let at_limit = "Y".repeat(MAX_COUNTER_BYTES);
        assert_eq!(
            parse_counter_file(format!("{at_limit} 1").as_bytes()).counters,
            vec![cv(&at_limit, 1)]
        );
    }

    #[test]
    fn a_repeated_counter_keeps_its_last_value_and_first_position() {
        let file = parse_counter_file(b"A 1\nB 2\nA 3\nA 4\n");
        assert_eq!(file.counters, vec![cv("A", 4), cv("B", 2)]);
        let got: Vec<(usize, LineProblem)> = file
            .malformed
            .iter()
            .map(|m| (m.line, m.problem.clone()))
            .collect();
        assert_eq!(
            got,
            [
                (
                    1,
                    LineProblem::Superseded {
                        counter: "A".into(),
                        later: 3
                    }
                ),
                (
                    3,
                    LineProblem::Superseded {
                        counter: "A".into(),
                        later: 4
                    }
                ),
            ]
        );
    }

    #[test]
    fn counter_names_are_case_sensitive() {
        let file = parse_counter_file(b"a 1\nA 2\n");
        assert_eq!(file.counters, vec![cv("a", 1), cv("A", 2)]);
    }

    proptest! {
        #[test]
        fn well_formed_files_round_trip(
            entries in proptest::collection::btree_map("[A-Za-z0-9_.:-]{1,40}", any::<i64>(), 0..60),
            sep in prop_oneof![Just(" "), Just("\t"), Just("   ")],
            eol in prop_oneof![Just("\n"), Just("\r\n")],
        ) {
            let text: String = entries.iter().map(|(k, v)| format!("{k}{sep}{v}{eol}")).collect();
            let file = parse_counter_file(text.as_bytes());
            prop_assert!(file.malformed.is_empty());
            let expected: Vec<CounterValue> = entries.iter().map(|(k, v)| cv(k, *v)).collect();
            prop_assert_eq!(file.counters, expected);
        }

        #[test]
        fn arbitrary_bytes_never_panic_and_every_line_is_accounted_for(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let file = parse_counter_file(&bytes);
            let lines = bytes.split(|b| *b == b'\n').count();
            prop_assert!(file.counters.len() + file.malformed.len() <= lines);
            for m in &file.malformed {
                prop_assert!(m.line >= 1 && m.line <= lines);
            }
        }
    }
}
