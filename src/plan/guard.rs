//! The change guard's arithmetic: how many instances a new or edited policy
//! would newly stop or delete, judged on the same picture against the
//! policy it replaces, with no limit holding anything back (the limits pace
//! a mass stop; they do not prevent one).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

use super::{Detail, Observed, plan_with};
use crate::config::policy::{Config, Limits, MaxDisrupted};

/// Per policy named in `changed`: the instances `new` would stop or delete
/// now that `old` (none at start) would not.
pub fn newly_disrupted(
    observed: &Observed,
    old: Option<&Config>,
    new: &Config,
    changed: &BTreeSet<String>,
    now: DateTime<Utc>,
) -> BTreeMap<String, usize> {
    let before = old.map(|old| disrupted(observed, old, now)).unwrap_or_default();
    let mut newly: BTreeMap<String, usize> = changed.iter().map(|p| (p.clone(), 0)).collect();
    for (policy, instance) in disrupted(observed, new, now) {
        let was = before.iter().any(|(_, i)| *i == instance);
        if let Some(count) = newly.get_mut(&policy)
            && !was
        {
            *count += 1;
        }
    }
    newly
}

/// (policy, instance) of every stop and delete the config plans now, unlimited.
fn disrupted(observed: &Observed, config: &Config, now: DateTime<Utc>) -> BTreeSet<(String, String)> {
    let mut unlimited = config.clone();
    unlimited.settings.limits =
        Limits { actions_per_cycle: u32::MAX, actions_per_hour: u32::MAX, deletes_per_hour: u32::MAX };
    for policy in &mut unlimited.policies {
        policy.max_disrupted = MaxDisrupted::share(1.0);
    }
    plan_with(observed, &unlimited, now, Detail::Decisions)
        .actions
        .into_iter()
        .filter(|a| a.kind.disrupts())
        .map(|a| (a.policy, a.instance.name))
        .collect()
}
