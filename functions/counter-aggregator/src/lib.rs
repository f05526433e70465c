//! counter-aggregator: sums each counter's per-instance values (from the
//! instance table's stream) into the aggregate table, writing only changes.
//!
//! - [`item`]: the instance table's item as the stream shows it, and its total (pure);
//! - [`handler`]: coalesces a batch per key, writes totals conditionally, reports
//!   partial batch failures with stream semantics;
//! - [`config`]: environment variables.

pub mod config;
pub mod handler;
pub mod item;
