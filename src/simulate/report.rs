//! What `simulate` reports, per policy, per instance and in total: what was
//! billed (lost work redone included), the baselines on the same trace, the
//! fixed-timer frontier and the policy's place on it, what people went
//! through, and actions by kind. The JSON shape is a contract (documented in
//! `traces/README.md`): fields only get added within a format, and the same
//! inputs give the same bytes.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use super::frontier::{self, Frontier, Point, Verdict};
use super::replay::{Experience, Replay};
use super::trace::Trace;
use super::{Fixed, Member};
use crate::money::Money;
use crate::plan::humane;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    pub format: u32,
    pub trace: TraceSummary,
    pub policies: Vec<PolicyReport>,
    pub total: PolicyReport,
    pub instances: Vec<InstanceReport>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TraceSummary {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub timezone: String,
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
    /// Everything billed for these instances: compute, storage, prepaid
    /// terms (and, in the total, saved images). The total is the simulator's bill.
    pub spend_yuan: f64,
    /// Running time of pay-as-you-go instances, the work redone included.
    pub compute_yuan: f64,
    pub storage_yuan: f64,
    pub prepaid_yuan: f64,
    /// Saved images beyond the free allowance (an account's, so in the total only).
    pub images_yuan: f64,
    /// Of the spend, instances no strategy changes: unmanaged, protected, prepaid.
    pub fixed_yuan: f64,
    /// Against always on.
    pub savings_yuan: f64,
    /// The compute of instances the policy may stop, against always on and
    /// against the in-use-only bound (the part a policy can change).
    pub spend_vs_always_on: f64,
    pub spend_vs_active_only: f64,
    #[serde(flatten)]
    pub people: People,
    /// Completed actions by kind.
    pub actions: BTreeMap<String, u32>,
    pub baselines: Vec<Baseline>,
    pub frontier: Frontier,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Baseline {
    /// `always_on`, `idle_0m` .. `idle_240m`, `active_only`.
    pub name: String,
    pub stop_after_minutes: Option<i64>,
    pub spend_yuan: f64,
    pub cold_starts: u32,
    pub cold_start_wait_seconds: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct InstanceReport {
    pub instance: String,
    pub policy: String,
    /// Why no strategy changes its cost, if none does.
    pub fixed: Option<Fixed>,
    pub spend_yuan: f64,
    pub compute_yuan: f64,
    /// Its compute in the in-use-only bound.
    pub active_only_yuan: f64,
    #[serde(flatten)]
    pub people: People,
}

/// What people went through under the policy.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct People {
    /// Starts someone waited for (a session beginning, a restart after an interruption).
    pub cold_starts: u32,
    pub cold_start_wait_seconds: i64,
    /// Power-offs and deletes while the instance was in use.
    pub interrupted_sessions: u32,
    /// Sessions whose instance no longer existed.
    pub lost_sessions: u32,
    /// Work the interruptions lost, and what it had cost; redoing it is in the spend.
    pub lost_work_hours: f64,
    pub lost_work_yuan: f64,
}

impl From<Experience> for People {
    fn from(lived: Experience) -> Self {
        People {
            cold_starts: lived.cold_starts,
            cold_start_wait_seconds: lived.waited.num_seconds(),
            interrupted_sessions: lived.interrupted,
            lost_sessions: lived.lost,
            lost_work_hours: hours(lived.lost_work),
            lost_work_yuan: yuan(lived.lost_work_cost),
        }
    }
}

/// What one instance was billed, summed over its lives.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Billed {
    pub compute: Money,
    pub storage: Money,
    pub prepaid: Money,
}

impl Billed {
    fn total(self) -> Money {
        self.compute + self.storage + self.prepaid
    }
}

impl std::ops::AddAssign for Billed {
    fn add_assign(&mut self, other: Billed) {
        self.compute += other.compute;
        self.storage += other.storage;
        self.prepaid += other.prepaid;
    }
}

/// A replay's bill by display name.
pub(super) fn billed_by_instance(replay: &Replay) -> BTreeMap<String, Billed> {
    let mut billed: BTreeMap<String, Billed> = BTreeMap::new();
    for bill in &replay.bill.instances {
        *billed.entry(bill.display_name.clone()).or_default() +=
            Billed { compute: bill.compute, storage: bill.storage, prepaid: bill.prepaid };
    }
    billed
}

