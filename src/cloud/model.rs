//! Domain types: what the rest of the daemon knows about regions, SKUs and
//! instances, independent of how the wire spells them.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};

use crate::money::{Money, Ratio};
use crate::secret::Secret;

#[derive(Clone, Debug, PartialEq)]
pub struct Region {
    pub id: String,
    pub name: String,
    pub cluster: String,
    pub harbor_addr: String,
    pub created_at: Option<DateTime<FixedOffset>>,
    pub updated_at: Option<DateTime<FixedOffset>>,
}

/// How an instance or SKU is paid for (`sellingType` / `CostType`): one
/// type for the API's codes, the policy file, fleets and traces, and the
/// ledger, each spelling it by [`BillingType::name`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BillingType {
    PayAsYouGo,
    Monthly,
    Weekly,
    Daily,
    /// A code the vendor page does not list; treated like a prepaid term
    /// (nothing to save by stopping) until someone says otherwise.
    Unknown(String),
}

impl BillingType {
    pub fn from_code(code: &str) -> Self {
        match code.trim() {
            "1" => BillingType::PayAsYouGo,
            "2" => BillingType::Monthly,
            "3" => BillingType::Weekly,
            "4" => BillingType::Daily,
            other => BillingType::Unknown(other.to_owned()),
        }
    }

    pub fn code(&self) -> &str {
        match self {
            BillingType::PayAsYouGo => "1",
            BillingType::Monthly => "2",
            BillingType::Weekly => "3",
            BillingType::Daily => "4",
            BillingType::Unknown(code) => code,
        }
    }

    /// As files, JSON and the ledger write it; an unknown type by its code.
    pub fn name(&self) -> &str {
        match self {
            BillingType::PayAsYouGo => "pay_as_you_go",
            BillingType::Monthly => "monthly",
            BillingType::Weekly => "weekly",
            BillingType::Daily => "daily",
            BillingType::Unknown(code) => code,
        }
    }

    pub fn is_prepaid(&self) -> bool {
        !matches!(self, BillingType::PayAsYouGo)
    }
}

impl Serialize for BillingType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// Only the known types by name: a file cannot ask for an unknown one.
impl schemars::JsonSchema for BillingType {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "BillingType".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "enum": ["pay_as_you_go", "monthly", "weekly", "daily"] })
    }
}

impl<'de> Deserialize<'de> for BillingType {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        const NAMES: &[&str] = &["pay_as_you_go", "monthly", "weekly", "daily"];
        let name = String::deserialize(d)?;
        let known = [BillingType::PayAsYouGo, BillingType::Monthly, BillingType::Weekly, BillingType::Daily];
        known.into_iter().find(|b| b.name() == name).ok_or_else(|| serde::de::Error::unknown_variant(&name, NAMES))
    }
}

impl fmt::Display for BillingType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BillingType::PayAsYouGo => f.write_str("pay-as-you-go"),
            BillingType::Monthly => f.write_str("monthly"),
            BillingType::Weekly => f.write_str("weekly"),
            BillingType::Daily => f.write_str("daily"),
            BillingType::Unknown(code) => write!(f, "billing type {code:?}"),
        }
    }
}

/// A discount window: `ratio` applies inside `[start, end)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Discount {
    pub id: String,
    pub ratio: Ratio,
    pub start: DateTime<FixedOffset>,
    pub end: DateTime<FixedOffset>,
}

/// What one instance of a SKU gets: the GPUs, CPU, memory and disks.
#[derive(Clone, Debug, PartialEq)]
pub struct Hardware {
    pub gpu_product: String,
    pub gpu_series: String,
    /// The scheduler's resource (`nvidia.com/gpu-h20`): SKUs of one model share its free count.
    pub gpu_resource_key: String,
    pub gpu_count: u32,
    pub gpu_memory_gb: u32,
    pub cpu_cores: u32,
    pub cpu_arch: String,
    pub cpu_series: String,
    pub cpu_vendor: String,
    pub memory_gb: u32,
    pub system_storage_gb: u32,
    pub data_storage_gb: u32,
}

/// A computing SKU: one GPU spec at one price in one region.
#[derive(Clone, Debug, PartialEq)]
pub struct Sku {
    pub id: String,
    pub name: String,
    pub region_id: String,
    pub region_name: String,
    pub cluster: String,
    pub hardware: Hardware,
    pub billing_type: BillingType,
    /// List price per hour.
    pub price_per_hour: Money,
    /// `None` when the SKU shows no usable window (no ratio, or unset times).
    pub discount: Option<Discount>,
    pub free_gpus: u32,
}

