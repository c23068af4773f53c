//! The daemon and what talks to it or its ledger's schema: `run`, `confirm`, `migrate`.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use chrono::Utc;

use mdc_autoscaler::clock::Clock;
use mdc_autoscaler::config::environment;
use mdc_autoscaler::config::load::{load_file, placed};
use mdc_autoscaler::config::policy::Config;
use mdc_autoscaler::http::{self, Shared};
use mdc_autoscaler::ledger::leadership::Lease;
use mdc_autoscaler::ledger::{Ledger, Store, open};
use mdc_autoscaler::listener::Bounded;
use mdc_autoscaler::metrics::Metrics;
use mdc_autoscaler::reconcile::Daemon;
use mdc_autoscaler::run;
use mdc_autoscaler::text::counted;

use super::load_config;
use mdc_autoscaler::notify::link::Links;

/// `run`'s exit status for a configuration it refuses (sysexits' EX_CONFIG):
/// the unit does not restart on it (`RestartPreventExitStatus=`).
pub const EX_CONFIG: i32 = 78;

pub async fn run_daemon(path: &std::path::Path, dry_run: bool) -> anyhow::Result<()> {
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
    let url = config.settings.ledger.database_url()?;
    let ha = &config.settings.ha;
    // A SQLite ledger with `ha.enabled: true` was refused above.
    let lease = ha.elects(url.expose()).then(|| Lease::new(&url, ha.replica(), ha.try_every * 3)).transpose()?;
    let mut cloud = config.settings.client()?.with_observer(Arc::clone(&metrics) as _);
    if let Some(lease) = &lease {
        cloud = cloud.for_replica(lease.replica());
    }
    let store = open(&config.settings.ledger)?;
    let admin_token = config.settings.read_admin_token().map_err(|why| anyhow::anyhow!("admin token: {why}"))?;
    let shared = Arc::new(Shared {
        status: Default::default(),
        metrics,
        store: store.clone(),
        admin_token,
        confirmed: Default::default(),
        now: Box::new(Utc::now),
        links: Links::new(&config.settings.read_token().map_err(|why| anyhow::anyhow!("token: {why}"))?),
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
    let mut daemon = Daemon::new(cloud, Ledger::new(store), config, dry_run);
    if let Some(lease) = lease {
        daemon = daemon.with_lease(lease);
    }
    run::run(daemon, shared, options).await;
    Ok(())
}

pub async fn confirm(path: &std::path::Path, policy: &str) -> anyhow::Result<()> {
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

pub async fn migrate(path: &std::path::Path) -> anyhow::Result<()> {
    let config = load_config(path);
    let store = open(&config.settings.ledger)?;
    store.migrate().await?;
    println!("ledger migrated ({})", store.backend());
    Ok(())
}

/// Where the daemon of this policy file answers: its `listen`, on loopback when it listens on all.
pub fn daemon_address(config: &Config) -> SocketAddr {
    let mut at = config.settings.listen;
    if at.ip().is_unspecified() {
        at.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    at
}
