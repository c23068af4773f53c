//! The daemon's step against the fake cloud over real sockets, with a real
//! ledger: idle stops on time with a snapshot, busy instances left alone, no
//! duplicate create after a crash, and a ledger outage survived.

use std::str::FromStr;

use chrono::{DateTime, Duration, Utc};
use mdc_autoscaler::config::load::load_str;
use mdc_autoscaler::config::policy::Config;
use mdc_autoscaler::ledger::{ActionRecord, Ledger, Outcome, PgStore, Store};
use mdc_autoscaler::money::Money;
use mdc_autoscaler::plan::ActionKind;
use mdc_autoscaler::reconcile::{Cut, Daemon};
use mdc_autoscaler::sim::Activity;

use crate::harness::{TestCloud, start_time};
use crate::ledger_contract::{outage, sqlite, uuid_like};

fn config(cloud: &TestCloud, policies: &str) -> Config {
    config_with(cloud, "  timezone: Asia/Shanghai\n", policies)
}

/// The fake cloud's API, these further settings, and these policies.
fn config_with(cloud: &TestCloud, settings: &str, policies: &str) -> Config {
    let text = format!(
        "settings:\n  api: {{ base_url: \"{}\", namespace: demo }}\n{settings}policies:\n{policies}",
        cloud.base_url
    );
    let (config, report) = load_str("daemon", &text);
    config.unwrap_or_else(|| panic!("{report}"))
}

const NOTEBOOKS: &str = r#"  - name: notebooks
    select: { cluster: host-cluster, display_name: "nb-*" }
    protect: { display_name: "nb-keep-*" }
    idle: { signals: [jupyter], stop_after: 30m, snapshot: {} }
"#;

const POOL: &str = r#"  - name: training
    pool: { cluster: host-cluster, image: img, desired: 1, gpu: { products: ["4090"] } }
"#;

fn name_of(cloud: &TestCloud, display: &str) -> String {
    cloud.server.sim().instances().find(|i| i.display_name == display).unwrap().name.clone()
}

async fn daemon<S: Store>(
    cloud: &TestCloud,
    policies: &str,
    store: S,
) -> Daemon<mdc_autoscaler::cloud::matrixdc::MatrixDcClient, S> {
    store.migrate().await.unwrap();
    Daemon::new(cloud.client(), Ledger::new(store), config(cloud, policies), false)
}

/// nb-bob went quiet 20 minutes before the start: its 30-minute deadline is 10 minutes in.
fn quiet_bob(cloud: &TestCloud) -> String {
    let bob = name_of(cloud, "nb-bob");
    let quiet =
        Activity { idle_kernels: 1, last_activity: Some(start_time() - Duration::minutes(20)), ..Activity::default() };
    cloud.server.sim().set_activity(&bob, quiet).unwrap();
    bob
}

fn now(cloud: &TestCloud) -> DateTime<Utc> {
    cloud.server.clock().now()
}

