//! Table-driven planner scenarios: each file in `tests/scenarios/` is an
//! observed state, a policy file and a moment, with the actions and notes
//! the planner must produce. They double as worked examples for users.

use std::collections::BTreeMap;

use chrono::{DateTime, FixedOffset};
use mdc_autoscaler::cloud::{BillingType, Discount, Hardware, Instance, InstanceCost, Resources, Sku, VolumeMount};
use mdc_autoscaler::config::load::load_str;
use mdc_autoscaler::config::policy::Config;
use mdc_autoscaler::money::{Money, Ratio};
use mdc_autoscaler::plan::habits::{Habits, Used};
use mdc_autoscaler::plan::{self, Observed, ObservedInstance, Plan, Reading, SnapshotState, SpendSoFar};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// What the scenario shows, in a sentence.
    pub about: String,
    pub now: DateTime<FixedOffset>,
    /// The policy file, as a user writes it.
    pub policy: String,
    #[serde(default)]
    pub skus: Vec<ScenarioSku>,
    #[serde(default)]
    pub instances: Vec<ScenarioInstance>,
    /// Spend so far per policy name (`global` for the global budget); absent
    /// means zero, `unknown: true` means the ledger could not be read.
    #[serde(default)]
    pub spend: BTreeMap<String, ScenarioSpend>,
    #[serde(default)]
    pub spend_unknown: bool,
    #[serde(default)]
    pub recent_actions: Vec<DateTime<FixedOffset>>,
    /// Those of `recent_actions` that were deletes.
    #[serde(default)]
    pub recent_deletes: Vec<DateTime<FixedOffset>>,
    #[serde(default)]
    pub capacity_failures: BTreeMap<String, DateTime<FixedOffset>>,
    /// Creates sent whose instance is not listed yet.
    #[serde(default)]
    pub pending_creates: Vec<ScenarioPending>,
    /// Warnings queued before now (`notify.warn_before`).
    #[serde(default)]
    pub warned: Vec<ScenarioWarned>,
    pub expect: Expect,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioWarned {
    /// The display name.
    pub name: String,
    pub action: String,
    pub occasion: DateTime<FixedOffset>,
    pub queued_at: DateTime<FixedOffset>,
    #[serde(default)]
    pub delivered_at: Option<DateTime<FixedOffset>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioPending {
    pub name: String,
    #[serde(default = "cluster")]
    pub cluster: String,
    pub sent_at: DateTime<FixedOffset>,
    pub price: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioSku {
    pub id: String,
    pub product: String,
    #[serde(default = "one")]
    pub gpus: u32,
    #[serde(default = "memory")]
    pub memory_gb: u32,
    pub price: f64,
    #[serde(default = "free")]
    pub free: u32,
    #[serde(default = "cluster")]
    pub cluster: String,
    #[serde(default)]
    pub prepaid: Option<String>,
    #[serde(default)]
    pub discount: Option<ScenarioDiscount>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioDiscount {
    pub ratio: f64,
    pub start: DateTime<FixedOffset>,
    pub end: DateTime<FixedOffset>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioInstance {
    pub name: String,
    pub status: String,
    pub sku: String,
    #[serde(default = "cluster")]
    pub cluster: String,
    /// `monthly`, `weekly`, `daily`; pay-as-you-go when absent.
    #[serde(default)]
    pub prepaid: Option<String>,
    /// Per signal: `active`, `idle since <RFC 3339>`, or `unreadable: <why>`.
    #[serde(default)]
    pub signals: BTreeMap<String, String>,
    #[serde(default)]
    pub running_since: Option<DateTime<FixedOffset>>,
    #[serde(default)]
    pub stopped_since: Option<DateTime<FixedOffset>>,
    /// `succeeded` or `failed`.
    #[serde(default)]
    pub snapshot: Option<String>,
    #[serde(default)]
    pub snoozed_until: Option<DateTime<FixedOffset>>,
    #[serde(default)]
    pub schedule_mark: Option<DateTime<FixedOffset>>,
    #[serde(default = "data_gb")]
    pub data_gb: u32,
    /// Past use to learn from, for `stop_after: adaptive`.
    #[serde(default)]
    pub history: Option<History>,
}

/// Use on each of the `days` days before `now` that are `on` (weekdays,
/// weekends, every day): the day's spans (`09:00-12:10 13:00-18:00`, in
/// Asia/Shanghai), one pattern a day in turn.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct History {
    pub days: u32,
    #[serde(default = "weekdays")]
    pub on: String,
    pub patterns: Vec<String>,
}

fn weekdays() -> String {
    "weekdays".into()
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ScenarioSpend {
    #[serde(default)]
    pub today: f64,
    #[serde(default)]
    pub this_month: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// Exactly these actions, in order: `<kind> <display name>: <part of the reason>`
    /// (`<kind> <display name> unannounced: …` for a stop whose warning was not delivered).
    #[serde(default)]
    pub actions: Vec<String>,
    /// Notes that must appear: `<display name or policy>: <part of the text>`.
    #[serde(default)]
    pub notes: Vec<String>,
    /// What the adaptive rules learned: `<display name>: <part of the text>`.
    #[serde(default)]
    pub learned: Vec<String>,
    /// Schedule marks to record: display names.
    #[serde(default)]
    pub marks: Vec<String>,
    /// Creates must use these SKU ids, in order.
    #[serde(default)]
    pub create_skus: Vec<String>,
    #[serde(default)]
    pub next_check: Option<DateTime<FixedOffset>>,
    /// Exactly these warnings to send, in any order: `<action> <display name> <act_at>`.
    #[serde(default)]
    pub warnings: Vec<String>,
}

fn one() -> u32 {
    1
}
fn memory() -> u32 {
    24
}
fn free() -> u32 {
    8
}
fn cluster() -> String {
    "host-cluster".into()
}
fn data_gb() -> u32 {
    50
}

fn billing(prepaid: &Option<String>) -> BillingType {
    match prepaid.as_deref() {
        None => BillingType::PayAsYouGo,
        Some("monthly") => BillingType::Monthly,
        Some("weekly") => BillingType::Weekly,
        Some("daily") => BillingType::Daily,
        Some(other) => panic!("unknown billing {other}"),
    }
}

pub fn observed(s: &Scenario) -> Observed {
    let skus: Vec<Sku> = s
        .skus
        .iter()
        .map(|k| Sku {
            id: k.id.clone(),
            name: format!("{} x{}", k.product, k.gpus),
            region_id: format!("region-of-{}", k.cluster),
            region_name: String::new(),
            cluster: k.cluster.clone(),
            hardware: Hardware {
                gpu_product: k.product.clone(),
                gpu_series: k.product.clone(),
                gpu_resource_key: format!("nvidia.com/gpu-{}", k.product.to_lowercase()),
                gpu_count: k.gpus,
                gpu_memory_gb: k.memory_gb,
                cpu_cores: 16,
                cpu_arch: "x86-64".into(),
                cpu_series: String::new(),
                cpu_vendor: String::new(),
                memory_gb: 96,
                system_storage_gb: 30,
                data_storage_gb: 50,
            },
            billing_type: billing(&k.prepaid),
            price_per_hour: Money::from_yuan_f64(k.price).unwrap(),
            discount: k.discount.as_ref().map(|d| Discount {
                id: "d".into(),
                ratio: Ratio::from_f64(d.ratio).unwrap(),
                start: d.start,
                end: d.end,
            }),
            free_gpus: k.free,
        })
        .collect();
    let instances = s
        .instances
        .iter()
        .enumerate()
        .map(|(n, i)| {
            let sku =
                skus.iter().find(|k| k.id == i.sku).unwrap_or_else(|| panic!("{}: unknown sku {}", i.name, i.sku));
            let instance = Instance {
                name: format!("instance-{n:08x}"),
                display_name: i.name.clone(),
                namespace: "ns".into(),
                cluster: i.cluster.clone(),
                uid: format!("uid-{n}"),
                description: String::new(),
                annotations: BTreeMap::new(),
                image: "img".into(),
                replicas: 1,
                resources: Resources {
                    cpu: "16".into(),
                    memory: "96Gi".into(),
                    gpu_count: sku.hardware.gpu_count,
                    gpu_type: sku.hardware.gpu_product.clone(),
                },
                volume_mounts: vec![VolumeMount {
                    path: "/root/data".into(),
                    kind: "shared-filesystem".into(),
                    size_gb: i.data_gb,
                    pvc_name: String::new(),
                    display_name: String::new(),
                    filesystem_type: "data".into(),
                }],
                created_at: None,
                updated_at: None,
                scheduled_stop_at: None,
                status: mdc_autoscaler::cloud::StatusMap::default().parse(&i.status),
                cost: InstanceCost {
                    billing_type: billing(&i.prepaid),
                    term: String::new(),
                    discount_id: String::new(),
                    sku_id: sku.id.clone(),
                    disk_sku_id: "1".into(),
                    coupon_id: String::new(),
                },
                servers: None,
                pods: vec![],
            };
            let signals = i
                .signals
                .iter()
                .map(|(signal, text)| {
                    let reading = if text == "active" {
                        Reading::Active
                    } else if let Some(at) = text.strip_prefix("idle since ") {
                        Reading::IdleSince(DateTime::parse_from_rfc3339(at).unwrap().to_utc())
                    } else if let Some(why) = text.strip_prefix("unreadable: ") {
                        Reading::Unreadable(why.into())
                    } else {
                        panic!("{}: bad reading {text:?}", i.name)
                    };
                    (signal.clone(), reading)
                })
                .collect();
            let at = s.now.to_utc();
            ObservedInstance {
                instance,
                signals,
                running_since: i.running_since.map(|t| t.to_utc()),
                stopped_since: i.stopped_since.map(|t| t.to_utc()),
                snapshot: match i.snapshot.as_deref() {
                    None => SnapshotState::None,
                    Some("succeeded") => SnapshotState::Succeeded { image: i.name.clone(), tag: "saved".into(), at },
                    Some("failed") => SnapshotState::Failed { at },
                    Some(other) => panic!("bad snapshot {other}"),
                },
            }
        })
        .collect::<Vec<ObservedInstance>>();
    let by_display = |d: &str| instances.iter().find(|o| o.instance.display_name == d).unwrap().instance.name.clone();
    let money = |y: f64| Money::from_yuan_f64(y).unwrap();
    Observed {
        regions: vec![],
        skus,
        spend: (!s.spend_unknown).then(|| {
            s.spend
                .iter()
                .map(|(k, v)| (k.clone(), SpendSoFar { today: money(v.today), this_month: money(v.this_month) }))
                .collect()
        }),
        recent_actions: s.recent_actions.iter().map(|t| t.to_utc()).collect(),
        recent_deletes: s.recent_deletes.iter().map(|t| t.to_utc()).collect(),
        capacity_failures: s.capacity_failures.iter().map(|(k, t)| (k.clone(), t.to_utc())).collect(),
        pending_creates: s
            .pending_creates
            .iter()
            .map(|p| plan::PendingCreate {
                display_name: p.name.clone(),
                cluster: p.cluster.clone(),
                sent_at: p.sent_at.to_utc(),
                hourly: money(p.price),
            })
            .collect(),
        snoozes: s
            .instances
            .iter()
            .filter_map(|i| i.snoozed_until.map(|t| (by_display(&i.name), t.to_utc())))
            .collect(),
        schedule_marks: s
            .instances
            .iter()
            .filter_map(|i| i.schedule_mark.map(|t| (by_display(&i.name), t.to_utc())))
            .collect(),
        warned: s
            .warned
            .iter()
            .map(|w| {
                let key = plan::WarningKey {
                    instance: by_display(&w.name),
                    action: w.action.clone(),
                    occasion: w.occasion.to_utc(),
                };
                let sent = plan::WarningSent {
                    queued_at: w.queued_at.to_utc(),
                    delivered_at: w.delivered_at.map(|t| t.to_utc()),
                };
                (key, sent)
            })
            .collect(),
        habits: Default::default(),
        instances,
    }
}

pub fn load(path: &std::path::Path) -> Scenario {
    let text = std::fs::read_to_string(path).unwrap();
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn run(s: &Scenario) -> Plan {
    let (config, report) = load_str("policy", &s.policy);
    let config = config.unwrap_or_else(|| panic!("policy invalid:\n{report}"));
    let mut observed = observed(s);
    observed.habits = std::sync::Arc::new(habits(s, &observed, &config));
    plan::plan(&observed, &config, s.now.to_utc())
}

/// What the planner learns from the scenario's histories, as the ledger teaches it.
fn habits(s: &Scenario, observed: &Observed, config: &Config) -> Habits {
    use chrono::{Datelike, NaiveTime, TimeZone};
    let zone = chrono_tz::Asia::Shanghai;
    let today = s.now.with_timezone(&zone).date_naive();
    let mut spans = Vec::new();
    for (i, o) in s.instances.iter().zip(&observed.instances) {
        let Some(history) = &i.history else { continue };
        let policy = config.owner(&o.instance).map(|p| p.name.clone()).unwrap_or_default();
        let days = (1..=history.days).rev().map(|back| today - chrono::Duration::days(i64::from(back)));
        let days = days.filter(|d| match history.on.as_str() {
            "weekdays" => d.weekday().number_from_monday() <= 5,
            "weekends" => d.weekday().number_from_monday() > 5,
            "every day" => true,
            other => panic!("{}: history on {other:?}", i.name),
        });
        for (n, day) in days.enumerate() {
            for span in history.patterns[n % history.patterns.len()].split_whitespace() {
                let (from, to) = span.split_once('-').unwrap_or_else(|| panic!("{}: bad span {span}", i.name));
                let at = |hm: &str| {
                    let time = NaiveTime::parse_from_str(hm, "%H:%M").unwrap();
                    zone.from_local_datetime(&day.and_time(time)).unwrap().to_utc()
                };
                spans.push((o.instance.name.clone(), policy.clone(), at(from), at(to)));
            }
        }
    }
    let used =
        spans.iter().map(|(instance, policy, start, end)| Used { instance, policy, start: *start, end: Some(*end) });
    let zones = config.adaptive_zones();
    Habits::learn(used, &zones, Habits::day_of(s.now.to_utc(), chrono_tz::Asia::Shanghai))
}

fn describe(plan: &Plan) -> String {
    let mut out = String::new();
    for a in &plan.actions {
        out += &format!("  action {} {}: {}\n", a.kind.label(), a.instance.display_name, a.reason);
    }
    for n in &plan.notes {
        out += &format!("  note {}: {}\n", n.instance.as_deref().or(n.policy.as_deref()).unwrap_or("-"), n.text);
    }
    for l in &plan.learned {
        out += &format!("  learned {}: {}\n", l.instance, l.text);
    }
    out
}

#[test]
fn every_scenario_plans_as_expected() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/scenarios");
    let mut paths: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    paths.sort();
    let mut failures = Vec::new();
    for path in &paths {
        let s = load(path);
        let plan = run(&s);
        let got = describe(&plan);
        let mut problems = Vec::new();
        if plan.actions.len() != s.expect.actions.len() {
            problems.push(format!("{} actions, expected {}", plan.actions.len(), s.expect.actions.len()));
        }
        for (want, got) in s.expect.actions.iter().zip(&plan.actions) {
            let (head, reason) = want.split_once(": ").unwrap_or((want, ""));
            let unannounced = if got.unannounced { " unannounced" } else { "" };
            let head_got = format!("{} {}{unannounced}", got.kind.label(), got.instance.display_name);
            if head != head_got || !got.reason.contains(reason) {
                problems.push(format!("expected `{want}`, got `{head_got}: {}`", got.reason));
            }
        }
        for want in &s.expect.learned {
            let (who, text) = want.split_once(": ").unwrap_or(("", want));
            if !plan.learned.iter().any(|l| (who.is_empty() || l.instance == who) && l.text.to_string().contains(text))
            {
                problems.push(format!("missing learned `{want}`"));
            }
        }
        for want in &s.expect.notes {
            let (who, text) = want.split_once(": ").unwrap_or(("", want));
            let found = plan.notes.iter().any(|n| {
                let subject = n.instance.as_deref().or(n.policy.as_deref()).unwrap_or("-");
                (who.is_empty() || subject == who) && n.text.contains(text)
            });
            if !found {
                problems.push(format!("missing note `{want}`"));
            }
        }
        let marks: Vec<String> = plan
            .schedule_marks
            .iter()
            .map(|m| {
                s.instances
                    .iter()
                    .enumerate()
                    .find(|(n, _)| format!("instance-{n:08x}") == m.instance)
                    .unwrap()
                    .1
                    .name
                    .clone()
            })
            .collect();
        if marks != s.expect.marks {
            problems.push(format!("marks {marks:?}, expected {:?}", s.expect.marks));
        }
        let create_skus: Vec<String> = plan
            .actions
            .iter()
            .filter_map(|a| match &a.kind {
                plan::ActionKind::Create { request, .. } => Some(request.sku_id.clone()),
                _ => None,
            })
            .collect();
        if !s.expect.create_skus.is_empty() && create_skus != s.expect.create_skus {
            problems.push(format!("creates on {create_skus:?}, expected {:?}", s.expect.create_skus));
        }
        if let Some(next) = s.expect.next_check
            && plan.next_check != Some(next.to_utc())
        {
            problems.push(format!("next check {:?}, expected {next}", plan.next_check));
        }
        let mut warnings: Vec<String> = plan
            .warnings
            .iter()
            .map(|w| format!("{} {} {}", w.key.action, w.instance.display_name, w.act_at.to_rfc3339()))
            .collect();
        let mut expected: Vec<String> = s
            .expect
            .warnings
            .iter()
            .map(|w| {
                let (head, at) = w.rsplit_once(' ').unwrap_or_else(|| panic!("bad warning {w:?}"));
                format!("{head} {}", DateTime::parse_from_rfc3339(at).unwrap().to_utc().to_rfc3339())
            })
            .collect();
        warnings.sort();
        expected.sort();
        if warnings != expected {
            problems.push(format!("warnings {warnings:?}, expected {expected:?}"));
        }
        if !problems.is_empty() {
            failures.push(format!("{} ({}):\n  {}\n got:\n{got}", path.display(), s.about, problems.join("\n  ")));
        }
    }
    assert!(paths.len() >= 15, "only {} scenarios", paths.len());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
