//! The policy file as written: every key users may set, with positions where
//! a check of meaning must point at the line. `check.rs` turns this into the
//! resolved types of `policy.rs`.

use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;

use super::yaml::{List, Loc};
use crate::cloud::BillingType;
use crate::cloud::matrixdc::ClientSettings;
use crate::secret::SecretSource;

/// A duration written like `30m`, `2h`, `7d`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Human(pub Duration);

impl JsonSchema for Human {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": "string", "pattern": "^\\s*([0-9]+\\s*[a-zA-Zµ]+\\s*)+$", "description": "A duration: 90s, 30m, 2h, 7d, 1h 30m" })
    }
}

impl<'de> Deserialize<'de> for Human {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(text.trim()).map(Human).map_err(|_| {
            serde::de::Error::custom(format!("`{text}` is not a duration: write it like 90s, 30m, 2h or 7d"))
        })
    }
}

#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
#[serde(default)]
pub struct Settings {
    pub api: Loc<ClientSettings>,
    /// The default zone for schedules and budgets.
    pub timezone: Option<Loc<String>>,
    pub limits: Limits,
    /// A budget over every policy together.
    pub budget: Option<Budget>,
    /// How long a SKU that failed a create for capacity is skipped.
    pub capacity_backoff: Option<Loc<Human>>,
    /// How late the platform may list a new instance.
    pub listing_delay: Option<Loc<Human>>,
    pub prometheus: Option<PrometheusSettings>,
    pub ledger: Ledger,
    pub ha: Ha,
    /// How often the daemon runs a cycle.
    pub interval: Option<Loc<Human>>,
    /// How often regions, SKUs and prices are read again.
    pub sku_interval: Option<Loc<Human>>,
    /// The longest one cycle runs; past it, no further action until the next.
    pub cycle_deadline: Option<Loc<Human>>,
    /// Where `/metrics`, the health checks and the admin API listen.
    pub listen: Option<Loc<String>>,
    /// The daemon's address as people reach it, to form snooze links: `https://autoscaler.example.com`.
    pub public_url: Option<Loc<String>>,
    pub notify: Notify,
    /// What a new or edited policy may newly stop or delete unconfirmed.
    pub change_guard: ChangeGuard,
    /// Settings keys decoded on their own (secrets), skipped here.
    /// The admin API's bearer token (snoozes, confirm); without it those endpoints answer 401.
    #[serde(default)]
    #[schemars(with = "Option<SecretSource>")]
    pub admin_token: Option<serde::de::IgnoredAny>,
    /// The MatrixDC API token.
    #[serde(default)]
    #[schemars(with = "Option<SecretSource>")]
    pub token: Option<serde::de::IgnoredAny>,
}

#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
#[serde(default)]
pub struct Ledger {
    /// The database URL: `postgres://…` or `sqlite://PATH`; best from `{env: VAR}`
    /// or `{file: PATH}` when it holds a password. Any text is accepted, so no
    /// error message ever repeats it.
    pub url: Option<SecretSource>,
    pub migrate_on_start: Option<bool>,
    pub retention: Retention,
}

/// Replicas on one PostgreSQL ledger: one leader acts, the others stand by.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
#[serde(default)]
pub struct Ha {
    /// Elect a leader (default: on when the ledger is PostgreSQL; a SQLite ledger's daemon runs alone).
    pub enabled: Option<Loc<bool>>,
    /// This replica's name in the ledger, logs and status (default: host name and process id).
    pub name: Option<Loc<String>>,
    /// A standby observes the cloud every this many intervals (default 5).
    pub observe_every: Option<Loc<u32>>,
    /// How often a standby tries to take the lead (default 5s).
    pub try_every: Option<Loc<Human>>,
}

#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
#[serde(default)]
pub struct Retention {
    pub price_samples: Option<Loc<Human>>,
    pub usage_segments: Option<Loc<Human>>,
}

#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ChangeGuard {
    pub share: Option<Loc<Share>>,
    pub at_least: Option<Loc<u32>>,
}

#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
#[serde(default)]
pub struct Limits {
    pub actions_per_cycle: Loc<u32>,
    pub actions_per_hour: Loc<u32>,
    pub deletes_per_hour: Loc<u32>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { actions_per_cycle: Loc::new(10), actions_per_hour: Loc::new(60), deletes_per_hour: Loc::new(10) }
    }
}

