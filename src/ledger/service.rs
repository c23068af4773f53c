//! The ledger as the daemon uses it. What it has recorded lives in memory
//! too; each observation becomes writes that queue in order and flush to the
//! store. When the store is away the queue waits, and nothing is lost.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;

use super::accounting::{self, Sighting};
use super::records::{InstanceRecord, NewSegment, PriceSample, Segment, SegmentClose, Transition};
use super::store::{LedgerError, Store};
use crate::cloud::Sku;
use crate::config::policy::Config;
use crate::plan::{Observed, SpendSoFar};

enum Write {
    Prices(Vec<PriceSample>),
    Instances(Vec<InstanceRecord>, Vec<Transition>),
    Segments(Vec<SegmentClose>, Vec<NewSegment>),
    Observed(DateTime<Utc>),
}

/// What one observation wrote, for the write-cost figures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Recorded {
    pub rows_written: usize,
    /// Writes still waiting for the store.
    pub pending: usize,
}

pub struct Ledger<S> {
    store: S,
    /// `None` until the recorded state has been read from the store.
    state: Option<State>,
    /// Observations made before the state could be read, to replay.
    waiting: Vec<Waiting>,
    pending: VecDeque<Write>,
}

/// An observation kept until the ledger's state can be read.
struct Waiting {
    seen: Vec<Sighting>,
    skus: Vec<Sku>,
    listed: BTreeSet<String>,
    at: DateTime<Utc>,
}

#[derive(Default)]
struct State {
    known: BTreeMap<String, InstanceRecord>,
    open: BTreeMap<String, Segment>,
    prices: BTreeMap<String, PriceSample>,
    last: Option<DateTime<Utc>>,
}

