//! The counter-mapper's instance table item (one shard of a counter's day), as a
//! stream image, and its subtotal: the shared contract of [`sluice_counters`].

pub use sluice_counters::{InstanceEntry, InstanceItem, ShardKey, SumOverflow};
