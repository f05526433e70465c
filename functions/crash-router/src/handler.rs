//! The routing decisions: which S3 notifications name crashes to process, where
//! each accepted crash id goes, and which SQS messages must be redelivered.
//!
//! One invocation is one batch of SQS messages from the notification queue; each
//! message carries one S3 event (usually one record). The batch is first *planned*
//! (pure: [`plan_batch`]) and then *sent* ([`Router::route_batch`]), one
//! `SendMessageBatch` stream per destination queue, concurrently.
//!
//! A message is acknowledged only when every crash id it carries has been sent to
//! every queue it routes to. Otherwise it is reported in `batchItemFailures`, SQS
//! redelivers it after the visibility timeout, and after `maxReceiveCount` receives
//! it moves to the notification queue's DLQ. A redelivered message routes the same
//! way (sampling depends only on the crash id), so a queue that did receive the id
//! the first time receives it again: at-least-once, duplicates only after a failure.

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use futures::future::join_all;
use sluice_aws::{Backoff, Deadline, FailedMessage, OutgoingMessage, SendBatchWriter};
use sluice_events::{EnvelopeError, S3Notice, sqs_message_notices};
use sluice_lambda::batch::SqsFailures;
use sluice_lambda::config::Env;
use sluice_lambda::metrics::Metrics;
use sluice_lambda::{Function, FunctionError, Invocation};

use crate::config::Config;
use crate::crash::{CrashId, CrashKey, Throttle};

/// What to do with one S3 notice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Accepted by the collector: route it.
    Route(CrashId),
    /// Deferred by the collector: stored, not processed now.
    Defer(CrashId),
    /// Not a raw-crash upload; `reason` is a stable snake_case name.
    Skip {
        reason: &'static str,
        detail: String,
    },
}

/// Skip reasons that are not key rejections (see [`crate::crash::KeyRejection::reason`]).
pub const SKIP_TEST_EVENT: &str = "test_event";
/// Not an `ObjectCreated:*` event (a delete, a restore, a replication notice …).
pub const SKIP_NOT_CREATED: &str = "not_object_created";

/// Decides what one notice means, given the raw-crash prefix.
pub fn classify(notice: &S3Notice, prefix: &str) -> Verdict {
    let event = match notice {
        S3Notice::TestEvent { bucket } => {
            return Verdict::Skip {
                reason: SKIP_TEST_EVENT,
                detail: format!(
                    "s3:TestEvent for bucket {}",
                    bucket.as_deref().unwrap_or("?")
                ),
            };
        }
        S3Notice::Object(event) => event,
    };
    // Every way a raw crash can be created counts: Put, Post, Copy, CompleteMultipartUpload.
    if !event.is_object_created() {
        return Verdict::Skip {
            reason: SKIP_NOT_CREATED,
            detail: format!("{} of {}", event.event_name, event.key),
        };
    }
    match CrashKey::parse(&event.key, prefix) {
        Ok(key) => match key.crash_id.throttle() {
            Throttle::Accept => Verdict::Route(key.crash_id),
            Throttle::Defer => Verdict::Defer(key.crash_id),
        },
        Err(rejection) => Verdict::Skip {
            reason: rejection.reason(),
            detail: rejection.to_string(),
        },
    }
}

/// Why an SQS message is reported failed. The one place failures are classified:
/// both kinds are redelivered and end in the DLQ if they keep failing, and
/// `is_permanent` tells the operator (log field) whether redelivery can help.
#[derive(Debug, thiserror::Error)]
pub enum MessageFailure {
    /// The body is not an S3 notification in any envelope we know. S3 never sends
    /// this; it is kept (via the DLQ) rather than dropped, for someone to look at.
    #[error("SQS message {message_id} is not a readable S3 notification: {source}")]
    Unreadable {
        message_id: String,
        #[source]
        source: EnvelopeError,
    },
    /// A crash id could not be sent to one of its queues.
    #[error("crash id {crash_id} not sent to queue {queue}: {code}: {message}")]
    NotSent {
        message_id: String,
        crash_id: String,
        queue: String,
        code: String,
        message: String,
        sender_fault: bool,
    },
}

