//! `mdc-autoscaler demo`: the daemon against an in-process simulated fleet,
//! from 21:30 Beijing time (half an hour before the night discount), each
//! decision narrated; on Ctrl-C, spend and savings beside the simulated bill.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DurationRound, TimeZone, Utc};

use crate::clock::Clock;
use crate::config::load::load_str;
use crate::http::{self, Shared};
use crate::ledger::{Ledger, Store, open, report};
use crate::listener::Bounded;
use crate::metrics::Metrics;
use crate::money::Money;
use crate::reconcile::Daemon;
use crate::secret::Secret;
use crate::sim::faults::Faults;
use crate::sim::fleet::{DEFAULT_FLEET, FleetFile};
use crate::sim::server::{API_PREFIX, DEMO_NAMESPACE, DEMO_TOKEN, FakeCloud};

const DEMO_POLICY: &str = include_str!("../config/demo.yaml");

/// Runs the demo until Ctrl-C, then prints the summary.
pub async fn run(speed: f64, state_dir: &Path) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    if speed <= 0.0 {
        return Err("--speed must be above 0".into());
    }
    let state_dir = &claim(state_dir)?;
    let db = state_dir.join(LEDGER);
    // Tonight at 21:30 in Beijing: half an hour before the 4090's night discount.
    let shanghai = chrono_tz::Asia::Shanghai;
    let today = Utc::now().with_timezone(&shanghai).date_naive();
    let start = shanghai
        .from_local_datetime(&today.and_hms_opt(21, 30, 0).expect("valid"))
        .single()
        .expect("no DST in Shanghai")
        .to_utc();
    let clock = Clock::real(start, speed);
    let sim = FleetFile::parse("config/fleet.yaml", DEFAULT_FLEET)?.build(DEMO_NAMESPACE, start)?;
    let cloud_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let cloud_url = format!("http://{}", cloud_listener.local_addr()?);
    let fake = FakeCloud::new(sim, clock.clone(), Secret::new(DEMO_TOKEN), Faults::default(), &cloud_url);
    tokio::spawn(Arc::clone(&fake).serve(cloud_listener, std::future::pending()));

    // The demo's one token: for its API, and for its admin API (snoozes).
    let token = state_dir.join(TOKEN);
    std::fs::write(&token, DEMO_TOKEN).map_err(|e| format!("cannot write {}: {e}", token.display()))?;
    let text = DEMO_POLICY
        .replace("@API@", &format!("{cloud_url}{API_PREFIX}"))
        .replace("@TOKEN@", &token.display().to_string())
        .replace("@DB@", &format!("sqlite://{}", db.display()));
    let policy = state_dir.join(POLICY);
    std::fs::write(&policy, &text).map_err(|e| format!("cannot write {}: {e}", policy.display()))?;
    let (config, report) = load_str("config/demo.yaml", &text);
    let config = config.ok_or_else(|| format!("the demo policy is invalid:\n{report}"))?;
    let metrics = Arc::new(Metrics::new());
    let cloud = config.settings.client()?.with_observer(Arc::clone(&metrics) as _);
    let store = open(&config.settings.ledger)?;
    store.migrate().await?;
    let status_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let status_url = format!("http://{}", status_listener.local_addr()?);
    let demo_clock = clock.clone();
    let shared = Arc::new(Shared {
        status: Default::default(),
        metrics,
        store: store.clone(),
        admin_token: config.settings.read_admin_token()?,
        confirmed: Default::default(),
        now: Box::new(move || demo_clock.now()),
        links: crate::notify::link::Links::new(&config.settings.read_token()?),
    });
    tokio::spawn(axum::serve(Bounded::new(status_listener), http::router(Arc::clone(&shared))).into_future());
    println!("mdc-autoscaler demo: a simulated MatrixDC account, {speed}x real time, from 21:30 Beijing time.");
    println!("  fake MatrixDC API   {cloud_url}{API_PREFIX}  (namespace {DEMO_NAMESPACE}, token {DEMO_TOKEN})");
    println!("  metrics             {status_url}/metrics");
    println!("  daemon status       {status_url}/api/v1/status   plan: {status_url}/api/v1/plan");
    println!("  ledger              {}", db.display());
    println!("Each decision is printed as it is made. Ctrl-C for the spend and savings summary.\n");
    let options = crate::run::Options { config_path: None, clock: clock.clone(), narrate: true, migrate: false };
    let daemon = Daemon::new(cloud, Ledger::new(store.clone()), config, false);
    crate::run::run(daemon, shared, options).await;

    // To the minute, so that `spend` given the times printed tells the same.
    let end = clock.now().duration_trunc(chrono::Duration::minutes(1)).unwrap_or(start).max(start);
    let rows = report::spend(&store, start, end, report::By::Policy, shanghai).await?;
    let bill = {
        let mut sim = fake.sim();
        sim.advance(end);
        sim.bill()
    };
    println!("\nFrom 21:30 to {} Beijing time:", end.with_timezone(&shanghai).format("%H:%M"));
    for row in &rows {
        println!(
            "  {:<10} spent ¥{:.2}, saved an estimated ¥{:.2}",
            row.key,
            row.spend.as_yuan_f64(),
            row.saved.as_yuan_f64()
        );
    }
    let compute: Money = bill.instances.iter().map(|b| b.compute).sum();
    println!(
        "  the simulated cloud billed ¥{:.2} of compute (¥{:.2} with storage and prepaid terms)",
        compute.as_yuan_f64(),
        bill.total.as_yuan_f64()
    );
    let day = |t: chrono::DateTime<Utc>| t.with_timezone(&shanghai).format("%Y-%m-%d %H:%M").to_string();
    println!(
        "The same from the demo's ledger:\n  mdc-autoscaler spend --config {} --since '{}' --until '{}'",
        policy.display(),
        day(start),
        day(end)
    );
    Ok(())
}

