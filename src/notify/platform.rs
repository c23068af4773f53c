//! Each platform's message format and signature, as its public docs give
//! them: a [`Body`] becomes the URL, headers and body of one POST, and
//! the platform's answer says whether it took it (several answer 200 with
//! an error code in the body).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use super::error::DeliveryError;
use super::{Body, Text};
use crate::config::notify::ChannelKind;

/// The generic webhook's headers: the Unix time the body was signed at, and
/// `sha256=` + hex HMAC-SHA256 over `{timestamp}.{body}` with the channel's secret.
pub const TIMESTAMP_HEADER: &str = "X-Mdc-Timestamp";
pub const SIGNATURE_HEADER: &str = "X-Mdc-Signature";
/// How far a receiver should accept a webhook's timestamp from its clock.
pub const REPLAY_WINDOW_SECONDS: i64 = 300;

/// One POST to a platform.
#[derive(Debug)]
pub struct Post {
    pub url: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

/// The POST that says `body` on a channel of `kind` at `url`, signed with
/// `secret` at `now`; none for email, which is sent over SMTP ([`super::email`]).
pub fn post(kind: ChannelKind, url: &str, secret: Option<&str>, body: &Body, now: DateTime<Utc>) -> Option<Post> {
    if kind != ChannelKind::Webhook {
        return post_text(kind, url, secret, &body.text(), now);
    }
    let body = serde_json::to_vec(body).expect("a notice serialises");
    let timestamp = now.timestamp().to_string();
    let mut signed = timestamp.clone().into_bytes();
    signed.push(b'.');
    signed.extend_from_slice(&body);
    let signature = format!("sha256={}", hex(&hmac(secret.unwrap_or_default().as_bytes(), &signed)));
    Some(Post {
        url: url.to_owned(),
        headers: vec![(TIMESTAMP_HEADER, timestamp), (SIGNATURE_HEADER, signature)],
        body,
    })
}

/// The POST that says `text` on a chat platform; none for the generic
/// webhook (which sends a [`Body`]) and email.
pub fn post_text(kind: ChannelKind, url: &str, secret: Option<&str>, text: &Text, now: DateTime<Utc>) -> Option<Post> {
    let json_post = |url: String, body: Value| Post { url, headers: Vec::new(), body: body.to_string().into_bytes() };
    Some(match kind {
        ChannelKind::Webhook | ChannelKind::Email => return None,
        ChannelKind::Slack => json_post(url.to_owned(), slack(text)),
        ChannelKind::Feishu => {
            let mut body = feishu(text);
            if let Some(secret) = secret {
                let timestamp = now.timestamp().to_string();
                // Feishu keys the HMAC with `timestamp\nsecret` and signs nothing.
                let sign = BASE64.encode(hmac(format!("{timestamp}\n{secret}").as_bytes(), b""));
                body["timestamp"] = json!(timestamp);
                body["sign"] = json!(sign);
            }
            json_post(url.to_owned(), body)
        }
        ChannelKind::Dingtalk => {
            let url = match secret {
                Some(secret) => {
                    let timestamp = now.timestamp_millis();
                    let sign = BASE64.encode(hmac(secret.as_bytes(), format!("{timestamp}\n{secret}").as_bytes()));
                    let joint = if url.contains('?') { '&' } else { '?' };
                    format!("{url}{joint}timestamp={timestamp}&sign={}", percent_encode(&sign))
                }
                None => url.to_owned(),
            };
            json_post(url, dingtalk(text))
        }
        ChannelKind::Wecom => json_post(url.to_owned(), wecom(text)),
    })
}

/// Whether the platform took the message, from a 2xx answer's body:
/// Feishu answers `{"code":0}`, DingTalk and WeCom `{"errcode":0}`, Slack `ok`.
pub fn accepted(kind: ChannelKind, body: &[u8]) -> Result<(), DeliveryError> {
    let refused = DeliveryError::Refused;
    let code = |field: &str| -> Result<(), DeliveryError> {
        let value: Value = serde_json::from_slice(body).map_err(|_| refused("the answer is not JSON".into()))?;
        match value.get(field).and_then(Value::as_i64) {
            Some(0) => Ok(()),
            Some(code) => {
                let why = ["msg", "errmsg", "StatusMessage"].iter().find_map(|k| value.get(*k).and_then(Value::as_str));
                Err(refused(format!("{field} {code}: {}", crate::text::Shown(why.unwrap_or("no message")))))
            }
            // Feishu's older answers carry `StatusCode`.
            None if field == "code" && value.get("StatusCode").and_then(Value::as_i64) == Some(0) => Ok(()),
            None => Err(refused(format!("the answer has no `{field}`"))),
        }
    };
    match kind {
        ChannelKind::Webhook | ChannelKind::Email => Ok(()),
        ChannelKind::Slack => match body {
            b"ok" => Ok(()),
            other => Err(refused(format!("Slack answered {}", crate::text::Shown(&String::from_utf8_lossy(other))))),
        },
        ChannelKind::Feishu => code("code"),
        ChannelKind::Dingtalk | ChannelKind::Wecom => code("errcode"),
    }
}

/// Slack's mrkdwn: `&`, `<` and `>` escaped, so no text of ours becomes a link or a mention.
fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

fn slack(text: &Text) -> Value {
    let mention: String = text.mentions.iter().map(|m| format!("{m} ")).collect();
    let headline = format!("{mention}{}", slack_escape(&text.headline));
    let mut blocks = Vec::new();
    for (index, section) in text.sections.iter().enumerate() {
        let mut lines: Vec<String> = section.lines.iter().map(|l| slack_escape(l)).collect();
        if let Some(title) = &section.title {
            lines.insert(0, format!("*{}*", slack_escape(title)));
        }
        if index == 0 {
            lines.insert(0, format!("*{headline}*"));
        }
        blocks.push(json!({ "type": "section", "text": { "type": "mrkdwn", "text": lines.join("\n") } }));
    }
    if let Some((label, url)) = &text.link {
        blocks.push(json!({
            "type": "actions",
            "elements": [{ "type": "button", "text": { "type": "plain_text", "text": label }, "url": url }],
        }));
    }
    json!({ "text": headline, "blocks": blocks })
}

fn feishu(text: &Text) -> Value {
    let mut lines = vec![text.headline.clone()];
    for section in &text.sections {
        lines.extend(section.title.clone());
        lines.extend(section.lines.iter().cloned());
    }
    if let Some((label, url)) = &text.link {
        lines.push(format!("{label}: {url}"));
    }
    let mention: String = text.mentions.iter().map(|id| format!("<at user_id=\"{id}\"></at> ")).collect();
    json!({ "msg_type": "text", "content": { "text": format!("{mention}{}", lines.join("\n")) } })
}

fn markdown(text: &Text, mention: &str) -> String {
    let mut out = text.listed("### ", "#### ", |label, url| format!("[{label}]({url})"));
    if !mention.is_empty() {
        out += &format!("\n{mention}\n");
    }
    out
}

fn dingtalk(text: &Text) -> Value {
    // A mobile number is mentioned by writing `@number` in the text and listing it.
    let mobiles = &text.mentions;
    let mention = mobiles.iter().map(|m| format!("@{m}")).collect::<Vec<_>>().join(" ");
    json!({
        "msgtype": "markdown",
        "markdown": { "title": text.headline, "text": markdown(text, &mention) },
        "at": { "atMobiles": mobiles, "isAtAll": false },
    })
}

fn wecom(text: &Text) -> Value {
    let mention = text.mentions.iter().map(|id| format!("<@{id}>")).collect::<Vec<_>>().join(" ");
    json!({ "msgtype": "markdown", "markdown": { "content": markdown(text, &mention) } })
}

pub fn hmac(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(message);
    mac.finalize().into_bytes().into()
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Percent-encodes all but the unreserved characters (RFC 3986).
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
