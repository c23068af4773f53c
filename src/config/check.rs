//! Checks of meaning: raw settings and policies become resolved ones, and
//! every problem found on the way is recorded with its position.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{Duration, TimeZone, Utc};
use chrono_tz::Tz;

use super::policy::{self, Cron, Glob, Signal, SnapshotTemplate, StopAfter};
use super::raw;
use super::yaml::{Loc, Pos};
use crate::cloud::VolumeSpec;
use crate::cloud::matrixdc::ClientSettings;
use crate::money::Money;
use crate::secret::SecretSource;
use crate::text::counted;

/// The platform clears a stopped instance's data 15 days after shutdown.
pub const PLATFORM_PURGE_DAYS: i64 = 15;
/// Metrics, health checks and the admin API: loopback only, unless told.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9187";
/// The longest duration a policy may give (`stop_after: 300000y` would overflow the planner's clock).
pub const LONGEST: Duration = Duration::days(3650);

/// A year as humantime reads `1y`: 365.25 days.
const YEAR: Duration = Duration::seconds(31_557_600);

/// The range each policy duration makes sense in.
mod bounds {
    use chrono::Duration;

    type Range = (Duration, Duration);
    /// An idle timer (and adaptive's min, max and until_learned): from a minute to a month.
    pub const STOP_AFTER: Range = (Duration::minutes(1), Duration::days(30));
    pub const WHEN_IDLE_FOR: Range = (Duration::minutes(1), Duration::days(1));
    pub const PREWARM_LEAD: Range = (Duration::minutes(1), Duration::hours(12));
    pub const COLD_START_WAIT: Range = (Duration::seconds(1), Duration::hours(12));
    /// Under the platform's purge is checked on its own.
    pub const DELETE_AFTER_STOPPED: Range = (Duration::minutes(10), Duration::days(15));
    pub const MAX_RUNTIME: Range = (Duration::minutes(10), super::YEAR);
    pub const WAIT_FOR_DISCOUNT: Range = (Duration::minutes(1), Duration::days(7));
}

/// Schedules fall back to the platform's own zone.
pub const DEFAULT_TIMEZONE: Tz = chrono_tz::Asia::Shanghai;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Error,
    Warning,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Diagnostic {
    pub pos: Pos,
    pub severity: Severity,
    pub message: String,
}

#[derive(Default)]
pub struct Checker {
    pub diagnostics: Vec<Diagnostic>,
    /// A time zone was written wrongly: that one error is the root cause
    /// of a budget without a zone, which says nothing more.
    broken_zone: bool,
}

impl Checker {
    pub fn error(&mut self, pos: Pos, message: impl Into<String>) {
        self.diagnostics.push(Diagnostic { pos, severity: Severity::Error, message: message.into() });
    }

    pub fn warning(&mut self, pos: Pos, message: impl Into<String>) {
        self.diagnostics.push(Diagnostic { pos, severity: Severity::Warning, message: message.into() });
    }

    pub(super) fn timezone(&mut self, zone: &Loc<String>) -> Option<Tz> {
        match zone.value.parse::<Tz>() {
            Ok(tz) => Some(tz),
            Err(_) => {
                self.broken_zone = true;
                self.error(zone.pos, format!("unknown time zone `{}`{}", zone.value, zone_suggestion(&zone.value)));
                None
            }
        }
    }

    pub(super) fn cron(&mut self, text: &Loc<String>) -> Option<Cron> {
        match Cron::parse(&text.value) {
            Ok(cron) => {
                // A fixed reference, not the clock: the answer must not depend on today.
                let reference = Utc.with_ymd_and_hms(2001, 1, 1, 0, 0, 0).unwrap();
                if cron.next(chrono_tz::UTC, reference).is_none() {
                    self.error(text.pos, format!("cron expression `{}` never fires", text.value));
                    return None;
                }
                Some(cron)
            }
            Err(message) => {
                self.error(text.pos, message.to_string());
                None
            }
        }
    }

    /// A duration within `bounds` (both ends included). Each field has the
    /// range it makes sense in, so that `45M` (months) or `45ms` where
    /// minutes were meant is an error, and date arithmetic never overflows.
    pub(super) fn duration(
        &mut self,
        value: &Loc<raw::Human>,
        what: &str,
        (low, high): (Duration, Duration),
    ) -> Option<Duration> {
        debug_assert!(high <= LONGEST);
        match Duration::from_std(value.value.0) {
            Ok(d) if (low..=high).contains(&d) => Some(d),
            written => {
                let written = written.unwrap_or(Duration::MAX);
                // humantime reads `M` as months (30.44 days) and `ms` as milliseconds.
                const MONTH_SECONDS: i64 = 2_630_016;
                let seconds = written.num_seconds();
                let months = seconds / MONTH_SECONDS;
                let whole_years = seconds % YEAR.num_seconds() == 0;
                let (written, hint) = if months > 0 && seconds % MONTH_SECONDS == 0 && !whole_years {
                    (counted(months as usize, "month", "months"), " (`M` means months; minutes are `m`)")
                } else if written > Duration::zero() && written < Duration::seconds(1) {
                    (shown(written), " (`ms` means milliseconds; minutes are `m`)")
                } else if written > LONGEST {
                    ("more than ten years".to_owned(), "")
                } else {
                    (shown(written), "")
                };
                self.error(
                    value.pos,
                    format!("{what} must be from {} to {}, not {written}{hint}", shown(low), shown(high)),
                );
                None
            }
        }
    }

