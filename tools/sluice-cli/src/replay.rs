//! `sluice replay archive s3://archive/<yyyy>/<mm>/`: archived events put back on the
//! stack's event stream (for a new consumer, or after a downstream fix), each with its
//! bytes as archived, at a bounded rate, resumable.
//!
//! - **What is put**: the objects under the prefix in key order (the archive's keys sort by
//!   hour), each line of an object as one record, in order: the record's data as it was on
//!   the stream (the archiver joins records with `\n`; a record that itself ended with a
//!   newline comes back without it). An object holding more lines than its `record-count`
//!   had records with newlines inside and cannot be split back: it is skipped and named.
//! - **Partition key**: as ingest-api chose it, the event's `PARTITION_KEY_FIELD` (read from
//!   the deployed ingest-api), else a hash of the record's bytes.
//! - **Rate**: `--rate N/s` records per second (batches of at most a second's worth).
//! - **Resumable**: after every batch Kinesis acknowledged, the position (object and line)
//!   is written to a checkpoint file; a stopped replay (`--max`, Ctrl-C, a failure) says
//!   where it stopped, and `--resume` continues from there. Objects written after the
//!   replay began (its own output lands in the archive, perhaps under the same prefix) are
//!   never replayed. At least once: a run killed mid-batch puts that batch again.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use sluice_aws::{Backoff, Deadline, OutgoingRecord, PutRecordsWriter, get_object_bytes};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::context::Context;
use crate::error::{CliError, sdk};
use crate::pipeline::Function;
use crate::progress;
use crate::s3uri::S3Uri;

/// Records per `PutRecords` call (Kinesis' limit).
const MAX_BATCH: usize = 500;

#[derive(Debug, Clone)]
pub struct Options {
    pub source: S3Uri,
    /// Records per second.
    pub rate: f64,
    /// Stop after putting this many records (resume later).
    pub max: Option<u64>,
    pub dry_run: bool,
    pub checkpoint: Option<PathBuf>,
    pub resume: bool,
}

/// Where a replay continues: line `line` (0-based) of object `key`; every line before it,
/// and every object before `key`, was put.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub key: String,
    pub line: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub stack: String,
    pub source: String,
    pub stream: String,
    /// Objects last modified after this (RFC 3339) are not part of the replay.
    pub listed_before: String,
    pub next: Option<Position>,
    pub events_put: u64,
    pub done: bool,
}

impl Checkpoint {
    pub fn load(path: &Path) -> Result<Option<Checkpoint>, CliError> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                CliError::Usage(format!(
                    "{} is not a replay checkpoint: {e}",
                    path.display()
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(CliError::Io(format!("reading {}: {e}", path.display()))),
        }
    }

    /// Written whole to a temporary file, then renamed over the checkpoint.
    pub fn save(&self, path: &Path) -> Result<(), CliError> {
        let tmp = path.with_extension("tmp");
        let text = serde_json::to_vec_pretty(self).expect("a checkpoint serialises");
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, path))
            .map_err(|e| CliError::Io(format!("writing {}: {e}", path.display())))
    }
}

/// The default checkpoint file for a stack and source, in the working directory.
pub fn default_checkpoint(stack: &str, source: &S3Uri) -> PathBuf {
    let digest = Sha256::digest(source.to_string().as_bytes());
    let tag: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
    PathBuf::from(format!("sluice-replay-{stack}-{tag}.json"))
}

/// `500`, `500/s`, `30000/m` (records per minute): records per second.
pub fn parse_rate(text: &str) -> Result<f64, String> {
    let (number, per) = match text.split_once('/') {
        Some((n, unit)) => (n, unit),
        None => (text, "s"),
    };
    let n: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a rate (e.g. 500/s)"))?;
    let seconds = match per.trim() {
        "s" | "sec" | "second" => 1.0,
        "m" | "min" | "minute" => 60.0,
        other => return Err(format!("unknown rate unit {other:?}: use /s or /m")),
    };
    if !(n > 0.0 && n.is_finite()) {
        return Err(format!("{text:?}: the rate must be above zero"));
    }
    Ok(n / seconds)
}

