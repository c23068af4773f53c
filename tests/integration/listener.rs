//! Whoever can connect to a listener the project serves cannot hold it: idle,
//! half-sent and trickling connections are closed, and held ones wait in the
//! kernel's backlog beyond a cap, leaving the daemon its descriptors.

use std::time::Duration;

use axum::Router;
use axum::routing::get;
use mdc_autoscaler::listener::Bounded;
use reqwest::Method;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::fake_cloud_process::spawn;
use crate::processes::{Database, Workspace, sim, until};

/// A server answering `ok` on `/`, with these bounds; its address.
async fn serve(cap: usize, idle: Duration, lifetime: Duration) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let router = Router::new().route("/", get(|| async { "ok" }));
    tokio::spawn(axum::serve(Bounded::with_limits(listener, cap, idle, lifetime), router).into_future());
    address
}

/// Reads until the server closes the connection; fails after `within`.
async fn closed_within(stream: &mut TcpStream, within: Duration) {
    let mut buf = [0u8; 1024];
    let read = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(within, read).await.expect("the server closes the connection");
}

async fn get_root(address: &str) -> String {
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream.write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    answer
}

#[tokio::test]
async fn a_half_sent_request_is_closed_once_idle() {
    let address = serve(8, Duration::from_millis(300), Duration::from_secs(60)).await;
    let mut stream = TcpStream::connect(&address).await.unwrap();
    stream.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n").await.unwrap();
    closed_within(&mut stream, Duration::from_secs(5)).await;
    // Silence from the first byte is the same.
    let mut silent = TcpStream::connect(&address).await.unwrap();
    closed_within(&mut silent, Duration::from_secs(5)).await;
    assert!(get_root(&address).await.ends_with("ok"), "the server still answers");
}

#[tokio::test]
async fn a_trickling_request_is_closed_at_the_lifetime() {
    let address = serve(8, Duration::from_millis(500), Duration::from_millis(1500)).await;
    let (mut reading, mut writing) = TcpStream::connect(&address).await.unwrap().into_split();
    let started = std::time::Instant::now();
    // A header byte every 100 ms: never idle, never done.
    let trickle = tokio::spawn(async move {
        while writing.write_all(b"x").await.is_ok() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let mut buf = [0u8; 64];
    let closed = tokio::time::timeout(Duration::from_secs(10), reading.read(&mut buf)).await;
    assert!(matches!(closed, Ok(Ok(0) | Err(_))), "closed, not answered: {closed:?}");
    assert!(started.elapsed() >= Duration::from_millis(1400), "closed for its age, not for idleness");
    trickle.abort();
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_their_turn() {
    let address = serve(2, Duration::from_secs(30), Duration::from_secs(60)).await;
    let first = TcpStream::connect(&address).await.unwrap();
    let _second = TcpStream::connect(&address).await.unwrap();
    let mut third = tokio::spawn({
        let address = address.clone();
        async move { get_root(&address).await }
    });
    let early = tokio::time::timeout(Duration::from_millis(300), &mut third).await;
    assert!(early.is_err(), "a third connection was served while two were held");
    drop(first);
    let answer = tokio::time::timeout(Duration::from_secs(5), third).await.expect("served once one closed").unwrap();
    assert!(answer.ends_with("ok"), "{answer}");
}

/// The reproduction: with systemd's descriptor limit lowered to 64, a hundred
/// held connections used to take every descriptor, and every cycle failed.
#[tokio::test]
async fn held_connections_leave_the_daemon_its_cycles() {
    let (_cloud, api) = spawn(&["--manual-clock"], &[]);
    let db = Database::fresh().await;
    let work = Workspace::new();
    work.write_policy(
        &api,
        "policies:\n  - name: notebooks\n    select: { cluster: host-cluster }\n    idle: { signals: [jupyter], stop_after: 30m }\n",
    );
    let mut command = work.command(&db.url);
    // SAFETY: setrlimit is async-signal-safe and touches only the child.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut command, || {
            let limit = libc::rlimit { rlim_cur: 64, rlim_max: 64 };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    let _daemon = crate::processes::Daemon(command.spawn().unwrap());
    let http = reqwest::Client::new();
    let base = work.base();
    let ready = || {
        let (http, base) = (http.clone(), base.clone());
        async move { http.get(format!("{base}/readyz")).send().await.is_ok_and(|r| r.status() == 200) }
    };
    until("ready", 30, ready).await;

    let address = base.trim_start_matches("http://").to_owned();
    let mut held = Vec::new();
    for n in 0..100 {
        let mut stream = TcpStream::connect(&address).await.unwrap();
        if n % 2 == 0 {
            stream.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\n").await.unwrap();
        }
        held.push(stream);
    }
    let lists = || async {
        let requests = sim(Method::GET, &api, "requests", None).await;
        requests["list_instances"]["200"].as_u64().unwrap_or(0)
    };
    let before = lists().await;
    until("three more cycles to list the fleet while the connections are held", 30, || async {
        lists().await >= before + 3
    })
    .await;
    assert!(!work.read_log().contains("could not connect"), "{}", work.read_log());

    drop(held);
    until("ready again once they are gone", 30, ready).await;
}
