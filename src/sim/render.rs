//! The simulator's state in the vendor's wire format, quirks included:
//! `+08:00` times, Go zero times, string resources, a create answer without
//! `servers` or `Pods` and with a data volume of `Size: 0`.

use std::collections::BTreeMap;

use chrono::{DateTime, FixedOffset, SubsecRound, Utc};

use super::{Phase, SimInstance, SimRegion, SimSku, Simulator, StatusNames};
use crate::cloud::wire;
use crate::secret::Secret;

/// The platform answers in Beijing time, to the second.
fn beijing(t: DateTime<Utc>) -> DateTime<FixedOffset> {
    t.trunc_subsecs(0).with_timezone(&FixedOffset::east_opt(8 * 3600).expect("valid offset"))
}

pub fn status_name(names: &StatusNames, phase: &Phase) -> String {
    match phase {
        Phase::Creating => &names.creating,
        Phase::Starting => &names.starting,
        Phase::Running => &names.running,
        Phase::Stopping { .. } => &names.stopping,
        Phase::Stopped => &names.stopped,
        Phase::Deleting => &names.deleting,
        Phase::Failed => &names.failed,
    }
    .clone()
}

pub fn region(r: &SimRegion) -> wire::Region {
    wire::Region {
        id: r.id.clone(),
        region: r.name.clone(),
        cluster_name: r.cluster.clone(),
        harbor_addr: r.harbor_addr.clone(),
        howler_id: r.howler_id.clone(),
        created_at: Some(beijing(r.created_at)),
        updated_at: Some(beijing(r.created_at)),
    }
}

pub fn sku(sim: &Simulator, s: &SimSku) -> wire::Sku {
    let region = sim.region(&s.region_id);
    let shown = s.discount.as_ref().and_then(|d| d.shown_at(sim.now()).map(|w| (d, w)));
    let h = &s.hardware;
    wire::Sku {
        name: s.name.clone(),
        region_id: s.region_id.clone(),
        cpu_arch: h.cpu_arch.clone(),
        cpu_series: h.cpu_series.clone(),
        cpu_cores: h.cpu_cores,
        memory_count: h.memory_gb,
        cpu_vendor: h.cpu_vendor.clone(),
        gpu_series: h.gpu_series.clone(),
        gpu_product: h.gpu_product.clone(),
        gpu_resource_key: h.gpu_resource_key.clone(),
        gpu_counts: h.gpu_count,
        gpu_memory: h.gpu_memory_gb,
        system_storage: h.system_storage_gb,
        data_storage: h.data_storage_gb,
        skus_id: s.id.clone(),
        region_name: region.map(|r| r.name.clone()).unwrap_or_default(),
        cluster_name: region.map(|r| r.cluster.clone()).unwrap_or_default(),
        selling_type: s.billing_type.code().to_owned(),
        ratio: shown.map_or(1.0, |(_, w)| w.ratio.as_f64()),
        discount_id: shown.map(|(d, _)| d.id.clone()).unwrap_or_default(),
        discount_start_time: shown.map(|(_, w)| beijing(w.start)),
        discount_end_time: shown.map(|(_, w)| beijing(w.end)),
        price: s.price_at(sim.now()).as_yuan_f64(),
        remain_gpu_count: sim.free_gpus(s),
    }
}

pub fn instance(sim: &Simulator, i: &SimInstance) -> wire::Instance {
    let sku = sim.skus.get(&i.sku_id);
    let creating = i.phase == Phase::Creating;
    let has_pod = i.holds_gpu && matches!(i.phase, Phase::Running | Phase::Stopping { .. } | Phase::Starting);
    let mut annotations = BTreeMap::new();
    let mut note = |key: &str, value: String| annotations.insert(format!("neolink.ai/{key}"), value);
    note("cost-coupon-id", i.coupon_id.clone());
    note("cost-discount-id", String::new());
    note("cost-disk-sku-id", i.disk_sku_id.clone());
    note("cost-gpu-sku-id", i.sku_id.clone());
    note("cost-order-id", i.order_id.clone());
    note("cost-time", i.term.clone());
    note("cost-type", i.billing_type.code().to_owned());
    note("description", String::new());
    note("display-name", i.display_name.clone());
    note("gpu.machine", sku.map(|s| s.hardware.gpu_product.clone()).unwrap_or_default());
    note("gpu.resource.key", sku.map(|s| s.hardware.gpu_resource_key.clone()).unwrap_or_default());
    note("region", i.cluster.clone());
    note("saveDataEnabled", "false".into());
    note("unit-price", sku.map(|s| (s.price_at(sim.now()).micros() / 10_000).to_string()).unwrap_or_default());

    let gateway = format!("{}/gw/{}", sim.gateway, i.uid);
    let ssh_host = format!("{}.gws.sim.invalid", i.uid);
    let servers = wire::Servers {
        jupyterlab: Some(Secret::new(format!("{gateway}/jupyter?token={}", i.access.jupyter_token))),
        tensorboard: Some(format!("{gateway}/monitor")),
        ssh: Some(wire::Ssh {
            ssh_addr: format!("ssh -p{} root@{ssh_host}", i.access.ssh_port),
            ssh_password: Secret::new(i.access.ssh_password.clone()),
        }),
    };
    let mut volume_mounts = vec![wire::VolumeMount {
        path_in_container: "/".into(),
        kind: "local-filesystem".into(),
        size: sku.map_or(30, |s| s.hardware.system_storage_gb),
        pvc_name: String::new(),
        display_name: "系统盘".into(),
        filesystem_type: "system".into(),
    }];
    volume_mounts.extend(i.volumes.iter().map(|v| wire::VolumeMount {
        path_in_container: v.path.clone(),
        kind: v.kind.clone(),
        size: if creating { 0 } else { v.size_gb },
        pvc_name: v.pvc.clone(),
        display_name: format!("磁盘-{}", v.pvc),
        filesystem_type: "data".into(),
    }));
    let pods = has_pod.then(|| wire::Pod {
        name: format!("{}-{}", i.name, i.access.pod_suffix),
        containers: vec![wire::Container { name: "worker".into() }],
        node_scheduled: i.access.node.clone(),
        ip: i.access.ip.clone(),
    });
    wire::Instance {
        name: i.name.clone(),
        namespace: sim.namespace.clone(),
        region: i.cluster.clone(),
        display_name: i.display_name.clone(),
        description: String::new(),
        annotations,
        uid: i.uid.clone(),
        servers: (!creating).then_some(servers),
        image: i.image.clone(),
        replicas: 1,
        resources: wire::Resources {
            cpu: sku.map(|s| s.hardware.cpu_cores.to_string()).unwrap_or_default(),
            memory: sku.map(|s| format!("{}Gi", s.hardware.memory_gb)).unwrap_or_default(),
            gpu_num: sku.map(|s| s.hardware.gpu_count.to_string()).unwrap_or_default(),
            gpu_type: sku.map(|s| s.hardware.gpu_product.clone()).unwrap_or_default(),
        },
        volume_mounts,
        creation_timestamp: Some(beijing(i.created_at)),
        update_timestamp: None,
        schedule_stop_timestamp: None,
        status: i.status_override.clone().unwrap_or_else(|| status_name(&sim.settings.statuses, &i.phase)),
        cost: wire::Cost {
            cost_type: i.billing_type.code().to_owned(),
            cost_time: i.term.clone(),
            discount_id: String::new(),
            gpu_sku_id: i.sku_id.clone(),
            disk_sku_id: i.disk_sku_id.clone(),
            coupon_id: i.coupon_id.clone(),
        },
        pods: (!creating).then(|| pods.into_iter().collect()),
    }
}
