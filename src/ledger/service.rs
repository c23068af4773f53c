//! The ledger as the daemon uses it. What it has recorded lives in memory
//! too; each observation becomes writes that queue in order and flush to the
//! store. When the store is away the queue waits, and nothing is lost.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;

use super::accounting::{self, Sighting};
use super::journal::Ended;
use super::records::{
    ActionRecord, InstanceRecord, NewSegment, Outcome, PriceSample, Segment, SegmentClose, Transition, UseSpan,
};
use super::store::{LedgerError, Store};
use crate::cloud::Sku;
use crate::config::policy::{Config, GLOBAL};
use crate::money::Money;
use crate::plan::{Changed, Observed, SnapshotState, SpendSoFar};

pub(super) enum Write {
    Prices(Vec<PriceSample>),
    Instances(Vec<InstanceRecord>, Vec<Transition>),
    Segments(Vec<SegmentClose>, Vec<NewSegment>),
    Uses(Vec<UseSpan>, Vec<UseSpan>),
    Observed(DateTime<Utc>),
    /// How the action of this intent row ended.
    Outcome(i64, Ended),
    /// An action whose intent could not be written, with its outcome.
    Action(Box<ActionRecord>),
    Marks(Vec<(String, DateTime<Utc>)>),
    Notices(Vec<super::records::NewNotice>),
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
    /// Closed segments of the budgets' months, read once, then kept up to
    /// date by this ledger's own closes: a cycle never re-reads a month.
    closed: Option<Closed>,
    /// The latest snapshot result per instance (see `facts`).
    pub(super) snapshots: Option<BTreeMap<String, SnapshotState>>,
    /// Instances whose latest snapshot result came in since the facts last asked.
    pub(super) fresh_snapshots: BTreeSet<String>,
    /// Closed spans of use of the last weeks, by instance and start: read
    /// once, then kept up to date by this ledger's own closes (see `habits`).
    pub(super) used: Option<BTreeMap<(String, DateTime<Utc>), UseSpan>>,
    pub(super) habits: std::sync::Arc<crate::plan::habits::Habits>,
    days: Days,
    /// Observations made before the state could be read, to replay.
    waiting: Vec<Waiting>,
    pub(super) pending: VecDeque<Write>,
    /// The warnings this ledger queued lately, and those the store last
    /// told of (see `outbox`).
    pub(super) queued: BTreeMap<crate::plan::WarningKey, crate::plan::WarningSent>,
    pub(super) stored: BTreeMap<crate::plan::WarningKey, crate::plan::WarningSent>,
}

/// A whole observation kept until the ledger's state can be read.
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
    /// When each instance stopped now last became stopped.
    stopped: BTreeMap<String, DateTime<Utc>>,
    /// What the open segments add up to, per budget and period.
    open_sums: OpenSums,
    /// Open use spans, by instance.
    uses: BTreeMap<String, UseSpan>,
}

/// Sums over the open segments of one budget (a policy's, or all of them
/// under [`GLOBAL`]) from the start of one period, kept as
/// segments open and close, so their cost up to any moment is one product:
/// Σ price × (now − start) = now × Σ price − Σ price × start, each start
/// taken no earlier than the period's.
#[derive(Default)]
struct OpenSums(Vec<OpenSum>);

struct OpenSum {
    key: String,
    from: DateTime<Utc>,
    price: i128,
    weighted: i128,
}

impl OpenSum {
    fn covers(&self, segment: &Segment) -> bool {
        self.key == GLOBAL || segment.policy.as_deref() == Some(self.key.as_str())
    }

    fn add(&mut self, segment: &Segment, sign: i128) {
        let price = segment.price_per_hour.micros() as i128 * sign;
        self.price += price;
        self.weighted += price * segment.started_at.max(self.from).timestamp_millis() as i128;
    }
}

impl OpenSums {
    fn opened(&mut self, segment: &Segment) {
        self.0.iter_mut().filter(|s| s.covers(segment)).for_each(|s| s.add(segment, 1));
    }

