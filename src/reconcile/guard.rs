//! The destructive-change guard, in the spirit of Cloud Custodian's
//! `max-resources`: a policy that is new (at start, or in a reload) or
//! edited is checked on the next whole picture; if it would newly stop or
//! delete more of the fleet than `settings.change_guard` allows, it acts on
//! nothing until someone confirms it (`mdc-autoscaler confirm`, or the
//! admin API). Otherwise it is accepted and acts at once.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::config::policy::{Config, Policy};
use crate::plan::Observed;
use crate::plan::guard::newly_disrupted;

/// A policy held by the guard.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Held {
    pub policy: String,
    /// Instances it would newly stop or delete.
    pub newly_disrupted: usize,
    pub fleet: usize,
    /// What the guard allows without confirmation, for this fleet.
    pub allowed: usize,
    pub since: DateTime<Utc>,
}

#[derive(Debug, Default)]
pub(super) struct Guard {
    /// New or edited policies not checked yet.
    pending: BTreeSet<String>,
    /// The config they replace; none at start, when nothing ran before.
    replaced: Option<Config>,
    held: BTreeMap<String, Held>,
}

impl Guard {
    /// At start every policy is new.
    pub(super) fn starting(config: &Config) -> Self {
        Guard { pending: config.policies.iter().map(|p| p.name.clone()).collect(), ..Guard::default() }
    }

    /// A reload: policies added or edited are checked again; the old config
    /// is what they are compared with (the one before any still unchecked).
    pub(super) fn changed(&mut self, old: &Config, new: &Config) {
        let same = |p: &Policy| old.policies.iter().any(|o| o.name == p.name && same_policy(o, p));
        let changed: Vec<String> = new.policies.iter().filter(|p| !same(p)).map(|p| p.name.clone()).collect();
        if self.pending.is_empty() {
            self.replaced = Some(old.clone());
        }
        for name in &changed {
            self.held.remove(name);
        }
        self.held.retain(|name, _| new.policies.iter().any(|p| &p.name == name));
        self.pending.retain(|name| new.policies.iter().any(|p| &p.name == name));
        self.pending.extend(changed);
    }

    /// Checks the pending policies on a whole picture; answers those held now.
    pub(super) fn check(&mut self, observed: &Observed, config: &Config, now: DateTime<Utc>) -> Vec<Held> {
        if self.pending.is_empty() {
            return Vec::new();
        }
        let newly = newly_disrupted(observed, self.replaced.as_ref(), config, &self.pending, now);
        let fleet = observed.instances.len();
        let allowed = config.settings.change_guard.allowed(fleet);
        let mut held = Vec::new();
        for (policy, count) in newly {
            if count > allowed {
                let h = Held { policy: policy.clone(), newly_disrupted: count, fleet, allowed, since: now };
                self.held.insert(policy, h.clone());
                held.push(h);
            }
        }
        self.pending.clear();
        self.replaced = None;
        held
    }

    pub(super) fn holds(&self, policy: &str) -> bool {
        self.held.contains_key(policy)
    }

    /// Lets a held policy act; false when it was not held.
    pub(super) fn confirm(&mut self, policy: &str) -> bool {
        self.held.remove(policy).is_some()
    }

    pub(super) fn held(&self) -> impl Iterator<Item = &Held> {
        self.held.values()
    }
}

/// Policies hold no secrets and print every field: equal prints, equal rules.
fn same_policy(a: &Policy, b: &Policy) -> bool {
    format!("{a:?}") == format!("{b:?}")
}
