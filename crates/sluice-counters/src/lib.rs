//! The contract between the counter functions: counter-mapper writes the instance
//! table, counter-aggregator reads its stream and writes the aggregate table (whose
//! stream counter-reporter reads).
//!
//! # Instance table: one item per counter, day and shard
//!
//! ```text
//! { Counter: S (hash), Date: S (range, "<YYYY-MM-DD>#<shard>"), Version: N,
//!   Instances: M { <instance-id>: M { Value: N, Seq: S } } }
//! ```
//!
//! The instances of one counter and day are spread over [`SHARDS`] items: an
//! instance always lands in shard [`shard_of`]`(id)` (the first eight bytes of the
//! id's SHA-256, big-endian, modulo [`SHARDS`]), written as two digits after the day
//! (`2015-11-16#07`). One item holding every instance hit DynamoDB's 400 KB item
//! limit at about 1,300 instances with long ids; sharded, an item holds about a
//! 32nd of them:
//!
//! - an entry is at most ~314 bytes (a 256-byte id, the longest counter-mapper
//!   accepts, a 20-digit value, a 32-character stamp, map overhead);
//! - 10,000 instances put at most ~360 in the fullest shard (the test
//!   `ten_thousand_of_the_longest_ids_fill_no_shard_beyond_a_third_of_the_limit`
//!   measures it), ~113 KB, under a third of the limit;
//! - the fullest shard reaches the limit at roughly 35,000 instances of the longest
//!   ids (several times more with EC2's 19-character ids).
//!
//! `Version` counts the item's writes (the mapper adds one with each): an image's
//! place in its item's history, whatever order the stream delivers images in.
//! [`SHARDS`] is part of the stored layout: changing it would move instances to
//! other items while their old entries stay, so it is a constant, not a setting.
//!
//! # Aggregate table: one item per counter and day
//!
//! ```text
//! { Counter: S (hash), Date: S (range, "<YYYY-MM-DD>"), Value: N, Version: N, UpdatedAt: S,
//!   Shards: M { <shard>: M { Total: N, SourceVersion: N } } }
//! ```
//!
//! `Value` is the day's total, the sum of every shard's `Total`; each shard's entry
//! remembers the instance item `Version` its subtotal came from (the ordering
//! guard: an older image never puts an older subtotal back). `Version` grows by
//! exactly one with every change of `Value` and with nothing else (counter-reporter's
//! "newest `Version` wins").

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use sha2::{Digest, Sha256};

/// Items one counter's day is spread over (part of the stored layout).
pub const SHARDS: u16 = 32;

/// DynamoDB's item size limit, in bytes.
pub const MAX_ITEM_BYTES: usize = 400 * 1024;

/// Attribute names of the instance table.
pub mod instance_attr {
    pub const COUNTER: &str = "Counter";
    /// The range key: `<YYYY-MM-DD>#<shard>`.
    pub const DATE: &str = "Date";
    pub const INSTANCES: &str = "Instances";
    pub const VALUE: &str = "Value";
    pub const SEQ: &str = "Seq";
    /// The item's write count (its stream images' order).
    pub const VERSION: &str = "Version";
}

/// Attribute names of the aggregate table.
pub mod aggregate_attr {
    pub const COUNTER: &str = "Counter";
    pub const DATE: &str = "Date";
    pub const VALUE: &str = "Value";
    pub const UPDATED_AT: &str = "UpdatedAt";
    pub const VERSION: &str = "Version";
    /// `{<shard>: {Total, SourceVersion}}`: each shard's subtotal and its source.
    pub const SHARDS: &str = "Shards";
    pub const TOTAL: &str = "Total";
    /// The instance item's `Version` a shard's subtotal was summed from.
    pub const SOURCE_VERSION: &str = "SourceVersion";
}

/// The shard an instance's entries live in, for every counter and day.
pub fn shard_of(instance: &str) -> u16 {
    let digest = Sha256::digest(instance.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    (u64::from_be_bytes(first) % u64::from(SHARDS)) as u16
}

/// One instance item's range key: a day and a shard.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShardKey {
    /// `YYYY-MM-DD`
    pub date: String,
    pub shard: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("instance item Date {0:?} is not <YYYY-MM-DD>#<shard 00-{max:02}>", max = SHARDS - 1)]
pub struct BadShardKey(pub String);

impl ShardKey {
    /// The key of `instance`'s item for `date`.
    pub fn of(date: &str, instance: &str) -> Self {
        ShardKey {
            date: date.to_owned(),
            shard: shard_of(instance),
        }
    }

