//! What the planner may keep from one plan to the next when it is told which
//! instances changed (`simulate`): each instance's policy, and what the
//! rules made of it. An instance whose inputs have not changed and whose own
//! next moment has not come gets the same verdict again, so a plan costs
//! little more than its changes. A verdict that marked a schedule edge, or
//! that the budgets let spend, depends on more than the instance and is not
//! kept; one the budgets refused holds only while they still refuse.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Utc};

use super::candidate::Reason;
use super::{ActionKind, Cause, Edges};
use crate::money::Money;

#[derive(Default)]
pub struct Memo {
    /// Per instance, the index of the policy that owns it.
    pub(super) owners: Vec<Option<usize>>,
    pub(super) verdicts: Verdicts,
    /// Per policy, its schedule's edges and its pool's desired count.
    pub(super) calendars: Vec<Calendar>,
    /// Per instance, what it costs an hour running, at the prices below.
    pub(super) costs: Vec<Option<Money>>,
    /// What every verdict assumed: the snoozes, the price in force and the
    /// scarcity of GPUs per SKU, and what was learned as of when.
    pub(super) snoozes: BTreeMap<String, DateTime<Utc>>,
    pub(super) prices: Vec<(String, Money, u8)>,
    pub(super) learned: Option<DateTime<Utc>>,
}

/// What a policy's crons say, from a moment until the next one fires.
#[derive(Clone, Default)]
pub(super) struct Calendar {
    pub edges: Option<Known<Edges>>,
    pub desired: Option<Known<(u32, Option<DateTime<Utc>>)>>,
}

/// A value true from `from` until `until` (for good when `None`).
#[derive(Clone)]
pub(super) struct Known<T> {
    pub value: T,
    pub from: DateTime<Utc>,
    pub until: Option<DateTime<Utc>>,
}

impl<T: Clone> Known<T> {
    pub fn at(known: &Option<Self>, now: DateTime<Utc>) -> Option<T> {
        known.as_ref().filter(|k| k.from <= now && k.until.is_none_or(|u| now < u)).map(|k| k.value.clone())
    }
}

/// What the rules made of one instance.
#[derive(Clone)]
pub(super) struct Verdict {
    pub proposals: Vec<Proposal>,
    /// Spend per hour the proposals committed (a stop frees budget).
    pub committed: Money,
    /// A due stop waits for the instance to go idle: its signals are watched.
    pub watch: bool,
    /// When to look again: at a moment, and a while after now.
    pub at: Option<DateTime<Utc>>,
    pub after: Option<Duration>,
    /// The spend per hour the budgets refused to start.
    pub refused: Option<Money>,
}

#[derive(Clone)]
pub(super) struct Proposal {
    pub kind: ActionKind,
    pub cause: Cause,
    pub reason: Reason,
    pub saving_per_hour: Money,
    pub schedule_edge: Option<DateTime<Utc>>,
}

impl Verdict {
    /// Still true at `now`: its next moment has not come.
    pub fn holds(&self, now: DateTime<Utc>) -> bool {
        self.at.is_none_or(|at| now < at)
    }

    /// Asks for nothing but to be looked at again.
    fn quiet(&self) -> bool {
        self.proposals.is_empty() && self.committed == Money::ZERO && self.refused.is_none() && !self.watch
    }
}

/// The verdicts by instance. The quiet ones are also indexed by when they
/// end, so a plan passes over them without a look and takes their wakes
/// from the index.
#[derive(Default)]
pub(super) struct Verdicts {
    list: Vec<Option<Verdict>>,
    quiet: Vec<bool>,
    quiet_at: BTreeSet<(DateTime<Utc>, usize)>,
    quiet_after: BTreeMap<Duration, usize>,
}

impl Verdicts {
    pub fn new(count: usize) -> Self {
        Verdicts { list: vec![None; count], quiet: vec![false; count], ..Verdicts::default() }
    }

    pub fn is_quiet(&self, index: usize) -> bool {
        self.quiet[index]
    }

    pub fn take(&mut self, index: usize) -> Option<Verdict> {
        let verdict = self.list[index].take()?;
        if std::mem::take(&mut self.quiet[index]) {
            if let Some(at) = verdict.at {
                self.quiet_at.remove(&(at, index));
            }
            if let Some(after) = verdict.after
                && let Some(count) = self.quiet_after.get_mut(&after)
            {
                *count -= 1;
                if *count == 0 {
                    self.quiet_after.remove(&after);
                }
            }
        }
        Some(verdict)
    }

    pub fn put(&mut self, index: usize, verdict: Option<Verdict>) {
        self.take(index);
        if let Some(verdict) = &verdict
            && verdict.quiet()
        {
            self.quiet[index] = true;
            if let Some(at) = verdict.at {
                self.quiet_at.insert((at, index));
            }
            if let Some(after) = verdict.after {
                *self.quiet_after.entry(after).or_default() += 1;
            }
        }
        self.list[index] = verdict;
    }

    /// Forgets the quiet verdicts whose moment has come.
    pub fn expire(&mut self, now: DateTime<Utc>) {
        while let Some(&(_, index)) = self.quiet_at.first().filter(|(at, _)| *at <= now) {
            self.take(index);
        }
    }

    /// The earliest moment, and the shortest while from now, the quiet verdicts ask to be looked at again.
    pub fn quiet_wakes(&self) -> (Option<DateTime<Utc>>, Option<Duration>) {
        (self.quiet_at.first().map(|(at, _)| *at), self.quiet_after.keys().next().copied())
    }
}

/// The wakes asked for while one instance is looked at.
#[derive(Default)]
pub(super) struct Recording {
    pub at: Option<DateTime<Utc>>,
    pub after: Option<Duration>,
    pub refused: Option<Money>,
}
