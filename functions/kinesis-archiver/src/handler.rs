//! One Kinesis batch → one bzip2 object per shard and UTC hour on S3, with Kinesis
//! checkpoint semantics on failure.
//!
//! Groups (contiguous runs of one hour, see [`crate::archive`]) are written in batch
//! order. The first group that cannot be written (S3 error after retries, or no time
//! left) stops the batch: its first sequence number is the checkpoint, so Lambda resumes
//! the shard there and redelivers it and everything after it; nothing at or after the
//! checkpoint has been written, so nothing is written twice.
//! A batch that cannot be read at all (malformed event) fails the invocation, so
//! `BisectBatchOnFunctionError` isolates the bad record and the on-failure destination
//! receives it after the retries.

use aws_lambda_events::event::streams::KinesisEventResponse;
use sluice_aws::retry::Deadline;
use sluice_aws::s3::put_object_bytes;
use sluice_events::kinesis_records_from_json_on;
use std::time::Duration;

use serde_json::value::RawValue;
use sluice_lambda::batch::StreamCheckpoint;
use sluice_lambda::config::{ConfigError, Env};
use sluice_lambda::metrics::Metrics;
use sluice_lambda::{FunctionError, Invocation};

use crate::archive::{HourGroup, compress, hour_groups};

/// Content type of every archive object.
pub const CONTENT_TYPE: &str = "application/x-bzip2";

/// Configuration, read once at cold start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiverConfig {
    /// `ARCHIVE_BUCKET` (required).
    pub bucket: String,
    /// `ARCHIVE_PREFIX` (default empty): put verbatim in front of `yyyy/mm/`.
    pub prefix: String,
    /// `BZIP2_LEVEL` (1–9, default 9): block size in 100 kB.
    pub level: u32,
    /// `COMPRESSION_THREADS` (default 0 = every vCPU of the function).
    pub threads: usize,
}

impl ArchiverConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(ArchiverConfig {
            bucket: env.required("ARCHIVE_BUCKET")?,
            prefix: env.string_or("ARCHIVE_PREFIX", ""),
            level: env.number_in("BZIP2_LEVEL", 9, 1..=9)?,
            threads: env.number_in("COMPRESSION_THREADS", 0, 0..=256)?,
        })
    }
}

/// The function: configuration and the S3 client.
pub struct Archiver {
    config: ArchiverConfig,
    s3: aws_sdk_s3::Client,
}

impl sluice_lambda::Function for Archiver {
    /// The batch as JSON text: records are read from their spans (see [`Archiver::archive`]).
    type Event = Box<RawValue>;
    type Response = KinesisEventResponse;
    type InitError = ConfigError;
    /// Kept back to answer the event source mapping.
    fn answer_margin(&self) -> Duration {
        Duration::from_secs(1)
    }

    async fn cold_start() -> Result<Self, ConfigError> {
        let config = ArchiverConfig::from_env(&Env::from_process())?;
        let sdk = sluice_aws::clients::load_sdk_config().await;
        Ok(Archiver::new(config, sluice_aws::clients::s3(&sdk)))
    }

    async fn handle(
        &self,
        event: Box<RawValue>,
        invocation: &mut Invocation,
    ) -> Result<KinesisEventResponse, FunctionError> {
        self.archive(event.get(), &invocation.deadline, &mut invocation.metrics)
            .await
    }
}

impl Archiver {
    pub fn new(config: ArchiverConfig, s3: aws_sdk_s3::Client) -> Self {
        Archiver { config, s3 }
    }