    /// The shard as the aggregate's `Shards` map names it (`07`).
    pub fn shard_name(&self) -> String {
        format!("{:02}", self.shard)
    }

    /// The prefix every shard key of `date` starts with (`2015-11-16#`), for a query.
    pub fn day_prefix(date: &str) -> String {
        format!("{date}#")
    }

    pub fn parse(text: &str) -> Result<Self, BadShardKey> {
        let bad = || BadShardKey(text.to_owned());
        let (date, shard) = text.split_once('#').ok_or_else(bad)?;
        let well_formed = date.len() == 10
            && date.bytes().enumerate().all(|(i, b)| {
                if i == 4 || i == 7 {
                    b == b'-'
                } else {
                    b.is_ascii_digit()
                }
            })
            && shard.len() == 2
            && shard.bytes().all(|b| b.is_ascii_digit());
        if !well_formed {
            return Err(bad());
        }
        let shard: u16 = shard.parse().map_err(|_| bad())?;
        if shard >= SHARDS {
            return Err(bad());
        }
        Ok(ShardKey {
            date: date.to_owned(),
            shard,
        })
    }
}

impl fmt::Display for ShardKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{:02}", self.date, self.shard)
    }
}

/// One shard item of the instance table, as a stream image.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawInstanceItem")]
pub struct InstanceItem {
    pub counter: String,
    pub key: ShardKey,
    /// The item's write count when this image was taken.
    pub version: u64,
    /// Absent on an item the mapper has not finished creating: subtotal 0.
    pub instances: BTreeMap<String, InstanceEntry>,
}

#[derive(Deserialize)]
struct RawInstanceItem {
    #[serde(rename = "Counter")]
    counter: String,
    #[serde(rename = "Date")]
    date: String,
    #[serde(rename = "Version")]
    version: u64,
    #[serde(rename = "Instances", default)]
    instances: BTreeMap<String, InstanceEntry>,
}

impl TryFrom<RawInstanceItem> for InstanceItem {
    type Error = BadShardKey;