#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct PrometheusSettings {
    pub url: Loc<String>,
}

/// One policy; `load.rs` decodes each section on its own so that one bad
/// section does not hide the problems of the others.
#[derive(Clone, Debug)]
pub struct Policy {
    pub name: Loc<String>,
    pub select: Option<Select>,
    pub protect: Option<Protect>,
    pub idle: Option<Idle>,
    pub schedule: Option<Schedule>,
    pub pool: Option<Pool>,
    pub budget: Option<Budget>,
    /// At most this share of the policy's instances disrupted at once: `50%` or `0.5`.
    pub max_disrupted: Option<Loc<Share>>,
    pub due_stops: Option<DueStops>,
    pub notify: Option<PolicyNotify>,
}

impl Policy {
    pub const KEYS: [&str; 10] =
        ["name", "select", "protect", "idle", "schedule", "pool", "budget", "max_disrupted", "due_stops", "notify"];
}

/// Decoded section by section (see [`Policy`]), so its schema is spelled out.
impl JsonSchema for Policy {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Policy".into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let properties = serde_json::json!({
            "name": { "type": "string", "description": "Unique; in metrics, the ledger and logs" },
            "select": generator.subschema_for::<Select>(),
            "protect": generator.subschema_for::<Protect>(),
            "idle": generator.subschema_for::<Idle>(),
            "schedule": generator.subschema_for::<Schedule>(),
            "pool": generator.subschema_for::<Pool>(),
            "budget": generator.subschema_for::<Budget>(),
            "max_disrupted": generator.subschema_for::<Share>(),
            "due_stops": generator.subschema_for::<DueStops>(),
            "notify": generator.subschema_for::<PolicyNotify>(),
        });
        debug_assert!(Policy::KEYS.iter().all(|k| properties.get(k).is_some()));
        schemars::json_schema!({
            "type": "object",
            "description": "One policy: the instances it selects (or the pool it keeps) and the rules it applies",
            "properties": properties,
            "required": ["name"],
            "additionalProperties": false,
        })
    }
}

/// Stops that come due at a moment (a schedule edge, `max_runtime`, a
/// budget, a pool shrinking): they wait for idle unless named in `hard`.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
#[serde(default)]
pub struct DueStops {
    pub when_idle_for: Option<Loc<Human>>,
    pub hard: Vec<Loc<String>>,
}

/// `50%` or `0.5`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Share(pub f64);

impl JsonSchema for Share {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Share".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "anyOf": [{ "type": "string", "pattern": "^\\s*[0-9.]+\\s*%\\s*$" }, { "type": "number", "minimum": 0, "maximum": 1 }], "description": "A share: 50% or 0.5" })
    }
}

impl<'de> Deserialize<'de> for Share {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let trimmed = text.trim();
        let share = match trimmed.strip_suffix('%') {
            Some(percent) => percent.trim().parse::<f64>().map(|p| p / 100.0),
            None => trimmed.parse::<f64>(),
        };
        share.map(Share).map_err(|_| serde::de::Error::custom(format!("`{text}` is not a share: write 50% or 0.5")))
    }
}

#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
#[serde(default)]
pub struct Select {
    pub cluster: Option<List<String>>,
    pub display_name: Option<List<Loc<String>>>,
    pub gpu_product: Option<List<String>>,
    pub billing: Option<List<BillingType>>,
}

#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
#[serde(default)]
pub struct Protect {
    pub display_name: List<Loc<String>>,
}

#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct Idle {
    #[serde(default = "default_signals")]
    pub signals: Vec<Signal>,
    pub stop_after: Loc<StopAfter>,
    /// How `stop_after: adaptive` learns; its defaults otherwise.
    #[serde(default)]
    pub adaptive: Option<Loc<Adaptive>>,
    #[serde(default)]
    pub prewarm: Option<Prewarm>,
    #[serde(default)]
    pub snapshot: Option<SnapshotTemplate>,
    #[serde(default)]
    pub delete_after_stopped: Option<Loc<Human>>,
    /// Delete even when no snapshot is known to have succeeded.
    #[serde(default)]
    pub delete_without_snapshot: bool,
    /// Stop prepaid (monthly, weekly, daily) instances for idleness too.
    #[serde(default)]
    pub stop_prepaid: bool,
    /// Power off whatever runs longer than this, idle or not.
    #[serde(default)]
    pub max_runtime: Option<Loc<Human>>,
    #[serde(default)]
    pub grace_period: Option<Loc<Human>>,
}

