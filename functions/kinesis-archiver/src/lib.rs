//! kinesis-archiver: Kinesis batches (event source mapping) to S3 as newline-delimited,
//! bzip2-compressed objects, one per shard and UTC hour of arrival.
//!
//! - [`archive`]: grouping, payloads, keys, metadata, compression — pure;
//! - [`handler`]: configuration, writing the groups, the partial batch response.

pub mod archive;
pub mod handler;
