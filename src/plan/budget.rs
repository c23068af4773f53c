//! Budgets, per policy and global, daily and monthly, in the budget's zone.
//! A create or start is allowed only when the projected spend stays within
//! every budget that covers it; an exceeded budget stops or alerts.

use chrono::{DateTime, Datelike, Duration, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;

use super::candidate::Reason;
use super::observed::{ObservedInstance, spend_of, yuan};
use super::{Cause, Planner};
use crate::cloud::{BillingType, InstanceStatus};
use crate::config::policy::{Budget, GLOBAL, HardStop, Policy, WhenExceeded};
use crate::money::Money;

/// One budget with what has been spent against it.
struct Account<'b> {
    budget: &'b Budget,
    /// The policy's name, or [`GLOBAL`].
    key: &'b str,
}

/// A start or create is judged by what it costs over at least this long:
/// started a minute before midnight, it spends most of its first hour out
/// of tomorrow's budget, not out of today's last minute.
pub const COMMITS_FOR: Duration = Duration::hours(1);

/// Why a start or create does not fit the budgets; written out only for a note.
pub(super) enum Refusal<'b> {
    SpendUnknown,
    BudgetUnknown {
        key: &'b str,
    },
    Over {
        key: &'b str,
        period: &'static str,
        spent: Money,
        limit: Money,
        projected: Money,
    },
    /// What runs now, and this, over its first hour would pass the next
    /// day's (or month's) budget in the part of that hour that falls there.
    Next {
        key: &'b str,
        period: &'static str,
        limit: Money,
        projected: Money,
    },
}

impl std::fmt::Display for Refusal<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let label = |key: &str| if key == GLOBAL { GLOBAL.to_owned() } else { format!("`{key}`") };
        match self {
            Refusal::SpendUnknown => write!(f, "spend unknown (the ledger could not be read): nothing is created"),
            Refusal::BudgetUnknown { key } => {
                write!(f, "spend against the {} budget unknown (the ledger could not be read)", label(key))
            }
            Refusal::Over { key, period, spent, limit, projected } => {
                let used = spent.micros() as f64 * 100.0 / limit.micros() as f64;
                write!(
                    f,
                    "{} {period} budget {used:.0}% used ({} of {}; {} projected by midnight)",
                    label(key),
                    yuan(*spent),
                    yuan(*limit),
                    yuan(*projected)
                )
            }
            Refusal::Next { key, period, limit, projected } => {
                let next = if *period == "daily" { "tomorrow's" } else { "next month's" };
                write!(
                    f,
                    "{} {period} budget: {} of {next} {} projected in the first hour it runs",
                    label(key),
                    yuan(*projected),
                    yuan(*limit)
                )
            }
        }
    }
}

