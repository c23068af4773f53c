//! The daemon's loop: the thin shell around [`Daemon::step`] that reads the
//! clock, sleeps until the next decision is due, reloads the policy on
//! SIGHUP, stops on SIGTERM, and tells systemd. A signal that lands during a
//! step halts it at its next safe point, so either is honoured within
//! seconds; a step also ends at its deadline.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::clock::Clock;
use crate::cloud::Cloud;
use crate::config::load::load_file;
use crate::config::policy::{Config, Settings};
use crate::http::{Shared, SnoozeRule};
use crate::ledger::leadership::Standing;
use crate::ledger::{AnyStore, Outcome};
use crate::notify::courier::Courier;
use crate::notify::digest::Digests;
use crate::plan::observed::yuan;
use crate::reconcile::{Cut, Daemon, Halt, SettleError, StepReport};
use crate::text::Shown;

pub struct Options {
    /// Re-read on SIGHUP; a file that fails validation leaves the old policy.
    pub config_path: Option<PathBuf>,
    pub clock: Clock,
    /// Print each decision for people (the demo), besides the log.
    pub narrate: bool,
    /// Apply the ledger's migrations before the first write (retried each cycle until done).
    pub migrate: bool,
}

/// Runs cycles until SIGTERM or Ctrl-C. Among replicas, cycles step while
/// this one leads; a standby campaigns every `ha.try_every` and watches the
/// cloud every `ha.observe_every` intervals.
pub async fn run<C: Cloud>(mut daemon: Daemon<C, AnyStore>, shared: Arc<Shared>, options: Options) {
    tune_allocator();
    let mut asked = listen(daemon.halt().clone());
    let watchdog = sd_notify::watchdog_enabled();
    let settings = &daemon.config().settings;
    let slowest = settings.cycle_deadline.to_std().unwrap_or_default() + settings.api.call_timeout();
    if let Some(watchdog) = watchdog.filter(|w| slowest >= *w) {
        tracing::warn!(
            slowest_cycle_seconds = slowest.as_secs(),
            watchdog_seconds = watchdog.as_secs(),
            "cycle_deadline plus api.call_timeout is not under systemd's watchdog: a slow cycle would be killed"
        );
    }
    let mut narrator =
        Narrator { seen_notes: BTreeSet::new(), activity: BTreeMap::new(), timezone: daemon.config().settings.zone() };
    {
        let mut status = shared.status.write().expect("status lock");
        status.started_at = Some(options.clock.now());
        status.dry_run = daemon.dry_run();
        status.interval = daemon.config().settings.interval;
        status.snooze_rules = snooze_rules(daemon.config());
        status.replica.name = daemon.replica().map_or_else(|| settings.ha.replica(), str::to_owned);
        status.replica.elects = daemon.replica().is_some();
        status.replica.observe_every = settings.ha.observe_every;
    }
    shared.metrics.leader(false);
    let mut migrated = !options.migrate;
    let (leads, leading) = tokio::sync::watch::channel(false);
    let courier = deliver(&daemon, &shared, options.clock.clone(), leading);
    // Started: listening. Whether cycles succeed is `/readyz`'s to say; the watchdog is fed as they end.
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    let mut pruned: Option<DateTime<Utc>> = None;
    // Whether what the last run or leader left unfinished is settled.
    let mut settled = true;
    let mut watched: Option<DateTime<Utc>> = None;
    loop {
        if !migrated {
            use crate::ledger::Store;
            match daemon.ledger().store().migrate().await {
                Ok(()) => migrated = true,
                Err(error) => tracing::warn!(%error, "ledger migrations not applied yet; retried each cycle"),
            }
        }
        let confirmed = std::mem::take(&mut *shared.confirmed.lock().expect("confirmed lock"));
        for policy in confirmed {
            if daemon.confirm(&policy) {
                tracing::warn!(%policy, "policy confirmed: it acts from this cycle");
            }
        }
        let now = options.clock.now();
        let standing = daemon.campaign(now).await;
        match (&standing, *leads.borrow()) {
            (Standing::Leading { epoch }, false) => {
                if *epoch > 0 {
                    tracing::warn!(epoch, replica = %daemon.replica().unwrap_or(""), "elected: this replica leads");
                    shared.metrics.elected();
                }
                settled = settle(daemon.take_over(*epoch, now).await);
            }
            (Standing::Standby { error, .. }, true) => {
                tracing::warn!(why = %error.as_deref().unwrap_or("another replica took the lock"), "no longer leading: standing by");
                watched = None;
            }
            (Standing::Leading { .. }, true) if !settled => settled = settle(daemon.reconcile_intents(now).await),
            (Standing::Standby { error: Some(error), .. }, false) if watched.is_none() => {
                tracing::warn!(%error, "standing by: the election could not be held");
            }
            _ => {}
        }
        let leading = standing.leads();
        leads.send_if_modified(|was| std::mem::replace(was, leading) != leading);
        shared.metrics.leader(leading);
        let leader = match standing {
            Standing::Standby { leader, .. } => leader,
            Standing::Leading { .. } => daemon.leader().await,
        };
        if let Some(leader) = &leader {
            shared.metrics.leadership(leader);
        }
        {
            let mut status = shared.status.write().expect("status lock");
            status.replica.leading = leading;
            status.replica.leader = leader;
        }
        let interval = daemon.config().settings.interval;
        let ha = &daemon.config().settings.ha;
        let watch_due = watched.is_none_or(|at| now - at >= interval * ha.observe_every as i32);
        let started = std::time::Instant::now();
        let report = match (leading, watch_due) {
            (true, _) => Some(daemon.step(now).await),
            (false, true) => {
                watched = Some(now);
                Some(daemon.watch(now).await)
            }
            (false, false) => None,
        };
        let mut next_check = None;
        if let Some(report) = report {
            shared.metrics.cycle(&report, daemon.observed(), daemon.config(), started.elapsed());
            log(&report);
            if options.narrate {
                narrator.tell(&report);
            }
            update(&shared, &report, daemon.observed().map(|o| o.instances.len()));
            shared.status.write().expect("status lock").held = daemon.held().cloned().collect();
            shared.metrics.held(daemon.config(), daemon.held().map(|h| h.policy.as_str()));
            next_check = report.plan.as_ref().and_then(|p| p.next_check);
            if report.plan.as_ref().is_some_and(|p| !p.warnings.is_empty() || p.actions.iter().any(|a| a.unannounced)) {
                courier.wake.notify_one();
            }
            drop(report);
            daemon.release_picture();
            release_memory();
        }
        if watchdog.is_some() {
            let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
        }
        // What was asked while the step ran; the halt it raised is lowered for the next.
        let (mut stop, mut reload_asked) = (false, false);
        while let Ok(one) = asked.try_recv() {
            stop |= one == Asked::Stop;
            reload_asked |= one == Asked::Reload;
        }
        daemon.halt().lower();
        if stop {
            break;
        }
        if reload_asked {
            reload(&mut daemon, options.config_path.as_ref(), &shared).await;
            courier.reload(daemon.config());
            continue;
        }
        // Retention: once an hour, old price samples and finished segments go (the leader's work).
        if leading && pruned.is_none_or(|at| now - at >= chrono::Duration::hours(1)) {
            let ledger = &daemon.config().settings.ledger;
            match daemon.ledger().prune(now, ledger.keep_price_samples, ledger.keep_usage_segments).await {
                Ok(rows) => {
                    pruned = Some(now);
                    if rows > 0 {
                        tracing::info!(rows, "pruned the ledger");
                    }
                }
                Err(error) => tracing::warn!(%error, "ledger prune failed; trying again next cycle"),
            }
        }
        // Sleep until the next decision is due, at most one interval; a standby until its next campaign.
        let settings = &daemon.config().settings;
        let due = match leading {
            true => next_check.map_or(interval, |next| (next - now).min(interval)),
            false => settings.ha.try_every.min(interval),
        };
        let due = due.max(chrono::Duration::seconds(1)).to_std().unwrap_or_default();
        let real = due.div_f64(options.clock.speed().max(1e-9));
        let real = watchdog.map_or(real, |w| real.min(w / 2));
        tokio::select! {
            () = tokio::time::sleep(real) => {}
            one = asked.recv() => {
                daemon.halt().lower();
                match one {
                    Some(Asked::Reload) => {
                        reload(&mut daemon, options.config_path.as_ref(), &shared).await;
                        courier.reload(daemon.config());
                    }
                    Some(Asked::Stop) | None => break,
                }
            }
        }
    }
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    tracing::info!("stopped, the cycle in flight ended at a safe point");
}