/// A fixed idle timer (`30m`), or `adaptive`: learned per instance.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum StopAfter {
    After(Human),
    Adaptive,
}

impl JsonSchema for StopAfter {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "StopAfter".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "anyOf": [{ "const": "adaptive" }, { "type": "string", "pattern": "^\\s*([0-9]+\\s*[a-zA-Zµ]+\\s*)+$" }], "description": "A fixed idle timer (30m, 2h), or `adaptive`: learned per instance from its own gaps" })
    }
}

impl<'de> Deserialize<'de> for StopAfter {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        if text.trim() == "adaptive" {
            return Ok(StopAfter::Adaptive);
        }
        humantime::parse_duration(text.trim()).map(|d| StopAfter::After(Human(d))).map_err(|_| {
            serde::de::Error::custom(format!(
                "`{text}` is not a duration nor `adaptive`: write it like 30m, 2h, or adaptive"
            ))
        })
    }
}

/// What a cold start costs and the bounds of a learned keep-alive.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
#[serde(default)]
pub struct Adaptive {
    /// CNY per cold start, instead of `cold_start_wait` × `waiting_per_hour`.
    pub cold_start_cost: Option<Loc<f64>>,
    pub cold_start_wait: Option<Loc<Human>>,
    pub waiting_per_hour: Option<Loc<f64>>,
    pub min: Option<Loc<Human>>,
    pub max: Option<Loc<Human>>,
    pub until_learned: Option<Loc<Human>>,
}

/// `prewarm: true`, or `prewarm: { lead: 10m }`.
#[derive(Clone, Debug, Default)]
pub struct Prewarm {
    pub enabled: bool,
    pub lead: Option<Loc<Human>>,
}

impl JsonSchema for Prewarm {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Prewarm".into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let lead = generator.subschema_for::<Human>();
        schemars::json_schema!({
            "description": "Start an instance shortly before its owner's habit says they come back: true, or {lead: 10m}",
            "anyOf": [
                { "type": "boolean" },
                { "type": "object", "properties": { "lead": lead }, "additionalProperties": false },
            ],
        })
    }
}

impl<'de> Deserialize<'de> for Prewarm {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Settings {
            #[serde(default)]
            lead: Option<Loc<Human>>,
        }
        struct Either;
        impl<'de> serde::de::Visitor<'de> for Either {
            type Value = Prewarm;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("true, false, or a mapping with `lead`")
            }
            fn visit_bool<E>(self, enabled: bool) -> Result<Prewarm, E> {
                Ok(Prewarm { enabled, lead: None })
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(self, map: M) -> Result<Prewarm, M::Error> {
                let settings = Settings::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(Prewarm { enabled: true, lead: settings.lead })
            }
        }
        d.deserialize_any(Either)
    }
}

fn default_signals() -> Vec<Signal> {
    vec![Signal::Jupyter]
}

#[derive(Clone, Debug, PartialEq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Signal {
    Jupyter,
    Heartbeat,
    Prometheus(PrometheusSignal),
}

#[derive(Clone, Debug, PartialEq, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct PrometheusSignal {
    /// PromQL with `{name}` (instance name) or `{display_name}` substituted.
    pub query: Loc<String>,
    /// Active when the query's value is above this.
    #[serde(default)]
    pub threshold: f64,
}

#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct SnapshotTemplate {
    #[serde(default = "default_image_template")]
    pub image: Loc<String>,
    #[serde(default = "default_tag_template")]
    pub tag: Loc<String>,
}

fn default_image_template() -> Loc<String> {
    Loc::new("{display_name}".into())
}

fn default_tag_template() -> Loc<String> {
    Loc::new("{date}-{time}".into())
}

