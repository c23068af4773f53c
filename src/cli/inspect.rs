//! The commands that look and change nothing: `validate`, `plan`, `instances`, `skus`.

use std::time::Duration;

use chrono::{DateTime, Utc};

use mdc_autoscaler::config::check::Severity;
use mdc_autoscaler::config::environment;
use mdc_autoscaler::config::load::{Finding, Report, load_file, placed};
use mdc_autoscaler::config::policy::Config;
use mdc_autoscaler::ledger::facts::read_facts;
use mdc_autoscaler::ledger::{MemoryStore, OpenError, open_existing};
use mdc_autoscaler::observe::observe;
use mdc_autoscaler::signals::{SignalSettings, read_signals};
use mdc_autoscaler::text::counted;

use super::args::Output;
use super::daemon::daemon_address;
use super::{load_config, moment_ahead, shutdown_signal};

/// Exit 1 on any error, 0 with warnings only. As JSON (for editors and CI):
/// `{file, policies, errors, warnings, diagnostics: [{line, column, severity, message}]}`;
/// what the machine or (`--online`) the cloud lacks is placed at the key it comes from.
pub async fn validate(path: &std::path::Path, online: bool, output: Output) -> anyhow::Result<()> {
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

pub async fn plan(path: &std::path::Path, output: Output, at: Option<&str>) -> anyhow::Result<()> {
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
pub async fn observe_once(
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
pub async fn instances(
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

pub async fn skus(path: &std::path::Path, output: Output, watch: bool) -> anyhow::Result<()> {
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
