//! What a call can fail with: the API's own error answer, or a failure on the way to it.

use conclave_types::ErrorCode;

/// An error answer of the API: its HTTP status and the body's code, message and hint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub code: ErrorCode,
    pub message: String,
    pub hint: Option<String>,
    /// A refused import's conflicting rows (empty otherwise).
    pub conflicts: Vec<conclave_types::ipam::ImportConflict>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)?;
        for c in &self.conflicts {
            write!(f, "\n  row {}: {} ({})", c.row, c.message, c.code)?;
        }
        if let Some(h) = &self.hint {
            write!(f, "\nhint: {h}")?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing accepted the connection: the request was never sent.
    #[error("no conclave agent at {0} — start one with: conclave agent")]
    NoAgent(String),
    /// The request was sent (or its connection opened) but no answer came in time: a
    /// write may or may not have been applied.
    #[error("no answer from {0} in time")]
    TimedOut(String),
    /// The agent answered with an error.
    #[error("{0}")]
    Api(ApiError),
    #[error("{0}")]
    Local(String),
    /// The command line itself is wrong (exit code 2).
    #[error("{0}")]
    Usage(String),
}

impl ClientError {
    /// The API's error code, when the agent answered with an error.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Api(e) => Some(e.code),
            _ => None,
        }
    }

    /// How this failure counts for the retry contract.
    pub fn as_failure(&self) -> crate::retry::Failure {
        use crate::retry::Failure;
        match self {
            ClientError::NoAgent(_) => Failure::Refused,
            ClientError::TimedOut(_) => Failure::TimedOut,
            ClientError::Api(e) => Failure::Answered {
                status: e.status,
                code: e.code,
            },
            ClientError::Local(_) | ClientError::Usage(_) => Failure::Other,
        }
    }

    /// The HTTP status, when the agent answered with an error.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api(e) => Some(e.status),
            _ => None,
        }
    }
}
