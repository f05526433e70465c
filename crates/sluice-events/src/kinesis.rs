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

use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;
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
    kinesis_records_from_value_on(event, 1)
}

/// [`kinesis_records_from_value`] on up to `threads` threads: records are independent, and
/// decoding a full batch (up to 10,000 records, 6 MB of base64) is most of the work before a
/// consumer's own. Records are read from the JSON in place (the event is not copied) and
/// their data moved, not cloned. Same records, same errors, whatever the thread count.
pub fn kinesis_records_from_value_on(
    event: &Value,
    threads: usize,
) -> Result<Vec<KinesisRecordData>, EnvelopeError> {
    let whole_event_error = |source| EnvelopeError::InvalidKinesisEvent {
        at: "event".into(),
        source,
    };
    let Some(raw_records) = event.get("Records").and_then(Value::as_array) else {
        // Not the shape read in place below: the typed event says why, or (`Records` absent
        // or null) has no records.
        let typed = KinesisEvent::deserialize(event).map_err(whole_event_error)?;
        return typed
            .records
            .iter()
            .map(|record| {
                Err(EnvelopeError::ArrivalOutOfRange {
                    sequence_number: record.kinesis.sequence_number.clone(),
                    seconds: "None".into(),
                })
            })
            .collect();
    };
    // `Err(None)`: a record that does not deserialize (the whole event's error wins, as it
    // does for the typed reader); `Err(Some(_))`: the first record with an unusable arrival
    // time or event id.
    let decode = |raw: &[Value]| -> Result<Vec<KinesisRecordData>, Option<EnvelopeError>> {
        let mut records = Vec::with_capacity(raw.len());
        let mut first_error = None;
        for raw in raw {
            let record = KinesisEventRecord::deserialize(raw).map_err(|_| None)?;
            if first_error.is_some() {
                continue;
            }
            let arrival = raw
                .get("kinesis")
                .and_then(|k| k.get("approximateArrivalTimestamp"));
            let seconds = arrival.and_then(epoch_seconds);
            let out_of_range = |seconds: String| EnvelopeError::ArrivalOutOfRange {
                sequence_number: record.kinesis.sequence_number.clone(),
                seconds,
            };
            let decoded = match seconds {
                None => Err(out_of_range(format!("{arrival:?}"))),
                Some(seconds) => arrival_from_epoch_seconds(seconds)
                    .ok_or_else(|| out_of_range(seconds.to_string()))
                    .and_then(|arrival| owned_record_data(record, arrival)),
            };
            match decoded {
                Ok(data) => records.push(data),
                Err(e) => first_error = Some(e),
            }
        }
        match first_error {
            Some(e) => Err(Some(e)),
            None => Ok(records),
        }
    };
    let parts = on_threads(raw_records, threads, decode);
    if parts.iter().any(|p| matches!(p, Err(None))) {
        let source = KinesisEvent::deserialize(event)
            .expect_err("a record failed to deserialize, so the event does");
        return Err(whole_event_error(source));
    }
    let mut records = Vec::with_capacity(raw_records.len());
    for part in parts {
        records.extend(part.map_err(|e| e.expect("deserialization failures returned above"))?);
    }
    Ok(records)
}