impl<S: Store> Ledger<S> {
    pub fn new(store: S) -> Self {
        Ledger { store, state: None, waiting: Vec::new(), pending: VecDeque::new() }
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    async fn load(&mut self) -> Result<(), LedgerError> {
        if self.state.is_some() {
            return Ok(());
        }
        let known = self.store.instances().await?.into_iter().map(|i| (i.name.clone(), i)).collect();
        let open = self.store.open_segments().await?.into_iter().map(|s| (s.instance.clone(), s)).collect();
        let prices = self.store.latest_prices().await?.into_iter().map(|p| (p.sku_id.clone(), p)).collect();
        let last = self.store.last_observation().await?;
        self.state = Some(State { known, open, prices, last });
        for w in std::mem::take(&mut self.waiting) {
            self.account(&w.seen, &w.skus, &w.listed, w.at);
        }
        Ok(())
    }

    /// Records one whole observation of the cloud at `now`: prices that
    /// changed, instances that changed, and the usage segments. The writes
    /// are kept until the store takes them; an error only means "later".
    pub async fn record(
        &mut self,
        observed: &Observed,
        config: &Config,
        listed: &BTreeSet<String>,
        now: DateTime<Utc>,
    ) -> Result<Recorded, LedgerError> {
        let seen: Vec<Sighting> = observed
            .instances
            .iter()
            .map(|o| Sighting::of(&o.instance, config.owner(&o.instance).map(|p| p.name.as_str()), o.running_since))
            .collect();
        if let Err(e) = self.load().await {
            self.waiting.push(Waiting { seen, skus: observed.skus.clone(), listed: listed.clone(), at: now });
            return Err(e);
        }
        self.account(&seen, &observed.skus, listed, now);
        let rows_written = self.flush().await?;
        Ok(Recorded { rows_written, pending: self.pending.len() })
    }

    fn account(&mut self, seen: &[Sighting], skus: &[Sku], listed: &BTreeSet<String>, now: DateTime<Utc>) {
        let state = self.state.as_mut().expect("loaded");
        if state.last.is_some_and(|last| now <= last) {
            return;
        }
        let samples: Vec<PriceSample> = skus
            .iter()
            .map(|sku| PriceSample::of(sku, now))
            .filter(|s| state.prices.get(&s.sku_id).is_none_or(|known| s.differs(known)))
            .collect();
        for s in &samples {
            state.prices.insert(s.sku_id.clone(), s.clone());
        }
        if !samples.is_empty() {
            self.pending.push_back(Write::Prices(samples));
        }
        let changes = accounting::account(&state.known, &state.open, seen, skus, listed, state.last, now);
        for record in &changes.instances {
            if record.gone_at.is_some() {
                state.known.remove(&record.name);
            } else {
                state.known.insert(record.name.clone(), record.clone());
            }
        }
        for close in &changes.close {
            state.open.remove(&close.instance);
        }
        for s in &changes.open {
            state.open.insert(
                s.instance.clone(),
                Segment {
                    id: 0,
                    instance: s.instance.clone(),
                    display_name: s.display_name.clone(),
                    policy: s.policy.clone(),
                    sku_id: s.sku_id.clone(),
                    started_at: s.started_at,
                    ended_at: None,
                    price_per_hour: s.price_per_hour,
                },
            );
        }
        if !changes.instances.is_empty() || !changes.transitions.is_empty() {
            self.pending.push_back(Write::Instances(changes.instances, changes.transitions));
        }
        if !changes.close.is_empty() || !changes.open.is_empty() {
            self.pending.push_back(Write::Segments(changes.close, changes.open));
        }
        self.pending.push_back(Write::Observed(now));
        state.last = Some(now);
    }

    /// Writes what is queued, in order; stops at the first failure and keeps the rest.
    pub async fn flush(&mut self) -> Result<usize, LedgerError> {
        let mut rows = 0;
        while let Some(write) = self.pending.front() {
            let written = match write {
                Write::Prices(samples) => self.store.insert_prices(samples).await.map(|()| samples.len()),
                Write::Instances(records, transitions) => {
                    self.store.write_instances(records, transitions).await.map(|()| records.len() + transitions.len())
                }
                Write::Segments(close, open) => {
                    self.store.write_segments(close, open).await.map(|()| close.len() + open.len())
                }
                Write::Observed(at) => self.store.set_last_observation(*at).await.map(|()| 1),
            };
            rows += written?;
            self.pending.pop_front();
        }
        Ok(rows)
    }

    /// Spend so far today and this month, per policy with a budget and
    /// globally, each in its budget's zone. An error means "unknown".
    pub async fn spend_so_far(
        &mut self,
        config: &Config,
        now: DateTime<Utc>,
    ) -> Result<BTreeMap<String, SpendSoFar>, LedgerError> {
        self.flush().await?;
        let mut budgets: Vec<(String, Option<&str>, Tz)> = config
            .policies
            .iter()
            .filter_map(|p| p.budget.as_ref().map(|b| (p.name.clone(), Some(p.name.as_str()), b.timezone)))
            .collect();
        if let Some(b) = &config.settings.budget {
            budgets.push((Observed::GLOBAL.to_owned(), None, b.timezone));
        }
        let Some(earliest) = budgets.iter().map(|(_, _, tz)| month_start(*tz, now)).min() else {
            return Ok(BTreeMap::new());
        };
        let segments = self.store.segments_overlapping(earliest, now).await?;
        Ok(budgets
            .into_iter()
            .map(|(key, policy, tz)| {
                let mine = || segments.iter().filter(|s| policy.is_none() || s.policy.as_deref() == policy);
                let spend = SpendSoFar {
                    today: mine().map(|s| s.cost_within(day_start(tz, now), now)).sum(),
                    this_month: mine().map(|s| s.cost_within(month_start(tz, now), now)).sum(),
                };
                (key, spend)
            })
            .collect())
    }

    /// Removes price samples and finished segments older than the retention.
    pub async fn prune(&self, now: DateTime<Utc>, prices: Duration, segments: Duration) -> Result<u64, LedgerError> {
        self.store.prune(now - prices, now - segments).await
    }
}

/// Local midnight of `now`'s day in `tz`, in UTC.
pub fn day_start(tz: Tz, now: DateTime<Utc>) -> DateTime<Utc> {
    local_midnight(tz, now.with_timezone(&tz).date_naive())
}

pub fn month_start(tz: Tz, now: DateTime<Utc>) -> DateTime<Utc> {
    let local = now.with_timezone(&tz).date_naive();
    local_midnight(tz, NaiveDate::from_ymd_opt(local.year(), local.month(), 1).expect("first of the month"))
}

fn local_midnight(tz: Tz, day: NaiveDate) -> DateTime<Utc> {
    let midnight = day.and_hms_opt(0, 0, 0).expect("midnight");
    tz.from_local_datetime(&midnight)
        .earliest()
        .or_else(|| tz.from_local_datetime(&(midnight + Duration::hours(1))).earliest())
        .map_or_else(|| Utc.from_utc_datetime(&midnight), |t| t.to_utc())
}
