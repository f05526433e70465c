//! Reading a failure queue: taking its messages one batch at a time (held invisible while
//! they are worked on), deleting those dealt with, and giving the others back at the end
//! so they are visible again for the next run — never before, or this run would take
//! them again.

use std::collections::{HashMap, HashSet};

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry,
    MessageAttributeValue, MessageSystemAttributeName, QueueAttributeName,
};

use crate::error::{CliError, sdk};

/// One message taken from a queue.
#[derive(Debug, Clone, PartialEq)]
pub struct Held {
    pub message_id: String,
    pub receipt: String,
    pub body: String,
    /// When it was first sent to a queue (epoch ms; a dead-lettered message keeps it).
    pub sent_at_ms: Option<i64>,
    pub receive_count: Option<u64>,
    pub attributes: HashMap<String, MessageAttributeValue>,
}

/// Messages waiting (`ApproximateNumberOfMessages`) and taken by someone
/// (`ApproximateNumberOfMessagesNotVisible`).
pub async fn depth(sqs: &Client, url: &str) -> Result<(u64, u64), CliError> {
    let answer = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .map_err(|e| queue_error(url, e))?;
    let read = |name: QueueAttributeName| {
        answer
            .attributes()
            .and_then(|a| a.get(&name))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Ok((
        read(QueueAttributeName::ApproximateNumberOfMessages),
        read(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
    ))
}

fn queue_error<E, R>(
    url: &str,
    err: aws_smithy_runtime_api::client::result::SdkError<E, R>,
) -> CliError
where
    E: aws_smithy_types::error::metadata::ProvideErrorMetadata
        + std::error::Error
        + Send
        + Sync
        + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let code = crate::error::service_code(&err).unwrap_or_default();
    if code.contains("NonExistentQueue") || code.contains("QueueDoesNotExist") {
        return CliError::NotFound(format!("queue {url} does not exist"));
    }
    sdk(format!("reading queue {url}"), err)
}

/// Up to `max` messages, left visible (a look, for `status`): `VisibilityTimeout` 0.
pub async fn peek(sqs: &Client, url: &str, max: i32) -> Result<Vec<Held>, CliError> {
    receive(sqs, url, max.clamp(1, 10), 0, 0).await
}

async fn receive(
    sqs: &Client,
    url: &str,
    max: i32,
    visibility: i32,
    wait: i32,
) -> Result<Vec<Held>, CliError> {
    let answer = sqs
        .receive_message()
        .queue_url(url)
        .max_number_of_messages(max)
        .visibility_timeout(visibility)
        .wait_time_seconds(wait)
        .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
        .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
        .message_attribute_names("All")
        .send()
        .await
        .map_err(|e| queue_error(url, e))?;
    Ok(answer
        .messages()
        .iter()
        .map(|m| {
            let system = |name: MessageSystemAttributeName| {
                m.attributes().and_then(|a| a.get(&name)).cloned()
            };
            Held {
                message_id: m.message_id().unwrap_or_default().to_owned(),
                receipt: m.receipt_handle().unwrap_or_default().to_owned(),
                body: m.body().unwrap_or_default().to_owned(),
                sent_at_ms: system(MessageSystemAttributeName::SentTimestamp)
                    .and_then(|v| v.parse().ok()),
                receive_count: system(MessageSystemAttributeName::ApproximateReceiveCount)
                    .and_then(|v| v.parse().ok()),
                attributes: m.message_attributes().cloned().unwrap_or_default(),
            }
        })
        .collect())
}

/// Takes a queue's messages batch by batch for one run.
pub struct QueueRun<'a> {
    sqs: &'a Client,
    pub url: String,
    /// Seconds a taken message stays invisible: longer than working on one batch takes.
    visibility: i32,
    seen: HashSet<String>,
    kept: Vec<String>,
    exhausted: bool,
}

impl<'a> QueueRun<'a> {
    pub fn new(sqs: &'a Client, url: impl Into<String>, visibility: i32) -> Self {
        QueueRun {
            sqs,
            url: url.into(),
            visibility: visibility.clamp(30, 43_200),
            seen: HashSet::new(),
            kept: Vec::new(),
            exhausted: false,
        }
    }

    /// The next messages not yet taken in this run (at most `max`, at most 10); empty when
    /// the queue has nothing more to give. A message seen before in this run (given back by
    /// SQS after its visibility ran out) is not handed out twice.
    pub async fn next(&mut self, max: usize) -> Result<Vec<Held>, CliError> {
        if self.exhausted || max == 0 {
            return Ok(Vec::new());
        }
        // Long polling (1 s) asks every SQS server, so an empty answer means an empty queue.
        for _ in 0..3 {
            let got = receive(self.sqs, &self.url, max.min(10) as i32, self.visibility, 1).await?;
            if got.is_empty() {
                self.exhausted = true;
                return Ok(got);
            }
            let fresh: Vec<Held> = got
                .into_iter()
                .filter(|m| self.seen.insert(m.message_id.clone()))
                .collect();
            if !fresh.is_empty() {
                return Ok(fresh);
            }
        }
        self.exhausted = true;
        Ok(Vec::new())
    }

    /// Deletes messages dealt with.
    pub async fn delete(&self, receipts: &[String]) -> Result<(), CliError> {
        for chunk in receipts.chunks(10) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(r)
                        .build()
                        .expect("id and receipt handle are set")
                })
                .collect::<Vec<_>>();
            let answer = self
                .sqs
                .delete_message_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| sdk(format!("deleting from {}", self.url), e))?;
            if let Some(failed) = answer.failed().first() {
                return Err(CliError::Aws {
                    what: format!("deleting from {}", self.url),
                    code: failed.code().to_owned(),
                    message: failed.message().unwrap_or_default().to_owned(),
                });
            }
        }
        Ok(())
    }

    /// Leaves a message in the queue: it is given back (visible again) by [`Self::finish`].
    pub fn keep(&mut self, receipt: String) {
        self.kept.push(receipt);
    }

    /// Makes every kept message visible again.
    pub async fn finish(self) -> Result<(), CliError> {
        for chunk in self.kept.chunks(10) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(r)
                        .visibility_timeout(0)
                        .build()
                        .expect("id and receipt handle are set")
                })
                .collect::<Vec<_>>();
            self.sqs
                .change_message_visibility_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| sdk(format!("giving messages back to {}", self.url), e))?;
        }
        Ok(())
    }
}
