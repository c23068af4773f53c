//! The learned idle timer (`stop_after: adaptive`): a break-even rule over
//! the instance's past idle gaps that began near the same time of day, on a
//! weekday or a weekend like this one. Keeping an idle instance running
//! for T costs its price for as long as the gap lasts, up to T; stopping it
//! costs a cold start for every gap longer than T. The keep-alive is the T
//! between `min` and `max` with the least expected cost over the alike
//! gaps: the instance's own when it has enough of them, else its policy's
//! instances' together, else the fixed `until_learned` timer.

use chrono::{DateTime, Duration, Utc};

use super::candidate::KeptFor;
use super::habits::{Gap, Habits, Local, alike};
use super::observed::ObservedInstance;
use super::{Lesson, Planner};
use crate::cloud::Instance;
use crate::config::policy::{Adaptive, IdleRule, Policy, StopAfter};
use crate::money::Money;

/// Gaps that began within this many minutes of the same time of day are alike.
pub const ALIKE_MINUTES: u16 = 90;
/// Fewer alike gaps than this and nothing is learned from them.
pub const ENOUGH_GAPS: usize = 6;

/// How long an idle instance is kept running, and why.
#[derive(Clone, Debug, PartialEq)]
pub struct KeepAlive {
    pub after: Duration,
    /// `None`: too little is known yet, so the fixed `until_learned`.
    pub learned: Option<Learned>,
}

/// The figures behind a learned keep-alive, per gap like this one.
#[derive(Clone, Debug, PartialEq)]
pub struct Learned {
    pub source: Source,
    /// The alike gaps, and how many of them ended within the keep-alive.
    pub gaps: usize,
    pub within: usize,
    pub since: Local,
    /// The price of one cold start, with scarcity.
    pub cold_start: Money,
    pub scarce: bool,
    /// Expected running while idle, and expected cold starts, at the keep-alive.
    pub idle_cost: Money,
    pub cold_cost: Money,
    /// The same two at `min`, for comparison.
    pub min_idle_cost: Money,
    pub min_cold_cost: Money,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Instance,
    Policy,
}

impl Learned {
    /// The figures in words a user can check.
    pub fn describe(&self, after: Duration, min: Duration) -> String {
        let day = if self.since.weekend { "weekend days" } else { "weekdays" };
        let whose = match self.source {
            Source::Instance => "its",
            Source::Policy => "its policy's",
        };
        let (h, m) = (self.since.minute / 60, self.since.minute % 60);
        let yuan = super::observed::yuan;
        let scarce = if self.scarce { " (GPUs scarce)" } else { "" };
        format!(
            "{} of {whose} {} idle gaps near {h:02}:{m:02} on {day} ended within {}; kept {}: {} idle + {} cold starts expected, against {} + {} stopping at {} (a cold start costs {}{scarce})",
            self.within,
            self.gaps,
            super::humane(after),
            super::humane(after),
            yuan(self.idle_cost),
            yuan(self.cold_cost),
            yuan(self.min_idle_cost),
            yuan(self.min_cold_cost),
            super::humane(min),
            yuan(self.cold_start),
            scarce = scarce,
        )
    }
}

/// The keep-alive of an instance idle since `since` (in the adaptive zone),
/// running at `price` per hour, whose cold start costs `cold_start`.
pub fn keep_alive(
    habits: &Habits,
    instance: &str,
    policy: &str,
    adaptive: &Adaptive,
    since: Local,
    price: Money,
    cold_start: ColdStart,
) -> KeepAlive {
    let Some(learned) = habits.instances.get(instance) else {
        return work_out(habits, instance, policy, adaptive, since, price, cold_start);
    };
    learned.keep_alive.get(
        |(p, s, m, c, a)| p == policy && (*s, *m, *c) == (since, price, cold_start) && a == adaptive,
        || {
            let kept = work_out(habits, instance, policy, adaptive, since, price, cold_start);
            ((policy.to_owned(), since, price, cold_start, adaptive.clone()), kept)
        },
    )
}

