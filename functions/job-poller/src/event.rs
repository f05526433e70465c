//! What the poller is invoked with: S3 object notifications (start jobs), or its own
//! continuation events (follow a job one more generation).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use sluice_events::{S3Notice, S3ObjectEvent, s3_notices_from_value};

use crate::job_api::JobSource;

/// `kind` of a continuation event.
pub const CONTINUE_KIND: &str = "job-poller/continue";

/// `kind` of a notification-record event.
pub const RECORD_KIND: &str = "job-poller/record-notification";

/// What an invocation that published a job's notification but could not record it
/// (`notified_at`) hands to a fresh invocation: the facts only it knows, so that the
/// record is made later instead of lost (and never by publishing again).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationRecord {
    /// Always [`RECORD_KIND`].
    pub kind: String,
    /// The jobs table item.
    pub source_id: String,
    /// The request id that claimed the notification (`notify_owner`) and published it.
    pub notify_owner: String,
    /// SNS's message id of the published notification.
    pub message_id: String,
    /// When it was published (ms since the Unix epoch).
    pub notified_at_ms: u64,
    /// The outcome notified (for logs and metrics).
    pub outcome: String,
}

impl NotificationRecord {
    pub fn new(
        source_id: &str,
        notify_owner: &str,
        message_id: &str,
        notified_at_ms: u64,
        outcome: &str,
    ) -> Self {
        NotificationRecord {
            kind: RECORD_KIND.to_owned(),
            source_id: source_id.to_owned(),
            notify_owner: notify_owner.to_owned(),
            message_id: message_id.to_owned(),
            notified_at_ms,
            outcome: outcome.to_owned(),
        }
    }
}

/// The event one generation sends the next (`InvocationType=Event`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Continuation {
    /// Always [`CONTINUE_KIND`].
    pub kind: String,
    /// The jobs table item.
    pub source_id: String,
    pub job_id: String,
    /// The generation this event asks to run (previous + 1).
    pub generation: u32,
    /// Further generations allowed after this one.
    pub budget_remaining: u32,
    /// Where the status poll interval had got to.
    #[serde(default)]
    pub poll_attempt: u32,
}

