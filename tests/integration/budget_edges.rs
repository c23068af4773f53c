//! Budgets across midnights and month ends, in the budget's own zone (one
//! with a clock change that night among them): a pool of batch workers,
//! each powering itself off when its job ends and started again by the
//! pool, planned every cycle against the simulator and billed by it. No day
//! or month ends over an `alert` budget by more than an hour of the fleet's
//! rate (a start is judged by its first hour, across the edge too), and a
//! `stop` budget that may stop work in use is never passed at all.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use mdc_autoscaler::cloud::{InstanceStatus, StatusMap, wire};
use mdc_autoscaler::config::load::load_str;
use mdc_autoscaler::money::Money;
use mdc_autoscaler::plan::{self, ActionKind, Observed, ObservedInstance, SnapshotState, SpendSoFar};
use mdc_autoscaler::sim::fleet::{DEFAULT_FLEET, FleetFile};
use proptest::prelude::*;

const CYCLE: Duration = Duration::minutes(1);

#[derive(Clone, Debug)]
struct World {
    zone: &'static str,
    daily: Option<u32>,
    monthly: Option<u32>,
    stop: bool,
    desired: u8,
    /// Minutes before the month's last midnight the run begins.
    lead: i64,
    /// Spent already today and this month when the run begins.
    spent_today: u32,
    spent_month: u32,
    /// Each start's job length in minutes, in turn: under an hour with an
    /// `alert` budget (which never stops work), up to a day with `stop`.
    jobs: Vec<i64>,
}

fn world() -> impl Strategy<Value = World> {
    (
        prop::sample::select(vec!["Asia/Shanghai", "America/New_York", "Australia/Lord_Howe", "UTC"]),
        prop::option::of(5u32..60),
        prop::option::of(20u32..200),
        any::<bool>(),
        1u8..4,
        0i64..180,
        0u32..40,
        0u32..150,
        prop::collection::vec(5i64..58, 1..12),
    )
        .prop_filter("a budget", |w| w.1.is_some() || w.2.is_some())
        .prop_map(|(zone, daily, monthly, stop, desired, lead, spent_today, spent_month, jobs)| World {
            zone,
            daily,
            monthly,
            stop,
            desired,
            lead,
            spent_today,
            spent_month,
            jobs: jobs.into_iter().map(|j| if stop { j * 30 } else { j }).collect(),
        })
}

fn policy(w: &World) -> String {
    let mut budget = Vec::new();
    if let Some(d) = w.daily {
        budget.push(format!("daily: {d}"));
    }
    if let Some(m) = w.monthly {
        budget.push(format!("monthly: {m}"));
    }
    let when = if w.stop { "stop" } else { "alert" };
    format!(
        "settings:\n  interval: 1m\n  listing_delay: 0s\npolicies:\n  - name: batch\n    pool: {{ cluster: host-cluster, image: img, desired: {}, gpu: {{ products: [H20, \"4090\"] }} }}\n    budget: {{ {}, when_exceeded: {when}, timezone: {} }}\n    due_stops: {{ hard: [budget] }}\n",
        w.desired,
        budget.join(", "),
        w.zone
    )
}

/// Spend per local day and per local month.
#[derive(Default)]
struct Tally {
    days: BTreeMap<NaiveDate, Money>,
    months: BTreeMap<(i32, u32), Money>,
}

impl Tally {
    fn add(&mut self, tz: Tz, at: DateTime<Utc>, money: Money) {
        let day = at.with_timezone(&tz).date_naive();
        *self.days.entry(day).or_default() += money;
        *self.months.entry((day.year(), day.month())).or_default() += money;
    }

    fn so_far(&self, tz: Tz, at: DateTime<Utc>) -> SpendSoFar {
        let day = at.with_timezone(&tz).date_naive();
        SpendSoFar {
            today: self.days.get(&day).copied().unwrap_or_default(),
            this_month: self.months.get(&(day.year(), day.month())).copied().unwrap_or_default(),
        }
    }
}

fn compute(sim: &mdc_autoscaler::sim::Simulator) -> Money {
    sim.bill().instances.iter().map(|i| i.compute).fold(Money::ZERO, |a, b| a + b)
}

