//! One observation of the cloud for the planner: regions, every SKU, the
//! instances of every cluster the policies name, and the idle signals. A
//! failed list ends the observation: the planner never sees half a picture.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, Utc};

use tokio::sync::Semaphore;

use crate::cloud::{Cloud, CloudError, InstanceStatus, Region, Sku};
use crate::config::policy::{Config, Signal};
use crate::plan::{Observed, ObservedInstance, Reading};
use crate::signals::jupyter;

/// How idle signals are read.
#[derive(Clone, Debug)]
pub struct SignalSettings {
    pub timeout: StdDuration,
    pub concurrency: usize,
}

impl Default for SignalSettings {
    fn default() -> Self {
        SignalSettings { timeout: StdDuration::from_secs(5), concurrency: 16 }
    }
}

/// Regions and SKUs as last listed: they change slowly, so the daemon reads
/// them on their own, slower interval.
#[derive(Default)]
pub struct Catalog {
    regions: Vec<Region>,
    skus: Vec<Sku>,
    at: Option<DateTime<Utc>>,
}

impl Catalog {
    /// Lists regions and every region's SKUs when older than `max_age`.
    pub async fn refresh(
        &mut self,
        cloud: &impl Cloud,
        now: DateTime<Utc>,
        max_age: Duration,
    ) -> Result<(), CloudError> {
        if self.at.is_some_and(|at| now - at < max_age) {
            return Ok(());
        }
        let regions = cloud.list_regions().await?;
        let mut skus = Vec::new();
        for region in &regions {
            skus.extend(cloud.list_skus(&region.id).await?);
        }
        *self = Catalog { regions, skus, at: Some(now) };
        Ok(())
    }
}

/// Lists everything the policies need, afresh. Idle signals are read by
/// [`read_signals`]; ledger facts (spend, marks, stop times, snapshots) are
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

/// The last Jupyter look at each instance, and when it was taken.
#[derive(Default)]
pub struct SignalCache {
    looks: BTreeMap<String, (jupyter::JupyterLook, DateTime<Utc>)>,
}

impl SignalCache {
    /// Whether to look again at `now` after a look at `at`. An unreadable
    /// signal, or an idle one whose deadline is within a cycle, is read every
    /// time. Otherwise an instance is read once per period of
    /// `stop_after - interval` (so never past a deadline), at a phase of its
    /// own within the period, which spreads a large fleet evenly over cycles.
    fn due(
        name: &str,
        look: &jupyter::JupyterLook,
        at: DateTime<Utc>,
        now: DateTime<Utc>,
        stop_after: Duration,
        interval: Duration,
    ) -> bool {
        match &look.reading {
            Reading::Unreadable(_) => return true,
            Reading::IdleSince(since) if now + interval >= *since + stop_after => return true,
            _ => {}
        }
        let period = (stop_after - interval).num_milliseconds().max(interval.num_milliseconds()).max(1);
        let share = name.bytes().fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(b as u64)) % 1000;
        let phase = period * share as i64 / 1000;
        let slot = |t: DateTime<Utc>| (t.timestamp_millis() + phase).div_euclid(period);
        slot(now) > slot(at)
    }
}

/// Reads Jupyter for the running instances whose policy listens to it, a
/// bounded number at a time, only as often as their deadlines require (with
/// a cache), and never for instances of other policies.
pub async fn read_signals(
    observed: &mut [ObservedInstance],
    config: &Config,
    settings: &SignalSettings,
    cache: Option<&mut SignalCache>,
    now: DateTime<Utc>,
) {
    let stop_after = |o: &ObservedInstance| {
        config
            .owner(&o.instance)
            .and_then(|p| p.idle.as_ref())
            .filter(|idle| idle.signals.contains(&Signal::Jupyter))
            .map(|idle| idle.stop_after)
    };
    let interval = config.settings.interval;
    let mut fresh = SignalCache::default();
    let cache = cache.unwrap_or(&mut fresh);
    // Forget instances no longer running: a power-on brings a new server and token.
    let running: BTreeSet<&str> = observed
        .iter()
        .filter(|o| o.instance.status == InstanceStatus::Running)
        .map(|o| o.instance.name.as_str())
        .collect();
    cache.looks.retain(|name, _| running.contains(name.as_str()));

    let http = reqwest::Client::new();
    let permits = Arc::new(Semaphore::new(settings.concurrency.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for (index, o) in observed.iter().enumerate() {
        let Some(stop_after) = stop_after(o).filter(|_| o.instance.status == InstanceStatus::Running) else { continue };
        if let Some((look, at)) = cache.looks.get(&o.instance.name)
            && !SignalCache::due(&o.instance.name, look, *at, now, stop_after, interval)
        {
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
    while let Some(done) = tasks.join_next().await {
        if let Ok((index, look)) = done {
            cache.looks.insert(observed[index].instance.name.clone(), (look, now));
        }
    }
    for o in observed.iter_mut() {
        if let Some((look, _)) = cache.looks.get(&o.instance.name) {
            o.running_since = look.started;
            o.signals.insert("jupyter".into(), look.reading.clone());
        }
    }
}
