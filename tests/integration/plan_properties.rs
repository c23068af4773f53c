//! Properties of the planner over generated fleets and policies: protected
//! instances are never in a plan, limits always hold, budgets are never
//! planned past, plans are deterministic (learned ones too), and a plan
//! applied to the simulator leaves nothing more to do.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, TimeZone, Utc};
use mdc_autoscaler::clock::Clock;
use mdc_autoscaler::cloud::{BillingType, Cloud, InstanceStatus, wire};
use mdc_autoscaler::config::load::load_str;
use mdc_autoscaler::config::policy::Config;
use mdc_autoscaler::money::Money;
use mdc_autoscaler::plan::habits::{Habits, Used};
use mdc_autoscaler::plan::{self, ActionKind, Observed, ObservedInstance, Reading, SnapshotState, SpendSoFar};
use mdc_autoscaler::pricing;
use mdc_autoscaler::sim::fleet::{DEFAULT_FLEET, FleetFile};
use mdc_autoscaler::sim::local::SimCloud;
use proptest::prelude::*;

#[derive(Clone, Debug)]
struct PolicySpec {
    glob: &'static str,
    protect: Option<&'static str>,
    stop_after: &'static str,
    snapshot: bool,
    delete_after: bool,
    schedule: bool,
    max_disrupted: Option<u8>,
    budget: Option<(u32, bool)>,
    pool: Option<u8>,
}

fn policy_spec() -> impl Strategy<Value = PolicySpec> {
    (
        prop::sample::select(vec!["nb-*", "a-*", "*", "nb-a*"]),
        prop::option::of(prop::sample::select(vec!["nb-keep-*", "*-x", "a-*"])),
        prop::sample::select(vec!["10m", "30m", "2h", "adaptive, prewarm: true"]),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        prop::option::of(prop::sample::select(vec![25u8, 50, 100])),
        prop::option::of((prop::sample::select(vec![20u32, 100, 1000]), any::<bool>())),
        prop::option::of(0u8..4),
    )
        .prop_map(|(glob, protect, stop_after, snapshot, delete_after, schedule, max_disrupted, budget, pool)| {
            PolicySpec { glob, protect, stop_after, snapshot, delete_after, schedule, max_disrupted, budget, pool }
        })
}

fn policy_file(specs: &[PolicySpec], per_cycle: u32, per_hour: u32, global: Option<u32>) -> String {
    let mut text = format!(
        "settings:\n  timezone: Asia/Shanghai\n  limits: {{ actions_per_cycle: {per_cycle}, actions_per_hour: {per_hour}, deletes_per_hour: {} }}\n",
        per_hour / 2
    );
    if let Some(daily) = global {
        text += &format!("  budget: {{ daily: {daily}, when_exceeded: stop }}\n");
    }
    text += "policies:\n";
    for (k, s) in specs.iter().enumerate() {
        text += &format!("  - name: p{k}\n    select: {{ display_name: \"{}\" }}\n", s.glob);
        if let Some(protect) = s.protect {
            text += &format!("    protect: {{ display_name: \"{protect}\" }}\n");
        }
        text += &format!("    idle: {{ signals: [jupyter], stop_after: {}", s.stop_after);
        if s.snapshot {
            text += ", snapshot: {}";
        }
        // A pool's count decides which of its members exist.
        if s.delete_after && s.pool.is_none() {
            text += ", delete_after_stopped: 1d, delete_without_snapshot: true";
        }
        text += ", max_runtime: 48h }\n";
        if s.schedule {
            text += "    schedule: { start: \"0 9 * * MON-FRI\", stop: \"0 20 * * *\" }\n";
        }
        if let Some(share) = s.max_disrupted {
            text += &format!("    max_disrupted: {share}%\n");
        }
        if let Some((daily, stop)) = s.budget {
            let when = if stop { "stop" } else { "alert" };
            text += &format!("    budget: {{ daily: {daily}, when_exceeded: {when} }}\n");
        }
        if let Some(desired) = s.pool {
            text += &format!(
                "    pool: {{ cluster: [host-cluster, bj2-cluster], image: img, desired: {desired}, gpu: {{ products: [H20, \"4090\"] }}, wait_for_discount: 1h }}\n"
            );
        }
    }
    text
}

#[derive(Clone, Debug)]
struct InstanceSpec {
    name: String,
    status: &'static str,
    sku: usize,
    prepaid: bool,
    reading: u8,
    minutes: i64,
    snoozed: bool,
}