/// Runs the world for 30 hours, a cycle a minute; returns the tally, the
/// fleet's highest rate, and how many starts and creates were made.
fn run(w: &World) -> (Tally, Money, usize) {
    let tz: Tz = w.zone.parse().unwrap();
    let (config, report) = load_str("generated", &policy(w));
    let config = config.unwrap_or_else(|| panic!("{report}"));
    let last_midnight = tz.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).earliest().unwrap().to_utc();
    let start = last_midnight - Duration::minutes(w.lead);
    let mut fleet = FleetFile::parse("fleet", DEFAULT_FLEET).unwrap();
    fleet.instances.clear();
    let mut sim = fleet.build("demo", start).unwrap();
    let statuses = StatusMap::default();
    let region = sim.list_regions(start)[0].id.clone();
    let mut tally = Tally::default();
    let before = start - Duration::minutes(1);
    // What was spent before the run: this month, of which today.
    tally.add(tz, before, Money::from_yuan(w.spent_today as i64));
    // And on days of the month before it.
    *tally.months.entry((2026, 10)).or_default() += Money::from_yuan(w.spent_month as i64);
    let mut running_since: BTreeMap<String, (DateTime<Utc>, i64)> = BTreeMap::new();
    let (mut starts, mut jobs) = (0, w.jobs.iter().cycle());
    let mut billed = compute(&sim);
    let mut now = start;
    while now < start + Duration::hours(30) {
        let skus: Vec<_> = sim.list_skus(now, &region).into_iter().map(|s| s.into_domain().unwrap()).collect();
        let listed = sim.list_instances(now, "host-cluster", 1, 100).unwrap().nodes;
        let instances: Vec<ObservedInstance> = listed
            .into_iter()
            .map(|raw| ObservedInstance {
                instance: raw.into_domain(&statuses).unwrap(),
                signals: BTreeMap::new(),
                running_since: None,
                stopped_since: None,
                snapshot: SnapshotState::None,
            })
            .collect();
        // A worker whose job is done powers its instance off itself.
        for o in &instances {
            let i = &o.instance;
            if i.status != InstanceStatus::Running {
                running_since.remove(&i.name);
                continue;
            }
            let (since, job) = *running_since.entry(i.name.clone()).or_insert_with(|| (now, *jobs.next().unwrap()));
            if now - since >= Duration::minutes(job) {
                sim.power_off(now, "host-cluster", &i.name, &(&mdc_autoscaler::cloud::PowerOff::default()).into())
                    .unwrap();
            }
        }
        let spent = tally.so_far(tz, now);
        let observed = Observed {
            skus,
            instances,
            spend: Some([("batch".to_owned(), spent), (mdc_autoscaler::config::policy::GLOBAL.into(), spent)].into()),
            ..Observed::default()
        };
        for action in plan::plan(&observed, &config, now).actions {
            let target = &action.instance;
            let done = match &action.kind {
                ActionKind::Create { request, .. } => {
                    starts += 1;
                    sim.create_instance(now, &request.cluster, &wire::CreateBody::new("demo", request)).map(|_| ())
                }
                ActionKind::PowerOn => {
                    starts += 1;
                    sim.power_on(now, &target.cluster, &target.name)
                }
                ActionKind::PowerOff(off) => sim.power_off(now, &target.cluster, &target.name, &off.into()),
                ActionKind::Delete => sim.delete_instance(now, &target.cluster, &target.name),
            };
            done.unwrap_or_else(|e| panic!("{} {}: {e}", action.kind.label(), target.display_name));
        }
        // The minute to the next cycle, billed by the simulator and counted
        // in the day and month it falls in (no cycle straddles a midnight).
        let next = now + CYCLE;
        sim.advance(next);
        let total = compute(&sim);
        tally.add(tz, now, total - billed);
        billed = total;
        now = next;
    }
    let highest = skus_highest(&mut sim, &region, start);
    (tally, Money::from_micros(highest.micros() * w.desired as i64), starts)
}

/// The list price of the pool's dearest SKU.
fn skus_highest(sim: &mut mdc_autoscaler::sim::Simulator, region: &str, at: DateTime<Utc>) -> Money {
    let skus = sim.list_skus(at, region).into_iter().map(|s| s.into_domain().unwrap());
    skus.filter(|s| ["H20", "4090"].contains(&s.hardware.gpu_product.as_str())).map(|s| s.price_per_hour).max().unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn budgets_hold_across_midnights_and_month_ends(w in world()) {
        let (tally, fleet_rate, starts) = run(&w);
        let slack = if w.stop { Money::ZERO } else { fleet_rate };
        for (day, spent) in &tally.days {
            if let Some(daily) = w.daily {
                let limit = Money::from_yuan(daily as i64);
                // The run's first day began over budget by what was spent before it.
                let before = Money::from_yuan(w.spent_today as i64).max(limit);
                prop_assert!(
                    *spent <= before.max(limit + slack),
                    "{day}: {spent:?} spent of a daily {limit:?} ({} starts; fleet {fleet_rate:?}/h)", starts
                );
            }
        }
        for (month, spent) in &tally.months {
            if let Some(monthly) = w.monthly {
                let limit = Money::from_yuan(monthly as i64);
                let before = Money::from_yuan((w.spent_month + w.spent_today) as i64).max(limit);
                prop_assert!(
                    *spent <= before.max(limit + slack),
                    "{month:?}: {spent:?} spent of a monthly {limit:?} ({} starts)", starts
                );
            }
        }
    }
}
