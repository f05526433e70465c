//! Request bodies of `POST /events`, from what API Gateway hands over to a list of
//! events: base64 (`isBase64Encoded`) and `Content-Encoding: gzip` undone within a
//! size limit, then one JSON object, a JSON array of objects, or NDJSON split into
//! events that each keep the exact text the client sent.
//!
//! Pure: no I/O, no clock, no AWS. Every error says what is wrong and where (NDJSON
//! line and column, array index), because it becomes the `400`/`413`/`415` message.

use std::borrow::Cow;
use std::fmt;
use std::io::Read;
use std::ops::Range;

use serde_json::{Map, Value};

/// How the body is laid out, from its `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    /// One JSON object, or a JSON array of objects.
    Json,
    /// One JSON object per line (`application/x-ndjson`); blank lines are skipped.
    Ndjson,
}

impl BodyFormat {
    /// NDJSON for `application/x-ndjson` (and the unprefixed `application/ndjson`),
    /// parameters and case ignored; JSON for anything else, including no header.
    pub fn from_content_type(content_type: Option<&str>) -> Self {
        let essence = content_type
            .and_then(|value| value.split(';').next())
            .map(str::trim)
            .unwrap_or_default();
        if essence.eq_ignore_ascii_case("application/x-ndjson")
            || essence.eq_ignore_ascii_case("application/ndjson")
        {
            BodyFormat::Ndjson
        } else {
            BodyFormat::Json
        }
    }
}

/// Where an event sits in the body; shown in error messages and failure reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// The body is a single object.
    Body,
    /// 0-based index in the body's array.
    Index(usize),
    /// 1-based NDJSON line.
    Line(usize),
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Position::Body => f.write_str("the body"),
            Position::Index(i) => write!(f, "array index {i}"),
            Position::Line(n) => write!(f, "line {n}"),
        }
    }
}

/// Why a body was refused. [`BodyError::status`] is the HTTP status it earns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("request body is empty: send a JSON object, a JSON array of objects, or NDJSON")]
    Empty,
    #[error("the JSON array holds no events")]
    EmptyArray,
    #[error("request body is {size} bytes, over the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("request body decompresses to more than the limit of {limit} bytes")]
    DecompressedTooLarge { limit: usize },
    #[error("Content-Encoding {0:?} is not supported: send the body as is or gzip-compressed")]
    UnsupportedEncoding(String),
    #[error("request body is not valid base64: {0}")]
    InvalidBase64(String),
    #[error("request body is not valid gzip: {0}")]
    InvalidGzip(String),
    #[error("malformed JSON at line {line}, column {column}: {detail}")]
    MalformedJson {
        line: usize,
        column: usize,
        detail: String,
    },
    #[error("malformed JSON on NDJSON line {line}, column {column}: {detail}")]
    MalformedLine {
        line: usize,
        column: usize,
        detail: String,
    },
    #[error("{position} is {found}, not a JSON object (every event must be an object)")]
    NotAnObject {
        position: Position,
        found: &'static str,
    },
}

impl BodyError {
    /// `413` for size, `415` for an unknown encoding, `400` for everything else.
    pub fn status(&self) -> u16 {
        match self {
            BodyError::TooLarge { .. } | BodyError::DecompressedTooLarge { .. } => 413,
            BodyError::UnsupportedEncoding(_) => 415,
            _ => 400,
        }
    }
}

/// One event as the client sent it.
#[derive(Debug, Clone, PartialEq)]
pub struct RawEvent<'a> {
    pub position: Position,
    /// The event's JSON text, exactly as sent (surrounding whitespace trimmed).
    pub json: &'a [u8],
    /// The same event parsed, for looking fields up.
    pub object: Map<String, Value>,
}