#[tokio::test]
async fn an_idle_notebook_stops_on_time_with_a_snapshot_and_a_busy_one_never() {
    let cloud = TestCloud::start().await;
    let bob = quiet_bob(&cloud);
    let mut daemon = daemon(&cloud, NOTEBOOKS, sqlite().await).await;
    let deadline = start_time() + Duration::minutes(10);
    let mut stopped_at = None;
    for _ in 0..120 {
        cloud.advance(Duration::seconds(30));
        let report = daemon.step(now(&cloud)).await;
        assert!(report.observe_error.is_none(), "{:?}", report.observe_error);
        for e in &report.executed {
            assert_ne!(e.action.instance.display_name, "nb-alice", "a busy notebook was stopped");
            assert_ne!(e.action.instance.display_name, "nb-keep-carol", "a protected notebook was stopped");
            if e.action.instance.display_name == "nb-bob" {
                assert!(
                    matches!(&e.action.kind, ActionKind::PowerOff(off) if off.snapshot.is_some()),
                    "{:?}",
                    e.action
                );
                assert_eq!(e.outcome, Outcome::Done);
                stopped_at.get_or_insert(report.at);
            }
        }
    }
    let stopped_at = stopped_at.expect("nb-bob was never stopped");
    assert!(
        stopped_at >= deadline && stopped_at <= deadline + Duration::seconds(60),
        "stopped at {stopped_at}, deadline {deadline}"
    );
    // The snapshot was saved, and the ledger knows the power_off finished.
    assert!(cloud.server.sim().images().iter().any(|i| i.instance == bob && i.succeeded));
    let actions = daemon.ledger().store().actions_between(start_time(), now(&cloud)).await.unwrap();
    let recorded = actions.iter().find(|a| a.instance == bob).unwrap();
    assert_eq!((recorded.outcome, recorded.kind.as_str()), (Some(Outcome::Done), "power_off"));
    assert!(recorded.saving_per_hour > Money::ZERO);
}

#[tokio::test]
async fn a_crash_between_create_and_record_never_creates_twice() {
    let cloud = TestCloud::start().await;
    let store = sqlite().await;
    store.migrate().await.unwrap();
    // Before the crash: the intent was written and the create went through,
    // but the outcome was never recorded.
    let at = now(&cloud);
    let intent = ActionRecord {
        id: 0,
        planned_at: at,
        policy: "training".into(),
        kind: "create".into(),
        instance: String::new(),
        display_name: "training-0".into(),
        cluster: "host-cluster".into(),
        cause: "scale_up".into(),
        reason: "pool has 0 of 1 running".into(),
        saving_per_hour: Money::ZERO - Money::from_micros(2_500_000),
        dry_run: false,
        snapshot: None,
        schedule_edge: None,
        outcome: None,
        error: None,
        finished_at: None,
        epoch: 0,
    };
    store.insert_intent(&intent).await.unwrap();
    let client = cloud.client();
    let request = mdc_autoscaler::cloud::CreateRequest {
        cluster: "host-cluster".into(),
        display_name: "training-0".into(),
        image: "img".into(),
        sku_id: "66".into(),
        billing_type: mdc_autoscaler::cloud::BillingType::PayAsYouGo,
        term: String::new(),
        coupon_id: String::new(),
        disk_sku_id: "1".into(),
        volumes: vec![],
        region: String::new(),
    };
    use mdc_autoscaler::cloud::Cloud;
    let created = client.create_instance(&request).await.unwrap();

    // After the restart.
    let mut daemon = Daemon::new(cloud.client(), Ledger::new(store), config(&cloud, POOL), false);
    assert_eq!(daemon.reconcile_intents(at).await.unwrap(), 1);
    assert!(daemon.ledger().store().unfinished_actions().await.unwrap().is_empty());
    let settled =
        daemon.ledger().store().actions_between(at - Duration::minutes(1), at + Duration::minutes(1)).await.unwrap();
    assert_eq!((settled[0].outcome, settled[0].instance.as_str()), (Some(Outcome::Done), created.name.as_str()));
    for _ in 0..4 {
        cloud.advance(Duration::seconds(30));
        let report = daemon.step(now(&cloud)).await;
        assert!(report.executed.iter().all(|e| !matches!(e.action.kind, ActionKind::Create { .. })), "created again");
    }
    assert_eq!(cloud.server.sim().instances().filter(|i| i.display_name == "training-0").count(), 1);
}

