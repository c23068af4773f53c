//! The actions the daemon takes, as the ledger keeps them: an intent row
//! before the call, the outcome after, and the schedule marks. What the
//! store cannot take waits in the ledger's queue, in order, with the rest.

use chrono::{DateTime, Utc};

use super::records::{ActionRecord, Outcome};
use super::service::{Ledger, Write};
use super::store::{LedgerError, Store};

/// Where an action stands in the ledger.
#[derive(Debug)]
pub enum Entry {
    /// Its intent row is written, under this id.
    Written(i64),
    /// The store was away: the whole action is written, outcome and all, when it returns.
    Kept(Box<ActionRecord>),
    /// Refused: its epoch is over, another replica leads. Nothing may be sent.
    Fenced,
}

impl Entry {
    pub fn is_written(&self) -> bool {
        matches!(self, Entry::Written(_))
    }
}

/// How an action ended.
#[derive(Clone, Debug)]
pub struct Ended {
    pub outcome: Outcome,
    pub error: Option<String>,
    /// The platform name a create's answer gave.
    pub instance: Option<String>,
    pub at: DateTime<Utc>,
}

impl<S: Store> Ledger<S> {
    /// Writes the intent of an action about to be taken.
    pub async fn intend(&mut self, intent: ActionRecord) -> Entry {
        match self.store().insert_intent(&intent).await {
            Ok(id) => Entry::Written(id),
            Err(LedgerError::Fenced(_)) => Entry::Fenced,
            Err(_) => Entry::Kept(Box::new(intent)),
        }
    }

    /// Records how an action ended, now or once the store takes it.
    pub async fn finish(&mut self, entry: Entry, ended: Ended) {
        let write = match entry {
            Entry::Fenced => return,
            Entry::Written(id) => Write::Outcome(id, ended),
            Entry::Kept(mut action) => {
                action.outcome = Some(ended.outcome);
                action.error = ended.error;
                action.finished_at = Some(ended.at);
                if let Some(instance) = ended.instance {
                    action.instance = instance;
                }
                Write::Action(action)
            }
        };
        self.queue(write).await;
    }

    /// Records the schedule edges acted on, by instance.
    pub async fn mark(&mut self, marks: Vec<(String, DateTime<Utc>)>) {
        if !marks.is_empty() {
            self.queue(Write::Marks(marks)).await;
        }
    }

    async fn queue(&mut self, write: Write) {
        self.pending.push_back(write);
        // An error only means later: the write waits its turn.
        let _ = self.flush().await;
    }
}
