//! Socorro crash ids and raw-crash object keys.
//!
//! A crash id is a UUID-shaped string of 36 characters, lowercase hex in
//! `8-4-4-4-12` groups, stamped by the collector: the last six characters are
//! the submission date `yymmdd` (decimal digits, a real date in 20yy) and the
//! seventh-from-last is the collector's throttle decision, `0` accept or `1`
//! defer. Example: `00007bd0-2d1c-4865-af09-80bc00180313` — accepted,
//! submitted 2018-03-13.
//!
//! A raw-crash key is `<prefix><entropy>/<yyyymmdd>/<crash id>` with the
//! prefix `v2/raw_crash/` by default, e.g.
//! `v2/raw_crash/000/20180313/00007bd0-2d1c-4865-af09-80bc00180313`; the key's
//! date must be the id's date.
//!
//! Parsing is strict and total: every key is either a [`CrashKey`] or a
//! [`KeyRejection`] whose [`KeyRejection::reason`] names why, for logs and
//! metrics. Nothing here allocates for a valid id beyond the id itself.

use std::fmt;

use time::{Date, Month};

/// Length of a crash id.
pub const CRASH_ID_LEN: usize = 36;

/// The collector's throttle decision, carried in the crash id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Throttle {
    /// `0`: the crash is to be processed.
    Accept,
    /// `1`: the crash is stored but not processed now.
    Defer,
}

/// A valid crash id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CrashId {
    id: String,
    throttle: Throttle,
    date: Date,
}

/// Why a string is not a crash id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CrashIdError {
    #[error("crash id {id:?} is {len} bytes, not {CRASH_ID_LEN}")]
    Length { id: String, len: usize },
    #[error("crash id {id:?} has {found:?} at offset {offset} where {expected} is required")]
    Shape {
        id: String,
        offset: usize,
        found: char,
        expected: &'static str,
    },
    #[error(
        "crash id {id:?} has throttle decision {found:?}; only '0' (accept) and '1' (defer) exist"
    )]
    Throttle { id: String, found: char },
    #[error("crash id {id:?} ends in {yymmdd:?}, which is not a calendar date")]
    Date { id: String, yymmdd: String },
}

impl CrashId {
    /// Parses and validates a crash id.
    pub fn parse(id: &str) -> Result<CrashId, CrashIdError> {
        let bytes = id.as_bytes();
        if bytes.len() != CRASH_ID_LEN {
            return Err(CrashIdError::Length {
                id: id.to_owned(),
                len: bytes.len(),
            });
        }
        for (offset, &b) in bytes.iter().enumerate() {
            let (ok, expected) = match offset {
                8 | 13 | 18 | 23 => (b == b'-', "'-'"),
                // Throttle and date positions: checked as digits below.
                29..=35 => (b.is_ascii_digit(), "a decimal digit"),
                _ => (
                    matches!(b, b'0'..=b'9' | b'a'..=b'f'),
                    "a lowercase hex digit",
                ),
            };
            if !ok {
                return Err(CrashIdError::Shape {
                    id: id.to_owned(),
                    offset,
                    // Length was checked in bytes: a multi-byte char shows up here.
                    found: id[..].chars().nth(char_index(id, offset)).unwrap_or('?'),
                    expected,
                });
            }
        }
        let throttle = match bytes[29] {
            b'0' => Throttle::Accept,
            b'1' => Throttle::Defer,
            other => {
                return Err(CrashIdError::Throttle {
                    id: id.to_owned(),
                    found: other as char,
                });
            }
        };
        let digits = |range: std::ops::Range<usize>| -> u32 {
            bytes[range]
                .iter()
                .fold(0, |n, b| n * 10 + u32::from(b - b'0'))
        };
        let date = calendar_date(2000 + digits(30..32), digits(32..34), digits(34..36))
            .ok_or_else(|| CrashIdError::Date {
                id: id.to_owned(),
                yymmdd: id[30..].to_owned(),
            })?;
        Ok(CrashId {
            id: id.to_owned(),
            throttle,
            date,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.id
    }

    pub fn throttle(&self) -> Throttle {
        self.throttle
    }

    /// The submission date stamped into the id.
    pub fn date(&self) -> Date {
        self.date
    }

    /// A number in `0..100` derived only from the id, for percentage sampling.
    ///
    /// FNV-1a (64-bit) over the id's bytes, modulo 100: stable across processes,
    /// builds and platforms (unlike `std`'s randomly seeded hasher), so a redelivered
    /// event samples the same way. The first 23 characters of an id are random hex,
    /// so the buckets are uniform.
    pub fn sample_bucket(&self) -> u8 {
        const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
        const PRIME: u64 = 0x0000_0100_0000_01b3;
        let hash = self
            .id
            .bytes()
            .fold(OFFSET, |h, b| (h ^ u64::from(b)).wrapping_mul(PRIME));
        (hash % 100) as u8
    }
}

impl fmt::Display for CrashId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.id)
    }
}

