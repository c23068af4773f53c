//! The daemon's cycle: observe → plan → execute → record, as one `step` that
//! takes `now` and answers what happened. Level-triggered: every step
//! rebuilds the whole picture, so a missed step is caught up by the next.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use chrono::{DateTime, Duration, Utc};

use crate::cloud::{Cloud, CloudErrorKind, InstanceStatus};
use crate::config::policy::Config;
use crate::ledger::facts::add_facts;
use crate::ledger::{ActionRecord, Ledger, Outcome, Store};
use crate::observe::{Catalog, observe, observe_with};
use crate::plan::{self, Action, ActionKind, Plan};
use crate::signals::{SignalCache, SignalSettings, read_signals};

/// What one step did.
#[derive(Debug, Default)]
pub struct StepReport {
    pub at: DateTime<Utc>,
    /// Why nothing was planned, when the cloud could not be observed whole.
    pub observe_error: Option<String>,
    pub ledger_error: Option<String>,
    pub plan: Option<Plan>,
    pub executed: Vec<Executed>,
    /// Display name → platform name of every instance seen.
    pub names: Vec<(String, String)>,
    /// Instances in a transitional state for over [`STUCK_AFTER`] minutes.
    pub stuck: Vec<String>,
    /// What the cycle saw, when it saw the cloud whole.
    pub observed: Option<plan::Observed>,
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
    snapshot: bool,
}

pub struct Daemon<C, S> {
    pub cloud: C,
    pub ledger: Ledger<S>,
    pub config: Config,
    pub dry_run: bool,
    pub signals: SignalSettings,
    signal_cache: SignalCache,
    catalog: Catalog,
    /// Actions taken in the last hour, kept here too: the ledger may be away.
    taken: VecDeque<DateTime<Utc>>,
    capacity_failures: BTreeMap<String, DateTime<Utc>>,
    /// Schedule marks known, so a ledger outage never re-fires an edge.
    marks: BTreeMap<String, DateTime<Utc>>,
    in_flight: BTreeMap<String, InFlight>,
    /// Instances in a transitional state, and since when they have been in it.
    transitional: BTreeMap<String, (InstanceStatus, DateTime<Utc>)>,
    /// Outcomes not yet written (the ledger was away).
    unwritten: Vec<Unwritten>,
    /// Whole actions taken while the ledger was away, to record when it returns.
    unrecorded: Vec<ActionRecord>,
    unwritten_marks: Vec<(String, DateTime<Utc>)>,
}

/// How long an instance may stay in a transitional state before it is reported stuck.
pub const STUCK_AFTER: i64 = 15;

impl<C: Cloud, S: Store> Daemon<C, S> {
    pub fn new(cloud: C, ledger: Ledger<S>, config: Config, dry_run: bool) -> Self {
        Daemon {
            cloud,
            ledger,
            config,
            dry_run,
            signals: SignalSettings::default(),
            signal_cache: SignalCache::default(),
            catalog: Catalog::default(),
            taken: VecDeque::new(),
            capacity_failures: BTreeMap::new(),
            marks: BTreeMap::new(),
            in_flight: BTreeMap::new(),
            transitional: BTreeMap::new(),
            unwritten: Vec::new(),
            unrecorded: Vec::new(),
            unwritten_marks: Vec::new(),
        }
    }

    /// After a crash: intents without an outcome are settled against what the
    /// cloud shows, so a create whose record was lost is never made twice.
    pub async fn reconcile_intents(&mut self, now: DateTime<Utc>) -> Result<usize, String> {
        let unfinished = self.ledger.store().unfinished_actions().await.map_err(|e| e.to_string())?;
        if unfinished.is_empty() {
            return Ok(0);
        }
        let observed = observe(&self.cloud, &self.config).await.map_err(|e| e.to_string())?;
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
            self.ledger
                .store()
                .record_outcome(intent.id, outcome, Some(note), name, now)
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(unfinished.len())
    }

