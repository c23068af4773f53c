//! What the simulated platform has billed: compute per second while Running
//! at the price in force, storage per GB-day, prepaid terms up front, and
//! saved images beyond the free allowance.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{SimSku, Simulator};
use crate::cloud::BillingType;
use crate::money::Money;
use crate::pricing::cost_scaled;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct InstanceBill {
    pub name: String,
    pub display_name: String,
    pub sku_id: String,
    pub billing_type: String,
    pub running_seconds: i64,
    #[serde(rename = "compute_micros")]
    pub compute: Money,
    #[serde(rename = "storage_micros")]
    pub storage: Money,
    #[serde(rename = "prepaid_micros")]
    pub prepaid: Money,
    #[serde(rename = "total_micros")]
    pub total: Money,
    pub deleted: bool,
}

/// Money in millionths of a yuan, as everywhere in the product.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BillReport {
    pub at: DateTime<Utc>,
    pub instances: Vec<InstanceBill>,
    #[serde(rename = "images_micros")]
    pub images: Money,
    #[serde(rename = "total_micros")]
    pub total: Money,
}

const MILLIS_PER_DAY: i128 = 86_400_000;

impl SimSku {
    /// The list price in force at `at`.
    pub fn price_at(&self, at: DateTime<Utc>) -> Money {
        let i = self.price_changes.partition_point(|(from, _)| *from <= at);
        i.checked_sub(1).map_or(self.price_per_hour, |i| self.price_changes[i].1)
    }

    /// What running from `from` to `to` costs at the prices in force (list
    /// prices as they change, discounts as their windows open), in the exact
    /// unit of [`Money::hourly_scaled`].
    pub fn cost_scaled(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> i128 {
        let windows = self.discount.as_ref().map(|d| d.windows(from, to)).unwrap_or_default();
        let changes = self.price_changes.iter().map(|(at, _)| *at).filter(|at| from < *at && *at < to);
        let edges: Vec<DateTime<Utc>> = std::iter::once(from).chain(changes).chain(std::iter::once(to)).collect();
        edges.windows(2).map(|span| cost_scaled(self.price_at(span[0]), &windows, span[0], span[1])).sum()
    }
}

impl Simulator {
    /// The bill up to the simulator's present (call [`Simulator::advance`] first).
    pub fn bill(&self) -> BillReport {
        let now = self.now;
        let storage_price = Money::from_yuan_f64(self.settings.storage_yuan_per_gb_day).unwrap_or(Money::ZERO);
        let instances: Vec<InstanceBill> = self
            .bills
            .iter()
            .map(|(name, accrual)| {
                let mut compute_scaled = accrual.compute_scaled;
                let mut running_ms = accrual.running_ms;
                // The run in progress, without disturbing the accrual.
                if let Some(i) = self.instances.get(name)
                    && let (Some(since), Some(sku)) = (i.billed_since, self.skus.get(&i.sku_id))
                {
                    compute_scaled += sku.cost_scaled(since, now);
                    running_ms += (now - since).num_milliseconds();
                }
                let compute = Money::from_hourly_scaled(compute_scaled);
                let stored_until = accrual.deleted_at.unwrap_or(now);
                let stored_ms = accrual.created_at.map_or(0, |c| (stored_until - c).num_milliseconds().max(0));
                let storage = Money::from_micros(
                    (storage_price.micros() as i128 * accrual.data_gb as i128 * stored_ms as i128 / MILLIS_PER_DAY)
                        as i64,
                );
                InstanceBill {
                    name: name.clone(),
                    display_name: accrual.display_name.clone(),
                    sku_id: accrual.sku_id.clone(),
                    billing_type: accrual.billing_type.as_ref().unwrap_or(&BillingType::PayAsYouGo).name().to_owned(),
                    running_seconds: running_ms / 1000,
                    compute,
                    storage,
                    prepaid: accrual.prepaid,
                    total: compute + storage + accrual.prepaid,
                    deleted: accrual.deleted_at.is_some(),
                }
            })
            .collect();
        let images = self.image_storage(storage_price);
        let total = instances.iter().map(|b| b.total).sum::<Money>() + images;
        BillReport { at: now, instances, images, total }
    }

    /// Saved images are free up to `free_image_gb` in all; the rest costs
    /// storage per GB-day from the moment each image was saved until it was
    /// replaced.
    fn image_storage(&self, price: Money) -> Money {
        // Stored gigabytes change at each save and each replacement.
        let mut changes: Vec<(DateTime<Utc>, i128)> = Vec::new();
        for image in self.images.iter().filter(|i| i.succeeded) {
            changes.push((image.at, i128::from(image.size_gb)));
            if let Some(replaced) = image.replaced_at {
                changes.push((replaced, -i128::from(image.size_gb)));
            }
        }
        changes.sort();
        let (mut gb, mut scaled) = (0i128, 0i128);
        for (k, (at, change)) in changes.iter().enumerate() {
            gb += change;
            let until = changes.get(k + 1).map_or(self.now, |next| next.0);
            let billable = (gb - i128::from(self.settings.free_image_gb)).max(0);
            scaled += billable * i128::from(price.micros()) * i128::from((until - *at).num_milliseconds());
        }
        Money::from_micros((scaled / MILLIS_PER_DAY) as i64)
    }
}
