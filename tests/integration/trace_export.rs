//! `trace export`: a day the daemon ran with its real ledger (SQLite and
//! PostgreSQL) comes back out as a trace that replays as it ran, and an
//! empty ledger is refused.

use chrono::Duration;
use mdc_autoscaler::config::load::load_str;
use mdc_autoscaler::ledger::{MemoryStore, Store};
use mdc_autoscaler::simulate::export::export;
use mdc_autoscaler::simulate::replay::{Replay, Stepping, replay_in, replay_with};
use mdc_autoscaler::simulate::trace::Trace;

fn config() -> mdc_autoscaler::config::policy::Config {
    let (config, problems) = load_str(
        "round trip",
        "settings:\n  api: { base_url: \"http://simulated\", namespace: trace }\n  interval: 30s\npolicies:\n  - name: notebooks\n    select: { display_name: \"nb-*\" }\n    idle: { signals: [jupyter], stop_after: 30m }\n",
    );
    config.unwrap_or_else(|| panic!("{problems}"))
}

fn spend(replay: &Replay) -> f64 {
    replay.bill.total.micros() as f64 / 1e6
}

/// The daemon records the day in `store`; the export replays to the same
/// actions, cold starts and spend, within what the signals' precision allows:
/// a session's start is seen at the daemon's next look (within an interval),
/// or, when someone started the instance, at its start (the start time
/// after they asked), so each session may begin up to a minute late.
async fn round_trip<S: Store + Clone>(store: S) {
    store.migrate().await.unwrap();
    let original =
        Trace::parse("round-trip.yaml", &std::fs::read_to_string("tests/fixtures/traces/round-trip.yaml").unwrap())
            .unwrap();
    let config = config();
    let ran = replay_in(&original, Some(&config), Stepping::Whole, store.clone()).await.unwrap();
    let exported = export(&store, original.start, original.end, original.zone).await.unwrap();
    assert!(exported.warnings.is_empty(), "{:?}", exported.warnings);
    let trace = Trace::parse("exported", &exported.text).unwrap_or_else(|e| panic!("{e}\n{}", exported.text));
    assert_eq!((trace.start, trace.end), (original.start, original.end));
    let sessions = |t: &Trace| t.sessions.values().map(Vec::len).collect::<Vec<_>>();
    assert_eq!(sessions(&trace), sessions(&original), "{}", exported.text);
    for (name, theirs) in &original.sessions {
        for (ours, theirs) in trace.sessions[name].iter().zip(theirs) {
            assert!(
                ours.start >= theirs.start && ours.start - theirs.start <= Duration::seconds(60),
                "{name}: {ours:?} for {theirs:?}"
            );
            assert_eq!(ours.end, theirs.end, "{name}: a session ends at its last activity");
        }
    }
    let mut again = replay_with(&trace, Some(&config), Stepping::Told).await.unwrap();
    // Actions of one cycle come in platform-name order, and the names are the simulator's own.
    let mut ran = ran;
    for r in [&mut again, &mut ran] {
        r.actions.sort_by(|a, b| (a.planned_at, &a.display_name).cmp(&(b.planned_at, &b.display_name)));
    }
    let kinds = |r: &Replay| r.actions.iter().map(|a| (a.display_name.clone(), a.kind.clone())).collect::<Vec<_>>();
    assert_eq!(kinds(&again), kinds(&ran));
    for (a, b) in again.actions.iter().zip(&ran.actions) {
        assert!(
            (a.planned_at - b.planned_at).abs() <= Duration::seconds(60),
            "{} {} at {} and {}",
            a.display_name,
            a.kind,
            a.planned_at,
            b.planned_at
        );
    }
    let starts = |r: &Replay| r.experience.values().map(|e| e.cold_starts).sum::<u32>();
    assert_eq!(starts(&again), starts(&ran));
    // A minute late at most per session, at ¥2/h.
    let slack = 4.0 * 2.0 / 60.0;
    assert!((spend(&again) - spend(&ran)).abs() <= slack, "¥{} replayed against ¥{} run", spend(&again), spend(&ran));
}

#[tokio::test]
async fn a_day_recorded_in_sqlite_exports_and_replays_as_it_ran() {
    round_trip(super::ledger_contract::sqlite().await).await;
}

#[tokio::test]
async fn a_day_recorded_in_postgres_exports_and_replays_as_it_ran() {
    round_trip(super::ledger_contract::postgres().await).await;
}

#[tokio::test]
async fn an_empty_ledger_exports_nothing_and_says_why() {
    let store = MemoryStore::default();
    let t = chrono::Utc::now();
    let error = export(&store, t - Duration::days(30), t, chrono_tz::Asia::Shanghai).await.err().unwrap().to_string();
    assert!(error.starts_with("the ledger holds no SKU observed before"), "{error}");
}
