//! The ledger's storage: one trait, implemented for PostgreSQL and SQLite by
//! the same SQL (written with `$1, $2, …` in order, which both accept).

use std::collections::BTreeMap;
use std::future::Future;

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::records::{
    ActionRecord, InstanceRecord, NewNotice, NewSegment, Notice, Outcome, PriceSample, Segment, SegmentClose, SkuSpec,
    Transition, UseSpan,
};
use crate::money::{Money, Ratio};
use crate::plan::{WarningKey, WarningSent};

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The database could not be reached: the daemon carries on and catches up.
    #[error("ledger unreachable: {0}")]
    Unavailable(String),
    #[error("ledger query failed: {0}")]
    Query(String),
    #[error("ledger migration failed: {0}")]
    Migration(String),
    /// An intent of a leader deposed since: another replica leads now.
    #[error("not written: epoch {0} is over, another replica leads")]
    Fenced(i64),
}

impl LedgerError {
    pub fn is_unavailable(&self) -> bool {
        matches!(self, LedgerError::Unavailable(_))
    }
}

impl From<sqlx::Error> for LedgerError {
    fn from(e: sqlx::Error) -> Self {
        // PostgreSQL's codes for "cannot serve you now": connection exceptions (08),
        // shutdowns (57P01..57P03), too many connections, a database closed to connections.
        let refused =
            |code: &str| code.starts_with("08") || ["57P01", "57P02", "57P03", "53300", "55000"].contains(&code);
        match e {
            sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Tls(_) => {
                LedgerError::Unavailable(e.to_string())
            }
            sqlx::Error::Database(ref db) if db.code().is_some_and(|c| refused(&c)) => {
                LedgerError::Unavailable(e.to_string())
            }
            other => LedgerError::Query(other.to_string()),
        }
    }
}

type Result<T> = std::result::Result<T, LedgerError>;

