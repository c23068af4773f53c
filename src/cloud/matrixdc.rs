//! The HTTP client for the MatrixDC compute API.

use std::collections::{BTreeMap, HashSet};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use reqwest::header::HeaderValue;
use reqwest::{Method, Url};
use serde::Deserialize;
use serde::de::{DeserializeOwned, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use super::body::{BodyError, read_body};
use super::wire;
use super::{
    Cloud, CloudError, CloudErrorKind, CreateRequest, DEFAULT_CAPACITY_PATTERNS, Endpoint, Instance, InstanceStatus,
    PowerOff, Region, Sku, StatusMap, classify, redact,
};
use crate::secret::Secret;

/// How the client reaches and treats the API. The token is not here: it comes
/// from the environment or a credential file, never from a settings file.
#[derive(Clone, Debug, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ClientSettings {
    /// Up to and including `/mdc/api/v1`.
    pub base_url: String,
    /// The `namespace` header: the user id.
    pub namespace: String,
    /// Each attempt, from connecting to the last byte of the answer.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub timeout: Duration,
    pub requests_per_second: u32,
    pub burst: u32,
    /// Retries after the first attempt, for reads, power_off, power_on and delete.
    pub retries: u32,
    /// A call with its retries: no retry starts that could end past this
    /// (default: four attempts' `timeout`, at least a minute).
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub call_timeout: Option<Duration>,
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub retry_min_delay: Duration,
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub retry_max_delay: Duration,
    /// A 429 asking for a longer wait than this ends the call instead.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub retry_after_max: Duration,
    pub paging: Paging,
    /// Extra API status strings and the state each means, e.g. `Hibernating: stopped`.
    pub status_aliases: BTreeMap<String, InstanceStatus>,
    /// Phrases in a 4xx body that mean "no free GPU" (the wording is undocumented).
    pub capacity_patterns: Vec<String>,
}

impl ClientSettings {
    pub fn call_timeout(&self) -> Duration {
        self.call_timeout.unwrap_or((self.timeout * 4).max(Duration::from_secs(60)))
    }
}

impl Default for ClientSettings {
    fn default() -> Self {
        ClientSettings {
            base_url: "https://neolink-ai.com/mdc/api/v1".into(),
            namespace: String::new(),
            timeout: Duration::from_secs(15),
            requests_per_second: 5,
            burst: 10,
            retries: 4,
            call_timeout: None,
            retry_min_delay: Duration::from_millis(500),
            retry_max_delay: Duration::from_secs(20),
            retry_after_max: Duration::from_secs(60),
            paging: Paging::default(),
            status_aliases: BTreeMap::new(),
            capacity_patterns: DEFAULT_CAPACITY_PATTERNS.iter().map(|p| p.to_string()).collect(),
        }
    }
}

/// The instance list answers `hasNextPage` but documents no paging
/// parameters; these are our guess, sent on every list call. An empty
/// `page_param` sends none, and then a `hasNextPage: true` is an error.
#[derive(Clone, Debug, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Paging {
    pub page_param: String,
    pub size_param: String,
    pub page_size: u32,
    pub first_page: u32,
    /// A list longer than this many pages is refused as runaway paging.
    pub max_pages: u32,
}

impl Default for Paging {
    fn default() -> Self {
        Paging {
            page_param: "page".into(),
            size_param: "pageSize".into(),
            page_size: 100,
            first_page: 1,
            max_pages: 1000,
        }
    }
}

/// The largest list page read: 10,000 instances in one page are under
/// 20 MB; anything larger is refused as malformed, never held. A whole
/// list, across its pages, is held to the same ceiling.
pub const BODY_MAX: usize = 64 << 20;

/// The largest of every other answer (regions, a region's SKUs, one
/// instance, an action's answer): small on any platform.
pub const SMALL_BODY_MAX: usize = 8 << 20;

