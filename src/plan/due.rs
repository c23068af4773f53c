//! Stops that come due at a moment rather than for idleness: a schedule's
//! stop edge, `max_runtime`, a budget's `stop`, a pool shrinking (its desired
//! count falling, or a discount window closing on `only_during_discount`).
//! None of them powers off work in use: each waits until every signal has
//! said idle for `due_stops.when_idle_for`, and a signal that cannot be read
//! counts as in use. A policy opts out per cause, in so many words, with
//! `due_stops.hard`.

use chrono::DateTime;
use chrono::Utc;

use super::candidate::Reason;
use super::instance::{Idleness, idleness, power_off};
use super::observed::ObservedInstance;
use super::{Cause, Planner, humane};
use crate::config::policy::{HardStop, Policy};

impl<'a> Planner<'a> {
    /// Proposes the power_off a due stop asks for, or notes why it waits.
    pub(super) fn due_stop(
        &mut self,
        policy: &'a Policy,
        member: &'a ObservedInstance,
        stop: HardStop,
        cause: Cause,
        reason: Reason,
        edge: Option<DateTime<Utc>>,
    ) {
        let instance = &member.instance;
        // Without signals nothing can tell work in use (`validate` warns of it).
        if let (false, Some(idle)) = (policy.due_stops.hard.contains(&stop), &policy.idle) {
            let wait = policy.due_stops.when_idle_for;
            let now = self.now;
            let held = match idleness(idle, member) {
                Idleness::IdleSince(since) if now - since >= wait => None,
                Idleness::IdleSince(since) => {
                    self.wake(since + wait);
                    Some(format!(
                        "idle since {}; stops at {}",
                        self.local(policy, since),
                        self.local(policy, since + wait)
                    ))
                }
                Idleness::Active => Some(format!("in use; will stop once idle for {}", humane(wait))),
                Idleness::Unreadable(which) => Some(format!(
                    "{} unreadable, counted in use; will stop once idle for {}",
                    which.join(", "),
                    humane(wait)
                )),
            };
            if let Some(held) = held {
                self.draft.watch.push(instance.name.clone());
                self.note(policy, Some(instance), || format!("due to stop: {}; {held}", reason.render(now)));
                return;
            }
        }
        match edge {
            Some(edge) => self.propose_edge(policy, instance, power_off(policy), reason, edge),
            None => self.propose(policy, instance, power_off(policy), cause, reason),
        }
    }
}
