//! Checks that need the cloud's answers: what a pool asks for against the
//! SKUs on sale, what a selector names against the instances listed.

use std::collections::BTreeSet;

use crate::cloud::{Instance, Sku};
use crate::pricing::{self, Wanted};

use super::check::Severity;
use super::load::Finding;
use super::policy::{Config, Policy};

pub fn check(
    config: &Config,
    skus: &[Sku],
    instances: &[Instance],
    now: chrono::DateTime<chrono::Utc>,
) -> Vec<Finding> {
    let mut findings = Vec::new();
    for (index, policy) in config.policies.iter().enumerate() {
        let at = |path: &[&str]| {
            let mut key = vec!["policies".to_owned(), index.to_string()];
            key.extend(path.iter().map(|p| (*p).to_owned()));
            key
        };
        let mut say = |severity, path: &[&str], message: String| {
            findings.push(Finding { key: at(path), severity, message: format!("policy `{}`: {message}", policy.name) })
        };
        if let Some(select) = &policy.select {
            let on_sale: BTreeSet<&str> = skus.iter().map(|s| s.hardware.gpu_product.as_str()).collect();
            for product in select.gpu_products.iter().filter(|p| !on_sale.iter().any(|s| s.eq_ignore_ascii_case(p))) {
                say(
                    Severity::Warning,
                    &["select", "gpu_product"],
                    format!("no SKU of `{product}` is on sale{}", listed(&on_sale)),
                );
            }
            let clusters: BTreeSet<&str> = skus.iter().map(|s| s.cluster.as_str()).collect();
            for cluster in select.clusters.iter().filter(|c| !clusters.contains(c.as_str())) {
                say(
                    Severity::Warning,
                    &["select", "cluster"],
                    format!("cluster `{cluster}` has no SKU on sale{}", listed(&clusters)),
                );
            }
            if !instances.iter().any(|i| select.matches(i)) {
                say(
                    Severity::Warning,
                    &["select"],
                    format!("its selector matches none of the {} instances listed now", instances.len()),
                );
            }
        }
        let Some(pool) = &policy.pool else { continue };
        let in_clusters: Vec<&Sku> = skus.iter().filter(|s| pool.clusters.contains(&s.cluster)).collect();
        let on_sale: BTreeSet<&str> = in_clusters.iter().map(|s| s.hardware.gpu_product.as_str()).collect();
        let wanted = Wanted { max_price: None, ..pool.wanted() };
        let fitting: Vec<&Sku> = in_clusters.iter().copied().filter(|s| wanted.fits(s)).collect();
        if fitting.is_empty() {
            say(
                Severity::Error,
                &["pool"],
                format!(
                    "no SKU on sale fits the pool ({} {} GPU(s) of {} in {}){}",
                    pool.billing,
                    pool.gpu.count,
                    pool.gpu.products.join(", "),
                    pool.clusters.join(", "),
                    listed(&on_sale)
                ),
            );
            continue;
        }
        for product in pool.gpu.products.iter().filter(|p| !on_sale.iter().any(|s| s.eq_ignore_ascii_case(p))) {
            say(
                Severity::Warning,
                &["pool", "gpu", "products"],
                format!("`{product}` is not on sale in {}{}", pool.clusters.join(", "), listed(&on_sale)),
            );
        }
        if pool.only_during_discount && fitting.iter().all(|s| pricing::window(s).is_none()) {
            say(
                Severity::Warning,
                &["pool", "only_during_discount"],
                "no fitting SKU has a discount window now: the pool runs none until one is announced".into(),
            );
        }
        if let Some(cap) = pool.max_price_per_hour {
            // The cheapest a fitting SKU ever gets: its discounted price, if it has a window.
            let floor = fitting
                .iter()
                .map(|s| pricing::window(s).map_or(s.price_per_hour, |w| w.ratio.apply(s.price_per_hour)))
                .min()
                .expect("not empty");
            if floor > cap {
                say(
                    Severity::Error,
                    &["pool", "max_price_per_hour"],
                    format!(
                        "max_price_per_hour ¥{cap} is below every fitting SKU (the cheapest is ¥{floor}/h, discount included): the pool can never create"
                    ),
                );
            } else if fitting.iter().all(|s| pricing::effective_price(s, now) > cap) {
                say(
                    Severity::Warning,
                    &["pool", "max_price_per_hour"],
                    format!("at ¥{cap}/h the pool can create only during a discount window"),
                );
            }
        }
    }
    for instance in instances {
        let matching: Vec<(usize, &Policy)> =
            config.policies.iter().enumerate().filter(|(_, p)| p.pools(instance) || p.selects(instance)).collect();
        let Some(owner) = config.owner(instance).map(|p| p.name.as_str()) else { continue };
        if matching.len() > 1 {
            let other = matching.iter().find(|(_, p)| p.name != owner).map_or(0, |(i, _)| *i);
            findings.push(Finding {
                key: vec!["policies".into(), other.to_string()],
                severity: Severity::Warning,
                message: format!(
                    "instance {} ({}) is selected by {}; it belongs to `{owner}`",
                    instance.display_name,
                    instance.name,
                    matching.iter().map(|(_, p)| format!("`{}`", p.name)).collect::<Vec<_>>().join(" and "),
                ),
            });
        }
    }
    findings
}

/// `(on sale: a, b)`, or `(nothing is on sale)`.
fn listed(names: &BTreeSet<&str>) -> String {
    match names.is_empty() {
        true => " (nothing is on sale there)".into(),
        false => format!(" (on sale: {})", names.iter().copied().collect::<Vec<_>>().join(", ")),
    }
}
