//! What the planner answers: actions with reasons and money, the notable
//! non-actions, schedule edges to record, and when to ask again.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use super::keep_alive::Learned;
use super::prewarm::Window;

use crate::cloud::{CreateRequest, PowerOff};
use crate::money::Money;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Plan {
    pub at: DateTime<Utc>,
    pub actions: Vec<Action>,
    pub notes: Vec<Note>,
    /// Schedule edges to record as applied, with or without an action.
    pub schedule_marks: Vec<ScheduleMark>,
    /// The earliest moment something could change without a new observation.
    pub next_check: Option<DateTime<Utc>>,
    /// Instances whose signals the next cycle must read afresh: a due stop
    /// waits for them to go idle.
    pub watch: Vec<String>,
    /// What the adaptive rules learned of each instance they looked at.
    pub learned: Vec<Learning>,
    /// Warnings to send: actions coming due, or held until they are announced.
    pub warnings: Vec<Warning>,
}

/// A stop or delete to announce before it happens (`notify.warn_before`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Warning {
    pub policy: String,
    pub instance: InstanceRef,
    #[serde(flatten)]
    pub key: WarningKey,
    pub cause: Cause,
    /// When it happens if nothing changes (and the warning is delivered by then).
    pub act_at: DateTime<Utc>,
    /// Why, as at the moment of planning.
    pub reason: String,
    /// Whether the stop saves a snapshot first.
    pub snapshot: bool,
    #[serde(rename = "saving_per_hour_yuan", serialize_with = "crate::money::yuan")]
    pub saving_per_hour: Money,
}

/// One warning per instance per pending action: the action (`power_off`
/// or `delete`) and the moment its occasion began (the instance went idle,
/// the schedule edge, the stop, a snooze ending), to the second.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct WarningKey {
    #[serde(rename = "instance_name")]
    pub instance: String,
    pub action: String,
    pub occasion: DateTime<Utc>,
}

/// What became of a warning: queued, and delivered once a channel took it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WarningSent {
    pub queued_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
}

/// An adaptive instance's keep-alive (idle now) or next pre-warm (stopped),
/// with the figures behind it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Learning {
    pub policy: String,
    pub instance: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_alive_seconds: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stops_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prewarm_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prewarm_until: Option<DateTime<Utc>>,
    pub text: Lesson,
}

/// What was learned, put in words only when read: a plan holds one for
/// every idle or stopped adaptive instance.
#[derive(Clone, Debug, PartialEq)]
pub enum Lesson {
    /// A keep-alive learned from past gaps, with `min` to compare.
    KeepAlive { learned: Box<Learned>, keep: Duration, min: Duration },
    /// Too little known yet: the fixed `until_learned`.
    UntilLearned(Duration),
    /// Pre-warmed in this window and not used yet.
    Prewarmed(Box<Window>),
    /// The window of the next pre-warm.
    NextPrewarm(Box<Window>),
}

impl std::fmt::Display for Lesson {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Lesson::KeepAlive { learned, keep, min } => f.write_str(&learned.describe(*keep, *min)),
            Lesson::UntilLearned(keep) => {
                write!(f, "too few idle gaps like this one yet: until_learned {}", super::humane(*keep))
            }
            Lesson::Prewarmed(window) => write!(f, "pre-warmed; {}", window.describe()),
            Lesson::NextPrewarm(window) => f.write_str(&window.describe()),
        }
    }
}

impl Serialize for Lesson {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct InstanceRef {
    pub name: String,
    pub display_name: String,
    pub cluster: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ActionKind {
    Create { request: Box<CreateRequest>, slot: u32, sku_name: String },
    PowerOn,
    PowerOff(PowerOff),
    Delete,
}

impl ActionKind {
    pub fn label(&self) -> &'static str {
        match self {
            ActionKind::Create { .. } => "create",
            ActionKind::PowerOn => "power_on",
            ActionKind::PowerOff(_) => "power_off",
            ActionKind::Delete => "delete",
        }
    }

    /// Interrupts someone's work if it was wrong: counted against `max_disrupted`.
    pub fn disrupts(&self) -> bool {
        matches!(self, ActionKind::PowerOff(_) | ActionKind::Delete)
    }
}

/// Why an action is taken, sorted by how much it matters when limits bite.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    Budget,
    Runaway,
    Idle,
    Schedule,
    ScaleDown,
    Retention,
    ScaleUp,
    Prewarm,
}

impl Cause {
    /// As the plan's JSON, the ledger and the metrics spell it.
    pub fn label(self) -> &'static str {
        match self {
            Cause::Budget => "budget",
            Cause::Runaway => "runaway",
            Cause::Idle => "idle",
            Cause::Schedule => "schedule",
            Cause::ScaleDown => "scale_down",
            Cause::Retention => "retention",
            Cause::ScaleUp => "scale_up",
            Cause::Prewarm => "prewarm",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Action {
    pub policy: String,
    #[serde(flatten)]
    pub kind: ActionKind,
    /// The instance acted on; for a create, the slot's name and cluster.
    pub instance: InstanceRef,
    pub cause: Cause,
    pub reason: String,
    /// Estimated money saved per hour by this action (negative: it costs).
    #[serde(rename = "saving_per_hour_yuan", serialize_with = "crate::money::yuan")]
    pub saving_per_hour: Money,
    /// The schedule edge this action applies, to record once done.
    pub schedule_edge: Option<DateTime<Utc>>,
    /// A stop whose warning was queued and not delivered in time: it goes
    /// ahead (money wins) and the notice says so after the fact.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub unannounced: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Note {
    pub policy: Option<String>,
    pub instance: Option<String>,
    pub text: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ScheduleMark {
    pub instance: String,
    pub edge: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_is_spelled_one_way() {
        use Cause::*;
        for cause in [Budget, Runaway, Idle, Schedule, ScaleDown, Retention, ScaleUp, Prewarm] {
            assert_eq!(serde_json::to_string(&cause).unwrap(), format!("\"{}\"", cause.label()));
        }
    }
}
