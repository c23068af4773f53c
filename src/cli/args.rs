//! The command line: every command and its options, as `--help` and the man pages show them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, FixedOffset};
use clap::{Args, Parser, Subcommand};

use mdc_autoscaler::ledger::report::By;
use mdc_autoscaler::sim::server::{DEMO_NAMESPACE, DEMO_TOKEN};

#[derive(Parser)]
#[command(
    name = "mdc-autoscaler",
    version,
    about = "Cost-aware autoscaler for GPU instances on the MatrixDC compute API"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// The daemon: observe, plan and act every cycle.
    Run {
        #[arg(long)]
        config: PathBuf,
        /// Plan and record, but act on nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// The daemon against a simulated fleet: zero setup.
    Demo {
        /// Simulated time runs this many times faster than real time.
        #[arg(long, default_value_t = 30.0)]
        speed: f64,
        /// Where the demo keeps its SQLite ledger, token and the policy it runs.
        #[arg(long, default_value = "mdc-autoscaler-demo")]
        state_dir: PathBuf,
    },
    /// Check a policy file and report every problem as file:line:column.
    Validate {
        #[arg(long)]
        config: PathBuf,
        /// Also check against the cloud: price caps against the SKUs on sale,
        /// and instances that more than one policy selects.
        #[arg(long)]
        online: bool,
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Observe the cloud once and print what would be done, and why; do nothing.
    Plan {
        #[arg(long)]
        config: PathBuf,
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
        /// Plan as at a later moment, with what is observed now (activity,
        /// spend and prices as they are): 2h from now, 00:05 (the next one),
        /// or 2026-12-03 00:05, in the settings' zone.
        #[arg(long)]
        at: Option<String>,
    },
    /// The SKUs on sale in every region: list price, price in force, discount window and its time left, free GPUs.
    Skus {
        #[arg(long)]
        config: PathBuf,
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
        /// Read them again every `settings.sku_interval` until interrupted.
        #[arg(long)]
        watch: bool,
    },
    /// Every instance: its policy (or unmanaged), state, price, since when
    /// idle and by which signal, and the next decision with its time and
    /// reason. From the running daemon when it answers on `settings.listen`,
    /// else by observing once.
    Instances {
        #[arg(long)]
        config: PathBuf,
        /// Only this policy's (`unmanaged` for those no policy owns); repeatable.
        #[arg(long = "policy")]
        policies: Vec<String>,
        /// Only instances in this state (running, stopped, starting, ...); repeatable.
        #[arg(long = "state")]
        states: Vec<String>,
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Spend and estimated savings from the ledger.
    Spend {
        #[arg(long)]
        config: PathBuf,
        /// From when: back from now (30d, 12h) or a time (2026-11-01, 2026-11-01 09:00) in the settings' zone.
        #[arg(long, default_value = "30d", conflicts_with = "month")]
        since: String,
        /// Until when, as --since takes it; now when absent.
        #[arg(long, conflicts_with = "month")]
        until: Option<String>,
        /// This month so far, in the settings' zone.
        #[arg(long)]
        month: bool,
        #[arg(long, value_enum, default_value_t = By::Policy)]
        by: By,
        #[arg(long, value_enum, default_value_t = SpendOutput::Table)]
        output: SpendOutput,
    },
    /// Replay a trace under the policy in virtual time, against baselines.
    Simulate {
        #[arg(long)]
        config: PathBuf,
        /// A trace file (see traces/README.md).
        #[arg(long)]
        trace: PathBuf,
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// For each policy with an idle timer: the fixed timers replayed on a
    /// history, their frontier, where the policy sits, and the setting for a
    /// limit on cold starts or money.
    Advise {
        #[arg(long)]
        config: PathBuf,
        /// The history: a trace file (see traces/README.md)...
        #[arg(long, conflicts_with_all = ["since", "until"])]
        trace: Option<PathBuf>,
        /// ...or the ledger's, from then (30d, 2026-11-01), as `trace export` writes it.
        #[arg(long)]
        since: Option<String>,
        #[arg(long, requires = "since")]
        until: Option<String>,
        /// Advise the cheapest timer with at most this many cold starts a week.
        #[arg(long)]
        max_cold_starts_per_week: Option<f64>,
        /// Advise the timer with the fewest cold starts within this many yuan a month.
        #[arg(long)]
        max_spend_per_month: Option<f64>,
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Traces from the ledger.
    #[command(subcommand)]
    Trace(TraceCommand),
    /// Let a policy the change guard holds act, through the running daemon's admin API.
    Confirm {
        #[arg(long)]
        config: PathBuf,
        /// The held policy's name.
        policy: String,
    },
    /// Apply the ledger's migrations.
    Migrate {
        #[arg(long)]
        config: PathBuf,
    },
    /// Serve a simulated MatrixDC platform over the vendor's HTTP API.
    FakeCloud(Box<FakeCloudArgs>),
    /// Print the policy file's JSON Schema (also config/policy.schema.json), for editors.
    Schema,
    /// Print the shell completion script, e.g. `mdc-autoscaler completions bash > /etc/bash_completion.d/mdc-autoscaler`.
    Completions { shell: clap_complete::Shell },
    /// Write the man pages, one per command (mdc-autoscaler.1, mdc-autoscaler-run.1, ...), into a directory.
    Man {
        /// e.g. /usr/local/share/man/man1
        dir: PathBuf,
    },
}

#[derive(clap::Subcommand)]
pub enum TraceCommand {
    /// Write the account's own history, from the ledger, as a trace for `simulate` and `advise`.
    Export {
        #[arg(long)]
        config: PathBuf,
        /// From when: a duration back from now (30d, 12h) or a moment (2026-11-01, 2026-11-01 08:00, RFC 3339).
        #[arg(long, default_value = "30d")]
        since: String,
        /// Until when (now when absent), in the same forms.
        #[arg(long)]
        until: Option<String>,
        /// The trace file to write; nothing is written when the export fails.
        #[arg(long)]
        output: PathBuf,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Output {
    Table,
    Json,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum SpendOutput {
    Table,
    Json,
    Csv,
}

#[derive(Args)]
pub struct FakeCloudArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8787")]
    pub listen: SocketAddr,
    /// Fleet file (YAML); the built-in one (config/fleet.yaml) when absent.
    #[arg(long)]
    pub fleet: Option<PathBuf>,
    /// The `namespace` header clients must send.
    #[arg(long, env = "MDC_NAMESPACE", default_value = DEMO_NAMESPACE)]
    pub namespace: String,
    /// The bearer token clients must send.
    #[arg(long, env = "MDC_TOKEN", default_value = DEMO_TOKEN, hide_env_values = true, hide_default_value = true)]
    pub token: String,
    /// Run simulated time this many times faster than real time.
    #[arg(long, default_value_t = 1.0)]
    pub speed: f64,
    /// Freeze simulated time; move it with `POST /_sim/clock/advance?by=90s`.
    #[arg(long, conflicts_with = "speed")]
    pub manual_clock: bool,
    /// Simulated time at start (RFC 3339); overrides the fleet file's `start`.
    #[arg(long)]
    pub start: Option<DateTime<FixedOffset>>,
    /// Seed for names, tokens and fault rolls; overrides the fleet file's.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Base URL clients use to reach this server (for the Jupyter links).
    #[arg(long)]
    pub public_url: Option<String>,
    /// Fault settings (YAML or JSON, shaped like `GET /_sim/faults`).
    #[arg(long)]
    pub faults: Option<PathBuf>,
    /// Share of API calls answered with an error status (0..1).
    #[arg(long)]
    pub error_rate: Option<f64>,
    /// Statuses for --error-rate, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub error_statuses: Option<Vec<u16>>,
    /// Latency added to every API answer, e.g. 200ms.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub latency: Option<Duration>,
    /// Share of answers replaced by invalid JSON.
    #[arg(long)]
    pub malformed_rate: Option<f64>,
    /// Share of answers cut off half-way.
    #[arg(long)]
    pub truncated_rate: Option<f64>,
    /// Make this page of every instance list fail with 500.
    #[arg(long)]
    pub fail_list_page: Option<u32>,
    /// Share of snapshots that fail.
    #[arg(long)]
    pub snapshot_failure_rate: Option<f64>,
    /// GPU resource keys (or `*`) with no free GPUs, e.g. nvidia.com/gpu-h20.
    #[arg(long)]
    pub no_free_gpus: Vec<String>,
    /// List a created instance only this long after its create, e.g. 2m.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub list_lag: Option<Duration>,
}
