//! Command-line wiring. The one place that reads the clock.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, FixedOffset, Utc};
use clap::{Args, Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use mdc_autoscaler::clock::Clock;
use mdc_autoscaler::config::check::Severity;
use mdc_autoscaler::config::environment;
use mdc_autoscaler::config::load::{Finding, Report, load_file, placed};
use mdc_autoscaler::config::policy::Config;
use mdc_autoscaler::http::{self, Shared};
use mdc_autoscaler::ledger::connect::place;
use mdc_autoscaler::ledger::facts::{add_facts, recent_actions, tell_recent};
use mdc_autoscaler::ledger::report::{self, By};
use mdc_autoscaler::ledger::{Ledger, MemoryStore, OpenError, Store, open, open_existing};
use mdc_autoscaler::listener::Bounded;
use mdc_autoscaler::metrics::Metrics;
use mdc_autoscaler::observe::observe;
use mdc_autoscaler::reconcile::Daemon;
use mdc_autoscaler::run;
use mdc_autoscaler::secret::Secret;
use mdc_autoscaler::signals::{SignalSettings, read_signals};
use mdc_autoscaler::sim::faults::Faults;
use mdc_autoscaler::sim::fleet::{DEFAULT_FLEET, FleetFile};
use mdc_autoscaler::sim::server::{API_PREFIX, DEMO_NAMESPACE, DEMO_TOKEN, FakeCloud};
use mdc_autoscaler::simulate::trace::Trace;
use mdc_autoscaler::text::counted;

#[derive(Parser)]
#[command(
    name = "mdc-autoscaler",
    version,
    about = "Cost-aware autoscaler for GPU instances on the MatrixDC compute API"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
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
enum TraceCommand {
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
enum Output {
    Table,
    Json,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum SpendOutput {
    Table,
    Json,
    Csv,
}

#[derive(Args)]
struct FakeCloudArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8787")]
    listen: SocketAddr,
    /// Fleet file (YAML); the built-in one (config/fleet.yaml) when absent.
    #[arg(long)]
    fleet: Option<PathBuf>,
    /// The `namespace` header clients must send.
    #[arg(long, env = "MDC_NAMESPACE", default_value = DEMO_NAMESPACE)]
    namespace: String,
    /// The bearer token clients must send.
    #[arg(long, env = "MDC_TOKEN", default_value = DEMO_TOKEN, hide_env_values = true, hide_default_value = true)]
    token: String,
    /// Run simulated time this many times faster than real time.
    #[arg(long, default_value_t = 1.0)]
    speed: f64,
    /// Freeze simulated time; move it with `POST /_sim/clock/advance?by=90s`.
    #[arg(long, conflicts_with = "speed")]
    manual_clock: bool,
    /// Simulated time at start (RFC 3339); overrides the fleet file's `start`.
    #[arg(long)]
    start: Option<DateTime<FixedOffset>>,
    /// Seed for names, tokens and fault rolls; overrides the fleet file's.
    #[arg(long)]
    seed: Option<u64>,
    /// Base URL clients use to reach this server (for the Jupyter links).
    #[arg(long)]
    public_url: Option<String>,
    /// Fault settings (YAML or JSON, shaped like `GET /_sim/faults`).
    #[arg(long)]
    faults: Option<PathBuf>,
    /// Share of API calls answered with an error status (0..1).
    #[arg(long)]
    error_rate: Option<f64>,
    /// Statuses for --error-rate, comma-separated.
    #[arg(long, value_delimiter = ',')]
    error_statuses: Option<Vec<u16>>,
    /// Latency added to every API answer, e.g. 200ms.
    #[arg(long, value_parser = humantime::parse_duration)]
    latency: Option<Duration>,
    /// Share of answers replaced by invalid JSON.
    #[arg(long)]
    malformed_rate: Option<f64>,
    /// Share of answers cut off half-way.
    #[arg(long)]
    truncated_rate: Option<f64>,
    /// Make this page of every instance list fail with 500.
    #[arg(long)]
    fail_list_page: Option<u32>,
    /// Share of snapshots that fail.
    #[arg(long)]
    snapshot_failure_rate: Option<f64>,
    /// GPU resource keys (or `*`) with no free GPUs, e.g. nvidia.com/gpu-h20.
    #[arg(long)]
    no_free_gpus: Vec<String>,
    /// List a created instance only this long after its create, e.g. 2m.
    #[arg(long, value_parser = humantime::parse_duration)]
    list_lag: Option<Duration>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // The demo narrates its decisions; its log shows only what went wrong.
    // The daemons a replay runs speak of virtual time, fourteen at once: their findings are in the report.
    let level = match cli.command {
        Command::Demo { .. } => "warn",
        Command::Simulate { .. } | Command::Advise { .. } => "error",
        _ => "info",
    };
    init_logging(level);
    match cli.command {
        Command::Run { config, dry_run } => run_daemon(&config, dry_run).await,
        Command::Demo { speed, state_dir } => {
            mdc_autoscaler::demo::run(speed, &state_dir).await.map_err(|e| anyhow::anyhow!(e))
        }
        Command::Validate { config, online, output } => validate(&config, online, output).await,
        Command::Plan { config, output, at } => plan(&config, output, at.as_deref()).await,
        Command::Skus { config, output, watch } => skus(&config, output, watch).await,
        Command::Instances { config, policies, states, output } => instances(&config, output, &policies, &states).await,
        Command::Spend { config, since, until, month, by, output } => {
            let span = if month { Span::Month } else { Span::Between(since, until) };
            spend(&config, span, by, output).await
        }
        Command::Simulate { config, trace, output } => simulate(&config, &trace, output).await,
        Command::Advise { config, trace, since, until, max_cold_starts_per_week, max_spend_per_month, output } => {
            let limits = mdc_autoscaler::simulate::advise::Limits {
                cold_starts_per_week: max_cold_starts_per_week,
                spend_per_month_yuan: max_spend_per_month,
            };
            let history = match (trace, since) {
                (Some(trace), _) => History::Trace(trace),
                (None, since) => History::Ledger { since: since.unwrap_or_else(|| "30d".into()), until },
            };
            advise(&config, history, limits, output).await
        }
        Command::Trace(TraceCommand::Export { config, since, until, output }) => {
            trace_export(&config, &since, until.as_deref(), &output).await
        }
        Command::Migrate { config } => migrate(&config).await,
        Command::Confirm { config, policy } => confirm(&config, &policy).await,
        Command::FakeCloud(args) => fake_cloud(*args).await,
        Command::Schema => {
            println!("{}", serde_json::to_string_pretty(&mdc_autoscaler::config::schema::policy_file())?);
            Ok(())
        }
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut <Cli as clap::CommandFactory>::command(),
                "mdc-autoscaler",
                &mut std::io::stdout(),
            );
            Ok(())
        }
        Command::Man { dir } => {
            std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
            clap_mangen::generate_to(<Cli as clap::CommandFactory>::command(), &dir)
                .with_context(|| format!("cannot write the man pages into {}", dir.display()))
        }
    }
}

