//! Policies and settings after every check: the planner's input, with time
//! zones, cron expressions, money and globs already parsed.

use std::path::PathBuf;

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;

use crate::cloud::matrixdc::{ClientSettings, ClientSetupError, MatrixDcClient};
use crate::cloud::{BillingType, Instance, VolumeSpec};
use crate::money::Money;
use crate::secret::{Secret, SecretError, SecretSource};

pub use super::raw::{ScaleDown, WhenExceeded};

/// What the global budget goes by wherever budgets are named: spend,
/// metrics, notes. No policy may take the name.
pub const GLOBAL: &str = "global";
/// What instances no policy owns go by wherever policies are named. No
/// policy may take the name.
pub const UNMANAGED: &str = "unmanaged";

#[derive(Clone, Debug)]
pub struct Config {
    pub settings: Settings,
    pub policies: Vec<Policy>,
}

impl Config {
    /// The zone each adaptive policy reads times of day in, by policy name.
    pub fn adaptive_zones(&self) -> std::collections::HashMap<&str, Tz> {
        let zone = |p: &Policy| match &p.idle.as_ref()?.stop_after {
            StopAfter::Adaptive(adaptive) => Some(adaptive.timezone),
            StopAfter::Fixed(_) => None,
        };
        self.policies.iter().filter_map(|p| Some((p.name.as_str(), zone(p)?))).collect()
    }

    /// The policy an instance belongs to: its pool's, else the first that selects it.
    /// The zone a policy's times are read in: its schedule's, else the settings'.
    pub fn zone_of(&self, policy: &Policy) -> Tz {
        policy.schedule.as_ref().map_or_else(|| self.settings.zone(), |s| s.timezone)
    }

    pub fn owner(&self, instance: &Instance) -> Option<&Policy> {
        self.policies.iter().find(|p| p.pools(instance)).or_else(|| self.policies.iter().find(|p| p.selects(instance)))
    }
}

/// The default `settings.listing_delay`.
pub const DEFAULT_LISTING_DELAY: Duration = Duration::minutes(15);

#[derive(Clone, Debug)]
pub struct Settings {
    pub api: ClientSettings,
    /// Where the API token is read from (default: `MDC_TOKEN`).
    pub token: SecretSource,
    /// The bearer token of the admin API's write endpoints; none: they refuse.
    pub admin_token: Option<SecretSource>,
    pub interval: Duration,
    pub sku_interval: Duration,
    /// The longest one cycle runs: observing stops there, and no further action is sent.
    pub cycle_deadline: Duration,
    pub listen: std::net::SocketAddr,
    /// The zone for reports; budgets and schedules carry their own.
    pub timezone: Option<Tz>,
    pub ledger: LedgerSettings,
    pub ha: HaSettings,
    pub limits: Limits,
    pub change_guard: ChangeGuard,
    /// Over every policy together.
    pub budget: Option<Budget>,
    pub capacity_backoff: Duration,
    /// How late the platform may list a new instance: a create sent and not
    /// listed yet holds its pool slot, and counts against the budgets, this long.
    pub listing_delay: Duration,
    pub prometheus_url: Option<String>,
    /// The channels notices go to.
    pub channels: Vec<super::notify::Channel>,
    /// The summaries sent on a schedule.
    pub digests: Vec<super::notify::Digest>,
    /// The daemon's address as people reach it (snooze links).
    pub public_url: Option<String>,
}

/// The environment variable that, when set, is the API token whatever `token` says.
pub const TOKEN_OVERRIDE: &str = "MDC_TOKEN";

/// Where the ledger is when nothing says: systemd's state directory for the
/// unit (`StateDirectory=mdc-autoscaler`), for the daemon and every command alike.
pub const STATE_DIRECTORY: &str = "/var/lib/mdc-autoscaler";

/// The SQLite ledger's file name in the state directory.
pub const LEDGER_FILE: &str = "mdc-autoscaler.db";

