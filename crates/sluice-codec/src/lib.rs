//! The byte-level codecs of the sluice pipelines.
//!
//! What it is for:
//!
//! * [`snappy`]: decompress snappy in either wire format (framed or raw block, auto-detected),
//!   with a bound on the output so hostile input cannot exhaust memory; compress in both.
//! * [`bzip2`]: compress (optionally in parallel, as a multi-stream file readable by
//!   `bzip2 -d` and Python's `bz2`) and decompress multi-stream bzip2.
//! * [`avro`]: parse `.avsc` schemas, coerce JSON values into Avro values with errors that
//!   name the field path, and write Object Container Files (null, snappy or deflate codec)
//!   that are byte-for-byte identical when rewritten with the same records.
//!
//! What it is not for: no I/O beyond in-memory buffers and `std::io::Write`, no AWS, no
//! knowledge of object keys or event shapes (callers pass seeds and limits in), no schema
//! registry, no Avro schema evolution/resolution on read.
//!
//! All functions are synchronous and CPU-bound; call them from `spawn_blocking` in async
//! handlers when inputs are large.

pub mod avro;
pub mod bzip2;
pub mod snappy;

pub use snappy::{DecompressLimits, SnappyError, SnappyFormat};

/// The available parallelism of this process (the vCPUs of the Lambda), at least 1.
pub fn available_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// A configured thread count: `0` means [`available_threads`], anything else itself.
pub fn threads(requested: usize) -> usize {
    match requested {
        0 => available_threads(),
        n => n,
    }
}
