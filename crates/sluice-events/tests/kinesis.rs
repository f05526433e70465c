//! Kinesis records from a realistic Lambda event.

use serde_json::Value;
use sluice_events::aws_lambda_events::kinesis::KinesisEvent;
use sluice_events::{
    EnvelopeError, compare_sequence_numbers, kinesis_records, kinesis_records_from_json_on,
    kinesis_records_from_value, kinesis_records_from_value_on,
};
use time::macros::datetime;

const KINESIS: &str = include_str!("fixtures/kinesis.json");

#[test]
fn records_carry_shard_id_sequence_partition_key_and_decoded_data() {
    let event: KinesisEvent = serde_json::from_str(KINESIS).unwrap();
    let records = kinesis_records(&event).unwrap();
    assert_eq!(records.len(), 3);
    assert_eq!(records[0].shard_id, "shardId-000000000000");
    assert_eq!(
        records[0].sequence_number,
        "49651505085739424382836587432514536627063744577553006594"
    );
    assert_eq!(records[0].partition_key, "crash-7f3a");
    assert_eq!(
        records[0].data,
        br#"{"crash_id":"7f3a","ts":"2024-05-14T09:12:31Z"}"#
    );
    assert_eq!(records[1].shard_id, "shardId-000000000003");
    assert_eq!(records[2].shard_id, "shardId-000000000003");
}

#[test]
fn arrival_time_is_utc_with_milliseconds() {
    let event: KinesisEvent = serde_json::from_str(KINESIS).unwrap();
    let records = kinesis_records(&event).unwrap();
    assert_eq!(records[0].arrival, datetime!(2024-05-14 09:12:31.987 UTC));
    assert_eq!(records[1].arrival, datetime!(2024-05-14 09:12:32.007 UTC));
    assert!(records[0].arrival.offset().is_utc());
    // Whole seconds are right even where aws_lambda_events misreads the fraction.
    assert_eq!(records[2].arrival.unix_timestamp(), 1_715_677_952);
}

#[test]
fn arrival_from_raw_json_keeps_trailing_zero_milliseconds() {
    // The fixture's third record arrived at …52.980, sent as 1715677952.98.
    let records = kinesis_records_from_value(&serde_json::from_str(KINESIS).unwrap()).unwrap();
    assert_eq!(records[2].arrival, datetime!(2024-05-14 09:12:32.980 UTC));
    assert_eq!(records[0].arrival, datetime!(2024-05-14 09:12:31.987 UTC));
    assert_eq!(records[1].arrival, datetime!(2024-05-14 09:12:32.007 UTC));

    let typed: KinesisEvent = serde_json::from_str(KINESIS).unwrap();
    let from_typed = kinesis_records(&typed).unwrap();
    for (raw, typed) in records.iter().zip(&from_typed) {
        assert_eq!(
            (&raw.shard_id, &raw.sequence_number, &raw.data),
            (&typed.shard_id, &typed.sequence_number, &typed.data)
        );
    }
}

#[test]
fn records_from_value_rejects_a_non_kinesis_event() {
    let err =
        kinesis_records_from_value(&serde_json::json!({"Records": [{"body": "x"}]})).unwrap_err();
    assert!(matches!(err, EnvelopeError::InvalidKinesisEvent { .. }));
}

#[test]
fn event_id_without_shard_is_an_error_naming_the_sequence_number() {
    let mut event: Value = serde_json::from_str(KINESIS).unwrap();
    event["Records"][1]["eventID"] =
        "49651505085806326617433117123658226488113624839036305458".into();
    let typed: KinesisEvent = serde_json::from_value(event).unwrap();
    let err = kinesis_records(&typed).unwrap_err();
    assert!(
        matches!(&err, EnvelopeError::MissingShardId { sequence_number, .. }
            if sequence_number == "49651505085806326617433117123658226488113624839036305458")
    );
    assert!(
        err.to_string()
            .contains("49651505085806326617433117123658226488113624839036305458")
    );
}

#[test]
fn batch_sequence_numbers_increase_within_a_shard() {
    let event: KinesisEvent = serde_json::from_str(KINESIS).unwrap();
    let records = kinesis_records(&event).unwrap();
    assert_eq!(
        compare_sequence_numbers(&records[1].sequence_number, &records[2].sequence_number),
        std::cmp::Ordering::Less
    );
}

