//! What tests and traces set from outside the API: capacity, activity,
//! sessions, odd statuses, instances seeded as they are.

use chrono::{DateTime, Utc};

use crate::cloud::BillingType;
use crate::money::Money;

use super::{Accrual, Activity, ActivityView, Phase, Session, SimError, SimInstance, Simulator, hex, term_hours, uuid};

impl Simulator {
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
        if instance.holds_gpu && self.free_gpus(&sku) < sku.hardware.gpu_count {
            return Err(SimError::NoCapacity(format!(
                "{} would exceed the {} pool",
                instance.display_name, sku.hardware.gpu_resource_key
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
