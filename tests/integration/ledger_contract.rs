//! One contract for every ledger backend, run against a real PostgreSQL
//! (a fresh database per test), a real SQLite file and the in-memory store
//! `simulate` uses: every query and write, migrations from empty and twice,
//! concurrent writers.

use std::str::FromStr;
use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use mdc_autoscaler::ledger::{
    ActionRecord, InstanceRecord, MemoryStore, NewSegment, Outcome, PgStore, PriceSample, SegmentClose, SkuSpec,
    SqliteStore, Store, Transition, UseSpan,
};
use mdc_autoscaler::money::{Money, Ratio};

/// A fresh database on the server `DATABASE_URL` names (scripts/test starts one).
pub async fn postgres() -> PgStore {
    let url = std::env::var("DATABASE_URL").expect("DATABASE_URL: run the tests through scripts/test");
    let admin = sqlx::PgPool::connect(&url).await.expect("PostgreSQL reachable");
    let name = format!("mdc_test_{}", uuid_like());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&admin).await.unwrap();
    let options = sqlx::postgres::PgConnectOptions::from_str(&url).unwrap().database(&name);
    let pool = sqlx::postgres::PgPoolOptions::new().max_connections(10).connect_with(options).await.unwrap();
    PgStore { pool }
}

/// A fresh SQLite file.
pub async fn sqlite() -> SqliteStore {
    let path = std::env::temp_dir().join(format!("mdc-ledger-{}.db", uuid_like()));
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&path)
        .create_if_missing(true)
        .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
        .busy_timeout(std::time::Duration::from_secs(10));
    let pool = sqlx::sqlite::SqlitePoolOptions::new().max_connections(4).connect_with(options).await.unwrap();
    SqliteStore { pool }
}

/// A real outage of one database: it refuses connections and its sessions end.
pub async fn outage(admin: &sqlx::PgPool, name: &str, down: bool) {
    let allow = if down { "false" } else { "true" };
    sqlx::query(sqlx::AssertSqlSafe(format!("ALTER DATABASE {name} ALLOW_CONNECTIONS {allow}")))
        .execute(admin)
        .await
        .unwrap();
    if down {
        sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1")
            .bind(name)
            .execute(admin)
            .await
            .unwrap();
    }
}

pub fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{}_{}_{}", std::process::id(), nanos, COUNTER.fetch_add(1, Ordering::Relaxed))
}

fn t(minutes: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 27, 0, 0, 0).unwrap() + Duration::minutes(minutes)
}

fn sample(sku: &str, at: DateTime<Utc>, price: i64, free: u32) -> PriceSample {
    PriceSample {
        sku_id: sku.into(),
        region_id: "r".into(),
        sku_name: "H20".into(),
        gpu_product: "H20".into(),
        observed_at: at,
        price_per_hour: Money::from_yuan(price),
        discount: Some((Ratio::from_f64(0.48).unwrap(), t(60), t(120))),
        effective_price_per_hour: Money::from_yuan(price),
        free_gpus: free,
        spec: SkuSpec {
            cluster: "c1".into(),
            gpu_resource_key: "nvidia.com/gpu-h20".into(),
            gpu_count: 1,
            gpu_memory_gb: 96,
            cpu_cores: 24,
            memory_gb: 192,
        },
    }
}

fn record(name: &str, status: &str, at: DateTime<Utc>) -> InstanceRecord {
    InstanceRecord {
        name: name.into(),
        display_name: format!("nb-{name}"),
        cluster: "host-cluster".into(),
        policy: Some("notebooks".into()),
        sku_id: "66".into(),
        billing_type: "pay_as_you_go".into(),
        gpu_product: "4090".into(),
        status: status.into(),
        first_seen: t(0),
        changed_at: at,
        gone_at: None,
    }
}

pub fn intent(at: DateTime<Utc>, instance: &str) -> ActionRecord {
    ActionRecord {
        id: 0,
        planned_at: at,
        policy: "notebooks".into(),
        kind: "power_off".into(),
        instance: instance.into(),
        display_name: format!("nb-{instance}"),
        cluster: "host-cluster".into(),
        cause: "idle".into(),
        reason: "idle for 2h".into(),
        saving_per_hour: Money::from_micros(2_500_000),
        dry_run: false,
        snapshot: Some(("nb-x".into(), "20261127".into())),
        schedule_edge: None,
        outcome: None,
        error: None,
        finished_at: None,
        epoch: 0,
    }
}

