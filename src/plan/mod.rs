//! The planner: a pure function of (observed state, policies, now) to a plan.
//! No I/O, no clock, no randomness: the same inputs give the same plan.

mod budget;
mod candidate;
mod due;
pub mod guard;
pub mod habits;
mod instance;
pub mod keep_alive;
mod limits;
mod memo;
pub mod observed;
mod pool;
pub mod prewarm;
pub mod report;
mod types;
mod warn;

use std::cell::Cell;
use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};

use candidate::{Candidate, Reason, Target};
pub use instance::{Idleness, deciding_signal, idle_since, idleness};
pub use memo::Memo;
use memo::{Calendar, Known, Proposal, Recording, Verdict};
pub use observed::{Changed, Observed, ObservedInstance, PendingCreate, Reading, SnapshotState, SpendSoFar};
pub use types::*;

use crate::cloud::{BillingType, Instance};
use crate::config::policy::{Config, Edge, Policy};
use crate::money::Money;
use crate::pricing;

/// How much of a plan to write out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Detail {
    /// Actions, schedule marks, the next check, and notes on what is not done and why.
    #[default]
    Full,
    /// The same without the notes (for `simulate`, where nobody reads them).
    Decisions,
}

/// Plans one cycle.
pub fn plan(observed: &Observed, config: &Config, now: DateTime<Utc>) -> Plan {
    plan_with(observed, config, now, Detail::Full)
}

/// Plans one cycle, with notes or without: the decisions are the same.
pub fn plan_with(observed: &Observed, config: &Config, now: DateTime<Utc>, detail: Detail) -> Plan {
    let owners = Owners::new(config);
    let owners: Vec<Option<usize>> = observed.instances.iter().map(|o| owners.of(&o.instance)).collect();
    let mut plan = plan_inner(observed, config, now, detail, &owners, None, warn::Mode::Gate).0;
    look_ahead(&mut plan, observed, config, &owners);
    plan
}

/// Adds the warnings a plan `lead` ahead finds due, for each lead a policy
/// warns by, and wakes the plan in time for what those plans wait for.
fn look_ahead(plan: &mut Plan, observed: &Observed, config: &Config, owners: &[Option<usize>]) {
    let now = plan.at;
    for lead in warn::leads(config) {
        let mode = warn::Mode::Ahead { now, lead };
        let (ahead, _) = plan_inner(observed, config, now + lead, Detail::Decisions, owners, None, mode);
        for warning in ahead.warnings {
            if !plan.warnings.iter().any(|w| w.key == warning.key) {
                plan.warnings.push(warning);
            }
        }
        if let Some(next) = ahead.next_check.map(|at| at - lead).filter(|at| *at > now) {
            earliest(&mut plan.next_check, next);
        }
    }
}

/// Plans one cycle without notes, keeping in `memo` what the next plan can
/// reuse: `changed` are the instances that may have changed since the plan
/// `memo` remembers. The plan is the one [`plan_with`] makes.
pub fn plan_memo(
    observed: &Observed,
    config: &Config,
    now: DateTime<Utc>,
    memo: &mut Memo,
    changed: Changed<'_>,
) -> Plan {
    // Scarcity prices an adaptive keep-alive's cold start; habits change each day.
    let prices: Vec<(String, Money, u8)> = observed
        .skus
        .iter()
        .map(|s| {
            (
                s.id.clone(),
                pricing::effective_price(s, now),
                keep_alive::scarcity_level(s.free_gpus, s.hardware.gpu_count),
            )
        })
        .collect();
    let learned = observed.habits.as_of;
    let count = observed.instances.len();
    let owners = Owners::new(config);
    match changed {
        Changed::These(changed)
            if memo.owners.len() == count
                && memo.snoozes == observed.snoozes
                && memo.prices == prices
                && memo.learned == learned =>
        {
            for &i in changed {
                memo.owners[i] = owners.of(&observed.instances[i].instance);
                memo.verdicts.take(i);
                memo.costs[i] = None;
            }
        }
        _ => {
            memo.owners = observed.instances.iter().map(|o| owners.of(&o.instance)).collect();
            memo.verdicts = memo::Verdicts::new(count);
            memo.costs = vec![None; count];
            memo.calendars.clear();
            memo.snoozes = observed.snoozes.clone();
            memo.prices = prices;
            memo.learned = learned;
        }
    }
    memo.calendars.resize(config.policies.len(), Calendar::default());
    let kept = Kept {
        verdicts: std::mem::take(&mut memo.verdicts),
        calendars: std::mem::take(&mut memo.calendars),
        costs: std::mem::take(&mut memo.costs),
    };
    let (mut plan, kept) =
        plan_inner(observed, config, now, Detail::Decisions, &memo.owners, Some(kept), warn::Mode::Gate);
    if let Some(kept) = kept {
        (memo.verdicts, memo.calendars, memo.costs) = (kept.verdicts, kept.calendars, kept.costs);
    }
    look_ahead(&mut plan, observed, config, &memo.owners);
    plan
}