/// Plain lines without timestamps under journald (it adds its own).
fn init_logging(default_level: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        builder.without_time().with_ansi(false).init();
    } else {
        // Colour only for a person at a terminal; times are UTC, marked `Z`.
        use std::io::IsTerminal;
        let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        builder.with_ansi(colour).init();
    }
}

/// Exit 1 on any error, 0 with warnings only. As JSON (for editors and CI):
/// `{file, policies, errors, warnings, diagnostics: [{line, column, severity, message}]}`;
/// what the machine or (`--online`) the cloud lacks is placed at the key it comes from.
async fn validate(path: &std::path::Path, online: bool, output: Output) -> anyhow::Result<()> {
    let (config, report) = load_file(path);
    let mut found = report.diagnostics;
    if let Some(config) = &config {
        // What `run` would refuse on this machine, as the installed unit would run it: warnings here.
        let context = environment::Context::Unit(mdc_autoscaler::secret::Unit::installed());
        let mut findings: Vec<Finding> = environment::check(config, &context)
            .into_iter()
            .map(|need| Finding { severity: Severity::Warning, ..need })
            .collect();
        if online {
            let client = config.settings.client()?;
            let observed = observe(&client, config).await.map_err(|e| anyhow::anyhow!("cannot check online: {e}"))?;
            let instances: Vec<_> = observed.instances.into_iter().map(|o| o.instance).collect();
            findings.extend(mdc_autoscaler::config::online::check(config, &observed.skus, &instances, Utc::now()));
        }
        found.extend(placed(path, &findings).diagnostics);
        found.sort();
    }
    let errors = found.iter().filter(|d| d.severity == Severity::Error).count();
    let warnings = found.len() - errors;
    let file = path.display();
    match output {
        Output::Json => {
            let diagnostics: Vec<serde_json::Value> = found
                .iter()
                .map(|d| {
                    let severity = if d.severity == Severity::Error { "error" } else { "warning" };
                    serde_json::json!({
                        "line": d.pos.line, "column": d.pos.column, "severity": severity, "message": d.message,
                    })
                })
                .collect();
            let policies = config.as_ref().map(|c| c.policies.len());
            let answer = serde_json::json!({
                "file": file.to_string(), "policies": policies, "errors": errors, "warnings": warnings, "diagnostics": diagnostics,
            });
            println!("{}", serde_json::to_string_pretty(&answer)?);
        }
        Output::Table => {
            print!("{}", Report { source: file.to_string(), diagnostics: found });
            let counts =
                format!("{}, {}", counted(errors, "error", "errors"), counted(warnings, "warning", "warnings"));
            match &config {
                Some(config) if errors == 0 => {
                    println!(
                        "{file}: {}, {}",
                        counted(config.policies.len(), "policy", "policies"),
                        counted(warnings, "warning", "warnings")
                    )
                }
                _ => println!("{file}: {counts}"),
            }
        }
    }
    if errors > 0 {
        std::process::exit(1);
    }
    Ok(())
}

