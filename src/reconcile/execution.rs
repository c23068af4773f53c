//! Acting on a plan: each action through the rails (an intent row, the
//! call, the outcome), then followed until the instance gets where it was
//! sent; the hourly window of actions taken; instances stuck in between.

use std::collections::{BTreeMap, VecDeque};

use chrono::{DateTime, Duration, Utc};

use super::picture::Picture;
use crate::cloud::{Cloud, CloudErrorKind, InstanceStatus};
use crate::ledger::facts::{Recent, Taken, tell_recent};
use crate::ledger::{ActionRecord, Ended, Entry, Ledger, Outcome, Store};
use crate::money::Money;
use crate::plan::{Action, ActionKind, Changed, PendingCreate, SnapshotState};

/// How long an instance may stay in a transitional state before it is reported stuck.
pub const STUCK_AFTER: Duration = Duration::minutes(15);

/// One action of a plan, and what came of it.
#[derive(Debug)]
pub struct Executed {
    pub action: Action,
    pub outcome: Outcome,
    pub error: Option<String>,
}

/// An action sent whose end state is not seen yet.
struct InFlight {
    record: i64,
    target: InstanceStatus,
    /// The image and tag a power_off saves the system disk as.
    snapshot: Option<(String, String)>,
}

#[derive(Default)]
pub(super) struct Execution {
    dry_run: bool,
    /// The leader's epoch its intents are written under (0: alone).
    pub(super) epoch: i64,
    /// Instances, by (cluster, display name), that a call of an earlier
    /// leader's may still be on its way to: nothing is sent to them until then.
    waiting: BTreeMap<(String, String), DateTime<Utc>>,
    /// For the hourly limit, kept here as the ledger may be away: the actions
    /// an earlier run took in its last hour, and those this one took.
    earlier: Vec<Taken>,
    taken: VecDeque<Taken>,
    /// Creates sent, by this run or an earlier one, not listed yet.
    creates: Vec<PendingCreate>,
    /// SKU → when a create on it last found no capacity.
    capacity_failures: BTreeMap<String, DateTime<Utc>>,
    in_flight: BTreeMap<String, InFlight>,
    /// Instances in a transitional state, since when they have been in it,
    /// and whether that was reported (once per stay).
    transitional: BTreeMap<String, (InstanceStatus, DateTime<Utc>, bool)>,
    /// A dry run's would-be actions recorded, by (cluster, display name):
    /// what each would do. One is recorded when it appears or changes, not
    /// each cycle it stays in the plan.
    dry_seen: BTreeMap<(String, String), &'static str>,
}

impl Execution {
    pub(super) fn new(dry_run: bool) -> Self {
        Execution { dry_run, ..Execution::default() }
    }

    pub(super) fn dry_run(&self) -> bool {
        self.dry_run
    }

