//! Telling people: a warning before a stop or delete, with a snooze link,
//! the notice of a stop that went ahead unannounced, and the [`digest`] of
//! spend and savings. A [`Body`] is what is said, [`Text`] how people read
//! it; [`platform`] puts it in each platform's own format and signature;
//! [`courier`] delivers from the ledger's outbox; [`link`] signs the snooze
//! links the daemon's page honours.

pub mod courier;
pub mod digest;
pub mod email;
pub mod error;
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
    /// Whom to mention, as the platform writes them.
    pub mentions: Vec<String>,
}

/// Warnings sent together: each under its own headline, with its link.
pub fn grouped<'a>(messages: impl Iterator<Item = &'a Message>) -> Text {
    let mut sections = Vec::new();
    let mut mentions: Vec<String> = Vec::new();
    let mut deletes = false;
    for message in messages {
        let mut lines = message.facts();
        if let Some(url) = &message.snooze_url {
            lines.push(format!("Keep it running: {url}"));
        }
        sections.push(Section { title: Some(message.headline()), lines });
        mentions.extend(message.mention.clone().filter(|m| !mentions.contains(m)));
        deletes |= message.action == "delete";
    }
    let what = if deletes { "stopped or deleted" } else { "stopped" };
    Text { headline: format!("{} instances will be {what} soon", sections.len()), sections, link: None, mentions }
}

impl Text {
    /// The headline, each section's lines as a list under its title, then
    /// the link: `heading` and `title` mark the headline and the titles.
    pub fn listed(&self, heading: &str, title: &str, link: impl Fn(&str, &str) -> String) -> String {
        let mut out = format!("{heading}{}\n", self.headline);
        for section in &self.sections {
            out.push('\n');
            if let Some(name) = &section.title {
                out += &format!("{title}{name}\n");
            }
            for line in &section.lines {
                out += &format!("- {line}\n");
            }
        }
        if let Some((label, url)) = &self.link {
            out += &format!("\n{}\n", link(label, url));
        }
        out
    }
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
    /// The headline in the policy's words (`notify.headline`), if it has some.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub headline: Option<String>,
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
        let mut message = Message {
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
            headline: None,
        };
        message.headline = notify.headline.as_ref().map(|template| {
            template.render(|placeholder| match placeholder {
                "display_name" => message.display_name.clone(),
                "instance" => message.instance_name.clone(),
                "policy" => message.policy.clone(),
                "action" => message.what().to_owned(),
                "cause" => message.cause.clone(),
                "reason" => message.reason.clone(),
                "at" => message.local(message.at),
                "saving" => format!("¥{:.2}/h", message.saving_per_hour_yuan),
                _ => String::new(),
            })
        });
        message
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
            headline: None,
        }
    }

    /// One line for a title or a phone's notification.
    pub fn headline(&self) -> String {
        if let Some(headline) = &self.headline {
            return headline.clone();
        }
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
            mentions: self.mention.iter().cloned().collect(),
        }
    }

    /// The lines under the headline: why, the money, what to do.
    pub fn details(&self) -> Vec<String> {
        let mut lines = self.facts();
        lines.push(match (self.event, &self.link_expires) {
            (Event::Warning, Some(_)) => "Still using it? Keep it running from the link.".into(),
            (Event::Warning, None) => "Still using it? Ask an admin for a snooze.".into(),
            (Event::Unannounced, _) => {
                "The channel did not take the warning in time; a stop goes ahead so idle GPUs do not burn money.".into()
            }
        });
        lines
    }

    /// Why, and the money.
    fn facts(&self) -> Vec<String> {
        let mut lines = vec![format!("Why: {} (policy {})", self.reason, self.policy)];
        if self.saving_per_hour_yuan > 0.0 {
            lines.push(format!("Saves ¥{:.2}/h", self.saving_per_hour_yuan));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Cause, InstanceRef, WarningKey};
    use chrono::TimeZone;

    #[test]
    fn a_policy_words_its_warnings_headline_and_keeps_the_rest() {
        let text = r#"
settings:
  notify: { channels: [{ name: team, kind: slack, url: { env: SLACK_URL } }] }
policies:
  - name: notebooks
    select: { display_name: "nb-*" }
    idle: { stop_after: 30m }
    notify: { channel: team, headline: "{display_name}: {action} at {at} unless you keep it ({saving}, {{policy}} {policy})" }
"#;
        let (config, report) = crate::config::load::load_str("t", text);
        let config = config.unwrap_or_else(|| panic!("{report}"));
        let notify = config.policies[0].notify.as_ref().unwrap();
        let at = Utc.with_ymd_and_hms(2026, 12, 3, 6, 45, 0).unwrap();
        let warning = Warning {
            policy: "notebooks".into(),
            instance: InstanceRef { name: "instance-a".into(), display_name: "nb-alice".into(), cluster: "c".into() },
            key: WarningKey { instance: "instance-a".into(), action: "power_off".into(), occasion: at },
            cause: Cause::Idle,
            act_at: at,
            reason: "idle for 20m".into(),
            snapshot: true,
            saving_per_hour: crate::money::Money::from_yuan_f64(2.5).unwrap(),
        };
        let message = Message::warning(&warning, notify, chrono_tz::Asia::Shanghai, None);
        assert_eq!(
            message.text().headline,
            "nb-alice: stopped with a snapshot at 2026-12-03 14:45 CST unless you keep it (¥2.50/h, {policy} notebooks)"
        );
        assert_eq!(message.details()[0], "Why: idle for 20m (policy notebooks)");
    }
}
