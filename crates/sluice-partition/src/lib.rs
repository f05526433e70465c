//! UTC time partitions for object keys.
//!
//! Every sluice output that lands under a time layout goes through here, so
//! there is exactly one way to turn a record's timestamp into
//! `year=YYYY/month=MM/day=DD/hour=HH/`, `YYYY/MM/` or a `YYYYMMDDHH` stamp.
//!
//! All arithmetic is in UTC: there is no local time anywhere in this crate
//! (the original converter partitioned by the machine's local time and put
//! records an hour or more into the wrong folder twice a year).
//!
//! It also names outputs after their input: [`source_tag`] is a short, stable digest of an
//! input key, so two inputs with the same file name in different directories never write
//! the same output key.
//!
//! Not for: formatting log timestamps or parsing arbitrary date formats.

use std::fmt;

use sha2::{Digest, Sha256};
use std::str::FromStr;

use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

/// Why a timestamp could not become a partition.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PartitionError {
    #[error("timestamp {value} {unit} is outside the supported range (years 1..=9999)")]
    OutOfRange { value: i128, unit: TimeUnit },
    #[error("{value:?} is not an RFC 3339 timestamp: {reason}")]
    NotRfc3339 { value: String, reason: String },
    #[error("unknown time unit {0:?} (expected s, ms, us or ns)")]
    UnknownUnit(String),
}

/// The unit of an epoch timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimeUnit {
    Seconds,
    #[default]
    Milliseconds,
    Microseconds,
    Nanoseconds,
}

impl TimeUnit {
    fn nanos_per_unit(self) -> i128 {
        match self {
            TimeUnit::Seconds => 1_000_000_000,
            TimeUnit::Milliseconds => 1_000_000,
            TimeUnit::Microseconds => 1_000,
            TimeUnit::Nanoseconds => 1,
        }
    }
}

impl fmt::Display for TimeUnit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TimeUnit::Seconds => "s",
            TimeUnit::Milliseconds => "ms",
            TimeUnit::Microseconds => "us",
            TimeUnit::Nanoseconds => "ns",
        })
    }
}

impl FromStr for TimeUnit {
    type Err = PartitionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "s" | "sec" | "secs" | "second" | "seconds" => Ok(TimeUnit::Seconds),
            "ms" | "millis" | "millisecond" | "milliseconds" => Ok(TimeUnit::Milliseconds),
            "us" | "micros" | "microsecond" | "microseconds" => Ok(TimeUnit::Microseconds),
            "ns" | "nanos" | "nanosecond" | "nanoseconds" => Ok(TimeUnit::Nanoseconds),
            other => Err(PartitionError::UnknownUnit(other.to_string())),
        }
    }
}

/// An instant reduced to what partitions need, always in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PartitionTime(OffsetDateTime);

impl PartitionTime {
    /// From an epoch value in the given unit.
    pub fn from_epoch(value: i64, unit: TimeUnit) -> Result<Self, PartitionError> {
        let nanos = i128::from(value) * unit.nanos_per_unit();
        OffsetDateTime::from_unix_timestamp_nanos(nanos)
            .ok()
            .filter(|t| t.year() >= 1)
            .map(PartitionTime)
            .ok_or(PartitionError::OutOfRange {
                value: value.into(),
                unit,
            })
    }

    /// From epoch seconds.
    pub fn from_epoch_seconds(secs: i64) -> Result<Self, PartitionError> {
        Self::from_epoch(secs, TimeUnit::Seconds)
    }

    /// From epoch milliseconds.
    pub fn from_epoch_millis(millis: i64) -> Result<Self, PartitionError> {
        Self::from_epoch(millis, TimeUnit::Milliseconds)
    }

    /// From fractional epoch seconds (Kinesis `approximateArrivalTimestamp`).
    pub fn from_epoch_seconds_f64(secs: f64) -> Result<Self, PartitionError> {
        let nanos = (secs * 1e9).floor();
        if !nanos.is_finite() || nanos.abs() > 1e30 {
            return Err(PartitionError::OutOfRange {
                value: secs as i128,
                unit: TimeUnit::Seconds,
            });
        }
        OffsetDateTime::from_unix_timestamp_nanos(nanos as i128)
            .ok()
            .filter(|t| t.year() >= 1)
            .map(PartitionTime)
            .ok_or(PartitionError::OutOfRange {
                value: secs as i128,
                unit: TimeUnit::Seconds,
            })
    }

