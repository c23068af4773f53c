//! The commands over history: `spend`, `trace export`, `simulate`, `advise`.

use std::path::PathBuf;

use anyhow::Context;
use chrono::Utc;

use mdc_autoscaler::config::policy::Config;
use mdc_autoscaler::ledger::connect::place;
use mdc_autoscaler::ledger::report::{self, By};
use mdc_autoscaler::ledger::{OpenError, open_existing};
use mdc_autoscaler::simulate::trace::Trace;

use super::args::{Output, SpendOutput};
use super::{between, load_config};

pub async fn simulate(path: &std::path::Path, trace: &std::path::Path, output: Output) -> anyhow::Result<()> {
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
pub enum History {
    Trace(PathBuf),
    Ledger { since: String, until: Option<String> },
}

pub async fn advise(
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

pub fn read_trace(path: &std::path::Path) -> anyhow::Result<Trace> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let trace = Trace::parse(&path.display().to_string(), &text)?;
    for warning in &trace.warnings {
        eprintln!("warning: {warning}");
    }
    Ok(trace)
}

pub async fn trace_export(
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
pub async fn ledger_trace(
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

/// What `spend` sums.
pub enum Span {
    Between(String, Option<String>),
    Month,
}

pub async fn spend(path: &std::path::Path, span: Span, by: By, output: SpendOutput) -> anyhow::Result<()> {
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
