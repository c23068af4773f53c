//! The daemon's promises, kept as processes: `run` and `fake-cloud` as
//! separate programs, a real PostgreSQL ledger, signals, restarts and faults.

use chrono::{Timelike, Utc};
use mdc_autoscaler::cloud::matrixdc::MatrixDcClient;
use mdc_autoscaler::cloud::{BillingType, Cloud, Instance, InstanceStatus};
use mdc_autoscaler::pricing::effective_price;
use reqwest::Method;
use serde_json::json;

use crate::fake_cloud_process::spawn;
use crate::ledger_contract::outage;
use crate::processes::{Database, Workspace, client, instances, sim, until};

async fn everywhere(client: &MatrixDcClient) -> Vec<Instance> {
    let mut all = instances(client, "host-cluster").await;
    all.extend(instances(client, "bj2-cluster").await);
    all
}

async fn named(client: &MatrixDcClient, display: &str) -> Instance {
    everywhere(client).await.into_iter().find(|i| i.display_name == display).unwrap()
}

async fn pool_members(client: &MatrixDcClient, pool: &str) -> Vec<Instance> {
    let prefix = format!("{pool}-");
    everywhere(client).await.into_iter().filter(|i| i.display_name.starts_with(&prefix)).collect()
}

async fn cycles(work: &Workspace) -> u64 {
    let status =
        async { reqwest::get(format!("{}/api/v1/status", work.base())).await?.json::<serde_json::Value>().await };
    status.await.ok().and_then(|s| s["cycles"].as_u64()).unwrap_or(0)
}

/// Waits for `n` more cycles of the daemon.
async fn more_cycles(work: &Workspace, n: u64) {
    let from = cycles(work).await;
    until(&format!("{n} more cycles"), 60, || async move { cycles(work).await >= from + n }).await;
}

/// A pool of 4090s, and notebooks stopped after 30 idle minutes (`nb-keep-*` protected).
fn pool_and_notebooks(desired: u32) -> String {
    format!(
        r#"policies:
  - name: batch
    pool: {{ cluster: host-cluster, image: img, desired: {desired}, gpu: {{ products: ["4090"] }} }}
  - name: notebooks
    select: {{ cluster: host-cluster, display_name: "nb-*" }}
    protect: {{ display_name: "nb-keep-*" }}
    idle: {{ signals: [jupyter], stop_after: 30m, snapshot: {{}} }}
"#
    )
}

/// A daemon that holds no lead on the ledger, so it goes on acting while the ledger is away.
fn alone(policies: &str) -> String {
    format!("  ha: {{ enabled: false }}\n{policies}")
}

fn start_now() -> String {
    Utc::now().to_rfc3339()
}

#[tokio::test]
async fn a_schedule_start_missed_while_down_is_applied_on_return() {
    // Cron has minute resolution: the start edge is the coming minute, the
    // stop edge the last one, so the daemon first sees "stopped" in force.
    until("a minute with 20 seconds to spare", 70, || async { Utc::now().second() <= 40 }).await;
    let now = Utc::now();
    let (start, stop) = ((now.minute() + 1) % 60, (now.minute() + 59) % 60);
    let (_cloud, api) = spawn(&["--manual-clock", "--start", &start_now()], &[]);
    let client = client(&api);
    let db = Database::fresh().await;
    let work = Workspace::new();
    work.write_policy(
        &api,
        &format!(
            r#"policies:
  - name: office
    select: {{ cluster: host-cluster, display_name: nb-dave }}
    schedule: {{ start: "{start} * * * *", stop: "{stop} * * * *", timezone: UTC }}
"#
        ),
    );
    let mut first = work.start(&db.url);
    more_cycles(&work, 2).await;
    assert_eq!(named(&client, "nb-dave").await.status, InstanceStatus::Stopped);
    first.signal("TERM");
    assert!(first.exited().await.success());

    // Down across the start edge.
    let edge = now.with_second(0).unwrap().with_nanosecond(0).unwrap() + chrono::Duration::minutes(1);
    until("the start edge to pass", 70, || async move { Utc::now() > edge }).await;
    assert_eq!(named(&client, "nb-dave").await.status, InstanceStatus::Stopped);

    let _second = work.start(&db.url);
    until("the missed start to be applied", 30, || async {
        named(&client, "nb-dave").await.status != InstanceStatus::Stopped
    })
    .await;
    let dave = named(&client, "nb-dave").await.name;
    let starts = db
        .count(&format!(
            "SELECT count(*) FROM actions WHERE instance = '{dave}' AND kind = 'power_on' AND cause = 'schedule'"
        ))
        .await;
    assert_eq!(starts, 1);
}

