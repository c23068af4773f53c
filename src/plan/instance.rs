//! Rules for one adopted instance: schedules, the runaway stop, the idle
//! ladder (idle → power_off with snapshot → delete after a while stopped).

use chrono::{DateTime, Utc};

use super::observed::{ObservedInstance, Reading, SnapshotState};
use super::{ActionKind, Cause, Planner, ScheduleMark, humane};
use crate::cloud::{Instance, InstanceStatus, PowerOff, Snapshot};
use crate::config::policy::{Edge, IdleRule, Policy};

/// The verdict of every configured signal together.
enum Idleness {
    Active,
    Unreadable(Vec<String>),
    IdleSince(DateTime<Utc>),
}

impl Planner<'_> {
    pub(super) fn instance(&mut self, policy: &Policy, member: &ObservedInstance) {
        let instance = &member.instance;
        match &instance.status {
            InstanceStatus::Running => self.running(policy, member),
            InstanceStatus::Stopped => self.stopped(policy, member),
            InstanceStatus::Unknown(raw) => {
                self.note(policy, Some(instance), format!("not touched: unknown status {raw:?}"));
            }
            InstanceStatus::Failed => {
                self.note(policy, Some(instance), "not touched: the platform reports it failed".into())
            }
            // Transitional: wait for it to settle.
            _ => {}
        }
    }

    fn running(&mut self, policy: &Policy, member: &ObservedInstance) {
        let instance = &member.instance;
        if let Some(edge_at) = self.pending_edge(policy, instance, Edge::Stop, true) {
            let reason = format!("schedule stop at {}", self.local(policy, edge_at));
            self.propose_edge(policy, instance, self.power_off(policy, instance), reason, edge_at);
            return;
        }
        let Some(idle) = &policy.idle else { return };
        if let (Some(max), Some(since)) = (idle.max_runtime, member.running_since) {
            if self.now - since >= max {
                let reason = format!("running for {}, over max_runtime {}", humane(self.now - since), humane(max));
                self.propose(policy, instance, self.power_off(policy, instance), Cause::Runaway, reason);
                return;
            }
            self.wake(since + max);
        }
        match idleness(idle, member) {
            Idleness::Active => self.wake(self.now + idle.stop_after),
            Idleness::Unreadable(which) => {
                let text = format!("not stopped: {} unreadable, counted active", which.join(", "));
                self.note(policy, Some(instance), text);
            }
            Idleness::IdleSince(since) => {
                let deadline = since + idle.stop_after;
                if self.now < deadline {
                    self.wake(deadline);
                } else if instance.cost.billing_type.is_prepaid() && !idle.stop_prepaid {
                    let text = format!(
                        "not stopped: idle for {} but on a prepaid {} term (stopping saves nothing)",
                        humane(self.now - since),
                        instance.cost.billing_type
                    );
                    self.note(policy, Some(instance), text);
                } else {
                    let reason = format!(
                        "idle for {} (since {}), stop_after {}",
                        humane(self.now - since),
                        self.local(policy, since),
                        humane(idle.stop_after)
                    );
                    self.propose(policy, instance, self.power_off(policy, instance), Cause::Idle, reason);
                }
            }
        }
    }

    fn stopped(&mut self, policy: &Policy, member: &ObservedInstance) {
        let instance = &member.instance;
        if let Some(edge_at) = self.pending_edge(policy, instance, Edge::Start, false) {
            let reason = format!("schedule start at {}", self.local(policy, edge_at));
            let cost = self.hourly_cost(instance);
            match self.room_for(policy, cost, false) {
                Ok(()) => {
                    self.propose_edge(policy, instance, ActionKind::PowerOn, reason, edge_at);
                    self.commit(cost);
                }
                Err(why) => self.note(policy, Some(instance), format!("not started: {reason}; {why}")),
            }
            return;
        }
        let Some(idle) = &policy.idle else { return };
        let (Some(keep), Some(since)) = (idle.delete_after_stopped, member.stopped_since) else { return };
        let due = since + keep;
        if self.now < due {
            self.wake(due);
            return;
        }
        let stopped_for = humane(self.now - since);
        match &member.snapshot {
            SnapshotState::Succeeded { image, tag, .. } => {
                let reason = format!(
                    "stopped for {stopped_for}, delete_after_stopped {}; snapshot {image}:{tag} saved",
                    humane(keep)
                );
                self.propose(policy, instance, ActionKind::Delete, Cause::Retention, reason);
            }
            _ if idle.delete_without_snapshot => {
                let reason =
                    format!("stopped for {stopped_for}, delete_after_stopped {} (no snapshot required)", humane(keep));
                self.propose(policy, instance, ActionKind::Delete, Cause::Retention, reason);
            }
            _ => self.note(
                policy,
                Some(instance),
                format!("not deleted: stopped for {stopped_for} but no snapshot is known to have succeeded"),
            ),
        }
    }

    /// The schedule edge of kind `wanted` that should be applied now, if any.
    /// An edge already in force (the instance is in that state) is recorded
    /// as applied, so a manual change afterwards stands until the next edge.
    fn pending_edge(
        &mut self,
        policy: &Policy,
        instance: &Instance,
        wanted: Edge,
        running: bool,
    ) -> Option<DateTime<Utc>> {
        let schedule = policy.schedule.as_ref()?;
        if let Some(next) = self.edges.next {
            self.wake(next);
        }
        let (edge, at) = self.edges.latest.clone()?;
        let applied = self.observed.schedule_marks.get(&instance.name).is_some_and(|m| *m >= at);
        if applied && !schedule.enforce {
            return None;
        }
        if edge == wanted {
            return Some(at);
        }
        // The edge asks for the state the instance is already in.
        let already = (edge == Edge::Start) == running;
        if already && !applied {
            self.draft.schedule_marks.push(ScheduleMark { instance: instance.name.clone(), edge: at });
        }
        None
    }

    fn propose_edge(
        &mut self,
        policy: &Policy,
        instance: &Instance,
        kind: ActionKind,
        reason: String,
        edge: DateTime<Utc>,
    ) {
        let before = self.draft.candidates.len();
        self.propose(policy, instance, kind, Cause::Schedule, reason);
        if let Some(action) = self.draft.candidates.get_mut(before) {
            action.schedule_edge = Some(edge);
        }
    }

    pub(super) fn power_off(&self, policy: &Policy, instance: &Instance) -> ActionKind {
        let idle = policy.idle.as_ref();
        let snapshot = idle.and_then(|i| i.snapshot.as_ref()).map(|template| {
            let (image, tag) = template.render(instance, &policy.name, self.now);
            Snapshot { image, tag }
        });
        ActionKind::PowerOff(PowerOff { grace_period_seconds: idle.map_or(10, |i| i.grace_period_seconds), snapshot })
    }

    /// A moment in the policy's zone, for reasons people read.
    pub(super) fn local(&self, policy: &Policy, at: DateTime<Utc>) -> String {
        use chrono::{Datelike, Timelike};
        let tz = policy.schedule.as_ref().map_or(crate::config::check::DEFAULT_TIMEZONE, |s| s.timezone);
        let t = at.with_timezone(&tz);
        // By hand rather than strftime: reasons are built for every candidate of a large fleet.
        format!("{}-{:02}-{:02} {:02}:{:02} {}", t.year(), t.month(), t.day(), t.hour(), t.minute(), t.offset())
    }
}

