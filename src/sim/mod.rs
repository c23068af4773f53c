//! The simulated MatrixDC platform: regions, GPU pools, SKUs with discount
//! windows, instances moving through their states, and billing as the
//! platform bills. Time is a parameter of every call; nothing here reads a clock.

mod activity;
mod billing;
mod discount;
pub mod faults;
pub mod fleet;
pub mod local;
mod render;
pub mod server;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

pub use activity::{Activity, ActivityView, Session};
pub use billing::{BillReport, InstanceBill};
pub use discount::{DiscountSchedule, SimDiscount};

use crate::cloud::{BillingType, InstanceStatus, wire};
use crate::money::Money;

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
    /// Instances in one list page.
    pub page_size: u32,
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
    pub gpu_product: String,
    pub gpu_series: String,
    pub gpu_resource_key: String,
    pub gpu_count: u32,
    pub gpu_memory_gb: u32,
    pub cpu_cores: u32,
    pub cpu_arch: String,
    pub cpu_series: String,
    pub cpu_vendor: String,
    pub memory_gb: u32,
    pub system_storage_gb: u32,
    pub data_storage_gb: u32,
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
    fn next_event(&self, purge_after: Duration) -> Option<DateTime<Utc>> {
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
}

pub struct Simulator {
    pub settings: PlatformSettings,
    pub faults: PlatformFaults,
    namespace: String,
    /// Base URL of the Jupyter and TensorBoard gateway shown in `servers`.
    gateway: String,
    regions: Vec<SimRegion>,
    skus: BTreeMap<String, SimSku>,
    instances: BTreeMap<String, SimInstance>,
    bills: BTreeMap<String, Accrual>,
    images: Vec<SavedImage>,
    now: DateTime<Utc>,
    rng: StdRng,
    /// Each instance's next event on its own, in time order; instances
    /// edited since are in `stale` until their entry is brought up to date.
    events: BTreeSet<(DateTime<Utc>, String)>,
    event_at: HashMap<String, DateTime<Utc>>,
    stale: Vec<String>,
    /// Instances edited since [`Simulator::take_changed`] last answered,
    /// when someone asked to follow them.
    changed: Option<BTreeSet<String>>,
}

impl Simulator {
    pub fn new(namespace: &str, start: DateTime<Utc>, seed: u64, settings: PlatformSettings) -> Self {
        Simulator {
            settings,
            faults: PlatformFaults::default(),
            namespace: namespace.to_owned(),
            gateway: "http://gw.sim.invalid".into(),
            regions: Vec::new(),
            skus: BTreeMap::new(),
            instances: BTreeMap::new(),
            bills: BTreeMap::new(),
            images: Vec::new(),
            now: start,
            rng: StdRng::seed_from_u64(seed),
            events: BTreeSet::new(),
            event_at: HashMap::new(),
            stale: Vec::new(),
            changed: None,
        }
    }

    /// From now on, remembers which instances change (for `simulate`, whose
    /// daemon is told rather than re-listing everything).
    pub fn follow_changes(&mut self) {
        self.changed.get_or_insert_with(BTreeSet::new);
    }

