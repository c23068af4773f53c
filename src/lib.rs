//! mdc-autoscaler: a cost-aware autoscaler for GPU instances on the MatrixDC compute API.
//!
//! # Layout
//!
//! Each line uses only the lines above it, and `scripts/check-layers`
//! (run by `.ci/run`) keeps it so:
//!
//! 1. `money`, `secret`, `clock`, `text`, `listener`: amounts in CNY, secrets that never print, time,
//!    outside text made safe to print, connections served within bounds.
//! 2. `cloud`: the eight calls of the compute API, its model and errors, the HTTP client.
//! 3. `pricing`: prices in force, discount windows, the cheapest fitting SKU.
//! 4. `config`: the policy file, read, checked and resolved.
//! 5. `plan`: the pure planner: what was observed in, decisions with reasons out.
//! 6. `signals`, `ledger`: reading idle signals; the spend ledger, the record of use, who leads among replicas.
//! 7. `sim`, `notify`: the simulated platform: a `Cloud`, and a source of known activity; telling
//!    people before acting, in each platform's format, from the ledger's outbox.
//! 8. `observe`, `prices`, `instances`: one look at the cloud, the signals and the ledger's facts; the SKU
//!    list and the fleet with its next decisions, as people read them.
//! 9. `reconcile`: one step: observe, plan, act, record.
//! 10. `metrics`: what the daemon exports.
//! 11. `http`: what it serves.
//! 12. `run`: the daemon's loop.
//! 13. `demo`, `simulate`: the demo on the simulated platform; replays of traces.
//!

pub mod clock;
pub mod cloud;
pub mod config;
pub mod demo;
pub mod http;
pub mod instances;
pub mod ledger;
pub mod listener;
pub mod metrics;
pub mod money;
pub mod notify;
pub mod observe;
pub mod plan;
pub mod prices;
pub mod pricing;
pub mod reconcile;
pub mod run;
pub mod secret;
pub mod signals;
pub mod sim;
pub mod simulate;
pub mod text;
