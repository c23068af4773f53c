//! The commands, one file per kind, and what they share: the policy file
//! loaded or refused, times as users write them, waiting for Ctrl-C or SIGTERM.

use chrono::Utc;

use mdc_autoscaler::config::load::load_file;
use mdc_autoscaler::config::policy::Config;
use mdc_autoscaler::text::counted;

pub mod args;
pub mod daemon;
pub mod fake;
pub mod history;
pub mod inspect;

/// Loads a valid policy file or exits with its report.
pub fn load_config(path: &std::path::Path) -> Config {
    let (config, report) = load_file(path);
    eprint!("{report}");
    config.unwrap_or_else(|| {
        eprintln!("{}: {}; see `mdc-autoscaler validate`", path.display(), counted(report.errors(), "error", "errors"));
        std::process::exit(1)
    })
}

/// `--since` and `--until` (now when absent): each back from `now` (30d)
/// or a time (2026-11-01, 2026-11-01 09:00, RFC 3339) in `zone`.
pub fn between(
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
pub fn moment_ahead(
    text: &str,
    zone: chrono_tz::Tz,
    now: chrono::DateTime<Utc>,
) -> anyhow::Result<chrono::DateTime<Utc>> {
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

pub async fn shutdown_signal() {
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
