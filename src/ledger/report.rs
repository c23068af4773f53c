//! Spend and estimated savings over a span, by policy, instance or day.
//! Spend is what the usage segments cost; a saving is what a completed stop
//! or delete said it saved per hour, for as long as the instance stayed off.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use serde::Serialize;

use super::records::{ActionRecord, Outcome, Segment};
use super::service::day_start;
use super::store::{LedgerError, Store};
use crate::money::Money;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum By {
    Policy,
    Instance,
    Day,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Row {
    pub key: String,
    #[serde(rename = "spend_yuan", serialize_with = "crate::money::yuan")]
    pub spend: Money,
    pub running_hours: f64,
    #[serde(rename = "saved_yuan", serialize_with = "crate::money::yuan")]
    pub saved: Money,
}

/// How long before a span a stop is still counted as saving within it.
pub const SAVING_LOOKBACK: Duration = Duration::days(400);

pub async fn spend<S: Store>(
    store: &S,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    by: By,
    tz: Tz,
) -> Result<Vec<Row>, LedgerError> {
    // A stop long before `from` may still be saving; the run that ended its
    // saving may have ended before `from` too, so both are read that far back.
    let segments = store.segments_overlapping(from - SAVING_LOOKBACK, to).await?;
    let actions = store.actions_between(from - SAVING_LOOKBACK, to).await?;
    Ok(tally(&segments, &actions, from, to, by, tz))
}

/// The arithmetic of [`spend`], on rows already read.
pub fn tally(
    segments: &[Segment],
    actions: &[ActionRecord],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    by: By,
    tz: Tz,
) -> Vec<Row> {
    let mut rows: BTreeMap<String, Row> = BTreeMap::new();
    let mut add = |key: String, spend: Money, millis: i64, saved: Money| {
        let row = rows.entry(key.clone()).or_insert_with(|| Row { key, ..Row::default() });
        row.spend += spend;
        row.running_hours += millis as f64 / 3_600_000.0;
        row.saved += saved;
    };
    let pieces = |start: DateTime<Utc>, end: DateTime<Utc>| -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
        let (start, end) = (start.max(from), end.min(to));
        if end <= start {
            return vec![];
        }
        if by != By::Day {
            return vec![(start, end)];
        }
        // Split at local midnights.
        let mut out = Vec::new();
        let mut at = start;
        while at < end {
            let midnight = super::service::day_start(tz, at + Duration::days(1)).max(at + Duration::seconds(1));
            let next = midnight.min(end);
            out.push((at, next));
            at = next;
        }
        out
    };
    let key = |policy: Option<&str>, instance: &str, at: DateTime<Utc>| match by {
        By::Policy => policy.unwrap_or(crate::config::policy::UNMANAGED).to_owned(),
        By::Instance => instance.to_owned(),
        By::Day => day_start(tz, at).with_timezone(&tz).format("%Y-%m-%d").to_string(),
    };
    for s in segments {
        for (a, b) in pieces(s.started_at, s.ended_at.unwrap_or(to)) {
            add(
                key(s.policy.as_deref(), &s.display_name, a),
                s.cost_within(a, b),
                (b - a).num_milliseconds(),
                Money::ZERO,
            );
        }
    }
    for action in actions.iter().filter(|a| {
        a.outcome == Some(Outcome::Done)
            && !a.dry_run
            && matches!(a.kind.as_str(), "power_off" | "delete")
            && a.saving_per_hour > Money::ZERO
    }) {
        let off_from = action.finished_at.unwrap_or(action.planned_at);
        // Off until the instance's next run began, or the end of the span.
        let off_until = segments
            .iter()
            .filter(|s| s.instance == action.instance && s.started_at > off_from)
            .map(|s| s.started_at)
            .min()
            .unwrap_or(to);
        for (a, b) in pieces(off_from, off_until) {
            let saved = action.saving_per_hour.hourly_for_millis((b - a).num_milliseconds());
            add(key(Some(&action.policy), &action.display_name, a), Money::ZERO, 0, saved);
        }
    }
    rows.into_values().collect()
}

/// Rows as a table, with a total.
pub fn table(rows: &[Row]) -> String {
    let yuan = |m: Money| format!("{:.2}", m.as_yuan_f64());
    let width = rows.iter().map(|r| r.key.chars().count()).max().unwrap_or(0).max(8);
    let mut out = format!("{:<width$}  {:>12}  {:>9}  {:>12}\n", "", "SPEND ¥", "HOURS", "SAVED ¥");
    for r in rows {
        out += &format!("{:<width$}  {:>12}  {:>9.1}  {:>12}\n", r.key, yuan(r.spend), r.running_hours, yuan(r.saved));
    }
    let (spent, saved): (Money, Money) = (rows.iter().map(|r| r.spend).sum(), rows.iter().map(|r| r.saved).sum());
    out + &format!("{:<width$}  {:>12}  {:>9}  {:>12}\n", "total", yuan(spent), "", yuan(saved))
}