/// The partition key ingest-api would have given the event: the `field`'s value (a
/// string, or a number or boolean as JSON text) when there is one, else a hash of the
/// bytes (deterministic, so a resumed replay keys the same records the same way).
pub fn partition_key(data: &[u8], field: Option<&str>) -> String {
    if let Some(field) = field
        && let Ok(Value::Object(event)) = serde_json::from_slice::<Value>(data)
    {
        let key = match event.get(field) {
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            Some(v @ (Value::Number(_) | Value::Bool(_))) => Some(v.to_string()),
            _ => None,
        };
        if let Some(key) = key.filter(|k| k.chars().count() <= 256) {
            return key;
        }
    }
    Sha256::digest(data)
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The records of an archive object: its lines, without the newline the archiver added.
pub fn archive_lines(text: &[u8]) -> Vec<&[u8]> {
    if text.is_empty() {
        return Vec::new();
    }
    let body = text.strip_suffix(b"\n").unwrap_or(text);
    body.split(|b| *b == b'\n').collect()
}

/// Paces puts to `rate` records per second.
#[derive(Debug)]
pub struct Pace {
    rate: f64,
    next: Option<Instant>,
}

impl Pace {
    pub fn new(rate: f64) -> Self {
        Pace { rate, next: None }
    }

    /// Records per batch: at most a second's worth, at most Kinesis' 500.
    pub fn batch(&self) -> usize {
        (self.rate.floor() as usize).clamp(1, MAX_BATCH)
    }

    /// How long to wait before putting `n` records now.
    pub fn wait_for(&mut self, n: usize, now: Instant) -> Duration {
        let start = self.next.map_or(now, |next| next.max(now));
        self.next = Some(start + Duration::from_secs_f64(n as f64 / self.rate));
        start - now
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct SkippedObject {
    pub key: String,
    pub reason: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub stack: String,
    pub source: String,
    pub stream: String,
    pub dry_run: bool,
    pub checkpoint: String,
    pub resumed_from: Option<Position>,
    /// Archive objects in the replay (not skipped).
    pub objects: usize,
    /// Objects whose every line is now put (or would be).
    pub objects_done: usize,
    /// Records put in this run (or, dry run, that would be).
    pub events_put: u64,
    /// Records put since the replay began, over every resumed run.
    pub events_put_total: u64,
    pub skipped_objects: Vec<SkippedObject>,
    /// Where it stopped before the end; `None` when complete.
    pub stopped_at: Option<Position>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_reason: Option<String>,
    pub rate_per_second: f64,
    pub seconds: f64,
}

struct ArchiveObject {
    key: String,
    last_modified: OffsetDateTime,
}

pub async fn replay(ctx: &Context, options: Options) -> Result<Report, CliError> {
    let started = Instant::now();
    let archive_bucket = ctx.stack.output("ArchiveBucketName")?;
    if options.source.bucket != archive_bucket {
        return Err(CliError::Usage(format!(
            "s3://{}/ is not the archive of stack {}; its archive is s3://{archive_bucket}/",
            options.source.bucket, ctx.stack.name
        )));
    }
    let stream = ctx.stack.output("EventStreamName")?.to_owned();
    let checkpoint_path = options
        .checkpoint
        .clone()
        .unwrap_or_else(|| default_checkpoint(&ctx.stack.name, &options.source));
    let source = options.source.to_string();
    let existing = Checkpoint::load(&checkpoint_path)?;
    let mut checkpoint = match (existing, options.resume) {
        (None, true) => {
            return Err(CliError::Usage(format!(
                "no checkpoint at {}: nothing to resume (give --checkpoint if it is elsewhere)",
                checkpoint_path.display()
            )));
        }
        (Some(found), true) => {
            if found.source != source || found.stack != ctx.stack.name {
                return Err(CliError::Usage(format!(
                    "{} is the checkpoint of a replay of {} (stack {}), not of {source}",
                    checkpoint_path.display(),
                    found.source,
                    found.stack
                )));
            }
            found
        }
        (Some(found), false) if !found.done && !options.dry_run => {
            let at = found.next.as_ref().map_or("its start".to_owned(), |p| {
                format!("s3://{}/{} line {}", archive_bucket, p.key, p.line + 1)
            });
            return Err(CliError::Usage(format!(
                "a replay of {} stopped at {at} after {} events ({}): --resume continues it; delete the file to start over",
                found.source,
                found.events_put,
                checkpoint_path.display()
            )));
        }
        _ => Checkpoint {
            stack: ctx.stack.name.clone(),
            source: source.clone(),
            stream: stream.clone(),
            listed_before: OffsetDateTime::now_utc()
                .format(&Rfc3339)
                .expect("now formats"),
            next: None,
            events_put: 0,
            done: false,
        },
    };
    let mut report = Report {
        stack: ctx.stack.name.clone(),
        source: source.clone(),
        stream: stream.clone(),
        dry_run: options.dry_run,
        checkpoint: checkpoint_path.display().to_string(),
        resumed_from: options.resume.then(|| checkpoint.next.clone()).flatten(),
        events_put_total: checkpoint.events_put,
        rate_per_second: options.rate,
        ..Report::default()
    };
    if checkpoint.done {
        report.seconds = started.elapsed().as_secs_f64();
        return Ok(report);
    }
    let listed_before =
        OffsetDateTime::parse(&checkpoint.listed_before, &Rfc3339).map_err(|e| {
            CliError::Usage(format!(
                "checkpoint {}: listed_before: {e}",
                checkpoint_path.display()
            ))
        })?;
    let mut objects = list(ctx, &options.source).await?;
    if objects.is_empty() {
        return Err(CliError::NotFound(format!("nothing under {source}")));
    }
    objects.retain(|o| {
        let keep = o.key.ends_with(".bz2");
        if !keep {
            report.skipped_objects.push(SkippedObject {
                key: o.key.clone(),
                reason: "not an archive object (.bz2)".into(),
            });
        }
        keep
    });
    objects.retain(|o| {
        // Second resolution: an object of the same second as the listing still counts.
        let keep = o.last_modified.unix_timestamp() <= listed_before.unix_timestamp();
        if !keep {
            report.skipped_objects.push(SkippedObject {
                key: o.key.clone(),
                reason: "written after the replay began (its own output, or new data)".into(),
            });
        }
        keep
    });
    if objects.is_empty() {
        return Err(CliError::NotFound(format!(
            "nothing to replay under {source}: {}",
            report
                .skipped_objects
                .iter()
                .map(|s| format!("{} ({})", s.key, s.reason))
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    if let Some(next) = &checkpoint.next {
        objects.retain(|o| o.key >= next.key);
    }
    report.objects = objects.len();

    let partition_field = match ctx.function(Function::IngestApi).await {
        Ok(ingest) => ingest.env("PARTITION_KEY_FIELD").map(str::to_owned),
        Err(_) => None,
    };
    let writer = PutRecordsWriter::new(ctx.clients.kinesis.clone(), &stream, Backoff::default());
    let mut pace = Pace::new(options.rate);
    let bar = progress::bar(objects.len() as u64, "replay objects", ctx.progress);
    let s3 = &ctx.clients.s3;
    let mut put_this_run: u64 = 0;

    'objects: for object in &objects {
        let deadline = Deadline::after(Duration::from_secs(300));
        let compressed = get_object_bytes(s3, archive_bucket, &object.key, &deadline)
            .await
            .map_err(|e| CliError::Aws {
                what: format!("reading s3://{archive_bucket}/{}", object.key),
                code: "S3Error".into(),
                message: e.to_string(),
            })?;
        let text = match sluice_codec::bzip2::decompress(&compressed) {
            Ok(text) => text,
            Err(e) => {
                report.skipped_objects.push(SkippedObject {
                    key: object.key.clone(),
                    reason: format!("not bzip2: {e}"),
                });
                bar.inc(1);
                continue;
            }
        };
        let lines = archive_lines(&text);
        if let Some(count) = record_count(ctx, archive_bucket, &object.key).await?
            && count != lines.len() as u64
        {
            report.skipped_objects.push(SkippedObject {
                key: object.key.clone(),
                reason: format!(
                    "{} lines for {count} records: records with newlines inside cannot be split back",
                    lines.len()
                ),
            });
            bar.inc(1);
            continue;
        }
        let first = match &checkpoint.next {
            Some(next) if next.key == object.key => next.line as usize,
            _ => 0,
        };
        let mut line = first.min(lines.len());
        while line < lines.len() {
            let room = options
                .max
                .map_or(u64::MAX, |m| m.saturating_sub(put_this_run));
            if room == 0 {
                report.stop_reason = Some(format!("--max {} reached", options.max.unwrap_or(0)));
                report.stopped_at = Some(Position {
                    key: object.key.clone(),
                    line: line as u64,
                });
                break 'objects;
            }
            let n = pace
                .batch()
                .min(lines.len() - line)
                .min(room.min(MAX_BATCH as u64) as usize);
            let batch = &lines[line..line + n];
            if options.dry_run {
                put_this_run += n as u64;
                line += n;
                continue;
            }
            tokio::time::sleep(pace.wait_for(n, Instant::now())).await;
            let records: Vec<OutgoingRecord> = batch
                .iter()
                .map(|data| {
                    OutgoingRecord::new(
                        partition_key(data, partition_field.as_deref()),
                        data.to_vec(),
                    )
                })
                .collect();
            let put = writer
                .put_all(records, &Deadline::after(Duration::from_secs(60)))
                .await;
            let first_unwritten = put
                .failed
                .iter()
                .map(|f| (f.index, format!("{}: {}", f.error_code, f.message)))
                .chain(put.rejected.iter().map(|r| (r.index, r.reason.to_string())))
                .min_by_key(|(i, _)| *i);
            let written_in_order = first_unwritten.as_ref().map_or(n, |(i, _)| *i);
            put_this_run += written_in_order as u64;
            checkpoint.events_put += written_in_order as u64;
            line += written_in_order;
            checkpoint.next = Some(Position {
                key: object.key.clone(),
                line: line as u64,
            });
            checkpoint.save(&checkpoint_path)?;
            bar.set_message(format!("events {put_this_run}"));
            if let Some((_, why)) = first_unwritten {
                report.stop_reason = Some(format!("not written by Kinesis after retries: {why}"));
                report.stopped_at = checkpoint.next.clone();
                break 'objects;
            }
        }
        report.objects_done += 1;
        bar.inc(1);
    }
    bar.finish_and_clear();
    report.events_put = put_this_run;
    report.events_put_total =
        checkpoint.events_put + if options.dry_run { put_this_run } else { 0 };
    if !options.dry_run {
        if report.stopped_at.is_none() {
            checkpoint.done = true;
        }
        checkpoint.save(&checkpoint_path)?;
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

async fn record_count(ctx: &Context, bucket: &str, key: &str) -> Result<Option<u64>, CliError> {
    let head = ctx
        .clients
        .s3
        .head_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| sdk(format!("reading s3://{bucket}/{key}"), e))?;
    Ok(head
        .metadata()
        .and_then(|m| m.get("record-count"))
        .and_then(|v| v.parse().ok()))
}

async fn list(ctx: &Context, source: &S3Uri) -> Result<Vec<ArchiveObject>, CliError> {
    let mut out: Vec<ArchiveObject> = crate::backfill::list(ctx, source)
        .await?
        .into_iter()
        .map(|object| ArchiveObject {
            key: object.key,
            last_modified: object.last_modified,
        })
        .collect();
    out.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(out)
}

/// The summary for a terminal.
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    if let Some(from) = &report.resumed_from {
        out.push_str(&format!("resumed at {} line {}\n", from.key, from.line + 1));
    }
    let verb = if report.dry_run { "would put" } else { "put" };
    out.push_str(&format!(
        "replay {} -> stream {} (stack {}): {verb} {} events from {} of {} objects at up to {}/s in {:.1} s ({} since the replay began)\n",
        report.source,
        report.stream,
        report.stack,
        report.events_put,
        report.objects_done,
        report.objects,
        report.rate_per_second,
        report.seconds,
        report.events_put_total
    ));
    for skipped in &report.skipped_objects {
        out.push_str(&format!("  skipped {}: {}\n", skipped.key, skipped.reason));
    }
    match (&report.stopped_at, report.dry_run) {
        (Some(at), false) => out.push_str(&format!(
            "stopped at {} line {} ({}); checkpoint {}\ncontinue with: sluice replay archive {} --resume{}\n",
            at.key,
            at.line + 1,
            report.stop_reason.as_deref().unwrap_or("stopped"),
            report.checkpoint,
            report.source,
            if report.checkpoint.starts_with("sluice-replay-") { String::new() } else { format!(" --checkpoint {}", report.checkpoint) }
        )),
        (Some(at), true) => out.push_str(&format!(
            "a run would stop at {} line {} ({})\n",
            at.key,
            at.line + 1,
            report.stop_reason.as_deref().unwrap_or("stopped")
        )),
        (None, false) => out.push_str(&format!("complete; checkpoint {}\n", report.checkpoint)),
        (None, true) => {}
    }
    out
}

#[cfg(test)]
mod tests;