    fn closed(&mut self, segment: &Segment) {
        self.0.iter_mut().filter(|s| s.covers(segment)).for_each(|s| s.add(segment, -1));
    }

    /// The cost from `from` to `now` of the open segments of budget `key`.
    fn cost(&mut self, key: &str, from: DateTime<Utc>, now: DateTime<Utc>, open: &BTreeMap<String, Segment>) -> Money {
        let index = match self.0.iter().position(|s| s.key == key && s.from == from) {
            Some(index) => index,
            None => {
                let mut sum = OpenSum { key: key.to_owned(), from, price: 0, weighted: 0 };
                for segment in open.values() {
                    if sum.covers(segment) {
                        sum.add(segment, 1);
                    }
                }
                self.0.push(sum);
                self.0.len() - 1
            }
        };
        let sum = &self.0[index];
        Money::from_hourly_scaled((sum.price * now.timestamp_millis() as i128 - sum.weighted).max(0))
    }

    /// Forgets the sums of periods no longer asked for.
    fn keep(&mut self, wanted: &[(String, DateTime<Utc>)]) {
        self.0.retain(|s| wanted.iter().any(|(key, from)| *key == s.key && *from == s.from));
    }
}

/// Closed segments since `since`, and per budget key the sums over them for
/// the day and month they were summed for.
struct Closed {
    since: DateTime<Utc>,
    segments: Vec<Segment>,
    sums: BTreeMap<String, ClosedSums>,
}

struct ClosedSums {
    day_start: DateTime<Utc>,
    month_start: DateTime<Utc>,
    today: Money,
    this_month: Money,
}

