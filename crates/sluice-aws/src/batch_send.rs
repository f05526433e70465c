//! The one partial-failure retry loop behind the batch writers (Kinesis `PutRecords`,
//! SQS `SendMessageBatch`).
//!
//! Entries are split into calls under the service's count and byte limits
//! ([`split_by_limits`]); each call is sent, and only its retryable failed entries are
//! sent again, in their original order, after a full-jitter backoff, until they are
//! written or the next backoff would pass the deadline. A whole-call transient error
//! resends the whole remaining group; a whole-call permanent error fails the group, and
//! when the target itself is unusable ([`BatchCall::unusable`]) the later groups too,
//! without calling again. What never went is reported with the last error it got, or
//! [`DEADLINE_EXCEEDED`] when it was never tried.
//!
//! A service plugs in with a [`BatchCall`]: how one call is sent and how its answer
//! names failed entries. Validation, request entries and the caller-facing report stay
//! with the writer.

use std::time::Duration;

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::batching::split_by_limits;
use crate::error::AwsError;
use crate::retry::{
    Backoff, DEADLINE_EXCEEDED, Deadline, MISSING_RESULT_ENTRY, pause_before_retry,
};

/// Why one entry of a call was not written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EntryFailure {
    pub code: String,
    pub message: String,
    /// Sending the entry again could succeed.
    pub retryable: bool,
    /// The entry (or the request) itself was at fault.
    pub sender_fault: bool,
}

impl EntryFailure {
    /// An entry the answer said nothing about: sent again.
    pub fn missing(message: impl Into<String>) -> Self {
        Self {
            code: MISSING_RESULT_ENTRY.to_owned(),
            message: message.into(),
            retryable: true,
            sender_fault: false,
        }
    }
}

/// A whole call that failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CallFailure {
    pub error: AwsError,
    /// The service answered with a 4xx: the request was at fault.
    pub sender_fault: bool,
}

impl CallFailure {
    pub fn from_sdk<E>(
        service: &'static str,
        operation: &'static str,
        err: &SdkError<E, HttpResponse>,
    ) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        Self {
            error: AwsError::from_sdk(service, operation, err),
            sender_fault: err
                .raw_response()
                .is_some_and(|r| r.status().is_client_error()),
        }
    }
}

/// What one call did: the failed entries by their position in the call, or the whole
/// call's failure.
pub(crate) type CallResult = Result<Vec<(usize, EntryFailure)>, CallFailure>;

/// One service's batch call.
pub(crate) trait BatchCall {
    /// A request entry, as the SDK takes it.
    type Entry: Clone;
    /// The operation's name, for logs.
    const OPERATION: &'static str;

    /// Sends `entries` in one call, given up at `deadline`: the failed entries by their
    /// position in `entries` (an entry the answer does not name is
    /// [`EntryFailure::missing`]; every other one was written), or the whole call's
    /// failure.
    async fn send(&self, entries: Vec<Self::Entry>, deadline: &Deadline) -> CallResult;

    /// After a permanent whole-call failure: when no later call to the same target can
    /// succeed, the failure to report for every entry of the later groups (which are then
    /// not sent); `None` to go on with them.
    fn unusable(&self, failure: &CallFailure) -> Option<EntryFailure>;
}

/// An entry to send: its position in the caller's input, its size against the per-call
/// byte limit, and the request entry.
pub(crate) struct Outgoing<E> {
    pub index: usize,
    pub size: usize,
    pub entry: E,
}

/// Per-call limits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub max_entries: usize,
    pub max_bytes: usize,
}

/// How long to keep trying: resends back off with `backoff`, and no call starts with
/// less than `call_reserve` left before `deadline` (calls are cut off at `deadline`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Retry<'a> {
    pub backoff: &'a Backoff,
    pub deadline: &'a Deadline,
    pub call_reserve: Duration,
}

/// An entry not written; `index` is its position in the caller's input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failed {
    pub index: usize,
    pub code: String,
    pub message: String,
    pub sender_fault: bool,
}

impl Failed {
    fn new(index: usize, failure: EntryFailure) -> Self {
        Self {
            index,
            code: failure.code,
            message: failure.message,
            sender_fault: failure.sender_fault,
        }
    }
}

/// What happened to every entry of a [`send_all`]: input positions, in input order.
#[derive(Debug, Default)]
pub(crate) struct Sent {
    pub written: Vec<usize>,
    pub failed: Vec<Failed>,
}

struct Pending<E> {
    index: usize,
    size: usize,
    entry: E,
    last_error: Option<EntryFailure>,
}

