//! The cloud as the last step saw it, with the ledger's facts and the
//! signals, kept between steps so a told step re-reads only what changed.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Utc};

use crate::cloud::Told;
use crate::plan::{self, Observed, ObservedInstance};

#[derive(Default)]
pub(super) struct Picture {
    pub(super) observed: Observed,
    /// Instance name → index in `observed.instances`.
    index: HashMap<String, usize>,
    /// The last observation was whole: a told step may build on it.
    pub(super) whole: bool,
    /// The ledger's facts could not be added to the instances last re-read:
    /// the next step re-reads all of them.
    pub(super) facts_missing: bool,
    /// What the planner keeps between told steps.
    pub(super) memo: plan::Memo,
}

impl Picture {
    /// A whole observation replaces the instances; what the daemon keeps
    /// itself (schedule marks) stays.
    pub(super) fn replace(&mut self, observed: Observed) {
        let marks = std::mem::take(&mut self.observed.schedule_marks);
        self.observed = Observed { schedule_marks: marks, ..observed };
        self.index = self.observed.instances.iter().enumerate().map(|(i, o)| (o.instance.name.clone(), i)).collect();
        self.whole = true;
    }

    /// Forgets the instances seen; the schedule marks stay.
    pub(super) fn release(&mut self) {
        let marks = std::mem::take(&mut self.observed.schedule_marks);
        *self = Picture::default();
        self.observed.schedule_marks = marks;
    }

    /// Applies changes to instances already in the picture; the indexes
    /// changed and those whose signals only may have, or `None` when an
    /// instance appeared or went (a whole observation then puts it in its place).
    pub(super) fn apply(&mut self, told: Told, listed: &BTreeSet<String>) -> Option<(Vec<usize>, Vec<usize>)> {
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

    pub(super) fn get(&self, name: &str) -> Option<&ObservedInstance> {
        self.index.get(name).map(|i| &self.observed.instances[*i])
    }

    pub(super) fn contains(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    /// The schedule edge acted on for this instance.
    pub(super) fn mark(&mut self, instance: &str, edge: DateTime<Utc>) {
        self.observed.schedule_marks.insert(instance.to_owned(), edge);
    }
}
