//! The simulator as an in-process [`Cloud`]: the same answers as the fake
//! server gives over HTTP, without the sockets (for `plan`, `simulate` and
//! planner tests).

use std::sync::{Arc, Mutex};

use super::{SimError, Simulator};
use crate::clock::Clock;
use crate::cloud::{
    Cloud, CloudError, CreateRequest, DEFAULT_CAPACITY_PATTERNS, Endpoint, Instance, PowerOff, Region, Sku, StatusMap,
    classify, wire,
};

#[derive(Clone)]
pub struct SimCloud {
    sim: Arc<Mutex<Simulator>>,
    clock: Clock,
    statuses: StatusMap,
}

impl SimCloud {
    pub fn new(sim: Arc<Mutex<Simulator>>, clock: Clock) -> Self {
        SimCloud { sim, clock, statuses: StatusMap::default() }
    }

    fn with<T>(
        &self,
        endpoint: Endpoint,
        op: impl FnOnce(&mut Simulator) -> Result<T, SimError>,
    ) -> Result<T, CloudError> {
        let mut sim = self.sim.lock().expect("simulator lock");
        sim.advance(self.clock.now());
        op(&mut sim).map_err(|e| {
            let patterns: Vec<String> = DEFAULT_CAPACITY_PATTERNS.iter().map(|p| p.to_string()).collect();
            CloudError::new(endpoint, classify(e.http_status(), e.to_string(), None, &patterns))
        })
    }

    /// What changed since the last call, for a step told rather than
    /// listing: the instances the simulator edited, as the API would list
    /// them now, and those of `active` (whose activity changed) it did not.
    pub fn told(&self, active: impl IntoIterator<Item = String>) -> Result<crate::cloud::Told, CloudError> {
        let now = self.clock.now();
        let mut told = crate::cloud::Told::default();
        let raws = self.with(Endpoint::ListInstances, |sim| {
            sim.advance(now);
            let edited = sim.take_changed();
            told.active = active.into_iter().filter(|name| !edited.contains(name)).collect();
            let mut raws = Vec::new();
            for name in edited {
                match sim.instance(&name).map(|i| i.cluster.clone()) {
                    Some(cluster) => raws.push(sim.get_instance(now, &cluster, &name)?),
                    None => told.gone.push(name),
                }
            }
            Ok(raws)
        })?;
        for raw in raws {
            told.instances.push(self.domain(Endpoint::ListInstances, raw)?);
        }
        Ok(told)
    }

    fn domain(&self, endpoint: Endpoint, raw: wire::Instance) -> Result<Instance, CloudError> {
        raw.into_domain(&self.statuses).map_err(|e| malformed(endpoint, e))
    }
}

/// A record the simulator answered that the client would refuse.
fn malformed(endpoint: Endpoint, e: crate::cloud::wire::Malformed) -> CloudError {
    CloudError::new(endpoint, crate::cloud::CloudErrorKind::Malformed { reason: e.to_string(), excerpt: String::new() })
}

impl Cloud for SimCloud {
    async fn list_regions(&self) -> Result<Vec<Region>, CloudError> {
        let now = self.clock.now();
        let regions = self.with(Endpoint::ListRegions, |sim| Ok(sim.list_regions(now)))?;
        Ok(regions.into_iter().map(Region::from).collect())
    }

    async fn list_skus(&self, region_id: &str) -> Result<Vec<Sku>, CloudError> {
        let now = self.clock.now();
        let skus = self.with(Endpoint::ListSkus, |sim| Ok(sim.list_skus(now, region_id)))?;
        skus.into_iter().map(|s| s.into_domain().map_err(|e| malformed(Endpoint::ListSkus, e))).collect()
    }

    async fn list_instances(&self, cluster: &str) -> Result<Vec<Instance>, CloudError> {
        let now = self.clock.now();
        let list = self.with(Endpoint::ListInstances, |sim| sim.list_instances(now, cluster, 1, u32::MAX))?;
        list.nodes.into_iter().map(|raw| self.domain(Endpoint::ListInstances, raw)).collect()
    }

    async fn get_instance(&self, cluster: &str, name: &str) -> Result<Instance, CloudError> {
        let now = self.clock.now();
        let raw = self.with(Endpoint::GetInstance, |sim| sim.get_instance(now, cluster, name))?;
        self.domain(Endpoint::GetInstance, raw)
    }

    async fn create_instance(&self, request: &CreateRequest) -> Result<Instance, CloudError> {
        let now = self.clock.now();
        let raw = self.with(Endpoint::CreateInstance, |sim| {
            let body = wire::CreateBody::new(sim.namespace(), request);
            sim.create_instance(now, &request.cluster, &body)
        })?;
        self.domain(Endpoint::CreateInstance, raw)
    }

    async fn power_off(&self, cluster: &str, name: &str, request: &PowerOff) -> Result<(), CloudError> {
        let now = self.clock.now();
        self.with(Endpoint::PowerOff, |sim| sim.power_off(now, cluster, name, &request.into()))
    }

    async fn power_on(&self, cluster: &str, name: &str) -> Result<(), CloudError> {
        let now = self.clock.now();
        self.with(Endpoint::PowerOn, |sim| sim.power_on(now, cluster, name))
    }

    async fn delete_instance(&self, cluster: &str, name: &str) -> Result<(), CloudError> {
        let now = self.clock.now();
        self.with(Endpoint::DeleteInstance, |sim| sim.delete_instance(now, cluster, name))
    }
}