fn body_max(endpoint: Endpoint) -> usize {
    match endpoint {
        Endpoint::ListInstances => BODY_MAX,
        _ => SMALL_BODY_MAX,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientSetupError {
    #[error("base_url {0:?} is not an http(s) URL")]
    BaseUrl(String),
    #[error("namespace is empty: set it to your MatrixDC user id")]
    Namespace,
    #[error("the API token is empty")]
    Token,
    #[error("requests_per_second and burst must be at least 1")]
    RateLimit,
    #[error("cannot build the HTTP client: {0}")]
    Http(String),
}

pub struct MatrixDcClient {
    http: reqwest::Client,
    base: Url,
    token: Secret,
    limiter: DefaultDirectRateLimiter,
    statuses: StatusMap,
    settings: ClientSettings,
    observer: Option<Arc<dyn super::CallObserver>>,
    /// The User-Agent, with the replica's name when it is one of several.
    agent: HeaderValue,
}

impl std::fmt::Debug for MatrixDcClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MatrixDcClient")
            .field("base", &self.base.as_str())
            .field("namespace", &self.settings.namespace)
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

/// One request, ready to be sent as many times as the retry policy allows.
struct Call<'a> {
    endpoint: Endpoint,
    method: Method,
    url: Url,
    body: Option<&'a serde_json::Value>,
}

const AGENT: &str = concat!("mdc-autoscaler/", env!("CARGO_PKG_VERSION"));

impl MatrixDcClient {
    pub fn new(settings: ClientSettings, token: Secret) -> Result<Self, ClientSetupError> {
        let base = Url::parse(settings.base_url.trim_end_matches('/'))
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && !u.cannot_be_a_base())
            .ok_or_else(|| ClientSetupError::BaseUrl(settings.base_url.clone()))?;
        if settings.namespace.trim().is_empty() {
            return Err(ClientSetupError::Namespace);
        }
        if token.is_empty() {
            return Err(ClientSetupError::Token);
        }
        let (Some(rate), Some(burst)) =
            (NonZeroU32::new(settings.requests_per_second), NonZeroU32::new(settings.burst))
        else {
            return Err(ClientSetupError::RateLimit);
        };
        let http = reqwest::Client::builder()
            .connect_timeout(settings.timeout)
            // No idle connections: a few calls a cycle, 30 s apart, gain little
            // from one, and it holds its buffers (a list page's) in between.
            .pool_max_idle_per_host(0)
            // A redirect would carry the namespace header elsewhere and have
            // another server's answers planned on: a 3xx is an error instead.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ClientSetupError::Http(e.to_string()))?;
        let statuses = settings
            .status_aliases
            .iter()
            .fold(StatusMap::default(), |map, (raw, status)| map.with_alias(raw, status.clone()));
        Ok(MatrixDcClient {
            http,
            base,
            token,
            limiter: RateLimiter::direct(Quota::per_second(rate).allow_burst(burst)),
            statuses,
            settings,
            observer: None,
            agent: HeaderValue::from_static(AGENT),
        })
    }

    /// Names the replica in each call's User-Agent (`mdc-autoscaler/V (replica NAME)`),
    /// so the platform's logs say which one acted. A name a header cannot carry is left out.
    pub fn for_replica(self, replica: &str) -> Self {
        match HeaderValue::from_str(&format!("{AGENT} (replica {replica})")) {
            Ok(agent) => MatrixDcClient { agent, ..self },
            Err(_) => self,
        }
    }

    /// Tells `observer` of every request as it ends.
    pub fn with_observer(self, observer: Arc<dyn super::CallObserver>) -> Self {
        MatrixDcClient { observer: Some(observer), ..self }
    }

    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        url.path_segments_mut().expect("checked in new()").extend(segments);
        url
    }

    /// Sends a call, retrying transient failures when the endpoint is idempotent.
    async fn send(&self, call: &Call<'_>) -> Result<Vec<u8>, CloudError> {
        let attempt = || self.attempt(call);
        if !call.endpoint.is_idempotent() || self.settings.retries == 0 {
            return attempt().await;
        }
        let backoff = ExponentialBuilder::default()
            .with_min_delay(self.settings.retry_min_delay)
            .with_max_delay(self.settings.retry_max_delay)
            .with_max_times(self.settings.retries as usize)
            .with_jitter();
        let retry_after_max = self.settings.retry_after_max;
        let (started, total, timeout) = (Instant::now(), self.settings.call_timeout(), self.settings.timeout);
        attempt
            .retry(backoff)
            .when(CloudError::is_transient)
            .adjust(move |error, delay| {
                let delay = match (error.retry_after(), delay) {
                    (Some(asked), Some(_)) if asked > retry_after_max => None,
                    (Some(asked), Some(_)) => Some(asked),
                    (None, delay) => delay,
                    (Some(_), None) => None,
                };
                // A retry that could only end past the call's time is not started.
                delay.filter(|delay| started.elapsed() + *delay + timeout <= total)
            })
            .notify(|error, delay| {
                tracing::warn!(endpoint = %call.endpoint, %error, retry_in_ms = delay.as_millis() as u64, "retrying MatrixDC call");
            })
            .await
    }

    async fn attempt(&self, call: &Call<'_>) -> Result<Vec<u8>, CloudError> {
        let fail = |kind| CloudError::new(call.endpoint, kind);
        self.limiter.until_ready().await;
        let started = Instant::now();
        let mut request = self
            .http
            .request(call.method.clone(), call.url.clone())
            .timeout(self.settings.timeout)
            .header(reqwest::header::USER_AGENT, self.agent.clone())
            .header("namespace", &self.settings.namespace)
            .header(reqwest::header::AUTHORIZATION, format!("bearer {}", self.token.expose()));
        if let Some(body) = call.body {
            request = request.json(body);
        }
        let result = async {
            let response = request.send().await?;
            let status = response.status();
            let retry_after = retry_after(response.headers());
            let body = read_body(response, body_max(call.endpoint)).await?;
            Ok::<_, BodyError>((status, retry_after, body))
        }
        .await;
        if let Some(observer) = &self.observer {
            let code = match &result {
                Ok((status, _, _)) => status.as_u16().to_string(),
                Err(BodyError::Transport(e)) if e.is_timeout() => "timeout".to_owned(),
                Err(BodyError::Transport(_)) => "transport".to_owned(),
                Err(BodyError::TooLarge { .. }) => "too_large".to_owned(),
            };
            observer.call_ended(call.endpoint, &code, started.elapsed());
        }
        let (status, retry_after, body) = result.map_err(|e| {
            fail(match e {
                BodyError::Transport(e) if e.is_timeout() => CloudErrorKind::Timeout,
                BodyError::Transport(e) => CloudErrorKind::Transport(transport_message(&e)),
                too_large @ BodyError::TooLarge { .. } => {
                    CloudErrorKind::Malformed { reason: too_large.to_string(), excerpt: String::new() }
                }
            })
        })?;
        tracing::debug!(endpoint = %call.endpoint, status = status.as_u16(), elapsed_ms = started.elapsed().as_millis() as u64, "MatrixDC call");
        if status.is_success() {
            return Ok(body);
        }
        let body = String::from_utf8_lossy(&body);
        let excerpt = self.excerpt(&error_message(&body).unwrap_or_else(|| body.into_owned()));
        Err(fail(classify(status.as_u16(), excerpt, retry_after, &self.settings.capacity_patterns)))
    }

    fn excerpt(&self, body: &str) -> String {
        redact::excerpt(body, &[self.token.expose()])
    }

    fn decode<T: DeserializeOwned>(&self, endpoint: Endpoint, body: &[u8]) -> Result<T, CloudError> {
        serde_json::from_slice(body).map_err(|e| self.malformed(endpoint, e.to_string(), body))
    }

    fn malformed(&self, endpoint: Endpoint, reason: String, body: &[u8]) -> CloudError {
        CloudError::new(
            endpoint,
            CloudErrorKind::Malformed { reason, excerpt: self.excerpt(&String::from_utf8_lossy(body)) },
        )
    }

    /// power_off, power_on and delete answer the JSON string `"ok"`; power_on's
    /// answer is undocumented, so an empty body passes too.
    fn expect_ok(&self, endpoint: Endpoint, body: &[u8]) -> Result<(), CloudError> {
        let trimmed = body.trim_ascii();
        match serde_json::from_slice::<String>(trimmed) {
            Ok(word) if word.eq_ignore_ascii_case("ok") => Ok(()),
            _ if trimmed.is_empty() => Ok(()),
            _ => Err(self.malformed(endpoint, "expected \"ok\"".into(), body)),
        }
    }

    fn instance(&self, endpoint: Endpoint, raw: wire::Instance) -> Result<Instance, CloudError> {
        raw.into_domain(&self.statuses).map_err(|e| {
            CloudError::new(endpoint, CloudErrorKind::Malformed { reason: e.to_string(), excerpt: String::new() })
        })
    }

    /// One page of a cluster's instances, and the size of its body.
    async fn list_page(&self, cluster: &str, page: u32) -> Result<(Page, usize), CloudError> {
        let endpoint = Endpoint::ListInstances;
        let paging = &self.settings.paging;
        let mut url = self.url(&["clusters", cluster, "instances"]);
        if !paging.page_param.is_empty() {
            let mut query = url.query_pairs_mut();
            query.append_pair(&paging.page_param, &page.to_string());
            if !paging.size_param.is_empty() {
                query.append_pair(&paging.size_param, &paging.page_size.to_string());
            }
        }
        let body = self.send(&Call { endpoint, method: Method::GET, url, body: None }).await?;
        let mut json = serde_json::Deserializer::from_slice(&body);
        PageSeed { statuses: &self.statuses }
            .deserialize(&mut json)
            .and_then(|page| json.end().map(|()| (page, body.len())))
            .map_err(|e| self.malformed(endpoint, e.to_string(), &body))
    }
}

