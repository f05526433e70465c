//! What can stop a command, and the exit code each leaves for a script.
//!
//! | code | meaning |
//! |---|---|
//! | 0 | done: everything the command set out to do was done (`status`: nothing is parked) |
//! | 1 | an error stopped the command (an AWS call that kept failing, a file that could not be written) |
//! | 2 | usage: an unknown option or value, a bucket that is not the function's, a checkpoint in the way |
//! | 3 | not found: the stack, a stack output, a function, a bucket, or a prefix with nothing in it |
//! | 4 | incomplete: items failed again and were left where they were (`redrive`, `backfill`), a replay stopped before the end (it says where), or `status` found items parked |

use std::fmt::Display;

use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

pub const EXIT_OK: u8 = 0;
pub const EXIT_FAILED: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_NOT_FOUND: u8 = 3;
pub const EXIT_INCOMPLETE: u8 = 4;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The stack, an output, a function, a bucket or a prefix with nothing in it.
    #[error("{0}")]
    NotFound(String),
    /// Arguments that cannot work with this stack (checked after parsing).
    #[error("{0}")]
    Usage(String),
    /// An AWS call that failed after the SDK's retries: what was being done, the code, the message.
    #[error("{what}: {code}: {message}")]
    Aws {
        what: String,
        code: String,
        message: String,
    },
    /// A local file (checkpoint) that could not be read or written.
    #[error("{0}")]
    Io(String),
}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::NotFound(_) => EXIT_NOT_FOUND,
            CliError::Usage(_) => EXIT_USAGE,
            CliError::Aws { .. } | CliError::Io(_) => EXIT_FAILED,
        }
    }
}

/// Turns an SDK error into [`CliError::Aws`], naming what was being done.
pub fn sdk<E, R>(what: impl Display, err: SdkError<E, R>) -> CliError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let (code, message) = match &err {
        SdkError::ServiceError(service) => (
            service.err().code().unwrap_or("ServiceError").to_owned(),
            service
                .err()
                .message()
                .map(str::to_owned)
                .unwrap_or_else(|| DisplayErrorContext(&err).to_string()),
        ),
        SdkError::TimeoutError(_) => ("TimeoutError".into(), DisplayErrorContext(&err).to_string()),
        SdkError::DispatchFailure(_) => (
            "DispatchFailure".into(),
            format!(
                "could not reach the endpoint ({})",
                DisplayErrorContext(&err)
            ),
        ),
        _ => ("Error".into(), DisplayErrorContext(&err).to_string()),
    };
    CliError::Aws {
        what: what.to_string(),
        code,
        message,
    }
}

/// The service's error code of an SDK error, if it has one.
pub fn service_code<E, R>(err: &SdkError<E, R>) -> Option<String>
where
    E: ProvideErrorMetadata,
{
    err.as_service_error()
        .and_then(|e| e.code())
        .map(str::to_owned)
}