/// Logs how settling what was left unfinished went; true when it is done.
fn settle(settled: Result<usize, SettleError>) -> bool {
    match settled {
        Ok(0) => true,
        Ok(n) => {
            tracing::info!(settled = n, "settled actions left unfinished by the last run or leader");
            true
        }
        Err(error) => {
            tracing::warn!(%error, "could not settle unfinished actions yet; tried again next cycle");
            false
        }
    }
}

/// Per policy, the snooze page's limit and zone.
fn snooze_rules(config: &Config) -> BTreeMap<String, SnoozeRule> {
    let rule = |p: &crate::config::policy::Policy| SnoozeRule {
        max: p.notify.as_ref().map_or(crate::config::notify::PolicyNotify::DEFAULT_SNOOZE_MAX, |n| n.snooze_max),
        zone: config.zone_of(p),
    };
    config.policies.iter().map(|p| (p.name.clone(), rule(p))).collect()
}

/// The courier's task, and how the loop reaches it.
struct Delivering {
    wake: Arc<tokio::sync::Notify>,
    /// Shared with the task: one copy of a policy file's settings, not two.
    config: tokio::sync::watch::Sender<Arc<Config>>,
}

impl Delivering {
    fn reload(&self, config: &Config) {
        let _ = self.config.send(Arc::new(config.clone()));
    }
}

