//! DynamoDB Streams records as typed row changes.
//!
//! `aws_lambda_events` 1.2 types `StreamRecord::{keys, new_image, old_image}`
//! as `serde_dynamo::Item` (an absent or `null` image is an empty item) and
//! `ApproximateCreationDateTime` as a UTC time defaulting to the epoch when
//! absent. Images are converted with `serde_dynamo::from_item`; an empty
//! image is `None`, and an epoch creation time is treated as absent.

use serde::de::DeserializeOwned;
use time::OffsetDateTime;

use aws_lambda_events::dynamodb::{Event, EventRecord};

use crate::error::EnvelopeError;

/// What happened to the item (the record's `eventName`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChangeKind {
    Insert,
    Modify,
    Remove,
}

/// One stream record with its images converted to `T`.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamChange<T> {
    pub kind: ChangeKind,
    pub event_id: String,
    /// Decimal string; compare with [`crate::compare_sequence_numbers`].
    pub sequence_number: String,
    /// The item's primary key attributes, untyped; see [`StreamChange::keys_as`].
    pub keys: serde_dynamo::Item,
    /// Present for INSERT and MODIFY when the stream view includes new images.
    pub new_image: Option<T>,
    /// Present for MODIFY and REMOVE when the stream view includes old images.
    pub old_image: Option<T>,
    pub approximate_creation: Option<OffsetDateTime>,
}

impl<T> StreamChange<T> {
    /// The key attributes as a typed key struct.
    pub fn keys_as<K: DeserializeOwned>(&self) -> Result<K, serde_dynamo::Error> {
        serde_dynamo::from_item(self.keys.clone())
    }
}

/// One result per stream record, in batch order, so a caller can report the
/// sequence number of the first failure as its `batchItemFailures` entry.
pub fn stream_changes<T: DeserializeOwned>(
    event: &Event,
) -> Vec<Result<StreamChange<T>, EnvelopeError>> {
    event.records.iter().map(stream_change).collect()
}

fn stream_change<T: DeserializeOwned>(
    record: &EventRecord,
) -> Result<StreamChange<T>, EnvelopeError> {
    let change = &record.change;
    let event_id = record.event_id.clone();
    let sequence_number =
        change
            .sequence_number
            .clone()
            .ok_or_else(|| EnvelopeError::MissingSequenceNumber {
                event_id: event_id.clone(),
            })?;
    let kind = match record.event_name.as_str() {
        "INSERT" => ChangeKind::Insert,
        "MODIFY" => ChangeKind::Modify,
        "REMOVE" => ChangeKind::Remove,
        other => {
            return Err(EnvelopeError::UnknownChangeKind {
                event_id,
                sequence_number,
                event_name: other.to_owned(),
            });
        }
    };
    let image =
        |item: &serde_dynamo::Item, image: &'static str| -> Result<Option<T>, EnvelopeError> {
            if item.is_empty() {
                return Ok(None);
            }
            serde_dynamo::from_item(item.clone())
                .map(Some)
                .map_err(|source| EnvelopeError::Image {
                    event_id: event_id.clone(),
                    sequence_number: sequence_number.clone(),
                    image,
                    source,
                })
        };
    let new_image = image(&change.new_image, "NewImage")?;
    let old_image = image(&change.old_image, "OldImage")?;

    let created = change.approximate_creation_date_time;
    let approximate_creation = if created.timestamp() == 0 && created.timestamp_subsec_nanos() == 0
    {
        None
    } else {
        OffsetDateTime::from_unix_timestamp_nanos(
            i128::from(created.timestamp()) * 1_000_000_000
                + i128::from(created.timestamp_subsec_nanos()),
        )
        .ok()
    };

    Ok(StreamChange {
        kind,
        event_id,
        sequence_number,
        keys: change.keys.clone(),
        new_image,
        old_image,
        approximate_creation,
    })
}
