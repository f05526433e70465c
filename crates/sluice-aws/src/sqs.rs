//! SQS `SendMessageBatch` within the service limits, resending only what failed.
//!
//! Limits (per call): at most [`MAX_ENTRIES_PER_CALL`] entries and
//! [`MAX_BYTES_PER_CALL`] bytes of payload (body plus message attribute names, types
//! and values, as SQS counts them). A single message over that is failed up front with
//! [`MESSAGE_TOO_LONG`] and never sent. (SQS now accepts up to 1 MiB per message on
//! AWS; 256 KiB is kept as the limit LocalStack and older regions enforce.)
//!
//! Batch entry ids may only be `[A-Za-z0-9_-]{1,80}`, so the caller's ids are never
//! sent: each entry's id is its position in the caller's input, and reports map back
//! to the caller's id. Caller ids should be unique within a call, or the report cannot
//! tell duplicates apart; sending works either way.
//!
//! Retries: a failed entry with `SenderFault = true` is a bad message and is reported
//! at once; other failed entries are resent with backoff. A whole-call transient error
//! resends the whole group — SQS sends are not idempotent, so a call that timed out
//! after SQS accepted it can deliver twice (consumers are idempotent: at-least-once). A
//! whole-call permanent error fails all entries of the group with its code, and when
//! the queue itself is unusable (does not exist, access denied) the later groups too,
//! without calling again.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{MessageAttributeValue, SendMessageBatchRequestEntry};

use crate::batch_send::{
    BatchCall, CallFailure, CallResult, EntryFailure, Failed, Limits, Outgoing, Retry, send_all,
};
use crate::retry::{Backoff, Deadline};

pub const MAX_ENTRIES_PER_CALL: usize = 10;
pub const MAX_BYTES_PER_CALL: usize = 256 * 1024;

/// Error code reported for a message larger than [`MAX_BYTES_PER_CALL`] on its own.
pub const MESSAGE_TOO_LONG: &str = "MessageTooLong";

/// Error codes after which no call to the same queue can succeed.
const QUEUE_UNUSABLE_CODES: &[&str] = &[
    "QueueDoesNotExist",
    "AWS.SimpleQueueService.NonExistentQueue",
    "AccessDenied",
    "AccessDeniedException",
];

/// A message to send.
#[derive(Debug, Clone, PartialEq)]
pub struct OutgoingMessage {
    /// The caller's correlation id, returned in the report; any string.
    pub id: String,
    pub body: String,
    pub attributes: HashMap<String, MessageAttributeValue>,
    pub delay_seconds: Option<i32>,
    /// FIFO queues only.
    pub message_group_id: Option<String>,
    /// FIFO queues without content-based deduplication only.
    pub deduplication_id: Option<String>,
}

impl OutgoingMessage {
    pub fn new(id: impl Into<String>, body: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            body: body.into(),
            attributes: HashMap::new(),
            delay_seconds: None,
            message_group_id: None,
            deduplication_id: None,
        }
    }

    /// Adds a `String` message attribute.
    pub fn with_string_attribute(
        mut self,
        name: impl Into<String>,
        value: impl Into<String>,
    ) -> Self {
        let value = MessageAttributeValue::builder()
            .data_type("String")
            .string_value(value)
            .build()
            .expect("data type is set");
        self.attributes.insert(name.into(), value);
        self
    }

    pub fn with_delay_seconds(mut self, seconds: i32) -> Self {
        self.delay_seconds = Some(seconds);
        self
    }

    /// Bytes this message counts against the payload limit: body, plus each
    /// attribute's name, data type and value.
    pub fn size(&self) -> usize {
        let attributes: usize = self
            .attributes
            .iter()
            .map(|(name, value)| {
                name.len()
                    + value.data_type().len()
                    + value.string_value().map_or(0, str::len)
                    + value.binary_value().map_or(0, |b| b.as_ref().len())
            })
            .sum();
        self.body.len() + attributes
    }
}

