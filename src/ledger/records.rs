//! What the ledger keeps, row by row. No field ever holds a secret.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::cloud::Sku;
use crate::money::{Money, Ratio};
use crate::pricing;

/// A SKU's prices and free GPUs at one moment.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PriceSample {
    pub sku_id: String,
    pub region_id: String,
    pub sku_name: String,
    pub gpu_product: String,
    pub observed_at: DateTime<Utc>,
    pub price_per_hour: Money,
    pub discount: Option<(Ratio, DateTime<Utc>, DateTime<Utc>)>,
    pub effective_price_per_hour: Money,
    pub free_gpus: u32,
    /// What a trace needs of the SKU besides its prices (empty in samples
    /// written before the ledger kept it).
    pub spec: SkuSpec,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SkuSpec {
    pub cluster: String,
    pub gpu_resource_key: String,
    pub gpu_count: u32,
    pub gpu_memory_gb: u32,
    pub cpu_cores: u32,
    pub memory_gb: u32,
}

impl PriceSample {
    pub fn of(sku: &Sku, at: DateTime<Utc>) -> Self {
        PriceSample {
            sku_id: sku.id.clone(),
            region_id: sku.region_id.clone(),
            sku_name: sku.name.clone(),
            gpu_product: sku.hardware.gpu_product.clone(),
            observed_at: at,
            price_per_hour: sku.price_per_hour,
            discount: pricing::window(sku).map(|w| (w.ratio, w.start, w.end)),
            effective_price_per_hour: pricing::effective_price(sku, at),
            free_gpus: sku.free_gpus,
            spec: SkuSpec {
                cluster: sku.cluster.clone(),
                gpu_resource_key: sku.hardware.gpu_resource_key.clone(),
                gpu_count: sku.hardware.gpu_count,
                gpu_memory_gb: sku.hardware.gpu_memory_gb,
                cpu_cores: sku.hardware.cpu_cores,
                memory_gb: sku.hardware.memory_gb,
            },
        }
    }

    /// Whether anything worth a new sample changed since this one: price,
    /// discount window, free GPUs, or the price in force (a window opening
    /// or closing).
    pub fn outdated(&self, sku: &Sku, at: DateTime<Utc>) -> bool {
        self.free_gpus != sku.free_gpus || self.price_outdated(sku, at)
    }

    /// Whether the price, its discount window or the price in force changed since this sample.
    pub fn price_outdated(&self, sku: &Sku, at: DateTime<Utc>) -> bool {
        let discount = pricing::window(sku).map(|w| (w.ratio, w.start, w.end));
        (self.price_per_hour, &self.discount, self.effective_price_per_hour)
            != (sku.price_per_hour, &discount, pricing::effective_price(sku, at))
    }
}

/// An instance as last seen: names, where, how paid, and its status.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct InstanceRecord {
    pub name: String,
    pub display_name: String,
    pub cluster: String,
    pub policy: Option<String>,
    pub sku_id: String,
    pub billing_type: String,
    pub gpu_product: String,
    pub status: String,
    pub first_seen: DateTime<Utc>,
    pub changed_at: DateTime<Utc>,
    pub gone_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Transition {
    pub instance: String,
    pub at: DateTime<Utc>,
    pub from: Option<String>,
    pub to: String,
}

/// A span in which a managed instance was in use, as its signals tell.
/// Open while `ended_at` is `None`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UseSpan {
    pub instance: String,
    pub display_name: String,
    pub policy: Option<String>,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
}

/// Billed running time at one price. Open while `ended_at` is `None`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Segment {
    pub id: i64,
    pub instance: String,
    pub display_name: String,
    pub policy: Option<String>,
    pub sku_id: String,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub price_per_hour: Money,
}

impl Segment {
    /// What the segment cost within `[from, to)`, an open one counted to `to`.
    pub fn cost_within(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Money {
        let start = self.started_at.max(from);
        let end = self.ended_at.unwrap_or(to).min(to);
        if end <= start {
            return Money::ZERO;
        }
        self.price_per_hour.hourly_for_millis((end - start).num_milliseconds())
    }
}

/// The end of an open segment, named by its instance and start.
#[derive(Clone, Debug, PartialEq)]
pub struct SegmentClose {
    pub instance: String,
    pub started_at: DateTime<Utc>,
    pub ended_at: DateTime<Utc>,
    pub amount: Money,
}

/// A new segment, before it has an id.
#[derive(Clone, Debug, PartialEq)]
pub struct NewSegment {
    pub instance: String,
    pub display_name: String,
    pub policy: Option<String>,
    pub sku_id: String,
    pub started_at: DateTime<Utc>,
    pub price_per_hour: Money,
}

impl NewSegment {
    /// The open segment this starts.
    pub fn opened(&self, id: i64) -> Segment {
        Segment {
            id,
            instance: self.instance.clone(),
            display_name: self.display_name.clone(),
            policy: self.policy.clone(),
            sku_id: self.sku_id.clone(),
            started_at: self.started_at,
            ended_at: None,
            price_per_hour: self.price_per_hour,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The call succeeded (and, for a power_off or power_on, the instance got there).
    Done,
    /// The call failed; nothing happened.
    Failed,
    /// The call may or may not have taken effect (a lost answer).
    Unknown,
    /// Not sent: dry run, or settled otherwise after a restart.
    Skipped,
}

impl Outcome {
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Done => "done",
            Outcome::Failed => "failed",
            Outcome::Unknown => "unknown",
            Outcome::Skipped => "skipped",
        }
    }

    pub fn parse(text: &str) -> Option<Outcome> {
        [Outcome::Done, Outcome::Failed, Outcome::Unknown, Outcome::Skipped].into_iter().find(|o| o.label() == text)
    }
}

/// An action from intent to outcome.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ActionRecord {
    pub id: i64,
    pub planned_at: DateTime<Utc>,
    pub policy: String,
    pub kind: String,
    /// The platform name; empty for a create until its answer names it.
    pub instance: String,
    pub display_name: String,
    pub cluster: String,
    pub cause: String,
    pub reason: String,
    pub saving_per_hour: Money,
    pub dry_run: bool,
    pub snapshot: Option<(String, String)>,
    pub schedule_edge: Option<DateTime<Utc>>,
    pub outcome: Option<Outcome>,
    pub error: Option<String>,
    pub finished_at: Option<DateTime<Utc>>,
    /// The leader's epoch it was written under; 0 for a daemon without election.
    pub epoch: i64,
}

/// A notice to queue in the outbox.
#[derive(Clone, Debug, PartialEq)]
pub struct NewNotice {
    /// One row per key: a warning is queued once per instance per pending action.
    pub dedup: String,
    pub channel: String,
    /// `warning` or `unannounced`.
    pub event: String,
    pub instance: String,
    /// `power_off` or `delete`.
    pub action: String,
    /// A warning's occasion (see [`WarningKey`](crate::plan::WarningKey)).
    pub occasion: Option<DateTime<Utc>>,
    /// The message, as JSON.
    pub body: String,
    pub queued_at: DateTime<Utc>,
}

/// A notice waiting in the outbox.
#[derive(Clone, Debug, PartialEq)]
pub struct Notice {
    pub id: i64,
    pub channel: String,
    pub body: String,
    pub attempts: u32,
    pub queued_at: DateTime<Utc>,
}