#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
#[serde(default)]
pub struct Schedule {
    pub timezone: Option<Loc<String>>,
    pub start: Option<Loc<String>>,
    pub stop: Option<Loc<String>>,
    /// The schedule wins every cycle, over manual changes.
    pub enforce: bool,
}

#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct Pool {
    /// Clusters in order of preference: a later one is used when an earlier has no capacity.
    pub cluster: List<String>,
    pub image: Loc<String>,
    #[serde(default)]
    pub desired: Option<Loc<u32>>,
    /// Desired counts from cron edges, in the schedule's zone.
    #[serde(default)]
    pub desired_schedule: Vec<DesiredEdge>,
    #[serde(default)]
    pub min: Option<Loc<u32>>,
    #[serde(default)]
    pub max: Option<Loc<u32>>,
    pub gpu: Gpu,
    #[serde(default = "default_billing")]
    pub billing: BillingType,
    /// `CostTime` for prepaid pools, e.g. `7D`.
    #[serde(default)]
    pub term: String,
    /// The effective price cap per instance, in CNY per hour.
    #[serde(default)]
    pub max_price_per_hour: Option<Loc<f64>>,
    #[serde(default)]
    pub prefer_discount: bool,
    #[serde(default)]
    pub wait_for_discount: Option<Loc<Human>>,
    #[serde(default)]
    pub only_during_discount: bool,
    #[serde(default)]
    pub volume: Option<Volume>,
    #[serde(default)]
    pub scale_down: ScaleDown,
    /// Created instances are named `{name_prefix}-{slot}`; the policy name by default.
    #[serde(default)]
    pub name_prefix: Option<Loc<String>>,
    #[serde(default)]
    pub disk_sku_id: Option<String>,
}

fn default_billing() -> BillingType {
    BillingType::PayAsYouGo
}

#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct DesiredEdge {
    pub cron: Loc<String>,
    pub count: Loc<u32>,
}

#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct Gpu {
    pub products: List<String>,
    #[serde(default = "one")]
    pub count: Loc<u32>,
    #[serde(default)]
    pub min_memory_gb: Option<u32>,
}

fn one() -> Loc<u32> {
    Loc::new(1)
}

/// A data volume to mount, in the policy file and in fleet files.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Volume {
    #[serde(default = "default_volume_path")]
    pub path: String,
    pub size_gb: u32,
    #[serde(default = "default_volume_type", rename = "type")]
    pub kind: String,
}

fn default_volume_path() -> String {
    "/root/data".into()
}

fn default_volume_type() -> String {
    "shared-filesystem".into()
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ScaleDown {
    /// Power off surplus instances (their data stays until the platform purges it).
    #[default]
    Stop,
    /// Delete surplus instances.
    Delete,
}

#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct Budget {
    #[serde(default)]
    pub daily: Option<Loc<f64>>,
    #[serde(default)]
    pub monthly: Option<Loc<f64>>,
    #[serde(default)]
    pub timezone: Option<Loc<String>>,
    #[serde(default)]
    pub when_exceeded: WhenExceeded,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum WhenExceeded {
    /// Power off the policy's running pay-as-you-go instances.
    Stop,
    /// Only report it (and create nothing more).
    #[default]
    Alert,
}

/// Where notices go: `settings.notify`.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
#[serde(default)]
pub struct Notify {
    pub channels: Vec<Channel>,
    /// One digest, or a list (one per team, each with its `policies`).
    pub digest: List<Loc<Digest>>,
}

/// A summary of spend, savings and actions, sent on a schedule.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct Digest {
    /// The channels that receive it.
    pub channels: Vec<Loc<String>>,
    /// When the daily digest goes out, covering the day before: a cron expression (default `0 9 * * *`), or `off`.
    #[serde(default)]
    pub daily: Option<Loc<String>>,
    /// When a weekly digest goes out, covering the week before: a cron expression such as `0 9 * * 1` (none by default).
    #[serde(default)]
    pub weekly: Option<Loc<String>>,
    /// The zone its times are read in (default: `settings.timezone`).
    #[serde(default)]
    pub timezone: Option<Loc<String>>,
    /// The policies it covers, by name or glob (default: all, and the global budget).
    #[serde(default)]
    pub policies: List<Loc<String>>,
}