    /// Archives one batch, given as its JSON text: records are read from their spans in the
    /// text on every vCPU, with millisecond-exact arrival times.
    pub async fn archive(
        &self,
        event: &str,
        deadline: &Deadline,
        metrics: &mut Metrics,
    ) -> Result<KinesisEventResponse, FunctionError> {
        // Decoding the batch is the path's largest part besides bzip2: on the same vCPUs.
        let threads = sluice_codec::threads(self.config.threads);
        let records = kinesis_records_from_json_on(event, threads).map_err(|e| {
            tracing::error!(error = %e, "batch is not a readable Kinesis event");
            FunctionError::permanent("InvalidEvent", e.to_string())
        })?;
        let mut checkpoint = StreamCheckpoint::new();
        let mut stopped = false;
        for group in hour_groups(&records) {
            if !stopped {
                match self.write(&group, deadline).await {
                    Ok(key) => {
                        metrics
                            .count("ObjectsWritten", 1)
                            .count("RecordsArchived", group.records.len() as u64);
                        tracing::info!(key, records = group.records.len(), "archived");
                        continue;
                    }
                    Err(reason) => {
                        tracing::warn!(
                            hour = %group.hour,
                            first_sequence_number = group.first_sequence_number(),
                            reason,
                            "group not archived; it and every later group will be redelivered"
                        );
                        stopped = true;
                    }
                }
            }
            metrics.count("RecordsRedelivered", group.records.len() as u64);
            checkpoint.fail(group.first_sequence_number());
        }
        Ok(checkpoint.kinesis_response())
    }

    /// Compresses and puts one group; the key, or why it was not written.
    async fn write(&self, group: &HourGroup<'_>, deadline: &Deadline) -> Result<String, String> {
        if deadline.is_past() {
            return Err("no time left before the invocation deadline".to_owned());
        }
        let key = group.object_key(&self.config.prefix);
        let payload = group.payload();
        let (level, threads) = (self.config.level, self.config.threads);
        let body = tokio::task::spawn_blocking(move || compress(&payload, level, threads))
            .await
            .map_err(|e| format!("compression task failed: {e}"))?;
        let metadata = group.metadata();
        let metadata: Vec<(&str, &str)> = metadata.iter().map(|(k, v)| (*k, v.as_str())).collect();
        put_object_bytes(
            &self.s3,
            &self.config.bucket,
            &key,
            body,
            CONTENT_TYPE,
            &metadata,
            deadline,
        )
        .await
        .map_err(|e| e.to_string())?;
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_s3::Client;
    use aws_sdk_s3::config::retry::RetryConfig;
    use aws_sdk_s3::operation::put_object::{PutObjectInput, PutObjectOutput};
    use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};
    use serde_json::Value;
    use serde_json::json;
    use std::collections::{BTreeMap, HashMap};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use sluice_aws::test_support::xml_error;

    const BUCKET: &str = "archive";
    const SHARD: &str = "shardId-000000000000";

    /// Every object put: key → (decompressed body, metadata).
    type Objects = Arc<Mutex<BTreeMap<String, (Vec<u8>, HashMap<String, String>)>>>;

    fn record(seq: &str, data: &[u8], arrival: f64) -> Value {
        json!({
            "kinesis": {
                "kinesisSchemaVersion": "1.0",
                "partitionKey": "player-000042",
                "sequenceNumber": seq,
                "data": aws_smithy_types::base64::encode(data),
                "approximateArrivalTimestamp": arrival
            },
            "eventSource": "aws:kinesis",
            "eventVersion": "1.0",
            "eventID": format!("{SHARD}:{seq}"),
            "eventName": "aws:kinesis:record",
            "invokeIdentityArn": "arn:aws:iam::123456789012:role/archiver",
            "awsRegion": "us-east-1",
            "eventSourceARN": "arn:aws:kinesis:us-east-1:123456789012:stream/player-events"
        })
    }

    /// 07:59:59.990 and 08:00:00.000 UTC on 2024-03-09, 3 records in hour 07, 2 in 08,
    /// 1 in 09; the 07 group holds a non-UTF-8 record and one already ending in `\n`.
    fn batch() -> Value {
        json!({"Records": [
            record("1001", b"{\"n\":1}", 1_709_971_199.99),
            record("1002", b"\xff\xfe raw \x00 bytes", 1_709_971_199.995),
            record("1003", b"{\"n\":3}", 1_709_971_200.0),
            record("1004", b"{\"n\":4}\n", 1_709_971_199.999),
            record("1005", b"{\"n\":5}", 1_709_974_800.5),
            record("1006", b"{\"n\":6}", 1_709_971_140.0),
        ]})
    }

