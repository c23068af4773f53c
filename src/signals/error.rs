//! Why a signal could not be read: the instance then counts as in use, and
//! the reason is shown with the reading.

use crate::cloud::body::BodyError;

/// One failed read of a Jupyter server or of Prometheus.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum SignalError {
    #[error("timed out")]
    Timeout,
    #[error("unreachable")]
    Unreachable,
    #[error("token refused")]
    TokenRefused,
    #[error("HTTP {0}")]
    Status(u16),
    #[error("HTTP {0}, malformed answer")]
    Malformed(u16),
    /// The server answered with an error of its own (Prometheus: a bad query).
    #[error("HTTP {status}, {message}")]
    Refused { status: u16, message: String },
    /// The answer holds nothing for the instance, or not in the form asked for.
    #[error("{0}")]
    NoData(&'static str),
    #[error("a {0} instead of a vector")]
    NotAVector(String),
    #[error("HTTP {status}, an answer over {limit} bytes")]
    TooLarge { status: u16, limit: usize },
}

impl SignalError {
    pub(super) fn of_transport(e: &reqwest::Error) -> SignalError {
        if e.is_timeout() { SignalError::Timeout } else { SignalError::Unreachable }
    }

    pub(super) fn of_body(e: &BodyError, status: u16) -> SignalError {
        match e {
            BodyError::Transport(e) => SignalError::of_transport(e),
            BodyError::TooLarge { limit } => SignalError::TooLarge { status, limit: *limit },
        }
    }
}
