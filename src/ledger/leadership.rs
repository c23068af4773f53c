//! Which replica acts: the one holding a session-level advisory lock on the
//! PostgreSQL ledger, on a connection of its own. The lock lives exactly as
//! long as that session: a replica killed, its connection cut or the server
//! restarted, and the lock is free for another.
//!
//! Each election adds a row to `elections`, its epoch one more than the
//! last, and every intent row is written under the epoch of the leader that
//! writes it, only while that is the newest (see the stores' `insert_intent`). So a leader deposed
//! without knowing it cannot record a new intent, and without an intent no
//! action is sent; what it left unfinished, the next leader settles.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{Connection, PgConnection, Row};

use super::store::LedgerError;
use crate::secret::Secret;

/// The advisory lock's key: "mdc_auto". The ledger's database serves one account.
pub const LOCK_KEY: i64 = 0x6d64_635f_6175_746f;

/// How long a query on the leadership connection may take: past it the
/// connection is taken as lost, and the lead with it.
const QUERY_TIMEOUT: Duration = Duration::from_secs(5);

/// Who leads, as the ledger has it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Leader {
    pub replica: String,
    pub epoch: i64,
    pub elected_at: DateTime<Utc>,
}

/// Where this replica stands after a campaign.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Standing {
    /// It holds the lock, elected at this epoch.
    Leading { epoch: i64 },
    /// Another holds it (named when the ledger could say), or none can be reached.
    Standby { leader: Option<Leader>, error: Option<String> },
}

impl Standing {
    pub fn leads(&self) -> bool {
        matches!(self, Standing::Leading { .. })
    }
}

/// This replica's side of the election: its connection, and its epoch while it leads.
pub struct Lease {
    options: sqlx::postgres::PgConnectOptions,
    replica: String,
    connection: Option<PgConnection>,
    epoch: Option<i64>,
    /// After losing the lead, how long this replica leaves the lock to the others.
    step_back: chrono::Duration,
    lost_at: Option<DateTime<Utc>>,
    /// The lead was lost since the last campaign (a confirmation failed).
    lost: bool,
}

impl Lease {
    /// A lease on the ledger at `url` (PostgreSQL's), for the replica named
    /// so, that leaves the lock to the others for `step_back` after losing
    /// it (a healthy standby, not the replica whose connection just failed,
    /// should lead next). Connects on the first campaign.
    pub fn new(url: &Secret, replica: String, step_back: chrono::Duration) -> Result<Self, LedgerError> {
        let options = sqlx::postgres::PgConnectOptions::from_str(url.expose())
            .map_err(|_| LedgerError::Query("bad database URL: it does not parse".into()))?
            .application_name("mdc-autoscaler leadership");
        Ok(Lease { options, replica, connection: None, epoch: None, step_back, lost_at: None, lost: false })
    }

    pub fn replica(&self) -> &str {
        &self.replica
    }

    /// The epoch this replica leads in, as of its last campaign or confirmation.
    pub fn epoch(&self) -> Option<i64> {
        self.epoch
    }

    /// Keeps the lead if this replica has it (confirmed on its connection),
    /// else tries to take it: a free lock is taken, and the epoch incremented.
    pub async fn campaign(&mut self, now: DateTime<Utc>) -> Standing {
        if self.epoch.is_some()
            && let Some(epoch) = self.confirm().await
        {
            return Standing::Leading { epoch };
        }
        if std::mem::take(&mut self.lost) {
            self.lost_at = Some(now);
        }
        if self.lost_at.is_some_and(|at| now < at + self.step_back) {
            let leader = self.leader().await.unwrap_or(None);
            return Standing::Standby { leader, error: Some("stepping back after losing the lead".into()) };
        }
        match self.try_take(now).await {
            Ok(Some(epoch)) => {
                self.epoch = Some(epoch);
                self.lost_at = None;
                Standing::Leading { epoch }
            }
            Ok(None) => {
                let leader = self.leader().await.unwrap_or(None);
                Standing::Standby { leader, error: None }
            }
            Err(error) => {
                self.lose();
                Standing::Standby { leader: None, error: Some(error.to_string()) }
            }
        }
    }

