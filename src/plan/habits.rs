//! What the record of use teaches about each instance: how long its idle
//! gaps last, by the time of day they begin and weekday or weekend, and
//! when its people usually arrive. Learned from the use spans of the last
//! [`LEARN_DAYS`] days that began before `as_of`, the start of a day, so
//! every plan of a day learns the same and the daemon, relearning each
//! midnight from the ledger, learns the same again after a restart. A day
//! is what the habits are about (pre-warming reads only the days before
//! today), and learning once a day keeps the work of it out of the cycles.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Datelike, Duration, NaiveDateTime, Timelike, Utc};
use chrono_tz::Tz;

use super::keep_alive::{ColdStart, KeepAlive};
use super::prewarm::Day;
use crate::config::policy::Adaptive;
use crate::money::Money;

/// How far back the record of use is read.
pub const LEARN_DAYS: i64 = 28;
/// A span that begins after at least this long unused is an arrival.
const ARRIVAL_AFTER_MINUTES: i64 = 60;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Habits {
    /// Learned from use that began before this moment; `None`: nothing learned.
    pub as_of: Option<DateTime<Utc>>,
    /// By instance name.
    pub instances: HashMap<String, InstanceHabits>,
    /// Every instance's gaps together, by policy name: the fallback; sorted
    /// by weekend, then minute.
    pub policies: HashMap<String, Vec<Gap>>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct InstanceHabits {
    /// Sorted by weekend, then minute.
    pub gaps: Vec<Gap>,
    /// Starts of use after at least an hour unused.
    pub arrivals: Vec<Local>,
    /// The first local day whose arrivals the record covers (days from the common era).
    pub first_day: i32,
    /// What plans worked out from these habits, for the inputs they had.
    pub windows: Derived<(Tz, i32, Duration, Money, Money), Arc<Day>>,
    /// Keyed by policy name too: the gaps of a policy are its fallback.
    pub keep_alive: Derived<(String, Local, Money, ColdStart, Adaptive), KeepAlive>,
}

/// One value worked out from the habits, kept with the inputs it was worked
/// out for: the planner asks the same again on every plan of the day, and
/// the same inputs give the same answer. A copy of the habits starts empty.
pub struct Derived<K, V>(Mutex<Option<(K, V)>>);

impl<K, V: Clone> Derived<K, V> {
    /// The value kept for a key `is` accepts, else `make`'s (its key and value), which is kept.
    pub fn get(&self, is: impl FnOnce(&K) -> bool, make: impl FnOnce() -> (K, V)) -> V {
        let mut slot = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match &*slot {
            Some((key, value)) if is(key) => value.clone(),
            _ => slot.insert(make()).1.clone(),
        }
    }
}

impl<K, V> Default for Derived<K, V> {
    fn default() -> Self {
        Derived(Mutex::new(None))
    }
}

impl<K, V> Clone for Derived<K, V> {
    fn clone(&self) -> Self {
        Derived::default()
    }
}

/// Derived values are not what the habits are: they never tell two apart.
impl<K, V> PartialEq for Derived<K, V> {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl<K, V> std::fmt::Debug for Derived<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Derived")
    }
}

/// A time between two spans of use of one instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gap {
    /// Local minute of the day it began.
    pub minute: u16,
    pub weekend: bool,
    pub seconds: i64,
}

/// One span of use as the ledger keeps it.
#[derive(Clone, Copy, Debug)]
pub struct Used<'a> {
    pub instance: &'a str,
    pub policy: &'a str,
    pub start: DateTime<Utc>,
    /// `None` while in use.
    pub end: Option<DateTime<Utc>>,
}

/// A moment in a zone's wall time, as the habits count it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Local {
    pub day: i32,
    pub minute: u16,
    pub weekend: bool,
}

impl Local {
    pub fn of(zone: Tz, at: DateTime<Utc>) -> Local {
        Local::naive(at.with_timezone(&zone).naive_local())
    }

    fn naive(t: NaiveDateTime) -> Local {
        let weekend = t.weekday().number_from_monday() >= 6;
        Local { day: t.num_days_from_ce(), minute: (t.hour() * 60 + t.minute()) as u16, weekend }
    }

