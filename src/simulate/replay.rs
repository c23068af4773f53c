//! One replay of a trace in virtual time: the daemon's own step (planner,
//! execution rules, in-memory ledger) against the simulated platform, and
//! the trace's people, who come back at the start of each session and start
//! their instance if it is not running, then wait for it.
//!
//! Time jumps from event to event. The daemon wakes as `run` would: at the
//! planner's `next_check`, or on its interval grid after anything outside it
//! changed (a session began or ended, an instance finished a transition, a
//! region's capacity moved). Wakes in which nothing changed are skipped: they
//! would decide nothing.
//!
//! Work a power_off or delete interrupts is lost: everything done in the
//! session since it began (or since its last checkpoint, for instances whose
//! trace says `checkpoint_every`). After a power_off the person starts the
//! instance again once it has stopped, waits for it, redoes what was lost and
//! then carries on for the rest of the session: the redone work is billed as
//! any other running time.
//!
//! Each step is told what changed (the instances the simulator edited, and
//! those whose sessions began or ended) rather than listing the whole fleet:
//! [`Stepping::Whole`] steps as the daemon does, to check that both agree.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};

use super::trace::Trace;
use crate::clock::Clock;
use crate::cloud::{BillingType, InstanceStatus};
use crate::config::policy::Config;
use crate::ledger::{ActionRecord, Ledger, MemoryStore, Outcome, Store};
use crate::money::Money;
use crate::plan::{ActionKind, Detail};
use crate::reconcile::Daemon;
use crate::signals::{SignalSettings, Source};
use crate::sim::BillReport;
use crate::sim::local::SimCloud;
use crate::sim::{Session, Simulator};

/// What people went through, per instance.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Experience {
    /// Starts someone waited for: sessions that began with the instance not
    /// running, and restarts after an interruption.
    pub cold_starts: u32,
    /// Time from those moments until the instance ran.
    pub waited: Duration,
    /// Power-offs and deletes during a session.
    pub interrupted: u32,
    /// Sessions whose instance no longer existed.
    pub lost: u32,
    /// Time in use whose work the interruptions lost (redone after a restart).
    pub lost_work: Duration,
    /// What that time had cost at the price in force (pay-as-you-go only).
    pub lost_work_cost: Money,
}

impl std::ops::AddAssign for Experience {
    fn add_assign(&mut self, other: Experience) {
        self.cold_starts += other.cold_starts;
        self.waited += other.waited;
        self.interrupted += other.interrupted;
        self.lost += other.lost;
        self.lost_work += other.lost_work;
        self.lost_work_cost += other.lost_work_cost;
    }
}

pub struct Replay {
    pub bill: BillReport,
    /// Display name → what its people went through.
    pub experience: BTreeMap<String, Experience>,
    /// Every action the daemon took (none without a policy).
    pub actions: Vec<ActionRecord>,
    /// Platform name → display name, for every instance that ever existed.
    pub display_names: BTreeMap<String, String>,
    /// Daemon steps taken.
    pub steps: u64,
}

