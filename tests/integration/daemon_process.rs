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
    let beat = format!("{base}/api/v1/instances/nb-alice/heartbeat");
    assert_eq!(http.post(&beat).send().await.unwrap().status(), 401);
    assert_eq!(http.post(&beat).bearer_auth("wrong").send().await.unwrap().status(), 401);
    assert_eq!(http.post(&beat).bearer_auth("admin-secret").send().await.unwrap().status(), 204);
    let snooze = http
        .post(format!("{base}/api/v1/instances/nb-alice/snooze?for=2h"))
        .bearer_auth("admin-secret")
        .send()
        .await
        .unwrap();
    assert_eq!(snooze.status(), 200);
    for unbounded in ["300000y", "31d", "0s", "soon"] {
        let url = format!("{base}/api/v1/instances/nb-alice/snooze?for={unbounded}");
        let refused = http.post(url).bearer_auth("admin-secret").send().await.unwrap();
        assert_eq!(refused.status(), 400, "for={unbounded}");
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