    pub async fn step(&mut self, now: DateTime<Utc>) -> StepReport {
        let mut report = StepReport { at: now, ..StepReport::default() };
        while self.taken.front().is_some_and(|t| *t <= now - Duration::hours(1)) {
            self.taken.pop_front();
        }
        let refreshed = self.catalog.refresh(&self.cloud, now, self.config.settings.sku_interval).await;
        let observed = match refreshed {
            Ok(()) => observe_with(&self.cloud, &self.config, &self.catalog).await,
            Err(e) => Err(e),
        };
        let mut observed = match observed {
            Ok(observed) => observed,
            Err(e) => {
                // Never act on a partial picture.
                report.observe_error = Some(e.to_string());
                return report;
            }
        };
        read_signals(&mut observed.instances, &self.config, &self.signals, Some(&mut self.signal_cache), now).await;
        report.names =
            observed.instances.iter().map(|o| (o.instance.display_name.clone(), o.instance.name.clone())).collect();
        self.follow(&observed, now).await;
        report.stuck = self.stuck(&observed, now);

        let listed: BTreeSet<String> = crate::observe::clusters(&self.config, &observed.regions);
        if let Err(e) = self.ledger.record(&observed, &self.config, &listed, now).await {
            report.ledger_error = Some(e.to_string());
        }
        match add_facts(&mut self.ledger, &mut observed, &self.config, now).await {
            Ok(()) => {
                for (k, v) in &observed.schedule_marks {
                    self.marks.insert(k.clone(), *v);
                }
                self.flush_outcomes().await;
            }
            Err(e) => {
                report.ledger_error.get_or_insert(e.to_string());
                observed.spend = None;
            }
        }
        observed.schedule_marks = self.marks.clone();
        let mut recent: Vec<DateTime<Utc>> = observed.recent_actions.clone();
        recent.extend(self.taken.iter().copied());
        recent.sort();
        recent.dedup();
        observed.recent_actions = recent;
        observed.capacity_failures = self.capacity_failures.clone();

        let plan = plan::plan(&observed, &self.config, now);
        for mark in &plan.schedule_marks {
            self.marks.insert(mark.instance.clone(), mark.edge);
        }
        self.save_marks(plan.schedule_marks.iter().map(|m| (m.instance.clone(), m.edge)).collect()).await;
        for action in &plan.actions {
            let executed = self.execute(action, observed.spend.is_some(), now).await;
            report.executed.push(executed);
        }
        report.plan = Some(plan);
        report.observed = Some(observed);
        report
    }

    /// Instances in a transitional state for over [`STUCK_AFTER`] minutes,
    /// logged once when they get there.
    fn stuck(&mut self, observed: &plan::Observed, now: DateTime<Utc>) -> Vec<String> {
        let mut seen = BTreeMap::new();
        for o in &observed.instances {
            let status = &o.instance.status;
            if status.is_settled() || matches!(status, InstanceStatus::Failed | InstanceStatus::Unknown(_)) {
                continue;
            }
            let since = match self.transitional.get(&o.instance.name) {
                Some((was, since)) if was == status => *since,
                _ => now,
            };
            let limit = Duration::minutes(STUCK_AFTER);
            if now - since > limit && now - since - limit <= self.config.settings.interval {
                tracing::warn!(instance = %o.instance.display_name, status = %status, minutes = (now - since).num_minutes(), "instance stuck in a transitional state");
            }
            seen.insert(o.instance.name.clone(), (status.clone(), since));
        }
        self.transitional = seen;
        self.transitional
            .iter()
            .filter(|(_, (_, since))| now - *since > Duration::minutes(STUCK_AFTER))
            .map(|(name, _)| name.clone())
            .collect()
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
            cause: format!("{:?}", action.cause).to_lowercase(),
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
            self.unrecorded.push(ActionRecord {
                outcome: Some(outcome),
                error: error.clone(),
                finished_at: Some(now),
                ..intent
            });
            if let Some(edge) = action.schedule_edge.filter(|_| result.is_ok()) {
                self.marks.insert(target.name.clone(), edge);
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
                            InFlight { record, target: status, snapshot: snapshot.is_some() },
                        );
                    }
                    None => self.outcome(record, Outcome::Done, None, created.as_deref(), now).await,
                }
                if let Some(edge) = action.schedule_edge {
                    self.marks.insert(target.name.clone(), edge);
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
                self.outcome(record, outcome, Some(e.to_string()), None, now).await;
                done(outcome, Some(e.to_string()))
            }
        }
    }

    /// Settles sent power_offs and power_ons once the instance gets there (a
    /// snapshot power_off that comes back Running failed).
    async fn follow(&mut self, observed: &plan::Observed, now: DateTime<Utc>) {
        let statuses: BTreeMap<&str, &InstanceStatus> =
            observed.instances.iter().map(|o| (o.instance.name.as_str(), &o.instance.status)).collect();
        let mut settled = Vec::new();
        for (name, flight) in &self.in_flight {
            let result = match statuses.get(name.as_str()) {
                Some(status) if **status == flight.target => Some((Outcome::Done, None)),
                Some(InstanceStatus::Running) if flight.target == InstanceStatus::Stopped => {
                    let why = if flight.snapshot {
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
            self.in_flight.remove(&name);
            self.outcome(record, outcome, error, None, now).await;
        }
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