async fn contract<S: Store>(store: &S) {
    // Migrations from empty, and again: nothing to do the second time.
    store.migrate().await.unwrap();
    store.migrate().await.unwrap();

    // Prices: the newest sample per SKU.
    store.insert_prices(&[sample("2", t(0), 10, 8), sample("66", t(0), 3, 4)]).await.unwrap();
    store.insert_prices(&[sample("2", t(5), 9, 7)]).await.unwrap();
    let mut latest = store.latest_prices().await.unwrap();
    latest.sort_by(|a, b| a.sku_id.cmp(&b.sku_id));
    assert_eq!(latest.len(), 2);
    assert_eq!((latest[0].price_per_hour, latest[0].free_gpus, latest[0].observed_at), (Money::from_yuan(9), 7, t(5)));
    assert_eq!(latest[0].discount, Some((Ratio::from_f64(0.48).unwrap(), t(60), t(120))));
    assert_eq!(latest[0].spec, sample("2", t(5), 9, 7).spec);
    // Every sample before a moment, oldest first (for `trace export`).
    let until: Vec<(String, DateTime<Utc>)> =
        store.prices_until(t(5)).await.unwrap().into_iter().map(|p| (p.sku_id, p.observed_at)).collect();
    assert_eq!(until.len(), 2);
    assert!(until.iter().all(|(_, at)| *at == t(0)));

    // Instances and transitions; when each stopped one stopped.
    store
        .write_instances(
            &[record("a", "running", t(0)), record("b", "running", t(0))],
            &[
                Transition { instance: "a".into(), at: t(0), from: None, to: "running".into() },
                Transition { instance: "b".into(), at: t(0), from: None, to: "running".into() },
            ],
        )
        .await
        .unwrap();
    store
        .write_instances(
            &[record("b", "stopped", t(30))],
            &[Transition { instance: "b".into(), at: t(30), from: Some("running".into()), to: "stopped".into() }],
        )
        .await
        .unwrap();
    let instances = store.instances().await.unwrap();
    assert_eq!(instances.len(), 2);
    assert_eq!(instances.iter().find(|i| i.name == "b").unwrap().status, "stopped");
    assert_eq!(store.stopped_since().await.unwrap().get("b"), Some(&t(30)));
    assert_eq!(store.stopped_since().await.unwrap().get("a"), None);
    // Every change before a moment, in time order (for `trace export`).
    let changes: Vec<(String, String)> =
        store.transitions_until(t(31)).await.unwrap().into_iter().map(|t| (t.instance, t.to)).collect();
    assert_eq!(changes.len(), 3);
    assert_eq!(changes[2], ("b".to_owned(), "stopped".to_owned()));
    assert_eq!(store.transitions_until(t(30)).await.unwrap().len(), 2);
    store
        .write_instances(&[InstanceRecord { gone_at: Some(t(40)), ..record("b", "stopped", t(40)) }], &[])
        .await
        .unwrap();
    assert_eq!(store.instances().await.unwrap().len(), 1, "gone instances are not current");

    // Usage segments: open, close by instance and start, query by overlap.
    let open = |instance: &str, at: DateTime<Utc>, yuan: i64| NewSegment {
        instance: instance.into(),
        display_name: format!("nb-{instance}"),
        policy: Some("notebooks".into()),
        sku_id: "66".into(),
        started_at: at,
        price_per_hour: Money::from_yuan(yuan),
    };
    store.write_segments(&[], &[open("a", t(0), 3), open("b", t(0), 2)]).await.unwrap();
    store
        .write_segments(
            &[SegmentClose { instance: "b".into(), started_at: t(0), ended_at: t(30), amount: Money::from_yuan(1) }],
            &[],
        )
        .await
        .unwrap();
    let open_now = store.open_segments().await.unwrap();
    assert_eq!(open_now.iter().map(|s| s.instance.as_str()).collect::<Vec<_>>(), ["a"]);
    let overlapping = store.segments_overlapping(t(20), t(90)).await.unwrap();
    assert_eq!(overlapping.len(), 2);
    assert_eq!(store.segments_overlapping(t(40), t(90)).await.unwrap().len(), 1, "b ended at 30");
    let spent: Money = overlapping.iter().map(|s| s.cost_within(t(0), t(60))).sum();
    assert_eq!(spent, Money::from_yuan(3) + Money::from_yuan(1), "a: 1h at 3, b: 30m at 2");

    // The last whole observation.
    assert_eq!(store.last_observation().await.unwrap(), None);
    store.set_last_observation(t(1)).await.unwrap();
    store.set_last_observation(t(2)).await.unwrap();
    assert_eq!(store.last_observation().await.unwrap(), Some(t(2)));

    // Actions from intent to outcome.
    let first = store.insert_intent(&intent(t(10), "a")).await.unwrap();
    let create = store
        .insert_intent(&ActionRecord { kind: "create".into(), instance: String::new(), ..intent(t(11), "") })
        .await
        .unwrap();
    assert_ne!(first, create);
    assert_eq!(store.unfinished_actions().await.unwrap().len(), 2);
    store.record_outcome(first, Outcome::Done, None, None, t(12)).await.unwrap();
    store.record_outcome(create, Outcome::Unknown, Some("timed out"), Some("instance-abcd1234"), t(13)).await.unwrap();
    assert!(store.unfinished_actions().await.unwrap().is_empty());
    let actions = store.actions_between(t(0), t(60)).await.unwrap();
    assert_eq!(actions.len(), 2);
    assert_eq!(actions[0].outcome, Some(Outcome::Done));
    assert_eq!(actions[0].snapshot, Some(("nb-x".into(), "20261127".into())));
    assert_eq!(actions[1].instance, "instance-abcd1234");
    assert_eq!((actions[1].outcome, actions[1].error.as_deref()), (Some(Outcome::Unknown), Some("timed out")));
    assert_eq!(store.actions_between(t(11), t(12)).await.unwrap().len(), 1);

    // Schedule marks, heartbeats, snoozes: the newest wins.
    store.set_schedule_marks(&[("a".into(), t(0)), ("b".into(), t(0))]).await.unwrap();
    store.set_schedule_marks(&[("a".into(), t(60))]).await.unwrap();
    assert_eq!(store.schedule_marks().await.unwrap().get("a"), Some(&t(60)));
    store.record_heartbeat("a", t(5)).await.unwrap();
    store.record_heartbeat("a", t(6)).await.unwrap();
    assert_eq!(store.heartbeats().await.unwrap().get("a"), Some(&t(6)));
    store.set_snooze("a", t(120)).await.unwrap();
    assert_eq!(store.snoozes().await.unwrap().get("a"), Some(&t(120)));
    // Policies the change guard accepted: the newest fingerprint per policy.
    store.accept_policies(&[("p".into(), "0001".into()), ("q".into(), "0002".into())], t(0)).await.unwrap();
    store.accept_policies(&[("p".into(), "0003".into())], t(1)).await.unwrap();
    let accepted = store.accepted_policies().await.unwrap();
    assert_eq!((accepted["p"].as_str(), accepted["q"].as_str(), accepted.len()), ("0003", "0002", 2));

    // Use spans: opened, closed by instance and start, found by overlap.
    let span = |instance: &str, from: i64, to: Option<i64>| UseSpan {
        instance: instance.into(),
        display_name: format!("nb-{instance}"),
        policy: Some("notebooks".into()),
        started_at: t(from),
        ended_at: to.map(t),
    };
    store.write_use_spans(&[], &[span("a", 0, None), span("b", 10, Some(20))]).await.unwrap();
    assert_eq!(store.open_use_spans().await.unwrap(), [span("a", 0, None)]);
    store.write_use_spans(&[span("a", 0, Some(30))], &[span("a", 50, None)]).await.unwrap();
    assert_eq!(
        store.use_spans_overlapping(t(15), t(40)).await.unwrap(),
        [span("a", 0, Some(30)), span("b", 10, Some(20))]
    );
    assert_eq!(store.use_spans_overlapping(t(45), t(60)).await.unwrap(), [span("a", 50, None)]);
    let everyone: Vec<String> = store.all_instances().await.unwrap().into_iter().map(|i| i.name).collect();
    assert!(everyone.len() >= store.instances().await.unwrap().len());

    // Retention: old samples go except each SKU's newest; closed segments and use spans go, open ones stay.
    let removed = store.prune(t(3), t(45)).await.unwrap();
    assert_eq!(removed, 1 + 1 + 2, "the first H20 sample, b's closed segment and the two closed use spans");
    assert_eq!(store.latest_prices().await.unwrap().len(), 2);
    assert_eq!(store.open_segments().await.unwrap().len(), 1);
    assert_eq!(store.use_spans_overlapping(t(0), t(100)).await.unwrap(), [span("a", 50, None)]);
}

