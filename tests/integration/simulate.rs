//! `simulate`: a trace whose answer is worked out by hand, the same bytes
//! from the same inputs, and the shipped example policy on the shipped traces.

use mdc_autoscaler::config::load::{load_file, load_str};
use mdc_autoscaler::simulate::trace::Trace;
use mdc_autoscaler::simulate::{PolicyReport, simulate};

fn trace(path: &str) -> Trace {
    Trace::parse(path, &std::fs::read_to_string(path).unwrap()).unwrap()
}

fn baseline(report: &PolicyReport, name: &str) -> (f64, u32, i64) {
    let b = report.baselines.iter().find(|b| b.name == name).unwrap();
    (b.spend_yuan, b.cold_starts, b.cold_start_wait_seconds)
}

#[tokio::test]
async fn a_trace_worked_out_by_hand_gives_the_answer_to_the_fen() {
    let (config, problems) = load_str(
        "by hand",
        "settings:\n  api: { base_url: \"http://simulated\", namespace: trace }\n  interval: 30s\npolicies:\n  - name: notebooks\n    select: { display_name: \"nb-*\" }\n    idle: { signals: [jupyter], stop_after: 30m }\n",
    );
    let config = config.unwrap_or_else(|| panic!("{problems}"));
    let report = simulate(&config, &trace("tests/fixtures/traces/by-hand.yaml")).await.unwrap();
    let total = &report.total;
    // ¥2/h. Idle since midnight: stopped at 00:30 (¥1). Back at 09:00 and 12:00: started
    // by hand, running 30 s later, stopped 30 minutes after each session ends
    // (09:00:30-10:30 and 12:00:30-13:30, ¥2.98333 each).
    assert_eq!(total.spend_yuan, 6.97);
    assert_eq!((total.cold_starts, total.cold_start_wait_seconds), (2, 60));
    assert_eq!((total.interrupted_sessions, total.lost_sessions), (0, 0));
    assert_eq!(total.actions.get("power_off"), Some(&3));
    assert_eq!(baseline(total, "always_on"), (48.0, 0, 0));
    assert_eq!(total.savings_yuan, 41.03);
    assert_eq!(baseline(total, "active_only").0, 4.0);
    // The timers: 00:00 to the timer, then each session's end plus the timer.
    assert_eq!(baseline(total, "idle_5m"), (4.47, 2, 60));
    assert_eq!(baseline(total, "idle_15m"), (5.47, 2, 60));
    assert_eq!(baseline(total, "idle_30m"), (6.97, 2, 60));
    assert_eq!(baseline(total, "idle_60m"), (9.97, 2, 60));
    assert_eq!((total.spend_vs_always_on, total.spend_vs_active_only), (0.145, 1.742));
}

#[tokio::test]
async fn the_same_inputs_give_the_same_bytes() {
    let (config, _) = load_file(std::path::Path::new("config/example.yaml"));
    let config = config.unwrap();
    let trace = trace("traces/training-pool.yaml");
    let first = serde_json::to_string_pretty(&simulate(&config, &trace).await.unwrap()).unwrap();
    let second = serde_json::to_string_pretty(&simulate(&config, &trace).await.unwrap()).unwrap();
    assert_eq!(first, second);
}

#[tokio::test]
async fn the_example_policy_beats_always_on_and_never_stops_work_in_progress() {
    let (config, problems) = load_file(std::path::Path::new("config/example.yaml"));
    let config = config.unwrap_or_else(|| panic!("{problems}"));
    for path in ["traces/notebook-team.yaml", "traces/training-pool.yaml"] {
        let report = simulate(&config, &trace(path)).await.unwrap();
        let total = &report.total;
        let always_on = baseline(total, "always_on").0;
        assert!(total.spend_yuan < always_on, "{path}: {} against {always_on} always on", total.spend_yuan);
        assert_eq!(total.interrupted_sessions, 0, "{path}: a power_off while in use");
        assert_eq!(total.lost_sessions, 0, "{path}: an instance deleted while still used");
        println!(
            "{path}: the example policy spends {:.0}% of always on and {:.0}% of the in-use-only bound",
            total.spend_vs_always_on * 100.0,
            total.spend_vs_active_only * 100.0
        );
    }
}

#[test]
fn a_trace_missing_a_cluster_the_policy_names_is_refused() {
    let (config, _) = load_file(std::path::Path::new("config/example.yaml"));
    let trace = trace("tests/fixtures/traces/by-hand.yaml");
    let error = tokio::runtime::Runtime::new().unwrap().block_on(simulate(&config.unwrap(), &trace)).err().unwrap();
    assert!(error.to_string().contains("which the trace does not have"), "{error}");
}