// The files the demo writes in its state directory; only these are ever
// replaced, and only in a directory that the demo's marker says is its own.
const LEDGER: &str = "ledger.db";
const TOKEN: &str = "token";
const POLICY: &str = "policy.yaml";
const MARKER: &str = ".mdc-autoscaler-demo";

/// The SQLite ledger's files: the database, its shared memory, its write-ahead log.
fn ledger_files() -> [String; 3] {
    ["", "-shm", "-wal"].map(|suffix| format!("{LEDGER}{suffix}"))
}

/// Makes `state_dir` the demo's (a new or empty one, or one it made before)
/// and clears its last run's ledger; returns it made absolute, for the
/// paths in the policy written there to hold from any directory. A
/// directory holding a file of those names that the demo did not make is
/// refused, and nothing in it is touched.
fn claim(state_dir: &Path) -> Result<PathBuf, StateDirError> {
    fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> StateDirError {
        let path = path.to_owned();
        move |source| StateDirError::Io { what, path, source }
    }
    std::fs::create_dir_all(state_dir).map_err(io("create", state_dir))?;
    let marker = state_dir.join(MARKER);
    if !marker.exists() {
        let own = ledger_files().into_iter().chain([TOKEN, POLICY].map(String::from));
        if let Some(found) = own.map(|f| state_dir.join(f)).find(|p| p.exists()) {
            return Err(StateDirError::NotTheDemos(found));
        }
        std::fs::write(&marker, "The demo's state: its ledger, token and policy; replaced by each run.\n")
            .map_err(io("write", &marker))?;
    }
    for file in ledger_files() {
        let path = state_dir.join(file);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io("remove the last demo's", &path)(e)),
            _ => {}
        }
    }
    state_dir.canonicalize().map_err(io("resolve", state_dir))
}

/// Why the demo cannot use its state directory.
#[derive(Debug, thiserror::Error)]
pub enum StateDirError {
    #[error("{} was not written by the demo, so the demo leaves it alone: choose another --state-dir", .0.display())]
    NotTheDemos(PathBuf),
    #[error("cannot {what} {}: {source}", path.display())]
    Io { what: &'static str, path: PathBuf, source: std::io::Error },
}
