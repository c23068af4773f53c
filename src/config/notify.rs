//! Who hears of an action before it happens: the channels notices go to
//! (`settings.notify.channels`), and per policy the channel, how long before
//! each kind of action its warning goes out, and the owners of instances.

use std::collections::BTreeMap;

use chrono::Duration;
use schemars::JsonSchema;
use serde::Deserialize;

use chrono_tz::Tz;

use super::check::Checker;
use super::policy::{Cron, Glob};
use super::raw;
use super::yaml::{self, Loc};
use crate::secret::SecretSource;

/// The platforms a channel speaks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChannelKind {
    /// Any receiver: JSON, signed with HMAC-SHA256 (see the README).
    Webhook,
    /// A Slack incoming webhook.
    Slack,
    /// A Feishu or Lark custom bot.
    Feishu,
    /// A DingTalk custom robot.
    Dingtalk,
    /// A WeCom (WeChat Work) group bot.
    Wecom,
    /// Email over SMTP, with STARTTLS or TLS.
    Email,
}

impl ChannelKind {
    pub fn label(self) -> &'static str {
        match self {
            ChannelKind::Webhook => "webhook",
            ChannelKind::Slack => "slack",
            ChannelKind::Feishu => "feishu",
            ChannelKind::Dingtalk => "dingtalk",
            ChannelKind::Wecom => "wecom",
            ChannelKind::Email => "email",
        }
    }

    /// Whether a burst of warnings goes out in groups: people read chats
    /// and mail; a webhook's receiver takes one notice per request.
    pub fn groups(self) -> bool {
        self != ChannelKind::Webhook
    }

    /// Why `url` cannot be this channel's: a webhook must be https (or
    /// http to this machine), a mail server reached over TLS (or on this machine).
    pub fn url_problem(self, url: &str) -> Option<&'static str> {
        match self {
            ChannelKind::Email => smtp_url(url).err(),
            _ if is_https_or_local(url) => None,
            _ => Some("must be https:// (or http:// to this machine): its notices carry snooze links"),
        }
    }

    /// Messages a minute the platform takes from one bot: DingTalk and WeCom
    /// document 20, Feishu 100, Slack about one a second.
    pub fn per_minute(self) -> u32 {
        match self {
            ChannelKind::Dingtalk | ChannelKind::Wecom => 20,
            ChannelKind::Feishu => 100,
            ChannelKind::Slack | ChannelKind::Webhook => 60,
            // What a small mail relay takes without calling it a flood.
            ChannelKind::Email => 30,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Channel {
    pub name: String,
    pub kind: ChannelKind,
    pub url: SecretSource,
    pub secret: Option<SecretSource>,
    pub per_minute: u32,
    /// `email`: the sender and the recipients.
    pub from: Option<String>,
    pub to: Vec<String>,
}

/// The actions a warning goes out before, spelled as `warn_before` keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Warned {
    Idle,
    Schedule,
    MaxRuntime,
    Budget,
    ScaleDown,
    Delete,
}

impl Warned {
    pub const ALL: [Warned; 6] =
        [Warned::Idle, Warned::Schedule, Warned::MaxRuntime, Warned::Budget, Warned::ScaleDown, Warned::Delete];

    pub fn label(self) -> &'static str {
        match self {
            Warned::Idle => "idle",
            Warned::Schedule => "schedule",
            Warned::MaxRuntime => "max_runtime",
            Warned::Budget => "budget",
            Warned::ScaleDown => "scale_down",
            Warned::Delete => "delete",
        }
    }
}

/// A policy's notices.
#[derive(Clone, Debug, PartialEq)]
pub struct PolicyNotify {
    pub channel: String,
    /// How long before each kind of action its warning goes out; a stop not
    /// named goes unwarned, a delete never ([`Self::DEFAULT_DELETE_WARNING`]).
    pub warn_before: BTreeMap<Warned, Duration>,
    pub owners: Vec<Owner>,
    pub snooze_max: Duration,
    /// A warning's headline in the policy's words.
    pub headline: Option<Template>,
}