    /// A duration within `bounds`, or `default` when absent or wrong.
    fn within(
        &mut self,
        value: &Option<Loc<raw::Human>>,
        what: &str,
        default: Duration,
        bounds: (Duration, Duration),
    ) -> Duration {
        value.as_ref().and_then(|v| self.duration(v, what, bounds)).unwrap_or(default)
    }

    /// The API client's settings, each within the range it works in; out
    /// of range is an error here, never a client that cannot be built later.
    fn api(&mut self, api: Loc<ClientSettings>) -> ClientSettings {
        let pos = api.pos;
        let a = api.value;
        let url = reqwest::Url::parse(a.base_url.trim()).ok().filter(|u| matches!(u.scheme(), "http" | "https"));
        if url.is_none_or(|u| u.cannot_be_a_base() || u.host().is_none()) {
            self.error(pos, format!("api.base_url `{}` must be an http(s) URL", a.base_url));
        }
        let checks: [(bool, &str); 8] = [
            ((1..=10_000).contains(&a.requests_per_second), "api.requests_per_second must be 1 to 10000"),
            ((1..=10_000).contains(&a.burst), "api.burst must be 1 to 10000"),
            (a.retries <= 10, "api.retries must be at most 10"),
            ((1..=300).contains(&a.timeout.as_secs()), "api.timeout must be 1s to 5m"),
            (
                a.call_timeout() >= a.timeout && a.call_timeout() <= std::time::Duration::from_secs(1200),
                "api.call_timeout must be from api.timeout to 20m",
            ),
            (a.retry_max_delay <= std::time::Duration::from_secs(300), "api.retry_max_delay must be at most 5m"),
            ((1..=1000).contains(&a.paging.page_size), "api.paging.page_size must be 1 to 1000"),
            ((1..=10_000).contains(&a.paging.max_pages), "api.paging.max_pages must be 1 to 10000"),
        ];
        for (ok, message) in checks {
            if !ok {
                self.error(pos, message);
            }
        }
        a
    }

    /// How long the ledger keeps a kind of row: at least `floor_days`, as
    /// spend of the longest budget period (a month) and what is learned from
    /// use (weeks) must stay readable; `--dry-run` prunes too.
    fn keep(&mut self, value: Option<Loc<raw::Human>>, what: &str, default_days: i64, floor_days: i64) -> Duration {
        self.within(
            &value,
            &format!("retention.{what}"),
            Duration::days(default_days),
            (Duration::days(floor_days), LONGEST),
        )
    }

    fn money(&mut self, value: &Loc<f64>, what: &str) -> Option<Money> {
        // A billion yuan is past any budget or price, and far from where sums could saturate.
        const MONEY_MAX: Money = Money::from_yuan(1_000_000_000);
        match Money::from_yuan_f64(value.value).filter(|m| *m > Money::ZERO) {
            Some(money) if money <= MONEY_MAX => Some(money),
            Some(_) => {
                self.error(value.pos, format!("{what} must be at most 1000000000 CNY, not {}", value.value));
                None
            }
            None => {
                self.error(value.pos, format!("{what} must be a positive amount in CNY, not {}", value.value));
                None
            }
        }
    }

    pub fn settings(
        &mut self,
        raw: raw::Settings,
        token: Option<SecretSource>,
        admin_token: Option<SecretSource>,
        channels: Vec<super::notify::Channel>,
    ) -> policy::Settings {
        let interval =
            self.within(&raw.interval, "interval", Duration::seconds(30), (Duration::seconds(1), Duration::hours(1)));
        let sku_interval = self.within(
            &raw.sku_interval,
            "sku_interval",
            Duration::minutes(2),
            (Duration::seconds(1), Duration::days(1)),
        );
        // Well under systemd's watchdog (5 minutes in the unit), which is fed as cycles end.
        let cycle_deadline = self.within(
            &raw.cycle_deadline,
            "cycle_deadline",
            Duration::minutes(2),
            (Duration::seconds(5), Duration::minutes(4)),
        );
        // Undocumented on the vendor page; the default is cluster-autoscaler's wait for a node to register.
        let listing_delay = self.within(
            &raw.listing_delay,
            "listing_delay",
            policy::DEFAULT_LISTING_DELAY,
            (Duration::zero(), Duration::hours(1)),
        );
        let listen = match &raw.listen {
            Some(l) => l.value.parse().unwrap_or_else(|_| {
                self.error(l.pos, format!("listen `{}` is not an address like 127.0.0.1:9187", l.value));
                DEFAULT_LISTEN.parse().expect("valid")
            }),
            None => DEFAULT_LISTEN.parse().expect("valid"),
        };
        let timezone = raw.timezone.as_ref().and_then(|z| self.timezone(z));
        let digests = raw.notify.digest.0.into_iter().filter_map(|d| self.digest(d, &channels, timezone)).collect();
        let limits = policy::Limits {
            actions_per_cycle: *raw.limits.actions_per_cycle,
            actions_per_hour: *raw.limits.actions_per_hour,
            deletes_per_hour: *raw.limits.deletes_per_hour,
        };
        if limits.actions_per_cycle == 0 {
            self.error(raw.limits.actions_per_cycle.pos, "actions_per_cycle must be at least 1");
        }
        if limits.actions_per_hour < limits.actions_per_cycle {
            self.warning(raw.limits.actions_per_hour.pos, "actions_per_hour is below actions_per_cycle");
        }
        let budget = raw.budget.as_ref().and_then(|b| self.budget(b, timezone, None, Pos::default()));
        let mut change_guard = policy::ChangeGuard::default();
        match raw.change_guard.share {
            Some(share) if share.value.0 > 0.0 && share.value.0 <= 1.0 => change_guard.share = share.value.0,
            Some(share) => self.error(share.pos, "change_guard.share must be above 0% and at most 100%"),
            None => {}
        }
        if let Some(at_least) = raw.change_guard.at_least {
            change_guard.at_least = at_least.value;
        }
        policy::Settings {
            api: self.api(raw.api),
            token: token.unwrap_or_else(|| SecretSource::Env("MDC_TOKEN".into())),
            admin_token,
            interval,
            sku_interval,
            cycle_deadline,
            listen,
            timezone,
            ledger: policy::LedgerSettings {
                url: raw.ledger.url,
                migrate_on_start: raw.ledger.migrate_on_start.unwrap_or(true),
                keep_price_samples: self.keep(raw.ledger.retention.price_samples, "price_samples", 90, 1),
                keep_usage_segments: self.keep(raw.ledger.retention.usage_segments, "usage_segments", 400, 62),
            },
            ha: self.ha(raw.ha),
            limits,
            change_guard,
            budget,
            capacity_backoff: self.within(
                &raw.capacity_backoff,
                "capacity_backoff",
                Duration::minutes(5),
                (Duration::seconds(10), Duration::days(1)),
            ),
            listing_delay,
            prometheus_url: raw.prometheus.map(|p| p.url.value),
            channels,
            digests,
            public_url: self.public_url(raw.public_url),
        }
    }