/// How often the courier looks at the outbox: retries are due in 30 s at the soonest.
const COURIER_ROUND: std::time::Duration = std::time::Duration::from_secs(5);

/// Starts delivering the outbox's notices, woken when a step queues some,
/// and queueing the digests as their times come.
fn deliver<C: Cloud>(
    daemon: &Daemon<C, AnyStore>,
    shared: &Arc<Shared>,
    clock: Clock,
    mut leading: tokio::sync::watch::Receiver<bool>,
) -> Delivering {
    let mut config = Arc::new(daemon.config().clone());
    let store = daemon.ledger().store().clone();
    let observer: Arc<dyn crate::notify::courier::DeliveryObserver> = shared.metrics.clone();
    let settings = &config.settings;
    let mut courier = Courier::new(
        store.clone(),
        &settings.channels,
        shared.links.clone(),
        settings.public_url.clone(),
        Some(observer),
    );
    let mut digests = Digests::new(clock.now());
    let wake = Arc::new(tokio::sync::Notify::new());
    let (tell, mut told) = tokio::sync::watch::channel(config.clone());
    let woken = wake.clone();
    tokio::spawn(async move {
        let mut digest_failing = false;
        loop {
            // Only the leader delivers: two couriers could send a notice twice.
            if !*leading.borrow_and_update() {
                tokio::select! {
                    changed = leading.changed() => if changed.is_err() { return },
                    changed = told.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        config = told.borrow_and_update().clone();
                        courier.reload(&config.settings.channels, config.settings.public_url.clone());
                    }
                }
                continue;
            }
            match digests.queue_due(&store, &config, clock.now()).await {
                Ok(queued) => {
                    if queued > 0 {
                        tracing::info!(queued, "digests queued");
                    }
                    digest_failing = false;
                }
                Err(error) if !digest_failing => {
                    tracing::warn!(%error, "the digest could not be composed from the ledger; tried again each round");
                    digest_failing = true;
                }
                Err(_) => {}
            }
            match courier.round(clock.now()).await {
                Ok(round) if round.delivered + round.failed > 0 => {
                    tracing::info!(delivered = round.delivered, failed = round.failed, "notices sent");
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "the outbox could not be read; notices wait"),
            }
            let round = COURIER_ROUND.div_f64(clock.speed().max(1.0)).max(std::time::Duration::from_millis(200));
            tokio::select! {
                () = tokio::time::sleep(round) => {}
                () = woken.notified() => {}
                changed = told.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    config = told.borrow_and_update().clone();
                    courier.reload(&config.settings.channels, config.settings.public_url.clone());
                }
            }
        }
    });
    Delivering { wake, config: tell }
}

