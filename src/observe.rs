//! One observation of the cloud for the planner: regions, every SKU, the
//! instances of every cluster the policies name, and the idle signals. A
//! failed list ends the observation: the planner never sees half a picture.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::cloud::{Cloud, CloudError, InstanceStatus};
use crate::config::policy::{Config, Signal};
use crate::plan::{Observed, ObservedInstance, Reading};
use crate::signals::jupyter;

/// How idle signals are read.
#[derive(Clone, Debug)]
pub struct SignalSettings {
    pub timeout: Duration,
    pub concurrency: usize,
}

impl Default for SignalSettings {
    fn default() -> Self {
        SignalSettings { timeout: Duration::from_secs(5), concurrency: 16 }
    }
}

/// Lists everything the policies need. Idle signals are read by
/// [`read_signals`]; ledger facts (spend, marks, stop times, snapshots) are
/// the caller's to add.
pub async fn observe(cloud: &impl Cloud, config: &Config) -> Result<Observed, CloudError> {
    let regions = cloud.list_regions().await?;
    let mut skus = Vec::new();
    for region in &regions {
        skus.extend(cloud.list_skus(&region.id).await?);
    }
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

/// Reads Jupyter for the running instances whose policy listens to it, a
/// bounded number at a time. Instances of other policies are not probed.
pub async fn read_signals(observed: &mut [ObservedInstance], config: &Config, settings: &SignalSettings) {
    let wants_jupyter = |o: &ObservedInstance| {
        config
            .policies
            .iter()
            .find(|p| p.pools(&o.instance) || p.selects(&o.instance))
            .and_then(|p| p.idle.as_ref())
            .is_some_and(|idle| idle.signals.contains(&Signal::Jupyter))
    };
    let http = reqwest::Client::new();
    let permits = Arc::new(Semaphore::new(settings.concurrency.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for (index, o) in observed.iter().enumerate() {
        if o.instance.status != InstanceStatus::Running || !wants_jupyter(o) {
            continue;
        }
        let endpoint = o.instance.servers.as_ref().and_then(|s| s.jupyter.clone());
        let (http, permits, timeout) = (http.clone(), Arc::clone(&permits), settings.timeout);
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await.expect("semaphore open");
            let look = match endpoint {
                Some(endpoint) => jupyter::look(&http, &endpoint, timeout).await,
                None => jupyter::JupyterLook { reading: Reading::Unreadable("no Jupyter URL".into()), started: None },
            };
            (index, look)
        });
    }
    let mut looks = BTreeMap::new();
    while let Some(done) = tasks.join_next().await {
        if let Ok((index, look)) = done {
            looks.insert(index, look);
        }
    }
    for (index, look) in looks {
        let o = &mut observed[index];
        o.running_since = look.started;
        o.signals.insert("jupyter".into(), look.reading);
    }
}