    fn ha(&mut self, raw: raw::Ha) -> policy::HaSettings {
        let default = policy::HaSettings::default();
        let observe_every = match raw.observe_every {
            Some(every) if every.value == 0 => {
                self.error(every.pos, "ha.observe_every counts intervals: at least 1");
                default.observe_every
            }
            Some(every) => every.value,
            None => default.observe_every,
        };
        let name = raw.name.map(|name| {
            if name.value.trim().is_empty() || name.value.chars().any(char::is_control) {
                self.error(name.pos, "ha.name must be printable and not empty");
            }
            name.value
        });
        policy::HaSettings {
            enabled: raw.enabled.map(|e| e.value),
            name,
            observe_every,
            try_every: self.within(
                &raw.try_every,
                "ha.try_every",
                default.try_every,
                (Duration::seconds(1), Duration::minutes(1)),
            ),
        }
    }

    fn budget(
        &mut self,
        b: &raw::Budget,
        fallback: Option<Tz>,
        schedule: Option<Tz>,
        at: Pos,
    ) -> Option<policy::Budget> {
        let daily = b.daily.as_ref().and_then(|d| self.money(d, "a daily budget"));
        let monthly = b.monthly.as_ref().and_then(|m| self.money(m, "a monthly budget"));
        if b.daily.is_none() && b.monthly.is_none() {
            self.error(at, "a budget needs `daily`, `monthly`, or both");
        }
        if let (Some(d), Some(m), Some(pos)) = (daily, monthly, b.monthly.as_ref().map(|m| m.pos))
            && m < d
        {
            self.warning(pos, "the monthly budget is below the daily one");
        }
        let timezone = match &b.timezone {
            Some(zone) => self.timezone(zone)?,
            None => match schedule.or(fallback) {
                Some(tz) => tz,
                None if self.broken_zone => return None,
                None => {
                    let pos = b.daily.as_ref().or(b.monthly.as_ref()).map_or(at, |v| v.pos);
                    self.error(pos, "a budget needs a time zone (its own `timezone`, the schedule's, or `settings.timezone`): days and months start at midnight somewhere");
                    return None;
                }
            },
        };
        Some(policy::Budget { daily, monthly, timezone, when_exceeded: b.when_exceeded })
    }

