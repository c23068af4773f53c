//! What can go wrong talking to the cloud, sorted into transient and permanent.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The eight calls of the compute API; also the `endpoint` metric label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    ListRegions,
    ListSkus,
    ListInstances,
    GetInstance,
    CreateInstance,
    PowerOff,
    PowerOn,
    DeleteInstance,
}

impl Endpoint {
    pub fn label(self) -> &'static str {
        match self {
            Endpoint::ListRegions => "list_regions",
            Endpoint::ListSkus => "list_skus",
            Endpoint::ListInstances => "list_instances",
            Endpoint::GetInstance => "get_instance",
            Endpoint::CreateInstance => "create_instance",
            Endpoint::PowerOff => "power_off",
            Endpoint::PowerOn => "power_on",
            Endpoint::DeleteInstance => "delete_instance",
        }
    }

    /// Whether a repeat of the call is harmless. A create is not: a second
    /// one after a lost answer makes a second instance.
    pub fn is_idempotent(self) -> bool {
        self != Endpoint::CreateInstance
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum CloudErrorKind {
    #[error("HTTP {status}: credentials refused: {excerpt}")]
    Unauthorized { status: u16, excerpt: String },
    #[error("HTTP 404: not found: {excerpt}")]
    NotFound { excerpt: String },
    #[error("HTTP {status}: no free GPU capacity: {excerpt}")]
    NoCapacity { status: u16, excerpt: String },
    #[error("HTTP {status}: rejected: {excerpt}")]
    Rejected { status: u16, excerpt: String },
    #[error("HTTP 429: rate limited{}: {excerpt}", retry_after.map(|d| format!(", retry after {}s", d.as_secs())).unwrap_or_default())]
    RateLimited { retry_after: Option<Duration>, excerpt: String },
    #[error("HTTP {status}: server error: {excerpt}")]
    Server { status: u16, excerpt: String },
    #[error("timed out")]
    Timeout,
    #[error("connection failed: {0}")]
    Transport(String),
    #[error("malformed answer ({reason}): {excerpt}")]
    Malformed { reason: String, excerpt: String },
    /// The answer parsed but cannot be the whole truth (paging that never
    /// ends, fewer nodes than `totalCount`).
    #[error("incomplete answer: {0}")]
    Incomplete(String),
}

/// A failed call: which endpoint, which page of a list, and what happened.
/// Messages carry at most a short, redacted excerpt of the answer's body.
#[derive(Clone, Debug, PartialEq)]
pub struct CloudError {
    pub endpoint: Endpoint,
    pub page: Option<u32>,
    pub kind: CloudErrorKind,
}

impl CloudError {
    pub fn new(endpoint: Endpoint, kind: CloudErrorKind) -> Self {
        CloudError { endpoint, page: None, kind }
    }

    pub fn on_page(mut self, page: u32) -> Self {
        self.page = Some(page);
        self
    }

    /// A later attempt may succeed: rate limits, 5xx, timeouts, broken connections.
    pub fn is_transient(&self) -> bool {
        matches!(
            self.kind,
            CloudErrorKind::RateLimited { .. }
                | CloudErrorKind::Server { .. }
                | CloudErrorKind::Timeout
                | CloudErrorKind::Transport(_)
        )
    }

    /// The call may have taken effect although it reported failure. After a
    /// create, the next fresh list must be consulted before creating again.
    pub fn may_have_applied(&self) -> bool {
        matches!(
            self.kind,
            CloudErrorKind::Server { .. }
                | CloudErrorKind::Timeout
                | CloudErrorKind::Transport(_)
                | CloudErrorKind::Malformed { .. }
        )
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self.kind {
            CloudErrorKind::RateLimited { retry_after, .. } => retry_after,
            _ => None,
        }
    }

    /// A short, stable label for metrics and logs.
    pub fn metric_label(&self) -> &'static str {
        match self.kind {
            CloudErrorKind::Unauthorized { .. } => "unauthorized",
            CloudErrorKind::NotFound { .. } => "not_found",
            CloudErrorKind::NoCapacity { .. } => "no_capacity",
            CloudErrorKind::Rejected { .. } => "rejected",
            CloudErrorKind::RateLimited { .. } => "rate_limited",
            CloudErrorKind::Server { .. } => "server_error",
            CloudErrorKind::Timeout => "timeout",
            CloudErrorKind::Transport(_) => "transport",
            CloudErrorKind::Malformed { .. } => "malformed",
            CloudErrorKind::Incomplete(_) => "incomplete",
        }
    }
}

impl fmt::Display for CloudError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.page {
            Some(page) => write!(f, "{} (page {page}): {}", self.endpoint, self.kind),
            None => write!(f, "{}: {}", self.endpoint, self.kind),
        }
    }
}

impl std::error::Error for CloudError {}

/// Words in an error body that mean "no GPU of that kind is free". The
/// platform's wording is not documented; these cover the simulator's and
/// the usual English and Chinese phrasings.
pub const DEFAULT_CAPACITY_PATTERNS: [&str; 6] =
    ["insufficient", "no free gpu", "no available gpu", "out of stock", "库存不足", "资源不足"];

/// Sorts a failed HTTP answer into an error kind. Shared by the HTTP client
/// and the in-process simulator so both report the same way.
pub fn classify(
    status: u16,
    excerpt: String,
    retry_after: Option<Duration>,
    capacity_patterns: &[String],
) -> CloudErrorKind {
    let lower = excerpt.to_lowercase();
    match status {
        401 | 403 => CloudErrorKind::Unauthorized { status, excerpt },
        404 => CloudErrorKind::NotFound { excerpt },
        429 => CloudErrorKind::RateLimited { retry_after, excerpt },
        500..=599 => CloudErrorKind::Server { status, excerpt },
        _ if capacity_patterns.iter().any(|p| lower.contains(&p.to_lowercase())) => {
            CloudErrorKind::NoCapacity { status, excerpt }
        }
        _ => CloudErrorKind::Rejected { status, excerpt },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patterns() -> Vec<String> {
        DEFAULT_CAPACITY_PATTERNS.iter().map(|p| p.to_string()).collect()
    }

    #[test]
    fn sorts_statuses_into_kinds() {
        let kind = |status, body: &str| classify(status, body.into(), None, &patterns());
        assert!(matches!(kind(401, ""), CloudErrorKind::Unauthorized { .. }));
        assert!(matches!(kind(503, ""), CloudErrorKind::Server { .. }));
        assert!(matches!(kind(409, "Insufficient GPU resources"), CloudErrorKind::NoCapacity { .. }));
        assert!(matches!(kind(409, "instance is running"), CloudErrorKind::Rejected { .. }));
    }

    #[test]
    fn transient_and_ambiguous_are_different_questions() {
        let err = |kind| CloudError::new(Endpoint::CreateInstance, kind);
        assert!(err(CloudErrorKind::Timeout).is_transient());
        assert!(err(CloudErrorKind::Timeout).may_have_applied());
        let malformed = err(CloudErrorKind::Malformed { reason: "x".into(), excerpt: String::new() });
        assert!(!malformed.is_transient() && malformed.may_have_applied());
        let refused = err(CloudErrorKind::Unauthorized { status: 401, excerpt: String::new() });
        assert!(!refused.is_transient() && !refused.may_have_applied());
        assert_eq!(err(CloudErrorKind::Timeout).on_page(2).to_string(), "create_instance (page 2): timed out");
    }
}
