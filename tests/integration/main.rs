//! Integration tests: one binary, as zero-to-production does it.

mod client;
mod harness;
mod sim_properties;
mod vendor_samples;