    /// In a dry run, keeps of `actions` those not recorded yet as they
    /// are, and forgets those the plan no longer has (so they count anew if
    /// they come back). Outside a dry run, all of them.
    pub(super) fn fresh<'p>(&mut self, actions: &'p [Action]) -> Vec<&'p Action> {
        if !self.dry_run {
            return actions.iter().collect();
        }
        let key = |a: &Action| (a.instance.cluster.clone(), a.instance.display_name.clone());
        let planned: BTreeMap<(String, String), &'static str> =
            actions.iter().map(|a| (key(a), a.kind.label())).collect();
        let fresh = actions.iter().filter(|a| self.dry_seen.get(&key(a)) != Some(&a.kind.label())).collect();
        self.dry_seen = planned;
        fresh
    }

    /// Sends nothing to this instance before `until`.
    pub(super) fn wait_for(&mut self, cluster: &str, display_name: &str, until: DateTime<Utc>) {
        self.waiting.insert((cluster.to_owned(), display_name.to_owned()), until);
    }

    /// Whether this action waits for an earlier leader's call (see [`Execution::wait_for`]).
    pub(super) fn waits(&mut self, action: &Action, now: DateTime<Utc>) -> bool {
        self.waiting.retain(|_, until| now < *until);
        let key = (action.instance.cluster.clone(), action.instance.display_name.clone());
        self.waiting.contains_key(&key)
    }

    /// What an earlier run did lately, as the ledger has it.
    pub(super) fn set_earlier(&mut self, earlier: Recent) {
        let Recent { taken: mut earlier, creates } = earlier;
        // Those of this run are counted already.
        earlier.retain(|t| !self.taken.iter().any(|mine| mine.at == t.at));
        earlier.sort_by_key(|t| t.at);
        self.earlier = earlier;
        for create in creates {
            if !self
                .creates
                .iter()
                .any(|mine| mine.sent_at == create.sent_at && mine.display_name == create.display_name)
            {
                self.creates.push(create);
            }
        }
    }

    /// Tells the picture what the planner needs of the execution at `now`:
    /// the actions of the last hour, the capacity failures and the creates
    /// not listed yet (a create listed is pending no more).
    pub(super) fn tell(&mut self, picture: &mut Picture, listing_delay: Duration, now: DateTime<Utc>) {
        let hour_ago = now - Duration::hours(1);
        while self.taken.front().is_some_and(|t| t.at <= hour_ago) {
            self.taken.pop_front();
        }
        self.earlier.retain(|t| t.at > hour_ago);
        let observed = &mut picture.observed;
        tell_recent(observed, self.earlier.iter().chain(&self.taken));
        observed.capacity_failures.clone_from(&self.capacity_failures);
        self.creates.retain(|p| {
            let listed = p.listed(&observed.instances);
            let holds = p.holds(now, listing_delay);
            if !listed && !holds {
                tracing::warn!(instance = %crate::text::Shown(&p.display_name), cluster = %p.cluster, minutes = (now - p.sent_at).num_minutes(), "a create is still not listed: taken as failed, its slot may be created again");
            }
            holds && !listed
        });
        observed.pending_creates.clone_from(&self.creates);
    }

    /// Runs one action through the rails: an intent row first, then the
    /// call, then the outcome. A create waits for a readable ledger.
    pub(super) async fn execute<C: Cloud, S: Store>(
        &mut self,
        cloud: &C,
        ledger: &mut Ledger<S>,
        action: &Action,
        ledger_readable: bool,
        now: DateTime<Utc>,
    ) -> Executed {
        let done = |outcome, error: Option<String>| Executed { action: action.clone(), outcome, error };
        let ended =
            |outcome, error: Option<&str>| Ended { outcome, error: error.map(str::to_owned), instance: None, at: now };
        let snapshot = match &action.kind {
            ActionKind::PowerOff(off) => off.snapshot.as_ref().map(|s| (s.image.clone(), s.tag.clone())),
            _ => None,
        };
        let entry = ledger.intend(intent(action, self.dry_run, snapshot.clone(), self.epoch, now)).await;
        if let Entry::Fenced = entry {
            return done(Outcome::Skipped, Some("not sent: another replica leads now".into()));
        }
        if matches!(action.kind, ActionKind::Create { .. }) {
            // No intent row, no create: after a crash it could not be matched.
            let why = match &entry {
                Entry::Kept(_) => Some("not created: the ledger could not record the intent"),
                Entry::Written(_) if !ledger_readable => Some("not created: spend so far cannot be read"),
                Entry::Written(_) => None,
                Entry::Fenced => unreachable!("returned above"),
            };
            if let Some(why) = why {
                if entry.is_written() {
                    ledger.finish(entry, ended(Outcome::Skipped, Some(why))).await;
                }
                return done(Outcome::Skipped, Some(why.to_owned()));
            }
        }
        if self.dry_run {
            ledger.finish(entry, ended(Outcome::Skipped, Some("dry run"))).await;
            return done(Outcome::Skipped, Some("dry run".into()));
        }
        self.taken.push_back(Taken { at: now, delete: matches!(action.kind, ActionKind::Delete) });
        let target = &action.instance;
        let result = match &action.kind {
            ActionKind::Create { request, .. } => cloud.create_instance(request).await.map(|i| Some(i.name)),
            ActionKind::PowerOff(off) => cloud.power_off(&target.cluster, &target.name, off).await.map(|()| None),
            ActionKind::PowerOn => cloud.power_on(&target.cluster, &target.name).await.map(|()| None),
            ActionKind::Delete => cloud.delete_instance(&target.cluster, &target.name).await.map(|()| None),
        };
        if let ActionKind::Create { request, .. } = &action.kind
            && result.as_ref().map_or_else(|e| e.may_have_applied(), |_| true)
        {
            self.creates.push(PendingCreate {
                display_name: request.display_name.clone(),
                cluster: request.cluster.clone(),
                sent_at: now,
                hourly: Money::ZERO - action.saving_per_hour,
            });
        }
        let created = match result {
            Ok(created) => created,
            Err(e) => {
                if matches!(e.kind, CloudErrorKind::NoCapacity { .. })
                    && let ActionKind::Create { request, .. } = &action.kind
                {
                    self.capacity_failures.insert(request.sku_id.clone(), now);
                }
                let outcome = if e.may_have_applied() { Outcome::Unknown } else { Outcome::Failed };
                let error = e.to_string();
                snapshot_ended(ledger, &target.name, snapshot, outcome, now);
                ledger.finish(entry, ended(outcome, Some(&error))).await;
                return done(outcome, Some(error));
            }
        };
        let follow = match &action.kind {
            ActionKind::PowerOff(_) => Some(InstanceStatus::Stopped),
            ActionKind::PowerOn => Some(InstanceStatus::Running),
            _ => None,
        };
        match (entry, follow) {
            // Done once the instance gets there: the cycles that follow watch it.
            (Entry::Written(record), Some(target_status)) => {
                self.in_flight.insert(target.name.clone(), InFlight { record, target: target_status, snapshot });
            }
            // Without a row to settle later, the call's answer is the outcome
            // (only a power_off carries a snapshot, and a written one is followed).
            (entry, _) => {
                snapshot_ended(ledger, &target.name, snapshot, Outcome::Done, now);
                ledger.finish(entry, Ended { instance: created, ..ended(Outcome::Done, None) }).await;
            }
        }
        done(Outcome::Done, None)
    }

    /// Settles sent power_offs and power_ons once the instance gets there (a
    /// snapshot power_off that comes back Running failed).
    pub(super) async fn follow<S: Store>(&mut self, picture: &Picture, ledger: &mut Ledger<S>, now: DateTime<Utc>) {
        let mut settled = Vec::new();
        for (name, flight) in &self.in_flight {
            let result = match picture.get(name).map(|o| &o.instance.status) {
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
                settled.push((name.clone(), result));
            }
        }
        for (name, (outcome, error)) in settled {
            let Some(flight) = self.in_flight.remove(&name) else { continue };
            snapshot_ended(ledger, &name, flight.snapshot, outcome, now);
            ledger.finish(Entry::Written(flight.record), Ended { outcome, error, instance: None, at: now }).await;
        }
    }

    /// Instances in a transitional state for over [`STUCK_AFTER`], logged
    /// once when they get there; `changed` are the instances re-read.
    pub(super) fn stuck(&mut self, picture: &Picture, changed: Changed<'_>, now: DateTime<Utc>) -> Vec<String> {
        let instances = &picture.observed.instances;
        let all: Vec<usize>;
        let changed = match changed {
            Changed::These(changed) => changed,
            Changed::All => {
                self.transitional.retain(|name, _| picture.contains(name));
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
                let shown = picture.get(name).map_or(name.as_str(), |o| o.instance.display_name.as_str());
                tracing::warn!(instance = %crate::text::Shown(shown), status = %status, minutes = (now - *since).num_minutes(), "instance stuck in a transitional state");
                *warned = true;
            }
            stuck.push(name.clone());
        }
        stuck
    }
}

/// The ledger row of an action about to be taken.
fn intent(
    action: &Action,
    dry_run: bool,
    snapshot: Option<(String, String)>,
    epoch: i64,
    now: DateTime<Utc>,
) -> ActionRecord {
    ActionRecord {
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
        dry_run,
        snapshot,
        schedule_edge: action.schedule_edge,
        outcome: None,
        error: None,
        finished_at: None,
        epoch,
    }
}

/// What a power_off's snapshot came to, for `delete_after_stopped`: saved
/// when it is done, lost when it failed; unknown outcomes say nothing.
fn snapshot_ended<S: Store>(
    ledger: &mut Ledger<S>,
    instance: &str,
    snapshot: Option<(String, String)>,
    outcome: Outcome,
    now: DateTime<Utc>,
) {
    let Some((image, tag)) = snapshot else { return };
    let state = match outcome {
        Outcome::Done => SnapshotState::Succeeded { image, tag, at: now },
        Outcome::Failed => SnapshotState::Failed { at: now },
        Outcome::Unknown | Outcome::Skipped => return,
    };
    ledger.snapshot_settled(instance, state);
}
