//! Each notifier against a local receiver that checks what the platform's
//! docs say it must get: the body's shape, and the signature computed here
//! independently (HMAC-SHA256 from the `hmac` crate, not the code under
//! test). Delivery goes through a real SQLite outbox: retried with backoff,
//! once, and across a restart of the courier.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, Duration, TimeZone, Utc};
use hmac::{Hmac, KeyInit, Mac};
use mdc_autoscaler::config::notify::{Channel, ChannelKind};
use mdc_autoscaler::ledger::{AnyStore, NewNotice, Store, connect};
use mdc_autoscaler::notify::courier::{Courier, Round};
use mdc_autoscaler::notify::link::Links;
use mdc_autoscaler::notify::{Event, Message};
use mdc_autoscaler::secret::{Secret, SecretSource};
use serde_json::Value;
use sha2::Sha256;

const SECRET: &str = "SEC-test-signing-secret";
const PUBLIC_URL: &str = "https://autoscaler.example.com";

/// What a receiver was sent, and what it answers next.
#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<Got>>>,
    /// Answers to give, first first; then 200 with the platform's "ok".
    answers: Arc<Mutex<Vec<(StatusCode, &'static str)>>>,
}

#[derive(Clone, Debug)]
struct Got {
    path: String,
    query: Option<String>,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Got {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

async fn receive(
    State(r): State<Receiver>,
    uri: axum::http::Uri,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let path = uri.path().to_owned();
    r.got.lock().unwrap().push(Got { path: path.clone(), query, headers, body: body.to_vec() });
    let next = {
        let mut answers = r.answers.lock().unwrap();
        (!answers.is_empty()).then(|| answers.remove(0))
    };
    if let Some((status, body)) = next {
        return (status, body.to_owned());
    }
    let ok = match path.as_str() {
        "/slack" => "ok",
        "/feishu" => r#"{"code":0,"msg":"success","data":{}}"#,
        "/dingtalk" | "/wecom" => r#"{"errcode":0,"errmsg":"ok"}"#,
        _ => "",
    };
    (StatusCode::OK, ok.to_owned())
}

async fn serve(receiver: &Receiver, listener: tokio::net::TcpListener) {
    let app = Router::new().route("/{path}", post(receive)).with_state(receiver.clone());
    tokio::spawn(axum::serve(listener, app).into_future());
}

async fn start(receiver: &Receiver) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    serve(receiver, listener).await;
    url
}

fn channel(name: &str, kind: ChannelKind, url: String, signed: bool) -> Channel {
    Channel {
        name: name.into(),
        kind,
        url: SecretSource::Value(Secret::new(url)),
        secret: signed.then(|| SecretSource::Value(Secret::new(SECRET))),
        per_minute: kind.per_minute(),
        from: None,
        to: Vec::new(),
    }
}

/// A fresh SQLite file for an outbox.
fn ledger_file() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("mdc-outbox-{}.db", super::ledger_contract::uuid_like()))
}

async fn outbox(path: &std::path::Path) -> AnyStore {
    let store = connect(&Secret::new(format!("sqlite://{}", path.display()))).unwrap();
    store.migrate().await.unwrap();
    store
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 3, 6, 35, 0).unwrap()
}

fn message(instance: &str, mention: Option<&str>) -> Message {
    Message {
        event: Event::Warning,
        policy: "notebooks".into(),
        instance_name: instance.into(),
        display_name: format!("nb-{instance}"),
        action: "power_off".into(),
        cause: "idle".into(),
        reason: "idle for 20m (since 2026-12-03 14:15 CST), stop_after 30m".into(),
        at: now() + Duration::minutes(10),
        snapshot: true,
        saving_per_hour_yuan: 2.5,
        mention: mention.map(str::to_owned),
        link_expires: Some(now() + Duration::days(7)),
        snooze_url: None,
        timezone: "Asia/Shanghai".into(),
        headline: None,
    }
}

