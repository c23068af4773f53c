//! Traces: what people and jobs did, and what the platform offered, over a
//! span of days. The platform part is a fleet file's (regions with their GPU
//! pools, SKUs with prices and discount windows); the instances carry their
//! activity sessions, written out or generated from a weekly routine; and
//! `capacity` changes the GPUs a region has over time. The format is
//! documented in `traces/README.md`.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Datelike, Duration, NaiveTime, TimeZone, Utc, Weekday};
use chrono_tz::Tz;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Deserialize;

use crate::cloud::BillingType;
use crate::config::raw::Volume;
use crate::config::yaml::{self, Loc, Pos};
use crate::sim::fleet::{FleetFile, FleetInstance, FleetRegion, FleetSku, FleetStatus, Moment};
use crate::sim::{Activity, PlatformSettings, Session, Simulator};

/// Every error found in a trace, each with its place when it has one.
#[derive(Debug, thiserror::Error)]
pub struct TraceError {
    pub file: String,
    pub problems: Vec<(Option<Pos>, String)>,
}

impl fmt::Display for TraceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines: Vec<String> = self.problems.iter().map(|(pos, message)| at(&self.file, *pos, message)).collect();
        f.write_str(&lines.join("\n"))
    }
}

/// `file:line:column: message`, or `file: message` without a place.
fn at(source: &str, pos: Option<Pos>, message: &str) -> String {
    match pos.filter(|p| p.line > 0) {
        Some(pos) => format!("{source}:{pos}: {message}"),
        None => format!("{source}: {message}"),
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraceFile {
    /// RFC 3339, or a local time in `timezone`.
    pub start: Moment,
    /// The span: `days` from the start, or up to `end`.
    #[serde(default)]
    pub days: Option<u32>,
    #[serde(default)]
    pub end: Option<Loc<Moment>>,
    /// The zone of routines and of times written without an offset; Asia/Shanghai when absent.
    #[serde(default)]
    pub timezone: Option<Loc<String>>,
    /// Seeds the routines' jitter and absences, and the platform's names.
    #[serde(default)]
    pub seed: u64,
    #[serde(default)]
    pub platform: PlatformSettings,
    pub regions: Vec<FleetRegion>,
    pub skus: Vec<Loc<FleetSku>>,
    #[serde(default)]
    pub capacity: Vec<Loc<CapacityChange>>,
    pub instances: Vec<Loc<TraceInstance>>,
}

/// From `at`, the region has this many GPUs of a kind in all (a shortage, or its end).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapacityChange {
    pub at: Moment,
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
    pub billing: BillingType,
    #[serde(default)]
    pub term: String,
    #[serde(default)]
    pub volumes: Vec<Volume>,
    /// Sessions that repeat every week, in the trace's zone.
    #[serde(default)]
    pub routine: Vec<Loc<Routine>>,
    /// Each routine session's start and end move by up to this much, each their own way.
    #[serde(default, with = "humantime_serde")]
    pub jitter: Option<StdDuration>,
    /// The chance of skipping a routine day (leave, meetings, a cold).
    #[serde(default)]
    pub absence: f64,
    /// Days without routine sessions (leave), from one local date to another, both included.
    #[serde(default)]
    pub away: Vec<Away>,
    /// Sessions at given times, besides the routine.
    #[serde(default)]
    pub sessions: Vec<Loc<FixedSession>>,
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
fn default_billing() -> BillingType {
    BillingType::PayAsYouGo
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
pub struct Away {
    pub from: chrono::NaiveDate,
    pub to: chrono::NaiveDate,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixedSession {
    pub from: Moment,
    pub to: Moment,
}

/// A trace ready to replay: its span, and each instance's sessions.
#[derive(Clone, Debug)]
pub struct Trace {
    pub file: TraceFile,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// The trace's time zone: routines, times without an offset, and reports.
    pub zone: Tz,
    /// Display name → sorted, non-overlapping sessions within the span.
    pub sessions: BTreeMap<String, Vec<Session>>,
    /// Display name → how often its work is saved, where the trace says.
    pub checkpoint_every: BTreeMap<String, Duration>,
    /// What the replay changes or leaves out, `file:line:column: message`.
    pub warnings: Vec<String>,
}

/// Problems found while reading a trace.
#[derive(Default)]
struct Found {
    errors: Vec<(Option<Pos>, String)>,
    warnings: Vec<(Option<Pos>, String)>,
}

impl Found {
    fn error(&mut self, pos: Option<Pos>, message: String) {
        self.errors.push((pos, message));
    }

    fn warning(&mut self, pos: Pos, message: String) {
        self.warnings.push((Some(pos), message));
    }
}

impl Trace {
    /// Reads a trace: every error with its file, line and column.
    pub fn parse(source: &str, text: &str) -> Result<Trace, TraceError> {
        let fail = |problems| TraceError { file: source.to_owned(), problems };
        let root = yaml::parse(text).map_err(|e| fail(vec![(e.pos, e.message)]))?;
        let mut unknown = Vec::new();
        let file = yaml::decode::<TraceFile>(&root, &mut unknown);
        let mut problems: Vec<(Option<Pos>, String)> = unknown.into_iter().map(|p| (Some(p.pos), p.message)).collect();
        match file {
            Ok(file) if problems.is_empty() => Trace::read(file, source),
            Ok(_) => Err(fail(problems)),
            Err(p) => {
                problems.push((Some(p.pos), p.message));
                problems.sort_by_key(|(pos, _)| *pos);
                Err(fail(problems))
            }
        }
    }

    /// A trace from a file made in code (no places to point at).
    pub fn new(file: TraceFile) -> Result<Trace, TraceError> {
        Trace::read(file, "trace")
    }

    fn read(file: TraceFile, source: &str) -> Result<Trace, TraceError> {
        let mut found = Found::default();
        let trace = Trace::check(file, &mut found);
        let mut errors = found.errors;
        errors.sort_by_key(|(pos, _)| *pos);
        match trace {
            Some(mut trace) if errors.is_empty() => {
                trace.warnings = found.warnings.iter().map(|(pos, m)| at(source, *pos, m)).collect();
                Ok(trace)
            }
            _ => Err(TraceError { file: source.to_owned(), problems: errors }),
        }
    }

    fn check(file: TraceFile, found: &mut Found) -> Option<Trace> {
        let zone: Tz = match &file.timezone {
            None => crate::config::check::DEFAULT_TIMEZONE,
            Some(name) => match name.value.parse() {
                Ok(zone) => zone,
                Err(_) => {
                    found.error(
                        Some(name.pos),
                        format!("unknown time zone {:?} (for example Asia/Shanghai)", name.value),
                    );
                    return None;
                }
            },
        };
        let start = file.start.resolve(zone);
        let end = match (file.days, &file.end) {
            (Some(0), None) => {
                found.error(None, "days must be at least 1".into());
                return None;
            }
            (Some(days), None) => start + Duration::days(i64::from(days)),
            (None, Some(end)) if end.resolve(zone) > start => end.resolve(zone),
            (None, Some(end)) => {
                found.error(Some(end.pos), "the trace ends at or before it starts".into());
                return None;
            }
            _ => {
                found.error(None, "give the span as `days` or as `end`, one of them".into());
                return None;
            }
        };
        let regions: Vec<&str> = file.regions.iter().map(|r| r.id.as_str()).collect();
        let clusters: Vec<&str> = file.regions.iter().map(|r| r.cluster.as_str()).collect();
        for sku in &file.skus {
            if !regions.contains(&sku.region.as_str()) {
                found.error(Some(sku.pos), format!("SKU {}: unknown region {:?}", sku.id, sku.region));
            }
            if let Err(e) = sku.to_sim(zone) {
                found.error(Some(sku.pos), e.to_string());
            }
        }
        for change in &file.capacity {
            if !regions.contains(&change.region.as_str()) {
                found.error(Some(change.pos), format!("capacity: unknown region {:?}", change.region));
            }
        }
        let mut sessions = BTreeMap::new();
        let mut checkpoint_every = BTreeMap::new();
        for (index, instance) in file.instances.iter().enumerate() {
            let pos = Some(instance.pos);
            let name = &instance.display_name;
            if !file.skus.iter().any(|s| s.id == instance.sku) {
                found.error(pos, format!("{name}: unknown SKU {:?}", instance.sku));
            }
            if !clusters.contains(&instance.cluster.as_str()) {
                found.error(pos, format!("{name}: unknown cluster {:?}", instance.cluster));
            }
            if !(0.0..=1.0).contains(&instance.absence) {
                found.error(pos, format!("{name}: absence must be between 0 and 1"));
            }
            let mut fixed = Vec::new();
            for s in &instance.sessions {
                let (from, to) = (s.from.resolve(zone), s.to.resolve(zone));
                if to <= from {
                    found.error(Some(s.pos), format!("{name}: a session ends at or before it starts ({from})"));
                } else if to <= start || end <= from {
                    found.warning(s.pos, format!("{name}: a session outside the trace's span is not replayed"));
                } else {
                    if from < start || end < to {
                        found.warning(s.pos, format!("{name}: a session crossing the span's edge is cut to it"));
                    }
                    if fixed.iter().any(|(_, other): &(Pos, Session)| from < other.end && other.start < to) {
                        found.warning(s.pos, format!("{name}: overlapping sessions are joined"));
                    }
                    fixed.push((s.pos, Session { start: from, end: to }));
                }
            }
            for copy in 0..instance.count {
                let copy_name = copy_name(instance, copy);
                let seed = file.seed ^ ((index as u64) << 32) ^ u64::from(copy);
                let mut list = match routine_sessions(instance, zone, start, end, seed) {
                    Ok(list) => list,
                    Err((pos, e)) => {
                        found.error(Some(pos), format!("{name}: {e}"));
                        break;
                    }
                };
                list.extend(fixed.iter().map(|(_, s)| *s));
                if sessions.insert(copy_name.clone(), merge(list, start, end)).is_some() {
                    found.error(pos, format!("two instances are named {copy_name}"));
                }
                if let Some(every) = instance.checkpoint_every.and_then(|e| Duration::from_std(e).ok()) {
                    checkpoint_every.insert(copy_name, every);
                }
            }
        }
        Some(Trace { file, start, end, zone, sessions, checkpoint_every, warnings: Vec::new() })
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
                    billing: i.billing.clone(),
                    term: i.term.clone(),
                    volumes: i.volumes.clone(),
                    age: StdDuration::from_secs(3600),
                    stopped_for: StdDuration::from_secs(3600),
                    activity: Default::default(),
                })
            })
            .collect();
        let fleet = FleetFile {
            start: Some(self.start.fixed_offset()),
            timezone: Some(self.zone.name().to_owned()),
            seed: self.file.seed,
            platform: self.file.platform.clone(),
            faults: Default::default(),
            regions: self.file.regions.clone(),
            skus: self.file.skus.iter().map(|s| s.value.clone()).collect(),
            instances,
        };
        let fail = |e: String| TraceError { file: "trace".into(), problems: vec![(None, e)] };
        let mut sim = fleet.build("trace", self.start).map_err(|e| fail(e.to_string()))?;
        let names: BTreeMap<String, String> =
            sim.instances().map(|i| (i.display_name.clone(), i.name.clone())).collect();
        for (display, sessions) in &self.sessions {
            // Before its first session, an instance has been idle since the trace began.
            let activity =
                Activity { sessions: sessions.clone(), last_activity: Some(self.start), ..Activity::default() };
            sim.set_activity(&names[display], activity).map_err(|e| fail(e.to_string()))?;
        }
        Ok((sim, names))
    }

    /// Capacity changes in time order.
    pub fn capacity(&self) -> Vec<(DateTime<Utc>, &CapacityChange)> {
        let mut changes: Vec<_> = self.file.capacity.iter().map(|c| (c.at.resolve(self.zone), &c.value)).collect();
        changes.sort_by_key(|(at, _)| *at);
        changes
    }
}

