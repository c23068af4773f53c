//! The fleet as people ask after it (`mdc-autoscaler instances`): each
//! instance with the policy that owns it, its state, since when it is idle
//! and by which signal, and the next decision about it: when, what, why.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::cloud::InstanceStatus;
use crate::config::policy::{Config, Policy, StopAfter, UNMANAGED};
use crate::money::Money;
use crate::plan::{ActionKind, Idleness, Observed, ObservedInstance, Plan};
use crate::text::Shown;

/// The state of a row for a create the plan would send.
pub const NOT_CREATED: &str = "not created";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InstanceRow {
    pub name: String,
    pub display_name: String,
    pub cluster: String,
    /// The owning policy, or `unmanaged`.
    pub policy: String,
    pub status: String,
    #[serde(serialize_with = "crate::money::yuan", deserialize_with = "crate::money::from_yuan")]
    pub price_yuan_per_hour: Money,
    pub activity: Activity,
    /// Due now (in the plan), else the earliest coming; none when nothing is due.
    pub next: Option<Decision>,
    /// Why the plan does not act on it, when it says.
    pub held: Option<String>,
}

/// What the idle signals say, as the planner reads them: unreadable counts as in use.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Activity {
    /// Not running, or its policy reads no signal.
    NotWatched,
    InUse {
        signal: String,
    },
    Unreadable {
        signal: String,
    },
    /// Every signal idle; since the latest of them went idle.
    Idle {
        since: DateTime<Utc>,
        signal: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub at: DateTime<Utc>,
    /// `power_off`, `power_on`, `delete`, `create`, or `schedule stop`/`schedule start`.
    pub action: String,
    pub reason: String,
}

/// One row per instance listed, sorted by policy then display name.
pub fn rows(observed: &Observed, config: &Config, plan: &Plan) -> Vec<InstanceRow> {
    let mut rows: Vec<InstanceRow> = observed
        .instances
        .iter()
        .map(|o| {
            let policy = config.owner(&o.instance);
            let activity = activity(o, policy);
            let protection = policy.and_then(|p| crate::plan::protection(p, observed, &o.instance, plan.at));
            let note = || {
                let shown = &o.instance.display_name;
                plan.notes.iter().find(|n| n.instance.as_deref() == Some(shown.as_str())).map(|n| n.text.clone())
            };
            // Protected: nothing is decided for good, or until the snooze ends.
            let next = match &protection {
                Some((_, None)) => None,
                Some((_, Some(until))) => policy.and_then(|p| next(o, p, &activity, plan)).filter(|d| d.at >= *until),
                None => policy.and_then(|p| next(o, p, &activity, plan)),
            };
            InstanceRow {
                name: o.instance.name.clone(),
                display_name: o.instance.display_name.clone(),
                cluster: o.instance.cluster.clone(),
                policy: policy.map_or(UNMANAGED, |p| &p.name).to_owned(),
                status: o.instance.status.label().to_owned(),
                price_yuan_per_hour: crate::plan::hourly_cost(observed, &o.instance, plan.at),
                next,
                held: protection.map(|(why, _)| why).or_else(note),
                activity,
            }
        })
        .collect();
    // A create is an instance to be: shown with its slot's name, none from the platform yet.
    rows.extend(plan.actions.iter().filter_map(|a| {
        let ActionKind::Create { request, .. } = &a.kind else { return None };
        Some(InstanceRow {
            name: String::new(),
            display_name: a.instance.display_name.clone(),
            cluster: a.instance.cluster.clone(),
            policy: a.policy.clone(),
            status: NOT_CREATED.into(),
            price_yuan_per_hour: observed
                .sku(&request.sku_id)
                .map_or(Money::ZERO, |s| crate::pricing::effective_price(s, plan.at)),
            activity: Activity::NotWatched,
            next: Some(Decision {
                at: plan.at,
                action: format!("create on SKU {}", request.sku_id),
                reason: a.reason.clone(),
            }),
            held: None,
        })
    }));
    rows.sort_by(|a, b| (&a.policy, &a.display_name, &a.name).cmp(&(&b.policy, &b.display_name, &b.name)));
    rows
}

fn activity(o: &ObservedInstance, policy: Option<&Policy>) -> Activity {
    let Some(rule) = policy.and_then(|p| p.idle.as_ref()).filter(|_| o.instance.status == InstanceStatus::Running)
    else {
        return Activity::NotWatched;
    };
    let signal = crate::plan::deciding_signal(rule, o).unwrap_or("signals").to_owned();
    match crate::plan::idleness(rule, o) {
        Idleness::Active => Activity::InUse { signal },
        Idleness::Unreadable(_) => Activity::Unreadable { signal },
        Idleness::IdleSince(since) => Activity::Idle { since, signal },
    }
}