    pub fn policy(
        &mut self,
        raw: raw::Policy,
        settings_zone: Option<Tz>,
        prometheus: bool,
        channels: &[String],
    ) -> Option<policy::Policy> {
        let name = raw.name.value.trim().to_owned();
        let valid_name = !name.is_empty()
            && name.len() <= 40
            && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !name.starts_with('-');
        if !valid_name {
            self.error(raw.name.pos, format!("policy name `{name}` must be 1-40 lowercase letters, digits or `-`"));
        } else if [policy::GLOBAL, policy::UNMANAGED].contains(&name.as_str()) {
            let meaning = if name == policy::GLOBAL { "the global budget" } else { "instances no policy owns" };
            self.error(raw.name.pos, format!("policy name `{name}` is taken: it names {meaning}"));
        }
        if raw.select.is_none() && raw.pool.is_none() {
            self.error(
                raw.name.pos,
                format!("policy `{name}` needs `select` (adopt instances) or `pool` (create them)"),
            );
        }
        let schedule_zone = match raw.schedule.as_ref().and_then(|s| s.timezone.as_ref()) {
            Some(zone) => self.timezone(zone),
            None => settings_zone,
        };
        let select = raw.select.map(|s| policy::Selector {
            clusters: s.cluster.map(|c| c.0).unwrap_or_default(),
            display_names: s.display_name.map(|d| d.0.iter().map(|g| Glob::new(g)).collect()).unwrap_or_default(),
            gpu_products: s.gpu_product.map(|p| p.0).unwrap_or_default(),
            billing: s.billing.map(|b| b.0).unwrap_or_default(),
        });
        let protect = raw.protect.map(|p| p.display_name.0.iter().map(|g| Glob::new(g)).collect()).unwrap_or_default();
        if let (Some(_), Some(delete)) = (&raw.pool, raw.idle.as_ref().and_then(|i| i.delete_after_stopped.as_ref())) {
            self.error(
                delete.pos,
                "a pool keeps its members until its count falls (`scale_down: delete` removes the surplus); delete_after_stopped is for adopted instances",
            );
        }
        // An idle section that fails its own checks is reported there, not again as missing.
        let has_idle = raw.idle.is_some();
        let idle = raw.idle.and_then(|i| self.idle(i, prometheus, schedule_zone.unwrap_or(DEFAULT_TIMEZONE)));
        let schedule = raw.schedule.map(|s| {
            let start = s.start.as_ref().and_then(|c| self.cron(c));
            let stop = s.stop.as_ref().and_then(|c| self.cron(c));
            let sets_pool_zone = raw.pool.as_ref().is_some_and(|p| !p.desired_schedule.is_empty());
            if s.start.is_none() && s.stop.is_none() && !sets_pool_zone {
                self.error(raw.name.pos, format!("the schedule of `{name}` needs `start`, `stop`, or both"));
            }
            policy::Schedule { timezone: schedule_zone.unwrap_or(DEFAULT_TIMEZONE), start, stop, enforce: s.enforce }
        });
        let pool = raw.pool.and_then(|p| self.pool(p, &name, schedule_zone.unwrap_or(DEFAULT_TIMEZONE)));
        let budget = raw.budget.as_ref().and_then(|b| self.budget(b, settings_zone, schedule_zone, raw.name.pos));
        let max_disrupted = match raw.max_disrupted {
            Some(share) if share.value.0 > 0.0 && share.value.0 <= 1.0 => policy::MaxDisrupted::share(share.value.0),
            Some(share) => {
                self.error(share.pos, "max_disrupted must be above 0% and at most 100%");
                policy::MaxDisrupted::DEFAULT
            }
            None => policy::MaxDisrupted::DEFAULT,
        };
        if let Some(rule) = &idle
            && rule.delete_after_stopped.is_some()
        {
            if select.as_ref().is_some_and(policy::Selector::is_everything) {
                self.warning(
                    raw.name.pos,
                    format!("policy `{name}` selects every instance and deletes: one mistake deletes the whole fleet; name a cluster, display_name or gpu_product"),
                );
            }
            if rule.delete_without_snapshot {
                self.warning(
                    raw.name.pos,
                    format!("policy `{name}` deletes without a snapshot (delete_without_snapshot: true): what was on a deleted instance is gone for good"),
                );
            }
        }
        let schedule_stops = schedule.as_ref().is_some_and(|s| s.stop.is_some());
        let due_stops =
            self.due_stops(raw.due_stops.unwrap_or_default(), &name, has_idle, schedule_stops, raw.name.pos);
        let earliest_idle_stop = idle.as_ref().map(|i| i.stop_after.earliest());
        let notify = raw.notify.and_then(|n| self.policy_notify(n, channels, earliest_idle_stop));
        Some(policy::Policy { name, select, protect, idle, schedule, pool, budget, max_disrupted, due_stops, notify })
    }

    fn due_stops(
        &mut self,
        raw: raw::DueStops,
        name: &str,
        has_signals: bool,
        schedule_stops: bool,
        at: Pos,
    ) -> policy::DueStops {
        let mut due = policy::DueStops::default();
        due.when_idle_for =
            self.within(&raw.when_idle_for, "due_stops.when_idle_for", due.when_idle_for, bounds::WHEN_IDLE_FOR);
        for cause in &raw.hard {
            match policy::HardStop::parse(&cause.value) {
                Some(hard) => {
                    self.warning(
                        cause.pos,
                        format!("due_stops.hard: {} stops power off instances even while they are in use", cause.value),
                    );
                    due.hard.push(hard);
                }
                None => self.error(
                    cause.pos,
                    format!(
                        "unknown due stop `{}`{}: one of {}",
                        cause.value,
                        super::yaml::suggestion(&cause.value, &policy::HardStop::NAMES),
                        policy::HardStop::NAMES.join(", ")
                    ),
                ),
            }
        }
        if !has_signals && (schedule_stops || raw.when_idle_for.is_some() || !raw.hard.is_empty()) {
            self.warning(
                at,
                format!(
                    "policy `{name}` has no idle signals, so its due stops (schedule, budget, pool) cannot tell work in use and go ahead at once; add `idle.signals` to make them wait for idle"
                ),
            );
        }
        due
    }