/// [`keep_alive`], worked out afresh.
fn work_out(
    habits: &Habits,
    instance: &str,
    policy: &str,
    adaptive: &Adaptive,
    since: Local,
    price: Money,
    cold_start: ColdStart,
) -> KeepAlive {
    let ColdStart { cost: cold_start, scarce } = cold_start;
    let seconds = |gaps: &[Gap]| -> Vec<i64> { alike(gaps, since, ALIKE_MINUTES).map(|g| g.seconds).collect() };
    let own = habits.instances.get(instance).map(|h| seconds(&h.gaps)).unwrap_or_default();
    let (source, mut gaps) = if own.len() >= ENOUGH_GAPS {
        (Source::Instance, own)
    } else {
        // At most MOST_POOLED, evenly spread: a large policy costs no more per instance than a small one.
        let pooled = habits.policies.get(policy).map(|g| seconds(g)).unwrap_or_default();
        let step = pooled.len().div_ceil(MOST_POOLED).max(1);
        (Source::Policy, pooled.into_iter().step_by(step).collect())
    };
    if gaps.len() < ENOUGH_GAPS {
        return KeepAlive { after: adaptive.until_learned, learned: None };
    }
    gaps.sort_unstable();
    let (after, figures) = break_even(&gaps, price, cold_start, adaptive.min, adaptive.max);
    let at_min = cost_at(&gaps, &prefix(&gaps), adaptive.min.num_seconds(), price, cold_start);
    let n = gaps.len() as i128;
    let per_gap = |total: i128| Money::from_micros((total / n) as i64);
    KeepAlive {
        after,
        learned: Some(Learned {
            source,
            gaps: gaps.len(),
            within: figures.within,
            since,
            cold_start,
            scarce,
            idle_cost: per_gap(figures.idle),
            cold_cost: per_gap(figures.cold),
            min_idle_cost: per_gap(at_min.idle),
            min_cold_cost: per_gap(at_min.cold),
        }),
    }
}

impl<'a> Planner<'a> {
    /// How long the rule keeps `member`, idle since `since`, running.
    pub(super) fn keep_alive(
        &mut self,
        policy: &'a Policy,
        idle: &'a IdleRule,
        member: &'a ObservedInstance,
        since: DateTime<Utc>,
    ) -> (Duration, KeptFor) {
        let adaptive = match &idle.stop_after {
            StopAfter::Fixed(after) => return (*after, KeptFor::Fixed),
            StopAfter::Adaptive(adaptive) => adaptive,
        };
        let instance = &member.instance;
        let zone = adaptive.timezone;
        let habits = &self.observed.habits;
        let (cold, price) = (self.cold_start(adaptive, instance), self.hourly_cost(instance));
        // Started and not used since: pre-warmed, it waits until its window ends.
        let unused = member.running_since.filter(|started| since <= *started + Duration::minutes(1));
        if let (Some(started), Some(prewarm), Some(learned)) =
            (unused, &idle.prewarm, habits.instances.get(&instance.name))
        {
            let day = Local::of(zone, started);
            let windows = super::prewarm::windows_of_day(learned, zone, day, prewarm.lead, price, cold.cost);
            let found = windows.windows.iter().find(|w| w.start <= started && started < w.end);
            if let Some(found) = found {
                let keep = (found.end - since).max(Duration::zero());
                let window = Box::new(found.window.clone());
                self.learning(policy, instance, since, keep, || Lesson::Prewarmed(window.clone()));
                return (keep, KeptFor::Unused(window));
            }
        }
        let local = Local::of(zone, since);
        let kept = keep_alive(habits, &instance.name, &policy.name, adaptive, local, price, cold);
        match kept.learned {
            Some(learned) => {
                let (keep, min) = (kept.after, adaptive.min);
                let learned = Box::new(learned);
                self.learning(policy, instance, since, keep, || Lesson::KeepAlive {
                    learned: learned.clone(),
                    keep,
                    min,
                });
                (keep, KeptFor::Learned(learned, min))
            }
            None => {
                let keep = kept.after;
                self.learning(policy, instance, since, keep, || Lesson::UntilLearned(keep));
                (keep, KeptFor::UntilLearned)
            }
        }
    }

    /// What a cold start of `instance` costs now, with the scarcity of its GPUs.
    pub(super) fn cold_start(&self, adaptive: &Adaptive, instance: &Instance) -> ColdStart {
        match self.observed.sku(&instance.cost.sku_id) {
            Some(sku) => scarcity(adaptive.cold_start_cost, sku.free_gpus, sku.hardware.gpu_count),
            None => ColdStart { cost: adaptive.cold_start_cost, scarce: false },
        }
    }

    fn learning(
        &mut self,
        policy: &Policy,
        instance: &Instance,
        since: DateTime<Utc>,
        keep: Duration,
        text: impl FnOnce() -> Lesson,
    ) {
        if self.detail == super::Detail::Full {
            self.draft.learned.push(super::Learning {
                policy: policy.name.clone(),
                instance: instance.display_name.clone(),
                keep_alive_seconds: Some(keep.num_seconds()),
                stops_at: Some(since + keep),
                prewarm_at: None,
                prewarm_until: None,
                text: text(),
            });
        }
    }
}

/// The most of a policy's gaps one keep-alive is worked out from.
const MOST_POOLED: usize = 240;

