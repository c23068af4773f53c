//! Delivery from the ledger's outbox: each notice due is posted to its
//! channel within the platform's rate limit; a failure is retried with
//! backoff (30 s doubling to an hour) until a channel takes it. The outbox
//! lives in the ledger, so what is queued survives restarts and outages.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use super::Body;
use super::email::Mailer;
use super::error::DeliveryError;
use super::link::Links;
use super::platform;
use crate::config::notify::{Channel, ChannelKind};
use crate::ledger::{LedgerError, Notice, Store};
use crate::secret::Secret;

/// Told of every delivery attempt: the metrics listen.
pub trait DeliveryObserver: Send + Sync {
    fn attempted(&self, channel: &str, outcome: Delivery);
    /// After each round: per channel, how many notices wait and since when.
    fn waiting(&self, channels: &[String], undelivered: &BTreeMap<String, (u64, DateTime<Utc>)>, now: DateTime<Utc>);
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    Delivered,
    Failed,
}

impl Delivery {
    pub fn label(self) -> &'static str {
        match self {
            Delivery::Delivered => "delivered",
            Delivery::Failed => "failed",
        }
    }
}

/// The most notices taken from the outbox in one round.
const ROUND: usize = 100;
const FIRST_RETRY: Duration = Duration::seconds(30);
const LAST_RETRY: Duration = Duration::hours(1);

pub struct Courier<S> {
    store: S,
    channels: BTreeMap<String, Open>,
    /// Signs snooze links, under `settings.public_url` when it is set.
    links: Links,
    public_url: Option<String>,
    http: reqwest::Client,
    observer: Option<Arc<dyn DeliveryObserver>>,
}

/// A channel with its secrets read and its rate limit.
struct Open {
    kind: ChannelKind,
    to: Result<To, DeliveryError>,
    secret: Option<Secret>,
    limiter: DefaultDirectRateLimiter,
}

/// Where a channel's notices go.
enum To {
    Url(Secret),
    Mail(Box<Mailer>),
}

/// What one round did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Round {
    pub delivered: usize,
    pub failed: usize,
    /// Left for a later round by a rate limit.
    pub waiting: usize,
}

impl<S: Store> Courier<S> {
    pub fn new(
        store: S,
        channels: &[Channel],
        links: Links,
        public_url: Option<String>,
        observer: Option<Arc<dyn DeliveryObserver>>,
    ) -> Self {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            // A webhook that redirects could send the body elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("an HTTP client with rustls builds");
        let mut courier = Courier { store, channels: BTreeMap::new(), links, public_url, http, observer };
        courier.set_channels(channels);
        courier
    }

    /// Takes the channels and public address of a policy file reloaded.
    pub fn reload(&mut self, channels: &[Channel], public_url: Option<String>) {
        self.public_url = public_url;
        self.set_channels(channels);
    }

    fn set_channels(&mut self, channels: &[Channel]) {
        self.channels = channels
            .iter()
            .map(|c| {
                let to = c.url.read().map_err(|e| DeliveryError::Channel(e.to_string())).and_then(|url| {
                    let url = url.expose().trim();
                    match c.kind {
                        ChannelKind::Email => Mailer::new(url, c.from.as_deref(), &c.to).map(|m| To::Mail(Box::new(m))),
                        kind => match kind.url_problem(url) {
                            None => Ok(To::Url(Secret::new(url))),
                            Some(problem) => Err(DeliveryError::Channel(format!("the channel's url {problem}"))),
                        },
                    }
                });
                let secret = c.secret.as_ref().and_then(|s| s.read().ok()).map(|s| Secret::new(s.expose().trim()));
                let per_minute = NonZeroU32::new(c.per_minute).unwrap_or(NonZeroU32::MIN);
                let limiter = RateLimiter::direct(Quota::per_minute(per_minute));
                (c.name.clone(), Open { kind: c.kind, to, secret, limiter })
            })
            .collect();
    }

    /// Delivers what is due at `now`.
    pub async fn round(&mut self, now: DateTime<Utc>) -> Result<Round, LedgerError> {
        let mut done = Round::default();
        let grouped = |channel: &str| self.channels.get(channel).is_some_and(|open| open.kind.groups());
        let due = self.store.due_notices(now, ROUND).await?.into_iter().map(Due::read).collect();
        for batch in batches(due, grouped) {
            let channel = batch[0].notice.channel.clone();
            let result = match self.channels.get(&channel) {
                None => Err(DeliveryError::NoChannel(crate::text::Shown(&channel).to_string())),
                Some(open) if open.limiter.check().is_err() => {
                    done.waiting += batch.len();
                    continue;
                }
                Some(open) => self.send(open, &batch, now).await,
            };
            for Due { notice, .. } in &batch {
                match &result {
                    Ok(()) => {
                        self.store.notice_delivered(notice.id, now).await?;
                        done.delivered += 1;
                        self.tell(&channel, Delivery::Delivered);
                    }
                    Err(error) => {
                        let attempts = notice.attempts + 1;
                        let wait = (FIRST_RETRY * 2i32.saturating_pow(attempts.min(12) - 1)).min(LAST_RETRY);
                        let (reason, retry_in_seconds) = (error.metric_label(), wait.num_seconds());
                        tracing::warn!(%channel, attempts, %error, reason, retry_in_seconds, "notice not delivered");
                        self.store.notice_failed(notice.id, attempts, now + wait, &error.to_string()).await?;
                        done.failed += 1;
                        self.tell(&channel, Delivery::Failed);
                    }
                }
            }
        }
        if let Some(observer) = &self.observer {
            let channels: Vec<String> = self.channels.keys().cloned().collect();
            observer.waiting(&channels, &self.store.undelivered_notices().await?, now);
        }
        Ok(done)
    }

