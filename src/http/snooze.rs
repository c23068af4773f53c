//! The one-click snooze page a warning links to: it shows the instance and
//! what is about to happen, and keeps it running for 1 h, 4 h, until
//! tomorrow 09:00 or a chosen time, capped by the policy's `snooze_max`.
//! The link's signed token is the only key: no admin token, one instance.
//! A GET never changes anything (chat apps fetch links to preview them);
//! only the form's POST does.

use axum::Form;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Duration, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde::Deserialize;

use super::AppState;
use crate::config::notify::PolicyNotify;
use crate::instances::Activity;
use crate::ledger::Store;

/// How long each policy's snoozes may be and the zone people read times in.
#[derive(Clone, Copy, Debug)]
pub struct SnoozeRule {
    pub max: Duration,
    pub zone: Tz,
}

/// What a page knows of the instance its token names.
struct Subject {
    name: String,
    display_name: String,
    policy: String,
    status: String,
    next: Option<crate::instances::Decision>,
    /// The latest warning it was sent.
    warning: Option<crate::plan::Warning>,
    activity: String,
    rule: SnoozeRule,
}

pub async fn page(State(s): AppState, Path(token): Path<String>) -> Response {
    let now = (s.now)();
    let subject = match subject(&s, &token, now) {
        Ok(subject) => subject,
        Err((status, title, body)) => return html(status, title, &body),
    };
    let snoozed = s.store.snoozes().await.ok().and_then(|all| all.get(&subject.name).copied()).filter(|u| *u > now);
    html(StatusCode::OK, &subject.display_name, &form(&subject, snoozed, now))
}

#[derive(Deserialize)]
pub struct Asked {
    /// `1h`, `4h` or `tomorrow`; else `until`.
    #[serde(rename = "for", default)]
    span: Option<String>,
    /// A local time from the page's picker: `2026-12-03T18:30`.
    #[serde(default)]
    until: Option<String>,
}

pub async fn keep(State(s): AppState, Path(token): Path<String>, Form(asked): Form<Asked>) -> Response {
    let now = (s.now)();
    let subject = match subject(&s, &token, now) {
        Ok(subject) => subject,
        Err((status, title, body)) => return html(status, title, &body),
    };
    let zone = subject.rule.zone;
    let wanted = match (asked.span.as_deref(), asked.until.as_deref()) {
        (Some("1h"), _) => Some(now + Duration::hours(1)),
        (Some("4h"), _) => Some(now + Duration::hours(4)),
        (Some("tomorrow"), _) => tomorrow_at_nine(zone, now),
        (_, Some(text)) if !text.is_empty() => NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M")
            .ok()
            .and_then(|local| zone.from_local_datetime(&local).earliest())
            .map(|t| t.to_utc()),
        _ => None,
    };
    let Some(wanted) = wanted.filter(|t| *t > now) else {
        let body = format!("<p>Choose a time after now ({}).</p>{}", local(zone, now), form(&subject, None, now));
        return html(StatusCode::BAD_REQUEST, &subject.display_name, &body);
    };
    let until = wanted.min(now + subject.rule.max);
    if let Err(e) = s.store.set_snooze(&subject.name, until).await {
        let body = format!(
            "<p>The snooze could not be saved ({}); nothing changed. Try again in a minute.</p>",
            escape(&e.to_string())
        );
        return html(StatusCode::SERVICE_UNAVAILABLE, &subject.display_name, &body);
    }
    let capped = if until < wanted {
        format!(" (the policy allows at most {})", crate::plan::humane(subject.rule.max))
    } else {
        String::new()
    };
    let body = format!(
        "<p class=done>Kept running until <b>{}</b>{capped}.</p><p>Nothing stops or deletes <b>{}</b> before then.</p>",
        local(zone, until),
        escape(&subject.display_name)
    );
    html(StatusCode::OK, &subject.display_name, &body)
}