/// Expected costs summed over the gaps, in micro-yuan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Costs {
    idle: i128,
    cold: i128,
    within: usize,
}

impl Costs {
    fn total(&self) -> i128 {
        self.idle + self.cold
    }
}

/// The keep-alive of least expected cost over `gaps` (seconds, sorted),
/// between `min` and `max`; the shorter of two that cost the same.
fn break_even(gaps: &[i64], price: Money, cold_start: Money, min: Duration, max: Duration) -> (Duration, Costs) {
    let sums = prefix(gaps);
    let (lo, hi) = (min.num_seconds(), max.num_seconds());
    let candidates = std::iter::once(lo).chain(gaps.iter().copied().filter(|g| *g > lo && *g < hi)).chain([hi]);
    let mut best: Option<(i64, Costs)> = None;
    for t in candidates {
        let costs = cost_at(gaps, &sums, t, price, cold_start);
        if best.is_none_or(|(_, b)| costs.total() < b.total()) {
            best = Some((t, costs));
        }
    }
    let (t, costs) = best.expect("min is a candidate");
    (Duration::seconds(t), costs)
}

fn prefix(gaps: &[i64]) -> Vec<i64> {
    std::iter::once(0)
        .chain(gaps.iter().scan(0, |sum, g| {
            *sum += g;
            Some(*sum)
        }))
        .collect()
}

/// The costs of keeping alive for `t` seconds over every gap.
fn cost_at(gaps: &[i64], sums: &[i64], t: i64, price: Money, cold_start: Money) -> Costs {
    let within = gaps.partition_point(|g| *g <= t);
    let running = sums[within] as i128 + (gaps.len() - within) as i128 * t as i128;
    Costs {
        idle: price.micros() as i128 * running / 3600,
        cold: cold_start.micros() as i128 * (gaps.len() - within) as i128,
        within,
    }
}

/// What a cold start costs when GPUs of the instance's model are short in
/// its region: with fewer free than it needs, a start may wait or fail, so
/// it counts three times; with fewer than four times that, one and a half.
pub fn scarcity(cold_start: Money, free: u32, needs: u32) -> ColdStart {
    match scarcity_level(free, needs) {
        2 => ColdStart { cost: cold_start * 3, scarce: true },
        1 => ColdStart { cost: Money::from_micros(cold_start.micros().saturating_mul(3) / 2), scarce: true },
        _ => ColdStart { cost: cold_start, scarce: false },
    }
}

/// What one cold start of an instance costs now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ColdStart {
    pub cost: Money,
    /// GPUs of its model are short in its region.
    pub scarce: bool,
}

/// 2: fewer GPUs free than the SKU needs; 1: fewer than four times that; 0: plenty.
pub fn scarcity_level(free: u32, needs: u32) -> u8 {
    let needs = needs.max(1);
    if free < needs {
        2
    } else if free < needs.saturating_mul(4) {
        1
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(minutes: i64) -> i64 {
        minutes * 60
    }

    #[test]
    fn a_cold_start_dearer_than_the_gap_keeps_it_alive_and_long_gaps_stop_at_min() {
        let (min, max) = (Duration::minutes(5), Duration::hours(4));
        let price = Money::from_yuan(2);
        // Lunch: 50 to 70 minutes; a cold start costs more than an hour's price.
        let lunch = [m(50), m(55), m(60), m(62), m(65), m(70)];
        let (after, costs) = break_even(&lunch, price, Money::from_yuan(3), min, max);
        assert_eq!((after, costs.within), (Duration::minutes(70), 6));
        // Nights: 14 hours; stopping at once is cheaper.
        let nights = [m(800), m(830), m(840), m(850), m(860), m(900)];
        assert_eq!(break_even(&nights, price, Money::from_yuan(3), min, max).0, min);
        // A cheap cold start: not worth an hour.
        assert_eq!(break_even(&lunch, price, Money::from_micros(500_000), min, max).0, min);
        // Never past max: an hour at most keeps half the lunches.
        let hour = Duration::hours(1);
        let (after, costs) = break_even(&lunch, price, Money::from_yuan(10), min, hour);
        assert_eq!((after, costs.within), (hour, 3));
    }

    #[test]
    fn scarce_gpus_make_a_cold_start_dearer() {
        let c = Money::from_yuan(10);
        assert_eq!(scarcity(c, 0, 1), ColdStart { cost: Money::from_yuan(30), scarce: true });
        assert_eq!(scarcity(c, 2, 1), ColdStart { cost: Money::from_yuan(15), scarce: true });
        assert_eq!(scarcity(c, 8, 1), ColdStart { cost: c, scarce: false });
    }
}