    /// From an RFC 3339 timestamp with any offset; the partition uses its UTC instant.
    pub fn parse_rfc3339(s: &str) -> Result<Self, PartitionError> {
        OffsetDateTime::parse(s, &Rfc3339)
            .map(|t| PartitionTime(t.to_offset(UtcOffset::UTC)))
            .map_err(|e| PartitionError::NotRfc3339 {
                value: s.to_string(),
                reason: e.to_string(),
            })
    }

    /// Any instant, converted to UTC.
    pub fn from_datetime(t: OffsetDateTime) -> Self {
        PartitionTime(t.to_offset(UtcOffset::UTC))
    }

    /// The UTC instant.
    pub fn datetime(&self) -> OffsetDateTime {
        self.0
    }

    /// The start of this instant's UTC hour: records with equal `hour()` share a partition.
    pub fn hour(&self) -> HourPartition {
        let t = self.0;
        HourPartition {
            year: t.year(),
            month: u8::from(t.month()),
            day: t.day(),
            hour: t.hour(),
        }
    }
}

/// One UTC hour: the unit every sluice time layout is built from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HourPartition {
    pub year: i32,
    pub month: u8,
    pub day: u8,
    pub hour: u8,
}

impl HourPartition {
    /// Hive style: `year=2024/month=03/day=09/hour=07/`.
    pub fn hive_path(&self) -> String {
        format!(
            "year={:04}/month={:02}/day={:02}/hour={:02}/",
            self.year, self.month, self.day, self.hour
        )
    }

    /// Plain year and month: `2024/03/`.
    pub fn year_month_path(&self) -> String {
        format!("{:04}/{:02}/", self.year, self.month)
    }

    /// The hour stamp `2024030907`.
    pub fn stamp(&self) -> String {
        format!(
            "{:04}{:02}{:02}{:02}",
            self.year, self.month, self.day, self.hour
        )
    }

    /// The calendar date `2024-03-09`.
    pub fn date(&self) -> String {
        format!("{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

impl fmt::Display for HourPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.stamp())
    }
}

