//! The daemon's cycle: observe → plan → execute → record, as one `step` that
//! takes `now` and answers what happened. Level-triggered: every step
//! observes the whole cloud, so a missed step is caught up by the next.
//!
//! The picture is kept between steps. `simulate`, which knows exactly which
//! instances changed, uses `step_told` instead: only those are re-read and
//! re-recorded, then the same planner plans the whole picture.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use chrono::{DateTime, Duration, Utc};

use crate::cloud::{Cloud, CloudErrorKind, InstanceStatus, Told};
use crate::config::policy::Config;
use crate::ledger::facts::{add_facts, recent_action_times};
use crate::ledger::{ActionRecord, Ledger, Outcome, Store};
use crate::observe::{Catalog, observe, observe_with};
use crate::plan::{self, Action, ActionKind, Changed, Observed, ObservedInstance, Plan};
use crate::signals::{SignalCache, SignalSettings, read_signals, read_signals_of};

/// What one step did.
#[derive(Debug, Default)]
pub struct StepReport {
    pub at: DateTime<Utc>,
    /// Why nothing was planned, when the cloud could not be observed whole.
    pub observe_error: Option<crate::cloud::CloudError>,
    pub ledger_error: Option<crate::ledger::LedgerError>,
    pub plan: Option<Plan>,
    pub executed: Vec<Executed>,
    /// Display name → platform name of every instance seen anew (all of
    /// them on a whole observation, those told of on a told step).
    pub names: Vec<(String, String)>,
    /// Instances in a transitional state for over [`STUCK_AFTER`].
    pub stuck: Vec<String>,
}

