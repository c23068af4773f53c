//! People in the loop, with the daemon as a process: idle notebooks are
//! warned on a webhook (signed), each stop waits `warn_before` after its
//! warning was delivered, and a snooze taken through the warning's link
//! (a form POST; and a click in a real headless Chromium) keeps its
//! notebook running. Opening a link changes nothing; a forged one is refused.

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use hmac::{Hmac, KeyInit, Mac};
use mdc_autoscaler::cloud::InstanceStatus;
use serde_json::Value;
use sha2::Sha256;

use crate::fake_cloud_process::spawn;
use crate::processes::{Database, Workspace, client, instances, until};

const HOOK_SECRET: &str = "hook-signing-secret";

type Received = Arc<Mutex<Vec<(Instant, Value)>>>;

/// A webhook receiver that keeps only what is signed as the README says.
async fn hook(State(got): State<Received>, headers: HeaderMap, body: Bytes) -> &'static str {
    let timestamp = headers["x-mdc-timestamp"].to_str().unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(HOOK_SECRET.as_bytes()).unwrap();
    mac.update(&[timestamp.as_bytes(), b".", &body].concat());
    let expected: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(headers["x-mdc-signature"].to_str().unwrap(), format!("sha256={expected}"));
    got.lock().unwrap().push((Instant::now(), serde_json::from_slice(&body).unwrap()));
    "ok"
}

