//! `mdc-autoscaler fake-cloud` as users run it: a separate process, flags and
//! environment, a broken fleet file; and the in-process SimCloud answering
//! exactly as the HTTP path does.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mdc_autoscaler::clock::Clock;
use mdc_autoscaler::cloud::matrixdc::{ClientSettings, MatrixDcClient};
use mdc_autoscaler::cloud::{Cloud, CloudErrorKind};
use mdc_autoscaler::secret::Secret;
use mdc_autoscaler::sim::fleet::{DEFAULT_FLEET, FleetFile};
use mdc_autoscaler::sim::local::SimCloud;

use crate::harness::{CLUSTER, REGION, TestCloud, start_time};

pub struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the binary and reads its log until it says where it listens.
pub fn spawn(args: &[&str], env: &[(&str, &str)]) -> (Running, String) {
    let mut child = Running(
        Command::new(env!("CARGO_BIN_EXE_mdc-autoscaler"))
            .arg("fake-cloud")
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .envs(env.iter().copied())
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "info")
            .stderr(Stdio::piped())
            .spawn()
            .expect("the binary starts"),
    );
    let stderr = child.0.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let Some(Ok(line)) = lines.next() else { break };
        if let Some(api) = line.split_whitespace().find_map(|w| w.strip_prefix("api=")) {
            let api = api.trim_matches(|c: char| !c.is_ascii_graphic()).to_owned();
            std::thread::spawn(move || lines.for_each(drop));
            return (child, api);
        }
    }
    panic!("fake-cloud never said where it listens");
}

#[tokio::test]
async fn the_binary_serves_with_flags_and_environment() {
    let (_server, api) = spawn(
        &["--manual-clock", "--error-rate", "0", "--seed", "7"],
        &[("MDC_NAMESPACE", "team-a"), ("MDC_TOKEN", "s3cret")],
    );
    assert!(api.ends_with("/mdc/api/v1"), "{api}");
    let settings = ClientSettings { base_url: api.clone(), namespace: "team-a".into(), ..ClientSettings::default() };
    let client = MatrixDcClient::new(settings.clone(), Secret::new("s3cret")).unwrap();
    assert_eq!(client.list_regions().await.unwrap().len(), 2);
    assert_eq!(client.list_instances(CLUSTER).await.unwrap().len(), 6);

    let demo = MatrixDcClient::new(settings, Secret::new("demo-token")).unwrap();
    let err = demo.list_regions().await.unwrap_err();
    assert!(matches!(err.kind, CloudErrorKind::Unauthorized { status: 401, .. }), "{err}");
}

#[tokio::test]
async fn faults_from_flags_reach_the_wire() {
    let (_server, api) = spawn(&["--manual-clock", "--fail-list-page", "1"], &[]);
    let settings = ClientSettings {
        base_url: api,
        namespace: "demo".into(),
        retries: 1,
        retry_min_delay: Duration::from_millis(1),
        ..ClientSettings::default()
    };
    let client = MatrixDcClient::new(settings, Secret::new("demo-token")).unwrap();
    let err = client.list_instances(CLUSTER).await.unwrap_err();
    assert_eq!(err.page, Some(1), "{err}");
    assert!(client.list_skus(REGION).await.is_ok(), "only lists fail");
}

#[test]
fn a_broken_fleet_file_is_refused_with_its_line() {
    let dir = std::env::temp_dir().join(format!("mdc-fleet-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("fleet.yaml");
    std::fs::write(&path, "regions: []\nskus: []\ninstances:\n  - display_nam: x\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_mdc-autoscaler"))
        .args(["fake-cloud", "--listen", "127.0.0.1:0", "--fleet"])
        .arg(&path)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("fleet.yaml") && stderr.contains("display_nam"), "{stderr}");
    assert!(stderr.contains("line 4") || stderr.contains(":4:"), "names the line: {stderr}");
    let _ = std::fs::remove_dir_all(dir);
}

/// The in-process SimCloud and the HTTP client over the fake server, on twin
/// simulators, see the same platform.
#[tokio::test]
async fn sim_cloud_answers_like_the_wire() {
    let over_http = TestCloud::start().await;
    let fleet = FleetFile::parse("twin", DEFAULT_FLEET).unwrap();
    let mut twin = fleet.build("demo", start_time()).unwrap();
    twin.set_gateway(&over_http.public_url);
    let local = SimCloud::new(Arc::new(Mutex::new(twin)), Clock::manual(start_time()));
    let client = over_http.client();

    assert_eq!(local.list_regions().await.unwrap(), client.list_regions().await.unwrap());
    assert_eq!(local.list_skus(REGION).await.unwrap(), client.list_skus(REGION).await.unwrap());
    let (a, b) = (local.list_instances(CLUSTER).await.unwrap(), client.list_instances(CLUSTER).await.unwrap());
    assert_eq!(a, b);

    let bob = a.iter().find(|i| i.display_name == "nb-bob").unwrap();
    let err = local.power_on(CLUSTER, &bob.name).await.unwrap_err();
    let over_wire = client.power_on(CLUSTER, &bob.name).await.unwrap_err();
    assert_eq!(err.kind, over_wire.kind);
}
