//! Every sample answer on the vendor page parses into the right values, and
//! the fake server answers in exactly the samples' shape.

use std::collections::BTreeMap;

use mdc_autoscaler::cloud::{BillingType, InstanceStatus, StatusMap, wire};
use mdc_autoscaler::money::{Money, Ratio};
use serde_json::Value;

use crate::harness::{CLUSTER, REGION, TestCloud};

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{}/tests/fixtures/vendor/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

#[test]
fn regions_sample() {
    let regions: Vec<wire::Region> = serde_json::from_str(&fixture("regions.json")).unwrap();
    let region: mdc_autoscaler::cloud::Region = regions.into_iter().next().unwrap().into();
    assert_eq!(region.id, "14c5a9e3-0d09-4aa0-99d3-c096b80cceaa");
    assert_eq!(region.name, "北京一区");
    assert_eq!(region.cluster, "host-cluster");
    assert_eq!(region.harbor_addr, "images.neolink-ai.com");
    // The offset and the milliseconds are kept exactly.
    assert_eq!(region.created_at.unwrap().to_rfc3339(), "2024-07-15T12:00:23.227+08:00");
}

#[test]
fn skus_sample() {
    let skus: Vec<wire::Sku> = serde_json::from_str(&fixture("skus.json")).unwrap();
    let sku = skus.into_iter().next().unwrap().into_domain().unwrap();
    assert_eq!((sku.id.as_str(), sku.name.as_str(), sku.hardware.gpu_product.as_str()), ("2", "H20", "H20"));
    assert_eq!(sku.billing_type, BillingType::PayAsYouGo);
    assert_eq!(sku.price_per_hour, Money::from_yuan(10));
    assert_eq!(
        (sku.hardware.gpu_count, sku.hardware.gpu_memory_gb, sku.hardware.cpu_cores, sku.hardware.memory_gb),
        (1, 96, 24, 192)
    );
    assert_eq!((sku.hardware.system_storage_gb, sku.hardware.data_storage_gb, sku.free_gpus), (30, 50, 8));
    assert_eq!(sku.hardware.gpu_resource_key, "nvidia.com/gpu-h20");
    let discount = sku.discount.unwrap();
    assert_eq!(discount.id, "10000");
    assert_eq!(discount.ratio, Ratio::from_f64(0.48).unwrap());
    assert_eq!(discount.start.to_rfc3339(), "2024-08-15T15:26:38+08:00");
    assert_eq!(discount.end.to_rfc3339(), "2024-10-01T00:05:00+08:00");
}

/// The sample SKU with a price and a ratio no honest answer has: refused
/// before anything is summed on them (¥9e12/h at ratio 1000 once came out
/// as a negative price and a create "saving" ¥2e12/h).
#[test]
fn an_absurd_price_or_ratio_is_refused() {
    let sample = || serde_json::from_str::<Vec<wire::Sku>>(&fixture("skus.json")).unwrap().remove(0);
    for (price, ratio) in [(9e12, 0.48), (f64::INFINITY, 0.48), (-1.0, 0.48), (10.0, 1000.0), (10.0, 1.5)] {
        let sku = wire::Sku { price, ratio, ..sample() };
        assert!(sku.into_domain().is_err(), "price {price}, ratio {ratio} accepted");
    }
    let fair = wire::Sku { price: 100_000.0, ratio: 1.0, ..sample() };
    assert!(fair.into_domain().is_ok(), "the bounds themselves are accepted");
}

#[test]
fn create_answer_sample() {
    let raw: wire::Instance = serde_json::from_str(&fixture("create.json")).unwrap();
    let instance = raw.into_domain(&StatusMap::default()).unwrap();
    assert_eq!(instance.name, "instance-ccffxxxx");
    assert_eq!(instance.status, InstanceStatus::Creating);
    assert_eq!(instance.cluster, "host-cluster");
    assert!(instance.servers.is_none());
    assert!(instance.pods.is_empty());
    assert_eq!(instance.volume_mounts[1].size_gb, 0);
    assert_eq!(instance.unit_price_per_hour(), Some(Money::from_micros(2_500_000)));
    assert_eq!(instance.cost.sku_id, "66");
    assert_eq!(instance.resources.gpu_count, 1);
    assert_eq!(instance.updated_at, None, "Go zero time is unset");
    assert_eq!(instance.scheduled_stop_at, None);
    assert_eq!(instance.created_at.unwrap().to_rfc3339(), "2024-09-02T18:34:33+08:00");
}

