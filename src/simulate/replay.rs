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
//! Each step is told what changed (the instances the simulator edited, and
//! those whose sessions began or ended) rather than listing the whole fleet:
//! [`Stepping::Whole`] steps as the daemon does, to check that both agree.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};

use super::trace::Trace;
use crate::cloud::InstanceStatus;
use crate::config::policy::Config;
use crate::ledger::{ActionRecord, Ledger, MemoryStore, Outcome, Store};
use crate::plan::{ActionKind, Detail};
use crate::reconcile::Daemon;
use crate::signals::Source;
use crate::sim::BillReport;
use crate::sim::clock::Clock;
use crate::sim::local::SimCloud;
use crate::sim::{Session, Simulator};

/// What people went through, per instance.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Experience {
    /// Sessions that began with the instance not running.
    pub cold_starts: u32,
    /// Time from those sessions' start until the instance ran.
    pub waited: Duration,
    /// Power-offs and deletes during a session.
    pub interrupted: u32,
    /// Sessions whose instance no longer existed.
    pub lost: u32,
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

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ReplayError(pub String);

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
    sessions: Vec<Session>,
    /// Waiting for the instance since then; `restart` once it has stopped.
    waiting: Option<(DateTime<Utc>, bool)>,
}

/// Replays the trace under `config`, or with no autoscaler at all.
pub async fn replay(trace: &Trace, config: Option<&Config>) -> Result<Replay, ReplayError> {
    replay_with(trace, config, Stepping::Told).await
}

pub async fn replay_with(trace: &Trace, config: Option<&Config>, stepping: Stepping) -> Result<Replay, ReplayError> {
    let (mut sim, names) = trace.build().map_err(|e| ReplayError(e.to_string()))?;
    sim.follow_changes();
    let sim = Arc::new(Mutex::new(sim));
    let clock = Clock::manual(trace.start);
    let mut daemon = config.map(|config| {
        let cloud = SimCloud::new(Arc::clone(&sim), clock.clone());
        let mut daemon = Daemon::new(cloud, Ledger::new(MemoryStore::default()), config.clone(), false);
        daemon.signals.source = Source::Simulator(Arc::clone(&sim));
        daemon.detail = Detail::Decisions;
        daemon
    });
    let interval = config.map_or(Duration::seconds(30), |c| c.settings.interval).max(Duration::seconds(1));
    let mut people: Vec<Person> = trace
        .sessions
        .iter()
        .map(|(display, sessions)| Person {
            name: names[display].clone(),
            display_name: display.clone(),
            sessions: sessions.clone(),
            waiting: None,
        })
        .collect();
    // Every session's start (with its person) and end, in time order.
    let mut starts: Vec<(DateTime<Utc>, usize)> =
        people.iter().enumerate().flat_map(|(i, p)| p.sessions.iter().map(move |s| (s.start, i))).collect();
    starts.sort();
    let mut ends: Vec<(DateTime<Utc>, usize)> =
        people.iter().enumerate().flat_map(|(i, p)| p.sessions.iter().map(move |s| (s.end, i))).collect();
    ends.sort();
    let by_name: HashMap<String, usize> = people.iter().enumerate().map(|(i, p)| (p.name.clone(), i)).collect();
    // People waiting for their instance, and those whose activity changed since the daemon's last step.
    let mut waiting: BTreeSet<usize> = BTreeSet::new();
    let mut active_changed: BTreeSet<usize> = BTreeSet::new();
    let (mut starts_next, mut ends_next) = (0, 0);
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
                    sim.set_gpus(*at, &change.region, key, *gpus).map_err(|e| ReplayError(e.to_string()))?;
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
            waiting.retain(|&index| {
                let person = &mut people[index];
                let tally = experience.get_mut(&person.display_name).expect("known");
                outside_change |= wait(&mut sim, person, now, tally);
                person.waiting.is_some()
            });
            outside_change |= next_transition.is_some_and(|t| t <= now);
        }
        // A session ending changes an idle signal: news for the daemon too.
        while let Some(&(_, index)) = ends.get(ends_next).filter(|(end, _)| *end <= now) {
            active_changed.insert(index);
            ends_next += 1;
        }
        // What changed outside the daemon is noticed at its next regular wake.
        let next_end = ends.get(ends_next).map(|(at, _)| *at).filter(|_| daemon.is_some());
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
                Stepping::Told => match daemon.cloud.told(activity) {
                    Ok(told) => daemon.step_told(now, told).await,
                    Err(e) => return Err(ReplayError(format!("the simulator could not say what changed: {e}"))),
                },
                Stepping::Whole => {
                    sim.lock().expect("simulator lock").take_changed();
                    daemon.step(now).await
                }
            };
            steps += 1;
            anchor = now;
            for e in report.executed.iter().filter(|e| e.outcome == Outcome::Done) {
                let disrupts = matches!(e.action.kind, ActionKind::PowerOff(_) | ActionKind::Delete);
                let person = by_name.get(&e.action.instance.name).map(|i| &people[*i]);
                if let Some(person) = person.filter(|p| disrupts && in_session(&p.sessions, now)) {
                    experience.get_mut(&person.display_name).expect("known").interrupted += 1;
                }
            }
            for (display, name) in &report.names {
                if !display_names.contains_key(name) {
                    display_names.insert(name.clone(), display.clone());
                }
            }
            // The planner's next decision, and at least the daemon's one-second floor.
            wake = report.plan.as_ref().and_then(|p| p.next_check).map(|next| next.max(now + Duration::seconds(1)));
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
        Some(daemon) => daemon
            .ledger
            .store()
            .actions_between(trace.start, trace.end + Duration::days(1))
            .await
            .map_err(|e| ReplayError(e.to_string()))?,
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

/// A waiting person starts a stopped instance, and stops waiting once it
/// runs. Returns whether they started it.
fn wait(sim: &mut Simulator, person: &mut Person, now: DateTime<Utc>, tally: &mut Experience) -> bool {
    let Some((since, restart)) = person.waiting else { return false };
    let Some(instance) = sim.instance(&person.name) else {
        person.waiting = None;
        return false;
    };
    match instance.phase.status() {
        InstanceStatus::Running => {
            tally.waited += instance.started_at.max(since) - since;
            person.waiting = None;
            false
        }
        InstanceStatus::Stopped if restart => {
            let cluster = instance.cluster.clone();
            let started = sim.power_on(now, &cluster, &person.name).is_ok();
            if started {
                person.waiting = Some((since, false));
            }
            started
        }
        _ => false,
    }
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
