//! Idempotent requests on a DynamoDB table with TTL (the pattern AWS Lambda Powertools
//! calls *idempotency*): the first request with a key records it as in progress, does
//! the work and stores its answer; a request with the same key within the window gets
//! that answer back and does nothing.
//!
//! Item (partition key `idempotency_key`, S):
//!
//! | attribute | meaning |
//! |---|---|
//! | `status` | `IN_PROGRESS` while the first request works, then `COMPLETED` |
//! | `payload_hash` | what the key was first used for: a second request with other content is refused |
//! | `expires_at` | end of the window, epoch **seconds**: the table's TTL attribute |
//! | `in_progress_until` | the first request's deadline (epoch ms): past it, it is gone and the key is free again |
//! | `response` | the stored answer (opaque bytes, the caller's encoding) |
//!
//! TTL deletes expired items only eventually (within days), so every read and the
//! conditional put treat an item past `expires_at` as absent.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;

use crate::dynamodb::{DynamoError, UpdateOutcome, put_conditional, update_conditional};
use crate::retry::{Backoff, Deadline, retry_sdk_call};

/// The table's partition key attribute.
pub const KEY_ATTRIBUTE: &str = "idempotency_key";
/// The table's TTL attribute (epoch seconds).
pub const TTL_ATTRIBUTE: &str = "expires_at";
/// Largest stored answer: an item holds 400 KB, key and attributes included.
pub const MAX_RESPONSE_BYTES: usize = 350 * 1024;

const IN_PROGRESS: &str = "IN_PROGRESS";
const COMPLETED: &str = "COMPLETED";

/// What the key's record says when a request begins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Begin {
    /// First use (or the window, or a gone request's deadline, has passed): do the work,
    /// then [`IdempotencyStore::complete`] (or [`IdempotencyStore::release`]).
    New,
    /// Done before with the same content: answer this, do nothing.
    Completed { response: Vec<u8> },
    /// A request with this key is working now (its deadline has not passed).
    InProgress,
    /// The key was used for different content within the window.
    PayloadMismatch,
}

/// Keys, their state and stored answers in one table.
#[derive(Debug, Clone)]
pub struct IdempotencyStore {
    client: Client,
    table: String,
    window: Duration,
    backoff: Backoff,
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn number(item: &HashMap<String, AttributeValue>, name: &str) -> Option<u64> {
    item.get(name)?.as_n().ok()?.parse().ok()
}

fn text<'a>(item: &'a HashMap<String, AttributeValue>, name: &str) -> Option<&'a str> {
    item.get(name)?.as_s().ok().map(String::as_str)
}

impl IdempotencyStore {
    /// Keys are kept for `window` after first use.
    pub fn new(client: Client, table: impl Into<String>, window: Duration) -> Self {
        IdempotencyStore {
            client,
            table: table.into(),
            window,
            backoff: Backoff::default(),
        }
    }

    pub fn window(&self) -> Duration {
        self.window
    }

    /// Records `key` as in progress until `in_progress_until_ms` (the request's deadline),
    /// unless a live record exists; then says what it holds.
    pub async fn begin(
        &self,
        key: &str,
        payload_hash: &str,
        now_ms: u64,
        in_progress_until_ms: u64,
        deadline: &Deadline,
    ) -> Result<Begin, DynamoError> {
        let now_s = now_ms / 1000;
        let expires_at = now_s.saturating_add(self.window.as_secs());
        // Twice at most: a record that is found gone (expired, deleted) between the
        // failed condition and the read is claimed once more.
        for _ in 0..2 {
            let builder = self
                .client
                .put_item()
                .table_name(&self.table)
                .item(KEY_ATTRIBUTE, s(key))
                .item("status", s(IN_PROGRESS))
                .item("payload_hash", s(payload_hash))
                .item(TTL_ATTRIBUTE, n(expires_at))
                .item("in_progress_until", n(in_progress_until_ms))
                .condition_expression(
                    "attribute_not_exists(#pk) OR #expires < :now_s \
                     OR (#status = :in_progress AND #until < :now_ms)",
                )
                .expression_attribute_names("#pk", KEY_ATTRIBUTE)
                .expression_attribute_names("#expires", TTL_ATTRIBUTE)
                .expression_attribute_names("#status", "status")
                .expression_attribute_names("#until", "in_progress_until")
                .expression_attribute_values(":now_s", n(now_s))
                .expression_attribute_values(":now_ms", n(now_ms))
                .expression_attribute_values(":in_progress", s(IN_PROGRESS));
            if let UpdateOutcome::Applied { .. } =
                put_conditional(builder, &[KEY_ATTRIBUTE], &self.backoff, deadline).await?
            {
                return Ok(Begin::New);
            }
            let Some(item) = self.read(key, deadline).await? else {
                continue;
            };
            if number(&item, TTL_ATTRIBUTE).is_some_and(|at| at < now_s) {
                continue;
            }
            if text(&item, "payload_hash") != Some(payload_hash) {
                return Ok(Begin::PayloadMismatch);
            }
            return Ok(match text(&item, "status") {
                Some(COMPLETED) => Begin::Completed {
                    response: item
                        .get("response")
                        .and_then(|v| v.as_b().ok())
                        .map(|b| b.as_ref().to_vec())
                        .unwrap_or_default(),
                },
                _ => Begin::InProgress,
            });
        }
        Ok(Begin::InProgress)
    }