/// Why the client the settings describe cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot read the API token: {0} (MDC_TOKEN in the environment overrides settings.token)")]
    Token(#[from] SecretError),
    #[error(transparent)]
    Setup(#[from] ClientSetupError),
}

impl Settings {
    /// The zone reports are read in and habits learned by: `timezone`, else Asia/Shanghai.
    pub fn zone(&self) -> Tz {
        self.timezone.unwrap_or(crate::config::check::DEFAULT_TIMEZONE)
    }

    /// The MatrixDC client these settings describe, its token read.
    pub fn client(&self) -> Result<MatrixDcClient, ClientError> {
        Ok(MatrixDcClient::new(self.api.clone(), self.read_token()?)?)
    }

    /// The API token: [`TOKEN_OVERRIDE`] when it is set (so a shell can run
    /// `plan` with the policy the unit reads its credential by), else `token`.
    pub fn read_token(&self) -> Result<Secret, SecretError> {
        match std::env::var(TOKEN_OVERRIDE) {
            Ok(token) if !token.trim().is_empty() => Ok(Secret::new(token.trim())),
            _ => self.token.read(),
        }
    }

    /// The admin API's token, read, when one is set.
    pub fn read_admin_token(&self) -> Result<Option<Secret>, SecretError> {
        self.admin_token.as_ref().map(SecretSource::read).transpose()
    }
}

/// Replicas: whether this one takes part in an election, and how a standby behaves.
#[derive(Clone, Debug, PartialEq)]
pub struct HaSettings {
    /// `None`: on when the ledger is PostgreSQL.
    pub enabled: Option<bool>,
    /// `None`: the host name and process id.
    pub name: Option<String>,
    pub observe_every: u32,
    pub try_every: Duration,
}

impl Default for HaSettings {
    fn default() -> Self {
        HaSettings { enabled: None, name: None, observe_every: 5, try_every: Duration::seconds(5) }
    }
}

impl HaSettings {
    /// Whether this replica elects a leader, on a ledger at this URL.
    pub fn elects(&self, ledger_url: &str) -> bool {
        self.enabled.unwrap_or_else(|| is_postgres(ledger_url))
    }

    /// The name this replica goes by.
    pub fn replica(&self) -> String {
        self.name.clone().unwrap_or_else(|| format!("{}/{}", host_name(), std::process::id()))
    }
}

/// Whether a ledger URL is PostgreSQL's (any other is SQLite's).
pub fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// Where spend is recorded, and for how long.
#[derive(Clone, Debug)]
pub struct LedgerSettings {
    /// `None`: SQLite in the state directory (systemd's `STATE_DIRECTORY`
    /// when it is set, else [`STATE_DIRECTORY`]).
    pub url: Option<SecretSource>,
    pub migrate_on_start: bool,
    pub keep_price_samples: Duration,
    pub keep_usage_segments: Duration,
}

impl LedgerSettings {
    pub fn database_url(&self) -> Result<Secret, SecretError> {
        match &self.url {
            Some(source) => source.read(),
            None => Ok(Secret::new(format!("sqlite://{}", default_ledger().display()))),
        }
    }
}

/// The SQLite ledger used when `ledger.url` is not set.
pub fn default_ledger() -> PathBuf {
    let dir = std::env::var_os("STATE_DIRECTORY")
        .and_then(|dirs| std::env::split_paths(&dirs).next())
        .unwrap_or_else(|| PathBuf::from(STATE_DIRECTORY));
    dir.join(LEDGER_FILE)
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Limits {
    pub actions_per_cycle: u32,
    pub actions_per_hour: u32,
    /// Deletes lose what a snapshot did not keep: they have a limit of their own.
    pub deletes_per_hour: u32,
}

/// How much of the fleet a new or edited policy may newly stop or delete
/// before it must be confirmed: a share of the fleet, or `at_least` instances.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ChangeGuard {
    pub share: f64,
    pub at_least: u32,
}

impl Default for ChangeGuard {
    fn default() -> Self {
        ChangeGuard { share: 0.2, at_least: 10 }
    }
}

impl ChangeGuard {
    pub fn allowed(&self, fleet: usize) -> usize {
        ((fleet as f64 * self.share).floor() as usize).max(self.at_least as usize)
    }
}

/// How many of a policy's instances may be disrupted at once: a share of
/// them, and never fewer than `floor`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MaxDisrupted {
    pub share: f64,
    pub floor: u32,
}