impl Cloud for MatrixDcClient {
    async fn list_regions(&self) -> Result<Vec<Region>, CloudError> {
        let endpoint = Endpoint::ListRegions;
        let url = self.url(&["regions"]);
        let body = self.send(&Call { endpoint, method: Method::GET, url, body: None }).await?;
        let regions: Vec<wire::Region> = self.decode(endpoint, &body)?;
        Ok(regions.into_iter().map(Region::from).collect())
    }

    async fn list_skus(&self, region_id: &str) -> Result<Vec<Sku>, CloudError> {
        let endpoint = Endpoint::ListSkus;
        let mut url = self.url(&["skus", "computings"]);
        url.query_pairs_mut().append_pair("region_id", region_id);
        let body = self.send(&Call { endpoint, method: Method::GET, url, body: None }).await?;
        let skus: Vec<wire::Sku> = self.decode(endpoint, &body)?;
        skus.into_iter()
            .map(|sku| sku.into_domain().map_err(|e| self.malformed(endpoint, e.to_string(), b"")))
            .collect()
    }

    async fn list_instances(&self, cluster: &str) -> Result<Vec<Instance>, CloudError> {
        let endpoint = Endpoint::ListInstances;
        let paging = &self.settings.paging;
        let incomplete =
            |page: u32, why: String| CloudError::new(endpoint, CloudErrorKind::Incomplete(why)).on_page(page);
        let mut page = paging.first_page;
        let mut pages = 0u32;
        let mut names = HashSet::new();
        let mut instances = Vec::new();
        // A whole list is read under the ceiling of one answer: endless pages of new instances are refused too.
        let mut read = 0usize;
        let total = loop {
            let (list, bytes) = self.list_page(cluster, page).await.map_err(|e| e.on_page(page))?;
            pages += 1;
            read += bytes;
            if read > BODY_MAX {
                return Err(incomplete(page, format!("the list passed {} MiB in {pages} pages", BODY_MAX >> 20)));
            }
            for instance in list.instances {
                if !names.insert(instance.name.clone()) {
                    return Err(incomplete(
                        page,
                        format!("{} appears twice: the API may ignore the paging settings", instance.name),
                    ));
                }
                instances.push(instance);
            }
            if !list.has_next_page {
                break list.total_count;
            }
            if paging.page_param.is_empty() {
                return Err(incomplete(page, "hasNextPage is true but no page parameter is configured".into()));
            }
            if pages >= paging.max_pages {
                return Err(incomplete(page, format!("still more pages after {pages}")));
            }
            page += 1;
        };
        if (instances.len() as u64) < total as u64 {
            return Err(incomplete(page, format!("{} instances listed, totalCount says {total}", instances.len())));
        }
        Ok(instances)
    }

