//! The pipeline's functions, and where each parks what it cannot process (README,
//! "Failure behaviour" of every function): the stack output naming it, what kind of
//! store it is, and so how it is read and redriven.

use std::fmt;

use clap::ValueEnum;
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Function {
    IngestApi,
    KinesisArchiver,
    AvroConverter,
    CrashRouter,
    CounterMapper,
    CounterAggregator,
    CounterReporter,
    JobPoller,
}

/// How the function is invoked when an item is redriven.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Invocation {
    /// `RequestResponse`: the outcome is known, a failure leaves the item where it was.
    Sync,
    /// `Event`: handed to Lambda's async queue; a failure comes back to the failure queue
    /// by Lambda's own path (job-poller: a generation may poll for its whole timeout).
    Async,
}

/// One place a function parks what it could not process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailurePath {
    /// Lambda's async on-failure destination (an SQS queue of invocation records, each with
    /// its `requestPayload`): re-invoke the function with that payload.
    AsyncFailureQueue {
        queue: &'static str,
        invocation: Invocation,
    },
    /// An SNS subscription's redrive queue: notifications SNS could not hand to the
    /// function; re-invoke the function with each (it reads any envelope).
    SnsDeliveryQueue { queue: &'static str },
    /// An SQS dead-letter queue: move each message back to the queue it came from.
    DeadLetterQueue {
        dlq: &'static str,
        source: &'static str,
    },
    /// A Kinesis mapping's S3 on-failure destination: failed batches kept whole, records
    /// included, announced on a queue; re-invoke the function with each kept batch.
    KeptBatches {
        bucket: &'static str,
        announcements: &'static str,
    },
    /// A DynamoDB stream mapping's on-failure queue: each message describes a shard and a
    /// sequence range; read it back from the stream and replay it into the function.
    StreamFailureQueue { queue: &'static str },
}

impl FailurePath {
    /// Short name for tables.
    pub fn label(&self) -> &'static str {
        match self {
            FailurePath::AsyncFailureQueue { .. } => "failure queue",
            FailurePath::SnsDeliveryQueue { .. } => "SNS delivery queue",
            FailurePath::DeadLetterQueue { .. } => "DLQ",
            FailurePath::KeptBatches { .. } => "kept batches",
            FailurePath::StreamFailureQueue { .. } => "failure queue",
        }
    }

    /// The output naming the store itself (queue URL or bucket name).
    pub fn store_output(&self) -> &'static str {
        match self {
            FailurePath::AsyncFailureQueue { queue, .. }
            | FailurePath::SnsDeliveryQueue { queue }
            | FailurePath::StreamFailureQueue { queue } => queue,
            FailurePath::DeadLetterQueue { dlq, .. } => dlq,
            FailurePath::KeptBatches { bucket, .. } => bucket,
        }
    }
}

impl Function {
    pub const ALL: [Function; 8] = [
        Function::IngestApi,
        Function::KinesisArchiver,
        Function::AvroConverter,
        Function::CrashRouter,
        Function::CounterMapper,
        Function::CounterAggregator,
        Function::CounterReporter,
        Function::JobPoller,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            Function::IngestApi => "ingest-api",
            Function::KinesisArchiver => "kinesis-archiver",
            Function::AvroConverter => "avro-converter",
            Function::CrashRouter => "crash-router",
            Function::CounterMapper => "counter-mapper",
            Function::CounterAggregator => "counter-aggregator",
            Function::CounterReporter => "counter-reporter",
            Function::JobPoller => "job-poller",
        }
    }

    /// The output holding the deployed function's name.
    pub fn name_output(&self) -> &'static str {
        match self {
            Function::IngestApi => "IngestApiFunctionName",
            Function::KinesisArchiver => "KinesisArchiverFunctionName",
            Function::AvroConverter => "AvroConverterFunctionName",
            Function::CrashRouter => "CrashRouterFunctionName",
            Function::CounterMapper => "CounterMapperFunctionName",
            Function::CounterAggregator => "CounterAggregatorFunctionName",
            Function::CounterReporter => "CounterReporterFunctionName",
            Function::JobPoller => "JobPollerFunctionName",
        }
    }

    /// Where the function parks what it cannot process; empty for ingest-api, whose
    /// callers hold what was not written (a `503` lists it).
    pub fn failure_paths(&self) -> &'static [FailurePath] {
        use FailurePath::*;
        match self {
            Function::IngestApi => &[],
            Function::KinesisArchiver => &[KeptBatches {
                bucket: "ArchiverFailureBucketName",
                announcements: "ArchiverFailureQueueUrl",
            }],
            Function::AvroConverter => &[AsyncFailureQueue {
                queue: "AvroConverterFailureQueueUrl",
                invocation: Invocation::Sync,
            }],
            Function::CrashRouter => &[DeadLetterQueue {
                dlq: "CrashNotificationDlqUrl",
                source: "CrashNotificationQueueUrl",
            }],
            Function::CounterMapper => &[
                AsyncFailureQueue {
                    queue: "CounterMapperFailureQueueUrl",
                    invocation: Invocation::Sync,
                },
                SnsDeliveryQueue {
                    queue: "CounterUploadsDeliveryQueueUrl",
                },
            ],
            Function::CounterAggregator => &[StreamFailureQueue {
                queue: "CounterAggregatorFailureQueueUrl",
            }],
            Function::CounterReporter => &[StreamFailureQueue {
                queue: "CounterReporterFailureQueueUrl",
            }],
            Function::JobPoller => &[AsyncFailureQueue {
                queue: "JobPollerFailureQueueUrl",
                invocation: Invocation::Async,
            }],
        }
    }

    /// The output naming the only bucket the function accepts notifications for, when
    /// it refuses others (a redriven event naming another bucket would fail again).
    pub fn own_bucket_output(&self) -> Option<&'static str> {
        match self {
            Function::CounterMapper => Some("CountersBucketName"),
            Function::JobPoller => Some("JobReportsBucketName"),
            _ => None,
        }
    }

    /// Whether a stream (Kinesis or DynamoDB) triggers it.
    pub fn is_stream_triggered(&self) -> bool {
        matches!(
            self,
            Function::KinesisArchiver | Function::CounterAggregator | Function::CounterReporter
        )
    }
}

impl fmt::Display for Function {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_the_ones_the_cli_accepts() {
        for function in Function::ALL {
            let parsed = Function::from_str(function.as_str(), false).unwrap();
            assert_eq!(parsed, function);
            assert_eq!(
                serde_json::to_value(function).unwrap(),
                function.as_str(),
                "JSON names the function as the CLI does"
            );
        }
    }

    #[test]
    fn every_function_but_ingest_api_has_a_failure_path_and_every_path_an_output() {
        for function in Function::ALL {
            let paths = function.failure_paths();
            assert_eq!(
                paths.is_empty(),
                function == Function::IngestApi,
                "{function}"
            );
            for path in paths {
                assert!(
                    path.store_output().ends_with("Url") || path.store_output().ends_with("Name")
                );
            }
        }
    }
}
