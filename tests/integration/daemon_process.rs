//! `mdc-autoscaler run` as users run it: separate processes for the daemon
//! and the fake cloud, a real PostgreSQL ledger, signals and HTTP.

use std::process::{Command, Stdio};

use mdc_autoscaler::cloud::InstanceStatus;

use crate::fake_cloud_process::spawn;
use crate::processes::{Database, Workspace, client, instances, until};

#[tokio::test]
async fn run_stops_idle_work_answers_http_survives_a_bad_reload_and_stops_cleanly() {
    let (_cloud, api) = spawn(&["--manual-clock"], &[]);
    let db = Database::fresh().await;
    let work = Workspace::new();
    work.write_policy(
        &api,
        r#"policies:
  - name: notebooks
    select: { cluster: host-cluster, display_name: "nb-*" }
    protect: { display_name: "nb-keep-*" }
    idle: { signals: [jupyter], stop_after: 30m, snapshot: {} }
"#,
    );
    let mut daemon = work.start(&db.url);

    // The idle notebook is stopped with a snapshot; the busy one is not.
    let client = client(&api);
    let status_of = |display: &'static str| {
        let client = &client;
        async move {
            instances(client, "host-cluster").await.into_iter().find(|i| i.display_name == display).unwrap().status
        }
    };
    until("nb-bob to stop", 30, || async { status_of("nb-bob").await == InstanceStatus::Stopping }).await;
    assert_eq!(status_of("nb-alice").await, InstanceStatus::Running);

    let http = reqwest::Client::new();
    let base = work.base();
    until("ready", 30, || {
        let http = http.clone();
        let base = base.clone();
        async move { http.get(format!("{base}/readyz")).send().await.is_ok_and(|r| r.status() == 200) }
    })
    .await;
    let status: serde_json::Value =
        http.get(format!("{base}/api/v1/status")).send().await.unwrap().json().await.unwrap();
    assert!(status["cycles"].as_u64().unwrap() >= 1 && status["actions_taken"].as_u64().unwrap() >= 1, "{status}");
    // The fleet as the daemon planned it, and `instances` reading it from there.
    let fleet: serde_json::Value =
        http.get(format!("{base}/api/v1/instances")).send().await.unwrap().json().await.unwrap();
    let alice = fleet.as_array().unwrap().iter().find(|r| r["display_name"] == "nb-alice").unwrap();
    assert_eq!((&alice["policy"], &alice["activity"]["state"]), (&"notebooks".into(), &"in_use".into()), "{fleet}");
    let carol = fleet.as_array().unwrap().iter().find(|r| r["display_name"] == "nb-keep-carol").unwrap();
    assert_eq!(carol["held"], "protected by `nb-keep-*`", "{fleet}");
    let shown = Command::new(env!("CARGO_BIN_EXE_mdc-autoscaler"))
        .args(["instances", "--policy", "notebooks", "--config"])
        .arg(work.policy())
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&shown.stdout);
    assert!(
        table.contains(&format!("(as the daemon at 127.0.0.1:{} planned them)", base.rsplit(':').next().unwrap())),
        "{table}"
    );
    assert!(table.contains("nb-alice") && !table.contains("train-llm-0"), "{table}");
    let beat = format!("{base}/api/v1/instances/nb-alice/heartbeat");
    assert_eq!(http.post(&beat).send().await.unwrap().status(), 401);
    assert_eq!(http.post(&beat).bearer_auth("wrong").send().await.unwrap().status(), 401);
    assert_eq!(http.post(&beat).bearer_auth("admin-secret").send().await.unwrap().status(), 204);
    let snooze = |name: &str, span: &str| {
        let url = format!("{base}/api/v1/instances/{name}/snooze?for={span}");
        let request = http.post(url).bearer_auth("admin-secret");
        async move { request.send().await.unwrap().status() }
    };
    let snoozes = || async { http.get(format!("{base}/api/v1/snoozes")).send().await.unwrap().json().await.unwrap() };
    assert_eq!(snooze("nb-alice", "2h").await, 200);
    let listed: serde_json::Value = snoozes().await;
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    assert_eq!(listed[0]["display_name"], "nb-alice", "{listed}");
    // One that was never listed is not quietly "snoozed".
    assert_eq!(snooze("nb-alcie", "2h").await, 404);
    let end = format!("{base}/api/v1/instances/nb-alice/snooze");
    assert_eq!(http.delete(&end).send().await.unwrap().status(), 401);
    assert_eq!(http.delete(&end).bearer_auth("admin-secret").send().await.unwrap().status(), 204);
    assert_eq!(snoozes().await, serde_json::json!([]));
    assert_eq!(snooze("nb-alice", "2h").await, 200);
    for unbounded in ["300000y", "31d", "0s", "soon"] {
        assert_eq!(snooze("nb-alice", unbounded).await, 400, "for={unbounded}");
    }

    // A broken policy on SIGHUP: refused, the old one stays, the daemon lives on.
    std::fs::write(work.policy(), "policies:\n  - name: x\n    idle: { stop_afer: 1m }\n").unwrap();
    daemon.signal("HUP");
    let read_log = || work.read_log();
    until("the reload to be refused", 30, || async { read_log().contains("reload refused") }).await;
    assert!(read_log().contains("stop_afer"), "the log says what is wrong");
    assert_eq!(http.get(format!("{base}/healthz")).send().await.unwrap().status(), 200);
    assert!(daemon.0.try_wait().unwrap().is_none());

    // The metrics tell the same story, and promtool finds nothing to fix.
    let metrics = http.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
    for line in [
        r#"mdc_autoscaler_actions_total{policy="notebooks",kind="power_off",outcome="done"} 1"#,
        r#"mdc_autoscaler_config_reloads_total{result="invalid"} 1"#,
        "mdc_autoscaler_config_last_reload_successful 0",
        "mdc_autoscaler_ledger_up 1",
        r#"mdc_autoscaler_build_info{version=""#,
        r#"mdc_autoscaler_api_requests_total{endpoint="list_instances",code="200"}"#,
        r#"mdc_autoscaler_instances{policy="notebooks",status="running",gpu="#,
    ] {
        assert!(metrics.contains(line), "no `{line}` in\n{metrics}");
    }
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (package prometheus) on PATH: .ci/run installs it");
    std::io::Write::write_all(&mut promtool.stdin.take().unwrap(), metrics.as_bytes()).unwrap();
    let checked = promtool.wait_with_output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&checked.stdout), String::from_utf8_lossy(&checked.stderr));
    assert!(checked.status.success() && said.trim().is_empty(), "promtool check metrics:\n{said}");

    // SIGTERM: the cycle in flight finishes, then a clean exit.
    daemon.signal("TERM");
    let code = daemon.exited().await;
    assert!(code.success(), "{code:?}");
    assert!(read_log().contains("stopped, the cycle in flight ended at a safe point"));
    // No secret reached the log.
    for secret in ["demo-token", "admin-secret"] {
        assert!(!read_log().contains(secret), "{secret} in the log");
        assert!(!metrics.contains(secret), "{secret} in the metrics");
    }
}