    /// Sends one notice, or warnings grouped into one message.
    async fn send(&self, open: &Open, batch: &[Due], now: DateTime<Utc>) -> Result<(), DeliveryError> {
        let to = open.to.as_ref().map_err(Clone::clone)?;
        let mut bodies = Vec::with_capacity(batch.len());
        for due in batch {
            let mut body = due.body.clone()?;
            if let (Body::Message(message), Some(public_url)) = (&mut body, &self.public_url)
                && let Some(expires) = message.link_expires
            {
                message.snooze_url = Some(self.links.url(public_url, &message.instance_name, expires));
            }
            bodies.push(body);
        }
        let text = match bodies.as_slice() {
            [one] => one.text(),
            many => super::grouped(many.iter().filter_map(|b| match b {
                Body::Message(message) => Some(message),
                Body::Digest(_) => None,
            })),
        };
        let url = match to {
            To::Mail(mailer) => return mailer.send(&text, now).await,
            To::Url(url) => url,
        };
        let secret = open.secret.as_ref().map(Secret::expose);
        let post = match bodies.as_slice() {
            [one] => platform::post(open.kind, url.expose(), secret, one, now),
            _ => platform::post_text(open.kind, url.expose(), secret, &text, now),
        }
        .ok_or_else(|| DeliveryError::Channel("a channel that takes no post".into()))?;
        let mut request = self.http.post(&post.url).header("content-type", "application/json").body(post.body);
        for (name, value) in post.headers {
            request = request.header(name, value);
        }
        // The URL holds the channel's key: errors name the channel, never the URL.
        let answer = request.send().await.map_err(|e| {
            let why = if e.is_timeout() {
                "timed out"
            } else if e.is_connect() {
                "could not connect"
            } else {
                "failed"
            };
            DeliveryError::Request(why)
        })?;
        let status = answer.status();
        let body = answer.bytes().await.map_err(|_| DeliveryError::Request("ended before its answer was read"))?;
        if !status.is_success() {
            return Err(DeliveryError::Status(status));
        }
        platform::accepted(open.kind, &body)
    }

    fn tell(&self, channel: &str, outcome: Delivery) {
        if let Some(observer) = &self.observer {
            observer.attempted(channel, outcome);
        }
    }
}

/// A notice due, with its body read once: unreadable, it fails as it is sent.
struct Due {
    notice: Notice,
    body: Result<Body, DeliveryError>,
}

impl Due {
    fn read(notice: Notice) -> Due {
        let body = serde_json::from_str(&notice.body).map_err(|e| DeliveryError::Unreadable(e.to_string()));
        Due { notice, body }
    }

    fn is_warning(&self) -> bool {
        matches!(&self.body, Ok(Body::Message(m)) if m.event == super::Event::Warning)
    }
}

/// Warnings due together on a channel that groups, at least this many, go out as one message.
const GROUP_FROM: usize = 4;
/// At most this many to a message: WeCom takes 4,096 bytes of markdown.
const GROUP_MOST: usize = 10;

/// The due notices as sends: one each, except a channel's warnings in a
/// burst, which go in groups (a schedule's stop warns a hundred people at
/// once, and a bot takes twenty messages a minute).
fn batches(due: Vec<Due>, grouped: impl Fn(&str) -> bool) -> Vec<Vec<Due>> {
    let mut warnings: BTreeMap<String, Vec<Due>> = BTreeMap::new();
    let mut out = Vec::new();
    for due in due {
        if grouped(&due.notice.channel) && due.is_warning() {
            warnings.entry(due.notice.channel.clone()).or_default().push(due);
        } else {
            out.push(vec![due]);
        }
    }
    for (_, notices) in warnings {
        if notices.len() < GROUP_FROM {
            out.extend(notices.into_iter().map(|n| vec![n]));
            continue;
        }
        let mut notices = notices.into_iter().peekable();
        while notices.peek().is_some() {
            out.push(notices.by_ref().take(GROUP_MOST).collect());
        }
    }
    out
}