/// The fixture's records repeated `n` times, with distinct sequence numbers.
fn big_event(n: usize) -> Value {
    let fixture: Value = serde_json::from_str(KINESIS).unwrap();
    let template = &fixture["Records"];
    let records: Vec<Value> = (0..n)
        .map(|i| {
            let mut r = template[i % 3].clone();
            let seq = format!("4965150508573942438283658743251453662706374457755{i:07}");
            r["kinesis"]["sequenceNumber"] = seq.clone().into();
            r["eventID"] = format!("shardId-00000000000{}:{seq}", i % 3).into();
            r
        })
        .collect();
    serde_json::json!({ "Records": records })
}

#[test]
fn records_are_the_same_on_any_number_of_threads() {
    let event = big_event(1_001);
    let one = kinesis_records_from_value(&event).unwrap();
    assert_eq!(one.len(), 1_001);
    let text = event.to_string();
    for threads in [2, 3, 7, 2_000] {
        assert_eq!(kinesis_records_from_value_on(&event, threads).unwrap(), one);
    }
    for threads in [1, 2, 3, 7, 2_000] {
        assert_eq!(kinesis_records_from_json_on(&text, threads).unwrap(), one);
    }
}

#[test]
fn the_text_path_reads_what_the_tree_path_reads() {
    // Arrival times as numbers with dropped trailing zeros, as numeric strings, other keys
    // around `Records`, and whitespace: the same records either way.
    let mut event = big_event(10);
    event["Records"][1]["kinesis"]["approximateArrivalTimestamp"] = "1545084650.98".into();
    event["Records"][2]["kinesis"]["approximateArrivalTimestamp"] =
        serde_json::json!(1545084650.98);
    event["extra"] = serde_json::json!({"Records": "not these"});
    let tree = kinesis_records_from_value(&event).unwrap();
    assert_eq!(tree[2].arrival.millisecond(), 980);
    for text in [
        event.to_string(),
        serde_json::to_string_pretty(&event).unwrap(),
    ] {
        assert_eq!(kinesis_records_from_json_on(&text, 2).unwrap(), tree);
    }
}

#[test]
fn the_text_path_fails_like_the_tree_path() {
    let texts = [
        "not json".to_owned(),
        r#"{"Records": [] } trailing"#.to_owned(),
        r#"{"Records": [], "Records": []}"#.to_owned(),
        r#"{}"#.to_owned(),
        r#"[1, 2]"#.to_owned(),
    ];
    for text in &texts {
        let tree = serde_json::from_str::<Value>(text)
            .map_err(|_| ())
            .and_then(|v| kinesis_records_from_value(&v).map_err(|_| ()));
        let fast = kinesis_records_from_json_on(text, 2);
        assert_eq!(fast.is_ok(), tree.is_ok(), "{text}: {fast:?}");
    }
    // Not JSON at all says so, as the runtime would.
    let err = kinesis_records_from_json_on("not json", 1).unwrap_err();
    assert!(err.to_string().contains("event"), "{err}");
}

#[test]
fn errors_are_the_same_on_any_number_of_threads() {
    let broken: [fn(&mut Value); 6] = [
        |e| e["Records"][700]["kinesis"]["data"] = "not base64!".into(),
        |e| e["Records"][900]["eventID"] = "no-shard".into(),
        |e| e["Records"][650]["kinesis"]["approximateArrivalTimestamp"] = "soon".into(),
        // An arrival error early and a record that does not deserialize later: the latter wins.
        |e| {
            e["Records"][10]["kinesis"]["approximateArrivalTimestamp"] = 1e300.into();
            e["Records"][990]["kinesis"] = Value::Null;
        },
        |e| e["Records"] = "none".into(),
        |e| e["Records"] = Value::Null,
    ];
    for (i, breakage) in broken.iter().enumerate() {
        let mut event = big_event(1_000);
        breakage(&mut event);
        let one = kinesis_records_from_value(&event).map_err(|e| e.to_string());
        assert!(one.is_err() || i == 5, "case {i} is broken");
        for threads in [2, 4] {
            let many = kinesis_records_from_value_on(&event, threads).map_err(|e| e.to_string());
            assert_eq!(many, one, "case {i}, {threads} threads");
        }
        let text = event.to_string();
        for threads in [1, 2, 4] {
            let fast = kinesis_records_from_json_on(&text, threads).map_err(|e| e.to_string());
            assert_eq!(fast, one, "case {i}, text, {threads} threads");
        }
    }
}
