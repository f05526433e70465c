//! S3 notifications in every envelope, from fixtures shaped like what AWS sends.

use serde_json::Value;
use sluice_events::aws_lambda_events::eventbridge::EventBridgeEvent;
use sluice_events::aws_lambda_events::s3::S3Event;
use sluice_events::aws_lambda_events::sns::SnsEvent;
use sluice_events::aws_lambda_events::sqs::SqsEvent;
use sluice_events::{
    EnvelopeError, KeyError, S3Notice, S3ObjectEvent, eventbridge_notices, s3_event_notices,
    s3_notices_from_str, s3_notices_from_value, sns_event_notices, sqs_message_notices,
};
use time::macros::datetime;

const S3_DIRECT: &str = include_str!("fixtures/s3-direct-two-records.json");
const S3_TEST_EVENT: &str = include_str!("fixtures/s3-test-event.json");
const SNS_S3: &str = include_str!("fixtures/sns-s3.json");
const SNS_TEST_EVENT: &str = include_str!("fixtures/sns-test-event.json");
const SQS_S3: &str = include_str!("fixtures/sqs-s3.json");
const SQS_SNS_S3: &str = include_str!("fixtures/sqs-sns-s3.json");
const SQS_MALFORMED: &str = include_str!("fixtures/sqs-malformed-body.json");
const EVENTBRIDGE: &str = include_str!("fixtures/eventbridge-object-created.json");
const SQS_EVENTBRIDGE: &str = include_str!("fixtures/sqs-eventbridge.json");

/// The key every notification fixture uploads, as S3 form-encodes it:
/// spaces, a literal `+`, parentheses and a non-ASCII character.
const TRICKY_RAW: &str = "incoming/2024/05/14/my+report%2Bv2+%281%29+caf%C3%A9.json";
const TRICKY_KEY: &str = "incoming/2024/05/14/my report+v2 (1) café.json";

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

fn tricky_put() -> S3ObjectEvent {
    S3ObjectEvent {
        bucket: "sluice-raw".into(),
        key: TRICKY_KEY.into(),
        raw_key: TRICKY_RAW.into(),
        size: Some(1024),
        etag: Some("9b2cf535f27731c974343645a3985328".into()),
        sequencer: Some("0066433E2F8B4A1D9C".into()),
        version_id: Some("096fKKXTRTtl3on89fVO.nfljtsv6qko".into()),
        event_name: "ObjectCreated:Put".into(),
        event_time: Some(datetime!(2024-05-14 09:12:31.217 UTC)),
    }
}

fn test_event() -> S3Notice {
    S3Notice::TestEvent {
        bucket: Some("sluice-raw".into()),
    }
}

#[test]
fn direct_s3_event_with_two_records_yields_both_in_order_with_decoded_keys() {
    let notices = s3_notices_from_value(&json(S3_DIRECT)).unwrap();
    assert_eq!(notices.len(), 2);
    assert_eq!(notices[0], S3Notice::Object(tricky_put()));
    let second = notices[1].as_object().unwrap();
    assert_eq!(second.key, "incoming/2024/05/14/100% done.csv");
    assert_eq!(second.raw_key, "incoming/2024/05/14/100%25+done.csv");
    assert_eq!(second.event_name, "ObjectCreated:CompleteMultipartUpload");
    assert_eq!(second.size, Some(73_400_320));
    assert_eq!(second.version_id, None);
    assert!(second.is_object_created() && !second.is_object_created_put());
    assert!(notices[0].as_object().unwrap().is_object_created_put());
}

#[test]
fn typed_s3_event_gives_the_same_notices_as_its_json() {
    let typed: S3Event = serde_json::from_str(S3_DIRECT).unwrap();
    assert_eq!(
        s3_event_notices(&typed).unwrap(),
        s3_notices_from_value(&json(S3_DIRECT)).unwrap()
    );
}

#[test]
fn sns_event_unwraps_message_and_decodes_key() {
    assert_eq!(
        s3_notices_from_value(&json(SNS_S3)).unwrap(),
        vec![S3Notice::Object(tricky_put())]
    );
    let typed: SnsEvent = serde_json::from_str(SNS_S3).unwrap();
    assert_eq!(
        sns_event_notices(&typed).unwrap(),
        vec![S3Notice::Object(tricky_put())]
    );
}

