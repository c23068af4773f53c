//! What the simulated platform is made of: its settings, regions, SKUs,
//! instances and their phases, bills, and the errors its calls answer.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::cloud::{BillingType, Hardware, InstanceStatus};
use crate::money::Money;

use super::{Activity, SimDiscount};

/// How the simulated platform behaves where the vendor page is silent.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PlatformSettings {
    #[serde(with = "humantime_serde")]
    pub create_time: Duration,
    #[serde(with = "humantime_serde")]
    pub start_time: Duration,
    #[serde(with = "humantime_serde")]
    pub stop_time: Duration,
    /// Added to a power_off that saves a snapshot.
    #[serde(with = "humantime_serde")]
    pub snapshot_time: Duration,
    #[serde(with = "humantime_serde")]
    pub delete_time: Duration,
    /// Delete refuses an instance that is not shut down (the UI deletes after shutdown).
    pub delete_requires_stop: bool,
    /// A power_on with no free GPU of the model: wait in `Starting`, or refuse.
    pub power_on_without_gpu: NoGpu,
    /// The platform clears a stopped instance's data after this long.
    #[serde(with = "humantime_serde")]
    pub purge_after: Duration,
    /// Storage price of shared-filesystem volumes and saved images.
    pub storage_yuan_per_gb_day: f64,
    pub free_image_gb: u32,
    /// Instances in one list page, when the call asks for no size.
    pub page_size: u32,
    /// Answers every instance in one page whatever the paging parameters
    /// ask, as a server that does not page would (the vendor page documents none).
    pub ignores_paging: bool,
    /// The status strings the API answers, per state. Only `Creating` and
    /// `Running` are confirmed; the rest follow the UI's names.
    pub statuses: StatusNames,
}