fn plan_inner(
    observed: &Observed,
    config: &Config,
    now: DateTime<Utc>,
    detail: Detail,
    owners: &[Option<usize>],
    kept: Option<Kept>,
    mode: warn::Mode,
) -> (Plan, Option<Kept>) {
    let mut members = vec![Vec::new(); config.policies.len()];
    for (i, owner) in owners.iter().enumerate() {
        if let Some(p) = owner {
            members[*p].push(i);
        }
    }
    let mut planner = Planner {
        observed,
        config,
        now,
        detail,
        draft: Draft::default(),
        edges: Edges::default(),
        policy_index: 0,
        prices: observed.skus.iter().map(|s| (s.id.as_str(), pricing::effective_price(s, now))).collect(),
        policy_rate: Money::ZERO,
        global_rate: Money::ZERO,
        policy_committed: Money::ZERO,
        global_committed: Money::ZERO,
        reserved: HashMap::new(),
        kept,
        recording: None,
        budget_asked: Cell::new(false),
        rest_of_day: Default::default(),
        refusals: Default::default(),
    };
    if let Some(kept) = planner.kept.as_mut() {
        kept.verdicts.expire(now);
    }
    let (global_rate, policy_rates) = planner.rates(owners);
    planner.global_rate = global_rate;
    for (index, (policy, members)) in config.policies.iter().zip(&members).enumerate() {
        planner.policy_rate = policy_rates[index];
        planner.policy(index, policy, members);
    }
    if let Some((at, after)) = planner.kept.as_ref().map(|k| k.verdicts.quiet_wakes()) {
        at.into_iter().for_each(|at| planner.wake(at));
        after.into_iter().for_each(|after| planner.wake(now + after));
    }
    planner.global_budget(&members);
    let Draft { candidates, mut notes, schedule_marks, next_check, watch, learned } =
        std::mem::take(&mut planner.draft);
    let verdicts = planner.kept.take();
    let mut warned = warn::Outcome::default();
    let candidates = warn::apply(candidates, observed, now, mode, &mut warned, detail);
    notes.append(&mut warned.notes);
    let (actions, retry) = limits::apply(candidates, observed, config, &members, now, &mut notes, detail);
    let next_check = [next_check, retry, warned.next_check].into_iter().flatten().min();
    let warnings = warned.warnings;
    (Plan { at: now, actions, notes, schedule_marks, next_check, watch, learned, warnings }, verdicts)
}

/// Which policy owns an instance: a pool's slots belong to the pool; any
/// other instance to the first policy that selects it. Policies are looked
/// up by the literal prefixes of their name patterns, so a large fleet does
/// not try every policy.
struct Owners<'c> {
    config: &'c Config,
    by_prefix: HashMap<&'c str, Vec<usize>>,
    any_name: Vec<usize>,
    longest: usize,
    /// The policies that may own the instance being looked up (kept to save allocations).
    candidates: std::cell::RefCell<Vec<usize>>,
}

impl<'c> Owners<'c> {
    fn new(config: &'c Config) -> Self {
        let mut by_prefix: HashMap<&str, Vec<usize>> = HashMap::new();
        let mut any_name = Vec::new();
        for (index, policy) in config.policies.iter().enumerate() {
            match policy.name_prefixes() {
                Some(prefixes) => prefixes.into_iter().for_each(|p| by_prefix.entry(p).or_default().push(index)),
                None => any_name.push(index),
            }
        }
        let longest = by_prefix.keys().map(|p| p.len()).max().unwrap_or(0);
        Owners { config, by_prefix, any_name, longest, candidates: Default::default() }
    }

    fn of(&self, instance: &Instance) -> Option<usize> {
        let name = instance.display_name.as_str();
        let mut candidates = self.candidates.borrow_mut();
        candidates.clear();
        candidates.extend_from_slice(&self.any_name);
        for (end, _) in name.char_indices().skip(1).chain([(name.len(), ' ')]) {
            if end > self.longest {
                break;
            }
            if let Some(found) = self.by_prefix.get(&name[..end]) {
                candidates.extend_from_slice(found);
            }
        }
        candidates.sort_unstable();
        let policies = &self.config.policies;
        let pool = candidates.iter().find(|&&p| policies[p].pools(instance));
        pool.or_else(|| candidates.iter().find(|&&p| policies[p].selects(instance))).copied()
    }
}