/// Loads a valid policy file or exits with its report.
fn load_config(path: &std::path::Path) -> Config {
    let (config, report) = load_file(path);
    eprint!("{report}");
    config.unwrap_or_else(|| {
        eprintln!("{}: {}; see `mdc-autoscaler validate`", path.display(), counted(report.errors(), "error", "errors"));
        std::process::exit(1)
    })
}

async fn plan(path: &std::path::Path, output: Output, at: Option<&str>) -> anyhow::Result<()> {
    let config = load_config(path);
    let later = at.map(|text| moment_ahead(text, config.settings.zone(), Utc::now())).transpose()?;
    let now = Utc::now();
    let (observed, ledger_note) = observe_once(&config, now).await?;
    let plan = mdc_autoscaler::plan::plan(&observed, &config, later.unwrap_or(now));
    if let (Output::Json, Some(note)) = (output, &ledger_note) {
        eprintln!("{note}");
    }
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&plan)?),
        Output::Table => {
            let tz = config.settings.zone();
            print!("{}", mdc_autoscaler::plan::report::table(&plan, tz));
            if let Some(note) = &ledger_note {
                println!("\n{note}");
            }
        }
    }
    Ok(())
}

/// The cloud, the signals and the ledger's facts as one cycle would see
/// them, and a note when the ledger could not add its part.
async fn observe_once(
    config: &Config,
    now: DateTime<Utc>,
) -> anyhow::Result<(mdc_autoscaler::plan::Observed, Option<String>)> {
    let client = config.settings.client()?;
    let mut observed =
        observe(&client, config).await.map_err(|e| anyhow::anyhow!("cannot observe the cloud, so no plan: {e}"))?;
    read_signals(&mut observed.instances, config, &SignalSettings::default(), None, now).await;
    // Read, never written: a ledger not made yet is the daemon's first cycle.
    let unknown = |e: &dyn std::fmt::Display| {
        Some(format!("The ledger could not be read ({e}): spend is unknown, so nothing would be created."))
    };
    let ledger_note = match open_existing(&config.settings.ledger).await {
        Ok(store) => read_facts(store, &mut observed, config, now).await.err().and_then(|e| unknown(&e)),
        Err(OpenError::Missing { place }) => {
            read_facts(MemoryStore::default(), &mut observed, config, now).await?;
            Some(format!("No ledger at {place} yet: planned as the daemon's first cycle would be, with nothing spent."))
        }
        Err(e) => unknown(&e),
    };
    Ok((observed, ledger_note))
}