impl Continuation {
    pub fn new(
        source_id: &str,
        job_id: &str,
        generation: u32,
        budget_remaining: u32,
        poll_attempt: u32,
    ) -> Self {
        Continuation {
            kind: CONTINUE_KIND.to_owned(),
            source_id: source_id.to_owned(),
            job_id: job_id.to_owned(),
            generation,
            budget_remaining,
            poll_attempt,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum PollerEvent {
    Continue(Continuation),
    Record(NotificationRecord),
    Objects(Vec<S3Notice>),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unreadable event: {0}")]
pub struct InvalidEvent(pub String);

impl PollerEvent {
    pub fn parse(event: &Value) -> Result<Self, InvalidEvent> {
        if event.get("kind").and_then(Value::as_str) == Some(CONTINUE_KIND) {
            let next: Continuation = serde_json::from_value(event.clone())
                .map_err(|e| InvalidEvent(format!("continuation event: {e}")))?;
            if next.generation == 0 {
                return Err(InvalidEvent(
                    "continuation event for generation 0 (only an S3 event starts a job)"
                        .to_owned(),
                ));
            }
            return Ok(PollerEvent::Continue(next));
        }
        if event.get("kind").and_then(Value::as_str) == Some(RECORD_KIND) {
            return serde_json::from_value(event.clone())
                .map(PollerEvent::Record)
                .map_err(|e| InvalidEvent(format!("notification-record event: {e}")));
        }
        s3_notices_from_value(event)
            .map(PollerEvent::Objects)
            .map_err(|e| InvalidEvent(e.to_string()))
    }
}

/// The identity of one object version: what makes a start idempotent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectVersion {
    /// The jobs table key: `s3://bucket/key#<sequencer:versionId:eTag>` (those present).
    pub source_id: String,
    pub source: JobSource,
}

impl ObjectVersion {
    /// `None` when the event names no version at all (no sequencer, version id or
    /// etag): such an event cannot be deduplicated.
    ///
    /// The version is every identifier the event carries (`sequencer:versionId:eTag`,
    /// those present): all are the same when an event is redelivered, and any of them
    /// differs for a new upload of the key, even where an emulator repeats sequencers.
    pub fn of(event: &S3ObjectEvent) -> Option<Self> {
        let parts: Vec<&str> = [&event.sequencer, &event.version_id, &event.etag]
            .into_iter()
            .filter_map(|v| v.as_deref())
            .filter(|v| !v.is_empty())
            .collect();
        if parts.is_empty() {
            return None;
        }
        let version = parts.join(":");
        let uri = format!("s3://{}/{}", event.bucket, event.key);
        Some(ObjectVersion {
            source_id: format!("{uri}#{version}"),
            source: JobSource {
                bucket: event.bucket.clone(),
                key: event.key.clone(),
                etag: event.etag.clone(),
                sequencer: event.sequencer.clone(),
                version_id: event.version_id.clone(),
                uri,
            },
        })
    }

    /// The start call's idempotency key: derived from the object version alone, so
    /// any retry of the start, after any crash, asks for the same job.
    pub fn idempotency_key(&self) -> String {
        let digest = Sha256::digest(self.source_id.as_bytes());
        let hex: String = digest.iter().take(20).map(|b| format!("{b:02x}")).collect();
        format!("sluice-job-poller-{hex}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn s3_event(key: &str, sequencer: Option<&str>) -> Value {
        let mut object =
            json!({"key": key, "size": 1024, "eTag": "d41d8cd98f00b204e9800998ecf8427e"});
        if let Some(seq) = sequencer {
            object["sequencer"] = json!(seq);
        }
        json!({"Records": [{
            "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
            "eventTime": "2026-11-21T06:00:00.000Z", "eventName": "ObjectCreated:Put",
            "s3": {"s3SchemaVersion": "1.0", "configurationId": "reports",
                   "bucket": {"name": "reports-bucket", "arn": "arn:aws:s3:::reports-bucket"},
                   "object": object}
        }]})
    }

    fn only_object(event: &Value) -> S3ObjectEvent {
        match PollerEvent::parse(event).unwrap() {
            PollerEvent::Objects(mut notices) => notices.remove(0).into_object().unwrap(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn sample_events_parse_as_what_they_claim_to_be() {
        let parse = |text: &str| PollerEvent::parse(&serde_json::from_str(text).unwrap()).unwrap();
        let report = parse(include_str!(
            "../../../events/job-poller/s3-put-report.json"
        ));
        let PollerEvent::Objects(notices) = report else {
            panic!("{report:?}")
        };
        let object = notices[0].as_object().unwrap();
        assert_eq!(object.key, "reports/2026/11/21/daily sales (EU).csv");
        assert!(ObjectVersion::of(object).is_some());
        assert!(matches!(
            parse(include_str!("../../../events/job-poller/continuation.json")),
            PollerEvent::Continue(Continuation { generation: 3, .. })
        ));
        assert!(matches!(
            parse(include_str!("../../../events/job-poller/record-notification.json")),
            PollerEvent::Record(NotificationRecord { ref outcome, .. }) if outcome == "SUCCEEDED"
        ));
        assert!(matches!(
            parse(include_str!("../../../events/job-poller/s3-test-event.json")),
            PollerEvent::Objects(n) if matches!(n[..], [S3Notice::TestEvent { .. }])
        ));
        assert!(matches!(
            parse(include_str!("../../../events/job-poller/s3-put-outside-prefix.json")),
            PollerEvent::Objects(n) if n.len() == 1
        ));
    }

    #[test]
    fn continuation_events_round_trip() {
        let next = Continuation::new("s3://b/k#1", "j-1", 3, 5, 2);
        let value = serde_json::to_value(&next).unwrap();
        assert_eq!(value["kind"], CONTINUE_KIND);
        assert_eq!(
            PollerEvent::parse(&value).unwrap(),
            PollerEvent::Continue(next)
        );
    }

    #[test]
    fn notification_record_events_round_trip_and_name_a_missing_field() {
        let record =
            NotificationRecord::new("s3://b/k#1", "req-1", "msg-1", 1_700_000_000_000, "FAILED");
        let value = serde_json::to_value(&record).unwrap();
        assert_eq!(value["kind"], RECORD_KIND);
        assert_eq!(
            PollerEvent::parse(&value).unwrap(),
            PollerEvent::Record(record)
        );
        let err = PollerEvent::parse(&json!({"kind": RECORD_KIND, "source_id": "s"})).unwrap_err();
        assert!(err.to_string().contains("notify_owner"), "{err}");
    }

    #[test]
    fn continuation_for_generation_zero_is_rejected() {
        let value = serde_json::to_value(Continuation::new("s", "j", 0, 5, 0)).unwrap();
        assert!(PollerEvent::parse(&value).is_err());
    }

    #[test]
    fn malformed_continuation_names_the_problem() {
        let err = PollerEvent::parse(&json!({"kind": CONTINUE_KIND, "job_id": "j"})).unwrap_err();
        assert!(err.to_string().contains("source_id"), "{err}");
    }

    #[test]
    fn unknown_events_are_rejected() {
        assert!(PollerEvent::parse(&json!({"hello": "world"})).is_err());
    }

    #[test]
    fn object_version_is_sequencer_and_etag_with_the_key_decoded() {
        let event = only_object(&s3_event(
            "reports/2026/sales+q3%2B.csv",
            Some("0055AED6DCD90281E5"),
        ));
        let version = ObjectVersion::of(&event).unwrap();
        assert_eq!(
            version.source_id,
            "s3://reports-bucket/reports/2026/sales q3+.csv#0055AED6DCD90281E5:d41d8cd98f00b204e9800998ecf8427e"
        );
        assert_eq!(
            version.source.uri,
            "s3://reports-bucket/reports/2026/sales q3+.csv"
        );
        assert_eq!(
            version.source.etag.as_deref(),
            Some("d41d8cd98f00b204e9800998ecf8427e")
        );
    }

    #[test]
    fn object_version_without_sequencer_is_the_etag() {
        let event = only_object(&s3_event("reports/a.csv", None));
        assert_eq!(
            ObjectVersion::of(&event).unwrap().source_id,
            "s3://reports-bucket/reports/a.csv#d41d8cd98f00b204e9800998ecf8427e"
        );
    }

    #[test]
    fn idempotency_key_is_stable_per_version_and_differs_between_versions() {
        let a = ObjectVersion::of(&only_object(&s3_event("r/a.csv", Some("01")))).unwrap();
        let a_again = ObjectVersion::of(&only_object(&s3_event("r/a.csv", Some("01")))).unwrap();
        let b = ObjectVersion::of(&only_object(&s3_event("r/a.csv", Some("02")))).unwrap();
        assert_eq!(a.idempotency_key(), a_again.idempotency_key());
        assert_ne!(a.idempotency_key(), b.idempotency_key());
        assert!(a.idempotency_key().starts_with("sluice-job-poller-"));
        assert_eq!(a.idempotency_key().len(), "sluice-job-poller-".len() + 40);
    }
}