/// Instance states. The API's strings for most of them are not documented,
/// so they are read through a [`StatusMap`]; anything it does not know stays
/// `Unknown` and is never acted on.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InstanceStatus {
    Creating,
    Starting,
    Running,
    Stopping,
    Stopped,
    Deleting,
    Failed,
    Unknown(String),
}

impl schemars::JsonSchema for InstanceStatus {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "InstanceStatus".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "enum": ["creating", "starting", "running", "stopping", "stopped", "deleting", "failed"]
        })
    }
}

impl InstanceStatus {
    /// A state an action may start from; everything else is waited out.
    pub fn is_settled(&self) -> bool {
        matches!(self, InstanceStatus::Running | InstanceStatus::Stopped)
    }

    pub fn label(&self) -> &str {
        match self {
            InstanceStatus::Creating => "creating",
            InstanceStatus::Starting => "starting",
            InstanceStatus::Running => "running",
            InstanceStatus::Stopping => "stopping",
            InstanceStatus::Stopped => "stopped",
            InstanceStatus::Deleting => "deleting",
            InstanceStatus::Failed => "failed",
            InstanceStatus::Unknown(_) => "unknown",
        }
    }
}

impl fmt::Display for InstanceStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InstanceStatus::Unknown(raw) => write!(f, "unknown status {raw:?}"),
            known => f.write_str(known.label()),
        }
    }
}

/// API status strings → states. Matching ignores case, spaces, `-` and `_`,
/// so `Shutting down`, `ShuttingDown` and `shutting_down` are one word.
#[derive(Clone, Debug)]
pub struct StatusMap(BTreeMap<String, InstanceStatus>);

impl Default for StatusMap {
    /// `Creating` and `Running` are confirmed by the vendor page; the others
    /// are the UI's names (Starting, Shutting down, Shutdown, Deleting) and
    /// the usual Kubernetes words.
    fn default() -> Self {
        use InstanceStatus::*;
        let words: [(&str, InstanceStatus); 16] = [
            ("creating", Creating),
            ("pending", Creating),
            ("starting", Starting),
            ("poweringon", Starting),
            ("running", Running),
            ("stopping", Stopping),
            ("shuttingdown", Stopping),
            ("poweringoff", Stopping),
            ("stopped", Stopped),
            ("shutdown", Stopped),
            ("poweredoff", Stopped),
            ("deleting", Deleting),
            ("terminating", Deleting),
            ("failed", Failed),
            ("error", Failed),
            ("creationfailed", Failed),
        ];
        StatusMap(words.into_iter().map(|(word, status)| (word.to_owned(), status)).collect())
    }
}

impl StatusMap {
    /// Adds or overrides the state an API string means (from settings).
    pub fn with_alias(mut self, raw: &str, status: InstanceStatus) -> Self {
        self.0.insert(Self::normalise(raw), status);
        self
    }

    pub fn parse(&self, raw: &str) -> InstanceStatus {
        self.0.get(&Self::normalise(raw)).cloned().unwrap_or_else(|| InstanceStatus::Unknown(raw.to_owned()))
    }