/// A message not sent; `id` is the caller's id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedMessage {
    pub id: String,
    pub code: String,
    pub message: String,
    /// The message (or request) itself was at fault; resending it would fail again.
    pub sender_fault: bool,
}

/// What happened to each message of a [`SendBatchWriter::send_all`] call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SendReport {
    /// Caller ids, in input order.
    pub sent: Vec<String>,
    /// In input order.
    pub failed: Vec<FailedMessage>,
}

impl SendReport {
    pub fn is_complete(&self) -> bool {
        self.failed.is_empty()
    }
}

/// Sends messages with `SendMessageBatch`.
#[derive(Debug, Clone)]
pub struct SendBatchWriter {
    client: Client,
    backoff: Backoff,
}

impl SendBatchWriter {
    pub fn new(client: Client, backoff: Backoff) -> Self {
        Self { client, backoff }
    }

    /// Sends all messages to `queue_url`, resending failed entries until they are sent
    /// or the next backoff would pass `deadline`. Everything not sent is in the report.
    pub async fn send_all(
        &self,
        queue_url: &str,
        messages: Vec<OutgoingMessage>,
        deadline: &Deadline,
    ) -> SendReport {
        let mut ids = Vec::with_capacity(messages.len());
        let mut too_long = Vec::new();
        let mut outgoing = Vec::with_capacity(messages.len());
        for (index, message) in messages.into_iter().enumerate() {
            let size = message.size();
            ids.push(message.id);
            if size > MAX_BYTES_PER_CALL {
                too_long.push(Failed {
                    index,
                    code: MESSAGE_TOO_LONG.to_owned(),
                    message: format!(
                        "message is {size} bytes, over the {MAX_BYTES_PER_CALL}-byte limit; not sent"
                    ),
                    sender_fault: true,
                });
                continue;
            }
            let entry = SendMessageBatchRequestEntry::builder()
                .id(index.to_string())
                .message_body(message.body)
                .set_delay_seconds(message.delay_seconds)
                .set_message_attributes(
                    (!message.attributes.is_empty()).then_some(message.attributes),
                )
                .set_message_group_id(message.message_group_id)
                .set_message_deduplication_id(message.deduplication_id)
                .build()
                .expect("id and body are set");
            outgoing.push(Outgoing { index, size, entry });
        }

        let call = SendBatchCall {
            client: &self.client,
            queue_url,
        };
        let limits = Limits {
            max_entries: MAX_ENTRIES_PER_CALL,
            max_bytes: MAX_BYTES_PER_CALL,
        };
        let retry = Retry {
            backoff: &self.backoff,
            deadline,
            call_reserve: Duration::ZERO,
        };
        let mut sent = send_all(&call, outgoing, limits, retry).await;
        sent.failed.extend(too_long);
        sent.failed.sort_by_key(|f| f.index);
        let report = SendReport {
            sent: sent.written.iter().map(|&i| ids[i].clone()).collect(),
            failed: sent
                .failed
                .into_iter()
                .map(|f| FailedMessage {
                    id: ids[f.index].clone(),
                    code: f.code,
                    message: f.message,
                    sender_fault: f.sender_fault,
                })
                .collect(),
        };
        if !report.is_complete() {
            tracing::debug!(
                queue_url,
                sent = report.sent.len(),
                failed = report.failed.len(),
                "SendMessageBatch incomplete"
            );
        }
        report
    }
}

/// One `SendMessageBatch` to one queue.
struct SendBatchCall<'a> {
    client: &'a Client,
    queue_url: &'a str,
}

