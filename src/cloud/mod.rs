//! The one seam to the cloud: the [`Cloud`] trait, with the HTTP client for
//! the real MatrixDC API ([`matrixdc`]) and the simulated platform (`sim`)
//! behind it.

pub mod body;
mod error;
pub mod lenient;
pub mod matrixdc;
mod model;
pub mod redact;
pub mod wire;

use std::future::Future;

pub use error::{CloudError, CloudErrorKind, DEFAULT_CAPACITY_PATTERNS, Endpoint, classify};
pub use model::*;

/// Told of every call a client makes, as it ends: the endpoint, how it
/// ended (an HTTP status, `timeout`, `transport` or `too_large`) and how long it took.
/// The metrics listen; the cloud layer knows nothing of them.
pub trait CallObserver: Send + Sync {
    fn call_ended(&self, endpoint: Endpoint, outcome: &str, elapsed: std::time::Duration);
}

/// What changed since the daemon's last step, from a source that knows
/// without listing everything (the simulator).
#[derive(Debug, Default)]
pub struct Told {
    /// Instances that changed, as listed now.
    pub instances: Vec<Instance>,
    /// Instances that no longer exist.
    pub gone: Vec<String>,
    /// Instances otherwise unchanged whose signals may say something new.
    pub active: Vec<String>,
}

/// The eight calls of the compute API. Lists are whole or an error: a page
/// that fails fails the list.
pub trait Cloud: Send + Sync {
    fn list_regions(&self) -> impl Future<Output = Result<Vec<Region>, CloudError>> + Send;
    fn list_skus(&self, region_id: &str) -> impl Future<Output = Result<Vec<Sku>, CloudError>> + Send;
    fn list_instances(&self, cluster: &str) -> impl Future<Output = Result<Vec<Instance>, CloudError>> + Send;
    fn get_instance(&self, cluster: &str, name: &str) -> impl Future<Output = Result<Instance, CloudError>> + Send;
    /// Never retried: a lost answer may hide a created instance.
    fn create_instance(&self, request: &CreateRequest) -> impl Future<Output = Result<Instance, CloudError>> + Send;
    fn power_off(
        &self,
        cluster: &str,
        name: &str,
        request: &PowerOff,
    ) -> impl Future<Output = Result<(), CloudError>> + Send;
    fn power_on(&self, cluster: &str, name: &str) -> impl Future<Output = Result<(), CloudError>> + Send;
    fn delete_instance(&self, cluster: &str, name: &str) -> impl Future<Output = Result<(), CloudError>> + Send;
}
