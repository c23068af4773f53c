//! Checks that need the cloud's answers: price caps against the SKUs on
//! sale, and which instances more than one policy would select.

use crate::cloud::{Instance, Sku};
use crate::pricing::{self, Wanted};

use super::policy::Config;

/// Problems found against the live SKUs and instances, as messages.
pub struct Findings {
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
}

pub fn check(config: &Config, skus: &[Sku], instances: &[Instance], now: chrono::DateTime<chrono::Utc>) -> Findings {
    let mut findings = Findings { errors: Vec::new(), warnings: Vec::new() };
    for policy in &config.policies {
        let Some(pool) = &policy.pool else { continue };
        let wanted = Wanted { max_price: None, ..pool.wanted() };
        let fitting: Vec<&Sku> = skus.iter().filter(|s| wanted.fits(s)).collect();
        if fitting.is_empty() {
            findings.errors.push(format!(
                "policy `{}`: no SKU on sale fits the pool ({} {} GPU(s) of {} in {})",
                policy.name,
                pool.billing,
                pool.gpu.count,
                pool.gpu.products.join(", "),
                pool.clusters.join(", ")
            ));
            continue;
        }
        if let Some(cap) = pool.max_price_per_hour {
            // The cheapest a fitting SKU ever gets: its discounted price, if it has a window.
            let floor = fitting
                .iter()
                .map(|s| pricing::window(s).map_or(s.price_per_hour, |w| w.ratio.apply(s.price_per_hour)))
                .min()
                .expect("not empty");
            if floor > cap {
                findings.errors.push(format!(
                    "policy `{}`: max_price_per_hour ¥{cap} is below every fitting SKU (the cheapest is ¥{floor}/h, discount included): the pool can never create",
                    policy.name
                ));
            } else if fitting.iter().all(|s| pricing::effective_price(s, now) > cap) {
                findings.warnings.push(format!(
                    "policy `{}`: at ¥{cap}/h the pool can create only during a discount window",
                    policy.name
                ));
            }
        }
    }
    for instance in instances {
        let matching: Vec<&str> = config
            .policies
            .iter()
            .filter(|p| p.pools(instance) || p.selects(instance))
            .map(|p| p.name.as_str())
            .collect();
        if matching.len() > 1 {
            findings.warnings.push(format!(
                "instance {} ({}) is selected by {}; it belongs to `{}`",
                instance.display_name,
                instance.name,
                matching.iter().map(|m| format!("`{m}`")).collect::<Vec<_>>().join(" and "),
                owner(config, instance).unwrap_or(matching[0])
            ));
        }
    }
    findings
}

/// The policy an instance belongs to: its pool's, else the first selecting it.
fn owner<'c>(config: &'c Config, instance: &Instance) -> Option<&'c str> {
    config
        .policies
        .iter()
        .find(|p| p.pools(instance))
        .or_else(|| config.policies.iter().find(|p| p.selects(instance)))
        .map(|p| p.name.as_str())
}