#[test]
fn sqs_event_yields_notices_per_message_id() {
    let typed: SqsEvent = serde_json::from_str(SQS_S3).unwrap();
    let per_message = sqs_message_notices(&typed);
    assert_eq!(per_message.len(), 2);
    assert_eq!(per_message[0].0, "059f36b4-87a3-44ab-83d2-661975830a7d");
    assert_eq!(
        per_message[0].1.as_ref().unwrap(),
        &vec![S3Notice::Object(tricky_put())]
    );
    assert_eq!(per_message[1].0, "2e1424d4-f796-459a-8184-9c92662be6da");
    assert_eq!(per_message[1].1.as_ref().unwrap(), &vec![test_event()]);

    // The untyped walk over the whole batch agrees.
    assert_eq!(
        s3_notices_from_value(&json(SQS_S3)).unwrap(),
        vec![S3Notice::Object(tricky_put()), test_event()]
    );
}

#[test]
fn sns_in_sqs_body_is_unwrapped_twice() {
    let typed: SqsEvent = serde_json::from_str(SQS_SNS_S3).unwrap();
    let per_message = sqs_message_notices(&typed);
    assert_eq!(per_message[0].0, "c80e8021-a70a-42c7-a470-796e1186f753");
    assert_eq!(
        per_message[0].1.as_ref().unwrap(),
        &vec![S3Notice::Object(tricky_put())]
    );
    assert_eq!(per_message[1].1.as_ref().unwrap(), &vec![test_event()]);

    // The body alone, as an SQS consumer outside Lambda would see it.
    let body = typed.records[0].body.as_deref().unwrap();
    assert!(body.contains("\"Type\" : \"Notification\""));
    assert_eq!(
        s3_notices_from_str(body).unwrap(),
        vec![S3Notice::Object(tricky_put())]
    );
}

#[test]
fn eventbridge_key_is_taken_verbatim_not_form_decoded() {
    let expected = S3ObjectEvent {
        key: TRICKY_KEY.into(),
        raw_key: TRICKY_KEY.into(),
        event_time: Some(datetime!(2024-05-14 09:12:31 UTC)),
        ..tricky_put()
    };
    assert_eq!(
        s3_notices_from_value(&json(EVENTBRIDGE)).unwrap(),
        vec![S3Notice::Object(expected.clone())]
    );
    let typed: EventBridgeEvent = serde_json::from_str(EVENTBRIDGE).unwrap();
    assert_eq!(
        eventbridge_notices(&typed).unwrap(),
        vec![S3Notice::Object(expected.clone())]
    );
    // A key containing `+` and `%` survives unchanged (decoding would turn
    // `+` into a space and fail on `%`).
    let mut event = json(EVENTBRIDGE);
    event["detail"]["object"]["key"] = "a+b %zz.json".into();
    let notice = s3_notices_from_value(&event).unwrap().remove(0);
    assert_eq!(notice.as_object().unwrap().key, "a+b %zz.json");
}

#[test]
fn eventbridge_event_in_sqs_body_is_recognised() {
    let typed: SqsEvent = serde_json::from_str(SQS_EVENTBRIDGE).unwrap();
    let per_message = sqs_message_notices(&typed);
    let notices = per_message[0].1.as_ref().unwrap();
    assert_eq!(notices.len(), 1);
    let event = notices[0].as_object().unwrap();
    assert_eq!(event.key, TRICKY_KEY);
    assert!(event.is_object_created_put());
}

#[test]
fn eventbridge_reasons_map_onto_notification_event_names() {
    let cases = [
        ("Object Created", "CopyObject", None, "ObjectCreated:Copy"),
        (
            "Object Created",
            "CompleteMultipartUpload",
            None,
            "ObjectCreated:CompleteMultipartUpload",
        ),
        (
            "Object Deleted",
            "DeleteObject",
            Some("Permanently Deleted"),
            "ObjectRemoved:Delete",
        ),
        (
            "Object Deleted",
            "DeleteObject",
            Some("Delete Marker Created"),
            "ObjectRemoved:DeleteMarkerCreated",
        ),
        (
            "Object Deleted",
            "Lifecycle Expiration",
            Some("Permanently Deleted"),
            "LifecycleExpiration:Delete",
        ),
    ];
    for (detail_type, reason, deletion_type, expected) in cases {
        let mut event = json(EVENTBRIDGE);
        event["detail-type"] = detail_type.into();
        event["detail"]["reason"] = reason.into();
        if let Some(deletion_type) = deletion_type {
            event["detail"]["deletion-type"] = deletion_type.into();
        }
        let notices = s3_notices_from_value(&event).unwrap();
        assert_eq!(
            notices[0].as_object().unwrap().event_name,
            expected,
            "{reason}"
        );
    }
    let mut deleted = json(EVENTBRIDGE);
    deleted["detail-type"] = "Object Deleted".into();
    deleted["detail"]["reason"] = "DeleteObject".into();
    assert!(
        s3_notices_from_value(&deleted).unwrap()[0]
            .as_object()
            .unwrap()
            .is_object_removed()
    );
}