/// One replay, summed over a set of instances.
struct Tally {
    billed: Billed,
    /// Compute of the instances a policy may stop.
    changeable: Money,
    fixed: Money,
    lived: Experience,
}

struct Replayed<'a> {
    replay: &'a Replay,
    billed: BTreeMap<String, Billed>,
}

impl Replayed<'_> {
    fn tally(&self, names: &[&String], members: &BTreeMap<String, Member>) -> Tally {
        let mut tally = Tally {
            billed: Billed::default(),
            changeable: Money::ZERO,
            fixed: Money::ZERO,
            lived: Experience::default(),
        };
        for name in names {
            let billed = self.billed.get(*name).copied().unwrap_or_default();
            tally.billed += billed;
            match members.get(*name).and_then(|m| m.fixed) {
                Some(_) => tally.fixed += billed.total(),
                None => tally.changeable += billed.compute,
            }
            if let Some(e) = self.replay.experience.get(*name) {
                tally.lived += *e;
            }
        }
        tally
    }
}

pub(super) fn build(
    trace: &Trace,
    members: &BTreeMap<String, Member>,
    policy: &Replay,
    always_on: &Replay,
    timers: &[(i64, Replay)],
    bound: &BTreeMap<String, Money>,
) -> Report {
    let replayed = |replay| Replayed { replay, billed: billed_by_instance(replay) };
    let (run, always) = (replayed(policy), replayed(always_on));
    let timers: Vec<(i64, Replayed)> = timers.iter().map(|(minutes, r)| (*minutes, replayed(r))).collect();
    // Every instance that ran in any replay or had sessions, by policy.
    let mut by_policy: BTreeMap<&str, Vec<&String>> = BTreeMap::new();
    let mut names: Vec<&String> =
        run.billed.keys().chain(always.billed.keys()).chain(trace.sessions.keys()).chain(members.keys()).collect();
    names.sort();
    names.dedup();
    let policy_of = |name: &str| members.get(name).map_or(crate::config::policy::UNMANAGED, |m| m.policy.as_str());
    for name in &names {
        by_policy.entry(policy_of(name)).or_default().push(name);
    }
    let changeable_bound = |names: &[&String]| -> Money {
        names
            .iter()
            .filter(|n| members.get(**n).is_none_or(|m| m.fixed.is_none()))
            .filter_map(|n| bound.get(*n))
            .copied()
            .sum()
    };
    // Saved images are the account's: they count in the total only.
    let one = |label: &str, names: &[&String], total: bool| -> PolicyReport {
        let images = |r: &Replay| if total { r.bill.images } else { Money::ZERO };
        let own = run.tally(names, members);
        let always_on = always.tally(names, members);
        let spend = own.billed.total() + images(policy);
        let always_spend = always_on.billed.total() + images(always.replay);
        let mut actions: BTreeMap<String, u32> = BTreeMap::new();
        for a in policy.actions.iter().filter(|a| a.outcome == Some(crate::ledger::Outcome::Done) && !a.dry_run) {
            let display = policy.display_names.get(&a.instance).unwrap_or(&a.display_name);
            if names.contains(&display) {
                *actions.entry(a.kind.clone()).or_default() += 1;
            }
        }
        let baseline = |name: String, minutes: Option<i64>, spend: Money, lived: Experience| Baseline {
            name,
            stop_after_minutes: minutes,
            spend_yuan: yuan(spend),
            cold_starts: lived.cold_starts,
            cold_start_wait_seconds: lived.waited.num_seconds(),
        };
        let mut baselines = vec![baseline("always_on".into(), None, always_spend, always_on.lived)];
        for (minutes, timer) in &timers {
            let t = timer.tally(names, members);
            let spend = t.billed.total() + images(timer.replay);
            baselines.push(baseline(format!("idle_{minutes}m"), Some(*minutes), spend, t.lived));
        }
        // In use only: the changeable compute at the bound; the rest as always on has it.
        let in_use_bound = changeable_bound(names);
        let active = always_spend - always_on.changeable + in_use_bound - images(always.replay);
        baselines.push(baseline("active_only".into(), None, active, Experience::default()));
        let points = baselines
            .iter()
            .filter(|b| b.name != "active_only")
            .map(|b| Point {
                name: b.name.clone(),
                stop_after_minutes: b.stop_after_minutes,
                spend_yuan: b.spend_yuan,
                cold_starts: b.cold_starts,
                on_frontier: false,
            })
            .collect();
        PolicyReport {
            policy: label.to_owned(),
            instances: names.len(),
            spend_yuan: yuan(spend),
            compute_yuan: yuan(own.billed.compute),
            storage_yuan: yuan(own.billed.storage),
            prepaid_yuan: yuan(own.billed.prepaid),
            images_yuan: yuan(images(policy)),
            fixed_yuan: yuan(own.fixed),
            savings_yuan: yuan(always_spend - spend),
            spend_vs_always_on: ratio(own.changeable, always_on.changeable),
            spend_vs_active_only: ratio(own.changeable, in_use_bound),
            people: own.lived.into(),
            actions,
            frontier: frontier::place(points, yuan(spend), own.lived.cold_starts),
            baselines,
        }
    };
    let policies: Vec<PolicyReport> = by_policy.iter().map(|(policy, names)| one(policy, names, false)).collect();
    let total = one("total", &names, true);
    let instances = names
        .iter()
        .map(|name| {
            let billed = run.billed.get(*name).copied().unwrap_or_default();
            let lived = policy.experience.get(*name).copied().unwrap_or_default();
            InstanceReport {
                instance: (*name).clone(),
                policy: policy_of(name).to_owned(),
                fixed: members.get(*name).and_then(|m| m.fixed),
                spend_yuan: yuan(billed.total()),
                compute_yuan: yuan(billed.compute),
                active_only_yuan: yuan(bound.get(*name).copied().unwrap_or_default()),
                people: lived.into(),
            }
        })
        .collect();
    let sessions = trace.sessions.values().map(Vec::len).sum();
    let in_use: Duration = trace.sessions.values().flatten().map(|s| s.end - s.start).sum();
    Report {
        format: 2,
        trace: TraceSummary {
            start: trace.start,
            end: trace.end,
            timezone: trace.zone.name().to_owned(),
            instances: trace.sessions.len(),
            sessions,
            hours_in_use: hours(in_use),
            steps: policy.steps,
        },
        policies,
        total,
        instances,
    }
}

