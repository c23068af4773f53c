//! The fake MatrixDC server: the simulator over the vendor's exact wire
//! format, with auth, Jupyter endpoints per instance, fault injection, and an
//! admin API under `/_sim` (bill, faults, activity, clock, request counts).

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use super::faults::{Fault, Faults, Injector, ScriptedFault};
use super::{Activity, JupyterError, SimError, Simulator};
use crate::clock::Clock;
use crate::cloud::{Endpoint, wire};
use crate::listener::Bounded;
use crate::secret::Secret;

pub const API_PREFIX: &str = "/mdc/api/v1";

/// Namespace and token the fake server accepts when none are given.
pub const DEMO_NAMESPACE: &str = "demo";
pub const DEMO_TOKEN: &str = "demo-token";

/// One call that changes something, as the fake cloud logs it (`/_sim/changes`).
#[derive(Clone, Debug, serde::Serialize)]
pub struct Change {
    pub at: DateTime<Utc>,
    pub endpoint: &'static str,
    pub cluster: String,
    /// The instance's name; a create's display name.
    pub target: String,
    pub code: u16,
    /// The caller's User-Agent (a replica's name is in it).
    pub agent: String,
}

pub struct FakeCloud {
    sim: Mutex<Simulator>,
    clock: Clock,
    namespace: String,
    token: Secret,
    injector: Mutex<Injector>,
    requests: Mutex<BTreeMap<String, BTreeMap<u16, u64>>>,
    /// Every call that changes something, in order: who sent what, and the answer.
    changes: Mutex<Vec<Change>>,
    page_param: String,
    size_param: String,
}

impl FakeCloud {
    /// `public_url` is where clients reach this server; the Jupyter and
    /// TensorBoard links in instance records point back at it.
    pub fn new(mut sim: Simulator, clock: Clock, token: Secret, faults: Faults, public_url: &str) -> Arc<Self> {
        sim.set_gateway(public_url);
        sim.faults = faults.platform;
        let namespace = sim.namespace().to_owned();
        let seed = sim.now().timestamp() as u64;
        Arc::new(FakeCloud {
            sim: Mutex::new(sim),
            clock,
            namespace,
            token,
            injector: Mutex::new(Injector::new(faults.wire, seed)),
            requests: Mutex::new(BTreeMap::new()),
            changes: Mutex::new(Vec::new()),
            page_param: "page".into(),
            size_param: "pageSize".into(),
        })
    }

    pub fn sim(&self) -> MutexGuard<'_, Simulator> {
        self.sim.lock().expect("simulator lock")
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    pub fn push_fault(&self, fault: ScriptedFault) {
        self.injector.lock().expect("injector lock").push(fault);
    }

    /// Answers so far, per endpoint and HTTP status.
    pub fn requests(&self) -> BTreeMap<String, BTreeMap<u16, u64>> {
        self.requests.lock().expect("requests lock").clone()
    }

    /// The calls that changed something (or tried), in the order they came.
    pub fn changes(&self) -> Vec<Change> {
        self.changes.lock().expect("changes lock").clone()
    }

    /// Logs a create, power_off, power_on or delete: `target` is the
    /// instance's name (a create's display name), `agent` who sent it.
    fn log_change(&self, endpoint: Endpoint, cluster: &str, target: &str, headers: &HeaderMap, answer: &Response) {
        let agent = headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        self.changes.lock().expect("changes lock").push(Change {
            at: self.clock.now(),
            endpoint: endpoint.label(),
            cluster: cluster.to_owned(),
            target: target.to_owned(),
            code: answer.status().as_u16(),
            agent,
        });
    }