    fn idle(&mut self, i: raw::Idle, prometheus: bool, zone: Tz) -> Option<policy::IdleRule> {
        let stop_after = match i.stop_after.value {
            raw::StopAfter::After(after) => {
                if let Some(adaptive) = &i.adaptive {
                    self.warning(
                        adaptive.pos,
                        "`adaptive` is used only with `stop_after: adaptive`; this policy's timer is fixed",
                    );
                }
                self.duration(&Loc { value: after, pos: i.stop_after.pos }, "stop_after", bounds::STOP_AFTER)
                    .map(StopAfter::Fixed)
            }
            raw::StopAfter::Adaptive => {
                self.adaptive(i.adaptive.clone().map(|a| a.value).unwrap_or_default(), zone).map(StopAfter::Adaptive)
            }
        };
        let prewarm = match (&i.prewarm, &stop_after) {
            (Some(p), Some(StopAfter::Adaptive(_))) if p.enabled => {
                let lead = match &p.lead {
                    Some(lead) => self.duration(lead, "prewarm.lead", bounds::PREWARM_LEAD),
                    None => Some(Duration::minutes(policy::Prewarm::LEAD_MINUTES)),
                };
                lead.map(|lead| policy::Prewarm { lead })
            }
            (Some(p), Some(StopAfter::Fixed(_))) if p.enabled => {
                self.error(
                    i.stop_after.pos,
                    "prewarm learns arrivals and prices cold starts: it needs `stop_after: adaptive`",
                );
                None
            }
            _ => None,
        };
        let delete_after_stopped = i.delete_after_stopped.as_ref().and_then(|d| {
            let duration = d.value.0;
            if duration >= std::time::Duration::from_secs(PLATFORM_PURGE_DAYS as u64 * 86_400) {
                self.error(
                    d.pos,
                    format!(
                        "delete_after_stopped must be under {PLATFORM_PURGE_DAYS} days: the platform clears a stopped instance's data after {PLATFORM_PURGE_DAYS} days"
                    ),
                );
                return None;
            }
            self.duration(d, "delete_after_stopped", bounds::DELETE_AFTER_STOPPED)
        });
        let max_runtime = i.max_runtime.as_ref().and_then(|d| self.duration(d, "max_runtime", bounds::MAX_RUNTIME));
        let earliest = stop_after.as_ref().map(StopAfter::earliest);
        if let (Some(stop), Some(max), Some(pos)) = (earliest, max_runtime, i.max_runtime.as_ref().map(|m| m.pos))
            && max <= stop
        {
            self.warning(pos, "max_runtime is not longer than stop_after");
        }
        if i.signals.is_empty() {
            self.error(i.stop_after.pos, "idle needs at least one signal (jupyter, heartbeat, prometheus)");
        }
        if let Some(raw::Signal::Prometheus(second)) =
            i.signals.iter().filter(|s| matches!(s, raw::Signal::Prometheus(_))).nth(1)
        {
            self.error(
                second.query.pos,
                "one prometheus signal per policy: combine the queries into one PromQL expression (`a or b`)",
            );
        }
        let signals = i
            .signals
            .into_iter()
            .map(|s| match s {
                raw::Signal::Jupyter => Signal::Jupyter,
                raw::Signal::Heartbeat => Signal::Heartbeat,
                raw::Signal::Prometheus(p) => {
                    if !prometheus {
                        self.error(p.query.pos, "the prometheus signal needs `settings.prometheus.url`");
                    }
                    if !p.query.contains("{name}") && !p.query.contains("{display_name}") {
                        self.warning(p.query.pos, "the query names no instance ({name} or {display_name}): every instance gets the same answer");
                    }
                    Signal::Prometheus { query: p.query.value, threshold: p.threshold }
                }
            })
            .collect();
        let snapshot = i.snapshot.map(|s| {
            for template in [&s.image, &s.tag] {
                self.placeholders(template);
            }
            SnapshotTemplate { image: s.image.value, tag: s.tag.value, timezone: zone }
        });
        if delete_after_stopped.is_some() && snapshot.is_none() && !i.delete_without_snapshot {
            self.warning(
                i.delete_after_stopped.as_ref().map_or(i.stop_after.pos, |d| d.pos),
                "delete_after_stopped without a snapshot never deletes (no snapshot is known to succeed); set `snapshot` or `delete_without_snapshot: true`",
            );
        }
        Some(policy::IdleRule {
            signals,
            stop_after: stop_after?,
            prewarm,
            snapshot,
            delete_after_stopped,
            delete_without_snapshot: i.delete_without_snapshot,
            stop_prepaid: i.stop_prepaid,
            max_runtime,
            grace_period_seconds: self
                .within(
                    &i.grace_period,
                    "grace_period",
                    Duration::seconds(10),
                    (Duration::zero(), Duration::minutes(10)),
                )
                .num_seconds() as u32,
        })
    }