#[test]
fn eventbridge_non_object_event_is_an_error_naming_the_detail_type() {
    let mut event = json(EVENTBRIDGE);
    event["detail-type"] = "Object Tags Added".into();
    let err = s3_notices_from_value(&event).unwrap_err();
    assert!(
        matches!(&err, EnvelopeError::UnsupportedDetailType { detail_type, .. } if detail_type == "Object Tags Added")
    );
    assert!(
        err.to_string()
            .contains("17793124-05d4-b198-2fde-7ededc63b103")
    );
}

#[test]
fn test_event_is_recognised_raw_and_inside_every_wrapper() {
    assert_eq!(
        s3_notices_from_str(S3_TEST_EVENT).unwrap(),
        vec![test_event()]
    );
    assert_eq!(
        s3_notices_from_value(&json(SNS_TEST_EVENT)).unwrap(),
        vec![test_event()]
    );
    let sns: SnsEvent = serde_json::from_str(SNS_TEST_EVENT).unwrap();
    assert_eq!(sns_event_notices(&sns).unwrap(), vec![test_event()]);
    // SQS (raw) and SNS-in-SQS test events are the second messages of those fixtures.
    for fixture in [SQS_S3, SQS_SNS_S3] {
        let sqs: SqsEvent = serde_json::from_str(fixture).unwrap();
        assert_eq!(
            sqs_message_notices(&sqs)[1].1.as_ref().unwrap(),
            &vec![test_event()]
        );
    }
}

#[test]
fn malformed_body_fails_only_its_own_message_and_names_it() {
    let typed: SqsEvent = serde_json::from_str(SQS_MALFORMED).unwrap();
    let per_message = sqs_message_notices(&typed);
    assert!(per_message[0].1.is_ok());
    let (id, result) = &per_message[1];
    assert_eq!(id, "7b8c9d0e-aaaa-4bbb-8ccc-ddddeeeeffff");
    let err = result.as_ref().unwrap_err();
    assert!(matches!(err, EnvelopeError::InvalidJson { .. }));
    let text = err.to_string();
    assert!(
        text.contains("SQS message 7b8c9d0e-aaaa-4bbb-8ccc-ddddeeeeffff"),
        "{text}"
    );
    assert!(
        text.contains("{\\\"Records\\\":[{"),
        "snippet of the body in {text}"
    );

    // Walking the whole batch fails, and says which message.
    let err = s3_notices_from_value(&json(SQS_MALFORMED)).unwrap_err();
    assert!(
        err.to_string().contains("Records[1] (SQS message 7b8c9d0e"),
        "{err}"
    );
}

#[test]
fn malformed_sns_message_inside_sqs_names_both_layers() {
    let body = serde_json::json!({
        "Type": "Notification",
        "MessageId": "95df01b4-ee98-5cb9-9903-4c221d41eb5e",
        "Message": "{\"Records\":[",
    })
    .to_string();
    let err = s3_notices_from_str(&body).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("SNS notification 95df01b4-ee98-5cb9-9903-4c221d41eb5e"),
        "{text}"
    );
}

#[test]
fn undecodable_key_is_an_error_naming_the_raw_key_and_record() {
    let mut event = json(S3_DIRECT);
    event["Records"][1]["s3"]["object"]["key"] = "bad%C3%28key".into();
    let err = s3_notices_from_value(&event).unwrap_err();
    match &err {
        EnvelopeError::Key { at, source } => {
            assert_eq!(at, "event › Records[1]");
            assert!(matches!(source, KeyError::InvalidUtf8 { key, .. } if key == "bad%C3%28key"));
        }
        other => panic!("unexpected error {other:?}"),
    }
}