/// One channel; its `url` and `secret` are decoded on their own (secrets).
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct Channel {
    /// What policies call it.
    pub name: Loc<String>,
    pub kind: Loc<crate::config::notify::ChannelKind>,
    /// The webhook URL (Slack, Feishu, DingTalk and WeCom put their key in it), or for `email` the server as
    /// `smtp://user:password@host:587` (STARTTLS) or `smtps://…:465`: `{env:}`, `{file:}` or `{credential:}`.
    #[schemars(with = "SecretSource")]
    pub url: serde::de::IgnoredAny,
    /// The signing secret: required for `webhook`, and for a Feishu or DingTalk bot with signing on.
    #[serde(default)]
    #[schemars(with = "Option<SecretSource>")]
    pub secret: Option<serde::de::IgnoredAny>,
    /// Messages a minute at most (the platform's limit by default).
    #[serde(default)]
    pub per_minute: Option<Loc<u32>>,
    /// `email`: the sender, as `Name <address>` or an address.
    #[serde(default)]
    pub from: Option<Loc<String>>,
    /// `email`: the recipients.
    #[serde(default)]
    pub to: Vec<Loc<String>>,
}

/// Who hears of a policy's actions, and how long before.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct PolicyNotify {
    /// A channel of `settings.notify.channels`.
    pub channel: Loc<String>,
    #[serde(default)]
    pub warn_before: Option<Loc<WarnBefore>>,
    /// Instances whose notices go elsewhere or mention someone, first match wins.
    #[serde(default)]
    pub owners: Vec<Owner>,
    /// The longest snooze a link may ask for (default 3d).
    #[serde(default)]
    pub snooze_max: Option<Loc<Human>>,
    /// A warning's headline in your words, with placeholders such as `{display_name}` and `{at}` (see the README).
    #[serde(default)]
    pub headline: Option<Loc<String>>,
}

/// `warn_before: 10m` for every action, or per action:
/// `{ idle: 10m, schedule: 30m, max_runtime: 30m, budget: 10m, scale_down: 10m, delete: 1d }`.
#[derive(Clone, Debug, Default)]
pub struct WarnBefore {
    pub all: Option<Human>,
    pub each: WarnEach,
}

#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct WarnEach {
    pub idle: Option<Loc<Human>>,
    pub schedule: Option<Loc<Human>>,
    pub max_runtime: Option<Loc<Human>>,
    pub budget: Option<Loc<Human>>,
    pub scale_down: Option<Loc<Human>>,
    pub delete: Option<Loc<Human>>,
}

impl JsonSchema for WarnBefore {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "WarnBefore".into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let (all, each) = (generator.subschema_for::<Human>(), generator.subschema_for::<WarnEach>());
        schemars::json_schema!({
            "description": "How long before a stop or delete its warning goes out: one duration, or one per action",
            "anyOf": [all, each],
        })
    }
}

impl<'de> Deserialize<'de> for WarnBefore {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Either;
        impl<'de> serde::de::Visitor<'de> for Either {
            type Value = WarnBefore;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a duration like 10m, or a mapping of actions (idle, schedule, max_runtime, budget, scale_down, delete) to durations")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<WarnBefore, E> {
                let all = Human::deserialize(serde::de::value::StrDeserializer::<E>::new(text))?;
                Ok(WarnBefore { all: Some(all), each: WarnEach::default() })
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(self, map: M) -> Result<WarnBefore, M::Error> {
                let each = WarnEach::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(WarnBefore { all: None, each })
            }
        }
        const FIELDS: &[&str] = &["idle", "schedule", "max_runtime", "budget", "scale_down", "delete"];
        d.deserialize_struct(super::yaml::OR_SCALAR, FIELDS, Either)
    }
}

/// The owner of the instances a display-name pattern matches.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct Owner {
    pub display_name: Loc<String>,
    /// Their channel instead of the policy's.
    #[serde(default)]
    pub channel: Option<Loc<String>>,
    /// Put in the message so the platform notifies them: `<@U024BE7LH>` on Slack, a user id on Feishu,
    /// a phone number on DingTalk, a user id on WeCom.
    #[serde(default)]
    pub mention: Option<Loc<String>>,
}
