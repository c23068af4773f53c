//! Budgets, per policy and global, daily and monthly, in the budget's zone.
//! A create or start is allowed only when the projected spend stays within
//! every budget that covers it; an exceeded budget stops or alerts.

use chrono::{DateTime, Duration, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;

use super::observed::{Observed, ObservedInstance, spend_of, yuan};
use super::{Cause, Planner};
use crate::cloud::{BillingType, InstanceStatus};
use crate::config::policy::{Budget, Policy, WhenExceeded};
use crate::money::Money;

/// One budget with what has been spent against it.
struct Account<'b> {
    label: String,
    budget: &'b Budget,
    key: &'b str,
}

impl Planner<'_> {
    fn accounts<'b>(&'b self, policy: Option<&'b Policy>) -> Vec<Account<'b>> {
        let own = policy.and_then(|p| {
            p.budget.as_ref().map(|b| Account { label: format!("`{}`", p.name), budget: b, key: &p.name })
        });
        let global = self.config.settings.budget.as_ref().map(|b| Account {
            label: "global".into(),
            budget: b,
            key: Observed::GLOBAL,
        });
        own.into_iter().chain(global).collect()
    }

    /// Spend per hour of these instances now, counting those about to run.
    pub(super) fn rate(&self, members: &[&ObservedInstance]) -> Money {
        members
            .iter()
            .filter(|m| {
                matches!(
                    m.instance.status,
                    InstanceStatus::Running | InstanceStatus::Creating | InstanceStatus::Starting
                )
            })
            .map(|m| self.hourly_cost(&m.instance))
            .sum()
    }

    /// Counts a start or create of this plan against the budgets.
    pub(super) fn commit(&mut self, hourly: Money) {
        self.policy_committed += hourly;
        self.global_committed += hourly;
    }

    /// Whether starting something that costs `extra` per hour keeps every
    /// budget covering `policy`; the error is the note to show. A create
    /// (`create: true`) also needs the ledger readable, budgets or not.
    pub(super) fn room_for(&self, policy: &Policy, extra: Money, create: bool) -> Result<(), String> {
        let unknown = || Err("spend unknown (the ledger could not be read): nothing is created".to_owned());
        if create && self.observed.spend.is_none() {
            return unknown();
        }
        for account in self.accounts(Some(policy)) {
            let Some(spent) = spend_of(&self.observed.spend, account.key) else {
                return Err(format!(
                    "spend against the {} budget unknown (the ledger could not be read)",
                    account.label
                ));
            };
            let rate = if account.key == Observed::GLOBAL {
                self.global_rate + self.global_committed
            } else {
                self.policy_rate + self.policy_committed
            };
            let rest_of_day = hours_left_of_day(account.budget.timezone, self.now);
            let projected = |spent: Money| {
                spent + Money::from_hourly_scaled((rate + extra).hourly_scaled(rest_of_day.num_milliseconds()))
            };
            for (period, limit, spent) in
                [("daily", account.budget.daily, spent.today), ("monthly", account.budget.monthly, spent.this_month)]
            {
                let Some(limit) = limit else { continue };
                if projected(spent) > limit {
                    let used = spent.micros() as f64 * 100.0 / limit.micros() as f64;
                    return Err(format!(
                        "{} {period} budget {used:.0}% used ({} of {}; {} projected by midnight)",
                        account.label,
                        yuan(spent),
                        yuan(limit),
                        yuan(projected(spent))
                    ));
                }
            }
        }
        Ok(())
    }

    pub(super) fn policy_budget(&mut self, policy: &Policy, members: &[&ObservedInstance]) {
        let Some(budget) = &policy.budget else { return };
        let Some(spent) = spend_of(&self.observed.spend, &policy.name).copied() else { return };
        let Some(text) = exceeded(budget, spent, &format!("`{}`", policy.name)) else { return };
        match budget.when_exceeded {
            WhenExceeded::Alert => self.note(policy, None, format!("{text} (when_exceeded: alert)")),
            WhenExceeded::Stop => self.stop_all(policy, members, &text),
        }
    }

    pub(super) fn global_budget(&mut self, members: &[Vec<usize>]) {
        let Some(budget) = &self.config.settings.budget else { return };
        let Some(spent) = spend_of(&self.observed.spend, Observed::GLOBAL).copied() else { return };
        let Some(text) = exceeded(budget, spent, "global") else { return };
        if budget.when_exceeded == WhenExceeded::Alert {
            self.draft.notes.push(super::Note {
                policy: None,
                instance: None,
                text: format!("{text} (when_exceeded: alert)"),
            });
            return;
        }
        let (observed, config) = (self.observed, self.config);
        for (policy, members) in config.policies.iter().zip(members) {
            let members: Vec<&ObservedInstance> = members.iter().map(|i| &observed.instances[*i]).collect();
            self.stop_all(policy, &members, &text);
        }
    }

    /// Powers off every running pay-as-you-go member: the money stops now.
    fn stop_all(&mut self, policy: &Policy, members: &[&ObservedInstance], reason: &str) {
        for member in members {
            let instance = &member.instance;
            if instance.status == InstanceStatus::Running && instance.cost.billing_type == BillingType::PayAsYouGo {
                let kind = self.power_off(policy, instance);
                self.propose(policy, instance, kind, Cause::Budget, reason.to_owned());
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
    let tomorrow = now.with_timezone(&tz).date_naive() + Duration::days(1);
    let midnight = tomorrow.and_time(NaiveTime::MIN);
    tz.from_local_datetime(&midnight)
        .earliest()
        .or_else(|| tz.from_local_datetime(&(midnight + Duration::hours(1))).earliest())
        .map_or(now + Duration::days(1), |t| t.to_utc())
}

fn hours_left_of_day(tz: Tz, now: DateTime<Utc>) -> Duration {
    next_midnight(tz, now) - now
}