async fn concurrent_writers<S: Store + 'static>(store: S) {
    store.migrate().await.unwrap();
    let store = Arc::new(store);
    let mut tasks = tokio::task::JoinSet::new();
    for writer in 0..8 {
        let store = Arc::clone(&store);
        tasks.spawn(async move {
            let mut ids = Vec::new();
            for n in 0..25 {
                ids.push(store.insert_intent(&intent(t(n), &format!("w{writer}"))).await.unwrap());
                store.set_schedule_marks(&[("shared".into(), t(writer * 100 + n))]).await.unwrap();
                store.record_heartbeat("shared", t(n)).await.unwrap();
            }
            ids
        });
    }
    let mut ids = Vec::new();
    while let Some(done) = tasks.join_next().await {
        ids.extend(done.unwrap());
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 200, "every intent got its own id");
    assert_eq!(store.unfinished_actions().await.unwrap().len(), 200);
    assert_eq!(store.schedule_marks().await.unwrap().len(), 1);
}

#[tokio::test]
async fn postgres_keeps_the_contract() {
    contract(&postgres().await).await;
}

#[tokio::test]
async fn sqlite_keeps_the_contract() {
    contract(&sqlite().await).await;
}

#[tokio::test]
async fn postgres_takes_concurrent_writers() {
    concurrent_writers(postgres().await).await;
}

