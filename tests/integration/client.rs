//! The HTTP client against the fake server over TCP: every call, and every
//! way a call can fail.

use std::time::{Duration, Instant};

use chrono::Duration as Span;
use mdc_autoscaler::cloud::matrixdc::{ClientSettings, MatrixDcClient, Paging};
use mdc_autoscaler::cloud::{
    BillingType, Cloud, CloudErrorKind, CreateRequest, Endpoint, InstanceStatus, PowerOff, Snapshot, VolumeSpec,
};
use mdc_autoscaler::secret::Secret;
use mdc_autoscaler::sim::faults::{Fault, ScriptedFault};

use crate::harness::{CLUSTER, REGION, TestCloud};

fn create_request(display_name: &str) -> CreateRequest {
    CreateRequest {
        cluster: CLUSTER.into(),
        display_name: display_name.into(),
        image: "images.neolink-ai.com/matrixdc/pytorch:2.4.0".into(),
        sku_id: "66".into(),
        billing_type: BillingType::PayAsYouGo,
        term: String::new(),
        coupon_id: String::new(),
        disk_sku_id: "1".into(),
        volumes: vec![VolumeSpec { path: "/root/data".into(), size_gb: 50, kind: "shared-filesystem".into() }],
        region: String::new(),
    }
}

fn script(endpoint: Endpoint, fault: Fault, times: u32) -> ScriptedFault {
    ScriptedFault { endpoint: Some(endpoint), fault, times }
}

fn status(status: u16) -> Fault {
    Fault::Status { status, retry_after_seconds: None }
}

async fn by_display_name(client: &MatrixDcClient, display_name: &str) -> Option<mdc_autoscaler::cloud::Instance> {
    client.list_instances(CLUSTER).await.unwrap().into_iter().find(|i| i.display_name == display_name)
}

#[tokio::test]
async fn reads_regions_skus_and_instances() {
    let cloud = TestCloud::start().await;
    let client = cloud.client();

    let regions = client.list_regions().await.unwrap();
    assert_eq!(regions.len(), 2);
    assert_eq!(regions[0].cluster, CLUSTER);

    let skus = client.list_skus(REGION).await.unwrap();
    let h20 = skus.iter().find(|s| s.id == "2").unwrap();
    assert_eq!(h20.free_gpus, 7, "8 H20s, one taken by train-llm-0");
    assert!(h20.discount.is_some(), "the nightly window is shown ahead of time");
    assert!(client.list_skus("no-such-region").await.unwrap().is_empty());

    let instances = client.list_instances(CLUSTER).await.unwrap();
    assert_eq!(instances.len(), 6);
    let alice = instances.iter().find(|i| i.display_name == "nb-alice").unwrap();
    assert_eq!(alice.status, InstanceStatus::Running);
    let dave = instances.iter().find(|i| i.display_name == "nb-dave").unwrap();
    assert_eq!(dave.status, InstanceStatus::Stopped, "the sim's `Shutdown` reads as stopped");

    let got = client.get_instance(CLUSTER, &alice.name).await.unwrap();
    assert_eq!(&got, alice);

    // Every call carried the headers: nothing was refused.
    assert_eq!(cloud.answered("list_instances", 401) + cloud.answered("list_instances", 403), 0);
}

#[tokio::test]
async fn follows_pages_to_the_end() {
    let cloud = TestCloud::start().await;
    let settings = ClientSettings { paging: Paging { page_size: 2, ..Paging::default() }, ..cloud.settings() };
    let instances = cloud.client_with(settings).list_instances(CLUSTER).await.unwrap();
    assert_eq!(instances.len(), 6);
    assert_eq!(cloud.answered("list_instances", 200), 3);
}

