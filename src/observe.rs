//! One observation of the cloud for the planner: regions, every SKU, the
//! instances of every cluster the policies name, and the idle signals. A
//! failed list ends the observation: the planner never sees half a picture.

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, Utc};

use crate::cloud::{Cloud, CloudError, Region, Sku};
use crate::config::policy::Config;
use crate::plan::{Observed, ObservedInstance};

/// Regions and SKUs as last listed: they change slowly, so the daemon reads
/// them on their own, slower interval.
#[derive(Default)]
pub struct Catalog {
    regions: Vec<Region>,
    skus: Vec<Sku>,
    at: Option<DateTime<Utc>>,
}

impl Catalog {
    /// Lists regions and every region's SKUs when older than `max_age`;
    /// answers whether it did.
    pub async fn refresh(
        &mut self,
        cloud: &impl Cloud,
        now: DateTime<Utc>,
        max_age: Duration,
    ) -> Result<bool, CloudError> {
        if self.at.is_some_and(|at| now - at < max_age) {
            return Ok(false);
        }
        let regions = cloud.list_regions().await?;
        let mut skus = Vec::new();
        for region in &regions {
            skus.extend(cloud.list_skus(&region.id).await?);
        }
        *self = Catalog { regions, skus, at: Some(now) };
        Ok(true)
    }

    pub fn regions(&self) -> &[Region] {
        &self.regions
    }

    pub fn skus(&self) -> &[Sku] {
        &self.skus
    }
}

/// Lists everything the policies need, afresh. Idle signals are read by
/// [`crate::signals::read_signals`]; ledger facts (spend, marks, stop times, snapshots) are
/// the caller's to add.
pub async fn observe(cloud: &impl Cloud, config: &Config) -> Result<Observed, CloudError> {
    let mut catalog = Catalog::default();
    catalog.refresh(cloud, Utc::now(), Duration::zero()).await?;
    observe_with(cloud, config, &catalog).await
}

/// Lists the instances of every cluster the policies name, with a catalog
/// of regions and SKUs already at hand.
pub async fn observe_with(cloud: &impl Cloud, config: &Config, catalog: &Catalog) -> Result<Observed, CloudError> {
    let (regions, skus) = (catalog.regions.clone(), catalog.skus.clone());
    let mut instances = Vec::new();
    for cluster in clusters(config, &regions) {
        instances.extend(cloud.list_instances(&cluster).await?);
    }
    let instances = instances.into_iter().map(ObservedInstance::new).collect();
    Ok(Observed { regions, skus, instances, ..Observed::default() })
}

/// The clusters the policies name; every cluster when a selector names none.
pub fn clusters(config: &Config, regions: &[crate::cloud::Region]) -> BTreeSet<String> {
    let any = config.policies.iter().any(|p| p.select.as_ref().is_some_and(|s| s.clusters.is_empty()));
    if any {
        return regions.iter().map(|r| r.cluster.clone()).collect();
    }
    config
        .policies
        .iter()
        .flat_map(|p| {
            let selected = p.select.iter().flat_map(|s| s.clusters.iter());
            let pooled = p.pool.iter().flat_map(|pool| pool.clusters.iter());
            selected.chain(pooled).cloned()
        })
        .collect()
}