impl<'a> Planner<'a> {
    /// The policy's budget and the global one, those that are set.
    fn accounts<'b>(&self, policy: &'b Policy) -> [Option<Account<'b>>; 2]
    where
        'a: 'b,
    {
        let own = policy.budget.as_ref().map(|b| Account { budget: b, key: &policy.name });
        let global = self.config.settings.budget.as_ref().map(|b| Account { budget: b, key: GLOBAL });
        [own, global]
    }

    /// Spend per hour now, counting the instances about to run: of every
    /// instance, and of each policy's (by the index of the policy owning each).
    pub(super) fn rates(&mut self, owners: &[Option<usize>]) -> (Money, Vec<Money>) {
        let mut per_policy = vec![Money::ZERO; self.config.policies.len()];
        let mut all = Money::ZERO;
        let mut costs = self.kept.as_mut().map(|k| std::mem::take(&mut k.costs));
        for (i, (o, owner)) in self.observed.instances.iter().zip(owners).enumerate() {
            let spending = matches!(
                o.instance.status,
                InstanceStatus::Running | InstanceStatus::Creating | InstanceStatus::Starting
            );
            if spending {
                let cost = match costs.as_mut() {
                    Some(costs) => *costs[i].get_or_insert_with(|| self.hourly_cost(&o.instance)),
                    None => self.hourly_cost(&o.instance),
                };
                all += cost;
                if let Some(p) = owner {
                    per_policy[*p] += cost;
                }
            }
        }
        if let (Some(kept), Some(costs)) = (self.kept.as_mut(), costs) {
            kept.costs = costs;
        }
        // A create not listed yet spends as it would listed.
        let delay = self.config.settings.listing_delay;
        for p in self.observed.pending_creates.iter().filter(|p| p.holds(self.now, delay)) {
            all += p.hourly;
            let pools = |policy: &Policy| {
                policy
                    .pool
                    .as_ref()
                    .is_some_and(|pool| pool.slot_of(&p.display_name).is_some() && pool.clusters.contains(&p.cluster))
            };
            if let Some(owner) = self.config.policies.iter().position(pools) {
                per_policy[owner] += p.hourly;
            }
        }
        (all, per_policy)
    }

    /// Counts a start or create of this plan against the budgets.
    pub(super) fn commit(&mut self, hourly: Money) {
        self.policy_committed += hourly;
        self.global_committed += hourly;
    }

    /// Whether starting something that costs `extra` per hour keeps every
    /// budget covering `policy`; the error says why not. A create
    /// (`create: true`) also needs the ledger readable, budgets or not.
    pub(super) fn room_for<'p>(&self, policy: &'p Policy, extra: Money, create: bool) -> Result<(), Refusal<'p>>
    where
        'a: 'p,
    {
        self.budget_asked.set(true);
        if create && self.observed.spend.is_none() {
            return Err(Refusal::SpendUnknown);
        }
        for account in self.accounts(policy).into_iter().flatten() {
            let Some(spent) = spend_of(&self.observed.spend, account.key) else {
                return Err(Refusal::BudgetUnknown { key: account.key });
            };
            let rate = if account.key == GLOBAL {
                self.global_rate + self.global_committed
            } else {
                self.policy_rate + self.policy_committed
            };
            // Until midnight, or for the hour the start commits to if that is longer:
            // the part of it past the period's end counts against the next period.
            let tz = account.budget.timezone;
            let rest_of_day = self.rest_of_day(tz);
            let window = rest_of_day.max(COMMITS_FOR);
            let run = |d: Duration| Money::from_hourly_scaled((rate + extra).hourly_scaled(d.num_milliseconds()));
            for (period, limit, spent) in
                [("daily", account.budget.daily, spent.today), ("monthly", account.budget.monthly, spent.this_month)]
            {
                let Some(limit) = limit else { continue };
                // A month ends no sooner than the day: only a window past midnight can pass its end.
                let left = match period {
                    "daily" => rest_of_day,
                    _ if window > rest_of_day => next_month(tz, self.now) - self.now,
                    _ => window,
                };
                let projected = spent + run(window.min(left));
                if projected > limit {
                    return Err(Refusal::Over { key: account.key, period, spent, limit, projected });
                }
                let projected = run(window - window.min(left));
                if projected > limit {
                    return Err(Refusal::Next { key: account.key, period, limit, projected });
                }
            }
        }
        Ok(())
    }

    /// The time left until midnight in `tz`, worked out once per plan.
    fn rest_of_day(&self, tz: Tz) -> Duration {
        let mut known = self.rest_of_day.borrow_mut();
        match known.iter().find(|(zone, _)| *zone == tz) {
            Some((_, left)) => *left,
            None => {
                let left = next_midnight(tz, self.now) - self.now;
                known.push((tz, left));
                left
            }
        }
    }

    pub(super) fn policy_budget(&mut self, policy: &'a Policy, members: &[usize]) {
        let Some(budget) = &policy.budget else { return };
        let Some(spent) = spend_of(&self.observed.spend, &policy.name).copied() else { return };
        let label = format!("`{}`", policy.name);
        match budget.when_exceeded {
            WhenExceeded::Alert => {
                let Some(text) = exceeded(budget, spent, &label) else { return };
                self.note(policy, None, || format!("{text} (when_exceeded: alert)"))
            }
            WhenExceeded::Stop => {
                let Some(text) = self.reached(budget, spent, self.policy_rate, &label) else { return };
                let members: Vec<&ObservedInstance> = members.iter().map(|i| &self.observed.instances[*i]).collect();
                self.stop_all(policy, &members, &text);
            }
        }
    }

    pub(super) fn global_budget(&mut self, members: &[Vec<usize>]) {
        let Some(budget) = &self.config.settings.budget else { return };
        let Some(spent) = spend_of(&self.observed.spend, GLOBAL).copied() else { return };
        if budget.when_exceeded == WhenExceeded::Alert {
            let Some(text) = exceeded(budget, spent, GLOBAL) else { return };
            if self.detail == super::Detail::Full {
                self.draft.notes.push(super::Note {
                    policy: None,
                    instance: None,
                    text: format!("{text} (when_exceeded: alert)"),
                });
            }
            return;
        }
        let Some(text) = self.reached(budget, spent, self.global_rate, GLOBAL) else { return };
        let (observed, config) = (self.observed, self.config);
        for (policy, members) in config.policies.iter().zip(members) {
            let members: Vec<&ObservedInstance> = members.iter().map(|i| &observed.instances[*i]).collect();
            self.stop_all(policy, &members, &text);
        }
    }

    /// Whether a `stop` budget must stop its instances now: it is spent, or
    /// what runs would spend the rest of it before the next cycle looks
    /// (`settings.interval`). When not, wakes when that moment comes, so
    /// the budget is never passed by the time between two cycles.
    fn reached(&mut self, budget: &Budget, spent: super::SpendSoFar, rate: Money, label: &str) -> Option<String> {
        if let Some(text) = exceeded(budget, spent, label) {
            return Some(text);
        }
        let tz = budget.timezone;
        let lead = self.config.settings.interval;
        let ends = [
            ("daily", budget.daily, spent.today, next_midnight(tz, self.now)),
            ("monthly", budget.monthly, spent.this_month, next_month(tz, self.now)),
        ];
        for (period, limit, spent, end) in ends {
            let Some(limit) = limit else { continue };
            if rate <= Money::ZERO {
                continue;
            }
            // Spend after the period's end counts against the next one.
            let by_next_look = spent + rate.hourly_for_millis(lead.min(end - self.now).num_milliseconds());
            if by_next_look >= limit {
                return Some(format!(
                    "{label} {period} budget would be passed before the next cycle: {} spent of {} at {}/h",
                    yuan(spent),
                    yuan(limit),
                    yuan(rate)
                ));
            }
            // The moment the rest of it is one cycle's spend away.
            let left_ms = (limit - spent).micros() as i128 * 3_600_000 / rate.micros() as i128;
            let due =
                self.now + Duration::milliseconds(left_ms.min(i64::MAX as i128) as i64) - lead - Duration::seconds(1);
            if due < end {
                self.wake(due);
            }
        }
        None
    }

    /// Powers off every running pay-as-you-go member: the money stops now.
    fn stop_all(&mut self, policy: &'a Policy, members: &[&'a ObservedInstance], reason: &str) {
        for member in members {
            let instance = &member.instance;
            if instance.status == InstanceStatus::Running && instance.cost.billing_type == BillingType::PayAsYouGo {
                let reason = Reason::Text(reason.to_owned());
                self.due_stop(policy, member, HardStop::Budget, Cause::Budget, reason, None);
            }
        }
    }
}