/// At start every policy is new: one that would stop more than the change
/// guard allows waits for `mdc-autoscaler confirm`, then acts.
#[tokio::test]
async fn a_held_policy_is_shown_alerted_and_released_by_confirm() {
    let (_cloud, api) = spawn(&["--manual-clock"], &[]);
    let db = Database::fresh().await;
    let work = Workspace::new();
    work.write_policy(
        &api,
        "  change_guard: { share: 10%, at_least: 1 }\npolicies:\n  - name: everything\n    select: {}\n    idle: { signals: [jupyter], stop_after: 1m }\n",
    );
    let _daemon = work.start(&db.url);
    let http = reqwest::Client::new();
    let base = work.base();
    let status = || {
        let (http, base) = (http.clone(), base.clone());
        async move {
            let answer = http.get(format!("{base}/api/v1/status")).send().await.ok()?;
            answer.json::<serde_json::Value>().await.ok()
        }
    };
    until("the policy to be held", 30, || async {
        status().await.is_some_and(|s| s["held"].as_array().is_some_and(|h| !h.is_empty()))
    })
    .await;
    assert!(work.read_log().contains("acts on nothing until confirmed"), "{}", work.read_log());
    let metrics = http.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains(r#"mdc_autoscaler_policy_held{policy="everything"} 1"#), "{metrics}");
    let client = client(&api);
    let stopping = || async {
        instances(&client, "host-cluster").await.iter().filter(|i| i.status == InstanceStatus::Stopping).count()
    };
    assert_eq!(stopping().await, 0, "a held policy stops nothing");
    let unknown = format!("{base}/api/v1/policies/nothing/confirm");
    assert_eq!(http.post(&unknown).bearer_auth("admin-secret").send().await.unwrap().status(), 404);

    let confirm = Command::new(env!("CARGO_BIN_EXE_mdc-autoscaler"))
        .args(["confirm", "--config"])
        .arg(work.policy())
        .arg("everything")
        .env("TEST_ADMIN_TOKEN", "admin-secret")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&confirm.stdout);
    assert!(confirm.status.success(), "{said}{}", String::from_utf8_lossy(&confirm.stderr));
    assert!(said.contains("confirmed"), "{said}");
    until("the confirmed policy to stop idle instances", 30, || async { stopping().await >= 2 }).await;
    let metrics = http.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains(r#"mdc_autoscaler_policy_held{policy="everything"} 0"#), "{metrics}");
}

/// A reload applies what can change live and says what only a restart applies.
#[tokio::test]
async fn a_reload_says_which_settings_wait_for_a_restart() {
    let (_cloud, api) = spawn(&["--manual-clock"], &[]);
    let db = Database::fresh().await;
    let work = Workspace::new();
    let policies = "policies:\n  - name: notebooks\n    select: { display_name: \"nb-*\" }\n    idle: { signals: [jupyter], stop_after: 30m }\n";
    work.write_policy(&api, policies);
    let daemon = work.start(&db.url);
    let http = reqwest::Client::new();
    let base = work.base();
    let get = |path: &'static str| {
        let (http, base) = (http.clone(), base.clone());
        async move { http.get(format!("{base}{path}")).send().await.ok() }
    };
    until("ready", 30, || async { get("/readyz").await.is_some_and(|r| r.status() == 200) }).await;

    let text = std::fs::read_to_string(work.policy()).unwrap();
    let moved = text
        .replace(&format!("listen: 127.0.0.1:{}", work.port), "listen: 127.0.0.1:1")
        .replace("timeout: 3s", "timeout: 4s")
        .replace("interval: 1s", "interval: 2s");
    assert_ne!(moved, text);
    std::fs::write(work.policy(), moved).unwrap();
    daemon.signal("HUP");
    until("the reload", 30, || async { work.read_log().contains("policy reloaded") }).await;
    assert!(work.read_log().contains("only a restart applies"), "{}", work.read_log());
    let status: serde_json::Value = get("/api/v1/status").await.unwrap().json().await.unwrap();
    assert_eq!(status["restart_needed"], serde_json::json!(["listen", "api"]), "{status}");
    let metrics = get("/metrics").await.unwrap().text().await.unwrap();
    assert!(metrics.contains("mdc_autoscaler_config_restart_needed 1"), "{metrics}");
    // Still where it was, and ready by the new interval.
    assert_eq!(get("/readyz").await.unwrap().status(), 200);
}