impl MessageFailure {
    pub fn message_id(&self) -> &str {
        match self {
            MessageFailure::Unreadable { message_id, .. }
            | MessageFailure::NotSent { message_id, .. } => message_id,
        }
    }

    /// True when redelivering the same message cannot succeed without a change
    /// (configuration, permissions, the message itself).
    pub fn is_permanent(&self) -> bool {
        match self {
            MessageFailure::Unreadable { .. } => true,
            MessageFailure::NotSent {
                sender_fault, code, ..
            } => *sender_fault || is_queue_fault(code),
        }
    }
}

fn is_queue_fault(code: &str) -> bool {
    matches!(
        code,
        "QueueDoesNotExist"
            | "AWS.SimpleQueueService.NonExistentQueue"
            | "AccessDenied"
            | "AccessDeniedException"
            | "KmsAccessDenied"
            | "KMS.AccessDeniedException"
    )
}

/// One crash id bound for one queue, and the SQS message it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dispatch {
    pub message_id: String,
    pub crash_id: CrashId,
}

/// The pure result of reading a batch.
#[derive(Debug, Default)]
pub struct BatchPlan {
    /// Per route (same order as [`crate::routes::Routes::all`]).
    pub dispatches: Vec<Vec<Dispatch>>,
    pub failures: Vec<MessageFailure>,
    pub accepted: u64,
    pub deferred: u64,
    /// `(reason, count)` in first-seen order.
    pub skipped: Vec<(&'static str, u64)>,
}

impl BatchPlan {
    fn skip(&mut self, reason: &'static str) {
        match self.skipped.iter_mut().find(|(r, _)| *r == reason) {
            Some((_, n)) => *n += 1,
            None => self.skipped.push((reason, 1)),
        }
    }
}

/// Reads every message of the batch and decides where each crash id goes.
/// Logs one line per skipped or deferred notice, naming the reason.
pub fn plan_batch(event: &SqsEvent, config: &Config) -> BatchPlan {
    let mut plan = BatchPlan {
        dispatches: vec![Vec::new(); config.routes.all().len()],
        ..BatchPlan::default()
    };
    for (message_id, notices) in sqs_message_notices(event) {
        let notices = match notices {
            Ok(notices) => notices,
            Err(source) => {
                plan.failures
                    .push(MessageFailure::Unreadable { message_id, source });
                continue;
            }
        };
        for notice in &notices {
            let key = notice.as_object().map(|e| e.key.as_str()).unwrap_or("");
            match classify(notice, &config.raw_crash_prefix) {
                Verdict::Route(crash_id) => {
                    plan.accepted += 1;
                    for index in config.routes.destinations(&crash_id) {
                        plan.dispatches[index].push(Dispatch {
                            message_id: message_id.clone(),
                            crash_id: crash_id.clone(),
                        });
                    }
                    tracing::debug!(message_id, key, crash_id = %crash_id, "accepted");
                }
                Verdict::Defer(crash_id) => {
                    plan.deferred += 1;
                    tracing::info!(message_id, key, crash_id = %crash_id, reason = "deferred", "skipped: deferred by the collector");
                }
                Verdict::Skip { reason, detail } => {
                    plan.skip(reason);
                    tracing::info!(message_id, key, reason, detail, "skipped");
                }
            }
        }
    }
    plan
}

/// The Lambda function: a partial batch response, never an invocation error (a failed
/// invocation would redeliver the whole batch, including what was sent).
impl Function for Router {
    type Event = SqsEvent;
    type Response = SqsBatchResponse;
    type InitError = sluice_lambda::config::ConfigError;

    fn answer_margin(&self) -> std::time::Duration {
        self.config.deadline_margin
    }

