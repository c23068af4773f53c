//! What `simulate` reports, per policy and in total: spend, the baselines on
//! the same trace, savings, what people went through, and actions by kind.
//! The JSON shape is a contract (documented in `traces/README.md`): fields
//! only get added, and the same inputs give the same bytes.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::replay::{Experience, Replay};
use super::trace::Trace;
use crate::money::Money;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    pub format: u32,
    pub trace: TraceSummary,
    pub policies: Vec<PolicyReport>,
    pub total: PolicyReport,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TraceSummary {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub instances: usize,
    pub sessions: usize,
    pub hours_in_use: f64,
    /// The daemon's steps in the policy's replay (the rest of the time was skipped: nothing changed).
    pub steps: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PolicyReport {
    pub policy: String,
    pub instances: usize,
    /// Compute of pay-as-you-go instances, in yuan (prepaid terms cost the same under every strategy).
    pub spend_yuan: f64,
    /// Against always on.
    pub savings_yuan: f64,
    pub spend_vs_always_on: f64,
    pub spend_vs_active_only: f64,
    /// Sessions that began with the instance not running, and the wait until it ran.
    pub cold_starts: u32,
    pub cold_start_wait_seconds: i64,
    /// Power-offs and deletes while the instance was in use.
    pub interrupted_sessions: u32,
    /// Sessions whose instance no longer existed.
    pub lost_sessions: u32,
    /// Completed actions by kind.
    pub actions: BTreeMap<String, u32>,
    pub baselines: Vec<Baseline>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Baseline {
    /// `always_on`, `idle_5m` .. `idle_60m`, `active_only`.
    pub name: String,
    pub spend_yuan: f64,
    pub cold_starts: u32,
    pub cold_start_wait_seconds: i64,
}

pub(super) fn build(
    trace: &Trace,
    owners: &BTreeMap<String, String>,
    policy: &Replay,
    always_on: &Replay,
    timers: &[(String, Replay)],
    active_only: &BTreeMap<String, Money>,
) -> Report {
    let spend = spend_by_instance(policy);
    let always = spend_by_instance(always_on);
    let timer_spend: Vec<(&String, BTreeMap<String, Money>, &Replay)> =
        timers.iter().map(|(name, r)| (name, spend_by_instance(r), r)).collect();
    // Every instance that ran in any replay, by owner.
    let mut members: BTreeMap<String, Vec<&String>> = BTreeMap::new();
    let mut names: Vec<&String> = spend.keys().chain(always.keys()).chain(trace.sessions.keys()).collect();
    names.sort();
    names.dedup();
    for name in names {
        let owner = owners.get(name).cloned().unwrap_or_else(|| crate::metrics::UNMANAGED.to_owned());
        members.entry(owner).or_default().push(name);
    }
    let sum = |map: &BTreeMap<String, Money>, names: &[&String]| -> Money {
        names.iter().filter_map(|n| map.get(*n)).copied().sum()
    };
    let one = |label: String, names: &[&String]| -> PolicyReport {
        let spent = sum(&spend, names);
        let always_on_spend = sum(&always, names);
        let active = sum(active_only, names);
        let lived = experience_of(policy, names);
        let mut actions: BTreeMap<String, u32> = BTreeMap::new();
        for a in policy.actions.iter().filter(|a| a.outcome == Some(crate::ledger::Outcome::Done) && !a.dry_run) {
            let display = policy.display_names.get(&a.instance).unwrap_or(&a.display_name);
            if names.contains(&display) {
                *actions.entry(a.kind.clone()).or_default() += 1;
            }
        }
        let mut baselines = vec![baseline("always_on", always_on_spend, experience_of(always_on, names))];
        for (name, spend, replay) in &timer_spend {
            baselines.push(baseline(name, sum(spend, names), experience_of(replay, names)));
        }
        baselines.push(baseline("active_only", active, Experience::default()));
        PolicyReport {
            policy: label,
            instances: names.len(),
            spend_yuan: yuan(spent),
            savings_yuan: yuan(always_on_spend - spent),
            spend_vs_always_on: ratio(spent, always_on_spend),
            spend_vs_active_only: ratio(spent, active),
            cold_starts: lived.cold_starts,
            cold_start_wait_seconds: lived.waited.num_seconds(),
            interrupted_sessions: lived.interrupted,
            lost_sessions: lived.lost,
            actions,
            baselines,
        }
    };
    let policies: Vec<PolicyReport> = members.iter().map(|(owner, names)| one(owner.clone(), names)).collect();
    let everyone: Vec<&String> = members.values().flatten().copied().collect();
    let total = one("total".into(), &everyone);
    let sessions = trace.sessions.values().map(Vec::len).sum();
    let in_use_ms: i64 = trace.sessions.values().flatten().map(|s| (s.end - s.start).num_milliseconds()).sum();
    Report {
        format: 1,
        trace: TraceSummary {
            start: trace.start,
            end: trace.end,
            instances: trace.sessions.len(),
            sessions,
            hours_in_use: (in_use_ms as f64 / 36_000.0).round() / 100.0,
            steps: policy.steps,
        },
        policies,
        total,
    }
}

fn baseline(name: &str, spend: Money, lived: Experience) -> Baseline {
    Baseline {
        name: name.to_owned(),
        spend_yuan: yuan(spend),
        cold_starts: lived.cold_starts,
        cold_start_wait_seconds: lived.waited.num_seconds(),
    }
}

/// To the fen.
fn yuan(m: Money) -> f64 {
    (m.micros() as f64 / 10_000.0).round() / 100.0
}

/// To three places; 0 when there is nothing to compare with.
fn ratio(part: Money, whole: Money) -> f64 {
    if whole.micros() == 0 { 0.0 } else { (part.micros() as f64 / whole.micros() as f64 * 1000.0).round() / 1000.0 }
}

impl Report {
    /// A table for people: spend against the baselines, then what people went through.
    pub fn table(&self) -> String {
        let mut out = format!(
            "{} to {}: {} instances, {} sessions, {:.0} hours in use\n\n",
            self.trace.start.format("%Y-%m-%d %H:%M UTC"),
            self.trace.end.format("%Y-%m-%d %H:%M UTC"),
            self.trace.instances,
            self.trace.sessions,
            self.trace.hours_in_use
        );
        let header =
            ["policy", "spend", "always on", "idle 5m", "idle 15m", "idle 30m", "idle 60m", "in use only", "saved"];
        out += &format!("{:<14}{}\n", header[0], header[1..].iter().map(|h| format!("{h:>12}")).collect::<String>());
        for p in self.policies.iter().chain(std::iter::once(&self.total)) {
            let cells: Vec<f64> = std::iter::once(p.spend_yuan)
                .chain(p.baselines.iter().map(|b| b.spend_yuan))
                .chain(std::iter::once(p.savings_yuan))
                .collect();
            out += &format!(
                "{:<14}{}\n",
                p.policy,
                cells.iter().map(|c| format!("{:>12}", format!("¥{c:.2}"))).collect::<String>()
            );
        }
        out += "\ncold starts (total wait)\n";
        out += &format!(
            "{:<14}{:>16}{}{:>14}{:>8}\n",
            "policy",
            "policy",
            ["always on", "idle 5m", "idle 15m", "idle 30m", "idle 60m"]
                .iter()
                .map(|h| format!("{h:>16}"))
                .collect::<String>(),
            "interrupted",
            "lost"
        );
        for p in self.policies.iter().chain(std::iter::once(&self.total)) {
            let starts = |n: u32, s: i64| format!("{n} ({})", crate::plan::humane(chrono::Duration::seconds(s)));
            let baselines: String = p
                .baselines
                .iter()
                .filter(|b| b.name != "active_only")
                .map(|b| format!("{:>16}", starts(b.cold_starts, b.cold_start_wait_seconds)))
                .collect();
            out += &format!(
                "{:<14}{:>16}{baselines}{:>14}{:>8}\n",
                p.policy,
                starts(p.cold_starts, p.cold_start_wait_seconds),
                p.interrupted_sessions,
                p.lost_sessions
            );
        }
        let ratio = |r: f64| format!("{:.0}%", r * 100.0);
        out += &format!(
            "\nThe policy spends {} of always on and {} of the in-use-only lower bound.\n",
            ratio(self.total.spend_vs_always_on),
            ratio(self.total.spend_vs_active_only)
        );
        let actions: Vec<String> = self.total.actions.iter().map(|(k, n)| format!("{n} {k}")).collect();
        if !actions.is_empty() {
            out += &format!("Actions: {}.\n", actions.join(", "));
        }
        out
    }
}

/// Compute spend of pay-as-you-go instances by display name, from a replay's bill.
fn spend_by_instance(replay: &Replay) -> BTreeMap<String, Money> {
    let mut spend = BTreeMap::new();
    for bill in &replay.bill.instances {
        *spend.entry(bill.display_name.clone()).or_insert(Money::ZERO) += bill.compute;
    }
    spend
}

fn experience_of(replay: &Replay, names: &[&String]) -> Experience {
    let mut total = Experience::default();
    for name in names {
        if let Some(e) = replay.experience.get(*name) {
            total.cold_starts += e.cold_starts;
            total.waited += e.waited;
            total.interrupted += e.interrupted;
            total.lost += e.lost;
        }
    }
    total
}
