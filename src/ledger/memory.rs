//! The ledger in memory, for `simulate`: the same [`Store`] contract as
//! PostgreSQL and SQLite (the contract tests run it too), without I/O, so a
//! month of cycles replays in seconds. Nothing outlives the process.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Utc};

use super::records::{
    ActionRecord, InstanceRecord, NewNotice, NewSegment, Notice, Outcome, PriceSample, Segment, SegmentClose,
    Transition, UseSpan,
};
use super::store::{LedgerError, Store};
use crate::plan::{WarningKey, WarningSent};

type Result<T> = std::result::Result<T, LedgerError>;

/// Clones share the same tables, as two pools share one database.
#[derive(Clone, Default)]
pub struct MemoryStore {
    tables: Arc<Mutex<Tables>>,
}

#[derive(Default)]
struct Tables {
    prices: Vec<PriceSample>,
    instances: BTreeMap<String, InstanceRecord>,
    transitions: Vec<Transition>,
    uses: Vec<UseSpan>,
    /// Indexes into `uses` of the open ones, by instance.
    open_uses: BTreeMap<String, usize>,
    /// When each instance last became stopped.
    stopped_at: BTreeMap<String, DateTime<Utc>>,
    segments: Vec<Segment>,
    segment_ids: i64,
    /// Indexes into `segments` of the open ones, by instance.
    open: BTreeMap<String, usize>,
    last_observation: Option<DateTime<Utc>>,
    actions: Vec<ActionRecord>,
    /// Whether `actions` are in `planned_at` order (records caught up after an outage may not be).
    actions_unordered: bool,
    marks: BTreeMap<String, DateTime<Utc>>,
    heartbeats: BTreeMap<String, DateTime<Utc>>,
    snoozes: BTreeMap<String, DateTime<Utc>>,
    accepted: BTreeMap<String, String>,
    notices: Vec<Queued>,
}

/// A notice in the outbox, as a row.
#[derive(Clone)]
struct Queued {
    notice: NewNotice,
    attempts: u32,
    next_attempt_at: DateTime<Utc>,
    delivered_at: Option<DateTime<Utc>>,
}

impl MemoryStore {
    fn tables(&self) -> MutexGuard<'_, Tables> {
        self.tables.lock().expect("memory store lock")
    }
}

impl Store for MemoryStore {
    async fn migrate(&self) -> Result<()> {
        Ok(())
    }

    async fn pending_migrations(&self) -> Result<usize> {
        Ok(0)
    }

    async fn latest_prices(&self) -> Result<Vec<PriceSample>> {
        let t = self.tables();
        let mut latest: BTreeMap<&str, &PriceSample> = BTreeMap::new();
        for p in &t.prices {
            latest.insert(&p.sku_id, p);
        }
        Ok(latest.into_values().cloned().collect())
    }

    async fn insert_prices(&self, samples: &[PriceSample]) -> Result<()> {
        self.tables().prices.extend_from_slice(samples);
        Ok(())
    }

    async fn instances(&self) -> Result<Vec<InstanceRecord>> {
        Ok(self.tables().instances.values().filter(|i| i.gone_at.is_none()).cloned().collect())
    }

    async fn write_instances(&self, changed: &[InstanceRecord], transitions: &[Transition]) -> Result<()> {
        let mut t = self.tables();
        for i in changed {
            match t.instances.get_mut(&i.name) {
                // The first sighting stays, as `ON CONFLICT ... DO UPDATE` leaves it.
                Some(known) => *known = InstanceRecord { first_seen: known.first_seen, ..i.clone() },
                None => {
                    t.instances.insert(i.name.clone(), i.clone());
                }
            }
        }
        t.transitions.extend_from_slice(transitions);
        for tr in transitions.iter().filter(|tr| tr.to == "stopped") {
            let at = t.stopped_at.entry(tr.instance.clone()).or_insert(tr.at);
            *at = (*at).max(tr.at);
        }
        Ok(())
    }

    async fn stopped_since(&self) -> Result<BTreeMap<String, DateTime<Utc>>> {
        let t = self.tables();
        Ok(t.instances
            .values()
            .filter(|i| i.status == "stopped" && i.gone_at.is_none())
            .filter_map(|i| t.stopped_at.get(&i.name).map(|at| (i.name.clone(), *at)))
            .collect())
    }

    async fn open_segments(&self) -> Result<Vec<Segment>> {
        let t = self.tables();
        Ok(t.open.values().map(|&i| t.segments[i].clone()).collect())
    }

    async fn write_segments(&self, close: &[SegmentClose], open: &[NewSegment]) -> Result<()> {
        let mut t = self.tables();
        for c in close {
            let Some(&index) = t.open.get(&c.instance) else { continue };
            if t.segments[index].started_at == c.started_at {
                t.segments[index].ended_at = Some(c.ended_at);
                t.open.remove(&c.instance);
            }
        }
        for s in open {
            t.segment_ids += 1;
            let id = t.segment_ids;
            t.segments.push(s.opened(id));
            let index = t.segments.len() - 1;
            t.open.insert(s.instance.clone(), index);
        }
        Ok(())
    }