    /// Stores the answer of the request that began `key`; later requests get it back.
    /// An answer over [`MAX_RESPONSE_BYTES`] cannot be kept: the key is released instead
    /// (a resend is then done again) and `Ok(false)` says so.
    pub async fn complete(
        &self,
        key: &str,
        response: &[u8],
        deadline: &Deadline,
    ) -> Result<bool, DynamoError> {
        if response.len() > MAX_RESPONSE_BYTES {
            self.release(key, deadline).await?;
            return Ok(false);
        }
        let builder = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(KEY_ATTRIBUTE, s(key))
            .update_expression("SET #status = :completed, #response = :response")
            .condition_expression("attribute_exists(#pk)")
            .expression_attribute_names("#pk", KEY_ATTRIBUTE)
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#response", "response")
            .expression_attribute_values(":completed", s(COMPLETED))
            .expression_attribute_values(":response", AttributeValue::B(Blob::new(response)));
        Ok(matches!(
            update_conditional(builder, &self.backoff, deadline).await?,
            UpdateOutcome::Applied { .. }
        ))
    }

    /// Forgets `key` (its request could not finish in a way worth repeating).
    pub async fn release(&self, key: &str, deadline: &Deadline) -> Result<(), DynamoError> {
        retry_sdk_call(&self.backoff, deadline, deadline, || {
            self.client
                .delete_item()
                .table_name(&self.table)
                .key(KEY_ATTRIBUTE, s(key))
                .send()
        })
        .await
        .map(|_| ())
        .map_err(|e| DynamoError::from_sdk("DeleteItem", self.table.clone(), key.to_owned(), &e))
    }

