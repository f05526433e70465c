//! Avro: schemas, JSON → Avro coercion, and reproducible Object Container Files.
//!
//! Typical use in a converter, with the plan built once at cold start:
//!
//! ```
//! use sluice_codec::avro::{parse_schema, CoercionPlan, ContainerCodec, ContainerWriter};
//!
//! let schema = parse_schema(r#"{"type":"record","name":"Event","fields":[
//!     {"name":"player_id","type":"string"},
//!     {"name":"score","type":["null","int"],"default":null}]}"#)?;
//! let plan = CoercionPlan::new(&schema);
//!
//! let mut writer = ContainerWriter::new(&schema, ContainerCodec::Snappy, b"out/key.avro", Vec::new())?;
//! for line in [r#"{"player_id":"p1","score":12}"#, r#"{"player_id":"p2"}"#] {
//!     let json: serde_json::Value = serde_json::from_str(line).unwrap();
//!     writer.append(&plan.coerce(&json)?)?;
//! }
//! let bytes = writer.finish()?;
//! assert_eq!(sluice_codec::avro::read_container(&bytes)?.len(), 2);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod coerce;
mod container;
mod direct;
mod encode;
mod path;

#[cfg(test)]
mod direct_tests;
#[cfg(test)]
mod tests;

pub use apache_avro::Schema;
pub use apache_avro::types::Value;
pub use coerce::{CoerceError, CoercionPlan, coerce};
pub use container::{
    ContainerCodec, ContainerWriter, DEFAULT_BLOCK_SIZE, header, read_container, sync_marker,
    write_container, write_container_seeded,
};
pub use direct::{Captured, Declined, JsonEncoder};

/// Why an Avro schema, codec name or container file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum AvroError {
    /// The schema text is not a valid Avro schema (`.avsc` JSON).
    #[error("invalid Avro schema: {source}")]
    Schema {
        #[source]
        source: apache_avro::Error,
    },
    /// The schema could not be serialised back to JSON for the file header.
    #[error("cannot serialise the Avro schema to JSON: {source}")]
    SchemaJson {
        #[source]
        source: serde_json::Error,
    },
    /// A codec name other than `null`, `snappy` or `deflate`.
    #[error("unknown Avro container codec {given:?} (expected null, snappy or deflate)")]
    UnknownCodec { given: String },
    /// A record given to a container writer does not match the schema.
    #[error("record {index} does not match the schema at {path}: {reason}")]
    RecordMismatch {
        /// Zero-based position of the record in the file.
        index: usize,
        path: String,
        reason: String,
    },
    /// Compressing a data block failed.
    #[error("compressing an Avro block with the {codec} codec failed: {source}")]
    Compress {
        codec: ContainerCodec,
        #[source]
        source: apache_avro::Error,
    },
    /// Writing to the output failed.
    #[error("writing the Avro container failed: {source}")]
    Io {
        #[source]
        source: std::io::Error,
    },
    /// A container file could not be read.
    #[error("reading an Avro container of {len} bytes failed: {source}")]
    Read {
        len: usize,
        #[source]
        source: apache_avro::Error,
    },
}

/// Parses an Avro schema from its JSON text (the contents of an `.avsc` file).
pub fn parse_schema(avsc: &str) -> Result<Schema, AvroError> {
    Schema::parse_str(avsc).map_err(|source| AvroError::Schema { source })
}