impl MaxDisrupted {
    /// When a policy does not say: half, but at least ten, so that only a
    /// large policy is slowed.
    pub const DEFAULT: MaxDisrupted = MaxDisrupted { share: 0.5, floor: 10 };

    /// As a policy says it: the share, and at least one.
    pub fn share(share: f64) -> Self {
        MaxDisrupted { share, floor: 1 }
    }

    pub fn allowed(&self, members: usize) -> u32 {
        ((members as f64 * self.share).floor() as u32).max(self.floor)
    }
}

#[derive(Clone, Debug)]
pub struct Policy {
    pub name: String,
    /// Which existing instances the policy adopts; `None` for a pool alone.
    pub select: Option<Selector>,
    pub protect: Vec<Glob>,
    pub idle: Option<IdleRule>,
    pub schedule: Option<Schedule>,
    pub pool: Option<Pool>,
    pub budget: Option<Budget>,
    pub max_disrupted: MaxDisrupted,
    pub due_stops: DueStops,
    pub notify: Option<super::notify::PolicyNotify>,
}

/// Stops that come due at a moment rather than for idleness.
#[derive(Clone, Debug, PartialEq)]
pub struct DueStops {
    /// A due stop waits until every signal has said idle this long; a signal
    /// that cannot be read counts as in use.
    pub when_idle_for: Duration,
    /// Causes whose stops go ahead at once, in use or not.
    pub hard: Vec<HardStop>,
}

impl Default for DueStops {
    fn default() -> Self {
        DueStops { when_idle_for: Duration::minutes(5), hard: Vec::new() }
    }
}

/// What a due stop is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HardStop {
    /// The schedule's stop edge.
    Schedule,
    /// `idle.max_runtime`.
    MaxRuntime,
    /// A budget's `when_exceeded: stop`.
    Budget,
    /// A pool shrinking: its desired count falling, a discount window closing.
    ScaleDown,
}

impl HardStop {
    pub const NAMES: [&str; 4] = ["schedule", "max_runtime", "budget", "scale_down"];

    pub fn parse(name: &str) -> Option<HardStop> {
        match name {
            "schedule" => Some(HardStop::Schedule),
            "max_runtime" => Some(HardStop::MaxRuntime),
            "budget" => Some(HardStop::Budget),
            "scale_down" => Some(HardStop::ScaleDown),
            _ => None,
        }
    }
}

impl Policy {
    /// Literal prefixes every display name the policy owns starts with;
    /// `None` when it may own any name. Lets the planner skip policies fast.
    pub fn name_prefixes(&self) -> Option<Vec<&str>> {
        let mut prefixes = Vec::new();
        if let Some(select) = &self.select {
            if select.display_names.is_empty() {
                return None;
            }
            for glob in &select.display_names {
                prefixes.push(glob.literal_prefix());
            }
        }
        if let Some(pool) = &self.pool {
            prefixes.push(&pool.name_prefix);
        }
        (!prefixes.iter().any(|p| p.is_empty())).then_some(prefixes)
    }

    /// Whether the instance is one of this policy's pool slots. A pool's
    /// instances belong to it before any selector: otherwise a broad
    /// selector could take a new slot away and the pool would create it again.
    pub fn pools(&self, instance: &Instance) -> bool {
        self.pool
            .as_ref()
            .is_some_and(|p| p.slot_of(&instance.display_name).is_some() && p.clusters.contains(&instance.cluster))
    }

    pub fn selects(&self, instance: &Instance) -> bool {
        self.select.as_ref().is_some_and(|s| s.matches(instance))
    }
}

#[derive(Clone, Debug, Default)]
pub struct Selector {
    /// Empty means any.
    pub clusters: Vec<String>,
    pub display_names: Vec<Glob>,
    pub gpu_products: Vec<String>,
    pub billing: Vec<BillingType>,
}

impl Selector {
    /// Narrows nothing: every instance of the namespace matches (billing only sorts them).
    pub fn is_everything(&self) -> bool {
        self.clusters.is_empty()
            && self.gpu_products.is_empty()
            && self.display_names.iter().all(|g| g.as_str().chars().all(|c| c == '*'))
    }