    fn adaptive(&mut self, a: raw::Adaptive, timezone: Tz) -> Option<policy::Adaptive> {
        use policy::Adaptive as A;
        // A duration given is checked; one not given takes its default.
        let duration = |check: &mut Self, value: &Option<Loc<raw::Human>>, what: &str, default: Duration| match value {
            Some(v) => check.duration(v, what, bounds::STOP_AFTER),
            None => Some(default),
        };
        let min = duration(self, &a.min, "adaptive.min", Duration::minutes(A::MIN_MINUTES));
        let max_default = Duration::hours(A::MAX_HOURS).max(min.unwrap_or_default());
        let max = duration(self, &a.max, "adaptive.max", max_default);
        let until_learned =
            duration(self, &a.until_learned, "adaptive.until_learned", Duration::minutes(A::UNTIL_LEARNED_MINUTES));
        let wait = match &a.cold_start_wait {
            Some(v) => self.duration(v, "adaptive.cold_start_wait", bounds::COLD_START_WAIT),
            None => Some(Duration::minutes(A::COLD_START_WAIT_MINUTES)),
        };
        let bounds = match (min, max) {
            (Some(min), Some(max)) if min > max => {
                let pos = a.min.as_ref().or(a.max.as_ref()).map_or_else(Default::default, |d| d.pos);
                self.error(pos, format!("adaptive.min ({}) is above adaptive.max ({})", shown(min), shown(max)));
                None
            }
            (Some(min), Some(max)) => Some((min, max)),
            _ => None,
        };
        if let (Some((min, max)), Some(until)) = (bounds, until_learned)
            && !(min..=max).contains(&until)
        {
            let pos = a.until_learned.as_ref().map_or_else(Default::default, |d| d.pos);
            self.warning(
                pos,
                format!(
                    "adaptive.until_learned is outside min..max ({}..{}): it is kept within them",
                    shown(min),
                    shown(max)
                ),
            );
        }
        let cold_start_cost = match (&a.cold_start_cost, &a.cold_start_wait, &a.waiting_per_hour) {
            (Some(cost), None, None) => self.money(cost, "adaptive.cold_start_cost"),
            (Some(cost), _, _) => {
                self.error(cost.pos, "give `cold_start_cost`, or `cold_start_wait` with `waiting_per_hour`, not both");
                None
            }
            (None, _, per_hour) => {
                let per_hour = match per_hour {
                    Some(p) => self.money(p, "adaptive.waiting_per_hour"),
                    None => Some(Money::from_yuan(A::WAITING_PER_HOUR_YUAN)),
                };
                Some(per_hour?.hourly_for_millis(wait?.num_milliseconds()))
            }
        };
        let (min, max) = bounds?;
        Some(policy::Adaptive {
            cold_start_cost: cold_start_cost?,
            min,
            max,
            until_learned: until_learned?.clamp(min, max),
            timezone,
        })
    }

    fn placeholders(&mut self, template: &Loc<String>) {
        let mut rest = template.value.as_str();
        while let Some(open) = rest.find('{') {
            let Some(close) = rest[open..].find('}') else {
                self.error(template.pos, format!("`{}` has a `{{` without its `}}`", template.value));
                return;
            };
            let name = &rest[open + 1..open + close];
            if !SnapshotTemplate::PLACEHOLDERS.contains(&name) {
                let hint = super::yaml::suggestion(name, &SnapshotTemplate::PLACEHOLDERS);
                self.error(template.pos, format!("unknown placeholder `{{{name}}}`{hint}"));
            }
            rest = &rest[open + close + 1..];
        }
    }

    fn pool(&mut self, p: raw::Pool, policy: &str, zone: Tz) -> Option<policy::Pool> {
        let min = p.min.as_ref().map_or(0, |m| m.value);
        let max = p.max.as_ref().map_or(u32::MAX, |m| m.value);
        if let (Some(lo), Some(hi)) = (&p.min, &p.max)
            && lo.value > hi.value
        {
            self.error(lo.pos, format!("min ({}) is above max ({})", lo.value, hi.value));
        }
        if p.desired.is_none() && p.desired_schedule.is_empty() {
            self.error(p.image.pos, "a pool needs `desired`, `desired_schedule`, or both");
        }
        let desired = p.desired.as_ref().map_or(min, |d| d.value);
        if let Some(d) = &p.desired
            && min <= max
            && (d.value < min || d.value > max)
        {
            self.error(d.pos, format!("desired ({}) is outside min..max ({min}..{max})", d.value));
        }
        let desired_schedule = p
            .desired_schedule
            .iter()
            .filter_map(|edge| {
                if edge.count.value < min || edge.count.value > max {
                    self.error(
                        edge.count.pos,
                        format!("count {} is outside min..max ({min}..{max})", edge.count.value),
                    );
                }
                Some((self.cron(&edge.cron)?, edge.count.value))
            })
            .collect();
        if p.gpu.products.is_empty() {
            self.error(p.gpu.count.pos, "gpu.products must name at least one GPU model");
        }
        if p.gpu.count.value == 0 {
            self.error(p.gpu.count.pos, "gpu.count must be at least 1");
        }
        if p.image.trim().is_empty() {
            self.error(p.image.pos, "the pool needs an image");
        }
        if p.cluster.is_empty() {
            self.error(p.image.pos, "the pool needs a cluster");
        }
        if p.only_during_discount
            && let Some(lo) = p.min.as_ref().filter(|m| m.value > 0)
        {
            self.warning(
                lo.pos,
                format!(
                    "only_during_discount outranks min: outside discount windows the pool runs none, not {}",
                    lo.value
                ),
            );
        }
        let max_price_per_hour = p.max_price_per_hour.as_ref().and_then(|m| self.money(m, "max_price_per_hour"));
        let wait_for_discount =
            p.wait_for_discount.as_ref().and_then(|w| self.duration(w, "wait_for_discount", bounds::WAIT_FOR_DISCOUNT));
        let billing = p.billing;
        if billing.is_prepaid() && p.term.trim().is_empty() {
            self.warning(p.image.pos, "a prepaid pool without `term` buys one unit of its billing type");
        }
        let name_prefix = p.name_prefix.map_or_else(|| policy.to_owned(), |n| n.value);
        Some(policy::Pool {
            clusters: p.cluster.0,
            image: p.image.value,
            desired,
            desired_schedule,
            schedule_timezone: zone,
            min,
            max,
            gpu: policy::GpuSpec {
                products: p.gpu.products.0,
                count: p.gpu.count.value,
                min_memory_gb: p.gpu.min_memory_gb,
            },
            billing,
            term: p.term,
            max_price_per_hour,
            prefer_discount: p.prefer_discount,
            wait_for_discount,
            only_during_discount: p.only_during_discount,
            volume: p.volume.map(|v| VolumeSpec { path: v.path, size_gb: v.size_gb, kind: v.kind }),
            scale_down: p.scale_down,
            name_prefix,
            disk_sku_id: p.disk_sku_id.unwrap_or_else(|| "1".into()),
        })
    }

