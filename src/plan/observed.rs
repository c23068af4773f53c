//! What the planner is told: the cloud as listed, and what the ledger and the
//! idle signals know. Built by the observer; plain data, so tests and
//! scenario files can write it directly.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::cloud::{Instance, Region, Sku};
use crate::money::Money;

/// One idle signal's answer for one instance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reading {
    /// In use now.
    Active,
    /// Not in use since this moment.
    IdleSince(DateTime<Utc>),
    /// Could not be read: counts as active.
    Unreadable(String),
}

/// What is known of the last snapshot taken of an instance.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SnapshotState {
    #[default]
    None,
    /// A power_off with snapshot reached Stopped: the image was saved.
    Succeeded {
        image: String,
        tag: String,
        at: DateTime<Utc>,
    },
    Failed {
        at: DateTime<Utc>,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct ObservedInstance {
    pub instance: Instance,
    /// Per signal label (`jupyter`, `heartbeat`, `prometheus`). A configured
    /// signal with no reading counts as unreadable.
    pub signals: BTreeMap<String, Reading>,
    /// When it was last seen to start running (for `max_runtime`).
    pub running_since: Option<DateTime<Utc>>,
    /// When it was first seen stopped (for `delete_after_stopped`).
    pub stopped_since: Option<DateTime<Utc>>,
    pub snapshot: SnapshotState,
}

impl ObservedInstance {
    pub fn new(instance: Instance) -> Self {
        ObservedInstance {
            instance,
            signals: BTreeMap::new(),
            running_since: None,
            stopped_since: None,
            snapshot: SnapshotState::None,
        }
    }
}

/// A create sent (or perhaps sent) whose instance the lists do not show
/// yet: the platform may list a new instance late. Until it is listed, or
/// for `settings.listing_delay`, it holds its pool slot and counts against
/// the budgets, so a lagging list (or a restart inside the lag) never
/// creates the slot twice; past it, the create is taken to have failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingCreate {
    pub display_name: String,
    pub cluster: String,
    pub sent_at: DateTime<Utc>,
    /// Its price when it was created.
    pub hourly: Money,
}

impl PendingCreate {
    /// Whether it still holds its slot at `now`, for a platform that lists
    /// new instances at most `delay` late.
    pub fn holds(&self, now: DateTime<Utc>, delay: chrono::Duration) -> bool {
        now < self.sent_at + delay
    }

    /// Whether these instances, as listed, show it.
    pub fn listed(&self, instances: &[ObservedInstance]) -> bool {
        instances.iter().any(|o| o.instance.display_name == self.display_name && o.instance.cluster == self.cluster)
    }
}

/// Spend so far in a budget's current day and month (in the budget's zone).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpendSoFar {
    pub today: Money,
    pub this_month: Money,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Observed {
    pub regions: Vec<Region>,
    /// Every region's SKUs.
    pub skus: Vec<Sku>,
    pub instances: Vec<ObservedInstance>,
    /// Per policy name, and under [`GLOBAL`](crate::config::policy::GLOBAL) for the global budget.
    /// `None` when the ledger could not be read: then nothing is created.
    pub spend: Option<BTreeMap<String, SpendSoFar>>,
    /// When the actions of the last hour were taken (for the hourly limit).
    pub recent_actions: Vec<DateTime<Utc>>,
    /// Those of them that were deletes (for the hourly delete limit).
    pub recent_deletes: Vec<DateTime<Utc>>,
    /// SKU ids whose last create failed for capacity, and when.
    pub capacity_failures: BTreeMap<String, DateTime<Utc>>,
    /// Creates sent whose instance is not listed yet (the lists lag).
    pub pending_creates: Vec<PendingCreate>,
    /// Snooze leases: instance name → protected until.
    pub snoozes: BTreeMap<String, DateTime<Utc>>,
    /// The last schedule edge applied to each instance.
    pub schedule_marks: BTreeMap<String, DateTime<Utc>>,
    /// The warnings queued lately, and whether delivered (`notify.warn_before`).
    pub warned: BTreeMap<super::WarningKey, super::WarningSent>,
    /// What the record of use taught (for `stop_after: adaptive`).
    pub habits: std::sync::Arc<super::habits::Habits>,
}

impl Observed {
    pub fn sku(&self, id: &str) -> Option<&Sku> {
        self.skus.iter().find(|s| s.id == id)
    }
}

/// The observed spend of one budget, or `None` if unknown.
pub fn spend_of<'a>(spend: &'a Option<BTreeMap<String, SpendSoFar>>, key: &str) -> Option<&'a SpendSoFar> {
    spend.as_ref().map(|s| s.get(key).unwrap_or(&ZERO))
}

const ZERO: SpendSoFar = SpendSoFar { today: Money::ZERO, this_month: Money::ZERO };

/// Money in reasons and notes, to the fen: people read these.
pub fn yuan(m: Money) -> String {
    let fen = (m.micros() as i128 + if m.micros() < 0 { -5_000 } else { 5_000 }) / 10_000;
    let sign = if fen < 0 { "-" } else { "" };
    format!("¥{sign}{}.{:02}", fen.abs() / 100, fen.abs() % 100)
}

/// Which instances of an observation a step takes afresh: every one, or
/// those at these indexes in [`Observed::instances`] (the others are as
/// the last step saw them).
#[derive(Clone, Copy, Debug)]
pub enum Changed<'a> {
    All,
    These(&'a [usize]),
}
