//! The destructive-change guard, in the spirit of Cloud Custodian's
//! `max-resources`: a policy that is new (at start, or in a reload) or
//! edited is checked on the next whole picture; if it would newly stop or
//! delete more of the fleet than `settings.change_guard` allows, it acts on
//! nothing until someone confirms it (`mdc-autoscaler confirm`, or the
//! admin API). Otherwise it is accepted and acts at once. What was accepted
//! is kept in the ledger by a fingerprint of its rules, so a restart holds
//! only what changed while the daemon was down.

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
    /// Held policies, each with the fingerprint of the rules held.
    held: BTreeMap<String, (Held, String)>,
    /// Policies accepted, by fingerprint, not yet written to the ledger.
    accepted: Vec<(String, String)>,
}

impl Guard {
    /// At start every policy is new.
    pub(super) fn starting(config: &Config) -> Self {
        Guard { pending: config.policies.iter().map(|p| p.name.clone()).collect(), ..Guard::default() }
    }

    /// What the ledger has of earlier runs: a policy whose rules were
    /// accepted before is accepted again, pending or held since the start.
    pub(super) fn accepted_before(&mut self, config: &Config, before: &BTreeMap<String, String>) {
        let known = |name: &str| {
            let policy = config.policies.iter().find(|p| p.name == name);
            policy.is_some_and(|p| before.get(name).is_some_and(|f| *f == fingerprint(p)))
        };
        self.pending.retain(|name| !known(name));
        self.held.retain(|name, _| !known(name));
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
            let Some(rules) = config.policies.iter().find(|p| p.name == policy) else { continue };
            if count > allowed {
                let h = Held { policy: policy.clone(), newly_disrupted: count, fleet, allowed, since: now };
                self.held.insert(policy, (h.clone(), fingerprint(rules)));
                held.push(h);
            } else {
                self.accepted.push((policy, fingerprint(rules)));
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
        let Some((_, print)) = self.held.remove(policy) else { return false };
        self.accepted.push((policy.to_owned(), print));
        true
    }

    pub(super) fn held(&self) -> impl Iterator<Item = &Held> {
        self.held.values().map(|(h, _)| h)
    }

    /// The acceptances to write to the ledger; they are kept until written.
    pub(super) fn to_record(&self) -> &[(String, String)] {
        &self.accepted
    }

    pub(super) fn recorded(&mut self) {
        self.accepted.clear();
    }
}

/// Policies hold no secrets and print every field: equal prints, equal rules.
fn same_policy(a: &Policy, b: &Policy) -> bool {
    format!("{a:?}") == format!("{b:?}")
}

/// The rules of a policy as 16 hex digits: FNV-1a over its print, stable
/// across runs (a print that changes with an upgrade checks it once more).
fn fingerprint(policy: &Policy) -> String {
    let hash = format!("{policy:?}")
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3));
    format!("{hash:016x}")
}

#[cfg(test)]
mod tests {
    use super::fingerprint;
    use crate::config::load::load_str;

    const EXAMPLE: &str = include_str!("../../config/example.yaml");

    #[test]
    fn a_fingerprint_is_the_same_for_the_same_rules_and_changes_with_them() {
        let load = |text: &str| load_str("example", text).0.expect("the example loads");
        let (a, b) = (load(EXAMPLE), load(EXAMPLE));
        assert!(!a.policies.is_empty());
        for (a, b) in a.policies.iter().zip(&b.policies) {
            assert_eq!(fingerprint(a), fingerprint(b), "{}", a.name);
        }
        let edited = load(&EXAMPLE.replacen("display_name: \"nb-*\"", "display_name: \"nb-x*\"", 1));
        assert_ne!(fingerprint(&a.policies[0]), fingerprint(&edited.policies[0]));
    }
}