/// Every instance with its owner, state, activity and next decision: the
/// running daemon's view when it answers, else one observation now.
async fn instances(
    path: &std::path::Path,
    output: Output,
    policies: &[String],
    states: &[String],
) -> anyhow::Result<()> {
    use mdc_autoscaler::instances::{InstanceRow, rows, table};
    let config = load_config(path);
    let known: Vec<&str> =
        config.policies.iter().map(|p| p.name.as_str()).chain([mdc_autoscaler::config::policy::UNMANAGED]).collect();
    if let Some(unknown) = policies.iter().find(|p| !known.contains(&p.as_str())) {
        anyhow::bail!("no policy `{unknown}` in {}: one of {}", path.display(), known.join(", "));
    }
    let at = daemon_address(&config);
    let now = Utc::now();
    let from_daemon = async {
        let answer = reqwest::Client::new()
            .get(format!("http://{at}/api/v1/instances"))
            .timeout(Duration::from_secs(3))
            .send()
            .await
            .ok()?;
        answer.status().is_success().then_some(())?;
        answer.json::<Vec<InstanceRow>>().await.ok()
    };
    let (mut found, source) = match from_daemon.await {
        Some(found) => (found, format!("as the daemon at {at} planned them")),
        None => {
            let (observed, note) = observe_once(&config, now).await?;
            if let Some(note) = note {
                eprintln!("{note}");
            }
            let plan = mdc_autoscaler::plan::plan(&observed, &config, now);
            (rows(&observed, &config, &plan), format!("observed now: no daemon answered at {at}"))
        }
    };
    found.retain(|r| {
        (policies.is_empty() || policies.contains(&r.policy)) && (states.is_empty() || states.contains(&r.status))
    });
    match output {
        Output::Json => {
            eprintln!("{source}");
            println!("{}", serde_json::to_string_pretty(&found)?);
        }
        Output::Table => print!("{}\n({source})\n", table(&found, config.settings.zone(), now)),
    }
    Ok(())
}

/// Where the daemon of this policy file answers: its `listen`, on loopback when it listens on all.
fn daemon_address(config: &Config) -> SocketAddr {
    let mut at = config.settings.listen;
    if at.ip().is_unspecified() {
        at.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    at
}

/// What the ledger adds to the picture `plan` shows: spend, marks, recent actions, creates not listed yet.
async fn read_facts<S: Store>(
    store: S,
    observed: &mut mdc_autoscaler::plan::Observed,
    config: &Config,
    now: chrono::DateTime<Utc>,
) -> Result<(), mdc_autoscaler::ledger::LedgerError> {
    let mut ledger = Ledger::new(store);
    add_facts(&mut ledger, observed, mdc_autoscaler::plan::Changed::All, config, now).await?;
    observed.schedule_marks = ledger.store().schedule_marks().await?;
    let recent = recent_actions(ledger.store(), now, config.settings.listing_delay).await?;
    tell_recent(observed, recent.taken.iter());
    observed.pending_creates = recent.creates.into_iter().filter(|p| !p.listed(&observed.instances)).collect();
    Ok(())
}

/// `run`'s exit status for a configuration it refuses (sysexits' EX_CONFIG):
/// the unit does not restart on it (`RestartPreventExitStatus=`).
const EX_CONFIG: i32 = 78;

async fn run_daemon(path: &std::path::Path, dry_run: bool) -> anyhow::Result<()> {
    let (config, report) = load_file(path);
    eprint!("{report}");
    let Some(config) = config else {
        eprintln!("{}: {}; see `mdc-autoscaler validate`", path.display(), counted(report.errors(), "error", "errors"));
        std::process::exit(EX_CONFIG)
    };
    let needs = placed(path, &environment::check(&config, &environment::Context::Here));
    if needs.errors() > 0 {
        eprint!("{needs}");
        std::process::exit(EX_CONFIG);
    }
    let metrics = Arc::new(Metrics::new());
    // One replica, no election yet: this one acts.
    metrics.leader(true);
    let cloud = config.settings.client()?.with_observer(Arc::clone(&metrics) as _);
    let store = open(&config.settings.ledger)?;
    let admin_token = config.settings.read_admin_token().map_err(|why| anyhow::anyhow!("admin token: {why}"))?;
    let shared = Arc::new(Shared {
        status: Default::default(),
        metrics,
        store: store.clone(),
        admin_token,
        confirmed: Default::default(),
        now: Box::new(Utc::now),
    });
    let listener = tokio::net::TcpListener::bind(config.settings.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.settings.listen))?;
    tracing::info!(listen = %config.settings.listen, dry_run, policies = config.policies.len(), backend = store.backend(), "mdc-autoscaler running");
    tokio::spawn(axum::serve(Bounded::new(listener), http::router(Arc::clone(&shared))).into_future());
    let options = run::Options {
        config_path: Some(path.to_owned()),
        clock: Clock::real(Utc::now(), 1.0),
        narrate: false,
        migrate: config.settings.ledger.migrate_on_start,
    };
    let daemon = Daemon::new(cloud, Ledger::new(store), config, dry_run);
    run::run(daemon, shared, options).await;
    Ok(())
}

