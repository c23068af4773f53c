//! What the planner learns from the record of use (`stop_after: adaptive`):
//! the spans of the last [`LEARN_DAYS`] days, read from the store once and
//! then kept up to date by the ledger's own closes, relearned each day (at
//! midnight in the settings' zone).
//! Nothing else is kept, so a restarted daemon learns the same.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};

use super::service::Ledger;
use super::store::{LedgerError, Store};
use crate::config::policy::Config;
use crate::plan::habits::{Habits, LEARN_DAYS, Used};

impl<S: Store> Ledger<S> {
    /// The habits as of the start of the day `now` is in.
    pub async fn habits(&mut self, config: &Config, now: DateTime<Utc>) -> Result<Arc<Habits>, LedgerError> {
        let zone = config.settings.zone();
        let as_of = Habits::day_of(now, zone);
        if self.habits.as_of == Some(as_of) && self.used.is_some() {
            return Ok(Arc::clone(&self.habits));
        }
        let zones = config.adaptive_zones();
        if zones.is_empty() {
            return Ok(Arc::clone(&self.habits));
        }
        let from = as_of - Duration::days(LEARN_DAYS);
        if self.used.is_none() {
            let read = self.store().use_spans_overlapping(from, now).await?;
            let closed = read.into_iter().filter(|s| s.ended_at.is_some());
            self.used = Some(closed.map(|s| ((s.instance.clone(), s.started_at), s)).collect());
        }
        let open = self.open_uses();
        let used = self.used.as_mut().expect("read above");
        used.retain(|_, s| s.ended_at.is_some_and(|end| end > from));
        let spans = used.values().chain(open.iter()).filter_map(|s| {
            Some(Used { instance: &s.instance, policy: s.policy.as_deref()?, start: s.started_at, end: s.ended_at })
        });
        self.habits = Arc::new(Habits::learn(spans, &zones, as_of));
        Ok(Arc::clone(&self.habits))
    }
}
