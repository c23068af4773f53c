//! `simulate`: replays a trace under a policy in virtual time, with the
//! daemon's own planner and execution rules, and places its spend and its
//! interruptions against baselines replayed on the same trace: always on,
//! idle timers that only stop (5, 15, 30 and 60 minutes), and a lower bound
//! that pays only for the time in use.

pub mod replay;
pub mod report;
pub mod trace;

use std::collections::BTreeMap;

use crate::cloud::BillingType;
use crate::config::load::load_str;
use crate::config::policy::Config;
use crate::money::Money;
use crate::pricing::cost_scaled;
use replay::{Replay, ReplayError, replay};
pub use report::{Baseline, PolicyReport, Report};
use trace::Trace;

/// The idle timers the policy is placed against, in minutes.
pub const TIMERS: [i64; 4] = [5, 15, 30, 60];

/// Replays the trace under the policy and under every baseline.
pub async fn simulate(config: &Config, trace: &Trace) -> Result<Report, ReplayError> {
    // The daemon never acts on a partial observation: a cluster the trace lacks would stop it all.
    let clusters: Vec<&str> = trace.file.regions.iter().map(|r| r.cluster.as_str()).collect();
    let regions: Vec<crate::cloud::Region> = trace
        .file
        .regions
        .iter()
        .map(|r| crate::cloud::Region {
            id: r.id.clone(),
            name: r.name.clone(),
            cluster: r.cluster.clone(),
            harbor_addr: r.harbor_addr.clone(),
            created_at: None,
            updated_at: None,
        })
        .collect();
    for cluster in crate::observe::clusters(config, &regions) {
        if !clusters.contains(&cluster.as_str()) {
            return Err(ReplayError(format!(
                "the policy names cluster {cluster}, which the trace does not have (its clusters: {})",
                clusters.join(", ")
            )));
        }
    }
    let timer_configs: Vec<(String, Config)> = TIMERS
        .iter()
        .map(|minutes| Ok((format!("idle_{minutes}m"), timer_config(config, *minutes)?)))
        .collect::<Result<_, ReplayError>>()?;
    // The replays share nothing: each runs on a thread of its own.
    let (policy, always_on, timers) = std::thread::scope(|scope| {
        let policy = scope.spawn(|| on_own_runtime(trace, Some(config)));
        let always_on = scope.spawn(|| on_own_runtime(trace, None));
        let timers: Vec<_> = timer_configs
            .iter()
            .map(|(name, timer)| (name.clone(), scope.spawn(|| on_own_runtime(trace, Some(timer)))))
            .collect();
        let join = |handle: std::thread::ScopedJoinHandle<'_, Result<Replay, ReplayError>>| {
            handle.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        };
        let timers: Result<Vec<(String, Replay)>, ReplayError> =
            timers.into_iter().map(|(name, handle)| join(handle).map(|r| (name, r))).collect();
        (join(policy), join(always_on), timers)
    });
    let (policy, always_on, timers) = (policy?, always_on?, timers?);
    let owners = owners(config, trace, &policy);
    let active_only = active_only(trace)?;
    Ok(report::build(trace, &owners, &policy, &always_on, &timers, &active_only))
}

fn on_own_runtime(trace: &Trace, config: Option<&Config>) -> Result<Replay, ReplayError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ReplayError(format!("no runtime for a replay: {e}")))?;
    runtime.block_on(replay(trace, config))
}

/// A policy that stops any instance idle for `minutes` by the Jupyter signal:
/// no schedules, no pricing, no limits.
fn timer_config(config: &Config, minutes: i64) -> Result<Config, ReplayError> {
    let text = format!(
        "settings:\n  api: {{ base_url: \"http://simulated\", namespace: trace }}\n  interval: {}s\n  limits: {{ actions_per_cycle: 1000000, actions_per_hour: 1000000 }}\npolicies:\n  - name: idle-timer\n    select: {{ display_name: \"*\" }}\n    idle: {{ signals: [jupyter], stop_after: {minutes}m }}\n",
        config.settings.interval.num_seconds().max(1)
    );
    let (config, report) = load_str("idle timer baseline", &text);
    config.ok_or_else(|| ReplayError(format!("the idle timer baseline does not load: {report}")))
}

/// Display name → the policy that owns the instance under `config`
/// (`unmanaged` for none), for every instance of the policy's replay.
fn owners(config: &Config, trace: &Trace, policy: &Replay) -> BTreeMap<String, String> {
    let Ok((sim, _)) = trace.build() else { return BTreeMap::new() };
    let mut sim = sim;
    let mut owners = BTreeMap::new();
    for cluster in trace.file.regions.iter().map(|r| r.cluster.clone()) {
        let Ok(list) = sim.list_instances(trace.start, &cluster, 1, u32::MAX) else { continue };
        for raw in list.nodes {
            if let Ok(instance) = raw.into_domain(&Default::default()) {
                let owner = config.owner(&instance).map_or(crate::metrics::UNMANAGED, |p| p.name.as_str());
                owners.insert(instance.display_name.clone(), owner.to_owned());
            }
        }
    }
    // Instances the policy created (pool slots) belong to the policy that created them.
    for action in policy.actions.iter().filter(|a| a.kind == "create") {
        owners.entry(action.display_name.clone()).or_insert_with(|| action.policy.clone());
    }
    owners
}

/// What each pay-as-you-go instance would cost if it ran only while in use.
fn active_only(trace: &Trace) -> Result<BTreeMap<String, Money>, ReplayError> {
    let (sim, names) = trace.build().map_err(|e| ReplayError(e.to_string()))?;
    let mut costs = BTreeMap::new();
    for (display, sessions) in &trace.sessions {
        let Some(instance) = sim.instance(&names[display]) else { continue };
        let Some(sku) = sim.skus().find(|s| s.id == instance.sku_id) else { continue };
        let cost = if instance.billing_type == BillingType::PayAsYouGo {
            let scaled: i128 = sessions
                .iter()
                .map(|s| {
                    let windows = sku.discount.as_ref().map(|d| d.windows(s.start, s.end)).unwrap_or_default();
                    cost_scaled(sku.price_per_hour, &windows, s.start, s.end)
                })
                .sum();
            Money::from_hourly_scaled(scaled)
        } else {
            Money::ZERO
        };
        costs.insert(display.clone(), cost);
    }
    Ok(costs)
}
