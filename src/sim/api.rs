//! The eight calls of the compute API as the platform answers them, and
//! what its Jupyter servers say.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng;

use crate::cloud::{BillingType, wire};

use super::{
    Accrual, Activity, ActivityView, JupyterError, NoGpu, PendingSnapshot, Phase, SimError, SimInstance, SimRegion,
    SimVolume, Simulator, hex, render, term_hours, uuid,
};

impl Simulator {
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
        let lag = chrono::Duration::from_std(self.faults.list_lag).unwrap_or(chrono::Duration::MAX);
        let listed =
            |i: &&SimInstance| i.cluster == cluster && i.created_at.checked_add_signed(lag).is_some_and(|t| t <= now);
        let mut all: Vec<&SimInstance> = self.instances.values().filter(listed).collect();
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
        if self.free_gpus(&sku) < sku.hardware.gpu_count {
            return Err(SimError::NoCapacity(format!(
                "no free {} in {}",
                sku.hardware.gpu_resource_key, sku.region_id
            )));
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
        let has_gpu = self.free_gpus(&sku) >= sku.hardware.gpu_count;
        if !has_gpu && self.settings.power_on_without_gpu == NoGpu::Fail {
            return Err(SimError::NoCapacity(format!("no free {} for {name}", sku.hardware.gpu_resource_key)));
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
}
