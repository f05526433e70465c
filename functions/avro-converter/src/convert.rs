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
use sluice_codec::avro::{self, AvroError, Captured, ContainerCodec, ContainerWriter, JsonEncoder};
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

/// NDJSON is converted in segments of about this many bytes (cut at the next line end), on
/// up to [`Converter::with_threads`] threads. Each segment ends the Avro blocks it started, so
/// an output file is the same bytes whatever the thread count; an input smaller than one
/// segment gives exactly one writer's blocks (64 KiB each), as a sequential writer would.
pub const SEGMENT_BYTES: usize = 1 << 20;

/// The configured conversion, built once at cold start.
#[derive(Debug)]
pub struct Converter {
    schema: RecordSchema,
    codec: ContainerCodec,
    timestamp: TimestampField,
    limits: DecompressLimits,
    output_prefix: String,
    threads: usize,
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
            threads: 0,
        }
    }

    /// Converts NDJSON on at most `threads` threads (`0`, the default: one per vCPU of the
    /// function). The output does not depend on it.
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.threads = threads;
        self
    }

    fn thread_count(&self) -> usize {
        sluice_codec::threads(self.threads)
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
            snappy::decompress_with_limit_threads(compressed, self.limits, self.thread_count())
                .map_err(InputError::from)?;
        let name = layout::output_name(input_key);
        let segments = self.segments(&json, &name)?;
        let decompressed_bytes = json.len();
        drop(json); // before the files are joined: the text is the largest thing held
        self.join(segments, &name, decompressed_bytes)
    }

    /// Converts decompressed JSON text (one object, an array of objects, or NDJSON).
    pub fn convert_json(&self, text: &[u8], input_key: &str) -> Result<Conversion, ConvertError> {
        let name = layout::output_name(input_key);
        let segments = self.segments(text, &name)?;
        self.join(segments, &name, text.len())
    }

    /// The text's records, encoded segment by segment.
    fn segments(&self, text: &[u8], name: &str) -> Result<Vec<SegmentOutput>, ConvertError> {
        let text = text.strip_prefix(b"\xef\xbb\xbf").unwrap_or(text);
        match text.iter().find(|b| !b.is_ascii_whitespace()) {
            None => Err(InputError::Empty.into()),
            Some(b'[') => {
                let mut segment = Segment::new(self, name);
                segment.array(text)?;
                Ok(vec![segment.done()?])
            }
            Some(_) if first_line_is_incomplete(text) => {
                let mut segment = Segment::new(self, name);
                segment.stream(text)?;
                Ok(vec![segment.done()?])
            }
            Some(_) => self.lines(text, name),
        }
    }

    /// NDJSON, segment by segment on the threads; the segments in input order.
    fn lines(&self, text: &[u8], name: &str) -> Result<Vec<SegmentOutput>, ConvertError> {
        let bounds = segment_bounds(text);
        let threads = self.thread_count().clamp(1, bounds.len());
        let run = |next: &std::sync::atomic::AtomicUsize| -> Result<Vec<(usize, SegmentOutput)>, ConvertError> {
            let mut segment = Segment::new(self, name);
            let mut done = Vec::new();
            loop {
                let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(&(start, end)) = bounds.get(k) else {
                    return Ok(done);
                };
                segment.lines(&text[start..end])?;
                done.push((k, segment.done()?));
            }
        };
        let next = std::sync::atomic::AtomicUsize::new(0);
        let mut outputs: Vec<(usize, SegmentOutput)> = if threads == 1 {
            run(&next)?
        } else {
            std::thread::scope(|scope| {
                let workers: Vec<_> = (0..threads).map(|_| scope.spawn(|| run(&next))).collect();
                workers
                    .into_iter()
                    .map(|worker| worker.join().expect("a conversion thread panicked"))
                    .collect::<Result<Vec<_>, _>>()
            })?
            .into_iter()
            .flatten()
            .collect()
        };
        outputs.sort_unstable_by_key(|(k, _)| *k);
        Ok(outputs.into_iter().map(|(_, output)| output).collect())
    }

    /// One file per hour from the segments' blocks (header, then each segment's blocks in
    /// input order), the rejects numbered across the whole input.
    fn join(
        &self,
        segments: Vec<SegmentOutput>,
        name: &str,
        decompressed_bytes: usize,
    ) -> Result<Conversion, ConvertError> {
        let mut seen = 0usize;
        let mut lines = 0usize;
        let mut parsed = 0usize;
        let mut first_not_json = None;
        let mut rejects = Vec::new();
        let mut hours: BTreeMap<HourPartition, (usize, Vec<u8>)> = BTreeMap::new();
        for segment in segments {
            parsed += segment.parsed;
            let mut not_json = segment.not_json.iter().peekable();
            for (i, mut reject) in segment.rejects.into_iter().enumerate() {
                reject.index += seen;
                if let Some(line) = &mut reject.line {
                    *line += lines;
                    if not_json.next_if_eq(&&i).is_some() {
                        reject.reason = format!("line {line}: not valid JSON: {}", reject.reason);
                        first_not_json.get_or_insert_with(|| reject.reason.clone());
                    }
                }
                rejects.push(reject);
            }
            for (hour, (records, blocks)) in segment.hours {
                let (count, file) = match hours.entry(hour) {
                    std::collections::btree_map::Entry::Occupied(entry) => entry.into_mut(),
                    std::collections::btree_map::Entry::Vacant(entry) => {
                        let key = layout::avro_key(&self.output_prefix, &hour, name);
                        let marker = avro::sync_marker(&self.schema.schema, key.as_bytes());
                        entry.insert((0, avro::header(&self.schema.schema, self.codec, &marker)?))
                    }
                };
                *count += records;
                file.extend_from_slice(&blocks);
            }
            seen += segment.seen;
            lines += segment.lines;
        }
        if let (0, Some(reason)) = (parsed, first_not_json) {
            return Err(InputError::NotJson { reason }.into());
        }
        if seen == 0 {
            return Err(InputError::Empty.into());
        }
        let files = hours
            .into_iter()
            .map(|(hour, (records, bytes))| AvroFile {
                key: layout::avro_key(&self.output_prefix, &hour, name),
                hour,
                records,
                bytes,
            })
            .collect();
        Ok(Conversion {
            files,
            rejects,
            decompressed_bytes,
        })
    }
}

