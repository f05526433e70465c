//! The bzip2 encoder (`sluice_bzip2::compress`), what the kinesis-archiver runs on every
//! batch.
//!
//! The first byte picks the level (1 + byte % 9). With its top bit set, the rest is repeated
//! (each copy xored with its index when bit 6 is set too) to 99–230 kB at level 1 or 2, so
//! inputs cross block boundaries and make long repeats and runs.
//!
//! Checks: the output is one standard bzip2 stream (`BZh<level>`) that an independent
//! decoder (the `bzip2` crate's libbz2-rs-sys) reads back to the input.
#![no_main]

use std::borrow::Cow;
use std::io::Read;

use libfuzzer_sys::fuzz_target;

/// Any single allocation over 64 MiB is a crash.
#[global_allocator]
static ALLOC: sluice_fuzz::LimitedAlloc = sluice_fuzz::LimitedAlloc;

fuzz_target!(|data: &[u8]| {
    let (control, rest) = data.split_first().map_or((0, data), |(&c, r)| (c, r));
    let mut level = u32::from(control % 9) + 1;
    let input: Cow<'_, [u8]> = if control & 0x80 != 0 && !rest.is_empty() {
        level = 1 + u32::from(control & 1);
        let target = 99_000 + usize::from(rest[0]) * 512 + rest.len();
        let mut out = Vec::with_capacity(target + rest.len());
        let mut copy = 0u8;
        while out.len() < target {
            let mask = if control & 0x40 != 0 { copy } else { 0 };
            out.extend(rest.iter().map(|b| b ^ mask));
            copy = copy.wrapping_add(1);
        }
        Cow::Owned(out)
    } else {
        Cow::Borrowed(rest)
    };

    let compressed = sluice_bzip2::compress(&input, level);
    assert_eq!(&compressed[..4], format!("BZh{level}").as_bytes());
    let mut back = Vec::with_capacity(input.len());
    bzip2::read::BzDecoder::new(&compressed[..])
        .read_to_end(&mut back)
        .expect("the bzip2 crate decodes the stream");
    assert!(
        back == *input,
        "round trip differs ({} bytes in)",
        input.len()
    );
});
