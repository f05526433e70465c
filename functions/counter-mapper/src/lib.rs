//! counter-mapper: turns each instance's uploaded counter file into per-instance
//! values in the instance table, so that a DynamoDB stream carries only newer uploads.
//!
//! - [`counter_file`]: the `COUNTER VALUE` file format (pure);
//! - [`counter_key`]: `<prefix><YYYY-MM-DD>/values_<instance-id>` keys (pure);
//! - [`stamp`]: the S3 sequencer as a lexicographically ordered stamp (pure);
//! - [`handler`]: reads the file named by an S3 notification (usually via SNS) and
//!   records every counter with a conditional update (the lost-update guard);
//! - [`config`]: environment variables.

pub mod config;
pub mod counter_file;
pub mod counter_key;
pub mod handler;
pub mod stamp;