async fn simulate(path: &std::path::Path, trace: &std::path::Path, output: Output) -> anyhow::Result<()> {
    let config = load_config(path);
    let trace = read_trace(trace)?;
    let report = mdc_autoscaler::simulate::simulate(&config, &trace).await?;
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Output::Table => print!("{}", report.table()),
    }
    Ok(())
}

/// What `advise` replays.
enum History {
    Trace(PathBuf),
    Ledger { since: String, until: Option<String> },
}

async fn advise(
    path: &std::path::Path,
    history: History,
    limits: mdc_autoscaler::simulate::advise::Limits,
    output: Output,
) -> anyhow::Result<()> {
    let config = load_config(path);
    let trace = match history {
        History::Trace(path) => read_trace(&path)?,
        History::Ledger { since, until } => {
            let (trace, exported, _) = ledger_trace(&config, &since, until.as_deref()).await?;
            for warning in &exported.warnings {
                eprintln!("warning: {warning}");
            }
            trace
        }
    };
    let advice = mdc_autoscaler::simulate::advise::advise(&config, &trace, limits).await?;
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&advice)?),
        Output::Table => print!("{}", advice.table()),
    }
    Ok(())
}

fn read_trace(path: &std::path::Path) -> anyhow::Result<Trace> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let trace = Trace::parse(&path.display().to_string(), &text)?;
    for warning in &trace.warnings {
        eprintln!("warning: {warning}");
    }
    Ok(trace)
}

async fn trace_export(
    path: &std::path::Path,
    since: &str,
    until: Option<&str>,
    output: &std::path::Path,
) -> anyhow::Result<()> {
    let config = load_config(path);
    let (trace, exported, place) = ledger_trace(&config, since, until).await?;
    std::fs::write(output, &exported.text).with_context(|| format!("cannot write {}", output.display()))?;
    for warning in &exported.warnings {
        eprintln!("warning: {warning}");
    }
    println!("wrote {} ({} to {}, from the ledger at {place})", output.display(), trace.start, trace.end);
    Ok(())
}

/// The ledger's history from `since` until `until` (now when absent) as a
/// trace, the text it reads from, and where the ledger is.
async fn ledger_trace(
    config: &Config,
    since: &str,
    until: Option<&str>,
) -> anyhow::Result<(Trace, mdc_autoscaler::simulate::export::Exported, String)> {
    let zone = config.settings.zone();
    let (from, to) = between(since, until, zone, Utc::now())?;
    let url = config.settings.ledger.database_url().map_err(OpenError::Url)?;
    let place = place(url.expose());
    let store = open_existing(&config.settings.ledger).await?;
    let exported = mdc_autoscaler::simulate::export::export(&store, from, to, zone)
        .await
        .with_context(|| format!("cannot export from the ledger at {place}"))?;
    // What is written must read back as a trace.
    let trace = Trace::parse("the exported trace", &exported.text)
        .map_err(|e| anyhow::anyhow!("the exported trace does not read back (a bug): {e}"))?;
    Ok((trace, exported, place))
}