    fn store(objects: &Objects) -> Rule {
        let objects = objects.clone();
        mock!(Client::put_object)
            .match_requests(|req| req.bucket() == Some(BUCKET))
            .then_compute_output(move |input: &PutObjectInput| {
                assert_eq!(input.content_type(), Some(CONTENT_TYPE));
                let compressed = input.body().bytes().expect("in-memory body").to_vec();
                let body = sluice_codec::bzip2::decompress(&compressed).unwrap();
                objects.lock().unwrap().insert(
                    input.key().unwrap().to_owned(),
                    (body, input.metadata().cloned().unwrap_or_default()),
                );
                PutObjectOutput::builder().build()
            })
    }

    /// Fails puts whose key contains `hour` with `code` (HTTP `status`).
    fn failing(hour: &'static str, status: u16, code: &'static str) -> Rule {
        mock!(Client::put_object)
            .match_requests(move |req| req.key().is_some_and(|k| k.contains(hour)))
            .then_http_response(move || xml_error(status, code, code))
    }

    fn archiver(rules: &[&Rule]) -> Archiver {
        let client = mock_client!(aws_sdk_s3, RuleMode::MatchAny, rules, |c| c
            .retry_config(RetryConfig::disabled()));
        let config = ArchiverConfig::from_env(&Env::from_pairs([
            ("ARCHIVE_BUCKET", BUCKET),
            ("ARCHIVE_PREFIX", "events/"),
        ]))
        .unwrap();
        Archiver::new(config, client)
    }

    async fn run(archiver: &Archiver, event: &Value, deadline: Duration) -> (Value, Metrics) {
        let mut metrics = Metrics::new("sluice", "kinesis-archiver");
        let response = archiver
            .archive(&event.to_string(), &Deadline::after(deadline), &mut metrics)
            .await
            .unwrap();
        (serde_json::to_value(response).unwrap(), metrics)
    }

    fn key(hour: &str, first: &str) -> String {
        format!("events/2024/03/player_events.{hour}.{SHARD}-{first}.bz2")
    }

    /// The batch's records from `from` on, as the mapping redelivers them after a
    /// checkpoint (or one part of a re-split batch, with `to`).
    fn records_between(event: &Value, from: u64, to: u64) -> Value {
        let records: Vec<Value> = event["Records"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| {
                let seq: u64 = r["kinesis"]["sequenceNumber"]
                    .as_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                (from..=to).contains(&seq)
            })
            .cloned()
            .collect();
        json!({ "Records": records })
    }

    /// How many objects hold each record (by its line), over everything put.
    fn copies_per_record(objects: &Objects) -> BTreeMap<Vec<u8>, usize> {
        let mut copies = BTreeMap::new();
        for (body, _) in objects.lock().unwrap().values() {
            for line in body.split_inclusive(|b| *b == b'\n') {
                *copies.entry(line.to_vec()).or_default() += 1;
            }
        }
        copies
    }

    #[tokio::test(start_paused = true)]
    async fn archives_one_object_per_contiguous_hour_run_with_exact_bytes_and_metadata() {
        let objects = Objects::default();
        let rule = store(&objects);
        let (response, metrics) = run(&archiver(&[&rule]), &batch(), Duration::from_secs(60)).await;
        assert_eq!(response, json!({"batchItemFailures": []}));
        let objects = objects.lock().unwrap();
        let keys: Vec<&String> = objects.keys().collect();
        assert_eq!(
            keys,
            [
                &key("2024030907", "1001"),
                &key("2024030907", "1004"),
                &key("2024030907", "1006"),
                &key("2024030908", "1003"),
                &key("2024030909", "1005"),
            ]
        );
        let (body, metadata) = &objects[&key("2024030907", "1001")];
        assert_eq!(body, b"{\"n\":1}\n\xff\xfe raw \x00 bytes\n");
        assert_eq!(metadata["record-count"], "2");
        assert_eq!(metadata["first-sequence-number"], "1001");
        assert_eq!(metadata["last-sequence-number"], "1002");
        assert_eq!(metadata["shard-id"], SHARD);
        assert_eq!(objects[&key("2024030907", "1004")].0, b"{\"n\":4}\n");
        assert_eq!(objects[&key("2024030908", "1003")].0, b"{\"n\":3}\n");
        assert_eq!(metrics.get("ObjectsWritten"), Some(5.0));
        assert_eq!(metrics.get("RecordsArchived"), Some(6.0));
    }

