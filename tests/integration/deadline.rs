//! A slow cloud, every answer two seconds late and one instance a page: a
//! cycle ends at its deadline, SIGHUP and SIGTERM are honoured within
//! seconds while a cycle is reading, and systemd hears READY at startup and
//! the watchdog as cycles end.

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use crate::fake_cloud_process::spawn;
use reqwest::Method;

use crate::processes::{Daemon, Database, Workspace, sim, until};

/// One instance a page, no retries, and this deadline.
fn write(work: &Workspace, api: &str, cycle_deadline: &str) {
    let text = format!(
        r#"settings:
  api: {{ base_url: "{api}", namespace: demo, timeout: 5s, retries: 0, paging: {{ page_size: 1 }} }}
  token: {{ env: TEST_MDC_TOKEN }}
  listen: 127.0.0.1:{port}
  interval: 1s
  sku_interval: 1s
  cycle_deadline: {cycle_deadline}
  ledger: {{ url: {{ env: TEST_LEDGER_URL }} }}
policies:
  - name: notebooks
    select: {{ cluster: host-cluster }}
    idle: {{ signals: [jupyter], stop_after: 30m }}
"#,
        port = work.port
    );
    std::fs::write(work.policy(), text).unwrap();
}

/// What the daemon told systemd, read within `seconds`.
fn told(socket: &UnixDatagram, wanted: &str, seconds: u64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut buf = [0u8; 512];
    while Instant::now() < deadline {
        if let Ok(n) = socket.recv(&mut buf)
            && String::from_utf8_lossy(&buf[..n]).lines().any(|l| l == wanted)
        {
            return true;
        }
    }
    false
}

/// Instance lists the fake cloud has answered.
async fn lists(api: &str) -> u64 {
    let requests = sim(Method::GET, api, "requests", None).await;
    requests["list_instances"]["200"].as_u64().unwrap_or(0)
}

#[tokio::test]
async fn a_slow_cloud_meets_the_deadline_and_signals_are_honoured_mid_cycle() {
    let (_cloud, api) = spawn(&["--manual-clock", "--latency", "2s"], &[]);
    let db = Database::fresh().await;
    let work = Workspace::new();
    // A minute's deadline: a cycle reads page after slow page for over ten seconds.
    write(&work, &api, "60s");
    let notify = work.dir.join("notify.sock");
    let socket = UnixDatagram::bind(&notify).unwrap();
    socket.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let mut command = work.command(&db.url);
    command.env("NOTIFY_SOCKET", &notify).env("WATCHDOG_USEC", "120000000");
    let mut daemon = Daemon(command.spawn().unwrap());
    assert!(told(&socket, "READY=1", 15), "READY once started, before any cycle ends");
    let read_log = || work.read_log();

    // SIGHUP once the first cycle is reading pages: the reload is not kept
    // waiting for it. The new file has a five-second deadline.
    until("a cycle to be listing", 20, || async { lists(&api).await >= 1 }).await;
    write(&work, &api, "5s");
    daemon.signal("HUP");
    let hup = Instant::now();
    until("the reload", 10, || async { read_log().contains("policy reloaded") }).await;
    assert!(hup.elapsed() < Duration::from_secs(4), "reloaded {:?} after SIGHUP", hup.elapsed());
    assert!(read_log().contains("cycle ended early for a signal"), "{}", read_log());

    // Cycles now end at five seconds, acting on nothing, and the watchdog is fed as they end.
    until("a cycle cut by its deadline", 30, || async { read_log().contains("not observed in time") }).await;
    assert!(read_log().contains("deadline of 5s"), "{}", read_log());
    assert!(told(&socket, "WATCHDOG=1", 15), "the watchdog fed as a cycle ends");
    let http = reqwest::Client::new();
    let metrics = http.get(format!("{}/metrics", work.base())).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains(r#"mdc_autoscaler_cycles_total{result="deadline"}"#), "{metrics}");
    let status: serde_json::Value =
        http.get(format!("{}/api/v1/status", work.base())).send().await.unwrap().json().await.unwrap();
    assert!(status["observe_error"].as_str().is_some_and(|e| e.contains("deadline")), "{status}");

    // Back to a minute's deadline; SIGTERM once a cycle is reading: out within seconds.
    write(&work, &api, "60s");
    daemon.signal("HUP");
    until("the second reload", 10, || async { read_log().matches("policy reloaded").count() == 2 }).await;
    let before = lists(&api).await;
    until("a cycle to be listing again", 20, || async { lists(&api).await > before }).await;
    daemon.signal("TERM");
    let term = Instant::now();
    let code = daemon.exited().await;
    assert!(code.success(), "{code:?}");
    assert!(term.elapsed() < Duration::from_secs(4), "stopped {:?} after SIGTERM", term.elapsed());
    assert!(told(&socket, "STOPPING=1", 5));
}
