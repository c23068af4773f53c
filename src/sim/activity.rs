//! What a simulated instance's Jupyter server reports: connections, kernels,
//! last activity, and scripted working sessions.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A span in which someone (or a job) is using the instance: Jupyter shows a
/// busy kernel and fresh activity throughout.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Session {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

/// The scriptable activity record of one instance.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Activity {
    pub connections: u32,
    pub busy_kernels: u32,
    pub idle_kernels: u32,
    /// The last activity outside sessions; `None` means "when the server started".
    pub last_activity: Option<DateTime<Utc>>,
    pub sessions: Vec<Session>,
}

/// What jupyter_server would answer at one moment.
#[derive(Clone, Debug, PartialEq)]
pub struct ActivityView {
    pub connections: u32,
    pub busy_kernels: u32,
    pub idle_kernels: u32,
    pub last_activity: DateTime<Utc>,
    pub started: DateTime<Utc>,
}

impl Activity {
    /// The record as seen at `now` on a server started at `started`.
    pub fn view(&self, now: DateTime<Utc>, started: DateTime<Utc>) -> ActivityView {
        let in_session = self.sessions.iter().any(|s| s.start <= now && now < s.end);
        let last_session_end = self.sessions.iter().filter(|s| s.end <= now).map(|s| s.end).max();
        let busy = self.busy_kernels > 0 || in_session;
        let last_activity = if busy {
            now
        } else {
            [self.last_activity, last_session_end, Some(started)].into_iter().flatten().max().unwrap_or(started)
        };
        ActivityView {
            connections: self.connections + u32::from(in_session),
            busy_kernels: self.busy_kernels + u32::from(in_session),
            idle_kernels: self.idle_kernels,
            last_activity: last_activity.min(now).max(started),
            started,
        }
    }

    /// Whether the instance is in use at `now` (for the simulator's own checks).
    pub fn is_busy(&self, now: DateTime<Utc>) -> bool {
        self.busy_kernels > 0 || self.sessions.iter().any(|s| s.start <= now && now < s.end)
    }

    /// A fresh server after a power-on: no kernels, no connections; scripted
    /// sessions stay, since they describe the person, not the server.
    pub fn restarted(&self) -> Activity {
        Activity { sessions: self.sessions.clone(), ..Activity::default() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};

    #[test]
    fn sessions_make_the_server_busy_and_leave_their_end_as_last_activity() {
        let t0 = Utc.with_ymd_and_hms(2026, 11, 27, 1, 0, 0).unwrap();
        let h = Duration::hours;
        let activity = Activity { sessions: vec![Session { start: t0 + h(1), end: t0 + h(2) }], ..Activity::default() };
        assert_eq!(activity.view(t0 + h(0), t0).last_activity, t0);
        let during = activity.view(t0 + h(1) + Duration::minutes(5), t0);
        assert_eq!((during.busy_kernels, during.last_activity), (1, t0 + h(1) + Duration::minutes(5)));
        let after = activity.view(t0 + h(5), t0);
        assert_eq!((after.busy_kernels, after.last_activity), (0, t0 + h(2)));
    }
}