/// `--since` and `--until` (now when absent): each back from `now` (30d)
/// or a time (2026-11-01, 2026-11-01 09:00, RFC 3339) in `zone`.
fn between(
    since: &str,
    until: Option<&str>,
    zone: chrono_tz::Tz,
    now: chrono::DateTime<Utc>,
) -> anyhow::Result<(chrono::DateTime<Utc>, chrono::DateTime<Utc>)> {
    let moment = |text: &str| -> anyhow::Result<chrono::DateTime<Utc>> {
        if let Ok(back) = humantime::parse_duration(text) {
            return Ok(now - chrono::Duration::from_std(back)?);
        }
        let moment: mdc_autoscaler::sim::fleet::Moment =
            text.parse().map_err(|e| anyhow::anyhow!("--since/--until: {e}, or a duration such as 30d"))?;
        Ok(moment.resolve(zone))
    };
    let (from, to) = (moment(since)?, until.map(moment).transpose()?.unwrap_or(now));
    anyhow::ensure!(from < to, "--since ({from}) must be before --until ({to})");
    Ok((from, to))
}

/// `plan --at`: ahead of `now` (2h), the next HH:MM, or a time, in `zone`.
fn moment_ahead(text: &str, zone: chrono_tz::Tz, now: chrono::DateTime<Utc>) -> anyhow::Result<chrono::DateTime<Utc>> {
    let at = if let Ok(ahead) = humantime::parse_duration(text) {
        now + chrono::Duration::from_std(ahead)?
    } else if let Ok(time) = chrono::NaiveTime::parse_from_str(text, "%H:%M") {
        let today = now.with_timezone(&zone).date_naive();
        let on = |day: chrono::NaiveDate| mdc_autoscaler::sim::fleet::Moment::Local(day.and_time(time)).resolve(zone);
        let at = on(today);
        if at > now { at } else { on(today + chrono::Duration::days(1)) }
    } else {
        let moment: mdc_autoscaler::sim::fleet::Moment = text
            .parse()
            .map_err(|e| anyhow::anyhow!("--at: {e}, a time of day such as 00:05, or a duration such as 2h"))?;
        moment.resolve(zone)
    };
    anyhow::ensure!(at >= now, "--at {text} is in the past ({at}): the plan is of what comes");
    Ok(at)
}

async fn confirm(path: &std::path::Path, policy: &str) -> anyhow::Result<()> {
    let config = load_config(path);
    let token = config
        .settings
        .read_admin_token()
        .map_err(|why| anyhow::anyhow!("admin token: {why}"))?
        .ok_or_else(|| anyhow::anyhow!("settings.admin_token is not set: the daemon refuses every confirmation"))?;
    let at = daemon_address(&config);
    let url = format!("http://{at}/api/v1/policies/{policy}/confirm");
    let answer = reqwest::Client::new()
        .post(&url)
        .bearer_auth(token.expose())
        .send()
        .await
        .with_context(|| format!("cannot reach the daemon at {at}"))?;
    let status = answer.status();
    let text = answer.text().await.unwrap_or_default();
    anyhow::ensure!(status.is_success(), "the daemon answered {status}: {text}");
    println!("{policy}: {text}");
    Ok(())
}

async fn migrate(path: &std::path::Path) -> anyhow::Result<()> {
    let config = load_config(path);
    let store = open(&config.settings.ledger)?;
    store.migrate().await?;
    println!("ledger migrated ({})", store.backend());
    Ok(())
}

async fn skus(path: &std::path::Path, output: Output, watch: bool) -> anyhow::Result<()> {
    use mdc_autoscaler::cloud::Cloud;
    let config = load_config(path);
    let client = config.settings.client()?;
    loop {
        let mut skus = Vec::new();
        for region in client.list_regions().await.map_err(|e| anyhow::anyhow!("cannot list the regions: {e}"))? {
            let listed = client.list_skus(&region.id).await;
            skus.extend(listed.map_err(|e| anyhow::anyhow!("cannot list the SKUs of {}: {e}", region.name))?);
        }
        let now = Utc::now();
        let rows = mdc_autoscaler::prices::rows(&skus, now);
        match output {
            Output::Json => println!("{}", serde_json::to_string_pretty(&rows)?),
            Output::Table => print!("{}", mdc_autoscaler::prices::table(&rows, config.settings.zone(), now)),
        }
        if !watch {
            return Ok(());
        }
        let every = config.settings.sku_interval.to_std().unwrap_or(Duration::from_secs(120));
        tokio::select! {
            () = tokio::time::sleep(every) => println!(),
            () = shutdown_signal() => return Ok(()),
        }
    }
}

