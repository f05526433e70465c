//! What a replay puts, how fast, and where it resumes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use aws_sdk_kinesis::operation::put_records::PutRecordsOutput;
use aws_sdk_kinesis::types::PutRecordsResultEntry;
use aws_sdk_s3::operation::get_object::GetObjectOutput;
use aws_sdk_s3::operation::head_object::HeadObjectOutput;
use aws_sdk_s3::operation::list_objects_v2::ListObjectsV2Output;
use aws_sdk_s3::primitives::ByteStream;
use aws_smithy_mocks::{Rule, mock};

use super::*;
use crate::error::EXIT_USAGE;
use crate::test_support::{Rules, context, function_config};

#[test]
fn rates_read_per_second_or_per_minute() {
    assert_eq!(parse_rate("500/s"), Ok(500.0));
    assert_eq!(parse_rate("250"), Ok(250.0));
    assert_eq!(parse_rate("600/m"), Ok(10.0));
    assert!(parse_rate("0/s").is_err());
    assert!(parse_rate("fast").is_err());
    assert!(parse_rate("5/h").is_err());
}

#[test]
fn partition_keys_follow_ingest_apis_field_else_the_bytes() {
    assert_eq!(
        partition_key(br#"{"player_id":"p-7","n":1}"#, Some("player_id")),
        "p-7"
    );
    assert_eq!(
        partition_key(br#"{"player_id":42}"#, Some("player_id")),
        "42"
    );
    let hashed = partition_key(br#"{"player_id":""}"#, Some("player_id"));
    assert_eq!(hashed.len(), 32);
    assert_eq!(
        hashed,
        partition_key(br#"{"player_id":""}"#, None),
        "deterministic"
    );
    assert_ne!(
        hashed,
        partition_key(b"\xff\xfe not json", Some("player_id"))
    );
}

#[test]
fn an_objects_records_are_its_lines_without_the_archivers_newlines() {
    assert_eq!(archive_lines(b"a\nb\n"), vec![&b"a"[..], &b"b"[..]]);
    assert_eq!(
        archive_lines(b"a\n\nc\n"),
        vec![&b"a"[..], &b""[..], &b"c"[..]],
        "an empty record stays one"
    );
    assert_eq!(
        archive_lines(b"last without newline"),
        vec![&b"last without newline"[..]]
    );
    assert!(archive_lines(b"").is_empty());
}

#[test]
fn the_pace_spreads_batches_over_time_at_the_rate() {
    let mut pace = Pace::new(100.0);
    assert_eq!(pace.batch(), 100);
    let t0 = Instant::now();
    assert_eq!(pace.wait_for(100, t0), Duration::ZERO);
    assert_eq!(
        pace.wait_for(50, t0),
        Duration::from_secs(1),
        "the next batch waits for the first's second"
    );
    assert_eq!(
        pace.wait_for(50, t0 + Duration::from_secs(3)),
        Duration::ZERO,
        "no credit builds up while idle"
    );
    assert_eq!(Pace::new(5000.0).batch(), MAX_BATCH);
}

/// The archive: key -> (lines, record-count metadata, last modified).
fn archive(objects: Vec<(&'static str, Vec<String>, Option<usize>, i64)>) -> Vec<Rule> {
    let listing_objects = objects.clone();
    let list = mock!(aws_sdk_s3::Client::list_objects_v2).then_output(move || {
        let mut out = ListObjectsV2Output::builder();
        for (key, _, _, modified) in &listing_objects {
            out = out.contents(
                aws_sdk_s3::types::Object::builder()
                    .key(*key)
                    .last_modified(aws_smithy_types::DateTime::from_secs(*modified))
                    .build(),
            );
        }
        out.build()
    });
    let bodies: HashMap<&str, (Vec<u8>, Option<usize>)> = objects
        .iter()
        .map(|(key, lines, count, _)| {
            let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
            (
                *key,
                (sluice_codec::bzip2::compress(text.as_bytes(), 9), *count),
            )
        })
        .collect();
    let bodies = Arc::new(bodies);
    let for_get = bodies.clone();
    let get = mock!(aws_sdk_s3::Client::get_object).then_compute_output(move |r| {
        let (body, _) = &for_get[r.key().unwrap()];
        GetObjectOutput::builder()
            .body(ByteStream::from(body.clone()))
            .build()
    });
    let head = mock!(aws_sdk_s3::Client::head_object).then_compute_output(move |r| {
        let (_, count) = &bodies[r.key().unwrap()];
        let mut out = HeadObjectOutput::builder();
        if let Some(n) = count {
            out = out.metadata("record-count", n.to_string());
        }
        out.build()
    });
    vec![list, get, head]
}

/// A record put: (partition key, data).
type Put = (String, Vec<u8>);

/// Every record put.
#[derive(Clone, Default)]
struct Stream(Arc<Mutex<Vec<Put>>>);

impl Stream {
    fn rule(&self) -> Rule {
        let put = self.0.clone();
        mock!(aws_sdk_kinesis::Client::put_records).then_compute_output(move |r| {
            let mut out = PutRecordsOutput::builder().failed_record_count(0);
            for entry in r.records() {
                let mut put: std::sync::MutexGuard<'_, Vec<(String, Vec<u8>)>> =
                    put.lock().unwrap();
                put.push((
                    entry.partition_key().unwrap_or_default().to_owned(),
                    entry.data().as_ref().to_vec(),
                ));
                out = out.records(
                    PutRecordsResultEntry::builder()
                        .sequence_number(put.len().to_string())
                        .shard_id("shardId-000000000000")
                        .build(),
                );
            }
            out.build().unwrap()
        })
    }

    fn data(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|(_, d)| String::from_utf8(d.clone()).unwrap())
            .collect()
    }
}

fn events(prefix: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!(r#"{{"player_id":"{prefix}-{}","n":{i},"s":"a b"}}"#, i % 3))
        .collect()
}

fn temp_checkpoint(name: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!(
        "sluice-cli-test-{}-{name}.json",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&path);
    path
}

fn options(checkpoint: &Path) -> Options {
    Options {
        source: S3Uri {
            bucket: "archive".into(),
            prefix: "2026/11/".into(),
        },
        rate: 1000.0,
        max: None,
        dry_run: false,
        checkpoint: Some(checkpoint.to_owned()),
        resume: false,
    }
}

const FIRST: &str = "2026/11/player_events.2026112209.shardId-000000000000-49001.bz2";
const SECOND: &str = "2026/11/player_events.2026112210.shardId-000000000000-49500.bz2";
const SPLIT: &str = "2026/11/player_events.2026112211.shardId-000000000000-49800.bz2";
const LATER: &str = "2026/11/player_events.2026112212.shardId-000000000000-49900.bz2";

#[tokio::test]
async fn a_stopped_replay_resumes_where_it_stopped_and_every_event_is_put_once_with_its_bytes() {
    let checkpoint = temp_checkpoint("resume");
    let long_ago = 1_700_000_000;
    let s3_rules = archive(vec![
        (SECOND, events("b", 4), Some(4), long_ago),
        (FIRST, events("a", 5), Some(5), long_ago),
        // Lines do not match the record count: a record held a newline.
        (SPLIT, events("c", 3), Some(2), long_ago),
        // Written after the replay began: e.g. the replay's own output.
        (LATER, events("d", 2), Some(2), 4_000_000_000),
    ]);
    let config = function_config(&[("PARTITION_KEY_FIELD", "player_id")]);
    let stream = Stream::default();
    let put = stream.rule();
    let mut rules = Rules::none();
    rules.s3 = s3_rules.iter().collect();
    rules.lambda = vec![&config];
    rules.kinesis = vec![&put];
    let ctx = context(rules);

    let first = replay(
        &ctx,
        Options {
            max: Some(3),
            ..options(&checkpoint)
        },
    )
    .await
    .unwrap();
    assert_eq!(first.events_put, 3);
    assert_eq!(
        first.stopped_at,
        Some(Position {
            key: FIRST.into(),
            line: 3
        }),
        "in key order: the 09 hour first"
    );
    assert!(
        render(&first)
            .contains("continue with: sluice replay archive s3://archive/2026/11/ --resume")
    );
    let saved = Checkpoint::load(&checkpoint).unwrap().unwrap();
    assert_eq!((saved.events_put, saved.done), (3, false));

    // Without --resume, the unfinished replay is not started again by accident.
    let err = replay(&ctx, options(&checkpoint)).await.unwrap_err();
    assert_eq!(err.exit_code(), EXIT_USAGE);
    assert!(err.to_string().contains("line 4 after 3 events"), "{err}");

    let rest = replay(
        &ctx,
        Options {
            resume: true,
            ..options(&checkpoint)
        },
    )
    .await
    .unwrap();
    assert_eq!(rest.stopped_at, None);
    assert_eq!(
        rest.resumed_from,
        Some(Position {
            key: FIRST.into(),
            line: 3
        })
    );
    assert_eq!((rest.events_put, rest.events_put_total), (6, 9));
    let skipped: Vec<&str> = rest
        .skipped_objects
        .iter()
        .map(|s| s.key.as_str())
        .collect();
    assert_eq!(skipped, [LATER, SPLIT]);
    assert!(
        rest.skipped_objects[1]
            .reason
            .contains("3 lines for 2 records")
    );

    let mut expected = events("a", 5);
    expected.extend(events("b", 4));
    assert_eq!(
        stream.data(),
        expected,
        "every event once, in order, byte for byte"
    );
    let keys: Vec<String> = stream
        .0
        .lock()
        .unwrap()
        .iter()
        .map(|(k, _)| k.clone())
        .collect();
    assert_eq!(
        &keys[..3],
        ["a-0", "a-1", "a-2"],
        "keyed by ingest-api's PARTITION_KEY_FIELD"
    );
    assert!(Checkpoint::load(&checkpoint).unwrap().unwrap().done);

    // A finished replay can be resumed without putting anything again.
    let again = replay(
        &ctx,
        Options {
            resume: true,
            ..options(&checkpoint)
        },
    )
    .await
    .unwrap();
    assert_eq!(again.events_put, 0);
    assert_eq!(stream.data().len(), 9);
    let _ = std::fs::remove_file(&checkpoint);
}

#[tokio::test]
async fn a_dry_run_counts_and_puts_nothing_and_another_bucket_is_refused() {
    let checkpoint = temp_checkpoint("dry");
    let s3_rules = archive(vec![(FIRST, events("a", 5), Some(5), 1_700_000_000)]);
    let config = function_config(&[]);
    let mut rules = Rules::none();
    rules.s3 = s3_rules.iter().collect();
    rules.lambda = vec![&config];
    let ctx = context(rules);
    let report = replay(
        &ctx,
        Options {
            dry_run: true,
            ..options(&checkpoint)
        },
    )
    .await
    .unwrap();
    assert_eq!((report.events_put, report.objects_done), (5, 1));
    assert!(!checkpoint.exists(), "a dry run writes no checkpoint");

    let mut elsewhere = options(&checkpoint);
    elsewhere.source.bucket = "raw".into();
    let err = replay(&ctx, elsewhere).await.unwrap_err();
    assert_eq!(err.exit_code(), EXIT_USAGE);
    assert!(
        err.to_string().contains("its archive is s3://archive/"),
        "{err}"
    );
}

#[tokio::test]
async fn a_prefix_with_nothing_to_replay_is_not_found() {
    let checkpoint = temp_checkpoint("empty");
    let s3_rules = archive(vec![(
        "2026/11/notes.txt",
        vec!["not an archive object".into()],
        None,
        1_700_000_000,
    )]);
    let config = function_config(&[]);
    let mut rules = Rules::none();
    rules.s3 = s3_rules.iter().collect();
    rules.lambda = vec![&config];
    let ctx = context(rules);
    let err = replay(&ctx, options(&checkpoint)).await.unwrap_err();
    assert_eq!(err.exit_code(), crate::error::EXIT_NOT_FOUND);
    assert!(
        err.to_string().contains("not an archive object (.bz2)"),
        "{err}"
    );
}