    #[tokio::test(start_paused = true)]
    async fn a_redelivered_batch_overwrites_the_same_objects() {
        let objects = Objects::default();
        let rule = store(&objects);
        let archiver = archiver(&[&rule]);
        run(&archiver, &batch(), Duration::from_secs(60)).await;
        let first = objects.lock().unwrap().clone();
        run(&archiver, &batch(), Duration::from_secs(60)).await;
        assert_eq!(rule.num_calls(), 10, "every object put twice");
        assert_eq!(*objects.lock().unwrap(), first, "same keys, same bodies");
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_hour_reports_its_first_record_and_stops_later_groups() {
        let objects = Objects::default();
        let denied = failing("2024030908", 403, "AccessDenied");
        let ok = store(&objects);
        let (response, metrics) = run(
            &archiver(&[&denied, &ok]),
            &batch(),
            Duration::from_secs(60),
        )
        .await;
        assert_eq!(
            response,
            json!({"batchItemFailures": [{"itemIdentifier": "1003"}]})
        );
        let keys: Vec<String> = objects.lock().unwrap().keys().cloned().collect();
        assert_eq!(
            keys,
            [key("2024030907", "1001")],
            "nothing at or after 1003 written"
        );
        assert_eq!(metrics.get("RecordsRedelivered"), Some(4.0));
    }

    #[tokio::test(start_paused = true)]
    async fn redelivery_from_the_reported_checkpoint_puts_no_record_in_two_objects() {
        let objects = Objects::default();
        let denied = failing("2024030908", 403, "AccessDenied");
        let ok = store(&objects);
        let (response, _) = run(
            &archiver(&[&denied, &ok]),
            &batch(),
            Duration::from_secs(60),
        )
        .await;
        let checkpoint: u64 = response["batchItemFailures"][0]["itemIdentifier"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        // The mapping resumes at the checkpoint; this time S3 takes every put.
        let ok = store(&objects);
        let (response, _) = run(
            &archiver(&[&ok]),
            &records_between(&batch(), checkpoint, u64::MAX),
            Duration::from_secs(60),
        )
        .await;
        assert_eq!(response, json!({"batchItemFailures": []}));
        let copies = copies_per_record(&objects);
        assert_eq!(copies.len(), 6, "every record archived: {copies:?}");
        assert!(copies.values().all(|n| *n == 1), "{copies:?}");
    }

    /// 10 records, 2001–2004 in hour 07 and 2005–2010 in hour 08.
    fn two_hour_batch() -> Value {
        let records: Vec<Value> = (2001..=2010)
            .map(|seq| {
                let arrival = if seq <= 2004 {
                    1_709_967_600.0
                } else {
                    1_709_971_200.0
                };
                record(
                    &seq.to_string(),
                    format!("{{\"seq\":{seq}}}").as_bytes(),
                    arrival + (seq - 2000) as f64,
                )
            })
            .collect();
        json!({ "Records": records })
    }

    #[tokio::test(start_paused = true)]
    async fn a_re_split_batch_after_a_crash_leaves_every_record_in_one_object() {
        // The whole batch was written, then the invocation crashed (or timed out) before
        // answering; the mapping retries it in parts: bisected, then bisected again, or
        // resized.
        for parts in [
            vec![(2001, 2005), (2006, 2010)],
            vec![(2001, 2002), (2003, 2005), (2006, 2010)],
            vec![(2001, 2003), (2004, 2010)],
            vec![(2001, 2007), (2008, 2010)],
        ] {
            let objects = Objects::default();
            let ok = store(&objects);
            let archiver = archiver(&[&ok]);
            run(&archiver, &two_hour_batch(), Duration::from_secs(60)).await;
            for (from, to) in &parts {
                let (response, _) = run(
                    &archiver,
                    &records_between(&two_hour_batch(), *from, *to),
                    Duration::from_secs(60),
                )
                .await;
                assert_eq!(response, json!({"batchItemFailures": []}));
            }
            let copies = copies_per_record(&objects);
            assert_eq!(copies.len(), 10, "{parts:?}: every record archived");
            assert!(
                copies.values().all(|n| *n == 1),
                "{parts:?}: a record in two objects: {copies:?}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_first_hour_reports_the_first_record_of_the_batch() {
        let objects = Objects::default();
        let unavailable = failing("2024030907", 503, "SlowDown");
        let ok = store(&objects);
        let (response, _) = run(
            &archiver(&[&unavailable, &ok]),
            &batch(),
            Duration::from_secs(5),
        )
        .await;
        assert_eq!(
            response,
            json!({"batchItemFailures": [{"itemIdentifier": "1001"}]})
        );
        assert!(unavailable.num_calls() > 1, "transient errors retried");
        assert!(
            objects.lock().unwrap().is_empty(),
            "nothing written after the failure"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn no_time_left_writes_nothing_and_reports_the_whole_batch() {
        let objects = Objects::default();
        let rule = store(&objects);
        let (response, _) = run(&archiver(&[&rule]), &batch(), Duration::ZERO).await;
        assert_eq!(
            response,
            json!({"batchItemFailures": [{"itemIdentifier": "1001"}]})
        );
        assert_eq!(rule.num_calls(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn an_empty_batch_writes_nothing() {
        let objects = Objects::default();
        let rule = store(&objects);
        let (response, _) = run(
            &archiver(&[&rule]),
            &json!({"Records": []}),
            Duration::from_secs(60),
        )
        .await;
        assert_eq!(response, json!({"batchItemFailures": []}));
        assert_eq!(rule.num_calls(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn an_unreadable_batch_fails_the_invocation() {
        let objects = Objects::default();
        let rule = store(&objects);
        let mut event = batch();
        event["Records"][2]["eventID"] = json!("no-shard-here");
        let err = archiver(&[&rule])
            .archive(
                &event.to_string(),
                &Deadline::after(Duration::from_secs(60)),
                &mut Metrics::new("sluice", "kinesis-archiver"),
            )
            .await
            .unwrap_err();
        assert_eq!(err.error_type, "Permanent.InvalidEvent");
        assert!(err.message.contains("1003"), "{}", err.message);
        assert_eq!(rule.num_calls(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn the_sample_batch_makes_one_object_per_hour() {
        let objects = Objects::default();
        let rule = store(&objects);
        let event: Value = serde_json::from_str(include_str!(
            "../../../events/kinesis-archiver/batch-across-an-hour.json"
        ))
        .unwrap();
        let (response, _) = run(&archiver(&[&rule]), &event, Duration::from_secs(60)).await;
        assert_eq!(response, json!({"batchItemFailures": []}));
        let objects = objects.lock().unwrap();
        let stamps: Vec<&str> = objects
            .keys()
            .map(|k| k.split('.').nth(1).unwrap())
            .collect();
        assert_eq!(stamps, ["2024050110", "2024050111"], "{objects:?}");
        let (last_hour, _) = &objects.values().nth(1).unwrap();
        assert!(last_hour.ends_with(b"\x1f\x8b\x08\x00 not utf-8 \xff\xfe\n"));
    }

    #[test]
    fn config_requires_the_bucket_and_checks_ranges() {
        let err =
            ArchiverConfig::from_env(&Env::from_pairs([("ARCHIVE_PREFIX", "x/")])).unwrap_err();
        assert!(err.to_string().contains("ARCHIVE_BUCKET"), "{err}");
        let err = ArchiverConfig::from_env(&Env::from_pairs([
            ("ARCHIVE_BUCKET", "b"),
            ("BZIP2_LEVEL", "10"),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("BZIP2_LEVEL"), "{err}");
        assert_eq!(
            ArchiverConfig::from_env(&Env::from_pairs([("ARCHIVE_BUCKET", "b")])).unwrap(),
            ArchiverConfig {
                bucket: "b".into(),
                prefix: String::new(),
                level: 9,
                threads: 0
            }
        );
    }
}
