//! Traces: what people and jobs did, and what the platform offered, over a
//! span of days. The platform part is a fleet file's (regions with their GPU
//! pools, SKUs with prices and discount windows); the instances carry their
//! activity sessions, written out or generated from a weekly routine; and
//! `capacity` changes the GPUs a region has over time. The format is
//! documented in `traces/README.md`.

use std::collections::BTreeMap;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Datelike, Duration, FixedOffset, NaiveTime, TimeZone, Utc, Weekday};
use chrono_tz::Tz;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Deserialize;

use crate::config::raw::Volume;
use crate::sim::fleet::{FleetBilling, FleetFile, FleetInstance, FleetRegion, FleetSku, FleetStatus};
use crate::sim::{Activity, PlatformSettings, Session, Simulator};

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TraceError(String);

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraceFile {
    pub start: DateTime<FixedOffset>,
    pub days: u32,
    /// The zone of routines; Asia/Shanghai when absent.
    #[serde(default)]
    pub timezone: Option<String>,
    /// Seeds the routines' jitter and absences, and the platform's names.
    #[serde(default)]
    pub seed: u64,
    #[serde(default)]
    pub platform: PlatformSettings,
    pub regions: Vec<FleetRegion>,
    pub skus: Vec<FleetSku>,
    #[serde(default)]
    pub capacity: Vec<CapacityChange>,
    pub instances: Vec<TraceInstance>,
}

/// From `at`, the region has this many GPUs of a kind in all (a shortage, or its end).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapacityChange {
    pub at: DateTime<FixedOffset>,
    pub region: String,
    pub gpus: BTreeMap<String, u32>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraceInstance {
    pub display_name: String,
    /// Copies named `{display_name}-0`, `-1`, ... when more than one.
    #[serde(default = "one")]
    pub count: u32,
    pub cluster: String,
    pub sku: String,
    #[serde(default = "default_image")]
    pub image: String,
    /// At the start of the trace.
    pub status: FleetStatus,
    #[serde(default = "default_billing")]
    pub billing: FleetBilling,
    #[serde(default)]
    pub term: String,
    #[serde(default)]
    pub volumes: Vec<Volume>,
    /// Sessions that repeat every week, in the trace's zone.
    #[serde(default)]
    pub routine: Vec<Routine>,
    /// Each routine session's start and end move by up to this much, each their own way.
    #[serde(default, with = "humantime_serde")]
    pub jitter: Option<StdDuration>,
    /// The chance of skipping a routine day (leave, meetings, a cold).
    #[serde(default)]
    pub absence: f64,
    /// Sessions at given times, besides the routine.
    #[serde(default)]
    pub sessions: Vec<FixedSession>,
    /// Work in a session is saved this often (a training job's checkpoints);
    /// absent, an interruption loses all the session's work so far (a
    /// notebook's kernel state).
    #[serde(default, with = "humantime_serde")]
    pub checkpoint_every: Option<StdDuration>,
}