fn notice(channel: &str, message: &Message) -> NewNotice {
    NewNotice {
        dedup: format!("warning:{}:{channel}", message.instance_name),
        channel: channel.into(),
        event: "warning".into(),
        instance: message.instance_name.clone(),
        action: message.action.clone(),
        occasion: Some(now() - Duration::minutes(20)),
        body: serde_json::to_string(message).unwrap(),
        queued_at: now(),
    }
}

fn courier(store: AnyStore, channels: &[Channel]) -> Courier<AnyStore> {
    Courier::new(store, channels, Links::new(&Secret::new("api-token")), Some(PUBLIC_URL.into()), None)
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The snooze link in a text opens the page of that instance.
fn assert_link(text: &str, instance: &str) {
    let start = text.find(&format!("{PUBLIC_URL}/snooze/")).unwrap_or_else(|| panic!("no snooze link in {text}"));
    let token: String = text[start + PUBLIC_URL.len() + "/snooze/".len()..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c))
        .collect();
    let links = Links::new(&Secret::new("api-token"));
    assert_eq!(links.verify(token.trim_end_matches('.'), now()).as_deref(), Ok(instance));
}

#[tokio::test]
async fn every_platform_gets_its_own_format_and_a_signature_it_can_verify() {
    let receiver = Receiver::default();
    let base = start(&receiver).await;
    let channels = [
        channel("hook", ChannelKind::Webhook, format!("{base}/webhook"), true),
        channel("slack", ChannelKind::Slack, format!("{base}/slack"), false),
        channel("feishu", ChannelKind::Feishu, format!("{base}/feishu"), true),
        channel("dingtalk", ChannelKind::Dingtalk, format!("{base}/dingtalk?access_token=abc"), true),
        channel("wecom", ChannelKind::Wecom, format!("{base}/wecom?key=k-1"), false),
    ];
    let dir = ledger_file();
    let store = outbox(&dir).await;
    let mentions = [None, Some("<@U024BE7LH>"), Some("ou_alice"), Some("13800000000"), Some("alice")];
    let notices: Vec<NewNotice> = channels
        .iter()
        .zip(mentions)
        .map(|(c, mention)| notice(&c.name, &message(&format!("instance-{}", c.name), mention)))
        .collect();
    store.queue_notices(&notices).await.unwrap();
    let round = courier(store.clone(), &channels).round(now()).await.unwrap();
    assert_eq!(round, Round { delivered: 5, failed: 0, waiting: 0 });
    let got = receiver.got.lock().unwrap().clone();
    let by = |path: &str| got.iter().find(|g| g.path == path).unwrap_or_else(|| panic!("nothing at {path}")).clone();

    // Generic webhook: sha256=hex(HMAC(secret, "{timestamp}.{body}")), the timestamp within the replay window.
    let hook = by("/webhook");
    let timestamp = hook.headers["x-mdc-timestamp"].to_str().unwrap();
    assert!((timestamp.parse::<i64>().unwrap() - now().timestamp()).abs() <= 300);
    let signed = [timestamp.as_bytes(), b".", &hook.body].concat();
    let expected = format!("sha256={}", hex(&hmac(SECRET.as_bytes(), &signed)));
    assert_eq!(hook.headers["x-mdc-signature"].to_str().unwrap(), expected);
    let body = hook.json();
    assert_eq!(body["event"], "warning");
    assert_eq!(body["instance_name"], "instance-hook");
    assert_eq!(body["display_name"], "nb-instance-hook");
    assert_eq!(body["action"], "power_off");
    assert_eq!(body["at"], "2026-12-03T06:45:00Z");
    assert_link(body["snooze_url"].as_str().unwrap(), "instance-hook");

    // Slack: text plus blocks; the mention raw, the button links the snooze page.
    let slack = by("/slack").json();
    assert!(
        slack["text"]
            .as_str()
            .unwrap()
            .starts_with("<@U024BE7LH> nb-instance-slack will be stopped with a snapshot at 2026-12-03 14:45 CST")
    );
    assert_eq!(slack["blocks"][0]["type"], "section");
    assert_eq!(slack["blocks"][0]["text"]["type"], "mrkdwn");
    let button = &slack["blocks"][1]["elements"][0];
    assert_eq!(button["type"], "button");
    assert_link(button["url"].as_str().unwrap(), "instance-slack");

    // Feishu: sign = base64(HMAC(key = "{timestamp}\n{secret}", message = "")).
    let feishu = by("/feishu").json();
    let timestamp = feishu["timestamp"].as_str().unwrap();
    assert_eq!(timestamp, now().timestamp().to_string());
    let sign = BASE64.encode(hmac(format!("{timestamp}\n{SECRET}").as_bytes(), b""));
    assert_eq!(feishu["sign"], sign);
    assert_eq!(feishu["msg_type"], "text");
    let text = feishu["content"]["text"].as_str().unwrap();
    assert!(text.starts_with("<at user_id=\"ou_alice\"></at> nb-instance-feishu will be stopped"), "{text}");
    assert_link(text, "instance-feishu");

    // DingTalk: ?timestamp=ms&sign=urlencode(base64(HMAC(secret, "{timestamp}\n{secret}"))), after the access token.
    let ding = by("/dingtalk");
    let query = ding.query.clone().unwrap();
    let pairs: Vec<(String, String)> =
        query.split('&').map(|p| p.split_once('=').unwrap()).map(|(k, v)| (k.into(), v.into())).collect();
    assert_eq!(pairs[0], ("access_token".into(), "abc".into()));
    let timestamp = &pairs.iter().find(|(k, _)| k == "timestamp").unwrap().1;
    assert_eq!(*timestamp, now().timestamp_millis().to_string());
    let sign = &pairs.iter().find(|(k, _)| k == "sign").unwrap().1;
    let decoded = sign.replace("%2B", "+").replace("%2F", "/").replace("%3D", "=");
    assert_eq!(decoded, BASE64.encode(hmac(SECRET.as_bytes(), format!("{timestamp}\n{SECRET}").as_bytes())));
    assert!(!sign.contains('+') && !sign.contains('/') && !sign.contains('='), "the sign is URL-encoded");
    let body = ding.json();
    assert_eq!(body["msgtype"], "markdown");
    assert!(body["markdown"]["title"].as_str().unwrap().contains("nb-instance-dingtalk"));
    let text = body["markdown"]["text"].as_str().unwrap();
    assert!(text.contains("@13800000000"), "a mobile is mentioned in the text too: {text}");
    assert_eq!(body["at"]["atMobiles"][0], "13800000000");
    assert_link(text, "instance-dingtalk");

    // WeCom: markdown content, the key kept in the URL, the user mentioned as <@userid>.
    let wecom = by("/wecom");
    assert_eq!(wecom.query.as_deref(), Some("key=k-1"));
    let body = wecom.json();
    assert_eq!(body["msgtype"], "markdown");
    let content = body["markdown"]["content"].as_str().unwrap();
    assert!(content.contains("<@alice>") && content.contains("Saves ¥2.50/h"), "{content}");
    assert_link(content, "instance-wecom");
}