    /// The moment of `minute` on local day `day`; the earlier of two in a
    /// repeated hour, the first after a skipped one.
    pub fn at(zone: Tz, day: i32, minute: u16) -> Option<DateTime<Utc>> {
        use chrono::TimeZone;
        let date = chrono::NaiveDate::from_num_days_from_ce_opt(day)?;
        let mut naive = date.and_hms_opt(u32::from(minute) / 60, u32::from(minute) % 60, 0)?;
        for _ in 0..3 {
            if let Some(t) = zone.from_local_datetime(&naive).earliest() {
                return Some(t.to_utc());
            }
            naive += Duration::minutes(30);
        }
        None
    }
}

impl Habits {
    /// Learns from `spans` (any order) for the instances of the policies in
    /// `zones` (the adaptive ones, with the zone each reads times of day in).
    pub fn learn<'a>(
        spans: impl IntoIterator<Item = Used<'a>>,
        zones: &HashMap<&str, Tz>,
        as_of: DateTime<Utc>,
    ) -> Habits {
        let from = as_of - Duration::days(LEARN_DAYS);
        let mut by_instance: HashMap<&str, Vec<Used>> = HashMap::new();
        for span in spans {
            let recent = span.start < as_of && span.end.is_none_or(|end| end > from);
            if recent && zones.contains_key(span.policy) {
                by_instance.entry(span.instance).or_default().push(span);
            }
        }
        let mut habits = Habits { as_of: Some(as_of), ..Habits::default() };
        for (instance, mut spans) in by_instance {
            // In any order the same: an instance that changed policy is learned for its latest.
            spans.sort_by_key(|s| (s.start, s.end.is_none(), s.end, s.policy));
            let policy = spans[spans.len() - 1].policy;
            let zone = zones[policy];
            // The first day whose arrivals can all be seen: the one after the record begins.
            let mut learned = InstanceHabits {
                first_day: Local::of(zone, spans[0].start.max(from)).day + 1,
                ..InstanceHabits::default()
            };
            // A gap is a time no span covers; a span seen ending after `as_of` has not ended yet.
            let mut covered = spans[0].end.filter(|end| *end <= as_of);
            for span in &spans[1..] {
                let seconds = covered.map_or(0, |end| (span.start - end).num_seconds());
                if let (Some(end), true) = (covered, seconds > 0) {
                    let left = Local::of(zone, end);
                    learned.gaps.push(Gap { minute: left.minute, weekend: left.weekend, seconds });
                    if seconds >= ARRIVAL_AFTER_MINUTES * 60 {
                        learned.arrivals.push(Local::of(zone, span.start));
                    }
                }
                covered = match (covered, span.end.filter(|end| *end <= as_of)) {
                    (Some(until), Some(end)) => Some(until.max(end)),
                    _ => None,
                };
            }
            habits.policies.entry(policy.to_owned()).or_default().extend(&learned.gaps);
            learned.gaps.sort_unstable_by_key(Gap::key);
            habits.instances.insert(instance.to_owned(), learned);
        }
        habits.policies.values_mut().for_each(|gaps| gaps.sort_unstable_by_key(Gap::key));
        habits
    }

    /// The start of the day `now` is in, in `zone`: what the daemon learns as of.
    pub fn day_of(now: DateTime<Utc>, zone: Tz) -> DateTime<Utc> {
        Local::at(zone, Local::of(zone, now).day, 0).filter(|midnight| *midnight <= now).unwrap_or(now)
    }
}

impl Gap {
    /// Gaps are kept in this order, so a time of day's alike ones are found by bisection.
    fn key(&self) -> (bool, u16, i64) {
        (self.weekend, self.minute, self.seconds)
    }
}

