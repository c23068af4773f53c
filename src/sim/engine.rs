//! Time moving the platform: transitions firing in order, GPUs handed
//! out, snapshots saved, compute accrued.

use chrono::{DateTime, Utc};
use rand::Rng;

use crate::cloud::BillingType;

use super::{Access, PendingSnapshot, Phase, SavedImage, Simulator, hex};

impl Simulator {
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
    pub(super) fn hand_out_gpus(&mut self, at: DateTime<Utc>) {
        let mut waiting: Vec<(DateTime<Utc>, String)> = self
            .instances
            .values()
            .filter(|i| i.phase == Phase::Starting && i.until.is_none())
            .map(|i| (i.stopped_at.unwrap_or(i.created_at), i.name.clone()))
            .collect();
        waiting.sort();
        for (_, name) in waiting {
            let sku = self.skus.get(&self.instances[&name].sku_id).cloned();
            if sku.is_some_and(|s| self.free_gpus(&s) >= s.hardware.gpu_count) {
                let start_time = self.settings.start_time;
                let i = self.edit(&name).expect("exists");
                i.holds_gpu = true;
                i.until = Some(at + start_time);
            }
        }
    }

    fn record_image(&mut self, name: &str, snapshot: &PendingSnapshot, at: DateTime<Utc>) {
        let size_gb = self
            .instances
            .get(name)
            .and_then(|i| self.skus.get(&i.sku_id))
            .map_or(30, |s| s.hardware.system_storage_gb);
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
    pub(super) fn accrue(&mut self, name: &str, to: DateTime<Utc>) {
        // Billing only: nothing the API shows, nothing that moves an event.
        let Some(i) = self.instances.get_mut(name) else { return };
        let Some(since) = i.billed_since.take() else { return };
        let Some(sku) = self.skus.get(&i.sku_id) else { return };
        let scaled = sku.cost_scaled(since, to);
        let bill = self.bills.entry(name.to_owned()).or_default();
        bill.compute_scaled += scaled;
        bill.running_ms += (to - since).num_milliseconds().max(0);
    }

    pub(super) fn new_access(&mut self) -> Access {
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

    /// The next moment something happens on its own, to any instance.
    pub fn next_transition(&mut self) -> Option<DateTime<Utc>> {
        self.sync_events();
        self.events.first().map(|(at, _)| *at)
    }
}
