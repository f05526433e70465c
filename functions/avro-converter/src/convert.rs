//! The pure conversion: snappy bytes → JSON records → schema-coerced Avro values → one
//! deterministic Avro container file per UTC hour, plus the records that could not be
//! converted and why. No I/O: the handler fetches and stores.
//!
//! Input shapes, told apart by the first non-blank byte:
//! * `[` — a JSON array of records, read element by element (the array is never held as a
//!   whole `Value` tree);
//! * anything else — NDJSON, one record per line; a line that is not JSON is a rejected record.
//!   If the first line is an *incomplete* JSON value (a pretty-printed object, as in the
//!   original converter's input), the whole text is read as a sequence of JSON values instead.
//!
//! Memory: the decompressed text, one record's JSON and Avro values at a time, the encoded
//! (compressed) Avro output, and the rejected records.

use std::collections::BTreeMap;

use serde::de::{DeserializeSeed, SeqAccess, Visitor};
use serde_json::{Value, json};
use sluice_codec::avro::{AvroError, ContainerCodec, ContainerWriter};
use sluice_codec::snappy::{self, DecompressLimits, SnappyError};
use sluice_partition::{HourPartition, PartitionTime};

use crate::config::TimestampField;
use crate::layout;
use crate::schema::RecordSchema;

/// Why a whole input is rejected (never retried: the bytes will not change).
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("input is not snappy-compressed: {0}")]
    NotSnappy(#[from] SnappyError),
    #[error("decompressed input is not JSON: {reason}")]
    NotJson { reason: String },
    #[error("decompressed input is empty: no JSON records")]
    Empty,
    /// Refused from its size, before it was read.
    #[error(
        "input is {size} bytes, more than any snappy input decompressing within MAX_DECOMPRESSED_BYTES can be ({limit} bytes); not read"
    )]
    TooLarge { size: u64, limit: u64 },
}

/// Why a conversion could not finish.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    /// The input itself is unusable: it goes to the error prefix.
    #[error(transparent)]
    Input(#[from] InputError),
    /// The Avro writer failed on a record the schema coercion had accepted: a bug, not data.
    #[error("writing Avro failed: {0}")]
    Writer(#[from] AvroError),
}

/// One Avro container file: the input's records of one UTC hour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvroFile {
    pub key: String,
    pub hour: HourPartition,
    pub records: usize,
    pub bytes: Vec<u8>,
}

/// A record that was not converted.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordReject {
    /// Zero-based position among the input's records (NDJSON: among its non-blank lines).
    pub index: usize,
    /// One-based line number, for NDJSON input.
    pub line: Option<usize>,
    /// JSON path of the offending value (`$.device.platform`), when there is one.
    pub path: Option<String>,
    /// What the schema (or the partitioner) expected there.
    pub expected: Option<String>,
    /// Human-readable reason, including path and expected type.
    pub reason: String,
    /// The record as it arrived, as compact JSON text (for a line that is not JSON: the line
    /// as a JSON string). Text, not a `Value` tree: a tree is several times larger, and an
    /// input may be rejected record by record.
    pub record: String,
}

/// What one input converted to.
#[derive(Debug, Clone, PartialEq)]
pub struct Conversion {
    /// One file per UTC hour, in hour order.
    pub files: Vec<AvroFile>,
    pub rejects: Vec<RecordReject>,
    pub decompressed_bytes: usize,
}

impl Conversion {
    /// Records written to Avro.
    pub fn converted(&self) -> usize {
        self.files.iter().map(|f| f.records).sum()
    }

    /// The errors file: one JSON line per rejected record, naming the input (`source`).
    pub fn errors_jsonl(&self, source: &str) -> Vec<u8> {
        let mut out = Vec::new();
        for reject in &self.rejects {
            let mut line = json!({
                "source": source,
                "index": reject.index,
                "reason": reject.reason,
            });
            let fields = line.as_object_mut().expect("an object literal");
            if let Some(n) = reject.line {
                fields.insert("line".into(), n.into());
            }
            if let Some(path) = &reject.path {
                fields.insert("path".into(), path.as_str().into());
            }
            if let Some(expected) = &reject.expected {
                fields.insert("expected".into(), expected.as_str().into());
            }
            // `{…fields…, "record": <original>}` with the record text spliced in as it is.
            let head = serde_json::to_vec(&line).expect("JSON values serialise");
            out.extend_from_slice(&head[..head.len() - 1]);
            out.extend_from_slice(b",\"record\":");
            out.extend_from_slice(reject.record.as_bytes());
            out.extend_from_slice(b"}\n");
        }
        out
    }
}

/// The configured conversion, built once at cold start.
#[derive(Debug)]
pub struct Converter {
    schema: RecordSchema,
    codec: ContainerCodec,
    timestamp: TimestampField,
    limits: DecompressLimits,
    output_prefix: String,
}