/// When `count` notebooks idle since midnight are stopped under these
/// limits (a 30 s interval, a 30-minute timer), in UTC.
async fn stop_times(count: u32, per_cycle: u32, per_hour: u32) -> Vec<String> {
    let text = format!(
        "start: 2026-11-02T00:00:00+08:00\ndays: 1\nseed: 1\nregions:\n  - {{ id: r1, name: R1, cluster: c1, gpus: {{ nvidia.com/gpu-4090: 8 }} }}\nskus:\n  - {{ id: \"66\", region: r1, name: \"4090\", gpu_product: \"4090\", gpu_resource_key: nvidia.com/gpu-4090, gpu_count: 1, gpu_memory_gb: 24, cpu_cores: 16, memory_gb: 96, price: 2 }}\ninstances:\n  - {{ display_name: nb-idle, count: {count}, cluster: c1, sku: \"66\", status: running }}\n"
    );
    let trace = Trace::parse("idle notebooks", &text).unwrap();
    let (config, problems) = load_str(
        "limits",
        &format!(
            "settings:\n  api: {{ base_url: \"http://simulated\", namespace: trace }}\n  interval: 30s\n  limits: {{ actions_per_cycle: {per_cycle}, actions_per_hour: {per_hour} }}\npolicies:\n  - name: notebooks\n    select: {{ display_name: \"nb-*\" }}\n    idle: {{ signals: [jupyter], stop_after: 30m }}\n"
        ),
    );
    let config = config.unwrap_or_else(|| panic!("{problems}"));
    let replay = mdc_autoscaler::simulate::replay::replay(&trace, Some(&config)).await.unwrap();
    replay.actions.iter().map(|a| a.planned_at.format("%H:%M:%S").to_string()).collect()
}

#[tokio::test]
async fn stops_a_limit_defers_are_taken_as_soon_as_it_leaves_room() {
    // Idle since midnight (16:00 UTC): one stop at the deadline, then one each
    // time the last leaves the hour's window, with nothing else happening between.
    assert_eq!(stop_times(3, 10, 1).await, ["16:30:00", "17:30:00", "18:30:00"]);
}

/// Two actions in one cycle count twice against the hourly limit.
#[tokio::test]
async fn every_action_of_a_cycle_counts_against_the_hourly_limit() {
    let expected = ["16:30:00", "16:30:00", "16:30:30", "17:30:00", "17:30:00", "17:30:30"];
    assert_eq!(stop_times(6, 2, 3).await, expected);
}

/// A step told what changed decides exactly what a step listing the whole
/// fleet decides: same actions at the same moments, same bill, same people's
/// experience, on every shipped trace, under the example policy and a timer.
#[tokio::test]
async fn steps_told_what_changed_agree_with_whole_observations() {
    use mdc_autoscaler::simulate::replay::{Stepping, replay_with};
    let (example, problems) = load_file(std::path::Path::new("config/example.yaml"));
    let example = example.unwrap_or_else(|| panic!("{problems}"));
    let (timer, problems) = load_str(
        "timer",
        "settings:\n  api: { base_url: \"http://simulated\", namespace: trace }\n  limits: { actions_per_cycle: 3, actions_per_hour: 20 }\npolicies:\n  - name: notebooks\n    select: { display_name: \"*\" }\n    idle: { signals: [jupyter], stop_after: 10m, delete_after_stopped: 2d, delete_without_snapshot: true }\n",
    );
    let timer = timer.unwrap_or_else(|| panic!("{problems}"));
    // (The example policy names clusters the hand-made trace lacks: there it observes nothing.)
    for path in ["traces/notebook-team.yaml", "traces/training-pool.yaml", "tests/fixtures/traces/by-hand.yaml"] {
        let trace = trace(path);
        for config in [&example, &timer] {
            let told = replay_with(&trace, Some(config), Stepping::Told).await.unwrap();
            let whole = replay_with(&trace, Some(config), Stepping::Whole).await.unwrap();
            assert_eq!(told.actions, whole.actions, "{path}");
            assert_eq!(told.bill, whole.bill, "{path}");
            assert_eq!(told.experience, whole.experience, "{path}");
            assert_eq!(told.steps, whole.steps, "{path}");
            assert!(!told.actions.is_empty() || std::ptr::eq(config, &example), "{path}: the timer acted");
        }
    }
}
