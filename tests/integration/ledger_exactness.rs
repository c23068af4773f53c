//! Spend derived from observation matches the cloud's bill: a simulated day
//! of 30-second cycles (instances started, stopped and deleted, a discount
//! window closing and opening, the daemon restarted twice, the database
//! unreachable for an hour) ends within 0.5% of what the simulator billed.
//! Spend so far kept in memory matches a fresh read of the store. The ledger
//! stores no secret, and a steady cycle writes almost nothing.

use std::collections::BTreeSet;
use std::str::FromStr;

use chrono::{DateTime, Duration, TimeZone, Utc};
use mdc_autoscaler::cloud::{StatusMap, wire};
use mdc_autoscaler::config::load::load_str;
use mdc_autoscaler::ledger::{Ledger, PgStore, Store};
use mdc_autoscaler::money::Money;
use mdc_autoscaler::plan::{Observed, ObservedInstance};
use mdc_autoscaler::sim::Simulator;
use mdc_autoscaler::sim::fleet::FleetFile;

use crate::ledger_contract::{outage, uuid_like};

const FLEET: &str = r#"
platform: { create_time: 60s, start_time: 30s, stop_time: 15s, delete_time: 10s }
regions:
  - { id: r1, name: R1, cluster: host-cluster, gpus: { nvidia.com/gpu-4090: 8, nvidia.com/gpu-h20: 8 } }
skus:
  - id: "66"
    region: r1
    name: "4090"
    gpu_product: "4090"
    gpu_resource_key: nvidia.com/gpu-4090
    gpu_count: 1
    gpu_memory_gb: 24
    cpu_cores: 16
    memory_gb: 96
    price: 2.5
    discount: { id: night, ratio: 0.6, daily: { from: "22:00", to: "07:00", timezone: Asia/Shanghai } }
  - { id: "2", region: r1, name: H20, gpu_product: H20, gpu_resource_key: nvidia.com/gpu-h20, gpu_count: 1, gpu_memory_gb: 96, cpu_cores: 24, memory_gb: 192, price: 10 }
instances:
  - { display_name: all-day, cluster: host-cluster, sku: "66", image: i, status: running, volumes: [{ size_gb: 50 }] }
  - { display_name: office, cluster: host-cluster, sku: "66", image: i, status: running }
  - { display_name: trainer, cluster: host-cluster, sku: "2", image: i, status: stopped }
"#;

const POLICY: &str =
    "settings:\n  timezone: Asia/Shanghai\npolicies:\n  - name: all\n    select: {}\n    budget: { daily: 1000 }\n";

fn start() -> DateTime<Utc> {
    // Midnight in Shanghai: the 4090's night discount runs until 07:00 and again from 22:00.
    Utc.with_ymd_and_hms(2026, 11, 26, 16, 0, 0).unwrap()
}

async fn database() -> (String, sqlx::PgPool) {
    let url = std::env::var("DATABASE_URL").expect("DATABASE_URL: run the tests through scripts/test");
    let admin = sqlx::PgPool::connect(&url).await.unwrap();
    let name = format!("mdc_exact_{}", uuid_like());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&admin).await.unwrap();
    (name, admin)
}

async fn store(name: &str) -> PgStore {
    let url = std::env::var("DATABASE_URL").unwrap();
    let options = sqlx::postgres::PgConnectOptions::from_str(&url).unwrap().database(name);
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(std::time::Duration::from_secs(2))
        .connect_lazy_with(options);
    PgStore { pool }
}

fn observe(sim: &mut Simulator, now: DateTime<Utc>) -> Observed {
    let statuses = StatusMap::default();
    let skus = sim.list_skus(now, "r1").into_iter().map(|s| s.into_domain().unwrap()).collect();
    let list = sim.list_instances(now, "host-cluster", 1, 1000).unwrap();
    let instances = list.nodes.into_iter().map(|n| ObservedInstance::new(n.into_domain(&statuses).unwrap())).collect();
    Observed { skus, instances, ..Observed::default() }
}

fn named(sim: &Simulator, display: &str) -> Option<String> {
    sim.instances().find(|i| i.display_name == display).map(|i| i.name.clone())
}

