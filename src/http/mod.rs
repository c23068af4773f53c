//! The daemon's HTTP side: health checks, status, the last plan, and the
//! admin API (heartbeats and snoozes, behind the admin bearer token).
//! Listens on loopback unless told otherwise.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

mod snooze;

pub use snooze::SnoozeRule;

use crate::ledger::{AnyStore, Store};
use crate::metrics::Metrics;
use crate::plan::Plan;
use crate::reconcile::Held;
use crate::secret::Secret;
use crate::text::Shown;

/// What the loop last did, for `/readyz` and `/api/v1/status`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Status {
    pub started_at: Option<DateTime<Utc>>,
    pub dry_run: bool,
    pub cycles: u64,
    pub last_cycle_at: Option<DateTime<Utc>>,
    /// The last cycle that observed the cloud whole.
    pub last_success_at: Option<DateTime<Utc>>,
    pub observe_error: Option<String>,
    pub ledger_error: Option<String>,
    pub actions_taken: u64,
    pub instances: usize,
    #[serde(skip)]
    pub plan: Option<Plan>,
    /// Every instance with its next decision, as the last plan saw them.
    #[serde(skip)]
    pub fleet: Vec<crate::instances::InstanceRow>,
    /// Display name → platform name, to accept either in the admin API.
    #[serde(skip)]
    pub names: BTreeMap<String, String>,
    /// Policies the change guard holds until confirmed.
    pub held: Vec<Held>,
    /// Settings changed in the file that only a restart applies.
    pub restart_needed: Vec<&'static str>,
    /// The interval in force, for `/readyz`.
    #[serde(skip)]
    pub interval: Duration,
    /// The latest warning each instance was sent, for its snooze page.
    #[serde(skip)]
    pub warnings: BTreeMap<String, crate::plan::Warning>,
    /// Per policy, how long a snooze link may keep an instance, and the zone of its page.
    #[serde(skip)]
    pub snooze_rules: BTreeMap<String, snooze::SnoozeRule>,
    pub replica: Replica,
}

/// This replica among the others, or alone.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Replica {
    pub name: String,
    /// Whether it takes part in elections (PostgreSQL ledger, `settings.ha`).
    pub elects: bool,
    /// Whether it acts; a standby only observes, every `observe_every` intervals.
    pub leading: bool,
    pub observe_every: u32,
    /// Who leads, as the ledger has it.
    pub leader: Option<crate::ledger::leadership::Leader>,
}

pub struct Shared {
    pub status: RwLock<Status>,
    pub metrics: Arc<Metrics>,
    pub store: AnyStore,
    pub admin_token: Option<Secret>,
    /// Held policies confirmed through the admin API, for the loop to release.
    pub confirmed: std::sync::Mutex<Vec<String>>,
    /// The daemon's clock (simulated in the demo).
    pub now: Box<dyn Fn() -> DateTime<Utc> + Send + Sync>,
    /// Checks the tokens of snooze links.
    pub links: crate::notify::link::Links,
}

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/api/v1/status", get(status))
        .route("/api/v1/plan", get(plan))
        .route("/api/v1/instances", get(instances))
        .route("/api/v1/instances/{name}/heartbeat", post(heartbeat))
        .route("/api/v1/instances/{name}/snooze", post(snooze).delete(unsnooze))
        .route("/snooze/{token}", get(snooze::page).post(snooze::keep))
        .route("/api/v1/snoozes", get(snoozes))
        .route("/api/v1/policies/{name}/confirm", post(confirm))
        .with_state(shared)
}

type AppState = State<Arc<Shared>>;

async fn metrics(State(s): AppState) -> Response {
    let content_type = "text/plain; version=0.0.4; charset=utf-8";
    ([(header::CONTENT_TYPE, content_type)], s.metrics.render()).into_response()
}

/// Ready when a cycle observed the cloud whole within three intervals and the ledger answered.
async fn readyz(State(s): AppState) -> Response {
    let status = s.status.read().expect("status lock").clone();
    let now = (s.now)();
    // A standby, ready to take over, observes less often.
    let cycles = if status.replica.leading { 3 } else { status.replica.observe_every.saturating_add(2) };
    let fresh = status.last_success_at.is_some_and(|t| now - t <= status.interval * cycles as i32);
    match (fresh, &status.ledger_error) {
        (true, None) => (StatusCode::OK, "ready").into_response(),
        (false, _) => (StatusCode::SERVICE_UNAVAILABLE, "no recent successful cycle").into_response(),
        (true, Some(e)) => (StatusCode::SERVICE_UNAVAILABLE, format!("ledger: {e}")).into_response(),
    }
}

async fn status(State(s): AppState) -> Json<Status> {
    Json(s.status.read().expect("status lock").clone())
}

async fn plan(State(s): AppState) -> Response {
    match s.status.read().expect("status lock").plan.clone() {
        Some(plan) => Json(plan).into_response(),
        None => (StatusCode::NOT_FOUND, "no plan yet").into_response(),
    }
}

