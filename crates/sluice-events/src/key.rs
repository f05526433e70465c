//! Object keys as S3 writes them into notifications, and sequencer ordering.

use std::cmp::Ordering;

use crate::error::KeyError;

/// Decodes an object key from an S3 event notification, exactly once.
///
/// S3 form-encodes notification keys (`application/x-www-form-urlencoded`):
/// a space is `+`, a literal `+` is `%2B`, a literal `%` is `%25`, and
/// non-ASCII characters are percent-encoded UTF-8 bytes. So: `+` becomes a
/// space, then `%XX` escapes become bytes, then the bytes must be UTF-8.
///
/// Strict: a `%` without two hex digits is an error rather than being kept
/// literally, because S3 never emits one and guessing would hide a key that
/// was decoded twice or never encoded.
pub fn decode_s3_key(raw: &str) -> Result<String, KeyError> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => {
                let high = bytes.get(i + 1).copied().and_then(hex_value);
                let low = bytes.get(i + 2).copied().and_then(hex_value);
                match (high, low) {
                    (Some(high), Some(low)) => {
                        out.push(high << 4 | low);
                        i += 3;
                    }
                    _ => {
                        return Err(KeyError::MalformedEscape {
                            key: raw.to_owned(),
                            offset: i,
                        });
                    }
                }
            }
            byte => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|e| KeyError::InvalidUtf8 {
        key: raw.to_owned(),
        valid_up_to: e.utf8_error().valid_up_to(),
    })
}