/// The schedule edges of the policy being planned, found once per plan
/// rather than once per instance.
#[derive(Clone, Default)]
struct Edges {
    latest: Option<(Edge, DateTime<Utc>)>,
    next: Option<DateTime<Utc>>,
}

#[derive(Default)]
struct Draft<'a> {
    candidates: Vec<Candidate<'a>>,
    notes: Vec<Note>,
    schedule_marks: Vec<ScheduleMark>,
    next_check: Option<DateTime<Utc>>,
    watch: Vec<String>,
    learned: Vec<Learning>,
}

struct Planner<'a> {
    observed: &'a Observed,
    config: &'a Config,
    now: DateTime<Utc>,
    detail: Detail,
    draft: Draft<'a>,
    edges: Edges,
    /// The index of the policy being planned.
    policy_index: usize,
    /// The price in force now, per SKU id.
    prices: Vec<(&'a str, Money)>,
    /// Spend per hour of the policy being planned, and of everything.
    policy_rate: Money,
    global_rate: Money,
    /// Spend per hour this plan has already added by starts and creates.
    policy_committed: Money,
    global_committed: Money,
    /// GPUs this plan's starts and creates take, per (region, GPU resource
    /// key): SKUs of one model in one region share their GPUs.
    reserved: HashMap<(String, String), u32>,
    /// What the last plan left (see [`Memo`]), and the wakes of the instance
    /// being looked at.
    kept: Option<Kept>,
    recording: Option<Recording>,
    budget_asked: Cell<bool>,
    /// Per budget zone, the time left until its midnight.
    rest_of_day: std::cell::RefCell<Vec<(chrono_tz::Tz, Duration)>>,
    /// The least extra spend per hour the budgets refused and the most they
    /// allowed, for a policy at the spend this plan committed so far.
    refusals: std::cell::RefCell<Option<Refusals>>,
}

/// What a plan takes from a [`Memo`] and gives back.
struct Kept {
    verdicts: memo::Verdicts,
    calendars: Vec<Calendar>,
    costs: Vec<Option<Money>>,
}

struct Refusals {
    /// The index of the policy they are for (the one being planned).
    policy: usize,
    committed: (Money, Money),
    refused: Option<Money>,
    allowed: Option<Money>,
}

impl<'a> Planner<'a> {
    fn policy(&mut self, index: usize, policy: &'a Policy, members: &[usize]) {
        let instances = &self.observed.instances;
        self.policy_committed = Money::ZERO;
        self.policy_index = index;
        self.edges = match &policy.schedule {
            Some(schedule) => {
                let now = self.now;
                let known = self.kept.as_ref().and_then(|k| Known::at(&k.calendars[index].edges, now));
                let edges =
                    known.unwrap_or_else(|| Edges { latest: schedule.latest_edge(now), next: schedule.next_edge(now) });
                if let Some(kept) = self.kept.as_mut() {
                    kept.calendars[index].edges = Some(Known { value: edges.clone(), from: now, until: edges.next });
                }
                edges
            }
            None => Edges::default(),
        };
        let pooled =
            |i: usize| policy.pool.as_ref().is_some_and(|p| p.slot_of(&instances[i].instance.display_name).is_some());
        // Running instances first: their stops free budget for the starts that follow.
        for running in [true, false] {
            for &i in members {
                let status_matches = (instances[i].instance.status == crate::cloud::InstanceStatus::Running) == running;
                if status_matches && !pooled(i) {
                    self.instance_once(policy, i);
                }
            }
        }
        if let Some(pool) = &policy.pool {
            let pooled: Vec<&ObservedInstance> =
                members.iter().filter(|i| pooled(**i)).map(|i| &instances[*i]).collect();
            self.pool(policy, pool, &pooled);
        }
        self.policy_budget(policy, members);
    }

