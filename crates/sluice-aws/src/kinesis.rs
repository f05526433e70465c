//! Kinesis `PutRecords` within the service limits, resending only what failed.
//!
//! Limits (per call): at most [`MAX_RECORDS_PER_CALL`] records and
//! [`MAX_BYTES_PER_CALL`] bytes counting data and partition keys; per record at most
//! [`MAX_RECORD_BYTES`] (data + partition key) and a partition key of 1 to 256
//! characters. A record outside these limits is rejected before anything is sent —
//! reported, never truncated.
//!
//! A successful call can still fail individual entries (`ErrorCode` in the result,
//! usually `ProvisionedThroughputExceededException` or `InternalFailure`). Only those
//! entries are resent, in their original order, after a backoff; entries written are
//! never resent. A whole-call transient error resends the whole remaining group. KMS
//! entry errors other than throttling (key disabled, access denied, …) are permanent.
//!
//! Ordering: groups go out one after another, but a resent entry lands after entries
//! written later in the same group, so per-partition-key order is not kept under
//! partial failure (as with any `PutRecords` caller). Use `PutRecord` with
//! `SequenceNumberForOrdering` where strict order matters.

use std::time::Duration;

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use aws_smithy_types::Blob;

use crate::batch_send::{
    BatchCall, CallFailure, CallResult, EntryFailure, Limits, Outgoing, Retry, send_all,
};
use crate::retry::{Backoff, Deadline, is_transient_code};

pub const MAX_RECORDS_PER_CALL: usize = 500;
pub const MAX_BYTES_PER_CALL: usize = 5 * 1024 * 1024;
pub const MAX_RECORD_BYTES: usize = 1024 * 1024;
pub const MAX_PARTITION_KEY_CHARS: usize = 256;

/// A record to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingRecord {
    pub partition_key: String,
    pub data: Vec<u8>,
    pub explicit_hash_key: Option<String>,
}

impl OutgoingRecord {
    pub fn new(partition_key: impl Into<String>, data: impl Into<Vec<u8>>) -> Self {
        Self {
            partition_key: partition_key.into(),
            data: data.into(),
            explicit_hash_key: None,
        }
    }

    pub fn with_explicit_hash_key(mut self, hash_key: impl Into<String>) -> Self {
        self.explicit_hash_key = Some(hash_key.into());
        self
    }

    /// Bytes this record counts against the limits: data plus UTF-8 partition key.
    pub fn size(&self) -> usize {
        self.data.len() + self.partition_key.len()
    }
}

/// Why a record was not sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RejectReason {
    #[error("record is {size} bytes (data + partition key), over the {limit}-byte limit")]
    TooLarge { size: usize, limit: usize },
    #[error("partition key has {chars} characters; Kinesis accepts 1 to 256")]
    PartitionKeyLength { chars: usize },
    #[error("explicit hash key {hash_key:?} is not a decimal integer below 2^128")]
    InvalidExplicitHashKey { hash_key: String },
}

/// A record rejected before sending; `index` is its position in the caller's input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub index: usize,
    pub reason: RejectReason,
}

/// A record that was sent but not written; `index` is its position in the caller's
/// input, `error_code` the last code Kinesis (or the SDK) gave for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedRecord {
    pub index: usize,
    pub error_code: String,
    pub message: String,
}

/// What happened to each record of a [`PutRecordsWriter::put_all`] call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PutReport {
    pub written: usize,
    /// Ordered by `index`.
    pub failed: Vec<FailedRecord>,
    /// Ordered by `index`.
    pub rejected: Vec<Rejected>,
}

impl PutReport {
    /// Every record was written.
    pub fn is_complete(&self) -> bool {
        self.failed.is_empty() && self.rejected.is_empty()
    }
}

#[derive(Debug, Clone)]
enum StreamTarget {
    Name(String),
    Arn(String),
}

/// Writes records to one stream with `PutRecords`.
#[derive(Debug, Clone)]
pub struct PutRecordsWriter {
    client: Client,
    stream: StreamTarget,
    backoff: Backoff,
    call_reserve: Duration,
}

