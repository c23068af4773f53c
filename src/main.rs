//! Command-line wiring: parse, log, and hand each command to its module in
//! `cli/`. The binary is the one place that reads the clock.

use anyhow::Context;
use clap::Parser;
use tracing_subscriber::EnvFilter;

mod cli;

use cli::args::*;
use cli::daemon::*;
use cli::fake::*;
use cli::history::*;
use cli::inspect::*;

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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }
}