    /// Reads and checks the configuration and builds the SQS writer.
    async fn cold_start() -> Result<Self, Self::InitError> {
        let config = Config::from_env(&Env::from_process())?;
        let sdk = sluice_aws::clients::load_sdk_config().await;
        let writer = SendBatchWriter::new(sluice_aws::clients::sqs(&sdk), Backoff::default());
        Ok(Router::new(config, writer))
    }

    async fn handle(
        &self,
        event: SqsEvent,
        invocation: &mut Invocation,
    ) -> Result<SqsBatchResponse, FunctionError> {
        let failures = self
            .route_batch(&event, &invocation.deadline, &mut invocation.metrics)
            .await;
        Ok(failures.response())
    }
}

/// Routes batches: the configuration and the SQS writer.
#[derive(Debug, Clone)]
pub struct Router {
    config: Config,
    writer: SendBatchWriter,
}

impl Router {
    pub fn new(config: Config, writer: SendBatchWriter) -> Self {
        Router { config, writer }
    }

    /// Plans and sends one batch; returns the messages to redeliver and counts into
    /// `metrics`: `Accepted`, `Deferred`, `Skipped.<reason>`, `Routed.<queue>`,
    /// `SendFailed.<queue>`, `Unreadable`, `FailedMessages`.
    pub async fn route_batch(
        &self,
        event: &SqsEvent,
        deadline: &Deadline,
        metrics: &mut Metrics,
    ) -> SqsFailures {
        let mut plan = plan_batch(event, &self.config);
        metrics.count("Accepted", plan.accepted);
        metrics.count("Deferred", plan.deferred);
        for (reason, n) in &plan.skipped {
            metrics.count(&format!("Skipped.{reason}"), *n);
        }
        let unreadable = plan.failures.len() as u64;
        if unreadable > 0 {
            metrics.count("Unreadable", unreadable);
        }

        let routes = self.config.routes.all();
        let sends = routes
            .iter()
            .zip(&plan.dispatches)
            .filter(|(_, dispatches)| !dispatches.is_empty())
            .map(|(route, dispatches)| async move {
                let messages = dispatches
                    .iter()
                    .enumerate()
                    .map(|(i, d)| OutgoingMessage::new(i.to_string(), d.crash_id.as_str()))
                    .collect();
                let report = self
                    .writer
                    .send_all(&route.queue_url, messages, deadline)
                    .await;
                (route, dispatches, report)
            });
        for (route, dispatches, report) in join_all(sends).await {
            metrics.count(
                &format!("Routed.{}", route.queue_name),
                report.sent.len() as u64,
            );
            if !report.failed.is_empty() {
                metrics.count(
                    &format!("SendFailed.{}", route.queue_name),
                    report.failed.len() as u64,
                );
            }
            for failed in report.failed {
                plan.failures
                    .push(not_sent(&route.queue_name, dispatches, failed));
            }
        }

        let mut failures = SqsFailures::new();
        for failure in &plan.failures {
            tracing::error!(
                message_id = failure.message_id(),
                permanent = failure.is_permanent(),
                error = %failure,
                "message not routed; reporting it failed so SQS redelivers it (then the DLQ)"
            );
            failures.fail(failure.message_id());
        }
        if !failures.is_clean() {
            metrics.count("FailedMessages", failures.failed_ids().len() as u64);
        }
        failures
    }
}

fn not_sent(queue: &str, dispatches: &[Dispatch], failed: FailedMessage) -> MessageFailure {
    // Ids are positions in `dispatches`, set when the messages were built.
    let dispatch = failed
        .id
        .parse::<usize>()
        .ok()
        .and_then(|i| dispatches.get(i))
        .expect("the writer reports the ids it was given");
    MessageFailure::NotSent {
        message_id: dispatch.message_id.clone(),
        crash_id: dispatch.crash_id.to_string(),
        queue: queue.to_owned(),
        code: failed.code,
        message: failed.message,
        sender_fault: failed.sender_fault,
    }
}
