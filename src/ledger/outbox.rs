//! The outbox of notices, as the daemon uses it: notices queue like every
//! other write, so an outage loses none, and the warnings the planner asks
//! about are those the store knows and those still on their way to it.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};

use super::records::NewNotice;
use super::service::{Ledger, Write};
use super::store::Store;
use crate::plan::{WarningKey, WarningSent};

/// How far back the planner looks for a warning: past a delete's longest lead.
pub const WARNINGS_KEPT: Duration = Duration::days(30);

impl<S: Store> Ledger<S> {
    /// Queues notices for the store (written at the next flush, or after an outage).
    pub fn queue_notices(&mut self, notices: Vec<NewNotice>) {
        if notices.is_empty() {
            return;
        }
        for n in notices.iter().filter(|n| n.event == "warning") {
            if let Some(occasion) = n.occasion {
                let key = WarningKey { instance: n.instance.clone(), action: n.action.clone(), occasion };
                self.queued.entry(key).or_insert(WarningSent { queued_at: n.queued_at, delivered_at: None });
            }
        }
        self.pending.push_back(Write::Notices(notices));
    }

    /// The warnings queued since [`WARNINGS_KEPT`] ago and whether delivered:
    /// the store's word, and this ledger's own while the store is away.
    pub async fn warnings(&mut self, now: DateTime<Utc>) -> BTreeMap<WarningKey, WarningSent> {
        let since = now - WARNINGS_KEPT;
        self.queued.retain(|_, sent| sent.queued_at >= since);
        match self.store().warnings_since(since).await {
            Ok(stored) => {
                // What the store has is known there; the rest is still on its way.
                self.queued.retain(|key, _| !stored.contains_key(key));
                self.stored = stored;
            }
            Err(error) => {
                tracing::debug!(%error, "warnings as last read, while the ledger is away");
                self.stored.retain(|_, sent| sent.queued_at >= since);
            }
        }
        let mut all = self.stored.clone();
        all.extend(self.queued.iter().map(|(k, v)| (k.clone(), *v)));
        all
    }
}
