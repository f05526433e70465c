//! Snappy in both of its wire formats, told apart automatically.
//!
//! * **Framed** ("framing format", what `snap::write::FrameEncoder`, `snzip`, and
//!   python-snappy's `stream_compress` write): starts with the stream identifier chunk
//!   `ff 06 00 00 73 4e 61 50 70 59` (`"sNaPpY"`), followed by CRC-checked chunks of at most
//!   64 KiB of output each.
//! * **Raw** ("block format", what python-snappy's `snappy.compress` and Avro's snappy codec
//!   write): a varint of the decompressed length followed by the compressed block.
//!
//! Decompression is bounded: the raw header's claimed length is checked against
//! [`DecompressLimits::max_output`] *before* anything is allocated, and framed input is
//! streamed and abandoned as soon as it would exceed the limit. A hostile 20-byte payload
//! claiming 4 GiB therefore costs nothing.
//!
//! A framed stream has no end marker, so a framed input cut exactly at a chunk boundary
//! decodes to a prefix of the original; cuts inside a chunk are reported as truncation.

use std::io::Read;

use snap::read::FrameDecoder;
use snap::write::FrameEncoder;

/// The stream identifier chunk that opens every framed snappy stream.
pub const STREAM_IDENTIFIER: [u8; 10] = *b"\xff\x06\x00\x00sNaPpY";

/// Default for [`DecompressLimits::max_output`]: 1 GiB.
pub const DEFAULT_MAX_OUTPUT: usize = 1 << 30;

/// Which snappy wire format an input uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnappyFormat {
    /// The framing format (starts with [`STREAM_IDENTIFIER`]).
    Framed,
    /// The raw block format (a varint length header, then one compressed block).
    Raw,
}

impl std::fmt::Display for SnappyFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SnappyFormat::Framed => "framed",
            SnappyFormat::Raw => "raw",
        })
    }
}

/// Upper bounds applied while decompressing untrusted input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecompressLimits {
    /// Largest decompressed output accepted, in bytes.
    pub max_output: usize,
}

impl Default for DecompressLimits {
    fn default() -> Self {
        Self {
            max_output: DEFAULT_MAX_OUTPUT,
        }
    }
}

/// Why a snappy input could not be decompressed.
#[derive(Debug, thiserror::Error)]
pub enum SnappyError {
    /// The input was empty: not even a raw header or a stream identifier.
    #[error("snappy input is empty (neither a framed stream identifier nor a raw length header)")]
    Empty,
    /// The input is not snappy in either format.
    #[error(
        "snappy input of {input_len} bytes is neither framed (no stream identifier) nor raw: {source}"
    )]
    NotSnappy {
        input_len: usize,
        #[source]
        source: snap::Error,
    },
    /// The input ends before its format says it should: inside the stream identifier or a
    /// chunk (framed), or before the length its header claims was produced (raw; plain data
    /// that is not snappy at all usually lands here too, as its first bytes read as a header).
    #[error("{format} snappy input of {input_len} bytes is truncated: {detail}")]
    Truncated {
        format: SnappyFormat,
        input_len: usize,
        detail: String,
    },
    /// The decompressed output would exceed the caller's limit.
    #[error(
        "{format} snappy input of {input_len} bytes decompresses to more than the limit of {limit} bytes{}",
        claimed.map(|c| format!(" (header claims {c} bytes)")).unwrap_or_default()
    )]
    TooLarge {
        format: SnappyFormat,
        input_len: usize,
        /// For raw input, the length claimed by its header.
        claimed: Option<usize>,
        limit: usize,
    },
    /// The input starts like its format but its body is corrupt.
    #[error("{format} snappy input of {input_len} bytes is corrupt: {reason}{}",
        if *format == SnappyFormat::Raw { NOT_FRAMED } else { "" })]
    Corrupt {
        format: SnappyFormat,
        input_len: usize,
        reason: String,
    },
}