impl PolicyNotify {
    pub const DEFAULT_SNOOZE_MAX: Duration = Duration::days(3);
    /// A policy with a channel warns of every delete, this long ahead unless told.
    pub const DEFAULT_DELETE_WARNING: Duration = Duration::days(1);

    /// Where an instance's notices go, and whom they mention.
    pub fn recipient(&self, display_name: &str) -> (&str, Option<&str>) {
        match self.owners.iter().find(|o| o.display_name.matches(display_name)) {
            Some(owner) => (owner.channel.as_deref().unwrap_or(&self.channel), owner.mention.as_deref()),
            None => (&self.channel, None),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Owner {
    pub display_name: Glob,
    pub channel: Option<String>,
    pub mention: Option<String>,
}

/// The summaries of spend, savings and actions sent on a schedule.
#[derive(Clone, Debug)]
pub struct Digest {
    pub channels: Vec<String>,
    /// The policies it covers; none: all of them, and the global budget.
    pub policies: Vec<Glob>,
    /// When each period's digest goes out; it covers the time since the one before.
    pub schedules: Vec<(DigestPeriod, Cron)>,
    pub timezone: Tz,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum DigestPeriod {
    Daily,
    Weekly,
}

impl DigestPeriod {
    pub fn label(self) -> &'static str {
        match self {
            DigestPeriod::Daily => "daily",
            DigestPeriod::Weekly => "weekly",
        }
    }
}

/// The daily digest's time unless told: nine in the morning.
pub const DEFAULT_DAILY_DIGEST: &str = "0 9 * * *";

/// Why a template does not read.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum TemplateError {
    #[error("a `}}` with no `{{` (write `}}}}` for a brace)")]
    Unopened,
    #[error("a `{{` with no `}}` (write `{{{{` for a brace)")]
    Unclosed,
    #[error(
        "unknown placeholder `{{{name}}}`{}; the placeholders are {}",
        yaml::suggestion(name, &Template::PLACEHOLDERS),
        Template::PLACEHOLDERS.map(|p| format!("{{{p}}}")).join(", ")
    )]
    Unknown { name: String },
}

/// Text with `{placeholder}`s, each one of [`Template::PLACEHOLDERS`]; `{{` and `}}` are braces.
#[derive(Clone, Debug, PartialEq)]
pub struct Template(String);

impl Template {
    pub const PLACEHOLDERS: [&str; 8] =
        ["display_name", "instance", "policy", "action", "cause", "reason", "at", "saving"];

    pub fn parse(text: &str) -> Result<Template, TemplateError> {
        let mut rest = text;
        while let Some(open) = rest.find(['{', '}']) {
            let (brace, after) = (rest.as_bytes()[open], &rest[open + 1..]);
            if after.starts_with(brace as char) {
                rest = &after[1..];
                continue;
            }
            if brace == b'}' {
                return Err(TemplateError::Unopened);
            }
            let close = after.find('}').ok_or(TemplateError::Unclosed)?;
            let name = &after[..close];
            if !Self::PLACEHOLDERS.contains(&name) {
                return Err(TemplateError::Unknown { name: name.to_owned() });
            }
            rest = &after[close + 1..];
        }
        Ok(Template(text.to_owned()))
    }

    /// The text with each placeholder replaced by what `value` gives for it.
    pub fn render(&self, value: impl Fn(&str) -> String) -> String {
        let mut out = String::new();
        let mut rest = self.0.as_str();
        while let Some(open) = rest.find(['{', '}']) {
            out += &rest[..open];
            let after = &rest[open + 1..];
            if after.starts_with(rest.as_bytes()[open] as char) {
                out.push(rest.as_bytes()[open] as char);
                rest = &after[1..];
                continue;
            }
            // Parsed: every `{` here opens a known placeholder.
            let close = after.find('}').unwrap_or(after.len());
            out += &value(&after[..close]);
            rest = after.get(close + 1..).unwrap_or("");
        }
        out + rest
    }
}

/// A warning's lead, from a minute to a week.
const WARN_BEFORE: (Duration, Duration) = (Duration::minutes(1), Duration::days(7));
const SNOOZE_MAX: (Duration, Duration) = (Duration::hours(1), Duration::days(30));

