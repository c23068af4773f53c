//! The digest: what the account spent and saved since the last one, by
//! policy and against its budgets, the instances that cost the most while
//! idle, the actions taken, the warnings and what came of them, and the
//! snoozes in force. Composed from the ledger on each schedule's edge and
//! queued in the outbox once per edge and channel, like any notice.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use super::{Body, Section, Text};
use crate::config::notify::{self, DigestPeriod};
use crate::config::policy::{Config, GLOBAL, Glob};
use crate::ledger::report::{self, By, SAVING_LOOKBACK};
use crate::ledger::service::{day_start, month_start};
use crate::ledger::{ActionRecord, LedgerError, NewNotice, Outcome, Segment, Store, UseSpan};
use crate::money::Money;
use crate::plan::{WarningKey, WarningSent};

/// What a digest says: kept as JSON in the outbox, sent as is by a webhook.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Digest {
    pub event: DigestEvent,
    /// `daily` or `weekly`.
    pub period: String,
    /// The policies it covers, as written; none: the whole account.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub scope: Vec<String>,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub timezone: String,
    #[serde(rename = "spend_yuan", with = "yuan")]
    pub spend: Money,
    #[serde(rename = "saved_yuan", with = "yuan")]
    pub saved: Money,
    pub policies: Vec<PolicySpend>,
    /// Spend so far against each budget (`global` for the one over every policy).
    pub budgets: Vec<BudgetUse>,
    /// The instances that cost the most while their signals said idle, costliest first.
    pub idle: Vec<IdleCost>,
    pub actions: Vec<ActionCount>,
    pub warnings: WarningCount,
    pub snoozes: Vec<SnoozeInForce>,
}

