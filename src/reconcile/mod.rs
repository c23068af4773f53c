//! The daemon's cycle: observe → plan → execute → record, as one `step` that
//! takes `now` and answers what happened. Level-triggered: every step
//! observes the whole cloud, so a missed step is caught up by the next.
//!
//! The picture (`picture`) is kept between steps. `simulate`, which knows
//! exactly which instances changed, uses `step_told` instead: only those
//! are re-read and re-recorded, then the same planner plans the whole
//! picture. Acting on the plan, and following what was sent, is `execution`.
//!
//! Among replicas, only the one that leads steps; a standby `watch`es:
//! observes and plans with the ledger's facts, and neither writes nor acts.
//! The leader confirms its lead before each action it sends.

mod announce;
mod cutoff;
mod execution;
mod guard;
mod picture;

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};

use crate::cloud::{Cloud, Told};
use crate::config::policy::Config;
use crate::ledger::facts::{add_facts, read_facts, recent_actions};
use crate::ledger::leadership::{Lease, Standing};
use crate::ledger::{Ledger, Outcome, Store};
use crate::observe::{Catalog, observe, observe_with};
use crate::plan::{self, Changed, Observed, Plan};
use crate::signals::{SignalCache, SignalSettings, read_signals, read_signals_of};
use cutoff::Cutoff;
pub use cutoff::{Cut, Halt};
use execution::Execution;
pub use execution::{Executed, STUCK_AFTER};
use guard::Guard;
pub use guard::Held;
use picture::Picture;

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
    /// Why the step ended early: while observing (nothing planned), or
    /// before `unsent` of the plan's actions (planned again next cycle).
    pub cut: Option<Cut>,
    pub unsent: usize,
    /// Policies the change guard held this step, and actions not sent
    /// because their policy is held, or because a call of the last
    /// leader's on their instance may still be on its way.
    pub held: Vec<Held>,
    pub withheld: usize,
    /// The step stopped sending: this replica no longer leads.
    pub deposed: bool,
    /// The fleet as planned this step, for `/api/v1/instances`.
    pub instances: Vec<crate::instances::InstanceRow>,
}