/// Why unfinished actions could not be settled after a restart (the next start tries again).
#[derive(Debug, thiserror::Error)]
pub enum SettleError {
    #[error("the ledger: {0}")]
    Ledger(#[from] crate::ledger::LedgerError),
    #[error("the cloud: {0}")]
    Cloud(#[from] crate::cloud::CloudError),
}

/// The cloud as the last step saw it, with the ledger's facts and the signals.
#[derive(Default)]
struct Picture {
    observed: Observed,
    /// Instance name → index in `observed.instances`.
    index: HashMap<String, usize>,
    /// The last observation was whole: a told step may build on it.
    whole: bool,
    /// The ledger's facts could not be added to the instances last re-read:
    /// the next step re-reads all of them.
    facts_missing: bool,
    /// What the planner keeps between told steps.
    memo: plan::Memo,
}

impl Picture {
    /// A whole observation replaces the instances; what the daemon keeps
    /// itself (schedule marks) stays.
    fn replace(&mut self, observed: Observed) {
        let marks = std::mem::take(&mut self.observed.schedule_marks);
        self.observed = Observed { schedule_marks: marks, ..observed };
        self.index = self.observed.instances.iter().enumerate().map(|(i, o)| (o.instance.name.clone(), i)).collect();
        self.whole = true;
    }

    /// Applies changes to instances already in the picture; the indexes
    /// changed and those whose signals only may have, or `None` when an
    /// instance appeared or went (a whole observation then puts it in its place).
    fn apply(&mut self, told: Told, listed: &BTreeSet<String>) -> Option<(Vec<usize>, Vec<usize>)> {
        if told.gone.iter().any(|name| self.index.contains_key(name)) {
            return None;
        }
        let active = told.active.iter().filter_map(|name| self.index.get(name).copied()).collect();
        let mut changed = Vec::with_capacity(told.instances.len());
        for instance in told.instances.into_iter().filter(|i| listed.contains(&i.cluster)) {
            let &index = self.index.get(&instance.name)?;
            self.observed.instances[index] = ObservedInstance::new(instance);
            changed.push(index);
        }
        changed.sort_unstable();
        changed.dedup();
        Some((changed, active))
    }

    fn get(&self, name: &str) -> Option<&ObservedInstance> {
        self.index.get(name).map(|i| &self.observed.instances[*i])
    }
}

#[derive(Debug)]
pub struct Executed {
    pub action: Action,
    pub outcome: Outcome,
    pub error: Option<String>,
}

/// An outcome waiting for the ledger.
struct Unwritten {
    id: i64,
    outcome: Outcome,
    error: Option<String>,
    instance: Option<String>,
    at: DateTime<Utc>,
}

/// An action sent whose end state is not seen yet.
#[derive(Clone, Debug)]
struct InFlight {
    record: Option<i64>,
    target: InstanceStatus,
    /// The image and tag a power_off saves the system disk as.
    snapshot: Option<(String, String)>,
}

pub struct Daemon<C, S> {
    pub cloud: C,
    pub ledger: Ledger<S>,
    pub config: Config,
    pub dry_run: bool,
    pub signals: SignalSettings,
    /// How much of each plan to write out (`simulate` needs no notes).
    pub detail: plan::Detail,
    signal_cache: SignalCache,
    catalog: Catalog,
    /// The picture, whose schedule marks are the daemon's own record (read
    /// from the ledger once, then kept), so a ledger outage never re-fires an edge.
    picture: Picture,
    /// Whether the marks and the actions of an earlier run have been read.
    history_read: bool,
    /// For the hourly limit, kept here as the ledger may be away: the actions
    /// an earlier run took in its last hour, and those this one took.
    earlier: Vec<DateTime<Utc>>,
    taken: VecDeque<DateTime<Utc>>,
    capacity_failures: BTreeMap<String, DateTime<Utc>>,
    in_flight: BTreeMap<String, InFlight>,
    /// Instances in a transitional state, since when they have been in it,
    /// and whether that was reported (once per stay).
    transitional: BTreeMap<String, (InstanceStatus, DateTime<Utc>, bool)>,
    /// Outcomes not yet written (the ledger was away).
    unwritten: Vec<Unwritten>,
    /// Whole actions taken while the ledger was away, to record when it returns.
    unrecorded: Vec<ActionRecord>,
    unwritten_marks: Vec<(String, DateTime<Utc>)>,
}

/// How long an instance may stay in a transitional state before it is reported stuck.
pub const STUCK_AFTER: Duration = Duration::minutes(15);

impl<C: Cloud, S: Store> Daemon<C, S> {
    pub fn new(cloud: C, ledger: Ledger<S>, config: Config, dry_run: bool) -> Self {
        Daemon {
            cloud,
            ledger,
            config,
            dry_run,
            signals: SignalSettings::default(),
            detail: plan::Detail::Full,
            signal_cache: SignalCache::default(),
            catalog: Catalog::default(),
            picture: Picture::default(),
            history_read: false,
            earlier: Vec::new(),
            taken: VecDeque::new(),
            capacity_failures: BTreeMap::new(),
            in_flight: BTreeMap::new(),
            transitional: BTreeMap::new(),
            unwritten: Vec::new(),
            unrecorded: Vec::new(),
            unwritten_marks: Vec::new(),
        }
    }

    /// After a crash: intents without an outcome are settled against what the
    /// cloud shows, so a create whose record was lost is never made twice.
    pub async fn reconcile_intents(&mut self, now: DateTime<Utc>) -> Result<usize, SettleError> {
        let unfinished = self.ledger.store().unfinished_actions().await?;
        if unfinished.is_empty() {
            return Ok(0);
        }
        let observed = observe(&self.cloud, &self.config).await?;
        for intent in &unfinished {
            let found = observed
                .instances
                .iter()
                .find(|o| o.instance.display_name == intent.display_name && o.instance.cluster == intent.cluster);
            let (outcome, name, note) = match (intent.kind.as_str(), found) {
                ("create", Some(o)) => {
                    (Outcome::Done, Some(o.instance.name.as_str()), "settled after a restart: the instance exists")
                }
                ("create", None) => (Outcome::Failed, None, "settled after a restart: no such instance"),
                (_, _) => (Outcome::Unknown, None, "settled after a restart: the next cycles see its state"),
            };
            self.ledger.store().record_outcome(intent.id, outcome, Some(note), name, now).await?;
        }
        Ok(unfinished.len())
    }

    /// What the last step saw, when it saw the cloud whole.
    pub fn observed(&self) -> Option<&Observed> {
        self.picture.whole.then_some(&self.picture.observed)
    }

    /// Lets go of the instances seen, for a daemon whose next step observes
    /// the whole cloud again anyway (`run`): fewer resident pages between
    /// cycles. The schedule marks stay.
    pub fn release_picture(&mut self) {
        let marks = std::mem::take(&mut self.picture.observed.schedule_marks);
        self.picture = Picture::default();
        self.picture.observed.schedule_marks = marks;
    }

    /// One cycle on a whole observation of the cloud.
    pub async fn step(&mut self, now: DateTime<Utc>) -> StepReport {
        let mut report = StepReport { at: now, ..StepReport::default() };
        let observed = match self.catalog.refresh(&self.cloud, now, self.config.settings.sku_interval).await {
            Ok(_) => observe_with(&self.cloud, &self.config, &self.catalog).await,
            Err(e) => Err(e),
        };
        match observed {
            Ok(observed) => self.picture.replace(observed),
            Err(e) => {
                // Never act on a partial picture.
                report.observe_error = Some(e);
                self.picture.whole = false;
                return report;
            }
        }
        read_signals(
            &mut self.picture.observed.instances,
            &self.config,
            &self.signals,
            Some(&mut self.signal_cache),
            now,
        )
        .await;
        let listed = crate::observe::clusters(&self.config, &self.picture.observed.regions);
        self.decide(Changed::All, &[], &listed, now, report).await
    }

    /// One cycle told what changed since the last: only those instances are
    /// read and recorded again. Without a whole picture to build on, or
    /// when an instance appeared or went, it is a whole step.
    pub async fn step_told(&mut self, now: DateTime<Utc>, told: Told) -> StepReport {
        if !self.picture.whole || self.picture.facts_missing {
            return self.step(now).await;
        }
        let mut report = StepReport { at: now, ..StepReport::default() };
        match self.catalog.refresh(&self.cloud, now, self.config.settings.sku_interval).await {
            Ok(true) => {
                self.picture.observed.regions = self.catalog.regions().to_vec();
                self.picture.observed.skus = self.catalog.skus().to_vec();
            }
            Ok(false) => {}
            Err(e) => {
                report.observe_error = Some(e);
                self.picture.whole = false;
                return report;
            }
        }
        let listed = crate::observe::clusters(&self.config, &self.picture.observed.regions);
        let Some((changed, active)) = self.picture.apply(told, &listed) else { return self.step(now).await };
        let instances = &mut self.picture.observed.instances;
        let read: Vec<usize> = changed.iter().chain(&active).copied().collect();
        read_signals_of(instances, &read, &self.config, &self.signals, &mut self.signal_cache, now).await;
        self.decide(Changed::These(&changed), &active, &listed, now, report).await
    }

    /// Records, plans and acts on the picture; `changed` are the instances
    /// re-read since the last step, `active` those whose signals only were,
    /// `listed` the clusters observed.
    async fn decide(
        &mut self,
        changed: Changed<'_>,
        active: &[usize],
        listed: &BTreeSet<String>,
        now: DateTime<Utc>,
        mut report: StepReport,
    ) -> StepReport {
        while self.taken.front().is_some_and(|t| *t <= now - Duration::hours(1)) {
            self.taken.pop_front();
        }
        let instances = &self.picture.observed.instances;
        report.names = match changed {
            Changed::All => {
                instances.iter().map(|o| (o.instance.display_name.clone(), o.instance.name.clone())).collect()
            }
            Changed::These(changed) => changed
                .iter()
                .map(|i| (instances[*i].instance.display_name.clone(), instances[*i].instance.name.clone()))
                .collect(),
        };
        self.follow(now).await;
        report.stuck = self.stuck(changed, now);

        let instances = &self.picture.observed.instances;
        let looks = match changed {
            Changed::All => crate::ledger::uses::looks(instances.iter(), &self.config),
            Changed::These(changed) => {
                crate::ledger::uses::looks(changed.iter().chain(active).map(|i| &instances[*i]), &self.config)
            }
        };
        self.ledger.record_use(&looks, matches!(changed, Changed::All), now).await;
        if let Err(e) = self.ledger.record(&self.picture.observed, changed, &self.config, listed, now).await {
            report.ledger_error = Some(e);
        }
        if !self.history_read {
            match self.read_history(now).await {
                Ok(()) => self.history_read = true,
                Err(e) => {
                    report.ledger_error.get_or_insert(e);
                }
            }
        }
        // Facts just answered, and signals just read, make an instance changed for the plan.
        let mut changed = match changed {
            Changed::All => None,
            Changed::These(changed) => Some(changed.to_vec()),
        };
        let facts_for = changed.as_deref().map_or(Changed::All, Changed::These);
        match add_facts(&mut self.ledger, &mut self.picture.observed, facts_for, &self.config, now).await {
            Ok(extra) => {
                changed.iter_mut().for_each(|c| c.extend(&extra));
                self.picture.facts_missing = false;
                self.flush_outcomes().await;
            }
            Err(e) => {
                report.ledger_error.get_or_insert(e);
                self.picture.observed.spend = None;
                self.picture.facts_missing = true;
            }
        }
        changed.iter_mut().for_each(|c| c.extend(active));
        let observed = &mut self.picture.observed;
        self.earlier.retain(|t| *t > now - Duration::hours(1));
        observed.recent_actions.clear();
        observed.recent_actions.extend(self.earlier.iter().chain(&self.taken).copied());
        observed.capacity_failures = self.capacity_failures.clone();

        let plan = match self.detail {
            plan::Detail::Full => plan::plan_with(&self.picture.observed, &self.config, now, self.detail),
            plan::Detail::Decisions => {
                let picture = &mut self.picture;
                let changed = changed.as_deref().map_or(Changed::All, Changed::These);
                plan::plan_memo(&picture.observed, &self.config, now, &mut picture.memo, changed)
            }
        };
        self.signal_cache.watch(&plan.watch);
        for mark in &plan.schedule_marks {
            self.picture.observed.schedule_marks.insert(mark.instance.clone(), mark.edge);
        }
        self.save_marks(plan.schedule_marks.iter().map(|m| (m.instance.clone(), m.edge)).collect()).await;
        let ledger_readable = self.picture.observed.spend.is_some();
        for action in &plan.actions {
            let executed = self.execute(action, ledger_readable, now).await;
            report.executed.push(executed);
        }
        report.plan = Some(plan);
        report
    }

    /// What an earlier run left: its schedule marks (this run's own win) and
    /// the actions of its last hour.
    async fn read_history(&mut self, now: DateTime<Utc>) -> Result<(), crate::ledger::LedgerError> {
        let stored = self.ledger.store().schedule_marks().await?;
        let mut earlier = recent_action_times(self.ledger.store(), now).await?;
        // Those of this run are counted as taken.
        earlier.retain(|t| !self.taken.contains(t));
        earlier.sort();
        self.earlier = earlier;
        let own = std::mem::replace(&mut self.picture.observed.schedule_marks, stored);
        self.picture.observed.schedule_marks.extend(own);
        Ok(())
    }

    /// Instances in a transitional state for over [`STUCK_AFTER`],
    /// logged once when they get there. `changed` as in [`Daemon::decide`].
    fn stuck(&mut self, changed: Changed<'_>, now: DateTime<Utc>) -> Vec<String> {
        let instances = &self.picture.observed.instances;
        let all: Vec<usize>;
        let changed = match changed {
            Changed::These(changed) => changed,
            Changed::All => {
                self.transitional.retain(|name, _| self.picture.index.contains_key(name));
                all = (0..instances.len()).collect();
                &all
            }
        };
        for o in changed.iter().map(|i| &instances[*i]) {
            let status = &o.instance.status;
            if status.is_settled() || matches!(status, InstanceStatus::Failed | InstanceStatus::Unknown(_)) {
                self.transitional.remove(&o.instance.name);
                continue;
            }
            let stay = match self.transitional.get(&o.instance.name) {
                Some((was, since, warned)) if was == status => (*since, *warned),
                _ => (now, false),
            };
            self.transitional.insert(o.instance.name.clone(), (status.clone(), stay.0, stay.1));
        }
        let mut stuck = Vec::new();
        for (name, (status, since, warned)) in &mut self.transitional {
            if now - *since <= STUCK_AFTER {
                continue;
            }
            if !*warned {
                let shown = self.picture.get(name).map_or(name.as_str(), |o| o.instance.display_name.as_str());
                tracing::warn!(instance = %shown, status = %status, minutes = (now - *since).num_minutes(), "instance stuck in a transitional state");
                *warned = true;
            }
            stuck.push(name.clone());
        }
        stuck
    }

    /// Runs one action through the rails: an intent row first, then the
    /// call, then the outcome. A create waits for a readable ledger.
    async fn execute(&mut self, action: &Action, ledger_readable: bool, now: DateTime<Utc>) -> Executed {
        let done = |outcome, error: Option<String>| Executed { action: action.clone(), outcome, error };
        let is_create = matches!(action.kind, ActionKind::Create { .. });
        let snapshot = match &action.kind {
            ActionKind::PowerOff(off) => off.snapshot.as_ref().map(|s| (s.image.clone(), s.tag.clone())),
            _ => None,
        };
        let intent = ActionRecord {
            id: 0,
            planned_at: now,
            policy: action.policy.clone(),
            kind: action.kind.label().to_owned(),
            instance: action.instance.name.clone(),
            display_name: action.instance.display_name.clone(),
            cluster: action.instance.cluster.clone(),
            cause: action.cause.label().to_owned(),
            reason: action.reason.clone(),
            saving_per_hour: action.saving_per_hour,
            dry_run: self.dry_run,
            snapshot: snapshot.clone(),
            schedule_edge: action.schedule_edge,
            outcome: None,
            error: None,
            finished_at: None,
        };
        let record = self.ledger.store().insert_intent(&intent).await.ok();
        if is_create && (record.is_none() || !ledger_readable) {
            // No intent row, no create: after a crash it could not be matched.
            return done(Outcome::Skipped, Some("not created: the ledger could not record the intent".into()));
        }
        if self.dry_run {
            self.outcome(record, Outcome::Skipped, Some("dry run".into()), None, now).await;
            return done(Outcome::Skipped, Some("dry run".into()));
        }
        self.taken.push_back(now);
        let target = &action.instance;
        let result = match &action.kind {
            ActionKind::Create { request, .. } => self.cloud.create_instance(request).await.map(|i| Some(i.name)),
            ActionKind::PowerOff(off) => self.cloud.power_off(&target.cluster, &target.name, off).await.map(|()| None),
            ActionKind::PowerOn => self.cloud.power_on(&target.cluster, &target.name).await.map(|()| None),
            ActionKind::Delete => self.cloud.delete_instance(&target.cluster, &target.name).await.map(|()| None),
        };
        if record.is_none() {
            // The ledger is away: keep the whole action to record when it returns.
            let (outcome, error) = match &result {
                Ok(_) => (Outcome::Done, None),
                Err(e) => (if e.may_have_applied() { Outcome::Unknown } else { Outcome::Failed }, Some(e.to_string())),
            };
            self.snapshot_ended(&target.name, snapshot, outcome, now);
            self.unrecorded.push(ActionRecord {
                outcome: Some(outcome),
                error: error.clone(),
                finished_at: Some(now),
                ..intent
            });
            if let Some(edge) = action.schedule_edge.filter(|_| result.is_ok()) {
                self.picture.observed.schedule_marks.insert(target.name.clone(), edge);
                self.unwritten_marks.push((target.name.clone(), edge));
            }
            return done(outcome, error);
        }
        match result {
            Ok(created) => {
                let follow = match &action.kind {
                    ActionKind::PowerOff(_) => Some(InstanceStatus::Stopped),
                    ActionKind::PowerOn => Some(InstanceStatus::Running),
                    _ => None,
                };
                match follow {
                    // Done once the instance gets there: the cycles that follow watch it.
                    Some(status) => {
                        self.in_flight.insert(
                            target.name.clone(),
                            InFlight { record, target: status, snapshot: snapshot.clone() },
                        );
                    }
                    None => self.outcome(record, Outcome::Done, None, created.as_deref(), now).await,
                }
                if let Some(edge) = action.schedule_edge {
                    self.picture.observed.schedule_marks.insert(target.name.clone(), edge);
                    self.save_marks(vec![(target.name.clone(), edge)]).await;
                }
                done(Outcome::Done, None)
            }
            Err(e) => {
                if matches!(e.kind, CloudErrorKind::NoCapacity { .. })
                    && let ActionKind::Create { request, .. } = &action.kind
                {
                    self.capacity_failures.insert(request.sku_id.clone(), now);
                }
                let outcome = if e.may_have_applied() { Outcome::Unknown } else { Outcome::Failed };
                self.snapshot_ended(&target.name, snapshot, outcome, now);
                self.outcome(record, outcome, Some(e.to_string()), None, now).await;
                done(outcome, Some(e.to_string()))
            }
        }
    }

    /// Settles sent power_offs and power_ons once the instance gets there (a
    /// snapshot power_off that comes back Running failed).
    async fn follow(&mut self, now: DateTime<Utc>) {
        let mut settled = Vec::new();
        for (name, flight) in &self.in_flight {
            let result = match self.picture.get(name).map(|o| &o.instance.status) {
                Some(status) if *status == flight.target => Some((Outcome::Done, None)),
                Some(InstanceStatus::Running) if flight.target == InstanceStatus::Stopped => {
                    let why = if flight.snapshot.is_some() {
                        "the snapshot failed: the instance kept running"
                    } else {
                        "it is running again"
                    };
                    Some((Outcome::Failed, Some(why.to_owned())))
                }
                None => Some((Outcome::Unknown, Some("the instance is gone".to_owned()))),
                Some(_) => None,
            };
            if let Some(result) = result {
                settled.push((name.clone(), flight.record, result));
            }
        }
        for (name, record, (outcome, error)) in settled {
            if let Some(flight) = self.in_flight.remove(&name) {
                self.snapshot_ended(&name, flight.snapshot, outcome, now);
            }
            self.outcome(record, outcome, error, None, now).await;
        }
    }

    /// What a power_off's snapshot came to, for `delete_after_stopped`: saved
    /// when it is done, lost when it failed; unknown outcomes say nothing.
    fn snapshot_ended(
        &mut self,
        instance: &str,
        snapshot: Option<(String, String)>,
        outcome: Outcome,
        now: DateTime<Utc>,
    ) {
        let Some((image, tag)) = snapshot else { return };
        let state = match outcome {
            Outcome::Done => plan::SnapshotState::Succeeded { image, tag, at: now },
            Outcome::Failed => plan::SnapshotState::Failed { at: now },
            Outcome::Unknown | Outcome::Skipped => return,
        };
        self.ledger.snapshot_settled(instance, state);
    }

    async fn outcome(
        &mut self,
        record: Option<i64>,
        outcome: Outcome,
        error: Option<String>,
        instance: Option<&str>,
        at: DateTime<Utc>,
    ) {
        let Some(id) = record else { return };
        if self.ledger.store().record_outcome(id, outcome, error.as_deref(), instance, at).await.is_err() {
            self.unwritten.push(Unwritten { id, outcome, error, instance: instance.map(str::to_owned), at });
        }
    }

    /// Writes schedule marks, keeping those the ledger could not take.
    async fn save_marks(&mut self, marks: Vec<(String, DateTime<Utc>)>) {
        if !marks.is_empty() && self.ledger.store().set_schedule_marks(&marks).await.is_err() {
            self.unwritten_marks.extend(marks);
        }
    }

    async fn flush_outcomes(&mut self) {
        for action in std::mem::take(&mut self.unrecorded) {
            let stored = match self.ledger.store().insert_intent(&action).await {
                Ok(id) => {
                    let outcome = action.outcome.unwrap_or(Outcome::Unknown);
                    let at = action.finished_at.unwrap_or(action.planned_at);
                    self.ledger.store().record_outcome(id, outcome, action.error.as_deref(), None, at).await.is_ok()
                }
                Err(_) => false,
            };
            if !stored {
                self.unrecorded.push(action);
            }
        }
        let marks = std::mem::take(&mut self.unwritten_marks);
        self.save_marks(marks).await;
        for u in std::mem::take(&mut self.unwritten) {
            let written =
                self.ledger.store().record_outcome(u.id, u.outcome, u.error.as_deref(), u.instance.as_deref(), u.at);
            if written.await.is_err() {
                self.unwritten.push(u);
            }
        }
    }
}
