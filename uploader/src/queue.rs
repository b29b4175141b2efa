//! The sidecar's only door to PostgreSQL: the `venue_images` extension's functions, all
//! called with their schema (`venue_images.`), so no `search_path` can redirect them.
//! It never reads or writes the venues table itself (its role cannot).
//!
//! [`QueueApi`] is the narrow part the worker needs; [`Queue`] implements it over a
//! connection pool, and the worker's unit tests over an in-memory fake.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Executor, PgPool, Row};
use std::future::Future;
use std::str::FromStr;
use std::time::Duration;
pub use venue_images_core::retry::{OutcomeRecord, QueueState, WriteBackStatus};

/// Oldest extension version whose functions this uploader calls.
pub const REQUIRED_EXTENSION_VERSION: &str = "0.3.0";

/// A database error, with the URL's password kept out of messages.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The query or the connection failed.
    #[error("database: {0}")]
    Sql(#[from] sqlx::Error),
    /// The database is not set up for the uploader, or refused a request.
    #[error("{0}")]
    Setup(String),
}

impl DbError {
    /// Whether the error is the connection's, not the request's: the database is
    /// unreachable, restarting or shutting down (SQLSTATE classes 08, 57, 53), so trying
    /// again later may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            DbError::Sql(sqlx::Error::Database(d)) => d
                .code()
                .is_some_and(|c| c.starts_with("08") || c.starts_with("57") || c.starts_with("53")),
            DbError::Sql(
                sqlx::Error::Io(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::Protocol(_)
                | sqlx::Error::Tls(_)
                | sqlx::Error::WorkerCrashed,
            ) => true,
            _ => false,
        }
    }

    /// Whether the error is PostgreSQL's `insufficient_privilege` (42501).
    pub fn is_permission_error(&self) -> bool {
        self.sqlstate().as_deref() == Some("42501")
    }

    /// The SQLSTATE, when the database answered with one.
    pub fn sqlstate(&self) -> Option<String> {
        match self {
            DbError::Sql(sqlx::Error::Database(d)) => d.code().map(|c| c.into_owned()),
            _ => None,
        }
    }
}

/// One leased image.
#[derive(Debug, Clone, PartialEq)]
pub struct Claim {
    /// Queue job.
    pub job_id: i64,
    /// Lease token (fences the write-back).
    pub lease_token: String,
    /// Venue.
    pub venue_id: i64,
    /// Provider (pacing key).
    pub provider: String,
    /// The image's source URL (may hold an API key: never log it unredacted).
    pub provider_url: String,
    /// ImageKit folder.
    pub folder: String,
    /// ImageKit file name (deterministic).
    pub file_name: String,
    /// Attempt number (the image's `retry_count` + 1).
    pub attempt: i32,
    /// Do not start before this instant (the provider's shared pacing slot).
    pub not_before: DateTime<Utc>,
}

impl Claim {
    /// The venue's folder segment, used in the `venue:<slug>` tag.
    pub fn venue_slug(&self) -> &str {
        self.folder.rsplit('/').next().unwrap_or(&self.folder)
    }
}

/// A provider's shared state (`venue_images.venue_image_provider_status`).
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderState {
    /// Provider (`*`: ImageKit and every provider).
    pub provider: String,
    /// Paused until then, if paused now.
    pub paused_until: Option<DateTime<Utc>>,
    /// Why.
    pub pause_reason: Option<String>,
    /// The last upload any uploader recorded for it.
    pub last_success_at: Option<DateTime<Utc>>,
}

