//! A fake MatrixDC server on a real loopback socket, with a manual clock, and
//! a client pointed at it.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use mdc_autoscaler::clock::Clock;
use mdc_autoscaler::cloud::matrixdc::{ClientSettings, MatrixDcClient, Paging};
use mdc_autoscaler::secret::Secret;
use mdc_autoscaler::sim::faults::Faults;
use mdc_autoscaler::sim::fleet::{DEFAULT_FLEET, FleetFile};
use mdc_autoscaler::sim::server::{API_PREFIX, DEMO_NAMESPACE, DEMO_TOKEN, FakeCloud};
use tokio::sync::oneshot;

pub const CLUSTER: &str = "host-cluster";
pub const REGION: &str = "14c5a9e3-0d09-4aa0-99d3-c096b80cceaa";

pub fn start_time() -> DateTime<Utc> {
    // 10:00 in Beijing: outside every discount window of the default fleet.
    Utc.with_ymd_and_hms(2026, 11, 27, 2, 0, 0).unwrap()
}

pub struct TestCloud {
    pub server: Arc<FakeCloud>,
    pub base_url: String,
    pub public_url: String,
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for TestCloud {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl TestCloud {
    pub async fn start() -> Self {
        Self::with_fleet(DEFAULT_FLEET).await
    }

    pub async fn with_fleet(fleet: &str) -> Self {
        let fleet = FleetFile::parse("test fleet", fleet).expect("fleet parses");
        let sim = fleet.build(DEMO_NAMESPACE, start_time()).expect("fleet builds");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
        let public_url = format!("http://{}", listener.local_addr().unwrap());
        let server =
            FakeCloud::new(sim, Clock::manual(start_time()), Secret::new(DEMO_TOKEN), Faults::default(), &public_url);
        let (stop, stopped) = oneshot::channel();
        tokio::spawn(Arc::clone(&server).serve(listener, async {
            let _ = stopped.await;
        }));
        TestCloud { server, base_url: format!("{public_url}{API_PREFIX}"), public_url, stop: Some(stop) }
    }

    /// Fast retries and a short timeout, so failure paths take milliseconds.
    pub fn settings(&self) -> ClientSettings {
        ClientSettings {
            base_url: self.base_url.clone(),
            namespace: DEMO_NAMESPACE.into(),
            timeout: Duration::from_millis(400),
            requests_per_second: 1000,
            burst: 1000,
            retries: 3,
            retry_min_delay: Duration::from_millis(5),
            retry_max_delay: Duration::from_millis(20),
            retry_after_max: Duration::from_secs(5),
            paging: Paging::default(),
            ..ClientSettings::default()
        }
    }

    pub fn client(&self) -> MatrixDcClient {
        self.client_with(self.settings())
    }

    pub fn client_with(&self, settings: ClientSettings) -> MatrixDcClient {
        MatrixDcClient::new(settings, Secret::new(DEMO_TOKEN)).expect("client builds")
    }

    /// Moves simulated time forward.
    pub fn advance(&self, by: chrono::Duration) {
        let now = self.server.clock().advance(by).expect("manual clock");
        self.server.sim().advance(now);
    }

    /// Answers the server gave for one endpoint and status.
    pub fn answered(&self, endpoint: &str, status: u16) -> u64 {
        self.server.requests().get(endpoint).and_then(|by_status| by_status.get(&status)).copied().unwrap_or(0)
    }

    /// Polls `check` until it holds or `deadline` passes (for work the
    /// server finishes after the client has given up on it).
    pub async fn eventually(&self, deadline: Duration, mut check: impl FnMut(&Self) -> bool) -> bool {
        let until = tokio::time::Instant::now() + deadline;
        while tokio::time::Instant::now() < until {
            if check(self) {
                return true;
            }
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        check(self)
    }
}