    /// Whether this replica still leads: the lock held by its session, and
    /// its epoch still the ledger's. Any failure, or no answer in time, is
    /// "no": the connection is closed, which releases the lock if it was held.
    pub async fn confirm(&mut self) -> Option<i64> {
        let epoch = self.epoch?;
        let connection = self.connection.as_mut()?;
        let query = sqlx::query_scalar::<_, bool>(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted
                 AND pid = pg_backend_pid() AND objsubid = 1 AND ((classid::bigint << 32) | objid::bigint) = $1)
             AND (SELECT MAX(epoch) FROM elections) = $2",
        )
        .bind(LOCK_KEY)
        .bind(epoch)
        .fetch_one(connection);
        match tokio::time::timeout(QUERY_TIMEOUT, query).await {
            Ok(Ok(true)) => Some(epoch),
            _ => {
                self.lose();
                None
            }
        }
    }

    /// Who leads now, as the ledger has it (any replica may ask).
    pub async fn leader(&mut self) -> Result<Option<Leader>, LedgerError> {
        let connection = self.connected().await?;
        let row = bounded(
            sqlx::query("SELECT replica, epoch, elected_at FROM elections ORDER BY epoch DESC LIMIT 1")
                .fetch_optional(connection),
        )
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(Leader { replica: row.try_get(0)?, epoch: row.try_get(1)?, elected_at: row.try_get(2)? }))
    }

    /// Steps down: the lock goes with the connection.
    fn lose(&mut self) {
        self.lost |= self.epoch.is_some();
        self.epoch = None;
        // Dropped, the connection closes: the server ends the session and frees its locks.
        self.connection = None;
    }

    async fn try_take(&mut self, now: DateTime<Utc>) -> Result<Option<i64>, LedgerError> {
        let replica = self.replica.clone();
        let connection = self.connected().await?;
        let taken: bool =
            bounded(sqlx::query_scalar("SELECT pg_try_advisory_lock($1)").bind(LOCK_KEY).fetch_one(&mut *connection))
                .await?;
        if !taken {
            return Ok(None);
        }
        let elected = bounded(
            sqlx::query_scalar(
                "INSERT INTO elections (epoch, replica, elected_at)
                 SELECT COALESCE(MAX(epoch), 0) + 1, $1, $2 FROM elections RETURNING epoch",
            )
            .bind(&replica)
            .bind(now)
            .fetch_one(&mut *connection),
        )
        .await;
        match elected {
            Ok(epoch) => Ok(Some(epoch)),
            Err(error) => {
                // Not recorded (the schema not migrated yet, say): not taken either.
                let _ = bounded(sqlx::query("SELECT pg_advisory_unlock($1)").bind(LOCK_KEY).execute(connection)).await;
                Err(error)
            }
        }
    }

    async fn connected(&mut self) -> Result<&mut PgConnection, LedgerError> {
        if self.connection.is_none() {
            let mut connection = bounded(PgConnection::connect_with(&self.options)).await?;
            // A peer that vanishes without closing (a cut network) is noticed by the
            // server in about 20 s, and its lock freed, instead of hours later.
            bounded(
                sqlx::raw_sql(
                    "SET tcp_keepalives_idle = 5; SET tcp_keepalives_interval = 5; SET tcp_keepalives_count = 3",
                )
                .execute(&mut connection),
            )
            .await?;
            self.connection = Some(connection);
        }
        Ok(self.connection.as_mut().expect("connected"))
    }
}

async fn bounded<T>(query: impl Future<Output = Result<T, sqlx::Error>>) -> Result<T, LedgerError> {
    match tokio::time::timeout(QUERY_TIMEOUT, query).await {
        Ok(answer) => answer.map_err(Into::into),
        Err(_) => Err(LedgerError::Unavailable("no answer in time on the leadership connection".into())),
    }
}
