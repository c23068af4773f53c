//! The record of use: when each managed instance was in use, as its idle
//! signals tell, kept as spans for `trace export`. A span opens at the first
//! look that sees the instance in use, or at its start when someone started
//! it since the last observation; it closes at the last activity the signals
//! report once they say idle, or when the instance is seen no longer running.
//! Activity that begins and ends between two readings of a signal is not
//! seen, and a start is as late as the reading period (`stop_after -
//! interval` for Jupyter and Prometheus, every cycle near a deadline).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::records::UseSpan;
use crate::cloud::InstanceStatus;
use crate::config::policy::Config;
use crate::plan::{Idleness, ObservedInstance, idleness};

/// What a look at one instance says of its use.
#[derive(Clone, Debug, PartialEq)]
pub struct Look<'a> {
    pub instance: &'a str,
    pub display_name: &'a str,
    pub policy: &'a str,
    pub usage: Usage,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Usage {
    /// In use now; its server (re)started then, when known.
    InUse {
        running_since: Option<DateTime<Utc>>,
    },
    IdleSince(DateTime<Utc>),
    /// A signal could not be read: nothing changes.
    Unknown,
    /// Not running.
    Off,
}

/// The look at every managed instance with idle signals among `instances`.
pub fn looks<'a>(instances: impl Iterator<Item = &'a ObservedInstance>, config: &'a Config) -> Vec<Look<'a>> {
    instances
        .filter_map(|o| {
            let policy = config.owner(&o.instance)?;
            let rule = policy.idle.as_ref()?;
            let usage = match (&o.instance.status, idleness(rule, o)) {
                (InstanceStatus::Running, Idleness::Active) => Usage::InUse { running_since: o.running_since },
                (InstanceStatus::Running, Idleness::IdleSince(since)) => Usage::IdleSince(since),
                (InstanceStatus::Running, Idleness::Unreadable(_)) => Usage::Unknown,
                (InstanceStatus::Stopping | InstanceStatus::Stopped | InstanceStatus::Deleting, _) => Usage::Off,
                _ => Usage::Unknown,
            };
            Some(Look {
                instance: &o.instance.name,
                display_name: &o.instance.display_name,
                policy: &policy.name,
                usage,
            })
        })
        .collect()
}

/// The spans to close and to open after these looks at `now`, the previous
/// observation having been at `last`. When the looks cover every managed
/// instance (`whole`), a span of an instance no longer among them closes.
pub fn changes(
    open: &BTreeMap<String, UseSpan>,
    looks: &[Look<'_>],
    whole: bool,
    last: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> (Vec<UseSpan>, Vec<UseSpan>) {
    let (mut close, mut opened) = (Vec::new(), Vec::new());
    if whole {
        let seen: std::collections::BTreeSet<&str> = looks.iter().map(|l| l.instance).collect();
        for span in open.values().filter(|s| !seen.contains(s.instance.as_str())) {
            close.push(UseSpan { ended_at: Some(now.max(span.started_at)), ..span.clone() });
        }
    }
    for look in looks {
        match (open.get(look.instance), look.usage) {
            (None, Usage::InUse { running_since }) => {
                // Started since the last look: in use from its start (someone came back to it).
                let started = running_since.filter(|since| last.is_none_or(|last| *since > last) && *since <= now);
                opened.push(UseSpan {
                    instance: look.instance.to_owned(),
                    display_name: look.display_name.to_owned(),
                    policy: Some(look.policy.to_owned()),
                    started_at: started.unwrap_or(now),
                    ended_at: None,
                });
            }
            (Some(span), Usage::IdleSince(since)) => {
                close.push(UseSpan { ended_at: Some(since.clamp(span.started_at, now)), ..span.clone() });
            }
            (Some(span), Usage::Off) => {
                close.push(UseSpan { ended_at: Some(now.max(span.started_at)), ..span.clone() })
            }
            _ => {}
        }
    }
    (close, opened)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};

    fn look(usage: Usage) -> Look<'static> {
        Look { instance: "i-1", display_name: "nb", policy: "notebooks", usage }
    }

    #[test]
    fn a_span_opens_in_use_and_closes_at_the_last_activity() {
        let t0 = Utc.with_ymd_and_hms(2026, 11, 2, 1, 0, 0).unwrap();
        let m = Duration::minutes;
        let mut open = BTreeMap::new();
        // Seen in use at a look: from that look; started since the last one: from its start.
        let (_, opened) =
            changes(&open, &[look(Usage::InUse { running_since: Some(t0 - m(60)) })], true, Some(t0 - m(1)), t0);
        assert_eq!(opened[0].started_at, t0);
        let (_, opened) =
            changes(&open, &[look(Usage::InUse { running_since: Some(t0 - m(1)) })], true, Some(t0 - m(2)), t0);
        assert_eq!(opened[0].started_at, t0 - m(1));
        open.insert("i-1".to_owned(), opened[0].clone());
        // Still in use, or unreadable: nothing changes.
        for usage in [Usage::InUse { running_since: None }, Usage::Unknown] {
            assert_eq!(changes(&open, &[look(usage)], true, Some(t0), t0 + m(5)), (vec![], vec![]));
        }
        let (close, _) = changes(&open, &[look(Usage::IdleSince(t0 + m(20)))], false, Some(t0), t0 + m(30));
        assert_eq!(close[0].ended_at, Some(t0 + m(20)));
        let (close, _) = changes(&open, &[look(Usage::Off)], false, Some(t0), t0 + m(30));
        assert_eq!(close[0].ended_at, Some(t0 + m(30)));
        // Gone from a whole observation: closed; from one told of changes only: left open.
        let (close, _) = changes(&open, &[], true, Some(t0), t0 + m(40));
        assert_eq!(close[0].ended_at, Some(t0 + m(40)));
        assert_eq!(changes(&open, &[], false, Some(t0), t0 + m(40)), (vec![], vec![]));
    }
}
