//! Snappy auto-detect + decompress (`sluice_codec::snappy`), the avro-converter's first
//! step on every uploaded object.
//!
//! Checks, for any bytes: decompression never panics and never allocates past its limit
//! (a header claiming gigabytes is refused up front: `just fuzz` runs with a small
//! `-malloc_limit_mb`, so an allocation of the claimed size would be a crash); output never
//! exceeds the limit; input `detect` calls neither format is refused as not snappy; and
//! both compressors round-trip the bytes through the auto-detecting decompressor.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_codec::snappy::{
    self, DecompressLimits, SnappyError, SnappyFormat, compress_framed, compress_raw,
};

/// Small enough that the limit path is reached often; big enough for real chunks.
const LIMIT: usize = 256 * 1024;

/// Any single allocation over 64 MiB is a crash (hostile length headers).
#[global_allocator]
static ALLOC: sluice_fuzz::LimitedAlloc = sluice_fuzz::LimitedAlloc;

fuzz_target!(|data: &[u8]| {
    let limits = DecompressLimits { max_output: LIMIT };
    match snappy::decompress_with_limit(data, limits) {
        Ok(out) => {
            assert!(out.len() <= LIMIT, "{} bytes out, limit {LIMIT}", out.len());
            assert!(snappy::detect(data).is_some(), "decoded undetectable input");
        }
        Err(SnappyError::Empty) => assert!(data.is_empty()),
        Err(SnappyError::NotSnappy { input_len, .. }) => {
            assert_eq!(input_len, data.len());
            assert_eq!(snappy::detect(data), None);
        }
        Err(SnappyError::TooLarge { limit, .. }) => assert_eq!(limit, LIMIT),
        Err(SnappyError::Truncated { format, .. } | SnappyError::Corrupt { format, .. }) => {
            assert_eq!(snappy::detect(data), Some(format));
        }
    }
    // The default (1 GiB) limit must be just as safe on hostile headers.
    let _ = snappy::decompress(data);

    let raw = compress_raw(data);
    assert_eq!(snappy::detect(&raw), Some(SnappyFormat::Raw));
    assert_eq!(snappy::decompress(&raw).expect("raw round trip"), data);

    let framed = compress_framed(data);
    assert_eq!(snappy::detect(&framed), Some(SnappyFormat::Framed));
    assert_eq!(
        snappy::decompress(&framed).expect("framed round trip"),
        data
    );
});