#[tokio::test]
async fn drives_an_instance_through_its_whole_life() {
    let cloud = TestCloud::start().await;
    let client = cloud.client();

    let created = client.create_instance(&create_request("test1")).await.unwrap();
    assert_eq!(created.status, InstanceStatus::Creating);
    assert!(created.servers.is_none());
    let name = created.name.clone();
    assert!(name.starts_with("instance-") && name.len() == "instance-".len() + 8, "{name}");

    cloud.advance(Span::seconds(61));
    let running = client.get_instance(CLUSTER, &name).await.unwrap();
    assert_eq!(running.status, InstanceStatus::Running);
    assert_eq!(running.pods.len(), 1);
    assert!(running.pods[0].name.starts_with(&format!("{name}-")));

    let snapshot =
        PowerOff { grace_period_seconds: 10, snapshot: Some(Snapshot { image: "test1".into(), tag: "v1".into() }) };
    client.power_off(CLUSTER, &name, &snapshot).await.unwrap();
    assert_eq!(client.get_instance(CLUSTER, &name).await.unwrap().status, InstanceStatus::Stopping);
    cloud.advance(Span::seconds(15 + 90));
    assert_eq!(client.get_instance(CLUSTER, &name).await.unwrap().status, InstanceStatus::Stopped);
    let images = cloud.server.sim().images().to_vec();
    assert_eq!((images[0].image.as_str(), images[0].tag.as_str(), images[0].succeeded), ("test1", "v1", true));

    client.power_on(CLUSTER, &name).await.unwrap();
    assert_eq!(client.get_instance(CLUSTER, &name).await.unwrap().status, InstanceStatus::Starting);
    cloud.advance(Span::seconds(30));
    let restarted = client.get_instance(CLUSTER, &name).await.unwrap();
    assert_eq!(restarted.status, InstanceStatus::Running);
    let token =
        |i: &mdc_autoscaler::cloud::Instance| i.servers.as_ref().unwrap().jupyter.as_ref().unwrap().token.clone();
    assert_ne!(token(&running), token(&restarted), "each power-on gets a new Jupyter token");

    client.power_off(CLUSTER, &name, &PowerOff::default()).await.unwrap();
    cloud.advance(Span::seconds(15));
    client.delete_instance(CLUSTER, &name).await.unwrap();
    assert_eq!(client.get_instance(CLUSTER, &name).await.unwrap().status, InstanceStatus::Deleting);
    cloud.advance(Span::seconds(10));
    let gone = client.get_instance(CLUSTER, &name).await.unwrap_err();
    assert!(matches!(gone.kind, CloudErrorKind::NotFound { .. }), "{gone}");

    // Billed for Running time only: 1 s in the first run (Running from 60 s,
    // powered off at 61 s), none in the second (powered off as it started).
    let bill = cloud.server.sim().bill();
    let line = bill.instances.iter().find(|b| b.name == name).unwrap();
    assert_eq!(line.running_seconds, 1);
    assert_eq!(line.compute, mdc_autoscaler::money::Money::from_micros(694), "2.50/h for one second");
    assert!(line.deleted);
}

#[tokio::test]
async fn refused_credentials_are_not_retried() {
    let cloud = TestCloud::start().await;
    let wrong = MatrixDcClient::new(cloud.settings(), Secret::new("wrong-token")).unwrap();
    let err = wrong.list_regions().await.unwrap_err();
    assert!(matches!(err.kind, CloudErrorKind::Unauthorized { status: 401, .. }), "{err}");
    assert!(!err.is_transient());
    assert_eq!(cloud.answered("list_regions", 401), 1, "no retry");
    assert!(!err.to_string().contains("wrong-token"));

    let other = cloud.client_with(ClientSettings { namespace: "someone-else".into(), ..cloud.settings() });
    let err = other.list_regions().await.unwrap_err();
    assert!(matches!(err.kind, CloudErrorKind::Unauthorized { status: 403, .. }), "{err}");
    assert_eq!(cloud.answered("list_regions", 403), 1);
}

#[tokio::test]
async fn server_errors_are_retried_until_success() {
    let cloud = TestCloud::start().await;
    cloud.server.push_fault(script(Endpoint::ListRegions, status(503), 2));
    let regions = cloud.client().list_regions().await.unwrap();
    assert_eq!(regions.len(), 2);
    assert_eq!((cloud.answered("list_regions", 503), cloud.answered("list_regions", 200)), (2, 1));
}

#[tokio::test]
async fn retries_give_up_after_the_limit() {
    let cloud = TestCloud::start().await;
    cloud.server.push_fault(script(Endpoint::PowerOn, status(500), 10));
    let dave = by_display_name(&cloud.client(), "nb-dave").await.unwrap();
    let err = cloud.client().power_on(CLUSTER, &dave.name).await.unwrap_err();
    assert!(matches!(err.kind, CloudErrorKind::Server { status: 500, .. }), "{err}");
    assert_eq!(cloud.answered("power_on", 500), 4, "one attempt and three retries");
}

#[tokio::test]
async fn rate_limits_honour_retry_after() {
    let cloud = TestCloud::start().await;
    cloud.server.push_fault(script(Endpoint::ListSkus, Fault::Status { status: 429, retry_after_seconds: Some(1) }, 1));
    let started = Instant::now();
    let skus = cloud.client().list_skus(REGION).await.unwrap();
    assert!(!skus.is_empty());
    // The backoff alone would wait at most 20 ms; Retry-After asked for a second.
    assert!(started.elapsed() >= Duration::from_secs(1), "retried after {:?}", started.elapsed());
    assert_eq!((cloud.answered("list_skus", 429), cloud.answered("list_skus", 200)), (1, 1));
}