impl<E> Pending<E> {
    /// Reported with its last error, or as never sent for lack of time.
    fn into_failure(self) -> Failed {
        let failure = self.last_error.unwrap_or_else(|| EntryFailure {
            code: DEADLINE_EXCEEDED.to_owned(),
            message: "not sent: the deadline had passed".to_owned(),
            retryable: true,
            sender_fault: false,
        });
        Failed::new(self.index, failure)
    }
}

/// Sends every entry with `call`, group by group within `limits`, resending failed
/// entries as [`Retry`] allows. Never panics on service errors: every entry not
/// written is in [`Sent::failed`].
pub(crate) async fn send_all<C: BatchCall>(
    call: &C,
    entries: Vec<Outgoing<C::Entry>>,
    limits: Limits,
    retry: Retry<'_>,
) -> Sent {
    let mut sent = Sent::default();
    let pending = entries
        .into_iter()
        .map(|o| Pending {
            index: o.index,
            size: o.size,
            entry: o.entry,
            last_error: None,
        })
        .collect();
    let mut groups =
        split_by_limits(pending, limits.max_entries, limits.max_bytes, |p| p.size).into_iter();
    while let Some(group) = groups.next() {
        if let Some(failure) = send_group(call, group, retry, &mut sent).await {
            // Same error for every later group: fail them without calling.
            for pending in groups.by_ref().flatten() {
                sent.failed
                    .push(Failed::new(pending.index, failure.clone()));
            }
        }
    }
    sent.written.sort_unstable();
    sent.failed.sort_by_key(|failed| failed.index);
    sent
}

