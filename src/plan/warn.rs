//! Warn before acting (`notify.warn_before`). A stop or delete a policy
//! announces waits until its warning was delivered that long ago. The
//! planner looks ahead by the lead, so that a warning goes out before its
//! action comes due and the action keeps its moment; what the look ahead
//! could not foresee (a budget running out) is held at its due time and
//! warned then. A warning queued and not delivered in time holds a delete
//! for good (never deleted unannounced) but not a stop: money wins, and
//! the action says it went unannounced.

use chrono::{DateTime, Duration, DurationRound, Utc};

use super::candidate::{Candidate, Reason, Target, local};
use super::instance::zone;
use super::{ActionKind, Cause, Detail, Note, Observed, Warning, WarningKey, earliest};
use crate::cloud::Instance;
use crate::config::notify::Warned;
use crate::config::policy::Config;

/// Whether a plan holds actions for their warnings, or looks ahead for the warnings due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Mode {
    /// Hold each announced action until its warning is old enough.
    Gate,
    /// A plan made `lead` ahead of now: what it would do is warned now.
    Ahead { now: DateTime<Utc>, lead: Duration },
}

/// What a warning is for, and how long before.
pub(super) fn lead(candidate: &Candidate<'_>) -> Option<(Warned, Duration)> {
    let notify = candidate.policy.notify.as_ref()?;
    let warned = warned(&candidate.kind, candidate.cause)?;
    notify.warn_before.get(&warned).map(|lead| (warned, *lead))
}

/// The `warn_before` key of an action, for the actions warned of.
pub fn warned(kind: &ActionKind, cause: Cause) -> Option<Warned> {
    match (kind, cause) {
        (ActionKind::Delete, _) => Some(Warned::Delete),
        (ActionKind::PowerOff(_), Cause::Idle) => Some(Warned::Idle),
        (ActionKind::PowerOff(_), Cause::Schedule) => Some(Warned::Schedule),
        (ActionKind::PowerOff(_), Cause::Runaway) => Some(Warned::MaxRuntime),
        (ActionKind::PowerOff(_), Cause::Budget) => Some(Warned::Budget),
        (ActionKind::PowerOff(_), Cause::ScaleDown) => Some(Warned::ScaleDown),
        _ => None,
    }
}

/// The leads to look ahead by: each one written in a policy.
pub(super) fn leads(config: &Config) -> Vec<Duration> {
    let mut leads: Vec<Duration> = config
        .policies
        .iter()
        .filter_map(|p| p.notify.as_ref())
        .flat_map(|n| n.warn_before.values().copied())
        .collect();
    leads.sort();
    leads.dedup();
    leads
}

/// Holds the announced candidates whose warning is not old enough (Gate),
/// or turns those a plan ahead would act on into warnings (Ahead).
pub(super) fn apply<'a>(
    candidates: Vec<Candidate<'a>>,
    observed: &Observed,
    now: DateTime<Utc>,
    mode: Mode,
    out: &mut Outcome,
    detail: Detail,
) -> Vec<Candidate<'a>> {
    let mut kept = Vec::with_capacity(candidates.len());
    for mut candidate in candidates {
        let Some((_, lead)) = lead(&candidate) else {
            kept.push(candidate);
            continue;
        };
        let Target::Instance(instance) = candidate.target else {
            kept.push(candidate);
            continue;
        };
        let key = key(&candidate, instance, observed, now);
        match mode {
            Mode::Ahead { now: real_now, lead: ahead } => {
                if lead == ahead && !observed.warned.contains_key(&key) {
                    let due = due(&candidate.reason).unwrap_or(now).clamp(real_now, now);
                    out.warnings.push(warning(&candidate, instance, key, due, now));
                }
                kept.push(candidate);
            }
            Mode::Gate => {
                let at = |t: DateTime<Utc>| local(zone(candidate.policy), t);
                let hold = |out: &mut Outcome, until: Option<DateTime<Utc>>, why: String| {
                    if let Some(until) = until {
                        earliest(&mut out.next_check, until);
                    }
                    if detail == Detail::Full {
                        out.notes.push(Note {
                            policy: Some(candidate.policy.name.clone()),
                            instance: Some(instance.display_name.clone()),
                            text: format!("{} waits for its warning: {why}", candidate.kind.label()),
                        });
                    }
                };
                match observed.warned.get(&key) {
                    Some(sent) => match sent.delivered_at {
                        Some(delivered) if now >= delivered + lead => kept.push(candidate),
                        Some(delivered) => hold(
                            out,
                            Some(delivered + lead),
                            format!("delivered at {}, acts at {}", at(delivered), at(delivered + lead)),
                        ),
                        None if !matches!(candidate.kind, ActionKind::Delete) && now >= sent.queued_at + lead => {
                            candidate.unannounced = true;
                            kept.push(candidate);
                        }
                        None if matches!(candidate.kind, ActionKind::Delete) => {
                            hold(out, None, "not delivered yet; nothing is deleted unannounced".into())
                        }
                        None => hold(
                            out,
                            Some(sent.queued_at + lead),
                            format!("not delivered yet; stops unannounced at {}", at(sent.queued_at + lead)),
                        ),
                    },
                    None => {
                        out.warnings.push(warning(&candidate, instance, key, now + lead, now));
                        hold(out, Some(now + lead), format!("warned now, acts at {} at the earliest", at(now + lead)));
                    }
                }
            }
        }
    }
    kept
}