/// What a signal asks of the loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Asked {
    Reload,
    Stop,
}

/// SIGHUP, SIGTERM and Ctrl-C as requests to the loop; each also raises
/// the halt, so a step in progress ends at its next safe point.
fn listen(halt: Halt) -> tokio::sync::mpsc::UnboundedReceiver<Asked> {
    use tokio::signal::unix::SignalKind;
    let (tell, asked) = tokio::sync::mpsc::unbounded_channel();
    let mut hangup = signal(SignalKind::hangup());
    let mut terminate = signal(SignalKind::terminate());
    let mut interrupt = signal(SignalKind::interrupt());
    tokio::spawn(async move {
        loop {
            let one = tokio::select! {
                _ = hangup.recv() => Asked::Reload,
                _ = terminate.recv() => Asked::Stop,
                _ = interrupt.recv() => Asked::Stop,
            };
            halt.raise();
            if tell.send(one).is_err() {
                return;
            }
        }
    });
    asked
}

/// One malloc arena for every thread: the ledger's connection threads
/// otherwise each keep an arena of their own, and the memory they free stays
/// with it. The daemon is one loop; it gains nothing from more. And a fixed
/// mmap threshold: glibc otherwise raises it to the largest block freed, so
/// after the first list page the next ones are carved from the heap among
/// smaller blocks rather than mapped and handed back whole (a mebibyte of
/// the peak).
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets tunables of the allocator; threads that
    // start after it share the arenas there are.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

/// Hands the memory freed after a cycle back to the system: glibc's malloc
/// otherwise keeps the high-water mark of the largest list page forever.
fn release_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

fn signal(kind: tokio::signal::unix::SignalKind) -> tokio::signal::unix::Signal {
    tokio::signal::unix::signal(kind).expect("signal handlers install")
}

/// Re-reads the policy file off the loop's thread (a large file takes a
/// while to check; `/healthz` and `/metrics` keep answering meanwhile).
async fn reload<C: Cloud>(daemon: &mut Daemon<C, AnyStore>, path: Option<&PathBuf>, shared: &Shared) {
    let Some(path) = path.cloned() else { return };
    let (config, report) = match tokio::task::spawn_blocking(move || load_file(&path)).await {
        Ok(loaded) => loaded,
        Err(error) => {
            tracing::error!(%error, "reload failed: the running policy stays in force");
            return;
        }
    };
    shared.metrics.reload(config.is_some());
    match config {
        Some(mut config) => {
            let running = &daemon.config().settings;
            let restart_needed = keep_running(&mut config.settings, running);
            if !restart_needed.is_empty() {
                tracing::warn!(
                    settings = %restart_needed.join(", "),
                    "changed settings that only a restart applies: their running values stay until then"
                );
            }
            tracing::info!(policies = config.policies.len(), warnings = report.warnings(), "policy reloaded");
            shared.metrics.restart_needed(!restart_needed.is_empty());
            let mut status = shared.status.write().expect("status lock");
            status.restart_needed = restart_needed;
            status.interval = config.settings.interval;
            status.snooze_rules = snooze_rules(&config);
            drop(status);
            daemon.set_config(config);
        }
        None => {
            for line in report.to_string().lines() {
                tracing::error!(problem = %line, "the new policy file is invalid");
            }
            tracing::error!(errors = report.errors(), "reload refused: the running policy stays in force");
        }
    }
}