    /// The rules for one instance, or the verdict kept from the last plan
    /// while it holds.
    fn instance_once(&mut self, policy: &'a Policy, index: usize) {
        if self.kept.as_ref().is_some_and(|k| k.verdicts.is_quiet(index)) {
            // Its wakes are counted with all the quiet ones.
            return;
        }
        let member = &self.observed.instances[index];
        let kept = self
            .kept
            .as_mut()
            .and_then(|k| k.verdicts.take(index))
            .filter(|v| v.holds(self.now) && v.refused.is_none_or(|extra| self.refuses(policy, extra)));
        if let Some(verdict) = kept {
            for p in &verdict.proposals {
                self.draft.candidates.push(Candidate {
                    policy,
                    target: Target::Instance(&member.instance),
                    kind: p.kind.clone(),
                    cause: p.cause,
                    reason: p.reason.clone(),
                    saving_per_hour: p.saving_per_hour,
                    schedule_edge: p.schedule_edge,
                    unannounced: false,
                });
            }
            self.commit(verdict.committed);
            if verdict.watch {
                self.draft.watch.push(member.instance.name.clone());
            }
            if let Some(at) = verdict.at {
                self.wake(at);
            }
            if let Some(after) = verdict.after {
                self.wake(self.now + after);
            }
            if let Some(kept) = self.kept.as_mut() {
                kept.verdicts.put(index, Some(verdict));
            }
            return;
        }
        if self.kept.is_none() {
            return self.instance(policy, member);
        }
        let (candidates, marks, watched, committed) = (
            self.draft.candidates.len(),
            self.draft.schedule_marks.len(),
            self.draft.watch.len(),
            self.policy_committed,
        );
        self.recording = Some(Recording::default());
        self.budget_asked.set(false);
        self.instance(policy, member);
        let recording = self.recording.take().expect("recording");
        let spent_nothing = recording.refused.is_some() && self.policy_committed == committed;
        let keep = (!self.budget_asked.get() || spent_nothing) && self.draft.schedule_marks.len() == marks;
        let verdict = keep.then(|| Verdict {
            proposals: self.draft.candidates[candidates..]
                .iter()
                .map(|c| Proposal {
                    kind: c.kind.clone(),
                    cause: c.cause,
                    reason: c.reason.clone(),
                    saving_per_hour: c.saving_per_hour,
                    schedule_edge: c.schedule_edge,
                })
                .collect(),
            committed: self.policy_committed - committed,
            watch: self.draft.watch.len() > watched,
            at: recording.at,
            after: recording.after,
            refused: recording.refused,
        });
        if let Some(kept) = self.kept.as_mut() {
            kept.verdicts.put(index, verdict);
        }
    }

    /// Whether the budgets refuse `extra` more per hour for the policy now.
    /// The answer grows with `extra`, so it is worked out once for a range.
    fn refuses(&self, policy: &'a Policy, extra: Money) -> bool {
        let (index, committed) = (self.policy_index, (self.policy_committed, self.global_committed));
        let mut refusals = self.refusals.borrow_mut();
        let known = match refusals.as_mut() {
            Some(known) if (known.policy, known.committed) == (index, committed) => known,
            _ => refusals.insert(Refusals { policy: index, committed, refused: None, allowed: None }),
        };
        if known.refused.is_some_and(|r| extra >= r) {
            return true;
        }
        if known.allowed.is_some_and(|a| extra <= a) {
            return false;
        }
        let refused = self.room_for(policy, extra, false).is_err();
        if refused {
            known.refused = Some(known.refused.map_or(extra, |r| r.min(extra)));
        } else {
            known.allowed = Some(known.allowed.map_or(extra, |a| a.max(extra)));
        }
        refused
    }

    /// Asks again at `at`, if that is later than now.
    fn wake(&mut self, at: DateTime<Utc>) {
        if at > self.now {
            earliest(&mut self.draft.next_check, at);
            if let Some(recording) = self.recording.as_mut() {
                earliest(&mut recording.at, at);
            }
        }
    }

    /// Asks again `after` from now, whenever now is.
    fn wake_after(&mut self, after: Duration) {
        if after > Duration::zero() {
            earliest(&mut self.draft.next_check, self.now + after);
            if let Some(recording) = self.recording.as_mut() {
                earliest(&mut recording.after, after);
            }
        }
    }

    /// Notes what is not done and why, when notes are wanted: their text is
    /// written only then.
    fn note(&mut self, policy: &Policy, instance: Option<&Instance>, text: impl FnOnce() -> String) {
        if self.detail == Detail::Full {
            self.draft.notes.push(Note {
                policy: Some(policy.name.clone()),
                instance: instance.map(|i| i.display_name.clone()),
                text: text(),
            });
        }
    }