    async fn get_instance(&self, cluster: &str, name: &str) -> Result<Instance, CloudError> {
        let endpoint = Endpoint::GetInstance;
        let url = self.url(&["clusters", cluster, "instances", name]);
        let body = self.send(&Call { endpoint, method: Method::GET, url, body: None }).await?;
        let raw: wire::Instance = self.decode(endpoint, &body)?;
        self.instance(endpoint, raw)
    }

    async fn create_instance(&self, request: &CreateRequest) -> Result<Instance, CloudError> {
        let endpoint = Endpoint::CreateInstance;
        let url = self.url(&["clusters", &request.cluster, "instances"]);
        let body = serde_json::to_value(wire::CreateBody::new(&self.settings.namespace, request))
            .expect("the create body serialises");
        let answer = self.send(&Call { endpoint, method: Method::POST, url, body: Some(&body) }).await?;
        let raw: wire::Instance = self.decode(endpoint, &answer)?;
        self.instance(endpoint, raw)
    }

    async fn power_off(&self, cluster: &str, name: &str, request: &PowerOff) -> Result<(), CloudError> {
        let endpoint = Endpoint::PowerOff;
        let url = self.url(&["clusters", cluster, "instances", name, "power_off"]);
        let body = serde_json::to_value(wire::PowerOffBody::from(request)).expect("the power_off body serialises");
        let answer = self.send(&Call { endpoint, method: Method::POST, url, body: Some(&body) }).await?;
        self.expect_ok(endpoint, &answer)
    }