/// `label daily budget exceeded: ¥X spent of ¥Y`, when it is.
fn exceeded(budget: &Budget, spent: super::SpendSoFar, label: &str) -> Option<String> {
    [("daily", budget.daily, spent.today), ("monthly", budget.monthly, spent.this_month)]
        .into_iter()
        .find_map(|(period, limit, spent)| limit.filter(|l| spent >= *l).map(|l| (period, l, spent)))
        .map(|(period, limit, spent)| {
            format!("{label} {period} budget exceeded: {} spent of {}", yuan(spent), yuan(limit))
        })
}

/// The next local midnight in `tz` after `now`.
pub fn next_midnight(tz: Tz, now: DateTime<Utc>) -> DateTime<Utc> {
    midnight(tz, now.with_timezone(&tz).date_naive() + Duration::days(1), now)
}

/// The start of the next month in `tz` after `now`.
pub fn next_month(tz: Tz, now: DateTime<Utc>) -> DateTime<Utc> {
    let today = now.with_timezone(&tz).date_naive();
    let first = today.with_day(1).and_then(|d| d.checked_add_months(chrono::Months::new(1)));
    first.map_or(now + Duration::days(31), |first| midnight(tz, first, now))
}

/// Midnight starting `date` in `tz` (or the first hour that exists, where a
/// clock change skips it).
fn midnight(tz: Tz, date: chrono::NaiveDate, now: DateTime<Utc>) -> DateTime<Utc> {
    let midnight = date.and_time(NaiveTime::MIN);
    tz.from_local_datetime(&midnight)
        .earliest()
        .or_else(|| tz.from_local_datetime(&(midnight + Duration::hours(1))).earliest())
        .map_or(now + Duration::days(1), |t| t.to_utc())
}
