//! `advise`: for each policy with an idle timer, the fixed timers replayed
//! on a history, their frontier, where the policy's own setting sits on it,
//! and the setting to choose for a limit on cold starts a week or on money
//! a month. The replays are `simulate`'s.

use serde::Serialize;

use super::frontier::Verdict;
use super::report::{PolicyReport, Report};
use super::trace::Trace;
use super::{ReplayError, TIMERS, simulate_with_timers};
use crate::config::policy::{Config, StopAfter};

/// What a user asks the setting to respect.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Limits {
    pub cold_starts_per_week: Option<f64>,
    pub spend_per_month_yuan: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Advice {
    pub format: u32,
    pub days: f64,
    pub policies: Vec<PolicyAdvice>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PolicyAdvice {
    pub policy: String,
    /// The policy's fixed `stop_after`, in minutes (rounded down); `None`: adaptive.
    pub stop_after_minutes: Option<i64>,
    /// The policy as configured (schedules, pools and budgets included).
    pub configured: Setting,
    pub verdict: Verdict,
    /// Every fixed timer on this history, fewest cold starts first.
    pub timers: Vec<Setting>,
    /// The cheapest timer within the cold-start limit, if one was asked for.
    pub for_cold_starts: Option<Choice>,
    /// The timer with the fewest cold starts within the money limit, if one was asked for.
    pub for_spend: Option<Choice>,
    /// What the comparison leaves out, when something does.
    pub note: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Setting {
    /// `None` for the policy as configured, or for always on.
    pub stop_after_minutes: Option<i64>,
    pub spend_yuan: f64,
    pub spend_per_month_yuan: f64,
    pub cold_starts: u32,
    pub cold_starts_per_week: f64,
    pub on_frontier: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Choice {
    pub limit: f64,
    /// The timer to set; `None` when no fixed timer meets the limit.
    pub setting: Option<Setting>,
}

/// Replays the history under the fixed timers (each policy's own among
/// them) and advises every policy with an idle timer.
pub async fn advise(config: &Config, trace: &Trace, limits: Limits) -> Result<Advice, ReplayError> {
    let mut timers = TIMERS.to_vec();
    for idle in config.policies.iter().filter_map(|p| p.idle.as_ref()) {
        if let StopAfter::Fixed(after) = idle.stop_after {
            timers.push(after.num_minutes());
        }
    }
    timers.sort_unstable();
    timers.dedup();
    let report = simulate_with_timers(config, trace, &timers).await?;
    Ok(from_report(config, &report, limits))
}

fn from_report(config: &Config, report: &Report, limits: Limits) -> Advice {
    let days = (report.trace.end - report.trace.start).num_seconds() as f64 / 86_400.0;
    let per = |spend: f64, starts: u32| (round(spend * 30.0 / days, 2), round(f64::from(starts) * 7.0 / days, 1));
    let policies = config
        .policies
        .iter()
        .filter_map(|policy| {
            let idle = policy.idle.as_ref()?;
            let row: &PolicyReport = report.policies.iter().find(|r| r.policy == policy.name)?;
            let setting = |minutes: Option<i64>, spend: f64, cold_starts: u32, on_frontier: bool| {
                let (month, week) = per(spend, cold_starts);
                Setting {
                    stop_after_minutes: minutes,
                    spend_yuan: spend,
                    spend_per_month_yuan: month,
                    cold_starts,
                    cold_starts_per_week: week,
                    on_frontier,
                }
            };
            let timers: Vec<Setting> = row
                .frontier
                .points
                .iter()
                .map(|p| setting(p.stop_after_minutes, p.spend_yuan, p.cold_starts, p.on_frontier))
                .collect();
            let fixed = || timers.iter().filter(|t| t.stop_after_minutes.is_some());
            let for_cold_starts = limits.cold_starts_per_week.map(|limit| Choice {
                limit,
                setting: fixed()
                    .filter(|t| t.cold_starts_per_week <= limit)
                    .min_by(|a, b| a.spend_yuan.total_cmp(&b.spend_yuan))
                    .cloned(),
            });
            let for_spend = limits.spend_per_month_yuan.map(|limit| Choice {
                limit,
                setting: fixed()
                    .filter(|t| t.spend_per_month_yuan <= limit)
                    .min_by(|a, b| a.cold_starts.cmp(&b.cold_starts).then(a.spend_yuan.total_cmp(&b.spend_yuan)))
                    .cloned(),
            });
            Some(PolicyAdvice {
                policy: policy.name.clone(),
                stop_after_minutes: match idle.stop_after {
                    StopAfter::Fixed(after) => Some(after.num_minutes()),
                    StopAfter::Adaptive(_) => None,
                },
                configured: setting(None, row.spend_yuan, row.people.cold_starts, false),
                verdict: row.frontier.verdict,
                timers,
                for_cold_starts,
                for_spend,
                note: policy.pool.as_ref().map(|_| {
                    "its pool's creates are not replayed under the fixed timers: they stop only the instances the history has".to_owned()
                }),
            })
        })
        .collect();
    Advice { format: 1, days: round(days, 2), policies }
}

fn round(x: f64, places: i32) -> f64 {
    let scale = 10f64.powi(places);
    (x * scale).round() / scale
}

impl Advice {
    pub fn table(&self) -> String {
        let mut out = String::new();
        for p in &self.policies {
            out += &format!(
                "{}: stop_after {}; as configured ¥{:.2} a month with {:.1} cold starts a week, {}\n",
                p.policy,
                p.stop_after_minutes.map_or("adaptive".into(), |m| format!("{m}m")),
                p.configured.spend_per_month_yuan,
                p.configured.cold_starts_per_week,
                p.verdict.words()
            );
            out += &format!("  {:<12}{:>16}{:>22}\n", "timer", "a month", "cold starts a week");
            for t in &p.timers {
                let name = t.stop_after_minutes.map_or("always on".into(), |m| format!("{m}m"));
                let mut marks = Vec::new();
                if t.on_frontier {
                    marks.push("frontier");
                }
                if t.stop_after_minutes.is_some() && t.stop_after_minutes == p.stop_after_minutes {
                    marks.push("this policy's stop_after");
                }
                out += &format!(
                    "  {name:<12}{:>16}{:>22.1}  {}\n",
                    format!("¥{:.2}", t.spend_per_month_yuan),
                    t.cold_starts_per_week,
                    marks.join(", ")
                );
            }
            let say = |choice: &Choice, what: String| match &choice.setting {
                Some(s) => format!(
                    "  For {what}: stop_after {}m (¥{:.2} a month, {:.1} cold starts a week).\n",
                    s.stop_after_minutes.unwrap_or_default(),
                    s.spend_per_month_yuan,
                    s.cold_starts_per_week
                ),
                None => format!("  For {what}: no fixed timer does it on this history.\n"),
            };
            if let Some(note) = &p.note {
                out += &format!("  Note: {note}.\n");
            }
            if let Some(c) = &p.for_cold_starts {
                out += &say(c, format!("at most {} cold starts a week", c.limit));
            }
            if let Some(c) = &p.for_spend {
                out += &say(c, format!("at most ¥{:.2} a month", c.limit));
            }
            out += "\n";
        }
        if self.policies.is_empty() {
            out += "No policy has an idle timer to advise on.\n";
        }
        out
    }
}
