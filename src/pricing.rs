//! Effective prices: the list price, times the discount ratio inside its window.

use chrono::{DateTime, Duration, Utc};

use crate::cloud::{BillingType, Sku};
use crate::money::{Money, Ratio};

/// A span `[start, end)` in which `ratio` applies.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Window {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub ratio: Ratio,
}

impl Window {
    pub fn contains(&self, at: DateTime<Utc>) -> bool {
        self.start <= at && at < self.end
    }
}

/// The discount window a SKU shows, if any.
pub fn window(sku: &Sku) -> Option<Window> {
    sku.discount.as_ref().map(|d| Window { start: d.start.to_utc(), end: d.end.to_utc(), ratio: d.ratio })
}

pub fn discount_active(sku: &Sku, at: DateTime<Utc>) -> bool {
    window(sku).is_some_and(|w| w.contains(at))
}

/// The hourly price in force at `at`.
pub fn effective_price(sku: &Sku, at: DateTime<Utc>) -> Money {
    price_at(sku.price_per_hour, window(sku).as_slice(), at)
}

pub fn price_at(list_price: Money, windows: &[Window], at: DateTime<Utc>) -> Money {
    match windows.iter().find(|w| w.contains(at)) {
        Some(w) => w.ratio.apply(list_price),
        None => list_price,
    }
}

/// What running from `from` to `to` costs at `list_price` with these
/// (non-overlapping) windows, in the exact unit of [`Money::hourly_scaled`].
pub fn cost_scaled(list_price: Money, windows: &[Window], from: DateTime<Utc>, to: DateTime<Utc>) -> i128 {
    if to <= from {
        return 0;
    }
    let mut total = 0i128;
    let mut discounted_millis = 0i64;
    for w in windows {
        let start = w.start.max(from);
        let end = w.end.min(to);
        if start < end {
            let millis = (end - start).num_milliseconds();
            total += w.ratio.apply(list_price).hourly_scaled(millis);
            discounted_millis += millis;
        }
    }
    total + list_price.hourly_scaled((to - from).num_milliseconds() - discounted_millis)
}

/// What a create needs from a SKU.
#[derive(Clone, Debug)]
pub struct Wanted<'a> {
    /// GPU models, in order of preference.
    pub products: &'a [String],
    pub gpu_count: u32,
    pub min_memory_gb: Option<u32>,
    pub billing: &'a BillingType,
    /// Clusters, in order of preference.
    pub clusters: &'a [String],
    pub max_price: Option<Money>,
    pub prefer_discount: bool,
}

impl Wanted<'_> {
    /// The SKU is of the right kind, whatever its price or free GPUs.
    pub fn fits(&self, sku: &Sku) -> bool {
        self.product_rank(sku).is_some()
            && self.cluster_rank(sku).is_some()
            && sku.hardware.gpu_count == self.gpu_count
            && self.min_memory_gb.is_none_or(|m| sku.hardware.gpu_memory_gb >= m)
            && &sku.billing_type == self.billing
    }

    fn product_rank(&self, sku: &Sku) -> Option<usize> {
        self.products.iter().position(|p| p.eq_ignore_ascii_case(&sku.hardware.gpu_product))
    }

    fn cluster_rank(&self, sku: &Sku) -> Option<usize> {
        self.clusters.iter().position(|c| *c == sku.cluster)
    }
}

/// The cheapest SKU at `now` that fits, has the GPUs free and is under the
/// cap; ties go to a running discount (if preferred), then to the preferred
/// model, then the preferred cluster. `skip` names SKUs to pass over (a
/// recent capacity failure). The error says why nothing qualifies.
pub fn choose_sku<'a>(
    skus: &'a [Sku],
    wanted: &Wanted<'_>,
    now: DateTime<Utc>,
    skip: impl Fn(&Sku) -> bool,
) -> Result<(&'a Sku, Money), NoSku> {
    let fitting: Vec<&Sku> = skus.iter().filter(|s| wanted.fits(s)).collect();
    if fitting.is_empty() {
        return Err(NoSku::NoneFits {
            billing: wanted.billing.to_string(),
            gpus: wanted.gpu_count,
            products: wanted.products.join(", "),
            clusters: wanted.clusters.join(", "),
        });
    }
    let free: Vec<&Sku> = fitting.iter().copied().filter(|s| s.free_gpus >= wanted.gpu_count && !skip(s)).collect();
    if free.is_empty() {
        return Err(NoSku::NoFreeGpus(ids(&fitting)));
    }
    let best = free
        .into_iter()
        .map(|s| (s, effective_price(s, now)))
        .min_by_key(|(s, price)| {
            let no_discount = wanted.prefer_discount && !discount_active(s, now);
            (*price, no_discount, wanted.product_rank(s), wanted.cluster_rank(s), s.id.clone())
        })
        .expect("not empty");
    match wanted.max_price {
        Some(cap) if best.1 > cap => {
            Err(NoSku::OverCap { id: best.0.id.clone(), name: best.0.name.clone(), price: best.1, cap })
        }
        _ => Ok(best),
    }
}

/// Why no SKU can take a create now.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum NoSku {
    #[error("no {billing} SKU with {gpus} GPU(s) of {products} in {clusters}")]
    NoneFits { billing: String, gpus: u32, products: String, clusters: String },
    #[error("no free GPUs on SKUs {0}")]
    NoFreeGpus(String),
    #[error("the cheapest free SKU ({id} {name}) costs ¥{price}/h, above the cap of ¥{cap}/h")]
    OverCap { id: String, name: String, price: Money, cap: Money },
}

/// A discount window on a fitting SKU that opens within `within` and would
/// be cheaper than `price_now`: worth waiting for.
pub fn upcoming_discount<'a>(
    skus: &'a [Sku],
    wanted: &Wanted<'_>,
    now: DateTime<Utc>,
    within: Duration,
    price_now: Money,
) -> Option<(&'a Sku, DateTime<Utc>, Money)> {
    skus.iter()
        .filter(|s| wanted.fits(s))
        .filter_map(|s| window(s).map(|w| (s, w)))
        .filter(|(_, w)| w.start > now && w.start - now <= within)
        .map(|(s, w)| (s, w.start, w.ratio.apply(s.price_per_hour)))
        .filter(|(_, _, price)| *price < price_now && wanted.max_price.is_none_or(|cap| *price <= cap))
        .min_by_key(|(s, start, price)| (*price, *start, s.id.clone()))
}

fn ids(skus: &[&Sku]) -> String {
    skus.iter().map(|s| format!("{} ({})", s.id, s.name)).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 27, h, 0, 0).unwrap()
    }

    #[test]
    fn window_is_half_open() {
        let w = [Window { start: t(2), end: t(4), ratio: Ratio::from_f64(0.5).unwrap() }];
        let price = Money::from_yuan(10);
        assert_eq!(price_at(price, &w, t(1)), price);
        assert_eq!(price_at(price, &w, t(2)), Money::from_yuan(5));
        assert_eq!(price_at(price, &w, t(4)), price);
    }

    #[test]
    fn cost_splits_at_window_edges() {
        let w = [Window { start: t(2), end: t(4), ratio: Ratio::from_f64(0.48).unwrap() }];
        let price = Money::from_yuan(10);
        // 1h at 10 + 2h at 4.80 + 1h at 10
        let cost = Money::from_hourly_scaled(cost_scaled(price, &w, t(1), t(5)));
        assert_eq!(cost, Money::from_micros(29_600_000));
        assert_eq!(cost_scaled(price, &w, t(5), t(1)), 0);
    }
}
