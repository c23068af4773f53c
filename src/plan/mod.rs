//! The planner: a pure function of (observed state, policies, now) to a plan.
//! No I/O, no clock, no randomness: the same inputs give the same plan.

mod budget;
mod candidate;
mod instance;
mod limits;
pub mod observed;
mod pool;
pub mod report;
mod types;

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};

use candidate::{Candidate, Reason, Target};
pub use instance::idle_since;
pub use observed::{Observed, ObservedInstance, Reading, SnapshotState, SpendSoFar};
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
    let members = members_by_policy(observed, config);
    let mut planner = Planner {
        observed,
        config,
        now,
        detail,
        draft: Draft::default(),
        edges: Edges::default(),
        policy_rate: Money::ZERO,
        global_rate: Money::ZERO,
        policy_committed: Money::ZERO,
        global_committed: Money::ZERO,
        reserved: HashMap::new(),
    };
    planner.global_rate = planner.rate(&observed.instances.iter().collect::<Vec<_>>());
    for (policy, members) in config.policies.iter().zip(&members) {
        let members: Vec<&ObservedInstance> = members.iter().map(|i| &observed.instances[*i]).collect();
        planner.policy(policy, &members);
    }
    planner.global_budget(&members);
    let Draft { candidates, mut notes, schedule_marks, next_check } = std::mem::take(&mut planner.draft);
    let (actions, retry) = limits::apply(candidates, observed, config, &members, now, &mut notes, detail);
    let next_check = [next_check, retry].into_iter().flatten().min();
    Plan { at: now, actions, notes, schedule_marks, next_check }
}

/// The instances each policy owns (by index): a pool's slots belong to the
/// pool; any other instance to the first policy that selects it. Policies are looked up by the literal prefixes of
/// their name patterns, so a large fleet does not try every policy.
fn members_by_policy(observed: &Observed, config: &Config) -> Vec<Vec<usize>> {
    let mut by_prefix: HashMap<&str, Vec<usize>> = HashMap::new();
    let mut any_name = Vec::new();
    for (index, policy) in config.policies.iter().enumerate() {
        match policy.name_prefixes() {
            Some(prefixes) => prefixes.into_iter().for_each(|p| by_prefix.entry(p).or_default().push(index)),
            None => any_name.push(index),
        }
    }
    let longest = by_prefix.keys().map(|p| p.len()).max().unwrap_or(0);
    let mut members = vec![Vec::new(); config.policies.len()];
    let mut candidates = Vec::new();
    for (i, o) in observed.instances.iter().enumerate() {
        let name = o.instance.display_name.as_str();
        candidates.clear();
        candidates.extend_from_slice(&any_name);
        for (end, _) in name.char_indices().skip(1).chain([(name.len(), ' ')]) {
            if end > longest {
                break;
            }
            if let Some(found) = by_prefix.get(&name[..end]) {
                candidates.extend_from_slice(found);
            }
        }
        candidates.sort_unstable();
        let pool = candidates.iter().find(|&&p| config.policies[p].pools(&o.instance));
        if let Some(&p) = pool.or_else(|| candidates.iter().find(|&&p| config.policies[p].selects(&o.instance))) {
            members[p].push(i);
        }
    }
    members
}

/// The schedule edges of the policy being planned, found once per plan
/// rather than once per instance.
#[derive(Default)]
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
}

struct Planner<'a> {
    observed: &'a Observed,
    config: &'a Config,
    now: DateTime<Utc>,
    detail: Detail,
    draft: Draft<'a>,
    edges: Edges,
    /// Spend per hour of the policy being planned, and of everything.
    policy_rate: Money,
    global_rate: Money,
    /// Spend per hour this plan has already added by starts and creates.
    policy_committed: Money,
    global_committed: Money,
    /// GPUs this plan's starts and creates take, per (region, GPU resource
    /// key): SKUs of one model in one region share their GPUs.
    reserved: HashMap<(String, String), u32>,
}

impl<'a> Planner<'a> {
    fn policy(&mut self, policy: &'a Policy, members: &[&'a ObservedInstance]) {
        self.policy_rate = self.rate(members);
        self.policy_committed = Money::ZERO;
        self.edges = match &policy.schedule {
            Some(schedule) => Edges { latest: schedule.latest_edge(self.now), next: schedule.next_edge(self.now) },
            None => Edges::default(),
        };
        let pool_slot = |o: &ObservedInstance| policy.pool.as_ref().and_then(|p| p.slot_of(&o.instance.display_name));
        let (pooled, selected): (Vec<&ObservedInstance>, Vec<&ObservedInstance>) =
            members.iter().partition(|o| pool_slot(o).is_some() && policy.pool.is_some());
        // Running instances first: their stops free budget for the starts that follow.
        let (running, rest): (Vec<_>, Vec<_>) =
            selected.iter().partition(|m| m.instance.status == crate::cloud::InstanceStatus::Running);
        for member in running.into_iter().chain(rest) {
            self.instance(policy, member);
        }
        if let Some(pool) = &policy.pool {
            self.pool(policy, pool, &pooled);
        }
        self.policy_budget(policy, members);
    }

    /// Asks again at `at`, if that is later than now.
    fn wake(&mut self, at: DateTime<Utc>) {
        if at > self.now {
            self.draft.next_check = Some(self.draft.next_check.map_or(at, |n| n.min(at)));
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
        if let Some(glob) = policy.protect.iter().find(|g| g.matches(&instance.display_name)) {
            return Some(format!("protected by `{}`", glob.as_str()));
        }
        match self.observed.snoozes.get(&instance.name) {
            Some(until) if *until > self.now => {
                self.wake(*until);
                Some(format!("snoozed until {}", until.format("%Y-%m-%d %H:%M UTC")))
            }
            _ => None,
        }
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
        });
    }

    fn hourly_cost(&self, instance: &Instance) -> Money {
        hourly_cost(self.observed, instance, self.now)
    }
}

/// What an instance costs per hour while running, at the price in force at
/// `now`. Prepaid instances cost nothing more by running.
pub fn hourly_cost(observed: &Observed, instance: &Instance, now: DateTime<Utc>) -> Money {
    if instance.cost.billing_type != BillingType::PayAsYouGo {
        return Money::ZERO;
    }
    match observed.sku(&instance.cost.sku_id) {
        Some(sku) => pricing::effective_price(sku, now),
        None => instance.unit_price_per_hour().unwrap_or(Money::ZERO),
    }
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