    async fn segments_overlapping(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Vec<Segment>> {
        let t = self.tables();
        let mut found: Vec<Segment> = t
            .segments
            .iter()
            .filter(|s| s.started_at < to && s.ended_at.is_none_or(|end| end > from))
            .cloned()
            .collect();
        found.sort_by_key(|s| (s.started_at, s.id));
        Ok(found)
    }

    async fn prices_until(&self, to: DateTime<Utc>) -> Result<Vec<PriceSample>> {
        let mut found: Vec<PriceSample> = self.tables().prices.iter().filter(|p| p.observed_at < to).cloned().collect();
        found.sort_by_key(|p| p.observed_at);
        Ok(found)
    }

    async fn all_instances(&self) -> Result<Vec<InstanceRecord>> {
        let t = self.tables();
        let mut all: Vec<InstanceRecord> = t.instances.values().cloned().collect();
        all.sort_by(|a, b| (a.first_seen, &a.name).cmp(&(b.first_seen, &b.name)));
        Ok(all)
    }

    async fn transitions_until(&self, to: DateTime<Utc>) -> Result<Vec<Transition>> {
        let mut found: Vec<Transition> = self.tables().transitions.iter().filter(|t| t.at < to).cloned().collect();
        found.sort_by_key(|t| t.at);
        Ok(found)
    }

    async fn open_use_spans(&self) -> Result<Vec<UseSpan>> {
        let t = self.tables();
        Ok(t.open_uses.values().map(|&i| t.uses[i].clone()).collect())
    }

    async fn write_use_spans(&self, close: &[UseSpan], open: &[UseSpan]) -> Result<()> {
        let mut t = self.tables();
        for c in close {
            let Some(&index) = t.open_uses.get(&c.instance) else { continue };
            if t.uses[index].started_at == c.started_at {
                t.uses[index].ended_at = c.ended_at;
                t.open_uses.remove(&c.instance);
            }
        }
        for u in open {
            t.uses.push(u.clone());
            if u.ended_at.is_none() {
                let index = t.uses.len() - 1;
                t.open_uses.insert(u.instance.clone(), index);
            }
        }
        Ok(())
    }

    async fn use_spans_overlapping(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Vec<UseSpan>> {
        let t = self.tables();
        let mut found: Vec<UseSpan> =
            t.uses.iter().filter(|u| u.started_at < to && u.ended_at.is_none_or(|end| end > from)).cloned().collect();
        found.sort_by_key(|u| u.started_at);
        Ok(found)
    }

    async fn last_observation(&self) -> Result<Option<DateTime<Utc>>> {
        Ok(self.tables().last_observation)
    }

    async fn set_last_observation(&self, at: DateTime<Utc>) -> Result<()> {
        self.tables().last_observation = Some(at);
        Ok(())
    }

    async fn insert_intent(&self, action: &ActionRecord) -> Result<i64> {
        let mut t = self.tables();
        let id = t.actions.len() as i64 + 1;
        t.actions_unordered |= t.actions.last().is_some_and(|last| last.planned_at > action.planned_at);
        t.actions.push(ActionRecord { id, outcome: None, error: None, finished_at: None, ..action.clone() });
        Ok(id)
    }

    async fn record_outcome(
        &self,
        id: i64,
        outcome: Outcome,
        error: Option<&str>,
        instance: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<()> {
        let mut t = self.tables();
        if let Some(action) = usize::try_from(id - 1).ok().and_then(|i| t.actions.get_mut(i)) {
            action.outcome = Some(outcome);
            action.error = error.map(str::to_owned);
            action.finished_at = Some(at);
            if let Some(name) = instance {
                action.instance = name.to_owned();
            }
        }
        Ok(())
    }

    async fn unfinished_actions(&self) -> Result<Vec<ActionRecord>> {
        Ok(self.tables().actions.iter().filter(|a| a.outcome.is_none()).cloned().collect())
    }

    async fn actions_between(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Vec<ActionRecord>> {
        let t = self.tables();
        let start = if t.actions_unordered { 0 } else { t.actions.partition_point(|a| a.planned_at < from) };
        Ok(t.actions[start..].iter().filter(|a| a.planned_at >= from && a.planned_at < to).cloned().collect())
    }

    async fn schedule_marks(&self) -> Result<BTreeMap<String, DateTime<Utc>>> {
        Ok(self.tables().marks.clone())
    }

    async fn set_schedule_marks(&self, marks: &[(String, DateTime<Utc>)]) -> Result<()> {
        self.tables().marks.extend(marks.iter().cloned());
        Ok(())
    }

    async fn heartbeats(&self) -> Result<BTreeMap<String, DateTime<Utc>>> {
        Ok(self.tables().heartbeats.clone())
    }

    async fn record_heartbeat(&self, instance: &str, at: DateTime<Utc>) -> Result<()> {
        self.tables().heartbeats.insert(instance.to_owned(), at);
        Ok(())
    }

    async fn snoozes(&self) -> Result<BTreeMap<String, DateTime<Utc>>> {
        Ok(self.tables().snoozes.clone())
    }

    async fn set_snooze(&self, instance: &str, until: DateTime<Utc>) -> Result<()> {
        self.tables().snoozes.insert(instance.to_owned(), until);
        Ok(())
    }

    async fn accepted_policies(&self) -> Result<BTreeMap<String, String>> {
        Ok(self.tables().accepted.clone())
    }

    async fn accept_policies(&self, accepted: &[(String, String)], _at: DateTime<Utc>) -> Result<()> {
        self.tables().accepted.extend(accepted.iter().cloned());
        Ok(())
    }

    async fn queue_notices(&self, notices: &[NewNotice]) -> Result<()> {
        let mut t = self.tables();
        for n in notices {
            if !t.notices.iter().any(|q| q.notice.dedup == n.dedup) {
                let queued =
                    Queued { notice: n.clone(), attempts: 0, next_attempt_at: n.queued_at, delivered_at: None };
                t.notices.push(queued);
            }
        }
        Ok(())
    }

    async fn due_notices(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<Notice>> {
        let t = self.tables();
        let mut due: Vec<(usize, &Queued)> = t
            .notices
            .iter()
            .enumerate()
            .filter(|(_, q)| q.delivered_at.is_none() && q.next_attempt_at <= now)
            .collect();
        due.sort_by_key(|(id, q)| (q.next_attempt_at, *id));
        let notice = |(id, q): (usize, &Queued)| Notice {
            id: id as i64,
            channel: q.notice.channel.clone(),
            body: q.notice.body.clone(),
            attempts: q.attempts,
            queued_at: q.notice.queued_at,
        };
        Ok(due.into_iter().take(limit).map(notice).collect())
    }

    async fn notice_delivered(&self, id: i64, at: DateTime<Utc>) -> Result<()> {
        if let Some(q) = self.tables().notices.get_mut(id as usize) {
            q.delivered_at = Some(at);
            q.attempts += 1;
        }
        Ok(())
    }

    async fn notice_failed(&self, id: i64, attempts: u32, retry_at: DateTime<Utc>, _error: &str) -> Result<()> {
        if let Some(q) = self.tables().notices.get_mut(id as usize) {
            (q.attempts, q.next_attempt_at) = (attempts, retry_at);
        }
        Ok(())
    }

    async fn warnings_since(&self, since: DateTime<Utc>) -> Result<BTreeMap<WarningKey, WarningSent>> {
        let t = self.tables();
        let warnings = t.notices.iter().filter(|q| q.notice.event == "warning" && q.notice.queued_at >= since);
        Ok(warnings
            .filter_map(|q| {
                let key = WarningKey {
                    instance: q.notice.instance.clone(),
                    action: q.notice.action.clone(),
                    occasion: q.notice.occasion?,
                };
                Some((key, WarningSent { queued_at: q.notice.queued_at, delivered_at: q.delivered_at }))
            })
            .collect())
    }

    async fn undelivered_notices(&self) -> Result<BTreeMap<String, (u64, DateTime<Utc>)>> {
        let mut waiting: BTreeMap<String, (u64, DateTime<Utc>)> = BTreeMap::new();
        for q in self.tables().notices.iter().filter(|q| q.delivered_at.is_none()) {
            let entry = waiting.entry(q.notice.channel.clone()).or_insert((0, q.notice.queued_at));
            entry.0 += 1;
            entry.1 = entry.1.min(q.notice.queued_at);
        }
        Ok(waiting)
    }

    async fn prune(&self, prices_before: DateTime<Utc>, segments_before: DateTime<Utc>) -> Result<u64> {
        let mut t = self.tables();
        let latest: BTreeMap<String, usize> = t.prices.iter().enumerate().map(|(i, p)| (p.sku_id.clone(), i)).collect();
        let keep: Vec<bool> = t
            .prices
            .iter()
            .enumerate()
            .map(|(i, p)| p.observed_at >= prices_before || latest.get(&p.sku_id) == Some(&i))
            .collect();
        let before = t.prices.len() + t.segments.len();
        let mut flags = keep.into_iter();
        t.prices.retain(|_| flags.next().unwrap_or(true));
        t.segments.retain(|s| s.ended_at.is_none_or(|end| end >= segments_before));
        let uses = t.uses.len();
        t.uses.retain(|u| u.ended_at.is_none_or(|end| end >= segments_before));
        let uses_pruned = uses - t.uses.len();
        let open_uses: BTreeMap<String, usize> = t
            .uses
            .iter()
            .enumerate()
            .filter(|(_, u)| u.ended_at.is_none())
            .map(|(i, u)| (u.instance.clone(), i))
            .collect();
        t.open_uses = open_uses;
        let open: BTreeMap<String, usize> = t
            .segments
            .iter()
            .enumerate()
            .filter(|(_, s)| s.ended_at.is_none())
            .map(|(i, s)| (s.instance.clone(), i))
            .collect();
        t.open = open;
        Ok((before - t.prices.len() - t.segments.len() + uses_pruned) as u64)
    }
}
