//! Fleet files: a simulated platform described in YAML (regions and their GPU
//! pools, SKUs with prices and discount windows, instances and their activity).
//! `config/fleet.yaml` is the default, built from the vendor page's samples.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, FixedOffset, NaiveDateTime, NaiveTime, Utc};
use chrono_tz::Tz;
use serde::Deserialize;

use super::faults::Faults;
use super::{
    Activity, DiscountSchedule, Phase, PlatformSettings, Session, SimDiscount, SimInstance, SimRegion, SimSku,
    SimVolume, Simulator,
};
use crate::cloud::{BillingType, Hardware};
use crate::config::raw::Volume;
use crate::money::{Money, Ratio};

pub const DEFAULT_FLEET: &str = include_str!("../../config/fleet.yaml");

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct FleetError(String);

/// A moment written in a fleet file or trace: RFC 3339 with its offset, or a
/// local date and time (`2026-11-09T08:00`, `2026-11-09 08:00:00`) read in
/// the file's time zone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Moment {
    Fixed(DateTime<FixedOffset>),
    Local(NaiveDateTime),
}

impl Moment {
    /// The instant in `zone`; a local time a clock change skips is taken
    /// as the first instant after the gap, one it repeats as the first.
    pub fn resolve(self, zone: Tz) -> DateTime<Utc> {
        match self {
            Moment::Fixed(t) => t.to_utc(),
            Moment::Local(t) => super::discount::local(&zone, t).unwrap_or_else(|| t.and_utc()),
        }
    }
}

/// Text that is no time a fleet file takes.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not a time (2026-11-02T09:00:00+08:00, or 2026-11-02 09:00 in the file's time zone)")]
pub struct BadMoment(String);

impl std::str::FromStr for Moment {
    type Err = BadMoment;
    fn from_str(text: &str) -> Result<Moment, BadMoment> {
        if let Ok(t) = DateTime::parse_from_rfc3339(text) {
            return Ok(Moment::Fixed(t));
        }
        for format in ["%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M"] {
            if let Ok(t) = NaiveDateTime::parse_from_str(text, format) {
                return Ok(Moment::Local(t));
            }
        }
        if let Ok(day) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
            return Ok(Moment::Local(day.and_time(NaiveTime::MIN)));
        }
        Err(BadMoment(text.to_owned()))
    }
}