/// The gaps among `gaps` (sorted by [`Gap::key`]) that began on a day like
/// `since`'s within `window` minutes of its time of day, across midnight.
pub fn alike(gaps: &[Gap], since: Local, window: u16) -> impl Iterator<Item = &Gap> {
    let range = |from: u16, to: u16| {
        let lo = gaps.partition_point(|g| (g.weekend, g.minute) < (since.weekend, from));
        let hi = gaps.partition_point(|g| (g.weekend, g.minute) <= (since.weekend, to));
        &gaps[lo..hi.max(lo)]
    };
    let m = since.minute;
    let before_midnight = (m < window).then(|| range(1440 - (window - m), 1439));
    let after_midnight = (m + window > 1439).then(|| range(0, m + window - 1440));
    let around = range(m.saturating_sub(window), (m + window).min(1439));
    [around].into_iter().chain(before_midnight).chain(after_midnight).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn gaps_are_learned_between_spans_in_the_zones_time_and_arrivals_after_an_hour_away() {
        let zone = chrono_tz::Asia::Shanghai;
        let at = |d: u32, h: u32, m: u32| zone.with_ymd_and_hms(2026, 11, d, h, m, 0).unwrap().to_utc();
        let spans = [
            (at(2, 9, 0), Some(at(2, 12, 0))),
            (at(2, 13, 0), Some(at(2, 13, 50))),
            (at(2, 14, 0), Some(at(2, 18, 0))),
            (at(7, 10, 0), None),
        ];
        let used = spans.iter().map(|(start, end)| Used { instance: "i-1", policy: "nb", start: *start, end: *end });
        let habits = Habits::learn(used, &[("nb", zone)].into(), at(8, 0, 0));
        let learned = &habits.instances["i-1"];
        let gaps: Vec<(u16, bool, i64)> = learned.gaps.iter().map(|g| (g.minute, g.weekend, g.seconds)).collect();
        assert_eq!(gaps, [(720, false, 3600), (830, false, 600), (1080, false, (4 * 24 + 16) * 3600)]);
        // 2026-11-07 is a Saturday.
        let arrivals: Vec<(u16, bool)> = learned.arrivals.iter().map(|a| (a.minute, a.weekend)).collect();
        assert_eq!(arrivals, [(780, false), (600, true)]);
        assert_eq!(habits.policies["nb"].len(), 3);
        // Not adaptive: nothing learned.
        let used = spans.iter().map(|(start, end)| Used { instance: "i-1", policy: "nb", start: *start, end: *end });
        assert!(Habits::learn(used, &HashMap::new(), at(8, 0, 0)).instances.is_empty());
    }

    #[test]
    fn overlapping_spans_leave_gaps_only_where_none_covers() {
        let zone = chrono_tz::Asia::Shanghai;
        let at = |h: u32, m: u32| zone.with_ymd_and_hms(2026, 11, 2, h, m, 0).unwrap().to_utc();
        let spans = [(at(9, 0), at(12, 0)), (at(10, 0), at(10, 30)), (at(13, 0), at(14, 0)), (at(13, 0), at(13, 20))];
        let learned = |order: &[usize]| {
            let used =
                order.iter().map(|&k| Used { instance: "i-1", policy: "nb", start: spans[k].0, end: Some(spans[k].1) });
            Habits::learn(used, &[("nb", zone)].into(), at(20, 0)).instances["i-1"].clone()
        };
        let gaps: Vec<(u16, i64)> = learned(&[0, 1, 2, 3]).gaps.iter().map(|g| (g.minute, g.seconds)).collect();
        assert_eq!(gaps, [(720, 3600)]);
        assert_eq!(learned(&[3, 1, 2, 0]), learned(&[0, 1, 2, 3]));
    }

    #[test]
    fn a_derived_value_is_worked_out_again_only_for_other_inputs() {
        let derived: Derived<u32, u32> = Derived::default();
        let worked = std::cell::Cell::new(0);
        let get = |key: u32| {
            derived.get(
                |k| *k == key,
                || {
                    worked.set(worked.get() + 1);
                    (key, key * 10)
                },
            )
        };
        assert_eq!((get(1), get(1), worked.get()), (10, 10, 1));
        assert_eq!((get(2), worked.get()), (20, 2));
        // A copy of the habits has nothing worked out.
        assert_eq!(derived.clone().get(|_| true, || (3, 30)), 30);
    }

    #[test]
    fn alike_gaps_are_near_in_time_of_day_across_midnight_on_a_day_like_it() {
        let gap = |minute, weekend| Gap { minute, weekend, seconds: 60 };
        let mut gaps = vec![gap(10, false), gap(100, false), gap(700, false), gap(760, false), gap(1430, true)];
        gaps.sort_unstable_by_key(Gap::key);
        let minutes = |minute, weekend, window| -> Vec<u16> {
            alike(&gaps, Local { day: 0, minute, weekend }, window).map(|g| g.minute).collect()
        };
        assert_eq!(minutes(1430, false, 30), [10]);
        assert_eq!(minutes(700, false, 60), [700, 760]);
        assert_eq!(minutes(50, false, 60), [10, 100]);
        assert_eq!(minutes(20, true, 30), [1430]);
    }
}
