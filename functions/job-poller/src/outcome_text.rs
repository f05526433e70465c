//! The outcome notification as a person reads it: an email body and a Subject line,
//! rendered from the same [`Notification`] the machine-readable JSON is made of, and
//! the per-protocol SNS message (`MessageStructure=json`) that carries both.
//!
//! Pure: no clock, no I/O. The JSON that SQS, Lambda and https subscribers get is the
//! `default` entry, byte for byte what [`serde_json::to_string`] makes of the
//! notification; only email subscribers get the text.

use serde::Serialize;
use time::OffsetDateTime;
use time::macros::format_description;

use crate::handler::Notification;

/// SNS wants a Subject of fewer than 100 characters.
pub const SUBJECT_MAX_CHARS: usize = 99;
/// The job API's detail is quoted in the email up to this many characters (the JSON
/// carries all of it), so the text can never push the message past SNS's size limit.
pub const DETAIL_MAX_CHARS: usize = 2000;

/// The SNS `Message` for `MessageStructure=json`: `default` (every protocol without
/// its own entry: SQS, Lambda, http/https, email-json) is the JSON notification,
/// `email` the text.
#[derive(Debug, Serialize)]
struct PerProtocol<'a> {
    default: &'a str,
    email: &'a str,
}

/// `{"default": <json>, "email": <text>}` as one JSON string.
pub fn per_protocol_message(default_json: &str, email_text: &str) -> serde_json::Result<String> {
    serde_json::to_string(&PerProtocol {
        default: default_json,
        email: email_text,
    })
}

/// What happened, in words: the first line of the email.
fn headline(n: &Notification) -> String {
    let job = n.job_id.as_deref().unwrap_or("(not started)");
    match n.outcome.as_str() {
        "SUCCEEDED" => format!("Job {job} finished: it succeeded."),
        "FAILED" if n.job_id.is_none() => {
            format!(
                "No job was started for {}: the job API refused it.",
                n.source.uri
            )
        }
        "FAILED" => format!("Job {job} failed."),
        "BUDGET_EXHAUSTED" => format!(
            "sluice gave up following job {job} after {} generations (MAX_GENERATIONS). \
             The job may still be running on the job API: it was not cancelled.",
            n.generations
        ),
        other => format!("Job {job} ended: {other}."),
    }
}

/// The email body.
pub fn email_text(n: &Notification, jobs_table: &str) -> String {
    let mut report = n.source.uri.clone();
    let mut version = Vec::new();
    if let Some(v) = &n.source.version_id {
        version.push(format!("version {v}"));
    }
    if let Some(e) = &n.source.etag {
        version.push(format!("ETag {e}"));
    }
    if !version.is_empty() {
        report.push_str(&format!(" ({})", version.join(", ")));
    }
    let detail = quoted_detail(&n.detail);
    let job_id = n
        .job_id
        .as_deref()
        .unwrap_or("none (the job was never started)");
    let rows = [
        ("Outcome", n.outcome.clone()),
        ("Job", job_id.to_owned()),
        ("Report", report),
        ("Detail", detail),
        ("Started", utc(n.started_at_ms)),
        ("Ended", utc(n.finished_at_ms)),
        ("Took", duration(n.duration_ms)),
        (
            "Generations",
            format!(
                "{} (invocations of job-poller this job used)",
                n.generations
            ),
        ),
        (
            "Record",
            format!("jobs table {jobs_table}, source_id {}", n.source_id),
        ),
    ];
    let mut text = headline(n);
    text.push_str("\n\n");
    for (label, value) in rows {
        text.push_str(&format!("{:<13}{value}\n", format!("{label}:")));
    }
    text.push_str(
        "\nThe same outcome as JSON goes to the topic's SQS, Lambda, https and email-json subscribers.\n",
    );
    text
}