    /// Why an instance must not be touched, if it must not.
    fn protection(&mut self, policy: &Policy, instance: &Instance) -> Option<String> {
        let (why, until) = protection(policy, self.observed, instance, self.now)?;
        if let Some(until) = until {
            self.wake(until);
        }
        Some(why)
    }

    /// Proposes an action, unless the instance is protected: then it becomes a note.
    fn propose(&mut self, policy: &'a Policy, instance: &'a Instance, kind: ActionKind, cause: Cause, reason: Reason) {
        if let Some(why) = self.protection(policy, instance) {
            let now = self.now;
            self.note(policy, Some(instance), || format!("not {}: {}; {why}", verb(&kind), reason.render(now)));
            return;
        }
        let saving_per_hour = match &kind {
            ActionKind::PowerOff(_) => self.hourly_cost(instance),
            ActionKind::PowerOn => Money::ZERO - self.hourly_cost(instance),
            ActionKind::Delete => storage_per_hour(instance),
            ActionKind::Create { .. } => Money::ZERO,
        };
        if matches!(kind, ActionKind::PowerOff(_)) && instance.status == crate::cloud::InstanceStatus::Running {
            // A stop in this plan frees budget for a start or create later in it.
            self.commit(Money::ZERO - saving_per_hour);
        }
        self.draft.candidates.push(Candidate {
            policy,
            target: Target::Instance(instance),
            kind,
            cause,
            reason,
            saving_per_hour,
            schedule_edge: None,
            unannounced: false,
        });
    }

    /// [`hourly_cost`], with this plan's prices.
    fn hourly_cost(&self, instance: &Instance) -> Money {
        let price = self.prices.iter().find(|(id, _)| *id == instance.cost.sku_id).map(|(_, price)| *price);
        cost_at(instance, price)
    }
}

/// Why an instance must not be touched at `now`, and until when (none: for good).
pub fn protection(
    policy: &Policy,
    observed: &Observed,
    instance: &Instance,
    now: DateTime<Utc>,
) -> Option<(String, Option<DateTime<Utc>>)> {
    if let Some(glob) = policy.protect.iter().find(|g| g.matches(&instance.display_name)) {
        return Some((format!("protected by `{}`", glob.as_str()), None));
    }
    match observed.snoozes.get(&instance.name) {
        Some(until) if *until > now => {
            Some((format!("snoozed until {}", until.format("%Y-%m-%d %H:%M UTC")), Some(*until)))
        }
        _ => None,
    }
}

/// What an instance costs per hour while running, at the price in force at
/// `now`. Prepaid instances cost nothing more by running.
pub fn hourly_cost(observed: &Observed, instance: &Instance, now: DateTime<Utc>) -> Money {
    cost_at(instance, observed.sku(&instance.cost.sku_id).map(|sku| pricing::effective_price(sku, now)))
}

/// What an instance costs per hour running at its SKU's `price` in force
/// (`None`: a SKU no longer listed, so its own unit-price annotation).
fn cost_at(instance: &Instance, price: Option<Money>) -> Money {
    if instance.cost.billing_type != BillingType::PayAsYouGo {
        return Money::ZERO;
    }
    price.or_else(|| instance.unit_price_per_hour()).unwrap_or(Money::ZERO)
}

/// Keeps the earlier of what `slot` holds and `value`.
fn earliest<T: Ord + Copy>(slot: &mut Option<T>, value: T) {
    *slot = Some(slot.map_or(value, |held| held.min(value)));
}

fn verb(kind: &ActionKind) -> &'static str {
    match kind {
        ActionKind::Create { .. } => "created",
        ActionKind::PowerOn => "started",
        ActionKind::PowerOff(_) => "stopped",
        ActionKind::Delete => "deleted",
    }
}

/// Shared-filesystem storage at 0.01 CNY per GB-day, per hour.
fn storage_per_hour(instance: &Instance) -> Money {
    let gb: i64 = instance.volume_mounts.iter().filter(|v| v.filesystem_type == "data").map(|v| v.size_gb as i64).sum();
    Money::from_micros(gb * 10_000 / 24)
}

/// `2h 05m`, `3d 4h`, `45s`.
pub fn humane(d: Duration) -> String {
    let secs = d.num_seconds().max(0);
    let (days, hours, minutes) = (secs / 86_400, secs % 86_400 / 3600, secs % 3600 / 60);
    match (days, hours, minutes) {
        (0, 0, 0) => format!("{secs}s"),
        (0, 0, m) => format!("{m}m"),
        (0, h, m) => format!("{h}h {m:02}m"),
        (d, h, _) => format!("{d}d {h}h"),
    }
}
