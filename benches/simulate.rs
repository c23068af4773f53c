//! Replay speed: the shipped notebook team scaled to 1,000 instances over its
//! 30 days, under config/example.yaml. Prints simulated instance-hours per
//! second of one replay (the policy's); with SIMULATE_BASELINES=1, also the
//! whole `simulate` with its thirteen baselines (always on, twelve fixed timers).
//!
//!     cargo bench --bench simulate
//!     SIMULATE_INSTANCES=100 SIMULATE_BASELINES=1 cargo bench --bench simulate
//!     SIMULATE_EXPORT=1 cargo bench --bench simulate     # and `trace export` of what the daemon recorded

use std::time::Instant;

use mdc_autoscaler::config::load::load_file;
use mdc_autoscaler::simulate::replay::replay;
use mdc_autoscaler::simulate::simulate;
use mdc_autoscaler::simulate::trace::{Trace, TraceFile};

/// The notebook team's mix (70% office hours, 20% late starters, 8% weekly
/// experiments, the rest monthly terms), scaled to `size` instances.
fn scaled(size: u32) -> Trace {
    let text = std::fs::read_to_string("traces/notebook-team.yaml").expect("the shipped trace");
    let mut file: TraceFile = Trace::parse("notebook-team", &text).expect("parses").file;
    let shares = [("nb-dev", 70), ("nb-research", 20), ("nb-experiment", 8)];
    let mut left = size - 1;
    for (name, share) in shares {
        let count = (size * share / 100).max(1);
        file.instances.iter_mut().find(|i| i.display_name == name).expect("in the trace").count = count;
        left -= count;
    }
    file.instances.iter_mut().find(|i| i.display_name == "nb-monthly").expect("in the trace").count = left.max(1);
    for region in &mut file.regions {
        region.gpus.insert("nvidia.com/gpu-4090".into(), 2000);
    }
    Trace::new(file).expect("scales")
}

fn main() {
    let (config, report) = load_file(std::path::Path::new("config/example.yaml"));
    let config = config.unwrap_or_else(|| panic!("{report}"));
    let size = std::env::var("SIMULATE_INSTANCES").ok().and_then(|n| n.parse().ok()).unwrap_or(1000);
    let trace = scaled(size);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let hours = trace.sessions.len() as f64 * (trace.end - trace.start).num_hours() as f64;

    let started = Instant::now();
    let one = runtime.block_on(replay(&trace, Some(&config))).expect("replays");
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "one replay: {} instances x {} days = {hours:.0} instance-hours in {seconds:.2} s: {:.0} instance-hours/s ({} daemon steps, {:.2} ms each)",
        trace.sessions.len(),
        (trace.end - trace.start).num_days(),
        hours / seconds,
        one.steps,
        seconds * 1000.0 / one.steps.max(1) as f64
    );

    if std::env::var("SIMULATE_EXPORT").is_ok() {
        use mdc_autoscaler::ledger::MemoryStore;
        use mdc_autoscaler::simulate::replay::{Stepping, replay_in};
        let store = MemoryStore::default();
        runtime.block_on(replay_in(&trace, Some(&config), Stepping::Told, store.clone())).expect("replays");
        let started = Instant::now();
        let exported = runtime
            .block_on(mdc_autoscaler::simulate::export::export(&store, trace.start, trace.end, trace.zone))
            .expect("exports");
        let seconds = started.elapsed().as_secs_f64();
        let back = Trace::parse("exported", &exported.text).expect("reads back");
        println!(
            "trace export of {} instances x {} days: {seconds:.2} s, {:.1} MiB, {} sessions",
            back.sessions.len(),
            (trace.end - trace.start).num_days(),
            exported.text.len() as f64 / 1048576.0,
            back.sessions.values().map(Vec::len).sum::<usize>()
        );
    }

    if std::env::var("SIMULATE_BASELINES").is_err() {
        return;
    }
    let started = Instant::now();
    let report = runtime.block_on(simulate(&config, &trace)).expect("simulates");
    println!(
        "simulate with its 13 baselines: {:.2} s; the policy spends {:.0}% of always on, {:.0}% of the in-use-only bound",
        started.elapsed().as_secs_f64(),
        report.total.spend_vs_always_on * 100.0,
        report.total.spend_vs_active_only * 100.0
    );
}