    /// The instances edited since the last call: status, transitions, creates
    /// and deletes. Changes with time alone (activity) are not edits.
    pub fn take_changed(&mut self) -> BTreeSet<String> {
        self.changed.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// An instance about to be changed: its event and the change log follow.
    fn edit(&mut self, name: &str) -> Option<&mut SimInstance> {
        if self.instances.contains_key(name) {
            self.touched(name);
        }
        self.instances.get_mut(name)
    }

    fn touched(&mut self, name: &str) {
        self.stale.push(name.to_owned());
        if let Some(changed) = &mut self.changed {
            changed.insert(name.to_owned());
        }
    }

    /// Brings the event queue up to date with the instances edited.
    fn sync_events(&mut self) {
        let purge_after = self.settings.purge_after;
        for name in std::mem::take(&mut self.stale) {
            if let Some(at) = self.event_at.remove(&name) {
                self.events.remove(&(at, name.clone()));
            }
            if let Some(at) = self.instances.get(&name).and_then(|i| i.next_event(purge_after)) {
                self.events.insert((at, name.clone()));
                self.event_at.insert(name, at);
            }
        }
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.now
    }

    pub fn set_gateway(&mut self, base_url: &str) {
        self.gateway = base_url.trim_end_matches('/').to_owned();
    }

    pub fn add_region(&mut self, region: SimRegion) {
        self.regions.push(region);
    }

    pub fn add_sku(&mut self, sku: SimSku) {
        self.skus.insert(sku.id.clone(), sku);
    }

    pub fn skus(&self) -> impl Iterator<Item = &SimSku> {
        self.skus.values()
    }

    pub fn instances(&self) -> impl Iterator<Item = &SimInstance> {
        self.instances.values()
    }

    pub fn instance(&self, name: &str) -> Option<&SimInstance> {
        self.instances.get(name)
    }

    pub fn images(&self) -> &[SavedImage] {
        &self.images
    }

    fn region(&self, region_id: &str) -> Option<&SimRegion> {
        self.regions.iter().find(|r| r.id == region_id)
    }

    fn region_of_cluster(&self, cluster: &str) -> Option<&SimRegion> {
        self.regions.iter().find(|r| r.cluster == cluster)
    }

    /// Free GPUs in the pool a SKU draws from.
    pub fn free_gpus(&self, sku: &SimSku) -> u32 {
        let blocked = self.faults.no_free_gpus.iter().any(|k| k == "*" || *k == sku.gpu_resource_key);
        if blocked {
            return 0;
        }
        let total = self.region(&sku.region_id).and_then(|r| r.gpus.get(&sku.gpu_resource_key)).copied().unwrap_or(0);
        total.saturating_sub(self.gpus_in_use(&sku.region_id, &sku.gpu_resource_key))
    }

    pub fn gpus_in_use(&self, region_id: &str, resource_key: &str) -> u32 {
        // The SKUs drawing from this pool, found once: a fleet has many instances and few SKUs.
        let drawing: Vec<(&str, u32)> = self
            .skus
            .values()
            .filter(|s| s.region_id == region_id && s.gpu_resource_key == resource_key)
            .map(|s| (s.id.as_str(), s.gpu_count))
            .collect();
        self.instances
            .values()
            .filter(|i| i.holds_gpu)
            .filter_map(|i| drawing.iter().find(|(id, _)| *id == i.sku_id).map(|(_, count)| count))
            .sum()
    }

    /// Moves the platform forward to `now`, firing every transition on the way
    /// in time order. Time never runs backwards: an earlier `now` is ignored.
    pub fn advance(&mut self, now: DateTime<Utc>) {
        if now < self.now {
            return;
        }
        loop {
            self.sync_events();
            let Some((at, name)) = self.events.first().filter(|(t, _)| *t <= now).cloned() else { break };
            self.touched(&name);
            self.fire(&name, at);
        }
        self.now = now;
    }

    fn fire(&mut self, name: &str, at: DateTime<Utc>) {
        let Some(instance) = self.instances.get(name) else { return };
        match instance.phase.clone() {
            Phase::Creating | Phase::Starting => self.begin_running(name, at),
            Phase::Running => {
                // A prepaid term ran out: the platform stops the instance.
                let until = at + self.settings.stop_time;
                let i = self.edit(name).expect("exists");
                i.prepaid_until = None;
                i.phase = Phase::Stopping { snapshot: None };
                i.until = Some(until);
            }
            Phase::Stopping { snapshot } => {
                if let Some(snapshot) = &snapshot {
                    self.record_image(name, snapshot, at);
                }
                if snapshot.is_some_and(|s| s.fails) {
                    // The platform keeps the container rather than lose unsaved work.
                    let i = self.edit(name).expect("exists");
                    i.phase = Phase::Running;
                    i.until = None;
                    if i.billing_type == BillingType::PayAsYouGo {
                        i.billed_since = Some(at);
                    }
                } else {
                    let i = self.edit(name).expect("exists");
                    i.phase = Phase::Stopped;
                    i.until = None;
                    i.holds_gpu = false;
                    i.stopped_at = Some(at);
                    self.hand_out_gpus(at);
                }
            }
            Phase::Stopped => {
                self.edit(name).expect("exists").data_purged = true;
            }
            Phase::Deleting => {
                self.instances.remove(name);
                if let Some(bill) = self.bills.get_mut(name) {
                    bill.deleted_at = Some(at);
                }
                self.hand_out_gpus(at);
            }
            Phase::Failed => {}
        }
    }

    fn begin_running(&mut self, name: &str, at: DateTime<Utc>) {
        let access = self.new_access();
        let i = self.edit(name).expect("exists");
        i.phase = Phase::Running;
        i.until = None;
        i.started_at = at;
        i.access = access;
        i.activity = i.activity.restarted();
        if i.billing_type == BillingType::PayAsYouGo {
            i.billed_since = Some(at);
        }
    }

    /// Gives freed GPUs to instances waiting in `Starting`, first come first served.
    fn hand_out_gpus(&mut self, at: DateTime<Utc>) {
        let mut waiting: Vec<(DateTime<Utc>, String)> = self
            .instances
            .values()
            .filter(|i| i.phase == Phase::Starting && i.until.is_none())
            .map(|i| (i.stopped_at.unwrap_or(i.created_at), i.name.clone()))
            .collect();
        waiting.sort();
        for (_, name) in waiting {
            let sku = self.skus.get(&self.instances[&name].sku_id).cloned();
            if sku.is_some_and(|s| self.free_gpus(&s) >= s.gpu_count) {
                let start_time = self.settings.start_time;
                let i = self.edit(&name).expect("exists");
                i.holds_gpu = true;
                i.until = Some(at + start_time);
            }
        }
    }

    fn record_image(&mut self, name: &str, snapshot: &PendingSnapshot, at: DateTime<Utc>) {
        let size_gb =
            self.instances.get(name).and_then(|i| self.skus.get(&i.sku_id)).map_or(30, |s| s.system_storage_gb);
        if !snapshot.fails {
            let same = |i: &&mut SavedImage| {
                i.succeeded && i.replaced_at.is_none() && i.image == snapshot.image && i.tag == snapshot.tag
            };
            if let Some(old) = self.images.iter_mut().find(same) {
                old.replaced_at = Some(at);
            }
        }
        self.images.push(SavedImage {
            instance: name.to_owned(),
            image: snapshot.image.clone(),
            tag: snapshot.tag.clone(),
            size_gb,
            at,
            succeeded: !snapshot.fails,
            replaced_at: None,
        });
    }

    /// Adds what an instance's current billed run has cost up to `to`.
    fn accrue(&mut self, name: &str, to: DateTime<Utc>) {
        // Billing only: nothing the API shows, nothing that moves an event.
        let Some(i) = self.instances.get_mut(name) else { return };
        let Some(since) = i.billed_since.take() else { return };
        let Some(sku) = self.skus.get(&i.sku_id) else { return };
        let scaled = sku.cost_scaled(since, to);
        let bill = self.bills.entry(name.to_owned()).or_default();
        bill.compute_scaled += scaled;
        bill.running_ms += (to - since).num_milliseconds().max(0);
    }

    fn new_access(&mut self) -> Access {
        let rng = &mut self.rng;
        Access {
            jupyter_token: hex(rng, 32),
            ssh_port: rng.random_range(30000..32768),
            ssh_password: (0..12)
                .map(|_| {
                    const CHARS: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
                    CHARS[rng.random_range(0..CHARS.len())] as char
                })
                .collect(),
            pod_suffix: (0..5)
                .map(|_| {
                    const CHARS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
                    CHARS[rng.random_range(0..CHARS.len())] as char
                })
                .collect(),
            node: format!("gpu-node-{:02}", rng.random_range(1..40)),
            ip: format!("172.31.{}.{}", rng.random_range(0..256), rng.random_range(2..255)),
        }
    }

    fn instance_mut(&mut self, cluster: &str, name: &str) -> Result<&mut SimInstance, SimError> {
        self.edit(name)
            .filter(|i| i.cluster == cluster)
            .ok_or_else(|| SimError::NotFound(format!("instance {name} not found in cluster {cluster}")))
    }

    fn require_cluster(&self, cluster: &str) -> Result<&SimRegion, SimError> {
        self.region_of_cluster(cluster).ok_or_else(|| SimError::NotFound(format!("cluster {cluster} not found")))
    }

    pub fn list_regions(&mut self, now: DateTime<Utc>) -> Vec<wire::Region> {
        self.advance(now);
        self.regions.iter().map(render::region).collect()
    }

    pub fn list_skus(&mut self, now: DateTime<Utc>, region_id: &str) -> Vec<wire::Sku> {
        self.advance(now);
        self.skus.values().filter(|s| s.region_id == region_id).map(|s| render::sku(self, s)).collect()
    }

    /// One page of the instance list (pages count from 1), oldest first.
    pub fn list_instances(
        &mut self,
        now: DateTime<Utc>,
        cluster: &str,
        page: u32,
        page_size: u32,
    ) -> Result<wire::InstanceList, SimError> {
        self.advance(now);
        self.require_cluster(cluster)?;
        let mut all: Vec<&SimInstance> = self.instances.values().filter(|i| i.cluster == cluster).collect();
        all.sort_by(|a, b| (a.created_at, &a.name).cmp(&(b.created_at, &b.name)));
        let size = page_size.max(1) as usize;
        let skip = (page.max(1) as usize - 1) * size;
        Ok(wire::InstanceList {
            has_next_page: all.len() > skip + size,
            nodes: all.iter().skip(skip).take(size).map(|i| render::instance(self, i)).collect(),
            total_count: all.len() as u32,
        })
    }

    pub fn get_instance(&mut self, now: DateTime<Utc>, cluster: &str, name: &str) -> Result<wire::Instance, SimError> {
        self.advance(now);
        let instance = self
            .instances
            .get(name)
            .filter(|i| i.cluster == cluster)
            .ok_or_else(|| SimError::NotFound(format!("instance {name} not found in cluster {cluster}")))?;
        Ok(render::instance(self, instance))
    }

    pub fn create_instance(
        &mut self,
        now: DateTime<Utc>,
        cluster: &str,
        body: &wire::CreateBody,
    ) -> Result<wire::Instance, SimError> {
        self.advance(now);
        let region_id = self.require_cluster(cluster)?.id.clone();
        let bad = |m: &str| Err(SimError::BadRequest(m.to_owned()));
        if body.namespace != self.namespace {
            return bad("namespace in the body does not match the namespace header");
        }
        if body.display_name.trim().is_empty() {
            return bad("displayName is required");
        }
        if body.image.trim().is_empty() {
            return bad("image is required");
        }
        if body.cost.disk_sku_id.trim().is_empty() {
            return bad("Cost.DiskSKUID is required");
        }
        let billing_type = BillingType::from_code(&body.cost.cost_type);
        if let BillingType::Unknown(code) = &billing_type {
            return Err(SimError::BadRequest(format!("Cost.CostType {code:?} is not 1, 2, 3 or 4")));
        }
        if !body.cost.coupon_id.is_empty() && billing_type != BillingType::PayAsYouGo {
            return bad("coupons apply to pay-as-you-go only");
        }
        let sku =
            self.skus.get(&body.cost.gpu_sku_id).filter(|s| s.region_id == region_id).cloned().ok_or_else(|| {
                SimError::BadRequest(format!("GPUSKUID {:?} is not sold in {cluster}", body.cost.gpu_sku_id))
            })?;
        let term_hours = match billing_type {
            BillingType::PayAsYouGo => 0,
            ref prepaid => term_hours(prepaid, &body.cost.cost_time).ok_or_else(|| {
                SimError::BadRequest(format!("Cost.CostTime {:?} is not like 3D", body.cost.cost_time))
            })?,
        };
        if self.free_gpus(&sku) < sku.gpu_count {
            return Err(SimError::NoCapacity(format!("no free {} in {}", sku.gpu_resource_key, sku.region_id)));
        }
        let name = format!("instance-{}", &hex(&mut self.rng, 8));
        let uid = uuid(&mut self.rng);
        let order_id = uuid(&mut self.rng);
        let volumes = body
            .volume_mount
            .iter()
            .map(|v| SimVolume {
                path: if v.path_in_container.is_empty() { "/root/data".into() } else { v.path_in_container.clone() },
                kind: if v.kind.is_empty() { "shared-filesystem".into() } else { v.kind.clone() },
                size_gb: v.size,
                pvc: format!("volume-{}", hex(&mut self.rng, 8)),
            })
            .collect::<Vec<_>>();
        let access = self.new_access();
        let instance = SimInstance {
            name: name.clone(),
            uid,
            display_name: body.display_name.clone(),
            cluster: cluster.to_owned(),
            region_id,
            image: body.image.clone(),
            sku_id: sku.id.clone(),
            billing_type: billing_type.clone(),
            term: body.cost.cost_time.clone(),
            coupon_id: body.cost.coupon_id.clone(),
            disk_sku_id: body.cost.disk_sku_id.clone(),
            order_id,
            created_at: now,
            phase: Phase::Creating,
            until: Some(now + self.settings.create_time),
            holds_gpu: true,
            billed_since: None,
            started_at: now,
            stopped_at: None,
            prepaid_until: (term_hours > 0).then(|| now + chrono::Duration::hours(term_hours)),
            data_purged: false,
            access,
            activity: Activity::default(),
            status_override: None,
            volumes,
        };
        self.bills.insert(
            name.clone(),
            Accrual {
                display_name: instance.display_name.clone(),
                sku_id: sku.id.clone(),
                billing_type: Some(billing_type),
                prepaid: sku.price_at(now) * term_hours,
                data_gb: instance.volumes.iter().map(|v| v.size_gb).sum(),
                created_at: Some(now),
                ..Accrual::default()
            },
        );
        self.instances.insert(name.clone(), instance);
        self.touched(&name);
        Ok(render::instance(self, &self.instances[&name]))
    }

    pub fn power_off(
        &mut self,
        now: DateTime<Utc>,
        cluster: &str,
        name: &str,
        body: &wire::PowerOffBody,
    ) -> Result<(), SimError> {
        self.advance(now);
        let names = self.settings.statuses.clone();
        let instance = self.instance_mut(cluster, name)?;
        if instance.phase != Phase::Running {
            return Err(SimError::Conflict(format!(
                "instance {name} is {}, only a Running instance can be powered off",
                render::status_name(&names, &instance.phase)
            )));
        }
        let snapshot = if body.need_snapshot {
            let fails = if self.faults.fail_next_snapshots > 0 {
                self.faults.fail_next_snapshots -= 1;
                true
            } else {
                let rate = self.faults.snapshot_failure_rate.clamp(0.0, 1.0);
                rate > 0.0 && self.rng.random_bool(rate)
            };
            let instance = &self.instances[name];
            Some(PendingSnapshot {
                image: if body.image_name.is_empty() { instance.display_name.clone() } else { body.image_name.clone() },
                tag: if body.tag.is_empty() { "latest".into() } else { body.tag.clone() },
                fails,
            })
        } else {
            None
        };
        let duration =
            self.settings.stop_time + if snapshot.is_some() { self.settings.snapshot_time } else { Duration::ZERO };
        self.accrue(name, now);
        let instance = self.edit(name).expect("checked");
        instance.phase = Phase::Stopping { snapshot };
        instance.until = Some(now + duration);
        Ok(())
    }

    pub fn power_on(&mut self, now: DateTime<Utc>, cluster: &str, name: &str) -> Result<(), SimError> {
        self.advance(now);
        let names = self.settings.statuses.clone();
        let instance = self.instance_mut(cluster, name)?;
        if instance.phase != Phase::Stopped {
            return Err(SimError::Conflict(format!(
                "instance {name} is {}, only a Shutdown instance can be powered on",
                render::status_name(&names, &instance.phase)
            )));
        }
        let sku_id = instance.sku_id.clone();
        let sku = self
            .skus
            .get(&sku_id)
            .cloned()
            .ok_or_else(|| SimError::Conflict(format!("instance {name}: its SKU is no longer sold")))?;
        let has_gpu = self.free_gpus(&sku) >= sku.gpu_count;
        if !has_gpu && self.settings.power_on_without_gpu == NoGpu::Fail {
            return Err(SimError::NoCapacity(format!("no free {} for {name}", sku.gpu_resource_key)));
        }
        let start_time = self.settings.start_time;
        let instance = self.edit(name).expect("checked");
        instance.phase = Phase::Starting;
        instance.holds_gpu = has_gpu;
        instance.until = has_gpu.then(|| now + start_time);
        Ok(())
    }

    pub fn delete_instance(&mut self, now: DateTime<Utc>, cluster: &str, name: &str) -> Result<(), SimError> {
        self.advance(now);
        let require_stop = self.settings.delete_requires_stop;
        let names = self.settings.statuses.clone();
        let instance = self.instance_mut(cluster, name)?;
        match instance.phase {
            // A repeated delete (a retry after a lost answer) is not an error.
            Phase::Deleting => return Ok(()),
            Phase::Stopped | Phase::Failed => {}
            ref phase if require_stop => {
                return Err(SimError::Conflict(format!(
                    "instance {name} is {}: shut it down before deleting",
                    render::status_name(&names, phase)
                )));
            }
            _ => {}
        }
        self.accrue(name, now);
        let delete_time = self.settings.delete_time;
        let instance = self.edit(name).expect("checked");
        instance.phase = Phase::Deleting;
        instance.until = Some(now + delete_time);
        Ok(())
    }

    /// Jupyter's view of an instance, looked up by uid as the gateway URL carries it.
    pub fn jupyter(&mut self, now: DateTime<Utc>, uid: &str, token: &str) -> Result<ActivityView, JupyterError> {
        self.advance(now);
        let instance = self.instances.values().find(|i| i.uid == uid).ok_or(JupyterError::NotFound)?;
        if instance.phase != Phase::Running {
            return Err(JupyterError::NotRunning);
        }
        if token.is_empty() || token != instance.access.jupyter_token {
            return Err(JupyterError::Forbidden);
        }
        Ok(instance.activity.view(now, instance.started_at))
    }

    /// The next moment something happens on its own, to any instance.
    pub fn next_transition(&mut self) -> Option<DateTime<Utc>> {
        self.sync_events();
        self.events.first().map(|(at, _)| *at)
    }

    /// From `at`, a region has this many GPUs of a kind in all (a shortage,
    /// or its end); instances waiting for one get it if it is free.
    pub fn set_gpus(&mut self, at: DateTime<Utc>, region_id: &str, key: &str, gpus: u32) -> Result<(), SimError> {
        self.advance(at);
        let region = self
            .regions
            .iter_mut()
            .find(|r| r.id == region_id)
            .ok_or_else(|| SimError::NotFound(format!("region {region_id} not found")))?;
        region.gpus.insert(key.to_owned(), gpus);
        self.hand_out_gpus(at);
        Ok(())
    }

    /// What a running instance's Jupyter server would say at `now`, without
    /// the token check and without moving the clock (for `simulate`).
    pub fn activity_view(&self, name: &str, now: DateTime<Utc>) -> Option<ActivityView> {
        let instance = self.instances.get(name).filter(|i| i.phase == Phase::Running)?;
        Some(instance.activity.view(now, instance.started_at))
    }

    /// Replaces an instance's activity record (for scenarios and demos).
    pub fn set_activity(&mut self, name: &str, activity: Activity) -> Result<(), SimError> {
        let instance = self.edit(name).ok_or_else(|| SimError::NotFound(format!("instance {name} not found")))?;
        instance.activity = activity;
        Ok(())
    }

    /// Replaces the sessions an instance's activity follows (someone's plans changed).
    pub fn set_sessions(&mut self, name: &str, sessions: Vec<Session>) -> Result<(), SimError> {
        let instance = self.edit(name).ok_or_else(|| SimError::NotFound(format!("instance {name} not found")))?;
        instance.activity.sessions = sessions;
        Ok(())
    }

    /// Makes the API answer a raw status string for an instance, or stop doing so.
    pub fn override_status(&mut self, name: &str, status: Option<String>) -> Result<(), SimError> {
        let instance = self.edit(name).ok_or_else(|| SimError::NotFound(format!("instance {name} not found")))?;
        instance.status_override = status;
        Ok(())
    }

    /// Puts an instance in place as if it had been there since `created_at`
    /// (for fleet files). Running instances start billing at `now`; a term
    /// in force is billed in full at `now`, as the platform charges terms up
    /// front (so a trace's bill holds the prepaid instances it runs on).
    pub fn seed_instance(&mut self, mut instance: SimInstance, now: DateTime<Utc>) -> Result<(), SimError> {
        let sku = self
            .skus
            .get(&instance.sku_id)
            .cloned()
            .ok_or_else(|| SimError::BadRequest(format!("unknown SKU {:?}", instance.sku_id)))?;
        if instance.holds_gpu && self.free_gpus(&sku) < sku.gpu_count {
            return Err(SimError::NoCapacity(format!(
                "{} would exceed the {} pool",
                instance.display_name, sku.gpu_resource_key
            )));
        }
        instance.name = format!("instance-{}", hex(&mut self.rng, 8));
        instance.uid = uuid(&mut self.rng);
        instance.order_id = uuid(&mut self.rng);
        for volume in &mut instance.volumes {
            volume.pvc = format!("volume-{}", hex(&mut self.rng, 8));
        }
        instance.access = self.new_access();
        if instance.phase == Phase::Running && instance.billing_type == BillingType::PayAsYouGo {
            instance.billed_since = Some(now);
        }
        self.bills.insert(
            instance.name.clone(),
            Accrual {
                display_name: instance.display_name.clone(),
                sku_id: sku.id.clone(),
                billing_type: Some(instance.billing_type.clone()),
                data_gb: instance.volumes.iter().map(|v| v.size_gb).sum(),
                created_at: Some(now),
                prepaid: match instance.prepaid_until {
                    Some(until) if until > now => {
                        sku.price_at(now) * term_hours(&instance.billing_type, &instance.term).unwrap_or(0)
                    }
                    _ => Money::ZERO,
                },
                ..Accrual::default()
            },
        );
        self.touched(&instance.name.clone());
        self.instances.insert(instance.name.clone(), instance);
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JupyterError {
    NotFound,
    NotRunning,
    Forbidden,
}

/// Hours a prepaid term covers: `3D`, `2W`, `1M`; empty means one unit of the type.
fn term_hours(billing: &BillingType, term: &str) -> Option<i64> {
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

fn hex(rng: &mut StdRng, len: usize) -> String {
    (0..len).map(|_| char::from_digit(rng.random_range(0..16), 16).expect("hex digit")).collect()
}

fn uuid(rng: &mut StdRng) -> String {
    format!("{}-{}-{}-{}-{}", hex(rng, 8), hex(rng, 4), hex(rng, 4), hex(rng, 4), hex(rng, 12))
}

/// The simulator knows what its instances' Jupyter servers would say.
impl crate::signals::KnownActivity for std::sync::Mutex<Simulator> {
    fn activity(&self, instance: &str, now: DateTime<Utc>) -> Option<(crate::plan::Reading, DateTime<Utc>)> {
        let view = self.lock().expect("simulator lock").activity_view(instance, now)?;
        let reading = match view.busy_kernels {
            0 => crate::plan::Reading::IdleSince(view.last_activity.min(now)),
            _ => crate::plan::Reading::Active,
        };
        Some((reading, view.started))
    }
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