#[tokio::test]
async fn a_receiver_answering_500_then_200_gets_the_notice_once() {
    let receiver = Receiver::default();
    receiver.answers.lock().unwrap().push((StatusCode::INTERNAL_SERVER_ERROR, "busy"));
    let base = start(&receiver).await;
    let channels = [channel("team", ChannelKind::Slack, format!("{base}/slack"), false)];
    let dir = ledger_file();
    let store = outbox(&dir).await;
    store.queue_notices(&[notice("team", &message("instance-a", None))]).await.unwrap();
    // The same notice queued again (a second cycle) is one notice.
    store.queue_notices(&[notice("team", &message("instance-a", None))]).await.unwrap();
    let mut courier = courier(store.clone(), &channels);
    assert_eq!(courier.round(now()).await.unwrap(), Round { delivered: 0, failed: 1, waiting: 0 });
    assert_eq!(store.undelivered_notices().await.unwrap()["team"].0, 1);
    // Backoff: nothing is tried again before 30 s.
    assert_eq!(courier.round(now() + Duration::seconds(10)).await.unwrap(), Round::default());
    assert_eq!(courier.round(now() + Duration::seconds(31)).await.unwrap().delivered, 1);
    assert_eq!(courier.round(now() + Duration::hours(2)).await.unwrap(), Round::default());
    assert_eq!(receiver.got.lock().unwrap().len(), 2, "one failure, one delivery");
    assert!(store.undelivered_notices().await.unwrap().is_empty());
    let warned = store.warnings_since(now() - Duration::days(1)).await.unwrap();
    let sent = warned.values().next().unwrap();
    assert_eq!(sent.delivered_at, Some(now() + Duration::seconds(31)));
}