fn copy_name(instance: &TraceInstance, copy: u32) -> String {
    if instance.count == 1 { instance.display_name.clone() } else { format!("{}-{copy}", instance.display_name) }
}

/// A routine line that does not read.
#[derive(Debug, thiserror::Error)]
enum RoutineError {
    #[error("{0:?} is not a day (mon..sun)")]
    NotADay(String),
    #[error("{0:?} is not HH:MM")]
    NotATime(String),
}

fn weekday(text: &str) -> Result<Weekday, RoutineError> {
    text.parse::<Weekday>().map_err(|_| RoutineError::NotADay(text.to_owned()))
}

fn routine_sessions(
    instance: &TraceInstance,
    zone: Tz,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    seed: u64,
) -> Result<Vec<Session>, (Pos, RoutineError)> {
    let mut rng = StdRng::seed_from_u64(seed);
    let jitter = instance.jitter.map_or(0, |j| j.as_secs() as i64);
    let mut out = Vec::new();
    let parse = |t: &str| NaiveTime::parse_from_str(t, "%H:%M").map_err(|_| RoutineError::NotATime(t.to_owned()));
    let routines = instance
        .routine
        .iter()
        .map(|r| {
            let checked = || -> Result<_, RoutineError> {
                let days = r.days.iter().map(|d| weekday(d)).collect::<Result<Vec<_>, _>>()?;
                Ok((days, parse(&r.from)?, parse(&r.to)?))
            };
            checked().map_err(|e| (r.pos, e))
        })
        .collect::<Result<Vec<_>, (Pos, RoutineError)>>()?;
    let first = start.with_timezone(&zone).date_naive();
    let last = end.with_timezone(&zone).date_naive();
    for day in first.iter_days().take_while(|d| *d <= last) {
        // One roll per day whatever the routine, so adding a routine line keeps the others' days.
        let absent =
            rng.random::<f64>() < instance.absence || instance.away.iter().any(|a| a.from <= day && day <= a.to);
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

    /// Every error at once, each at its line and column; no panic.
    #[test]
    fn every_error_names_its_line_and_column() {
        let text = TRACE
            .replace("sku: \"66\"", "sku: \"67\"")
            .replace("price: 2 }", "price: -2, discount: { id: d, ratio: 1.5, start: 2026-11-03T00:00:00+08:00, end: 2026-11-02T00:00:00+08:00 } }")
            .replace("to: 2026-11-09T02:00:00+08:00", "to: 2026-11-08T21:00:00+08:00")
            .replace("    count: 2\n", "    count: 2\n    colour: red\n");
        let error = Trace::parse("t.yaml", &text).unwrap_err();
        let lines: Vec<String> = error.to_string().lines().map(str::to_owned).collect();
        assert!(lines.iter().any(|l| l.starts_with("t.yaml:10:5: unknown key `colour`")), "{lines:#?}");
        let error = Trace::parse("t.yaml", &text.replace("    colour: red\n", "")).unwrap_err().to_string();
        let lines: Vec<&str> = error.lines().collect();
        assert_eq!(lines.len(), 3, "{error}");
        assert!(lines[0].starts_with("t.yaml:6:8: SKU 66: a price must be zero or more"), "{error}");
        assert!(lines[1].starts_with("t.yaml:8:5: nb: unknown SKU \"67\""), "{error}");
        assert!(lines[2].starts_with("t.yaml:14:16: nb: a session ends at or before it starts"), "{error}");
        let ratio = TRACE.replace("price: 2 }", "price: 2, discount: { id: d, ratio: 1.5, daily: { from: \"22:00\", to: \"06:00\", timezone: Asia/Shanghai } } }");
        let error = Trace::parse("t.yaml", &ratio).unwrap_err().to_string();
        assert!(error.starts_with("t.yaml:6:8: SKU 66: discount ratio must be more than 0 and at most 1"), "{error}");
        let reversed = TRACE.replace("price: 2 }", "price: 2, discount: { id: d, ratio: 0.5, start: 2026-11-03T00:00:00+08:00, end: 2026-11-02T00:00:00+08:00 } }");
        let error = Trace::parse("t.yaml", &reversed).unwrap_err().to_string();
        assert!(error.contains("SKU 66: discount ends at or before it starts"), "{error}");
    }

    #[test]
    fn sessions_outside_the_span_or_overlapping_are_warned_of_and_still_replayed() {
        let text = TRACE.replace(
            "    sessions: [{ from: 2026-11-08T22:00:00+08:00, to: 2026-11-09T02:00:00+08:00 }]",
            "    sessions:\n      - { from: 2026-11-08T22:00:00+08:00, to: 2026-11-09T02:00:00+08:00 }\n      - { from: 2026-11-08T23:00:00+08:00, to: 2026-11-08T23:30:00+08:00 }\n      - { from: 2026-12-20T10:00:00+08:00, to: 2026-12-20T11:00:00+08:00 }",
        );
        let trace = Trace::parse("t.yaml", &text).unwrap();
        assert_eq!(
            trace.warnings,
            [
                "t.yaml:15:9: nb: a session crossing the span's edge is cut to it",
                "t.yaml:16:9: nb: overlapping sessions are joined",
                "t.yaml:17:9: nb: a session outside the trace's span is not replayed",
            ]
        );
        assert_eq!(trace.sessions["nb-0"].last().unwrap().end, trace.end);
    }

    /// `end:` instead of `days:`, local times in the trace's zone, dated
    /// discount windows with their own ratios and a change of list price.
    #[test]
    fn what_the_api_shows_over_time_can_be_written() {
        let text = TRACE
            .replace("start: 2026-11-02T00:00:00+08:00\ndays: 7\n", "start: 2026-11-02 00:00\nend: 2026-11-09\ntimezone: Asia/Shanghai\n")
            .replace(
                "price: 2 }",
                "price: 2, prices: [{ from: 2026-11-05 00:00, price: 3 }], discount: { id: d, windows: [{ start: 2026-11-03 22:00, end: 2026-11-04 06:00, ratio: 0.5 }, { start: 2026-11-06T22:00:00+08:00, end: 2026-11-07T08:00:00+08:00, ratio: 0.4 }] } }",
            );
        let trace = Trace::parse("t.yaml", &text).unwrap();
        assert_eq!(trace.start, Utc.with_ymd_and_hms(2026, 11, 1, 16, 0, 0).unwrap());
        assert_eq!(trace.end - trace.start, Duration::days(7));
        let (sim, _) = trace.build().unwrap();
        let sku = sim.skus().next().unwrap();
        let local = |d, h| chrono_tz::Asia::Shanghai.with_ymd_and_hms(2026, 11, d, h, 0, 0).unwrap().to_utc();
        assert_eq!(sku.price_at(local(4, 23)).as_yuan_f64(), 2.0);
        assert_eq!(sku.price_at(local(5, 0)).as_yuan_f64(), 3.0);
        let discount = sku.discount.as_ref().unwrap();
        // Shown one at a time: the first until it ends, then the next.
        assert_eq!(discount.shown_at(local(2, 0)).unwrap().start, local(3, 22));
        assert_eq!(discount.shown_at(local(4, 7)).unwrap().ratio.as_f64(), 0.4);
        assert!(discount.shown_at(local(7, 9)).is_none());
        // 04:00-08:00 on the 4th: two hours in the window at ¥2 × 0.5, two at ¥2;
        // 21:00-23:00 on the 6th, after the price change: an hour at ¥3, an hour at ¥3 × 0.4.
        let cost = |from, to| crate::money::Money::from_hourly_scaled(sku.cost_scaled(from, to)).as_yuan_f64();
        assert_eq!(cost(local(4, 4), local(4, 8)), 2.0 * 0.5 * 2.0 + 2.0 * 2.0);
        assert_eq!(cost(local(6, 21), local(6, 23)), 3.0 + 3.0 * 0.4);
    }
}