    fn try_from(raw: RawInstanceItem) -> Result<Self, Self::Error> {
        Ok(InstanceItem {
            counter: raw.counter,
            key: ShardKey::parse(&raw.date)?,
            version: raw.version,
            instances: raw.instances,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct InstanceEntry {
    #[serde(rename = "Value")]
    pub value: i64,
    /// The ordering stamp of the upload that wrote `value` (not used for sums).
    #[serde(rename = "Seq", default)]
    pub seq: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "total of counter {counter:?} on {date} ({what}) is {total}, outside the signed 64-bit range"
)]
pub struct SumOverflow {
    pub counter: String,
    pub date: String,
    /// Which sum: a shard's instances, or the day over every shard.
    pub what: String,
    pub total: i128,
}

impl InstanceItem {
    /// The sum of this shard's instances, computed exactly: a subtotal outside the
    /// signed 64-bit range is an error, never a wrapped number.
    pub fn subtotal(&self) -> Result<i64, SumOverflow> {
        let total: i128 = self.instances.values().map(|e| i128::from(e.value)).sum();
        i64::try_from(total).map_err(|_| SumOverflow {
            counter: self.counter.clone(),
            date: self.key.date.clone(),
            what: format!(
                "shard {} over {} instances",
                self.key.shard_name(),
                self.instances.len()
            ),
            total,
        })
    }
}

/// The aggregate item as stored (every attribute optional: a new or pre-shard item).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct AggregateItem {
    #[serde(rename = "Value", default)]
    pub value: Option<i64>,
    #[serde(rename = "Version", default)]
    pub version: Option<u64>,
    /// Absent on a new item, or one written before the table was sharded.
    #[serde(rename = "Shards", default)]
    pub shards: Option<BTreeMap<String, ShardTotal>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct ShardTotal {
    #[serde(rename = "Total")]
    pub total: i64,
    #[serde(rename = "SourceVersion")]
    pub source_version: u64,
}

/// DynamoDB's size of an attribute value (its documented rules: strings and binaries
/// by length, numbers by significant digits, maps and lists with 3 bytes plus one
/// per element and their names), for estimating how close an item is to
/// [`MAX_ITEM_BYTES`].
pub fn number_size(digits: &str) -> usize {
    let significant = digits
        .trim_start_matches('-')
        .trim_start_matches('0')
        .trim_end_matches('0')
        .len()
        .max(1);
    significant.div_ceil(2) + 1
}

/// The size of one instance entry (`<id>: {Value: N, Seq: S}`) inside the `Instances` map.
pub fn entry_size(instance: &str, value: i64, seq: &str) -> usize {
    let inner =
        3 + (1 + "Value".len() + number_size(&value.to_string())) + (1 + "Seq".len() + seq.len());
    1 + instance.len() + inner
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shard_of_an_instance_is_stable_and_in_range() {
        // Fixed values: a change of the hash would move stored instances.
        assert_eq!(shard_of("i-deadbeef"), shard_of("i-deadbeef"));
        let known: Vec<u16> = ["i-deadbeef", "i-beefdead", "i-foobazzled", "i-flub"]
            .iter()
            .map(|i| shard_of(i))
            .collect();
        assert_eq!(known, KNOWN_SHARDS);
        assert!((0..10_000).all(|i| shard_of(&format!("i-{i:08x}")) < SHARDS));
    }

    const KNOWN_SHARDS: [u16; 4] = [13, 25, 1, 31];

    #[test]
    fn ten_thousand_of_the_longest_ids_fill_no_shard_beyond_a_third_of_the_limit() {
        let mut sizes = [0usize; SHARDS as usize];
        let seq = "0055AED6DCD90281E500000000000000";
        for i in 0..10_000u32 {
            let id = format!("{i:0>256}");
            sizes[shard_of(&id) as usize] += entry_size(&id, -9_223_372_036_854_775_807, seq);
        }
        let fullest = *sizes.iter().max().unwrap();
        // + the key, Version and map overhead: well under 200 bytes
        assert!(
            fullest + 200 < MAX_ITEM_BYTES / 3,
            "fullest shard {fullest} bytes"
        );
        assert!(sizes.iter().all(|s| *s > 0), "every shard is used");
    }

    #[test]
    fn shard_keys_round_trip_and_bad_ones_are_refused() {
        let key = ShardKey::of("2015-11-16", "i-deadbeef");
        assert_eq!(ShardKey::parse(&key.to_string()), Ok(key.clone()));
        assert_eq!(
            ShardKey::parse("2015-11-16#07").unwrap(),
            ShardKey {
                date: "2015-11-16".into(),
                shard: 7
            }
        );
        for bad in [
            "2015-11-16",
            "2015-11-16#",
            "2015-11-16#7",
            "2015-11-16#32",
            "2015-11-16#x1",
            "20151116#01",
            "2015-11-16#001",
        ] {
            assert!(ShardKey::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(ShardKey::day_prefix("2015-11-16"), "2015-11-16#");
    }

    #[test]
    fn reads_a_stream_image_and_sums_its_shard_exactly() {
        let image: serde_dynamo::Item = serde_json::from_value(serde_json::json!({
            "Counter": {"S": "COUNTER1"},
            "Date": {"S": "2015-11-16#03"},
            "Version": {"N": "12"},
            "Instances": {"M": {
                "i-deadbeef": {"M": {"Value": {"N": "123456"}, "Seq": {"S": "0055AED6DCD90281E500000000000000"}}},
                "i-flub": {"M": {"Value": {"N": "-1000"}}}
            }}
        }))
        .unwrap();
        let item: InstanceItem = serde_dynamo::from_item(image).unwrap();
        assert_eq!(item.subtotal(), Ok(122_456));
        assert_eq!((item.version, item.key.shard), (12, 3));
        assert_eq!(item.key.date, "2015-11-16");

        let mut big = item.clone();
        big.instances.insert(
            "a".into(),
            InstanceEntry {
                value: i64::MAX,
                seq: None,
            },
        );
        let err = big.subtotal().unwrap_err();
        assert!(err.to_string().contains("shard 03"), "{err}");
    }

    #[test]
    fn an_unsharded_or_unversioned_image_is_unreadable() {
        for image in [
            serde_json::json!({"Counter": {"S": "C"}, "Date": {"S": "2015-11-16"}, "Version": {"N": "1"}}),
            serde_json::json!({"Counter": {"S": "C"}, "Date": {"S": "2015-11-16#01"}}),
        ] {
            let image: serde_dynamo::Item = serde_json::from_value(image).unwrap();
            assert!(serde_dynamo::from_item::<_, InstanceItem>(image).is_err());
        }
    }

    #[test]
    fn number_sizes_follow_the_documented_rule() {
        assert_eq!(number_size("0"), 2);
        assert_eq!(number_size("7"), 2);
        assert_eq!(number_size("123456"), 4);
        assert_eq!(number_size("-9223372036854775807"), 11);
        assert_eq!(number_size("1000"), 2);
    }
}