/// Tells which snappy format `input` is in, without decompressing it.
///
/// Returns `Some(Framed)` when the input starts with (a prefix of) the stream identifier,
/// `Some(Raw)` when it starts with a plausible raw length header (a varint of at most
/// 5 bytes that fits in 32 bits), and `None` otherwise (including empty input). A `Raw`
/// answer is only a plausibility check: the block itself is verified by [`decompress`].
pub fn detect(input: &[u8]) -> Option<SnappyFormat> {
    if input.is_empty() {
        return None;
    }
    let n = input.len().min(STREAM_IDENTIFIER.len());
    if input[..n] == STREAM_IDENTIFIER[..n] {
        return Some(SnappyFormat::Framed);
    }
    snap::raw::decompress_len(input)
        .ok()
        .map(|_| SnappyFormat::Raw)
}

/// Decompresses raw or framed snappy (auto-detected) with the default 1 GiB output limit.
pub fn decompress(input: &[u8]) -> Result<Vec<u8>, SnappyError> {
    decompress_with_limit(input, DecompressLimits::default())
}

/// Decompresses raw or framed snappy (auto-detected), refusing output larger than
/// `limits.max_output` before allocating it.
pub fn decompress_with_limit(
    input: &[u8],
    limits: DecompressLimits,
) -> Result<Vec<u8>, SnappyError> {
    if input.is_empty() {
        return Err(SnappyError::Empty);
    }
    match detect(input) {
        Some(SnappyFormat::Framed) => decompress_framed(input, limits),
        Some(SnappyFormat::Raw) => decompress_raw(input, limits),
        None => Err(SnappyError::NotSnappy {
            input_len: input.len(),
            source: snap::raw::decompress_len(input)
                .err()
                .unwrap_or(snap::Error::Header),
        }),
    }
}

/// [`decompress_with_limit`] on up to `threads` threads: a framed input's chunks are
/// independent (each holds its own CRC-32C), so they are indexed, then decompressed and
/// checked in parallel into their places in the output. Raw input, one thread, or anything
/// the fast path does not accept as a well-formed stream goes through
/// [`decompress_with_limit`], so the output and every error are the same.
pub fn decompress_with_limit_threads(
    input: &[u8],
    limits: DecompressLimits,
    threads: usize,
) -> Result<Vec<u8>, SnappyError> {
    if threads > 1
        && input.starts_with(&STREAM_IDENTIFIER)
        && let Some(out) = framed_parallel(input, limits, threads)
    {
        return Ok(out);
    }
    decompress_with_limit(input, limits)
}

/// One data chunk of a framed stream.
struct Chunk<'a> {
    compressed: bool,
    /// The masked CRC-32C of the chunk's output, as stored.
    crc: u32,
    body: &'a [u8],
    out_len: usize,
}