/// The body's bytes: base64 undone when API Gateway encoded it, gzip undone when
/// `content_encoding` says so, never more than `limit` bytes before or after.
pub fn decode_body<'a>(
    body: Option<&'a str>,
    is_base64_encoded: bool,
    content_encoding: Option<&str>,
    limit: usize,
) -> Result<Cow<'a, [u8]>, BodyError> {
    let text = body.unwrap_or_default();
    let raw: Cow<'a, [u8]> = if is_base64_encoded {
        let decoded = aws_smithy_types::base64::decode(text.trim())
            .map_err(|e| BodyError::InvalidBase64(e.to_string()))?;
        Cow::Owned(decoded)
    } else {
        Cow::Borrowed(text.as_bytes())
    };
    if raw.len() > limit {
        return Err(BodyError::TooLarge {
            size: raw.len(),
            limit,
        });
    }
    let encoding = content_encoding.map(str::trim).unwrap_or_default();
    if encoding.is_empty() || encoding.eq_ignore_ascii_case("identity") {
        Ok(raw)
    } else if encoding.eq_ignore_ascii_case("gzip") || encoding.eq_ignore_ascii_case("x-gzip") {
        gunzip(&raw, limit).map(Cow::Owned)
    } else {
        Err(BodyError::UnsupportedEncoding(encoding.to_owned()))
    }
}

/// Every gzip member, refusing output past `limit` while reading (a small body
/// cannot inflate into an out-of-memory).
fn gunzip(compressed: &[u8], limit: usize) -> Result<Vec<u8>, BodyError> {
    if compressed.is_empty() {
        return Ok(Vec::new());
    }
    let mut out = Vec::with_capacity(compressed.len().saturating_mul(4).min(limit));
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    flate2::read::MultiGzDecoder::new(compressed)
        .take(cap)
        .read_to_end(&mut out)
        .map_err(|e| BodyError::InvalidGzip(e.to_string()))?;
    if out.len() > limit {
        return Err(BodyError::DecompressedTooLarge { limit });
    }
    Ok(out)
}

/// Splits a decoded body into events; every event must be a JSON object.
pub fn split_events(body: &[u8], format: BodyFormat) -> Result<Vec<RawEvent<'_>>, BodyError> {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    match format {
        BodyFormat::Json => split_json(body),
        BodyFormat::Ndjson => split_ndjson(body),
    }
}

fn split_json(body: &[u8]) -> Result<Vec<RawEvent<'_>>, BodyError> {
    let body = body.trim_ascii();
    if body.is_empty() {
        return Err(BodyError::Empty);
    }
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        let (line, column, mut detail) = located(&e);
        if detail == "trailing characters" {
            detail.push_str(
                " (several JSON documents? send one per line with Content-Type: application/x-ndjson)",
            );
        }
        BodyError::MalformedJson {
            line,
            column,
            detail,
        }
    })?;
    match value {
        Value::Object(object) => Ok(vec![RawEvent {
            position: Position::Body,
            json: body,
            object,
        }]),
        Value::Array(items) => {
            if items.is_empty() {
                return Err(BodyError::EmptyArray);
            }
            let spans = array_element_spans(body);
            debug_assert_eq!(spans.len(), items.len());
            items
                .into_iter()
                .zip(spans)
                .enumerate()
                .map(|(index, (item, span))| match item {
                    Value::Object(object) => Ok(RawEvent {
                        position: Position::Index(index),
                        json: &body[span],
                        object,
                    }),
                    other => Err(BodyError::NotAnObject {
                        position: Position::Index(index),
                        found: kind_of(&other),
                    }),
                })
                .collect()
        }
        other => Err(BodyError::NotAnObject {
            position: Position::Body,
            found: kind_of(&other),
        }),
    }
}

