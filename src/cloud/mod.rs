//! The one seam to the cloud: the [`Cloud`] trait, with the HTTP client for
//! the real MatrixDC API ([`matrixdc`]) and the simulator (`crate::sim`)
//! behind it.

mod error;
pub mod lenient;
pub mod matrixdc;
mod model;
pub mod redact;
pub mod wire;

use std::future::Future;

pub use error::{CloudError, CloudErrorKind, DEFAULT_CAPACITY_PATTERNS, Endpoint, classify};
pub use model::*;

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
