//! The last word on a plan: one action per instance, at most a share of a
//! policy's instances disrupted at once, and the per-cycle and per-hour
//! action limits, whatever the rules asked for. What is cut becomes a note,
//! and the plan asks to be made again when a limit leaves room.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashSet};

use chrono::{DateTime, Duration, Utc};

use super::candidate::Candidate;
use super::{Action, ActionKind, Cause, Detail, Note, Observed};
use crate::cloud::InstanceStatus;
use crate::config::policy::Config;
use crate::money::Money;

pub(super) fn apply<'a>(
    candidates: Vec<Candidate<'a>>,
    observed: &Observed,
    config: &Config,
    members: &[Vec<usize>],
    now: DateTime<Utc>,
    notes: &mut Vec<Note>,
    detail: Detail,
) -> (Vec<Action>, Option<DateTime<Utc>>) {
    let candidates = in_order(candidates, detail);

    let mut disruptable = disruption_room(config, observed, members);
    let recent = observed.recent_actions.iter().filter(|t| **t > now - Duration::hours(1) && **t <= now).count() as u32;
    let hourly_room = config.settings.limits.actions_per_hour.saturating_sub(recent);
    let room = config.settings.limits.actions_per_cycle.min(hourly_room);
    let hour = |t: &&DateTime<Utc>| **t > now - Duration::hours(1) && **t <= now;
    let recent_deletes = observed.recent_deletes.iter().filter(hour).count() as u32;
    let mut delete_room = config.settings.limits.deletes_per_hour.saturating_sub(recent_deletes);
    let mut deletes_limited = false;

    let mut seen = HashSet::new();
    let mut kept = Vec::new();
    let mut limited = false;
    let mut deferred_per_policy: BTreeMap<&str, usize> = BTreeMap::new();
    let mut defer = |action: &Candidate<'a>, why: &dyn Fn() -> String, notes: &mut Vec<Note>| {
        let count = deferred_per_policy.entry(action.policy.name.as_str()).or_default();
        *count += 1;
        if *count <= DEFERRED_NOTES_PER_POLICY && detail == Detail::Full {
            notes.push(Note {
                policy: Some(action.policy.name.clone()),
                instance: Some(action.display_name().to_owned()),
                text: format!("deferred {} ({}): {}", action.kind.label(), action.reason.render(now), why()),
            });
        }
    };
    // Stops credit their savings to the budget checks of starts and creates in
    // the same plan; when a limit cuts a stop, the spending it paid for waits too.
    let global_budget = config.settings.budget.is_some();
    let mut short: BTreeSet<&str> = BTreeSet::new();
    for action in candidates {
        if !seen.insert(action.identity()) {
            continue;
        }
        let policy = action.policy.name.as_str();
        let spends = matches!(action.kind, ActionKind::PowerOn | ActionKind::Create { .. });
        if spends && (short.contains(policy) || (global_budget && !short.is_empty())) {
            defer(&action, &|| "waits for stops a limit deferred".into(), notes);
            continue;
        }
        if action.kind.disrupts()
            && action.cause != Cause::Budget
            && let Some(left) = disruptable.get_mut(policy)
        {
            if *left == 0 {
                defer(&action, &|| "max_disrupted reached for the policy".into(), notes);
                short.insert(policy);
                continue;
            }
            *left -= 1;
        }
        let delete = matches!(action.kind, ActionKind::Delete);
        if delete && delete_room == 0 {
            deletes_limited = true;
            let limit = config.settings.limits.deletes_per_hour;
            defer(&action, &|| format!("{recent_deletes} deletes in the last hour (limit {limit})"), notes);
            short.insert(policy);
            continue;
        }
        if kept.len() as u32 >= room {
            limited = true;
            if detail == Detail::Decisions {
                // Whatever follows is deferred too, and nobody reads why.
                break;
            }
            let limits = config.settings.limits;
            let why = || {
                if hourly_room < limits.actions_per_cycle {
                    format!("{recent} actions in the last hour (limit {})", limits.actions_per_hour)
                } else {
                    format!("limit of {} actions per cycle", limits.actions_per_cycle)
                }
            };
            defer(&action, &why, notes);
            if action.kind.disrupts() {
                short.insert(policy);
            }
            continue;
        }
        if delete {
            delete_room -= 1;
        }
        kept.push(action.into_action(now));
    }
    for (policy, count) in deferred_per_policy {
        if count > DEFERRED_NOTES_PER_POLICY && detail == Detail::Full {
            notes.push(Note {
                policy: Some(policy.to_owned()),
                instance: None,
                text: format!("and {} more actions deferred by limits", count - DEFERRED_NOTES_PER_POLICY),
            });
        }
    }
    // Nothing deferred goes before the actions' window has room; a delete
    // deferred alone waits for the deletes' window.
    let limits = config.settings.limits;
    let retry = if limited {
        Some(retry_at(&observed.recent_actions, kept.len(), limits.actions_per_hour, config, now))
    } else if deletes_limited {
        let taken_deletes = kept.iter().filter(|a| matches!(a.kind, ActionKind::Delete)).count();
        Some(retry_at(&observed.recent_deletes, taken_deletes, limits.deletes_per_hour, config, now))
    } else {
        None
    };
    (kept, retry)
}