impl<S: Store> Ledger<S> {
    pub fn new(store: S) -> Self {
        Ledger {
            store,
            state: None,
            closed: None,
            snapshots: None,
            fresh_snapshots: BTreeSet::new(),
            used: None,
            habits: Default::default(),
            days: Days::default(),
            waiting: Vec::new(),
            pending: VecDeque::new(),
            queued: BTreeMap::new(),
            stored: BTreeMap::new(),
        }
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    /// Forgets what it read and what waits to be written, as a restart
    /// would: a replica taking over reads the ledger anew, and one deposed
    /// writes nothing more of its reign.
    pub fn forget(&mut self) {
        self.pending.clear();
        self.state = None;
        self.closed = None;
        self.snapshots = None;
        self.fresh_snapshots.clear();
        self.used = None;
        self.habits = Default::default();
        self.days = Days::default();
        self.waiting.clear();
        self.queued.clear();
        self.stored.clear();
    }

    async fn load(&mut self) -> Result<(), LedgerError> {
        if self.state.is_some() {
            return Ok(());
        }
        let known = self.store.instances().await?.into_iter().map(|i| (i.name.clone(), i)).collect();
        let open = self.store.open_segments().await?.into_iter().map(|s| (s.instance.clone(), s)).collect();
        let prices = self.store.latest_prices().await?.into_iter().map(|p| (p.sku_id.clone(), p)).collect();
        let last = self.store.last_observation().await?;
        let stopped = self.store.stopped_since().await?;
        let uses = self.store.open_use_spans().await?.into_iter().map(|u| (u.instance.clone(), u)).collect();
        self.state = Some(State { known, open, prices, last, stopped, open_sums: OpenSums::default(), uses });
        for w in std::mem::take(&mut self.waiting) {
            self.account(&w.seen, &w.skus, Some(&w.listed), w.at);
        }
        Ok(())
    }

    /// Records one observation of the cloud at `now`: prices that changed,
    /// instances that changed, and the usage segments. `changed` are the
    /// indexes of the instances that may have changed since the last
    /// observation (`None`: any may have); all are accounted anyway when a
    /// price moved. The writes are kept until the store takes them; an error
    /// only means "later".
    pub async fn record(
        &mut self,
        observed: &Observed,
        changed: Changed<'_>,
        config: &Config,
        listed: &BTreeSet<String>,
        now: DateTime<Utc>,
    ) -> Result<Recorded, LedgerError> {
        let sighting = |o: &crate::plan::ObservedInstance| {
            Sighting::of(&o.instance, config.owner(&o.instance).map(|p| p.name.as_str()), o.running_since)
        };
        if let Err(e) = self.load().await {
            let seen = observed.instances.iter().map(sighting).collect();
            self.waiting.push(Waiting { seen, skus: observed.skus.clone(), listed: listed.clone(), at: now });
            return Err(e);
        }
        // A price moving changes what every running instance costs.
        let changed = if self.prices_move(&observed.skus, now) { Changed::All } else { changed };
        match changed {
            Changed::These(changed) => {
                let seen: Vec<Sighting> = changed.iter().map(|i| sighting(&observed.instances[*i])).collect();
                self.account(&seen, &observed.skus, None, now);
            }
            Changed::All => {
                let seen: Vec<Sighting> = observed.instances.iter().map(sighting).collect();
                self.account(&seen, &observed.skus, Some(listed), now);
            }
        }
        let rows_written = self.flush().await?;
        Ok(Recorded { rows_written, pending: self.pending.len() })
    }

    /// Records what these looks tell of use (call before [`Ledger::record`]
    /// for the same observation). Nothing is recorded while the ledger's
    /// state cannot be read: spans then open at the next look that can.
    pub async fn record_use(&mut self, looks: &[super::uses::Look<'_>], whole: bool, now: DateTime<Utc>) {
        if self.load().await.is_err() {
            return;
        }
        let Some(state) = self.state.as_mut() else { return };
        if state.last.is_some_and(|last| now <= last) {
            return;
        }
        let (close, open) = super::uses::changes(&state.uses, looks, whole, state.last, now);
        for c in &close {
            state.uses.remove(&c.instance);
            if let Some(used) = self.used.as_mut() {
                used.insert((c.instance.clone(), c.started_at), c.clone());
            }
        }
        for o in &open {
            state.uses.insert(o.instance.clone(), o.clone());
        }
        if !close.is_empty() || !open.is_empty() {
            self.pending.push_back(Write::Uses(close, open));
        }
    }

    /// The spans of use open now.
    pub(super) fn open_uses(&self) -> Vec<UseSpan> {
        self.state.as_ref().map(|s| s.uses.values().cloned().collect()).unwrap_or_default()
    }

    /// Whether a price may have changed since the last observation: a new
    /// price sample, or a discount window's edge passed. Every running
    /// instance's segment must then be looked at.
    fn prices_move(&self, skus: &[Sku], now: DateTime<Utc>) -> bool {
        let Some(state) = &self.state else { return true };
        let Some(last) = state.last else { return true };
        skus.iter().any(|sku| {
            let edge =
                crate::pricing::window(sku).is_some_and(|w| [w.start, w.end].iter().any(|t| *t > last && *t <= now));
            edge || state.prices.get(&sku.id).is_none_or(|known| known.price_outdated(sku, now))
        })
    }

    fn account(&mut self, seen: &[Sighting], skus: &[Sku], listed: Option<&BTreeSet<String>>, now: DateTime<Utc>) {
        let state = self.state.as_mut().expect("loaded");
        if state.last.is_some_and(|last| now <= last) {
            return;
        }
        let samples: Vec<PriceSample> = skus
            .iter()
            .filter(|sku| state.prices.get(&sku.id).is_none_or(|known| known.outdated(sku, now)))
            .map(|sku| PriceSample::of(sku, now))
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
                state.stopped.remove(&record.name);
            } else {
                state.known.insert(record.name.clone(), record.clone());
            }
        }
        for t in &changes.transitions {
            if t.to == "stopped" {
                state.stopped.insert(t.instance.clone(), t.at);
            } else {
                state.stopped.remove(&t.instance);
            }
        }
        for close in &changes.close {
            if let Some(open) = state.open.remove(&close.instance) {
                state.open_sums.closed(&open);
                if let Some(closed) = self.closed.as_mut() {
                    closed.add(Segment { ended_at: Some(close.ended_at), ..open });
                }
            }
        }
        for s in &changes.open {
            let segment = s.opened(0);
            state.open_sums.opened(&segment);
            state.open.insert(s.instance.clone(), segment);
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
                Write::Uses(close, open) => {
                    self.store.write_use_spans(close, open).await.map(|()| close.len() + open.len())
                }
                Write::Observed(at) => self.store.set_last_observation(*at).await.map(|()| 1),
                Write::Outcome(id, ended) => self.write_outcome(*id, ended).await.map(|()| 1),
                Write::Action(action) => {
                    let id = self.store.insert_intent(action).await?;
                    let ended = Ended {
                        outcome: action.outcome.unwrap_or(Outcome::Unknown),
                        error: action.error.clone(),
                        instance: None,
                        at: action.finished_at.unwrap_or(action.planned_at),
                    };
                    let written = self.write_outcome(id, &ended).await;
                    if written.is_err() {
                        // The row is in: only its outcome waits, or it would be written twice.
                        self.pending[0] = Write::Outcome(id, ended);
                    }
                    written.map(|()| 1)
                }
                Write::Marks(marks) => self.store.set_schedule_marks(marks).await.map(|()| marks.len()),
                Write::Notices(notices) => self.store.queue_notices(notices).await.map(|()| notices.len()),
            };
            rows += written?;
            self.pending.pop_front();
        }
        Ok(rows)
    }

    async fn write_outcome(&self, id: i64, ended: &Ended) -> Result<(), LedgerError> {
        let (error, instance) = (ended.error.as_deref(), ended.instance.as_deref());
        self.store.record_outcome(id, ended.outcome, error, instance, ended.at).await
    }

    /// When each instance stopped now last became stopped (for `delete_after_stopped`).
    pub async fn stopped_since(&mut self) -> Result<BTreeMap<String, DateTime<Utc>>, LedgerError> {
        self.load().await?;
        Ok(self.state.as_ref().expect("loaded").stopped.clone())
    }

    /// A snapshot power_off of this daemon's came to an end: its result is
    /// the instance's latest, whether or not the store has it yet.
    pub fn snapshot_settled(&mut self, instance: &str, state: SnapshotState) {
        if let Some(latest) = self.snapshots.as_mut()
            && latest.get(instance) != Some(&state)
        {
            latest.insert(instance.to_owned(), state);
            self.fresh_snapshots.insert(instance.to_owned());
        }
    }

    /// When this instance, stopped now, became stopped; `None` too before
    /// the ledger's state could be read.
    pub fn stopped_at(&self, name: &str) -> Option<DateTime<Utc>> {
        self.state.as_ref().and_then(|s| s.stopped.get(name).copied())
    }

    /// Spend so far today and this month, per policy with a budget and
    /// globally, each in its budget's zone. An error means "unknown".
    /// Closed segments are summed once per day; open ones are kept summed.
    pub async fn spend_so_far(
        &mut self,
        config: &Config,
        now: DateTime<Utc>,
    ) -> Result<BTreeMap<String, SpendSoFar>, LedgerError> {
        self.flush().await?;
        self.load().await?;
        // Per budget: its key, its policy (none: all of them), and where its day and month began.
        let mut budgets = Vec::new();
        for (key, policy, tz) in config
            .policies
            .iter()
            .filter_map(|p| p.budget.as_ref().map(|b| (p.name.as_str(), Some(p.name.as_str()), b.timezone)))
            .chain(config.settings.budget.as_ref().map(|b| (GLOBAL, None, b.timezone)))
        {
            let period = self.days.period(tz, now);
            budgets.push((key.to_owned(), policy, period.day, period.month));
        }
        let Some(earliest) = budgets.iter().map(|(_, _, _, month)| *month).min() else {
            return Ok(BTreeMap::new());
        };
        if self.closed.as_ref().is_none_or(|c| c.since > earliest) {
            let segments = self.store.segments_overlapping(earliest, now).await?;
            let segments = segments.into_iter().filter(|s| s.ended_at.is_some()).collect();
            self.closed = Some(Closed { since: earliest, segments, sums: BTreeMap::new() });
        }
        let closed = self.closed.as_mut().expect("just read");
        // Segments that ended before every budget's month are done with.
        if closed.since < earliest {
            closed.segments.retain(|s| s.ended_at.is_some_and(|end| end > earliest));
            closed.since = earliest;
        }
        let state = self.state.as_mut().expect("loaded");
        let mut periods = Vec::new();
        let spend = budgets
            .into_iter()
            .map(|(key, policy, day, month)| {
                let sums = closed.sums(&key, policy, day, month);
                let spend = SpendSoFar {
                    today: sums.0 + state.open_sums.cost(&key, day, now, &state.open),
                    this_month: sums.1 + state.open_sums.cost(&key, month, now, &state.open),
                };
                periods.extend([(key.clone(), day), (key.clone(), month)]);
                (key, spend)
            })
            .collect();
        state.open_sums.keep(&periods);
        Ok(spend)
    }

    /// Removes price samples and finished segments older than the retention.
    pub async fn prune(&self, now: DateTime<Utc>, prices: Duration, segments: Duration) -> Result<u64, LedgerError> {
        self.store.prune(now - prices, now - segments).await
    }
}