/// `(start, end)` of each segment: about [`SEGMENT_BYTES`] each, every one but the last
/// ending just after a `\n`.
fn segment_bounds(text: &[u8]) -> Vec<(usize, usize)> {
    let mut bounds = Vec::with_capacity(text.len() / SEGMENT_BYTES + 1);
    let mut start = 0;
    while text.len() - start > SEGMENT_BYTES {
        match text[start + SEGMENT_BYTES..]
            .iter()
            .position(|&b| b == b'\n')
        {
            Some(i) => {
                let end = start + SEGMENT_BYTES + i + 1;
                bounds.push((start, end));
                start = end;
            }
            None => break,
        }
    }
    bounds.push((start, text.len()));
    bounds
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

/// What one segment converted to: each hour's Avro blocks (no header) and record count, and
/// the rejects numbered from the segment's start.
struct SegmentOutput {
    hours: BTreeMap<HourPartition, (usize, Vec<u8>)>,
    rejects: Vec<RecordReject>,
    /// Which of `rejects` are lines that are not JSON, in order: their reason is the parser's
    /// message alone until [`Converter::join`] knows the line's number in the whole input.
    not_json: Vec<usize>,
    /// Records (including rejected and not-JSON lines) and lines in the segment.
    seen: usize,
    lines: usize,
    /// Lines that were JSON.
    parsed: usize,
}

/// Converts one segment's records into per-hour writers and rejects.
struct Segment<'c> {
    converter: &'c Converter,
    encoder: JsonEncoder<'c>,
    datum: Vec<u8>,
    writers: BTreeMap<HourPartition, ContainerWriter<'c, Vec<u8>>>,
    rejects: Vec<RecordReject>,
    not_json: Vec<usize>,
    seen: usize,
    lines: usize,
    parsed: usize,
    /// A writer failure, kept until the parse loop can return it.
    error: Option<AvroError>,
    /// [`layout::output_name`] of the input key: the output keys and sync markers derive from it.
    name: String,
}

impl<'c> Segment<'c> {
    fn new(converter: &'c Converter, name: &str) -> Self {
        Self {
            converter,
            encoder: JsonEncoder::new(&converter.schema.plan, Some(&converter.timestamp.name)),
            datum: Vec::new(),
            writers: BTreeMap::new(),
            rejects: Vec::new(),
            not_json: Vec::new(),
            seen: 0,
            lines: 0,
            parsed: 0,
            error: None,
            name: name.to_owned(),
        }
    }

    /// Takes what the segment converted, leaving it empty for the next one.
    fn done(&mut self) -> Result<SegmentOutput, ConvertError> {
        self.take_error()?;
        let mut hours = BTreeMap::new();
        for (hour, writer) in std::mem::take(&mut self.writers) {
            let records = writer.records_written();
            let mut blocks = writer.finish()?;
            blocks.shrink_to_fit(); // held until the join: no spare capacity
            hours.insert(hour, (records, blocks));
        }
        Ok(SegmentOutput {
            hours,
            rejects: std::mem::take(&mut self.rejects),
            not_json: std::mem::take(&mut self.not_json),
            seen: std::mem::take(&mut self.seen),
            lines: std::mem::take(&mut self.lines),
            parsed: std::mem::take(&mut self.parsed),
        })
    }

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