fn validate(record: &OutgoingRecord) -> Result<(), RejectReason> {
    let chars = record.partition_key.chars().count();
    if !(1..=MAX_PARTITION_KEY_CHARS).contains(&chars) {
        return Err(RejectReason::PartitionKeyLength { chars });
    }
    if record.size() > MAX_RECORD_BYTES {
        return Err(RejectReason::TooLarge {
            size: record.size(),
            limit: MAX_RECORD_BYTES,
        });
    }
    if let Some(hash_key) = &record.explicit_hash_key
        && !is_valid_explicit_hash_key(hash_key)
    {
        return Err(RejectReason::InvalidExplicitHashKey {
            hash_key: hash_key.clone(),
        });
    }
    Ok(())
}

/// Kinesis accepts `0|[1-9]\d{0,38}` with a value below 2^128.
fn is_valid_explicit_hash_key(hash_key: &str) -> bool {
    let digits_only = !hash_key.is_empty() && hash_key.bytes().all(|b| b.is_ascii_digit());
    let no_leading_zero = hash_key == "0" || !hash_key.starts_with('0');
    digits_only && no_leading_zero && hash_key.parse::<u128>().is_ok()
}

/// An entry error that resending will not fix: KMS key problems other than throttling.
fn is_permanent_entry_error(code: &str) -> bool {
    code.starts_with("KMS") && !is_transient_code(code)
}

/// A whole-call error that every later call to the same stream would also get.
fn is_stream_unusable(code: &str) -> bool {
    matches!(code, "ResourceNotFoundException" | "AccessDeniedException")
        || is_permanent_entry_error(code)
}

impl PutRecordsWriter {
    /// `stream` is a stream name, or a stream ARN (recognised by its `arn:` prefix).
    pub fn new(client: Client, stream: impl Into<String>, backoff: Backoff) -> Self {
        let stream = stream.into();
        let stream = if stream.starts_with("arn:") {
            StreamTarget::Arn(stream)
        } else {
            StreamTarget::Name(stream)
        };
        Self {
            client,
            stream,
            backoff,
            call_reserve: Duration::ZERO,
        }
    }

    /// Starts no call with less than `reserve` left before the deadline. A call still
    /// unanswered at the deadline is cut off with its outcome unknown (Kinesis may have
    /// written it), so a caller that reports unwritten records to a client (who resends
    /// them) keeps time for the last call to be answered: records not sent for lack of
    /// time are reported `DeadlineExceeded` (or their last error) and are certainly not
    /// written. Default zero.
    pub fn with_call_reserve(mut self, reserve: Duration) -> Self {
        self.call_reserve = reserve;
        self
    }

    /// Writes all valid records, resending failed entries until they are written or the
    /// next backoff would pass `deadline`. Never panics on service errors: everything
    /// not written is in the report.
    pub async fn put_all(&self, records: Vec<OutgoingRecord>, deadline: &Deadline) -> PutReport {
        let mut rejected = Vec::new();
        let mut outgoing = Vec::with_capacity(records.len());
        for (index, record) in records.into_iter().enumerate() {
            if let Err(reason) = validate(&record) {
                rejected.push(Rejected { index, reason });
                continue;
            }
            let size = record.size();
            let entry = PutRecordsRequestEntry::builder()
                .partition_key(record.partition_key)
                .data(Blob::new(record.data))
                .set_explicit_hash_key(record.explicit_hash_key)
                .build()
                .expect("partition key and data are set");
            outgoing.push(Outgoing { index, size, entry });
        }
        let limits = Limits {
            max_entries: MAX_RECORDS_PER_CALL,
            max_bytes: MAX_BYTES_PER_CALL,
        };
        let retry = Retry {
            backoff: &self.backoff,
            deadline,
            call_reserve: self.call_reserve,
        };
        let sent = send_all(self, outgoing, limits, retry).await;
        let report = PutReport {
            written: sent.written.len(),
            failed: sent
                .failed
                .into_iter()
                .map(|f| FailedRecord {
                    index: f.index,
                    error_code: f.code,
                    message: f.message,
                })
                .collect(),
            rejected,
        };
        if !report.is_complete() {
            tracing::debug!(
                written = report.written,
                failed = report.failed.len(),
                rejected = report.rejected.len(),
                "PutRecords incomplete"
            );
        }
        report
    }
}