/// Sends one group until done; returns the failure for the later groups when the
/// target itself is unusable.
async fn send_group<C: BatchCall>(
    call: &C,
    mut pending: Vec<Pending<C::Entry>>,
    retry: Retry<'_>,
    sent: &mut Sent,
) -> Option<EntryFailure> {
    let mut attempt = 0u32;
    // The last moment a call may start; calls themselves are cut off at the deadline.
    let start_by = retry.deadline.with_margin(retry.call_reserve);
    loop {
        if start_by.is_past() {
            sent.failed
                .extend(pending.into_iter().map(Pending::into_failure));
            return None;
        }
        let entries = pending.iter().map(|p| p.entry.clone()).collect();
        match call.send(entries, retry.deadline).await {
            Ok(failures) => {
                let mut by_position: Vec<Option<EntryFailure>> = vec![None; pending.len()];
                for (position, failure) in failures {
                    if let Some(slot) = by_position.get_mut(position) {
                        *slot = Some(failure);
                    }
                }
                let mut again = Vec::new();
                for (mut entry, failure) in pending.into_iter().zip(by_position) {
                    match failure {
                        None => sent.written.push(entry.index),
                        Some(failure) if failure.retryable => {
                            entry.last_error = Some(failure);
                            again.push(entry);
                        }
                        Some(failure) => sent.failed.push(Failed::new(entry.index, failure)),
                    }
                }
                pending = again;
            }
            Err(failure) => {
                if !failure.error.is_transient() {
                    tracing::warn!(
                        operation = C::OPERATION,
                        code = failure.error.code,
                        message = failure.error.message,
                        "batch call failed permanently"
                    );
                    let unusable = call.unusable(&failure);
                    sent.failed.extend(pending.into_iter().map(|p| Failed {
                        index: p.index,
                        code: failure.error.code.clone(),
                        message: failure.error.message.clone(),
                        sender_fault: failure.sender_fault,
                    }));
                    return unusable;
                }
                for entry in &mut pending {
                    entry.last_error = Some(EntryFailure {
                        code: failure.error.code.clone(),
                        message: failure.error.message.clone(),
                        retryable: true,
                        sender_fault: false,
                    });
                }
            }
        }
        if pending.is_empty() {
            return None;
        }
        if !pause_before_retry(retry.backoff, attempt, &start_by).await {
            sent.failed
                .extend(pending.into_iter().map(Pending::into_failure));
            return None;
        }
        attempt = attempt.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use std::cell::RefCell;

    /// A call that answers from a script: per call, the failures to report, or an error.
    struct Scripted {
        answers: RefCell<Vec<CallResult>>,
        calls: RefCell<Vec<Vec<u32>>>,
    }

    impl Scripted {
        fn new(answers: Vec<CallResult>) -> Self {
            Self {
                answers: RefCell::new(answers.into_iter().rev().collect()),
                calls: RefCell::default(),
            }
        }
    }

    impl BatchCall for Scripted {
        type Entry = u32;
        const OPERATION: &'static str = "Scripted";

        async fn send(&self, entries: Vec<u32>, _deadline: &Deadline) -> CallResult {
            self.calls.borrow_mut().push(entries);
            self.answers.borrow_mut().pop().unwrap_or(Ok(Vec::new()))
        }

        fn unusable(&self, failure: &CallFailure) -> Option<EntryFailure> {
            (failure.error.code == "Gone").then(|| EntryFailure {
                code: failure.error.code.clone(),
                message: "later".to_owned(),
                retryable: false,
                sender_fault: true,
            })
        }
    }

    fn entries(n: u32) -> Vec<Outgoing<u32>> {
        (0..n)
            .map(|i| Outgoing {
                index: i as usize,
                size: 1,
                entry: i,
            })
            .collect()
    }

    fn failure(code: &str, retryable: bool) -> EntryFailure {
        EntryFailure {
            code: code.to_owned(),
            message: format!("{code}!"),
            retryable,
            sender_fault: !retryable,
        }
    }

    fn call_failure(code: &str, transient: bool) -> CallFailure {
        let kind = if transient {
            ErrorKind::Transient
        } else {
            ErrorKind::Permanent
        };
        CallFailure {
            error: AwsError {
                kind,
                service: "Test",
                operation: "Scripted",
                code: code.to_owned(),
                message: format!("{code}!"),
            },
            sender_fault: !transient,
        }
    }

    const LIMITS: Limits = Limits {
        max_entries: 2,
        max_bytes: 100,
    };

    async fn run(call: &Scripted, n: u32, deadline: &Deadline) -> Sent {
        let retry = Retry {
            backoff: &Backoff::none(),
            deadline,
            call_reserve: Duration::ZERO,
        };
        send_all(call, entries(n), LIMITS, retry).await
    }

    fn a_minute() -> Deadline {
        Deadline::after(Duration::from_secs(60))
    }

    #[tokio::test(start_paused = true)]
    async fn resends_only_retryable_failures_and_missing_results() {
        let call = Scripted::new(vec![
            Ok(vec![(0, failure("Busy", true)), (1, failure("Bad", false))]),
            Ok(vec![(0, EntryFailure::missing("no answer"))]),
        ]);
        let sent = run(&call, 3, &a_minute()).await;
        assert_eq!(
            *call.calls.borrow(),
            vec![vec![0, 1], vec![0], vec![0], vec![2]]
        );
        assert_eq!(sent.written, vec![0, 2]);
        assert_eq!(
            sent.failed,
            vec![Failed {
                index: 1,
                code: "Bad".to_owned(),
                message: "Bad!".to_owned(),
                sender_fault: true,
            }]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_unusable_target_fails_later_groups_without_calling() {
        let call = Scripted::new(vec![Err(call_failure("Gone", false))]);
        let sent = run(&call, 5, &a_minute()).await;
        assert_eq!(call.calls.borrow().len(), 1);
        assert!(sent.written.is_empty());
        let failed: Vec<(usize, &str)> = sent
            .failed
            .iter()
            .map(|f| (f.index, f.message.as_str()))
            .collect();
        assert_eq!(
            failed,
            vec![
                (0, "Gone!"),
                (1, "Gone!"),
                (2, "later"),
                (3, "later"),
                (4, "later")
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_permanent_call_failure_of_a_usable_target_goes_on_with_later_groups() {
        let call = Scripted::new(vec![Err(call_failure("Invalid", false))]);
        let sent = run(&call, 3, &a_minute()).await;
        assert_eq!(call.calls.borrow().len(), 2);
        assert_eq!(sent.written, vec![2]);
        assert_eq!(sent.failed.len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn transient_call_failures_resend_the_group_and_are_reported_when_time_is_up() {
        let call = Scripted::new(vec![Err(call_failure("Throttled", true)); 1000]);
        let retry = Retry {
            backoff: &Backoff::new(Duration::from_millis(10), Duration::from_millis(10), 1.0),
            deadline: &Deadline::after(Duration::from_secs(1)),
            call_reserve: Duration::ZERO,
        };
        let sent = send_all(&call, entries(1), LIMITS, retry).await;
        assert!(call.calls.borrow().len() > 1);
        assert_eq!(sent.failed[0].code, "Throttled");
        assert!(!sent.failed[0].sender_fault);
        let never = Scripted::new(Vec::new());
        let sent = run(&never, 1, &Deadline::after(Duration::ZERO)).await;
        assert!(never.calls.borrow().is_empty());
        assert_eq!(sent.failed[0].code, DEADLINE_EXCEEDED);
    }
}