    pub fn router(self: &Arc<Self>) -> Router {
        let api = Router::new()
            .route("/regions", get(regions))
            .route("/skus/computings", get(skus))
            .route("/clusters/{cluster}/instances", get(list_instances).post(create_instance).delete(delete_instance))
            .route("/clusters/{cluster}/instances/{name}", get(get_instance))
            .route("/clusters/{cluster}/instances/{name}/power_off", post(power_off))
            .route("/clusters/{cluster}/instances/{name}/power_on", post(power_on));
        let admin = Router::new()
            .route("/bill", get(admin_bill))
            .route("/images", get(admin_images))
            .route("/requests", get(admin_requests))
            .route("/changes", get(admin_changes))
            .route("/faults", get(admin_faults).put(admin_set_faults))
            .route("/faults/script", get(admin_script).post(admin_push_script).delete(admin_clear_script))
            .route("/instances/{name}/activity", put(admin_activity))
            .route("/instances/{name}/status", put(admin_status))
            .route("/clock", get(admin_clock))
            .route("/clock/advance", post(admin_advance));
        Router::new()
            .nest(API_PREFIX, api)
            .nest("/_sim", admin)
            .route("/gw/{uid}/jupyter/api/status", get(jupyter_status))
            .route("/gw/{uid}/jupyter/api/kernels", get(jupyter_kernels))
            .with_state(Arc::clone(self))
    }

    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        axum::serve(Bounded::new(listener), self.router()).with_graceful_shutdown(shutdown).await
    }

    /// 401 without the right bearer token; 403 when the namespace is not ours.
    fn refusal(&self, headers: &HeaderMap, check_namespace: bool) -> Option<Response> {
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim());
        if bearer != Some(self.token.expose()) {
            return Some(error(StatusCode::UNAUTHORIZED, "unauthorized: missing or invalid bearer token", None));
        }
        let namespace = headers.get("namespace").and_then(|v| v.to_str().ok());
        if check_namespace && namespace != Some(self.namespace.as_str()) {
            return Some(error(StatusCode::FORBIDDEN, "forbidden: namespace does not match the token", None));
        }
        None
    }

    fn count(&self, endpoint: Endpoint, status: StatusCode) {
        self.count_label(endpoint.label(), status);
    }

    fn count_label(&self, label: &str, status: StatusCode) {
        let mut requests = self.requests.lock().expect("requests lock");
        *requests.entry(label.to_owned()).or_default().entry(status.as_u16()).or_default() += 1;
    }

    /// One API call: auth, then the injected fault if any, then the simulator.
    /// Latency holds the answer, not the work: like a real backend, the
    /// platform acts even when the client has given up waiting.
    async fn api(
        &self,
        headers: &HeaderMap,
        endpoint: Endpoint,
        page: Option<u32>,
        op: impl FnOnce(&mut Simulator, DateTime<Utc>) -> Result<Value, SimError>,
    ) -> Response {
        if let Some(refused) = self.refusal(headers, true) {
            self.count(endpoint, refused.status());
            return refused;
        }
        let injection = self.injector.lock().expect("injector lock").decide(endpoint, page);
        let response = match injection.fault {
            Some(Fault::Status { status, retry_after_seconds }) => error(
                StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                "injected fault",
                retry_after_seconds,
            ),
            fault => {
                let now = self.clock.now();
                let result = op(&mut self.sim(), now);
                match result {
                    Ok(value) => json_body(StatusCode::OK, &value, fault.as_ref()),
                    Err(e) => error(StatusCode::from_u16(e.http_status()).expect("valid status"), &e.to_string(), None),
                }
            }
        };
        self.count(endpoint, response.status());
        if !injection.delay.is_zero() {
            tokio::time::sleep(injection.delay).await;
        }
        response
    }
}

fn json_body(status: StatusCode, value: &Value, fault: Option<&Fault>) -> Response {
    let mut body = serde_json::to_vec(value).expect("JSON values serialise");
    match fault {
        Some(Fault::Malformed) => body = b"{\"nodes\": [<<not json>>]}".to_vec(),
        Some(Fault::Truncated) => body.truncate(body.len() / 2),
        _ => {}
    }
    (status, [(header::CONTENT_TYPE, "application/json; charset=utf-8")], body).into_response()
}