/// Why a trace could not be replayed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("{0}")]
    Trace(#[from] super::trace::TraceError),
    #[error("the policy names cluster {cluster}, which the trace does not have (its clusters: {known})")]
    UnknownCluster { cluster: String, known: String },
    #[error("the simulator refused {what}: {error}")]
    Simulator { what: &'static str, error: crate::sim::SimError },
    #[error("the simulator could not say what changed: {0}")]
    Told(crate::cloud::CloudError),
    #[error("the trace's instance {0}")]
    Instance(#[from] crate::cloud::wire::Malformed),
    #[error("the replay's ledger: {0}")]
    Ledger(#[from] crate::ledger::LedgerError),
    #[error("no runtime for a replay: {0}")]
    Runtime(std::io::Error),
}

/// How the daemon observes at each step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stepping {
    /// Told which instances changed since its last step.
    Told,
    /// Listing the whole fleet, as `run` does.
    Whole,
}

struct Person {
    name: String,
    display_name: String,
    /// Sorted and apart; an interruption cuts one short and its redone work adds one.
    sessions: Vec<Session>,
    /// Work is saved this often within a session; `None`: only by ending it.
    checkpoint_every: Option<Duration>,
    /// Waiting for the instance since then; `restart` once it has stopped.
    waiting: Option<(DateTime<Utc>, bool)>,
    /// Work to redo once the instance runs again.
    redo: Duration,
}

/// Replays the trace under `config`, or with no autoscaler at all.
pub async fn replay(trace: &Trace, config: Option<&Config>) -> Result<Replay, ReplayError> {
    replay_with(trace, config, Stepping::Told).await
}

pub async fn replay_with(trace: &Trace, config: Option<&Config>, stepping: Stepping) -> Result<Replay, ReplayError> {
    replay_in(trace, config, stepping, MemoryStore::default()).await
}

/// As [`replay_with`], with the daemon's ledger in `store` (migrated already).
pub async fn replay_in<S: Store>(
    trace: &Trace,
    config: Option<&Config>,
    stepping: Stepping,
    store: S,
) -> Result<Replay, ReplayError> {
    let (mut sim, names) = trace.build()?;
    sim.follow_changes();
    let sim = Arc::new(Mutex::new(sim));
    let clock = Clock::manual(trace.start);
    let mut daemon = config.map(|config| {
        let cloud = SimCloud::new(Arc::clone(&sim), clock.clone());
        let signals = SignalSettings { source: Source::Known(Arc::clone(&sim) as _), ..SignalSettings::default() };
        Daemon::new(cloud, Ledger::new(store), config.clone(), false)
            .with_signals(signals)
            .with_detail(Detail::Decisions)
            .accepting_policies()
    });
    let interval = config.map_or(Duration::seconds(30), |c| c.settings.interval).max(Duration::seconds(1));
    let mut people: Vec<Person> = trace
        .sessions
        .iter()
        .map(|(display, sessions)| Person {
            name: names[display].clone(),
            display_name: display.clone(),
            sessions: sessions.clone(),
            checkpoint_every: trace.checkpoint_every.get(display).copied(),
            waiting: None,
            redo: Duration::zero(),
        })
        .collect();
    // Every session's start (with its person) and end, in time order.
    let mut starts: Vec<(DateTime<Utc>, usize)> =
        people.iter().enumerate().flat_map(|(i, p)| p.sessions.iter().map(move |s| (s.start, i))).collect();
    starts.sort();
    let mut ends: BinaryHeap<Reverse<(DateTime<Utc>, usize)>> =
        people.iter().enumerate().flat_map(|(i, p)| p.sessions.iter().map(move |s| Reverse((s.end, i)))).collect();
    let by_name: HashMap<String, usize> = people.iter().enumerate().map(|(i, p)| (p.name.clone(), i)).collect();
    // People waiting for their instance, and those whose activity changed since the daemon's last step.
    let mut waiting: BTreeSet<usize> = BTreeSet::new();
    let mut active_changed: BTreeSet<usize> = BTreeSet::new();
    let mut starts_next = 0;
    let mut experience: BTreeMap<String, Experience> =
        people.iter().map(|p| (p.display_name.clone(), Experience::default())).collect();
    let capacity = trace.capacity();
    let mut capacity_next = 0;
    let mut display_names: BTreeMap<String, String> = names.iter().map(|(d, n)| (n.clone(), d.clone())).collect();

    // The daemon's first look is at the start; after that, `anchor` is its last wake.
    let mut wake = Some(trace.start);
    let mut anchor = trace.start;
    let mut steps = 0;
    loop {
        let (next_transition, now_sim) = {
            let mut sim = sim.lock().expect("simulator lock");
            (sim.next_transition(), sim.now())
        };
        let next_arrival = starts.get(starts_next).map(|(at, _)| *at);
        let next_capacity = capacity.get(capacity_next).map(|(at, _)| *at);
        let now =
            [wake, next_arrival, next_transition, next_capacity].into_iter().flatten().filter(|t| *t >= now_sim).min();
        let Some(now) = now.filter(|t| *t < trace.end) else { break };
        clock.advance(now - clock.now());
        let mut outside_change = false;
        {
            let mut sim = sim.lock().expect("simulator lock");
            sim.advance(now);
            while let Some((at, change)) = capacity.get(capacity_next).filter(|(at, _)| *at <= now) {
                for (key, gpus) in &change.gpus {
                    sim.set_gpus(*at, &change.region, key, *gpus)
                        .map_err(|error| ReplayError::Simulator { what: "a capacity change", error })?;
                }
                capacity_next += 1;
                outside_change = true;
            }
            while let Some(&(_, index)) = starts.get(starts_next).filter(|(at, _)| *at <= now) {
                let person = &mut people[index];
                let tally = experience.get_mut(&person.display_name).expect("known");
                begin_session(&sim, person, now, tally);
                if person.waiting.is_some() {
                    waiting.insert(index);
                }
                active_changed.insert(index);
                starts_next += 1;
            }
            let mut failed = None;
            waiting.retain(|&index| {
                let person = &mut people[index];
                let tally = experience.get_mut(&person.display_name).expect("known");
                let waited = wait(&mut sim, person, now, tally);
                outside_change |= waited.started;
                if let Some(redone) = waited.redone {
                    match redone {
                        Ok(end) => {
                            ends.push(Reverse((end, index)));
                            active_changed.insert(index);
                        }
                        Err(e) => failed = Some(e),
                    }
                }
                person.waiting.is_some()
            });
            if let Some(e) = failed {
                return Err(ReplayError::Simulator { what: "a session", error: e });
            }
            outside_change |= next_transition.is_some_and(|t| t <= now);
        }
        // A session ending changes an idle signal: news for the daemon too.
        while let Some(&Reverse((_, index))) = ends.peek().filter(|Reverse((end, _))| *end <= now) {
            active_changed.insert(index);
            ends.pop();
        }
        // What changed outside the daemon is noticed at its next regular wake.
        let next_end = ends.peek().map(|Reverse((at, _))| *at).filter(|_| daemon.is_some());
        let noticed = [next_end, outside_change.then_some(now)];
        for at in noticed.into_iter().flatten() {
            let grid = next_on_grid(anchor, at, interval);
            wake = Some(wake.map_or(grid, |w| w.min(grid)));
        }
        if wake == Some(now)
            && let Some(daemon) = daemon.as_mut()
        {
            let activity = std::mem::take(&mut active_changed).into_iter().map(|i| people[i].name.clone());
            let report = match stepping {
                Stepping::Told => match daemon.cloud().told(activity) {
                    Ok(told) => daemon.step_told(now, told).await,
                    Err(e) => return Err(ReplayError::Told(e)),
                },
                Stepping::Whole => {
                    sim.lock().expect("simulator lock").take_changed();
                    daemon.step(now).await
                }
            };
            steps += 1;
            anchor = now;
            // A replay's channels take every notice the moment it is queued.
            let store = daemon.ledger().store();
            for notice in store.due_notices(now, usize::MAX).await.unwrap_or_default() {
                let _ = store.notice_delivered(notice.id, now).await;
            }
            for e in report.executed.iter().filter(|e| e.outcome == Outcome::Done) {
                let restart = match e.action.kind {
                    ActionKind::PowerOff(_) => true,
                    ActionKind::Delete => false,
                    _ => continue,
                };
                let Some(&index) = by_name.get(&e.action.instance.name) else { continue };
                let person = &mut people[index];
                if in_session(&person.sessions, now) {
                    let tally = experience.get_mut(&person.display_name).expect("known");
                    interrupt(&sim.lock().expect("simulator lock"), person, now, restart, tally);
                    if person.waiting.is_some() {
                        waiting.insert(index);
                    }
                }
            }
            for (display, name) in &report.names {
                if !display_names.contains_key(name) {
                    display_names.insert(name.clone(), display.clone());
                }
            }
            // The planner's next decision, and at least the daemon's one-second floor; and
            // the next session's end, a change the daemon notices at its next regular wake.
            wake = report.plan.as_ref().and_then(|p| p.next_check).map(|next| next.max(now + Duration::seconds(1)));
            if let Some(&Reverse((end, _))) = ends.peek() {
                let grid = next_on_grid(anchor, end, interval);
                wake = Some(wake.map_or(grid, |w| w.min(grid)));
            }
        } else if wake == Some(now) {
            wake = None;
        }
    }
    let bill = {
        let mut sim = sim.lock().expect("simulator lock");
        sim.advance(trace.end);
        sim.bill()
    };
    let actions = match &daemon {
        Some(daemon) => daemon.ledger().store().actions_between(trace.start, trace.end + Duration::days(1)).await?,
        None => Vec::new(),
    };
    Ok(Replay { bill, experience, actions, display_names, steps })
}

/// A person whose session begins now starts waiting if the instance is not running.
fn begin_session(sim: &Simulator, person: &mut Person, now: DateTime<Utc>, tally: &mut Experience) {
    match sim.instance(&person.name).map(|i| i.phase.status()) {
        None => tally.lost += 1,
        Some(InstanceStatus::Running) => {}
        Some(_) if person.waiting.is_some() => {}
        Some(status) => {
            tally.cold_starts += 1;
            // Starting or creating already: just wait. Otherwise start it once it has stopped.
            let restart = !matches!(status, InstanceStatus::Starting | InstanceStatus::Creating);
            person.waiting = Some((now, restart));
        }
    }
}

/// What a waiting person did at one moment.
struct Waited {
    /// They powered the instance on.
    started: bool,
    /// The instance ran again after an interruption: the end of the session
    /// that redoes the lost work, or why the simulator refused it.
    redone: Option<Result<DateTime<Utc>, crate::sim::SimError>>,
}

/// A waiting person starts a stopped instance, and stops waiting once it
/// runs; after an interruption, they then redo the work it lost.
fn wait(sim: &mut Simulator, person: &mut Person, now: DateTime<Utc>, tally: &mut Experience) -> Waited {
    let mut waited = Waited { started: false, redone: None };
    let Some((since, restart)) = person.waiting else { return waited };
    let Some(instance) = sim.instance(&person.name) else {
        person.waiting = None;
        return waited;
    };
    match instance.phase.status() {
        InstanceStatus::Running => {
            let ran = instance.started_at.max(since);
            tally.waited += ran - since;
            person.waiting = None;
            if person.redo > Duration::zero() {
                let end = redo(&mut person.sessions, ran, std::mem::take(&mut person.redo));
                waited.redone = Some(sim.set_sessions(&person.name, person.sessions.clone()).map(|()| end));
            }
        }
        InstanceStatus::Stopped if restart => {
            let cluster = instance.cluster.clone();
            waited.started = sim.power_on(now, &cluster, &person.name).is_ok();
            if waited.started {
                person.waiting = Some((since, false));
            }
        }
        _ => {}
    }
    waited
}

/// A power_off or delete at `now` cuts the person's session short: the work
/// since its start (or its last checkpoint) is lost. After a power_off they
/// wait to start the instance again, and will redo it and the rest.
fn interrupt(sim: &Simulator, person: &mut Person, now: DateTime<Utc>, restart: bool, tally: &mut Experience) {
    let i = person.sessions.partition_point(|s| s.end <= now);
    let Some(session) = person.sessions.get_mut(i).filter(|s| s.start <= now) else { return };
    let saved = match person.checkpoint_every.map(|c| c.num_milliseconds()).filter(|c| *c > 0) {
        Some(every) => session.start + Duration::milliseconds((now - session.start).num_milliseconds() / every * every),
        None => session.start,
    };
    let rest = session.end - now;
    session.end = now;
    if session.end <= session.start {
        person.sessions.remove(i);
    }
    tally.interrupted += 1;
    tally.lost_work += now - saved;
    if let Some(instance) = sim.instance(&person.name)
        && instance.billing_type == BillingType::PayAsYouGo
        && let Some(sku) = sim.skus().find(|s| s.id == instance.sku_id)
    {
        tally.lost_work_cost += Money::from_hourly_scaled(sku.cost_scaled(saved, now));
    }
    if restart {
        person.redo += (now - saved) + rest;
        if person.waiting.is_none() {
            tally.cold_starts += 1;
            person.waiting = Some((now, true));
        }
    }
}

/// Adds `work` in use from `from` to sorted sessions: work is done one
/// thing at a time, so sessions it reaches into are joined and pushed back
/// by what of them had not yet begun. Returns the joined session's end.
fn redo(sessions: &mut Vec<Session>, from: DateTime<Utc>, work: Duration) -> DateTime<Utc> {
    let i = sessions.partition_point(|s| s.end <= from);
    let mut end = from + work;
    // A session under way when the instance came back (it began while the person waited).
    let mut start = from;
    if let Some(s) = sessions.get(i).filter(|s| s.start <= from) {
        start = s.start;
        end += s.end - from;
        sessions.remove(i);
    }
    while let Some(s) = sessions.get(i).filter(|s| s.start < end) {
        end += s.end - s.start;
        sessions.remove(i);
    }
    sessions.insert(i, Session { start, end });
    end
}

/// The first wake at or after `at` on the interval grid from `anchor` (and after `anchor`).
fn next_on_grid(anchor: DateTime<Utc>, at: DateTime<Utc>, interval: Duration) -> DateTime<Utc> {
    let step = interval.num_milliseconds();
    let periods = ((at - anchor).num_milliseconds() + step - 1).div_euclid(step).max(1);
    anchor + Duration::milliseconds(periods * step)
}

fn in_session(sessions: &[Session], at: DateTime<Utc>) -> bool {
    let i = sessions.partition_point(|s| s.end <= at);
    sessions.get(i).is_some_and(|s| s.start <= at)
}