#[tokio::test]
async fn a_simulated_day_is_billed_within_half_a_percent() {
    let (config, report) = load_str("policy", POLICY);
    let config = config.unwrap_or_else(|| panic!("{report}"));
    let mut sim = FleetFile::parse("fleet", FLEET).unwrap().build("demo", start()).unwrap();
    let (name, admin) = database().await;
    let first = store(&name).await;
    first.migrate().await.unwrap();
    let mut ledger = Some(Ledger::new(first));
    let listed: BTreeSet<String> = ["host-cluster".to_owned()].into();
    let hour = |h: f64| start() + Duration::seconds((h * 3600.0) as i64);
    let mut secrets = Vec::new();
    let mut created = None;
    let mut now = start();
    let mut steady_rows = Vec::new();
    while now < hour(24.0) {
        now += Duration::seconds(30);
        sim.advance(now);
        let at = |h: f64| now == hour(h);
        // The day's script: office hours for `office`, a training run on the H20, and a
        // created instance deleted in the evening.
        if at(10.0) || at(19.5) {
            sim.power_off(now, "host-cluster", &named(&sim, "office").unwrap(), &Default::default()).unwrap();
        }
        if at(13.0) {
            sim.power_on(now, "host-cluster", &named(&sim, "office").unwrap()).unwrap();
        }
        if at(2.0) {
            sim.power_on(now, "host-cluster", &named(&sim, "trainer").unwrap()).unwrap();
        }
        if at(9.25) {
            sim.power_off(now, "host-cluster", &named(&sim, "trainer").unwrap(), &Default::default()).unwrap();
        }
        if at(3.0) {
            let body = wire::CreateBody {
                cost: wire::CreateCost {
                    cost_type: "1".into(),
                    disk_sku_id: "1".into(),
                    gpu_sku_id: "66".into(),
                    ..Default::default()
                },
                namespace: "demo".into(),
                display_name: "scratch".into(),
                image: "i".into(),
                ..Default::default()
            };
            created = Some(sim.create_instance(now, "host-cluster", &body).unwrap().name);
        }
        if at(18.0) {
            sim.power_off(now, "host-cluster", created.as_ref().unwrap(), &Default::default()).unwrap();
        }
        if at(18.1) {
            sim.delete_instance(now, "host-cluster", created.as_ref().unwrap()).unwrap();
        }
        // The daemon restarts twice: down for ten minutes, then a new ledger reads its state back.
        if now > hour(6.0) && now <= hour(6.0) + Duration::minutes(10) {
            ledger = None;
            continue;
        }
        if now > hour(12.0) && now <= hour(12.0) + Duration::minutes(10) {
            ledger = None;
            continue;
        }
        if ledger.is_none() {
            ledger = Some(Ledger::new(store(&name).await));
        }
        // The database is away for an hour in the afternoon; observation goes on.
        if at(15.0) {
            outage(&admin, &name, true).await;
        }
        if at(16.0) {
            outage(&admin, &name, false).await;
        }
        let observed = observe(&mut sim, now);
        for o in &observed.instances {
            if let Some(servers) = &o.instance.servers {
                secrets.extend(servers.ssh.iter().map(|s| s.password.expose().to_owned()));
                secrets.extend(servers.jupyter.iter().map(|j| j.token.expose().to_owned()));
            }
        }
        let result =
            ledger.as_mut().unwrap().record(&observed, mdc_autoscaler::plan::Changed::All, &config, &listed, now).await;
        let in_outage = now >= hour(15.0) && now < hour(16.0);
        match (&result, in_outage) {
            (Ok(recorded), false) if now > hour(20.0) && now < hour(21.0) => steady_rows.push(recorded.rows_written),
            (Ok(_), false) => {}
            (Err(e), true) => assert!(e.is_unavailable(), "an outage reads as unavailable: {e}"),
            (Ok(_), true) => panic!("the ledger wrote during the outage at {now}"),
            (Err(e), false) => panic!("the ledger failed at {now}: {e}"),
        }
        // Spend so far, kept up to date in memory, is what a fresh read of the store says.
        if !in_outage && now.timestamp() % 3600 == 0 {
            let kept = ledger.as_mut().unwrap().spend_so_far(&config, now).await.unwrap();
            let fresh = Ledger::new(store(&name).await).spend_so_far(&config, now).await.unwrap();
            assert_eq!(kept, fresh, "spend so far at {now}");
            assert!(kept["all"].today > Money::ZERO || now < hour(1.0) || now == hour(24.0), "{now}");
        }
    }
    let ledger = ledger.unwrap();
    let segments = ledger.store().segments_overlapping(start(), now).await.unwrap();
    let billed = sim.bill();
    let mut total_ledger = Money::ZERO;
    let mut total_cloud = Money::ZERO;
    for line in billed.instances.iter().filter(|l| l.billing_type == "pay_as_you_go") {
        let ledger_spend: Money =
            segments.iter().filter(|s| s.instance == line.name).map(|s| s.cost_within(start(), now)).sum();
        let (l, c) = (ledger_spend.as_yuan_f64(), line.compute.as_yuan_f64());
        assert!((l - c).abs() <= c * 0.005 + 0.02, "{}: ledger {l:.4} vs cloud {c:.4}", line.display_name);
        total_ledger += ledger_spend;
        total_cloud += line.compute;
    }
    let (l, c) = (total_ledger.as_yuan_f64(), total_cloud.as_yuan_f64());
    println!("a simulated day: ledger ¥{l:.4}, cloud ¥{c:.4}, off by {:.4}%", (l - c).abs() / c * 100.0);
    assert!(c > 50.0, "the day must have spent something: {c}");
    assert!((l - c).abs() <= c * 0.005, "ledger {l} vs cloud {c}");

    // A steady hour (nothing changing) writes one row a cycle: the observation mark.
    assert!(!steady_rows.is_empty() && steady_rows.iter().all(|r| *r <= 1), "{steady_rows:?}");

    // Nothing secret anywhere in the ledger.
    let url = std::env::var("DATABASE_URL").unwrap();
    let pool = sqlx::PgPool::connect_with(sqlx::postgres::PgConnectOptions::from_str(&url).unwrap().database(&name))
        .await
        .unwrap();
    let mut dump = String::new();
    for table in [
        "price_samples",
        "instances",
        "transitions",
        "usage_segments",
        "actions",
        "schedule_marks",
        "heartbeats",
        "snoozes",
        "observations",
    ] {
        let rows: Vec<(String,)> =
            sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT row_to_json(t)::text FROM {table} t")))
                .fetch_all(&pool)
                .await
                .unwrap();
        dump.extend(rows.into_iter().map(|r| r.0 + "\n"));
    }
    assert!(dump.contains("all-day"), "the dump has the ledger's rows");
    secrets.sort();
    secrets.dedup();
    assert!(secrets.len() >= 6, "the fixtures had secrets to leak");
    for secret in &secrets {
        assert!(!dump.contains(secret.as_str()), "a secret reached the ledger");
    }
}
