//! `trace export`: the account's own history, from the ledger, as a trace
//! (`traces/README.md`) that `simulate` and `advise` replay. The SKUs with
//! their list prices, discount windows (dated, as the API showed them) and
//! GPUs as observed; the instances seen, running or stopped at the start; and
//! their sessions, from the use spans the daemon recorded.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;

use crate::ledger::{InstanceRecord, LedgerError, PriceSample, Store, Transition, UseSpan};
use crate::money::Money;

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("the ledger cannot be read: {0}")]
    Ledger(#[from] LedgerError),
    #[error("the ledger holds {0}")]
    Empty(String),
}

/// A trace written out, and what it had to leave out.
pub struct Exported {
    pub text: String,
    pub warnings: Vec<String>,
}

/// The GPUs of a region's model are counted again only when the count holds this long:
/// free GPUs are sampled a little after our own instances start or stop.
const STEADY: i64 = 5;

/// Writes the ledger's history in `[from, to)` as a trace in `zone`.
pub async fn export<S: Store>(
    store: &S,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    zone: Tz,
) -> Result<Exported, ExportError> {
    let prices = store.prices_until(to).await?;
    if prices.is_empty() {
        return Err(ExportError::Empty(format!("no SKU observed before {}", local(zone, to))));
    }
    let instances: Vec<InstanceRecord> = store
        .all_instances()
        .await?
        .into_iter()
        .filter(|i| i.first_seen < to && i.gone_at.is_none_or(|g| g > from))
        .collect();
    if instances.is_empty() {
        return Err(ExportError::Empty(format!(
            "no instance seen between {} and {}",
            local(zone, from),
            local(zone, to)
        )));
    }
    let mut uses: BTreeMap<String, Vec<UseSpan>> = BTreeMap::new();
    for u in store.use_spans_overlapping(from, to).await? {
        uses.entry(u.instance.clone()).or_default().push(u);
    }
    let transitions = store.transitions_until(to).await?;
    let mut changes_of: BTreeMap<&str, Vec<&Transition>> = BTreeMap::new();
    for t in &transitions {
        changes_of.entry(t.instance.as_str()).or_default().push(t);
    }
    let mut warnings = Vec::new();

    // The SKUs: the newest sample at the start (or the first after it), and what changed after.
    let mut by_sku: BTreeMap<&str, Vec<&PriceSample>> = BTreeMap::new();
    for p in &prices {
        by_sku.entry(p.sku_id.as_str()).or_default().push(p);
    }
    let mut out = format!(
        "# Exported from the ledger by `mdc-autoscaler trace export`: {} to {}.\n# Sessions are the use spans the daemon recorded from its idle signals.\nstart: {}\nend: {}\ntimezone: {}\nseed: 1\n",
        local(zone, from),
        local(zone, to),
        from.to_rfc3339(),
        to.to_rfc3339(),
        zone.name()
    );
    let sku_of: BTreeMap<&str, &str> = instances.iter().map(|i| (i.name.as_str(), i.sku_id.as_str())).collect();
    let regions = regions(&by_sku, &transitions, &sku_of, from, to);
    out += "\nregions:\n";
    for (region, r) in &regions {
        let gpus: Vec<String> = r.gpus.iter().map(|(key, n)| format!("{}: {n}", quote(key))).collect();
        out += &format!(
            "  - {{ id: {}, name: {}, cluster: {}, gpus: {{ {} }} }}\n",
            quote(region),
            quote(region),
            quote(&r.cluster),
            gpus.join(", ")
        );
    }
    out += "\nskus:\n";
    for (id, samples) in &by_sku {
        let first = samples.iter().rev().find(|p| p.observed_at <= from).unwrap_or(&samples[0]);
        let spec = &first.spec;
        if spec.gpu_resource_key.is_empty() {
            warnings.push(format!("SKU {id}: sampled before the ledger kept SKU specs; its GPU model key is guessed"));
        }
        let key = model_key(first);
        out += &format!(
            "  - {{ id: {}, region: {}, name: {}, gpu_product: {}, gpu_resource_key: {}, gpu_count: {}, gpu_memory_gb: {}, cpu_cores: {}, memory_gb: {}, price: {}",
            quote(id),
            quote(&first.region_id),
            quote(&first.sku_name),
            quote(&first.gpu_product),
            quote(&key),
            spec.gpu_count.max(1),
            spec.gpu_memory_gb,
            spec.cpu_cores,
            spec.memory_gb,
            yuan(first.price_per_hour)
        );
        let mut price = first.price_per_hour;
        let mut changes = Vec::new();
        for p in samples.iter().filter(|p| p.observed_at > from && p.observed_at < to) {
            if p.price_per_hour != price {
                price = p.price_per_hour;
                changes.push(format!("{{ from: {}, price: {} }}", p.observed_at.to_rfc3339(), yuan(price)));
            }
        }
        if !changes.is_empty() {
            out += &format!(",\n      prices: [{}]", changes.join(", "));
        }
        // Every window the API showed that falls in the span, the latest showing of each start winning.
        let mut windows: BTreeMap<DateTime<Utc>, (DateTime<Utc>, f64)> = BTreeMap::new();
        for p in samples {
            if let Some((ratio, start, end)) = p.discount.filter(|(_, s, e)| *s < to && *e > from) {
                windows.insert(start, (end, ratio.as_f64()));
            }
        }
        let mut kept: Vec<String> = Vec::new();
        let mut last_end: Option<DateTime<Utc>> = None;
        for (start, (end, ratio)) in windows {
            if last_end.is_some_and(|e| start < e) {
                warnings.push(format!(
                    "SKU {id}: a discount window from {} overlaps the one before; left out",
                    local(zone, start)
                ));
                continue;
            }
            last_end = Some(end);
            kept.push(format!("{{ start: {}, end: {}, ratio: {ratio} }}", start.to_rfc3339(), end.to_rfc3339()));
        }
        if !kept.is_empty() {
            out += &format!(
                ",\n      discount: {{ id: {}, windows: [{}] }}",
                quote(&format!("{id}-exported")),
                kept.join(", ")
            );
        }
        out += " }\n";
    }
    let capacity: Vec<String> = regions
        .iter()
        .flat_map(|(region, r)| {
            r.changes.iter().map(move |(at, key, n)| {
                format!(
                    "  - {{ at: {}, region: {}, gpus: {{ {}: {n} }} }}\n",
                    at.to_rfc3339(),
                    quote(region),
                    quote(key)
                )
            })
        })
        .collect();
    if !capacity.is_empty() {
        out += "\ncapacity:\n";
        out += &capacity.concat();
    }

    out += "\ninstances:\n";
    let mut names = BTreeSet::new();
    let known_skus: BTreeSet<&str> = by_sku.keys().copied().collect();
    for i in &instances {
        if i.first_seen > from {
            warnings.push(format!(
                "{}: created during the span, left out (a trace's instances exist from its start; a pool creates its own again)",
                i.display_name
            ));
            continue;
        }
        if !known_skus.contains(i.sku_id.as_str()) {
            warnings.push(format!("{}: on SKU {} that the ledger never sampled; left out", i.display_name, i.sku_id));
            continue;
        }
        if !names.insert(i.display_name.clone()) {
            warnings.push(format!("{}: a second instance of that name; left out", i.display_name));
            continue;
        }
        // Its status at the start: the last change observed by then, else as it was first seen.
        let status =
            changes_of.get(i.name.as_str()).and_then(|c| c.iter().rfind(|t| t.at <= from)).map(|t| t.to.as_str());
        let running = status.unwrap_or(i.status.as_str()) == "running";
        let billing = match i.billing_type.as_str() {
            "monthly" | "weekly" | "daily" => i.billing_type.clone(),
            _ => "pay_as_you_go".into(),
        };
        out += &format!(
            "  - display_name: {}\n    cluster: {}\n    sku: {}\n    status: {}\n    billing: {billing}\n",
            quote(&i.display_name),
            quote(&i.cluster),
            quote(&i.sku_id),
            if running { "running" } else { "stopped" }
        );
        let sessions = sessions(uses.get(&i.name).map_or(&[][..], |u| u.as_slice()), from, to);
        if sessions.is_empty() {
            out += "    sessions: []\n";
        } else {
            out += "    sessions:\n";
            for (start, end) in sessions {
                out += &format!("      - {{ from: {}, to: {} }}\n", start.to_rfc3339(), end.to_rfc3339());
            }
        }
    }
    Ok(Exported { text: out, warnings })
}