/// The error body: the platform's format is undocumented; this is a common Go one.
fn error(status: StatusCode, message: &str, retry_after: Option<u64>) -> Response {
    let mut response = json_body(status, &json!({ "code": status.as_u16(), "message": message }), None);
    if let Some(seconds) = retry_after {
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

fn ok() -> Value {
    Value::String("ok".into())
}

fn to_value(value: impl serde::Serialize) -> Value {
    serde_json::to_value(value).expect("wire types serialise")
}

fn parse_body<T: serde::de::DeserializeOwned + Default>(body: &[u8]) -> Result<T, SimError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| SimError::BadRequest(format!("invalid request body: {e}")))
}

type Shared = State<Arc<FakeCloud>>;
type Params = Query<HashMap<String, String>>;

async fn regions(State(s): Shared, headers: HeaderMap) -> Response {
    s.api(&headers, Endpoint::ListRegions, None, |sim, now| Ok(to_value(sim.list_regions(now)))).await
}

async fn skus(State(s): Shared, headers: HeaderMap, Query(q): Params) -> Response {
    let region = q.get("region_id").cloned().unwrap_or_default();
    s.api(&headers, Endpoint::ListSkus, None, |sim, now| Ok(to_value(sim.list_skus(now, &region)))).await
}

async fn list_instances(
    State(s): Shared,
    Path(cluster): Path<String>,
    headers: HeaderMap,
    Query(q): Params,
) -> Response {
    let number =
        |key: &str| q.get(key).map(|v| v.trim().parse::<u32>().map_err(|_| format!("{key} must be a positive number")));
    let (page, size) = match (number(&s.page_param), number(&s.size_param)) {
        (Some(Err(e)), _) | (_, Some(Err(e))) => {
            let response = error(StatusCode::BAD_REQUEST, &e, None);
            s.count(Endpoint::ListInstances, response.status());
            return response;
        }
        (page, size) => (page.and_then(Result::ok).unwrap_or(1).max(1), size.and_then(Result::ok)),
    };
    s.api(&headers, Endpoint::ListInstances, Some(page), |sim, now| {
        let (page, size) = match sim.settings.ignores_paging {
            true => (1, u32::MAX),
            false => (page, size.unwrap_or(sim.settings.page_size).clamp(1, 500)),
        };
        sim.list_instances(now, &cluster, page, size).map(to_value)
    })
    .await
}

async fn get_instance(State(s): Shared, Path((cluster, name)): Path<(String, String)>, headers: HeaderMap) -> Response {
    s.api(&headers, Endpoint::GetInstance, None, |sim, now| sim.get_instance(now, &cluster, &name).map(to_value)).await
}

async fn create_instance(State(s): Shared, Path(cluster): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    let display_name = parse_body::<wire::CreateBody>(&body).map(|b| b.display_name).unwrap_or_default();
    let answer = s
        .api(&headers, Endpoint::CreateInstance, None, |sim, now| {
            let body: wire::CreateBody = parse_body(&body)?;
            sim.create_instance(now, &cluster, &body).map(to_value)
        })
        .await;
    s.log_change(Endpoint::CreateInstance, &cluster, &display_name, &headers, &answer);
    answer
}