/// What the worker asks of the queue.
pub trait QueueApi: Send + Sync + 'static {
    /// Leases up to `n` due images (only `venue`'s when given).
    fn claim(
        &self,
        worker: &str,
        n: i32,
        lease: Duration,
        venue: Option<i64>,
    ) -> impl Future<Output = Result<Vec<Claim>, DbError>> + Send;
    /// Keeps a lease for `lease` more; false when the token is stale.
    fn extend(
        &self,
        job_id: i64,
        token: &str,
        lease: Duration,
    ) -> impl Future<Output = Result<bool, DbError>> + Send;
    /// Gives an image back unattempted; false when the token is stale.
    fn release(
        &self,
        job_id: i64,
        token: &str,
    ) -> impl Future<Output = Result<bool, DbError>> + Send;
    /// Records outcomes; each entry's result, in order.
    fn record(
        &self,
        outcomes: &[OutcomeRecord],
    ) -> impl Future<Output = Result<Vec<(i64, WriteBackStatus)>, DbError>> + Send;
    /// Pauses a provider (`*`: all) for every uploader.
    fn pause(
        &self,
        provider: &str,
        until: DateTime<Utc>,
        reason: &str,
    ) -> impl Future<Output = Result<(), DbError>> + Send;
    /// Every provider's pause and last success.
    fn providers(&self) -> impl Future<Output = Result<Vec<ProviderState>, DbError>> + Send;
    /// When the next image becomes claimable (only `venue`'s when given).
    fn next_due(
        &self,
        venue: Option<i64>,
    ) -> impl Future<Output = Result<Option<DateTime<Utc>>, DbError>> + Send;
}

/// Summary statistics (`venue_image_summary_stats`).
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Venues with at least one failed image.
    pub total_venues_with_failures: i64,
    /// Failed images.
    pub total_failed_images: i64,
    /// Uploaded images of those venues.
    pub total_uploaded_images: i64,
    /// Mean failure rate of those venues.
    pub average_failure_rate: f64,
    /// Venues with a transient failure.
    pub venues_with_transient: i64,
    /// ... a permanent one.
    pub venues_with_permanent: i64,
    /// ... an ambiguous one.
    pub venues_with_ambiguous: i64,
    /// Rows read.
    pub venues_scanned: i64,
}

/// One breakdown row.
#[derive(Debug, Clone, Serialize)]
pub struct BreakdownRow {
    /// Provider.
    pub provider: Option<String>,
    /// Error type.
    pub error_type: Option<String>,
    /// Class.
    pub error_class: String,
    /// Failed images.
    pub count: i64,
}

/// The nightly scan's counts.
#[derive(Debug, Clone, Serialize)]
pub struct ScanResult {
    /// Venues queued.
    pub transient_queued: i64,
    /// Venues with permanent failures only.
    pub permanent_logged: i64,
    /// Venues with ambiguous failures only.
    pub ambiguous_skipped: i64,
    /// Images finalised.
    pub finalized: i64,
    /// Venues that could not be read.
    pub errors: i64,
    /// Duration.
    pub elapsed_ms: f64,
    /// Elements that could not be read (see `venue_images.venue_image_skips`).
    pub skipped_elements: i64,
    /// Jobs the scan created.
    pub images_queued: i64,
}

/// The queue, through a connection pool.
#[derive(Clone)]
pub struct Queue {
    pool: PgPool,
}

const CLAIM_COLUMNS: &str = "job_id, lease_token::text, venue_id, provider, provider_url, folder, file_name, attempt, not_before";

impl Queue {
    /// Connects (lazily: the pool opens connections when first used).
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, DbError> {
        let opts = PgConnectOptions::from_str(url)?.application_name("venue-image-uploader");
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .connect_lazy_with(opts);
        Ok(Queue { pool })
    }

    /// Opens one connection now, so that a wrong URL, a refused connection or a bad
    /// password is reported with its cause (the lazy pool would only say it timed out).
    pub async fn probe(url: &str) -> Result<(), DbError> {
        use sqlx::Connection;
        let opts = PgConnectOptions::from_str(url).map_err(|e| {
            DbError::Setup(format!(
                "DATABASE_URL is not a valid PostgreSQL connection URL (postgres://...): {e}"
            ))
        })?;
        let target = format!(
            "{}:{}/{}",
            opts.get_host(),
            opts.get_port(),
            opts.get_database().unwrap_or("(default database)")
        );
        let attempt = tokio::time::timeout(
            Duration::from_secs(10),
            sqlx::PgConnection::connect_with(&opts),
        );
        match attempt.await {
            Ok(Ok(conn)) => {
                let _ = conn.close().await;
                Ok(())
            }
            Ok(Err(e)) => Err(DbError::Setup(format!(
                "cannot connect to the database at {target}: {e}"
            ))),
            Err(_) => Err(DbError::Setup(format!(
                "cannot connect to the database at {target}: no answer within 10 s"
            ))),
        }
    }

