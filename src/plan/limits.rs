//! The last word on a plan: one action per instance, at most a share of a
//! policy's instances disrupted at once, and the per-cycle and per-hour
//! action limits, whatever the rules asked for. What is cut becomes a note.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Utc};

use super::{Action, Cause, Note, Observed};
use crate::cloud::InstanceStatus;
use crate::config::policy::Config;

pub(super) fn apply(
    mut candidates: Vec<Action>,
    observed: &Observed,
    config: &Config,
    owners: &[(usize, usize)],
    now: DateTime<Utc>,
    notes: &mut Vec<Note>,
) -> Vec<Action> {
    // Money first (budget stops, runaways, idle), then what serves people; within a cause,
    // the larger saving first. The sort is stable, so equal actions keep rule order.
    candidates.sort_by(|a, b| (a.cause, b.saving_per_hour).cmp(&(b.cause, a.saving_per_hour)));

    let mut disruptable = disruption_room(config, observed, owners);
    let recent = observed.recent_actions.iter().filter(|t| **t > now - Duration::hours(1) && **t <= now).count() as u32;
    let hourly_room = config.settings.limits.actions_per_hour.saturating_sub(recent);
    let room = config.settings.limits.actions_per_cycle.min(hourly_room);

    let mut seen = BTreeSet::new();
    let mut kept = Vec::new();
    for action in candidates {
        let key = (action.instance.cluster.clone(), action.instance.display_name.clone(), action.instance.name.clone());
        if !seen.insert(key) {
            continue;
        }
        let deferred = |why: String| Note {
            policy: Some(action.policy.clone()),
            instance: Some(action.instance.display_name.clone()),
            text: format!("deferred {} ({}): {why}", action.kind.label(), action.reason),
        };
        if action.kind.disrupts()
            && action.cause != Cause::Budget
            && let Some(left) = disruptable.get_mut(&action.policy)
        {
            if *left == 0 {
                notes.push(deferred("max_disrupted reached for the policy".into()));
                continue;
            }
            *left -= 1;
        }
        if kept.len() as u32 >= room {
            let why = if hourly_room < config.settings.limits.actions_per_cycle {
                format!("{} actions in the last hour (limit {})", recent, config.settings.limits.actions_per_hour)
            } else {
                format!("limit of {} actions per cycle", config.settings.limits.actions_per_cycle)
            };
            notes.push(deferred(why));
            continue;
        }
        kept.push(action);
    }
    kept
}

/// How many more of each policy's instances may be disrupted now: the share
/// allowed (at least one), less those already stopping or being deleted.
fn disruption_room(config: &Config, observed: &Observed, owners: &[(usize, usize)]) -> BTreeMap<String, u32> {
    config
        .policies
        .iter()
        .enumerate()
        .filter_map(|(index, policy)| {
            let share = policy.max_disrupted?;
            let members: Vec<_> =
                owners.iter().filter(|(_, p)| *p == index).map(|(i, _)| &observed.instances[*i].instance).collect();
            let allowed = ((members.len() as f64 * share).floor() as u32).max(1);
            let busy = members
                .iter()
                .filter(|i| matches!(i.status, InstanceStatus::Stopping | InstanceStatus::Deleting))
                .count();
            Some((policy.name.clone(), allowed.saturating_sub(busy as u32)))
        })
        .collect()
}