#[tokio::test]
async fn a_retry_after_too_long_ends_the_call() {
    let cloud = TestCloud::start().await;
    cloud.server.push_fault(script(
        Endpoint::ListSkus,
        Fault::Status { status: 429, retry_after_seconds: Some(3600) },
        1,
    ));
    let err = cloud.client().list_skus(REGION).await.unwrap_err();
    assert_eq!(err.retry_after(), Some(Duration::from_secs(3600)));
    assert_eq!(cloud.answered("list_skus", 429), 1);
}

#[tokio::test]
async fn a_slow_read_times_out_and_is_retried() {
    let cloud = TestCloud::start().await;
    cloud.server.push_fault(script(Endpoint::ListRegions, Fault::Delay { millis: 3_000 }, 1));
    let started = Instant::now();
    assert_eq!(cloud.client().list_regions().await.unwrap().len(), 2);
    assert!(started.elapsed() < Duration::from_secs(3), "did not wait for the slow answer");
}

#[tokio::test]
async fn timeouts_only_are_an_error_when_every_attempt_times_out() {
    let cloud = TestCloud::start().await;
    cloud.server.push_fault(script(Endpoint::ListRegions, Fault::Delay { millis: 2_000 }, 4));
    let err = cloud.client().list_regions().await.unwrap_err();
    assert_eq!(err.kind, CloudErrorKind::Timeout);
    assert!(err.is_transient());
}

#[tokio::test]
async fn a_create_is_never_retried() {
    let cloud = TestCloud::start().await;
    let client = cloud.client();
    cloud.server.push_fault(script(Endpoint::CreateInstance, status(503), 1));
    let err = client.create_instance(&create_request("once")).await.unwrap_err();
    assert!(matches!(err.kind, CloudErrorKind::Server { status: 503, .. }), "{err}");
    assert!(err.may_have_applied(), "a 5xx on create leaves the outcome unknown");
    assert_eq!(cloud.answered("create_instance", 503), 1);
    assert_eq!(cloud.answered("create_instance", 200), 0, "not retried");
    assert!(by_display_name(&client, "once").await.is_none());
}

#[tokio::test]
async fn a_create_that_times_out_may_still_have_happened() {
    let cloud = TestCloud::start().await;
    let client = cloud.client();
    cloud.server.push_fault(script(Endpoint::CreateInstance, Fault::Delay { millis: 1_000 }, 1));
    let err = client.create_instance(&create_request("slow")).await.unwrap_err();
    assert_eq!(err.kind, CloudErrorKind::Timeout);
    assert!(err.may_have_applied());
    // The platform finishes the create after the client gave up: exactly one instance.
    let created = cloud.eventually(Duration::from_secs(5), |c| c.answered("create_instance", 200) == 1).await;
    assert!(created, "the server finished the create");
    let list = client.list_instances(CLUSTER).await.unwrap();
    assert_eq!(list.iter().filter(|i| i.display_name == "slow").count(), 1);
}

#[tokio::test]
async fn malformed_and_truncated_answers_are_errors() {
    let cloud = TestCloud::start().await;
    let client = cloud.client();
    cloud.server.push_fault(script(Endpoint::ListInstances, Fault::Malformed, 1));
    let err = client.list_instances(CLUSTER).await.unwrap_err();
    assert!(matches!(err.kind, CloudErrorKind::Malformed { .. }), "{err}");
    assert!(!err.is_transient(), "not retried in the call; the next cycle tries again");

    cloud.server.push_fault(script(Endpoint::GetInstance, Fault::Truncated, 1));
    let alice = by_display_name(&client, "nb-alice").await.unwrap();
    let err = client.get_instance(CLUSTER, &alice.name).await.unwrap_err();
    assert!(matches!(err.kind, CloudErrorKind::Malformed { .. }), "{err}");
    // The excerpt of a cut-off instance record shows no secret.
    let message = err.to_string();
    let ssh = alice.servers.as_ref().unwrap().ssh.as_ref().unwrap();
    let jupyter = alice.servers.as_ref().unwrap().jupyter.as_ref().unwrap();
    assert!(!message.contains(ssh.password.expose()), "{message}");
    assert!(!message.contains(jupyter.token.expose()), "{message}");
}

