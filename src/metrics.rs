//! Every metric the daemon exports, defined in one place (the names are a
//! contract: the dashboards and alert rules in `dashboards/` use them).
//!
//! Base units, money in yuan, `_total` on counters (the encoder adds it).
//! Labels stay few: policy, status, GPU model, SKU, endpoint. Instance names
//! appear only on `idle_seconds`, and only for the most idle running
//! instances, at most [`IDLE_SERIES_MAX`] of them.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, Utc};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use crate::cloud::{BillingType, Endpoint, InstanceStatus};
use crate::config::policy::{Budget, Config, GLOBAL, UNMANAGED};
use crate::ledger::Outcome;
use crate::plan::{self, ActionKind, Observed};
use crate::pricing;
use crate::reconcile::StepReport;

/// Instances named on `idle_seconds` at most: the most idle first.
pub const IDLE_SERIES_MAX: usize = 100;

type Yuan = Gauge<f64, AtomicU64>;
type Seconds = Gauge<f64, AtomicU64>;
type YuanTotal = Counter<f64, AtomicU64>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InstanceLabels {
    policy: String,
    status: String,
    gpu: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SkuLabels {
    sku: String,
    name: String,
    cluster: String,
    gpu: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PolicyLabels {
    policy: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BudgetLabels {
    policy: String,
    period: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabels {
    policy: String,
    kind: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IdleLabels {
    policy: String,
    /// Not `instance`: Prometheus gives that label to the scrape target.
    instance_name: String,
    display_name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ApiLabels {
    endpoint: &'static str,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    endpoint: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NoticeLabels {
    channel: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChannelLabels {
    channel: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

pub struct Metrics {
    registry: Registry,
    instances: Family<InstanceLabels, Gauge>,
    sku_list_price: Family<SkuLabels, Yuan>,
    sku_effective_price: Family<SkuLabels, Yuan>,
    sku_discount_active: Family<SkuLabels, Gauge>,
    sku_free_gpus: Family<SkuLabels, Gauge>,
    spend: Family<PolicyLabels, YuanTotal>,
    savings: Family<PolicyLabels, YuanTotal>,
    spend_rate: Family<PolicyLabels, Yuan>,
    budget: Family<BudgetLabels, Yuan>,
    budget_spent: Family<BudgetLabels, Yuan>,
    budget_remaining: Family<BudgetLabels, Yuan>,
    actions: Family<ActionLabels, Counter>,
    idle_seconds: Family<IdleLabels, Seconds>,
    idle_stop_after: Family<PolicyLabels, Seconds>,
    pool_desired: Family<PolicyLabels, Gauge>,
    pool_members: Family<PolicyLabels, Gauge>,
    idle_gpus: Family<PolicyLabels, Gauge>,
    idle_cost: Family<PolicyLabels, Yuan>,
    stuck_instances: Gauge,
    policy_held: Family<PolicyLabels, Gauge>,
    api_requests: Family<ApiLabels, Counter>,
    api_duration: Family<EndpointLabels, Histogram>,
    cycles: Family<ResultLabels, Counter>,
    cycle_duration: Histogram,
    last_success: Yuan,
    ledger_up: Gauge,
    config_reloads: Family<ResultLabels, Counter>,
    config_last_reload_successful: Gauge,
    config_restart_needed: Gauge,
    leader: Gauge,
    leader_epoch: Gauge,
    leader_elected: Seconds,
    elections: Counter,
    notices: Family<NoticeLabels, Counter>,
    notices_undelivered: Family<ChannelLabels, Gauge>,
    oldest_undelivered_notice: Family<ChannelLabels, Seconds>,
    /// What the money counters accrue from, between cycles.
    accrual: Mutex<Accrual>,
}

/// Spend and savings accrue between cycles at the rates last observed.
#[derive(Default)]
struct Accrual {
    at: Option<DateTime<Utc>>,
    spend_per_hour: BTreeMap<String, f64>,
    /// Instances this daemon stopped, still stopped: policy and saving per hour.
    stopped: BTreeMap<String, (String, f64)>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("mdc_autoscaler");
        let m = Metrics {
            registry: Registry::default(),
            instances: Family::default(),
            sku_list_price: Family::default(),
            sku_effective_price: Family::default(),
            sku_discount_active: Family::default(),
            sku_free_gpus: Family::default(),
            spend: Family::default(),
            savings: Family::default(),
            spend_rate: Family::default(),
            budget: Family::default(),
            budget_spent: Family::default(),
            budget_remaining: Family::default(),
            actions: Family::default(),
            idle_seconds: Family::default(),
            idle_stop_after: Family::default(),
            pool_desired: Family::default(),
            pool_members: Family::default(),
            idle_gpus: Family::default(),
            idle_cost: Family::default(),
            stuck_instances: Gauge::default(),
            policy_held: Family::default(),
            api_requests: Family::default(),
            api_duration: Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.01, 2.0, 12))),
            cycles: Family::default(),
            cycle_duration: Histogram::new(exponential_buckets(0.01, 2.0, 12)),
            last_success: Gauge::default(),
            ledger_up: Gauge::default(),
            config_reloads: Family::default(),
            config_last_reload_successful: Gauge::default(),
            config_restart_needed: Gauge::default(),
            leader: Gauge::default(),
            leader_epoch: Gauge::default(),
            leader_elected: Gauge::default(),
            elections: Counter::default(),
            notices: Family::default(),
            notices_undelivered: Family::default(),
            oldest_undelivered_notice: Family::default(),
            accrual: Mutex::new(Accrual::default()),
        };
        let r = &mut registry;
        r.register("instances", "Instances seen, by owning policy, status and GPU model", m.instances.clone());
        r.register(
            "sku_list_price_yuan_per_hour",
            "List price of a SKU, in yuan (CNY) per hour",
            m.sku_list_price.clone(),
        );
        r.register(
            "sku_effective_price_yuan_per_hour",
            "Price of a SKU in force now (discount applied), in yuan (CNY) per hour",
            m.sku_effective_price.clone(),
        );
        r.register("sku_discount_active", "1 while a SKU's discount window is open", m.sku_discount_active.clone());
        r.register("sku_free_gpus", "GPUs free for a SKU, as the platform reports", m.sku_free_gpus.clone());
        r.register(
            "spend_yuan",
            "Compute spend of running pay-as-you-go instances while the daemon watched, in yuan (CNY); the ledger is the record",
            m.spend.clone(),
        );
        r.register(
            "estimated_savings_yuan",
            "Estimated money saved by instances this daemon stopped, while they stay stopped, in yuan (CNY)",
            m.savings.clone(),
        );
        r.register(
            "spend_rate_yuan_per_hour",
            "What running instances cost now, in yuan (CNY) per hour",
            m.spend_rate.clone(),
        );
        r.register(
            "budget_yuan",
            "Budget of a policy (or policy=\"global\") per period (day or month), in yuan (CNY)",
            m.budget.clone(),
        );
        r.register(
            "budget_spent_yuan",
            "Spend so far in a budget's current day or month, from the ledger, in yuan (CNY)",
            m.budget_spent.clone(),
        );
        r.register(
            "budget_remaining_yuan",
            "Budget left in the current day or month, in yuan (CNY); negative when exceeded",
            m.budget_remaining.clone(),
        );
        r.register("actions", "Actions by policy, kind and outcome", m.actions.clone());
        r.register_with_unit(
            "idle",
            "How long a running instance its policy may stop (not protected, snoozed nor prepaid) has been idle by every signal (the most idle only)",
            Unit::Seconds,
            m.idle_seconds.clone(),
        );
        r.register_with_unit(
            "idle_stop_after",
            "A policy's idle timer: stop_after as written, or adaptive's max",
            Unit::Seconds,
            m.idle_stop_after.clone(),
        );
        r.register("pool_desired", "How many members a pool wants now", m.pool_desired.clone());
        r.register(
            "pool_members",
            "How many members a pool keeps now, as it counts them (running ones; with idle rules, every one not being deleted)",
            m.pool_members.clone(),
        );
        r.register("idle_gpus", "GPUs of running instances idle by every signal", m.idle_gpus.clone());
        r.register(
            "idle_cost_yuan_per_hour",
            "What idle running instances cost, in yuan (CNY) per hour",
            m.idle_cost.clone(),
        );
        r.register(
            "stuck_instances",
            "Instances in a transitional state (creating, starting, stopping, deleting) for over 15 minutes",
            m.stuck_instances.clone(),
        );
        r.register(
            "api_requests",
            "MatrixDC API requests by endpoint and HTTP code (or timeout, transport)",
            m.api_requests.clone(),
        );
        r.register_with_unit(
            "api_request_duration",
            "MatrixDC API request latency, one attempt",
            Unit::Seconds,
            m.api_duration.clone(),
        );
        r.register(
            "policy_held",
            "1 while the change guard holds a new or edited policy until it is confirmed",
            m.policy_held.clone(),
        );
        r.register(
            "cycles",
            "Cycles by result (ok; observe_failed, deadline, halted: no action or cut short)",
            m.cycles.clone(),
        );
        r.register_with_unit("cycle_duration", "Time one cycle took", Unit::Seconds, m.cycle_duration.clone());
        r.register(
            "last_successful_cycle_timestamp_seconds",
            "Unix time of the last cycle that observed the cloud whole",
            m.last_success.clone(),
        );
        r.register("ledger_up", "1 when the ledger answered in the last cycle", m.ledger_up.clone());
        r.register("config_reloads", "Policy reloads by result (ok, invalid)", m.config_reloads.clone());
        r.register(
            "config_last_reload_successful",
            "1 when the policy file in force is the one last read",
            m.config_last_reload_successful.clone(),
        );
        r.register(
            "config_restart_needed",
            "1 when the policy file changes settings only a restart applies (listen, api, token, admin_token, ledger.url)",
            m.config_restart_needed.clone(),
        );
        r.register("leader", "1 when this replica acts; 0 when it only watches", m.leader.clone());
        r.register(
            "leader_epoch",
            "The election the acting replica won, as the ledger counts them (0: no election)",
            m.leader_epoch.clone(),
        );
        r.register(
            "leader_elected_timestamp_seconds",
            "Unix time the acting replica was elected (0: no election)",
            m.leader_elected.clone(),
        );
        r.register("elections", "Elections this replica won", m.elections.clone());
        r.register(
            "notice_deliveries",
            "Attempts to deliver a notice (warning, unannounced) by channel and outcome (delivered, failed)",
            m.notices.clone(),
        );
        r.register(
            "notices_undelivered",
            "Notices in the ledger's outbox not delivered yet, by channel",
            m.notices_undelivered.clone(),
        );
        r.register_with_unit(
            "oldest_undelivered_notice_age",
            "How long the oldest notice not delivered has waited, by channel",
            Unit::Seconds,
            m.oldest_undelivered_notice.clone(),
        );
        // A gauge, not an OpenMetrics info: promtool's text parser knows no `info` type.
        let build = Family::<BuildLabels, Gauge>::default();
        build.get_or_create(&BuildLabels { version: env!("CARGO_PKG_VERSION") }).set(1);
        r.register("build_info", "The running build (always 1)", build);
        m.config_last_reload_successful.set(1);
        Metrics { registry, ..m }
    }

    /// Every metric in Prometheus' text format 0.0.4 (what `promtool check
    /// metrics` reads and every Prometheus scrapes).
    pub fn render(&self) -> String {
        let mut open_metrics = String::new();
        prometheus_client::encoding::text::encode(&mut open_metrics, &self.registry).expect("writing to a String");
        text_format(&open_metrics)
    }

    pub fn reload(&self, ok: bool) {
        let result = if ok { "ok" } else { "invalid" };
        self.config_reloads.get_or_create(&ResultLabels { result }).inc();
        self.config_last_reload_successful.set(ok.into());
    }

    pub fn restart_needed(&self, needed: bool) {
        self.config_restart_needed.set(needed.into());
    }

    pub fn leader(&self, leader: bool) {
        self.leader.set(leader.into());
    }

    /// An election this replica won.
    pub fn elected(&self) {
        self.elections.inc();
    }

    /// Who leads as the ledger has it: the epoch and when it began.
    pub fn leadership(&self, leader: &crate::ledger::leadership::Leader) {
        self.leader_epoch.set(leader.epoch);
        self.leader_elected.set(leader.elected_at.timestamp_millis() as f64 / 1000.0);
    }

    /// Everything a cycle tells: the fleet, prices, money, actions, health;
    /// `observed` is what it saw, when it saw the cloud whole.
    pub fn cycle(&self, report: &StepReport, observed: Option<&Observed>, config: &Config, took: StdDuration) {
        let result = match (&report.observe_error, report.cut) {
            (Some(_), _) => "observe_failed",
            (None, Some(cut)) => cut.metric_label(),
            (None, None) => "ok",
        };
        self.cycles.get_or_create(&ResultLabels { result }).inc();
        self.cycle_duration.observe(took.as_secs_f64());
        self.ledger_up.set(report.ledger_error.is_none().into());
        self.stuck_instances.set(report.stuck.len() as i64);
        for e in &report.executed {
            let labels = ActionLabels {
                policy: e.action.policy.clone(),
                kind: e.action.kind.label(),
                outcome: e.outcome.label(),
            };
            self.actions.get_or_create(&labels).inc();
        }
        let Some(observed) = observed.filter(|_| report.observe_error.is_none()) else { return };
        self.last_success.set(report.at.timestamp_millis() as f64 / 1000.0);
        self.skus(observed, report.at);
        // The fleet and its money from the replica that leads only, so a sum over replicas counts each once.
        if self.leader.get() == 0 {
            self.standing_by();
            return;
        }
        self.fleet(observed, config, report);
        self.budgets(observed, config);
    }

    /// A standby exports no fleet, spend or budget of its own: the leader does.
    fn standing_by(&self) {
        self.instances.clear();
        self.idle_seconds.clear();
        self.spend_rate.clear();
        self.idle_gpus.clear();
        self.idle_cost.clear();
        self.idle_stop_after.clear();
        self.pool_desired.clear();
        self.pool_members.clear();
        self.budget.clear();
        self.budget_spent.clear();
        self.budget_remaining.clear();
        *self.accrual.lock().expect("accrual lock") = Accrual::default();
    }

    /// Each policy's idle timer, and each pool's wanted and kept members.
    fn pools(&self, observed: &Observed, config: &Config, now: DateTime<Utc>) {
        use crate::config::policy::StopAfter;
        self.idle_stop_after.clear();
        self.pool_desired.clear();
        self.pool_members.clear();
        for policy in &config.policies {
            let labels = PolicyLabels { policy: policy.name.clone() };
            if let Some(idle) = &policy.idle {
                let timer = match &idle.stop_after {
                    StopAfter::Fixed(after) => *after,
                    StopAfter::Adaptive(adaptive) => adaptive.max,
                };
                self.idle_stop_after.get_or_create(&labels).set(timer.num_seconds() as f64);
            }
            let Some(pool) = &policy.pool else { continue };
            let wanted = pool.wanted();
            let discounted = || observed.skus.iter().any(|s| wanted.fits(s) && pricing::discount_active(s, now));
            let desired = if pool.only_during_discount && !discounted() { 0 } else { pool.desired_at(now) };
            let kept = observed
                .instances
                .iter()
                .filter(|o| policy.pools(&o.instance))
                .filter(|o| match (&policy.idle, &o.instance.status) {
                    (None, status) => {
                        matches!(status, InstanceStatus::Running | InstanceStatus::Starting | InstanceStatus::Creating)
                    }
                    (Some(_), status) => !matches!(status, InstanceStatus::Deleting),
                })
                .count();
            self.pool_desired.get_or_create(&labels).set(i64::from(desired));
            self.pool_members.get_or_create(&labels).set(kept as i64);
        }
    }

    /// Every policy in force, 1 when the change guard holds it.
    pub fn held<'a>(&self, config: &Config, held: impl Iterator<Item = &'a str>) {
        let held: Vec<&str> = held.collect();
        self.policy_held.clear();
        for policy in &config.policies {
            let labels = PolicyLabels { policy: policy.name.clone() };
            self.policy_held.get_or_create(&labels).set(held.contains(&policy.name.as_str()).into());
        }
    }

    fn skus(&self, observed: &Observed, now: DateTime<Utc>) {
        for family in [&self.sku_list_price, &self.sku_effective_price] {
            family.clear();
        }
        self.sku_discount_active.clear();
        self.sku_free_gpus.clear();
        for sku in &observed.skus {
            let labels = SkuLabels {
                sku: sku.id.clone(),
                name: sku.name.clone(),
                cluster: sku.cluster.clone(),
                gpu: sku.hardware.gpu_product.clone(),
            };
            self.sku_list_price.get_or_create(&labels).set(sku.price_per_hour.as_yuan_f64());
            self.sku_effective_price.get_or_create(&labels).set(pricing::effective_price(sku, now).as_yuan_f64());
            self.sku_discount_active.get_or_create(&labels).set(pricing::discount_active(sku, now).into());
            self.sku_free_gpus.get_or_create(&labels).set(sku.free_gpus.into());
        }
    }

    fn fleet(&self, observed: &Observed, config: &Config, report: &StepReport) {
        let now = report.at;
        self.instances.clear();
        self.idle_seconds.clear();
        let mut rates: BTreeMap<String, f64> = config.policies.iter().map(|p| (p.name.clone(), 0.0)).collect();
        let mut idle_gpus: BTreeMap<String, i64> = rates.keys().map(|p| (p.clone(), 0)).collect();
        let mut idle_cost: BTreeMap<String, f64> = rates.keys().map(|p| (p.clone(), 0.0)).collect();
        let mut idle = Vec::new();
        // Instances not billed for compute now: a saving lasts while they stay so.
        let mut not_running = BTreeSet::new();
        for o in &observed.instances {
            let i = &o.instance;
            let owner = config.owner(i);
            let policy = owner.map_or(UNMANAGED, |p| p.name.as_str()).to_owned();
            let status = match &i.status {
                InstanceStatus::Unknown(_) => "unknown",
                known => known.label(),
            };
            let labels =
                InstanceLabels { policy: policy.clone(), status: status.to_owned(), gpu: i.resources.gpu_type.clone() };
            self.instances.get_or_create(&labels).inc();
            if matches!(i.status, InstanceStatus::Stopping | InstanceStatus::Stopped) {
                not_running.insert(i.name.clone());
            }
            if i.status != InstanceStatus::Running {
                continue;
            }
            let cost = plan::hourly_cost(observed, i, now).as_yuan_f64();
            *rates.entry(policy.clone()).or_default() += cost;
            let since = owner.and_then(|p| p.idle.as_ref()).and_then(|rule| plan::idle_since(rule, o));
            if let Some(since) = since.filter(|_| i.cost.billing_type == BillingType::PayAsYouGo) {
                *idle_gpus.entry(policy.clone()).or_default() += i64::from(i.resources.gpu_count);
                *idle_cost.entry(policy.clone()).or_default() += cost;
                // What the policy may not stop is not named: the idle-GPU alert would fire on it forever.
                let protected = owner.is_some_and(|p| plan::protection(p, observed, i, now).is_some());
                if !protected {
                    idle.push(((now - since).max(Duration::zero()), policy, i.name.clone(), i.display_name.clone()));
                }
            }
        }
        idle.sort_by_key(|i| std::cmp::Reverse(i.0));
        for (seconds, policy, instance_name, display_name) in idle.into_iter().take(IDLE_SERIES_MAX) {
            let labels = IdleLabels { policy, instance_name, display_name };
            self.idle_seconds.get_or_create(&labels).set(seconds.num_milliseconds() as f64 / 1000.0);
        }
        for (policy, rate) in &rates {
            self.spend_rate.get_or_create(&PolicyLabels { policy: policy.clone() }).set(*rate);
        }
        self.pools(observed, config, now);
        for (policy, gpus) in idle_gpus {
            self.idle_gpus.get_or_create(&PolicyLabels { policy }).set(gpus);
        }
        for (policy, cost) in idle_cost {
            self.idle_cost.get_or_create(&PolicyLabels { policy }).set(cost);
        }

        let mut accrual = self.accrual.lock().expect("accrual lock");
        // At most three intervals: after a longer gap the ledger knows, the counters do not.
        let hours = accrual.at.map_or(0.0, |at| {
            (now - at).min(config.settings.interval * 3).max(Duration::zero()).num_milliseconds() as f64 / 3_600_000.0
        });
        for (policy, rate) in &accrual.spend_per_hour {
            self.spend.get_or_create(&PolicyLabels { policy: policy.clone() }).inc_by(rate * hours);
        }
        accrual.stopped.retain(|name, _| not_running.contains(name));
        for (policy, saving) in accrual.stopped.values() {
            self.savings.get_or_create(&PolicyLabels { policy: policy.clone() }).inc_by(saving * hours);
        }
        for e in report.executed.iter().filter(|e| e.outcome == Outcome::Done) {
            if let ActionKind::PowerOff(_) = e.action.kind {
                let saving = e.action.saving_per_hour.as_yuan_f64();
                accrual.stopped.insert(e.action.instance.name.clone(), (e.action.policy.clone(), saving));
            }
        }
        for policy in rates.keys() {
            // Present from the start, so `increase()` sees the first yuan.
            self.spend.get_or_create(&PolicyLabels { policy: policy.clone() }).inc_by(0.0);
            self.savings.get_or_create(&PolicyLabels { policy: policy.clone() }).inc_by(0.0);
        }
        accrual.spend_per_hour = rates;
        accrual.at = Some(now);
    }

    fn budgets(&self, observed: &Observed, config: &Config) {
        self.budget.clear();
        self.budget_spent.clear();
        self.budget_remaining.clear();
        let Some(spend) = &observed.spend else { return };
        let budgets = config
            .policies
            .iter()
            .filter_map(|p| p.budget.as_ref().map(|b| (p.name.as_str(), b)))
            .chain(config.settings.budget.as_ref().map(|b| (GLOBAL, b)));
        for (key, budget) in budgets {
            let spent = spend.get(key).copied().unwrap_or_default();
            let Budget { daily, monthly, .. } = budget;
            for (period, limit, spent) in [("day", daily, spent.today), ("month", monthly, spent.this_month)] {
                let Some(limit) = limit else { continue };
                let labels = BudgetLabels { policy: key.to_owned(), period };
                self.budget.get_or_create(&labels).set(limit.as_yuan_f64());
                self.budget_spent.get_or_create(&labels).set(spent.as_yuan_f64());
                self.budget_remaining.get_or_create(&labels).set((*limit - spent).as_yuan_f64());
            }
        }
    }
}

/// OpenMetrics text to Prometheus text: a counter's HELP and TYPE name its
/// `_total` samples, and there are no `# UNIT` or `# EOF` lines.
fn text_format(open_metrics: &str) -> String {
    let counters: BTreeSet<&str> =
        open_metrics.lines().filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter")).collect();
    let mut text = String::with_capacity(open_metrics.len());
    for line in open_metrics.lines() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "].into_iter().find_map(|p| Some((p, line.strip_prefix(p)?)));
        match meta {
            Some((prefix, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                let total = if counters.contains(name) { "_total" } else { "" };
                text.push_str(&format!("{prefix}{name}{total} {tail}\n"));
            }
            None => {
                text.push_str(line);
                text.push('\n');
            }
        }
    }
    text
}

/// Every MatrixDC request, counted by endpoint and outcome, with its latency.
impl crate::notify::courier::DeliveryObserver for Metrics {
    fn attempted(&self, channel: &str, outcome: crate::notify::courier::Delivery) {
        self.notices.get_or_create(&NoticeLabels { channel: channel.to_owned(), outcome: outcome.label() }).inc();
    }

    fn waiting(&self, channels: &[String], undelivered: &BTreeMap<String, (u64, DateTime<Utc>)>, now: DateTime<Utc>) {
        for channel in channels.iter().chain(undelivered.keys()) {
            let (count, oldest) = undelivered
                .get(channel)
                .map_or((0, 0.0), |(n, at)| (*n as i64, (now - *at).num_milliseconds().max(0) as f64 / 1000.0));
            let labels = ChannelLabels { channel: channel.clone() };
            self.notices_undelivered.get_or_create(&labels).set(count);
            self.oldest_undelivered_notice.get_or_create(&labels).set(oldest);
        }
    }
}

impl crate::cloud::CallObserver for Metrics {
    fn call_ended(&self, endpoint: Endpoint, outcome: &str, elapsed: StdDuration) {
        let endpoint = endpoint.label();
        self.api_requests.get_or_create(&ApiLabels { endpoint, code: outcome.to_owned() }).inc();
        self.api_duration.get_or_create(&EndpointLabels { endpoint }).observe(elapsed.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_named_by_their_samples_and_open_metrics_lines_go() {
        let open_metrics = "# HELP a_actions Actions.\n# TYPE a_actions counter\na_actions_total{kind=\"x\"} 1\n\
            # HELP a_idle_seconds Idle.\n# TYPE a_idle_seconds gauge\n# UNIT a_idle_seconds seconds\na_idle_seconds 3.0\n# EOF\n";
        assert_eq!(
            text_format(open_metrics),
            "# HELP a_actions_total Actions.\n# TYPE a_actions_total counter\na_actions_total{kind=\"x\"} 1\n\
             # HELP a_idle_seconds Idle.\n# TYPE a_idle_seconds gauge\na_idle_seconds 3.0\n"
        );
    }
}