#[tokio::test]
async fn with_the_ledger_away_idle_stops_go_on_creates_wait_and_records_catch_up() {
    let cloud = TestCloud::start().await;
    let url = std::env::var("DATABASE_URL").expect("DATABASE_URL: run through scripts/test");
    let admin = sqlx::PgPool::connect(&url).await.unwrap();
    let name = format!("mdc_daemon_{}", uuid_like());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&admin).await.unwrap();
    let options = sqlx::postgres::PgConnectOptions::from_str(&url).unwrap().database(&name);
    let pool = sqlx::postgres::PgPoolOptions::new()
        .acquire_timeout(std::time::Duration::from_secs(2))
        .connect_lazy_with(options);
    let mut daemon = daemon(&cloud, &format!("{NOTEBOOKS}{POOL}"), PgStore { pool }).await;

    outage(&admin, &name, true).await;
    cloud.advance(Duration::seconds(30));
    let report = daemon.step(now(&cloud)).await;
    assert!(report.ledger_error.is_some());
    let kinds: Vec<(&str, &str)> =
        report.executed.iter().map(|e| (e.action.kind.label(), e.action.instance.display_name.as_str())).collect();
    assert!(kinds.contains(&("power_off", "nb-bob")), "idle stops go on: {kinds:?}");
    assert!(!kinds.iter().any(|(k, _)| *k == "create"), "nothing is created: {kinds:?}");
    let plan = report.plan.unwrap();
    assert!(plan.notes.iter().any(|n| n.text.contains("spend unknown")), "{:?}", plan.notes);

    outage(&admin, &name, false).await;
    cloud.advance(Duration::seconds(30));
    let report = daemon.step(now(&cloud)).await;
    assert!(report.ledger_error.is_none(), "{:?}", report.ledger_error);
    assert!(report.executed.iter().any(|e| e.action.kind.label() == "create"), "creates resume");
    let actions =
        daemon.ledger().store().actions_between(start_time(), now(&cloud) + Duration::seconds(1)).await.unwrap();
    let bob = actions.iter().find(|a| a.display_name == "nb-bob").expect("the stop made during the outage is recorded");
    assert_eq!(bob.outcome, Some(Outcome::Done));
}

/// 1,000 busy notebooks: after the first look, a cycle costs far fewer than
/// 150 calls, MatrixDC and Jupyter together, because each instance is looked
/// at only as often as its idle deadline requires.
#[tokio::test]
async fn a_thousand_busy_instances_cost_few_calls_per_cycle() {
    let mut fleet = String::from(
        "regions:\n  - { id: r1, name: R1, cluster: host-cluster, gpus: { nvidia.com/gpu-4090: 2000 } }\nskus:\n  - { id: \"66\", region: r1, name: \"4090\", gpu_product: \"4090\", gpu_resource_key: nvidia.com/gpu-4090, gpu_count: 1, gpu_memory_gb: 24, cpu_cores: 16, memory_gb: 96, price: 2.5 }\ninstances:\n",
    );
    for i in 0..1000 {
        fleet += &format!(
            "  - {{ display_name: nb-{i}, cluster: host-cluster, sku: \"66\", image: i, status: running, activity: {{ busy_kernels: 1 }} }}\n"
        );
    }
    let cloud = TestCloud::with_fleet(&fleet).await;
    let mut daemon = daemon(&cloud, NOTEBOOKS, sqlite().await).await;
    let calls = || cloud.server.requests().values().flat_map(|by_status| by_status.values()).sum::<u64>();
    let mut per_cycle = Vec::new();
    // One period of looks (30 minutes less a cycle) and a little more.
    for _ in 0..=64 {
        let before = calls();
        cloud.advance(Duration::seconds(30));
        let report = daemon.step(now(&cloud)).await;
        assert!(report.executed.is_empty(), "busy instances are left alone");
        per_cycle.push(calls() - before);
    }
    let steady = &per_cycle[1..];
    let (max, mean) = (*steady.iter().max().unwrap(), steady.iter().sum::<u64>() as f64 / steady.len() as f64);
    println!(
        "1,000 busy instances: first cycle {} calls, then {mean:.1} a cycle on average, {max} at most",
        per_cycle[0]
    );
    assert!(per_cycle[0] >= 2000, "the first cycle looks at every instance");
    assert!(max < 150, "{max} calls in one cycle: {per_cycle:?}");
}