impl BatchCall for PutRecordsWriter {
    type Entry = PutRecordsRequestEntry;
    const OPERATION: &'static str = "PutRecords";

    /// Results come back by position; an entry with an `ErrorCode` failed.
    async fn send(&self, entries: Vec<PutRecordsRequestEntry>, deadline: &Deadline) -> CallResult {
        let count = entries.len();
        let request = match &self.stream {
            StreamTarget::Name(name) => self.client.put_records().stream_name(name),
            StreamTarget::Arn(arn) => self.client.put_records().stream_arn(arn),
        };
        let output = deadline
            .bound(request.set_records(Some(entries)).send())
            .await
            .map_err(|err| CallFailure::from_sdk("Kinesis", Self::OPERATION, &err))?;
        let results = output.records();
        let failed = results.iter().enumerate().filter_map(|(position, result)| {
            let code = result.error_code()?;
            let failure = EntryFailure {
                code: code.to_owned(),
                message: result.error_message().unwrap_or_default().to_owned(),
                retryable: !is_permanent_entry_error(code),
                sender_fault: false,
            };
            Some((position, failure))
        });
        let missing = (results.len()..count).map(|position| {
            let message = format!("response had {} results for more entries", results.len());
            (position, EntryFailure::missing(message))
        });
        Ok(failed.chain(missing).collect())
    }