/// [`kinesis_records_from_value_on`] from the event's JSON text, without building a
/// `serde_json::Value` of the whole batch first: the batch is scanned once for its records'
/// spans, and each record is read from its own span on one of `threads` threads. Building the
/// tree of a full batch (10,000 records) is a sequential step that costs about a third of the
/// archiver's path on one vCPU; the scan costs a fraction of it. Any event this fast path does
/// not read (not JSON, `Records` missing or not an array, a record that does not deserialize)
/// is read by [`kinesis_records_from_value_on`], so records and errors are the same.
pub fn kinesis_records_from_json_on(
    event: &str,
    threads: usize,
) -> Result<Vec<KinesisRecordData>, EnvelopeError> {
    #[derive(Deserialize)]
    struct Batch<'a> {
        #[serde(rename = "Records", borrow)]
        records: Option<Vec<&'a RawValue>>,
    }
    /// The arrival time as sent (a number, or a numeric string from some producers).
    #[derive(Deserialize)]
    struct Arrival {
        kinesis: ArrivalField,
    }
    #[derive(Deserialize)]
    struct ArrivalField {
        #[serde(rename = "approximateArrivalTimestamp", default)]
        approximate_arrival_timestamp: Option<Value>,
    }
    let slow = || {
        let value: Value =
            serde_json::from_str(event).map_err(|source| EnvelopeError::InvalidKinesisEvent {
                at: "event".into(),
                source,
            })?;
        kinesis_records_from_value_on(&value, threads)
    };
    let Ok(Batch {
        records: Some(raw_records),
    }) = serde_json::from_str::<Batch<'_>>(event)
    else {
        return slow();
    };
    // `Err(None)`: a record this path does not read; the slow path says why.
    let decode = |raw: &[&RawValue]| -> Result<Vec<KinesisRecordData>, Option<EnvelopeError>> {
        let mut records = Vec::with_capacity(raw.len());
        for raw in raw {
            let record: KinesisEventRecord = serde_json::from_str(raw.get()).map_err(|_| None)?;
            let arrival: Arrival = serde_json::from_str(raw.get()).map_err(|_| None)?;
            let data = arrival
                .kinesis
                .approximate_arrival_timestamp
                .as_ref()
                .and_then(epoch_seconds)
                .and_then(arrival_from_epoch_seconds)
                .ok_or(None)
                .and_then(|arrival| owned_record_data(record, arrival).map_err(|_| None))?;
            records.push(data);
        }
        Ok(records)
    };
    let mut records = Vec::with_capacity(raw_records.len());
    for part in on_threads(&raw_records, threads, decode) {
        match part {
            Ok(part) => records.extend(part),
            // Errors (and their order) are the tree path's: it reads the event again.
            Err(_) => return slow(),
        }
    }
    Ok(records)
}

/// `decode` over `items` cut into one contiguous part per thread (up to `threads`), the
/// parts' results in input order. One thread, or too few items to share, runs here.
fn on_threads<T: Sync, R: Send>(
    items: &[T],
    threads: usize,
    decode: impl Fn(&[T]) -> R + Sync,
) -> Vec<R> {
    let per_thread = items.len().div_ceil(threads.max(1)).max(1);
    if threads <= 1 || items.len() <= per_thread {
        return vec![decode(items)];
    }
    let decode = &decode;
    std::thread::scope(|scope| {
        let workers: Vec<_> = items
            .chunks(per_thread)
            .map(|part| scope.spawn(move || decode(part)))
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("a record-decoding thread panicked"))
            .collect()
    })
}

/// `approximateArrivalTimestamp` as sent: a JSON number, or a numeric string from some
/// producers.
fn epoch_seconds(arrival: &Value) -> Option<f64> {
    match arrival {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.parse::<f64>().ok(),
        _ => None,
    }
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

/// [`record_data`] of a record this code owns: its strings and data are moved, not copied.
fn owned_record_data(
    record: KinesisEventRecord,
    arrival: OffsetDateTime,
) -> Result<KinesisRecordData, EnvelopeError> {
    let shard_id = shard_of(&record)?.to_owned();
    Ok(KinesisRecordData {
        shard_id,
        sequence_number: record.kinesis.sequence_number,
        partition_key: record.kinesis.partition_key,
        data: record.kinesis.data.0,
        arrival,
    })
}

/// The shard id in a record's `eventID` (`shardId-000000000006:49590338…`).
fn shard_of(record: &KinesisEventRecord) -> Result<&str, EnvelopeError> {
    record
        .event_id
        .as_deref()
        .and_then(|id| id.split_once(':'))
        .map(|(shard, _)| shard)
        .filter(|shard| shard.starts_with("shardId-"))
        .ok_or_else(|| EnvelopeError::MissingShardId {
            sequence_number: record.kinesis.sequence_number.clone(),
            event_id: record.event_id.clone(),
        })
}

fn record_data(
    record: &KinesisEventRecord,
    arrival: OffsetDateTime,
) -> Result<KinesisRecordData, EnvelopeError> {
    let shard_id = shard_of(record)?;
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