/// `None` for anything but a complete, well-formed stream within the limit.
fn framed_parallel(input: &[u8], limits: DecompressLimits, threads: usize) -> Option<Vec<u8>> {
    const MAX_CHUNK_OUTPUT: usize = 65_536;
    let mut chunks = Vec::with_capacity(input.len() / 16_384 + 1);
    let mut total = 0usize;
    let mut rest = input;
    while !rest.is_empty() {
        let head = rest.get(..4)?;
        let len = usize::from(head[1]) | usize::from(head[2]) << 8 | usize::from(head[3]) << 16;
        let data = rest.get(4..4 + len)?;
        rest = &rest[4 + len..];
        match head[0] {
            0xff if data == b"sNaPpY" => {}
            kind @ (0x00 | 0x01) if len >= 4 => {
                let body = &data[4..];
                let compressed = kind == 0x00;
                let out_len = if compressed {
                    snap::raw::decompress_len(body).ok()?
                } else {
                    body.len()
                };
                if out_len > MAX_CHUNK_OUTPUT {
                    return None;
                }
                total += out_len;
                if total > limits.max_output {
                    return None;
                }
                let crc = u32::from_le_bytes(data[..4].try_into().expect("4 bytes"));
                chunks.push(Chunk {
                    compressed,
                    crc,
                    body,
                    out_len,
                });
            }
            0x80..=0xfe => {} // skippable and padding chunks
            _ => return None,
        }
    }
    let mut out = vec![0u8; total];
    let mut places: Vec<(&Chunk<'_>, &mut [u8])> = Vec::with_capacity(chunks.len());
    let mut free = out.as_mut_slice();
    for chunk in &chunks {
        let (place, after) = free.split_at_mut(chunk.out_len);
        places.push((chunk, place));
        free = after;
    }
    let per_thread = places.len().div_ceil(threads.max(1)).max(1);
    let all_ok = std::thread::scope(|scope| {
        let workers: Vec<_> = places
            .chunks_mut(per_thread)
            .map(|part| {
                scope.spawn(move || {
                    let mut decoder = snap::raw::Decoder::new();
                    part.iter_mut().all(|(chunk, place)| {
                        let written = if chunk.compressed {
                            decoder.decompress(chunk.body, place).ok()
                        } else {
                            place.copy_from_slice(chunk.body);
                            Some(chunk.body.len())
                        };
                        written == Some(place.len()) && masked_crc32c(place) == chunk.crc
                    })
                })
            })
            .collect();
        workers
            .into_iter()
            .all(|w| w.join().expect("a snappy thread panicked"))
    });
    all_ok.then_some(out)
}

/// The framing format's checksum: CRC-32C, rotated and offset ("masked").
fn masked_crc32c(data: &[u8]) -> u32 {
    let crc = crc_fast::checksum(crc_fast::CrcAlgorithm::Crc32Iscsi, data) as u32;
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

fn decompress_raw(input: &[u8], limits: DecompressLimits) -> Result<Vec<u8>, SnappyError> {
    let claimed = snap::raw::decompress_len(input).map_err(|source| SnappyError::NotSnappy {
        input_len: input.len(),
        source,
    })?;
    if claimed > limits.max_output {
        return Err(SnappyError::TooLarge {
            format: SnappyFormat::Raw,
            input_len: input.len(),
            claimed: Some(claimed),
            limit: limits.max_output,
        });
    }
    // The best snappy can do is a 3-byte copy tag producing 64 bytes, so no valid block
    // expands more than ~22x; a header claiming over 64x the input is lying. Refuse before
    // the decoder allocates the claimed length.
    if claimed > input.len().saturating_mul(64).saturating_add(64) {
        return Err(SnappyError::Truncated {
            format: SnappyFormat::Raw,
            input_len: input.len(),
            detail: format!(
                "header claims {claimed} bytes, more than {} input bytes can hold{NOT_FRAMED}",
                input.len()
            ),
        });
    }
    snap::raw::Decoder::new()
        .decompress_vec(input)
        .map_err(|err| raw_error(input.len(), claimed, err))
}

/// Appended to raw-format errors: the input was tried as raw because it was not framed.
const NOT_FRAMED: &str = " (and it is not framed snappy: no stream identifier)";

fn raw_error(input_len: usize, claimed: usize, err: snap::Error) -> SnappyError {
    match err {
        // The block ends before the output the header promised was produced.
        snap::Error::HeaderMismatch { .. }
        | snap::Error::Literal { .. }
        | snap::Error::CopyRead { .. } => SnappyError::Truncated {
            format: SnappyFormat::Raw,
            input_len,
            detail: format!(
                "header claims {claimed} bytes but the block ends early ({err}){NOT_FRAMED}"
            ),
        },
        other => SnappyError::Corrupt {
            format: SnappyFormat::Raw,
            input_len,
            reason: other.to_string(),
        },
    }
}

fn decompress_framed(input: &[u8], limits: DecompressLimits) -> Result<Vec<u8>, SnappyError> {
    if input.len() < STREAM_IDENTIFIER.len() {
        return Err(SnappyError::Truncated {
            format: SnappyFormat::Framed,
            input_len: input.len(),
            detail: "ends inside the stream identifier".into(),
        });
    }
    let mut decoder = FrameDecoder::new(input);
    // Framed chunks hold at most 64 KiB of output; guess a 4x ratio for the first allocation
    // but never more than the limit.
    let mut out = Vec::with_capacity(input.len().saturating_mul(4).min(limits.max_output));
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = decoder
            .read(&mut buf)
            .map_err(|err| framed_error(input.len(), err))?;
        if n == 0 {
            return Ok(out);
        }
        if out.len() + n > limits.max_output {
            return Err(SnappyError::TooLarge {
                format: SnappyFormat::Framed,
                input_len: input.len(),
                claimed: None,
                limit: limits.max_output,
            });
        }
        out.extend_from_slice(&buf[..n]);
    }
}

fn framed_error(input_len: usize, err: std::io::Error) -> SnappyError {
    if err.kind() == std::io::ErrorKind::UnexpectedEof {
        return SnappyError::Truncated {
            format: SnappyFormat::Framed,
            input_len,
            detail: "ends inside a chunk".into(),
        };
    }
    SnappyError::Corrupt {
        format: SnappyFormat::Framed,
        input_len,
        reason: err.to_string(),
    }
}

/// Compresses `input` in the raw block format (python-snappy's `snappy.compress`).
///
/// # Panics
/// If `input` is larger than snappy's raw-format limit of about 4 GiB.
pub fn compress_raw(input: &[u8]) -> Vec<u8> {
    snap::raw::Encoder::new()
        .compress_vec(input)
        .expect("raw snappy input larger than 4 GiB")
}

/// Compresses `input` in the framing format.
pub fn compress_framed(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len() / 2 + STREAM_IDENTIFIER.len());
    {
        use std::io::Write;
        let mut encoder = FrameEncoder::new(&mut out);
        encoder
            .write_all(input)
            .expect("writing to a Vec cannot fail");
        encoder.flush().expect("writing to a Vec cannot fail");
    }
    if out.is_empty() {
        // The encoder writes the stream identifier lazily, so empty input would give an
        // empty (undetectable) output; a lone identifier is the valid empty stream.
        out.extend_from_slice(&STREAM_IDENTIFIER);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn json_lines(n: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for i in 0..n {
            out.extend_from_slice(
                format!(
                    "{{\"event\":\"match_end\",\"player_id\":\"p-{i:06}\",\"score\":{}}}\n",
                    i * 7 % 1000
                )
                .as_bytes(),
            );
        }
        out
    }

    #[test]
    fn decompresses_raw_block_format() {
        let data = json_lines(500);
        let compressed = compress_raw(&data);
        assert_eq!(detect(&compressed), Some(SnappyFormat::Raw));
        assert_eq!(decompress(&compressed).unwrap(), data);
    }

    #[test]
    fn decompresses_python_snappy_compress_output() {
        // `snappy.compress(b"hello hello hello hello")`, python-snappy 0.7.
        let python = b"\x17\x14hello B\x06\x00";
        assert_eq!(detect(python), Some(SnappyFormat::Raw));
        assert_eq!(decompress(python).unwrap(), b"hello hello hello hello");
    }

    #[test]
    fn decompresses_python_snappy_stream_compress_output() {
        // `snappy.stream_compress` of `b'{"a":1}\n' * 3`, python-snappy 0.7.
        let python =
            b"\xff\x06\x00\x00sNaPpY\x00\x11\x00\x00\x07\xe3\xe0\xda\x18\x1c{\"a\":1}\n>\x08\x00";
        assert_eq!(detect(python), Some(SnappyFormat::Framed));
        assert_eq!(decompress(python).unwrap(), b"{\"a\":1}\n".repeat(3));
    }

    #[test]
    fn threaded_framed_decompression_gives_the_same_output_and_errors() {
        let text = json_lines(40_000);
        let framed = compress_framed(&text);
        assert!(framed.len() > 4 * 65_536, "several chunks");
        let limits = DecompressLimits::default();
        for threads in [1, 2, 3, 16] {
            assert_eq!(
                decompress_with_limit_threads(&framed, limits, threads).unwrap(),
                text,
                "{threads} threads"
            );
        }
        // The fast path itself took it (not the fallback): same bytes from the chunk index.
        assert_eq!(framed_parallel(&framed, limits, 2).unwrap(), text);
        // Python's stream_compress output, raw input, and every broken input: same as the
        // one-thread path, error for error.
        let mut corrupt = framed.clone();
        let last = corrupt.len() - 100;
        corrupt[last] ^= 0x55;
        let mut bad_crc = framed.clone();
        bad_crc[STREAM_IDENTIFIER.len() + 4] ^= 1;
        let cases: Vec<Vec<u8>> = vec![
            compress_raw(&text),
            framed[..framed.len() - 7].to_vec(),
            corrupt,
            bad_crc,
            STREAM_IDENTIFIER.to_vec(),
            [STREAM_IDENTIFIER.as_slice(), b"\x02\x01\x00\x00x"].concat(),
        ];
        for case in cases {
            let one = decompress_with_limit(&case, limits).map_err(|e| e.to_string());
            let many = decompress_with_limit_threads(&case, limits, 4).map_err(|e| e.to_string());
            assert_eq!(one, many);
        }
        assert!(framed_parallel(&bad_crc_of(&framed), limits, 2).is_none());
        let small = DecompressLimits {
            max_output: text.len() - 1,
        };
        assert_eq!(
            decompress_with_limit_threads(&framed, small, 2).map_err(|e| e.to_string()),
            decompress_with_limit(&framed, small).map_err(|e| e.to_string())
        );
    }

    fn bad_crc_of(framed: &[u8]) -> Vec<u8> {
        let mut bad = framed.to_vec();
        bad[STREAM_IDENTIFIER.len() + 4] ^= 1;
        bad
    }

    #[test]
    fn decompresses_framed_format() {
        let data = json_lines(5_000); // several 64 KiB chunks
        let compressed = compress_framed(&data);
        assert!(compressed.starts_with(&STREAM_IDENTIFIER));
        assert_eq!(detect(&compressed), Some(SnappyFormat::Framed));
        assert_eq!(decompress(&compressed).unwrap(), data);
    }

    #[test]
    fn decompresses_empty_payloads_in_both_formats() {
        assert_eq!(decompress(&compress_raw(b"")).unwrap(), b"");
        assert_eq!(compress_framed(b""), STREAM_IDENTIFIER);
        assert_eq!(decompress(&compress_framed(b"")).unwrap(), b"");
    }

    #[test]
    fn rejects_empty_input() {
        assert!(matches!(decompress(b""), Err(SnappyError::Empty)));
        assert_eq!(detect(b""), None);
    }

    #[test]
    fn rejects_garbage_naming_both_formats() {
        // 0xff bytes never end a varint within 5 bytes: not a raw header, not a stream id.
        let garbage = [0xffu8, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0x02];
        assert_eq!(detect(&garbage), None);
        let err = decompress(&garbage).unwrap_err();
        assert!(
            matches!(err, SnappyError::NotSnappy { input_len: 8, .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("neither framed"), "{err}");
    }

    #[test]
    fn rejects_text_that_looks_like_a_raw_header() {
        let err = decompress(b"this is plain text, not snappy at all").unwrap_err();
        assert!(err.to_string().contains("not framed snappy"), "{err}");
        assert!(
            matches!(
                err,
                SnappyError::Truncated { .. } | SnappyError::Corrupt { .. }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn reports_truncated_raw_input() {
        let compressed = compress_raw(&json_lines(200));
        let cut = &compressed[..compressed.len() / 2];
        let err = decompress(cut).unwrap_err();
        assert!(
            matches!(
                err,
                SnappyError::Truncated {
                    format: SnappyFormat::Raw,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn reports_truncated_framed_input_inside_a_chunk() {
        let compressed = compress_framed(&json_lines(200));
        let cut = &compressed[..compressed.len() - 7];
        let err = decompress(cut).unwrap_err();
        assert!(
            matches!(
                err,
                SnappyError::Truncated {
                    format: SnappyFormat::Framed,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn reports_truncated_stream_identifier_as_framed() {
        let err = decompress(&STREAM_IDENTIFIER[..6]).unwrap_err();
        assert!(
            matches!(
                err,
                SnappyError::Truncated {
                    format: SnappyFormat::Framed,
                    input_len: 6,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn reports_corrupt_framed_checksum() {
        let mut compressed = compress_framed(&json_lines(50));
        let last = compressed.len() - 1;
        compressed[last] ^= 0x55;
        let err = decompress(&compressed).unwrap_err();
        assert!(
            matches!(
                err,
                SnappyError::Corrupt {
                    format: SnappyFormat::Framed,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn refuses_raw_header_claiming_more_than_the_limit_before_allocating() {
        // Varint 0xffffffff (4 GiB - 1) followed by a few bytes of "block".
        let hostile = [0xffu8, 0xff, 0xff, 0xff, 0x0f, 0x00, 0x41];
        let err = decompress(&hostile).unwrap_err();
        match err {
            SnappyError::TooLarge {
                format: SnappyFormat::Raw,
                claimed: Some(claimed),
                limit,
                ..
            } => {
                assert_eq!(claimed, 0xffff_ffff);
                assert_eq!(limit, DEFAULT_MAX_OUTPUT);
            }
            other => panic!("expected TooLarge, got {other:?}"),
        }
    }

    #[test]
    fn refuses_raw_header_claiming_more_than_the_input_can_expand_to() {
        // Claims 100 MB (under the default limit) from 7 bytes of input.
        let mut hostile = Vec::new();
        let mut n: u32 = 100_000_000;
        while n >= 0x80 {
            hostile.push((n as u8) | 0x80);
            n >>= 7;
        }
        hostile.push(n as u8);
        hostile.extend_from_slice(&[0x00, 0x41]);
        let err = decompress(&hostile).unwrap_err();
        assert!(matches!(err, SnappyError::Truncated { .. }), "{err:?}");
    }

    #[test]
    fn enforces_caller_limit_on_raw_input() {
        let data = vec![b'a'; 10_000];
        let compressed = compress_raw(&data);
        let limits = DecompressLimits { max_output: 9_999 };
        let err = decompress_with_limit(&compressed, limits).unwrap_err();
        assert!(
            matches!(
                err,
                SnappyError::TooLarge {
                    claimed: Some(10_000),
                    limit: 9_999,
                    ..
                }
            ),
            "{err:?}"
        );
        let exact = DecompressLimits { max_output: 10_000 };
        assert_eq!(decompress_with_limit(&compressed, exact).unwrap(), data);
    }

    #[test]
    fn enforces_caller_limit_on_framed_input() {
        let data = vec![b'a'; 300_000];
        let compressed = compress_framed(&data);
        let limits = DecompressLimits {
            max_output: 200_000,
        };
        let err = decompress_with_limit(&compressed, limits).unwrap_err();
        assert!(
            matches!(
                err,
                SnappyError::TooLarge {
                    format: SnappyFormat::Framed,
                    limit: 200_000,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("200000"), "{err}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn raw_roundtrips_any_bytes(data in proptest::collection::vec(any::<u8>(), 0..4096)) {
            prop_assert_eq!(decompress(&compress_raw(&data)).unwrap(), data);
        }

        #[test]
        fn framed_roundtrips_any_bytes(data in proptest::collection::vec(any::<u8>(), 0..4096)) {
            prop_assert_eq!(decompress(&compress_framed(&data)).unwrap(), data);
        }

        #[test]
        fn arbitrary_input_never_panics(data in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decompress(&data);
        }
    }
}