fn quoted_detail(detail: &str) -> String {
    let detail = detail.trim();
    if detail.is_empty() {
        return "-".to_owned();
    }
    if detail.chars().count() <= DETAIL_MAX_CHARS {
        return detail.to_owned();
    }
    let cut: String = detail.chars().take(DETAIL_MAX_CHARS).collect();
    format!("{cut}... (cut here; the JSON message and the jobs table have all of it)")
}

/// The Subject line: `sluice job <id>: <OUTCOME> in|after <duration>`, printable ASCII
/// only, fewer than 100 characters (a long job id or key is shortened with `...`).
pub fn subject(n: &Notification) -> String {
    let took = duration(n.duration_ms);
    let (what, tail) = match (n.job_id.as_deref(), n.outcome.as_str()) {
        (None, outcome) => (
            n.source.key.as_str(),
            format!(": {outcome}, job not started"),
        ),
        (Some(id), "SUCCEEDED") => (id, format!(": SUCCEEDED in {took}")),
        (Some(id), "BUDGET_EXHAUSTED") => {
            (id, format!(": gave up after {took} (BUDGET_EXHAUSTED)"))
        }
        (Some(id), outcome) => (id, format!(": {outcome} after {took}")),
    };
    let head = if n.job_id.is_some() {
        "sluice job "
    } else {
        "sluice report "
    };
    let room = SUBJECT_MAX_CHARS.saturating_sub(head.len() + tail.len());
    let what = ascii_safe(what);
    let what = if what.len() <= room {
        what
    } else {
        // Keep the end: job ids and keys differ most there.
        let keep = room.saturating_sub(3);
        format!("...{}", &what[what.len() - keep..])
    };
    let mut subject = format!("{head}{what}{tail}");
    subject.truncate(SUBJECT_MAX_CHARS);
    subject
}

/// Printable ASCII: anything else (line breaks, control and non-ASCII characters) as `?`.
fn ascii_safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c == ' ' || c.is_ascii_graphic() {
                c
            } else {
                '?'
            }
        })
        .collect()
}

