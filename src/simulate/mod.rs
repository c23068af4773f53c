//! `simulate`: replays a trace under a policy in virtual time, with the
//! daemon's own planner and execution rules, and places it against
//! baselines replayed on the same trace: always on, fixed idle timers from
//! 0 to 240 minutes (their lower convex hull is the frontier), and a lower
//! bound that pays only for the time in use. Every baseline honours what the
//! policy cannot change: instances it does not select, those it protects,
//! and prepaid terms.

pub mod advise;
pub mod export;
pub mod frontier;
pub mod replay;
pub mod report;
pub mod trace;

use std::collections::BTreeMap;

use chrono::Duration;
use serde::Serialize;

use crate::cloud::BillingType;
use crate::config::policy::{Config, Glob, IdleRule, Limits, MaxDisrupted, Policy, Selector, Signal, StopAfter};
use crate::money::Money;
use crate::sim::Simulator;
use replay::{Replay, ReplayError, replay};
pub use report::{Baseline, InstanceReport, PolicyReport, Report};
use trace::Trace;

/// The fixed idle timers the policy is placed against, in minutes.
pub const TIMERS: [i64; 12] = [0, 5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 240];

/// Why no strategy changes what an instance costs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Fixed {
    /// No policy selects it.
    Unmanaged,
    /// Its policy protects it.
    Protected,
    /// On a prepaid term its policy does not stop.
    Prepaid,
}

/// An instance of the trace (or one the policy created), as the policy sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct Member {
    pub policy: String,
    pub fixed: Option<Fixed>,
}

/// Replays the trace under the policy and under every baseline.
pub async fn simulate(config: &Config, trace: &Trace) -> Result<Report, ReplayError> {
    simulate_with_timers(config, trace, &TIMERS).await
}

/// As [`simulate`], with these fixed timers (minutes) as the baselines.
pub async fn simulate_with_timers(config: &Config, trace: &Trace, timers: &[i64]) -> Result<Report, ReplayError> {
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
            return Err(ReplayError::UnknownCluster { cluster, known: clusters.join(", ") });
        }
    }
    // The 0-minute timer stops at the first look that sees an instance idle: a
    // one-second timer (the planner, like `validate`, wants a timer longer than zero).
    let timer_configs: Vec<(i64, Config)> = timers
        .iter()
        .map(|minutes| (*minutes, timer_config(config, Duration::minutes(*minutes).max(Duration::seconds(1)))))
        .collect();
    // The replays share nothing: each runs on a thread of its own.
    let (policy, always_on, timers) = std::thread::scope(|scope| {
        let policy = scope.spawn(|| on_own_runtime(trace, Some(config)));
        let always_on = scope.spawn(|| on_own_runtime(trace, None));
        let timers: Vec<_> = timer_configs
            .iter()
            .map(|(minutes, timer)| (*minutes, scope.spawn(|| on_own_runtime(trace, Some(timer)))))
            .collect();
        let join = |handle: std::thread::ScopedJoinHandle<'_, Result<Replay, ReplayError>>| {
            handle.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        };
        let timers: Result<Vec<(i64, Replay)>, ReplayError> =
            timers.into_iter().map(|(minutes, handle)| join(handle).map(|r| (minutes, r))).collect();
        (join(policy), join(always_on), timers)
    });
    let (policy, always_on, timers) = (policy?, always_on?, timers?);
    // The platform at the start, once: who owns what, and what each SKU costs.
    let (mut start, names) = trace.build()?;
    let members = members(config, trace, &mut start, &policy)?;
    let bound = active_only(trace, &start, &names, &members, &always_on);
    Ok(report::build(trace, &members, &policy, &always_on, &timers, &bound))
}

fn on_own_runtime(trace: &Trace, config: Option<&Config>) -> Result<Replay, ReplayError> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(ReplayError::Runtime)?;
    runtime.block_on(replay(trace, config))
}

