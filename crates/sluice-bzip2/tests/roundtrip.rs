//! Round trips through three independent decoders (the `bzip2` crate's libbz2-rs-sys, the
//! system `bzip2 -d`, Python's `bz2`), and the size against the system `bzip2`.

use std::io::{Read, Write};
use std::process::{Command, Stdio};

use proptest::prelude::*;
use sluice_bzip2::compress;

/// Deterministic pseudo-random bytes.
fn random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}

/// JSON lines like the archiver's Kinesis records.
fn json_lines(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 200);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut ts = 1_700_000_000_000u64;
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        ts += x % 50;
        out.extend_from_slice(
            format!(
                "{{\"event_id\":\"{:016x}\",\"player\":\"p{}\",\"kind\":\"{}\",\"score\":{},\"ts\":{}}}\n",
                x,
                x % 5000,
                ["login", "score", "purchase", "logout"][(x % 4) as usize],
                x % 100_000,
                ts
            )
            .as_bytes(),
        );
    }
    out.truncate(len);
    out
}

fn crate_decompress(compressed: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    bzip2::read::MultiBzDecoder::new(compressed)
        .read_to_end(&mut out)
        .expect("the bzip2 crate decodes the stream");
    out
}

fn pipe(program: &str, args: &[&str], input: &[u8]) -> Vec<u8> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{program} is required for this test: {e}"));
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input).unwrap());
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(
        output.status.success(),
        "{program} failed: {:?}",
        output.status
    );
    output.stdout
}

fn system_decompress(compressed: &[u8]) -> Vec<u8> {
    pipe("bzip2", &["-dc"], compressed)
}

fn python_decompress(compressed: &[u8]) -> Vec<u8> {
    pipe(
        "python3",
        &[
            "-c",
            "import bz2,sys; sys.stdout.buffer.write(bz2.decompress(sys.stdin.buffer.read()))",
        ],
        compressed,
    )
}

/// Compresses at `level` and checks all three decoders give `data` back.
fn roundtrip_all(data: &[u8], level: u32, what: &str) -> Vec<u8> {
    let compressed = compress(data, level);
    assert_eq!(&compressed[..4], format!("BZh{level}").as_bytes(), "{what}");
    assert!(crate_decompress(&compressed) == data, "bzip2 crate: {what}");
    assert!(system_decompress(&compressed) == data, "bzip2 -d: {what}");
    assert!(python_decompress(&compressed) == data, "python bz2: {what}");
    compressed
}

#[test]
fn empty_and_one_byte() {
    roundtrip_all(b"", 9, "empty");
    roundtrip_all(b"x", 9, "one byte");
    roundtrip_all(b"\0", 1, "one zero byte");
    roundtrip_all(b"xy", 9, "two bytes");
}

#[test]
fn random_bytes() {
    roundtrip_all(&random(300_000, 1), 9, "random 300 kB");
}

#[test]
fn runs_around_the_rle1_limits() {
    let mut data = Vec::new();
    for (i, len) in [1usize, 2, 3, 4, 5, 254, 255, 256, 259, 260, 510, 1000, 4, 3]
        .iter()
        .enumerate()
    {
        data.extend(std::iter::repeat_n(b'a' + (i % 3) as u8, *len));
    }
    roundtrip_all(&data, 9, "runs of 1..1000");
}

#[test]
fn two_megabytes_of_one_byte() {
    let data = vec![b'z'; 2_000_000];
    let compressed = roundtrip_all(&data, 9, "2 MB of one byte");
    assert!(compressed.len() < 200, "{} bytes", compressed.len());
}

#[test]
fn short_repeated_patterns() {
    // Periodic blocks: the block sort works on the primitive root and repeats it.
    for pattern in [&b"ab"[..], b"abc", b"abcabd", b"\x00\x01", b"hello world "] {
        let data: Vec<u8> = pattern.iter().copied().cycle().take(1_500_000).collect();
        roundtrip_all(&data, 9, &format!("{pattern:?} repeated"));
    }
    // A repeated pattern whose RLE1 form is periodic too.
    let unit: Vec<u8> = [&[b'q'; 10][..], b"rs"].concat();
    let data: Vec<u8> = unit.iter().copied().cycle().take(1_000_000).collect();
    roundtrip_all(&data, 9, "runs repeated");
}

#[test]
fn block_boundary_after_rle1() {
    // Random bytes have (almost) no runs: the RLE1 output is the input, and a level-9 block
    // holds 899 981 bytes.
    for len in [899_980, 899_981, 899_982, 2 * 899_981, 2 * 899_981 + 1] {
        let data = random(len, len as u64);
        let ours = roundtrip_all(&data, 9, &format!("random {len}"));
        // The blocks are libbz2's: the whole stream is the system bzip2's, byte for byte.
        assert!(ours == pipe("bzip2", &["-9c"], &data), "random {len}");
    }
    // Long runs straddling the boundary: 899 975 random bytes then runs of 300 bytes.
    let mut data = random(899_975, 7);
    for c in [1u8, 2, 3, 4] {
        data.extend(std::iter::repeat_n(c, 300));
    }
    let ours = roundtrip_all(&data, 9, "runs across the boundary");
    assert!(
        ours == pipe("bzip2", &["-9c"], &data),
        "runs across the boundary"
    );
}

#[test]
fn multi_block_and_every_level() {
    let data = json_lines(1_200_000);
    for level in 1..=9 {
        roundtrip_all(&data, level, &format!("json level {level}"));
    }
    let data = random(250_000, 3);
    for level in 1..=3 {
        roundtrip_all(&data, level, &format!("random level {level}"));
    }
}

#[test]
fn out_of_range_levels_are_clamped() {
    let data = json_lines(10_000);
    assert_eq!(compress(&data, 0), compress(&data, 1));
    assert_eq!(compress(&data, 42), compress(&data, 9));
}

#[test]
fn size_matches_system_bzip2() {
    let data = json_lines(3_000_000);
    let ours = roundtrip_all(&data, 9, "json 3 MB");
    let theirs = pipe("bzip2", &["-9c"], &data);
    assert!(
        ours.len() as f64 <= theirs.len() as f64 * 1.01,
        "ours {} vs bzip2 -9 {}",
        ours.len(),
        theirs.len()
    );
    // Same block boundaries, a unique transform for non-periodic blocks and libbz2's Huffman
    // procedure: the output is in fact libbz2's, byte for byte.
    assert!(
        ours == theirs,
        "ours {} vs bzip2 -9 {} bytes",
        ours.len(),
        theirs.len()
    );
    let theirs1 = pipe("bzip2", &["-1c"], &data);
    assert!(compress(&data, 1) == theirs1, "level 1");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_bytes_roundtrip(
        data in proptest::collection::vec(any::<u8>(), 0..5_000),
        level in 1u32..=9,
    ) {
        prop_assert_eq!(crate_decompress(&compress(&data, level)), data);
    }

    #[test]
    fn runs_roundtrip(
        runs in proptest::collection::vec((0u8..4, 1usize..600), 0..40),
        level in 1u32..=9,
    ) {
        let data: Vec<u8> = runs.iter().flat_map(|&(c, n)| std::iter::repeat_n(c, n)).collect();
        prop_assert_eq!(crate_decompress(&compress(&data, level)), data);
    }
}