/// The index of the char containing byte `offset`.
fn char_index(s: &str, offset: usize) -> usize {
    s.char_indices().take_while(|(i, _)| *i <= offset).count() - 1
}

fn calendar_date(year: u32, month: u32, day: u32) -> Option<Date> {
    let month = Month::try_from(u8::try_from(month).ok()?).ok()?;
    Date::from_calendar_date(i32::try_from(year).ok()?, month, u8::try_from(day).ok()?).ok()
}

/// A raw-crash object key with a valid crash id whose date matches the key's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrashKey {
    pub entropy: String,
    pub crash_id: CrashId,
}

/// Why an object key is not a raw-crash key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyRejection {
    #[error("key {key:?} is not under the raw-crash prefix {prefix:?}")]
    WrongPrefix { key: String, prefix: String },
    #[error("key {key:?} is not <prefix><entropy>/<yyyymmdd>/<crash id>: {why}")]
    MalformedKey { key: String, why: &'static str },
    #[error("key {key:?}: {source}")]
    MalformedCrashId {
        key: String,
        #[source]
        source: CrashIdError,
    },
    #[error("key {key:?} is dated {key_date} but its crash id is dated {id_date}")]
    DateMismatch {
        key: String,
        key_date: Date,
        id_date: Date,
    },
}

impl KeyRejection {
    /// A stable snake_case reason for logs and metric names.
    pub fn reason(&self) -> &'static str {
        match self {
            KeyRejection::WrongPrefix { .. } => "wrong_prefix",
            KeyRejection::MalformedKey { .. } => "malformed_key",
            KeyRejection::MalformedCrashId { .. } => "malformed_crash_id",
            KeyRejection::DateMismatch { .. } => "date_mismatch",
        }
    }
}

impl CrashKey {
    /// Parses a decoded object key under `prefix` (which should end in `/`).
    pub fn parse(key: &str, prefix: &str) -> Result<CrashKey, KeyRejection> {
        let Some(rest) = key.strip_prefix(prefix) else {
            return Err(KeyRejection::WrongPrefix {
                key: key.to_owned(),
                prefix: prefix.to_owned(),
            });
        };
        let malformed = |why| KeyRejection::MalformedKey {
            key: key.to_owned(),
            why,
        };
        let mut parts = rest.split('/');
        let (Some(entropy), Some(date), Some(id), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(malformed(
                "expected exactly three segments after the prefix",
            ));
        };
        if entropy.is_empty() {
            return Err(malformed("the entropy segment is empty"));
        }
        let key_date = parse_yyyymmdd(date)
            .ok_or_else(|| malformed("the date segment is not a yyyymmdd calendar date"))?;
        let crash_id = CrashId::parse(id).map_err(|source| KeyRejection::MalformedCrashId {
            key: key.to_owned(),
            source,
        })?;
        if crash_id.date() != key_date {
            return Err(KeyRejection::DateMismatch {
                key: key.to_owned(),
                key_date,
                id_date: crash_id.date(),
            });
        }
        Ok(CrashKey {
            entropy: entropy.to_owned(),
            crash_id,
        })
    }
}