/// `850ms`, `12s`, `3m12s`, `2h05m`.
pub fn duration(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0 => format!("{ms}ms"),
        1..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// `2026-11-21 06:00:12 UTC` (milliseconds dropped).
pub fn utc(epoch_ms: u64) -> String {
    let format = format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC");
    i128::from(epoch_ms)
        .checked_mul(1_000_000)
        .and_then(|nanos| OffsetDateTime::from_unix_timestamp_nanos(nanos).ok())
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_else(|| format!("{epoch_ms} ms after the epoch"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job_api::JobSource;

    fn notification(
        job_id: Option<&str>,
        outcome: &str,
        detail: &str,
        generations: u32,
    ) -> Notification {
        let started = 1_763_704_812_345;
        let duration_ms = 192_840;
        Notification {
            job_id: job_id.map(str::to_owned),
            source: JobSource {
                bucket: "reports-bucket".to_owned(),
                key: "reports/2026/11/21/sales.csv".to_owned(),
                etag: Some("0123456789abcdef0123456789abcdef".to_owned()),
                sequencer: Some("0055AED6DCD90281E5".to_owned()),
                version_id: None,
                uri: "s3://reports-bucket/reports/2026/11/21/sales.csv".to_owned(),
            },
            source_id: "s3://reports-bucket/reports/2026/11/21/sales.csv#0055AED6DCD90281E5:0123456789abcdef0123456789abcdef".to_owned(),
            outcome: outcome.to_owned(),
            detail: detail.to_owned(),
            duration_ms,
            generations,
            started_at_ms: started,
            finished_at_ms: started + duration_ms,
        }
    }

    #[test]
    fn success_reads_as_finished_with_report_times_and_generations() {
        let n = notification(Some("etl-7f3a9c"), "SUCCEEDED", "1200 rows loaded", 4);
        assert_eq!(subject(&n), "sluice job etl-7f3a9c: SUCCEEDED in 3m12s");
        assert_eq!(
            email_text(&n, "sluice-jobs"),
            "\
Job etl-7f3a9c finished: it succeeded.

Outcome:     SUCCEEDED
Job:         etl-7f3a9c
Report:      s3://reports-bucket/reports/2026/11/21/sales.csv (ETag 0123456789abcdef0123456789abcdef)
Detail:      1200 rows loaded
Started:     2025-11-21 06:00:12 UTC
Ended:       2025-11-21 06:03:25 UTC
Took:        3m12s
Generations: 4 (invocations of job-poller this job used)
Record:      jobs table sluice-jobs, source_id s3://reports-bucket/reports/2026/11/21/sales.csv#0055AED6DCD90281E5:0123456789abcdef0123456789abcdef

The same outcome as JSON goes to the topic's SQS, Lambda, https and email-json subscribers.
"
        );
    }

    #[test]
    fn failure_reads_as_failed_with_the_apis_reason() {
        let n = notification(Some("etl-7f3a9c"), "FAILED", "column 7 is not a date", 1);
        assert_eq!(subject(&n), "sluice job etl-7f3a9c: FAILED after 3m12s");
        assert_eq!(
            email_text(&n, "sluice-jobs"),
            "\
Job etl-7f3a9c failed.

Outcome:     FAILED
Job:         etl-7f3a9c
Report:      s3://reports-bucket/reports/2026/11/21/sales.csv (ETag 0123456789abcdef0123456789abcdef)
Detail:      column 7 is not a date
Started:     2025-11-21 06:00:12 UTC
Ended:       2025-11-21 06:03:25 UTC
Took:        3m12s
Generations: 1 (invocations of job-poller this job used)
Record:      jobs table sluice-jobs, source_id s3://reports-bucket/reports/2026/11/21/sales.csv#0055AED6DCD90281E5:0123456789abcdef0123456789abcdef

The same outcome as JSON goes to the topic's SQS, Lambda, https and email-json subscribers.
"
        );
    }

    #[test]
    fn given_up_job_says_so_and_that_it_was_not_cancelled() {
        let mut n = notification(
            Some("etl-7f3a9c"),
            "BUDGET_EXHAUSTED",
            "job etl-7f3a9c still running after 12 generations (MAX_GENERATIONS); no longer followed",
            12,
        );
        n.duration_ms = 10_815_000;
        n.finished_at_ms = n.started_at_ms + n.duration_ms;
        assert_eq!(
            subject(&n),
            "sluice job etl-7f3a9c: gave up after 3h00m (BUDGET_EXHAUSTED)"
        );
        assert_eq!(
            email_text(&n, "sluice-jobs"),
            "\
sluice gave up following job etl-7f3a9c after 12 generations (MAX_GENERATIONS). The job may still be running on the job API: it was not cancelled.

Outcome:     BUDGET_EXHAUSTED
Job:         etl-7f3a9c
Report:      s3://reports-bucket/reports/2026/11/21/sales.csv (ETag 0123456789abcdef0123456789abcdef)
Detail:      job etl-7f3a9c still running after 12 generations (MAX_GENERATIONS); no longer followed
Started:     2025-11-21 06:00:12 UTC
Ended:       2025-11-21 09:00:27 UTC
Took:        3h00m
Generations: 12 (invocations of job-poller this job used)
Record:      jobs table sluice-jobs, source_id s3://reports-bucket/reports/2026/11/21/sales.csv#0055AED6DCD90281E5:0123456789abcdef0123456789abcdef

The same outcome as JSON goes to the topic's SQS, Lambda, https and email-json subscribers.
"
        );
    }

    #[test]
    fn refused_start_names_the_report_instead_of_a_job() {
        let mut n = notification(
            None,
            "FAILED",
            "job API rejected the start: 422 bad source",
            1,
        );
        n.source.version_id = Some("3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY".to_owned());
        assert_eq!(
            subject(&n),
            "sluice report reports/2026/11/21/sales.csv: FAILED, job not started"
        );
        let text = email_text(&n, "sluice-jobs");
        assert!(
            text.starts_with(
                "No job was started for s3://reports-bucket/reports/2026/11/21/sales.csv: the job API refused it.\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("\nJob:         none (the job was never started)\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "(version 3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY, ETag 0123456789abcdef0123456789abcdef)"
            ),
            "{text}"
        );
    }

    fn assert_sns_safe(subject: &str) {
        assert!(subject.len() < 100, "{} chars: {subject}", subject.len());
        assert!(
            subject.chars().all(|c| c == ' ' || c.is_ascii_graphic()),
            "not printable ASCII: {subject:?}"
        );
        assert!(subject.starts_with("sluice "), "{subject}");
    }

    #[test]
    fn subject_stays_printable_ascii_under_100_chars_whatever_the_job_id() {
        let long = "x".repeat(300);
        let hostile = "état\r\nBcc: someone@example.com\t\u{7}🙂";
        for id in [long.as_str(), hostile, ""] {
            for outcome in ["SUCCEEDED", "FAILED", "BUDGET_EXHAUSTED"] {
                let mut n = notification(Some(id), outcome, "d", 2);
                n.duration_ms = u64::MAX;
                assert_sns_safe(&subject(&n));
            }
        }
        let mut n = notification(None, "FAILED", "d", 1);
        n.source.key = format!("reports/{}ü\n.csv", "k".repeat(200));
        let s = subject(&n);
        assert_sns_safe(&s);
        assert!(s.ends_with("kkk??.csv: FAILED, job not started"), "{s}");
        assert_eq!(
            subject(&notification(Some(hostile), "SUCCEEDED", "d", 1)),
            "sluice job ?tat??Bcc: someone@example.com???: SUCCEEDED in 3m12s"
        );
    }

    #[test]
    fn long_ids_are_shortened_from_the_front_to_exactly_the_limit() {
        let id = format!("{}-tail", "a".repeat(200));
        let s = subject(&notification(Some(&id), "SUCCEEDED", "d", 1));
        assert_eq!(s.len(), SUBJECT_MAX_CHARS);
        assert!(s.starts_with("sluice job ...aaa"), "{s}");
        assert!(s.ends_with("a-tail: SUCCEEDED in 3m12s"), "{s}");
    }

    #[test]
    fn a_long_detail_is_cut_in_the_text_only() {
        let detail = "é".repeat(DETAIL_MAX_CHARS + 500);
        let text = email_text(&notification(Some("j"), "FAILED", &detail, 1), "t");
        let line = text.lines().find(|l| l.starts_with("Detail:")).unwrap();
        assert_eq!(line.chars().filter(|&c| c == 'é').count(), DETAIL_MAX_CHARS);
        assert!(
            line.ends_with("... (cut here; the JSON message and the jobs table have all of it)")
        );
    }

    #[test]
    fn durations_and_times_read_naturally() {
        assert_eq!(duration(850), "850ms");
        assert_eq!(duration(12_840), "12s");
        assert_eq!(duration(192_840), "3m12s");
        assert_eq!(duration(7_500_000), "2h05m");
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(1_763_704_812_999), "2025-11-21 06:00:12 UTC");
        assert_eq!(utc(u64::MAX), "18446744073709551615 ms after the epoch");
    }

    #[test]
    fn per_protocol_message_carries_the_json_unchanged_as_default() {
        let n = notification(Some("etl-7f3a9c"), "SUCCEEDED", "loaded \"all\"\n", 4);
        let json = serde_json::to_string(&n).unwrap();
        let text = email_text(&n, "t");
        let message: serde_json::Value =
            serde_json::from_str(&per_protocol_message(&json, &text).unwrap()).unwrap();
        let keys: Vec<&String> = message.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["default", "email"]);
        assert_eq!(message["default"].as_str(), Some(json.as_str()));
        assert_eq!(message["email"].as_str(), Some(text.as_str()));
    }
}
