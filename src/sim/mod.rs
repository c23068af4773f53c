//! The simulated MatrixDC platform: regions, GPU pools, SKUs with discount
//! windows, instances moving through their states, and billing as the
//! platform bills. Time is a parameter of every call; nothing here reads a clock.
//!
//! What it is made of is `model`; time moving it (transitions firing,
//! accrual) is `engine`; the eight API calls and Jupyter are `api`; what
//! tests and traces set from outside is `control`.

mod activity;
mod api;
mod billing;
mod control;
mod discount;
mod engine;
pub mod faults;
pub mod fleet;
pub mod local;
mod model;
mod render;
pub mod server;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub use activity::{Activity, ActivityView, Session};
pub use billing::{BillReport, InstanceBill};
pub use discount::{DiscountSchedule, SimDiscount};
use model::term_hours;
pub use model::{
    Access, Accrual, JupyterError, NoGpu, PendingSnapshot, Phase, PlatformFaults, PlatformSettings, SavedImage,
    SimError, SimInstance, SimRegion, SimSku, SimVolume, StatusNames,
};

/// One simulated account on the platform, at one moment (`now`).
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
        let blocked = self.faults.no_free_gpus.iter().any(|k| k == "*" || *k == sku.hardware.gpu_resource_key);
        if blocked {
            return 0;
        }
        let total =
            self.region(&sku.region_id).and_then(|r| r.gpus.get(&sku.hardware.gpu_resource_key)).copied().unwrap_or(0);
        total.saturating_sub(self.gpus_in_use(&sku.region_id, &sku.hardware.gpu_resource_key))
    }

    pub fn gpus_in_use(&self, region_id: &str, resource_key: &str) -> u32 {
        // The SKUs drawing from this pool, found once: a fleet has many instances and few SKUs.
        let drawing: Vec<(&str, u32)> = self
            .skus
            .values()
            .filter(|s| s.region_id == region_id && s.hardware.gpu_resource_key == resource_key)
            .map(|s| (s.id.as_str(), s.hardware.gpu_count))
            .collect();
        self.instances
            .values()
            .filter(|i| i.holds_gpu)
            .filter_map(|i| drawing.iter().find(|(id, _)| *id == i.sku_id).map(|(_, count)| count))
            .sum()
    }
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