fn instance_spec() -> impl Strategy<Value = InstanceSpec> {
    (
        prop::sample::select(vec!["nb-", "nb-keep-", "a-", "b-", "nb-a", "p0-", "p1-"]),
        0u32..6,
        prop::sample::select(vec![
            "Running",
            "Running",
            "Shutdown",
            "Starting",
            "ShuttingDown",
            "Hibernating",
            "Creating",
        ]),
        0usize..3,
        any::<bool>(),
        0u8..4,
        0i64..(3 * 24 * 60),
        any::<bool>(),
    )
        .prop_map(|(prefix, n, status, sku, prepaid, reading, minutes, snoozed)| InstanceSpec {
            name: format!("{prefix}{n}"),
            status,
            sku,
            prepaid,
            reading,
            minutes,
            snoozed,
        })
}

/// The default fleet's SKUs, as the cloud lists them.
fn skus(now: DateTime<Utc>) -> Vec<mdc_autoscaler::cloud::Sku> {
    let mut sim = FleetFile::parse("fleet", DEFAULT_FLEET).unwrap().build("demo", now).unwrap();
    let regions = sim.list_regions(now);
    regions.iter().flat_map(|r| sim.list_skus(now, &r.id)).map(|s| s.into_domain().unwrap()).collect()
}

fn observed(specs: &[InstanceSpec], now: DateTime<Utc>, spend: Option<(u32, u32)>, recent: u32) -> Observed {
    let skus = skus(now);
    let sku_ids = ["66", "2", "81"];
    let statuses = mdc_autoscaler::cloud::StatusMap::default();
    let instances: Vec<ObservedInstance> = specs
        .iter()
        .enumerate()
        .map(|(n, s)| {
            let sku = skus.iter().find(|k| k.id == sku_ids[s.sku]).unwrap();
            let raw = wire::Instance {
                name: format!("instance-{n:08x}"),
                display_name: s.name.clone(),
                region: sku.cluster.clone(),
                status: s.status.into(),
                resources: wire::Resources {
                    gpu_num: "1".into(),
                    gpu_type: sku.hardware.gpu_product.clone(),
                    ..Default::default()
                },
                volume_mounts: vec![wire::VolumeMount {
                    size: 50,
                    filesystem_type: "data".into(),
                    ..Default::default()
                }],
                cost: wire::Cost {
                    cost_type: if s.prepaid { "2".into() } else { "1".into() },
                    gpu_sku_id: sku.id.clone(),
                    ..Default::default()
                },
                ..Default::default()
            };
            let at = now - Duration::minutes(s.minutes);
            let reading = match s.reading {
                0 => Reading::Active,
                1 => Reading::Unreadable("refused".into()),
                _ => Reading::IdleSince(at),
            };
            ObservedInstance {
                instance: raw.into_domain(&statuses).unwrap(),
                signals: [("jupyter".to_owned(), reading)].into(),
                running_since: Some(at),
                stopped_since: Some(at),
                snapshot: SnapshotState::None,
            }
        })
        .collect();
    Observed {
        regions: vec![],
        skus,
        warned: Default::default(),
        snoozes: specs
            .iter()
            .zip(&instances)
            .filter(|(s, _)| s.snoozed)
            .map(|(_, o)| (o.instance.name.clone(), now + Duration::hours(1)))
            .collect(),
        instances,
        spend: spend.map(|(policy, global)| {
            let mut map: BTreeMap<String, SpendSoFar> = (0..4)
                .map(|k| {
                    (format!("p{k}"), SpendSoFar { today: Money::from_yuan(policy as i64), this_month: Money::ZERO })
                })
                .collect();
            map.insert(
                mdc_autoscaler::config::policy::GLOBAL.into(),
                SpendSoFar { today: Money::from_yuan(global as i64), this_month: Money::ZERO },
            );
            map
        }),
        recent_actions: (0..recent).map(|k| now - Duration::minutes(k as i64 + 1)).collect(),
        // Every third of them a delete.
        recent_deletes: (0..recent).step_by(3).map(|k| now - Duration::minutes(k as i64 + 1)).collect(),
        capacity_failures: BTreeMap::new(),
        pending_creates: Vec::new(),
        schedule_marks: BTreeMap::new(),
        habits: Default::default(),
    }
}