/// The policy reduced to a fixed idle timer: each policy keeps what it
/// selects (a pool's slots, first, as a pool owns them before any
/// selector), what it protects, its signals, snapshots and prepaid rule;
/// it loses schedules, pools, budgets, the runaway stop, deletes and limits.
pub fn timer_config(config: &Config, stop_after: Duration) -> Config {
    let timer = |policy: &Policy, select: Selector| {
        let idle = policy.idle.as_ref();
        Policy {
            name: policy.name.clone(),
            select: Some(select),
            protect: policy.protect.clone(),
            idle: Some(IdleRule {
                signals: idle.map_or_else(|| vec![Signal::Jupyter], |i| i.signals.clone()),
                stop_after: StopAfter::Fixed(stop_after),
                prewarm: None,
                snapshot: idle.and_then(|i| i.snapshot.clone()),
                delete_after_stopped: None,
                delete_without_snapshot: false,
                stop_prepaid: idle.is_some_and(|i| i.stop_prepaid),
                max_runtime: None,
                grace_period_seconds: idle.map_or(10, |i| i.grace_period_seconds),
            }),
            schedule: None,
            pool: None,
            budget: None,
            max_disrupted: MaxDisrupted::share(1.0),
            due_stops: Default::default(),
            notify: None,
        }
    };
    let pools = config.policies.iter().filter_map(|p| {
        let pool = p.pool.as_ref()?;
        let slots = Selector {
            clusters: pool.clusters.clone(),
            display_names: vec![Glob::new(&format!("{}-*", pool.name_prefix))],
            ..Selector::default()
        };
        Some(timer(p, slots))
    });
    let selected = config.policies.iter().filter_map(|p| Some(timer(p, p.select.clone()?)));
    let mut settings = config.settings.clone();
    settings.limits = Limits { actions_per_cycle: u32::MAX, actions_per_hour: u32::MAX, deletes_per_hour: u32::MAX };
    settings.budget = None;
    Config { settings, policies: pools.chain(selected).collect() }
}

/// Every instance of the trace at its start, and every one the policy
/// created, by display name.
fn members(
    config: &Config,
    trace: &Trace,
    sim: &mut Simulator,
    policy: &Replay,
) -> Result<BTreeMap<String, Member>, ReplayError> {
    let mut members = BTreeMap::new();
    for cluster in trace.file.regions.iter().map(|r| r.cluster.clone()) {
        let list = sim
            .list_instances(trace.start, &cluster, 1, u32::MAX)
            .map_err(|error| ReplayError::Simulator { what: "listing the trace's instances", error })?;
        for raw in list.nodes {
            let instance = raw.into_domain(&Default::default())?;
            let owner = config.owner(&instance);
            let fixed = match owner {
                None => Some(Fixed::Unmanaged),
                Some(p) if p.protect.iter().any(|g| g.matches(&instance.display_name)) => Some(Fixed::Protected),
                Some(p)
                    if instance.cost.billing_type != BillingType::PayAsYouGo
                        && !p.idle.as_ref().is_some_and(|i| i.stop_prepaid) =>
                {
                    Some(Fixed::Prepaid)
                }
                Some(_) => None,
            };
            let policy = owner.map_or(crate::config::policy::UNMANAGED, |p| p.name.as_str()).to_owned();
            members.insert(instance.display_name.clone(), Member { policy, fixed });
        }
    }
    // Instances the policy created (pool slots) belong to the policy that created them.
    for action in policy.actions.iter().filter(|a| a.kind == "create") {
        members
            .entry(action.display_name.clone())
            .or_insert_with(|| Member { policy: action.policy.clone(), fixed: None });
    }
    Ok(members)
}

/// The in-use-only lower bound of each instance's compute: the price in
/// force for every minute in use, for the instances a policy may stop; what
/// always on costs for those it may not (unmanaged or protected); nothing
/// for prepaid terms, whose price is paid whatever happens.
fn active_only(
    trace: &Trace,
    sim: &Simulator,
    names: &BTreeMap<String, String>,
    members: &BTreeMap<String, Member>,
    always_on: &Replay,
) -> BTreeMap<String, Money> {
    let always = report::billed_by_instance(always_on);
    let mut bound = BTreeMap::new();
    for display in members.keys() {
        let instance = names.get(display).and_then(|name| sim.instance(name));
        let fixed = members[display].fixed;
        let cost = match (instance, fixed) {
            (_, Some(Fixed::Unmanaged | Fixed::Protected)) => always.get(display).map_or(Money::ZERO, |b| b.compute),
            (Some(instance), _) if instance.billing_type == BillingType::PayAsYouGo => {
                let sku = sim.skus().find(|s| s.id == instance.sku_id);
                let sessions = trace.sessions.get(display).map_or(&[][..], |s| s.as_slice());
                let scaled: i128 = sku.map_or(0, |sku| sessions.iter().map(|s| sku.cost_scaled(s.start, s.end)).sum());
                Money::from_hourly_scaled(scaled)
            }
            // Prepaid, or created by the policy for nobody's sessions.
            _ => Money::ZERO,
        };
        bound.insert(display.clone(), cost);
    }
    bound
}
