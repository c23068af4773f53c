//! What the ledger tells the planner: spend so far, snoozes, heartbeats,
//! when instances stopped, which snapshots succeeded; and, for a daemon
//! starting, the schedule marks and the actions of the last hour. Read only.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Utc};

use super::records::Outcome;
use super::store::{LedgerError, Store};
use crate::config::policy::{Config, Signal};
use crate::money::Money;
use crate::plan::{ActionKind, Changed, Observed, PendingCreate, Reading, SnapshotState};

/// Adds the ledger's facts to an observation: to every instance, or to the
/// instances at `changed` (those re-read since the last observation, whose
/// facts were cleared) and any whose snapshot result just came in: those
/// are answered. Spend is left `None` (nothing is created) when the ledger
/// cannot be read; the error says why. Schedule marks and recent actions are the daemon's to
/// keep: see [`recent_action_times`].
pub async fn add_facts<S: Store>(
    ledger: &mut super::Ledger<S>,
    observed: &mut Observed,
    changed: Changed<'_>,
    config: &Config,
    now: DateTime<Utc>,
) -> Result<Vec<usize>, LedgerError> {
    observed.spend = None;
    let spend = ledger.spend_so_far(config, now).await?;
    let store = ledger.store();
    observed.snoozes = store.snoozes().await?;
    let heartbeats = store.heartbeats().await?;
    let updated = read_snapshots(ledger, now).await?;
    let snapshots = ledger.snapshots.as_ref();
    let mut extra = Vec::new();
    let indexes: Vec<usize> = match changed {
        Changed::These(changed) => {
            // A result usually comes in for an instance that changed (it stopped, or ran again).
            let among_changed = |name: &String| changed.iter().any(|i| observed.instances[*i].instance.name == *name);
            if !updated.iter().all(among_changed) {
                let named = observed.instances.iter().enumerate().filter(|(_, o)| updated.contains(&o.instance.name));
                extra.extend(named.map(|(i, _)| i).filter(|i| !changed.contains(i)));
            }
            changed.iter().chain(&extra).copied().collect()
        }
        Changed::All => (0..observed.instances.len()).collect(),
    };
    for index in indexes {
        let o = &mut observed.instances[index];
        let name = &o.instance.name;
        o.stopped_since = ledger.stopped_at(name);
        if let Some(snapshot) = snapshots.and_then(|s| s.get(name)) {
            o.snapshot = snapshot.clone();
        }
        let listens = config
            .owner(&o.instance)
            .and_then(|p| p.idle.as_ref())
            .is_some_and(|idle| idle.signals.contains(&Signal::Heartbeat));
        if listens {
            let reading = match heartbeats.get(name) {
                Some(at) => Reading::IdleSince(*at),
                None => Reading::Unreadable("no heartbeat yet".into()),
            };
            o.signals.insert("heartbeat".into(), reading);
        }
    }
    observed.habits = ledger.habits(config, now).await?;
    observed.spend = Some(spend);
    Ok(extra)
}

/// An action of the last hour, for the hourly limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Taken {
    pub at: DateTime<Utc>,
    pub delete: bool,
}

/// What an earlier run did lately, for a planner starting afresh.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Recent {
    /// The actions of the last hour (dry runs are not actions), one entry each.
    pub taken: Vec<Taken>,
    /// Its creates that may have gone through and may still be unlisted.
    pub creates: Vec<PendingCreate>,
}

/// What the ledger adds to a picture observed by one that does not record
/// it (`plan`, a standby): spend, marks, recent actions, creates not listed yet.
pub async fn read_facts<S: Store>(
    store: S,
    observed: &mut Observed,
    config: &Config,
    now: DateTime<Utc>,
) -> Result<(), LedgerError> {
    let mut ledger = super::Ledger::new(store);
    add_facts(&mut ledger, observed, Changed::All, config, now).await?;
    observed.schedule_marks = ledger.store().schedule_marks().await?;
    let recent = recent_actions(ledger.store(), now, config.settings.listing_delay).await?;
    tell_recent(observed, recent.taken.iter());
    observed.pending_creates = recent.creates.into_iter().filter(|p| !p.listed(&observed.instances)).collect();
    Ok(())
}

/// What the ledger has of the last hour's actions; its creates not listed
/// yet are those sent within `listing_delay`.
pub async fn recent_actions<S: Store>(
    store: &S,
    now: DateTime<Utc>,
    listing_delay: Duration,
) -> Result<Recent, LedgerError> {
    let recent = store.actions_between(now - Duration::hours(1), now + Duration::seconds(1)).await?;
    let real = || recent.iter().filter(|a| !a.dry_run);
    let taken = real().map(|a| Taken { at: a.planned_at, delete: a.kind == ActionKind::Delete.label() }).collect();
    let creates = real()
        .filter(|a| a.kind == "create" && !matches!(a.outcome, Some(Outcome::Failed | Outcome::Skipped)))
        .map(|a| PendingCreate {
            display_name: a.display_name.clone(),
            cluster: a.cluster.clone(),
            sent_at: a.planned_at,
            hourly: Money::ZERO - a.saving_per_hour,
        })
        .filter(|p| p.holds(now, listing_delay))
        .collect();
    Ok(Recent { taken, creates })
}

/// Tells the planner of actions taken: all of them, and the deletes.
pub fn tell_recent<'a>(observed: &mut Observed, taken: impl Iterator<Item = &'a Taken>) {
    observed.recent_actions.clear();
    observed.recent_deletes.clear();
    for t in taken {
        observed.recent_actions.push(t.at);
        if t.delete {
            observed.recent_deletes.push(t.at);
        }
    }
}

/// The latest finished power_off with a snapshot per instance: 30 days
/// read from the store once, then kept up to date by the daemon as its own
/// snapshot power_offs end ([`super::Ledger::snapshot_settled`]). Answers
/// the instances whose latest result changed since the last call.
async fn read_snapshots<S: Store>(
    ledger: &mut super::Ledger<S>,
    now: DateTime<Utc>,
) -> Result<BTreeSet<String>, LedgerError> {
    if ledger.snapshots.is_some() {
        return Ok(std::mem::take(&mut ledger.fresh_snapshots));
    }
    let actions = ledger.store().actions_between(now - Duration::days(30), now + Duration::seconds(1)).await?;
    let mut latest = BTreeMap::new();
    for a in actions.iter().filter(|a| a.kind == "power_off" && !a.dry_run) {
        let (Some((image, tag)), Some(outcome)) = (&a.snapshot, a.outcome) else { continue };
        let at = a.finished_at.unwrap_or(a.planned_at);
        let state = match outcome {
            Outcome::Done => SnapshotState::Succeeded { image: image.clone(), tag: tag.clone(), at },
            Outcome::Failed => SnapshotState::Failed { at },
            Outcome::Unknown | Outcome::Skipped => continue,
        };
        latest.insert(a.instance.clone(), state);
    }
    let mut updated: BTreeSet<String> = latest.keys().cloned().collect();
    updated.append(&mut ledger.fresh_snapshots);
    ledger.snapshots = Some(latest);
    Ok(updated)
}