#[test]
fn list_sample() {
    let list: wire::InstanceList = serde_json::from_str(&fixture("list.json")).unwrap();
    assert!(!list.has_next_page);
    assert_eq!(list.total_count, 1);
    let instance = list.nodes.into_iter().next().unwrap().into_domain(&StatusMap::default()).unwrap();
    assert_eq!(instance.status, InstanceStatus::Running);
    assert_eq!(instance.display_name, "test1");
    let servers = instance.servers.as_ref().unwrap();
    let jupyter = servers.jupyter.as_ref().unwrap();
    assert_eq!(jupyter.base_url, "http://8d40c2e6-a0b0-45c2-9b40-a0de065104f5.gw.neolink-ai.com/jupyter");
    assert_eq!(jupyter.token.expose(), "7d27443c5718e75bee2da9f92fe6a50c");
    assert_eq!(servers.ssh.as_ref().unwrap().password.expose(), "kEyIX5R2dqJD");
    assert_eq!(instance.pods[0].name, "instance-ccff84c2-dd6nm");
    assert_eq!(instance.pods[0].node, "gpu-4090-03");
    assert_eq!(instance.volume_mounts[1].size_gb, 50);
    // Secrets never show in Debug output.
    let debug = format!("{instance:?}");
    for secret in ["7d27443c5718e75bee2da9f92fe6a50c", "kEyIX5R2dqJD"] {
        assert!(!debug.contains(secret), "{secret} leaked into Debug");
    }
}

#[test]
fn get_sample() {
    let raw: wire::Instance = serde_json::from_str(&fixture("get.json")).unwrap();
    let instance = raw.into_domain(&StatusMap::default()).unwrap();
    assert_eq!(instance.name, "instance-4ca9xxxx");
    assert_eq!(instance.status, InstanceStatus::Running);
    assert_eq!(instance.pods[0].ip, "172.31.213.103");
    assert!(!instance.annotations.contains_key("neolink.ai/saveDataEnabled"));
}

#[test]
fn ok_samples() {
    for name in ["power_off.json", "delete.json"] {
        let ok: String = serde_json::from_str(&fixture(name)).unwrap();
        assert_eq!(ok, "ok");
    }
}

/// The structure of a JSON value: keys and value types, recursively. An
/// annotation map is compared as "strings" whatever its keys.
fn shape(value: &Value, key: &str) -> Value {
    match value {
        Value::Object(_) if key == "annotations" => Value::String("map of strings".into()),
        Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (k.clone(), shape(v, k))).collect()),
        Value::Array(items) => Value::Array(items.first().map(|v| shape(v, key)).into_iter().collect()),
        Value::String(_) => Value::String("string".into()),
        Value::Number(_) => Value::String("number".into()),
        Value::Bool(_) => Value::String("bool".into()),
        Value::Null => Value::Null,
    }
}

/// Key order as sent, which the samples show and serde_json keeps.
fn key_order(value: &Value) -> Vec<String> {
    match value {
        Value::Object(map) => map.keys().cloned().collect(),
        _ => vec![],
    }
}

async fn get_json(cloud: &TestCloud, path: &str) -> Value {
    reqwest::Client::new()
        .get(format!("{}{path}", cloud.base_url))
        .header("namespace", "demo")
        .header("Authorization", "bearer demo-token")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_fake_server_answers_in_the_samples_shape() {
    let cloud = TestCloud::start().await;
    let sample = |name: &str| serde_json::from_str::<Value>(&fixture(name)).unwrap();

    let regions = get_json(&cloud, "/regions").await;
    assert_eq!(shape(&regions, ""), shape(&sample("regions.json"), ""));

    let skus = get_json(&cloud, &format!("/skus/computings?region_id={REGION}")).await;
    assert_eq!(shape(&skus, ""), shape(&sample("skus.json"), ""));
    assert_eq!(key_order(&skus[0]), key_order(&sample("skus.json")[0]));

    let list = get_json(&cloud, &format!("/clusters/{CLUSTER}/instances")).await;
    let running = list["nodes"].as_array().unwrap().iter().find(|n| n["status"] == "Running").unwrap().clone();
    let envelope = |mut v: Value, node: Value| {
        v["nodes"] = Value::Array(vec![node]);
        v
    };
    assert_eq!(shape(&envelope(list.clone(), running.clone()), ""), shape(&sample("list.json"), ""));
    assert_eq!(key_order(&running), key_order(&sample("list.json")["nodes"][0]));

    let name = running["name"].as_str().unwrap();
    let got = get_json(&cloud, &format!("/clusters/{CLUSTER}/instances/{name}")).await;
    assert_eq!(shape(&got, ""), shape(&sample("get.json"), ""));

    let created: Value = reqwest::Client::new()
        .post(format!("{}/clusters/{CLUSTER}/instances", cloud.base_url))
        .header("namespace", "demo")
        .header("Authorization", "bearer demo-token")
        .body(
            r#"{"Cost":{"CostType":"1","CouponID":"","DiskSKUID":"1","GPUSKUID":"66","CostTime":""},
                "VolumeMount":[{"PathInContainer":"/root/data","Size":50,"Type":"shared-filesystem"}],
                "namespace":"demo","displayName":"test1","image":"images.neolink-ai.com/matrixdc/tensorflow:2.15.0","Region":""}"#,
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(shape(&created, ""), shape(&sample("create.json"), ""));
    assert_eq!(key_order(&created), key_order(&sample("create.json")));
    assert_eq!(created["volumeMounts"][1]["Size"], 0, "a new data volume shows Size 0");
    assert_eq!(created["status"], "Creating");

    // Annotation keys are the sample's.
    let keys = |v: &Value| v["annotations"].as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&created), keys(&sample("create.json")));
    let _: BTreeMap<String, String> = serde_json::from_value(created["annotations"].clone()).unwrap();
}
