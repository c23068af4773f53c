//! Rules for one adopted instance: schedules, the runaway stop, the idle
//! ladder (idle → power_off with snapshot → delete after a while stopped).

use chrono::{DateTime, Utc};

use super::candidate::Reason;
use super::observed::{ObservedInstance, Reading, SnapshotState};
use super::{ActionKind, Cause, Planner, ScheduleMark, humane};
use crate::cloud::{Instance, InstanceStatus, PowerOff};
use crate::config::policy::{Edge, HardStop, IdleRule, Policy};
use crate::money::Money;

/// The verdict of every configured signal together.
pub enum Idleness {
    Active,
    Unreadable(Vec<String>),
    IdleSince(DateTime<Utc>),
}

impl<'a> Planner<'a> {
    pub(super) fn instance(&mut self, policy: &'a Policy, member: &'a ObservedInstance) {
        let instance = &member.instance;
        match &instance.status {
            InstanceStatus::Running => self.running(policy, member),
            InstanceStatus::Stopped => self.stopped(policy, member),
            InstanceStatus::Unknown(raw) => {
                self.note(policy, Some(instance), || format!("not touched: unknown status {raw:?}"));
            }
            InstanceStatus::Failed => {
                self.note(policy, Some(instance), || "not touched: the platform reports it failed".into())
            }
            // Transitional: wait for it to settle.
            _ => {}
        }
    }

    fn running(&mut self, policy: &'a Policy, member: &'a ObservedInstance) {
        let instance = &member.instance;
        if let Some(edge) = self.pending_edge(policy, instance, Edge::Stop, true) {
            let reason = Reason::Schedule { start: false, edge, tz: zone(policy) };
            self.due_stop(policy, member, HardStop::Schedule, Cause::Schedule, reason, Some(edge));
            return;
        }
        let Some(idle) = &policy.idle else { return };
        let spared = instance.cost.billing_type.is_prepaid() && !idle.stop_prepaid;
        if let (Some(max), Some(since), false) = (idle.max_runtime, member.running_since, spared) {
            if self.now - since >= max {
                let reason = Reason::Runaway { since, max };
                self.due_stop(policy, member, HardStop::MaxRuntime, Cause::Runaway, reason, None);
                return;
            }
            self.wake(since + max);
        }
        match idleness(idle, member) {
            Idleness::Active => self.wake_after(idle.stop_after.earliest()),
            Idleness::Unreadable(which) => {
                self.note(policy, Some(instance), || {
                    format!("not stopped: {} unreadable, counted active", which.join(", "))
                });
            }
            Idleness::IdleSince(since) => {
                let (keep, why) = self.keep_alive(policy, idle, member, since);
                let deadline = since + keep;
                if self.now < deadline {
                    self.wake(deadline);
                } else if spared {
                    let now = self.now;
                    let text = || {
                        format!(
                            "not stopped: idle for {} but on a prepaid {} term (stopping saves nothing)",
                            humane(now - since),
                            instance.cost.billing_type
                        )
                    };
                    self.note(policy, Some(instance), text);
                } else {
                    let reason = Reason::Idle { since, keep, tz: zone(policy), why };
                    self.propose(policy, instance, power_off(policy), Cause::Idle, reason);
                }
            }
        }
    }

    fn stopped(&mut self, policy: &'a Policy, member: &'a ObservedInstance) {
        let instance = &member.instance;
        if let Some(edge) = self.pending_edge(policy, instance, Edge::Start, false) {
            let reason = Reason::Schedule { start: true, edge, tz: zone(policy) };
            if let Some(cost) = self.start_allowed(policy, instance, &reason, "started") {
                self.propose_edge(policy, instance, ActionKind::PowerOn, reason, edge);
                self.commit(cost);
            }
            return;
        }
        let Some(idle) = &policy.idle else { return };
        if self.prewarm(policy, idle, member) {
            return;
        }
        let (Some(keep), Some(since)) = (idle.delete_after_stopped, member.stopped_since) else { return };
        let due = since + keep;
        if self.now < due {
            self.wake(due);
            return;
        }
        let saved = match &member.snapshot {
            SnapshotState::Succeeded { image, tag, .. } => Some(format!("snapshot {image}:{tag} saved")),
            _ if idle.delete_without_snapshot => None,
            _ => {
                let stopped_for = humane(self.now - since);
                return self.note(policy, Some(instance), || {
                    format!("not deleted: stopped for {stopped_for} but no snapshot is known to have succeeded")
                });
            }
        };
        let reason = Reason::Retention { since, keep, saved };
        self.propose(policy, instance, ActionKind::Delete, Cause::Retention, reason);
    }