async fn power_off(
    State(s): Shared,
    Path((cluster, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let answer = s
        .api(&headers, Endpoint::PowerOff, None, |sim, now| {
            let body: wire::PowerOffBody = parse_body(&body)?;
            sim.power_off(now, &cluster, &name, &body).map(|()| ok())
        })
        .await;
    s.log_change(Endpoint::PowerOff, &cluster, &name, &headers, &answer);
    answer
}

async fn power_on(State(s): Shared, Path((cluster, name)): Path<(String, String)>, headers: HeaderMap) -> Response {
    let answer =
        s.api(&headers, Endpoint::PowerOn, None, |sim, now| sim.power_on(now, &cluster, &name).map(|()| ok())).await;
    s.log_change(Endpoint::PowerOn, &cluster, &name, &headers, &answer);
    answer
}

async fn delete_instance(
    State(s): Shared,
    Path(cluster): Path<String>,
    headers: HeaderMap,
    Query(q): Params,
) -> Response {
    let name = q.get("name").cloned().unwrap_or_default();
    let answer = s
        .api(&headers, Endpoint::DeleteInstance, None, |sim, now| {
            if name.is_empty() {
                return Err(SimError::BadRequest("query parameter name is required".into()));
            }
            sim.delete_instance(now, &cluster, &name).map(|()| ok())
        })
        .await;
    s.log_change(Endpoint::DeleteInstance, &cluster, &name, &headers, &answer);
    answer
}

/// jupyter_server takes its token from `?token=` or `Authorization: token …`.
fn jupyter_token(q: &HashMap<String, String>, headers: &HeaderMap) -> String {
    q.get("token").cloned().unwrap_or_else(|| {
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("token "))
            .unwrap_or_default()
            .to_owned()
    })
}

fn jupyter_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn jupyter_refusal(e: JupyterError) -> Response {
    match e {
        JupyterError::NotFound => (StatusCode::NOT_FOUND, "404 page not found").into_response(),
        JupyterError::NotRunning => (StatusCode::BAD_GATEWAY, "502 Bad Gateway").into_response(),
        JupyterError::Forbidden => {
            json_body(StatusCode::FORBIDDEN, &json!({ "message": "Forbidden", "reason": null }), None)
        }
    }
}

async fn jupyter_status(State(s): Shared, Path(uid): Path<String>, headers: HeaderMap, Query(q): Params) -> Response {
    let response = jupyter_status_answer(&s, &uid, &headers, &q);
    s.count_label("jupyter_status", response.status());
    response
}

fn jupyter_status_answer(s: &FakeCloud, uid: &str, headers: &HeaderMap, q: &HashMap<String, String>) -> Response {
    let now = s.clock.now();
    match s.sim().jupyter(now, uid, &jupyter_token(q, headers)) {
        Ok(view) => json_body(
            StatusCode::OK,
            &json!({
                "connections": view.connections,
                "kernels": view.busy_kernels + view.idle_kernels,
                "last_activity": jupyter_time(view.last_activity),
                "started": jupyter_time(view.started),
            }),
            None,
        ),
        Err(e) => jupyter_refusal(e),
    }
}

async fn jupyter_kernels(State(s): Shared, Path(uid): Path<String>, headers: HeaderMap, Query(q): Params) -> Response {
    let response = jupyter_kernels_answer(&s, &uid, &headers, &q);
    s.count_label("jupyter_kernels", response.status());
    response
}

fn jupyter_kernels_answer(s: &FakeCloud, uid: &str, headers: &HeaderMap, q: &HashMap<String, String>) -> Response {
    let now = s.clock.now();
    match s.sim().jupyter(now, uid, &jupyter_token(q, headers)) {
        Ok(view) => {
            let kernel = |n: u32, busy: bool| {
                json!({
                    "id": format!("{}-{n:04x}-4000-8000-{:012x}", &uid[..uid.len().min(8)], n),
                    "name": "python3",
                    "last_activity": jupyter_time(if busy { now } else { view.last_activity }),
                    "execution_state": if busy { "busy" } else { "idle" },
                    "connections": u32::from(n == 0 && view.connections > 0),
                })
            };
            let kernels: Vec<Value> = (0..view.busy_kernels)
                .map(|n| kernel(n, true))
                .chain((view.busy_kernels..view.busy_kernels + view.idle_kernels).map(|n| kernel(n, false)))
                .collect();
            json_body(StatusCode::OK, &Value::Array(kernels), None)
        }
        Err(e) => jupyter_refusal(e),
    }
}

/// Admin calls need the bearer token but no namespace.
fn admin(s: &FakeCloud, headers: &HeaderMap, act: impl FnOnce() -> Result<Value, SimError>) -> Response {
    if let Some(refused) = s.refusal(headers, false) {
        return refused;
    }
    match act() {
        Ok(value) => json_body(StatusCode::OK, &value, None),
        Err(e) => error(StatusCode::from_u16(e.http_status()).expect("valid status"), &e.to_string(), None),
    }
}

async fn admin_bill(State(s): Shared, headers: HeaderMap) -> Response {
    admin(&s, &headers, || {
        let mut sim = s.sim();
        sim.advance(s.clock.now());
        Ok(to_value(sim.bill()))
    })
}

async fn admin_images(State(s): Shared, headers: HeaderMap) -> Response {
    admin(&s, &headers, || {
        let mut sim = s.sim();
        sim.advance(s.clock.now());
        Ok(to_value(sim.images()))
    })
}

async fn admin_requests(State(s): Shared, headers: HeaderMap) -> Response {
    admin(&s, &headers, || Ok(to_value(s.requests())))
}

async fn admin_changes(State(s): Shared, headers: HeaderMap) -> Response {
    admin(&s, &headers, || Ok(to_value(s.changes())))
}

async fn admin_faults(State(s): Shared, headers: HeaderMap) -> Response {
    admin(&s, &headers, || {
        let wire = s.injector.lock().expect("injector lock").wire.clone();
        Ok(to_value(Faults { wire, platform: s.sim().faults.clone() }))
    })
}

async fn admin_set_faults(State(s): Shared, headers: HeaderMap, body: Bytes) -> Response {
    admin(&s, &headers, || {
        let faults: Faults = parse_body(&body)?;
        s.injector.lock().expect("injector lock").wire = faults.wire.clone();
        s.sim().faults = faults.platform.clone();
        Ok(to_value(faults))
    })
}

async fn admin_script(State(s): Shared, headers: HeaderMap) -> Response {
    admin(&s, &headers, || Ok(to_value(s.injector.lock().expect("injector lock").script().collect::<Vec<_>>())))
}

/// Takes one scripted fault or a list of them.
async fn admin_push_script(State(s): Shared, headers: HeaderMap, body: Bytes) -> Response {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(ScriptedFault),
        Many(Vec<ScriptedFault>),
    }
    admin(&s, &headers, || {
        let faults = match serde_json::from_slice(&body) {
            Ok(OneOrMany::One(fault)) => vec![fault],
            Ok(OneOrMany::Many(faults)) => faults,
            Err(e) => return Err(SimError::BadRequest(format!("invalid scripted fault: {e}"))),
        };
        let count = faults.len();
        faults.into_iter().for_each(|f| s.push_fault(f));
        Ok(json!({ "queued": count }))
    })
}

