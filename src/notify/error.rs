//! Why a notice was not delivered: logged, kept in the outbox as its last
//! error, never quoting a channel's URL (it holds the channel's key).

/// One delivery attempt's failure.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum DeliveryError {
    #[error("no channel `{0}` in the policy file")]
    NoChannel(String),
    /// The channel cannot be used as written: its url or addresses.
    #[error("{0}")]
    Channel(String),
    #[error("the queued notice does not read: {0}")]
    Unreadable(String),
    #[error("the request {0}")]
    Request(&'static str),
    #[error("the platform answered {0}")]
    Status(reqwest::StatusCode),
    /// A 2xx whose body says the platform did not take it.
    #[error("{0}")]
    Refused(String),
    #[error("the mail server {why}{}", code.as_ref().map(|c| format!(" ({c})")).unwrap_or_default())]
    Mail { why: &'static str, code: Option<String> },
}

impl DeliveryError {
    /// A bounded name for logs and metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            DeliveryError::NoChannel(_) | DeliveryError::Channel(_) => "channel",
            DeliveryError::Unreadable(_) => "unreadable",
            DeliveryError::Request(_) => "request",
            DeliveryError::Status(_) => "status",
            DeliveryError::Refused(_) => "refused",
            DeliveryError::Mail { .. } => "mail",
        }
    }
}