    /// Names must be unique; an instance can belong to one policy only (the
    /// first that selects it), so policies that overlap are worth a look.
    pub fn across_policies(&mut self, policies: &[(Pos, policy::Policy)]) {
        let mut seen: BTreeMap<&str, Pos> = BTreeMap::new();
        for (pos, p) in policies {
            if let Some(first) = seen.insert(&p.name, *pos) {
                self.error(*pos, format!("policy name `{}` is used twice (first at line {})", p.name, first.line));
            }
        }
        let (pairs, whole) = overlapping(policies);
        for (i, j) in pairs {
            let (a, (pos, b)) = (&policies[i].1, &policies[j]);
            self.warning(
                *pos,
                format!(
                    "policies `{}` and `{}` may select the same instances; each instance belongs to the first that selects it (`{}`)",
                    a.name, b.name, a.name
                ),
            );
        }
        if !whole {
            let pos = policies.first().map_or_else(Pos::default, |(pos, _)| *pos);
            self.warning(pos, format!("more policies may overlap: only the first {OVERLAP_WARNINGS} pairs are named"));
        }
    }
}

/// Overlapping pairs named at most; more are summed up in one line.
const OVERLAP_WARNINGS: usize = 20;
/// Comparisons per policy before the overlap check stops.
const OVERLAP_COMPARISONS_PER_POLICY: usize = 64;

/// Pairs (by index, first policy first) whose selectors may overlap, and
/// whether the search was whole. Only policies whose name globs share a
/// literal prefix can overlap: sorted by prefix, each is compared with those
/// whose prefix starts its own, so many distinct teams cost n log n; the
/// comparisons are bounded besides.
fn overlapping(policies: &[(Pos, policy::Policy)]) -> (BTreeSet<(usize, usize)>, bool) {
    let selectors: Vec<Option<&policy::Selector>> = policies.iter().map(|(_, p)| p.select.as_ref()).collect();
    let mut keys: Vec<(&str, usize)> = Vec::new();
    for (i, select) in selectors.iter().enumerate() {
        match select.map(|s| &s.display_names) {
            Some(names) if !names.is_empty() => keys.extend(names.iter().map(|g| (literal_prefix(g), i))),
            Some(_) => keys.push(("", i)),
            None => {}
        }
    }
    keys.sort_unstable();
    let mut budget = policies.len().saturating_mul(OVERLAP_COMPARISONS_PER_POLICY);
    let mut pairs = BTreeSet::new();
    let mut open: Vec<(&str, usize)> = Vec::new();
    for (key, i) in keys {
        while open.last().is_some_and(|(k, _)| !key.starts_with(k)) {
            open.pop();
        }
        for (_, j) in &open {
            let pair = (i.min(*j), i.max(*j));
            if i == *j || pairs.contains(&pair) {
                continue;
            }
            if budget == 0 || pairs.len() >= OVERLAP_WARNINGS {
                return (pairs, false);
            }
            budget -= 1;
            if let (Some(a), Some(b)) = (selectors[pair.0], selectors[pair.1])
                && may_overlap(a, b)
            {
                pairs.insert(pair);
            }
        }
        open.push((key, i));
    }
    (pairs, true)
}

fn literal_prefix(g: &Glob) -> &str {
    g.as_str().split(['*', '?']).next().unwrap_or("")
}

/// Whether two selectors could both match one instance. Conservative on
/// names: two globs overlap unless their literal prefixes or suffixes differ.
fn may_overlap(a: &policy::Selector, b: &policy::Selector) -> bool {
    let any_common = |x: &[String], y: &[String]| x.is_empty() || y.is_empty() || x.iter().any(|v| y.contains(v));
    let billing = a.billing.is_empty() || b.billing.is_empty() || a.billing.iter().any(|v| b.billing.contains(v));
    let names = a.display_names.is_empty()
        || b.display_names.is_empty()
        || a.display_names.iter().any(|x| b.display_names.iter().any(|y| globs_may_overlap(x, y)));
    any_common(&a.clusters, &b.clusters) && any_common(&a.gpu_products, &b.gpu_products) && billing && names
}

fn globs_may_overlap(a: &Glob, b: &Glob) -> bool {
    let literal_suffix = |g: &Glob| g.as_str().rsplit(['*', '?']).next().unwrap_or("").to_owned();
    let (pa, pb) = (literal_prefix(a), literal_prefix(b));
    let (sa, sb) = (literal_suffix(a), literal_suffix(b));
    (pa.starts_with(pb) || pb.starts_with(pa)) && (sa.ends_with(&sb) || sb.ends_with(&sa))
}