fn split_ndjson(body: &[u8]) -> Result<Vec<RawEvent<'_>>, BodyError> {
    let mut events = Vec::new();
    for (index, line) in body.split(|b| *b == b'\n').enumerate() {
        let line_number = index + 1;
        let text = line.trim_ascii();
        if text.is_empty() {
            continue;
        }
        let value: Value = serde_json::from_slice(text).map_err(|e| {
            let (_, column, detail) = located(&e);
            // Columns count from the line's first byte, before trimming.
            let leading = line.len() - line.trim_ascii_start().len();
            BodyError::MalformedLine {
                line: line_number,
                column: column + leading,
                detail,
            }
        })?;
        match value {
            Value::Object(object) => events.push(RawEvent {
                position: Position::Line(line_number),
                json: text,
                object,
            }),
            other => {
                return Err(BodyError::NotAnObject {
                    position: Position::Line(line_number),
                    found: kind_of(&other),
                });
            }
        }
    }
    if events.is_empty() {
        return Err(BodyError::Empty);
    }
    Ok(events)
}

/// `serde_json`'s line, column and message without the " at line … column …" suffix.
fn located(e: &serde_json::Error) -> (usize, usize, String) {
    let (line, column) = (e.line(), e.column());
    let message = e.to_string();
    let suffix = format!(" at line {line} column {column}");
    let detail = message.strip_suffix(&suffix).unwrap_or(&message).to_owned();
    (line, column, detail)
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The byte ranges of the top-level elements of `array`, which must be a valid JSON
/// array (already parsed successfully), trimmed of surrounding whitespace.
fn array_element_spans(array: &[u8]) -> Vec<Range<usize>> {
    let mut spans = Vec::new();
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let mut start: Option<usize> = None;
    let close = |spans: &mut Vec<Range<usize>>, start: usize, end: usize| {
        let element = &array[start..end];
        let trimmed_end = start + element.trim_ascii_end().len();
        if trimmed_end > start {
            spans.push(start..trimmed_end);
        }
    };
    for (i, &b) in array.iter().enumerate() {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => {
                in_string = true;
                if depth == 1 && start.is_none() {
                    start = Some(i);
                }
            }
            b'[' | b'{' => {
                if depth == 1 && start.is_none() {
                    start = Some(i);
                }
                depth += 1;
            }
            b']' | b'}' => {
                depth -= 1;
                if depth == 0
                    && let Some(s) = start.take()
                {
                    close(&mut spans, s, i);
                }
            }
            b',' if depth == 1 => {
                if let Some(s) = start.take() {
                    close(&mut spans, s, i);
                }
            }
            b' ' | b'\t' | b'\n' | b'\r' => {}
            _ => {
                if depth == 1 && start.is_none() {
                    start = Some(i);
                }
            }
        }
    }
    spans
}