async fn instances(State(s): AppState) -> Response {
    let status = s.status.read().expect("status lock");
    match status.plan {
        Some(_) => Json(status.fleet.clone()).into_response(),
        None => (StatusCode::NOT_FOUND, "no plan yet").into_response(),
    }
}

/// 401 unless the request carries the admin bearer token (and one is configured).
fn refused(s: &Shared, headers: &HeaderMap) -> Option<Response> {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    match (&s.admin_token, given) {
        (Some(token), Some(given)) if !token.is_empty() && same(token.expose(), given) => None,
        _ => Some((StatusCode::UNAUTHORIZED, "admin bearer token required").into_response()),
    }
}

/// Compares in time that depends on the lengths only, not on where the
/// texts first differ: a caller cannot find the token a byte at a time.
fn same(token: &str, given: &str) -> bool {
    let differ = token.bytes().zip(given.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b));
    token.len() == given.len() && differ == 0
}

/// The platform name of the instance a path names, by display name or
/// name, among those the daemon has listed: 404 for any other, 503 before
/// the first listing.
fn resolve(s: &Shared, name: &str) -> Result<String, (StatusCode, String)> {
    let status = s.status.read().expect("status lock");
    if let Some(known) = status.names.get(name) {
        return Ok(known.clone());
    }
    if status.names.values().any(|n| n == name) {
        return Ok(name.to_owned());
    }
    let why = match status.last_success_at {
        None => {
            (StatusCode::SERVICE_UNAVAILABLE, "no listing yet: try again after the daemon's first cycle".to_owned())
        }
        Some(_) => (StatusCode::NOT_FOUND, format!("no instance `{}` in the daemon's listings", Shown(name))),
    };
    Err(why)
}

async fn heartbeat(State(s): AppState, Path(name): Path<String>, headers: HeaderMap) -> Response {
    if let Some(refusal) = refused(&s, &headers) {
        return refusal;
    }
    let instance = match resolve(&s, &name) {
        Ok(instance) => instance,
        Err(refusal) => return refusal.into_response(),
    };
    match s.store.record_heartbeat(&instance, (s.now)()).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    }
}

/// Lets a policy the change guard holds act from the next cycle.
async fn confirm(State(s): AppState, Path(name): Path<String>, headers: HeaderMap) -> Response {
    if let Some(refusal) = refused(&s, &headers) {
        return refusal;
    }
    let held = s.status.read().expect("status lock").held.iter().any(|h| h.policy == name);
    if !held {
        return (StatusCode::NOT_FOUND, "no such policy is held").into_response();
    }
    s.confirmed.lock().expect("confirmed lock").push(name);
    (StatusCode::ACCEPTED, "confirmed: the policy acts from the next cycle").into_response()
}

#[derive(Deserialize)]
struct SnoozeFor {
    #[serde(rename = "for")]
    span: String,
}

/// The longest lease one snooze gives: longer keeps, such as a month of
/// leave, belong in the policy (`protect`), where they are seen.
const SNOOZE_MAX: Duration = Duration::days(30);

async fn snooze(
    State(s): AppState,
    Path(name): Path<String>,
    headers: HeaderMap,
    Query(q): Query<SnoozeFor>,
) -> Response {
    if let Some(refusal) = refused(&s, &headers) {
        return refusal;
    }
    let span = humantime::parse_duration(&q.span).ok().and_then(|d| Duration::from_std(d).ok());
    let Some(span) = span.filter(|d| *d > Duration::zero() && *d <= SNOOZE_MAX) else {
        return (StatusCode::BAD_REQUEST, "for= must be a duration like 2h, at most 30 days").into_response();
    };
    let instance = match resolve(&s, &name) {
        Ok(instance) => instance,
        Err(refusal) => return refusal.into_response(),
    };
    let until = (s.now)() + span;
    match s.store.set_snooze(&instance, until).await {
        Ok(()) => Json(serde_json::json!({ "instance": instance, "until": until })).into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    }
}

/// Ends a snooze now (a snooze that ends now is none); 204 whether or not one was in force.
async fn unsnooze(State(s): AppState, Path(name): Path<String>, headers: HeaderMap) -> Response {
    if let Some(refusal) = refused(&s, &headers) {
        return refusal;
    }
    let instance = match resolve(&s, &name) {
        Ok(instance) => instance,
        Err(refusal) => return refusal.into_response(),
    };
    match s.store.set_snooze(&instance, (s.now)()).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    }
}

/// The snoozes in force: instance, display name, until when.
async fn snoozes(State(s): AppState) -> Response {
    let now = (s.now)();
    match s.store.snoozes().await {
        Ok(all) => {
            let status = s.status.read().expect("status lock");
            let shown = |name: &str| status.names.iter().find(|(_, n)| *n == name).map(|(d, _)| d.clone());
            let rows: Vec<serde_json::Value> = all
                .iter()
                .filter(|(_, until)| **until > now)
                .map(|(name, until)| serde_json::json!({ "instance": name, "display_name": shown(name), "until": until }))
                .collect();
            Json(rows).into_response()
        }
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    }
}
