//! The one error type of the library.
//!
//! EC2 and EventBridge errors keep their service error code (`InvalidAMIID.NotFound`,
//! `RequestLimitExceeded`, ...) read through `ProvideErrorMetadata::code()`, never by formatting
//! the error to a string, so callers can tell throttling from "not found" from "in use".

use aws_sdk_ec2::error::ProvideErrorMetadata;
use lambda_runtime::Diagnostic;

/// Everything that can go wrong in a function run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The policy document or the deployment's configuration is invalid.
    #[error("invalid configuration at `{path}`: {message}")]
    Config { path: String, message: String },

    /// The invocation's payload is not one the function accepts.
    #[error("invalid event at `{path}`: {message}")]
    Event { path: String, message: String },

    /// An AWS API call failed.
    #[error("{operation} failed in {region}: {code}: {message}")]
    Aws {
        operation: &'static str,
        region: String,
        code: String,
        message: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// The account's state does not allow the request (for example an image it does not own).
    #[error("{0}")]
    Refused(String),
}

impl Error {
    /// An error in the configuration or the policy document at `path`.
    pub fn config(path: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Config {
            path: path.into(),
            message: message.into(),
        }
    }

    /// An error in the invocation payload at `path`.
    pub fn event(path: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Event {
            path: path.into(),
            message: message.into(),
        }
    }

    /// Wraps an SDK error, keeping its service error code.
    pub fn aws<E>(operation: &'static str, region: &str, err: E) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let code = err.code().unwrap_or("Unknown").to_string();
        let message = err.message().map(str::to_string).unwrap_or_else(|| {
            // No service message: the request did not get an answer (timeout, connection).
            let mut text = err.to_string();
            let mut cause = std::error::Error::source(&err);
            while let Some(inner) = cause {
                text = format!("{text}: {inner}");
                cause = inner.source();
            }
            text
        });
        Error::Aws {
            operation,
            region: region.to_string(),
            code,
            message,
            source: Box::new(err),
        }
    }

    /// The EC2/EventBridge error code, when the error came from an AWS API.
    pub fn code(&self) -> Option<&str> {
        match self {
            Error::Aws { code, .. } => Some(code),
            _ => None,
        }
    }

    /// The AWS operation that failed, when the error came from an AWS API.
    pub fn operation(&self) -> Option<&'static str> {
        match self {
            Error::Aws { operation, .. } => Some(operation),
            _ => None,
        }
    }

    /// Stable error type strings for the Lambda response (`errorType`).
    pub fn error_type(&self) -> &'static str {
        match self {
            Error::Config { .. } => "InvalidConfiguration",
            Error::Event { .. } => "InvalidEvent",
            Error::Aws { .. } => "AwsError",
            Error::Refused(_) => "Refused",
        }
    }

    /// Throttling: the call may succeed later; the run defers the work, it does not fail it.
    pub fn is_throttling(&self) -> bool {
        matches!(
            self.code(),
            Some(
                "RequestLimitExceeded"
                    | "Throttling"
                    | "ThrottlingException"
                    | "ResourceLimitExceeded"
            )
        )
    }

    /// The call may succeed later: throttling, a server error, or no answer at all (timeout,
    /// dropped connection). The run defers the work to the next run; it does not fail it.
    pub fn is_transient(&self) -> bool {
        self.is_throttling()
            || matches!(
                self.code(),
                Some(
                    "InternalError"
                        | "InternalFailure"
                        | "InternalServerError"
                        | "TooManyUpdates"
                        | "ServiceUnavailable"
                        | "Unavailable"
                        | "RequestTimeout"
                        | "Unknown"
                )
            )
    }

    /// What a job does with work whose call failed: defer it to the next run when the call may
    /// succeed later ([`Error::is_transient`]), fail it otherwise. Every job decides the same way.
    pub fn disposition(&self) -> Disposition {
        if self.is_transient() {
            Disposition::Deferred
        } else {
            Disposition::Failed
        }
    }

    /// The resource is already gone: an idempotent delete treats this as done.
    pub fn is_not_found(&self) -> bool {
        matches!(
            self.code(),
            Some(
                "InvalidAMIID.NotFound"
                    | "InvalidAMIID.Unavailable"
                    | "InvalidSnapshot.NotFound"
                    | "InvalidInstanceID.NotFound"
            )
        )
    }
}

/// What becomes of work whose call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Left for the next run: throttling, a server error, no answer.
    Deferred,
    /// EC2 refused or failed it: reported, and the invocation is a partial failure.
    Failed,
}

impl From<Error> for Diagnostic {
    fn from(err: Error) -> Self {
        Diagnostic {
            error_type: err.error_type().to_string(),
            error_message: err.to_string(),
        }
    }
}

/// Result with the library's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
