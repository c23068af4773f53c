//! Telling people: a warning before a stop or delete, with a snooze link,
//! the notice of a stop that went ahead unannounced, and the [`digest`] of
//! spend and savings. A [`Body`] is what is said, [`Text`] how people read
//! it; [`platform`] puts it in each platform's own format and signature;
//! [`courier`] delivers from the ledger's outbox; [`link`] signs the snooze
//! links the daemon's page honours.

pub mod courier;
pub mod digest;
pub mod email;
pub mod link;
pub mod platform;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::config::notify::PolicyNotify;
use crate::plan::{Action, Warning};

/// What a notice says, whatever the platform: kept as JSON in the outbox
/// and sent as is by a webhook. Each kind carries its `event`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Body {
    Message(Message),
    Digest(digest::Digest),
}

impl Body {
    pub fn text(&self) -> Text {
        match self {
            Body::Message(message) => message.text(),
            Body::Digest(digest) => digest.text(),
        }
    }
}

/// A notice as people read it, before a platform formats it.
#[derive(Clone, Debug, PartialEq)]
pub struct Text {
    /// One line for a title, a subject or a phone's notification.
    pub headline: String,
    pub sections: Vec<Section>,
    /// A button or link: its label and address.
    pub link: Option<(String, String)>,
    /// Someone to mention, as the platform writes it.
    pub mention: Option<String>,
}

/// Lines under an optional title.
#[derive(Clone, Debug, PartialEq)]
pub struct Section {
    pub title: Option<String>,
    pub lines: Vec<String>,
}

/// What is said about one action, whatever the platform.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// `warning` (before an action) or `unannounced` (an action taken without a delivered warning).
    pub event: Event,
    pub policy: String,
    pub instance_name: String,
    pub display_name: String,
    /// `power_off` or `delete`.
    pub action: String,
    /// What the policy acts for: `idle`, `schedule`, `runaway`, `budget`, `scale_down`, `retention`.
    pub cause: String,
    pub reason: String,
    /// When it happens (a warning) or happened.
    pub at: DateTime<Utc>,
    pub snapshot: bool,
    pub saving_per_hour_yuan: f64,
    /// Someone to mention, as the platform writes it.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub mention: Option<String>,
    /// Until when its snooze link works (a warning, with `settings.public_url`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub link_expires: Option<DateTime<Utc>>,
    /// The snooze page, signed as the notice is sent: never stored.
    #[serde(skip_deserializing, skip_serializing_if = "Option::is_none")]
    pub snooze_url: Option<String>,
    /// The zone the times are written in.
    pub timezone: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    Warning,
    Unannounced,
}

impl Event {
    pub fn label(self) -> &'static str {
        match self {
            Event::Warning => "warning",
            Event::Unannounced => "unannounced",
        }
    }
}

impl Message {
    /// The warning of `warning`, for its policy's recipient.
    pub fn warning(warning: &Warning, notify: &PolicyNotify, zone: Tz, link_expires: Option<DateTime<Utc>>) -> Message {
        let (_, mention) = notify.recipient(&warning.instance.display_name);
        Message {
            event: Event::Warning,
            policy: warning.policy.clone(),
            instance_name: warning.instance.name.clone(),
            display_name: warning.instance.display_name.clone(),
            action: warning.key.action.clone(),
            cause: warning.cause.label().to_owned(),
            reason: warning.reason.clone(),
            at: warning.act_at,
            snapshot: warning.snapshot,
            saving_per_hour_yuan: warning.saving_per_hour.as_yuan_f64(),
            mention: mention.map(str::to_owned),
            link_expires,
            snooze_url: None,
            timezone: zone.name().to_owned(),
        }
    }

    /// The notice of an action taken before its warning was delivered.
    pub fn unannounced(action: &Action, notify: &PolicyNotify, zone: Tz, at: DateTime<Utc>) -> Message {
        let (_, mention) = notify.recipient(&action.instance.display_name);
        Message {
            event: Event::Unannounced,
            policy: action.policy.clone(),
            instance_name: action.instance.name.clone(),
            display_name: action.instance.display_name.clone(),
            action: action.kind.label().to_owned(),
            cause: action.cause.label().to_owned(),
            reason: action.reason.clone(),
            at,
            snapshot: matches!(&action.kind, crate::plan::ActionKind::PowerOff(off) if off.snapshot.is_some()),
            saving_per_hour_yuan: action.saving_per_hour.as_yuan_f64(),
            mention: mention.map(str::to_owned),
            link_expires: None,
            snooze_url: None,
            timezone: zone.name().to_owned(),
        }
    }

    /// One line for a title or a phone's notification.
    pub fn headline(&self) -> String {
        let what = self.what();
        match self.event {
            Event::Warning => format!("{} will be {what} at {}", self.display_name, self.local(self.at)),
            Event::Unannounced => {
                format!("{} was {what} at {} before its warning was delivered", self.display_name, self.local(self.at))
            }
        }
    }

    pub fn text(&self) -> Text {
        Text {
            headline: self.headline(),
            sections: vec![Section { title: None, lines: self.details() }],
            link: self.snooze_url.clone().map(|url| ("Keep it running".to_owned(), url)),
            mention: self.mention.clone(),
        }
    }

    /// The lines under the headline: why, the money, what to do.
    pub fn details(&self) -> Vec<String> {
        let mut lines = vec![format!("Why: {} (policy {})", self.reason, self.policy)];
        if self.saving_per_hour_yuan > 0.0 {
            lines.push(format!("Saves ¥{:.2}/h", self.saving_per_hour_yuan));
        }
        match (self.event, &self.link_expires) {
            (Event::Warning, Some(_)) => lines.push("Still using it? Keep it running from the link.".into()),
            (Event::Warning, None) => lines.push("Still using it? Ask an admin for a snooze.".into()),
            (Event::Unannounced, _) => lines.push(
                "The channel did not take the warning in time; a stop goes ahead so idle GPUs do not burn money."
                    .into(),
            ),
        }
        lines
    }

    fn what(&self) -> &'static str {
        match (self.action.as_str(), self.snapshot) {
            ("delete", _) => "deleted",
            (_, true) => "stopped with a snapshot",
            _ => "stopped",
        }
    }

    fn local(&self, at: DateTime<Utc>) -> String {
        let zone: Tz = self.timezone.parse().unwrap_or(chrono_tz::UTC);
        at.with_timezone(&zone).format("%Y-%m-%d %H:%M %Z").to_string()
    }
}