impl Converter {
    pub fn new(
        schema: RecordSchema,
        codec: ContainerCodec,
        timestamp: TimestampField,
        max_decompressed_bytes: usize,
        output_prefix: impl Into<String>,
    ) -> Self {
        Self {
            schema,
            codec,
            timestamp,
            limits: DecompressLimits {
                max_output: max_decompressed_bytes,
            },
            output_prefix: output_prefix.into(),
        }
    }

    pub fn schema(&self) -> &RecordSchema {
        &self.schema
    }

    /// The largest compressed input that can decompress within the limit: snappy never
    /// grows data by more than `32 + n/6` bytes (a raw block's worst case; a framed
    /// stream's chunks add 8 bytes per 64 KiB and a 10-byte header). A larger object
    /// would decompress past the limit, so it is refused before it is read.
    pub fn max_input_bytes(&self) -> u64 {
        let max = self.limits.max_output as u64;
        max + max / 6 + 1024
    }

    /// Converts a snappy-compressed (raw or framed) JSON object of key `input_key`.
    pub fn convert(&self, compressed: &[u8], input_key: &str) -> Result<Conversion, ConvertError> {
        let json =
            snappy::decompress_with_limit(compressed, self.limits).map_err(InputError::from)?;
        self.convert_json(&json, input_key)
    }

    /// Converts decompressed JSON text (one object, an array of objects, or NDJSON).
    pub fn convert_json(&self, text: &[u8], input_key: &str) -> Result<Conversion, ConvertError> {
        let mut sink = Sink {
            converter: self,
            name: layout::output_name(input_key),
            writers: BTreeMap::new(),
            rejects: Vec::new(),
            seen: 0,
            error: None,
        };
        let text = text.strip_prefix(b"\xef\xbb\xbf").unwrap_or(text);
        match text.iter().find(|b| !b.is_ascii_whitespace()) {
            None => return Err(InputError::Empty.into()),
            Some(b'[') => sink.array(text)?,
            Some(_) if first_line_is_incomplete(text) => sink.stream(text)?,
            Some(_) => sink.lines(text)?,
        }
        sink.finish(text.len())
    }
}

/// Whether the first non-blank line is the start of a JSON value that continues on later lines.
fn first_line_is_incomplete(text: &[u8]) -> bool {
    let Some(line) = text
        .split(|&b| b == b'\n')
        .find(|line| line.iter().any(|b| !b.is_ascii_whitespace()))
    else {
        return false;
    };
    matches!(serde_json::from_slice::<Value>(line), Err(e) if e.is_eof())
}

/// Collects records into per-hour writers and rejects.
struct Sink<'c> {
    converter: &'c Converter,
    /// [`layout::output_name`] of the input key.
    name: String,
    writers: BTreeMap<HourPartition, ContainerWriter<'c, Vec<u8>>>,
    rejects: Vec<RecordReject>,
    seen: usize,
    /// A writer failure, kept until the parse loop can return it.
    error: Option<AvroError>,
}

impl<'c> Sink<'c> {
    fn array(&mut self, text: &[u8]) -> Result<(), ConvertError> {
        let mut de = serde_json::Deserializer::from_slice(text);
        ArrayOfRecords { sink: self }
            .deserialize(&mut de)
            .and_then(|()| de.end())
            .map_err(not_json)?;
        self.take_error()
    }

    fn stream(&mut self, text: &[u8]) -> Result<(), ConvertError> {
        for value in serde_json::Deserializer::from_slice(text).into_iter::<Value>() {
            self.record(value.map_err(not_json)?, None);
            self.take_error()?;
        }
        Ok(())
    }

    fn lines(&mut self, text: &[u8]) -> Result<(), ConvertError> {
        let mut first_error = None;
        let mut parsed = 0usize;
        for (number, line) in text.split(|&b| b == b'\n').enumerate() {
            let line = line.trim_ascii();
            if line.is_empty() {
                continue;
            }
            match serde_json::from_slice::<Value>(line) {
                Ok(value) => {
                    parsed += 1;
                    self.record(value, Some(number + 1));
                    self.take_error()?;
                }
                Err(err) => {
                    let reason = format!("line {}: not valid JSON: {err}", number + 1);
                    first_error.get_or_insert_with(|| reason.clone());
                    self.rejects.push(RecordReject {
                        index: self.seen,
                        line: Some(number + 1),
                        path: None,
                        expected: Some("a JSON object".into()),
                        reason,
                        record: Value::String(String::from_utf8_lossy(line).into_owned())
                            .to_string(),
                    });
                    self.seen += 1;
                }
            }
        }
        match (parsed, first_error) {
            (0, Some(reason)) => Err(InputError::NotJson { reason }.into()),
            _ => Ok(()),
        }
    }

    fn take_error(&mut self) -> Result<(), ConvertError> {
        match self.error.take() {
            Some(err) => Err(err.into()),
            None => Ok(()),
        }
    }

