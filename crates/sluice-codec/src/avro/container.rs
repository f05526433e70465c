//! Avro Object Container Files that are byte-for-byte reproducible.
//!
//! Idempotent pipelines rewrite the same output object on redelivery, so the same records must
//! produce the same bytes. apache-avro's `Writer` does not: it draws a random sync marker,
//! writes the header metadata map in `HashMap` order (with a codec set there are two entries,
//! in either order) and writes map values in `HashMap` order. [`ContainerWriter`] writes the
//! same format itself, deterministically:
//!
//! * header `Obj\x01`, metadata `avro.codec` then `avro.schema` (the schema JSON as
//!   apache-avro serialises it), then the sync marker;
//! * the sync marker is [`sync_marker`]: a 128-bit FNV-1a hash of the schema's Parsing
//!   Canonical Form and a caller-given seed (use the output key, so different files get
//!   different markers while a rewrite of one file gets the same);
//! * data blocks of about [`DEFAULT_BLOCK_SIZE`] uncompressed bytes, each compressed with
//!   apache-avro's codec implementation, map entries sorted by key.
//!
//! Any Avro reader (apache-avro's `Reader`, fastavro, Java, Spark, Athena) reads the result.

use std::borrow::Borrow;
use std::io::Write;
use std::str::FromStr;

use apache_avro::schema::ResolvedSchema;
use apache_avro::types::Value;
use apache_avro::{Codec, DeflateSettings, Schema};

use super::AvroError;
use super::encode::{DatumEncoder, write_bytes, write_long};

/// Uncompressed bytes buffered per data block before it is compressed and written.
pub const DEFAULT_BLOCK_SIZE: usize = 64 * 1024;

const MAGIC: &[u8; 4] = b"Obj\x01";

/// Block compression of a container file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ContainerCodec {
    /// Uncompressed blocks.
    #[default]
    Null,
    /// Raw snappy blocks, each followed by the CRC32 of its uncompressed bytes.
    Snappy,
    /// Raw deflate (RFC 1951) blocks at the default level.
    Deflate,
}

impl ContainerCodec {
    /// The name written to the `avro.codec` header (`null`, `snappy`, `deflate`).
    pub fn name(self) -> &'static str {
        match self {
            ContainerCodec::Null => "null",
            ContainerCodec::Snappy => "snappy",
            ContainerCodec::Deflate => "deflate",
        }
    }

    fn apache(self) -> Codec {
        match self {
            ContainerCodec::Null => Codec::Null,
            ContainerCodec::Snappy => Codec::Snappy,
            ContainerCodec::Deflate => Codec::Deflate(DeflateSettings::default()),
        }
    }
}

impl std::fmt::Display for ContainerCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ContainerCodec {
    type Err = AvroError;

    /// Parses `null`, `snappy` or `deflate` (exactly, as in the `avro.codec` header).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "null" => Ok(ContainerCodec::Null),
            "snappy" => Ok(ContainerCodec::Snappy),
            "deflate" => Ok(ContainerCodec::Deflate),
            other => Err(AvroError::UnknownCodec {
                given: other.to_owned(),
            }),
        }
    }
}

/// The 16-byte sync marker for `schema` and `seed`: FNV-1a (128-bit) of
/// `"sluice-avro-sync\0" + canonical form + "\0" + seed`. Stable across processes, platforms
/// and releases.
pub fn sync_marker(schema: &Schema, seed: &[u8]) -> [u8; 16] {
    const OFFSET: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    const PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013b;
    let mut hash = OFFSET;
    let canonical = schema.canonical_form();
    for part in [
        b"sluice-avro-sync\0".as_slice(),
        canonical.as_bytes(),
        b"\0",
        seed,
    ] {
        for &byte in part {
            hash ^= u128::from(byte);
            hash = hash.wrapping_mul(PRIME);
        }
    }
    hash.to_be_bytes()
}

/// A container file's header: magic, metadata (`avro.codec`, `avro.schema`) and the sync
/// marker.
pub fn header(
    schema: &Schema,
    codec: ContainerCodec,
    marker: &[u8; 16],
) -> Result<Vec<u8>, AvroError> {
    let schema_json =
        serde_json::to_string(schema).map_err(|source| AvroError::SchemaJson { source })?;
    let mut header = Vec::with_capacity(schema_json.len() + 64);
    header.extend_from_slice(MAGIC);
    write_long(&mut header, 2);
    write_bytes(&mut header, b"avro.codec");
    write_bytes(&mut header, codec.name().as_bytes());
    write_bytes(&mut header, b"avro.schema");
    write_bytes(&mut header, schema_json.as_bytes());
    write_long(&mut header, 0);
    header.extend_from_slice(marker);
    Ok(header)
}

/// Writes records into an Avro container file, deterministically (see the module docs).
///
/// Records are validated against the schema as they are appended; a record that does not fit
/// is refused (with the path of the offending value) and leaves the file unchanged.
///
/// Call [`finish`](Self::finish): it writes the last block. A writer that is dropped instead
/// leaves a file without its last block (still readable, but missing those records).
pub struct ContainerWriter<'s, W: Write> {
    schema: &'s Schema,
    resolved: ResolvedSchema<'s>,
    codec: ContainerCodec,
    marker: [u8; 16],
    block_size: usize,
    block: Vec<u8>,
    block_records: usize,
    records: usize,
    out: W,
}