/// Settings the running daemon was built from (its listener, API client,
/// admin token and ledger connection) keep their running values; the names
/// of those the file changed.
fn keep_running(new: &mut Settings, running: &Settings) -> Vec<&'static str> {
    let mut changed = Vec::new();
    if new.listen != running.listen {
        changed.push("listen");
    }
    if format!("{:?}", new.api) != format!("{:?}", running.api) {
        changed.push("api");
    }
    if new.token != running.token {
        changed.push("token");
    }
    if new.admin_token != running.admin_token {
        changed.push("admin_token");
    }
    if new.ledger.url != running.ledger.url {
        changed.push("ledger.url");
    }
    new.listen = running.listen;
    new.api = running.api.clone();
    new.token = running.token.clone();
    new.admin_token = running.admin_token.clone();
    new.ledger.url = running.ledger.url.clone();
    changed
}

fn log(report: &StepReport) {
    for held in &report.held {
        tracing::error!(
            policy = %held.policy,
            newly_disrupted = held.newly_disrupted,
            fleet = held.fleet,
            allowed = held.allowed,
            "the new or edited policy would stop or delete more of the fleet than the change guard allows: it acts on nothing until confirmed (mdc-autoscaler confirm --config FILE {})",
            held.policy
        );
    }
    match report.cut {
        Some(cut @ Cut::Deadline(_)) if report.plan.is_none() => {
            tracing::warn!(%cut, "the cloud was not observed in time: no action this cycle")
        }
        Some(cut @ Cut::Deadline(_)) => {
            tracing::warn!(%cut, unsent = report.unsent, "actions left for the next cycle")
        }
        Some(Cut::Halted) => tracing::info!(unsent = report.unsent, "cycle ended early for a signal"),
        None => {}
    }
    if let Some(error) = &report.observe_error {
        // The error carries an excerpt of what the API said.
        tracing::warn!(error = %Shown(&error.to_string()), "cloud not observed whole: no action this cycle");
    }
    if let Some(error) = &report.ledger_error {
        tracing::warn!(%error, "ledger unavailable: stopping only, records kept for later");
    }
    for e in &report.executed {
        let a = &e.action;
        tracing::info!(
            policy = %a.policy,
            instance = %Shown(&a.instance.display_name),
            action = a.kind.label(),
            outcome = e.outcome.label(),
            saving_per_hour = %a.saving_per_hour,
            reason = %Shown(&a.reason),
            error = %Shown(e.error.as_deref().unwrap_or("")),
            "action"
        );
    }
}

fn update(shared: &Shared, report: &StepReport, instances: Option<usize>) {
    let mut status = shared.status.write().expect("status lock");
    status.cycles += 1;
    status.last_cycle_at = Some(report.at);
    status.observe_error = match (&report.observe_error, report.cut) {
        (Some(error), _) => Some(error.to_string()),
        (None, Some(cut)) if report.plan.is_none() => Some(cut.to_string()),
        (None, _) => None,
    };
    status.ledger_error = report.ledger_error.as_ref().map(ToString::to_string);
    status.actions_taken += report.executed.iter().filter(|e| e.outcome != Outcome::Skipped).count() as u64;
    if report.observe_error.is_none() && report.plan.is_some() {
        status.last_success_at = Some(report.at);
    }
    if let Some(plan) = &report.plan {
        status.plan = Some(plan.clone());
        status.fleet = report.instances.clone();
        for warning in &plan.warnings {
            status.warnings.insert(warning.instance.name.clone(), warning.clone());
        }
        // A warning whose moment is long past is no news.
        let stale = report.at - chrono::Duration::days(1);
        status.warnings.retain(|_, w| w.act_at > stale);
    }
    status.names.extend(report.names.iter().cloned());
    if let Some(count) = instances {
        status.instances = count;
    }
}

