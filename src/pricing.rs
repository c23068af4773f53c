//! Effective prices: the list price, times the discount ratio inside its window.

use chrono::{DateTime, Utc};

use crate::cloud::Sku;
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
