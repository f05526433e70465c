//! The per-instance ordering stamp stored beside each value: the S3 event's
//! `sequencer`, normalised so that DynamoDB's string comparison orders it.
//!
//! S3 orders events *for one key* by sequencer: right-pad the shorter one with
//! `0`s, then compare as hex strings (`sluice_events::compare_sequencers`).
//! DynamoDB compares strings byte by byte (UTF-8 binary) in a condition
//! expression, so a stamp is the sequencer in upper case, right-padded with `0`
//! to [`STAMP_WIDTH`] characters: two stamps then compare in a condition exactly
//! as their sequencers compare by the S3 rule. Sequencers longer than the width
//! (S3 sends 16–18 characters today) or not hex are rejected rather than guessed.

/// Characters in a stored stamp.
pub const STAMP_WIDTH: usize = 32;

/// A sequencer in its stored, lexicographically comparable form.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OrderingStamp(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StampError {
    #[error("the event has no s3.object.sequencer, so the upload cannot be ordered")]
    Missing,
    #[error("sequencer {sequencer:?} is not hexadecimal")]
    NotHex { sequencer: String },
    #[error("sequencer {sequencer:?} is longer than {STAMP_WIDTH} characters")]
    TooLong { sequencer: String },
}

impl OrderingStamp {
    pub fn from_sequencer(sequencer: Option<&str>) -> Result<Self, StampError> {
        let sequencer = sequencer.map(str::trim).filter(|s| !s.is_empty());
        let Some(sequencer) = sequencer else {
            return Err(StampError::Missing);
        };
        if !sequencer.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(StampError::NotHex {
                sequencer: sequencer.to_owned(),
            });
        }
        if sequencer.len() > STAMP_WIDTH {
            return Err(StampError::TooLong {
                sequencer: sequencer.to_owned(),
            });
        }
        let mut stamp = sequencer.to_ascii_uppercase();
        stamp.extend(std::iter::repeat_n('0', STAMP_WIDTH - sequencer.len()));
        Ok(OrderingStamp(stamp))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use sluice_events::compare_sequencers;

    fn stamp(s: &str) -> OrderingStamp {
        OrderingStamp::from_sequencer(Some(s)).unwrap()
    }

    #[test]
    fn pads_right_to_the_fixed_width_in_upper_case() {
        assert_eq!(
            stamp("0055aed6dcd90281e5").as_str(),
            "0055AED6DCD90281E500000000000000"
        );
        assert_eq!(stamp("0055AED6DCD90281E5").as_str().len(), STAMP_WIDTH);
    }

    #[test]
    fn orders_as_the_s3_rule_where_plain_string_order_would_not() {
        // Plain string order says the shorter is smaller; the S3 rule pads first.
        assert!("0055AED6DCD90281" < "0055AED6DCD9028100");
        assert_eq!(stamp("0055AED6DCD90281"), stamp("0055AED6DCD9028100"));
        // A longer sequencer is not automatically later.
        assert!(stamp("0062E99A88DC4075") > stamp("0062E99A88DC407460"));
        // Plain string order puts lower case after upper case; hex digits ignore case.
        assert!("0055aed6" > "0055AED7");
        assert!(stamp("0055aed6") < stamp("0055AED7"));
        assert_eq!(stamp("617f08299329d189"), stamp("617F08299329D189"));
    }

    #[test]
    fn missing_non_hex_and_overlong_sequencers_are_errors() {
        assert_eq!(
            OrderingStamp::from_sequencer(None),
            Err(StampError::Missing)
        );
        assert_eq!(
            OrderingStamp::from_sequencer(Some("  ")),
            Err(StampError::Missing)
        );
        assert!(matches!(
            OrderingStamp::from_sequencer(Some("00G1")),
            Err(StampError::NotHex { .. })
        ));
        let long = "A".repeat(STAMP_WIDTH + 1);
        assert!(matches!(
            OrderingStamp::from_sequencer(Some(&long)),
            Err(StampError::TooLong { .. })
        ));
        assert!(OrderingStamp::from_sequencer(Some(&long[1..])).is_ok());
    }

    proptest! {
        #[test]
        fn stamp_order_is_the_s3_sequencer_order(a in "[0-9a-fA-F]{1,32}", b in "[0-9a-fA-F]{1,32}") {
            prop_assert_eq!(stamp(&a).as_str().cmp(stamp(&b).as_str()), compare_sequencers(&a, &b));
        }
    }
}
