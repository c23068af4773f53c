//! Ledger write cost per cycle for 1,000 instances, on each backend: the
//! first cycle (everything new), steady cycles (nothing changes), and a
//! cycle where 5% of the instances stop. Prints figures; asserts nothing.
//!
//!     scripts/with-postgres cargo bench --bench ledger

use std::collections::BTreeSet;
use std::str::FromStr;
use std::time::Instant;

use chrono::{Duration, TimeZone, Utc};
use mdc_autoscaler::cloud::{StatusMap, wire};
use mdc_autoscaler::config::load::load_str;
use mdc_autoscaler::ledger::{Ledger, PgStore, SqliteStore, Store};
use mdc_autoscaler::plan::{Observed, ObservedInstance};

const FLEET: usize = 1_000;

fn observed(stopped: usize) -> Observed {
    let statuses = StatusMap::default();
    let instances = (0..FLEET)
        .map(|i| {
            let raw = wire::Instance {
                name: format!("instance-{i:08x}"),
                display_name: format!("nb-{i}"),
                region: "host-cluster".into(),
                status: if i < stopped { "Shutdown".into() } else { "Running".into() },
                resources: wire::Resources { gpu_num: "1".into(), gpu_type: "4090".into(), ..Default::default() },
                cost: wire::Cost { cost_type: "1".into(), gpu_sku_id: "66".into(), ..Default::default() },
                annotations: [("neolink.ai/unit-price".to_owned(), "250".to_owned())].into(),
                ..Default::default()
            };
            ObservedInstance::new(raw.into_domain(&statuses).unwrap())
        })
        .collect();
    Observed { instances, ..Observed::default() }
}

async fn measure<S: Store>(label: &str, store: S) {
    store.migrate().await.unwrap();
    let (config, _) = load_str("bench", "policies:\n  - name: nb\n    select: { display_name: \"nb-*\" }\n");
    let config = config.unwrap();
    let listed: BTreeSet<String> = ["host-cluster".to_owned()].into();
    let mut ledger = Ledger::new(store);
    let start = Utc.with_ymd_and_hms(2026, 11, 27, 0, 0, 0).unwrap();
    let steady = observed(0);
    let cycle = |n: i64| start + Duration::seconds(30 * n);
    let t = Instant::now();
    let first = ledger.record(&steady, mdc_autoscaler::plan::Changed::All, &config, &listed, cycle(0)).await.unwrap();
    let first_time = t.elapsed();
    let mut times = Vec::new();
    let mut rows = 0;
    for n in 1..=20 {
        let t = Instant::now();
        rows += ledger
            .record(&steady, mdc_autoscaler::plan::Changed::All, &config, &listed, cycle(n))
            .await
            .unwrap()
            .rows_written;
        times.push(t.elapsed());
    }
    times.sort();
    let t = Instant::now();
    let changed = ledger
        .record(&observed(FLEET / 20), mdc_autoscaler::plan::Changed::All, &config, &listed, cycle(21))
        .await
        .unwrap();
    let change_time = t.elapsed();
    println!(
        "{label:>9}: first cycle {:>7.1} ms, {:>5} rows | steady cycle {:>6.2} ms (median), {:.1} rows | 5% stop {:>6.1} ms, {} rows",
        first_time.as_secs_f64() * 1e3,
        first.rows_written,
        times[times.len() / 2].as_secs_f64() * 1e3,
        rows as f64 / 20.0,
        change_time.as_secs_f64() * 1e3,
        changed.rows_written
    );
}

#[tokio::main]
async fn main() {
    println!("ledger writes per cycle, {FLEET} instances");
    let path = std::env::temp_dir().join(format!("mdc-bench-{}.db", std::process::id()));
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&path)
        .create_if_missing(true)
        .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal);
    let pool = sqlx::sqlite::SqlitePoolOptions::new().connect_with(options).await.unwrap();
    measure("sqlite", SqliteStore { pool }).await;
    let _ = std::fs::remove_file(&path);
    match std::env::var("DATABASE_URL") {
        Ok(url) => {
            let admin = sqlx::PgPool::connect(&url).await.unwrap();
            let name = format!("mdc_bench_{}", std::process::id());
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&admin).await.unwrap();
            let options = sqlx::postgres::PgConnectOptions::from_str(&url).unwrap().database(&name);
            let pool = sqlx::PgPool::connect_with(options).await.unwrap();
            measure("postgres", PgStore { pool }).await;
        }
        Err(_) => println!("postgres: skipped (no DATABASE_URL; run through scripts/with-postgres)"),
    }
}
