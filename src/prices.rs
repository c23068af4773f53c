//! The SKU list as people read it (`mdc-autoscaler skus`): per region, the
//! list price, the price in force, the discount window and its time left,
//! and the free GPUs.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Serialize;

use crate::cloud::Sku;
use crate::money::Money;
use crate::pricing;
use crate::text::Shown;

#[derive(Clone, Debug, Serialize)]
pub struct PriceRow {
    pub region: String,
    pub cluster: String,
    pub sku: String,
    pub name: String,
    pub gpu_product: String,
    pub gpu_count: u32,
    pub billing: String,
    #[serde(serialize_with = "crate::money::yuan")]
    pub list_price_yuan_per_hour: Money,
    #[serde(serialize_with = "crate::money::yuan")]
    pub price_yuan_per_hour: Money,
    pub discount: Option<DiscountWindow>,
    pub free_gpus: u32,
}

#[derive(Clone, Debug, Serialize)]
pub struct DiscountWindow {
    pub ratio: f64,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub active: bool,
    /// Until it ends when open, until it opens when to come; none when past.
    pub minutes_left: Option<i64>,
}

/// One row per SKU, cheapest price in force first within each region.
pub fn rows(skus: &[Sku], now: DateTime<Utc>) -> Vec<PriceRow> {
    let mut rows: Vec<PriceRow> = skus
        .iter()
        .map(|s| {
            let discount = pricing::window(s).map(|w| {
                let active = w.contains(now);
                let left = if active { Some(w.end - now) } else { (w.start > now).then(|| w.start - now) };
                DiscountWindow {
                    ratio: w.ratio.as_f64(),
                    start: w.start,
                    end: w.end,
                    active,
                    minutes_left: left.map(|d| d.num_minutes()),
                }
            });
            PriceRow {
                region: s.region_name.clone(),
                cluster: s.cluster.clone(),
                sku: s.id.clone(),
                name: s.name.clone(),
                gpu_product: s.hardware.gpu_product.clone(),
                gpu_count: s.hardware.gpu_count,
                billing: s.billing_type.to_string(),
                list_price_yuan_per_hour: s.price_per_hour,
                price_yuan_per_hour: pricing::effective_price(s, now),
                discount,
                free_gpus: s.free_gpus,
            }
        })
        .collect();
    rows.sort_by(|a, b| (&a.region, a.price_yuan_per_hour, &a.sku).cmp(&(&b.region, b.price_yuan_per_hour, &b.sku)));
    rows
}

/// The rows as a table, times in `tz`.
pub fn table(rows: &[PriceRow], tz: Tz, now: DateTime<Utc>) -> String {
    let mut out = format!("SKUs at {}\n\n", now.with_timezone(&tz).format("%Y-%m-%d %H:%M %Z"));
    let header = ["REGION", "CLUSTER", "SKU", "GPU", "LIST", "NOW", "DISCOUNT", "FREE GPUS"];
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let discount = r.discount.as_ref().map_or_else(String::new, |d| {
                let local = |t: DateTime<Utc>| t.with_timezone(&tz).format("%m-%d %H:%M").to_string();
                let left = d.minutes_left.map_or_else(String::new, |m| {
                    let when = if d.active { "left" } else { "to go" };
                    format!(", {}h {:02}m {when}", m / 60, m % 60)
                });
                format!("×{:.2} {} to {}{left}", d.ratio, local(d.start), local(d.end))
            });
            let shown = |text: &str| Shown(text).to_string();
            vec![
                shown(&r.region),
                shown(&r.cluster),
                shown(&r.sku),
                format!("{}× {}", r.gpu_count, Shown(&r.gpu_product)),
                format!("¥{:.2}/h", r.list_price_yuan_per_hour.as_yuan_f64()),
                format!("¥{:.2}/h", r.price_yuan_per_hour.as_yuan_f64()),
                discount,
                r.free_gpus.to_string(),
            ]
        })
        .collect();
    out += &crate::text::table(&header, &cells);
    if rows.is_empty() {
        out += "(no SKUs on sale)\n";
    }
    out
}
