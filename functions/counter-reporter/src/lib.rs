//! counter-reporter: watches the aggregate table's stream and acts on changed totals.
//!
//! - [`snapshot`]: a day's totals as JSON lines, merged newest-version-wins (pure);
//! - [`limits`]: per-counter limits (`counter or glob → min/max`), read at cold start (pure);
//! - [`alert`]: the per-counter alert state machine's DynamoDB expressions and the
//!   messages people read (pure);
//! - [`handler`]: one stream batch → snapshots written conditionally, alerts published
//!   once, partial batch failures with stream semantics;
//! - [`config`]: environment variables.

pub mod alert;
pub mod config;
pub mod handler;
pub mod limits;
pub mod snapshot;