    fn normalise(raw: &str) -> String {
        raw.chars().filter(|c| !matches!(c, ' ' | '-' | '_')).flat_map(char::to_lowercase).collect()
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Resources {
    pub cpu: String,
    pub memory: String,
    pub gpu_count: u32,
    pub gpu_type: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct VolumeMount {
    pub path: String,
    pub kind: String,
    pub size_gb: u32,
    pub pvc_name: String,
    pub display_name: String,
    pub filesystem_type: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Pod {
    pub name: String,
    pub containers: Vec<String>,
    pub node: String,
    pub ip: String,
}

/// The billing choices an instance was created with (`cost`).
#[derive(Clone, Debug, PartialEq)]
pub struct InstanceCost {
    pub billing_type: BillingType,
    pub term: String,
    pub discount_id: String,
    pub sku_id: String,
    pub disk_sku_id: String,
    pub coupon_id: String,
}

/// A Jupyter server: its base URL without the token, and the token apart.
#[derive(Clone, Debug, PartialEq)]
pub struct JupyterEndpoint {
    pub base_url: String,
    pub token: Secret,
}

impl JupyterEndpoint {
    /// Splits `http://host/jupyter?token=abc` into base and token.
    pub fn from_url(url: &str) -> Self {
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let token = query.split('&').find_map(|pair| pair.strip_prefix("token=")).unwrap_or_default();
        JupyterEndpoint { base_url: base.trim_end_matches('/').to_owned(), token: Secret::new(token) }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Ssh {
    pub address: String,
    pub password: Secret,
}

#[derive(Clone, Debug, PartialEq, Default)]
pub struct Servers {
    pub jupyter: Option<JupyterEndpoint>,
    pub tensorboard: Option<String>,
    pub ssh: Option<Ssh>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Instance {
    /// The platform's name, `instance-` and 8 hex digits: the key for every call.
    pub name: String,
    pub display_name: String,
    pub namespace: String,
    /// The cluster name (the wire calls it `Region`).
    pub cluster: String,
    pub uid: String,
    pub description: String,
    pub annotations: BTreeMap<String, String>,
    pub image: String,
    pub replicas: u32,
    pub resources: Resources,
    pub volume_mounts: Vec<VolumeMount>,
    pub created_at: Option<DateTime<FixedOffset>>,
    pub updated_at: Option<DateTime<FixedOffset>>,
    pub scheduled_stop_at: Option<DateTime<FixedOffset>>,
    pub status: InstanceStatus,
    pub cost: InstanceCost,
    pub servers: Option<Servers>,
    pub pods: Vec<Pod>,
}

impl Instance {
    pub const UNIT_PRICE_ANNOTATION: &str = "neolink.ai/unit-price";
    /// The annotations kept from the wire; any other is dropped on reading.
    pub const READ_ANNOTATIONS: &[&str] = &[Self::UNIT_PRICE_ANNOTATION];

    /// The `neolink.ai/unit-price` annotation: fen per hour (inferred).
    pub fn unit_price_per_hour(&self) -> Option<Money> {
        let fen = self.annotations.get(Self::UNIT_PRICE_ANNOTATION)?;
        fen.trim().parse::<i64>().ok().map(Money::from_fen)
    }
}

/// A new data volume for a create.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VolumeSpec {
    pub path: String,
    pub size_gb: u32,
    pub kind: String,
}

/// Everything a create needs; the namespace comes from the client's settings.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CreateRequest {
    pub cluster: String,
    pub display_name: String,
    pub image: String,
    pub sku_id: String,
    pub billing_type: BillingType,
    /// `CostTime`, e.g. `3D`; empty for pay-as-you-go.
    pub term: String,
    pub coupon_id: String,
    pub disk_sku_id: String,
    pub volumes: Vec<VolumeSpec>,
    /// Empty means the platform's default region.
    pub region: String,
}

/// Save the system disk as an image while powering off.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Snapshot {
    pub image: String,
    pub tag: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PowerOff {
    pub grace_period_seconds: u32,
    pub snapshot: Option<Snapshot>,
}

impl Default for PowerOff {
    fn default() -> Self {
        PowerOff { grace_period_seconds: 10, snapshot: None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_words_match_loosely_and_unknown_stays_unknown() {
        let map = StatusMap::default();
        assert_eq!(map.parse("Running"), InstanceStatus::Running);
        assert_eq!(map.parse("Shutting down"), InstanceStatus::Stopping);
        assert_eq!(map.parse("SHUTDOWN"), InstanceStatus::Stopped);
        assert_eq!(map.parse("Hibernating"), InstanceStatus::Unknown("Hibernating".into()));
        let map = map.with_alias("Hibernating", InstanceStatus::Stopped);
        assert_eq!(map.parse("hibernating"), InstanceStatus::Stopped);
    }

    #[test]
    fn jupyter_url_splits_into_base_and_token() {
        let endpoint = JupyterEndpoint::from_url(
            "http://8d40c2e6.gw.neolink-ai.com/jupyter?token=7d27443c5718e75bee2da9f92fe6a50c",
        );
        assert_eq!(endpoint.base_url, "http://8d40c2e6.gw.neolink-ai.com/jupyter");
        assert_eq!(endpoint.token.expose(), "7d27443c5718e75bee2da9f92fe6a50c");
        assert!(!format!("{endpoint:?}").contains("7d27443c"));
    }

    #[test]
    fn billing_codes_round_trip() {
        for code in ["1", "2", "3", "4", "9"] {
            assert_eq!(BillingType::from_code(code).code(), code);
        }
        assert!(!BillingType::PayAsYouGo.is_prepaid());
        assert!(BillingType::Unknown("9".into()).is_prepaid());
    }
}