/// An action in the plan, else the earliest moment a rule comes due. A
/// rule due already that the plan does not act on is held (the plan's
/// note says why): no decision is shown for it.
fn next(o: &ObservedInstance, policy: &Policy, activity: &Activity, plan: &Plan) -> Option<Decision> {
    if let Some(a) = plan.actions.iter().find(|a| a.instance.name == o.instance.name) {
        let action = match &a.kind {
            ActionKind::PowerOff(off) if off.snapshot.is_some() => "power_off + snapshot".to_owned(),
            kind => kind.label().to_owned(),
        };
        return Some(Decision { at: plan.at, action, reason: a.reason.clone() });
    }
    let mut coming: Vec<Decision> = Vec::new();
    let mut due = |at: DateTime<Utc>, action: &str, reason: String| {
        coming.push(Decision { at, action: action.to_owned(), reason })
    };
    let learned = plan.learned.iter().find(|l| l.instance == o.instance.name);
    if let Some(l) = learned {
        if let Some(at) = l.stops_at {
            due(at, "power_off", format!("idle past its keep-alive: {}", l.text));
        }
        if let Some(at) = l.prewarm_at {
            due(at, "power_on", format!("pre-warm: {}", l.text));
        }
    }
    if let Some(idle) = &policy.idle {
        if let (StopAfter::Fixed(after), Activity::Idle { since, signal }) = (&idle.stop_after, activity) {
            due(*since + *after, "power_off", format!("idle {} by {signal}", crate::plan::humane(*after)));
        }
        if let (Some(max), Some(since)) = (idle.max_runtime, o.running_since) {
            due(since + max, "power_off", format!("max_runtime {}: waits for idle", crate::plan::humane(max)));
        }
        if let (Some(after), Some(since)) = (idle.delete_after_stopped, o.stopped_since) {
            due(since + after, "delete", format!("stopped {}", crate::plan::humane(after)));
        }
    }
    if let Some(schedule) = &policy.schedule {
        let edges = [
            (&schedule.stop, "schedule stop", InstanceStatus::Running),
            (&schedule.start, "schedule start", InstanceStatus::Stopped),
        ];
        for (cron, what, applies_to) in edges {
            if let Some(at) = cron
                .as_ref()
                .filter(|_| o.instance.status == applies_to)
                .and_then(|c| c.next(schedule.timezone, plan.at))
            {
                let waits = if what == "schedule stop" { ": waits for idle" } else { "" };
                due(at, what, format!("`{}`{waits}", cron.as_ref().map_or("", |c| c.text.as_str())));
            }
        }
    }
    coming.into_iter().filter(|d| d.at > plan.at).min_by_key(|d| d.at)
}

/// The rows as a table, times in `tz`.
pub fn table(rows: &[InstanceRow], tz: Tz, now: DateTime<Utc>) -> String {
    let local = |t: DateTime<Utc>| {
        let local = t.with_timezone(&tz);
        let format = if local.date_naive() == now.with_timezone(&tz).date_naive() { "%H:%M" } else { "%m-%d %H:%M" };
        local.format(format).to_string()
    };
    let header = ["INSTANCE", "POLICY", "STATE", "PRICE", "ACTIVITY", "NEXT"];
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let activity = match &r.activity {
                Activity::NotWatched => "-".to_owned(),
                Activity::InUse { signal } => format!("in use ({signal})"),
                Activity::Unreadable { signal } => format!("unreadable ({signal}): in use"),
                Activity::Idle { since, signal } => format!("idle since {} ({signal})", local(*since)),
            };
            let next = r.next.as_ref().map(|d| match d.at <= now {
                true => format!("now: {}: {}", d.action, d.reason),
                false => format!("{} {}: {}", local(d.at), d.action, d.reason),
            });
            let next = match (next, &r.held) {
                (Some(next), Some(held)) => format!("held: {held}; then {next}"),
                (Some(next), None) => next,
                (None, Some(held)) => format!("held: {held}"),
                (None, None) => "-".to_owned(),
            };
            vec![
                match r.name.as_str() {
                    "" => Shown(&r.display_name).to_string(),
                    name => format!("{} ({name})", Shown(&r.display_name)),
                },
                r.policy.clone(),
                Shown(&r.status).to_string(),
                format!("¥{:.2}/h", r.price_yuan_per_hour.as_yuan_f64()),
                activity,
                Shown(&next).to_string(),
            ]
        })
        .collect();
    let mut out = format!("Instances at {}\n\n", now.with_timezone(&tz).format("%Y-%m-%d %H:%M %Z"));
    out += &crate::text::table(&header, &cells);
    if rows.is_empty() {
        out += "(no instances)\n";
    }
    out
}