/// To the fen.
fn yuan(m: Money) -> f64 {
    (m.micros() as f64 / 10_000.0).round() / 100.0
}

/// To a hundredth of an hour.
fn hours(d: Duration) -> f64 {
    (d.num_milliseconds() as f64 / 36_000.0).round() / 100.0
}

/// To three places; 0 when there is nothing to compare with.
fn ratio(part: Money, whole: Money) -> f64 {
    if whole.micros() == 0 { 0.0 } else { (part.micros() as f64 / whole.micros() as f64 * 1000.0).round() / 1000.0 }
}

fn money(yuan: f64) -> String {
    format!("¥{yuan:.2}")
}

fn starts(cold_starts: u32, wait_seconds: i64) -> String {
    format!("{cold_starts} ({})", humane(Duration::seconds(wait_seconds)))
}

impl Report {
    /// Tables for people: each policy against the frontier, what people went
    /// through, the fixed timers, and what the bill is made of.
    pub fn table(&self) -> String {
        let zone: chrono_tz::Tz = self.trace.timezone.parse().unwrap_or(crate::config::check::DEFAULT_TIMEZONE);
        let local = |t: DateTime<Utc>| t.with_timezone(&zone).format("%Y-%m-%d %H:%M %Z").to_string();
        let mut out = format!(
            "{} to {} ({}): {} instances, {} sessions, {:.0} hours in use\n\n",
            local(self.trace.start),
            local(self.trace.end),
            self.trace.timezone,
            self.trace.instances,
            self.trace.sessions,
            self.trace.hours_in_use
        );
        let rows: Vec<&PolicyReport> = self.policies.iter().chain(std::iter::once(&self.total)).collect();
        out += &format!(
            "{:<14}{:>13}{:>13}{:>13}{:>13}{:>20}{:>24}\n",
            "policy", "spend", "lost work", "always on", "in use only", "best timer mix", "verdict"
        );
        for p in &rows {
            let baseline = |name: &str| p.baselines.iter().find(|b| b.name == name).map_or(0.0, |b| b.spend_yuan);
            let best = p.frontier.frontier_spend_yuan.map_or("none as few".into(), money);
            let verdict = match (p.frontier.verdict, p.frontier.saving_yuan) {
                (Verdict::Below, Some(s)) => format!("below, {} less", money(s)),
                (Verdict::Above, Some(s)) => format!("above, {} more", money(-s)),
                (v, _) => format!("{v:?}").to_lowercase(),
            };
            out += &format!(
                "{:<14}{:>13}{:>13}{:>13}{:>13}{:>20}{:>24}\n",
                p.policy,
                money(p.spend_yuan),
                money(p.people.lost_work_yuan),
                money(baseline("always_on")),
                money(baseline("active_only")),
                best,
                verdict
            );
        }
        out += &format!(
            "\n{:<14}{:>22}{:>14}{:>16}{:>12}\n",
            "policy", "cold starts (wait)", "interrupted", "hours lost", "lost"
        );
        for p in &rows {
            out += &format!(
                "{:<14}{:>22}{:>14}{:>16}{:>12}\n",
                p.policy,
                starts(p.people.cold_starts, p.people.cold_start_wait_seconds),
                p.people.interrupted_sessions,
                format!("{:.2}", p.people.lost_work_hours),
                p.people.lost_sessions
            );
        }
        out += &format!("\nfixed timers, all policies{:>17}{:>22}\n", "spend", "cold starts (wait)");
        for point in &self.total.frontier.points {
            let b = self.total.baselines.iter().find(|b| b.name == point.name);
            let wait = b.map_or(0, |b| b.cold_start_wait_seconds);
            let name = point.stop_after_minutes.map_or("always on".into(), |m| format!("idle {m}m"));
            let mark = if point.on_frontier { "  frontier" } else { "" };
            out +=
                &format!("  {name:<26}{:>17}{:>22}{mark}\n", money(point.spend_yuan), starts(point.cold_starts, wait));
        }
        let t = &self.total;
        out += &format!(
            "\nBilled {} in all: compute {} (of which redoing lost work {}), prepaid terms {}, storage {}, saved images {}; {} of it on instances no policy changes (unmanaged, protected, prepaid).\n",
            money(t.spend_yuan),
            money(t.compute_yuan),
            money(t.people.lost_work_yuan),
            money(t.prepaid_yuan),
            money(t.storage_yuan),
            money(t.images_yuan),
            money(t.fixed_yuan)
        );
        out += &self.summary();
        let actions: Vec<String> = t.actions.iter().map(|(k, n)| format!("{n} {k}")).collect();
        if !actions.is_empty() {
            out += &format!("Actions: {}.\n", actions.join(", "));
        }
        out
    }

