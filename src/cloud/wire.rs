//! The compute API's JSON, field for field as the vendor page spells it.
//! Reading is tolerant (see [`super::lenient`]); writing sends the types the
//! vendor's samples show, so the fake server answers exactly like the page.

use std::collections::BTreeMap;

use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};

use super::lenient;
use super::model::{self, BillingType, StatusMap};
use crate::money::{Money, Ratio};
use crate::secret::{Secret, serialize_exposed};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Region {
    #[serde(deserialize_with = "lenient::string")]
    pub id: String,
    #[serde(deserialize_with = "lenient::string")]
    pub region: String,
    #[serde(rename = "clusterName", deserialize_with = "lenient::string")]
    pub cluster_name: String,
    #[serde(rename = "harborAddr", deserialize_with = "lenient::string")]
    pub harbor_addr: String,
    #[serde(rename = "howlerID", deserialize_with = "lenient::string")]
    pub howler_id: String,
    #[serde(rename = "createdAt", deserialize_with = "lenient::time", serialize_with = "lenient::serialize_time")]
    pub created_at: Option<DateTime<FixedOffset>>,
    #[serde(rename = "updatedAt", deserialize_with = "lenient::time", serialize_with = "lenient::serialize_time")]
    pub updated_at: Option<DateTime<FixedOffset>>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Sku {
    #[serde(deserialize_with = "lenient::string")]
    pub name: String,
    #[serde(rename = "regionID", deserialize_with = "lenient::string")]
    pub region_id: String,
    #[serde(rename = "cpuArch", deserialize_with = "lenient::string")]
    pub cpu_arch: String,
    #[serde(rename = "cpuSeries", deserialize_with = "lenient::string")]
    pub cpu_series: String,
    #[serde(rename = "cpucores", deserialize_with = "lenient::u32")]
    pub cpu_cores: u32,
    #[serde(rename = "memoryCount", deserialize_with = "lenient::u32")]
    pub memory_count: u32,
    #[serde(rename = "cpuVendor", deserialize_with = "lenient::string")]
    pub cpu_vendor: String,
    #[serde(rename = "gpuSeries", deserialize_with = "lenient::string")]
    pub gpu_series: String,
    #[serde(rename = "gpuProduct", deserialize_with = "lenient::string")]
    pub gpu_product: String,
    #[serde(rename = "gpuResourceKey", deserialize_with = "lenient::string")]
    pub gpu_resource_key: String,
    #[serde(rename = "gpuCounts", deserialize_with = "lenient::u32")]
    pub gpu_counts: u32,
    #[serde(rename = "gpuMemory", deserialize_with = "lenient::u32")]
    pub gpu_memory: u32,
    #[serde(rename = "systemstorage", deserialize_with = "lenient::u32")]
    pub system_storage: u32,
    #[serde(rename = "datastorage", deserialize_with = "lenient::u32")]
    pub data_storage: u32,
    #[serde(rename = "skusID", deserialize_with = "lenient::string")]
    pub skus_id: String,
    #[serde(rename = "regionName", deserialize_with = "lenient::string")]
    pub region_name: String,
    #[serde(rename = "clusterName", deserialize_with = "lenient::string")]
    pub cluster_name: String,
    #[serde(rename = "sellingType", deserialize_with = "lenient::string")]
    pub selling_type: String,
    #[serde(deserialize_with = "lenient::f64", serialize_with = "lenient::serialize_number")]
    pub ratio: f64,
    #[serde(rename = "discountID", deserialize_with = "lenient::string")]
    pub discount_id: String,
    #[serde(
        rename = "discountStartTime",
        deserialize_with = "lenient::time",
        serialize_with = "lenient::serialize_time"
    )]
    pub discount_start_time: Option<DateTime<FixedOffset>>,
    #[serde(
        rename = "discountEndTime",
        deserialize_with = "lenient::time",
        serialize_with = "lenient::serialize_time"
    )]
    pub discount_end_time: Option<DateTime<FixedOffset>>,
    #[serde(deserialize_with = "lenient::f64", serialize_with = "lenient::serialize_number")]
    pub price: f64,
    #[serde(rename = "remainGPUCount", deserialize_with = "lenient::u32")]
    pub remain_gpu_count: u32,
}