    /// What starting `instance` adds per hour, when the budgets allow it;
    /// otherwise notes why it is not `done` and remembers the refusal.
    pub(super) fn start_allowed(
        &mut self,
        policy: &'a Policy,
        instance: &Instance,
        reason: &Reason,
        done: &str,
    ) -> Option<Money> {
        let cost = self.hourly_cost(instance);
        match self.room_for(policy, cost, false) {
            Ok(()) => Some(cost),
            Err(why) => {
                if let Some(recording) = self.recording.as_mut() {
                    recording.refused = Some(cost);
                }
                let now = self.now;
                self.note(policy, Some(instance), || format!("not {done}: {}; {why}", reason.render(now)));
                None
            }
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

    pub(super) fn propose_edge(
        &mut self,
        policy: &'a Policy,
        instance: &'a Instance,
        kind: ActionKind,
        reason: Reason,
        edge: DateTime<Utc>,
    ) {
        let before = self.draft.candidates.len();
        self.propose(policy, instance, kind, Cause::Schedule, reason);
        if let Some(candidate) = self.draft.candidates.get_mut(before) {
            candidate.schedule_edge = Some(edge);
        }
    }

    /// A moment in the policy's zone, for reasons people read.
    pub(super) fn local(&self, policy: &Policy, at: DateTime<Utc>) -> String {
        super::candidate::local(zone(policy), at)
    }
}

/// A power_off under the policy; the snapshot is named once the action is kept.
pub(super) fn power_off(policy: &Policy) -> ActionKind {
    let grace_period_seconds = policy.idle.as_ref().map_or(10, |i| i.grace_period_seconds);
    ActionKind::PowerOff(PowerOff { grace_period_seconds, snapshot: None })
}

/// The zone of the policy's schedule, for the moments in its reasons.
pub(super) fn zone(policy: &Policy) -> chrono_tz::Tz {
    policy.schedule.as_ref().map_or(crate::config::check::DEFAULT_TIMEZONE, |s| s.timezone)
}

/// Since when every signal of the rule says the instance is idle; `None`
/// when it is in use or a signal cannot be read.
pub fn idle_since(rule: &IdleRule, member: &ObservedInstance) -> Option<DateTime<Utc>> {
    match idleness(rule, member) {
        Idleness::IdleSince(since) => Some(since),
        Idleness::Active | Idleness::Unreadable(_) => None,
    }
}

/// The signal behind [`idleness`]'s verdict: the first in use, else the
/// first unreadable, else the last to go idle.
pub fn deciding_signal(rule: &IdleRule, member: &ObservedInstance) -> Option<&'static str> {
    let reading = |s: &crate::config::policy::Signal| member.signals.get(s.label());
    let labels = || rule.signals.iter();
    labels()
        .find(|s| reading(s) == Some(&Reading::Active))
        .or_else(|| labels().find(|s| matches!(reading(s), None | Some(Reading::Unreadable(_)))))
        .or_else(|| {
            labels().max_by_key(|s| match reading(s) {
                Some(Reading::IdleSince(t)) => Some(*t),
                _ => None,
            })
        })
        .map(|s| s.label())
}

/// Idle only when every configured signal says idle; a signal that cannot be
/// read, or was not read, counts as active.
pub fn idleness(rule: &IdleRule, member: &ObservedInstance) -> Idleness {
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
