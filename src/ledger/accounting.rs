//! Spend derived from observation, as a pure function: given what the
//! ledger holds and what the cloud shows now, which segments close and
//! open, which instances changed. Each pay-as-you-go instance seen running
//! has one open segment at the price in force; a price change (a discount
//! window opening or closing) or a stop closes it.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

use super::records::{InstanceRecord, NewSegment, Segment, SegmentClose, Transition};
use crate::cloud::{BillingType, Instance, InstanceStatus, Sku};
use crate::money::Money;
use crate::pricing;

/// One instance as the accounting needs it: small and owned, so that
/// observations made while the database is away can wait to be recorded.
#[derive(Clone, Debug, PartialEq)]
pub struct Sighting {
    pub name: String,
    pub display_name: String,
    pub cluster: String,
    pub policy: Option<String>,
    pub sku_id: String,
    pub billing_type: BillingType,
    pub gpu_product: String,
    pub status: InstanceStatus,
    /// When its Jupyter server started, if known: the start of a run.
    pub running_since: Option<DateTime<Utc>>,
    /// The `unit-price` annotation, for a SKU no longer listed.
    pub unit_price: Option<Money>,
}

impl Sighting {
    pub fn of(instance: &Instance, policy: Option<&str>, running_since: Option<DateTime<Utc>>) -> Self {
        Sighting {
            name: instance.name.clone(),
            display_name: instance.display_name.clone(),
            cluster: instance.cluster.clone(),
            policy: policy.map(str::to_owned),
            sku_id: instance.cost.sku_id.clone(),
            billing_type: instance.cost.billing_type.clone(),
            gpu_product: instance.resources.gpu_type.clone(),
            status: instance.status.clone(),
            running_since,
            unit_price: instance.unit_price_per_hour(),
        }
    }
}

#[derive(Debug, Default, PartialEq)]
pub struct Changes {
    pub instances: Vec<InstanceRecord>,
    pub transitions: Vec<Transition>,
    pub close: Vec<SegmentClose>,
    pub open: Vec<NewSegment>,
}