/// The instance a token names, or the status, title and body of the page that says why not.
fn subject(s: &super::Shared, token: &str, now: DateTime<Utc>) -> Result<Subject, (StatusCode, &'static str, String)> {
    let name = s.links.verify(token, now).map_err(|why| {
        let body = format!(
            "<p>{}. Nothing was changed.</p><p>Ask for a fresh link, or an admin for a snooze.</p>",
            escape(&why.to_string())
        );
        (StatusCode::FORBIDDEN, "Link refused", body)
    })?;
    let status = s.status.read().expect("status lock");
    let Some(row) = status.fleet.iter().find(|r| r.name == name) else {
        let why = if status.cycles == 0 {
            "The autoscaler has not listed its instances yet: try again in a minute."
        } else {
            "This instance is not in the autoscaler's listings any more."
        };
        return Err((StatusCode::NOT_FOUND, "Instance not found", format!("<p>{why}</p>")));
    };
    let rule = status
        .snooze_rules
        .get(&row.policy)
        .copied()
        .unwrap_or(SnoozeRule { max: PolicyNotify::DEFAULT_SNOOZE_MAX, zone: crate::config::check::DEFAULT_TIMEZONE });
    Ok(Subject {
        name: row.name.clone(),
        display_name: row.display_name.clone(),
        policy: row.policy.clone(),
        status: row.status.clone(),
        next: row.next.clone(),
        warning: status.warnings.get(&row.name).cloned(),
        activity: match &row.activity {
            Activity::NotWatched => String::new(),
            Activity::InUse { signal } => format!("in use ({signal})"),
            Activity::Unreadable { signal, .. } => format!("{signal} unreadable, counted in use"),
            Activity::Idle { since, .. } => format!("idle since {}", local(rule.zone, *since)),
        },
        rule,
    })
}

fn form(subject: &Subject, snoozed: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    let zone = subject.rule.zone;
    let due = |action: &str, at: DateTime<Utc>, reason: &str| {
        format!("<p>Next: <b>{}</b> at {}<br><small>{}</small></p>", escape(action), local(zone, at), escape(reason))
    };
    let next = match (&subject.next, &subject.warning) {
        (Some(next), _) => due(&next.action, next.at, &next.reason),
        (None, Some(w)) if w.act_at > now - Duration::hours(1) => due(&w.key.action, w.act_at, &w.reason),
        _ => "<p>Nothing is due for it now.</p>".to_owned(),
    };
    let activity =
        if subject.activity.is_empty() { String::new() } else { format!(" · {}", escape(&subject.activity)) };
    let snoozed = snoozed.map(|u| format!("<p>Kept running until {} already.</p>", local(zone, u))).unwrap_or_default();
    let latest = (now + subject.rule.max).with_timezone(&zone).format("%Y-%m-%dT%H:%M");
    let earliest = now.with_timezone(&zone).format("%Y-%m-%dT%H:%M");
    format!(
        r#"<p><b>{}</b> · policy {} · {}{activity}</p>{next}{snoozed}
<form method=post>
<button name=for value=1h>Keep 1 hour</button>
<button name=for value=4h>Keep 4 hours</button>
<button name=for value=tomorrow>Until tomorrow 09:00</button>
<p><label>Until <input type=datetime-local name=until min="{earliest}" max="{latest}"></label>
<button>Keep until then</button></p>
</form>
<p><small>Times are {}. At most {} from now.</small></p>"#,
        escape(&subject.display_name),
        escape(&subject.policy),
        escape(&subject.status),
        zone.name(),
        crate::plan::humane(subject.rule.max),
    )
}

fn tomorrow_at_nine(zone: Tz, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let day = now.with_timezone(&zone).date_naive().succ_opt()?;
    let nine = day.and_hms_opt(9, 0, 0)?;
    zone.from_local_datetime(&nine).earliest().map(|t| t.to_utc())
}

fn local(zone: Tz, at: DateTime<Utc>) -> String {
    at.with_timezone(&zone).format("%a %Y-%m-%d %H:%M %Z").to_string()
}

/// Outside text in HTML: display names and reasons come from the cloud.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn html(status: StatusCode, title: &str, body: &str) -> Response {
    let page = format!(
        r#"<!doctype html><html lang=en><head><meta charset=utf-8><meta name=viewport content="width=device-width,initial-scale=1">
<meta name=robots content=noindex><title>{} · mdc-autoscaler</title>
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:32rem;margin:2rem auto;padding:0 1rem}}button{{font:inherit;padding:.6rem 1rem;margin:.2rem 0;width:100%}}input{{font:inherit}}.done{{color:#064}}</style>
</head><body><h1>{}</h1>{body}</body></html>"#,
        escape(title),
        escape(title)
    );
    let headers = [
        (header::CONTENT_TYPE, "text/html; charset=utf-8"),
        (header::CACHE_CONTROL, "no-store"),
        // The token is in the URL: no page it links to may see it.
        (header::REFERRER_POLICY, "no-referrer"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
        ),
    ];
    (status, headers, page).into_response()
}