/// Rows as CSV, money in yuan.
pub fn csv(rows: &[Row]) -> String {
    let quote = |field: &str| {
        if field.contains([',', '"', '\n']) { format!("\"{}\"", field.replace('"', "\"\"")) } else { field.to_owned() }
    };
    let mut out = String::from("key,spend_yuan,running_hours,saved_yuan\n");
    for r in rows {
        out += &format!(
            "{},{:.2},{:.2},{:.2}\n",
            quote(&r.key),
            r.spend.as_yuan_f64(),
            r.running_hours,
            r.saved.as_yuan_f64()
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(h: i64) -> DateTime<Utc> {
        // Midnight in Shanghai.
        Utc.with_ymd_and_hms(2026, 11, 26, 16, 0, 0).unwrap() + Duration::hours(h)
    }

    fn segment(instance: &str, from: i64, to: Option<i64>, yuan: i64) -> Segment {
        Segment {
            id: 0,
            instance: instance.into(),
            display_name: instance.into(),
            policy: Some("nb".into()),
            sku_id: "66".into(),
            started_at: t(from),
            ended_at: to.map(t),
            price_per_hour: Money::from_yuan(yuan),
        }
    }

    /// A stop at `h` hours that saves 2/h, done then.
    fn stop(h: i64) -> ActionRecord {
        ActionRecord {
            id: 1,
            planned_at: t(h),
            policy: "nb".into(),
            kind: "power_off".into(),
            instance: "a".into(),
            display_name: "a".into(),
            cluster: "c".into(),
            cause: "idle".into(),
            reason: String::new(),
            saving_per_hour: Money::from_yuan(2),
            dry_run: false,
            snapshot: None,
            schedule_edge: None,
            outcome: Some(Outcome::Done),
            error: None,
            finished_at: Some(t(h)),
            epoch: 0,
        }
    }

    #[test]
    fn spend_and_savings_add_up_by_day() {
        let segments = [segment("a", 20, Some(28), 2), segment("a", 30, None, 2)];
        let stop = stop(28);
        let rows = tally(&segments, &[stop], t(0), t(36), By::Day, chrono_tz::Asia::Shanghai);
        let days: Vec<(&str, Money, Money)> = rows.iter().map(|r| (r.key.as_str(), r.spend, r.saved)).collect();
        // Day 1: 20:00-24:00 at 2/h. Day 2: 00:00-04:00 and 06:00-12:00 at 2/h; off 04:00-06:00 saved 2/h.
        assert_eq!(
            days,
            [
                ("2026-11-27", Money::from_yuan(8), Money::ZERO),
                ("2026-11-28", Money::from_yuan(20), Money::from_yuan(4))
            ]
        );
        let total = tally(&segments, &[], t(0), t(36), By::Policy, chrono_tz::Asia::Shanghai);
        assert_eq!((total[0].spend, total[0].running_hours), (Money::from_yuan(28), 14.0));
    }

    /// Stopped at 28h, started by hand at 30h and stopped by hand at 31h:
    /// the stop saved nothing after 30h, though that run ended before the span.
    #[tokio::test]
    async fn a_saving_ends_at_the_next_run_even_one_before_the_span() {
        use crate::ledger::{MemoryStore, Store, records::NewSegment, records::SegmentClose};
        let store = MemoryStore::default();
        let new = |at| NewSegment {
            instance: "a".into(),
            display_name: "a".into(),
            policy: Some("nb".into()),
            sku_id: "66".into(),
            started_at: t(at),
            price_per_hour: Money::from_yuan(2),
        };
        let close = |from, to| SegmentClose {
            instance: "a".into(),
            started_at: t(from),
            ended_at: t(to),
            amount: Money::from_yuan(2 * (to - from)),
        };
        store.write_segments(&[], &[new(20)]).await.unwrap();
        store.write_segments(&[close(20, 28)], &[]).await.unwrap();
        store.write_segments(&[], &[new(30)]).await.unwrap();
        store.write_segments(&[close(30, 31)], &[]).await.unwrap();
        let stop = stop(28);
        let id = store.insert_intent(&stop).await.unwrap();
        store.record_outcome(id, Outcome::Done, None, None, t(28)).await.unwrap();
        let rows = spend(&store, t(32), t(36), By::Policy, chrono_tz::Asia::Shanghai).await.unwrap();
        assert_eq!(rows, []);
        let rows = spend(&store, t(29), t(36), By::Policy, chrono_tz::Asia::Shanghai).await.unwrap();
        assert_eq!(
            rows.iter().map(|r| (r.spend, r.saved)).collect::<Vec<_>>(),
            [(Money::from_yuan(2), Money::from_yuan(2))]
        );
    }
}
