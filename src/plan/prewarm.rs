//! Pre-warming (`idle.prewarm`): from the days like today (weekdays, or
//! weekend days) since the record began, the times its people arrived after
//! at least an hour away. A window [start, end] of the day pays when the
//! cold starts it would have saved on those days are worth more than the
//! running it would have cost: from `start` until the arrival, or until
//! `end` on days nobody came by then. Starting is `lead` ahead of an
//! arrival; a pre-warmed instance nobody uses stops again at the window's end.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;

use super::candidate::Reason;
use super::habits::{InstanceHabits, Local};
use super::observed::ObservedInstance;
use super::{ActionKind, Cause, Planner};
use crate::cloud::Instance;
use crate::config::policy::{IdleRule, Policy, StopAfter};
use crate::money::Money;

/// Fewer days like today known than this, and nothing is pre-warmed.
pub const ENOUGH_DAYS: usize = 4;
/// At most this many windows a day.
const MOST_WINDOWS: usize = 3;

/// A stretch of a day in which a stopped instance is started ahead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Window {
    /// Local minutes of the day.
    pub start: u16,
    pub end: u16,
    /// Days like today known, and those on which someone arrived within.
    pub days: usize,
    pub arrived: usize,
    /// Summed over those days: cold starts saved, and running paid.
    pub saved: Money,
    pub cost: Money,
}

impl Window {
    pub fn describe(&self) -> String {
        let hm = |m: u16| format!("{:02}:{:02}", m / 60, m % 60);
        let yuan = super::observed::yuan;
        format!(
            "someone arrived between {} and {} on {} of the last {} days like today: {} of cold starts saved against {} of running",
            hm(self.start),
            hm(self.end),
            self.arrived,
            self.days,
            yuan(self.saved),
            yuan(self.cost)
        )
    }
}

impl<'a> Planner<'a> {
    /// Starts `member`, stopped, in a pre-warm window: answers whether the
    /// rule had its say (started it, or noted why not).
    pub(super) fn prewarm(&mut self, policy: &'a Policy, idle: &'a IdleRule, member: &'a ObservedInstance) -> bool {
        let (Some(prewarm), StopAfter::Adaptive(adaptive)) = (&idle.prewarm, &idle.stop_after) else { return false };
        let instance = &member.instance;
        let Some(learned) = self.observed.habits.instances.get(&instance.name) else { return false };
        let (zone, now) = (adaptive.timezone, self.now);
        let today = Local::of(zone, now);
        let cold = self.cold_start(adaptive, instance);
        let price = self.hourly_cost(instance);
        let day = windows_of_day(learned, zone, today, prewarm.lead, price, cold.cost);
        for Dated { window, start, end } in day.windows.iter() {
            let (start, end) = (*start, *end);
            if now < start {
                self.wake(start);
                self.next_prewarm(policy, instance, start, end, window);
                return false;
            }
            // Stopped within the window: its people came and went already.
            if now >= end || member.stopped_since.is_some_and(|stopped| stopped >= start) {
                continue;
            }
            let sku = self.observed.sku(&instance.cost.sku_id);
            if let Some(sku) = sku.filter(|s| self.free_gpus(s) < s.hardware.gpu_count) {
                let text = format!("not pre-warmed: no free GPUs on SKU {}", sku.id);
                self.note(policy, Some(instance), || text);
                return true;
            }
            let reason = Reason::Prewarm { window: Box::new(window.clone()), until: end, tz: zone };
            if let Some(cost) = self.start_allowed(policy, instance, &reason, "pre-warmed") {
                self.propose(policy, instance, ActionKind::PowerOn, Cause::Prewarm, reason);
                self.commit(cost);
                if let Some(sku) = sku {
                    self.reserve(sku);
                }
            }
            return true;
        }
        if let Some(tomorrow) = day.next {
            self.wake(tomorrow);
        }
        false
    }

    fn next_prewarm(
        &mut self,
        policy: &Policy,
        instance: &Instance,
        at: DateTime<Utc>,
        until: DateTime<Utc>,
        window: &Window,
    ) {
        if self.detail == super::Detail::Full {
            self.draft.learned.push(super::Learning {
                policy: policy.name.clone(),
                instance: instance.display_name.clone(),
                keep_alive_seconds: None,
                stops_at: None,
                prewarm_at: Some(at),
                prewarm_until: Some(until),
                text: super::Lesson::NextPrewarm(Box::new(window.clone())),
            });
        }
    }
}

/// A day's windows that pay, at their moments, and when the next day begins.
#[derive(Debug)]
pub struct Day {
    pub windows: Vec<Dated>,
    pub next: Option<DateTime<Utc>>,
}

