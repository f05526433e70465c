//! Where an instance's counter file lives: `<prefix><YYYY-MM-DD>/values_<instance-id>`.

use time::{Date, Month};

/// The file-name part before the instance id.
pub const FILE_PREFIX: &str = "values_";

/// Longest instance id accepted (EC2 ids are 19 characters; this leaves room for
/// other naming schemes and keeps the item's map keys small).
pub const MAX_INSTANCE_BYTES: usize = 256;

/// The date and instance a counter file belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CounterFileKey {
    /// `YYYY-MM-DD`, a real calendar date.
    pub date: String,
    pub instance: String,
}

/// Why a key is not a counter file (the event is skipped, not retried).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyMismatch {
    #[error("key is outside the counter prefix {prefix:?}")]
    OutsidePrefix { prefix: String },
    #[error("key does not look like <prefix><YYYY-MM-DD>/values_<instance-id>")]
    Shape,
    #[error("{date:?} is not a calendar date (YYYY-MM-DD)")]
    BadDate { date: String },
    #[error("instance id is empty or longer than {MAX_INSTANCE_BYTES} bytes")]
    BadInstance,
}

impl KeyMismatch {
    /// A stable, short name for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            KeyMismatch::OutsidePrefix { .. } => "outside_prefix",
            KeyMismatch::Shape => "shape",
            KeyMismatch::BadDate { .. } => "bad_date",
            KeyMismatch::BadInstance => "bad_instance",
        }
    }
}

impl CounterFileKey {
    /// Parses a decoded object key under `prefix`.
    pub fn parse(key: &str, prefix: &str) -> Result<Self, KeyMismatch> {
        let rest = key
            .strip_prefix(prefix)
            .ok_or_else(|| KeyMismatch::OutsidePrefix {
                prefix: prefix.to_owned(),
            })?;
        let (date, file) = rest.split_once('/').ok_or(KeyMismatch::Shape)?;
        let instance = file.strip_prefix(FILE_PREFIX).ok_or(KeyMismatch::Shape)?;
        if instance.contains('/') {
            return Err(KeyMismatch::Shape);
        }
        if instance.is_empty() || instance.len() > MAX_INSTANCE_BYTES {
            return Err(KeyMismatch::BadInstance);
        }
        if !is_calendar_date(date) {
            return Err(KeyMismatch::BadDate {
                date: date.to_owned(),
            });
        }
        Ok(CounterFileKey {
            date: date.to_owned(),
            instance: instance.to_owned(),
        })
    }
}

fn is_calendar_date(text: &str) -> bool {
    let b = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| b[range].iter().all(u8::is_ascii_digit);
    if b.len() != 10
        || b[4] != b'-'
        || b[7] != b'-'
        || !digits(0..4)
        || !digits(5..7)
        || !digits(8..10)
    {
        return false;
    }
    let (Ok(year), Ok(month), Ok(day)) = (
        text[0..4].parse::<i32>(),
        text[5..7].parse::<u8>(),
        text[8..10].parse::<u8>(),
    ) else {
        return false;
    };
    Month::try_from(month)
        .ok()
        .and_then(|month| Date::from_calendar_date(year, month, day).ok())
        .is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_date_and_instance_under_the_prefix() {
        assert_eq!(
            CounterFileKey::parse("path/to/data/2015-11-16/values_i-deadbeef", "path/to/data/"),
            Ok(CounterFileKey {
                date: "2015-11-16".into(),
                instance: "i-deadbeef".into()
            })
        );
    }

    #[test]
    fn an_empty_prefix_means_the_bucket_root() {
        let key = CounterFileKey::parse("2024-02-29/values_i-flub", "").unwrap();
        assert_eq!(key.date, "2024-02-29");
        assert_eq!(key.instance, "i-flub");
    }

    #[test]
    fn instance_ids_may_contain_underscores_and_dots() {
        let key = CounterFileKey::parse("c/2026-01-01/values_web_01.eu", "c/").unwrap();
        assert_eq!(key.instance, "web_01.eu");
    }

    #[test]
    fn keys_outside_the_prefix_are_mismatches() {
        assert_eq!(
            CounterFileKey::parse("other/2015-11-16/values_i-1", "counters/"),
            Err(KeyMismatch::OutsidePrefix {
                prefix: "counters/".into()
            })
        );
    }

    #[test]
    fn wrong_shapes_are_mismatches() {
        for key in [
            "counters/2015-11-16",
            "counters/2015-11-16/other_i-1",
            "counters/2015-11-16/sub/values_i-1",
            "counters/2015-11-16/values_i-1/extra",
        ] {
            assert_eq!(
                CounterFileKey::parse(key, "counters/"),
                Err(KeyMismatch::Shape),
                "{key}"
            );
        }
        assert_eq!(
            CounterFileKey::parse("counters/2015-11-16/values_", "counters/"),
            Err(KeyMismatch::BadInstance)
        );
        let long = format!(
            "counters/2015-11-16/values_{}",
            "i".repeat(MAX_INSTANCE_BYTES + 1)
        );
        assert_eq!(
            CounterFileKey::parse(&long, "counters/"),
            Err(KeyMismatch::BadInstance)
        );
    }

    #[test]
    fn dates_must_exist_on_the_calendar() {
        for date in [
            "2015-13-01",
            "2015-02-29",
            "2015-11-31",
            "15-11-16",
            "2015-1-16",
            "2015/11/16",
            "２０１５-11-16",
        ] {
            let key = format!("c/{date}/values_i-1");
            assert!(
                matches!(
                    CounterFileKey::parse(&key, "c/"),
                    Err(KeyMismatch::BadDate { .. } | KeyMismatch::Shape)
                ),
                "{date}"
            );
        }
        assert!(CounterFileKey::parse("c/2024-02-29/values_i-1", "c/").is_ok());
    }
}