#[tokio::test]
async fn a_pool_fills_the_cheapest_sku_then_fails_over_to_the_next() {
    let (_cloud, api) = spawn(&["--manual-clock", "--start", &start_now()], &[]);
    let client = client(&api);
    // What the platform offers now: pay-as-you-go 4090s, cheapest first.
    let mut skus = Vec::new();
    for region in client.list_regions().await.unwrap() {
        skus.extend(client.list_skus(&region.id).await.unwrap());
    }
    let now = Utc::now();
    skus.retain(|s| s.hardware.gpu_product == "4090" && s.billing_type == BillingType::PayAsYouGo && s.free_gpus > 0);
    skus.sort_by_key(|s| (effective_price(s, now), s.id.clone()));
    let (cheapest, next) = (&skus[0], &skus[1]);
    assert!(effective_price(cheapest, now) < effective_price(next, now), "the test needs two prices");
    assert!(next.free_gpus >= 2);
    let desired = cheapest.free_gpus + 2;

    let db = Database::fresh().await;
    let work = Workspace::new();
    work.write_policy(
        &api,
        &format!(
            r#"  limits: {{ actions_per_cycle: 50, actions_per_hour: 200 }}
policies:
  - name: batch
    pool: {{ cluster: [host-cluster, bj2-cluster], image: img, desired: {desired}, gpu: {{ products: ["4090"] }} }}
"#
        ),
    );
    let _daemon = work.start(&db.url);
    until("the pool to fill", 60, || async { pool_members(&client, "batch").await.len() as u32 >= desired }).await;
    more_cycles(&work, 3).await;
    let members = pool_members(&client, "batch").await;
    assert_eq!(members.len() as u32, desired, "no more than desired, whatever the cycles");
    let on = |sku: &str| members.iter().filter(|i| i.cost.sku_id == sku).count() as u32;
    assert_eq!(on(&cheapest.id), cheapest.free_gpus, "the cheapest SKU is filled first");
    assert_eq!(on(&next.id), 2, "then the next cheapest");
    let mut names: Vec<&str> = members.iter().map(|i| i.display_name.as_str()).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len() as u32, desired, "one instance per slot");
}

#[tokio::test]
async fn sigkill_in_the_middle_of_creates_then_restart_makes_no_duplicate_and_loses_no_record() {
    // Every answer takes half a second: the daemon is killed while a create's answer is on its way.
    let (_cloud, api) = spawn(&["--manual-clock", "--start", &start_now(), "--latency", "500ms"], &[]);
    let client = client(&api);
    let db = Database::fresh().await;
    let work = Workspace::new();
    work.write_policy(
        &api,
        r#"policies:
  - name: batch
    pool: { cluster: host-cluster, image: img, desired: 3, gpu: { products: ["4090"] } }
"#,
    );
    let mut daemon = work.start(&db.url);
    let creates = || async {
        let requests = sim(Method::GET, &api, "requests", None).await;
        requests["create_instance"].as_object().map_or(0, |codes| codes.values().filter_map(|n| n.as_u64()).sum())
    };
    until("a create to reach the cloud", 60, || async { creates().await >= 1 }).await;
    daemon.0.kill().unwrap();
    daemon.0.wait().unwrap();
    let unfinished = db.count("SELECT count(*) FROM actions WHERE kind = 'create' AND outcome IS NULL").await;
    assert_eq!(unfinished, 1, "killed between the call and its outcome");

    let _restarted = work.start(&db.url);
    until("the pool to fill", 60, || async { pool_members(&client, "batch").await.len() >= 3 }).await;
    more_cycles(&work, 3).await;
    let members = pool_members(&client, "batch").await;
    assert_eq!(members.len(), 3, "{:?}", members.iter().map(|i| &i.display_name).collect::<Vec<_>>());
    assert_eq!(db.count("SELECT count(*) FROM actions WHERE outcome IS NULL").await, 0, "every intent settled");
    for member in &members {
        let recorded = db
            .count(&format!(
                "SELECT count(*) FROM actions WHERE kind = 'create' AND outcome = 'done' AND instance = '{}'",
                member.name
            ))
            .await;
        assert_eq!(recorded, 1, "{} has its create on record", member.display_name);
    }
}