fn now_from(offset_minutes: i64) -> DateTime<Utc> {
    // Monday 2026-11-30 00:00 Shanghai, plus up to a week.
    Utc.with_ymd_and_hms(2026, 11, 29, 16, 0, 0).unwrap() + Duration::minutes(offset_minutes)
}

fn owner<'c>(
    config: &'c Config,
    display_name: &str,
    instance: Option<&mdc_autoscaler::cloud::Instance>,
) -> Option<&'c mdc_autoscaler::config::policy::Policy> {
    match instance {
        Some(i) => {
            config.policies.iter().find(|p| p.pools(i)).or_else(|| config.policies.iter().find(|p| p.selects(i)))
        }
        None => {
            config.policies.iter().find(|p| p.pool.as_ref().is_some_and(|pool| pool.slot_of(display_name).is_some()))
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// A plan that reuses what an earlier plan made of unchanged instances
    /// is the plan a fresh look makes, as time passes and instances change.
    #[test]
    fn plans_that_remember_are_plans_made_afresh(
        policies in prop::collection::vec(policy_spec(), 1..4),
        instances in prop::collection::vec(instance_spec(), 1..25),
        later in prop::collection::vec(
            (0i64..240, prop::option::of((0usize..25, instance_spec())), prop::option::of((0u32..150, 0u32..1500))),
            1..6,
        ),
        per_cycle in 1u32..12,
        per_hour in 1u32..30,
        spend in prop::option::of((0u32..150, 0u32..1500)),
        global in prop::option::of(prop::sample::select(vec![50u32, 500, 5000])),
        offset in 0i64..(7 * 24 * 60),
    ) {
        // What is observed stays as it was at `seen`, but for the instances changed.
        let seen = now_from(offset);
        let mut now = seen;
        let (config, report) = load_str("generated", &policy_file(&policies, per_cycle, per_hour, global));
        let config = config.unwrap_or_else(|| panic!("{report}"));
        let mut specs = instances;
        let mut memo = plan::Memo::default();
        plan::plan_memo(&observed(&specs, seen, spend, 0), &config, now, &mut memo, plan::Changed::All);
        for (minutes, change, spent) in later {
            now += Duration::minutes(minutes);
            // Spend moves on its own: what the budgets refused may now fit.
            let spend = spent.or(spend);
            let mut changed = Vec::new();
            if let Some((index, spec)) = change {
                let index = index % specs.len();
                specs[index] = spec;
                changed.push(index);
            }
            let observed = observed(&specs, seen, spend, 0);
            let kept = plan::plan_memo(&observed, &config, now, &mut memo, plan::Changed::These(&changed));
            prop_assert_eq!(kept, plan::plan_with(&observed, &config, now, plan::Detail::Decisions));
        }
    }

    #[test]
    fn plans_keep_every_promise(
        policies in prop::collection::vec(policy_spec(), 1..4),
        instances in prop::collection::vec(instance_spec(), 0..25),
        per_cycle in 1u32..12,
        per_hour in 1u32..30,
        recent in 0u32..20,
        pending in prop::collection::vec((0usize..2, 0u32..4, 0i64..20), 0..3),
        spend in prop::option::of((0u32..150, 0u32..1500)),
        global in prop::option::of(prop::sample::select(vec![50u32, 500, 5000])),
        offset in 0i64..(7 * 24 * 60),
    ) {
        let now = now_from(offset);
        let (config, report) = load_str("generated", &policy_file(&policies, per_cycle, per_hour, global));
        let config = config.unwrap_or_else(|| panic!("{report}"));
        let mut observed = observed(&instances, now, spend, recent);
        // Creates sent minutes ago and not listed yet; past a quarter of an hour they hold nothing.
        observed.pending_creates = pending.iter().map(|(policy, slot, minutes)| plan::PendingCreate {
            display_name: format!("p{policy}-{slot}"),
            cluster: "host-cluster".into(),
            sent_at: now - Duration::minutes(*minutes),
            hourly: Money::from_yuan(3),
        }).collect();
        let plan = plan::plan(&observed, &config, now);

        // Deterministic.
        prop_assert_eq!(&plan, &plan::plan(&observed, &config, now));
        // Notes, and what was learned put in words, change no decision.
        let bare = plan::plan_with(&observed, &config, now, plan::Detail::Decisions);
        prop_assert!(bare.notes.is_empty() && bare.learned.is_empty());
        prop_assert_eq!(&plan::Plan { notes: Vec::new(), learned: Vec::new(), ..plan.clone() }, &bare);

        // Limits hold.
        prop_assert!(plan.actions.len() as u32 <= per_cycle);
        prop_assert!(plan.actions.len() as u32 <= per_hour.saturating_sub(recent));

        let by_name = |name: &str| observed.instances.iter().find(|o| o.instance.name == name);
        let mut disrupted: BTreeMap<String, u32> = BTreeMap::new();
        for action in &plan.actions {
            let target = by_name(&action.instance.name).map(|o| &o.instance);
            let policy = owner(&config, &action.instance.display_name, target).expect("acts only on owned instances");
            prop_assert_eq!(&policy.name, &action.policy);
            // Never a protected instance.
            prop_assert!(!policy.protect.iter().any(|g| g.matches(&action.instance.display_name)), "{:?}", action);
            if let Some(t) = target {
                prop_assert!(observed.snoozes.get(&t.name).is_none_or(|until| *until <= now), "snoozed: {:?}", action);
                // Never an unknown or transitional state.
                prop_assert!(t.status.is_settled(), "acted on {}: {:?}", t.status, action);
            }
            if action.kind.disrupts() && action.cause != plan::Cause::Budget {
                *disrupted.entry(action.policy.clone()).or_default() += 1;
            }
            // Nothing is created without the ledger, nor in a slot a create not listed yet holds.
            if matches!(action.kind, ActionKind::Create { .. }) {
                prop_assert!(observed.spend.is_some());
                let held = observed.pending_creates.iter().filter(|p| p.holds(now, config.settings.listing_delay));
                prop_assert!(held.clone().all(|p| p.display_name != action.instance.display_name), "{:?}", action);
                let desired = config.policies.iter().find(|p| p.name == action.policy).and_then(|p| p.pool.as_ref()).unwrap().desired;
                let pool_held = held.filter(|p| p.display_name.starts_with(&format!("{}-", action.policy))).count() as u32;
                let creates = plan.actions.iter().filter(|a| a.policy == action.policy && matches!(a.kind, ActionKind::Create { .. })).count() as u32;
                prop_assert!(creates + pool_held <= desired, "{} creates beside {} unlisted, {} wanted", creates, pool_held, desired);
            }
        }
        for policy in &config.policies {
            let members = observed.instances.iter().filter(|o| owner(&config, &o.instance.display_name, Some(&o.instance)).is_some_and(|p| p.name == policy.name)).count();
            let allowed = policy.max_disrupted.allowed(members);
            prop_assert!(disrupted.get(&policy.name).copied().unwrap_or(0) <= allowed);
        }
        // Deletes have an hourly limit of their own.
        let deletes = plan.actions.iter().filter(|a| matches!(a.kind, ActionKind::Delete)).count() as u32;
        prop_assert!(deletes <= config.settings.limits.deletes_per_hour.saturating_sub(observed.recent_deletes.len() as u32));

        // Budgets are never planned past: what a policy starts or creates fits its daily budget.
        for policy in &config.policies {
            let Some(daily) = policy.budget.as_ref().and_then(|b| b.daily) else { continue };
            let added: Money = plan.actions.iter()
                .filter(|a| a.policy == policy.name && matches!(a.kind, ActionKind::PowerOn | ActionKind::Create { .. }))
                .map(|a| Money::ZERO - a.saving_per_hour)
                .sum();
            if added == Money::ZERO { continue }
            // The plan's own stops of running instances free what they cost.
            let freed: Money = plan.actions.iter()
                .filter(|a| a.policy == policy.name && matches!(a.kind, ActionKind::PowerOff(_)))
                .filter(|a| by_name(&a.instance.name).is_some_and(|o| o.instance.status == InstanceStatus::Running))
                .map(|a| a.saving_per_hour)
                .sum();
            let added = added - freed;
            let spent = observed.spend.as_ref().and_then(|s| s.get(&policy.name)).map_or(Money::ZERO, |s| s.today);
            let rate: Money = observed.instances.iter()
                .filter(|o| matches!(o.instance.status, InstanceStatus::Running | InstanceStatus::Creating | InstanceStatus::Starting))
                .filter(|o| o.instance.cost.billing_type == BillingType::PayAsYouGo)
                .filter(|o| owner(&config, &o.instance.display_name, Some(&o.instance)).is_some_and(|p| p.name == policy.name))
                .map(|o| observed.sku(&o.instance.cost.sku_id).map_or(Money::ZERO, |s| pricing::effective_price(s, now)))
                .sum();
            let tz = policy.budget.as_ref().unwrap().timezone;
            let midnight = (now.with_timezone(&tz).date_naive() + Duration::days(1)).and_hms_opt(0, 0, 0).unwrap();
            let left = tz.from_local_datetime(&midnight).earliest().unwrap().to_utc() - now;
            let projected = spent + Money::from_hourly_scaled((rate + added).hourly_scaled(left.num_milliseconds()));
            prop_assert!(projected <= daily, "{} projected {:?} over {:?}", policy.name, projected, daily);
        }
    }
}

/// A plan applied to the simulator, then planned again at the same moment,
/// leaves nothing more to do but what the first plan deferred for a limit.
fn replan_after_applying(policies: &[PolicySpec], offset: i64, busy: Vec<bool>) -> (usize, Vec<String>) {
    let now = now_from(offset);
    let (config, report) = load_str("generated", &policy_file(policies, 1000, 1000, None));
    let config = config.unwrap_or_else(|| panic!("{report}"));
    let sim = FleetFile::parse("fleet", DEFAULT_FLEET).unwrap().build("demo", now).unwrap();
    let sim = Arc::new(Mutex::new(sim));
    let cloud = SimCloud::new(Arc::clone(&sim), Clock::manual(now));
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let observe = |marks: &BTreeMap<String, DateTime<Utc>>| {
        runtime.block_on(async {
            let skus = [mdc_autoscaler::sim::fleet::FleetFile::parse("f", DEFAULT_FLEET).unwrap()]
                .iter()
                .flat_map(|f| f.regions.iter().map(|r| r.id.clone()).collect::<Vec<_>>())
                .collect::<Vec<_>>();
            let mut all_skus = Vec::new();
            for region in skus {
                all_skus.extend(cloud.list_skus(&region).await.unwrap());
            }
            let mut instances = Vec::new();
            for cluster in ["host-cluster", "bj2-cluster"] {
                instances.extend(cloud.list_instances(cluster).await.unwrap());
            }
            let instances = instances
                .into_iter()
                .enumerate()
                .map(|(k, instance)| {
                    let reading = if busy.get(k).copied().unwrap_or(false) {
                        Reading::Active
                    } else {
                        Reading::IdleSince(now - Duration::hours(3))
                    };
                    ObservedInstance {
                        signals: [("jupyter".to_owned(), reading)].into(),
                        running_since: Some(now - Duration::hours(1)),
                        stopped_since: Some(now - Duration::days(2)),
                        snapshot: SnapshotState::None,
                        instance,
                    }
                })
                .collect();
            Observed {
                skus: all_skus,
                instances,
                spend: Some(BTreeMap::new()),
                schedule_marks: marks.clone(),
                ..Observed::default()
            }
        })
    };
    let mut marks = BTreeMap::new();
    let first = plan::plan(&observe(&marks), &config, now);
    for action in &first.actions {
        let target = &action.instance;
        let mut sim = sim.lock().unwrap();
        let result = match &action.kind {
            ActionKind::Create { request, .. } => {
                sim.create_instance(now, &request.cluster, &wire::CreateBody::new("demo", request)).map(|_| ())
            }
            ActionKind::PowerOn => sim.power_on(now, &target.cluster, &target.name),
            ActionKind::PowerOff(off) => sim.power_off(now, &target.cluster, &target.name, &off.into()),
            ActionKind::Delete => sim.delete_instance(now, &target.cluster, &target.name),
        };
        result.unwrap_or_else(|e| panic!("{action:?} failed: {e}"));
        if let Some(edge) = action.schedule_edge {
            marks.insert(target.name.clone(), edge);
        }
    }
    for mark in &first.schedule_marks {
        marks.insert(mark.instance.clone(), mark.edge);
    }
    let second = plan::plan(&observe(&marks), &config, now);
    // What the first plan deferred (max_disrupted) may come now; nothing else.
    let deferred: Vec<&str> =
        first.notes.iter().filter(|n| n.text.starts_with("deferred")).filter_map(|n| n.instance.as_deref()).collect();
    let unexpected = second
        .actions
        .iter()
        .filter(|a| !deferred.contains(&a.instance.display_name.as_str()))
        .map(|a| format!("{} {}: {}", a.kind.label(), a.instance.display_name, a.reason))
        .collect();
    (first.actions.len(), unexpected)
}

/// Spans of use of generated instances over the four weeks before `now`:
/// (instance, days before today, local minute of the day it began, minutes it lasted).
fn history(
    config: &Config,
    observed: &Observed,
    spans: &[(usize, i64, i64, i64)],
    now: DateTime<Utc>,
) -> Vec<(String, String, DateTime<Utc>, DateTime<Utc>)> {
    let today = Habits::day_of(now, chrono_tz::Asia::Shanghai);
    spans
        .iter()
        .filter_map(|&(i, days, minute, minutes)| {
            let instance = &observed.instances.get(i)?.instance;
            let policy = owner(config, &instance.display_name, Some(instance))?;
            let start = today - Duration::days(days) + Duration::minutes(minute);
            Some((instance.name.clone(), policy.name.clone(), start, start + Duration::minutes(minutes)))
        })
        .collect()
}

fn learn(spans: &[(String, String, DateTime<Utc>, DateTime<Utc>)], config: &Config, now: DateTime<Utc>) -> Habits {
    let used = spans.iter().map(|(instance, policy, start, end)| Used {
        instance,
        policy,
        start: *start,
        end: Some(*end).filter(|end| *end <= now),
    });
    Habits::learn(used, &config.adaptive_zones(), Habits::day_of(now, chrono_tz::Asia::Shanghai))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// Learned timers and pre-warming: the same history, policies and `now`
    /// give the same plan, whatever order the history is read in and whether
    /// the habits have worked anything out for earlier plans or not.
    #[test]
    fn learned_plans_are_functions_of_history_policies_and_now(
        policies in prop::collection::vec(policy_spec(), 1..4),
        instances in prop::collection::vec(instance_spec(), 1..12),
        // Days of office hours: sessions that begin between 07:00 and 20:00.
        spans in prop::collection::vec((0usize..12, 0i64..28, 420i64..1200, 20i64..300), 0..600),
        offset in 0i64..(7 * 24 * 60),
        later in 0i64..180,
    ) {
        let now = now_from(offset);
        let policies: Vec<PolicySpec> =
            policies.into_iter().map(|p| PolicySpec { stop_after: "adaptive, prewarm: true", ..p }).collect();
        let (config, report) = load_str("generated", &policy_file(&policies, 1000, 1000, None));
        let config = config.unwrap_or_else(|| panic!("{report}"));
        let mut observed = observed(&instances, now, None, 0);
        let mut spans = history(&config, &observed, &spans, now);
        observed.habits = Arc::new(learn(&spans, &config, now));
        let first = plan::plan(&observed, &config, now);
        // The habits have now worked out keep-alives and windows: asked again, the same.
        prop_assert_eq!(&plan::plan(&observed, &config, now), &first);
        // Another moment, with what was worked out for this one kept.
        let then = now + Duration::minutes(later);
        let warm = plan::plan(&observed, &config, then);
        spans.reverse();
        let mut fresh = observed.clone();
        fresh.habits = Arc::new(learn(&spans, &config, now));
        prop_assert_eq!(&plan::plan(&fresh, &config, then), &warm);
        prop_assert_eq!(&plan::plan(&fresh, &config, now), &first);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn a_plan_applied_leaves_nothing_to_do(
        policies in prop::collection::vec(policy_spec(), 1..4),
        offset in 0i64..(7 * 24 * 60),
        busy in prop::collection::vec(any::<bool>(), 6),
    ) {
        let (_, again) = replan_after_applying(&policies, offset, busy);
        prop_assert!(again.is_empty(), "planned again: {:?}", again);
    }
}

/// Mostly a usual value, now and then one at or beyond a bound.
fn at_bounds(usual: &'static str, hostile: Vec<&'static str>) -> impl Strategy<Value = &'static str> {
    prop_oneof![12 => Just(usual), 1 => prop::sample::select(hostile)]
}

fn hostile_duration(usual: &'static str) -> impl Strategy<Value = &'static str> {
    let hostile = vec![
        "0s",
        "1s",
        "4s",
        "59s",
        "4m",
        "1h",
        "15d",
        "3650d",
        "3651d",
        "300000y",
        "18446744073709551615s",
        "-1s",
        "1e9h",
    ];
    at_bounds(usual, hostile)
}

fn hostile_count(usual: &'static str) -> impl Strategy<Value = &'static str> {
    at_bounds(usual, vec!["0", "1", "1000", "4294967295", "4294967296", "-1"])
}

fn hostile_money(usual: &'static str) -> impl Strategy<Value = &'static str> {
    at_bounds(usual, vec!["0", "0.000001", "1000000000", "1000000001", "1e12", "-5", ".nan", ".inf"])
}

fn hostile_share(usual: &'static str) -> impl Strategy<Value = &'static str> {
    at_bounds(usual, vec!["0%", "1%", "100%", "101%", "-5%", "1e308%"])
}

/// Whatever a policy file says, `validate` refuses it or the planner plans
/// by it: no value reaches a panic, and the limits hold.
#[test]
fn a_hostile_policy_is_refused_or_planned_never_a_panic() {
    let durations = (
        hostile_duration("30s"),
        hostile_duration("2m"),
        hostile_duration("30m"),
        hostile_duration("48h"),
        hostile_duration("7d"),
        hostile_duration("10s"),
        hostile_duration("1h"),
        hostile_duration("2h"),
    );
    let counts = (
        hostile_count("10"),
        hostile_count("60"),
        hostile_count("10"),
        hostile_count("10"),
        hostile_count("2"),
        hostile_count("0"),
        hostile_count("4"),
    );
    let money = (hostile_money("1000"), hostile_money("100"), hostile_money("2000"), hostile_money("20"));
    let shares = (hostile_share("20%"), hostile_share("50%"));
    let fleet =
        (prop::collection::vec(instance_spec(), 0..12), prop::option::of((0u32..150, 0u32..1500)), 0i64..(7 * 24 * 60));
    let config = ProptestConfig { cases: 400, failure_persistence: None, ..ProptestConfig::default() };
    let mut runner = proptest::test_runner::TestRunner::new(config);
    let planned = std::cell::Cell::new(0);
    runner
        .run(&(durations, counts, money, shares, fleet), |(d, c, m, s, (instances, spend, offset))| {
            let text = format!(
                r#"settings:
  timezone: Asia/Shanghai
  interval: {}
  cycle_deadline: {}
  limits: {{ actions_per_cycle: {}, actions_per_hour: {}, deletes_per_hour: {} }}
  budget: {{ daily: {}, when_exceeded: stop }}
  change_guard: {{ share: {}, at_least: {} }}
policies:
  - name: p0
    select: {{ display_name: "nb-*" }}
    idle: {{ signals: [jupyter], stop_after: {}, max_runtime: {}, delete_after_stopped: {}, delete_without_snapshot: true, grace_period: {} }}
    max_disrupted: {}
    budget: {{ daily: {}, monthly: {} }}
  - name: p1
    pool: {{ cluster: host-cluster, image: img, desired: {}, min: {}, max: {}, gpu: {{ products: [H20, "4090"] }}, max_price_per_hour: {}, wait_for_discount: {} }}
    schedule: {{ start: "0 9 * * *", stop: "0 20 * * *" }}
    idle: {{ signals: [jupyter], stop_after: {} }}
"#,
                d.0, d.1, c.0, c.1, c.2, m.0, s.0, c.3, d.2, d.3, d.4, d.5, s.1, m.1, m.2, c.4, c.5, c.6, m.3, d.6, d.7
            );
            let (config, _) = load_str("hostile", &text);
            if let Some(config) = config {
                let now = now_from(offset);
                let plan = plan::plan(&observed(&instances, now, spend, 0), &config, now);
                prop_assert!(plan.actions.len() as u32 <= config.settings.limits.actions_per_cycle);
                planned.set(planned.get() + 1);
            }
            Ok(())
        })
        .unwrap();
    assert!(planned.get() >= 60, "only {} of 400 files were accepted: the property would be vacuous", planned.get());
}

#[test]
fn the_idempotence_check_sees_real_plans() {
    // The default fleet under a notebooks policy at 21:00: idle notebooks and a schedule stop.
    let notebooks = PolicySpec {
        glob: "nb-*",
        protect: Some("nb-keep-*"),
        stop_after: "30m",
        snapshot: true,
        delete_after: true,
        schedule: true,
        max_disrupted: None,
        budget: None,
        pool: None,
    };
    let (first, again) = replan_after_applying(&[notebooks], 21 * 60, vec![false; 6]);
    assert!(first >= 3, "only {first} actions: the property would be vacuous");
    assert!(again.is_empty(), "{again:?}");
}