/// `GET /clusters/{cluster}/instances`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct InstanceList {
    #[serde(rename = "hasNextPage", deserialize_with = "lenient::bool")]
    pub has_next_page: bool,
    #[serde(deserialize_with = "lenient::vec")]
    pub nodes: Vec<Instance>,
    #[serde(rename = "totalCount", deserialize_with = "lenient::u32")]
    pub total_count: u32,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Instance {
    #[serde(deserialize_with = "lenient::string")]
    pub name: String,
    #[serde(deserialize_with = "lenient::string")]
    pub namespace: String,
    /// The cluster name, despite the key.
    #[serde(rename = "Region", deserialize_with = "lenient::string")]
    pub region: String,
    #[serde(rename = "displayName", deserialize_with = "lenient::string")]
    pub display_name: String,
    #[serde(deserialize_with = "lenient::string")]
    pub description: String,
    #[serde(deserialize_with = "lenient::string_map")]
    pub annotations: BTreeMap<String, String>,
    #[serde(deserialize_with = "lenient::string")]
    pub uid: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub servers: Option<Servers>,
    #[serde(deserialize_with = "lenient::string")]
    pub image: String,
    #[serde(deserialize_with = "lenient::u32")]
    pub replicas: u32,
    pub resources: Resources,
    #[serde(rename = "volumeMounts", deserialize_with = "lenient::vec")]
    pub volume_mounts: Vec<VolumeMount>,
    #[serde(
        rename = "creationTimestamp",
        deserialize_with = "lenient::time",
        serialize_with = "lenient::serialize_time"
    )]
    pub creation_timestamp: Option<DateTime<FixedOffset>>,
    #[serde(
        rename = "updateTimestamp",
        deserialize_with = "lenient::time",
        serialize_with = "lenient::serialize_time"
    )]
    pub update_timestamp: Option<DateTime<FixedOffset>>,
    #[serde(
        rename = "ScheduleStopTimestamp",
        deserialize_with = "lenient::time",
        serialize_with = "lenient::serialize_time"
    )]
    pub schedule_stop_timestamp: Option<DateTime<FixedOffset>>,
    #[serde(deserialize_with = "lenient::string")]
    pub status: String,
    pub cost: Cost,
    #[serde(rename = "Pods", skip_serializing_if = "Option::is_none")]
    pub pods: Option<Vec<Pod>>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Servers {
    /// The whole URL is secret: it carries the token.
    #[serde(rename = "Jupyterlab", skip_serializing_if = "Option::is_none", serialize_with = "serialize_secret")]
    pub jupyterlab: Option<Secret>,
    #[serde(rename = "Tensorboard", skip_serializing_if = "Option::is_none")]
    pub tensorboard: Option<String>,
    #[serde(rename = "SSH", skip_serializing_if = "Option::is_none")]
    pub ssh: Option<Ssh>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Ssh {
    #[serde(rename = "sshAddr", deserialize_with = "lenient::string")]
    pub ssh_addr: String,
    #[serde(rename = "sshPassword", serialize_with = "serialize_exposed")]
    pub ssh_password: Secret,
}

fn serialize_secret<S: serde::Serializer>(secret: &Option<Secret>, s: S) -> Result<S::Ok, S::Error> {
    match secret {
        Some(secret) => serialize_exposed(secret, s),
        None => s.serialize_none(),
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Resources {
    #[serde(deserialize_with = "lenient::string")]
    pub cpu: String,
    #[serde(deserialize_with = "lenient::string")]
    pub memory: String,
    #[serde(rename = "GPUNum", deserialize_with = "lenient::string")]
    pub gpu_num: String,
    #[serde(rename = "GPUType", deserialize_with = "lenient::string")]
    pub gpu_type: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct VolumeMount {
    #[serde(rename = "PathInContainer", deserialize_with = "lenient::string")]
    pub path_in_container: String,
    #[serde(rename = "Type", deserialize_with = "lenient::string")]
    pub kind: String,
    #[serde(rename = "Size", deserialize_with = "lenient::u32")]
    pub size: u32,
    #[serde(rename = "PVCName", deserialize_with = "lenient::string")]
    pub pvc_name: String,
    #[serde(rename = "displayName", deserialize_with = "lenient::string")]
    pub display_name: String,
    #[serde(rename = "filesystemType", deserialize_with = "lenient::string")]
    pub filesystem_type: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Cost {
    #[serde(rename = "CostType", deserialize_with = "lenient::string")]
    pub cost_type: String,
    #[serde(rename = "CostTime", deserialize_with = "lenient::string")]
    pub cost_time: String,
    #[serde(rename = "DiscountID", deserialize_with = "lenient::string")]
    pub discount_id: String,
    #[serde(rename = "GPUSKUID", deserialize_with = "lenient::string")]
    pub gpu_sku_id: String,
    #[serde(rename = "DiskSKUID", deserialize_with = "lenient::string")]
    pub disk_sku_id: String,
    #[serde(rename = "CouponID", deserialize_with = "lenient::string")]
    pub coupon_id: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Pod {
    #[serde(rename = "Name", deserialize_with = "lenient::string")]
    pub name: String,
    #[serde(rename = "Containers", deserialize_with = "lenient::vec")]
    pub containers: Vec<Container>,
    #[serde(rename = "nodeScheduled", deserialize_with = "lenient::string")]
    pub node_scheduled: String,
    #[serde(deserialize_with = "lenient::string")]
    pub ip: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Container {
    #[serde(rename = "Name", deserialize_with = "lenient::string")]
    pub name: String,
}

/// The create body, in the vendor example's key order.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CreateBody {
    #[serde(rename = "Cost")]
    pub cost: CreateCost,
    #[serde(rename = "VolumeMount", deserialize_with = "lenient::vec")]
    pub volume_mount: Vec<CreateVolume>,
    #[serde(deserialize_with = "lenient::string")]
    pub namespace: String,
    #[serde(rename = "displayName", deserialize_with = "lenient::string")]
    pub display_name: String,
    #[serde(deserialize_with = "lenient::string")]
    pub image: String,
    #[serde(rename = "Region", deserialize_with = "lenient::string")]
    pub region: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CreateCost {
    #[serde(rename = "CostType", deserialize_with = "lenient::string")]
    pub cost_type: String,
    #[serde(rename = "CouponID", deserialize_with = "lenient::string")]
    pub coupon_id: String,
    #[serde(rename = "DiskSKUID", deserialize_with = "lenient::string")]
    pub disk_sku_id: String,
    #[serde(rename = "GPUSKUID", deserialize_with = "lenient::string")]
    pub gpu_sku_id: String,
    #[serde(rename = "CostTime", deserialize_with = "lenient::string")]
    pub cost_time: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CreateVolume {
    #[serde(rename = "PathInContainer", deserialize_with = "lenient::string")]
    pub path_in_container: String,
    #[serde(rename = "Size", deserialize_with = "lenient::u32")]
    pub size: u32,
    #[serde(rename = "Type", deserialize_with = "lenient::string")]
    pub kind: String,
}

/// The power_off body. The vendor's table types every field as a string but
/// its example sends `10` and `True`; we send the example's types and read either.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PowerOffBody {
    #[serde(rename = "gracePeriodSeconds", deserialize_with = "lenient::u32")]
    pub grace_period_seconds: u32,
    #[serde(rename = "needSnapshot", deserialize_with = "lenient::bool")]
    pub need_snapshot: bool,
    #[serde(rename = "imageName", deserialize_with = "lenient::string")]
    pub image_name: String,
    #[serde(deserialize_with = "lenient::string")]
    pub tag: String,
}

impl From<Region> for model::Region {
    fn from(w: Region) -> Self {
        model::Region {
            id: w.id,
            name: w.region,
            cluster: w.cluster_name,
            harbor_addr: w.harbor_addr,
            created_at: w.created_at,
            updated_at: w.updated_at,
        }
    }
}

/// What makes an answer's record unusable, however well-formed its JSON.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum Malformed {
    #[error("SKU {name:?} has no skusID")]
    NoSkuId { name: String },
    #[error("SKU {sku}: bad price {price}")]
    Price { sku: String, price: f64 },
    #[error("SKU {sku}: bad ratio {ratio}")]
    Ratio { sku: String, ratio: f64 },
    #[error("an instance ({display_name:?}) has no name")]
    NoName { display_name: String },
    #[error("instance {instance}: GPUNum {value:?} is not a count")]
    GpuCount { instance: String, value: String },
}

/// The highest list price believed, per hour: eight of the largest GPUs cost
/// a few hundred yuan; a price past this is a broken answer, refused before
/// any sum could overflow on it.
pub const PRICE_MAX: Money = Money::from_yuan(100_000);

impl Sku {
    pub fn into_domain(self) -> Result<model::Sku, Malformed> {
        if self.skus_id.is_empty() {
            return Err(Malformed::NoSkuId { name: self.name });
        }
        let price = Money::from_yuan_f64(self.price)
            .filter(|p| *p >= Money::ZERO && *p <= PRICE_MAX)
            .ok_or_else(|| Malformed::Price { sku: self.skus_id.clone(), price: self.price })?;
        let discount = match (self.discount_start_time, self.discount_end_time) {
            (Some(start), Some(end)) if self.ratio > 0.0 && start < end => Some(model::Discount {
                id: self.discount_id,
                // A discount takes off, never adds: a ratio above 1 is no discount the page knows.
                ratio: Ratio::from_f64(self.ratio)
                    .filter(|r| r.as_f64() <= 1.0)
                    .ok_or_else(|| Malformed::Ratio { sku: self.skus_id.clone(), ratio: self.ratio })?,
                start,
                end,
            }),
            _ => None,
        };
        Ok(model::Sku {
            id: self.skus_id,
            name: self.name,
            region_id: self.region_id,
            region_name: self.region_name,
            cluster: self.cluster_name,
            hardware: model::Hardware {
                gpu_product: self.gpu_product,
                gpu_series: self.gpu_series,
                gpu_resource_key: self.gpu_resource_key,
                gpu_count: self.gpu_counts,
                gpu_memory_gb: self.gpu_memory,
                cpu_cores: self.cpu_cores,
                cpu_arch: self.cpu_arch,
                cpu_series: self.cpu_series,
                cpu_vendor: self.cpu_vendor,
                memory_gb: self.memory_count,
                system_storage_gb: self.system_storage,
                data_storage_gb: self.data_storage,
            },
            billing_type: BillingType::from_code(&self.selling_type),
            price_per_hour: price,
            discount,
            free_gpus: self.remain_gpu_count,
        })
    }
}

impl Instance {
    pub fn into_domain(self, statuses: &StatusMap) -> Result<model::Instance, Malformed> {
        if self.name.is_empty() {
            return Err(Malformed::NoName { display_name: self.display_name });
        }
        let gpu_count = match self.resources.gpu_num.trim() {
            "" => 0,
            n => n.parse().map_err(|_| Malformed::GpuCount { instance: self.name.clone(), value: n.to_owned() })?,
        };
        let servers = self.servers.map(|s| model::Servers {
            jupyter: s.jupyterlab.map(|url| model::JupyterEndpoint::from_url(url.expose())),
            tensorboard: s.tensorboard,
            ssh: s.ssh.map(|ssh| model::Ssh { address: ssh.ssh_addr, password: ssh.ssh_password }),
        });
        Ok(model::Instance {
            status: statuses.parse(&self.status),
            name: self.name,
            display_name: self.display_name,
            namespace: self.namespace,
            cluster: self.region,
            uid: self.uid,
            description: self.description,
            // Only those the daemon reads: the rest, a few hundred bytes an
            // instance, would be most of a thousand-instance picture.
            annotations: self
                .annotations
                .into_iter()
                .filter(|(k, _)| model::Instance::READ_ANNOTATIONS.contains(&k.as_str()))
                .collect(),
            image: self.image,
            replicas: self.replicas,
            resources: model::Resources {
                cpu: self.resources.cpu,
                memory: self.resources.memory,
                gpu_count,
                gpu_type: self.resources.gpu_type,
            },
            volume_mounts: self
                .volume_mounts
                .into_iter()
                .map(|v| model::VolumeMount {
                    path: v.path_in_container,
                    kind: v.kind,
                    size_gb: v.size,
                    pvc_name: v.pvc_name,
                    display_name: v.display_name,
                    filesystem_type: v.filesystem_type,
                })
                .collect(),
            created_at: self.creation_timestamp,
            updated_at: self.update_timestamp,
            scheduled_stop_at: self.schedule_stop_timestamp,
            cost: model::InstanceCost {
                billing_type: BillingType::from_code(&self.cost.cost_type),
                term: self.cost.cost_time,
                discount_id: self.cost.discount_id,
                sku_id: self.cost.gpu_sku_id,
                disk_sku_id: self.cost.disk_sku_id,
                coupon_id: self.cost.coupon_id,
            },
            servers,
            pods: self
                .pods
                .unwrap_or_default()
                .into_iter()
                .map(|p| model::Pod {
                    name: p.name,
                    containers: p.containers.into_iter().map(|c| c.name).collect(),
                    node: p.node_scheduled,
                    ip: p.ip,
                })
                .collect(),
        })
    }
}

impl CreateBody {
    pub fn new(namespace: &str, request: &model::CreateRequest) -> Self {
        CreateBody {
            cost: CreateCost {
                cost_type: request.billing_type.code().to_owned(),
                coupon_id: request.coupon_id.clone(),
                disk_sku_id: request.disk_sku_id.clone(),
                gpu_sku_id: request.sku_id.clone(),
                cost_time: request.term.clone(),
            },
            volume_mount: request
                .volumes
                .iter()
                .map(|v| CreateVolume { path_in_container: v.path.clone(), size: v.size_gb, kind: v.kind.clone() })
                .collect(),
            namespace: namespace.to_owned(),
            display_name: request.display_name.clone(),
            image: request.image.clone(),
            region: request.region.clone(),
        }
    }
}

impl From<&model::PowerOff> for PowerOffBody {
    fn from(request: &model::PowerOff) -> Self {
        let (image_name, tag) = match &request.snapshot {
            Some(s) => (s.image.clone(), s.tag.clone()),
            None => (String::new(), String::new()),
        };
        PowerOffBody {
            grace_period_seconds: request.grace_period_seconds,
            need_snapshot: request.snapshot.is_some(),
            image_name,
            tag,
        }
    }
}