    /// The pool (for LISTEN and advisory locks).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Sets a provider's shared rate (requests per second; infinity for none; `None` for
    /// the built-in default). Needs `venue_image_admin`.
    pub async fn set_rate(&self, provider: &str, per_second: Option<f64>) -> Result<(), DbError> {
        sqlx::query("SELECT venue_images.venue_image_set_provider_rate($1, $2)")
            .bind(provider)
            .bind(per_second)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Ends a provider's pause now. Needs `venue_image_admin`.
    pub async fn resume(&self, provider: &str) -> Result<bool, DbError> {
        Ok(
            sqlx::query_scalar("SELECT venue_images.venue_image_resume_provider($1)")
                .bind(provider)
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// Makes a venue's retryable images due now; returns how many it has.
    pub async fn enqueue_venue(&self, venue_id: i64) -> Result<i32, DbError> {
        Ok(
            sqlx::query_scalar("SELECT venue_images.venue_image_enqueue_venue($1)")
                .bind(venue_id)
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// Queues a venue's failed images (or the one with this source URL) for one more
    /// attempt, whatever their class and count. Needs `venue_image_admin`.
    pub async fn force_retry(&self, venue_id: i64, url: Option<&str>) -> Result<i32, DbError> {
        Ok(
            sqlx::query_scalar("SELECT venue_images.venue_image_force_retry($1, $2)")
                .bind(venue_id)
                .bind(url)
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// Runs the nightly scan.
    pub async fn scan(&self) -> Result<ScanResult, DbError> {
        let r = sqlx::query(
            "SELECT transient_queued, permanent_logged, ambiguous_skipped, finalized, errors,
                    elapsed_ms, skipped_elements, images_queued
               FROM venue_images.venue_image_cleanup_scan()",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(ScanResult {
            transient_queued: r.try_get(0)?,
            permanent_logged: r.try_get(1)?,
            ambiguous_skipped: r.try_get(2)?,
            finalized: r.try_get(3)?,
            errors: r.try_get(4)?,
            elapsed_ms: r.try_get(5)?,
            skipped_elements: r.try_get(6)?,
            images_queued: r.try_get(7)?,
        })
    }

    /// Images waiting for or under retry, by state.
    pub async fn depth(&self, venue: Option<i64>) -> Result<Vec<(QueueState, i64)>, DbError> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT state, count(*) FROM venue_images.venue_image_retry_queue
              WHERE $1::bigint IS NULL OR venue_id = $1 GROUP BY state ORDER BY state",
        )
        .bind(venue)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(s, n)| QueueState::parse(&s).map(|s| (s, n)))
            .collect())
    }

    /// Summary statistics and failure breakdown (`venue_image_reader`'s functions).
    pub async fn stats(&self) -> Result<(Summary, Vec<BreakdownRow>), DbError> {
        let r = sqlx::query(
            "SELECT total_venues_with_failures, total_failed_images, total_uploaded_images,
                    average_failure_rate, venues_with_transient, venues_with_permanent,
                    venues_with_ambiguous, venues_scanned
               FROM venue_images.venue_image_summary_stats()",
        )
        .fetch_one(&self.pool)
        .await?;
        let summary = Summary {
            total_venues_with_failures: r.try_get(0)?,
            total_failed_images: r.try_get(1)?,
            total_uploaded_images: r.try_get(2)?,
            average_failure_rate: r.try_get(3)?,
            venues_with_transient: r.try_get(4)?,
            venues_with_permanent: r.try_get(5)?,
            venues_with_ambiguous: r.try_get(6)?,
            venues_scanned: r.try_get(7)?,
        };
        let rows = sqlx::query(
            "SELECT provider, error_type, error_class, count
               FROM venue_images.venue_image_failure_breakdown()",
        )
        .fetch_all(&self.pool)
        .await?;
        let breakdown = rows
            .iter()
            .map(|r| {
                Ok(BreakdownRow {
                    provider: r.try_get(0)?,
                    error_type: r.try_get(1)?,
                    error_class: r.try_get(2)?,
                    count: r.try_get(3)?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        Ok((summary, breakdown))
    }

    /// Checks the server, the extension version and the role's privileges for `role`'s
    /// work; returns human-readable findings (`Err` for the first blocking one).
    pub async fn check(&self, needs: &[&str], grant: &str) -> Result<Vec<String>, DbError> {
        let mut notes = Vec::new();
        let version: String = sqlx::query_scalar("SELECT current_setting('server_version')")
            .fetch_one(&self.pool)
            .await?;
        let user = self.current_user().await?;
        notes.push(format!("PostgreSQL {version}, connected as {user}"));
        let ext: Option<String> = sqlx::query_scalar(
            "SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'venue_images'",
        )
        .fetch_optional(&self.pool)
        .await?;
        let Some(ext) = ext else {
            return Err(DbError::Setup(
                "the venue_images extension is not installed in this database (run: venue-image-uploader migrate, as a superuser)".into(),
            ));
        };
        if version_lt(&ext, REQUIRED_EXTENSION_VERSION) {
            return Err(DbError::Setup(format!(
                "venue_images {ext} is too old: this uploader needs {REQUIRED_EXTENSION_VERSION} or newer (venue-image-uploader migrate, as a superuser, runs ALTER EXTENSION venue_images UPDATE)"
            )));
        }
        notes.push(format!("venue_images {ext}"));
        let needs: Vec<String> = needs.iter().map(|s| s.to_string()).collect();
        let missing: Vec<String> = sqlx::query_scalar(
            "SELECT f FROM unnest($1::text[]) AS f
              WHERE to_regprocedure(f) IS NULL OR NOT has_function_privilege(to_regprocedure(f), 'EXECUTE')",
        )
        .bind(&needs)
        .fetch_all(&self.pool)
        .await?;
        if !missing.is_empty() {
            return Err(DbError::Setup(format!(
                "this role may not execute {} (GRANT {grant} TO {user})",
                missing.join(", ")
            )));
        }
        notes.push(format!("the role may run what it needs ({grant})"));
        Ok(notes)
    }

    async fn current_user(&self) -> Result<String, DbError> {
        Ok(sqlx::query_scalar("SELECT current_user::text")
            .fetch_one(&self.pool)
            .await?)
    }

    /// Runs SQL (migrations): several statements, no parameters.
    pub async fn execute_script(&self, sql: &str) -> Result<(), DbError> {
        self.pool.execute(sqlx::raw_sql(sql)).await?;
        Ok(())
    }
}

/// The functions the sidecar calls (`check` verifies them).
pub const UPLOADER_FUNCTIONS: &[&str] = &[
    "venue_images.venue_image_claim(text,int,int)",
    "venue_images.venue_image_claim_venue(text,bigint,int,int)",
    "venue_images.venue_image_extend_lease(bigint,uuid,int)",
    "venue_images.venue_image_release(bigint,uuid)",
    "venue_images.venue_image_record_results(jsonb)",
    "venue_images.venue_image_pause_provider(text,timestamptz,text)",
    "venue_images.venue_image_enqueue_venue(bigint)",
    "venue_images.venue_image_cleanup_scan()",
    "venue_images.venue_image_next_due(bigint)",
    "venue_images.venue_image_summary_stats()",
    "venue_images.venue_image_failure_breakdown()",
];

impl QueueApi for Queue {
    async fn claim(
        &self,
        worker: &str,
        n: i32,
        lease: Duration,
        venue: Option<i64>,
    ) -> Result<Vec<Claim>, DbError> {
        let lease = lease.as_secs().clamp(1, 86_400) as i32;
        let rows = match venue {
            None => {
                sqlx::query(&format!(
                    "SELECT {CLAIM_COLUMNS} FROM venue_images.venue_image_claim($1, $2, $3)"
                ))
                .bind(worker)
                .bind(n)
                .bind(lease)
                .fetch_all(&self.pool)
                .await?
            }
            Some(v) => {
                sqlx::query(&format!(
                "SELECT {CLAIM_COLUMNS} FROM venue_images.venue_image_claim_venue($1, $2, $3, $4)"
            ))
                .bind(worker)
                .bind(v)
                .bind(n)
                .bind(lease)
                .fetch_all(&self.pool)
                .await?
            }
        };
        rows.iter()
            .map(|r| {
                Ok(Claim {
                    job_id: r.try_get(0)?,
                    lease_token: r.try_get(1)?,
                    venue_id: r.try_get(2)?,
                    provider: r.try_get(3)?,
                    provider_url: r.try_get(4)?,
                    folder: r.try_get(5)?,
                    file_name: r.try_get(6)?,
                    attempt: r.try_get(7)?,
                    not_before: r.try_get(8)?,
                })
            })
            .collect()
    }

    async fn extend(&self, job_id: i64, token: &str, lease: Duration) -> Result<bool, DbError> {
        let ok: Option<bool> =
            sqlx::query_scalar("SELECT venue_images.venue_image_extend_lease($1, $2::uuid, $3)")
                .bind(job_id)
                .bind(token)
                .bind(lease.as_secs().clamp(1, 86_400) as i32)
                .fetch_one(&self.pool)
                .await?;
        Ok(ok.unwrap_or(false))
    }

    async fn release(&self, job_id: i64, token: &str) -> Result<bool, DbError> {
        let ok: Option<bool> =
            sqlx::query_scalar("SELECT venue_images.venue_image_release($1, $2::uuid)")
                .bind(job_id)
                .bind(token)
                .fetch_one(&self.pool)
                .await?;
        Ok(ok.unwrap_or(false))
    }

    async fn record(
        &self,
        outcomes: &[OutcomeRecord],
    ) -> Result<Vec<(i64, WriteBackStatus)>, DbError> {
        let json = serde_json::to_value(outcomes).map_err(|e| DbError::Setup(e.to_string()))?;
        let rows: Vec<(i64, String)> = sqlx::query_as(
            "SELECT job_id, status FROM venue_images.venue_image_record_results($1)",
        )
        .bind(json)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(id, s)| {
                WriteBackStatus::parse(&s)
                    .map(|s| (id, s))
                    .ok_or_else(|| DbError::Setup(format!("unknown write-back status {s:?}")))
            })
            .collect()
    }

    async fn pause(
        &self,
        provider: &str,
        until: DateTime<Utc>,
        reason: &str,
    ) -> Result<(), DbError> {
        sqlx::query("SELECT venue_images.venue_image_pause_provider($1, $2, $3)")
            .bind(provider)
            .bind(until)
            .bind(reason)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn providers(&self) -> Result<Vec<ProviderState>, DbError> {
        let rows = sqlx::query(
            "SELECT provider, paused_until, pause_reason, last_success_at
               FROM venue_images.venue_image_provider_status",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ProviderState {
                    provider: r.try_get(0)?,
                    paused_until: r.try_get(1)?,
                    pause_reason: r.try_get(2)?,
                    last_success_at: r.try_get(3)?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(DbError::from)
    }

    async fn next_due(&self, venue: Option<i64>) -> Result<Option<DateTime<Utc>>, DbError> {
        Ok(
            sqlx::query_scalar("SELECT venue_images.venue_image_next_due($1)")
                .bind(venue)
                .fetch_one(&self.pool)
                .await?,
        )
    }
}

/// `a < b` for dotted numeric versions.
pub fn version_lt(a: &str, b: &str) -> bool {
    let parse = |v: &str| -> Vec<u64> { v.split('.').map(|p| p.parse().unwrap_or(0)).collect() };
    parse(a) < parse(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_numerically() {
        assert!(version_lt("0.1.0", "0.2.0"));
        assert!(!version_lt("0.10.0", "0.2.0"));
        assert!(!version_lt("0.2.0", "0.2.0"));
    }
}