#[tokio::test]
async fn a_failed_page_fails_the_whole_list() {
    let cloud = TestCloud::start().await;
    let settings = ClientSettings { paging: Paging { page_size: 2, ..Paging::default() }, ..cloud.settings() };
    // Page 1 answers (a zero delay uses up the first scripted slot), page 2 fails on every attempt.
    cloud.server.push_fault(script(Endpoint::ListInstances, Fault::Delay { millis: 0 }, 1));
    cloud.server.push_fault(script(Endpoint::ListInstances, status(500), 4));
    let err = cloud.client_with(settings).list_instances(CLUSTER).await.unwrap_err();
    assert_eq!(err.page, Some(2), "{err}");
    assert!(matches!(err.kind, CloudErrorKind::Server { status: 500, .. }), "{err}");
    assert!(err.to_string().contains("page 2"));
}

#[tokio::test]
async fn paging_that_repeats_itself_is_refused() {
    let cloud = TestCloud::start().await;
    // A server that ignores our page parameter would answer page 1 forever.
    let settings = ClientSettings {
        paging: Paging { page_param: "p".into(), size_param: "pageSize".into(), page_size: 2, ..Paging::default() },
        ..cloud.settings()
    };
    let err = cloud.client_with(settings).list_instances(CLUSTER).await.unwrap_err();
    assert!(matches!(err.kind, CloudErrorKind::Incomplete(_)), "{err}");

    cloud.server.sim().settings.page_size = 2;
    let no_paging = ClientSettings {
        paging: Paging { page_param: String::new(), size_param: "pageSize".into(), page_size: 2, ..Paging::default() },
        ..cloud.settings()
    };
    let err = cloud.client_with(no_paging).list_instances(CLUSTER).await.unwrap_err();
    assert!(matches!(err.kind, CloudErrorKind::Incomplete(_)), "{err}");
}

#[tokio::test]
async fn an_unknown_status_is_kept_as_unknown() {
    let cloud = TestCloud::start().await;
    let client = cloud.client();
    let bob = by_display_name(&client, "nb-bob").await.unwrap();
    cloud.server.sim().override_status(&bob.name, Some("Hibernating".into())).unwrap();
    let seen = client.get_instance(CLUSTER, &bob.name).await.unwrap();
    assert_eq!(seen.status, InstanceStatus::Unknown("Hibernating".into()));
    assert!(!seen.status.is_settled());

    let aliased = cloud.client_with(ClientSettings {
        status_aliases: [("Hibernating".to_owned(), InstanceStatus::Stopped)].into(),
        ..cloud.settings()
    });
    assert_eq!(aliased.get_instance(CLUSTER, &bob.name).await.unwrap().status, InstanceStatus::Stopped);
}

#[tokio::test]
async fn illegal_transitions_and_unknown_names_are_rejected() {
    let cloud = TestCloud::start().await;
    let client = cloud.client();
    let alice = by_display_name(&client, "nb-alice").await.unwrap();

    let err = client.power_on(CLUSTER, &alice.name).await.unwrap_err();
    assert!(matches!(err.kind, CloudErrorKind::Rejected { status: 409, .. }), "{err}");
    let err = client.delete_instance(CLUSTER, &alice.name).await.unwrap_err();
    assert!(matches!(err.kind, CloudErrorKind::Rejected { status: 409, .. }), "running: shut down first; {err}");
    let err = client.power_off(CLUSTER, "instance-00000000", &PowerOff::default()).await.unwrap_err();
    assert!(matches!(err.kind, CloudErrorKind::NotFound { .. }), "{err}");
    let err = client.list_instances("no-such-cluster").await.unwrap_err();
    assert!(matches!(err.kind, CloudErrorKind::NotFound { .. }), "{err}");
    let bad_sku = CreateRequest { sku_id: "999".into(), ..create_request("x") };
    let err = client.create_instance(&bad_sku).await.unwrap_err();
    assert!(matches!(err.kind, CloudErrorKind::Rejected { status: 400, .. }), "{err}");
}

#[tokio::test]
async fn no_free_gpus_is_its_own_error() {
    let cloud = TestCloud::start().await;
    cloud.server.sim().faults.no_free_gpus = vec!["nvidia.com/gpu-4090".into()];
    let client = cloud.client();
    let skus = client.list_skus(REGION).await.unwrap();
    assert_eq!(skus.iter().find(|s| s.id == "66").unwrap().free_gpus, 0);
    let err = client.create_instance(&create_request("full")).await.unwrap_err();
    assert!(matches!(err.kind, CloudErrorKind::NoCapacity { .. }), "{err}");
    assert!(!err.may_have_applied());
}

