//! Answers no honest server gives, from a real local server over TCP: the
//! daemon's readers refuse them without holding them.

use std::time::Duration;

use mdc_autoscaler::cloud::matrixdc::{ClientSettings, MatrixDcClient};
use mdc_autoscaler::cloud::{Cloud, CloudErrorKind, JupyterEndpoint};
use mdc_autoscaler::plan::Reading;
use mdc_autoscaler::secret::Secret;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A server whose every answer is `200 OK` with a chunked body that never
/// ends (or, with `length`, one that says it is that long); its URL.
async fn endless(length: Option<u64>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                let mut request = [0u8; 4096];
                let _ = socket.read(&mut request).await;
                let head = match length {
                    Some(n) => {
                        format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {n}\r\n\r\n")
                    }
                    None => {
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n".into()
                    }
                };
                if socket.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = format!("10000\r\n{}\r\n", "[".repeat(0x10000));
                while socket.write_all(chunk.as_bytes()).await.is_ok() {}
            });
        }
    });
    url
}

/// A server whose every instance page is a megabyte of instances never
/// seen before, with a next page always to come; its URL.
async fn endless_pages() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut served = 0u64;
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut request = [0u8; 4096];
            let _ = socket.read(&mut request).await;
            served += 1;
            let nodes: Vec<String> = (0..100)
                .map(|k| {
                    let pad = "d".repeat(10_000);
                    format!(r#"{{"name":"instance-{served}-{k}","displayName":"nb-{k}","status":"Running","description":"{pad}"}}"#)
                })
                .collect();
            let body = format!(r#"{{"hasNextPage":true,"totalCount":1000000000,"nodes":[{}]}}"#, nodes.join(","));
            let head =
                format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n", body.len());
            let _ = socket.write_all(head.as_bytes()).await;
            let _ = socket.write_all(body.as_bytes()).await;
        }
    });
    url
}

/// A server that answers every request with a redirect to `to`; its URL.
async fn redirecting(to: String) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut request = [0u8; 4096];
            let _ = socket.read(&mut request).await;
            let answer =
                format!("HTTP/1.1 302 Found\r\nlocation: {to}/mdc/api/v1/regions\r\ncontent-length: 0\r\n\r\n");
            let _ = socket.write_all(answer.as_bytes()).await;
        }
    });
    url
}

fn client(url: &str) -> MatrixDcClient {
    let settings = ClientSettings {
        base_url: format!("{url}/mdc/api/v1"),
        namespace: "demo".into(),
        timeout: Duration::from_secs(20),
        retries: 0,
        ..ClientSettings::default()
    };
    MatrixDcClient::new(settings, Secret::new("demo-token")).unwrap()
}

#[tokio::test]
async fn an_endless_api_answer_is_refused_at_the_ceiling() {
    let url = endless(None).await;
    let err = client(&url).list_regions().await.unwrap_err();
    assert!(matches!(&err.kind, CloudErrorKind::Malformed { reason, .. } if reason.contains("over")), "{err}");
}

#[tokio::test]
async fn an_answer_that_says_it_is_huge_is_refused_before_it_is_read() {
    let url = endless(Some(1 << 40)).await;
    let err = client(&url).list_instances("host-cluster").await.unwrap_err();
    assert!(matches!(&err.kind, CloudErrorKind::Malformed { reason, .. } if reason.contains("over")), "{err}");
}

#[tokio::test]
async fn pages_of_new_instances_without_end_are_refused_at_the_list_ceiling() {
    let url = endless_pages().await;
    let err = client(&url).list_instances("host-cluster").await.unwrap_err();
    assert!(matches!(&err.kind, CloudErrorKind::Incomplete(why) if why.contains("passed 64 MiB")), "{err}");
    assert!(err.page.is_some_and(|p| (60..70).contains(&p)), "{err}");
}

#[tokio::test]
async fn an_endless_jupyter_answer_reads_as_unreadable_in_use() {
    let url = endless(None).await;
    let endpoint = JupyterEndpoint::from_url(&format!("{url}/jupyter?token=t0k3n"));
    let http = reqwest::Client::new();
    let look = mdc_autoscaler::signals::jupyter::look(&http, &endpoint, Duration::from_secs(20)).await;
    assert!(matches!(&look.reading, Reading::Unreadable(why) if why.contains("over")), "{look:?}");
}

#[tokio::test]
async fn a_redirect_elsewhere_is_not_followed() {
    let elsewhere = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = format!("http://{}", elsewhere.local_addr().unwrap());
    let url = redirecting(target).await;
    let err = client(&url).list_regions().await.unwrap_err();
    assert!(matches!(err.kind, CloudErrorKind::Rejected { status: 302, .. }), "{err}");
    // The call has ended: a followed redirect would be in the backlog now (timeout polls once first).
    let reached = tokio::time::timeout(Duration::ZERO, elsewhere.accept()).await;
    assert!(reached.is_err(), "the other server was called");
}