async fn admin_clear_script(State(s): Shared, headers: HeaderMap) -> Response {
    admin(&s, &headers, || {
        s.injector.lock().expect("injector lock").clear_script();
        Ok(ok())
    })
}

async fn admin_activity(State(s): Shared, Path(name): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    admin(&s, &headers, || {
        let activity: Activity = parse_body(&body)?;
        s.sim().set_activity(&name, activity).map(|()| ok())
    })
}

async fn admin_status(State(s): Shared, Path(name): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    #[derive(Default, Deserialize)]
    struct Override {
        status: Option<String>,
    }
    admin(&s, &headers, || {
        let body: Override = parse_body(&body)?;
        s.sim().override_status(&name, body.status).map(|()| ok())
    })
}

async fn admin_clock(State(s): Shared, headers: HeaderMap) -> Response {
    admin(&s, &headers, || Ok(json!({ "now": s.clock.now() })))
}

async fn admin_advance(State(s): Shared, headers: HeaderMap, Query(q): Params) -> Response {
    admin(&s, &headers, || {
        let by = q.get("by").map(String::as_str).unwrap_or("0s");
        let by = humantime::parse_duration(by)
            .ok()
            .and_then(|d| chrono::Duration::from_std(d).ok())
            .ok_or_else(|| SimError::BadRequest(format!("by={by:?} is not a duration like 90s")))?;
        let now = s.clock.advance(by).ok_or_else(|| {
            SimError::Conflict("the clock follows real time; start with a manual clock to move it".into())
        })?;
        s.sim().advance(now);
        Ok(json!({ "now": now }))
    })
}