#[tokio::test]
async fn a_failed_snapshot_keeps_the_instance_running() {
    let cloud = TestCloud::start().await;
    let client = cloud.client();
    let bob = by_display_name(&client, "nb-bob").await.unwrap();
    cloud.server.sim().faults.fail_next_snapshots = 1;
    let request =
        PowerOff { grace_period_seconds: 10, snapshot: Some(Snapshot { image: "nb-bob".into(), tag: "t".into() }) };
    client.power_off(CLUSTER, &bob.name, &request).await.unwrap();
    cloud.advance(Span::seconds(200));
    assert_eq!(client.get_instance(CLUSTER, &bob.name).await.unwrap().status, InstanceStatus::Running);
    assert!(!cloud.server.sim().images()[0].succeeded);
}

#[tokio::test]
async fn jupyter_answers_like_jupyter_server() {
    let cloud = TestCloud::start().await;
    let client = cloud.client();
    let http = reqwest::Client::new();
    let endpoint = |name: &str| {
        let instances =
            cloud.server.sim().instances().map(|i| (i.display_name.clone(), i.name.clone())).collect::<Vec<_>>();
        instances.into_iter().find(|(d, _)| d == name).unwrap().1
    };
    let bob = client.get_instance(CLUSTER, &endpoint("nb-bob")).await.unwrap();
    let jupyter = bob.servers.as_ref().unwrap().jupyter.clone().unwrap();
    assert!(jupyter.base_url.starts_with(&cloud.public_url));

    let status: serde_json::Value = http
        .get(format!("{}/api/status", jupyter.base_url))
        .query(&[("token", jupyter.token.expose())])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["connections"], 0);
    assert_eq!(status["kernels"], 1);
    // nb-bob has been idle for two hours.
    let last: chrono::DateTime<chrono::Utc> = status["last_activity"].as_str().unwrap().parse().unwrap();
    assert_eq!(last, crate::harness::start_time() - Span::hours(2));

    let kernels: Vec<serde_json::Value> = http
        .get(format!("{}/api/kernels", jupyter.base_url))
        .header("Authorization", format!("token {}", jupyter.token.expose()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(kernels[0]["execution_state"], "idle");

    let forbidden = http.get(format!("{}/api/status?token=nope", jupyter.base_url)).send().await.unwrap();
    assert_eq!(forbidden.status(), 403);

    let alice = client.get_instance(CLUSTER, &endpoint("nb-alice")).await.unwrap();
    let jupyter = alice.servers.as_ref().unwrap().jupyter.clone().unwrap();
    let kernels: Vec<serde_json::Value> = http
        .get(format!("{}/api/kernels?token={}", jupyter.base_url, jupyter.token.expose()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(kernels[0]["execution_state"], "busy", "a busy kernel is work even when nobody is connected");

    // Not running: the gateway answers 502.
    let dave = client.get_instance(CLUSTER, &endpoint("nb-dave")).await.unwrap();
    let jupyter = dave.servers.as_ref().unwrap().jupyter.clone().unwrap();
    let stopped =
        http.get(format!("{}/api/status?token={}", jupyter.base_url, jupyter.token.expose())).send().await.unwrap();
    assert_eq!(stopped.status(), 502);
}

#[tokio::test]
async fn the_client_refuses_bad_settings() {
    let cloud = TestCloud::start().await;
    let token = || Secret::new("t");
    assert!(MatrixDcClient::new(ClientSettings { base_url: "ftp://x".into(), ..cloud.settings() }, token()).is_err());
    assert!(MatrixDcClient::new(ClientSettings { namespace: " ".into(), ..cloud.settings() }, token()).is_err());
    assert!(MatrixDcClient::new(cloud.settings(), Secret::new("")).is_err());
    assert!(MatrixDcClient::new(ClientSettings { requests_per_second: 0, ..cloud.settings() }, token()).is_err());
    let client = MatrixDcClient::new(cloud.settings(), Secret::new("super-secret-token")).unwrap();
    assert!(!format!("{client:?}").contains("super-secret-token"));
}

#[tokio::test]
async fn a_server_that_does_not_page_is_read_in_one_call() {
    let cloud = TestCloud::start().await;
    cloud.server.sim().settings.ignores_paging = true;
    let settings = ClientSettings { paging: Paging { page_size: 2, ..Paging::default() }, ..cloud.settings() };
    let instances = cloud.client_with(settings).list_instances(CLUSTER).await.unwrap();
    assert_eq!(instances.len(), 6, "every instance, from the one page");
}