fn one() -> u32 {
    1
}
fn default_image() -> String {
    "images.neolink-ai.com/matrixdc/pytorch:2.4.0-python3.10-cuda12.1.0-cudnn8-devel-ubuntu22.04".into()
}
fn default_billing() -> FleetBilling {
    FleetBilling::PayAsYouGo
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Routine {
    /// `mon`..`sun`; every day when empty.
    #[serde(default)]
    pub days: Vec<String>,
    /// Local `HH:MM`; a `to` at or before `from` ends the next day.
    pub from: String,
    pub to: String,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixedSession {
    pub from: DateTime<FixedOffset>,
    pub to: DateTime<FixedOffset>,
}

/// A trace ready to replay: its span, and each instance's sessions.
#[derive(Clone, Debug)]
pub struct Trace {
    pub file: TraceFile,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// The trace's time zone: routines, and times in reports.
    pub zone: Tz,
    /// Display name → sorted, non-overlapping sessions within the span.
    pub sessions: BTreeMap<String, Vec<Session>>,
    /// Display name → how often its work is saved, where the trace says.
    pub checkpoint_every: BTreeMap<String, Duration>,
}

impl Trace {
    pub fn parse(source: &str, text: &str) -> Result<Trace, TraceError> {
        let options = serde_saphyr::options! { strict_booleans: true };
        let file: TraceFile =
            serde_saphyr::from_str_with_options(text, options).map_err(|e| TraceError(format!("{source}: {e}")))?;
        Trace::new(file).map_err(|TraceError(e)| TraceError(format!("{source}: {e}")))
    }

    pub fn new(file: TraceFile) -> Result<Trace, TraceError> {
        let fail = |what: String| TraceError(what);
        if file.days == 0 {
            return Err(fail("days must be at least 1".into()));
        }
        let zone: Tz = file
            .timezone
            .as_deref()
            .unwrap_or("Asia/Shanghai")
            .parse()
            .map_err(|_| fail(format!("unknown time zone {:?}", file.timezone)))?;
        let start = file.start.to_utc();
        let end = start + Duration::days(i64::from(file.days));
        let mut sessions = BTreeMap::new();
        let mut checkpoint_every = BTreeMap::new();
        for (index, instance) in file.instances.iter().enumerate() {
            if !(0.0..=1.0).contains(&instance.absence) {
                return Err(fail(format!("{}: absence must be between 0 and 1", instance.display_name)));
            }
            for copy in 0..instance.count {
                let name = copy_name(instance, copy);
                let seed = file.seed ^ ((index as u64) << 32) ^ u64::from(copy);
                let mut list = routine_sessions(instance, zone, start, end, seed).map_err(fail)?;
                list.extend(instance.sessions.iter().map(|s| Session { start: s.from.to_utc(), end: s.to.to_utc() }));
                if let Some(bad) = list.iter().find(|s| s.end <= s.start) {
                    return Err(fail(format!("{name}: a session ends at or before it starts ({})", bad.start)));
                }
                if sessions.insert(name.clone(), merge(list, start, end)).is_some() {
                    return Err(fail(format!("two instances are named {name}")));
                }
                if let Some(every) = instance.checkpoint_every.and_then(|e| Duration::from_std(e).ok()) {
                    checkpoint_every.insert(name, every);
                }
            }
        }
        Ok(Trace { file, start, end, zone, sessions, checkpoint_every })
    }

    /// The simulated platform at the start of the trace, with every
    /// instance's sessions as its activity; platform name by display name.
    pub fn build(&self) -> Result<(Simulator, BTreeMap<String, String>), TraceError> {
        let instances = self
            .file
            .instances
            .iter()
            .flat_map(|i| {
                (0..i.count).map(move |copy| FleetInstance {
                    display_name: copy_name(i, copy),
                    cluster: i.cluster.clone(),
                    sku: i.sku.clone(),
                    image: i.image.clone(),
                    status: i.status,
                    billing: i.billing,
                    term: i.term.clone(),
                    volumes: i.volumes.clone(),
                    age: StdDuration::from_secs(3600),
                    stopped_for: StdDuration::from_secs(3600),
                    activity: Default::default(),
                })
            })
            .collect();
        let fleet = FleetFile {
            start: Some(self.file.start),
            seed: self.file.seed,
            platform: self.file.platform.clone(),
            faults: Default::default(),
            regions: self.file.regions.clone(),
            skus: self.file.skus.clone(),
            instances,
        };
        let mut sim = fleet.build("trace", self.start).map_err(|e| TraceError(e.to_string()))?;
        let names: BTreeMap<String, String> =
            sim.instances().map(|i| (i.display_name.clone(), i.name.clone())).collect();
        for (display, sessions) in &self.sessions {
            // Before its first session, an instance has been idle since the trace began.
            let activity =
                Activity { sessions: sessions.clone(), last_activity: Some(self.start), ..Activity::default() };
            sim.set_activity(&names[display], activity).map_err(|e| TraceError(e.to_string()))?;
        }
        for change in &self.file.capacity {
            if !self.file.regions.iter().any(|r| r.id == change.region) {
                return Err(TraceError(format!("capacity: unknown region {:?}", change.region)));
            }
        }
        Ok((sim, names))
    }

    /// Capacity changes in time order.
    pub fn capacity(&self) -> Vec<(DateTime<Utc>, &CapacityChange)> {
        let mut changes: Vec<_> = self.file.capacity.iter().map(|c| (c.at.to_utc(), c)).collect();
        changes.sort_by_key(|(at, _)| *at);
        changes
    }
}

fn copy_name(instance: &TraceInstance, copy: u32) -> String {
    if instance.count == 1 { instance.display_name.clone() } else { format!("{}-{copy}", instance.display_name) }
}

fn weekday(text: &str) -> Result<Weekday, String> {
    text.parse::<Weekday>().map_err(|_| format!("{text:?} is not a day (mon..sun)"))
}

fn routine_sessions(
    instance: &TraceInstance,
    zone: Tz,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    seed: u64,
) -> Result<Vec<Session>, String> {
    let mut rng = StdRng::seed_from_u64(seed);
    let jitter = instance.jitter.map_or(0, |j| j.as_secs() as i64);
    let mut out = Vec::new();
    let parse = |t: &str| NaiveTime::parse_from_str(t, "%H:%M").map_err(|_| format!("{t:?} is not HH:MM"));
    let routines = instance
        .routine
        .iter()
        .map(|r| {
            let days = r.days.iter().map(|d| weekday(d)).collect::<Result<Vec<_>, _>>()?;
            Ok((days, parse(&r.from)?, parse(&r.to)?))
        })
        .collect::<Result<Vec<_>, String>>()?;
    let first = start.with_timezone(&zone).date_naive();
    let last = end.with_timezone(&zone).date_naive();
    for day in first.iter_days().take_while(|d| *d <= last) {
        // One roll per day whatever the routine, so adding a routine line keeps the others' days.
        let absent = rng.random::<f64>() < instance.absence;
        for (days, from, to) in &routines {
            let (shift_start, shift_end) = (rng.random_range(-jitter..=jitter), rng.random_range(-jitter..=jitter));
            if absent || !(days.is_empty() || days.contains(&day.weekday())) {
                continue;
            }
            let end_day = if to <= from { day.succ_opt().unwrap_or(day) } else { day };
            let (Some(s), Some(e)) = (
                zone.from_local_datetime(&day.and_time(*from)).earliest(),
                zone.from_local_datetime(&end_day.and_time(*to)).earliest(),
            ) else {
                continue;
            };
            let (s, e) = (s.to_utc() + Duration::seconds(shift_start), e.to_utc() + Duration::seconds(shift_end));
            if e > s {
                out.push(Session { start: s, end: e });
            }
        }
    }
    Ok(out)
}

/// Sessions clipped to the span, sorted, overlapping ones joined.
fn merge(mut sessions: Vec<Session>, start: DateTime<Utc>, end: DateTime<Utc>) -> Vec<Session> {
    sessions.sort_by_key(|s| s.start);
    let mut out: Vec<Session> = Vec::new();
    for s in sessions {
        let s = Session { start: s.start.max(start), end: s.end.min(end) };
        if s.end <= s.start {
            continue;
        }
        match out.last_mut() {
            Some(last) if s.start <= last.end => last.end = last.end.max(s.end),
            _ => out.push(s),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRACE: &str = r#"
start: 2026-11-02T00:00:00+08:00
days: 7
seed: 3
regions: [{ id: r1, name: R1, cluster: c1, gpus: { nvidia.com/gpu-4090: 4 } }]
skus: [{ id: "66", region: r1, name: "4090", gpu_product: "4090", gpu_resource_key: nvidia.com/gpu-4090, gpu_count: 1, gpu_memory_gb: 24, cpu_cores: 16, memory_gb: 96, price: 2 }]
instances:
  - display_name: nb
    count: 2
    cluster: c1
    sku: "66"
    status: running
    routine: [{ days: [mon, tue, wed, thu, fri], from: "09:00", to: "12:00" }, { from: "11:00", to: "13:00" }]
    sessions: [{ from: 2026-11-08T22:00:00+08:00, to: 2026-11-09T02:00:00+08:00 }]
"#;

    #[test]
    fn routines_expand_by_weekday_overlaps_join_and_the_span_clips() {
        let trace = Trace::parse("t", TRACE).unwrap();
        let nb0 = &trace.sessions["nb-0"];
        // Weekdays: 09:00-13:00 joined; weekend: 11:00-13:00; Sunday's late session clipped at the end.
        let hours: Vec<i64> = nb0.iter().map(|s| (s.end - s.start).num_minutes()).collect();
        assert_eq!(hours, [240, 240, 240, 240, 240, 120, 120, 120]);
        assert_eq!(nb0.last().unwrap().end, trace.end);
        assert_eq!(trace.sessions["nb-1"], *nb0, "no jitter: copies alike");
        let (sim, names) = trace.build().unwrap();
        assert_eq!(names.len(), 2);
        assert!(sim.instance(&names["nb-1"]).unwrap().activity.sessions.len() == 8);
    }

    #[test]
    fn jitter_and_absence_follow_the_seed() {
        let text = TRACE.replace("    status: running\n", "    status: running\n    jitter: 10m\n    absence: 0.3\n");
        let a = Trace::parse("t", &text).unwrap();
        let b = Trace::parse("t", &text).unwrap();
        assert_eq!(a.sessions, b.sessions);
        assert_ne!(a.sessions["nb-0"], a.sessions["nb-1"], "each copy its own way");
        let other = Trace::parse("t", &text.replace("seed: 3", "seed: 4")).unwrap();
        assert_ne!(a.sessions, other.sessions);
    }

    #[test]
    fn bad_traces_say_why() {
        for (from, to, says) in [
            ("days: 7", "days: 0", "days must be"),
            ("from: \"09:00\"", "from: \"9am\"", "is not HH:MM"),
            ("days: [mon,", "days: [monday-ish,", "is not a day"),
            ("seed: 3", "seed: 3\ntimezone: Mars/Olympus", "unknown time zone"),
        ] {
            let error = Trace::parse("t", &TRACE.replace(from, to)).unwrap_err().to_string();
            assert!(error.contains(says), "{error}");
        }
    }
}