/// The IANA name meant by a city, a country or an offset, as people write
/// zones; else the nearest name by spelling.
fn zone_suggestion(written: &str) -> String {
    const CHINA: &str = "Asia/Shanghai";
    // Places whose zone is not named after them, and the common abbreviations.
    const ALIASES: [(&str, &str); 12] = [
        ("beijing", CHINA),
        ("peking", CHINA),
        ("china", CHINA),
        ("cst", CHINA),
        ("shenzhen", CHINA),
        ("guangzhou", CHINA),
        ("hangzhou", CHINA),
        ("chengdu", CHINA),
        ("wuhan", CHINA),
        ("nanjing", CHINA),
        ("tianjin", CHINA),
        ("xian", CHINA),
    ];
    let key = written.trim().to_lowercase().replace(' ', "_");
    let meant = |name: &str| format!(" (did you mean `{name}`?)");
    if let Some((_, zone)) = ALIASES.iter().find(|(alias, _)| *alias == key) {
        return meant(zone);
    }
    if let Some(offset) = key.strip_prefix("utc").or_else(|| key.strip_prefix("gmt"))
        && let Some(hours) = offset.split(':').next().and_then(|h| h.parse::<i32>().ok())
        && (-12..=14).contains(&hours)
    {
        // POSIX names count the other way: Etc/GMT-8 is eight hours ahead of UTC.
        let fixed = format!("Etc/GMT{:+}", -hours);
        return match hours {
            8 => format!(" (did you mean `{CHINA}`, or `{fixed}` for a fixed offset?)"),
            0 => meant("UTC"),
            _ => meant(&fixed),
        };
    }
    let city = chrono_tz::TZ_VARIANTS
        .iter()
        .map(|tz| tz.name())
        .find(|name| name.rsplit('/').next().is_some_and(|last| last.to_lowercase() == key));
    if let Some(name) = city {
        return meant(name);
    }
    let known: Vec<&str> = chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name()).collect();
    super::yaml::suggestion(written, &known)
}

/// A duration as a policy file writes it: `5m`, `4h`.
/// In the largest unit it is a whole number of (`62d`, not humantime's
/// `2months 1day 2h 52m 48s`).
pub(super) fn shown(d: Duration) -> String {
    let ms = d.num_milliseconds();
    let units =
        [(YEAR.num_milliseconds(), "y"), (86_400_000, "d"), (3_600_000, "h"), (60_000, "m"), (1000, "s"), (1, "ms")];
    match units.iter().find(|(size, _)| ms > 0 && ms % size == 0) {
        Some((size, unit)) => format!("{}{unit}", ms / size),
        None => humantime::format_duration(d.to_std().unwrap_or_default()).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zone_written_as_people_say_it_is_named() {
        for (written, meant) in [
            ("Beijing", "`Asia/Shanghai`"),
            ("CST", "`Asia/Shanghai`"),
            ("UTC+8", "`Asia/Shanghai`, or `Etc/GMT-8`"),
            ("GMT-5", "`Etc/GMT+5`"),
            ("Tokyo", "`Asia/Tokyo`"),
            ("new york", "`America/New_York`"),
            ("Europe/Berln", "`Europe/Berlin`"),
        ] {
            assert!(zone_suggestion(written).contains(meant), "{written}: {}", zone_suggestion(written));
            assert!(written.parse::<Tz>().is_err(), "{written} is a zone already");
        }
        assert_eq!(zone_suggestion("banana-republic-of-nowhere"), "");
    }

    #[test]
    fn glob_overlap_is_conservative() {
        let g = Glob::new;
        assert!(globs_may_overlap(&g("nb-*"), &g("nb-keep-*")));
        assert!(globs_may_overlap(&g("*"), &g("train-*")));
        assert!(!globs_may_overlap(&g("nb-*"), &g("train-*")));
        assert!(!globs_may_overlap(&g("*-gpu"), &g("*-cpu")));
    }

    fn policies(globs: &[&str]) -> Vec<(Pos, policy::Policy)> {
        let text: String = globs
            .iter()
            .enumerate()
            .map(|(k, g)| {
                format!("  - name: p{k}\n    select: {{ display_name: \"{g}\" }}\n    idle: {{ stop_after: 1h }}\n")
            })
            .collect();
        let (config, report) = crate::config::load::load_str("t", &format!("policies:\n{text}"));
        config.unwrap_or_else(|| panic!("{report}")).policies.into_iter().map(|p| (Pos::default(), p)).collect()
    }

    #[test]
    fn the_overlap_search_finds_what_comparing_every_pair_finds() {
        let globs = ["nb-*", "train-*", "nb-keep-*", "*", "team1-*", "team2-*", "*-gpu", "team1-a*"];
        let policies = policies(&globs);
        let mut every = BTreeSet::new();
        for i in 0..policies.len() {
            for j in i + 1..policies.len() {
                if may_overlap(policies[i].1.select.as_ref().unwrap(), policies[j].1.select.as_ref().unwrap()) {
                    every.insert((i, j));
                }
            }
        }
        assert_eq!(overlapping(&policies), (every, true));
    }

    #[test]
    fn the_overlap_search_names_a_few_pairs_and_says_there_are_more() {
        let policies = policies(&["*"; 30]);
        let (pairs, whole) = overlapping(&policies);
        assert_eq!((pairs.len(), whole), (OVERLAP_WARNINGS, false));
    }
}
