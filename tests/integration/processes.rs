//! Running `mdc-autoscaler run` as a process, as users do: a fresh
//! PostgreSQL database for its ledger, a policy file, its log, signals, and
//! the fake cloud's admin API to look behind the scenes.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};

use mdc_autoscaler::cloud::matrixdc::{ClientSettings, MatrixDcClient};
use mdc_autoscaler::cloud::{Cloud, Instance};
use mdc_autoscaler::secret::Secret;

use crate::ledger_contract::uuid_like;

pub const TOKEN: &str = "demo-token";

/// A daemon process, killed when dropped.
pub struct Daemon(pub Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Daemon {
    pub fn signal(&self, name: &str) {
        assert!(Command::new("kill").args(["-s", name, &self.0.id().to_string()]).status().unwrap().success());
    }

    /// Waits for the process to end by itself.
    pub async fn exited(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "the daemon did not stop");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Polls `check` until it holds, or fails the test after `seconds`.
pub async fn until<F: std::future::Future<Output = bool>>(what: &str, seconds: u64, mut check: impl FnMut() -> F) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("gave up waiting for {what}");
}

/// A fresh database on the test PostgreSQL: its URL, and a pool on it for the test's own queries.
pub struct Database {
    pub name: String,
    pub url: String,
    pub admin: sqlx::PgPool,
    pub pool: sqlx::PgPool,
}

impl Database {
    pub async fn fresh() -> Self {
        Database::fresh_on(&std::env::var("DATABASE_URL").expect("DATABASE_URL: run through scripts/test")).await
    }

    /// A fresh database on the server at `url`.
    pub async fn fresh_on(url: &str) -> Self {
        let admin = sqlx::PgPool::connect(url).await.unwrap();
        let name = format!("mdc_run_{}", uuid_like());
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&admin).await.unwrap();
        let options = sqlx::postgres::PgConnectOptions::from_str(url).unwrap().database(&name);
        let url = format!("postgres://postgres@{}:{}/{name}", options.get_host(), options.get_port());
        // A pool that waits out outages and reconnects on its own.
        let pool = sqlx::postgres::PgPoolOptions::new().max_connections(2).connect_lazy_with(options);
        Database { name, url, admin, pool }
    }

    pub async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned())).fetch_one(&self.pool).await.unwrap()
    }
}

/// A folder for one test's policy file and daemon log.
pub struct Workspace {
    pub dir: PathBuf,
    pub port: u16,
}

impl Workspace {
    pub fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("mdc-run-{}", uuid_like()));
        std::fs::create_dir_all(&dir).unwrap();
        Workspace { dir, port: free_port() }
    }

    pub fn policy(&self) -> PathBuf {
        self.dir.join("policy.yaml")
    }

    /// Writes the policy: `settings` gets the API, token, listen address, a
    /// 1-second interval and the ledger; `rest` is appended as written.
    pub fn write_policy(&self, api: &str, rest: &str) {
        let text = format!(
            r#"settings:
  api: {{ base_url: "{api}", namespace: demo, timeout: 3s, retries: 1 }}
  token: {{ env: TEST_MDC_TOKEN }}
  admin_token: {{ env: TEST_ADMIN_TOKEN }}
  listen: 127.0.0.1:{}
  interval: 1s
  sku_interval: 1s
  timezone: Asia/Shanghai
  ledger: {{ url: {{ env: TEST_LEDGER_URL }} }}
{rest}"#,
            self.port
        );
        std::fs::write(self.policy(), text).unwrap();
    }

    pub fn log(&self) -> PathBuf {
        self.dir.join("daemon.log")
    }

    pub fn read_log(&self) -> String {
        let mut text = String::new();
        if let Ok(mut file) = std::fs::File::open(self.log()) {
            file.read_to_string(&mut text).unwrap();
        }
        text
    }

    /// Starts `run` on the policy, appending to the log.
    pub fn start(&self, ledger_url: &str) -> Daemon {
        Daemon(self.command(ledger_url).spawn().unwrap())
    }

    /// The command [`Workspace::start`] runs, to adjust before spawning.
    pub fn command(&self, ledger_url: &str) -> Command {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.log()).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_mdc-autoscaler"));
        command
            .args(["run", "--config"])
            .arg(self.policy())
            .env("TEST_MDC_TOKEN", TOKEN)
            .env("TEST_ADMIN_TOKEN", "admin-secret")
            .env("TEST_LEDGER_URL", ledger_url)
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(log);
        command
    }

    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

pub fn client(api: &str) -> MatrixDcClient {
    MatrixDcClient::new(
        ClientSettings { base_url: api.to_owned(), namespace: "demo".into(), ..ClientSettings::default() },
        Secret::new(TOKEN),
    )
    .unwrap()
}

/// Every instance of a cluster, retried through injected faults.
pub async fn instances(client: &MatrixDcClient, cluster: &str) -> Vec<Instance> {
    for _ in 0..50 {
        if let Ok(list) = client.list_instances(cluster).await {
            return list;
        }
    }
    panic!("the fake cloud never listed {cluster}");
}

/// The fake cloud's admin API (`/_sim/...`), next to its MatrixDC API.
pub fn sim_url(api: &str, path: &str) -> String {
    let root = api.trim_end_matches(mdc_autoscaler::sim::server::API_PREFIX);
    format!("{root}/_sim/{path}")
}

pub async fn sim(method: reqwest::Method, api: &str, path: &str, body: Option<serde_json::Value>) -> serde_json::Value {
    let mut request =
        reqwest::Client::new().request(method, sim_url(api, path)).header("namespace", "demo").bearer_auth(TOKEN);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let answer = request.send().await.unwrap();
    assert!(answer.status().is_success(), "{path}: {}", answer.status());
    answer.json().await.unwrap_or(serde_json::Value::Null)
}