    /// The verdict in words: the frontier, the bound and the work lost.
    pub fn summary(&self) -> String {
        let t = &self.total;
        let pct = |r: f64| format!("{:.0}%", r * 100.0);
        let mut out = match (t.frontier.verdict, t.frontier.frontier_spend_yuan) {
            (verdict, Some(best)) => format!(
                "The policy is {}: {} with {} cold starts, where the best mix of fixed timers with no more cold starts spends {}.\n",
                verdict.words(),
                money(t.spend_yuan),
                t.people.cold_starts,
                money(best)
            ),
            (verdict, None) => format!(
                "The policy is {}: {} cold starts, fewer than any fixed timer.\n",
                verdict.words(),
                t.people.cold_starts
            ),
        };
        out += &format!(
            "On what a policy can change (compute of the pay-as-you-go instances it may stop) it spends {} of always on and {} of the in-use-only lower bound.\n",
            pct(t.spend_vs_always_on),
            pct(t.spend_vs_active_only)
        );
        if t.spend_vs_active_only > 0.0 && t.spend_vs_active_only < 1.0 {
            out += &format!(
                "It is under the bound because people waited {} in all for their instances to start, time in use the platform does not bill.\n",
                humane(Duration::seconds(t.people.cold_start_wait_seconds))
            );
        }
        if t.people.interrupted_sessions > 0 {
            out += &format!(
                "It interrupted {} sessions in use: {:.2} hours of work lost ({}), redone after a restart and paid for in the spend above.\n",
                t.people.interrupted_sessions,
                t.people.lost_work_hours,
                money(t.people.lost_work_yuan)
            );
        }
        out
    }
}