/// Encodes an object key as S3 writes it into a notification: the inverse of
/// [`decode_s3_key`], for building the event S3 would have sent (a backfill invokes a
/// function with it). Letters, digits and `-_.*/` stay; a space becomes `+`; every other
/// byte of the key's UTF-8 is `%XX` (upper-case hex).
pub fn encode_s3_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for &byte in key.as_bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' | b'/' => {
                out.push(byte as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// Orders two S3 `sequencer` values of events for the same object key.
///
/// As the S3 documentation prescribes: right-pad the shorter one with `0`s,
/// then compare lexicographically. Sequencers are hex, so the comparison
/// ignores ASCII case. Sequencers of different keys are not comparable in any
/// meaningful way (S3 only orders events per key).
pub fn compare_sequencers(a: &str, b: &str) -> Ordering {
    let len = a.len().max(b.len());
    let padded = |s: &str| {
        s.bytes()
            .map(|c| c.to_ascii_uppercase())
            .chain(std::iter::repeat(b'0'))
            .take(len)
            .collect::<Vec<u8>>()
    };
    padded(a).cmp(&padded(b))
}

/// Orders two Kinesis (or DynamoDB stream) sequence numbers.
///
/// They are arbitrarily large decimal integers sent as strings, so they
/// compare numerically: leading zeros are ignored, a longer number is
/// larger, equal lengths compare digit by digit. Inputs that are not all
/// digits still get a total order (by length, then bytes) but it means
/// nothing.
pub fn compare_sequence_numbers(a: &str, b: &str) -> Ordering {
    let a = a.trim_start_matches('0');
    let b = b.trim_start_matches('0');
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_encode_as_s3_writes_them_into_notifications() {
        assert_eq!(encode_s3_key("red flower.jpg"), "red+flower.jpg");
        assert_eq!(
            encode_s3_key("c++/100% café.json"),
            "c%2B%2B/100%25+caf%C3%A9.json"
        );
        assert_eq!(
            encode_s3_key("incoming/2026/11/p-0001.json.snappy"),
            "incoming/2026/11/p-0001.json.snappy"
        );
    }

    #[test]
    fn plus_decodes_to_space() {
        assert_eq!(decode_s3_key("my+file.json").unwrap(), "my file.json");
    }

    #[test]
    fn percent_2b_decodes_to_literal_plus() {
        assert_eq!(decode_s3_key("c%2B%2B+notes.txt").unwrap(), "c++ notes.txt");
    }

    #[test]
    fn percent_encoded_utf8_decodes_to_unicode() {
        assert_eq!(decode_s3_key("caf%C3%A9").unwrap(), "café");
        assert_eq!(decode_s3_key("caf%c3%a9").unwrap(), "café");
    }

    #[test]
    fn percent_25_decodes_to_literal_percent_only_once() {
        assert_eq!(decode_s3_key("100%25.csv").unwrap(), "100%.csv");
        // Decoding exactly once: `%2541` is `%41`, not `A`.
        assert_eq!(decode_s3_key("%2541").unwrap(), "%41");
    }

    #[test]
    fn slashes_and_escaped_separators_decode() {
        assert_eq!(
            decode_s3_key("raw/dt%3D2024-05-14/part%3A1.json").unwrap(),
            "raw/dt=2024-05-14/part:1.json"
        );
    }

    #[test]
    fn invalid_utf8_sequence_is_an_error_naming_the_key() {
        let err = decode_s3_key("bad%C3%28name").unwrap_err();
        assert_eq!(
            err,
            KeyError::InvalidUtf8 {
                key: "bad%C3%28name".into(),
                valid_up_to: 3
            }
        );
        assert!(err.to_string().contains("bad%C3%28name"));
        assert!(matches!(
            decode_s3_key("%FF"),
            Err(KeyError::InvalidUtf8 { .. })
        ));
    }

    #[test]
    fn truncated_or_non_hex_escape_is_an_error_with_offset() {
        assert_eq!(
            decode_s3_key("a%2").unwrap_err(),
            KeyError::MalformedEscape {
                key: "a%2".into(),
                offset: 1
            }
        );
        assert_eq!(
            decode_s3_key("ab%zz").unwrap_err(),
            KeyError::MalformedEscape {
                key: "ab%zz".into(),
                offset: 2
            }
        );
        assert!(decode_s3_key("%").is_err());
    }

    #[test]
    fn sequencers_compare_after_zero_padding_the_shorter() {
        // The S3 docs: shorter is right-padded with zeros before comparing.
        assert_eq!(
            compare_sequencers("0055AED6DCD9028", "0055AED6DCD90281E5"),
            Ordering::Less
        );
        assert_eq!(
            compare_sequencers("0055AED6DCD90281E5", "0055AED6DCD9028"),
            Ordering::Greater
        );
        assert_eq!(
            compare_sequencers("0055AED6DCD90281", "0055AED6DCD9028100"),
            Ordering::Equal
        );
        // A longer sequencer is not automatically later.
        assert_eq!(
            compare_sequencers("0062E99A88DC407460", "0062E99A88DC4075"),
            Ordering::Less
        );
        assert_eq!(compare_sequencers("A", "9FFFFFFF"), Ordering::Greater);
    }

    #[test]
    fn sequencers_compare_ignoring_hex_case() {
        assert_eq!(
            compare_sequencers("617f08299329d189", "617F08299329D189"),
            Ordering::Equal
        );
        assert_eq!(
            compare_sequencers("617f08299329d18a", "617F08299329D189"),
            Ordering::Greater
        );
    }

    #[test]
    fn sequence_numbers_compare_numerically_not_lexicographically() {
        let a = "49590338271490256608559692538361571095921575989136588898";
        let b = "49590338271490256608559692540925702759324208523137515618";
        assert_eq!(compare_sequence_numbers(a, b), Ordering::Less);
        assert_eq!(compare_sequence_numbers(b, a), Ordering::Greater);
        assert_eq!(compare_sequence_numbers(a, a), Ordering::Equal);
        // Lexicographic order would say "9" > "10".
        assert_eq!(compare_sequence_numbers("9", "10"), Ordering::Less);
        assert_eq!(compare_sequence_numbers("0010", "10"), Ordering::Equal);
    }
}
