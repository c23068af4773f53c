//! What the rules ask for, held as references until the limits have chosen:
//! in a large fleet most candidates are deferred, and their names, reasons
//! and snapshot names need never be written out.

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;

use super::keep_alive::Learned;
use super::prewarm::Window;
use super::{Action, ActionKind, Cause, InstanceRef, humane};
use crate::cloud::{Instance, Snapshot};
use crate::config::policy::Policy;
use crate::money::Money;

pub(super) struct Candidate<'a> {
    pub policy: &'a Policy,
    pub target: Target<'a>,
    /// A power_off's snapshot is named when the action is kept.
    pub kind: ActionKind,
    pub cause: Cause,
    pub reason: Reason,
    pub saving_per_hour: Money,
    pub schedule_edge: Option<DateTime<Utc>>,
    /// See [`Action::unannounced`](super::Action::unannounced).
    pub unannounced: bool,
}

pub(super) enum Target<'a> {
    Instance(&'a Instance),
    /// A pool slot to create.
    Slot(InstanceRef),
}

/// Why, rendered only for the actions kept and the deferrals noted.
#[derive(Clone)]
pub(super) enum Reason {
    Text(String),
    Idle {
        since: DateTime<Utc>,
        keep: Duration,
        tz: Tz,
        why: KeptFor,
    },
    /// Started ahead of a likely arrival.
    Prewarm {
        window: Box<Window>,
        until: DateTime<Utc>,
        tz: Tz,
    },
    Runaway {
        since: DateTime<Utc>,
        max: Duration,
    },
    Schedule {
        start: bool,
        edge: DateTime<Utc>,
        tz: Tz,
    },
    /// Stopped since, kept for, and the snapshot saved (none required when `None`).
    Retention {
        since: DateTime<Utc>,
        keep: Duration,
        saved: Option<String>,
    },
}

/// What an idle instance's keep-alive comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum KeptFor {
    /// `stop_after` as written.
    Fixed,
    /// Adaptive, with too little history yet.
    UntilLearned,
    /// Adaptive: the figures, and `min`.
    Learned(Box<Learned>, Duration),
    /// Pre-warmed in this window and nobody came.
    Unused(Box<Window>),
}

impl Reason {
    pub fn render(&self, now: DateTime<Utc>) -> String {
        match self {
            Reason::Text(text) => text.clone(),
            Reason::Idle { since, keep, tz, why } => {
                let idle = format!("idle for {} (since {})", humane(now - *since), local(*tz, *since));
                match why {
                    KeptFor::Fixed => format!("{idle}, stop_after {}", humane(*keep)),
                    KeptFor::UntilLearned => {
                        format!("{idle}, until_learned {} (too few idle gaps like this one yet)", humane(*keep))
                    }
                    KeptFor::Learned(learned, min) => {
                        format!("{idle}, adaptive keep-alive {}: {}", humane(*keep), learned.describe(*keep, *min))
                    }
                    KeptFor::Unused(window) => {
                        format!(
                            "{idle}, pre-warmed and not used by {}: {}",
                            local(*tz, *since + *keep),
                            window.describe()
                        )
                    }
                }
            }
            Reason::Prewarm { window, until, tz } => {
                format!("pre-warm until {}: {}", local(*tz, *until), window.describe())
            }
            Reason::Runaway { since, max } => {
                format!("running for {}, over max_runtime {}", humane(now - *since), humane(*max))
            }
            Reason::Schedule { start, edge, tz } => {
                format!("schedule {} at {}", if *start { "start" } else { "stop" }, local(*tz, *edge))
            }
            Reason::Retention { since, keep, saved } => {
                let (stopped_for, keep) = (humane(now - *since), humane(*keep));
                match saved {
                    Some(saved) => format!("stopped for {stopped_for}, delete_after_stopped {keep}; {saved}"),
                    None => format!("stopped for {stopped_for}, delete_after_stopped {keep} (no snapshot required)"),
                }
            }
        }
    }
}

impl<'a> Candidate<'a> {
    /// Who it acts on, to allow one action per instance: an instance by
    /// its place in the observation, a slot by its names.
    pub fn identity(&self) -> (usize, Option<(String, String)>) {
        match &self.target {
            Target::Instance(i) => (std::ptr::from_ref::<Instance>(i) as usize, None),
            Target::Slot(slot) => (0, Some((slot.cluster.clone(), slot.display_name.clone()))),
        }
    }

    pub fn display_name(&self) -> &str {
        match &self.target {
            Target::Instance(i) => &i.display_name,
            Target::Slot(slot) => &slot.display_name,
        }
    }

    pub fn into_action(self, now: DateTime<Utc>) -> Action {
        let reason = self.reason.render(now);
        let mut kind = self.kind;
        let instance = match self.target {
            Target::Instance(instance) => {
                if let ActionKind::PowerOff(off) = &mut kind {
                    let template = self.policy.idle.as_ref().and_then(|i| i.snapshot.as_ref());
                    off.snapshot = template.map(|template| {
                        let (image, tag) = template.render(instance, &self.policy.name, now);
                        Snapshot { image, tag }
                    });
                }
                InstanceRef {
                    name: instance.name.clone(),
                    display_name: instance.display_name.clone(),
                    cluster: instance.cluster.clone(),
                }
            }
            Target::Slot(slot) => slot,
        };
        Action {
            policy: self.policy.name.clone(),
            kind,
            instance,
            cause: self.cause,
            reason,
            saving_per_hour: self.saving_per_hour,
            schedule_edge: self.schedule_edge,
            unannounced: self.unannounced,
        }
    }
}

/// A moment in a zone, for reasons people read.
pub(super) fn local(tz: Tz, at: DateTime<Utc>) -> String {
    use chrono::{Datelike, Timelike};
    let t = at.with_timezone(&tz);
    // By hand rather than strftime: cheaper, and reasons can be many.
    format!("{}-{:02}-{:02} {:02}:{:02} {}", t.year(), t.month(), t.day(), t.hour(), t.minute(), t.offset())
}