#[derive(Debug)]
pub struct Dated {
    pub window: Window,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

/// The windows of the local day `today`, worked out once for the day and prices.
pub fn windows_of_day(
    habits: &InstanceHabits,
    zone: Tz,
    today: Local,
    lead: Duration,
    price: Money,
    cold_start: Money,
) -> Arc<Day> {
    let key = (zone, today.day, lead, price, cold_start);
    habits.windows.get(
        |k| *k == key,
        || {
            let windows = windows(habits, today, lead, price, cold_start).into_iter().filter_map(|window| {
                let (start, end) = (Local::at(zone, today.day, window.start)?, Local::at(zone, today.day, window.end)?);
                Some(Dated { window, start, end })
            });
            (key, Arc::new(Day { windows: windows.collect(), next: Local::at(zone, today.day + 1, 0) }))
        },
    )
}

/// The windows of a day like `today` that pay, earliest first.
pub fn windows(habits: &InstanceHabits, today: Local, lead: Duration, price: Money, cold_start: Money) -> Vec<Window> {
    let days = (habits.first_day..today.day).filter(|d| weekend(*d) == today.weekend).count();
    if days < ENOUGH_DAYS {
        return Vec::new();
    }
    let mut arrivals: Vec<Local> = habits
        .arrivals
        .iter()
        .filter(|a| a.weekend == today.weekend && a.day >= habits.first_day && a.day < today.day)
        .copied()
        .collect();
    arrivals.sort_by_key(|a| (a.day, a.minute));
    let lead = lead.num_minutes().clamp(0, 1439) as u16;
    let mut found: Vec<Window> = Vec::new();
    while found.len() < MOST_WINDOWS {
        arrivals.retain(|a| !found.iter().any(|w| (w.start..=w.end).contains(&a.minute)));
        let Some(best) = best_window(&arrivals, days, lead, &found, price, cold_start) else { break };
        found.push(best);
    }
    found.sort_by_key(|w| w.start);
    found
}

/// The window of most worth over `arrivals` (sorted by day, then minute)
/// that overlaps none `taken`, if any is worth anything.
fn best_window(
    arrivals: &[Local],
    days: usize,
    lead: u16,
    taken: &[Window],
    price: Money,
    cold_start: Money,
) -> Option<Window> {
    let mut best: Option<(i128, Window)> = None;
    let mut starts: Vec<u16> = arrivals.iter().map(|a| a.minute.saturating_sub(lead)).collect();
    starts.sort_unstable();
    starts.dedup();
    for s in starts {
        // Each day's first arrival at or after `s`.
        let mut firsts: Vec<u16> = Vec::new();
        let mut last_day = None;
        for a in arrivals.iter().filter(|a| a.minute >= s) {
            if last_day != Some(a.day) {
                firsts.push(a.minute);
                last_day = Some(a.day);
            }
        }
        firsts.sort_unstable();
        // Running until each arrival by `e`, and until `e` on the other days;
        // an arrival within `lead` of the start still waits for the boot.
        let (mut waited, mut served): (i128, usize) = (0, 0);
        for (k, e) in firsts.iter().enumerate() {
            waited += i128::from(e - s);
            served += usize::from(*e >= s + lead);
            let running_minutes = waited + (days - (k + 1)) as i128 * i128::from(e - s);
            let saved = cold_start.micros() as i128 * served as i128;
            let cost = price.micros() as i128 * running_minutes / 60;
            let worth = saved - cost;
            let overlaps = taken.iter().any(|w| s <= w.end && w.start <= *e);
            if served >= 2 && worth > 0 && !overlaps && best.as_ref().is_none_or(|(w, _)| worth > *w) {
                let window = Window {
                    start: s,
                    end: *e,
                    days,
                    arrived: served,
                    saved: Money::from_micros(saved as i64),
                    cost: Money::from_micros(cost as i64),
                };
                best = Some((worth, window));
            }
        }
    }
    best.map(|(_, w)| w)
}

/// Whether a day (from the common era; day 1 was a Monday) is a Saturday or Sunday.
pub fn weekend(day: i32) -> bool {
    (day - 1).rem_euclid(7) >= 5
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Datelike, NaiveDate};

    #[test]
    fn weekend_days_by_number() {
        let sat = NaiveDate::from_ymd_opt(2026, 11, 7).unwrap();
        assert!(weekend(sat.num_days_from_ce()));
        assert!(weekend(sat.num_days_from_ce() + 1));
        assert!(!weekend(sat.num_days_from_ce() + 2));
    }

    #[test]
    fn a_regular_arrival_is_prewarmed_and_a_rare_one_is_not() {
        let monday = NaiveDate::from_ymd_opt(2026, 11, 2).unwrap().num_days_from_ce();
        let weekdays: Vec<i32> = (0..21).map(|d| monday + d).filter(|d| !weekend(*d)).collect();
        // Every weekday between 09:00 and 09:20.
        let arrivals = weekdays
            .iter()
            .enumerate()
            .map(|(i, d)| Local { day: *d, minute: 540 + (i as u16 % 5) * 5, weekend: false })
            .collect();
        let habits = InstanceHabits { arrivals, first_day: monday, ..InstanceHabits::default() };
        let today = Local { day: monday + 21, minute: 0, weekend: false };
        let (price, cold) = (Money::from_yuan(2), Money::from_yuan(10));
        let found = windows(&habits, today, Duration::minutes(10), price, cold);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!((found[0].start, found[0].end, found[0].arrived, found[0].days), (530, 560, 15, 15));
        // Once a week only: not worth the running on the other days.
        let rare = InstanceHabits {
            arrivals: weekdays.iter().step_by(5).map(|d| Local { day: *d, minute: 600, weekend: false }).collect(),
            first_day: monday,
            ..InstanceHabits::default()
        };
        let cheap = Money::from_yuan(1);
        assert!(windows(&rare, today, Duration::minutes(10), Money::from_yuan(12), cheap).is_empty());
    }
}