    fn unusable(&self, failure: &CallFailure) -> Option<EntryFailure> {
        is_stream_unusable(&failure.error.code).then(|| EntryFailure {
            code: failure.error.code.clone(),
            message: "not sent: an earlier call to the stream failed with this error".to_owned(),
            retryable: false,
            sender_fault: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::retry::DEADLINE_EXCEEDED;
    use crate::test_support::json_error;
    use aws_sdk_kinesis::config::retry::RetryConfig;
    use aws_sdk_kinesis::operation::put_records::{PutRecordsInput, PutRecordsOutput};
    use aws_sdk_kinesis::types::PutRecordsResultEntry;
    use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;
    use tokio::time::Instant;

    /// What one PutRecords call carried: (partition key, data) per entry.
    type Sent = Vec<(String, Vec<u8>)>;

    #[derive(Clone, Default)]
    struct Calls(Arc<Mutex<Vec<Sent>>>);

    impl Calls {
        fn record(&self, input: &PutRecordsInput) -> usize {
            let sent = input
                .records()
                .iter()
                .map(|e| {
                    (
                        e.partition_key().unwrap_or_default().to_owned(),
                        e.data().as_ref().to_vec(),
                    )
                })
                .collect();
            let mut calls = self.0.lock().unwrap();
            calls.push(sent);
            calls.len() - 1
        }
        fn all(&self) -> Vec<Sent> {
            self.0.lock().unwrap().clone()
        }
        fn sizes(&self) -> Vec<usize> {
            self.all().iter().map(Vec::len).collect()
        }
    }

    fn ok_entry() -> PutRecordsResultEntry {
        PutRecordsResultEntry::builder()
            .sequence_number("49590338271490256608559692538361571095921575989136588898")
            .shard_id("shardId-000000000000")
            .build()
    }

    fn failed_entry(code: &str) -> PutRecordsResultEntry {
        PutRecordsResultEntry::builder()
            .error_code(code)
            .error_message(format!("{code} for shard shardId-000000000000"))
            .build()
    }

    fn output(entries: Vec<PutRecordsResultEntry>) -> PutRecordsOutput {
        let failed = entries.iter().filter(|e| e.error_code().is_some()).count();
        PutRecordsOutput::builder()
            .set_records(Some(entries))
            .failed_record_count(i32::try_from(failed).unwrap())
            .build()
            .unwrap()
    }

    /// A rule that records every call and answers with `respond(call number, input)`.
    fn answering(
        calls: &Calls,
        respond: impl Fn(usize, &PutRecordsInput) -> PutRecordsOutput + Send + Sync + 'static,
    ) -> Rule {
        let calls = calls.clone();
        mock!(Client::put_records).then_compute_output(move |input| {
            let call = calls.record(input);
            respond(call, input)
        })
    }

    fn all_ok(calls: &Calls) -> Rule {
        answering(calls, |_, input| {
            output(input.records().iter().map(|_| ok_entry()).collect())
        })
    }

    fn client(rules: &[&Rule]) -> Client {
        mock_client!(aws_sdk_kinesis, RuleMode::MatchAny, rules, |c| c
            .retry_config(RetryConfig::disabled()))
    }

    fn writer(client: Client) -> PutRecordsWriter {
        PutRecordsWriter::new(
            client,
            "ingest",
            Backoff::new(Duration::from_millis(100), Duration::from_secs(1), 2.0),
        )
    }

    fn records(n: usize) -> Vec<OutgoingRecord> {
        (0..n)
            .map(|i| OutgoingRecord::new(format!("pk-{i}"), format!("event {i}")))
            .collect()
    }

    fn a_minute() -> Deadline {
        Deadline::after(Duration::from_secs(60))
    }

    #[tokio::test(start_paused = true)]
    async fn splits_501_records_into_calls_of_500_and_1() {
        let calls = Calls::default();
        let report = writer(client(&[&all_ok(&calls)]))
            .put_all(records(501), &a_minute())
            .await;
        assert_eq!(calls.sizes(), vec![500, 1]);
        assert_eq!(report.written, 501);
        assert!(report.is_complete());
        // Input order is kept across calls.
        assert_eq!(calls.all()[1][0].0, "pk-500");
    }

    #[tokio::test(start_paused = true)]
    async fn splits_by_request_size_below_5_mib() {
        let calls = Calls::default();
        let big: Vec<OutgoingRecord> = (0..11)
            .map(|i| OutgoingRecord::new(format!("k{i:02}"), vec![b'x'; 1_000_000]))
            .collect();
        let report = writer(client(&[&all_ok(&calls)]))
            .put_all(big, &a_minute())
            .await;
        assert_eq!(calls.sizes(), vec![5, 5, 1]);
        for call in calls.all() {
            let bytes: usize = call.iter().map(|(k, d)| k.len() + d.len()).sum();
            assert!(bytes <= MAX_BYTES_PER_CALL, "{bytes}");
        }
        assert_eq!(report.written, 11);
    }

    #[tokio::test(start_paused = true)]
    async fn rejects_record_of_1_mib_plus_1_without_sending_it() {
        let calls = Calls::default();
        let key = "pk";
        let at_limit = OutgoingRecord::new(key, vec![b'a'; MAX_RECORD_BYTES - key.len()]);
        let over = OutgoingRecord::new(key, vec![b'b'; MAX_RECORD_BYTES + 1 - key.len()]);
        let small = OutgoingRecord::new(key, b"c".to_vec());
        let report = writer(client(&[&all_ok(&calls)]))
            .put_all(vec![at_limit, over, small], &a_minute())
            .await;
        assert_eq!(
            report.rejected,
            vec![Rejected {
                index: 1,
                reason: RejectReason::TooLarge {
                    size: MAX_RECORD_BYTES + 1,
                    limit: MAX_RECORD_BYTES
                }
            }]
        );
        let sent: Vec<usize> = calls.all().concat().iter().map(|(_, d)| d.len()).collect();
        assert_eq!(
            sent,
            vec![MAX_RECORD_BYTES - 2, 1],
            "the oversize record is not sent, nor cut"
        );
        assert_eq!(report.written, 2);
        assert!(!report.is_complete());
    }

    #[tokio::test(start_paused = true)]
    async fn rejects_partition_keys_outside_1_to_256_characters() {
        let calls = Calls::default();
        let input = vec![
            OutgoingRecord::new("", b"empty key".to_vec()),
            OutgoingRecord::new("k".repeat(257), b"long key".to_vec()),
            // 256 characters, 512 bytes: characters are what count.
            OutgoingRecord::new("é".repeat(256), b"ok".to_vec()),
        ];
        let report = writer(client(&[&all_ok(&calls)]))
            .put_all(input, &a_minute())
            .await;
        assert_eq!(
            report.rejected,
            vec![
                Rejected {
                    index: 0,
                    reason: RejectReason::PartitionKeyLength { chars: 0 }
                },
                Rejected {
                    index: 1,
                    reason: RejectReason::PartitionKeyLength { chars: 257 }
                },
            ]
        );
        assert_eq!(calls.sizes(), vec![1]);
        assert_eq!(report.written, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn rejects_malformed_explicit_hash_keys() {
        let calls = Calls::default();
        let max = u128::MAX.to_string();
        let input = vec![
            OutgoingRecord::new("a", b"1".to_vec()).with_explicit_hash_key("0"),
            OutgoingRecord::new("b", b"2".to_vec()).with_explicit_hash_key(max.clone()),
            OutgoingRecord::new("c", b"3".to_vec())
                .with_explicit_hash_key("340282366920938463463374607431768211456"),
            OutgoingRecord::new("d", b"4".to_vec()).with_explicit_hash_key("-1"),
            OutgoingRecord::new("e", b"5".to_vec()).with_explicit_hash_key("007"),
        ];
        let report = writer(client(&[&all_ok(&calls)]))
            .put_all(input, &a_minute())
            .await;
        let rejected: Vec<usize> = report.rejected.iter().map(|r| r.index).collect();
        assert_eq!(rejected, vec![2, 3, 4]);
        assert_eq!(report.written, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn resends_only_the_failed_entry_and_reports_complete() {
        let calls = Calls::default();
        let rule = answering(&calls, |call, input| {
            output(
                input
                    .records()
                    .iter()
                    .enumerate()
                    .map(|(i, _)| {
                        if call == 0 && i == 1 {
                            failed_entry("ProvisionedThroughputExceededException")
                        } else {
                            ok_entry()
                        }
                    })
                    .collect(),
            )
        });
        let report = writer(client(&[&rule]))
            .put_all(records(3), &a_minute())
            .await;
        let all = calls.all();
        assert_eq!(all.len(), 2);
        assert_eq!(all[1], vec![("pk-1".to_owned(), b"event 1".to_vec())]);
        assert_eq!(report.written, 3);
        assert!(report.is_complete(), "{report:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn resends_failed_entries_in_their_original_order() {
        let calls = Calls::default();
        let rule = answering(&calls, |call, input| {
            output(
                input
                    .records()
                    .iter()
                    .map(|e| {
                        let odd = e
                            .partition_key()
                            .unwrap_or_default()
                            .ends_with(['1', '3', '5']);
                        if call == 0 && odd {
                            failed_entry("InternalFailure")
                        } else {
                            ok_entry()
                        }
                    })
                    .collect(),
            )
        });
        let report = writer(client(&[&rule]))
            .put_all(records(6), &a_minute())
            .await;
        let keys: Vec<String> = calls.all()[1].iter().map(|(k, _)| k.clone()).collect();
        assert_eq!(keys, vec!["pk-1", "pk-3", "pk-5"]);
        assert!(report.is_complete());
    }

    #[tokio::test(start_paused = true)]
    async fn reports_an_entry_failing_until_the_deadline_with_its_code() {
        let calls = Calls::default();
        let rule = answering(&calls, |_, input| {
            output(
                input
                    .records()
                    .iter()
                    .map(|e| {
                        if e.partition_key() == Some("pk-1") {
                            failed_entry("ProvisionedThroughputExceededException")
                        } else {
                            ok_entry()
                        }
                    })
                    .collect(),
            )
        });
        let deadline = Deadline::after(Duration::from_secs(3));
        let report = writer(client(&[&rule]))
            .put_all(records(3), &deadline)
            .await;
        assert_eq!(report.written, 2);
        assert_eq!(report.failed.len(), 1);
        assert_eq!(report.failed[0].index, 1);
        assert_eq!(
            report.failed[0].error_code,
            "ProvisionedThroughputExceededException"
        );
        assert!(calls.all().len() > 2, "kept retrying while there was time");
        assert!(calls.all()[1..].iter().all(|call| call.len() == 1));
        assert!(
            Instant::now() < deadline.instant(),
            "never slept past the deadline"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn starts_no_call_within_the_reserve_before_the_deadline() {
        // Every entry keeps failing; with 3 s and a 1 s reserve, calls are retried while
        // at least 1 s is left (time for the call to be answered, so none is cut off
        // with its outcome unknown), and then the entries are reported with their error.
        let calls = Calls::default();
        let started_at = Arc::new(Mutex::new(Vec::new()));
        let log = started_at.clone();
        let throttled = answering(&calls, move |_, input| {
            log.lock().unwrap().push(Instant::now());
            output(
                input
                    .records()
                    .iter()
                    .map(|_| failed_entry("ProvisionedThroughputExceededException"))
                    .collect(),
            )
        });
        let deadline = Deadline::after(Duration::from_secs(3));
        let report = writer(client(&[&throttled]))
            .with_call_reserve(Duration::from_secs(1))
            .put_all(records(2), &deadline)
            .await;
        let starts = started_at.lock().unwrap().clone();
        assert!(starts.len() > 2, "retried while there was time: {starts:?}");
        for start in &starts {
            assert!(deadline.instant() - *start >= Duration::from_secs(1));
        }
        assert!(Instant::now() < deadline.instant() - Duration::from_secs(1));
        assert_eq!(report.written, 0);
        assert_eq!(report.failed.len(), 2);
        assert!(
            report
                .failed
                .iter()
                .all(|f| f.error_code == "ProvisionedThroughputExceededException")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn resends_the_whole_group_after_a_transient_call_failure() {
        let calls = Calls::default();
        let unavailable = mock!(Client::put_records)
            .sequence()
            .http_response(|| json_error(503, "ServiceUnavailable", "try again"))
            .build();
        let report = writer(client(&[&unavailable, &all_ok(&calls)]))
            .put_all(records(2), &a_minute())
            .await;
        assert_eq!(unavailable.num_calls(), 1);
        assert_eq!(calls.sizes(), vec![2]);
        assert!(report.is_complete());
    }

    #[tokio::test(start_paused = true)]
    async fn fails_everything_with_the_code_when_the_stream_does_not_exist() {
        let missing = mock!(Client::put_records).then_http_response(|| {
            json_error(
                400,
                "ResourceNotFoundException",
                "Stream ingest under account 000000000000 not found.",
            )
        });
        let report = writer(client(&[&missing]))
            .put_all(records(501), &a_minute())
            .await;
        assert_eq!(
            missing.num_calls(),
            1,
            "later groups are not tried against a missing stream"
        );
        assert_eq!(report.failed.len(), 501);
        assert!(
            report
                .failed
                .iter()
                .all(|f| f.error_code == "ResourceNotFoundException")
        );
        assert_eq!(report.failed[500].index, 500);
    }

    #[tokio::test(start_paused = true)]
    async fn does_not_resend_kms_access_errors() {
        let calls = Calls::default();
        let rule = answering(&calls, |_, input| {
            output(
                input
                    .records()
                    .iter()
                    .map(|_| failed_entry("KMSAccessDeniedException"))
                    .collect(),
            )
        });
        let report = writer(client(&[&rule]))
            .put_all(records(2), &a_minute())
            .await;
        assert_eq!(calls.sizes(), vec![2]);
        assert_eq!(report.failed.len(), 2);
        assert_eq!(report.failed[0].error_code, "KMSAccessDeniedException");
    }

    #[tokio::test(start_paused = true)]
    async fn sends_nothing_once_the_deadline_has_passed() {
        let calls = Calls::default();
        let report = writer(client(&[&all_ok(&calls)]))
            .put_all(records(2), &Deadline::after(Duration::ZERO))
            .await;
        assert!(calls.all().is_empty());
        assert_eq!(report.failed.len(), 2);
        assert!(
            report
                .failed
                .iter()
                .all(|f| f.error_code == DEADLINE_EXCEEDED)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn addresses_the_stream_by_arn_when_given_one() {
        let arn = "arn:aws:kinesis:us-east-1:000000000000:stream/ingest";
        let by_arn = mock!(Client::put_records)
            .match_requests(move |req| req.stream_arn() == Some(arn) && req.stream_name().is_none())
            .then_output(|| output(vec![ok_entry()]));
        let writer = PutRecordsWriter::new(client(&[&by_arn]), arn, Backoff::none());
        let report = writer.put_all(records(1), &a_minute()).await;
        assert_eq!(by_arn.num_calls(), 1);
        assert!(report.is_complete());
    }
}