/// What `spend` sums.
enum Span {
    Between(String, Option<String>),
    Month,
}

async fn spend(path: &std::path::Path, span: Span, by: By, output: SpendOutput) -> anyhow::Result<()> {
    let config = load_config(path);
    let store = open_existing(&config.settings.ledger).await?;
    let (now, tz) = (Utc::now(), config.settings.zone());
    let (from, to) = match span {
        Span::Between(since, until) => between(&since, until.as_deref(), tz, now)?,
        Span::Month => (mdc_autoscaler::ledger::service::month_start(tz, now), now),
    };
    let rows = report::spend(&store, from, to, by, tz).await?;
    match output {
        SpendOutput::Json => println!("{}", serde_json::to_string_pretty(&rows)?),
        SpendOutput::Csv => print!("{}", report::csv(&rows)),
        SpendOutput::Table => print!("{}", report::table(&rows)),
    }
    Ok(())
}

async fn fake_cloud(args: FakeCloudArgs) -> anyhow::Result<()> {
    let (source, text) = match &args.fleet {
        Some(path) => (
            path.display().to_string(),
            std::fs::read_to_string(path).with_context(|| format!("cannot read fleet file {}", path.display()))?,
        ),
        None => ("config/fleet.yaml (built in)".to_owned(), DEFAULT_FLEET.to_owned()),
    };
    let mut fleet = FleetFile::parse(&source, &text)?;
    if let Some(seed) = args.seed {
        fleet.seed = seed;
    }
    let start = args.start.or(fleet.start).map_or_else(Utc::now, |t| t.to_utc());
    let faults = faults(&args, fleet.faults.clone())?;
    let sim = fleet.build(&args.namespace, start)?;
    let clock = if args.manual_clock { Clock::manual(start) } else { Clock::real(start, args.speed) };

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let local = listener.local_addr()?;
    let public_url = args.public_url.clone().unwrap_or_else(|| {
        let host = if local.ip().is_unspecified() { "127.0.0.1".to_owned() } else { local.ip().to_string() };
        format!("http://{host}:{}", local.port())
    });
    let server = FakeCloud::new(sim, clock, Secret::new(args.token), faults, &public_url);
    tracing::info!(
        api = %format!("{public_url}{API_PREFIX}"),
        namespace = %args.namespace,
        fleet = %source,
        simulated_start = %start,
        speed = if args.manual_clock { 0.0 } else { args.speed },
        "fake MatrixDC listening"
    );
    server.serve(listener, shutdown_signal()).await?;
    tracing::info!("fake MatrixDC stopped");
    Ok(())
}

fn faults(args: &FakeCloudArgs, from_fleet: Faults) -> anyhow::Result<Faults> {
    let mut faults = match &args.faults {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
            serde_saphyr::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
        }
        None => from_fleet,
    };
    let wire = &mut faults.wire;
    let set = |target: &mut f64, value: Option<f64>| value.into_iter().for_each(|v| *target = v);
    set(&mut wire.error_rate, args.error_rate);
    set(&mut wire.malformed_rate, args.malformed_rate);
    set(&mut wire.truncated_rate, args.truncated_rate);
    set(&mut faults.platform.snapshot_failure_rate, args.snapshot_failure_rate);
    if let Some(statuses) = &args.error_statuses {
        wire.error_statuses = statuses.clone();
    }
    if let Some(latency) = args.latency {
        wire.latency = latency;
    }
    if args.fail_list_page.is_some() {
        wire.fail_list_page = args.fail_list_page;
    }
    faults.platform.no_free_gpus.extend(args.no_free_gpus.iter().cloned());
    if let Some(lag) = args.list_lag {
        faults.platform.list_lag = lag;
    }
    for (name, rate) in [
        ("error-rate", wire.error_rate),
        ("malformed-rate", wire.malformed_rate),
        ("truncated-rate", wire.truncated_rate),
        ("snapshot-failure-rate", faults.platform.snapshot_failure_rate),
    ] {
        anyhow::ensure!((0.0..=1.0).contains(&rate), "--{name} must be between 0 and 1, not {rate}");
    }
    Ok(faults)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }
}
