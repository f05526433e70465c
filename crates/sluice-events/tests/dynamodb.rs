//! DynamoDB stream records into a typed row with a map attribute.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;
use sluice_events::aws_lambda_events::dynamodb::Event;
use sluice_events::{ChangeKind, EnvelopeError, stream_changes};
use time::macros::datetime;

const COUNTERS: &str = include_str!("fixtures/dynamodb-counters.json");

#[derive(Debug, PartialEq, Deserialize)]
struct CounterRow {
    #[serde(rename = "Counter")]
    counter: String,
    #[serde(rename = "Date")]
    date: String,
    #[serde(rename = "Instances")]
    instances: BTreeMap<String, InstanceCount>,
}

#[derive(Debug, PartialEq, Deserialize)]
struct InstanceCount {
    v: u64,
    seq: String,
}

#[derive(Debug, PartialEq, Deserialize)]
struct CounterKey {
    #[serde(rename = "Counter")]
    counter: String,
    #[serde(rename = "Date")]
    date: String,
}

fn row(instances: &[(&str, u64, &str)]) -> CounterRow {
    CounterRow {
        counter: "crashes".into(),
        date: "2024-05-14".into(),
        instances: instances
            .iter()
            .map(|(id, v, seq)| {
                (
                    (*id).to_owned(),
                    InstanceCount {
                        v: *v,
                        seq: (*seq).to_owned(),
                    },
                )
            })
            .collect(),
    }
}

const SEQ_ABC: &str = "49651505085739424382836587432514536627063744577553006594";
const SEQ_DEF: &str = "49651505085806326617433117123658226488113624839036305458";

#[test]
fn insert_modify_remove_convert_into_typed_images_in_order() {
    let event: Event = serde_json::from_str(COUNTERS).unwrap();
    let changes: Vec<_> = stream_changes::<CounterRow>(&event)
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let one = row(&[("i-abc", 3, SEQ_ABC)]);
    let two = row(&[("i-abc", 3, SEQ_ABC), ("i-def", 11, SEQ_DEF)]);

    assert_eq!(changes[0].kind, ChangeKind::Insert);
    assert_eq!(changes[0].sequence_number, "4421584500000000017450439091");
    assert_eq!(changes[0].new_image.as_ref(), Some(&one));
    assert_eq!(changes[0].old_image, None);
    assert_eq!(
        changes[0].approximate_creation,
        Some(datetime!(2024-05-14 09:12:31 UTC))
    );

    assert_eq!(changes[1].kind, ChangeKind::Modify);
    assert_eq!(changes[1].sequence_number, "4421584500000000017450439092");
    assert_eq!(changes[1].old_image.as_ref(), Some(&one));
    assert_eq!(changes[1].new_image.as_ref(), Some(&two));

    assert_eq!(changes[2].kind, ChangeKind::Remove);
    assert_eq!(changes[2].sequence_number, "4421584500000000017450439093");
    assert_eq!(changes[2].new_image, None);
    assert_eq!(changes[2].old_image.as_ref(), Some(&two));
    assert_eq!(changes[2].event_id, "eccbc87e4b5ce2fe28308fd9f2a7baf3");
}

#[test]
fn keys_deserialise_into_a_key_type() {
    let event: Event = serde_json::from_str(COUNTERS).unwrap();
    let change = stream_changes::<CounterRow>(&event).remove(2).unwrap();
    assert_eq!(
        change.keys_as::<CounterKey>().unwrap(),
        CounterKey {
            counter: "crashes".into(),
            date: "2024-05-14".into()
        }
    );
}

#[test]
fn mismatched_image_fails_only_its_record_and_reports_its_sequence_number() {
    let mut event: Value = serde_json::from_str(COUNTERS).unwrap();
    // MODIFY's new image has a counter value that is not a number.
    event["Records"][1]["dynamodb"]["NewImage"]["Instances"]["M"]["i-def"]["M"]["v"] =
        serde_json::json!({"S": "eleven"});
    let event: Event = serde_json::from_value(event).unwrap();
    let results = stream_changes::<CounterRow>(&event);
    assert_eq!(results.len(), 3);
    assert!(results[0].is_ok());
    assert!(results[2].is_ok(), "later records are still converted");

    let first_failure = results.iter().find_map(|r| r.as_ref().err()).unwrap();
    match first_failure {
        EnvelopeError::Image {
            sequence_number,
            image,
            ..
        } => {
            assert_eq!(sequence_number, "4421584500000000017450439092");
            assert_eq!(*image, "NewImage");
        }
        other => panic!("unexpected error {other:?}"),
    }
    assert!(
        first_failure
            .to_string()
            .contains("4421584500000000017450439092")
    );
}

#[test]
fn keys_only_stream_has_no_images_and_no_creation_time_when_absent() {
    let event: Event = serde_json::from_value(serde_json::json!({
        "Records": [{
            "eventID": "1",
            "eventName": "REMOVE",
            "eventVersion": "1.1",
            "eventSource": "aws:dynamodb",
            "awsRegion": "eu-west-1",
            "dynamodb": {
                "Keys": {"Counter": {"S": "crashes"}, "Date": {"S": "2024-05-14"}},
                "SequenceNumber": "900",
                "SizeBytes": 30,
                "StreamViewType": "KEYS_ONLY"
            }
        }]
    }))
    .unwrap();
    let change = stream_changes::<CounterRow>(&event).remove(0).unwrap();
    assert_eq!(change.kind, ChangeKind::Remove);
    assert_eq!((change.new_image, change.old_image), (None, None));
    assert_eq!(change.approximate_creation, None);
    assert_eq!(change.keys.len(), 2);
}

#[test]
fn unknown_event_name_is_an_error_naming_it() {
    let mut event: Value = serde_json::from_str(COUNTERS).unwrap();
    event["Records"][0]["eventName"] = "UPSERT".into();
    let event: Event = serde_json::from_value(event).unwrap();
    let err = stream_changes::<CounterRow>(&event).remove(0).unwrap_err();
    assert!(
        matches!(&err, EnvelopeError::UnknownChangeKind { event_name, sequence_number, .. }
            if event_name == "UPSERT" && sequence_number == "4421584500000000017450439091")
    );
}