fn parse_yyyymmdd(s: &str) -> Option<Date> {
    if s.len() != 8 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    calendar_date(
        s[0..4].parse().ok()?,
        s[4..6].parse().ok()?,
        s[6..8].parse().ok()?,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    const PREFIX: &str = "v2/raw_crash/";
    const ACCEPTED: &str = "00007bd0-2d1c-4865-af09-80bc00180313";
    const DEFERRED: &str = "de1bb258-cbbf-4589-a673-34f801180313";

    #[test]
    fn parses_the_seed_example_as_accepted_on_its_date() {
        let id = CrashId::parse(ACCEPTED).unwrap();
        assert_eq!(id.as_str(), ACCEPTED);
        assert_eq!(id.throttle(), Throttle::Accept);
        assert_eq!(id.date(), date!(2018 - 03 - 13));
        assert_eq!(id.to_string(), ACCEPTED);
    }

    #[test]
    fn seventh_from_last_one_means_deferred() {
        assert_eq!(
            CrashId::parse(DEFERRED).unwrap().throttle(),
            Throttle::Defer
        );
    }

    #[test]
    fn other_throttle_digits_are_rejected() {
        let err = CrashId::parse("00007bd0-2d1c-4865-af09-80bc02180313").unwrap_err();
        assert!(
            matches!(err, CrashIdError::Throttle { found: '2', .. }),
            "{err}"
        );
    }

    #[test]
    fn wrong_lengths_are_rejected_with_the_length() {
        for id in ["", "00007bd0", &format!("{ACCEPTED}0"), &ACCEPTED[1..]] {
            let err = CrashId::parse(id).unwrap_err();
            assert!(
                matches!(err, CrashIdError::Length { len, .. } if len == id.len()),
                "{id}"
            );
        }
    }

    #[test]
    fn uppercase_hex_is_rejected() {
        let err = CrashId::parse("00007BD0-2d1c-4865-af09-80bc00180313").unwrap_err();
        assert!(
            matches!(
                err,
                CrashIdError::Shape {
                    offset: 5,
                    found: 'B',
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn misplaced_dashes_are_rejected() {
        let err = CrashId::parse("00007bd02-d1c-4865-af09-80bc00180313").unwrap_err();
        assert!(
            matches!(
                err,
                CrashIdError::Shape {
                    offset: 8,
                    found: '2',
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn hex_letters_in_the_date_are_rejected() {
        let err = CrashId::parse("00007bd0-2d1c-4865-af09-80bc0018031a").unwrap_err();
        assert!(
            matches!(err, CrashIdError::Shape { offset: 35, .. }),
            "{err}"
        );
    }

    #[test]
    fn non_ascii_is_rejected_without_panicking() {
        // 36 bytes: "é" is two bytes, so the id has 35 chars.
        let id = "00007bd0-2d1c-4865-af09-80bc0018031é";
        assert_eq!(id.len(), 37);
        assert!(CrashId::parse(id).is_err());
        let id = "0007bd0-2d1c-4865-af09-80bc0018031é";
        assert_eq!(id.len(), 36);
        let err = CrashId::parse(id).unwrap_err();
        assert!(matches!(err, CrashIdError::Shape { .. }), "{err}");
    }

    #[test]
    fn impossible_dates_are_rejected() {
        for tail in ["180230", "181301", "180000", "190229"] {
            let id = format!("00007bd0-2d1c-4865-af09-80bc00{tail}");
            let err = CrashId::parse(&id).unwrap_err();
            assert!(matches!(err, CrashIdError::Date { .. }), "{id}: {err}");
        }
        // 2020 was a leap year.
        assert!(CrashId::parse("00007bd0-2d1c-4865-af09-80bc00200229").is_ok());
    }

    #[test]
    fn sample_bucket_is_stable_and_in_range() {
        let id = CrashId::parse(ACCEPTED).unwrap();
        assert_eq!(
            id.sample_bucket(),
            CrashId::parse(ACCEPTED).unwrap().sample_bucket()
        );
        // Pinned: the bucket must not change between builds, or redelivered events
        // (and replays after a deploy) would route differently.
        assert_eq!(id.sample_bucket(), 8);
    }

    #[test]
    fn sample_buckets_are_roughly_uniform() {
        let mut counts = [0u32; 100];
        for n in 0u32..20_000 {
            let id = format!(
                "{:08x}-{:04x}-4865-af09-80bc00180313",
                n.wrapping_mul(2_654_435_761),
                n % 65_536
            );
            counts[usize::from(CrashId::parse(&id).unwrap().sample_bucket())] += 1;
        }
        // 200 expected per bucket.
        assert!(
            counts.iter().all(|&c| (120..=280).contains(&c)),
            "{counts:?}"
        );
    }

    #[test]
    fn parses_a_raw_crash_key() {
        let key = CrashKey::parse(&format!("{PREFIX}000/20180313/{ACCEPTED}"), PREFIX).unwrap();
        assert_eq!(key.entropy, "000");
        assert_eq!(key.crash_id.as_str(), ACCEPTED);
    }

    #[test]
    fn other_prefixes_are_wrong_prefix() {
        for key in [
            format!("v1/raw_crash/000/20180313/{ACCEPTED}"),
            format!("v2/dump/000/20180313/{ACCEPTED}"),
            format!("/v2/raw_crash/000/20180313/{ACCEPTED}"),
            "v2/raw_crash".to_owned(),
        ] {
            let err = CrashKey::parse(&key, PREFIX).unwrap_err();
            assert_eq!(err.reason(), "wrong_prefix", "{key}");
        }
    }

    #[test]
    fn wrong_segment_counts_are_malformed_keys() {
        for key in [
            format!("{PREFIX}20180313/{ACCEPTED}"),
            format!("{PREFIX}000/20180313/{ACCEPTED}/"),
            format!("{PREFIX}000/x/20180313/{ACCEPTED}"),
            format!("{PREFIX}/20180313/{ACCEPTED}"),
            PREFIX.to_owned(),
        ] {
            let err = CrashKey::parse(&key, PREFIX).unwrap_err();
            assert_eq!(err.reason(), "malformed_key", "{key}: {err}");
        }
    }

    #[test]
    fn bad_key_dates_are_malformed_keys() {
        for date in ["2018031", "2018-03-13", "20181332", "201803130"] {
            let err =
                CrashKey::parse(&format!("{PREFIX}000/{date}/{ACCEPTED}"), PREFIX).unwrap_err();
            assert_eq!(err.reason(), "malformed_key", "{date}: {err}");
        }
    }

    #[test]
    fn bad_ids_in_keys_are_malformed_crash_ids() {
        let err =
            CrashKey::parse(&format!("{PREFIX}000/20180313/not-a-crash-id"), PREFIX).unwrap_err();
        assert_eq!(err.reason(), "malformed_crash_id");
        assert!(err.to_string().contains("not-a-crash-id"), "{err}");
    }

    #[test]
    fn key_date_must_equal_id_date() {
        let err = CrashKey::parse(&format!("{PREFIX}000/20180314/{ACCEPTED}"), PREFIX).unwrap_err();
        assert_eq!(
            err,
            KeyRejection::DateMismatch {
                key: format!("{PREFIX}000/20180314/{ACCEPTED}"),
                key_date: date!(2018 - 03 - 14),
                id_date: date!(2018 - 03 - 13),
            }
        );
        assert_eq!(err.reason(), "date_mismatch");
        // Same day, different century: the id's yy is read as 20yy.
        let err = CrashKey::parse(&format!("{PREFIX}000/19180313/{ACCEPTED}"), PREFIX).unwrap_err();
        assert_eq!(err.reason(), "date_mismatch");
    }

    #[test]
    fn deferred_ids_parse_as_keys_and_carry_the_decision() {
        let key = CrashKey::parse(&format!("{PREFIX}de1/20180313/{DEFERRED}"), PREFIX).unwrap();
        assert_eq!(key.crash_id.throttle(), Throttle::Defer);
    }

    #[test]
    fn a_custom_prefix_is_honoured() {
        assert!(
            CrashKey::parse(&format!("stage/raw/000/20180313/{ACCEPTED}"), "stage/raw/").is_ok()
        );
        assert_eq!(
            CrashKey::parse(&format!("{PREFIX}000/20180313/{ACCEPTED}"), "stage/raw/")
                .unwrap_err()
                .reason(),
            "wrong_prefix"
        );
    }
}
