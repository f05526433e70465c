//! Errors: each names where in which message the problem is (`at`), and the
//! offending value (key, field, sequence number).

/// An S3 notification object key that cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// A `%` not followed by two hex digits (S3 always escapes a literal `%` as `%25`).
    #[error("object key `{key}` has a malformed percent escape at byte {offset}")]
    MalformedEscape { key: String, offset: usize },
    /// The decoded bytes are not UTF-8 (S3 keys always are).
    #[error(
        "object key `{key}` does not decode to UTF-8 (invalid byte at decoded offset {valid_up_to})"
    )]
    InvalidUtf8 { key: String, valid_up_to: usize },
}

/// A Lambda event or message body that cannot be turned into typed records.
///
/// `at` says where: for example
/// `SQS message 059f36b4 › SNS notification 9a1b… › Records[1]`.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error("{at}: not valid JSON ({source}); message starts {snippet:?}")]
    InvalidJson {
        at: String,
        snippet: String,
        source: serde_json::Error,
    },

    #[error("{at}: not a recognised S3 notification envelope (top-level fields: {fields})")]
    UnrecognisedEnvelope { at: String, fields: String },

    #[error("{at}: record has unsupported event source {event_source:?}")]
    UnsupportedEventSource { at: String, event_source: String },

    #[error("{at}: field `{field}` is missing or not {expected}")]
    MissingField {
        at: String,
        field: &'static str,
        expected: &'static str,
    },

    #[error("{at}: field `{field}` is not an RFC 3339 time: {value:?}")]
    InvalidTime {
        at: String,
        field: &'static str,
        value: String,
    },

    #[error("{at}: {source}")]
    Key { at: String, source: KeyError },

    #[error(
        "{at}: EventBridge S3 event of type {detail_type:?} is neither `Object Created` nor `Object Deleted`"
    )]
    UnsupportedDetailType { at: String, detail_type: String },

    #[error("{at}: typed event could not be re-serialised to JSON: {source}")]
    Reserialise {
        at: String,
        source: serde_json::Error,
    },

    #[error("{at}: not a Kinesis event: {source}")]
    InvalidKinesisEvent {
        at: String,
        source: serde_json::Error,
    },

    #[error(
        "Kinesis record {sequence_number}: eventID {event_id:?} does not start with `shardId-…:`"
    )]
    MissingShardId {
        sequence_number: String,
        event_id: Option<String>,
    },

    #[error(
        "Kinesis record {sequence_number}: approximateArrivalTimestamp {seconds} is out of range"
    )]
    ArrivalOutOfRange {
        sequence_number: String,
        seconds: String,
    },

    #[error("DynamoDB stream record {event_id}: no SequenceNumber")]
    MissingSequenceNumber { event_id: String },

    #[error(
        "DynamoDB stream record {event_id} (sequence {sequence_number}): unknown eventName {event_name:?}"
    )]
    UnknownChangeKind {
        event_id: String,
        sequence_number: String,
        event_name: String,
    },

    #[error(
        "DynamoDB stream record {event_id} (sequence {sequence_number}): {image} does not match the target type: {source}"
    )]
    Image {
        event_id: String,
        sequence_number: String,
        image: &'static str,
        source: serde_dynamo::Error,
    },
}