/// What the warnings step adds to a plan.
#[derive(Default)]
pub(super) struct Outcome {
    pub warnings: Vec<Warning>,
    pub notes: Vec<Note>,
    pub next_check: Option<DateTime<Utc>>,
}

fn warning(
    candidate: &Candidate<'_>,
    instance: &Instance,
    key: WarningKey,
    act_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Warning {
    let snapshot = matches!(candidate.kind, ActionKind::PowerOff(_))
        && candidate.policy.idle.as_ref().is_some_and(|i| i.snapshot.is_some());
    Warning {
        policy: candidate.policy.name.clone(),
        instance: super::InstanceRef {
            name: instance.name.clone(),
            display_name: instance.display_name.clone(),
            cluster: instance.cluster.clone(),
        },
        key,
        cause: candidate.cause,
        act_at,
        reason: candidate.reason.render(now),
        snapshot,
        saving_per_hour: candidate.saving_per_hour,
    }
}

/// When a candidate comes due, where its reason tells.
fn due(reason: &Reason) -> Option<DateTime<Utc>> {
    match reason {
        Reason::Idle { since, keep, .. } | Reason::Retention { since, keep, .. } => Some(*since + *keep),
        Reason::Runaway { since, max } => Some(*since + *max),
        Reason::Schedule { edge, .. } => Some(*edge),
        Reason::Text(_) | Reason::Prewarm { .. } => None,
    }
}

/// The warning a candidate needs: its occasion is when the state it acts on
/// began (idle since, the edge, stopped since, running since), or a snooze
/// ending after that, so a fresh idle spell or an ended snooze is warned anew.
fn key(candidate: &Candidate<'_>, instance: &Instance, observed: &Observed, now: DateTime<Utc>) -> WarningKey {
    let began = match &candidate.reason {
        Reason::Idle { since, .. } | Reason::Runaway { since, .. } | Reason::Retention { since, .. } => Some(*since),
        Reason::Schedule { edge, .. } => Some(*edge),
        Reason::Text(_) | Reason::Prewarm { .. } => {
            observed.instances.iter().find(|o| o.instance.name == instance.name).and_then(|o| match candidate.kind {
                ActionKind::Delete => o.stopped_since.or(o.running_since),
                _ => o.running_since,
            })
        }
    };
    let began = began.unwrap_or_else(|| now.duration_trunc(Duration::days(1)).unwrap_or(now));
    let snooze_ended = observed.snoozes.get(&instance.name).filter(|until| **until <= now);
    let occasion = snooze_ended.map_or(began, |until| began.max(*until));
    WarningKey {
        instance: instance.name.clone(),
        action: candidate.kind.label().to_owned(),
        // Stored to the second, so the key read back is the key written.
        occasion: occasion.duration_trunc(Duration::seconds(1)).unwrap_or(occasion),
    }
}