/// Where the current day and month began in each budget's zone, worked out
/// once a day rather than once a cycle.
#[derive(Default)]
struct Days(Vec<Period>);

#[derive(Clone, Copy)]
struct Period {
    zone: Tz,
    day: DateTime<Utc>,
    month: DateTime<Utc>,
    next_day: DateTime<Utc>,
}

impl Days {
    /// The day and month `now` is in, in `tz`.
    fn period(&mut self, tz: Tz, now: DateTime<Utc>) -> Period {
        if let Some(known) = self.0.iter().find(|p| p.zone == tz && p.day <= now && now < p.next_day) {
            return *known;
        }
        let next_day = local_midnight(tz, now.with_timezone(&tz).date_naive() + Duration::days(1));
        let period = Period { zone: tz, day: day_start(tz, now), month: month_start(tz, now), next_day };
        self.0.retain(|p| p.zone != tz);
        self.0.push(period);
        period
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

impl Closed {
    /// A segment this ledger just closed: counted in every sum it belongs to.
    fn add(&mut self, segment: Segment) {
        let end = segment.ended_at.expect("closed");
        for (key, sums) in &mut self.sums {
            if key == GLOBAL || segment.policy.as_deref() == Some(key.as_str()) {
                sums.today += segment.cost_within(sums.day_start, end);
                sums.this_month += segment.cost_within(sums.month_start, end);
            }
        }
        self.segments.push(segment);
    }

    /// Today's and this month's closed spend for a budget, summed afresh when its day changed.
    fn sums(&mut self, key: &str, policy: Option<&str>, day: DateTime<Utc>, month: DateTime<Utc>) -> (Money, Money) {
        let current = self.sums.get(key).is_some_and(|s| s.day_start == day && s.month_start == month);
        if !current {
            let mine = || self.segments.iter().filter(|s| policy.is_none() || s.policy.as_deref() == policy);
            let sums = ClosedSums {
                day_start: day,
                month_start: month,
                today: mine().map(|s| s.cost_within(day, s.ended_at.expect("closed"))).sum(),
                this_month: mine().map(|s| s.cost_within(month, s.ended_at.expect("closed"))).sum(),
            };
            self.sums.insert(key.to_owned(), sums);
        }
        let sums = &self.sums[key];
        (sums.today, sums.this_month)
    }
}
