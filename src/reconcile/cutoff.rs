//! What ends a step early: its deadline, or the process asking it to stop
//! (SIGTERM) or to make way for a reload (SIGHUP). Reading is cut at once;
//! a call that changes something is never cut half-way: the step ends
//! before the next one, so no intent is left without its call.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

/// Why a step ended before it was done.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Cut {
    #[error("the cycle ran past its deadline of {}s", .0.as_secs())]
    Deadline(Duration),
    #[error("the cycle was asked to end (a signal)")]
    Halted,
}

impl Cut {
    pub fn metric_label(&self) -> &'static str {
        match self {
            Cut::Deadline(_) => "deadline",
            Cut::Halted => "halted",
        }
    }
}

/// Raised from outside the step (the signal handlers), read at its safe points.
#[derive(Clone, Debug)]
pub struct Halt(Arc<watch::Sender<bool>>);

impl Default for Halt {
    fn default() -> Self {
        Halt(Arc::new(watch::Sender::new(false)))
    }
}

impl Halt {
    pub fn raise(&self) {
        self.0.send_replace(true);
    }

    /// The next step runs whole again.
    pub fn lower(&self) {
        self.0.send_replace(false);
    }

    pub fn raised(&self) -> bool {
        *self.0.borrow()
    }

    async fn raised_now(&self) {
        let mut seen = self.0.subscribe();
        // The sender lives as long as `self`: waiting cannot fail.
        let _ = seen.wait_for(|raised| *raised).await;
    }
}

/// One step's limits: the instant it must end by, and the halt it heeds.
#[derive(Clone, Debug)]
pub struct Cutoff {
    deadline: Duration,
    until: Instant,
    halt: Halt,
}

impl Cutoff {
    pub fn starting_now(deadline: Duration, halt: &Halt) -> Self {
        Cutoff { deadline, until: Instant::now() + deadline, halt: halt.clone() }
    }

    /// Why the step must end now, if it must.
    pub fn reached(&self) -> Option<Cut> {
        if self.halt.raised() {
            Some(Cut::Halted)
        } else if Instant::now() >= self.until {
            Some(Cut::Deadline(self.deadline))
        } else {
            None
        }
    }

    /// Runs `work` (reads only: it may be dropped at any await) until it
    /// ends, the deadline passes or the halt is raised.
    pub async fn bound<T>(&self, work: impl Future<Output = T>) -> Result<T, Cut> {
        if let Some(cut) = self.reached() {
            return Err(cut);
        }
        tokio::select! {
            done = work => Ok(done),
            () = tokio::time::sleep_until(self.until) => Err(Cut::Deadline(self.deadline)),
            () = self.halt.raised_now() => Err(Cut::Halted),
        }
    }
}