#[tokio::test]
async fn sqlite_takes_concurrent_writers() {
    concurrent_writers(sqlite().await).await;
}

#[tokio::test]
async fn memory_keeps_the_contract() {
    contract(&MemoryStore::default()).await;
}

#[tokio::test]
async fn memory_takes_concurrent_writers() {
    concurrent_writers(MemoryStore::default()).await;
}

/// Causes stored before they were spelled as the plan spells them.
fn old_spellings() -> [ActionRecord; 3] {
    let spelt = |cause: &str, instance: &str| ActionRecord { cause: cause.into(), ..intent(t(1), instance) };
    [spelt("scaledown", "i-1"), spelt("scaleup", "i-2"), spelt("idle", "i-3")]
}

async fn causes<S: Store>(store: &S) -> Vec<String> {
    let mut causes: Vec<String> =
        store.actions_between(t(0), t(2)).await.unwrap().into_iter().map(|a| a.cause).collect();
    causes.sort();
    causes
}

#[tokio::test]
async fn postgres_migration_respells_causes() {
    let store = postgres().await;
    store.migrate().await.unwrap();
    for record in old_spellings() {
        store.insert_intent(&record).await.unwrap();
    }
    sqlx::raw_sql(include_str!("../../migrations/postgres/0003_cause_spelling.sql"))
        .execute(&store.pool)
        .await
        .unwrap();
    assert_eq!(causes(&store).await, ["idle", "scale_down", "scale_up"]);
}

#[tokio::test]
async fn sqlite_migration_respells_causes() {
    let store = sqlite().await;
    store.migrate().await.unwrap();
    for record in old_spellings() {
        store.insert_intent(&record).await.unwrap();
    }
    sqlx::raw_sql(include_str!("../../migrations/sqlite/0003_cause_spelling.sql")).execute(&store.pool).await.unwrap();
    assert_eq!(causes(&store).await, ["idle", "scale_down", "scale_up"]);
}

/// Billing types stored before they were spelled as the policy file spells them.
async fn respelt_billing<S: Store>(store: &S, migration: &str, run: impl AsyncFnOnce(&S, &str)) {
    store.migrate().await.unwrap();
    let spelt =
        |billing: &str, name: &str| InstanceRecord { billing_type: billing.into(), ..record(name, "running", t(1)) };
    let old = [spelt("pay-as-you-go", "i-1"), spelt("monthly", "i-2"), spelt("billing type \"7\"", "i-3")];
    store.write_instances(&old, &[]).await.unwrap();
    run(store, migration).await;
    let mut billing: Vec<String> = store.instances().await.unwrap().into_iter().map(|i| i.billing_type).collect();
    billing.sort();
    assert_eq!(billing, ["7", "monthly", "pay_as_you_go"]);
}

#[tokio::test]
async fn postgres_migration_respells_billing_types() {
    let migration = include_str!("../../migrations/postgres/0004_billing_spelling.sql");
    respelt_billing(&postgres().await, migration, async |store: &PgStore, sql: &str| {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&store.pool).await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn sqlite_migration_respells_billing_types() {
    let migration = include_str!("../../migrations/sqlite/0004_billing_spelling.sql");
    respelt_billing(&sqlite().await, migration, async |store: &SqliteStore, sql: &str| {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&store.pool).await.unwrap();
    })
    .await;
}
