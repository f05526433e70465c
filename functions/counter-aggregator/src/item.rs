//! The counter-mapper's instance table item, as a stream image, and its total.
//!
//! ```text
//! { Counter: S, Date: S, Version: N, Instances: M { <instance-id>: M { Value: N, Seq: S } } }
//! ```
//!
//! `Version` counts the item's writes (counter-mapper adds one with each): the
//! image's place in the item's history, whatever order the stream records arrive in.
//! Images written before the mapper recorded it have none.
//!
//! The total is computed exactly (128-bit) and must fit a signed 64-bit integer:
//! an overflowing total is an error for that record, never a wrapped number.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct InstanceItem {
    #[serde(rename = "Counter")]
    pub counter: String,
    #[serde(rename = "Date")]
    pub date: String,
    /// The item's write count when this image was taken (absent on older items).
    #[serde(rename = "Version", default)]
    pub version: Option<u64>,
    /// Absent on an item the mapper has not finished creating: total 0.
    #[serde(rename = "Instances", default)]
    pub instances: BTreeMap<String, InstanceEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct InstanceEntry {
    #[serde(rename = "Value")]
    pub value: i64,
    /// The ordering stamp of the upload that wrote `value` (not used for the sum).
    #[serde(rename = "Seq", default)]
    pub seq: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "total of counter {counter:?} on {date} over {instances} instances is {total}, outside the signed 64-bit range"
)]
pub struct SumOverflow {
    pub counter: String,
    pub date: String,
    pub instances: usize,
    pub total: i128,
}

impl InstanceItem {
    /// The sum of every instance's value.
    pub fn total(&self) -> Result<i64, SumOverflow> {
        let total: i128 = self.instances.values().map(|e| i128::from(e.value)).sum();
        i64::try_from(total).map_err(|_| SumOverflow {
            counter: self.counter.clone(),
            date: self.date.clone(),
            instances: self.instances.len(),
            total,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(values: &[(&str, i64)]) -> InstanceItem {
        InstanceItem {
            counter: "COUNTER1".into(),
            date: "2015-11-16".into(),
            version: None,
            instances: values
                .iter()
                .map(|(id, v)| {
                    (
                        (*id).to_owned(),
                        InstanceEntry {
                            value: *v,
                            seq: None,
                        },
                    )
                })
                .collect(),
        }
    }

    #[test]
    fn sums_the_seed_instances() {
        let seed = item(&[
            ("i-deadbeef", 123456),
            ("i-beefdead", 12345),
            ("i-foobazzled", 54321),
            ("i-flub", 1000),
        ]);
        assert_eq!(seed.total(), Ok(191122));
    }

    #[test]
    fn no_instances_total_zero_and_negatives_count() {
        assert_eq!(item(&[]).total(), Ok(0));
        assert_eq!(item(&[("a", -5), ("b", 3)]).total(), Ok(-2));
    }

    #[test]
    fn intermediate_overflow_is_not_an_error_if_the_total_fits() {
        assert_eq!(
            item(&[("a", i64::MAX), ("b", 1), ("c", -2)]).total(),
            Ok(i64::MAX - 1)
        );
    }

    #[test]
    fn a_total_outside_i64_is_an_error_not_a_wrap() {
        let err = item(&[("a", i64::MAX), ("b", 1)]).total().unwrap_err();
        assert_eq!(err.total, i128::from(i64::MAX) + 1);
        assert_eq!(err.instances, 2);
        assert!(err.to_string().contains("COUNTER1"), "{err}");
        assert!(item(&[("a", i64::MIN), ("b", -1)]).total().is_err());
    }

    #[test]
    fn reads_a_stream_image_with_nested_entries() {
        let image: serde_dynamo::Item = serde_json::from_value(serde_json::json!({
            "Counter": {"S": "COUNTER1"},
            "Date": {"S": "2015-11-16"},
            "Version": {"N": "12"},
            "Instances": {"M": {
                "i-deadbeef": {"M": {"Value": {"N": "123456"}, "Seq": {"S": "0055AED6DCD90281E500000000000000"}}},
                "i-flub": {"M": {"Value": {"N": "-1000"}, "Seq": {"S": "0055AED6DCD90281E600000000000000"}}}
            }}
        }))
        .unwrap();
        let item: InstanceItem = serde_dynamo::from_item(image).unwrap();
        assert_eq!(item.total(), Ok(122456));
        assert_eq!(item.version, Some(12));
        assert_eq!(
            item.instances["i-flub"].seq.as_deref(),
            Some("0055AED6DCD90281E600000000000000")
        );
    }
}