/// The accounting of one observation at `now`. `last` is the previous
/// observation: anything that happened between them happened at an unknown
/// moment, taken as the middle. `listed` are the clusters observed whole:
/// instances of other clusters are not declared gone; `None` when `seen`
/// holds only the instances that changed, and none is gone.
pub fn account(
    known: &BTreeMap<String, InstanceRecord>,
    open: &BTreeMap<String, Segment>,
    seen: &[Sighting],
    skus: &[Sku],
    listed: Option<&BTreeSet<String>>,
    last: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Changes {
    let mut changes = Changes::default();
    let since = last.unwrap_or(now).min(now);
    let midway = since + (now - since) / 2;
    let sku = |id: &str| skus.iter().find(|s| s.id == id);
    let mut present = BTreeSet::new();

    for instance in seen {
        present.insert(instance.name.as_str());
        let status = instance.status.label();
        let known_now = known.get(&instance.name);
        let same = known_now.is_some_and(|k| {
            k.status == status && k.policy == instance.policy && k.display_name == instance.display_name
        });
        if !same {
            let record = InstanceRecord {
                name: instance.name.clone(),
                display_name: instance.display_name.clone(),
                cluster: instance.cluster.clone(),
                policy: instance.policy.clone(),
                sku_id: instance.sku_id.clone(),
                billing_type: instance.billing_type.name().to_owned(),
                gpu_product: instance.gpu_product.clone(),
                status: status.to_owned(),
                first_seen: known_now.map_or(now, |k| k.first_seen),
                changed_at: now,
                gone_at: None,
            };
            match known_now {
                None => {
                    changes.transitions.push(Transition {
                        instance: instance.name.clone(),
                        at: now,
                        from: None,
                        to: status.to_owned(),
                    });
                    changes.instances.push(record);
                }
                Some(k) => {
                    if k.status != status {
                        changes.transitions.push(Transition {
                            instance: instance.name.clone(),
                            at: midway,
                            from: Some(k.status.clone()),
                            to: status.to_owned(),
                        });
                    }
                    changes.instances.push(InstanceRecord { changed_at: midway, ..record });
                }
            }
        }

        let billed = instance.status == InstanceStatus::Running && instance.billing_type == BillingType::PayAsYouGo;
        let prices = match sku(&instance.sku_id) {
            Some(sku) => Prices { list: sku.price_per_hour, window: pricing::window(sku) },
            None => Prices { list: instance.unit_price.unwrap_or(Money::ZERO), window: None },
        };
        match (open.get(&instance.name), billed) {
            (Some(segment), false) => close(&mut changes, segment, midway),
            (Some(segment), true) => split_at_price_changes(&mut changes, segment.clone(), &prices, now),
            (None, true) => {
                // A run that began since the last look: at Jupyter's start if it says, else midway.
                let start = instance.running_since.filter(|t| *t > since && *t <= now).unwrap_or(if last.is_some() {
                    midway
                } else {
                    now
                });
                let first = NewSegment {
                    instance: instance.name.clone(),
                    display_name: instance.display_name.clone(),
                    policy: instance.policy.clone(),
                    sku_id: instance.sku_id.clone(),
                    started_at: start,
                    price_per_hour: prices.at(start),
                };
                let opened = Segment {
                    id: 0,
                    instance: first.instance.clone(),
                    display_name: first.display_name.clone(),
                    policy: first.policy.clone(),
                    sku_id: first.sku_id.clone(),
                    started_at: first.started_at,
                    ended_at: None,
                    price_per_hour: first.price_per_hour,
                };
                changes.open.push(first);
                split_at_price_changes(&mut changes, opened, &prices, now);
            }
            (None, false) => {}
        }
    }

    let Some(listed) = listed else { return changes };
    for (name, segment) in open {
        if !present.contains(name.as_str()) && known.get(name).is_none_or(|k| listed.contains(&k.cluster)) {
            close(&mut changes, segment, midway);
        }
    }
    for (name, record) in known {
        if !present.contains(name.as_str()) && listed.contains(&record.cluster) {
            changes.transitions.push(Transition {
                instance: name.clone(),
                at: midway,
                from: Some(record.status.clone()),
                to: "gone".into(),
            });
            changes.instances.push(InstanceRecord { gone_at: Some(midway), changed_at: midway, ..record.clone() });
        }
    }
    changes
}

fn close(changes: &mut Changes, segment: &Segment, at: DateTime<Utc>) {
    let end = at.max(segment.started_at);
    changes.close.push(SegmentClose {
        instance: segment.instance.clone(),
        started_at: segment.started_at,
        ended_at: end,
        amount: segment.cost_within(segment.started_at, end),
    });
}

/// A SKU's list price and its discount window: the price in force at any moment.
struct Prices {
    list: Money,
    window: Option<pricing::Window>,
}

impl Prices {
    fn at(&self, t: DateTime<Utc>) -> Money {
        pricing::price_at(self.list, self.window.as_slice(), t)
    }

    /// The window's edges in `(from, to]`: where the price may change.
    fn edges(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<DateTime<Utc>> {
        self.window.iter().flat_map(|w| [w.start, w.end]).filter(|t| *t > from && *t <= to).collect()
    }
}

/// Closes and reopens a running instance's segment wherever the price in
/// force changed since it began: exactly at a discount window's edges, and
/// now for a change of list price (whose moment is unknown).
fn split_at_price_changes(changes: &mut Changes, mut current: Segment, prices: &Prices, now: DateTime<Utc>) {
    let mut moments = prices.edges(current.started_at, now);
    moments.sort();
    moments.push(now);
    for t in moments {
        let price = prices.at(t);
        if t > current.started_at && price != current.price_per_hour {
            close(changes, &current, t);
            changes.open.push(NewSegment {
                instance: current.instance.clone(),
                display_name: current.display_name.clone(),
                policy: current.policy.clone(),
                sku_id: current.sku_id.clone(),
                started_at: t,
                price_per_hour: price,
            });
            current = Segment { started_at: t, price_per_hour: price, ..current };
        }
    }
}
