//! What the planner may keep from one plan to the next when it is told which
//! instances changed (`simulate`): each instance's policy, and what the
//! rules made of it. An instance whose inputs have not changed and whose own
//! next moment has not come gets the same verdict again, so a plan costs
//! little more than its changes. A verdict that marked a schedule edge, or
//! that the budgets let spend, depends on more than the instance and is not
//! kept; one the budgets refused holds only while they still refuse.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};

use super::candidate::Reason;
use super::{ActionKind, Cause, Edges};
use crate::money::Money;

#[derive(Default)]
pub struct Memo {
    /// Per instance, the index of the policy that owns it.
    pub(super) owners: Vec<Option<usize>>,
    pub(super) verdicts: Vec<Option<Verdict>>,
    /// Per policy, its schedule's edges and its pool's desired count.
    pub(super) calendars: Vec<Calendar>,
    /// What every verdict assumed: the snoozes, and the price in force per SKU.
    pub(super) snoozes: BTreeMap<String, DateTime<Utc>>,
    pub(super) prices: Vec<(String, Money)>,
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
}

/// The wakes asked for while one instance is looked at.
#[derive(Default)]
pub(super) struct Recording {
    pub at: Option<DateTime<Utc>>,
    pub after: Option<Duration>,
    pub refused: Option<Money>,
}
