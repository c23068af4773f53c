//! Discount windows of simulated SKUs: one fixed window, one every day at
//! the same local hours (a night discount, say), or dated windows each with
//! its own ratio (what the API shows over weeks: one window at a time).

use chrono::{DateTime, Duration, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;

use crate::money::Ratio;
use crate::pricing::Window;

#[derive(Clone, Debug, PartialEq)]
pub enum DiscountSchedule {
    Fixed {
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    },
    /// From `from` to `to` local time each day; `to` at or before `from` ends the next day.
    Daily {
        from: NaiveTime,
        to: NaiveTime,
        timezone: Tz,
    },
    /// In time order, apart; each with its own ratio.
    Dated(Vec<Window>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct SimDiscount {
    pub id: String,
    pub ratio: Ratio,
    pub schedule: DiscountSchedule,
}

impl SimDiscount {
    /// Every window overlapping `[from, to)`, in order.
    pub fn windows(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<Window> {
        let window = |start, end| Window { start, end, ratio: self.ratio };
        match &self.schedule {
            DiscountSchedule::Fixed { start, end } => {
                if *start < to && from < *end {
                    vec![window(*start, *end)]
                } else {
                    vec![]
                }
            }
            DiscountSchedule::Daily { from: open, to: close, timezone } => {
                let first = from.with_timezone(timezone).date_naive() - Duration::days(1);
                let last = to.with_timezone(timezone).date_naive();
                first
                    .iter_days()
                    .take_while(|day| *day <= last)
                    .filter_map(|day| {
                        let start = local(timezone, day.and_time(*open))?;
                        let end_day = if close <= open { day.succ_opt()? } else { day };
                        let end = local(timezone, end_day.and_time(*close))?;
                        (start < to && from < end).then(|| window(start, end))
                    })
                    .collect()
            }
            DiscountSchedule::Dated(windows) => {
                windows.iter().filter(|w| w.start < to && from < w.end).cloned().collect()
            }
        }
    }

    /// The window a SKU listing shows at `now`: the one in force, else the next.
    pub fn shown_at(&self, now: DateTime<Utc>) -> Option<Window> {
        match &self.schedule {
            DiscountSchedule::Fixed { start, end } => Some(Window { start: *start, end: *end, ratio: self.ratio }),
            DiscountSchedule::Daily { .. } => self.windows(now, now + Duration::days(2)).into_iter().next(),
            DiscountSchedule::Dated(windows) => windows.iter().find(|w| now < w.end).cloned(),
        }
    }
}

/// A local time, taking the earlier instant when a clock change repeats it and
/// the first instant after the gap when one skips it.
pub(crate) fn local(timezone: &Tz, at: chrono::NaiveDateTime) -> Option<DateTime<Utc>> {
    timezone
        .from_local_datetime(&at)
        .earliest()
        .or_else(|| timezone.from_local_datetime(&(at + Duration::hours(1))).earliest())
        .map(|t| t.to_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_night_window_repeats_daily_across_midnight() {
        let discount = SimDiscount {
            id: "n".into(),
            ratio: Ratio::from_f64(0.5).unwrap(),
            schedule: DiscountSchedule::Daily {
                from: NaiveTime::from_hms_opt(22, 0, 0).unwrap(),
                to: NaiveTime::from_hms_opt(6, 0, 0).unwrap(),
                timezone: chrono_tz::Asia::Shanghai,
            },
        };
        // 2026-11-27 12:00 Shanghai = 04:00 UTC.
        let noon = Utc.with_ymd_and_hms(2026, 11, 27, 4, 0, 0).unwrap();
        let shown = discount.shown_at(noon).unwrap();
        assert_eq!(shown.start, Utc.with_ymd_and_hms(2026, 11, 27, 14, 0, 0).unwrap());
        assert_eq!(shown.end, Utc.with_ymd_and_hms(2026, 11, 27, 22, 0, 0).unwrap());
        assert_eq!(discount.windows(noon, noon + Duration::days(2)).len(), 2);
    }
}
