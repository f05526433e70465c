//! avro-converter: snappy-compressed JSON player events landing in a raw S3 bucket become
//! snappy-codec Avro container files under UTC `year=/month=/day=/hour=` partitions.
//!
//! - [`config`]: environment variables, checked at cold start (including output loops);
//! - [`schema`]: the built-in player-event `.avsc` or an override from S3 or a file;
//! - [`convert`]: the pure path (decompress → parse → coerce → partition → write);
//! - [`layout`]: the object keys written;
//! - [`handler`]: the per-event decisions and the retryable/permanent split;
//! - [`sample`]: generated player events for tests, the bench and the memory example.

pub mod config;
pub mod convert;
pub mod handler;
pub mod layout;
pub mod sample;
pub mod schema;
