//! `mdc-autoscaler run` as users run it: separate processes for the daemon
//! and the fake cloud, a real PostgreSQL ledger, signals and HTTP.

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};

use mdc_autoscaler::cloud::matrixdc::{ClientSettings, MatrixDcClient};
use mdc_autoscaler::cloud::{Cloud, InstanceStatus};
use mdc_autoscaler::secret::Secret;

use crate::fake_cloud_process::spawn;
use crate::ledger_contract::uuid_like;

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn signal(child: &Child, name: &str) {
    assert!(Command::new("kill").args(["-s", name, &child.id().to_string()]).status().unwrap().success());
}

async fn until<F: std::future::Future<Output = bool>>(what: &str, mut check: impl FnMut() -> F) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("gave up waiting for {what}");
}

#[tokio::test]
async fn run_stops_idle_work_answers_http_survives_a_bad_reload_and_stops_cleanly() {
    let (_cloud, api) = spawn(&["--manual-clock"], &[]);
    let url = std::env::var("DATABASE_URL").expect("DATABASE_URL: run through scripts/test");
    let admin = sqlx::PgPool::connect(&url).await.unwrap();
    let db = format!("mdc_run_{}", uuid_like());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}"))).execute(&admin).await.unwrap();
    let ledger_url = sqlx::postgres::PgConnectOptions::from_str(&url).unwrap().database(&db);
    let ledger_url = format!("postgres://postgres@{}:{}/{db}", ledger_url.get_host(), ledger_url.get_port());
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("mdc-run-{}", uuid_like()));
    std::fs::create_dir_all(&dir).unwrap();
    let policy = dir.join("policy.yaml");
    std::fs::write(
        &policy,
        format!(
            r#"settings:
  api: {{ base_url: "{api}", namespace: demo }}
  token: {{ env: TEST_MDC_TOKEN }}
  admin_token: {{ env: TEST_ADMIN_TOKEN }}
  listen: 127.0.0.1:{port}
  interval: 2s
  ledger: {{ url: {{ env: TEST_LEDGER_URL }} }}
policies:
  - name: notebooks
    select: {{ cluster: host-cluster, display_name: "nb-*" }}
    protect: {{ display_name: "nb-keep-*" }}
    idle: {{ signals: [jupyter], stop_after: 30m, snapshot: {{}} }}
"#
        ),
    )
    .unwrap();
    let log = dir.join("daemon.log");
    let mut daemon = Daemon(
        Command::new(env!("CARGO_BIN_EXE_mdc-autoscaler"))
            .args(["run", "--config"])
            .arg(&policy)
            .env("TEST_MDC_TOKEN", "demo-token")
            .env("TEST_ADMIN_TOKEN", "admin-secret")
            .env("TEST_LEDGER_URL", &ledger_url)
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );

    // The idle notebook is stopped with a snapshot; the busy one is not.
    let client = MatrixDcClient::new(
        ClientSettings { base_url: api.clone(), namespace: "demo".into(), ..ClientSettings::default() },
        Secret::new("demo-token"),
    )
    .unwrap();
    let status_of = |display: &'static str| {
        let client = &client;
        async move {
            client
                .list_instances("host-cluster")
                .await
                .unwrap()
                .into_iter()
                .find(|i| i.display_name == display)
                .unwrap()
                .status
        }
    };
    until("nb-bob to stop", || async { status_of("nb-bob").await == InstanceStatus::Stopping }).await;
    assert_eq!(status_of("nb-alice").await, InstanceStatus::Running);

    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    until("ready", || {
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

    // A broken policy on SIGHUP: refused, the old one stays, the daemon lives on.
    std::fs::write(&policy, "policies:\n  - name: x\n    idle: { stop_afer: 1m }\n").unwrap();
    signal(&daemon.0, "HUP");
    let read_log = || {
        let mut text = String::new();
        std::fs::File::open(&log).unwrap().read_to_string(&mut text).unwrap();
        text
    };
    until("the reload to be refused", || async { read_log().contains("reload refused") }).await;
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
    signal(&daemon.0, "TERM");
    let deadline = Instant::now() + Duration::from_secs(30);
    let code = loop {
        if let Some(status) = daemon.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the daemon did not stop");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(code.success(), "{code:?}");
    assert!(read_log().contains("stopped after finishing the cycle in flight"));
    // No secret reached the log.
    for secret in ["demo-token", "admin-secret"] {
        assert!(!read_log().contains(secret), "{secret} in the log");
        assert!(!metrics.contains(secret), "{secret} in the metrics");
    }
}