    pub fn matches(&self, instance: &Instance) -> bool {
        (self.clusters.is_empty() || self.clusters.contains(&instance.cluster))
            && (self.display_names.is_empty() || self.display_names.iter().any(|g| g.matches(&instance.display_name)))
            && (self.gpu_products.is_empty()
                || self.gpu_products.iter().any(|p| p.eq_ignore_ascii_case(&instance.resources.gpu_type)))
            && (self.billing.is_empty() || self.billing.contains(&instance.cost.billing_type))
    }
}

/// A shell-style pattern: `*` any run of characters, `?` one character.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Glob(String);

impl Glob {
    pub fn new(pattern: &str) -> Self {
        Glob(pattern.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The text before the first wildcard.
    pub fn literal_prefix(&self) -> &str {
        &self.0[..self.0.find(['*', '?']).unwrap_or(self.0.len())]
    }

    pub fn matches(&self, text: &str) -> bool {
        if self.0.is_ascii() && text.is_ascii() {
            wildcard(self.0.as_bytes(), text.as_bytes(), b'*', b'?')
        } else {
            let (p, t): (Vec<char>, Vec<char>) = (self.0.chars().collect(), text.chars().collect());
            wildcard(&p, &t, '*', '?')
        }
    }
}

/// Glob matching with one backtrack point: linear for patterns with one `*`,
/// and never worse than `pattern × text`.
fn wildcard<T: Copy + PartialEq>(p: &[T], t: &[T], star: T, any: T) -> bool {
    let (mut pi, mut ti) = (0, 0);
    let mut backtrack: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some(&c) if c == star => {
                backtrack = Some((pi, ti));
                pi += 1;
            }
            Some(&c) if c == any || c == t[ti] => {
                pi += 1;
                ti += 1;
            }
            _ => match backtrack {
                Some((at_star, at_text)) => {
                    pi = at_star + 1;
                    ti = at_text + 1;
                    backtrack = Some((at_star, at_text + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|c| *c == star)
}

#[derive(Clone, Debug, PartialEq)]
pub enum Signal {
    Jupyter,
    Heartbeat,
    Prometheus { query: String, threshold: f64 },
}

impl Signal {
    pub fn label(&self) -> &'static str {
        match self {
            Signal::Jupyter => "jupyter",
            Signal::Heartbeat => "heartbeat",
            Signal::Prometheus { .. } => "prometheus",
        }
    }
}

#[derive(Clone, Debug)]
pub struct IdleRule {
    pub signals: Vec<Signal>,
    pub stop_after: StopAfter,
    /// Power stopped instances on ahead of their habitual arrivals (adaptive only).
    pub prewarm: Option<Prewarm>,
    pub snapshot: Option<SnapshotTemplate>,
    pub delete_after_stopped: Option<Duration>,
    pub delete_without_snapshot: bool,
    pub stop_prepaid: bool,
    pub max_runtime: Option<Duration>,
    pub grace_period_seconds: u32,
}

#[derive(Clone, Debug, PartialEq)]
pub enum StopAfter {
    Fixed(Duration),
    /// Learned per instance from its past idle gaps.
    Adaptive(Adaptive),
}

impl StopAfter {
    /// The least idle time before a stop: signals are read often enough for it.
    pub fn earliest(&self) -> Duration {
        match self {
            StopAfter::Fixed(after) => *after,
            StopAfter::Adaptive(adaptive) => adaptive.min,
        }
    }
}

/// A keep-alive learned from the record of use, priced against cold starts.
#[derive(Clone, Debug, PartialEq)]
pub struct Adaptive {
    /// What one cold start costs besides its running time: a person's wait, priced.
    pub cold_start_cost: Money,
    pub min: Duration,
    pub max: Duration,
    /// The fixed timer while too little is known of an instance and its policy.
    pub until_learned: Duration,
    /// Times of day are read in this zone (the schedule's, else the settings').
    pub timezone: Tz,
}

impl Adaptive {
    pub const COLD_START_WAIT_MINUTES: i64 = 1;
    pub const WAITING_PER_HOUR_YUAN: i64 = 120;
    pub const MIN_MINUTES: i64 = 5;
    pub const MAX_HOURS: i64 = 4;
    pub const UNTIL_LEARNED_MINUTES: i64 = 30;
}

#[derive(Clone, Debug, PartialEq)]
pub struct Prewarm {
    /// How long before a likely arrival the instance should be running.
    pub lead: Duration,
}

impl Prewarm {
    pub const LEAD_MINUTES: i64 = 10;
}

/// Image name and tag of a snapshot, with `{display_name}`, `{name}`,
/// `{policy}`, `{date}` (YYYYMMDD) and `{time}` (HHMMSS) filled in, the
/// date and time in the policy's zone (the schedule's, else the settings').
#[derive(Clone, Debug, PartialEq)]
pub struct SnapshotTemplate {
    pub image: String,
    pub tag: String,
    pub timezone: Tz,
}

impl SnapshotTemplate {
    pub const PLACEHOLDERS: [&str; 5] = ["display_name", "name", "policy", "date", "time"];

    /// Image names must be lowercase words joined by `.`, `_` or `-`.
    pub fn render(&self, instance: &Instance, policy: &str, at: DateTime<Utc>) -> (String, String) {
        let at = at.with_timezone(&self.timezone);
        let fill = |template: &str| {
            use chrono::{Datelike, Timelike};
            let mut out = String::with_capacity(template.len() + 32);
            let mut rest = template;
            while let Some(open) = rest.find('{') {
                out.push_str(&rest[..open]);
                let after = &rest[open..];
                let close = after.find('}').map_or(after.len(), |c| c + 1);
                match &after[..close] {
                    "{display_name}" => out.push_str(&instance.display_name),
                    "{name}" => out.push_str(&instance.name),
                    "{policy}" => out.push_str(policy),
                    "{date}" => out.push_str(&format!("{:04}{:02}{:02}", at.year(), at.month(), at.day())),
                    "{time}" => out.push_str(&format!("{:02}{:02}{:02}", at.hour(), at.minute(), at.second())),
                    other => out.push_str(other),
                }
                rest = &after[close..];
            }
            out.push_str(rest);
            out
        };
        // Other characters become `-`, runs of separators one `-`, and no
        // separator starts or ends the name.
        let clean = |text: &str, allowed: &dyn Fn(char) -> bool| -> String {
            let mut out = String::with_capacity(text.len());
            for c in text.chars() {
                let c = if allowed(c) { c } else { '-' };
                let separator = !c.is_ascii_alphanumeric();
                match out.chars().last() {
                    None if separator => {}
                    Some(last) if separator && !last.is_ascii_alphanumeric() => {}
                    _ => out.push(c),
                }
            }
            out.trim_end_matches(|c: char| !c.is_ascii_alphanumeric()).to_owned()
        };
        let image = clean(&fill(&self.image).to_lowercase(), &|c| c.is_ascii_alphanumeric() || "._-".contains(c));
        let tag = clean(&fill(&self.tag), &|c| c.is_ascii_alphanumeric() || "._-".contains(c));
        (image, tag.chars().take(128).collect())
    }
}

/// A standard 5-field cron expression.
#[derive(Clone, Debug)]
pub struct Cron {
    pub text: String,
    pub cron: croner::Cron,
}

/// A cron expression that does not parse.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("`{text}` {why}")]
pub struct CronError {
    pub text: String,
    pub why: String,
}

impl Cron {
    pub fn parse(text: &str) -> Result<Cron, CronError> {
        use croner::parser::{CronParser, Seconds};
        let cron = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .build()
            .parse(text.trim())
            .map_err(|e| CronError { text: text.to_owned(), why: Cron::diagnose(text, &e.to_string()) })?;
        Ok(Cron { text: text.trim().to_owned(), cron })
    }

    /// Why an expression the parser refused is wrong, by field: the
    /// parser's own words do not say which field or what range.
    fn diagnose(text: &str, parser: &str) -> String {
        const FIELDS: [(&str, u32, u32); 5] =
            [("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12), ("day of week", 0, 7)];
        let fields: Vec<&str> = text.split_whitespace().collect();
        if fields.len() != FIELDS.len() {
            return format!(
                "has {} fields; a cron expression has 5: minute hour day-of-month month day-of-week",
                fields.len()
            );
        }
        for (field, (name, low, high)) in fields.iter().zip(FIELDS) {
            for part in field.split(',') {
                // In `a-b/step` the step is a count, not a value of the field.
                let values = part.split('/').next().unwrap_or(part);
                for value in values.split('-') {
                    if let Ok(n) = value.parse::<u32>()
                        && !(low..=high).contains(&n)
                    {
                        return format!("has {name} {n}, out of range ({low}-{high})");
                    }
                }
            }
        }
        format!("is not a 5-field cron expression (minute hour day-of-month month day-of-week): {parser}")
    }

    /// The latest firing at or before `now`, in `tz`.
    pub fn previous(&self, tz: Tz, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron.find_previous_occurrence(&now.with_timezone(&tz), true).ok().map(|t| t.to_utc())
    }

    /// The first firing after `now`, in `tz`.
    pub fn next(&self, tz: Tz, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron.find_next_occurrence(&now.with_timezone(&tz), false).ok().map(|t| t.to_utc())
    }
}

#[derive(Clone, Debug)]
pub struct Schedule {
    pub timezone: Tz,
    pub start: Option<Cron>,
    pub stop: Option<Cron>,
    pub enforce: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Edge {
    Start,
    Stop,
}

impl Schedule {
    /// The latest start or stop edge at or before `now`.
    pub fn latest_edge(&self, now: DateTime<Utc>) -> Option<(Edge, DateTime<Utc>)> {
        let start = self.start.as_ref().and_then(|c| c.previous(self.timezone, now)).map(|t| (Edge::Start, t));
        let stop = self.stop.as_ref().and_then(|c| c.previous(self.timezone, now)).map(|t| (Edge::Stop, t));
        // On a tie the stop wins: the cheaper reading of an ambiguous schedule.
        [start, stop].into_iter().flatten().max_by_key(|(edge, t)| (*t, *edge == Edge::Stop))
    }

    pub fn next_edge(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        [&self.start, &self.stop].into_iter().flatten().filter_map(|c| c.next(self.timezone, now)).min()
    }
}

#[derive(Clone, Debug)]
pub struct GpuSpec {
    pub products: Vec<String>,
    pub count: u32,
    pub min_memory_gb: Option<u32>,
}

#[derive(Clone, Debug)]
pub struct Pool {
    /// In order of preference.
    pub clusters: Vec<String>,
    pub image: String,
    pub desired: u32,
    pub desired_schedule: Vec<(Cron, u32)>,
    pub schedule_timezone: Tz,
    pub min: u32,
    pub max: u32,
    pub gpu: GpuSpec,
    pub billing: BillingType,
    pub term: String,
    pub max_price_per_hour: Option<Money>,
    pub prefer_discount: bool,
    pub wait_for_discount: Option<Duration>,
    pub only_during_discount: bool,
    pub volume: Option<VolumeSpec>,
    pub scale_down: ScaleDown,
    pub name_prefix: String,
    pub disk_sku_id: String,
}

impl Pool {
    /// What the pool's creates need from a SKU.
    pub fn wanted(&self) -> crate::pricing::Wanted<'_> {
        crate::pricing::Wanted {
            products: &self.gpu.products,
            gpu_count: self.gpu.count,
            min_memory_gb: self.gpu.min_memory_gb,
            billing: &self.billing,
            clusters: &self.clusters,
            max_price: self.max_price_per_hour,
            prefer_discount: self.prefer_discount,
        }
    }

    /// The deterministic display name of a slot: `{name_prefix}-{slot}`.
    pub fn slot_name(&self, slot: u32) -> String {
        format!("{}-{slot}", self.name_prefix)
    }

    pub fn slot_of(&self, display_name: &str) -> Option<u32> {
        parse_slot(&self.name_prefix, display_name)
    }

    /// The desired count at `now`: the latest scheduled count, else `desired`,
    /// kept within `min..=max`.
    pub fn desired_at(&self, now: DateTime<Utc>) -> u32 {
        let scheduled = self
            .desired_schedule
            .iter()
            .filter_map(|(cron, count)| cron.previous(self.schedule_timezone, now).map(|t| (t, *count)))
            .max_by_key(|(t, _)| *t)
            .map(|(_, count)| count);
        scheduled.unwrap_or(self.desired).clamp(self.min, self.max)
    }

    pub fn next_desired_change(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.desired_schedule.iter().filter_map(|(cron, _)| cron.next(self.schedule_timezone, now)).min()
    }
}

/// `training-3` → 3 for prefix `training`; `training-03` and `training-x` are not slots.
fn parse_slot(prefix: &str, display_name: &str) -> Option<u32> {
    let rest = display_name.strip_prefix(prefix)?.strip_prefix('-')?;
    let digits = !rest.is_empty() && rest.chars().all(|c| c.is_ascii_digit());
    (digits && (rest == "0" || !rest.starts_with('0'))).then(|| rest.parse().ok()).flatten()
}

#[derive(Clone, Debug)]
pub struct Budget {
    pub daily: Option<Money>,
    pub monthly: Option<Money>,
    pub timezone: Tz,
    pub when_exceeded: WhenExceeded,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_like_a_shell() {
        let g = Glob::new("nb-*");
        assert!(g.matches("nb-alice") && g.matches("nb-") && !g.matches("xnb-alice"));
        assert!(Glob::new("*-keep-*").matches("nb-keep-carol"));
        assert!(Glob::new("train-?").matches("train-3") && !Glob::new("train-?").matches("train-10"));
        assert!(Glob::new("*").matches(""));
        assert!(Glob::new("a*b*c").matches("aXbYbZc") && !Glob::new("a*b*c").matches("aXbY"));
        assert!(Glob::new("笔记-?").matches("笔记-本") && !Glob::new("笔记-?").matches("笔记-本子"));
    }

    #[test]
    fn snapshot_names_fill_placeholders_and_stay_valid() {
        let instance: Instance = crate::cloud::wire::Instance {
            name: "instance-ab12cd34".into(),
            display_name: "NB Alice/实验".into(),
            ..Default::default()
        }
        .into_domain(&crate::cloud::StatusMap::default())
        .unwrap();
        let template = SnapshotTemplate {
            image: "{display_name}-{policy}".into(),
            tag: "{date}-{time}-{name}".into(),
            timezone: chrono_tz::Asia::Shanghai,
        };
        // 20:05 UTC is the next morning in Shanghai, the policy's zone.
        let at: DateTime<Utc> = "2026-11-27T20:05:09Z".parse().unwrap();
        let (image, tag) = template.render(&instance, "notebooks", at);
        assert_eq!(image, "nb-alice-notebooks");
        assert_eq!(tag, "20261128-040509-instance-ab12cd34");
    }

    #[test]
    fn pool_slots_are_exact() {
        assert_eq!(parse_slot("training", "training-3"), Some(3));
        assert_eq!(parse_slot("training", "training-0"), Some(0));
        assert_eq!(parse_slot("training", "training-03"), None);
        assert_eq!(parse_slot("training", "training-+3"), None);
        assert_eq!(parse_slot("training", "training-x"), None);
        assert_eq!(parse_slot("training", "trainingx-1"), None);
    }

    #[test]
    fn cron_is_five_fields_with_standard_weekdays() {
        assert!(Cron::parse("0 9 * * MON-FRI").is_ok());
        assert!(Cron::parse("0 0 9 * * MON-FRI").is_err(), "no seconds field");
        let cron = Cron::parse("0 9 * * 1").unwrap();
        // 2026-11-27 is a Friday; the previous Monday 09:00 Shanghai is 2026-11-23 01:00 UTC.
        let now: DateTime<Utc> = "2026-11-27T04:00:00Z".parse().unwrap();
        assert_eq!(cron.previous(chrono_tz::Asia::Shanghai, now).unwrap().to_rfc3339(), "2026-11-23T01:00:00+00:00");
    }
}
