//! What the record of use teaches about each instance: how long its idle
//! gaps last, by the time of day they begin and weekday or weekend, and
//! when its people usually arrive. Learned from the use spans of the last
//! [`LEARN_DAYS`] days that began before `as_of`, the start of an hour, so
//! every plan within an hour learns the same and the daemon, relearning on
//! the hour from the ledger, learns the same again after a restart.

use std::collections::HashMap;

use chrono::{DateTime, Datelike, Duration, NaiveDateTime, Timelike, Utc};
use chrono_tz::Tz;

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
    pub gaps: Vec<Gap>,
    pub arrivals: Vec<Arrival>,
    /// The first local day whose arrivals the record covers (days from the common era).
    pub first_day: i32,
    /// When its last span of use ended, if it is not in use.
    pub last_used: Option<DateTime<Utc>>,
}

/// A time between two spans of use of one instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gap {
    /// Local minute of the day it began.
    pub minute: u16,
    pub weekend: bool,
    pub seconds: i64,
}

/// The start of a span of use after at least an hour unused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arrival {
    pub day: i32,
    pub minute: u16,
    pub weekend: bool,
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
    /// Learns from `spans` (any order) for the instances whose policy has a
    /// zone in `zone` (the adaptive ones).
    pub fn learn<'a>(
        spans: impl IntoIterator<Item = Used<'a>>,
        zone: impl Fn(&str) -> Option<Tz>,
        as_of: DateTime<Utc>,
    ) -> Habits {
        let from = as_of - Duration::days(LEARN_DAYS);
        let mut by_instance: HashMap<&str, (&str, Vec<Used>)> = HashMap::new();
        for span in spans {
            let recent = span.start < as_of && span.end.is_none_or(|end| end > from);
            if recent && zone(span.policy).is_some() {
                by_instance.entry(span.instance).or_insert_with(|| (span.policy, Vec::new())).1.push(span);
            }
        }
        let mut habits = Habits { as_of: Some(as_of), ..Habits::default() };
        for (instance, (policy, mut spans)) in by_instance {
            let Some(zone) = zone(policy) else { continue };
            spans.sort_by_key(|s| s.start);
            // The first day whose arrivals can all be seen: the one after the record begins.
            let mut learned = InstanceHabits {
                first_day: Local::of(zone, spans[0].start.max(from)).day + 1,
                ..InstanceHabits::default()
            };
            for pair in spans.windows(2) {
                // A span seen ending after `as_of` has not ended yet for this hour's plans.
                let Some(end) = pair[0].end.filter(|end| *end <= as_of) else { continue };
                let (left, back) = (Local::of(zone, end), pair[1].start);
                let seconds = (back - end).num_seconds();
                if seconds <= 0 {
                    continue;
                }
                learned.gaps.push(Gap { minute: left.minute, weekend: left.weekend, seconds });
                if seconds >= ARRIVAL_AFTER_MINUTES * 60 {
                    let arrived = Local::of(zone, back);
                    learned.arrivals.push(Arrival {
                        day: arrived.day,
                        minute: arrived.minute,
                        weekend: arrived.weekend,
                    });
                }
            }
            learned.last_used = spans.last().and_then(|s| s.end).filter(|end| *end <= as_of);
            habits.policies.entry(policy.to_owned()).or_default().extend(&learned.gaps);
            habits.instances.insert(instance.to_owned(), learned);
        }
        // Sorted, so a time of day's alike gaps are found by bisection.
        habits.policies.values_mut().for_each(|gaps| gaps.sort_unstable_by_key(|g| (g.weekend, g.minute, g.seconds)));
        habits
    }

    /// The start of the hour `now` is in: what the daemon learns as of.
    pub fn hour_of(now: DateTime<Utc>) -> DateTime<Utc> {
        let secs = now.timestamp().div_euclid(3600) * 3600;
        DateTime::from_timestamp(secs, 0).unwrap_or(now)
    }
}

/// Whether two local minutes of the day are within `window` of each other, across midnight.
pub fn near(a: u16, b: u16, window: u16) -> bool {
    let d = a.abs_diff(b);
    d.min(1440 - d.min(1440)) <= window
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
        let habits = Habits::learn(used, |p| (p == "nb").then_some(zone), at(8, 0, 0));
        let learned = &habits.instances["i-1"];
        let gaps: Vec<(u16, bool, i64)> = learned.gaps.iter().map(|g| (g.minute, g.weekend, g.seconds)).collect();
        assert_eq!(gaps, [(720, false, 3600), (830, false, 600), (1080, false, (4 * 24 + 16) * 3600)]);
        // 2026-11-07 is a Saturday.
        let arrivals: Vec<(u16, bool)> = learned.arrivals.iter().map(|a| (a.minute, a.weekend)).collect();
        assert_eq!(arrivals, [(780, false), (600, true)]);
        assert_eq!(learned.last_used, None, "in use since the 7th");
        assert_eq!(habits.policies["nb"].len(), 3);
        // Not adaptive: nothing learned.
        let used = spans.iter().map(|(start, end)| Used { instance: "i-1", policy: "nb", start: *start, end: *end });
        assert!(Habits::learn(used, |_| None, at(8, 0, 0)).instances.is_empty());
    }

    #[test]
    fn minutes_are_near_across_midnight() {
        assert!(near(1430, 10, 30));
        assert!(!near(1430, 100, 30));
        assert!(near(700, 760, 60));
    }
}