/// A digest's `event`: `digest`, which no message about an action has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DigestEvent {
    Digest,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PolicySpend {
    pub policy: String,
    #[serde(rename = "spend_yuan", with = "yuan")]
    pub spend: Money,
    #[serde(rename = "saved_yuan", with = "yuan")]
    pub saved: Money,
    pub running_hours: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BudgetUse {
    pub budget: String,
    /// The budget's day before the digest's end, and its spend.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub daily: Option<Against>,
    /// The budget's month to the digest's end.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub monthly: Option<Against>,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Against {
    #[serde(rename = "spend_yuan", with = "yuan")]
    pub spend: Money,
    #[serde(rename = "limit_yuan", with = "yuan")]
    pub limit: Money,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IdleCost {
    pub instance: String,
    pub display_name: String,
    pub policy: String,
    pub idle_hours: f64,
    #[serde(rename = "spend_yuan", with = "yuan")]
    pub spend: Money,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ActionCount {
    /// `power_off`, `power_on`, `create` or `delete`.
    pub action: String,
    pub cause: String,
    pub done: u32,
    /// Failed, or with an answer lost.
    pub not_done: u32,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WarningCount {
    pub sent: u32,
    /// Followed by the action they warned of: nobody kept the instance.
    pub went_ahead: u32,
    /// Never taken by their channel.
    pub undelivered: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SnoozeInForce {
    pub instance: String,
    pub display_name: String,
    pub until: DateTime<Utc>,
}

/// The most instances a digest names as costly while idle.
const IDLE_SHOWN: usize = 5;
/// How long before the daemon started an edge may have passed and still be sent.
pub const GRACE: Duration = Duration::hours(1);

/// What the ledger holds over a digest's span, read once.
pub struct Rows {
    pub segments: Vec<Segment>,
    pub actions: Vec<ActionRecord>,
    pub use_spans: Vec<UseSpan>,
    pub warnings: BTreeMap<WarningKey, WarningSent>,
    pub snoozes: BTreeMap<String, DateTime<Utc>>,
    /// Each instance not gone: its display name and policy.
    pub instances: BTreeMap<String, (String, Option<String>)>,
}

impl Rows {
    /// Only what concerns the policies `scope` names (all when it names none).
    pub fn within(mut self, scope: &[Glob]) -> Rows {
        if scope.is_empty() {
            return self;
        }
        let covered = |policy: Option<&str>| policy.is_some_and(|p| scope.iter().any(|g| g.matches(p)));
        let instances = &self.instances;
        let policy_of = |instance: &str| instances.get(instance).and_then(|(_, p)| p.as_deref());
        self.warnings.retain(|key, _| covered(policy_of(&key.instance)));
        self.snoozes.retain(|instance, _| covered(policy_of(instance)));
        self.segments.retain(|s| covered(s.policy.as_deref()));
        self.actions.retain(|a| covered(Some(&a.policy)));
        self.use_spans.retain(|u| covered(u.policy.as_deref()));
        self
    }
}

impl Digest {
    /// The digest `settings` describe over `[from, to)`, read from `store` at `now`.
    pub async fn compose<S: Store>(
        store: &S,
        config: &Config,
        settings: &notify::Digest,
        period: DigestPeriod,
        (from, to): (DateTime<Utc>, DateTime<Utc>),
        now: DateTime<Utc>,
    ) -> Result<Digest, LedgerError> {
        // Budgets look back to their month's start and the day before `to`.
        let earliest = budgets(config, &settings.policies)
            .flat_map(|(_, b)| [month_start(b.timezone, to), day_start(b.timezone, to) - Duration::days(1)])
            .fold(from, DateTime::min);
        let rows = Rows {
            segments: store.segments_overlapping(earliest - SAVING_LOOKBACK, to).await?,
            actions: store.actions_between(earliest - SAVING_LOOKBACK, to).await?,
            use_spans: store.use_spans_overlapping(from, to).await?,
            warnings: store.warnings_since(from).await?,
            snoozes: store.snoozes().await?,
            instances: store.instances().await?.into_iter().map(|i| (i.name, (i.display_name, i.policy))).collect(),
        };
        Ok(Digest::tally(&rows.within(&settings.policies), config, settings, period, (from, to), now))
    }

    /// The arithmetic of [`Digest::compose`], on rows already read.
    pub fn tally(
        rows: &Rows,
        config: &Config,
        settings: &notify::Digest,
        period: DigestPeriod,
        (from, to): (DateTime<Utc>, DateTime<Utc>),
        now: DateTime<Utc>,
    ) -> Digest {
        let zone = settings.timezone;
        let spend = |a, b, tz| report::tally(&rows.segments, &rows.actions, a, b, By::Policy, tz);
        let policies: Vec<PolicySpend> = spend(from, to, zone)
            .into_iter()
            .filter(|r| r.spend > Money::ZERO || r.saved > Money::ZERO)
            .map(|r| PolicySpend { policy: r.key, spend: r.spend, saved: r.saved, running_hours: r.running_hours })
            .collect();
        let budgets = budgets(config, &settings.policies)
            .map(|(name, budget)| {
                let of = |rows: Vec<report::Row>| -> Money {
                    rows.into_iter().filter(|r| name == GLOBAL || r.key == name).map(|r| r.spend).sum()
                };
                let day = day_start(budget.timezone, to);
                BudgetUse {
                    budget: name.to_owned(),
                    daily: budget.daily.map(|limit| Against {
                        spend: of(spend(day - Duration::days(1), day, budget.timezone)),
                        limit,
                    }),
                    monthly: budget.monthly.map(|limit| Against {
                        spend: of(spend(month_start(budget.timezone, to), to, budget.timezone)),
                        limit,
                    }),
                }
            })
            .collect();
        let taken: Vec<&ActionRecord> =
            rows.actions.iter().filter(|a| !a.dry_run && from <= a.planned_at && a.planned_at < to).collect();
        let mut actions: BTreeMap<(String, String), ActionCount> = BTreeMap::new();
        for action in &taken {
            let count = actions.entry((action.kind.clone(), action.cause.clone())).or_insert_with(|| ActionCount {
                action: action.kind.clone(),
                cause: action.cause.clone(),
                done: 0,
                not_done: 0,
            });
            match action.outcome {
                Some(Outcome::Done) => count.done += 1,
                Some(Outcome::Failed | Outcome::Unknown) => count.not_done += 1,
                Some(Outcome::Skipped) | None => {}
            }
        }
        let mut warnings = WarningCount::default();
        for (key, sent) in rows.warnings.iter().filter(|(_, s)| from <= s.queued_at && s.queued_at < to) {
            warnings.sent += 1;
            warnings.undelivered += u32::from(sent.delivered_at.is_none());
            let acted = taken.iter().any(|a| {
                a.instance == key.instance
                    && a.kind == key.action
                    && a.outcome == Some(Outcome::Done)
                    && a.planned_at >= sent.queued_at
            });
            warnings.went_ahead += u32::from(acted);
        }
        let name_of =
            |instance: &str| rows.instances.get(instance).map_or_else(|| instance.to_owned(), |(name, _)| name.clone());
        let snoozes = rows
            .snoozes
            .iter()
            .filter(|(_, until)| **until > now)
            .map(|(instance, until)| SnoozeInForce {
                instance: instance.clone(),
                display_name: name_of(instance),
                until: *until,
            })
            .collect();
        Digest {
            event: DigestEvent::Digest,
            period: period.label().to_owned(),
            scope: settings.policies.iter().map(|g| g.as_str().to_owned()).collect(),
            from,
            to,
            timezone: zone.name().to_owned(),
            spend: policies.iter().map(|p| p.spend).sum(),
            saved: policies.iter().map(|p| p.saved).sum(),
            policies,
            budgets,
            idle: idle_costs(rows, config, from, to),
            actions: actions.into_values().collect(),
            warnings,
            snoozes,
        }
    }

    /// The outbox rows of this digest (the `index`th of the settings'): one per channel, once per edge.
    pub fn notices(&self, index: usize, channels: &[String], now: DateTime<Utc>) -> Vec<NewNotice> {
        let body = serde_json::to_string(&Body::Digest(self.clone())).expect("a digest serialises");
        channels
            .iter()
            .map(|channel| NewNotice {
                dedup: format!("digest:{index}:{}:{channel}:{}", self.period, self.to.timestamp()),
                channel: channel.clone(),
                event: "digest".to_owned(),
                instance: String::new(),
                action: String::new(),
                occasion: None,
                body: body.clone(),
                queued_at: now,
            })
            .collect()
    }

    /// The digest as people read it.
    pub fn text(&self) -> Text {
        let zone: Tz = self.timezone.parse().unwrap_or(chrono_tz::UTC);
        let local = |at: DateTime<Utc>| at.with_timezone(&zone).format("%a %-d %b %H:%M").to_string();
        let title = match self.period.as_str() {
            "weekly" => "Weekly digest",
            _ => "Daily digest",
        };
        let title = match self.scope.as_slice() {
            [] => title.to_owned(),
            scope => format!("{title} for {}", scope.join(", ")),
        };
        let headline = format!("{title}: ¥{} spent, ¥{} saved", self.spend, self.saved);
        let mut sections = vec![Section {
            title: None,
            lines: vec![format!("{} to {} ({})", local(self.from), local(self.to), zone)],
        }];
        let mut section = |title: &str, lines: Vec<String>| {
            if !lines.is_empty() {
                sections.push(Section { title: Some(title.to_owned()), lines });
            }
        };
        section(
            "Spend by policy",
            self.policies
                .iter()
                .map(|p| {
                    format!("{}: ¥{} spent, ¥{} saved, {:.1} h running", p.policy, p.spend, p.saved, p.running_hours)
                })
                .collect(),
        );
        let against = |what: &str, a: &Against| {
            let share = if a.limit > Money::ZERO { a.spend.as_yuan_f64() / a.limit.as_yuan_f64() * 100.0 } else { 0.0 };
            format!("{what} ¥{} of ¥{} ({share:.0}%)", a.spend, a.limit)
        };
        section(
            "Budgets",
            self.budgets
                .iter()
                .map(|b| {
                    let parts: Vec<String> =
                        [b.daily.map(|a| against("yesterday", &a)), b.monthly.map(|a| against("this month", &a))]
                            .into_iter()
                            .flatten()
                            .collect();
                    format!("{}: {}", b.budget, parts.join(", "))
                })
                .collect(),
        );
        section(
            "Costliest while idle",
            self.idle
                .iter()
                .map(|i| format!("{} ({}): ¥{} over {:.1} h idle", i.display_name, i.policy, i.spend, i.idle_hours))
                .collect(),
        );
        section(
            "Actions",
            self.actions
                .iter()
                .map(|a| {
                    let failed = if a.not_done > 0 { format!(", {} not done", a.not_done) } else { String::new() };
                    format!("{} for {}: {}{failed}", a.action, a.cause, a.done)
                })
                .collect(),
        );
        let w = self.warnings;
        section(
            "Warnings",
            if w.sent == 0 {
                vec![]
            } else {
                let mut line = format!(
                    "{} sent: {} went ahead, {} kept (snoozed or back in use)",
                    w.sent,
                    w.went_ahead,
                    w.sent - w.went_ahead
                );
                if w.undelivered > 0 {
                    line += &format!("; {} not delivered", w.undelivered);
                }
                vec![line]
            },
        );
        section(
            "Snoozes in force",
            self.snoozes.iter().map(|s| format!("{} until {}", s.display_name, local(s.until))).collect(),
        );
        Text { headline, sections, link: None, mentions: Vec::new() }
    }
}

/// The budgets in `config` by name: each policy's within `scope`, and the
/// global one when the scope is the whole account.
fn budgets<'a>(
    config: &'a Config,
    scope: &[Glob],
) -> impl Iterator<Item = (&'a str, &'a crate::config::policy::Budget)> {
    let covered = |name: &str| scope.is_empty() || scope.iter().any(|g| g.matches(name));
    let policies: Vec<_> = config
        .policies
        .iter()
        .filter(|p| covered(&p.name))
        .filter_map(|p| Some((p.name.as_str(), p.budget.as_ref()?)))
        .collect();
    let global = config.settings.budget.as_ref().filter(|_| scope.is_empty()).map(|b| (GLOBAL, b));
    policies.into_iter().chain(global)
}

/// What each instance with idle signals cost within `[from, to)` outside its spans of use.
fn idle_costs(rows: &Rows, config: &Config, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<IdleCost> {
    let watched = |policy: &Option<String>| {
        policy.as_deref().is_some_and(|name| config.policies.iter().any(|p| p.name == name && p.idle.is_some()))
    };
    let mut costs: BTreeMap<&str, IdleCost> = BTreeMap::new();
    for segment in rows.segments.iter().filter(|s| watched(&s.policy)) {
        let (start, end) = (segment.started_at.max(from), segment.ended_at.unwrap_or(to).min(to));
        if end <= start {
            continue;
        }
        let in_use: i64 = rows
            .use_spans
            .iter()
            .filter(|u| u.instance == segment.instance)
            .map(|u| (u.ended_at.unwrap_or(to).min(end) - u.started_at.max(start)).num_milliseconds().max(0))
            .sum();
        let idle = ((end - start).num_milliseconds() - in_use).max(0);
        let cost = costs.entry(&segment.instance).or_insert_with(|| IdleCost {
            instance: segment.instance.clone(),
            display_name: segment.display_name.clone(),
            policy: segment.policy.clone().unwrap_or_default(),
            idle_hours: 0.0,
            spend: Money::ZERO,
        });
        cost.idle_hours += idle as f64 / 3_600_000.0;
        cost.spend += segment.price_per_hour.hourly_for_millis(idle);
    }
    let mut costs: Vec<IdleCost> = costs.into_values().filter(|c| c.spend > Money::ZERO).collect();
    costs.sort_by(|a, b| b.spend.cmp(&a.spend).then_with(|| a.instance.cmp(&b.instance)));
    costs.truncate(IDLE_SHOWN);
    costs
}

/// The span each schedule's latest edge closes, if it is due: passed at
/// `now`, not yet sent, and at most [`GRACE`] before the daemon started.
pub fn due(
    digest: &notify::Digest,
    started: DateTime<Utc>,
    sent: &BTreeMap<DigestPeriod, DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Vec<(DigestPeriod, DateTime<Utc>, DateTime<Utc>)> {
    digest
        .schedules
        .iter()
        .filter_map(|(period, cron)| {
            let to = cron.previous(digest.timezone, now)?;
            let fresh = to > started - GRACE && sent.get(period).is_none_or(|last| *last < to);
            let from = cron.previous(digest.timezone, to - Duration::seconds(1))?;
            fresh.then_some((*period, from, to))
        })
        .collect()
}

/// Money as yuan in a digest's JSON, both ways.
mod yuan {
    pub use crate::money::{from_yuan as deserialize, yuan as serialize};
}

/// Which digests have gone out since the daemon started.
pub struct Digests {
    started: DateTime<Utc>,
    /// Per digest of the settings, in order: each period's last edge sent.
    sent: Vec<BTreeMap<DigestPeriod, DateTime<Utc>>>,
}

impl Digests {
    pub fn new(started: DateTime<Utc>) -> Self {
        Digests { started, sent: Vec::new() }
    }

    /// Composes and queues the digests due at `now`; returns how many went
    /// to the outbox. One the ledger cannot give yet is tried again next time.
    pub async fn queue_due<S: Store>(
        &mut self,
        store: &S,
        config: &Config,
        now: DateTime<Utc>,
    ) -> Result<usize, LedgerError> {
        self.sent.resize(config.settings.digests.len(), BTreeMap::new());
        let mut queued = 0;
        for (index, settings) in config.settings.digests.iter().enumerate() {
            for (period, from, to) in due(settings, self.started, &self.sent[index], now) {
                let digest = Digest::compose(store, config, settings, period, (from, to), now).await?;
                store.queue_notices(&digest.notices(index, &settings.channels, now)).await?;
                self.sent[index].insert(period, to);
                queued += settings.channels.len();
            }
        }
        Ok(queued)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn config() -> Config {
        let text = r#"
settings:
  timezone: Asia/Shanghai
  budget: { monthly: 1000 }
  notify:
    channels: [{ name: leads, kind: slack, url: { env: LEADS_URL } }]
    digest:
      - { channels: [leads], weekly: "0 9 * * 1" }
      - { channels: [leads], policies: "train*" }
policies:
  - name: notebooks
    select: { display_name: "nb-*" }
    idle: { stop_after: 30m }
    budget: { daily: 100, monthly: 2000 }
  - name: training
    select: { display_name: "train-*" }
"#;
        let (config, report) = crate::config::load::load_str("t", text);
        config.unwrap_or_else(|| panic!("{report}"))
    }

    fn at(day: u32, hour: u32) -> DateTime<Utc> {
        chrono_tz::Asia::Shanghai.with_ymd_and_hms(2026, 12, day, hour, 0, 0).unwrap().to_utc()
    }

    fn segment(instance: &str, policy: &str, from: DateTime<Utc>, to: Option<DateTime<Utc>>, yuan: f64) -> Segment {
        Segment {
            id: 0,
            instance: instance.into(),
            display_name: format!("nb-{instance}"),
            policy: Some(policy.into()),
            sku_id: "sku".into(),
            started_at: from,
            ended_at: to,
            price_per_hour: Money::from_yuan_f64(yuan).unwrap(),
        }
    }

    fn stop(instance: &str, at: DateTime<Utc>, outcome: Outcome) -> ActionRecord {
        ActionRecord {
            id: 0,
            planned_at: at,
            policy: "notebooks".into(),
            kind: "power_off".into(),
            instance: instance.into(),
            display_name: format!("nb-{instance}"),
            cluster: "c".into(),
            cause: "idle".into(),
            reason: "idle".into(),
            saving_per_hour: Money::from_yuan_f64(10.0).unwrap(),
            dry_run: false,
            snapshot: None,
            schedule_edge: None,
            outcome: Some(outcome),
            error: None,
            finished_at: Some(at),
            epoch: 0,
        }
    }

    #[test]
    fn a_day_in_numbers() {
        let config = config();
        let (from, to) = (at(3, 9), at(4, 9));
        let rows = Rows {
            segments: vec![
                // Alice ran 10:00–14:00 at ¥10/h, in use 10:00–12:00: ¥20 idle.
                segment("alice", "notebooks", at(3, 10), Some(at(3, 14)), 10.0),
                // Bob ran all day at ¥2/h and was never seen in use.
                segment("bob", "notebooks", at(3, 9), None, 2.0),
                // Training has no idle signals: never "idle".
                segment("train", "training", at(3, 9), Some(at(3, 19)), 5.0),
            ],
            actions: vec![stop("alice", at(3, 14), Outcome::Done), stop("carol", at(3, 15), Outcome::Failed)],
            use_spans: vec![UseSpan {
                instance: "alice".into(),
                display_name: "nb-alice".into(),
                policy: Some("notebooks".into()),
                started_at: at(3, 10),
                ended_at: Some(at(3, 12)),
            }],
            warnings: BTreeMap::from([
                (
                    WarningKey { instance: "alice".into(), action: "power_off".into(), occasion: at(3, 13) },
                    WarningSent { queued_at: at(3, 13), delivered_at: Some(at(3, 13)) },
                ),
                (
                    WarningKey { instance: "dave".into(), action: "power_off".into(), occasion: at(3, 16) },
                    WarningSent { queued_at: at(3, 16), delivered_at: None },
                ),
            ]),
            snoozes: BTreeMap::from([("bob".into(), at(4, 12)), ("old".into(), at(2, 12))]),
            instances: BTreeMap::from([("bob".into(), ("nb-bob".into(), Some("notebooks".into())))]),
        };
        let settings = &config.settings.digests[0];
        let digest = Digest::tally(&rows, &config, settings, DigestPeriod::Daily, (from, to), to);
        let yuan = |y: f64| Money::from_yuan_f64(y).unwrap();
        let notebooks = digest.policies.iter().find(|p| p.policy == "notebooks").unwrap();
        assert_eq!(notebooks.spend, yuan(40.0 + 48.0));
        // Alice's stop saves ¥10/h from 14:00 to the end of the span.
        assert_eq!(notebooks.saved, yuan(190.0));
        assert_eq!(digest.spend, yuan(40.0 + 48.0 + 50.0));
        assert_eq!(
            digest.idle.iter().map(|i| (i.instance.as_str(), i.spend)).collect::<Vec<_>>(),
            [("bob", yuan(48.0)), ("alice", yuan(20.0))]
        );
        assert_eq!(digest.actions.len(), 1);
        assert_eq!((digest.actions[0].done, digest.actions[0].not_done), (1, 1));
        assert_eq!(digest.warnings, WarningCount { sent: 2, went_ahead: 1, undelivered: 1 });
        assert_eq!(digest.snoozes.len(), 1);
        assert_eq!(digest.snoozes[0].display_name, "nb-bob");
        let notebooks_budget = digest.budgets.iter().find(|b| b.budget == "notebooks").unwrap();
        assert_eq!(notebooks_budget.daily, Some(Against { spend: yuan(40.0 + 2.0 * 15.0), limit: yuan(100.0) }));
        let global = digest.budgets.iter().find(|b| b.budget == GLOBAL).unwrap();
        assert_eq!(global.monthly.map(|a| a.spend), Some(digest.spend));

        let text = digest.text();
        assert_eq!(text.headline, "Daily digest: ¥138.00 spent, ¥190.00 saved");
        let lines: Vec<&str> = text.sections.iter().flat_map(|s| s.lines.iter().map(String::as_str)).collect();
        assert!(lines.contains(&"nb-bob (notebooks): ¥48.00 over 24.0 h idle"), "{lines:?}");
        assert!(lines.contains(&"2 sent: 1 went ahead, 1 kept (snoozed or back in use); 1 not delivered"), "{lines:?}");
        assert!(lines.contains(&"notebooks: yesterday ¥70.00 of ¥100.00 (70%), this month ¥88.00 of ¥2000.00 (4%)"));

        // The training team's digest: its policy alone, no global budget, nobody else's warnings or snoozes.
        let team = &config.settings.digests[1];
        let rows = rows.within(&team.policies);
        let training = Digest::tally(&rows, &config, team, DigestPeriod::Daily, (from, to), to);
        assert_eq!(training.scope, ["train*"]);
        assert_eq!(training.spend, yuan(50.0));
        assert_eq!(training.policies.iter().map(|p| p.policy.as_str()).collect::<Vec<_>>(), ["training"]);
        assert!(training.budgets.is_empty() && training.idle.is_empty() && training.actions.is_empty());
        assert_eq!((training.warnings.sent, training.snoozes.len()), (0, 0));
        assert!(training.text().headline.starts_with("Daily digest for train*: ¥50.00 spent"));

        // Stored and read back as it was, never as a message about an action.
        let body = serde_json::to_string(&Body::Digest(digest.clone())).unwrap();
        assert!(matches!(serde_json::from_str::<Body>(&body).unwrap(), Body::Digest(d) if d == digest));
    }

    #[test]
    fn each_edge_once_and_none_from_long_before_the_start() {
        let config = config();
        let digest = &config.settings.digests[0];
        let started = at(4, 8);
        let mut sent = BTreeMap::new();
        assert!(due(digest, started, &sent, at(4, 8)).is_empty(), "yesterday's 09:00 is long before the start");
        // Friday 4 December 09:00: the daily one, covering the day before.
        let due_now = due(digest, started, &sent, at(4, 9));
        assert_eq!(due_now, [(DigestPeriod::Daily, at(3, 9), at(4, 9))]);
        sent.insert(DigestPeriod::Daily, at(4, 9));
        assert!(due(digest, started, &sent, at(4, 10)).is_empty());
        // Monday 7 December: daily and weekly, each over its own span.
        let monday = due(digest, started, &sent, at(7, 9));
        assert_eq!(
            monday,
            [(DigestPeriod::Daily, at(6, 9), at(7, 9)), (DigestPeriod::Weekly, at(7, 9) - Duration::days(7), at(7, 9))]
        );
        // A restart just after an edge still sends it.
        assert_eq!(due(digest, at(4, 9) + Duration::minutes(20), &BTreeMap::new(), at(4, 10)).len(), 1);
    }
}