    /// Routes one record to its hour's writer, or to the rejects.
    fn record(&mut self, json: Value, line: Option<usize>) {
        let index = self.seen;
        self.seen += 1;
        let reject = |path: String, expected: String, reason: String, record: Value| RecordReject {
            index,
            line,
            path: Some(path),
            expected: Some(expected),
            reason,
            record: record.to_string(),
        };
        let avro = match self.converter.schema.plan.coerce(&json) {
            Ok(avro) => avro,
            Err(e) => {
                let reason = e.to_string();
                self.rejects.push(reject(e.path, e.expected, reason, json));
                return;
            }
        };
        let hour = match event_hour(&json, &self.converter.timestamp) {
            Ok(hour) => hour,
            Err(bad) => {
                self.rejects
                    .push(reject(bad.path, bad.expected, bad.reason, json));
                return;
            }
        };
        let writer = match self.writers.entry(hour) {
            std::collections::btree_map::Entry::Occupied(entry) => entry.into_mut(),
            std::collections::btree_map::Entry::Vacant(entry) => {
                let key = layout::avro_key(&self.converter.output_prefix, &hour, &self.name);
                // The output key seeds the sync marker: the same input rewrites the same bytes.
                match ContainerWriter::new(
                    &self.converter.schema.schema,
                    self.converter.codec,
                    key.as_bytes(),
                    Vec::new(),
                ) {
                    Ok(writer) => entry.insert(writer),
                    Err(e) => {
                        self.error.get_or_insert(e);
                        return;
                    }
                }
            }
        };
        match writer.append(&avro) {
            Ok(()) => {}
            Err(AvroError::RecordMismatch { path, reason, .. }) => {
                let text = format!("at {path}: {reason}");
                self.rejects.push(reject(path, reason, text, json));
            }
            Err(e) => {
                self.error.get_or_insert(e);
            }
        }
    }

    fn finish(mut self, decompressed_bytes: usize) -> Result<Conversion, ConvertError> {
        self.take_error()?;
        if self.seen == 0 {
            return Err(InputError::Empty.into());
        }
        let mut files = Vec::with_capacity(self.writers.len());
        for (hour, writer) in self.writers {
            let records = writer.records_written();
            files.push(AvroFile {
                key: layout::avro_key(&self.converter.output_prefix, &hour, &self.name),
                hour,
                records,
                bytes: writer.finish()?,
            });
        }
        Ok(Conversion {
            files,
            rejects: self.rejects,
            decompressed_bytes,
        })
    }
}

fn not_json(err: serde_json::Error) -> ConvertError {
    InputError::NotJson {
        reason: err.to_string(),
    }
    .into()
}

/// Streams the elements of a top-level JSON array into the sink.
struct ArrayOfRecords<'s, 'c> {
    sink: &'s mut Sink<'c>,
}

impl<'de> DeserializeSeed<'de> for ArrayOfRecords<'_, '_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for ArrayOfRecords<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON array of records")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(value) = seq.next_element::<Value>()? {
            self.sink.record(value, None);
            if self.sink.error.is_some() {
                break; // reported by the caller; the rest of the array is not read
            }
        }
        Ok(())
    }
}

struct TimestampProblem {
    path: String,
    expected: String,
    reason: String,
}

/// The UTC hour of a record's timestamp field.
fn event_hour(json: &Value, field: &TimestampField) -> Result<HourPartition, TimestampProblem> {
    let path = if is_plain_name(&field.name) {
        format!("$.{}", field.name)
    } else {
        format!("$[{:?}]", field.name)
    };
    let expected = format!("a whole number of epoch {} (event time)", unit_name(field));
    let problem = |found: String| TimestampProblem {
        reason: format!("at {path}: expected {expected}, found {found}"),
        path: path.clone(),
        expected: expected.clone(),
    };
    let value = match json.get(&field.name) {
        None => return Err(problem("missing field".into())),
        Some(value) => value,
    };
    let epoch = match value {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e18)
                .map(|f| f as i64)
        }),
        _ => None,
    };
    let Some(epoch) = epoch else {
        return Err(problem(describe(value)));
    };
    PartitionTime::from_epoch(epoch, field.unit)
        .map(|t| t.hour())
        .map_err(|e| problem(format!("{} ({e})", describe(value))))
}

fn unit_name(field: &TimestampField) -> &'static str {
    use sluice_partition::TimeUnit::*;
    match field.unit {
        Seconds => "seconds",
        Milliseconds => "milliseconds",
        Microseconds => "microseconds",
        Nanoseconds => "nanoseconds",
    }
}

fn is_plain_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("boolean {b}"),
        Value::Number(n) => format!("number {n}"),
        Value::String(s) if s.chars().count() > 40 => {
            format!("string {:?}…", s.chars().take(40).collect::<String>())
        }
        Value::String(s) => format!("string {s:?}"),
        Value::Array(_) => "array".into(),
        Value::Object(_) => "object".into(),
    }
}

#[cfg(test)]
mod tests;
