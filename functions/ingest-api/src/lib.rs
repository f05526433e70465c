//! ingest-api: `POST /events` behind an API Gateway REST API (Lambda proxy) onto a
//! Kinesis stream.
//!
//! - [`body`]: base64/gzip decoding and splitting a body (object, array, NDJSON) into
//!   events — pure;
//! - [`record`]: each event's Kinesis record (enriched JSON, partition key) — pure;
//! - [`handler`]: configuration and the HTTP answer for a request.

pub mod body;
pub mod handler;
pub mod record;