/// `json` (valid JSON) without insignificant whitespace. Valid JSON strings cannot hold
/// a raw line break, so the result is always a single line.
pub fn compact(json: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(json.len());
    let mut in_string = false;
    let mut escaped = false;
    for &b in json {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            out.push(b);
        } else {
            match b {
                b' ' | b'\t' | b'\n' | b'\r' => {}
                b'"' => {
                    in_string = true;
                    out.push(b);
                }
                _ => out.push(b),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn texts(events: &[RawEvent<'_>]) -> Vec<String> {
        events
            .iter()
            .map(|e| String::from_utf8(e.json.to_vec()).unwrap())
            .collect()
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn ndjson_is_chosen_by_content_type_only() {
        assert_eq!(
            BodyFormat::from_content_type(Some("application/x-ndjson")),
            BodyFormat::Ndjson
        );
        assert_eq!(
            BodyFormat::from_content_type(Some("Application/X-NDJSON; charset=utf-8")),
            BodyFormat::Ndjson
        );
        assert_eq!(
            BodyFormat::from_content_type(Some("application/json")),
            BodyFormat::Json
        );
        assert_eq!(BodyFormat::from_content_type(None), BodyFormat::Json);
    }

    #[test]
    fn single_object_is_one_event_with_its_exact_text() {
        let body = b"  {\"player_id\": \"p-1\", \"score\": 1.50}\n";
        let events = split_events(body, BodyFormat::Json).unwrap();
        assert_eq!(
            texts(&events),
            ["{\"player_id\": \"p-1\", \"score\": 1.50}"]
        );
        assert_eq!(events[0].position, Position::Body);
        assert_eq!(events[0].object["player_id"], "p-1");
    }

    #[test]
    fn array_elements_keep_their_text_including_tricky_strings() {
        let body = br#"[ {"a":"x,]}"}, {"b":[1,{"c":"\"]"}]} ,{}
        ]"#;
        let events = split_events(body, BodyFormat::Json).unwrap();
        assert_eq!(
            texts(&events),
            [r#"{"a":"x,]}"}"#, r#"{"b":[1,{"c":"\"]"}]}"#, "{}"]
        );
        let positions: Vec<Position> = events.iter().map(|e| e.position).collect();
        assert_eq!(
            positions,
            [Position::Index(0), Position::Index(1), Position::Index(2)]
        );
    }

    #[test]
    fn array_with_a_non_object_names_its_index() {
        let err = split_events(br#"[{"a":1}, 7, {"b":2}]"#, BodyFormat::Json).unwrap_err();
        assert_eq!(
            err,
            BodyError::NotAnObject {
                position: Position::Index(1),
                found: "a number"
            }
        );
        assert_eq!(
            err.to_string(),
            "array index 1 is a number, not a JSON object (every event must be an object)"
        );
        assert_eq!(err.status(), 400);
    }

    #[test]
    fn top_level_scalars_and_empty_arrays_are_refused() {
        assert_eq!(
            split_events(b"\"hello\"", BodyFormat::Json).unwrap_err(),
            BodyError::NotAnObject {
                position: Position::Body,
                found: "a string"
            }
        );
        assert_eq!(
            split_events(b"[ ]", BodyFormat::Json).unwrap_err(),
            BodyError::EmptyArray
        );
    }

    #[test]
    fn empty_and_blank_bodies_are_refused_in_both_formats() {
        for body in [&b""[..], b" \r\n\t"] {
            assert_eq!(
                split_events(body, BodyFormat::Json).unwrap_err(),
                BodyError::Empty
            );
            assert_eq!(
                split_events(body, BodyFormat::Ndjson).unwrap_err(),
                BodyError::Empty
            );
        }
    }

    #[test]
    fn malformed_json_reports_line_and_column() {
        let err = split_events(b"{\n  \"a\": 1,\n  \"b\" 2\n}", BodyFormat::Json).unwrap_err();
        assert_eq!(
            err,
            BodyError::MalformedJson {
                line: 3,
                column: 7,
                detail: "expected `:`".into()
            }
        );
        assert_eq!(
            err.to_string(),
            "malformed JSON at line 3, column 7: expected `:`"
        );
    }

    #[test]
    fn several_documents_without_ndjson_header_hint_at_ndjson() {
        let err = split_events(b"{\"a\":1}\n{\"a\":2}\n", BodyFormat::Json).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("line 2, column 1"), "{message}");
        assert!(message.contains("application/x-ndjson"), "{message}");
    }

    #[test]
    fn ndjson_lines_become_events_skipping_blank_lines_and_crlf() {
        let body = b"{\"n\":1}\r\n\n   {\"n\": 2}\n{\"n\":3}";
        let events = split_events(body, BodyFormat::Ndjson).unwrap();
        assert_eq!(texts(&events), ["{\"n\":1}", "{\"n\": 2}", "{\"n\":3}"]);
        let positions: Vec<Position> = events.iter().map(|e| e.position).collect();
        assert_eq!(
            positions,
            [Position::Line(1), Position::Line(3), Position::Line(4)]
        );
    }

    #[test]
    fn ndjson_malformed_line_reports_line_and_column_in_that_line() {
        let body = b"{\"n\":1}\n{\"n\":2}\n  {\"n\":3,}\n";
        let err = split_events(body, BodyFormat::Ndjson).unwrap_err();
        assert_eq!(
            err,
            BodyError::MalformedLine {
                line: 3,
                column: 10,
                detail: "trailing comma".into()
            }
        );
        assert_eq!(
            err.to_string(),
            "malformed JSON on NDJSON line 3, column 10: trailing comma"
        );
    }

    #[test]
    fn ndjson_non_object_line_names_the_line() {
        let err = split_events(b"{\"n\":1}\n[1,2]\n", BodyFormat::Ndjson).unwrap_err();
        assert_eq!(
            err,
            BodyError::NotAnObject {
                position: Position::Line(2),
                found: "an array"
            }
        );
    }

    #[test]
    fn a_leading_byte_order_mark_is_ignored() {
        let events = split_events(b"\xEF\xBB\xBF{\"a\":1}", BodyFormat::Json).unwrap();
        assert_eq!(texts(&events), ["{\"a\":1}"]);
    }

    #[test]
    fn base64_bodies_are_decoded() {
        let encoded = aws_smithy_types::base64::encode(b"{\"a\":1}");
        let body = decode_body(Some(&encoded), true, None, 100).unwrap();
        assert_eq!(&body[..], b"{\"a\":1}");
        assert!(matches!(
            decode_body(Some("not base64!"), true, None, 100),
            Err(BodyError::InvalidBase64(_))
        ));
    }

    #[test]
    fn gzip_bodies_are_inflated_including_concatenated_members() {
        let mut compressed = gzip(b"{\"n\":1}\n");
        compressed.extend(gzip(b"{\"n\":2}\n"));
        let encoded = aws_smithy_types::base64::encode(&compressed);
        let body = decode_body(Some(&encoded), true, Some("GZIP"), 1000).unwrap();
        assert_eq!(&body[..], b"{\"n\":1}\n{\"n\":2}\n");
    }

    #[test]
    fn corrupt_gzip_is_a_bad_request() {
        let encoded = aws_smithy_types::base64::encode(b"\x1f\x8b\x08\x00garbage");
        let err = decode_body(Some(&encoded), true, Some("gzip"), 1000).unwrap_err();
        assert!(matches!(err, BodyError::InvalidGzip(_)), "{err:?}");
        assert_eq!(err.status(), 400);
    }

    #[test]
    fn bodies_over_the_limit_are_refused_before_and_after_inflating() {
        let err = decode_body(Some("0123456789x"), false, None, 10).unwrap_err();
        assert_eq!(
            err,
            BodyError::TooLarge {
                size: 11,
                limit: 10
            }
        );
        assert_eq!(err.status(), 413);
        let bomb = aws_smithy_types::base64::encode(gzip(&vec![b' '; 1_000_000]));
        assert!(bomb.len() < 10_000);
        let err = decode_body(Some(&bomb), true, Some("gzip"), 10_000).unwrap_err();
        assert_eq!(err, BodyError::DecompressedTooLarge { limit: 10_000 });
        assert_eq!(err.status(), 413);
        // Exactly at the limit is fine.
        let at_limit = aws_smithy_types::base64::encode(gzip(&[b'x'; 30]));
        assert_eq!(
            decode_body(Some(&at_limit), true, Some("gzip"), 30)
                .unwrap()
                .len(),
            30
        );
    }

    #[test]
    fn unknown_content_encoding_is_unsupported_media() {
        let err = decode_body(Some("{}"), false, Some("br"), 10).unwrap_err();
        assert_eq!(err, BodyError::UnsupportedEncoding("br".into()));
        assert_eq!(err.status(), 415);
        assert!(decode_body(Some("{}"), false, Some("identity"), 10).is_ok());
    }

    #[test]
    fn compact_drops_whitespace_outside_strings_only() {
        let pretty = b"{\n  \"a b\" : [ 1 ,\t2 ],\r\n  \"c\": \"x \\\" y\\n\"\n}";
        assert_eq!(
            String::from_utf8(compact(pretty)).unwrap(),
            r#"{"a b":[1,2],"c":"x \" y\n"}"#
        );
    }
}