/// An instance's display name is the user's to write: a newline in it cannot
/// forge a log line, nor an escape sequence reach a terminal.
#[tokio::test]
async fn a_display_name_cannot_forge_a_log_line() {
    let work = Workspace::new();
    let fleet = mdc_autoscaler::sim::fleet::DEFAULT_FLEET
        .replace("display_name: nb-bob", r#"display_name: "nb-bob\nERROR forged line \e[31m""#);
    let fleet_path = work.dir.join("fleet.yaml");
    std::fs::write(&fleet_path, fleet).unwrap();
    let (_cloud, api) = spawn(&["--manual-clock", "--fleet", fleet_path.to_str().unwrap()], &[]);
    let db = Database::fresh().await;
    work.write_policy(
        &api,
        "policies:\n  - name: notebooks\n    select: { display_name: \"nb-b*\" }\n    idle: { signals: [jupyter], stop_after: 30m }\n",
    );
    let _daemon = work.start(&db.url);
    until("the idle notebook to be stopped", 30, || async { work.read_log().contains("forged line") }).await;
    let log = work.read_log();
    assert!(!log.lines().any(|l| l.starts_with("ERROR forged")), "a forged line:\n{log}");
    assert!(!log.contains('\u{1b}'), "an escape sequence reached the log:\n{log}");
}