impl<'s, W: Write> ContainerWriter<'s, W> {
    /// Starts a container file for `schema` on `out`, writing the header immediately. The sync
    /// marker is [`sync_marker`]`(schema, sync_seed)`.
    pub fn new(
        schema: &'s Schema,
        codec: ContainerCodec,
        sync_seed: &[u8],
        out: W,
    ) -> Result<Self, AvroError> {
        let mut writer = Self::blocks_only(schema, codec, sync_seed, out)?;
        let header = header(schema, codec, &writer.marker)?;
        writer
            .out
            .write_all(&header)
            .map_err(|source| AvroError::Io { source })?;
        Ok(writer)
    }

    /// Like [`new`](Self::new) but writes no header: only the data blocks, each followed by
    /// the sync marker. A file is [`header`] followed by the blocks of one or more such writers
    /// with the same schema, codec and seed, in order (how a large input is encoded in
    /// segments on several threads, then joined).
    pub fn blocks_only(
        schema: &'s Schema,
        codec: ContainerCodec,
        sync_seed: &[u8],
        out: W,
    ) -> Result<Self, AvroError> {
        let resolved =
            ResolvedSchema::new(schema).map_err(|source| AvroError::Schema { source })?;
        let marker = sync_marker(schema, sync_seed);
        Ok(Self {
            schema,
            resolved,
            codec,
            marker,
            block_size: DEFAULT_BLOCK_SIZE,
            block: Vec::with_capacity(DEFAULT_BLOCK_SIZE + DEFAULT_BLOCK_SIZE / 4),
            block_records: 0,
            records: 0,
            out,
        })
    }

    /// Sets how many uncompressed bytes are buffered per block (default
    /// [`DEFAULT_BLOCK_SIZE`]). Larger blocks compress better and use more memory.
    pub fn with_block_size(mut self, bytes: usize) -> Self {
        self.block_size = bytes.max(1);
        self
    }

    /// The sync marker written after the header and after every block.
    pub fn marker(&self) -> [u8; 16] {
        self.marker
    }

    /// Records appended so far.
    pub fn records_written(&self) -> usize {
        self.records
    }

    /// Appends one record, checking it against the schema.
    pub fn append(&mut self, record: &Value) -> Result<(), AvroError> {
        let start = self.block.len();
        let encoder = DatumEncoder::new(self.resolved.get_names());
        if let Err(mismatch) = encoder.encode(record, self.schema, &mut self.block) {
            self.block.truncate(start);
            return Err(AvroError::RecordMismatch {
                index: self.records,
                path: mismatch.path,
                reason: mismatch.reason,
            });
        }
        self.block_records += 1;
        self.records += 1;
        if self.block.len() >= self.block_size {
            self.flush_block()?;
        }
        Ok(())
    }

    fn flush_block(&mut self) -> Result<(), AvroError> {
        if self.block_records == 0 {
            return Ok(());
        }
        let mut data = std::mem::take(&mut self.block);
        self.codec
            .apache()
            .compress(&mut data)
            .map_err(|source| AvroError::Compress {
                codec: self.codec,
                source,
            })?;
        let mut head = Vec::with_capacity(20);
        write_long(&mut head, self.block_records as i64);
        write_long(&mut head, data.len() as i64);
        let io = |source| AvroError::Io { source };
        self.out.write_all(&head).map_err(io)?;
        self.out.write_all(&data).map_err(io)?;
        self.out.write_all(&self.marker).map_err(io)?;
        data.clear();
        self.block = data;
        self.block_records = 0;
        Ok(())
    }

    /// Appends one record already in Avro binary for this schema, e.g. from
    /// [`JsonEncoder`](super::JsonEncoder). Not checked: bytes that do not match the schema
    /// make an unreadable file.
    pub fn append_encoded(&mut self, datum: &[u8]) -> Result<(), AvroError> {
        self.block.extend_from_slice(datum);
        self.block_records += 1;
        self.records += 1;
        if self.block.len() >= self.block_size {
            self.flush_block()?;
        }
        Ok(())
    }

    /// Writes the last block and returns the output.
    pub fn finish(mut self) -> Result<W, AvroError> {
        self.flush_block()?;
        self.out
            .flush()
            .map_err(|source| AvroError::Io { source })?;
        Ok(self.out)
    }
}

/// Writes `records` into an in-memory container file with the sync marker of
/// [`sync_marker`]`(schema, b"")`. Same schema + records + codec → same bytes.
pub fn write_container<V: Borrow<Value>>(
    schema: &Schema,
    records: impl IntoIterator<Item = V>,
    codec: ContainerCodec,
) -> Result<Vec<u8>, AvroError> {
    write_container_seeded(schema, records, codec, b"")
}

/// Like [`write_container`], with the sync marker derived from `sync_seed` too (pass the
/// output object key so distinct files get distinct markers).
pub fn write_container_seeded<V: Borrow<Value>>(
    schema: &Schema,
    records: impl IntoIterator<Item = V>,
    codec: ContainerCodec,
    sync_seed: &[u8],
) -> Result<Vec<u8>, AvroError> {
    let mut writer = ContainerWriter::new(schema, codec, sync_seed, Vec::new())?;
    for record in records {
        writer.append(record.borrow())?;
    }
    writer.finish()
}

/// Reads every record of a container file (any codec this crate writes) with apache-avro's
/// `Reader`. Meant for tests and tools; it holds all records in memory.
pub fn read_container(bytes: &[u8]) -> Result<Vec<Value>, AvroError> {
    let read_error = |source| AvroError::Read {
        len: bytes.len(),
        source,
    };
    let reader = apache_avro::Reader::new(bytes).map_err(read_error)?;
    reader.collect::<Result<Vec<_>, _>>().map_err(read_error)
}
