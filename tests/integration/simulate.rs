//! `simulate`: a trace whose answer is worked out by hand, the same bytes
//! from the same inputs, and the shipped example policy on the shipped traces.

use mdc_autoscaler::config::load::{load_file, load_str};
use mdc_autoscaler::simulate::frontier::Verdict;
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
    assert_eq!((total.people.cold_starts, total.people.cold_start_wait_seconds), (2, 60));
    assert_eq!((total.people.interrupted_sessions, total.people.lost_sessions), (0, 0));
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
    for path in ["traces/notebook-team.yaml", "traces/training-pool.yaml", "traces/irregular-team.yaml"] {
        let report = simulate(&config, &trace(path)).await.unwrap();
        let total = &report.total;
        let always_on = baseline(total, "always_on").0;
        assert!(total.spend_yuan < always_on, "{path}: {} against {always_on} always on", total.spend_yuan);
        assert_eq!(total.people.interrupted_sessions, 0, "{path}: a power_off while in use");
        assert_eq!(total.people.lost_sessions, 0, "{path}: an instance deleted while still used");
        // The learned timers and pre-warming against every fixed timer, for each
        // policy the trace has work for (a pool with none only creates, which no timer does).
        let worked = report.policies.iter().filter(|p| baseline(p, "active_only").0 > 0.0);
        let mut compared = 0;
        for policy in worked {
            let name = &policy.policy;
            let (_, sixty, _) = baseline(policy, "idle_60m");
            assert_eq!(policy.frontier.verdict, Verdict::Below, "{path}: {name} not below the frontier");
            assert!(policy.spend_vs_active_only <= 1.10, "{path}: {name} {} × the bound", policy.spend_vs_active_only);
            assert!(
                policy.people.cold_starts < sixty,
                "{path}: {name} {} cold starts, idle 60m has {sixty}",
                policy.people.cold_starts
            );
            compared += 1;
        }
        assert!(compared > 0, "{path}: no policy has work in the trace");
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

fn by_hand_config(stop_after: &str, extra: &str) -> mdc_autoscaler::config::policy::Config {
    let text = format!(
        "settings:\n  api: {{ base_url: \"http://simulated\", namespace: trace }}\n  interval: 30s\npolicies:\n  - name: notebooks\n    select: {{ display_name: \"nb-*\" }}\n    idle: {{ signals: [jupyter], stop_after: {stop_after} }}\n{extra}"
    );
    let (config, problems) = load_str("by hand", &text);
    config.unwrap_or_else(|| panic!("{problems}"))
}

/// A hard schedule stop at 09:30, in the middle of the 09:00-10:00 session:
/// the half hour done is lost, the person starts the notebook again and
/// redoes it before carrying on, and the redone work is billed.
#[tokio::test]
async fn work_a_schedule_stop_interrupts_is_lost_redone_and_paid_for() {
    let config = by_hand_config(
        "30m",
        "    schedule: { timezone: Asia/Shanghai, stop: \"30 9 * * *\" }\n    due_stops: { hard: [schedule] }\n",
    );
    let trace = trace("tests/fixtures/traces/by-hand.yaml");
    let replay = mdc_autoscaler::simulate::replay::replay(&trace, Some(&config)).await.unwrap();
    let stops: Vec<String> =
        replay.actions.iter().map(|a| format!("{} {} {}", a.planned_at.format("%H:%M:%S"), a.kind, a.cause)).collect();
    // 00:00: the edge of the day before, not yet applied (the latest edge
    // at or before now is applied once). 09:30: the edge, mid-session. The
    // person is back at 09:30:45 (15 s to stop, 30 s to start) and works an
    // hour: the lost half hour, then the half hour that was left; idle at
    // 10:30:45, stopped 30 minutes later. 12:00-13:00 as before. (The
    // daemon records the 09:30 power_off as failed: by its next look the
    // person had started the notebook again.)
    assert_eq!(
        stops,
        [
            "16:00:00 power_off schedule",
            "01:30:00 power_off schedule",
            "03:00:45 power_off idle",
            "05:30:00 power_off idle"
        ]
    );
    let report = simulate(&config, &trace).await.unwrap();
    let total = &report.total;
    // ¥2/h: 09:00:30-09:30 (¥0.98333), 09:30:45-11:00:45 (¥3), 12:00:30-13:30 (¥2.98333).
    assert_eq!(total.spend_yuan, 6.97);
    assert_eq!(
        (total.people.interrupted_sessions, total.people.lost_work_hours, total.people.lost_work_yuan),
        (1, 0.5, 1.0)
    );
    // Three starts waited for: 09:00 (30 s), the restart at 09:30 (15 s to stop, 30 s to start), 12:00 (30 s).
    assert_eq!((total.people.cold_starts, total.people.cold_start_wait_seconds), (3, 105));
    assert!(
        report.table().contains("It interrupted 1 sessions in use: 0.50 hours of work lost (¥1.00)"),
        "{}",
        report.table()
    );
}

/// The hand-made day's timers: under two hours, two cold starts and ¥(T/10 +
/// 4 - 1/30) for T minutes; from two hours, the lunch gap is kept alive (one
/// cold start, ¥(T/15 + 8 - 1/60)); always on, ¥48 and none. The hull is
/// always on, 120 minutes and the shortest timer.
#[tokio::test]
async fn the_frontier_of_a_day_known_by_hand_places_policies_above_on_and_below_it() {
    use mdc_autoscaler::simulate::frontier::Verdict;
    let trace = trace("tests/fixtures/traces/by-hand.yaml");
    let report = simulate(&by_hand_config("30m", ""), &trace).await.unwrap();
    let frontier = &report.total.frontier;
    let on: Vec<&str> = frontier.points.iter().filter(|p| p.on_frontier).map(|p| p.name.as_str()).collect();
    assert_eq!(on, ["always_on", "idle_120m", "idle_0m"]);
    assert_eq!(baseline(&report.total, "idle_90m"), (12.97, 2, 60));
    assert_eq!(baseline(&report.total, "idle_120m"), (15.98, 1, 30));
    assert_eq!(baseline(&report.total, "idle_240m"), (23.98, 1, 30));
    // 30 minutes: ¥6.97 with two cold starts, where the shortest timer spends ¥3.97.
    assert_eq!(
        (frontier.verdict, frontier.frontier_spend_yuan, frontier.saving_yuan),
        (Verdict::Above, Some(3.97), Some(-3.0))
    );
    // A two-hour timer is a point of the hull.
    let on = simulate(&by_hand_config("2h", ""), &trace).await.unwrap().total;
    assert_eq!((on.spend_yuan, on.people.cold_starts, on.frontier.verdict), (15.98, 1, Verdict::On));
    // Started ahead of lunch by a schedule at 11:59: one cold start, and idle
    // only 00:00-00:30, 10:00-10:30 and 13:00-13:30: ¥1 + ¥2.98333 + ¥3.01667
    // (running from 11:59:30), where the best mix with one cold start spends ¥15.98.
    let below =
        simulate(&by_hand_config("30m", "    schedule: { timezone: Asia/Shanghai, start: \"59 11 * * *\" }\n"), &trace)
            .await
            .unwrap()
            .total;
    assert_eq!((below.spend_yuan, below.people.cold_starts), (7.0, 1));
    assert_eq!((below.frontier.verdict, below.frontier.saving_yuan), (Verdict::Below, Some(8.98)));
    assert!(below.people.interrupted_sessions == 0 && on.people.interrupted_sessions == 0);
}

/// Baselines keep their hands off what the policy may not touch, and every
/// total is the simulator's whole bill: compute, storage, prepaid terms.
#[tokio::test]
async fn baselines_honour_protection_prepaid_terms_and_unmanaged_instances_and_totals_are_the_bill() {
    use mdc_autoscaler::simulate::replay::replay;
    use mdc_autoscaler::simulate::{Fixed, timer_config};
    let config = by_hand_config("30m", "    protect: { display_name: [\"nb-keep-*\"] }\n");
    let trace = trace("tests/fixtures/traces/equal-terms.yaml");
    let report = simulate(&config, &trace).await.unwrap();
    let yuan = |m: mdc_autoscaler::money::Money| (m.micros() as f64 / 10_000.0).round() / 100.0;
    let own = replay(&trace, Some(&config)).await.unwrap();
    assert_eq!(report.total.spend_yuan, yuan(own.bill.total));
    let always_on = replay(&trace, None).await.unwrap();
    assert_eq!(baseline(&report.total, "always_on").0, yuan(always_on.bill.total));
    let fixed: Vec<(&str, Option<Fixed>)> = report.instances.iter().map(|i| (i.instance.as_str(), i.fixed)).collect();
    assert_eq!(
        fixed,
        [
            ("nb-keep-shared", Some(Fixed::Protected)),
            ("nb-monthly", Some(Fixed::Prepaid)),
            ("nb-solo", None),
            ("other-box", Some(Fixed::Unmanaged))
        ]
    );
    let bill_of = |r: &mdc_autoscaler::simulate::replay::Replay, name: &str| {
        r.bill.instances.iter().find(|b| b.display_name == name).map(|b| b.total).unwrap()
    };
    for minutes in [0, 30, 240] {
        let timer = timer_config(&config, chrono::Duration::minutes(minutes).max(chrono::Duration::seconds(1)));
        let timed = replay(&trace, Some(&timer)).await.unwrap();
        assert_eq!(baseline(&report.total, &format!("idle_{minutes}m")).0, yuan(timed.bill.total), "{minutes}m");
        for untouched in ["nb-keep-shared", "nb-monthly", "other-box"] {
            assert_eq!(bill_of(&timed, untouched), bill_of(&always_on, untouched), "{minutes}m stopped {untouched}");
        }
        assert!(bill_of(&timed, "nb-solo") < bill_of(&always_on, "nb-solo"), "{minutes}m");
    }
    // Protected and unmanaged run all day at ¥2/h, the monthly term is paid up
    // front; storage at ¥0.01 per GB-day.
    let fixed_spend: f64 = report.instances.iter().filter(|i| i.fixed.is_some()).map(|i| i.spend_yuan).sum();
    assert_eq!(report.total.fixed_yuan, (fixed_spend * 100.0).round() / 100.0);
    assert_eq!(report.instances.iter().find(|i| i.instance == "other-box").unwrap().spend_yuan, 48.0 + 2.0);
    assert!(report.total.prepaid_yuan > 0.0 && report.total.storage_yuan > 0.0);
    // The bound leaves the fixed instances as they are and pays nb-solo's two hours in use.
    let fixed_always: f64 =
        ["nb-keep-shared", "nb-monthly", "other-box"].iter().map(|n| yuan(bill_of(&always_on, n))).sum();
    let solo_storage = 1.0;
    assert_eq!(baseline(&report.total, "active_only").0, ((fixed_always + 4.0 + solo_storage) * 100.0).round() / 100.0);
    // What the policy can change: nb-solo's compute, as in the hand-made day.
    assert_eq!((report.total.spend_vs_always_on, report.total.spend_vs_active_only), (0.145, 1.742));
}

/// `advise` on the hand-made day: at most 7 cold starts a week is one a day,
/// which only timers of two hours and more give (¥15.98 a day at two hours);
/// ¥480 a month is ¥16 a day, which the two-hour timer fits too.
#[tokio::test]
async fn advise_picks_the_timer_a_limit_asks_for_on_a_day_known_by_hand() {
    use mdc_autoscaler::simulate::advise::{Limits, advise};
    let trace = trace("tests/fixtures/traces/by-hand.yaml");
    let config = by_hand_config("45m", "");
    let limits = Limits { cold_starts_per_week: Some(7.0), spend_per_month_yuan: Some(480.0) };
    let advice = advise(&config, &trace, limits).await.unwrap();
    let notebooks = &advice.policies[0];
    assert_eq!((notebooks.policy.as_str(), notebooks.stop_after_minutes), ("notebooks", Some(45)));
    // 45 minutes: ¥(4.5 + 4 - 1/30) a day with two cold starts, above the frontier.
    assert_eq!((notebooks.configured.spend_yuan, notebooks.configured.cold_starts_per_week), (8.47, 14.0));
    let chosen = |c: &Option<mdc_autoscaler::simulate::advise::Choice>| {
        c.as_ref().and_then(|c| c.setting.as_ref()).map(|s| (s.stop_after_minutes, s.spend_per_month_yuan))
    };
    assert_eq!(chosen(&notebooks.for_cold_starts), Some((Some(120), 479.4)));
    assert_eq!(chosen(&notebooks.for_spend), Some((Some(120), 479.4)));
    let tight = advise(&config, &trace, Limits { cold_starts_per_week: Some(3.0), spend_per_month_yuan: Some(100.0) })
        .await
        .unwrap();
    assert_eq!(chosen(&tight.policies[0].for_cold_starts), None, "no timer has under one cold start a day");
    assert_eq!(chosen(&tight.policies[0].for_spend), None, "no timer costs under ¥3.34 a day");
    assert!(advice.table().contains("For at most 7 cold starts a week: stop_after 120m"), "{}", advice.table());
}

/// The same schedule stop without `hard`: it waits for the session to end
/// and five idle minutes, so nothing is interrupted.
#[tokio::test]
async fn a_schedule_stop_waits_for_the_session_to_end() {
    let config = by_hand_config("30m", "    schedule: { timezone: Asia/Shanghai, stop: \"30 9 * * *\" }\n");
    let trace = trace("tests/fixtures/traces/by-hand.yaml");
    let replay = mdc_autoscaler::simulate::replay::replay(&trace, Some(&config)).await.unwrap();
    let stops: Vec<String> =
        replay.actions.iter().map(|a| format!("{} {}", a.planned_at.format("%H:%M:%S"), a.cause)).collect();
    // 00:05 the day before's edge, once idle (since the start) for five minutes; 10:05
    // the 09:30 edge, five minutes after the session ended; 13:30 the idle timer.
    assert_eq!(stops, ["16:05:00 schedule", "02:05:00 schedule", "05:30:00 idle"]);
    let report = simulate(&config, &trace).await.unwrap();
    assert_eq!((report.total.people.interrupted_sessions, report.total.people.lost_work_hours), (0, 0.0));
    // 00:00-00:05, 09:00:30-10:05 and 12:00:30-13:30 at ¥2/h.
    assert_eq!(report.total.spend_yuan, 5.3);
}

/// A decision sees only the past: with every session that begins after the
/// tenth day deleted, every action planned before then is the same.
#[tokio::test]
async fn no_decision_sees_the_future() {
    use mdc_autoscaler::simulate::replay::replay;
    let (example, problems) = load_file(std::path::Path::new("config/example.yaml"));
    let example = example.unwrap_or_else(|| panic!("{problems}"));
    let whole = trace("traces/irregular-team.yaml");
    let cut = whole.start + chrono::Duration::days(10);
    let mut short = whole.clone();
    short.sessions.values_mut().for_each(|sessions| sessions.retain(|s| s.start < cut));
    let before = |actions: &[mdc_autoscaler::ledger::ActionRecord]| -> Vec<String> {
        actions
            .iter()
            .filter(|a| a.planned_at < cut)
            .map(|a| format!("{} {} {} {}", a.planned_at, a.kind, a.display_name, a.reason))
            .collect()
    };
    let (all, cut_short) =
        (replay(&whole, Some(&example)).await.unwrap(), replay(&short, Some(&example)).await.unwrap());
    let (all, cut_short) = (before(&all.actions), before(&cut_short.actions));
    assert!(all.iter().any(|a| a.contains("pre-warm")), "the example pre-warms on this trace");
    assert!(all.iter().any(|a| a.contains("adaptive keep-alive")), "and learns its timers");
    assert_eq!(all, cut_short);
}
