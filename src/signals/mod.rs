//! Idle signals: whether an instance is in use, read from outside it.
//! A signal that cannot be read counts as active, never idle.
//!
//! Jupyter and Prometheus are read here, concurrently with a bound, and only
//! as often as each instance's deadline requires; heartbeats come from the
//! ledger (`ledger::facts`).

mod error;
pub mod jupyter;
pub mod prometheus;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, Utc};

use crate::cloud::InstanceStatus;
use crate::config::policy::{Config, Signal};
use crate::plan::{ObservedInstance, Reading};

pub use error::SignalError;

/// How idle signals are read.
#[derive(Clone)]
pub struct SignalSettings {
    pub timeout: StdDuration,
    pub concurrency: usize,
    pub source: Source,
}

/// The largest answer a signal read takes: a notebook's user controls its
/// Jupyter server, and a kernel list or a one-instance vector is a few kB.
pub const BODY_MAX: usize = 1 << 20;

/// Where signals come from.
#[derive(Clone)]
pub enum Source {
    /// Jupyter servers and Prometheus, over HTTP.
    Network,
    /// A source that knows every instance's activity (the simulated
    /// platform, in `simulate`): every signal of an instance reads it, fresh
    /// at every step, with no calls.
    Known(Arc<dyn KnownActivity>),
}

/// What a source that needs no asking knows of a running instance's use.
pub trait KnownActivity: Send + Sync {
    /// At `now`: in use or idle since when, and since when it has run.
    fn activity(&self, instance: &str, now: DateTime<Utc>) -> Option<(Reading, DateTime<Utc>)>;
}

impl Default for SignalSettings {
    fn default() -> Self {
        SignalSettings { timeout: StdDuration::from_secs(5), concurrency: 16, source: Source::Network }
    }
}

/// What one look at one signal of one instance tells.
#[derive(Clone, Debug, PartialEq)]
pub struct Look {
    pub reading: Reading,
    /// When the instance's server started, when the signal knows it.
    pub started: Option<DateTime<Utc>>,
}

impl Look {
    pub fn unreadable(why: impl Into<String>) -> Self {
        Look { reading: Reading::Unreadable(why.into()), started: None }
    }
}

/// The last look at each signal of each instance, and when it was taken;
/// and one HTTP client for them all, kept across cycles (building one loads
/// the system's root certificates).
#[derive(Default)]
pub struct SignalCache {
    looks: BTreeMap<(String, &'static str), (Look, DateTime<Utc>)>,
    http: Option<reqwest::Client>,
    /// Instances read every cycle whatever their deadline: a due stop waits for them to go idle.
    watched: BTreeSet<String>,
}

impl SignalCache {
    /// The instances the last plan wants read afresh at every cycle.
    pub fn watch(&mut self, names: &[String]) {
        self.watched = names.iter().cloned().collect();
    }

    /// Whether to look again at `now` after a look at `at`. An unreadable
    /// signal, or an idle one whose deadline is within a cycle, is read every
    /// time. Otherwise an instance is read once per period of
    /// `stop_after - interval` (so never past a deadline), at a phase of its
    /// own within the period, which spreads a large fleet evenly over cycles.
    fn due(
        name: &str,
        look: &Look,
        at: DateTime<Utc>,
        now: DateTime<Utc>,
        stop_after: Duration,
        interval: Duration,
    ) -> bool {
        match &look.reading {
            Reading::Unreadable(_) => return true,
            Reading::IdleSince(since) if now + interval >= *since + stop_after => return true,
            _ => {}
        }
        let period = (stop_after - interval).num_milliseconds().max(interval.num_milliseconds()).max(1);
        let share = name.bytes().fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(b as u64)) % 1000;
        let phase = period * share as i64 / 1000;
        let slot = |t: DateTime<Utc>| (t.timestamp_millis() + phase).div_euclid(period);
        slot(now) > slot(at)
    }
}

/// What to ask, for one signal of one instance.
enum Probe {
    Jupyter(Option<crate::cloud::JupyterEndpoint>),
    Prometheus(prometheus::Query),
}