/// Decisions as a person wants to read them: what, why, and the money.
struct Narrator {
    seen_notes: BTreeSet<String>,
    /// Each watched instance's activity as last told, by instance name.
    activity: BTreeMap<String, &'static str>,
    timezone: Tz,
}

impl Narrator {
    fn tell(&mut self, report: &StepReport) {
        let at = local(report.at, self.timezone);
        for e in &report.executed {
            let a = &e.action;
            let money = if a.saving_per_hour.micros() >= 0 {
                format!("saves {}/h", yuan(a.saving_per_hour))
            } else {
                format!("costs {}/h", yuan(crate::money::Money::ZERO - a.saving_per_hour))
            };
            let what = match (&a.kind, e.outcome) {
                (_, Outcome::Skipped) => format!("would {} (dry run)", a.kind.label()),
                (_, Outcome::Failed) | (_, Outcome::Unknown) => {
                    format!("tried to {} ({})", a.kind.label(), e.error.as_deref().unwrap_or(""))
                }
                (crate::plan::ActionKind::PowerOff(off), _) if off.snapshot.is_some() => {
                    "stopped, with a snapshot,".to_owned()
                }
                (crate::plan::ActionKind::PowerOff(_), _) => "stopped".to_owned(),
                (crate::plan::ActionKind::PowerOn, _) => "started".to_owned(),
                (crate::plan::ActionKind::Create { request, .. }, _) => format!("created on SKU {}", request.sku_id),
                (crate::plan::ActionKind::Delete, _) => "deleted".to_owned(),
            };
            let (name, reason) = (Shown(&a.instance.display_name), Shown(&a.reason));
            println!("{at}  {} {name} [{}]: {reason}; {money}", Shown(&what), a.policy);
        }
        if let Some(plan) = &report.plan {
            for n in &plan.notes {
                // The same note with other numbers (an idle time growing) is not news.
                let gist: String = n.text.chars().map(|c| if c.is_ascii_digit() { '#' } else { c }).collect();
                let key = format!("{:?}{:?}{gist}", n.policy, n.instance);
                if self.seen_notes.insert(key) {
                    let who = n.instance.as_deref().or(n.policy.as_deref()).unwrap_or("all");
                    println!("{at}  left alone: {}: {}", Shown(who), Shown(&n.text));
                }
            }
        }
        self.tell_activity(report, &at);
        if let Some(error) = &report.observe_error {
            println!("{at}  no action: {}", Shown(&error.to_string()));
        }
        if let Some(cut) = report.cut {
            println!("{at}  cut short: {cut}; {} actions left for the next cycle", report.unsent);
        }
    }

    /// An instance left alone because it is in use makes no decision, so
    /// its activity is told when it changes: busy, unreadable, gone quiet.
    fn tell_activity(&mut self, report: &StepReport, at: &str) {
        use crate::instances::Activity;
        for row in &report.instances {
            let (state, text) = match &row.activity {
                Activity::NotWatched => {
                    self.activity.remove(&row.name);
                    continue;
                }
                Activity::InUse { signal } => ("in use", format!("in use by {signal}")),
                Activity::Unreadable { signal } => ("unreadable", format!("{signal} unreadable, so counted as in use")),
                Activity::Idle { since, signal } => {
                    let next = row.next.as_ref().map_or(String::new(), |d| {
                        format!("; next: {} at {} ({})", d.action, local(d.at, self.timezone), d.reason)
                    });
                    ("idle", format!("idle by {signal} since {}{next}", local(*since, self.timezone)))
                }
            };
            let before = self.activity.insert(row.name.clone(), state);
            let acted = report.executed.iter().any(|e| e.action.instance.name == row.name);
            // Idle at first sight is told by the stop or the hold that follows.
            if before != Some(state) && !acted && (state != "idle" || before.is_some()) {
                println!("{at}  left alone: {} [{}]: {}", Shown(&row.display_name), row.policy, Shown(&text));
            }
        }
    }
}

fn local(at: DateTime<Utc>, tz: Tz) -> String {
    at.with_timezone(&tz).format("%m-%d %H:%M").to_string()
}