#[test]
fn missing_bucket_name_is_an_error_naming_the_field() {
    let mut event = json(S3_DIRECT);
    event["Records"][0]["s3"]["bucket"]
        .as_object_mut()
        .unwrap()
        .remove("name");
    let err = s3_notices_from_value(&event).unwrap_err();
    assert!(
        matches!(&err, EnvelopeError::MissingField { field: "s3.bucket.name", at, .. } if at == "event › Records[0]"),
        "{err:?}"
    );
}

#[test]
fn unknown_envelope_and_foreign_record_sources_are_errors() {
    let err = s3_notices_from_str(r#"{"hello":"world"}"#).unwrap_err();
    assert!(
        matches!(&err, EnvelopeError::UnrecognisedEnvelope { fields, .. } if fields == "hello")
    );

    let err = s3_notices_from_str(r#"{"Records":[{"eventSource":"aws:kinesis"}]}"#).unwrap_err();
    assert!(
        matches!(&err, EnvelopeError::UnsupportedEventSource { event_source, .. } if event_source == "aws:kinesis")
    );

    let err = s3_notices_from_str("[1,2]").unwrap_err();
    assert!(matches!(err, EnvelopeError::UnrecognisedEnvelope { .. }));
}

#[test]
fn invalid_event_time_is_an_error_quoting_the_value() {
    let mut event = json(S3_DIRECT);
    event["Records"][0]["eventTime"] = "yesterday".into();
    let err = s3_notices_from_value(&event).unwrap_err();
    assert!(
        matches!(&err, EnvelopeError::InvalidTime { field: "eventTime", value, .. } if value == "yesterday")
    );
}

/// Fuzz regression (s3_envelope): valid RFC 3339 times whose UTC instant is outside
/// years 0000-9999 are an error, not a panic in the offset conversion.
#[test]
fn event_time_outside_the_utc_range_is_an_error_not_a_panic() {
    let mut event = json(S3_DIRECT);
    event["Records"][0]["eventTime"] = "9999-12-31T23:59:59-01:00".into();
    let err = s3_notices_from_value(&event).unwrap_err();
    assert!(
        matches!(&err, EnvelopeError::InvalidTime { field: "eventTime", value, .. } if value == "9999-12-31T23:59:59-01:00"),
        "{err:?}"
    );
    // The other end is still representable in UTC (year -1).
    event["Records"][0]["eventTime"] = "0000-01-01T00:00:00+23:59".into();
    assert!(s3_notices_from_value(&event).is_ok());

    let mut event = json(EVENTBRIDGE);
    event["time"] = "9999-12-31T23:30:00-00:31".into();
    let err = s3_notices_from_value(&event).unwrap_err();
    assert!(
        matches!(err, EnvelopeError::InvalidTime { field: "time", .. }),
        "{err:?}"
    );
}

#[test]
fn delete_notification_without_size_or_etag_parses() {
    let mut event = json(S3_DIRECT);
    let object = event["Records"][0]["s3"]["object"].as_object_mut().unwrap();
    object.remove("size");
    object.remove("eTag");
    event["Records"][0]["eventName"] = "ObjectRemoved:DeleteMarkerCreated".into();
    let notices = s3_notices_from_value(&event).unwrap();
    let removed = notices[0].as_object().unwrap();
    assert_eq!((removed.size, removed.etag.as_deref()), (None, None));
    assert!(removed.is_object_removed() && !removed.is_object_created());
}

#[test]
fn sequencer_cmp_orders_events_of_the_same_object_only() {
    let earlier = tricky_put();
    let later = S3ObjectEvent {
        sequencer: Some("0066433E2F8B4A1DA0".into()),
        ..tricky_put()
    };
    assert_eq!(
        earlier.sequencer_cmp(&later),
        Some(std::cmp::Ordering::Less)
    );
    let other_key = S3ObjectEvent {
        key: "other".into(),
        ..later.clone()
    };
    assert_eq!(earlier.sequencer_cmp(&other_key), None);
    let no_sequencer = S3ObjectEvent {
        sequencer: None,
        ..later
    };
    assert_eq!(earlier.sequencer_cmp(&no_sequencer), None);
}
