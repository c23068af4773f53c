//! Where simulated time comes from: the wall clock (optionally sped up) for
//! `fake-cloud`, or a hand-moved clock for tests and replays.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use chrono::{DateTime, Duration, Utc};

#[derive(Clone, Debug)]
pub enum Clock {
    /// `origin` plus the real time elapsed since `started`, times `speed`.
    Real {
        started: Instant,
        origin: DateTime<Utc>,
        speed: f64,
    },
    Manual(Arc<Mutex<DateTime<Utc>>>),
}

impl Clock {
    /// Starts simulated time at `origin` now, running `speed` times faster than real time.
    pub fn real(origin: DateTime<Utc>, speed: f64) -> Self {
        Clock::Real { started: Instant::now(), origin, speed: speed.max(0.0) }
    }

    pub fn manual(start: DateTime<Utc>) -> Self {
        Clock::Manual(Arc::new(Mutex::new(start)))
    }

    pub fn now(&self) -> DateTime<Utc> {
        match self {
            Clock::Real { started, origin, speed } => {
                let elapsed = started.elapsed().as_secs_f64() * speed;
                *origin + Duration::microseconds((elapsed * 1e6) as i64)
            }
            Clock::Manual(now) => *now.lock().expect("clock lock"),
        }
    }

    /// How many simulated seconds pass per real second (1 for a manual clock,
    /// which the caller moves itself).
    pub fn speed(&self) -> f64 {
        match self {
            Clock::Real { speed, .. } => *speed,
            Clock::Manual(_) => 1.0,
        }
    }

    /// Moves a manual clock forward; a real clock cannot be moved.
    pub fn advance(&self, by: Duration) -> Option<DateTime<Utc>> {
        match self {
            Clock::Real { .. } => None,
            Clock::Manual(now) => {
                let mut now = now.lock().expect("clock lock");
                *now += by.max(Duration::zero());
                Some(*now)
            }
        }
    }
}