/// When actions cut by the limits can be taken: the next cycle, or later
/// when an hourly `limit` is full, once enough of the last hour's actions of
/// its kind (this plan's `taken_now` included) have left the window.
/// Actions cut by `max_disrupted` wait for an instance to settle, which the
/// next observation shows.
fn retry_at(
    recent: &[DateTime<Utc>],
    taken_now: usize,
    limit: u32,
    config: &Config,
    now: DateTime<Utc>,
) -> DateTime<Utc> {
    let next_cycle = now + config.settings.interval;
    let mut window: Vec<DateTime<Utc>> =
        recent.iter().copied().filter(|t| *t > now - Duration::hours(1) && *t <= now).collect();
    window.extend(std::iter::repeat_n(now, taken_now));
    window.sort();
    // With a limit of zero nothing ever leaves room: look again next cycle.
    let over = window.len().checked_sub(limit as usize).and_then(|over| window.get(over));
    over.map_or(next_cycle, |t| *t + Duration::hours(1)).max(next_cycle)
}

/// Money first (budget stops, runaways, idle), then what serves people;
/// within a cause, the larger saving first; equal actions keep rule order.
/// Without notes only the first few are taken: they are drawn from a heap
/// rather than sorting all.
fn in_order<'a>(mut candidates: Vec<Candidate<'a>>, detail: Detail) -> Box<dyn Iterator<Item = Candidate<'a>> + 'a> {
    if detail == Detail::Full {
        candidates.sort_by(|a, b| (a.cause, b.saving_per_hour).cmp(&(b.cause, a.saving_per_hour)));
        return Box::new(candidates.into_iter());
    }
    let mut heap: BinaryHeap<Reverse<(Cause, Reverse<Money>, usize)>> =
        candidates.iter().enumerate().map(|(index, c)| Reverse((c.cause, Reverse(c.saving_per_hour), index))).collect();
    let mut slots: Vec<Option<Candidate<'a>>> = candidates.into_iter().map(Some).collect();
    Box::new(std::iter::from_fn(move || heap.pop().and_then(|Reverse((_, _, index))| slots[index].take())))
}

/// Deferred actions named one by one per policy; the rest are counted.
const DEFERRED_NOTES_PER_POLICY: usize = 10;

/// How many more of each policy's instances may be disrupted now: the share
/// allowed (at least one), less those already stopping or being deleted.
fn disruption_room(config: &Config, observed: &Observed, members: &[Vec<usize>]) -> BTreeMap<String, u32> {
    config
        .policies
        .iter()
        .zip(members)
        .map(|(policy, members)| {
            let allowed = policy.max_disrupted.allowed(members.len());
            let busy = members
                .iter()
                .filter(|i| {
                    matches!(
                        observed.instances[**i].instance.status,
                        InstanceStatus::Stopping | InstanceStatus::Deleting
                    )
                })
                .count();
            (policy.name.clone(), allowed.saturating_sub(busy as u32))
        })
        .collect()
}
