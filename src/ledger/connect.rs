//! Opening the ledger: PostgreSQL for `postgres://` URLs, SQLite otherwise.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::records::{
    ActionRecord, InstanceRecord, NewSegment, Outcome, PriceSample, Segment, SegmentClose, Transition, UseSpan,
};
use super::store::{LedgerError, PgStore, SqliteStore, Store};
use crate::config::policy::LedgerSettings;
use crate::secret::{Secret, SecretError};

/// Either backend, chosen by the URL.
#[derive(Clone)]
pub enum AnyStore {
    Postgres(PgStore),
    Sqlite(SqliteStore),
}

impl AnyStore {
    pub fn backend(&self) -> &'static str {
        match self {
            AnyStore::Postgres(_) => "postgres",
            AnyStore::Sqlite(_) => "sqlite",
        }
    }
}

/// Why the ledger the settings name cannot be opened; never shows the URL.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot read the database URL: {0}")]
    Url(#[from] SecretError),
    #[error(transparent)]
    Connect(#[from] LedgerError),
}

/// The ledger these settings name, opened as [`connect`] does.
pub fn open(settings: &LedgerSettings) -> Result<AnyStore, OpenError> {
    Ok(connect(&settings.database_url()?)?)
}

/// Opens a pool without waiting for the server: the daemon must run (and
/// stop idle instances) even while the database is away.
pub fn connect(url: &Secret) -> Result<AnyStore, LedgerError> {
    let text = url.expose();
    // Errors name the backend, never the URL (it may hold a password).
    let bad = |e: sqlx::Error| LedgerError::Query(format!("bad database URL: {}", kind(&e)));
    if text.starts_with("postgres://") || text.starts_with("postgresql://") {
        let options = sqlx::postgres::PgConnectOptions::from_str(text).map_err(bad)?;
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(5))
            .connect_lazy_with(options);
        Ok(AnyStore::Postgres(PgStore { pool }))
    } else {
        let path = text.strip_prefix("sqlite://").unwrap_or(text.strip_prefix("sqlite:").unwrap_or(text));
        let options = sqlx::sqlite::SqliteConnectOptions::from_str(&format!("sqlite://{path}"))
            .map_err(bad)?
            .create_if_missing(true)
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
            .busy_timeout(Duration::from_secs(10))
            // A 1 MiB page cache: the ledger's working set is the last cycle's rows.
            .pragma("cache_size", "-1024");
        // One writer at a time anyway; each connection would hold its own cache.
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(2)
            .acquire_timeout(Duration::from_secs(10))
            .connect_lazy_with(options);
        Ok(AnyStore::Sqlite(SqliteStore { pool }))
    }
}

fn kind(e: &sqlx::Error) -> &'static str {
    match e {
        sqlx::Error::Configuration(_) => "it does not parse",
        _ => "it cannot be used",
    }
}

macro_rules! delegate {
    ($( fn $name:ident(&self $(, $arg:ident: $ty:ty)*) -> $ret:ty; )*) => {
        impl Store for AnyStore {
            $(
                async fn $name(&self $(, $arg: $ty)*) -> Result<$ret, LedgerError> {
                    match self {
                        AnyStore::Postgres(s) => s.$name($($arg),*).await,
                        AnyStore::Sqlite(s) => s.$name($($arg),*).await,
                    }
                }
            )*
        }
    };
}

delegate! {
    fn migrate(&self) -> ();
    fn latest_prices(&self) -> Vec<PriceSample>;
    fn insert_prices(&self, samples: &[PriceSample]) -> ();
    fn instances(&self) -> Vec<InstanceRecord>;
    fn write_instances(&self, changed: &[InstanceRecord], transitions: &[Transition]) -> ();
    fn stopped_since(&self) -> std::collections::BTreeMap<String, DateTime<Utc>>;
    fn open_segments(&self) -> Vec<Segment>;
    fn write_segments(&self, close: &[SegmentClose], open: &[NewSegment]) -> ();
    fn segments_overlapping(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<Segment>;
    fn prices_until(&self, to: DateTime<Utc>) -> Vec<PriceSample>;
    fn all_instances(&self) -> Vec<InstanceRecord>;
    fn transitions_until(&self, to: DateTime<Utc>) -> Vec<Transition>;
    fn open_use_spans(&self) -> Vec<UseSpan>;
    fn write_use_spans(&self, close: &[UseSpan], open: &[UseSpan]) -> ();
    fn use_spans_overlapping(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<UseSpan>;
    fn last_observation(&self) -> Option<DateTime<Utc>>;
    fn set_last_observation(&self, at: DateTime<Utc>) -> ();
    fn insert_intent(&self, action: &ActionRecord) -> i64;
    fn record_outcome(&self, id: i64, outcome: Outcome, error: Option<&str>, instance: Option<&str>, at: DateTime<Utc>) -> ();
    fn unfinished_actions(&self) -> Vec<ActionRecord>;
    fn actions_between(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<ActionRecord>;
    fn schedule_marks(&self) -> std::collections::BTreeMap<String, DateTime<Utc>>;
    fn set_schedule_marks(&self, marks: &[(String, DateTime<Utc>)]) -> ();
    fn heartbeats(&self) -> std::collections::BTreeMap<String, DateTime<Utc>>;
    fn record_heartbeat(&self, instance: &str, at: DateTime<Utc>) -> ();
    fn snoozes(&self) -> std::collections::BTreeMap<String, DateTime<Utc>>;
    fn set_snooze(&self, instance: &str, until: DateTime<Utc>) -> ();
    fn accepted_policies(&self) -> std::collections::BTreeMap<String, String>;
    fn accept_policies(&self, accepted: &[(String, String)], at: DateTime<Utc>) -> ();
    fn prune(&self, prices_before: DateTime<Utc>, segments_before: DateTime<Utc>) -> u64;
}