/// 16 lowercase hex characters (the first 64 bits of SHA-256) of an input object's key:
/// the same key always gives the same tag, and different keys (e.g. `a/p.json` and
/// `b/p.json`) give different tags, so outputs named `<stem>.<tag>` are unique per input
/// and deterministic. Python: `hashlib.sha256(key.encode()).hexdigest()[:16]`.
pub fn source_tag(input_key: &str) -> String {
    Sha256::digest(input_key.as_bytes())
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hour_of_millis(ms: i64) -> HourPartition {
        PartitionTime::from_epoch_millis(ms).unwrap().hour()
    }

    #[test]
    fn hive_path_pads_every_field() {
        // 2024-03-09T07:05:00Z
        let h = PartitionTime::from_epoch_seconds(1_709_967_900)
            .unwrap()
            .hour();
        assert_eq!(h.hive_path(), "year=2024/month=03/day=09/hour=07/");
        assert_eq!(h.year_month_path(), "2024/03/");
        assert_eq!(h.stamp(), "2024030907");
        assert_eq!(h.date(), "2024-03-09");
    }

    #[test]
    fn last_millisecond_of_an_hour_stays_in_that_hour() {
        // 2024-03-09T07:59:59.999Z and the next millisecond
        let end = 1_709_971_199_999;
        assert_eq!(hour_of_millis(end).stamp(), "2024030907");
        assert_eq!(hour_of_millis(end + 1).stamp(), "2024030908");
    }

    #[test]
    fn day_boundary_moves_day_and_hour() {
        // 2024-02-28T23:59:59.999Z → 2024-02-29T00:00:00Z (leap day)
        let end = 1_709_164_799_999;
        assert_eq!(
            hour_of_millis(end).hive_path(),
            "year=2024/month=02/day=28/hour=23/"
        );
        assert_eq!(
            hour_of_millis(end + 1).hive_path(),
            "year=2024/month=02/day=29/hour=00/"
        );
    }

    #[test]
    fn year_boundary_moves_every_field() {
        // 2023-12-31T23:59:59Z → 2024-01-01T00:00:00Z
        let last = PartitionTime::from_epoch_seconds(1_704_067_199)
            .unwrap()
            .hour();
        let first = PartitionTime::from_epoch_seconds(1_704_067_200)
            .unwrap()
            .hour();
        assert_eq!(last.stamp(), "2023123123");
        assert_eq!(last.year_month_path(), "2023/12/");
        assert_eq!(first.stamp(), "2024010100");
        assert_eq!(first.year_month_path(), "2024/01/");
    }

    #[test]
    fn rfc3339_offsets_are_converted_to_utc() {
        // 00:30 at +02:00 is 22:30 UTC the day before.
        let h = PartitionTime::parse_rfc3339("2024-01-01T00:30:00+02:00")
            .unwrap()
            .hour();
        assert_eq!(h.stamp(), "2023123122");
        let z = PartitionTime::parse_rfc3339("2024-01-01T00:30:00.123Z")
            .unwrap()
            .hour();
        assert_eq!(z.stamp(), "2024010100");
    }

    #[test]
    fn rfc3339_garbage_is_a_clear_error() {
        let err = PartitionTime::parse_rfc3339("yesterday").unwrap_err();
        assert!(err.to_string().contains("\"yesterday\" is not an RFC 3339"));
    }

    #[test]
    fn units_agree_on_the_same_instant() {
        let s = PartitionTime::from_epoch(1_709_967_900, TimeUnit::Seconds).unwrap();
        let ms = PartitionTime::from_epoch(1_709_967_900_000, TimeUnit::Milliseconds).unwrap();
        let us = PartitionTime::from_epoch(1_709_967_900_000_000, TimeUnit::Microseconds).unwrap();
        let ns =
            PartitionTime::from_epoch(1_709_967_900_000_000_000, TimeUnit::Nanoseconds).unwrap();
        assert_eq!(s, ms);
        assert_eq!(ms, us);
        assert_eq!(us, ns);
    }

    #[test]
    fn fractional_seconds_floor_into_the_hour() {
        let h = PartitionTime::from_epoch_seconds_f64(1_709_971_199.999)
            .unwrap()
            .hour();
        assert_eq!(h.stamp(), "2024030907");
    }

    #[test]
    fn out_of_range_epochs_are_rejected_not_wrapped() {
        assert!(matches!(
            PartitionTime::from_epoch_millis(i64::MAX),
            Err(PartitionError::OutOfRange { .. })
        ));
        assert!(PartitionTime::from_epoch_seconds_f64(f64::NAN).is_err());
        assert!(PartitionTime::from_epoch_seconds_f64(1e300).is_err());
    }

    #[test]
    fn seconds_mistaken_for_millis_land_in_1970_not_a_panic() {
        // A common producer bug: epoch seconds in a millisecond field.
        let h = hour_of_millis(1_709_967_900).hour;
        assert_eq!(hour_of_millis(1_709_967_900).year, 1970);
        assert!(h < 24);
    }

    #[test]
    fn time_units_parse_from_config_strings() {
        assert_eq!("ms".parse::<TimeUnit>().unwrap(), TimeUnit::Milliseconds);
        assert_eq!("Seconds".parse::<TimeUnit>().unwrap(), TimeUnit::Seconds);
        assert_eq!("us".parse::<TimeUnit>().unwrap(), TimeUnit::Microseconds);
        assert!(matches!(
            "fortnights".parse::<TimeUnit>(),
            Err(PartitionError::UnknownUnit(_))
        ));
    }

    #[test]
    fn source_tags_are_stable_and_tell_directories_apart() {
        assert_eq!(
            source_tag("incoming/a/p.json.snappy"),
            source_tag("incoming/a/p.json.snappy")
        );
        assert_ne!(
            source_tag("incoming/a/p.json.snappy"),
            source_tag("incoming/b/p.json.snappy")
        );
        // SHA-256("abc") starts ba7816bf8f01cfea.
        assert_eq!(source_tag("abc"), "ba7816bf8f01cfea");
        assert_eq!(source_tag("").len(), 16);
    }
}
