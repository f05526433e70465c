//! Properties of `decode_s3_key` against an independent S3-style encoder.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use proptest::prelude::*;
use sluice_events::{decode_s3_key, encode_s3_key};

/// Characters S3 leaves alone in notification keys; everything else is
/// percent-encoded UTF-8, and a space becomes `+`.
const S3_KEEPS: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'*')
    .remove(b'/');

fn s3_encode(key: &str) -> String {
    utf8_percent_encode(key, S3_KEEPS)
        .to_string()
        .replace("%20", "+")
}

#[test]
fn encoder_matches_s3_examples() {
    assert_eq!(s3_encode("red flower.jpg"), "red+flower.jpg");
    assert_eq!(
        s3_encode("c++/100% café.json"),
        "c%2B%2B/100%25+caf%C3%A9.json"
    );
}

proptest! {
    #[test]
    fn decoding_arbitrary_text_never_panics(raw in any::<String>()) {
        let _ = decode_s3_key(&raw);
    }

    #[test]
    fn decoding_escape_heavy_text_never_panics(raw in "[%+0-9a-fA-Fzé/ ]{0,40}") {
        let _ = decode_s3_key(&raw);
    }

    #[test]
    fn decode_inverts_s3_encoding(key in any::<String>()) {
        prop_assert_eq!(decode_s3_key(&s3_encode(&key)).unwrap(), key);
    }

    #[test]
    fn the_crates_encoder_is_s3s_and_decodes_back(key in any::<String>()) {
        prop_assert_eq!(encode_s3_key(&key), s3_encode(&key));
        prop_assert_eq!(decode_s3_key(&encode_s3_key(&key)).unwrap(), key);
    }

    #[test]
    fn decode_removes_exactly_one_layer_of_encoding(key in "[ -~é€😀]{0,30}") {
        let once = s3_encode(&key);
        let twice = s3_encode(&once);
        prop_assert_eq!(decode_s3_key(&twice).unwrap(), once);
    }

    #[test]
    fn keys_without_special_characters_decode_to_themselves(key in "[A-Za-z0-9/._*-]{0,40}") {
        prop_assert_eq!(decode_s3_key(&key).unwrap(), key);
    }
}