/// Reads Jupyter and Prometheus for the running instances whose policy
/// listens to them, a bounded number at a time, only as often as their
/// deadlines require (with a cache), and never for instances of other policies.
pub async fn read_signals(
    observed: &mut [ObservedInstance],
    config: &Config,
    settings: &SignalSettings,
    cache: Option<&mut SignalCache>,
    now: DateTime<Utc>,
) {
    if let Source::Known(known) = &settings.source {
        return observed.iter_mut().for_each(|o| read_known(o, config, known.as_ref(), now));
    }
    let interval = config.settings.interval;
    let mut fresh = SignalCache::default();
    let cache = cache.unwrap_or(&mut fresh);
    // Forget instances no longer running: a power-on brings a new server and token.
    let running: BTreeSet<&str> = observed
        .iter()
        .filter(|o| o.instance.status == InstanceStatus::Running)
        .map(|o| o.instance.name.as_str())
        .collect();
    cache.looks.retain(|(name, _), _| running.contains(name.as_str()));

    let http = cache.http.get_or_insert_with(signal_client).clone();
    let mut due = Vec::new();
    for (index, o) in observed.iter().enumerate() {
        if o.instance.status != InstanceStatus::Running {
            continue;
        }
        let Some(idle) = config.owner(&o.instance).and_then(|p| p.idle.as_ref()) else { continue };
        for signal in &idle.signals {
            let probe = match signal {
                Signal::Heartbeat => continue,
                Signal::Jupyter => Probe::Jupyter(o.instance.servers.as_ref().and_then(|s| s.jupyter.clone())),
                Signal::Prometheus { query, threshold } => match &config.settings.prometheus_url {
                    Some(url) => Probe::Prometheus(prometheus::Query::new(
                        url,
                        query,
                        *threshold,
                        &o.instance.name,
                        &o.instance.display_name,
                        idle.stop_after.earliest(),
                        interval,
                    )),
                    None => continue,
                },
            };
            let key = (o.instance.name.clone(), signal.label());
            if let Some((look, at)) = cache.looks.get(&key)
                && !cache.watched.contains(&o.instance.name)
                && !SignalCache::due(&o.instance.name, look, *at, now, idle.stop_after.earliest(), interval)
            {
                continue;
            }
            due.push((index, key.1, probe));
        }
    }
    // At most `concurrency` reads in flight, and no more spawned: a first
    // cycle over a thousand instances holds sixteen of them, not a thousand.
    let mut tasks = tokio::task::JoinSet::new();
    let mut due = due.into_iter();
    loop {
        while tasks.len() < settings.concurrency.max(1)
            && let Some((index, label, probe)) = due.next()
        {
            let (http, timeout) = (http.clone(), settings.timeout);
            tasks.spawn(async move {
                let look = match probe {
                    Probe::Jupyter(Some(endpoint)) => jupyter::look(&http, &endpoint, timeout).await,
                    Probe::Jupyter(None) => Look::unreadable("no Jupyter URL"),
                    Probe::Prometheus(query) => query.look(&http, now, timeout).await,
                };
                (index, label, look)
            });
        }
        let Some(done) = tasks.join_next().await else { break };
        if let Ok((index, label, look)) = done {
            cache.looks.insert((observed[index].instance.name.clone(), label), (look, now));
        }
    }
    for o in observed.iter_mut() {
        let name = o.instance.name.clone();
        for ((_, label), (look, _)) in cache.looks.range((name.clone(), "")..).take_while(|((n, _), _)| *n == name) {
            if look.started.is_some() {
                o.running_since = look.started;
            }
            o.signals.insert((*label).to_owned(), look.reading.clone());
        }
    }
}

/// One client for every signal read, keeping no idle connections: they
/// would hold their buffers from one cycle to the next.
fn signal_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        // A notebook's user controls its server: it may not send the token elsewhere.
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("an HTTP client with default TLS builds, as reqwest::Client::new() does")
}

/// Every Jupyter and Prometheus signal from a source that knows the activity.
fn read_known(o: &mut ObservedInstance, config: &Config, known: &dyn KnownActivity, now: DateTime<Utc>) {
    if o.instance.status != InstanceStatus::Running {
        return;
    }
    let Some(idle) = config.owner(&o.instance).and_then(|p| p.idle.as_ref()) else { return };
    let Some((reading, started)) = known.activity(&o.instance.name, now) else { return };
    for signal in idle.signals.iter().filter(|s| !matches!(s, Signal::Heartbeat)) {
        o.signals.insert(signal.label().to_owned(), reading.clone());
    }
    o.running_since = Some(started);
}

/// The signals of the instances at `indexes` only, for a step told which
/// changed: what the simulator says does not change unless they did.
/// Network signals change on their own, so all of those are read.
pub async fn read_signals_of(
    observed: &mut [ObservedInstance],
    indexes: &[usize],
    config: &Config,
    settings: &SignalSettings,
    cache: &mut SignalCache,
    now: DateTime<Utc>,
) {
    match &settings.source {
        Source::Known(known) => {
            indexes.iter().for_each(|i| read_known(&mut observed[*i], config, known.as_ref(), now));
        }
        Source::Network => read_signals(observed, config, settings, Some(cache), now).await,
    }
}
