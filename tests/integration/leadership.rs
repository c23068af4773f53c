//! The election on a real PostgreSQL: one lease leads, its epoch fences
//! intents, a cut connection hands the lead over, a replica that lost it
//! steps back, and an unmigrated ledger elects no one.

use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use mdc_autoscaler::ledger::leadership::{Lease, Standing};
use mdc_autoscaler::ledger::{LedgerError, PgStore, Store};
use mdc_autoscaler::secret::Secret;

use crate::ledger_contract::intent;
use crate::processes::Database;

fn lease(db: &Database, name: &str) -> Lease {
    Lease::new(&Secret::new(&db.url), name.into(), chrono::Duration::seconds(30)).unwrap()
}

/// Ends the session that holds the advisory lock in this database, as an administrator would.
pub async fn cut_the_leader(db: &Database) -> u64 {
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_locks
         WHERE locktype = 'advisory' AND granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .execute(&db.pool)
    .await
    .unwrap()
    .rows_affected()
}

#[tokio::test]
async fn one_lease_leads_its_epoch_fences_intents_and_a_cut_connection_hands_over() {
    let db = Database::fresh().await;
    let store = PgStore { pool: db.pool.clone() };
    store.migrate().await.unwrap();
    let t = |s: i64| Utc.with_ymd_and_hms(2026, 12, 4, 9, 0, 0).unwrap() + chrono::Duration::seconds(s);
    let (mut a, mut b) = (lease(&db, "a"), lease(&db, "b"));

    assert_eq!(a.campaign(t(0)).await, Standing::Leading { epoch: 1 });
    let Standing::Standby { leader: Some(leader), .. } = b.campaign(t(0)).await else { panic!("b leads too") };
    assert_eq!((leader.replica.as_str(), leader.epoch, leader.elected_at), ("a", 1, t(0)));
    assert_eq!(a.campaign(t(1)).await, Standing::Leading { epoch: 1 }, "a keeps the lead");
    assert_eq!(a.confirm().await, Some(1));
    let at_epoch = |epoch| mdc_autoscaler::ledger::ActionRecord { epoch, ..intent(t(2), "i-1") };
    assert!(store.insert_intent(&at_epoch(1)).await.is_ok());

    // The leader's session ends: it knows at its next confirmation, and b takes over.
    assert_eq!(cut_the_leader(&db).await, 1);
    assert_eq!(a.confirm().await, None);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match b.campaign(t(3)).await {
            Standing::Leading { epoch } => {
                assert_eq!(epoch, 2);
                break;
            }
            standby => assert!(Instant::now() < deadline, "b never took over: {standby:?}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // a's late intent is refused; b's, and a lone daemon's (epoch 0), are written.
    assert!(matches!(store.insert_intent(&at_epoch(1)).await, Err(LedgerError::Fenced(1))));
    assert!(store.insert_intent(&at_epoch(2)).await.is_ok());
    assert!(store.insert_intent(&at_epoch(0)).await.is_ok());
    let epochs: Vec<i64> =
        sqlx::query_scalar("SELECT epoch FROM actions ORDER BY id").fetch_all(&db.pool).await.unwrap();
    assert_eq!(epochs, [1, 2, 0]);

    // a steps back for a while, then stands by behind b.
    let Standing::Standby { error: Some(why), .. } = a.campaign(t(4)).await else { panic!("a leads again") };
    assert!(why.contains("stepping back"), "{why}");
    let Standing::Standby { leader: Some(leader), error: None } = a.campaign(t(40)).await else {
        panic!("a took the lock from b")
    };
    assert_eq!((leader.replica.as_str(), leader.epoch), ("b", 2));

    // b goes away: a is elected at the next epoch, and the ledger keeps every election.
    drop(b);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !a.campaign(t(41)).await.leads() {
        assert!(Instant::now() < deadline, "a never took over from a closed session");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(a.epoch(), Some(3));
    let elections: Vec<(i64, String)> =
        sqlx::query_as("SELECT epoch, replica FROM elections ORDER BY epoch").fetch_all(&db.pool).await.unwrap();
    assert_eq!(elections, [(1, "a".into()), (2, "b".into()), (3, "a".into())]);
}

#[tokio::test]
async fn an_unmigrated_ledger_elects_no_one_and_holds_no_lock() {
    let db = Database::fresh().await;
    let mut a = lease(&db, "a");
    let Standing::Standby { error: Some(why), .. } = a.campaign(Utc::now()).await else { panic!("a leads") };
    assert!(why.contains("elections"), "{why}");
    assert_eq!(cut_the_leader(&db).await, 0, "the lock was let go");
    // Once migrated, the same lease is elected.
    PgStore { pool: db.pool.clone() }.migrate().await.unwrap();
    assert_eq!(a.campaign(Utc::now()).await, Standing::Leading { epoch: 1 });
}
