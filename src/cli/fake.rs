//! `fake-cloud`: the simulated MatrixDC platform served over the vendor's API.

use anyhow::Context;
use chrono::Utc;

use mdc_autoscaler::clock::Clock;
use mdc_autoscaler::secret::Secret;
use mdc_autoscaler::sim::faults::Faults;
use mdc_autoscaler::sim::fleet::{DEFAULT_FLEET, FleetFile};
use mdc_autoscaler::sim::server::{API_PREFIX, FakeCloud};

use super::args::FakeCloudArgs;
use super::shutdown_signal;

pub async fn fake_cloud(args: FakeCloudArgs) -> anyhow::Result<()> {
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

pub fn faults(args: &FakeCloudArgs, from_fleet: Faults) -> anyhow::Result<Faults> {
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