#[tokio::test]
async fn a_platform_that_answers_200_with_an_error_code_has_not_taken_it() {
    let receiver = Receiver::default();
    receiver.answers.lock().unwrap().push((StatusCode::OK, r#"{"errcode":130101,"errmsg":"send too fast"}"#));
    let base = start(&receiver).await;
    let channels = [channel("ding", ChannelKind::Dingtalk, format!("{base}/dingtalk?access_token=t"), true)];
    let dir = ledger_file();
    let store = outbox(&dir).await;
    store.queue_notices(&[notice("ding", &message("instance-a", None))]).await.unwrap();
    let mut courier = courier(store.clone(), &channels);
    assert_eq!(courier.round(now()).await.unwrap().failed, 1);
    assert_eq!(courier.round(now() + Duration::minutes(1)).await.unwrap().delivered, 1);
}

#[tokio::test]
async fn a_receiver_down_across_a_restart_gets_the_notice_after() {
    // A port nobody listens on yet.
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = held.local_addr().unwrap();
    drop(held);
    let channels = [channel("team", ChannelKind::Wecom, format!("http://{address}/wecom?key=k"), false)];
    let dir = ledger_file();
    let store = outbox(&dir).await;
    store.queue_notices(&[notice("team", &message("instance-a", None))]).await.unwrap();
    assert_eq!(courier(store.clone(), &channels).round(now()).await.unwrap().failed, 1);
    drop(store);

    // The daemon restarts (a new store on the same file, a new courier); the receiver comes up.
    let receiver = Receiver::default();
    serve(&receiver, tokio::net::TcpListener::bind(address).await.unwrap()).await;
    let store = outbox(&dir).await;
    let round = courier(store.clone(), &channels).round(now() + Duration::minutes(1)).await.unwrap();
    assert_eq!(round.delivered, 1);
    assert_eq!(receiver.got.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_channel_takes_no_more_a_minute_than_its_platform_allows() {
    let receiver = Receiver::default();
    let base = start(&receiver).await;
    let channels = [channel("ding", ChannelKind::Dingtalk, format!("{base}/dingtalk?access_token=t"), false)];
    let dir = ledger_file();
    let store = outbox(&dir).await;
    // Stops told after the fact go one to a message.
    let told =
        |i: usize| Message { event: Event::Unannounced, link_expires: None, ..message(&format!("instance-{i}"), None) };
    let notices: Vec<NewNotice> = (0..25).map(|i| notice("ding", &told(i))).collect();
    store.queue_notices(&notices).await.unwrap();
    let round = courier(store.clone(), &channels).round(now()).await.unwrap();
    assert_eq!(round, Round { delivered: 20, failed: 0, waiting: 5 }, "DingTalk takes 20 a minute from one robot");
    assert_eq!(store.undelivered_notices().await.unwrap()["ding"].0, 5);
}

#[tokio::test]
async fn a_burst_of_warnings_goes_to_a_chat_in_groups_and_to_a_webhook_one_by_one() {
    let receiver = Receiver::default();
    let base = start(&receiver).await;
    let channels = [
        channel("ding", ChannelKind::Dingtalk, format!("{base}/dingtalk?access_token=t"), false),
        channel("hook", ChannelKind::Webhook, format!("{base}/webhook"), true),
    ];
    let dir = ledger_file();
    let store = outbox(&dir).await;
    // A schedule's stop: 25 notebooks warned at once, two owners mentioned.
    let mention = |i: usize| [Some("13800000001"), Some("13800000002"), None][i % 3];
    let mut notices: Vec<NewNotice> =
        (0..25).map(|i| notice("ding", &message(&format!("instance-{i:02}"), mention(i)))).collect();
    notices.extend((0..5).map(|i| notice("hook", &message(&format!("instance-h{i}"), None))));
    store.queue_notices(&notices).await.unwrap();
    let round = courier(store.clone(), &channels).round(now()).await.unwrap();
    assert_eq!(round, Round { delivered: 30, failed: 0, waiting: 0 });
    let got = receiver.got.lock().unwrap().clone();
    assert_eq!(got.iter().filter(|g| g.path == "/webhook").count(), 5, "a receiver takes one notice per request");
    let groups: Vec<Value> = got.iter().filter(|g| g.path == "/dingtalk").map(Got::json).collect();
    assert_eq!(groups.len(), 3, "25 warnings as 10 + 10 + 5");
    let mut instances = Vec::new();
    for group in &groups {
        let text = group["markdown"]["text"].as_str().unwrap();
        let count = text.matches("#### nb-instance-").count();
        assert!(
            group["markdown"]["title"].as_str().unwrap().starts_with(&format!("{count} instances will be stopped"))
        );
        assert!(text.len() < 4096, "within WeCom's limit too: {} bytes", text.len());
        let mut mobiles: Vec<&str> =
            group["at"]["atMobiles"].as_array().unwrap().iter().map(|m| m.as_str().unwrap()).collect();
        mobiles.sort();
        assert_eq!(mobiles, ["13800000001", "13800000002"], "each owner mentioned once");
        for line in text.lines().filter(|l| l.contains("/snooze/")) {
            instances.push(line.to_owned());
        }
    }
    assert_eq!(instances.len(), 25, "each instance with its own link");
    for i in 0..25 {
        let name = format!("instance-{i:02}");
        let links: Vec<&String> = instances
            .iter()
            .filter(|l| {
                let token = l.rsplit("/snooze/").next().unwrap();
                Links::new(&Secret::new("api-token")).verify(token, now()).as_deref() == Ok(name.as_str())
            })
            .collect();
        assert_eq!(links.len(), 1, "{name}");
    }
}

#[tokio::test]
async fn a_channel_url_that_is_not_https_is_never_called() {
    let channels = [channel("team", ChannelKind::Slack, "http://hooks.example.com/services/x".into(), false)];
    let dir = ledger_file();
    let store = outbox(&dir).await;
    store.queue_notices(&[notice("team", &message("instance-a", None))]).await.unwrap();
    assert_eq!(courier(store.clone(), &channels).round(now()).await.unwrap().failed, 1);
}

#[tokio::test]
async fn the_morning_digest_reaches_each_of_its_channels_once_even_across_a_restart() {
    use mdc_autoscaler::ledger::{NewSegment, SegmentClose};
    use mdc_autoscaler::money::Money;
    use mdc_autoscaler::notify::digest::Digests;

    let receiver = Receiver::default();
    let base = start(&receiver).await;
    let channels = [
        channel("leads", ChannelKind::Webhook, format!("{base}/webhook"), true),
        channel("team", ChannelKind::Wecom, format!("{base}/wecom?key=k"), false),
    ];
    let text = r#"
settings:
  timezone: Asia/Shanghai
  notify:
    channels:
      - { name: leads, kind: webhook, url: { env: LEADS_URL }, secret: { env: LEADS_SECRET } }
      - { name: team, kind: wecom, url: { env: TEAM_URL } }
    digest: { channels: [leads, team] }
policies:
  - name: notebooks
    select: { display_name: "nb-*" }
    idle: { stop_after: 30m }
"#;
    let (config, report) = mdc_autoscaler::config::load::load_str("t", text);
    let config = config.unwrap_or_else(|| panic!("{report}"));
    let local = |day, hour, minute| {
        chrono_tz::Asia::Shanghai.with_ymd_and_hms(2026, 12, day, hour, minute, 0).unwrap().to_utc()
    };
    let dir = ledger_file();
    let store = outbox(&dir).await;
    // Alice's notebook ran 10:00–14:00 yesterday at ¥10/h, never seen in use.
    let opened = NewSegment {
        instance: "instance-alice".into(),
        display_name: "nb-alice".into(),
        policy: Some("notebooks".into()),
        sku_id: "sku-4090".into(),
        started_at: local(3, 10, 0),
        price_per_hour: Money::from_yuan_f64(10.0).unwrap(),
    };
    store.write_segments(&[], &[opened]).await.unwrap();
    let closed = SegmentClose {
        instance: "instance-alice".into(),
        started_at: local(3, 10, 0),
        ended_at: local(3, 14, 0),
        amount: Money::from_yuan_f64(40.0).unwrap(),
    };
    store.write_segments(&[closed], &[]).await.unwrap();

    let mut digests = Digests::new(local(4, 8, 0));
    assert_eq!(digests.queue_due(&store, &config, local(4, 8, 59)).await.unwrap(), 0, "not nine yet");
    assert_eq!(digests.queue_due(&store, &config, local(4, 9, 0)).await.unwrap(), 2);
    assert_eq!(digests.queue_due(&store, &config, local(4, 9, 1)).await.unwrap(), 0);
    let mut courier = courier(store.clone(), &channels);
    assert_eq!(courier.round(local(4, 9, 1)).await.unwrap().delivered, 2);

    let got = receiver.got.lock().unwrap().clone();
    let hook = got.iter().find(|g| g.path == "/webhook").unwrap();
    let timestamp = hook.headers["x-mdc-timestamp"].to_str().unwrap();
    let signed = [timestamp.as_bytes(), b".", &hook.body].concat();
    assert_eq!(
        hook.headers["x-mdc-signature"].to_str().unwrap(),
        format!("sha256={}", hex(&hmac(SECRET.as_bytes(), &signed)))
    );
    let body = hook.json();
    assert_eq!(body["event"], "digest");
    assert_eq!(body["period"], "daily");
    assert_eq!(body["from"], "2026-12-03T01:00:00Z");
    assert_eq!(body["to"], "2026-12-04T01:00:00Z");
    assert_eq!(body["spend_yuan"], 40.0);
    assert_eq!(body["idle"][0]["display_name"], "nb-alice");
    assert_eq!(body["idle"][0]["spend_yuan"], 40.0);
    let wecom = got.iter().find(|g| g.path == "/wecom").unwrap().json();
    let content = wecom["markdown"]["content"].as_str().unwrap();
    assert!(content.starts_with("### Daily digest: ¥40.00 spent, ¥0.00 saved\n"), "{content}");
    assert!(content.contains("#### Costliest while idle\n- nb-alice (notebooks): ¥40.00 over 4.0 h idle"), "{content}");

    // A restart within the hour composes it again; the outbox keeps one per edge and channel.
    let mut restarted = Digests::new(local(4, 9, 20));
    assert_eq!(restarted.queue_due(&store, &config, local(4, 9, 21)).await.unwrap(), 2);
    assert_eq!(courier.round(local(4, 9, 22)).await.unwrap(), Round::default());
    assert_eq!(receiver.got.lock().unwrap().len(), 2);
}

/// One mail an SMTP receiver took: the login, the envelope, the message.
#[derive(Clone, Debug, Default)]
struct Mail {
    login: Option<String>,
    from: String,
    to: Vec<String>,
    data: String,
}

/// A local SMTP server that speaks what RFC 5321 asks of one (EHLO, AUTH
/// PLAIN, MAIL, RCPT, DATA with dot-stuffing, QUIT), offers no STARTTLS, and
/// answers the first DATA with `first_data`.
async fn smtp_receiver(first_data: &'static str) -> (std::net::SocketAddr, Arc<Mutex<Vec<Mail>>>) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let mails: Arc<Mutex<Vec<Mail>>> = Arc::default();
    let (kept, answered) = (mails.clone(), Arc::new(Mutex::new(false)));
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let (kept, answered) = (kept.clone(), answered.clone());
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut lines = BufReader::new(read).lines();
                write.write_all(b"220 mail.test ESMTP\r\n").await.unwrap();
                let mut mail = Mail::default();
                while let Ok(Some(line)) = lines.next_line().await {
                    let upper = line.to_ascii_uppercase();
                    let reply: String = if upper.starts_with("EHLO ") {
                        "250-mail.test\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME".into()
                    } else if let Some(initial) = line.strip_prefix("AUTH PLAIN ") {
                        mail.login = Some(String::from_utf8(BASE64.decode(initial).unwrap()).unwrap());
                        "235 2.7.0 Authentication successful".into()
                    } else if upper.starts_with("MAIL FROM:") {
                        mail.from = line[10..].trim().to_owned();
                        "250 2.1.0 Ok".into()
                    } else if upper.starts_with("RCPT TO:") {
                        mail.to.push(line[8..].trim().to_owned());
                        "250 2.1.5 Ok".into()
                    } else if upper == "DATA" {
                        write.write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n").await.unwrap();
                        let mut data = String::new();
                        while let Ok(Some(line)) = lines.next_line().await {
                            if line == "." {
                                break;
                            }
                            data += line.strip_prefix('.').unwrap_or(&line);
                            data += "\n";
                        }
                        mail.data = data;
                        let first = !std::mem::replace(&mut *answered.lock().unwrap(), true);
                        if first && !first_data.starts_with('2') {
                            first_data.into()
                        } else {
                            kept.lock().unwrap().push(std::mem::take(&mut mail));
                            "250 2.0.0 Ok: queued".into()
                        }
                    } else if upper == "QUIT" {
                        write.write_all(b"221 2.0.0 Bye\r\n").await.unwrap();
                        break;
                    } else if upper == "RSET" || upper == "NOOP" {
                        "250 2.0.0 Ok".into()
                    } else {
                        "502 5.5.2 Command not recognized".into()
                    };
                    write.write_all(format!("{reply}\r\n").as_bytes()).await.unwrap();
                }
            });
        }
    });
    (address, mails)
}

