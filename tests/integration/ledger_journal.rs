//! The actions journal through store failures, on a real SQLite file whose
//! triggers refuse the writes a failing store would: nothing taken while the
//! store is away is lost, and nothing is written twice.

use chrono::{TimeZone, Utc};
use mdc_autoscaler::ledger::{ActionRecord, Ended, Entry, Ledger, Outcome, Store};

use super::ledger_contract::{intent, sqlite};

async fn sql(store: &mdc_autoscaler::ledger::SqliteStore, statement: &str) {
    sqlx::query(sqlx::AssertSqlSafe(statement.to_owned())).execute(&store.pool).await.unwrap();
}

fn stop(instance: &str) -> ActionRecord {
    let planned = Utc.with_ymd_and_hms(2026, 12, 2, 10, 0, 0).unwrap();
    ActionRecord { snapshot: None, ..intent(planned, instance) }
}

#[tokio::test]
async fn an_action_taken_while_the_store_is_away_is_written_once_with_its_outcome() {
    let store = sqlite().await;
    store.migrate().await.unwrap();
    let mut ledger = Ledger::new(store.clone());
    let at = Utc.with_ymd_and_hms(2026, 12, 2, 10, 0, 5).unwrap();
    sql(&store, "CREATE TRIGGER away_insert BEFORE INSERT ON actions BEGIN SELECT RAISE(FAIL, 'away'); END").await;

    let entry = ledger.intend(stop("a")).await;
    assert!(!entry.is_written(), "{entry:?}");
    ledger.finish(entry, Ended { outcome: Outcome::Done, error: None, instance: None, at }).await;
    ledger.mark(vec![("a".into(), at)]).await;
    assert!(store.schedule_marks().await.unwrap().is_empty(), "marks wait behind the action");

    // Back, but failing between the row and its outcome.
    sql(&store, "DROP TRIGGER away_insert").await;
    sql(&store, "CREATE TRIGGER away_update BEFORE UPDATE ON actions BEGIN SELECT RAISE(FAIL, 'away'); END").await;
    assert!(ledger.flush().await.is_err());
    let actions = store.unfinished_actions().await.unwrap();
    assert_eq!(actions.len(), 1, "the row is in, its outcome waits");

    sql(&store, "DROP TRIGGER away_update").await;
    ledger.flush().await.unwrap();
    let all = store.actions_between(at - chrono::Duration::hours(1), at + chrono::Duration::hours(1)).await.unwrap();
    assert_eq!(all.len(), 1, "written once: {all:?}");
    assert_eq!((all[0].outcome, all[0].finished_at), (Some(Outcome::Done), Some(at)));
    assert_eq!(store.schedule_marks().await.unwrap().get("a"), Some(&at));
}

#[tokio::test]
async fn an_outcome_the_store_refuses_waits_and_is_written_when_it_returns() {
    let store = sqlite().await;
    store.migrate().await.unwrap();
    let mut ledger = Ledger::new(store.clone());
    let at = Utc.with_ymd_and_hms(2026, 12, 2, 10, 0, 5).unwrap();
    let entry = ledger.intend(stop("b")).await;
    let Entry::Written(id) = entry else { panic!("the store is up: {entry:?}") };
    sql(&store, "CREATE TRIGGER away_update BEFORE UPDATE ON actions BEGIN SELECT RAISE(FAIL, 'away'); END").await;
    let ended = Ended { outcome: Outcome::Failed, error: Some("no capacity".into()), instance: None, at };
    ledger.finish(Entry::Written(id), ended).await;
    assert_eq!(store.unfinished_actions().await.unwrap().len(), 1);

    sql(&store, "DROP TRIGGER away_update").await;
    ledger.flush().await.unwrap();
    assert!(store.unfinished_actions().await.unwrap().is_empty());
    let all = store.actions_between(at - chrono::Duration::hours(1), at + chrono::Duration::hours(1)).await.unwrap();
    assert_eq!((all[0].outcome, all[0].error.as_deref()), (Some(Outcome::Failed), Some("no capacity")));
}
