//! crash-router (Socorro's "Pigeon"): reads the crash id out of each new raw-crash
//! object's key and queues accepted crash ids for processing.
//!
//! S3 `ObjectCreated:*` → notification queue (SQS) → this function →
//! processing queue (+ sampled extra queues). Its section in the top-level README describes it.
//!
//! - [`crash`]: crash ids and raw-crash keys (the domain rules);
//! - [`routes`]: destination queues and deterministic percentage sampling;
//! - [`config`]: environment variables, read once at cold start;
//! - [`handler`]: the per-batch decisions, sends and partial batch response.

pub mod config;
pub mod crash;
pub mod handler;
pub mod routes;
