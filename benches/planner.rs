//! Planner throughput: one plan for a fleet of N instances under 100
//! policies, for growing N. Prints figures; asserts nothing.
//!
//!     cargo bench --bench planner

use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use mdc_autoscaler::cloud::{
    BillingType, Discount, Hardware, Instance, InstanceCost, InstanceStatus, Resources, Sku, VolumeMount,
};
use mdc_autoscaler::config::load::load_str;
use mdc_autoscaler::money::{Money, Ratio};
use mdc_autoscaler::plan::habits::{Habits, Used};
use mdc_autoscaler::plan::{self, Observed, ObservedInstance, Reading, SpendSoFar};

const POLICIES: usize = 100;

/// `warned`: every team warns before idle and schedule stops (and deletes),
/// so each plan also plans ahead by each lead.
fn policy_file(adaptive: bool, warned: bool) -> String {
    let stop_after = if adaptive { "adaptive, prewarm: true" } else { "30m" };
    let mut text = String::from(
        "settings:\n  timezone: Asia/Shanghai\n  limits: { actions_per_cycle: 50, actions_per_hour: 500 }\n",
    );
    if warned {
        text += "  notify: { channels: [{ name: team, kind: slack, url: { env: SLACK_URL } }] }\n";
    }
    text += "policies:\n";
    let notify = if warned { "    notify: { channel: team, warn_before: { idle: 10m, schedule: 15m } }\n" } else { "" };
    for k in 0..POLICIES {
        if k % 10 == 9 {
            text += &format!(
                "  - name: pool-{k}\n    pool: {{ cluster: host-cluster, image: img, desired: 20, gpu: {{ products: [H20, \"4090\"] }}, wait_for_discount: 3h }}\n    budget: {{ daily: 100000 }}\n"
            );
        } else {
            text += &format!(
                "  - name: team-{k}\n    select: {{ display_name: \"team{k}-*\" }}\n    protect: {{ display_name: \"team{k}-keep-*\" }}\n    idle: {{ signals: [jupyter, heartbeat], stop_after: {stop_after}, snapshot: {{}}, delete_after_stopped: 7d, max_runtime: 72h }}\n    schedule: {{ start: \"0 9 * * MON-FRI\", stop: \"0 20 * * *\" }}\n    max_disrupted: 50%\n    budget: {{ daily: 5000 }}\n{notify}"
            );
        }
    }
    text
}

fn sku(id: &str, product: &str, price: f64, now: DateTime<Utc>) -> Sku {
    Sku {
        id: id.into(),
        name: product.into(),
        region_id: "r".into(),
        region_name: "r".into(),
        cluster: "host-cluster".into(),
        hardware: Hardware {
            gpu_product: product.into(),
            gpu_series: product.into(),
            gpu_resource_key: format!("nvidia.com/gpu-{product}"),
            gpu_count: 1,
            gpu_memory_gb: 48,
            cpu_cores: 16,
            cpu_arch: String::new(),
            cpu_series: String::new(),
            cpu_vendor: String::new(),
            memory_gb: 96,
            system_storage_gb: 30,
            data_storage_gb: 50,
        },
        billing_type: BillingType::PayAsYouGo,
        price_per_hour: Money::from_yuan_f64(price).unwrap(),
        discount: Some(Discount {
            id: "d".into(),
            ratio: Ratio::from_f64(0.5).unwrap(),
            start: (now + chrono::Duration::hours(2)).fixed_offset(),
            end: (now + chrono::Duration::hours(10)).fixed_offset(),
        }),
        free_gpus: 10_000,
    }
}