#[tokio::test]
async fn killed_and_restarted_while_the_lists_lag_the_daemon_creates_nothing_twice() {
    // New instances are listed ten minutes late; the daemon is killed while a create's answer is on its way.
    let (_cloud, api) =
        spawn(&["--manual-clock", "--start", &start_now(), "--latency", "500ms", "--list-lag", "10m"], &[]);
    let client = client(&api);
    let db = Database::fresh().await;
    let work = Workspace::new();
    work.write_policy(
        &api,
        r#"policies:
  - name: batch
    pool: { cluster: host-cluster, image: img, desired: 3, gpu: { products: ["4090"] } }
"#,
    );
    let mut daemon = work.start(&db.url);
    let creates = || async {
        let requests = sim(Method::GET, &api, "requests", None).await;
        requests["create_instance"].as_object().map_or(0, |codes| codes.values().filter_map(|n| n.as_u64()).sum())
    };
    until("a create to reach the cloud", 60, || async { creates().await >= 1 }).await;
    daemon.0.kill().unwrap();
    daemon.0.wait().unwrap();

    let _restarted = work.start(&db.url);
    until("three creates in all", 60, || async { creates().await >= 3 }).await;
    more_cycles(&work, 3).await;
    assert_eq!(creates().await, 3, "a slot was created twice");
    assert!(pool_members(&client, "batch").await.is_empty(), "the lists do not lag");
    // Once the lists catch up, the pool is whole and nothing more is created.
    sim(Method::POST, &api, "clock/advance?by=11m", None).await;
    until("the pool to be listed", 60, || async { pool_members(&client, "batch").await.len() >= 3 }).await;
    more_cycles(&work, 3).await;
    assert_eq!(creates().await, 3);
    assert_eq!(pool_members(&client, "batch").await.len(), 3);
    assert_eq!(db.count("SELECT count(*) FROM actions WHERE outcome IS NULL").await, 0, "every intent settled");
}

#[tokio::test]
async fn with_a_fifth_of_api_calls_failing_or_slow_the_invariants_hold() {
    let (_cloud, api) = spawn(
        &["--manual-clock", "--start", &start_now(), "--error-rate", "0.2", "--latency", "100ms", "--seed", "11"],
        &[],
    );
    let client = client(&api);
    let db = Database::fresh().await;
    let work = Workspace::new();
    // The fake lists a new instance at once: a create answered with an error is retried on the next cycle's list.
    work.write_policy(&api, &format!("  listing_delay: 0s\n{}", pool_and_notebooks(2)));
    let _daemon = work.start(&db.url);
    until("the idle notebook to stop and the pool to fill", 120, || async {
        named(&client, "nb-bob").await.status != InstanceStatus::Running
            && pool_members(&client, "batch").await.len() >= 2
    })
    .await;
    more_cycles(&work, 10).await;

    assert_eq!(pool_members(&client, "batch").await.len(), 2, "no duplicate create");
    for display in ["nb-alice", "nb-keep-carol"] {
        let instance = named(&client, display).await;
        assert_eq!(instance.status, InstanceStatus::Running, "{display}");
        let touched = db.count(&format!("SELECT count(*) FROM actions WHERE instance = '{}'", instance.name)).await;
        assert_eq!(touched, 0, "{display} was acted on");
    }
    let metrics = reqwest::get(format!("{}/metrics", work.base())).await.unwrap().text().await.unwrap();
    let failed = metrics
        .lines()
        .filter(|l| l.starts_with("mdc_autoscaler_api_requests_total") && !l.contains("code=\"200\""))
        .count();
    assert!(failed > 0, "the faults reached the client:\n{metrics}");
    // Retries absorb most failures; a cycle whose list still failed acted on nothing (checked above).
}