impl<'de> Deserialize<'de> for Moment {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetFile {
    /// Simulated time at start; the real time when absent.
    #[serde(default)]
    pub start: Option<DateTime<FixedOffset>>,
    /// The zone of times written without an offset; Asia/Shanghai, the platform's, when absent.
    #[serde(default)]
    pub timezone: Option<String>,
    /// Seeds names, tokens and fault rolls: the same seed gives the same run.
    #[serde(default)]
    pub seed: u64,
    #[serde(default)]
    pub platform: PlatformSettings,
    #[serde(default)]
    pub faults: Faults,
    pub regions: Vec<FleetRegion>,
    pub skus: Vec<FleetSku>,
    #[serde(default)]
    pub instances: Vec<FleetInstance>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetRegion {
    pub id: String,
    pub name: String,
    pub cluster: String,
    #[serde(default)]
    pub harbor_addr: String,
    #[serde(default)]
    pub howler_id: String,
    /// Total GPUs per resource key.
    pub gpus: BTreeMap<String, u32>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetSku {
    pub id: String,
    pub region: String,
    pub name: String,
    pub gpu_product: String,
    #[serde(default)]
    pub gpu_series: Option<String>,
    pub gpu_resource_key: String,
    pub gpu_count: u32,
    pub gpu_memory_gb: u32,
    pub cpu_cores: u32,
    pub memory_gb: u32,
    #[serde(default = "default_cpu_arch")]
    pub cpu_arch: String,
    #[serde(default)]
    pub cpu_series: String,
    #[serde(default)]
    pub cpu_vendor: String,
    #[serde(default = "default_system_gb")]
    pub system_storage_gb: u32,
    #[serde(default = "default_data_gb")]
    pub data_storage_gb: u32,
    #[serde(default = "default_billing")]
    pub billing: BillingType,
    /// CNY per hour.
    pub price: f64,
    /// The list price from a moment on (a price change).
    #[serde(default)]
    pub prices: Vec<FleetPrice>,
    #[serde(default)]
    pub discount: Option<FleetDiscount>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetPrice {
    pub from: Moment,
    /// CNY per hour.
    pub price: f64,
}

fn default_cpu_arch() -> String {
    "x86-64".into()
}
fn default_system_gb() -> u32 {
    30
}
fn default_data_gb() -> u32 {
    50
}
fn default_billing() -> BillingType {
    BillingType::PayAsYouGo
}

/// One fixed window (`start`, `end`), a daily one (`daily`), or dated
/// windows (`windows`), each with the discount's ratio unless it has its own.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetDiscount {
    pub id: String,
    #[serde(default)]
    pub ratio: Option<f64>,
    #[serde(default)]
    pub start: Option<Moment>,
    #[serde(default)]
    pub end: Option<Moment>,
    #[serde(default)]
    pub daily: Option<DailyWindow>,
    #[serde(default)]
    pub windows: Vec<DatedWindow>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatedWindow {
    pub start: Moment,
    pub end: Moment,
    #[serde(default)]
    pub ratio: Option<f64>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DailyWindow {
    /// `HH:MM` local time.
    pub from: String,
    pub to: String,
    pub timezone: String,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FleetStatus {
    Running,
    Stopped,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetInstance {
    pub display_name: String,
    pub cluster: String,
    pub sku: String,
    pub image: String,
    pub status: FleetStatus,
    #[serde(default = "default_billing")]
    pub billing: BillingType,
    /// `CostTime` for prepaid instances, e.g. `30D`.
    #[serde(default)]
    pub term: String,
    #[serde(default)]
    pub volumes: Vec<Volume>,
    /// Created (and, if running, started) this long before the start.
    #[serde(default, with = "humantime_serde")]
    pub age: Duration,
    /// For stopped instances: shut down this long before the start.
    #[serde(default, with = "humantime_serde")]
    pub stopped_for: Duration,
    #[serde(default)]
    pub activity: FleetActivity,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FleetActivity {
    pub connections: u32,
    pub busy_kernels: u32,
    pub idle_kernels: u32,
    /// Last activity this long before the start.
    #[serde(with = "humantime_serde")]
    pub idle_for: Option<Duration>,
    pub sessions: Vec<FleetSession>,
}

/// Busy from `from` to `to` after the start.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetSession {
    #[serde(with = "humantime_serde")]
    pub from: Duration,
    #[serde(with = "humantime_serde")]
    pub to: Duration,
}

impl FleetSku {
    /// The simulated SKU, with times written without an offset read in `zone`.
    pub fn to_sim(&self, zone: Tz) -> Result<SimSku, FleetError> {
        let price = |yuan: f64| {
            Money::from_yuan_f64(yuan).filter(|p| *p >= Money::ZERO).ok_or_else(|| {
                FleetError(format!("SKU {}: a price must be zero or more yuan an hour, not {yuan}", self.id))
            })
        };
        let mut price_changes =
            self.prices.iter().map(|p| Ok((p.from.resolve(zone), price(p.price)?))).collect::<Result<Vec<_>, _>>()?;
        price_changes.sort_by_key(|(at, _)| *at);
        if price_changes.windows(2).any(|w| w[0].0 == w[1].0) {
            return Err(FleetError(format!("SKU {}: two prices from the same moment", self.id)));
        }
        Ok(SimSku {
            id: self.id.clone(),
            region_id: self.region.clone(),
            name: self.name.clone(),
            hardware: Hardware {
                gpu_product: self.gpu_product.clone(),
                gpu_series: self.gpu_series.clone().unwrap_or_else(|| self.gpu_product.clone()),
                gpu_resource_key: self.gpu_resource_key.clone(),
                gpu_count: self.gpu_count,
                gpu_memory_gb: self.gpu_memory_gb,
                cpu_cores: self.cpu_cores,
                cpu_arch: self.cpu_arch.clone(),
                cpu_series: self.cpu_series.clone(),
                cpu_vendor: self.cpu_vendor.clone(),
                memory_gb: self.memory_gb,
                system_storage_gb: self.system_storage_gb,
                data_storage_gb: self.data_storage_gb,
            },
            billing_type: self.billing.clone(),
            price_per_hour: price(self.price)?,
            price_changes,
            discount: self.discount.as_ref().map(|d| discount(&self.id, d, zone)).transpose()?,
        })
    }
}

impl FleetFile {
    /// Parses a fleet file; errors carry the line and column.
    pub fn parse(source: &str, text: &str) -> Result<FleetFile, FleetError> {
        let options = serde_saphyr::options! { strict_booleans: true };
        serde_saphyr::from_str_with_options(text, options).map_err(|e| FleetError(format!("{source}: {e}")))
    }

    /// Builds the simulated platform as it stands at `start`.
    pub fn build(&self, namespace: &str, start: DateTime<Utc>) -> Result<Simulator, FleetError> {
        let mut sim = Simulator::new(namespace, start, self.seed, self.platform.clone());
        sim.faults = self.faults.platform.clone();
        let fail = |what: String| FleetError(what);
        let zone: Tz = match &self.timezone {
            Some(name) => name.parse().map_err(|_| fail(format!("unknown time zone {name:?}")))?,
            None => crate::config::check::DEFAULT_TIMEZONE,
        };
        for r in &self.regions {
            sim.add_region(SimRegion {
                id: r.id.clone(),
                name: r.name.clone(),
                cluster: r.cluster.clone(),
                harbor_addr: r.harbor_addr.clone(),
                howler_id: r.howler_id.clone(),
                created_at: start,
                gpus: r.gpus.clone(),
            });
        }
        for s in &self.skus {
            if !self.regions.iter().any(|r| r.id == s.region) {
                return Err(fail(format!("SKU {}: unknown region {:?}", s.id, s.region)));
            }
            sim.add_sku(s.to_sim(zone)?);
        }
        for f in &self.instances {
            let age = chrono::Duration::from_std(f.age).map_err(|e| fail(e.to_string()))?;
            let created_at = start - age;
            let running = f.status == FleetStatus::Running;
            let stopped_at = start - chrono::Duration::from_std(f.stopped_for).map_err(|e| fail(e.to_string()))?;
            let since = |d: Duration| chrono::Duration::from_std(d).map(|d| start + d).map_err(|e| fail(e.to_string()));
            let activity = Activity {
                connections: f.activity.connections,
                busy_kernels: f.activity.busy_kernels,
                idle_kernels: f.activity.idle_kernels,
                last_activity: f
                    .activity
                    .idle_for
                    .map(|d| chrono::Duration::from_std(d).map(|d| start - d))
                    .transpose()
                    .map_err(|e| fail(e.to_string()))?,
                sessions: f
                    .activity
                    .sessions
                    .iter()
                    .map(|s| Ok(Session { start: since(s.from)?, end: since(s.to)? }))
                    .collect::<Result<_, FleetError>>()?,
            };
            let billing = f.billing.clone();
            let prepaid_until = match billing {
                BillingType::PayAsYouGo => None,
                ref prepaid => Some(
                    created_at
                        + chrono::Duration::hours(super::term_hours(prepaid, &f.term).ok_or_else(|| {
                            fail(format!("instance {}: term {:?} is not like 30D", f.display_name, f.term))
                        })?),
                ),
            };
            let instance = SimInstance {
                name: String::new(),
                uid: String::new(),
                display_name: f.display_name.clone(),
                cluster: f.cluster.clone(),
                region_id: self
                    .regions
                    .iter()
                    .find(|r| r.cluster == f.cluster)
                    .map(|r| r.id.clone())
                    .ok_or_else(|| fail(format!("instance {}: unknown cluster {:?}", f.display_name, f.cluster)))?,
                image: f.image.clone(),
                sku_id: f.sku.clone(),
                billing_type: billing,
                term: f.term.clone(),
                coupon_id: String::new(),
                disk_sku_id: "1".into(),
                order_id: String::new(),
                volumes: f
                    .volumes
                    .iter()
                    .map(|v| SimVolume {
                        path: v.path.clone(),
                        kind: v.kind.clone(),
                        size_gb: v.size_gb,
                        pvc: String::new(),
                    })
                    .collect(),
                created_at,
                phase: if running { Phase::Running } else { Phase::Stopped },
                until: None,
                holds_gpu: running,
                billed_since: None,
                started_at: created_at,
                stopped_at: (!running).then_some(stopped_at),
                prepaid_until: prepaid_until.filter(|_| running),
                data_purged: false,
                access: super::Access {
                    jupyter_token: String::new(),
                    ssh_port: 0,
                    ssh_password: String::new(),
                    pod_suffix: String::new(),
                    node: String::new(),
                    ip: String::new(),
                },
                activity,
                status_override: None,
            };
            sim.seed_instance(instance, start).map_err(|e| fail(format!("instance {}: {e}", f.display_name)))?;
        }
        Ok(sim)
    }
}

fn discount(sku: &str, d: &FleetDiscount, zone: Tz) -> Result<SimDiscount, FleetError> {
    let fail = |what: &str| FleetError(format!("SKU {sku}: discount {what}"));
    let ratio = |r: Option<f64>| {
        let r = r.or(d.ratio).ok_or_else(|| fail("needs a ratio"))?;
        Ratio::from_f64(r)
            .filter(|x| x.as_f64() > 0.0 && *x <= Ratio::ONE)
            .ok_or_else(|| fail(&format!("ratio must be more than 0 and at most 1, not {r}")))
    };
    let schedule = match (&d.start, &d.end, &d.daily, d.windows.is_empty()) {
        (Some(start), Some(end), None, true) => {
            let (start, end) = (start.resolve(zone), end.resolve(zone));
            if end <= start {
                return Err(fail("ends at or before it starts"));
            }
            DiscountSchedule::Fixed { start, end }
        }
        (None, None, Some(daily), true) => {
            let time =
                |t: &str| NaiveTime::parse_from_str(t, "%H:%M").map_err(|_| fail(&format!("time {t:?} is not HH:MM")));
            DiscountSchedule::Daily {
                from: time(&daily.from)?,
                to: time(&daily.to)?,
                timezone: daily
                    .timezone
                    .parse()
                    .map_err(|_| fail(&format!("time zone {:?} is unknown", daily.timezone)))?,
            }
        }
        (None, None, None, false) => {
            let mut windows = Vec::new();
            for w in &d.windows {
                let (start, end) = (w.start.resolve(zone), w.end.resolve(zone));
                if end <= start {
                    return Err(fail(&format!("window from {start} ends at or before it starts")));
                }
                windows.push(crate::pricing::Window { start, end, ratio: ratio(w.ratio)? });
            }
            windows.sort_by_key(|w| w.start);
            if let Some(pair) = windows.windows(2).find(|p| p[1].start < p[0].end) {
                return Err(fail(&format!("windows from {} and {} overlap", pair[0].start, pair[1].start)));
            }
            DiscountSchedule::Dated(windows)
        }
        _ => return Err(fail("needs one of: start and end, daily, or windows")),
    };
    let ratio = match &schedule {
        DiscountSchedule::Dated(windows) => windows[0].ratio,
        _ => ratio(None)?,
    };
    Ok(SimDiscount { id: d.id.clone(), ratio, schedule })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_fleet_builds() {
        let fleet = FleetFile::parse("fleet.yaml", DEFAULT_FLEET).unwrap();
        let sim = fleet.build("demo", Utc::now()).unwrap();
        assert!(sim.instances().count() >= 5);
        assert!(sim.skus().any(|s| s.discount.is_some()));
    }

    #[test]
    fn errors_carry_line_and_column() {
        let err = FleetFile::parse("bad.yaml", "regions: []\nskus: []\nseed: yes\n").unwrap_err().to_string();
        assert!(err.starts_with("bad.yaml"), "{err}");
        assert!(err.contains('3'), "{err}");
        let err = FleetFile::parse("bad.yaml", "regions: []\nskus: []\nsed: 1\n").unwrap_err().to_string();
        assert!(err.contains("sed"), "{err}");
    }
}