/// `busy_share` of the instances in use; the rest idle for up to 90 minutes.
fn fleet(n: usize, now: DateTime<Utc>, busy_share: f64) -> Observed {
    let statuses =
        [InstanceStatus::Running, InstanceStatus::Running, InstanceStatus::Stopped, InstanceStatus::Starting];
    let instances = (0..n)
        .map(|i| {
            let team = i % POLICIES;
            let display_name =
                if team % 10 == 9 { format!("pool-{team}-{}", i / POLICIES) } else { format!("team{team}-nb-{i}") };
            let instance = Instance {
                name: format!("instance-{i:08x}"),
                display_name,
                namespace: "ns".into(),
                cluster: "host-cluster".into(),
                uid: format!("uid-{i}"),
                description: String::new(),
                annotations: Default::default(),
                image: "img".into(),
                replicas: 1,
                resources: Resources { cpu: "16".into(), memory: "96Gi".into(), gpu_count: 1, gpu_type: "4090".into() },
                volume_mounts: vec![VolumeMount {
                    path: "/root/data".into(),
                    kind: "shared-filesystem".into(),
                    size_gb: 50,
                    pvc_name: String::new(),
                    display_name: String::new(),
                    filesystem_type: "data".into(),
                }],
                created_at: None,
                updated_at: None,
                scheduled_stop_at: None,
                status: statuses[i % statuses.len()].clone(),
                cost: InstanceCost {
                    billing_type: BillingType::PayAsYouGo,
                    term: String::new(),
                    discount_id: String::new(),
                    sku_id: if i % 3 == 0 { "2".into() } else { "66".into() },
                    disk_sku_id: "1".into(),
                    coupon_id: String::new(),
                },
                servers: None,
                pods: vec![],
            };
            let idle_since = now - chrono::Duration::minutes((i % 90) as i64);
            let busy = ((i * 7919) % 1000) as f64 / 1000.0 < busy_share;
            let reading = if busy { Reading::Active } else { Reading::IdleSince(idle_since) };
            ObservedInstance {
                instance,
                signals: [("jupyter".to_owned(), reading.clone()), ("heartbeat".to_owned(), reading)].into(),
                running_since: Some(now - chrono::Duration::hours((i % 70) as i64)),
                stopped_since: Some(now - chrono::Duration::days((i % if busy_share > 0.5 { 7 } else { 10 }) as i64)),
                snapshot: Default::default(),
            }
        })
        .collect();
    // In the steady state every schedule edge has been applied already.
    let steady = busy_share > 0.5;
    let schedule_marks = if steady {
        let edge = Utc.with_ymd_and_hms(2026, 11, 27, 1, 0, 0).unwrap();
        instances_marks(n, edge)
    } else {
        Default::default()
    };
    Observed {
        regions: vec![],
        skus: vec![sku("2", "H20", 10.0, now), sku("66", "4090", 2.5, now)],
        instances,
        spend: Some([(String::new(), SpendSoFar::default())].into()),
        recent_actions: vec![],
        recent_deletes: vec![],
        capacity_failures: Default::default(),
        pending_creates: vec![],
        warned: Default::default(),
        snoozes: Default::default(),
        schedule_marks,
        habits: Default::default(),
    }
}

/// Four weeks of weekday use per instance: in from 09:00 to 10:00, lunch
/// gaps of 40 to 80 minutes, home at 18:00 or so.
fn habits(n: usize, config: &mdc_autoscaler::config::policy::Config, now: DateTime<Utc>) -> Habits {
    use chrono::Datelike;
    let zone = chrono_tz::Asia::Shanghai;
    let mut spans = Vec::new();
    for i in 0..n {
        let name = format!("instance-{i:08x}");
        let policy = format!("team-{}", i % POLICIES);
        for back in 1..=28i64 {
            let day = (now - chrono::Duration::days(back)).with_timezone(&zone).date_naive();
            if day.weekday().number_from_monday() > 5 {
                continue;
            }
            let at = |minute: i64| {
                let midnight = zone.from_local_datetime(&day.and_hms_opt(0, 0, 0).unwrap()).unwrap();
                (midnight + chrono::Duration::minutes(minute)).to_utc()
            };
            let jitter = (i as i64 * 31 + back * 17) % 60;
            let lunch = 720 + jitter / 3;
            spans.push((name.clone(), policy.clone(), at(540 + jitter), at(lunch)));
            spans.push((name.clone(), policy.clone(), at(lunch + 40 + jitter * 2 / 3), at(1080 + jitter / 2)));
        }
    }
    let used =
        spans.iter().map(|(instance, policy, start, end)| Used { instance, policy, start: *start, end: Some(*end) });
    let zones = config.adaptive_zones();
    Habits::learn(used, &zones, Habits::day_of(now, chrono_tz::Asia::Shanghai))
}

