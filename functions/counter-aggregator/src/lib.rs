//! counter-aggregator: sums each counter's per-instance values (from the
//! instance table's stream) into the aggregate table, writing only changes.
//!
//! - [`item`]: the instance table's shard item as the stream shows it, and its
//!   subtotal (the shared contract in `sluice-counters`);
//! - [`handler`]: coalesces a batch per shard item, adds each subtotal's change to
//!   the day's total conditionally, reports
//!   partial batch failures with stream semantics;
//! - [`config`]: environment variables.

pub mod config;
pub mod handler;
pub mod item;