    async fn power_on(&self, cluster: &str, name: &str) -> Result<(), CloudError> {
        let endpoint = Endpoint::PowerOn;
        let url = self.url(&["clusters", cluster, "instances", name, "power_on"]);
        let answer = self.send(&Call { endpoint, method: Method::POST, url, body: None }).await?;
        self.expect_ok(endpoint, &answer)
    }

    async fn delete_instance(&self, cluster: &str, name: &str) -> Result<(), CloudError> {
        let endpoint = Endpoint::DeleteInstance;
        let mut url = self.url(&["clusters", cluster, "instances"]);
        url.query_pairs_mut().append_pair("name", name);
        let answer = self.send(&Call { endpoint, method: Method::DELETE, url, body: None }).await?;
        self.expect_ok(endpoint, &answer)
    }
}

/// The message of a JSON error body (`{"message": ...}` and its usual
/// spellings); the format is undocumented, so anything else is quoted as is.
/// One page of the instance list, read straight into domain instances: one
/// wire record at a time, never the whole page of them.
struct Page {
    has_next_page: bool,
    total_count: u32,
    instances: Vec<Instance>,
}

struct PageSeed<'a> {
    statuses: &'a StatusMap,
}

impl<'de> DeserializeSeed<'de> for PageSeed<'_> {
    type Value = Page;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Page, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for PageSeed<'_> {
    type Value = Page;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an instance list")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Page, A::Error> {
        #[derive(Deserialize)]
        struct Flag(#[serde(deserialize_with = "super::lenient::bool")] bool);
        #[derive(Deserialize)]
        struct Count(#[serde(deserialize_with = "super::lenient::u32")] u32);
        let mut page = Page { has_next_page: false, total_count: 0, instances: Vec::new() };
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match key.as_ref() {
                "hasNextPage" => page.has_next_page = map.next_value::<Flag>()?.0,
                "totalCount" => page.total_count = map.next_value::<Count>()?.0,
                "nodes" => page.instances = map.next_value_seed(NodesSeed { statuses: self.statuses })?,
                _ => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        Ok(page)
    }
}

/// `nodes`: `null` reads as none, each record becomes an instance as it is read.
struct NodesSeed<'a> {
    statuses: &'a StatusMap,
}

impl<'de> DeserializeSeed<'de> for NodesSeed<'_> {
    type Value = Vec<Instance>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Vec<Instance>, D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for NodesSeed<'_> {
    type Value = Vec<Instance>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a list of instances")
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<Vec<Instance>, E> {
        Ok(Vec::new())
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Vec<Instance>, E> {
        Ok(Vec::new())
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Vec<Instance>, D::Error> {
        d.deserialize_seq(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Instance>, A::Error> {
        let mut instances = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(raw) = seq.next_element::<wire::Instance>()? {
            instances.push(raw.into_domain(self.statuses).map_err(serde::de::Error::custom)?);
        }
        Ok(instances)
    }
}

fn error_message(body: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct ErrorBody {
        #[serde(alias = "msg", alias = "error")]
        message: String,
    }
    serde_json::from_str::<ErrorBody>(body).ok().map(|e| e.message).filter(|m| !m.trim().is_empty())
}

/// `Retry-After` in seconds; the HTTP-date form is rare from APIs and read as absent.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// reqwest's messages can include the URL; ours carry the endpoint instead,
/// and the URL never holds a secret, but keep the message to its kind.
fn transport_message(error: &reqwest::Error) -> String {
    let kind = if error.is_connect() {
        "could not connect"
    } else if error.is_body() || error.is_decode() {
        "answer body cut short"
    } else if error.is_request() {
        "request failed"
    } else {
        "transport error"
    };
    match std::error::Error::source(error) {
        Some(source) => format!("{kind}: {source}"),
        None => kind.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::error_message;

    #[test]
    fn error_bodies_give_their_message() {
        assert_eq!(error_message(r#"{"code":409,"message":"GPU \u4e0d\u8db3"}"#).as_deref(), Some("GPU 不足"));
        assert_eq!(error_message(r#"{"msg":"quota"}"#).as_deref(), Some("quota"));
        assert_eq!(error_message("<html>502</html>"), None);
        assert_eq!(error_message(r#"{"message":""}"#), None);
    }
}