/// Every read and write the ledger makes.
pub trait Store: Send + Sync {
    fn migrate(&self) -> impl Future<Output = Result<()>> + Send;
    /// How many of this build's migrations the database has not had (all of
    /// them for an empty one): a reader of an older schema would misread it.
    fn pending_migrations(&self) -> impl Future<Output = Result<usize>> + Send;
    /// The newest sample of each SKU.
    fn latest_prices(&self) -> impl Future<Output = Result<Vec<PriceSample>>> + Send;
    fn insert_prices(&self, samples: &[PriceSample]) -> impl Future<Output = Result<()>> + Send;
    /// Instances not gone.
    fn instances(&self) -> impl Future<Output = Result<Vec<InstanceRecord>>> + Send;
    fn write_instances(
        &self,
        changed: &[InstanceRecord],
        transitions: &[Transition],
    ) -> impl Future<Output = Result<()>> + Send;
    /// When each instance last became stopped, for those stopped now.
    fn stopped_since(&self) -> impl Future<Output = Result<BTreeMap<String, DateTime<Utc>>>> + Send;
    fn open_segments(&self) -> impl Future<Output = Result<Vec<Segment>>> + Send;
    /// Closes segments and opens new ones, in one transaction.
    fn write_segments(&self, close: &[SegmentClose], open: &[NewSegment]) -> impl Future<Output = Result<()>> + Send;
    fn segments_overlapping(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> impl Future<Output = Result<Vec<Segment>>> + Send;
    /// Every sample observed before `to`, oldest first.
    fn prices_until(&self, to: DateTime<Utc>) -> impl Future<Output = Result<Vec<PriceSample>>> + Send;
    /// Every instance ever seen, gone ones too.
    fn all_instances(&self) -> impl Future<Output = Result<Vec<InstanceRecord>>> + Send;
    /// Every status change observed before `to`, in time order.
    fn transitions_until(&self, to: DateTime<Utc>) -> impl Future<Output = Result<Vec<Transition>>> + Send;

    fn open_use_spans(&self) -> impl Future<Output = Result<Vec<UseSpan>>> + Send;
    /// Closes open spans (found by instance and start) and opens new ones.
    fn write_use_spans(&self, close: &[UseSpan], open: &[UseSpan]) -> impl Future<Output = Result<()>> + Send;
    fn use_spans_overlapping(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> impl Future<Output = Result<Vec<UseSpan>>> + Send;

    fn last_observation(&self) -> impl Future<Output = Result<Option<DateTime<Utc>>>> + Send;
    fn set_last_observation(&self, at: DateTime<Utc>) -> impl Future<Output = Result<()>> + Send;
    /// Records an intent; returns its id.
    fn insert_intent(&self, action: &ActionRecord) -> impl Future<Output = Result<i64>> + Send;
    /// Records an outcome; `instance` names a created instance once known.
    fn record_outcome(
        &self,
        id: i64,
        outcome: Outcome,
        error: Option<&str>,
        instance: Option<&str>,
        at: DateTime<Utc>,
    ) -> impl Future<Output = Result<()>> + Send;
    fn unfinished_actions(&self) -> impl Future<Output = Result<Vec<ActionRecord>>> + Send;
    fn actions_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> impl Future<Output = Result<Vec<ActionRecord>>> + Send;
    fn schedule_marks(&self) -> impl Future<Output = Result<BTreeMap<String, DateTime<Utc>>>> + Send;
    fn set_schedule_marks(&self, marks: &[(String, DateTime<Utc>)]) -> impl Future<Output = Result<()>> + Send;
    fn heartbeats(&self) -> impl Future<Output = Result<BTreeMap<String, DateTime<Utc>>>> + Send;
    fn record_heartbeat(&self, instance: &str, at: DateTime<Utc>) -> impl Future<Output = Result<()>> + Send;
    fn snoozes(&self) -> impl Future<Output = Result<BTreeMap<String, DateTime<Utc>>>> + Send;
    fn set_snooze(&self, instance: &str, until: DateTime<Utc>) -> impl Future<Output = Result<()>> + Send;
    /// Policy name → the fingerprint of the rules the change guard last accepted for it.
    fn accepted_policies(&self) -> impl Future<Output = Result<BTreeMap<String, String>>> + Send;
    fn accept_policies(
        &self,
        accepted: &[(String, String)],
        at: DateTime<Utc>,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Queues notices in the outbox; one already queued under the same `dedup` stays as it is.
    fn queue_notices(&self, notices: &[NewNotice]) -> impl Future<Output = Result<()>> + Send;
    /// Notices not delivered whose next attempt is due at `now`, oldest first.
    fn due_notices(&self, now: DateTime<Utc>, limit: usize) -> impl Future<Output = Result<Vec<Notice>>> + Send;
    fn notice_delivered(&self, id: i64, at: DateTime<Utc>) -> impl Future<Output = Result<()>> + Send;
    fn notice_failed(
        &self,
        id: i64,
        attempts: u32,
        retry_at: DateTime<Utc>,
        error: &str,
    ) -> impl Future<Output = Result<()>> + Send;
    /// The warnings queued since `since`, by key, and whether delivered.
    fn warnings_since(
        &self,
        since: DateTime<Utc>,
    ) -> impl Future<Output = Result<BTreeMap<WarningKey, WarningSent>>> + Send;
    /// Per channel, how many notices wait for delivery and when the oldest was queued.
    fn undelivered_notices(&self) -> impl Future<Output = Result<BTreeMap<String, (u64, DateTime<Utc>)>>> + Send;
    /// Removes price samples and closed segments older than the limits; returns rows removed.
    fn prune(
        &self,
        prices_before: DateTime<Utc>,
        segments_before: DateTime<Utc>,
    ) -> impl Future<Output = Result<u64>> + Send;
}

#[derive(Clone)]
pub struct PgStore {
    pub pool: sqlx::PgPool,
}

#[derive(Clone)]
pub struct SqliteStore {
    pub pool: sqlx::SqlitePool,
}

pub(super) static PG_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");
pub(super) static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

fn money(micros: i64) -> Money {
    Money::from_micros(micros)
}

fn count(n: i64) -> u32 {
    n.clamp(0, i64::from(u32::MAX)) as u32
}

macro_rules! sql_store {
    ($store:ident, $row:ty, $migrations:expr) => {
        impl $store {
            fn price(row: &$row) -> Result<PriceSample> {
                let ratio: Option<i64> = row.try_get("discount_ratio_ppm")?;
                let start: Option<DateTime<Utc>> = row.try_get("discount_start")?;
                let end: Option<DateTime<Utc>> = row.try_get("discount_end")?;
                Ok(PriceSample {
                    sku_id: row.try_get("sku_id")?,
                    region_id: row.try_get("region_id")?,
                    sku_name: row.try_get("sku_name")?,
                    gpu_product: row.try_get("gpu_product")?,
                    observed_at: row.try_get("observed_at")?,
                    price_per_hour: money(row.try_get("price_per_hour_micros")?),
                    discount: match (ratio, start, end) {
                        (Some(r), Some(s), Some(e)) => Ratio::from_f64(r as f64 / 1e6).map(|r| (r, s, e)),
                        _ => None,
                    },
                    effective_price_per_hour: money(row.try_get("effective_price_per_hour_micros")?),
                    free_gpus: row.try_get::<i64, _>("free_gpus")?.max(0) as u32,
                    spec: SkuSpec {
                        cluster: row.try_get("cluster")?,
                        gpu_resource_key: row.try_get("gpu_resource_key")?,
                        gpu_count: count(row.try_get("gpu_count")?),
                        gpu_memory_gb: count(row.try_get("gpu_memory_gb")?),
                        cpu_cores: count(row.try_get("cpu_cores")?),
                        memory_gb: count(row.try_get("memory_gb")?),
                    },
                })
            }

            fn instance(r: &$row) -> Result<InstanceRecord> {
                Ok(InstanceRecord {
                    name: r.try_get("name")?,
                    display_name: r.try_get("display_name")?,
                    cluster: r.try_get("cluster")?,
                    policy: r.try_get("policy")?,
                    sku_id: r.try_get("sku_id")?,
                    billing_type: r.try_get("billing_type")?,
                    gpu_product: r.try_get("gpu_product")?,
                    status: r.try_get("status")?,
                    first_seen: r.try_get("first_seen")?,
                    changed_at: r.try_get("changed_at")?,
                    gone_at: r.try_get("gone_at")?,
                })
            }

            fn use_span(row: &$row) -> Result<UseSpan> {
                Ok(UseSpan {
                    instance: row.try_get("instance")?,
                    display_name: row.try_get("display_name")?,
                    policy: row.try_get("policy")?,
                    started_at: row.try_get("started_at")?,
                    ended_at: row.try_get("ended_at")?,
                })
            }

            fn segment(row: &$row) -> Result<Segment> {
                Ok(Segment {
                    id: row.try_get("id")?,
                    instance: row.try_get("instance")?,
                    display_name: row.try_get("display_name")?,
                    policy: row.try_get("policy")?,
                    sku_id: row.try_get("sku_id")?,
                    started_at: row.try_get("started_at")?,
                    ended_at: row.try_get("ended_at")?,
                    price_per_hour: money(row.try_get("price_per_hour_micros")?),
                })
            }

            fn action(row: &$row) -> Result<ActionRecord> {
                let image: Option<String> = row.try_get("snapshot_image")?;
                let tag: Option<String> = row.try_get("snapshot_tag")?;
                let outcome: Option<String> = row.try_get("outcome")?;
                Ok(ActionRecord {
                    id: row.try_get("id")?,
                    planned_at: row.try_get("planned_at")?,
                    policy: row.try_get("policy")?,
                    kind: row.try_get("kind")?,
                    instance: row.try_get("instance")?,
                    display_name: row.try_get("display_name")?,
                    cluster: row.try_get("cluster")?,
                    cause: row.try_get("cause")?,
                    reason: row.try_get("reason")?,
                    saving_per_hour: money(row.try_get("saving_per_hour_micros")?),
                    dry_run: row.try_get("dry_run")?,
                    snapshot: image.zip(tag),
                    schedule_edge: row.try_get("schedule_edge")?,
                    outcome: outcome.as_deref().and_then(Outcome::parse),
                    error: row.try_get("error")?,
                    finished_at: row.try_get("finished_at")?,
                    epoch: row.try_get("epoch")?,
                })
            }

            async fn times(&self, sql: &'static str) -> Result<BTreeMap<String, DateTime<Utc>>> {
                let rows = sqlx::query(sql).fetch_all(&self.pool).await?;
                rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).collect()
            }

            /// Sets one time per instance in a table of them (`upsert`: its
            /// INSERT … ON CONFLICT), all in one transaction.
            async fn set_times(&self, upsert: &'static str, times: &[(String, DateTime<Utc>)]) -> Result<()> {
                let mut tx = self.pool.begin().await?;
                for (instance, at) in times {
                    sqlx::query(upsert).bind(instance).bind(*at).execute(&mut *tx).await?;
                }
                tx.commit().await?;
                Ok(())
            }
        }

        impl Store for $store {
            async fn migrate(&self) -> Result<()> {
                $migrations.run(&self.pool).await.map_err(|e| LedgerError::Migration(e.to_string()))
            }

            async fn pending_migrations(&self) -> Result<usize> {
                let applied: Vec<i64> =
                    match sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success").fetch_all(&self.pool).await {
                        Ok(applied) => applied,
                        // No table of migrations: nothing applied.
                        Err(sqlx::Error::Database(_)) => Vec::new(),
                        Err(e) => return Err(e.into()),
                    };
                Ok($migrations.iter().filter(|m| !applied.contains(&m.version)).count())
            }

            async fn latest_prices(&self) -> Result<Vec<PriceSample>> {
                let rows = sqlx::query(
                    "SELECT p.* FROM price_samples p
                     JOIN (SELECT sku_id, MAX(id) AS id FROM price_samples GROUP BY sku_id) l ON p.id = l.id",
                )
                .fetch_all(&self.pool)
                .await?;
                rows.iter().map(Self::price).collect()
            }

            async fn insert_prices(&self, samples: &[PriceSample]) -> Result<()> {
                let mut tx = self.pool.begin().await?;
                for s in samples {
                    sqlx::query(
                        "INSERT INTO price_samples (sku_id, region_id, sku_name, gpu_product, observed_at,
                            price_per_hour_micros, discount_ratio_ppm, discount_start, discount_end,
                            effective_price_per_hour_micros, free_gpus, cluster, gpu_resource_key,
                            gpu_count, gpu_memory_gb, cpu_cores, memory_gb)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
                    )
                    .bind(&s.sku_id)
                    .bind(&s.region_id)
                    .bind(&s.sku_name)
                    .bind(&s.gpu_product)
                    .bind(s.observed_at)
                    .bind(s.price_per_hour.micros())
                    .bind(s.discount.map(|(r, _, _)| (r.as_f64() * 1e6).round() as i64))
                    .bind(s.discount.map(|(_, start, _)| start))
                    .bind(s.discount.map(|(_, _, end)| end))
                    .bind(s.effective_price_per_hour.micros())
                    .bind(s.free_gpus as i64)
                    .bind(&s.spec.cluster)
                    .bind(&s.spec.gpu_resource_key)
                    .bind(i64::from(s.spec.gpu_count))
                    .bind(i64::from(s.spec.gpu_memory_gb))
                    .bind(i64::from(s.spec.cpu_cores))
                    .bind(i64::from(s.spec.memory_gb))
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn instances(&self) -> Result<Vec<InstanceRecord>> {
                let rows = sqlx::query("SELECT * FROM instances WHERE gone_at IS NULL").fetch_all(&self.pool).await?;
                rows.iter().map(Self::instance).collect()
            }

            async fn write_instances(&self, changed: &[InstanceRecord], transitions: &[Transition]) -> Result<()> {
                let mut tx = self.pool.begin().await?;
                for i in changed {
                    sqlx::query(
                        "INSERT INTO instances (name, display_name, cluster, policy, sku_id, billing_type,
                            gpu_product, status, first_seen, changed_at, gone_at)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
                         ON CONFLICT (name) DO UPDATE SET display_name = excluded.display_name,
                            cluster = excluded.cluster, policy = excluded.policy, sku_id = excluded.sku_id,
                            billing_type = excluded.billing_type, gpu_product = excluded.gpu_product,
                            status = excluded.status, changed_at = excluded.changed_at, gone_at = excluded.gone_at",
                    )
                    .bind(&i.name)
                    .bind(&i.display_name)
                    .bind(&i.cluster)
                    .bind(&i.policy)
                    .bind(&i.sku_id)
                    .bind(&i.billing_type)
                    .bind(&i.gpu_product)
                    .bind(&i.status)
                    .bind(i.first_seen)
                    .bind(i.changed_at)
                    .bind(i.gone_at)
                    .execute(&mut *tx)
                    .await?;
                }
                for t in transitions {
                    sqlx::query("INSERT INTO transitions (instance, at, from_status, to_status) VALUES ($1, $2, $3, $4)")
                        .bind(&t.instance)
                        .bind(t.at)
                        .bind(&t.from)
                        .bind(&t.to)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn stopped_since(&self) -> Result<BTreeMap<String, DateTime<Utc>>> {
                self.times(
                    "SELECT i.name, MAX(t.at) FROM instances i JOIN transitions t ON t.instance = i.name
                     WHERE i.status = 'stopped' AND i.gone_at IS NULL AND t.to_status = 'stopped'
                     GROUP BY i.name",
                )
                .await
            }

            async fn open_segments(&self) -> Result<Vec<Segment>> {
                let rows = sqlx::query("SELECT * FROM usage_segments WHERE ended_at IS NULL").fetch_all(&self.pool).await?;
                rows.iter().map(Self::segment).collect()
            }

            async fn write_segments(&self, close: &[SegmentClose], open: &[NewSegment]) -> Result<()> {
                let mut tx = self.pool.begin().await?;
                for c in close {
                    sqlx::query(
                        "UPDATE usage_segments SET ended_at = $1, amount_micros = $2
                         WHERE instance = $3 AND started_at = $4 AND ended_at IS NULL",
                    )
                    .bind(c.ended_at)
                    .bind(c.amount.micros())
                    .bind(&c.instance)
                    .bind(c.started_at)
                    .execute(&mut *tx)
                    .await?;
                }
                for s in open {
                    sqlx::query(
                        "INSERT INTO usage_segments (instance, display_name, policy, sku_id, started_at, price_per_hour_micros)
                         VALUES ($1, $2, $3, $4, $5, $6)",
                    )
                    .bind(&s.instance)
                    .bind(&s.display_name)
                    .bind(&s.policy)
                    .bind(&s.sku_id)
                    .bind(s.started_at)
                    .bind(s.price_per_hour.micros())
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn segments_overlapping(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Vec<Segment>> {
                let rows = sqlx::query(
                    "SELECT * FROM usage_segments WHERE started_at < $1 AND (ended_at IS NULL OR ended_at > $2)
                     ORDER BY started_at, id",
                )
                .bind(to)
                .bind(from)
                .fetch_all(&self.pool)
                .await?;
                rows.iter().map(Self::segment).collect()
            }

            async fn prices_until(&self, to: DateTime<Utc>) -> Result<Vec<PriceSample>> {
                let rows = sqlx::query("SELECT * FROM price_samples WHERE observed_at < $1 ORDER BY observed_at, id")
                    .bind(to)
                    .fetch_all(&self.pool)
                    .await?;
                rows.iter().map(Self::price).collect()
            }

            async fn all_instances(&self) -> Result<Vec<InstanceRecord>> {
                let rows = sqlx::query("SELECT * FROM instances ORDER BY first_seen, name").fetch_all(&self.pool).await?;
                rows.iter().map(Self::instance).collect()
            }

            async fn transitions_until(&self, to: DateTime<Utc>) -> Result<Vec<Transition>> {
                let rows = sqlx::query("SELECT * FROM transitions WHERE at < $1 ORDER BY at, id")
                    .bind(to)
                    .fetch_all(&self.pool)
                    .await?;
                rows.iter()
                    .map(|r| {
                        Ok(Transition {
                            instance: r.try_get("instance")?,
                            at: r.try_get("at")?,
                            from: r.try_get("from_status")?,
                            to: r.try_get("to_status")?,
                        })
                    })
                    .collect()
            }

            async fn open_use_spans(&self) -> Result<Vec<UseSpan>> {
                let rows = sqlx::query("SELECT * FROM use_spans WHERE ended_at IS NULL").fetch_all(&self.pool).await?;
                rows.iter().map(Self::use_span).collect()
            }

            async fn write_use_spans(&self, close: &[UseSpan], open: &[UseSpan]) -> Result<()> {
                let mut tx = self.pool.begin().await?;
                for c in close {
                    sqlx::query(
                        "UPDATE use_spans SET ended_at = $1 WHERE instance = $2 AND started_at = $3 AND ended_at IS NULL",
                    )
                    .bind(c.ended_at)
                    .bind(&c.instance)
                    .bind(c.started_at)
                    .execute(&mut *tx)
                    .await?;
                }
                for u in open {
                    sqlx::query(
                        "INSERT INTO use_spans (instance, display_name, policy, started_at, ended_at)
                         VALUES ($1, $2, $3, $4, $5)",
                    )
                    .bind(&u.instance)
                    .bind(&u.display_name)
                    .bind(&u.policy)
                    .bind(u.started_at)
                    .bind(u.ended_at)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn use_spans_overlapping(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Vec<UseSpan>> {
                let rows = sqlx::query(
                    "SELECT * FROM use_spans WHERE started_at < $1 AND (ended_at IS NULL OR ended_at > $2)
                     ORDER BY started_at, id",
                )
                .bind(to)
                .bind(from)
                .fetch_all(&self.pool)
                .await?;
                rows.iter().map(Self::use_span).collect()
            }

            async fn last_observation(&self) -> Result<Option<DateTime<Utc>>> {
                let row = sqlx::query("SELECT last_at FROM observations WHERE id = 1").fetch_optional(&self.pool).await?;
                Ok(row.map(|r| r.try_get(0)).transpose()?)
            }

            async fn set_last_observation(&self, at: DateTime<Utc>) -> Result<()> {
                sqlx::query(
                    "INSERT INTO observations (id, last_at) VALUES (1, $1)
                     ON CONFLICT (id) DO UPDATE SET last_at = excluded.last_at",
                )
                .bind(at)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn insert_intent(&self, a: &ActionRecord) -> Result<i64> {
                // Fenced: an intent of an epoch other than the current one is not written.
                let row = sqlx::query(
                    "INSERT INTO actions (planned_at, policy, kind, instance, display_name, cluster, cause, reason,
                        saving_per_hour_micros, dry_run, snapshot_image, snapshot_tag, schedule_edge, epoch)
                     SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14
                     WHERE $14 = 0 OR $14 = (SELECT MAX(epoch) FROM elections)
                     RETURNING id",
                )
                .bind(a.planned_at)
                .bind(&a.policy)
                .bind(&a.kind)
                .bind(&a.instance)
                .bind(&a.display_name)
                .bind(&a.cluster)
                .bind(&a.cause)
                .bind(&a.reason)
                .bind(a.saving_per_hour.micros())
                .bind(a.dry_run)
                .bind(a.snapshot.as_ref().map(|s| s.0.clone()))
                .bind(a.snapshot.as_ref().map(|s| s.1.clone()))
                .bind(a.schedule_edge)
                .bind(a.epoch)
                .fetch_optional(&self.pool)
                .await?;
                row.ok_or(LedgerError::Fenced(a.epoch))?.try_get(0).map_err(Into::into)
            }

            async fn record_outcome(
                &self,
                id: i64,
                outcome: Outcome,
                error: Option<&str>,
                instance: Option<&str>,
                at: DateTime<Utc>,
            ) -> Result<()> {
                sqlx::query(
                    "UPDATE actions SET outcome = $1, error = $2, finished_at = $3, instance = COALESCE($4, instance)
                     WHERE id = $5",
                )
                .bind(outcome.label())
                .bind(error)
                .bind(at)
                .bind(instance)
                .bind(id)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn unfinished_actions(&self) -> Result<Vec<ActionRecord>> {
                let rows = sqlx::query("SELECT * FROM actions WHERE outcome IS NULL ORDER BY id").fetch_all(&self.pool).await?;
                rows.iter().map(Self::action).collect()
            }

            async fn actions_between(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Vec<ActionRecord>> {
                let rows = sqlx::query("SELECT * FROM actions WHERE planned_at >= $1 AND planned_at < $2 ORDER BY id")
                    .bind(from)
                    .bind(to)
                    .fetch_all(&self.pool)
                    .await?;
                rows.iter().map(Self::action).collect()
            }

            async fn schedule_marks(&self) -> Result<BTreeMap<String, DateTime<Utc>>> {
                self.times("SELECT instance, edge FROM schedule_marks").await
            }

            async fn set_schedule_marks(&self, marks: &[(String, DateTime<Utc>)]) -> Result<()> {
                let upsert = "INSERT INTO schedule_marks (instance, edge) VALUES ($1, $2)
                              ON CONFLICT (instance) DO UPDATE SET edge = excluded.edge";
                self.set_times(upsert, marks).await
            }

            async fn heartbeats(&self) -> Result<BTreeMap<String, DateTime<Utc>>> {
                self.times("SELECT instance, at FROM heartbeats").await
            }

            async fn record_heartbeat(&self, instance: &str, at: DateTime<Utc>) -> Result<()> {
                let upsert = "INSERT INTO heartbeats (instance, at) VALUES ($1, $2)
                              ON CONFLICT (instance) DO UPDATE SET at = excluded.at";
                self.set_times(upsert, &[(instance.to_owned(), at)]).await
            }

            async fn snoozes(&self) -> Result<BTreeMap<String, DateTime<Utc>>> {
                self.times("SELECT instance, until FROM snoozes").await
            }

            async fn set_snooze(&self, instance: &str, until: DateTime<Utc>) -> Result<()> {
                let upsert = "INSERT INTO snoozes (instance, until) VALUES ($1, $2)
                              ON CONFLICT (instance) DO UPDATE SET until = excluded.until";
                self.set_times(upsert, &[(instance.to_owned(), until)]).await
            }

            async fn accepted_policies(&self) -> Result<BTreeMap<String, String>> {
                let rows = sqlx::query("SELECT policy, fingerprint FROM accepted_policies").fetch_all(&self.pool).await?;
                rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).collect()
            }

            async fn accept_policies(&self, accepted: &[(String, String)], at: DateTime<Utc>) -> Result<()> {
                let mut tx = self.pool.begin().await?;
                for (policy, fingerprint) in accepted {
                    sqlx::query(
                        "INSERT INTO accepted_policies (policy, fingerprint, accepted_at) VALUES ($1, $2, $3)
                         ON CONFLICT (policy) DO UPDATE SET fingerprint = excluded.fingerprint, accepted_at = excluded.accepted_at",
                    )
                    .bind(policy)
                    .bind(fingerprint)
                    .bind(at)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn queue_notices(&self, notices: &[NewNotice]) -> Result<()> {
                let mut tx = self.pool.begin().await?;
                for n in notices {
                    sqlx::query(
                        "INSERT INTO notices (dedup, channel, event, instance, action, occasion, body, queued_at, next_attempt_at)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) ON CONFLICT (dedup) DO NOTHING",
                    )
                    .bind(&n.dedup)
                    .bind(&n.channel)
                    .bind(&n.event)
                    .bind(&n.instance)
                    .bind(&n.action)
                    .bind(n.occasion)
                    .bind(&n.body)
                    .bind(n.queued_at)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn due_notices(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<Notice>> {
                let rows = sqlx::query(
                    "SELECT id, channel, body, attempts, queued_at FROM notices
                     WHERE delivered_at IS NULL AND next_attempt_at <= $1 ORDER BY next_attempt_at, id LIMIT $2",
                )
                .bind(now)
                .bind(limit as i64)
                .fetch_all(&self.pool)
                .await?;
                rows.iter()
                    .map(|r| {
                        Ok(Notice {
                            id: r.try_get("id")?,
                            channel: r.try_get("channel")?,
                            body: r.try_get("body")?,
                            attempts: count(r.try_get("attempts")?),
                            queued_at: r.try_get("queued_at")?,
                        })
                    })
                    .collect()
            }

            async fn notice_delivered(&self, id: i64, at: DateTime<Utc>) -> Result<()> {
                sqlx::query("UPDATE notices SET delivered_at = $1, attempts = attempts + 1, last_error = NULL WHERE id = $2")
                    .bind(at)
                    .bind(id)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn notice_failed(&self, id: i64, attempts: u32, retry_at: DateTime<Utc>, error: &str) -> Result<()> {
                sqlx::query("UPDATE notices SET attempts = $1, next_attempt_at = $2, last_error = $3 WHERE id = $4")
                    .bind(i64::from(attempts))
                    .bind(retry_at)
                    .bind(error)
                    .bind(id)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn warnings_since(&self, since: DateTime<Utc>) -> Result<BTreeMap<WarningKey, WarningSent>> {
                let rows = sqlx::query(
                    "SELECT instance, action, occasion, queued_at, delivered_at FROM notices
                     WHERE event = 'warning' AND occasion IS NOT NULL AND queued_at >= $1",
                )
                .bind(since)
                .fetch_all(&self.pool)
                .await?;
                rows.iter()
                    .map(|r| {
                        let key = WarningKey {
                            instance: r.try_get("instance")?,
                            action: r.try_get("action")?,
                            occasion: r.try_get("occasion")?,
                        };
                        Ok((key, WarningSent { queued_at: r.try_get("queued_at")?, delivered_at: r.try_get("delivered_at")? }))
                    })
                    .collect()
            }

            async fn undelivered_notices(&self) -> Result<BTreeMap<String, (u64, DateTime<Utc>)>> {
                let rows = sqlx::query(
                    "SELECT channel, COUNT(*) AS waiting, MIN(queued_at) AS oldest FROM notices
                     WHERE delivered_at IS NULL GROUP BY channel",
                )
                .fetch_all(&self.pool)
                .await?;
                rows.iter()
                    .map(|r| {
                        let waiting: i64 = r.try_get("waiting")?;
                        Ok((r.try_get("channel")?, (waiting.max(0) as u64, r.try_get("oldest")?)))
                    })
                    .collect()
            }

            async fn prune(&self, prices_before: DateTime<Utc>, segments_before: DateTime<Utc>) -> Result<u64> {
                // The newest sample of each SKU stays: it is the price in force.
                let prices = sqlx::query(
                    "DELETE FROM price_samples WHERE observed_at < $1
                     AND id NOT IN (SELECT MAX(id) FROM price_samples GROUP BY sku_id)",
                )
                .bind(prices_before)
                .execute(&self.pool)
                .await?;
                let segments = sqlx::query("DELETE FROM usage_segments WHERE ended_at IS NOT NULL AND ended_at < $1")
                    .bind(segments_before)
                    .execute(&self.pool)
                    .await?;
                // Use spans are kept as long as spend: a replayed month needs both.
                let uses = sqlx::query("DELETE FROM use_spans WHERE ended_at IS NOT NULL AND ended_at < $1")
                    .bind(segments_before)
                    .execute(&self.pool)
                    .await?;
                Ok(prices.rows_affected() + segments.rows_affected() + uses.rows_affected())
            }
        }
    };
}

sql_store!(PgStore, sqlx::postgres::PgRow, PG_MIGRATIONS);
sql_store!(SqliteStore, sqlx::sqlite::SqliteRow, SQLITE_MIGRATIONS);