fn instances_marks(n: usize, edge: DateTime<Utc>) -> std::collections::BTreeMap<String, DateTime<Utc>> {
    (0..n).map(|i| (format!("instance-{i:08x}"), edge)).collect()
}

/// Reading a policy file of many teams, as `validate` and a reload do: the
/// checks across policies must not grow with the square of their number.
fn validation() {
    println!("\nvalidate: one policy file of N teams' policies (each its own names, some overlapping)");
    println!("{:>8} {:>12}", "policies", "time");
    for n in [1_000, 5_000, 20_000] {
        let mut text = String::from("policies:\n");
        for k in 0..n {
            let glob = if k % 100 == 0 { format!("team{}-*", k + 1) } else { format!("team{k}-*") };
            text += &format!(
                "  - name: team-{k}\n    select: {{ display_name: \"{glob}\" }}\n    idle: {{ stop_after: 30m }}\n"
            );
        }
        let started = Instant::now();
        let (config, report) = load_str("bench", &text);
        assert!(config.is_some(), "{report}");
        println!("{n:>8} {:>12.1?}", started.elapsed());
    }
}

fn main() {
    validation();
    let (fixed, report) = load_str("bench", &policy_file(false, false));
    let fixed = fixed.unwrap_or_else(|| panic!("{report}"));
    let (warned, report) = load_str("bench", &policy_file(false, true));
    let warned = warned.unwrap_or_else(|| panic!("{report}"));
    let (adaptive, report) = load_str("bench", &policy_file(true, false));
    let adaptive = adaptive.unwrap_or_else(|| panic!("{report}"));
    // A Friday afternoon in Shanghai.
    let now = Utc.with_ymd_and_hms(2026, 11, 27, 7, 0, 0).unwrap();
    // Steady state: nearly everything in use, a handful of deadlines passing.
    // Burst: six in seven idle, thousands of stops proposed and cut to the limits.
    // Learned: the burst under `stop_after: adaptive` and `prewarm`, four weeks learned;
    // the first plan of the day works out every keep-alive and pre-warm window, the
    // plans after it find them worked out.
    let cases = [
        ("steady state (99% busy)", 0.99, &fixed, false),
        ("burst (14% busy)", 0.14, &fixed, false),
        ("steady state (99% busy), warn_before (three leads: three plans ahead)", 0.99, &warned, false),
        ("burst (14% busy), warn_before (three leads: three plans ahead)", 0.14, &warned, false),
        ("learned timers and pre-warming, burst (14% busy), first plan of the day", 0.14, &adaptive, true),
        ("learned timers and pre-warming, burst (14% busy), the plans after it", 0.14, &adaptive, false),
    ];
    for (label, busy_share, config, first) in cases {
        let learned = std::ptr::eq(config, &adaptive);
        println!("\nplanner, {label}: one plan, {POLICIES} policies, median of the runs");
        println!("{:>8} {:>12} {:>14} {:>9} {:>7}", "fleet", "median", "per instance", "actions", "notes");
        for n in [1_000, 2_500, 5_000, 10_000, 20_000] {
            let mut observed = fleet(n, now, busy_share);
            if learned {
                observed.habits = std::sync::Arc::new(habits(n, config, now));
            }
            let mut times: Vec<Duration> = Vec::new();
            let mut last = None;
            let runs = if n <= 10_000 { 30 } else { 10 };
            for _ in 0..runs {
                if first {
                    // A copy of the habits has nothing worked out.
                    observed.habits = std::sync::Arc::new((*observed.habits).clone());
                }
                let started = Instant::now();
                let plan = plan::plan(&observed, config, now);
                times.push(started.elapsed());
                last = Some(plan);
            }
            times.sort();
            let median = times[times.len() / 2];
            let plan = last.unwrap();
            println!(
                "{n:>8} {:>10.2}ms {:>12.0}ns {:>9} {:>7}",
                median.as_secs_f64() * 1e3,
                median.as_nanos() as f64 / n as f64,
                plan.actions.len(),
                plan.notes.len()
            );
        }
    }
}
