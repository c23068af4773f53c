//! Opening the ledger: PostgreSQL for `postgres://` URLs, SQLite otherwise.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::records::{
    ActionRecord, InstanceRecord, NewNotice, NewSegment, Notice, Outcome, PriceSample, Segment, SegmentClose,
    Transition, UseSpan,
};
use super::store::{LedgerError, PgStore, SqliteStore, Store};
use crate::config::policy::{LedgerSettings, is_postgres};
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
    #[error(
        "no ledger at {place}: the daemon creates it when it first runs (or `mdc-autoscaler migrate`); \
         settings.ledger.url says where it is when it is elsewhere"
    )]
    Missing { place: String },
    #[error("the ledger at {place} is {pending} migration(s) behind this build: run `mdc-autoscaler migrate`")]
    Behind { place: String, pending: usize },
    #[error(
        "the SQLite ledger's directory {} does not exist: the unit creates it (StateDirectory=mdc-autoscaler); \
         elsewhere create it, or set settings.ledger.url",
        .0.display()
    )]
    NoDirectory(std::path::PathBuf),
}

/// The ledger these settings name, opened as [`connect`] does, to be
/// written; a SQLite file is created, in a directory that must exist.
pub fn open(settings: &LedgerSettings) -> Result<AnyStore, OpenError> {
    let url = settings.database_url()?;
    if let Some(dir) = sqlite_path(url.expose()).and_then(|p| std::path::Path::new(p).parent())
        && !dir.as_os_str().is_empty()
        && !dir.is_dir()
    {
        return Err(OpenError::NoDirectory(dir.to_owned()));
    }
    Ok(connect(&url)?)
}

/// The ledger these settings name, for a command that only reads it: it must
/// exist and be migrated; nothing is created, and SQLite is opened read-only.
pub async fn open_existing(settings: &LedgerSettings) -> Result<AnyStore, OpenError> {
    let url = settings.database_url()?;
    let place = place(url.expose());
    let store = match sqlite_path(url.expose()) {
        Some(path) if !std::path::Path::new(path).exists() => return Err(OpenError::Missing { place }),
        Some(path) => AnyStore::Sqlite(SqliteStore { pool: sqlite_pool(path, false)? }),
        None => connect(&url)?,
    };
    match store.pending_migrations().await? {
        0 => Ok(store),
        pending if pending == migrations_of(&store) => Err(OpenError::Missing { place }),
        pending => Err(OpenError::Behind { place, pending }),
    }
}

fn migrations_of(store: &AnyStore) -> usize {
    match store {
        AnyStore::Postgres(_) => super::store::PG_MIGRATIONS.iter().count(),
        AnyStore::Sqlite(_) => super::store::SQLITE_MIGRATIONS.iter().count(),
    }
}

/// Where the ledger is, for messages: the SQLite path, or the PostgreSQL
/// server and database without credentials.
pub fn place(url: &str) -> String {
    if let Some(path) = sqlite_path(url) {
        return path.to_owned();
    }
    let Some((scheme, rest)) = url.split_once("://") else { return "an unreadable URL".into() };
    let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    format!("{scheme}://{}", rest.split('?').next().unwrap_or(rest))
}

/// The file a SQLite URL names (any URL not PostgreSQL's is SQLite's).
fn sqlite_path(url: &str) -> Option<&str> {
    if is_postgres(url) {
        return None;
    }
    let path = url.strip_prefix("sqlite://").unwrap_or(url.strip_prefix("sqlite:").unwrap_or(url));
    Some(path.split('?').next().unwrap_or(path))
}

/// Opens a pool without waiting for the server: the daemon must run (and
/// stop idle instances) even while the database is away.
pub fn connect(url: &Secret) -> Result<AnyStore, LedgerError> {
    let text = url.expose();
    if is_postgres(text) {
        let options = sqlx::postgres::PgConnectOptions::from_str(text).map_err(bad)?;
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(5))
            .connect_lazy_with(options);
        Ok(AnyStore::Postgres(PgStore { pool }))
    } else {
        let path = text.strip_prefix("sqlite://").unwrap_or(text.strip_prefix("sqlite:").unwrap_or(text));
        Ok(AnyStore::Sqlite(SqliteStore { pool: sqlite_pool(path, true)? }))
    }
}

/// Errors name the backend, never the URL (it may hold a password).
fn bad(e: sqlx::Error) -> LedgerError {
    LedgerError::Query(format!("bad database URL: {}", kind(&e)))
}

/// A SQLite pool on `path` (with its query string, if any): the writer's
/// creates the file, a reader's opens it read-only.
fn sqlite_pool(path: &str, write: bool) -> Result<sqlx::SqlitePool, LedgerError> {
    let options = sqlx::sqlite::SqliteConnectOptions::from_str(&format!("sqlite://{path}")).map_err(bad)?;
    let options = if write {
        options.create_if_missing(true).journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
    } else {
        options.read_only(true)
    };
    let options = options
        .busy_timeout(Duration::from_secs(10))
        // A 1 MiB page cache: the ledger's working set is the last cycle's rows.
        .pragma("cache_size", "-1024");
    // One writer at a time anyway; each connection would hold its own cache.
    Ok(sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(10))
        .connect_lazy_with(options))
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
    fn pending_migrations(&self) -> usize;
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
    fn queue_notices(&self, notices: &[NewNotice]) -> ();
    fn due_notices(&self, now: DateTime<Utc>, limit: usize) -> Vec<Notice>;
    fn notice_delivered(&self, id: i64, at: DateTime<Utc>) -> ();
    fn notice_failed(&self, id: i64, attempts: u32, retry_at: DateTime<Utc>, error: &str) -> ();
    fn warnings_since(&self, since: DateTime<Utc>) -> std::collections::BTreeMap<crate::plan::WarningKey, crate::plan::WarningSent>;
    fn undelivered_notices(&self) -> std::collections::BTreeMap<String, (u64, DateTime<Utc>)>;
    fn prune(&self, prices_before: DateTime<Utc>, segments_before: DateTime<Utc>) -> u64;
}