/// A header of a mail, unfolded, its RFC 2047 encoded words decoded.
fn header(data: &str, name: &str) -> Option<String> {
    let head = data.split("\n\n").next().unwrap();
    let unfolded = head.replace("\n ", " ").replace("\n\t", " ");
    let value = unfolded.lines().find_map(|l| l.strip_prefix(&format!("{name}: ")))?.to_owned();
    let mut out = String::new();
    for word in value.split(' ') {
        match word.strip_prefix("=?utf-8?b?").and_then(|w| w.strip_suffix("?=")) {
            Some(encoded) => out += &String::from_utf8(BASE64.decode(encoded).unwrap()).unwrap(),
            None => {
                if !out.is_empty() {
                    out.push(' ');
                }
                out += word;
            }
        }
    }
    Some(out)
}

#[tokio::test]
async fn an_email_channel_sends_one_plain_text_mail_through_smtp_and_retries_a_refusal() {
    let (address, mails) = smtp_receiver("451 4.3.0 Try again later").await;
    // The login is an address, so its `@` is percent-encoded in the URL.
    let url = format!("smtp://alerts%40example.com:p%40ss@{address}");
    let channel = Channel {
        name: "mail".into(),
        kind: ChannelKind::Email,
        url: SecretSource::Value(Secret::new(url)),
        secret: None,
        per_minute: ChannelKind::Email.per_minute(),
        from: Some("mdc-autoscaler <alerts@example.com>".into()),
        to: vec!["ml-team@example.com".into()],
    };
    let dir = ledger_file();
    let store = outbox(&dir).await;
    store.queue_notices(&[notice("mail", &message("instance-mail", Some("alice@example.com")))]).await.unwrap();
    let mut courier = courier(store.clone(), std::slice::from_ref(&channel));
    assert_eq!(courier.round(now()).await.unwrap().failed, 1, "451: tried again later");
    assert!(mails.lock().unwrap().is_empty());
    assert_eq!(courier.round(now() + Duration::seconds(31)).await.unwrap().delivered, 1);
    assert_eq!(courier.round(now() + Duration::hours(1)).await.unwrap(), Round::default());

    let mails = mails.lock().unwrap().clone();
    assert_eq!(mails.len(), 1);
    let mail = &mails[0];
    assert_eq!(mail.login.as_deref(), Some("\0alerts@example.com\0p@ss"));
    assert_eq!(mail.from, "<alerts@example.com>");
    assert_eq!(
        mail.to,
        ["<ml-team@example.com>", "<alice@example.com>"],
        "the owner's address is mentioned as a recipient"
    );
    assert_eq!(header(&mail.data, "From").unwrap(), "mdc-autoscaler <alerts@example.com>");
    assert_eq!(
        header(&mail.data, "Subject").unwrap(),
        "nb-instance-mail will be stopped with a snapshot at 2026-12-03 14:45 CST"
    );
    assert_eq!(header(&mail.data, "Content-Type").unwrap().to_ascii_lowercase(), "text/plain; charset=utf-8");
    assert_eq!(header(&mail.data, "Content-Transfer-Encoding").unwrap(), "base64");
    let body: String = mail.data.split_once("\n\n").unwrap().1.lines().collect();
    // Text goes out with CRLF line ends, as RFC 5322 has them.
    let body = String::from_utf8(BASE64.decode(body).unwrap()).unwrap().replace("\r\n", "\n");
    assert!(body.starts_with("nb-instance-mail will be stopped with a snapshot at 2026-12-03 14:45 CST\n"), "{body}");
    assert!(body.contains("- Saves ¥2.50/h\n"), "{body}");
    assert!(body.contains("Keep it running: https://autoscaler.example.com/snooze/"), "{body}");
    assert_link(&body, "instance-mail");
}

