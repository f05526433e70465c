//! Kinesis Data Streams records as a Lambda event source delivers them.
//!
//! `aws_lambda_events` already base64-decodes `data` and turns
//! `approximateArrivalTimestamp` (epoch seconds as a JSON float with
//! millisecond precision, e.g. `1545084650.987`) into a UTC time. Its
//! 1.2 parser reads the fraction's digits as a millisecond count, though:
//! `1545084650.98` (= …650.980, the trailing zero is not sent) becomes
//! 98 ms. [`kinesis_records`] converts what that parser produced;
//! [`kinesis_records_from_value`] reads the timestamp from the raw JSON
//! number instead and gets the milliseconds right. Use the latter when the
//! handler can take the event as `serde_json::Value`.

use serde_json::Value;
use time::OffsetDateTime;

use aws_lambda_events::kinesis::{KinesisEvent, KinesisEventRecord};

use crate::error::EnvelopeError;

/// One Kinesis record, with the fields a consumer orders and routes by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KinesisRecordData {
    /// `shardId-000000000006`, from the record's `eventID`
    /// (`shardId-000000000006:49590338…`).
    pub shard_id: String,
    /// Decimal string; compare with [`crate::compare_sequence_numbers`].
    pub sequence_number: String,
    pub partition_key: String,
    /// The payload, base64-decoded.
    pub data: Vec<u8>,
    /// `approximateArrivalTimestamp`, UTC.
    pub arrival: OffsetDateTime,
}

/// Records of a typed Kinesis event, in batch order. Fails on the first
/// record whose `eventID` carries no shard id.
///
/// Sub-second arrival times inherit the `aws_lambda_events` 1.2 parsing
/// described in the module docs; whole seconds are always right.
pub fn kinesis_records(event: &KinesisEvent) -> Result<Vec<KinesisRecordData>, EnvelopeError> {
    event
        .records
        .iter()
        .map(|record| {
            let arrival = &record.kinesis.approximate_arrival_timestamp;
            let nanos = i128::from(arrival.timestamp()) * 1_000_000_000
                + i128::from(arrival.timestamp_subsec_nanos());
            let arrival = OffsetDateTime::from_unix_timestamp_nanos(nanos).map_err(|_| {
                EnvelopeError::ArrivalOutOfRange {
                    sequence_number: record.kinesis.sequence_number.clone(),
                    seconds: arrival.timestamp().to_string(),
                }
            })?;
            record_data(record, arrival)
        })
        .collect()
}

/// Records of a Kinesis event given as JSON, in batch order, with
/// millisecond-exact arrival times (see the module docs).
pub fn kinesis_records_from_value(event: &Value) -> Result<Vec<KinesisRecordData>, EnvelopeError> {
    let typed: KinesisEvent = serde_json::from_value(event.clone()).map_err(|source| {
        EnvelopeError::InvalidKinesisEvent {
            at: "event".into(),
            source,
        }
    })?;
    let raw_records = event.get("Records").and_then(Value::as_array);
    typed
        .records
        .iter()
        .enumerate()
        .map(|(index, record)| {
            let raw = raw_records
                .and_then(|records| records.get(index))
                .and_then(|r| r.get("kinesis"))
                .and_then(|k| k.get("approximateArrivalTimestamp"));
            let out_of_range = |seconds: String| EnvelopeError::ArrivalOutOfRange {
                sequence_number: record.kinesis.sequence_number.clone(),
                seconds,
            };
            let seconds = match raw {
                Some(Value::Number(n)) => n.as_f64(),
                Some(Value::String(s)) => s.parse::<f64>().ok(),
                _ => None,
            }
            .ok_or_else(|| out_of_range(format!("{raw:?}")))?;
            let arrival = arrival_from_epoch_seconds(seconds)
                .ok_or_else(|| out_of_range(seconds.to_string()))?;
            record_data(record, arrival)
        })
        .collect()
}

/// Epoch seconds with millisecond precision → UTC time, rounded to the
/// millisecond (the float cannot hold more, and Kinesis sends no more).
fn arrival_from_epoch_seconds(seconds: f64) -> Option<OffsetDateTime> {
    if !seconds.is_finite() {
        return None;
    }
    let millis = (seconds * 1000.0).round();
    // Beyond ±2^53 ms the float is no longer an exact count of milliseconds,
    // and far beyond any time `time` represents anyway.
    if millis.abs() > 9_007_199_254_740_992.0 {
        return None;
    }
    let millis = millis as i64;
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000).ok()
}

fn record_data(
    record: &KinesisEventRecord,
    arrival: OffsetDateTime,
) -> Result<KinesisRecordData, EnvelopeError> {
    let shard_id = record
        .event_id
        .as_deref()
        .and_then(|id| id.split_once(':'))
        .map(|(shard, _)| shard)
        .filter(|shard| shard.starts_with("shardId-"))
        .ok_or_else(|| EnvelopeError::MissingShardId {
            sequence_number: record.kinesis.sequence_number.clone(),
            event_id: record.event_id.clone(),
        })?;
    Ok(KinesisRecordData {
        shard_id: shard_id.to_owned(),
        sequence_number: record.kinesis.sequence_number.clone(),
        partition_key: record.kinesis.partition_key.clone(),
        data: record.kinesis.data.0.clone(),
        arrival,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_seconds_keep_trailing_zero_milliseconds() {
        let t = arrival_from_epoch_seconds(1_545_084_650.98).unwrap();
        assert_eq!(t.unix_timestamp(), 1_545_084_650);
        assert_eq!(t.millisecond(), 980);
    }

    #[test]
    fn epoch_seconds_reject_non_finite_and_huge_values() {
        assert!(arrival_from_epoch_seconds(f64::NAN).is_none());
        assert!(arrival_from_epoch_seconds(f64::INFINITY).is_none());
        assert!(arrival_from_epoch_seconds(1e300).is_none());
    }
}