    async fn read(
        &self,
        key: &str,
        deadline: &Deadline,
    ) -> Result<Option<HashMap<String, AttributeValue>>, DynamoError> {
        retry_sdk_call(&self.backoff, deadline, deadline, || {
            self.client
                .get_item()
                .table_name(&self.table)
                .key(KEY_ATTRIBUTE, s(key))
                .consistent_read(true)
                .send()
        })
        .await
        .map(|out| out.item)
        .map_err(|e| DynamoError::from_sdk("GetItem", self.table.clone(), key.to_owned(), &e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::config::retry::RetryConfig;
    use aws_sdk_dynamodb::operation::delete_item::DeleteItemOutput;
    use aws_sdk_dynamodb::operation::get_item::GetItemOutput;
    use aws_sdk_dynamodb::operation::put_item::{PutItemError, PutItemInput, PutItemOutput};
    use aws_sdk_dynamodb::operation::update_item::UpdateItemOutput;
    use aws_sdk_dynamodb::types::error::ConditionalCheckFailedException;
    use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};
    use std::sync::{Arc, Mutex};

    const NOW_MS: u64 = 1_764_000_000_123;

    type Table = Arc<Mutex<HashMap<String, HashMap<String, AttributeValue>>>>;

    /// A one-table DynamoDB that evaluates the store's own conditions.
    fn table_rules(table: &Table) -> Vec<Rule> {
        let (t1, t2, t3, t4) = (table.clone(), table.clone(), table.clone(), table.clone());
        let put_applies = move |input: &PutItemInput| {
            let item = input.item().unwrap();
            let key = item[KEY_ATTRIBUTE].as_s().unwrap().clone();
            let values = input.expression_attribute_values().unwrap();
            let now_s: u64 = values[":now_s"].as_n().unwrap().parse().unwrap();
            let now_ms: u64 = values[":now_ms"].as_n().unwrap().parse().unwrap();
            let table = t1.lock().unwrap();
            match table.get(&key) {
                None => true,
                Some(old) => {
                    number(old, TTL_ATTRIBUTE).unwrap() < now_s
                        || (text(old, "status") == Some(IN_PROGRESS)
                            && number(old, "in_progress_until").unwrap() < now_ms)
                }
            }
        };
        let put_applies_too = put_applies.clone();
        vec![
            mock!(aws_sdk_dynamodb::Client::put_item)
                .match_requests(move |input| put_applies(input))
                .then_compute_output(move |input| {
                    let item = input.item().unwrap().clone();
                    let key = item[KEY_ATTRIBUTE].as_s().unwrap().clone();
                    t2.lock().unwrap().insert(key, item);
                    PutItemOutput::builder().build()
                }),
            mock!(aws_sdk_dynamodb::Client::put_item)
                .match_requests(move |input| !put_applies_too(input))
                .then_error(|| {
                    PutItemError::ConditionalCheckFailedException(
                        ConditionalCheckFailedException::builder().build(),
                    )
                }),
            mock!(aws_sdk_dynamodb::Client::get_item).then_compute_output(move |input| {
                assert_eq!(input.consistent_read(), Some(true));
                let key = input.key().unwrap()[KEY_ATTRIBUTE].as_s().unwrap();
                GetItemOutput::builder()
                    .set_item(t3.lock().unwrap().get(key).cloned())
                    .build()
            }),
            mock!(aws_sdk_dynamodb::Client::update_item).then_compute_output(move |input| {
                let key = input.key().unwrap()[KEY_ATTRIBUTE].as_s().unwrap();
                let values = input.expression_attribute_values().unwrap();
                let mut table = t4.lock().unwrap();
                let item = table.get_mut(key).expect("completed after begin");
                item.insert("status".into(), values[":completed"].clone());
                item.insert("response".into(), values[":response"].clone());
                UpdateItemOutput::builder().build()
            }),
            {
                let table = table.clone();
                mock!(aws_sdk_dynamodb::Client::delete_item).then_compute_output(move |input| {
                    let key = input.key().unwrap()[KEY_ATTRIBUTE].as_s().unwrap();
                    table.lock().unwrap().remove(key);
                    DeleteItemOutput::builder().build()
                })
            },
        ]
    }

    fn store(rules: &[Rule]) -> IdempotencyStore {
        let rules: Vec<&Rule> = rules.iter().collect();
        let client = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, &rules, |c| c
            .retry_config(RetryConfig::disabled()));
        IdempotencyStore::new(client, "idempotency", Duration::from_secs(3600))
    }

    fn deadline() -> Deadline {
        Deadline::after(Duration::from_secs(10))
    }

    #[tokio::test]
    async fn the_first_use_does_the_work_and_a_repeat_gets_its_answer() {
        let table = Table::default();
        let store = store(&table_rules(&table));
        let until = NOW_MS + 10_000;
        assert_eq!(
            store.begin("k1", "h1", NOW_MS, until, &deadline()).await,
            Ok(Begin::New)
        );
        assert_eq!(
            store
                .begin("k1", "h1", NOW_MS + 1, until, &deadline())
                .await,
            Ok(Begin::InProgress),
            "while the first request works"
        );
        assert_eq!(
            store.complete("k1", b"202 accepted 3", &deadline()).await,
            Ok(true)
        );
        assert_eq!(
            store
                .begin("k1", "h1", NOW_MS + 2, until, &deadline())
                .await,
            Ok(Begin::Completed {
                response: b"202 accepted 3".to_vec()
            })
        );
        assert_eq!(
            store
                .begin("k1", "other", NOW_MS + 3, until, &deadline())
                .await,
            Ok(Begin::PayloadMismatch)
        );
        let item = &table.lock().unwrap()["k1"];
        assert_eq!(
            number(item, TTL_ATTRIBUTE),
            Some(NOW_MS / 1000 + 3600),
            "TTL in epoch seconds"
        );
    }

    #[tokio::test]
    async fn a_key_is_free_again_after_its_window_or_a_gone_requests_deadline() {
        let table = Table::default();
        let store = store(&table_rules(&table));
        let until = NOW_MS + 10_000;
        store
            .begin("k1", "h1", NOW_MS, until, &deadline())
            .await
            .unwrap();
        // The first request died without completing: after its deadline the key is free.
        assert_eq!(
            store
                .begin("k1", "h1", until + 1, until + 20_000, &deadline())
                .await,
            Ok(Begin::New)
        );
        store.complete("k1", b"answer", &deadline()).await.unwrap();
        // Past the window the record counts as gone, even before TTL deletes it.
        let later = NOW_MS + 3_601_000 + 20_000;
        assert_eq!(
            store
                .begin("k1", "other", later, later + 10_000, &deadline())
                .await,
            Ok(Begin::New)
        );
    }

    #[tokio::test]
    async fn an_answer_too_large_to_keep_releases_the_key() {
        let table = Table::default();
        let store = store(&table_rules(&table));
        store
            .begin("k1", "h1", NOW_MS, NOW_MS + 10_000, &deadline())
            .await
            .unwrap();
        let huge = vec![b'x'; MAX_RESPONSE_BYTES + 1];
        assert_eq!(store.complete("k1", &huge, &deadline()).await, Ok(false));
        assert!(table.lock().unwrap().is_empty(), "released");
        assert_eq!(
            store
                .begin("k1", "h1", NOW_MS + 1, NOW_MS + 10_000, &deadline())
                .await,
            Ok(Begin::New)
        );
    }
}