impl Default for PlatformSettings {
    fn default() -> Self {
        PlatformSettings {
            create_time: Duration::from_secs(60),
            start_time: Duration::from_secs(30),
            stop_time: Duration::from_secs(15),
            snapshot_time: Duration::from_secs(90),
            delete_time: Duration::from_secs(10),
            delete_requires_stop: true,
            power_on_without_gpu: NoGpu::Wait,
            purge_after: Duration::from_secs(15 * 86_400),
            storage_yuan_per_gb_day: 0.01,
            free_image_gb: 30,
            page_size: 50,
            ignores_paging: false,
            statuses: StatusNames::default(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoGpu {
    Wait,
    Fail,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StatusNames {
    pub creating: String,
    pub starting: String,
    pub running: String,
    pub stopping: String,
    pub stopped: String,
    pub deleting: String,
    pub failed: String,
}

impl Default for StatusNames {
    fn default() -> Self {
        StatusNames {
            creating: "Creating".into(),
            starting: "Starting".into(),
            running: "Running".into(),
            stopping: "ShuttingDown".into(),
            stopped: "Shutdown".into(),
            deleting: "Deleting".into(),
            failed: "Failed".into(),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct SimRegion {
    pub id: String,
    pub name: String,
    pub cluster: String,
    pub harbor_addr: String,
    pub howler_id: String,
    pub created_at: DateTime<Utc>,
    /// Total GPUs per resource key (`nvidia.com/gpu-h20`): SKUs of one model share them.
    pub gpus: BTreeMap<String, u32>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct SimSku {
    pub id: String,
    pub region_id: String,
    pub name: String,
    pub hardware: Hardware,
    pub billing_type: BillingType,
    /// The list price until the first of `price_changes`.
    pub price_per_hour: Money,
    /// The list price from each moment on, in time order.
    pub price_changes: Vec<(DateTime<Utc>, Money)>,
    pub discount: Option<SimDiscount>,
}

/// Where an instance is in its life. Transitional phases end at `Instance::until`.
#[derive(Clone, Debug, PartialEq)]
pub enum Phase {
    Creating,
    /// `until` is `None` while waiting for a free GPU.
    Starting,
    Running,
    Stopping {
        snapshot: Option<PendingSnapshot>,
    },
    Stopped,
    Deleting,
    Failed,
}

impl Phase {
    pub fn status(&self) -> InstanceStatus {
        match self {
            Phase::Creating => InstanceStatus::Creating,
            Phase::Starting => InstanceStatus::Starting,
            Phase::Running => InstanceStatus::Running,
            Phase::Stopping { .. } => InstanceStatus::Stopping,
            Phase::Stopped => InstanceStatus::Stopped,
            Phase::Deleting => InstanceStatus::Deleting,
            Phase::Failed => InstanceStatus::Failed,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct PendingSnapshot {
    pub image: String,
    pub tag: String,
    pub fails: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SavedImage {
    pub instance: String,
    pub image: String,
    pub tag: String,
    pub size_gb: u32,
    pub at: DateTime<Utc>,
    pub succeeded: bool,
    /// A later save to the same image and tag replaced it (as a registry
    /// overwrites a pushed tag): stored, and billed, until then.
    pub replaced_at: Option<DateTime<Utc>>,
}

/// Per power-on details: a new pod, node, address, SSH port and Jupyter token.
#[derive(Clone, Debug, PartialEq)]
pub struct Access {
    pub jupyter_token: String,
    pub ssh_port: u16,
    pub ssh_password: String,
    pub pod_suffix: String,
    pub node: String,
    pub ip: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct SimVolume {
    pub path: String,
    pub kind: String,
    pub size_gb: u32,
    pub pvc: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct SimInstance {
    pub name: String,
    pub uid: String,
    pub display_name: String,
    pub cluster: String,
    pub region_id: String,
    pub image: String,
    pub sku_id: String,
    pub billing_type: BillingType,
    pub term: String,
    pub coupon_id: String,
    pub disk_sku_id: String,
    pub order_id: String,
    pub volumes: Vec<SimVolume>,
    pub created_at: DateTime<Utc>,
    pub phase: Phase,
    pub until: Option<DateTime<Utc>>,
    pub holds_gpu: bool,
    /// When the current billed run began (pay-as-you-go only).
    pub billed_since: Option<DateTime<Utc>>,
    /// When the Jupyter server last started.
    pub started_at: DateTime<Utc>,
    pub stopped_at: Option<DateTime<Utc>>,
    pub prepaid_until: Option<DateTime<Utc>>,
    pub data_purged: bool,
    pub access: Access,
    pub activity: Activity,
    /// A raw status string to answer instead of the real one (fault injection).
    pub status_override: Option<String>,
}

impl SimInstance {
    /// The next moment something happens to this instance on its own.
    pub(super) fn next_event(&self, purge_after: Duration) -> Option<DateTime<Utc>> {
        match self.phase {
            Phase::Running => self.prepaid_until,
            Phase::Stopped if !self.data_purged => self.stopped_at.map(|t| t + purge_after),
            _ => self.until,
        }
    }
}

/// What the platform answers an illegal or impossible call with.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum SimError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Conflict(String),
    #[error("insufficient GPU resources: {0}")]
    NoCapacity(String),
}

impl SimError {
    pub fn http_status(&self) -> u16 {
        match self {
            SimError::NotFound(_) => 404,
            SimError::BadRequest(_) => 400,
            SimError::Conflict(_) | SimError::NoCapacity(_) => 409,
        }
    }
}

/// Per-compute accrual: exact sums, divided once when reported.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Accrual {
    pub display_name: String,
    pub sku_id: String,
    pub billing_type: Option<BillingType>,
    pub compute_scaled: i128,
    pub running_ms: i64,
    pub prepaid: Money,
    pub data_gb: u32,
    pub created_at: Option<DateTime<Utc>>,
    pub deleted_at: Option<DateTime<Utc>>,
}

/// Faults that live in the platform rather than on the wire.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PlatformFaults {
    /// Share of snapshots that fail (the shutdown is then aborted: the instance keeps running).
    pub snapshot_failure_rate: f64,
    /// The next this many snapshots fail, whatever the rate.
    pub fail_next_snapshots: u32,
    /// Resource keys (or `*`) whose GPUs all count as taken.
    pub no_free_gpus: Vec<String>,
    /// A created instance shows in instance lists only this long after its
    /// create (eventual consistency); asked for by name, it is found at once.
    #[serde(with = "humantime_serde")]
    pub list_lag: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JupyterError {
    NotFound,
    NotRunning,
    Forbidden,
}

/// Hours a prepaid term covers: `3D`, `2W`, `1M`; empty means one unit of the type.
pub(super) fn term_hours(billing: &BillingType, term: &str) -> Option<i64> {
    let unit_days = |unit: char| match unit.to_ascii_uppercase() {
        'D' => Some(1),
        'W' => Some(7),
        'M' => Some(30),
        _ => None,
    };
    let term = term.trim().trim_start_matches('+');
    let days = if term.is_empty() {
        match billing {
            BillingType::Monthly => 30,
            BillingType::Weekly => 7,
            _ => 1,
        }
    } else {
        let unit = term.chars().last()?;
        let count: i64 = term[..term.len() - unit.len_utf8()].parse().ok().filter(|n| *n > 0)?;
        count * unit_days(unit)?
    };
    Some(days * 24)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepaid_terms_read_like_the_vendor_writes_them() {
        assert_eq!(term_hours(&BillingType::Daily, "3D"), Some(72));
        assert_eq!(term_hours(&BillingType::Weekly, "+2W"), Some(336));
        assert_eq!(term_hours(&BillingType::Monthly, ""), Some(720));
        assert_eq!(term_hours(&BillingType::Daily, "3X"), None);
        assert_eq!(term_hours(&BillingType::Daily, "0D"), None);
    }
}