impl BatchCall for SendBatchCall<'_> {
    type Entry = SendMessageBatchRequestEntry;
    const OPERATION: &'static str = "SendMessageBatch";

    /// Results come back by entry id, as successful or failed; a failed entry with
    /// `SenderFault` is a bad message and is not sent again.
    async fn send(
        &self,
        entries: Vec<SendMessageBatchRequestEntry>,
        deadline: &Deadline,
    ) -> CallResult {
        let ids: Vec<String> = entries.iter().map(|e| e.id().to_owned()).collect();
        let call = self
            .client
            .send_message_batch()
            .queue_url(self.queue_url)
            .set_entries(Some(entries))
            .send();
        let output = deadline
            .bound(call)
            .await
            .map_err(|err| CallFailure::from_sdk("SQS", Self::OPERATION, &err))?;
        let written: HashSet<&str> = output.successful().iter().map(|s| s.id()).collect();
        let failures: HashMap<&str, _> = output.failed().iter().map(|f| (f.id(), f)).collect();
        let failed = ids.iter().enumerate().filter_map(|(position, id)| {
            if written.contains(id.as_str()) {
                return None;
            }
            let failure = match failures.get(id.as_str()) {
                Some(failure) => EntryFailure {
                    code: failure.code().to_owned(),
                    message: failure.message().unwrap_or_default().to_owned(),
                    retryable: !failure.sender_fault(),
                    sender_fault: failure.sender_fault(),
                },
                None => {
                    EntryFailure::missing("response named the entry neither successful nor failed")
                }
            };
            Some((position, failure))
        });
        Ok(failed.collect())
    }

    fn unusable(&self, failure: &CallFailure) -> Option<EntryFailure> {
        let unusable = QUEUE_UNUSABLE_CODES.contains(&failure.error.code.as_str());
        unusable.then(|| EntryFailure {
            code: failure.error.code.clone(),
            message: failure.error.message.clone(),
            retryable: false,
            sender_fault: true,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{json_error, sqs_query_compatible_error};
    use aws_sdk_sqs::config::retry::RetryConfig;
    use aws_sdk_sqs::operation::send_message_batch::{
        SendMessageBatchInput, SendMessageBatchOutput,
    };
    use aws_sdk_sqs::types::{BatchResultErrorEntry, SendMessageBatchResultEntry};
    use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;
    use tokio::time::Instant;

    const QUEUE: &str = "http://localhost:4566/000000000000/routed";

    /// What one SendMessageBatch call carried: (entry id, body) per entry.
    type Sent = Vec<(String, String)>;

    #[derive(Clone, Default)]
    struct Calls(Arc<Mutex<Vec<Sent>>>);

    impl Calls {
        fn record(&self, input: &SendMessageBatchInput) -> usize {
            let entries = input
                .entries()
                .iter()
                .map(|e| (e.id().to_owned(), e.message_body().to_owned()))
                .collect();
            let mut calls = self.0.lock().unwrap();
            calls.push(entries);
            calls.len() - 1
        }
        fn all(&self) -> Vec<Sent> {
            self.0.lock().unwrap().clone()
        }
        fn sizes(&self) -> Vec<usize> {
            self.all().iter().map(Vec::len).collect()
        }
    }

    enum Answer {
        Ok,
        Fail {
            code: &'static str,
            sender_fault: bool,
        },
    }

    /// Records every call; `answer(call number, body)` decides each entry's fate.
    fn answering(
        calls: &Calls,
        answer: impl Fn(usize, &str) -> Answer + Send + Sync + 'static,
    ) -> Rule {
        let calls = calls.clone();
        mock!(Client::send_message_batch).then_compute_output(move |input| {
            let call = calls.record(input);
            let mut output = SendMessageBatchOutput::builder()
                .set_successful(Some(Vec::new()))
                .set_failed(Some(Vec::new()));
            for entry in input.entries() {
                output = match answer(call, entry.message_body()) {
                    Answer::Ok => output.successful(
                        SendMessageBatchResultEntry::builder()
                            .id(entry.id())
                            .message_id(format!("mid-{call}-{}", entry.id()))
                            .md5_of_message_body("d41d8cd98f00b204e9800998ecf8427e")
                            .build()
                            .unwrap(),
                    ),
                    Answer::Fail { code, sender_fault } => output.failed(
                        BatchResultErrorEntry::builder()
                            .id(entry.id())
                            .code(code)
                            .message(format!("{code} for this entry"))
                            .sender_fault(sender_fault)
                            .build()
                            .unwrap(),
                    ),
                };
            }
            output.build().unwrap()
        })
    }

    fn all_ok(calls: &Calls) -> Rule {
        answering(calls, |_, _| Answer::Ok)
    }

    fn writer(rules: &[&Rule]) -> SendBatchWriter {
        let client = mock_client!(aws_sdk_sqs, RuleMode::MatchAny, rules, |c| c
            .retry_config(RetryConfig::disabled()));
        SendBatchWriter::new(
            client,
            Backoff::new(Duration::from_millis(100), Duration::from_secs(1), 2.0),
        )
    }

    fn messages(n: usize) -> Vec<OutgoingMessage> {
        (0..n)
            .map(|i| OutgoingMessage::new(format!("msg-{i}"), format!("body {i}")))
            .collect()
    }

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("msg-{i}")).collect()
    }

    fn a_minute() -> Deadline {
        Deadline::after(Duration::from_secs(60))
    }

    #[tokio::test(start_paused = true)]
    async fn sends_23_messages_in_calls_of_10_10_and_3() {
        let calls = Calls::default();
        let report = writer(&[&all_ok(&calls)])
            .send_all(QUEUE, messages(23), &a_minute())
            .await;
        assert_eq!(calls.sizes(), vec![10, 10, 3]);
        assert_eq!(report.sent, ids(23));
        assert!(report.is_complete());
    }

    #[tokio::test(start_paused = true)]
    async fn splits_calls_by_256_kib_total_payload() {
        let calls = Calls::default();
        let big: Vec<OutgoingMessage> = (0..5)
            .map(|i| OutgoingMessage::new(format!("m{i}"), "x".repeat(100 * 1024)))
            .collect();
        let report = writer(&[&all_ok(&calls)])
            .send_all(QUEUE, big, &a_minute())
            .await;
        assert_eq!(calls.sizes(), vec![2, 2, 1]);
        assert_eq!(report.sent.len(), 5);
    }

    #[tokio::test(start_paused = true)]
    async fn counts_attributes_toward_the_payload_limit() {
        let message = OutgoingMessage::new("a", "x".repeat(MAX_BYTES_PER_CALL - 10))
            .with_string_attribute("source", "s3-router");
        assert_eq!(
            message.size(),
            MAX_BYTES_PER_CALL - 10 + "source".len() + "String".len() + "s3-router".len()
        );
        let calls = Calls::default();
        let report = writer(&[&all_ok(&calls)])
            .send_all(QUEUE, vec![message], &a_minute())
            .await;
        assert!(calls.all().is_empty(), "an oversize message is not sent");
        assert_eq!(report.failed[0].code, MESSAGE_TOO_LONG);
        assert!(report.failed[0].sender_fault);
    }

    #[tokio::test(start_paused = true)]
    async fn resends_only_the_failed_entry() {
        let calls = Calls::default();
        let rule = answering(&calls, |call, body| {
            if call == 0 && body == "body 4" {
                Answer::Fail {
                    code: "InternalError",
                    sender_fault: false,
                }
            } else {
                Answer::Ok
            }
        });
        let report = writer(&[&rule])
            .send_all(QUEUE, messages(6), &a_minute())
            .await;
        let all = calls.all();
        assert_eq!(all.len(), 2);
        assert_eq!(all[1].len(), 1);
        assert_eq!(all[1][0].1, "body 4");
        assert_eq!(report.sent, ids(6));
        assert!(report.is_complete());
    }

    #[tokio::test(start_paused = true)]
    async fn does_not_resend_a_sender_fault() {
        let calls = Calls::default();
        let rule = answering(&calls, |_, body| {
            if body == "body 1" {
                Answer::Fail {
                    code: "InvalidParameterValue",
                    sender_fault: true,
                }
            } else {
                Answer::Ok
            }
        });
        let report = writer(&[&rule])
            .send_all(QUEUE, messages(3), &a_minute())
            .await;
        assert_eq!(calls.sizes(), vec![3]);
        assert_eq!(report.sent, vec!["msg-0", "msg-2"]);
        assert_eq!(
            report.failed,
            vec![FailedMessage {
                id: "msg-1".to_owned(),
                code: "InvalidParameterValue".to_owned(),
                message: "InvalidParameterValue for this entry".to_owned(),
                sender_fault: true,
            }]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn fails_all_messages_with_the_code_when_the_queue_does_not_exist() {
        let missing = mock!(Client::send_message_batch).then_http_response(|| {
            sqs_query_compatible_error(
                400,
                "com.amazonaws.sqs#QueueDoesNotExist",
                "AWS.SimpleQueueService.NonExistentQueue",
                "The specified queue does not exist.",
            )
        });
        let report = writer(&[&missing])
            .send_all(QUEUE, messages(23), &a_minute())
            .await;
        assert_eq!(
            missing.num_calls(),
            1,
            "later groups are not tried against a missing queue"
        );
        assert!(report.sent.is_empty());
        assert_eq!(report.failed.len(), 23);
        assert!(
            report
                .failed
                .iter()
                .all(|f| f.code == "AWS.SimpleQueueService.NonExistentQueue" && f.sender_fault),
            "{:?}",
            report.failed[0]
        );
        assert_eq!(
            report
                .failed
                .iter()
                .map(|f| f.id.clone())
                .collect::<Vec<_>>(),
            ids(23)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn resends_the_whole_group_after_a_throttled_call() {
        let calls = Calls::default();
        let throttled = mock!(Client::send_message_batch)
            .sequence()
            .http_response(|| {
                json_error(400, "com.amazonaws.sqs#RequestThrottled", "Rate exceeded")
            })
            .build();
        let report = writer(&[&throttled, &all_ok(&calls)])
            .send_all(QUEUE, messages(4), &a_minute())
            .await;
        assert_eq!(throttled.num_calls(), 1);
        assert_eq!(calls.sizes(), vec![4]);
        assert!(report.is_complete());
    }

    #[tokio::test(start_paused = true)]
    async fn maps_any_caller_id_to_a_valid_entry_id() {
        let calls = Calls::default();
        let odd_ids = [
            "s3://bucket/key with spaces.json",
            "ü-ñ",
            "",
            &"x".repeat(200),
        ];
        let input: Vec<OutgoingMessage> = odd_ids
            .iter()
            .map(|id| OutgoingMessage::new(*id, "b"))
            .collect();
        let report = writer(&[&all_ok(&calls)])
            .send_all(QUEUE, input, &a_minute())
            .await;
        for (entry_id, _) in calls.all().concat() {
            assert!(
                (1..=80).contains(&entry_id.len())
                    && entry_id
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
                "{entry_id:?}"
            );
        }
        assert_eq!(report.sent, odd_ids);
    }

    #[tokio::test(start_paused = true)]
    async fn reports_an_entry_failing_until_the_deadline_with_its_code() {
        let calls = Calls::default();
        let rule = answering(&calls, |_, body| {
            if body == "body 0" {
                Answer::Fail {
                    code: "InternalError",
                    sender_fault: false,
                }
            } else {
                Answer::Ok
            }
        });
        let deadline = Deadline::after(Duration::from_secs(2));
        let report = writer(&[&rule])
            .send_all(QUEUE, messages(2), &deadline)
            .await;
        assert_eq!(report.sent, vec!["msg-1"]);
        assert_eq!(report.failed.len(), 1);
        assert_eq!(report.failed[0].id, "msg-0");
        assert_eq!(report.failed[0].code, "InternalError");
        assert!(!report.failed[0].sender_fault);
        assert!(calls.all().len() > 2);
        assert!(Instant::now() < deadline.instant());
    }
}