    /// NDJSON lines: each straight from its text to Avro when the direct path takes it,
    /// otherwise parsed and coerced (which also gives a rejected record its reason).
    fn lines(&mut self, text: &[u8]) -> Result<(), ConvertError> {
        let mut pieces = 0usize;
        for (number, line) in text.split(|&b| b == b'\n').enumerate() {
            pieces += 1;
            let line = line.trim_ascii();
            if line.is_empty() {
                continue;
            }
            if self.direct(line) {
                self.parsed += 1;
                self.take_error()?;
                continue;
            }
            match serde_json::from_slice::<Value>(line) {
                Ok(value) => {
                    self.parsed += 1;
                    self.record(value, Some(number + 1));
                    self.take_error()?;
                }
                Err(err) => {
                    self.not_json.push(self.rejects.len());
                    self.rejects.push(RecordReject {
                        index: self.seen,
                        line: Some(number + 1),
                        path: None,
                        expected: Some("a JSON object".into()),
                        reason: err.to_string(),
                        record: Value::String(String::from_utf8_lossy(line).into_owned())
                            .to_string(),
                    });
                    self.seen += 1;
                }
            }
        }
        // Every segment but the last ends with `\n`: its last piece is empty, not a line.
        self.lines += pieces.saturating_sub(1);
        Ok(())
    }

    /// Converts a record the direct path takes whole (valid, with a usable timestamp);
    /// `false` leaves it to [`record`](Self::record).
    fn direct(&mut self, line: &[u8]) -> bool {
        self.datum.clear();
        let hour = match self.encoder.encode(line, &mut self.datum) {
            Ok(Captured::Number(n)) => match hour_of(&n, &self.converter.timestamp) {
                Some(hour) => hour,
                None => return false,
            },
            _ => return false,
        };
        self.seen += 1;
        let datum = std::mem::take(&mut self.datum);
        if let Some(writer) = self.writer(hour)
            && let Err(e) = writer.append_encoded(&datum)
        {
            self.error.get_or_insert(e);
        }
        self.datum = datum;
        true
    }

    fn take_error(&mut self) -> Result<(), ConvertError> {
        match self.error.take() {
            Some(err) => Err(err.into()),
            None => Ok(()),
        }
    }

    /// The hour's writer, started on first use (`None` after recording why it could not be).
    fn writer(&mut self, hour: HourPartition) -> Option<&mut ContainerWriter<'c, Vec<u8>>> {
        match self.writers.entry(hour) {
            std::collections::btree_map::Entry::Occupied(entry) => Some(entry.into_mut()),
            std::collections::btree_map::Entry::Vacant(entry) => {
                let key = layout::avro_key(&self.converter.output_prefix, &hour, &self.name);
                // The output key seeds the sync marker: the same input rewrites the same bytes.
                match ContainerWriter::blocks_only(
                    &self.converter.schema.schema,
                    self.converter.codec,
                    key.as_bytes(),
                    Vec::new(),
                ) {
                    Ok(writer) => Some(entry.insert(writer)),
                    Err(e) => {
                        self.error.get_or_insert(e);
                        None
                    }
                }
            }
        }
    }

    /// Routes one parsed record to its hour's writer, or to the rejects.
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
        let Some(writer) = self.writer(hour) else {
            return;
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
}

fn not_json(err: serde_json::Error) -> ConvertError {
    InputError::NotJson {
        reason: err.to_string(),
    }
    .into()
}

/// Streams the elements of a top-level JSON array into a segment.
struct ArrayOfRecords<'s, 'c> {
    sink: &'s mut Segment<'c>,
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
        Value::Number(n) => epoch_of(n),
        _ => None,
    };
    let Some(epoch) = epoch else {
        return Err(problem(describe(value)));
    };
    PartitionTime::from_epoch(epoch, field.unit)
        .map(|t| t.hour())
        .map_err(|e| problem(format!("{} ({e})", describe(value))))
}

/// A timestamp number as whole epoch units.
fn epoch_of(n: &serde_json::Number) -> Option<i64> {
    n.as_i64().or_else(|| {
        n.as_f64()
            .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e18)
            .map(|f| f as i64)
    })
}

/// The UTC hour of a timestamp number, `None` where [`event_hour`] has a reason to give.
fn hour_of(n: &serde_json::Number, field: &TimestampField) -> Option<HourPartition> {
    let epoch = epoch_of(n)?;
    PartitionTime::from_epoch(epoch, field.unit)
        .ok()
        .map(|t| t.hour())
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
