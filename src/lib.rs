//! mdc-autoscaler: a cost-aware autoscaler for GPU instances on the MatrixDC compute API.

pub mod cloud;
pub mod config;
pub mod demo;
pub mod http;
pub mod ledger;
pub mod metrics;
pub mod money;
pub mod observe;
pub mod plan;
pub mod pricing;
pub mod reconcile;
pub mod run;
pub mod secret;
pub mod signals;
pub mod sim;
pub mod simulate;
