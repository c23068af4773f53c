//! What a step tells people: the warnings its plan asks for and the stops
//! that went ahead unannounced, as notices for the ledger's outbox (the
//! courier delivers them). A dry run tells nobody: it acts on nothing.

use chrono::{DateTime, Utc};

use super::execution::Executed;
use crate::config::policy::Config;
use crate::ledger::{NewNotice, Outcome};
use crate::notify::Message;
use crate::notify::link::LINK_LIFETIME;
use crate::plan::Plan;

/// The notices of a plan's warnings: one per instance per pending action.
pub fn warnings(plan: &Plan, config: &Config, now: DateTime<Utc>) -> Vec<NewNotice> {
    let expires = config.settings.public_url.as_ref().map(|_| now + LINK_LIFETIME);
    plan.warnings
        .iter()
        .filter_map(|warning| {
            let policy = config.policies.iter().find(|p| p.name == warning.policy)?;
            let notify = policy.notify.as_ref()?;
            let message = Message::warning(warning, notify, config.zone_of(policy), expires);
            let (channel, _) = notify.recipient(&warning.instance.display_name);
            Some(notice(&message, channel, Some(warning.key.occasion), now))
        })
        .collect()
}

/// The notice of an action done before its warning was delivered.
pub fn unannounced(executed: &Executed, config: &Config, now: DateTime<Utc>) -> Option<NewNotice> {
    let action = &executed.action;
    if !action.unannounced || executed.outcome != Outcome::Done {
        return None;
    }
    let policy = config.policies.iter().find(|p| p.name == action.policy)?;
    let notify = policy.notify.as_ref()?;
    let message = Message::unannounced(action, notify, config.zone_of(policy), now);
    let (channel, _) = notify.recipient(&action.instance.display_name);
    Some(notice(&message, channel, None, now))
}

/// The outbox row of a message: one per event, instance, action and
/// occasion (a warning's), or moment (an action's).
fn notice(message: &Message, channel: &str, occasion: Option<DateTime<Utc>>, now: DateTime<Utc>) -> NewNotice {
    let (event, instance, action) = (message.event.label(), &message.instance_name, &message.action);
    NewNotice {
        dedup: format!("{event}:{instance}:{action}:{}", occasion.unwrap_or(now).timestamp()),
        channel: channel.to_owned(),
        event: event.to_owned(),
        instance: instance.clone(),
        action: action.clone(),
        occasion,
        // A message is its own JSON: `Body` is untagged, so it reads back as `Body::Message`.
        body: serde_json::to_string(message).expect("a message serialises"),
        queued_at: now,
    }
}
