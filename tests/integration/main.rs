//! Integration tests: one binary, as zero-to-production does it.

mod budget_edges;
mod cli;
mod client;
mod daemon;
mod daemon_process;
mod daemon_scenarios;
mod daylight_saving;
mod deadline;
mod fake_cloud_process;
mod harness;
mod hostile;
mod install;
mod ledger_contract;
mod ledger_exactness;
mod ledger_journal;
mod listener;
mod plan_properties;
mod processes;
mod prometheus_signal;
mod scenarios;
mod sim_properties;
mod simulate;
mod systemd;
mod trace_export;
mod validate;
mod vendor_samples;