/// Since when every signal of the rule says the instance is idle; `None`
/// when it is in use or a signal cannot be read.
pub fn idle_since(rule: &IdleRule, member: &ObservedInstance) -> Option<DateTime<Utc>> {
    match idleness(rule, member) {
        Idleness::IdleSince(since) => Some(since),
        Idleness::Active | Idleness::Unreadable(_) => None,
    }
}

/// Idle only when every configured signal says idle; a signal that cannot be
/// read, or was not read, counts as active.
fn idleness(rule: &IdleRule, member: &ObservedInstance) -> Idleness {
    let mut unreadable = Vec::new();
    let mut since: Option<DateTime<Utc>> = None;
    for signal in &rule.signals {
        match member.signals.get(signal.label()) {
            Some(Reading::Active) => return Idleness::Active,
            Some(Reading::IdleSince(t)) => since = Some(since.map_or(*t, |s| s.max(*t))),
            Some(Reading::Unreadable(why)) => unreadable.push(format!("{} ({why})", signal.label())),
            None => unreadable.push(format!("{} (not read)", signal.label())),
        }
    }
    match (unreadable.is_empty(), since) {
        (false, _) => Idleness::Unreadable(unreadable),
        (true, Some(since)) => Idleness::IdleSince(since),
        (true, None) => Idleness::Active,
    }
}