#[tokio::test]
async fn a_mail_server_elsewhere_is_reached_over_tls_or_not_at_all() {
    // A plain-text server not on this machine is refused before any connection.
    let channel = |url: &str| Channel {
        name: "mail".into(),
        kind: ChannelKind::Email,
        url: SecretSource::Value(Secret::new(url)),
        secret: None,
        per_minute: 30,
        from: Some("alerts@example.com".into()),
        to: vec!["ml-team@example.com".into()],
    };
    let dir = ledger_file();
    let store = outbox(&dir).await;
    store.queue_notices(&[notice("mail", &message("instance-mail", None))]).await.unwrap();
    let mut courier = courier(store.clone(), &[channel("smtp://u:hunter2@mail.example.com:25?tls=opportunistic")]);
    assert_eq!(courier.round(now()).await.unwrap().failed, 1);
    // STARTTLS required: a local server that does not offer it gets nothing.
    let (address, mails) = smtp_receiver("250 2.0.0 Ok").await;
    courier.reload(&[channel(&format!("smtp://u:hunter2@{address}?tls=required"))], Some(PUBLIC_URL.into()));
    assert_eq!(courier.round(now() + Duration::minutes(5)).await.unwrap().failed, 1);
    assert!(mails.lock().unwrap().is_empty());
}
