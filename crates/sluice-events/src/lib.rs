//! Event envelopes for sluice's Lambda functions: turns what a trigger
//! delivers into typed records, and nothing more.
//!
//! For:
//! - **S3 notifications in every envelope** — S3 → Lambda, SNS, SQS,
//!   SNS-in-SQS, EventBridge (direct or via SQS/SNS) — as one
//!   [`S3ObjectEvent`] type, with `s3:TestEvent` recognised as
//!   [`S3Notice::TestEvent`] rather than an error ([`s3_notices_from_value`],
//!   [`s3_notices_from_str`], [`sqs_message_notices`], …).
//! - **Object key decoding** exactly once, the way S3 encodes notification
//!   keys ([`decode_s3_key`]), and **sequencer ordering** per key
//!   ([`compare_sequencers`]).
//! - **Kinesis records** with shard id and UTC arrival time
//!   ([`kinesis_records`]), numeric sequence-number ordering
//!   ([`compare_sequence_numbers`]).
//! - **DynamoDB stream records** with images deserialised into your type
//!   through `serde_dynamo` ([`stream_changes`]).
//!
//! Not for: calling AWS (that is `sluice-aws`), deciding what to do with a
//! record, retry classification or partial-batch responses (the functions
//! and `sluice-lambda`), or time partitioning (`sluice-partition`).
//!
//! Every error names where it happened (`SQS message … › Records[1]`) and
//! the value that failed (key, field, sequence number).

mod dynamodb;
mod error;
mod key;
mod kinesis;
mod s3;

pub use dynamodb::{ChangeKind, StreamChange, stream_changes};
pub use error::{EnvelopeError, KeyError};
pub use key::{compare_sequence_numbers, compare_sequencers, decode_s3_key, encode_s3_key};
pub use kinesis::{
    KinesisRecordData, kinesis_records, kinesis_records_from_json_on, kinesis_records_from_value,
    kinesis_records_from_value_on,
};
pub use s3::{
    S3Notice, S3ObjectEvent, eventbridge_notices, s3_event_notices, s3_notices_from_str,
    s3_notices_from_value, sns_event_notices, sqs_message_notices,
};

/// The `aws_lambda_events` this crate reads, so callers name the same types.
pub use aws_lambda_events;