/// The value of the one series whose line starts with `series`.
fn sample(metrics: &str, series: &str) -> f64 {
    let line = metrics.lines().find(|l| l.starts_with(series)).unwrap_or_else(|| panic!("no {series} in\n{metrics}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

#[tokio::test]
async fn metrics_follow_the_fleet_and_the_money() {
    let cloud = TestCloud::start().await;
    let bob = quiet_bob(&cloud);
    let mut daemon = daemon(&cloud, NOTEBOOKS, sqlite().await).await;
    let metrics = mdc_autoscaler::metrics::Metrics::new();
    metrics.leader(true); // a lone daemon leads
    let idle =
        format!(r#"mdc_autoscaler_idle_seconds{{policy="notebooks",instance_name="{bob}",display_name="nb-bob"}}"#);

    let report = daemon.step(now(&cloud)).await;
    metrics.cycle(&report, daemon.observed(), daemon.config(), std::time::Duration::from_millis(5));
    let text = metrics.render();
    assert_eq!(sample(&text, &idle), 1200.0, "idle since its last activity");
    assert!(sample(&text, r#"mdc_autoscaler_idle_cost_yuan_per_hour{policy="notebooks"}"#) > 0.0);
    let rate = sample(&text, r#"mdc_autoscaler_spend_rate_yuan_per_hour{policy="notebooks"}"#);
    assert!(rate > 0.0);
    assert_eq!(sample(&text, r#"mdc_autoscaler_estimated_savings_yuan_total{policy="notebooks"}"#), 0.0);

    // Past the deadline: stopped, then savings accrue while it stays stopped.
    for _ in 0..30 {
        cloud.advance(Duration::seconds(30));
        let report = daemon.step(now(&cloud)).await;
        metrics.cycle(&report, daemon.observed(), daemon.config(), std::time::Duration::from_millis(5));
    }
    let text = metrics.render();
    assert_eq!(
        sample(&text, r#"mdc_autoscaler_actions_total{policy="notebooks",kind="power_off",outcome="done"}"#),
        1.0
    );
    assert!(!text.contains(&idle), "a stopped instance is not idle money");
    assert!(sample(&text, r#"mdc_autoscaler_estimated_savings_yuan_total{policy="notebooks"}"#) > 0.0);
    let spent = sample(&text, r#"mdc_autoscaler_spend_yuan_total{policy="notebooks"}"#);
    // 15 minutes at no more than the first rate.
    assert!(spent > 0.0 && spent <= rate * 0.25 + 1e-9, "{spent} for 15 minutes at {rate}/h");
    assert_eq!(sample(&text, r#"mdc_autoscaler_cycles_total{result="ok"}"#), 31.0);
    assert_eq!(sample(&text, "mdc_autoscaler_stuck_instances"), 0.0);

    // Standing by, the fleet and its money are the leader's to export: a sum over replicas counts each once.
    metrics.leader(false);
    let report = daemon.step(now(&cloud)).await;
    metrics.cycle(&report, daemon.observed(), daemon.config(), std::time::Duration::from_millis(5));
    let text = metrics.render();
    assert!(!text.contains("mdc_autoscaler_spend_rate_yuan_per_hour{"), "{text}");
    assert!(!text.contains("mdc_autoscaler_instances{"), "{text}");
    assert!(text.contains("mdc_autoscaler_sku_list_price_yuan_per_hour{"), "prices are every replica's: {text}");
}

/// Raises the daemon's halt as soon as a power_off has been answered, as a
/// SIGTERM landing then would.
struct HaltOnPowerOff(mdc_autoscaler::reconcile::Halt);

impl mdc_autoscaler::cloud::CallObserver for HaltOnPowerOff {
    fn call_ended(&self, endpoint: mdc_autoscaler::cloud::Endpoint, _: &str, _: std::time::Duration) {
        if endpoint == mdc_autoscaler::cloud::Endpoint::PowerOff {
            self.0.raise();
        }
    }
}

#[tokio::test]
async fn a_halt_mid_step_sends_nothing_more_and_leaves_no_intent_without_its_call() {
    let cloud = TestCloud::start().await;
    let quiet =
        Activity { idle_kernels: 1, last_activity: Some(start_time() - Duration::hours(1)), ..Activity::default() };
    let bob = name_of(&cloud, "nb-bob");
    cloud.server.sim().set_activity(&bob, quiet).unwrap();
    // nb-keep-carol, long idle, is not protected here: two stops are due.
    let policy = "  - name: notebooks\n    select: { cluster: host-cluster, display_name: \"nb-*\" }\n    idle: { signals: [jupyter], stop_after: 30m }\n";
    let store = sqlite().await;
    store.migrate().await.unwrap();
    let halt = mdc_autoscaler::reconcile::Halt::default();
    let client = cloud.client().with_observer(std::sync::Arc::new(HaltOnPowerOff(halt.clone())));
    let mut daemon =
        Daemon::new(client, Ledger::new(store.clone()), config(&cloud, policy), false).with_halt(halt.clone());

    // Raised before a step: nothing is read, nothing planned.
    halt.raise();
    let lists = cloud.answered("list_instances", 200);
    let report = daemon.step(now(&cloud)).await;
    assert_eq!(report.cut, Some(Cut::Halted));
    assert!(report.plan.is_none() && report.executed.is_empty());
    assert_eq!(cloud.answered("list_instances", 200), lists, "a halted step reads nothing");
    halt.lower();

    // Raised as the first stop is answered: that one is recorded whole, the other waits.
    let report = daemon.step(now(&cloud)).await;
    assert_eq!(report.cut, Some(Cut::Halted));
    assert_eq!((report.executed.len(), report.unsent), (1, 1), "{:?}", report.executed);
    assert_eq!(report.executed[0].outcome, Outcome::Done);
    // One intent, its call sent (its outcome waits for the stop to be seen), and no other.
    let open = store.unfinished_actions().await.unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].display_name, report.executed[0].action.instance.display_name);
    assert_eq!(cloud.answered("power_off", 200), 1);

    // Lowered: the next step stops the other.
    halt.lower();
    let report = daemon.step(now(&cloud)).await;
    assert_eq!(report.cut, None, "its stop raised the halt again, but nothing was left to send");
    assert_eq!(report.executed.len(), 1, "{:?}", report.executed);
    assert_ne!(report.executed[0].action.instance.name, open[0].instance);
    assert_eq!(cloud.answered("power_off", 200), 2);
}

/// The fake cloud's fleet, a guard that allows one instance newly stopped,
/// and these policies.
fn guarded(cloud: &TestCloud, policies: &str) -> Config {
    config_with(cloud, "  change_guard: { share: 10%, at_least: 1 }\n", policies)
}

#[tokio::test]
async fn an_edit_that_would_stop_much_of_the_fleet_acts_on_nothing_until_confirmed() {
    let cloud = TestCloud::start().await;
    let bob = quiet_bob(&cloud);
    let store = sqlite().await;
    store.migrate().await.unwrap();
    let mut daemon = Daemon::new(cloud.client(), Ledger::new(store), guarded(&cloud, NOTEBOOKS), false);
    // At start nothing is due: accepted.
    let report = daemon.step(now(&cloud)).await;
    assert!(report.held.is_empty() && report.executed.is_empty(), "{:?}", report.held);

    // Everything, no protection, a minute idle: nb-bob and nb-keep-carol at once, more than one.
    let everything = "  - name: everything\n    select: {}\n    idle: { signals: [jupyter], stop_after: 1m }\n";
    daemon.set_config(guarded(&cloud, everything));
    let report = daemon.step(now(&cloud)).await;
    assert_eq!(report.held.len(), 1, "{:?}", report.held);
    let held = &report.held[0];
    assert_eq!((held.policy.as_str(), held.allowed, held.fleet), ("everything", 1, 6));
    assert!(held.newly_disrupted >= 2, "{held:?}");
    assert!(report.executed.is_empty() && report.withheld >= 2, "{:?}", report.executed);
    // Held it stays, cycle after cycle.
    let report = daemon.step(now(&cloud)).await;
    assert!(report.executed.is_empty() && report.held.is_empty());
    assert_eq!(daemon.held().count(), 1);
    assert_eq!(cloud.answered("power_off", 200), 0);

    // Confirmed, it acts.
    assert!(daemon.confirm("everything"));
    assert!(!daemon.confirm("everything"), "confirmed once");
    let report = daemon.step(now(&cloud)).await;
    let stopped: Vec<_> = report.executed.iter().map(|e| e.action.instance.name.as_str()).collect();
    assert!(stopped.len() >= 2 && stopped.contains(&bob.as_str()), "{stopped:?}");
}

#[tokio::test]
async fn an_edit_that_newly_stops_little_is_accepted_at_once() {
    let cloud = TestCloud::start().await;
    let bob = quiet_bob(&cloud);
    let store = sqlite().await;
    store.migrate().await.unwrap();
    let mut daemon = Daemon::new(cloud.client(), Ledger::new(store), guarded(&cloud, NOTEBOOKS), false);
    daemon.step(now(&cloud)).await;
    // A shorter timer: nb-bob, quiet for 20 minutes, is newly due; one is allowed.
    daemon.set_config(guarded(&cloud, &NOTEBOOKS.replace("stop_after: 30m", "stop_after: 15m")));
    let report = daemon.step(now(&cloud)).await;
    assert!(report.held.is_empty(), "{:?}", report.held);
    let stopped: Vec<_> = report.executed.iter().map(|e| e.action.instance.name.as_str()).collect();
    assert_eq!(stopped, [bob.as_str()]);
}

#[tokio::test]
async fn a_lagging_list_and_a_restart_inside_the_lag_create_a_slot_once() {
    let cloud = TestCloud::start().await;
    cloud.server.sim().faults.list_lag = std::time::Duration::from_secs(5 * 60);
    let store = sqlite().await;
    let mut daemon = daemon(&cloud, POOL, store.clone()).await;
    let creates = |report: &mdc_autoscaler::reconcile::StepReport| {
        report.executed.iter().filter(|e| matches!(e.action.kind, ActionKind::Create { .. })).count()
    };
    let report = daemon.step(now(&cloud)).await;
    assert_eq!(creates(&report), 1, "{:?}", report.executed);
    let made = cloud.server.sim().instances().find(|i| i.display_name == "training-0").unwrap().name.clone();
    use mdc_autoscaler::cloud::Cloud;
    let client = cloud.client();
    assert!(client.list_instances("host-cluster").await.unwrap().iter().all(|i| i.name != made), "listed at once");
    assert_eq!(client.get_instance("host-cluster", &made).await.unwrap().name, made, "found by name");

    for _ in 0..4 {
        cloud.advance(Duration::seconds(30));
        let report = daemon.step(now(&cloud)).await;
        assert_eq!(creates(&report), 0, "created again while unlisted");
        let notes = &report.plan.as_ref().unwrap().notes;
        assert!(notes.iter().any(|n| n.text.contains("training-0") && n.text.contains("not listed yet")), "{notes:?}");
    }
    // A restart inside the lag: the new run learns the create from the ledger.
    drop(daemon);
    let mut daemon = Daemon::new(cloud.client(), Ledger::new(store), config(&cloud, POOL), false);
    assert_eq!(daemon.reconcile_intents(now(&cloud)).await.unwrap(), 0);
    for _ in 0..8 {
        cloud.advance(Duration::seconds(30));
        let report = daemon.step(now(&cloud)).await;
        assert_eq!(creates(&report), 0, "created again after the restart");
    }
    assert!(
        client.list_instances("host-cluster").await.unwrap().iter().any(|i| i.name == made),
        "listed after the lag"
    );
    assert_eq!(cloud.server.sim().instances().filter(|i| i.display_name == "training-0").count(), 1);
}

#[tokio::test]
async fn a_create_never_listed_holds_its_slot_only_a_while() {
    let cloud = TestCloud::start().await;
    // Lists lag past the time a create holds its slot: the slot is created again, once.
    cloud.server.sim().faults.list_lag = std::time::Duration::from_secs(60 * 60);
    let mut daemon = daemon(&cloud, POOL, sqlite().await).await;
    let mut created_at = Vec::new();
    for _ in 0..40 {
        let report = daemon.step(now(&cloud)).await;
        let creates = report.executed.iter().filter(|e| matches!(e.action.kind, ActionKind::Create { .. }));
        created_at.extend(creates.map(|_| report.at));
        cloud.advance(Duration::seconds(30));
    }
    assert_eq!(created_at.len(), 2, "{created_at:?}");
    let held = created_at[1] - created_at[0];
    let within = mdc_autoscaler::config::policy::DEFAULT_LISTING_DELAY;
    assert!(held >= within && held <= within + Duration::seconds(30), "held {held}");
}

#[tokio::test]
async fn a_restart_holds_only_what_changed_while_the_daemon_was_down() {
    let cloud = TestCloud::start().await;
    // Everything unprotected, half an hour idle; two notebooks go quiet now.
    let everything = "  - name: everything\n    select: {}\n    idle: { signals: [jupyter], stop_after: 30m }\n";
    let quiet = Activity { idle_kernels: 1, last_activity: Some(now(&cloud)), ..Activity::default() };
    for display in ["nb-bob", "nb-keep-carol"] {
        let name = name_of(&cloud, display);
        cloud.server.sim().set_activity(&name, quiet.clone()).unwrap();
    }
    let store = sqlite().await;
    store.migrate().await.unwrap();
    let mut daemon = Daemon::new(cloud.client(), Ledger::new(store.clone()), guarded(&cloud, everything), false);
    // At start nothing is due: accepted, and the ledger keeps that.
    let report = daemon.step(now(&cloud)).await;
    assert!(report.held.is_empty() && report.ledger_error.is_none(), "{:?}", report.held);
    drop(daemon);

    // Down for 40 minutes: both notebooks came due meanwhile, more than the guard allows at once.
    cloud.advance(Duration::minutes(40));
    let restarted = |store| Daemon::new(cloud.client(), Ledger::new(store), guarded(&cloud, everything), false);
    let mut fresh = restarted(sqlite().await);
    fresh.ledger().store().migrate().await.unwrap();
    let report = fresh.step(now(&cloud)).await;
    assert_eq!(report.held.len(), 1, "a ledger that never accepted it holds it: {:?}", report.executed);
    assert!(report.executed.is_empty());

    // Edited while down: checked again.
    let edited = everything.replace("30m", "20m");
    let mut daemon = Daemon::new(cloud.client(), Ledger::new(store.clone()), guarded(&cloud, &edited), false);
    let report = daemon.step(now(&cloud)).await;
    assert_eq!(report.held.len(), 1, "{:?}", report.executed);
    drop(daemon);

    // As it was accepted: it acts at once.
    let mut daemon = restarted(store);
    let report = daemon.step(now(&cloud)).await;
    assert!(report.held.is_empty(), "held again after a restart: {:?}", report.held);
    assert_eq!(report.executed.len(), 2, "{:?}", report.executed);
}

type Client = mdc_autoscaler::cloud::matrixdc::MatrixDcClient;

/// Steps `n` cycles of 30 seconds; how many actions on `display_name` they executed.
async fn steps<S: Store>(cloud: &TestCloud, daemon: &mut Daemon<Client, S>, n: usize, display_name: &str) -> usize {
    let mut executed = 0;
    for _ in 0..n {
        cloud.advance(Duration::seconds(30));
        let report = daemon.step(now(cloud)).await;
        executed += report.executed.iter().filter(|e| e.action.instance.display_name == display_name).count();
    }
    executed
}

/// A dry run records (and logs) each would-be action once, when it first
/// appears, and again only after it has left the plan and come back: not
/// once a cycle.
#[tokio::test]
async fn a_dry_run_records_each_would_be_action_once_until_it_changes() {
    let cloud = TestCloud::start().await;
    let bob = quiet_bob(&cloud);
    let store = sqlite().await;
    store.migrate().await.unwrap();
    let mut daemon = Daemon::new(cloud.client(), Ledger::new(store.clone()), config(&cloud, NOTEBOOKS), true);
    let recorded = || async {
        let actions = store.actions_between(start_time(), start_time() + Duration::days(1)).await.unwrap();
        actions.into_iter().filter(|a| a.instance == bob).collect::<Vec<_>>()
    };
    // Its deadline is 10 minutes in: 20 minutes more would plan the stop 40 times.
    assert_eq!(steps(&cloud, &mut daemon, 60, "nb-bob").await, 1);
    let once = recorded().await;
    assert_eq!(once.len(), 1, "{once:?}");
    assert!(once[0].dry_run && once[0].outcome == Some(Outcome::Skipped));
    // Busy for a while, then quiet again: the stop leaves the plan, and comes back.
    cloud.server.sim().set_activity(&bob, Activity { busy_kernels: 1, ..Activity::default() }).unwrap();
    assert_eq!(steps(&cloud, &mut daemon, 4, "nb-bob").await, 0);
    let quiet = Activity { idle_kernels: 1, last_activity: Some(now(&cloud)), ..Activity::default() };
    cloud.server.sim().set_activity(&bob, quiet).unwrap();
    assert_eq!(steps(&cloud, &mut daemon, 80, "nb-bob").await, 1);
    assert_eq!(recorded().await.len(), 2);
    assert_eq!(cloud.server.sim().instance(&bob).unwrap().phase, mdc_autoscaler::sim::Phase::Running);
}

/// The idle metric names only instances the policy may stop: the idle-GPU
/// alert reads it, and would fire forever on a protected, snoozed or prepaid one.
#[tokio::test]
async fn the_idle_metric_names_only_what_its_policy_may_stop() {
    let cloud = TestCloud::start().await;
    let bob = quiet_bob(&cloud);
    let store = sqlite().await;
    let mut daemon = daemon(&cloud, NOTEBOOKS, store.clone()).await;
    let metrics = mdc_autoscaler::metrics::Metrics::new();
    metrics.leader(true); // a lone daemon leads
    let report = daemon.step(now(&cloud)).await;
    metrics.cycle(&report, daemon.observed(), daemon.config(), std::time::Duration::from_millis(5));
    let text = metrics.render();
    assert!(text.contains(r#"display_name="nb-bob"}"#), "{text}");
    assert!(!text.contains(r#"display_name="nb-keep-carol"}"#), "a protected instance is not named:\n{text}");
    assert_eq!(sample(&text, r#"mdc_autoscaler_idle_stop_after_seconds{policy="notebooks"}"#), 1800.0);

    store.set_snooze(&bob, now(&cloud) + Duration::hours(1)).await.unwrap();
    let report = daemon.step(now(&cloud)).await;
    metrics.cycle(&report, daemon.observed(), daemon.config(), std::time::Duration::from_millis(5));
    let text = metrics.render();
    assert!(!text.contains("mdc_autoscaler_idle_seconds{"), "a snoozed instance is not named:\n{text}");
}