#[tokio::test]
async fn a_warned_notebook_stops_after_the_lead_and_a_snoozed_one_keeps_running() {
    let work = Workspace::new();
    let idle = |name: &str| {
        format!(
            "  - display_name: {name}\n    cluster: host-cluster\n    sku: \"66\"\n    image: img\n    status: running\n    age: 6h\n    activity: {{ idle_kernels: 1, idle_for: 2h }}\n"
        )
    };
    let fleet = mdc_autoscaler::sim::fleet::DEFAULT_FLEET.replace(
        "  # Left open after lunch: nobody has touched it for two hours.\n",
        &format!("{}{}", idle("nb-eve"), idle("nb-fay")),
    );
    let fleet_path = work.dir.join("fleet.yaml");
    std::fs::write(&fleet_path, fleet).unwrap();
    let (_cloud, api) = spawn(&["--manual-clock", "--fleet", fleet_path.to_str().unwrap()], &[]);

    let got: Received = Arc::default();
    let receiver = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_url = format!("http://{}/hook", receiver.local_addr().unwrap());
    let app = Router::new().route("/hook", post(hook)).with_state(got.clone());
    tokio::spawn(axum::serve(receiver, app).into_future());

    let db = Database::fresh().await;
    let base = work.base();
    work.write_policy(
        &api,
        &format!(
            r#"  public_url: {base}
  notify:
    channels:
      - {{ name: team, kind: webhook, url: {{ env: TEST_HOOK_URL }}, secret: {{ env: TEST_HOOK_SECRET }} }}
policies:
  - name: notebooks
    select: {{ cluster: host-cluster, display_name: "nb-*" }}
    protect: {{ display_name: "nb-keep-*" }}
    idle: {{ signals: [jupyter], stop_after: 1m }}
    notify: {{ channel: team, warn_before: {{ idle: 1m }} }}
"#
        ),
    );
    let mut command = work.command(&db.url);
    command.env("TEST_HOOK_URL", &hook_url).env("TEST_HOOK_SECRET", HOOK_SECRET);
    let _daemon = crate::processes::Daemon(command.spawn().unwrap());

    // Three idle notebooks, three warnings; nothing is stopped on the spot.
    let warned = |display: &str| {
        let got = got.lock().unwrap();
        got.iter().find(|(_, w)| w["display_name"] == display).cloned()
    };
    until("three warnings", 30, || async { ["nb-bob", "nb-eve", "nb-fay"].iter().all(|d| warned(d).is_some()) }).await;
    let (delivered, warning) = warned("nb-eve").unwrap();
    assert_eq!(
        (&warning["event"], &warning["action"], &warning["cause"]),
        (&"warning".into(), &"power_off".into(), &"idle".into())
    );
    let client = client(&api);
    let status_of = |display: &'static str| {
        let client = &client;
        async move {
            instances(client, "host-cluster").await.into_iter().find(|i| i.display_name == display).unwrap().status
        }
    };
    for display in ["nb-bob", "nb-eve", "nb-fay"] {
        assert_eq!(
            status_of(display).await,
            InstanceStatus::Running,
            "{display} was stopped before its warning was old"
        );
    }

    // The link opens a page; opening it (as a chat app's previewer does) changes nothing.
    let http = reqwest::Client::new();
    let link = |display: &str| warned(display).unwrap().1["snooze_url"].as_str().unwrap().to_owned();
    let page = http.get(link("nb-bob")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let text = page.text().await.unwrap();
    assert!(text.contains("nb-bob") && text.contains("Keep 1 hour") && text.contains("power_off"), "{text}");
    let snoozes = || async {
        let listed: Value = http.get(format!("{base}/api/v1/snoozes")).send().await.unwrap().json().await.unwrap();
        listed.as_array().unwrap().iter().map(|s| s["display_name"].as_str().unwrap().to_owned()).collect::<Vec<_>>()
    };
    assert!(snoozes().await.is_empty(), "a GET snoozed something");

    // A token altered by one character, or another instance's name: refused, nothing changes.
    let mut forged = link("nb-bob");
    let last = forged.pop().unwrap();
    forged.push(if last == 'A' { 'B' } else { 'A' });
    let form = |url: &str, body: &'static str| {
        http.post(url).header("content-type", "application/x-www-form-urlencoded").body(body).send()
    };
    let refused = form(&forged, "for=1h").await.unwrap();
    assert_eq!(refused.status(), 403);
    assert!(refused.text().await.unwrap().contains("Nothing was changed"));
    assert!(snoozes().await.is_empty());

    // nb-bob's owner keeps it for an hour with the form.
    let kept = form(&link("nb-bob"), "for=1h").await.unwrap();
    assert_eq!(kept.status(), 200);
    assert!(kept.text().await.unwrap().contains("Kept running until"));

    // nb-fay's owner clicks "Keep 4 hours" in a real browser.
    let shot = work.dir.join("snooze-page.png");
    let clicked = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/browser-click"))
        .args([link("nb-fay").as_str(), "button[value='4h']", shot.to_str().unwrap()])
        .output()
        .expect("scripts/browser-click runs (python3, python3-websocket and chromium: .ci/run installs them)");
    let after = String::from_utf8_lossy(&clicked.stdout);
    assert!(
        clicked.status.success() && after.contains("Kept running until"),
        "{after}{}",
        String::from_utf8_lossy(&clicked.stderr)
    );
    assert!(std::fs::metadata(&shot).unwrap().len() > 1000, "a screenshot of the page");
    let mut listed = snoozes().await;
    listed.sort();
    assert_eq!(listed, ["nb-bob", "nb-fay"]);

    // nb-eve stops once its warning is a minute old, not before; the snoozed two run on.
    until("nb-eve to stop", 120, || async { status_of("nb-eve").await != InstanceStatus::Running }).await;
    let waited = delivered.elapsed().as_secs_f64();
    assert!(waited >= 55.0, "nb-eve stopped {waited:.0}s after its warning was delivered, under warn_before");
    assert_eq!(status_of("nb-bob").await, InstanceStatus::Running);
    assert_eq!(status_of("nb-fay").await, InstanceStatus::Running);
    let fleet: Value = http.get(format!("{base}/api/v1/instances")).send().await.unwrap().json().await.unwrap();
    let bob = fleet.as_array().unwrap().iter().find(|r| r["display_name"] == "nb-bob").unwrap();
    assert!(bob["held"].as_str().unwrap_or_default().starts_with("snoozed until"), "{bob}");
    let metrics = http.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
    let delivered_line = r#"mdc_autoscaler_notice_deliveries_total{channel="team",outcome="delivered"} 3"#;
    assert!(metrics.contains(delivered_line), "{metrics}");
    assert!(metrics.contains(r#"mdc_autoscaler_notices_undelivered{channel="team"} 0"#), "{metrics}");
}