impl Checker {
    /// The channels, each with its secrets decoded apart (see `load.rs`).
    pub fn channels(
        &mut self,
        raw: Vec<raw::Channel>,
        secrets: &mut dyn FnMut(usize, &str, &mut Checker) -> Option<SecretSource>,
    ) -> Vec<Channel> {
        let mut channels: Vec<Channel> = Vec::new();
        for (index, c) in raw.into_iter().enumerate() {
            let name = c.name.value.trim().to_owned();
            if name.is_empty() {
                self.error(c.name.pos, "a channel needs a name");
            } else if channels.iter().any(|other| other.name == name) {
                self.error(c.name.pos, format!("channel `{name}` is named twice"));
            }
            let kind = c.kind.value;
            let url = secrets(index, "url", self);
            let secret = c.secret.and_then(|_| secrets(index, "secret", self));
            if kind == ChannelKind::Webhook && c.secret.is_none() {
                self.error(
                    c.name.pos,
                    format!("channel `{name}`: a webhook needs `secret`, so receivers can verify what it sends"),
                );
            }
            if kind == ChannelKind::Slack && c.secret.is_some() {
                self.warning(
                    c.name.pos,
                    format!("channel `{name}`: Slack incoming webhooks are not signed; `secret` is not used"),
                );
            }
            let per_minute = match c.per_minute {
                Some(n) if n.value == 0 => {
                    self.error(n.pos, "per_minute must be at least 1");
                    kind.per_minute()
                }
                Some(n) if n.value > kind.per_minute() => {
                    self.warning(
                        n.pos,
                        format!("{} takes at most {} messages a minute from one bot", kind.label(), kind.per_minute()),
                    );
                    n.value
                }
                Some(n) => n.value,
                None => kind.per_minute(),
            };
            let mailbox = |checker: &mut Checker, address: &Loc<String>| {
                let parsed = address.value.parse::<lettre::message::Mailbox>();
                if parsed.is_err() {
                    checker.error(address.pos, format!("`{}` is not an email address", address.value));
                }
                parsed.is_ok()
            };
            if kind == ChannelKind::Email {
                match &c.from {
                    Some(from) => _ = mailbox(self, from),
                    None => self.error(c.name.pos, format!("channel `{name}`: email needs `from`")),
                }
                if c.to.is_empty() {
                    self.error(c.name.pos, format!("channel `{name}`: email needs `to`, one address or more"));
                }
                for to in &c.to {
                    mailbox(self, to);
                }
                if c.secret.is_some() {
                    self.warning(
                        c.name.pos,
                        format!("channel `{name}`: email is not signed; the server's password goes in `url`"),
                    );
                }
            } else if let Some(at) = c.from.as_ref().map(|f| f.pos).or_else(|| c.to.first().map(|t| t.pos)) {
                self.error(at, format!("channel `{name}`: `from` and `to` are for email channels"));
            }
            if let Some(url) = url {
                let (from, to) = (c.from.map(|f| f.value), c.to.into_iter().map(|t| t.value).collect());
                channels.push(Channel { name, kind, url, secret, per_minute, from, to });
            }
        }
        channels
    }

