//! Email over SMTP: a notice becomes one plain-text mail (UTF-8, base64)
//! whose subject is its headline, sent with STARTTLS required or over TLS
//! (`smtps://`); only a relay on this machine may go without.

use chrono::{DateTime, Utc};
use lettre::message::header::{ContentTransferEncoding, ContentType};
use lettre::message::{Body, Mailbox, SinglePart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use super::Text;
use super::error::DeliveryError;
use crate::config::notify::smtp_url;

/// One channel's mail server, sender and recipients.
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    to: Vec<Mailbox>,
}

impl Mailer {
    /// The mailer of a server's `url` (credentials in it) for `from` and `to`.
    pub fn new(url: &str, from: Option<&str>, to: &[String]) -> Result<Mailer, DeliveryError> {
        let channel = |why: &str| DeliveryError::Channel(why.to_owned());
        let url = smtp_url(url).map_err(|problem| DeliveryError::Channel(format!("the channel's url {problem}")))?;
        // lettre's errors may quote the URL, and the URL holds the password.
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(&url)
            .map_err(|_| channel("the channel's url is not an SMTP server's URL"))?
            .timeout(Some(std::time::Duration::from_secs(10)))
            .build();
        let from = from
            .ok_or_else(|| channel("the channel has no `from`"))?
            .parse()
            .map_err(|_| channel("`from` is not an address"))?;
        let to =
            to.iter().map(|t| t.parse().map_err(|_| channel("a `to` is not an address"))).collect::<Result<_, _>>()?;
        Ok(Mailer { transport, from, to })
    }

    /// Sends `text`; each mention that is an address is one more recipient.
    pub async fn send(&self, text: &Text, now: DateTime<Utc>) -> Result<(), DeliveryError> {
        let mut builder = lettre::Message::builder()
            .from(self.from.clone())
            .subject(text.headline.clone())
            .date(now.into())
            .user_agent(concat!("mdc-autoscaler/", env!("CARGO_PKG_VERSION")).to_owned());
        for to in &self.to {
            builder = builder.to(to.clone());
        }
        for mention in text.mentions.iter().filter_map(|m| m.parse::<Mailbox>().ok()) {
            builder = builder.to(mention);
        }
        let part = SinglePart::builder().header(ContentType::TEXT_PLAIN).body(
            Body::new_with_encoding(plain(text), ContentTransferEncoding::Base64).expect("base64 takes any text"),
        );
        let mail = builder
            .singlepart(part)
            .map_err(|e| DeliveryError::Channel(format!("the mail could not be built: {e}")))?;
        self.transport.send(mail).await.map(|_| ()).map_err(|e| {
            // The server's answer, never the URL: it holds the password.
            let why = if e.is_permanent() {
                "refused it permanently"
            } else if e.is_transient() {
                "refused it for now"
            } else if e.is_timeout() {
                "timed out"
            } else {
                "could not be reached or spoke no SMTP"
            };
            DeliveryError::Mail { why, code: e.status().map(|c| c.to_string()) }
        })
    }
}

/// The mail's body: the headline, each section under its title, the link.
pub fn plain(text: &Text) -> String {
    text.listed("", "", |label, url| format!("{label}: {url}"))
}