/// Why unfinished actions could not be settled after a restart (the next start tries again).
#[derive(Debug, thiserror::Error)]
pub enum SettleError {
    #[error("the ledger: {0}")]
    Ledger(#[from] crate::ledger::LedgerError),
    #[error("the cloud: {0}")]
    Cloud(#[from] crate::cloud::CloudError),
    #[error("{0}")]
    Cut(#[from] Cut),
}

/// The daemon between steps: what it acts on, what it saw, what it is doing.
pub struct Daemon<C, S> {
    cloud: C,
    ledger: Ledger<S>,
    config: Config,
    signals: SignalSettings,
    /// How much of each plan to write out (`simulate` needs no notes).
    detail: plan::Detail,
    signal_cache: SignalCache,
    catalog: Catalog,
    /// The picture, whose schedule marks are the daemon's own record (read
    /// from the ledger once, then kept), so a ledger outage never re-fires an edge.
    picture: Picture,
    /// Whether the marks and the actions of an earlier run have been read.
    history_read: bool,
    execution: Execution,
    halt: Halt,
    guard: Guard,
    /// Among replicas, this one's part in the election; `None`: it runs alone.
    lease: Option<Lease>,
}

impl<C: Cloud, S: Store> Daemon<C, S> {
    pub fn new(cloud: C, ledger: Ledger<S>, config: Config, dry_run: bool) -> Self {
        Daemon {
            guard: Guard::starting(&config),
            cloud,
            ledger,
            config,
            signals: SignalSettings::default(),
            detail: plan::Detail::Full,
            signal_cache: SignalCache::default(),
            catalog: Catalog::default(),
            picture: Picture::default(),
            history_read: false,
            execution: Execution::new(dry_run),
            halt: Halt::default(),
            lease: None,
        }
    }

    /// Takes part in elections through this lease: it acts only while it leads.
    pub fn with_lease(self, lease: Lease) -> Self {
        Daemon { lease: Some(lease), ..self }
    }

    /// Where this replica stands now: one without a lease always leads, at epoch 0.
    pub async fn campaign(&mut self, now: DateTime<Utc>) -> Standing {
        match &mut self.lease {
            Some(lease) => lease.campaign(now).await,
            None => Standing::Leading { epoch: 0 },
        }
    }

    /// This replica's name, when it takes part in elections.
    pub fn replica(&self) -> Option<&str> {
        self.lease.as_ref().map(Lease::replica)
    }

    /// Who leads, as the ledger has it (`None` alone, or when it cannot say).
    pub async fn leader(&mut self) -> Option<crate::ledger::leadership::Leader> {
        self.lease.as_mut()?.leader().await.ok().flatten()
    }

    /// Starts to act at `epoch`, as a restart would: what this daemon knew
    /// of the cloud and the ledger is forgotten and read again (marks,
    /// snoozes, history, accepted policies, the outbox), and the actions
    /// left unfinished, by a crash or a deposed leader, are settled.
    pub async fn take_over(&mut self, epoch: i64, now: DateTime<Utc>) -> Result<usize, SettleError> {
        self.ledger.forget();
        self.picture = Picture::default();
        self.history_read = false;
        self.execution = Execution::new(self.execution.dry_run());
        self.execution.epoch = epoch;
        self.guard = Guard::starting(&self.config);
        self.reconcile_intents(now).await
    }

    /// Reads signals as these settings say.
    pub fn with_signals(self, signals: SignalSettings) -> Self {
        Daemon { signals, ..self }
    }

    /// Heeds this halt (its raiser's copy) instead of one of its own.
    pub fn with_halt(self, halt: Halt) -> Self {
        Daemon { halt, ..self }
    }

    /// Writes out this much of each plan.
    pub fn with_detail(self, detail: plan::Detail) -> Self {
        Daemon { detail, ..self }
    }

    pub fn cloud(&self) -> &C {
        &self.cloud
    }

    pub fn ledger(&self) -> &Ledger<S> {
        &self.ledger
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// A reloaded policy: the next step plans by it, and the change guard
    /// checks what is new or edited in it.
    pub fn set_config(&mut self, config: Config) {
        self.guard.changed(&self.config, &config);
        self.config = config;
    }

    /// Takes every policy as accepted from the start: a replay, where no
    /// one changed anything.
    pub fn accepting_policies(self) -> Self {
        Daemon { guard: Guard::default(), ..self }
    }

    /// Lets a policy the change guard holds act; false when it was not held.
    pub fn confirm(&mut self, policy: &str) -> bool {
        self.guard.confirm(policy)
    }

    /// The policies the change guard holds.
    pub fn held(&self) -> impl Iterator<Item = &Held> {
        self.guard.held()
    }

    pub fn dry_run(&self) -> bool {
        self.execution.dry_run()
    }

    /// Raised, it ends a step in progress at its next safe point (and every
    /// step after, until lowered).
    pub fn halt(&self) -> &Halt {
        &self.halt
    }

    fn cutoff(&self) -> Cutoff {
        Cutoff::starting_now(self.config.settings.cycle_deadline.to_std().unwrap_or_default(), &self.halt)
    }

    /// After a crash: intents without an outcome are settled against what the
    /// cloud shows, so a create whose record was lost is never made twice.
    pub async fn reconcile_intents(&mut self, now: DateTime<Utc>) -> Result<usize, SettleError> {
        let unfinished = self.ledger.store().unfinished_actions().await?;
        if unfinished.is_empty() {
            return Ok(0);
        }
        let observed = self.cutoff().bound(observe(&self.cloud, &self.config)).await??;
        // A replica deposed while it sent a call may still have it on its way: that instance waits it out.
        let call_timeout = chrono::Duration::from_std(self.config.settings.api.call_timeout()).unwrap_or_default();
        for intent in unfinished.iter().filter(|i| now < i.planned_at + call_timeout) {
            self.execution.wait_for(&intent.cluster, &intent.display_name, intent.planned_at + call_timeout);
        }
        for intent in &unfinished {
            let found = observed
                .instances
                .iter()
                .find(|o| o.instance.display_name == intent.display_name && o.instance.cluster == intent.cluster);
            let (outcome, name, note) = match (intent.kind.as_str(), found) {
                ("create", Some(o)) => {
                    (Outcome::Done, Some(o.instance.name.as_str()), "settled after a restart: the instance exists")
                }
                // The lists may show a new instance late: until then it holds its slot.
                ("create", None) if now < intent.planned_at + self.config.settings.listing_delay => {
                    (Outcome::Unknown, None, "settled after a restart: not listed yet; its slot is held a while")
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
        self.picture.release();
    }

    /// One cycle on a whole observation of the cloud.
    pub async fn step(&mut self, now: DateTime<Utc>) -> StepReport {
        let mut report = StepReport { at: now, ..StepReport::default() };
        let cutoff = self.cutoff();
        if !self.look(now, &cutoff, &mut report).await {
            return report;
        }
        let listed = crate::observe::clusters(&self.config, &self.picture.observed.regions);
        self.decide(Changed::All, &[], &listed, now, cutoff, report).await
    }

    /// A standby's cycle: the cloud observed whole and planned with the
    /// ledger's facts as the leader recorded them; nothing written, nothing sent.
    pub async fn watch(&mut self, now: DateTime<Utc>) -> StepReport
    where
        S: Clone,
    {
        let mut report = StepReport { at: now, ..StepReport::default() };
        let cutoff = self.cutoff();
        if !self.look(now, &cutoff, &mut report).await {
            return report;
        }
        let observed = &mut self.picture.observed;
        if let Err(e) = read_facts(self.ledger.store().clone(), observed, &self.config, now).await {
            report.ledger_error = Some(e);
        }
        let plan = plan::plan_with(observed, &self.config, now, self.detail);
        report.instances = crate::instances::rows(observed, &self.config, &plan);
        report.plan = Some(plan);
        report
    }

    /// Observes the whole cloud and its signals into the picture; false,
    /// with the report saying why, when it could not (never act on a partial picture).
    async fn look(&mut self, now: DateTime<Utc>, cutoff: &Cutoff, report: &mut StepReport) -> bool {
        let Daemon { cloud, config, catalog, picture, signals, signal_cache, .. } = self;
        let looking = async {
            catalog.refresh(cloud, now, config.settings.sku_interval).await?;
            let mut observed = observe_with(cloud, config, catalog).await?;
            read_signals(&mut observed.instances, config, signals, Some(signal_cache), now).await;
            Ok(observed)
        };
        match cutoff.bound(looking).await {
            Ok(Ok(observed)) => {
                picture.replace(observed);
                return true;
            }
            Ok(Err(e)) => report.observe_error = Some(e),
            Err(cut) => report.cut = Some(cut),
        }
        picture.whole = false;
        false
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
        let cutoff = self.cutoff();
        self.decide(Changed::These(&changed), &active, &listed, now, cutoff, report).await
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
        cutoff: Cutoff,
        mut report: StepReport,
    ) -> StepReport {
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
        self.execution.follow(&self.picture, &mut self.ledger, now).await;
        report.stuck = self.execution.stuck(&self.picture, changed, now);

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
            }
            Err(e) => {
                report.ledger_error.get_or_insert(e);
                self.picture.observed.spend = None;
                self.picture.facts_missing = true;
            }
        }
        changed.iter_mut().for_each(|c| c.extend(active));
        self.execution.tell(&mut self.picture, self.config.settings.listing_delay, now);
        let warns = self.config.policies.iter().any(|p| p.notify.is_some());
        self.picture.observed.warned = if warns { self.ledger.warnings(now).await } else { Default::default() };

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
            self.picture.mark(&mark.instance, mark.edge);
        }
        self.ledger.mark(plan.schedule_marks.iter().map(|m| (m.instance.clone(), m.edge)).collect()).await;
        report.held = self.guard.check(&self.picture.observed, &self.config, now);
        self.record_accepted(&mut report, now).await;
        let ledger_readable = self.picture.observed.spend.is_some();
        let actions = self.execution.fresh(&plan.actions);
        let mut notices = Vec::new();
        for (sent, action) in actions.iter().copied().enumerate() {
            if self.guard.holds(&action.policy) || self.execution.waits(action, now) {
                report.withheld += 1;
                continue;
            }
            if let Some(cut) = cutoff.reached() {
                report.cut = Some(cut);
                report.unsent = actions.len() - sent;
                break;
            }
            // Only while it leads: the lock confirmed on its own connection, just now.
            if !self.execution.dry_run()
                && let Some(lease) = &mut self.lease
                && lease.confirm().await.is_none()
            {
                report.deposed = true;
                report.unsent = actions.len() - sent;
                break;
            }
            let executed = self.execution.execute(&self.cloud, &mut self.ledger, action, ledger_readable, now).await;
            if executed.outcome == Outcome::Done
                && let Some(edge) = action.schedule_edge
            {
                self.picture.mark(&action.instance.name, edge);
                self.ledger.mark(vec![(action.instance.name.clone(), edge)]).await;
            }
            notices.extend(announce::unannounced(&executed, &self.config, now));
            report.executed.push(executed);
        }
        if !self.execution.dry_run() {
            notices.extend(announce::warnings(&plan, &self.config, now));
        }
        if !notices.is_empty() {
            self.ledger.queue_notices(notices);
            // The courier reads the outbox: what was queued goes there now (or after an outage).
            if let Err(e) = self.ledger.flush().await {
                report.ledger_error.get_or_insert(e);
            }
        }
        report.instances = crate::instances::rows(&self.picture.observed, &self.config, &plan);
        report.plan = Some(plan);
        report
    }

    /// What an earlier run left: its schedule marks (this run's own win),
    /// the actions of its last hour and the policies it accepted.
    async fn read_history(&mut self, now: DateTime<Utc>) -> Result<(), crate::ledger::LedgerError> {
        let stored = self.ledger.store().schedule_marks().await?;
        let delay = self.config.settings.listing_delay;
        self.execution.set_earlier(recent_actions(self.ledger.store(), now, delay).await?);
        self.guard.accepted_before(&self.config, &self.ledger.store().accepted_policies().await?);
        let own = std::mem::replace(&mut self.picture.observed.schedule_marks, stored);
        self.picture.observed.schedule_marks.extend(own);
        Ok(())
    }

    /// Writes what the change guard accepted to the ledger (a dry run
    /// writes nothing); kept for the next step while the ledger is away.
    async fn record_accepted(&mut self, report: &mut StepReport, now: DateTime<Utc>) {
        if self.guard.to_record().is_empty() {
            return;
        }
        if !self.execution.dry_run()
            && let Err(e) = self.ledger.store().accept_policies(self.guard.to_record(), now).await
        {
            report.ledger_error.get_or_insert(e);
            return;
        }
        self.guard.recorded();
    }
}
