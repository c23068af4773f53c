//! The Prometheus idle signal against a stand-in for Prometheus' HTTP API
//! over a real socket: what each answer means, and the daemon stopping only
//! what Prometheus says was idle long enough. (The PromQL itself is run by a
//! real Prometheus in `scripts/e2e-observability`.)

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use axum::extract::{Query as Params, State};
use axum::routing::get;
use chrono::{DateTime, Duration, Utc};
use mdc_autoscaler::config::load::load_str;
use mdc_autoscaler::ledger::{Ledger, Store};
use mdc_autoscaler::plan::{ActionKind, Reading};
use mdc_autoscaler::reconcile::Daemon;
use mdc_autoscaler::signals::prometheus::Query;
use serde_json::{Value, json};

use crate::harness::TestCloud;
use crate::ledger_contract::sqlite;

/// Answers by the first instance name the query mentions; records the queries.
#[derive(Clone, Default)]
struct Stub {
    answers: Arc<Mutex<BTreeMap<String, Value>>>,
    queries: Arc<Mutex<Vec<String>>>,
}

impl Stub {
    async fn start(&self) -> String {
        let app = axum::Router::new()
            .route(
                "/api/v1/query",
                get(|State(stub): State<Stub>, Params(params): Params<BTreeMap<String, String>>| async move {
                    let query = params.get("query").cloned().unwrap_or_default();
                    stub.queries.lock().unwrap().push(query.clone());
                    let answers = stub.answers.lock().unwrap();
                    let answer = answers.iter().find(|(name, _)| query.contains(name.as_str())).map(|(_, a)| a.clone());
                    axum::Json(answer.unwrap_or_else(|| vector(&[])))
                }),
            )
            .with_state(self.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        url
    }

    fn answer(&self, name: &str, answer: Value) {
        self.answers.lock().unwrap().insert(name.to_owned(), answer);
    }
}

fn vector(values: &[f64]) -> Value {
    let result: Vec<Value> =
        values.iter().map(|v| json!({"metric": {"gpu": "0"}, "value": [1_700_000_000.0, v.to_string()]})).collect();
    json!({"status": "success", "data": {"resultType": "vector", "result": result}})
}

const QUERY: &str = r#"avg(DCGM_FI_DEV_GPU_UTIL{pod="{name}"})"#;

#[tokio::test]
async fn each_answer_means_what_it_should() {
    let stub = Stub::default();
    let url = stub.start().await;
    let now = crate::harness::start_time();
    let http = reqwest::Client::new();
    let look = |name: &str| {
        let query = Query::new(&url, QUERY, 10.0, name, name, Duration::minutes(30), Duration::seconds(30));
        let http = http.clone();
        async move { query.look(&http, now, StdDuration::from_secs(2)).await.reading }
    };

    let last_active = now - Duration::minutes(12);
    stub.answer("busy-a-while-ago", vector(&[0.0, last_active.timestamp() as f64]));
    assert_eq!(look("busy-a-while-ago").await, Reading::IdleSince(last_active));

    stub.answer("quiet", vector(&[0.0]));
    assert_eq!(look("quiet").await, Reading::IdleSince(now - Duration::minutes(30)));

    assert!(matches!(look("never-scraped").await, Reading::Unreadable(why) if why.contains("no data")));

    stub.answer("bad-query", json!({"status": "error", "errorType": "bad_data", "error": "parse error"}));
    assert!(matches!(look("bad-query").await, Reading::Unreadable(why) if why.contains("parse error")));

    stub.answer("matrix", json!({"status": "success", "data": {"resultType": "matrix", "result": []}}));
    assert!(matches!(look("matrix").await, Reading::Unreadable(_)));

    let sent = stub.queries.lock().unwrap().clone();
    assert!(sent[0].contains(r#"pod="busy-a-while-ago""#), "{}", sent[0]);
    assert!(sent[0].contains("[1800s:30s]") && sent[0].contains("> 10"), "{}", sent[0]);

    let quoted = Query::new(&url, QUERY, 10.0, r#"a"b\c"#, "x", Duration::minutes(30), Duration::seconds(30));
    assert!(quoted.promql().contains(r#"pod="a\"b\\c""#), "{}", quoted.promql());

    let nowhere = Query::new("http://127.0.0.1:9", QUERY, 10.0, "x", "x", Duration::minutes(30), Duration::zero());
    let reading = nowhere.look(&http, now, StdDuration::from_secs(2)).await.reading;
    assert!(matches!(reading, Reading::Unreadable(_)), "{reading:?}");
}

#[tokio::test]
async fn the_daemon_stops_only_what_prometheus_says_was_idle_long_enough() {
    let cloud = TestCloud::start().await;
    let stub = Stub::default();
    let url = stub.start().await;
    let text = format!(
        r#"settings:
  api: {{ base_url: "{}", namespace: demo }}
  prometheus: {{ url: "{url}" }}
policies:
  - name: gpu-idle
    select: {{ cluster: host-cluster, display_name: "nb-*" }}
    idle:
      signals: [{{ prometheus: {{ query: '{QUERY}', threshold: 5 }} }}]
      stop_after: 30m
"#,
        cloud.base_url
    );
    let (config, report) = load_str("prometheus", &text);
    let config = config.unwrap_or_else(|| panic!("{report}"));
    let store = sqlite().await;
    store.migrate().await.unwrap();
    let mut daemon = Daemon::new(cloud.client(), Ledger::new(store), config, false);
    let names: BTreeMap<String, String> =
        cloud.server.sim().instances().map(|i| (i.display_name.clone(), i.name.clone())).collect();
    let now = |cloud: &TestCloud| -> DateTime<Utc> { cloud.server.clock().now() };
    // alice's GPUs were busy 5 minutes ago; bob's have had data but no work for the whole window;
    // carol's exporter has no data at all.
    stub.answer(&names["nb-alice"], vector(&[(now(&cloud) - Duration::minutes(5)).timestamp() as f64]));
    stub.answer(&names["nb-bob"], vector(&[0.0]));

    let report = daemon.step(now(&cloud)).await;
    let stopped: Vec<&str> = report
        .executed
        .iter()
        .filter(|e| matches!(e.action.kind, ActionKind::PowerOff(_)))
        .map(|e| e.action.instance.display_name.as_str())
        .collect();
    assert_eq!(stopped, ["nb-bob"], "{:?}", report.plan.as_ref().map(|p| &p.notes));
}