#[tokio::test]
async fn with_postgresql_away_idle_stops_go_on_creates_wait_and_spend_is_complete_after() {
    let (_cloud, api) = spawn(&["--manual-clock", "--start", &start_now()], &[]);
    let client = client(&api);
    let bob = named(&client, "nb-bob").await.name;
    let alice = named(&client, "nb-alice").await.name;
    // bob's 30-minute idle deadline falls a minute from now: inside the outage to come.
    let quiet =
        json!({ "idle_kernels": 1, "last_activity": (Utc::now() - chrono::Duration::minutes(29)).to_rfc3339() });
    sim(Method::PUT, &api, &format!("instances/{bob}/activity"), Some(quiet)).await;
    let db = Database::fresh().await;
    let work = Workspace::new();
    work.write_policy(&api, &alone(&pool_and_notebooks(0)));
    let daemon = work.start(&db.url);
    more_cycles(&work, 2).await;
    let down_at = Utc::now();

    outage(&db.admin, &db.name, true).await;
    let ledger_error = || async {
        let status: serde_json::Value =
            reqwest::get(format!("{}/api/v1/status", work.base())).await.unwrap().json().await.unwrap();
        !status["ledger_error"].is_null()
    };
    until("the daemon to notice the ledger is away", 30, ledger_error).await;
    assert_eq!(named(&client, "nb-bob").await.status, InstanceStatus::Running, "stopped before the outage");
    // The pool now wants an instance.
    work.write_policy(&api, &alone(&pool_and_notebooks(1)));
    daemon.signal("HUP");
    until("bob to be stopped with the ledger away", 90, || async {
        named(&client, "nb-bob").await.status != InstanceStatus::Running
    })
    .await;
    more_cycles(&work, 5).await;
    assert!(pool_members(&client, "batch").await.is_empty(), "nothing is created without the ledger");

    outage(&db.admin, &db.name, false).await;
    let up_at = Utc::now();
    until("the pool to create once the ledger is back", 60, || async {
        pool_members(&client, "batch").await.len() == 1
    })
    .await;
    more_cycles(&work, 2).await;
    let stops =
        db.count(&format!("SELECT count(*) FROM actions WHERE instance = '{bob}' AND kind = 'power_off'")).await;
    assert_eq!(stops, 1, "the stop made during the outage is on record");
    // alice ran throughout: her usage covers the outage without a gap.
    let (covered, span): (f64, f64) = sqlx::query_as(
        "SELECT EXTRACT(EPOCH FROM SUM(COALESCE(ended_at, o.last_at) - started_at))::float8,
                EXTRACT(EPOCH FROM MAX(COALESCE(ended_at, o.last_at)) - MIN(started_at))::float8
         FROM usage_segments, observations o WHERE instance = $1",
    )
    .bind(&alice)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert!((covered - span).abs() < 0.01, "gaps in alice's usage: {covered} s of {span} s");
    let first: chrono::DateTime<Utc> =
        sqlx::query_scalar("SELECT MIN(started_at) FROM usage_segments WHERE instance = $1")
            .bind(&alice)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert!(first < down_at && span > (up_at - down_at).num_milliseconds() as f64 / 1000.0, "{first} {span}");
}