    /// A policy's `notify`, checked against the channels and its idle timer.
    pub fn policy_notify(
        &mut self,
        raw: raw::PolicyNotify,
        channels: &[String],
        earliest_idle_stop: Option<Duration>,
    ) -> Option<PolicyNotify> {
        let known: Vec<&str> = channels.iter().map(String::as_str).collect();
        let named = |checker: &mut Checker, channel: &Loc<String>| {
            let found = known.contains(&channel.value.as_str());
            if !found {
                let hint = yaml::suggestion(&channel.value, &known);
                let message = if known.is_empty() {
                    format!("unknown channel `{}`: settings.notify.channels names none", channel.value)
                } else {
                    format!("unknown channel `{}`{hint}", channel.value)
                };
                checker.error(channel.pos, message);
            }
            found
        };
        let mut ok = named(self, &raw.channel);
        let mut warn_before = BTreeMap::new();
        if let Some(written) = &raw.warn_before {
            let each = &written.value.each;
            let given = [&each.idle, &each.schedule, &each.max_runtime, &each.budget, &each.scale_down, &each.delete];
            for (warned, value) in Warned::ALL.into_iter().zip(given) {
                let value = match (&written.value.all, value) {
                    (_, Some(value)) => value.clone(),
                    (Some(all), None) => Loc { value: *all, pos: written.pos },
                    (None, None) => continue,
                };
                let what = format!("warn_before.{}", warned.label());
                if let Some(lead) = self.duration(&value, &what, WARN_BEFORE) {
                    if let (Warned::Idle, Some(stop)) = (warned, earliest_idle_stop)
                        && lead > stop
                    {
                        self.error(
                            value.pos,
                            format!(
                                "{what} is longer than the shortest idle timer ({}): the warning would go out before the instance is idle",
                                super::check::shown(stop)
                            ),
                        );
                        ok = false;
                    }
                    warn_before.insert(warned, lead);
                }
            }
        }
        warn_before.entry(Warned::Delete).or_insert(PolicyNotify::DEFAULT_DELETE_WARNING);
        let mut owners = Vec::new();
        for owner in raw.owners {
            if owner.channel.is_none() && owner.mention.is_none() {
                self.error(owner.display_name.pos, "an owner needs `channel`, `mention`, or both");
            }
            if let Some(channel) = &owner.channel {
                ok &= named(self, channel);
            }
            owners.push(Owner {
                display_name: Glob::new(&owner.display_name.value),
                channel: owner.channel.map(|c| c.value),
                mention: owner.mention.map(|m| m.value),
            });
        }
        let snooze_max = raw
            .snooze_max
            .and_then(|m| self.duration(&m, "snooze_max", SNOOZE_MAX))
            .unwrap_or(PolicyNotify::DEFAULT_SNOOZE_MAX);
        let headline = raw.headline.and_then(|text| match Template::parse(&text.value) {
            Ok(template) => Some(template),
            Err(problem) => {
                self.error(text.pos, format!("headline: {problem}"));
                ok = false;
                None
            }
        });
        ok.then_some(PolicyNotify { channel: raw.channel.value, warn_before, owners, snooze_max, headline })
    }

    /// `settings.notify.digest`, checked against the channels.
    pub fn digest(&mut self, raw: Loc<raw::Digest>, channels: &[Channel], zone: Option<Tz>) -> Option<Digest> {
        let (pos, raw) = (raw.pos, raw.value);
        let known: Vec<&str> = channels.iter().map(|c| c.name.as_str()).collect();
        let mut ok = true;
        if raw.channels.is_empty() {
            self.error(pos, "a digest needs `channels`");
            ok = false;
        }
        for channel in &raw.channels {
            if !known.contains(&channel.value.as_str()) {
                let hint = yaml::suggestion(&channel.value, &known);
                self.error(channel.pos, format!("unknown channel `{}`{hint}", channel.value));
                ok = false;
            }
        }
        let timezone = match &raw.timezone {
            Some(zone) => self.timezone(zone),
            None => Some(zone.unwrap_or(super::check::DEFAULT_TIMEZONE)),
        };
        let mut schedules = Vec::new();
        let daily = match raw.daily {
            Some(text) if text.value.trim() == "off" => None,
            Some(text) => Some(text),
            None => Some(Loc { value: DEFAULT_DAILY_DIGEST.to_owned(), pos }),
        };
        for (period, text) in [(DigestPeriod::Daily, daily), (DigestPeriod::Weekly, raw.weekly)] {
            if let Some(text) = text {
                match self.cron(&text) {
                    Some(cron) => schedules.push((period, cron)),
                    None => ok = false,
                }
            }
        }
        let timezone = timezone.filter(|_| ok)?;
        let policies = raw.policies.0.into_iter().map(|p| Glob::new(&p.value)).collect();
        Some(Digest { channels: raw.channels.into_iter().map(|c| c.value).collect(), policies, schedules, timezone })
    }