/// An instance's use spans (in order) within the span, joined where they touch.
fn sessions(uses: &[UseSpan], from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    let mut out: Vec<(DateTime<Utc>, DateTime<Utc>)> = Vec::new();
    for u in uses {
        let (start, end) = (u.started_at.max(from), u.ended_at.unwrap_or(to).min(to));
        if end <= start {
            continue;
        }
        match out.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => out.push((start, end)),
        }
    }
    out
}

struct RegionGpus {
    cluster: String,
    /// The most GPUs of each model the region was seen to have.
    gpus: BTreeMap<String, u32>,
    /// When a model's count changed and held.
    changes: Vec<(DateTime<Utc>, String, u32)>,
}

/// What each region had: at each sample, its free GPUs of a model and those
/// the account's own instances held (from power-on until stopped, as the
/// platform holds them); the most seen, and the changes that held.
fn regions(
    by_sku: &BTreeMap<&str, Vec<&PriceSample>>,
    transitions: &[Transition],
    sku_of: &BTreeMap<&str, &str>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> BTreeMap<String, RegionGpus> {
    let mut regions: BTreeMap<String, RegionGpus> = BTreeMap::new();
    // (region, GPU model) → (moment, GPUs in all) at each sample.
    type Series = BTreeMap<(String, String), Vec<(DateTime<Utc>, u32)>>;
    let mut series = Series::new();
    // Per SKU, when the account's instances took (+1) or gave back (-1) one of its slots, in time order.
    let mut held_changes: BTreeMap<&str, Vec<(DateTime<Utc>, i64)>> = BTreeMap::new();
    let holds = |status: &str| matches!(status, "creating" | "starting" | "running" | "stopping");
    for t in transitions {
        let Some(sku) = sku_of.get(t.instance.as_str()) else { continue };
        let change = i64::from(holds(&t.to)) - i64::from(t.from.as_deref().is_some_and(holds));
        if change != 0 {
            held_changes.entry(sku).or_default().push((t.at, change));
        }
    }
    for samples in by_sku.values() {
        let changes = samples.first().and_then(|p| held_changes.get(p.sku_id.as_str()));
        let (mut next, mut running) = (0, 0i64);
        // Samples come oldest first: one sweep over the SKU's changes.
        for p in samples.iter().filter(|p| p.observed_at < to) {
            while let Some((_, change)) = changes.and_then(|c| c.get(next)).filter(|(at, _)| *at <= p.observed_at) {
                running += change;
                next += 1;
            }
            let held = running.max(0) as u32 * p.spec.gpu_count.max(1);
            let key = model_key(p);
            let region = regions.entry(p.region_id.clone()).or_insert_with(|| RegionGpus {
                cluster: p.spec.cluster.clone(),
                gpus: BTreeMap::new(),
                changes: Vec::new(),
            });
            if region.cluster.is_empty() {
                region.cluster = p.spec.cluster.clone();
            }
            let total = p.free_gpus + held;
            let most = region.gpus.entry(key.clone()).or_default();
            *most = (*most).max(total);
            series.entry((p.region_id.clone(), key)).or_default().push((p.observed_at, total));
        }
    }
    for ((region, key), mut points) in series {
        points.sort();
        let Some(r) = regions.get_mut(&region) else { continue };
        let most = r.gpus.get(&key).copied().unwrap_or(0);
        let mut current = most;
        if let Some(&(_, at_start)) = points.iter().rfind(|(at, _)| *at <= from).filter(|(_, t)| *t != most) {
            r.changes.push((from, key.clone(), at_start));
            current = at_start;
        }
        for (k, (at, total)) in points.iter().enumerate() {
            let holds = points.get(k + 1).is_none_or(|(next, _)| *next - *at >= Duration::minutes(STEADY));
            if *total != current && holds && *at > from {
                r.changes.push((*at, key.clone(), *total));
                current = *total;
            }
        }
    }
    regions
}

/// The GPU model's resource key; guessed from the product for samples written before the ledger kept it.
fn model_key(p: &PriceSample) -> String {
    if p.spec.gpu_resource_key.is_empty() {
        format!("nvidia.com/gpu-{}", p.gpu_product.to_lowercase())
    } else {
        p.spec.gpu_resource_key.clone()
    }
}

fn local(zone: Tz, at: DateTime<Utc>) -> String {
    at.with_timezone(&zone).format("%Y-%m-%d %H:%M %Z").to_string()
}

/// A YAML scalar that reads back as this string (JSON's quoting is YAML's).
fn quote(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| "\"\"".into())
}

fn yuan(m: Money) -> String {
    format!("{}", m.micros() as f64 / 1e6)
}