    /// `settings.public_url`: https, or http on this machine.
    pub fn public_url(&mut self, raw: Option<Loc<String>>) -> Option<String> {
        let url = raw?;
        let text = url.value.trim().trim_end_matches('/').to_owned();
        if !is_https_or_local(&text) {
            self.error(
                url.pos,
                "public_url must be an https:// address (or http://localhost): snooze links carry tokens",
            );
            return None;
        }
        Some(text)
    }
}

/// Whether a URL is `https://…`, or `http://` to this machine (tests, a local relay).
pub fn is_https_or_local(url: &str) -> bool {
    if url.len() > 8 && url[..8].eq_ignore_ascii_case("https://") {
        return true;
    }
    url.get(..7).is_some_and(|s| s.eq_ignore_ascii_case("http://")) && is_local(&url[7..])
}

/// Whether the host of `rest` (what follows `scheme://`) is this machine.
fn is_local(rest: &str) -> bool {
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit('@').next().unwrap_or("");
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.split(':').next().unwrap_or(""),
    };
    host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// A mail server's URL as the SMTP client takes it: `smtps://` (TLS), or
/// `smtp://` with STARTTLS required, which a relay on this machine may go without.
pub fn smtp_url(url: &str) -> Result<String, &'static str> {
    let (scheme, rest) = url.split_once("://").ok_or("must be smtp://host:587 (STARTTLS) or smtps://host:465")?;
    let tls = rest.split_once('?').map(|(_, query)| query).unwrap_or("");
    match scheme.to_ascii_lowercase().as_str() {
        "smtps" => Ok(url.to_owned()),
        "smtp" if tls.contains("tls=required") => Ok(url.to_owned()),
        "smtp" if tls.contains("tls=") && !is_local(rest) => {
            Err("must use TLS: `smtp://` with STARTTLS (the default) or `smtps://`")
        }
        "smtp" if tls.contains("tls=") || is_local(rest) => Ok(url.to_owned()),
        "smtp" => Ok(format!("{url}{}tls=required", if rest.contains('?') { '&' } else { '?' })),
        _ => Err("must be smtp://host:587 (STARTTLS) or smtps://host:465"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_name_only_known_placeholders() {
        let template = Template::parse("{display_name} stops at {at} {{not a placeholder}}").unwrap();
        assert_eq!(template.render(|p| p.to_uppercase()), "DISPLAY_NAME stops at AT {not a placeholder}");
        let unknown = Template::parse("{display} stops").unwrap_err().to_string();
        assert!(unknown.starts_with("unknown placeholder `{display}` (did you mean `display_name`?)"), "{unknown}");
        assert!(Template::parse("{at").is_err() && Template::parse("at}").is_err());
    }

    #[test]
    fn mail_goes_over_tls_except_to_this_machine() {
        assert_eq!(
            smtp_url("smtp://u:p@mail.example.com:587").unwrap(),
            "smtp://u:p@mail.example.com:587?tls=required"
        );
        assert_eq!(smtp_url("smtps://u:p@mail.example.com").unwrap(), "smtps://u:p@mail.example.com");
        assert_eq!(smtp_url("smtp://127.0.0.1:2525").unwrap(), "smtp://127.0.0.1:2525");
        assert_eq!(
            smtp_url("smtp://u:p@localhost:25?tls=opportunistic").unwrap(),
            "smtp://u:p@localhost:25?tls=opportunistic"
        );
        for bad in ["smtp://mail.example.com?tls=opportunistic", "http://mail.example.com", "mail.example.com"] {
            assert!(smtp_url(bad).is_err(), "{bad}");
        }
        assert!(
            is_local("u:p@localhost:25") && !is_local("u:p@mail.example.com") && !is_local("localhost@evil.example")
        );
    }

    #[test]
    fn only_https_or_this_machine() {
        for good in [
            "https://hooks.slack.com/services/x",
            "http://localhost:8080/hook",
            "http://127.0.0.1/x",
            "http://[::1]:9/x",
        ] {
            assert!(is_https_or_local(good), "{good}");
        }
        for bad in
            ["http://example.com/hook", "ftp://x", "http://localhost.example.com/", "https://", "hooks.slack.com"]
        {
            assert!(!is_https_or_local(bad), "{bad}");
        }
    }
}
