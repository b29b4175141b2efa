//! The sidecar's only door to PostgreSQL: the `venue_images` extension's functions.
//! It never reads or writes the venues table itself (its role cannot).

use crate::failure::{Failure, Stage};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Executor, PgPool, Row};
use std::str::FromStr;
use std::time::Duration;

/// Oldest extension version whose functions this uploader calls.
pub const REQUIRED_EXTENSION_VERSION: &str = "0.2.0";

/// A database error, with the URL's password kept out of messages.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The query or the connection failed.
    #[error("database: {0}")]
    Sql(#[from] sqlx::Error),
    /// The database is not set up for the uploader.
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
        matches!(self, DbError::Sql(sqlx::Error::Database(d)) if d.code().as_deref() == Some("42501"))
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

/// What an attempt produced, as `venue_image_record_results` takes it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Outcome {
    /// Uploaded.
    Uploaded {
        /// Job.
        job_id: i64,
        /// Token.
        lease_token: String,
        /// ImageKit URL.
        url: String,
        /// ImageKit path.
        imagekit_path: String,
        /// ImageKit file id.
        file_id: String,
    },
    /// Failed.
    Failed {
        /// Job.
        job_id: i64,
        /// Token.
        lease_token: String,
        /// Error type.
        error_type: String,
        /// HTTP status.
        status_code: Option<u16>,
        /// Redacted message.
        message: String,
        /// Provider's wait hint.
        retry_after_seconds: Option<u64>,
    },
}

impl Outcome {
    /// A failure outcome for a claim.
    pub fn failed(claim: &Claim, f: &Failure) -> Self {
        Outcome::Failed {
            job_id: claim.job_id,
            lease_token: claim.lease_token.clone(),
            error_type: f.error_type.as_str().to_string(),
            status_code: f.status_code,
            message: format!("{}: {}", f.stage.as_str(), f.message),
            retry_after_seconds: f.retry_after.map(|d| d.as_secs_f64().ceil() as u64),
        }
    }

    /// The job it belongs to.
    pub fn job_id(&self) -> i64 {
        match self {
            Outcome::Uploaded { job_id, .. } | Outcome::Failed { job_id, .. } => *job_id,
        }
    }
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
}

/// The queue, through a connection pool.
#[derive(Clone)]
pub struct Queue {
    pool: PgPool,
}

impl Queue {
    /// Connects. `folder_base`, when given, is set on every connection
    /// (`venue_images.folder_base`), so claims name ImageKit folders under it.
    pub async fn connect(
        url: &str,
        max_connections: u32,
        folder_base: Option<String>,
    ) -> Result<Self, DbError> {
        let opts = PgConnectOptions::from_str(url)?.application_name("venue-image-uploader");
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |conn, _| {
                let folder_base = folder_base.clone();
                Box::pin(async move {
                    if let Some(base) = folder_base {
                        sqlx::query("SELECT set_config('venue_images.folder_base', $1, false)")
                            .bind(base)
                            .execute(&mut *conn)
                            .await?;
                    }
                    Ok(())
                })
            })
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

    /// Leases up to `n` due images (`venue_image_claim`, or `venue_image_claim_venue`).
    pub async fn claim(
        &self,
        worker: &str,
        n: i32,
        lease: Duration,
        venue: Option<i64>,
    ) -> Result<Vec<Claim>, DbError> {
        const COLS: &str = "job_id, lease_token::text, venue_id, provider, provider_url, folder, file_name, attempt, not_before";
        let lease = lease.as_secs().clamp(1, 86_400) as i32;
        let rows = match venue {
            None => {
                sqlx::query(&format!("SELECT {COLS} FROM venue_image_claim($1, $2, $3)"))
                    .bind(worker)
                    .bind(n)
                    .bind(lease)
                    .fetch_all(&self.pool)
                    .await?
            }
            Some(v) => {
                sqlx::query(&format!(
                    "SELECT {COLS} FROM venue_image_claim_venue($1, $2, $3, $4)"
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

    /// Heartbeat: keeps a lease for `lease` more; false when the token is stale.
    pub async fn extend(&self, job_id: i64, token: &str, lease: Duration) -> Result<bool, DbError> {
        let ok: Option<bool> =
            sqlx::query_scalar("SELECT venue_image_extend_lease($1, $2::uuid, $3)")
                .bind(job_id)
                .bind(token)
                .bind(lease.as_secs().clamp(1, 86_400) as i32)
                .fetch_one(&self.pool)
                .await?;
        Ok(ok.unwrap_or(false))
    }

    /// Gives an image back unattempted.
    pub async fn release(&self, job_id: i64, token: &str) -> Result<bool, DbError> {
        let ok: Option<bool> = sqlx::query_scalar("SELECT venue_image_release($1, $2::uuid)")
            .bind(job_id)
            .bind(token)
            .fetch_one(&self.pool)
            .await?;
        Ok(ok.unwrap_or(false))
    }

    /// Records outcomes (one venue row rewrite per venue); returns each job's status.
    pub async fn record(&self, outcomes: &[Outcome]) -> Result<Vec<(i64, String)>, DbError> {
        let json = serde_json::to_value(outcomes).map_err(|e| DbError::Setup(e.to_string()))?;
        Ok(
            sqlx::query_as("SELECT job_id, status FROM venue_image_record_results($1)")
                .bind(json)
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// Pauses a provider (`*`: all) for everyone until `until`.
    pub async fn pause(
        &self,
        provider: &str,
        until: DateTime<Utc>,
        reason: &str,
    ) -> Result<(), DbError> {
        sqlx::query("SELECT venue_image_pause_provider($1, $2, $3)")
            .bind(provider)
            .bind(until)
            .bind(reason)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Sets a provider's shared rate (requests per second; infinity for none).
    pub async fn set_rate(&self, provider: &str, per_second: f64) -> Result<(), DbError> {
        sqlx::query("SELECT venue_image_set_provider_rate($1, $2)")
            .bind(provider)
            .bind(per_second)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Makes a venue's retryable images due now.
    pub async fn enqueue_venue(&self, venue_id: i64) -> Result<i32, DbError> {
        Ok(sqlx::query_scalar("SELECT venue_image_enqueue_venue($1)")
            .bind(venue_id)
            .fetch_one(&self.pool)
            .await?)
    }

    /// Runs the nightly scan.
    pub async fn scan(&self) -> Result<ScanResult, DbError> {
        let r = sqlx::query("SELECT * FROM venue_image_cleanup_scan()")
            .fetch_one(&self.pool)
            .await?;
        Ok(ScanResult {
            transient_queued: r.try_get(0)?,
            permanent_logged: r.try_get(1)?,
            ambiguous_skipped: r.try_get(2)?,
            finalized: r.try_get(3)?,
            errors: r.try_get(4)?,
            elapsed_ms: r.try_get(5)?,
        })
    }

    /// Images waiting for or under retry, by state (`due`, `waiting`, `leased`, `paused`).
    pub async fn depth(&self, venue: Option<i64>) -> Result<Vec<(String, i64)>, DbError> {
        Ok(sqlx::query_as(
            "SELECT state, count(*) FROM venue_image_retry_queue
              WHERE $1::bigint IS NULL OR venue_id = $1 GROUP BY state ORDER BY state",
        )
        .bind(venue)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Is anything due now, or (within `linger`) about to be: waiting images whose next
    /// attempt comes within it, or images of paused providers?
    pub async fn due_within(&self, venue: Option<i64>, linger: Duration) -> Result<bool, DbError> {
        Ok(sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM venue_image_retry_queue
                             WHERE ($1::bigint IS NULL OR venue_id = $1)
                               AND (state = 'due'
                                    OR ($2 > 0 AND state = 'paused')
                                    OR (state = 'waiting' AND next_attempt_at <= now() + make_interval(secs => $2))))",
        )
        .bind(venue)
        .bind(linger.as_secs_f64())
        .fetch_one(&self.pool)
        .await?)
    }

    /// Providers with paused images.
    pub async fn paused_providers(&self) -> Result<Vec<String>, DbError> {
        Ok(sqlx::query_scalar(
            "SELECT DISTINCT provider FROM venue_image_retry_queue WHERE state = 'paused' ORDER BY 1",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Summary statistics and failure breakdown (needs SELECT on the venues table).
    pub async fn stats(&self) -> Result<(Summary, Vec<BreakdownRow>), DbError> {
        let r = sqlx::query(
            "SELECT total_venues_with_failures, total_failed_images, total_uploaded_images,
                    average_failure_rate, venues_with_transient, venues_with_permanent,
                    venues_with_ambiguous, venues_scanned
               FROM venue_image_summary_stats()",
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
            "SELECT provider, error_type, error_class, count FROM venue_image_failure_breakdown()",
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

    /// Checks the server, the extension version and the role's privileges; returns
    /// human-readable findings (`Err` for the first blocking one).
    pub async fn check(&self) -> Result<Vec<String>, DbError> {
        let mut notes = Vec::new();
        let version: String = sqlx::query_scalar("SELECT current_setting('server_version')")
            .fetch_one(&self.pool)
            .await?;
        notes.push(format!(
            "PostgreSQL {version}, connected as {}",
            self.current_user().await?
        ));
        let ext: Option<String> = sqlx::query_scalar(
            "SELECT extversion FROM pg_extension WHERE extname = 'venue_images'",
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
                "venue_images {ext} is too old: this uploader needs {REQUIRED_EXTENSION_VERSION} or newer (ALTER EXTENSION venue_images UPDATE)"
            )));
        }
        notes.push(format!("venue_images {ext}"));
        let missing: Vec<String> = sqlx::query_scalar(
            "SELECT f FROM unnest(ARRAY[
                'venue_image_claim(text,int,int)', 'venue_image_claim_venue(text,bigint,int,int)',
                'venue_image_extend_lease(bigint,uuid,int)', 'venue_image_release(bigint,uuid)',
                'venue_image_record_results(jsonb)', 'venue_image_pause_provider(text,timestamptz,text)',
                'venue_image_set_provider_rate(text,float8)', 'venue_image_enqueue_venue(bigint)',
                'venue_image_cleanup_scan()']) AS f
              WHERE NOT has_function_privilege(f, 'EXECUTE')",
        )
        .fetch_all(&self.pool)
        .await?;
        if !missing.is_empty() {
            return Err(DbError::Setup(format!(
                "this role may not execute {} (GRANT venue_image_uploader TO {})",
                missing.join(", "),
                self.current_user().await?
            )));
        }
        notes.push("the role may run every queue function".into());
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

/// `a < b` for dotted numeric versions.
pub fn version_lt(a: &str, b: &str) -> bool {
    let parse = |v: &str| -> Vec<u64> { v.split('.').map(|p| p.parse().unwrap_or(0)).collect() };
    parse(a) < parse(b)
}

/// A failure for a write-back that could not reach the database.
pub fn db_failure(e: &DbError) -> Failure {
    Failure::new(
        Stage::Upload,
        crate::failure::ErrorType::UnknownError,
        e.to_string(),
    )
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

    #[test]
    fn outcomes_serialise_as_the_extension_expects() {
        let o = Outcome::Failed {
            job_id: 7,
            lease_token: "t".into(),
            error_type: "rate_limited".into(),
            status_code: Some(429),
            message: "m".into(),
            retry_after_seconds: Some(3),
        };
        assert_eq!(
            serde_json::to_string(&o).unwrap(),
            r#"{"job_id":7,"lease_token":"t","error_type":"rate_limited","status_code":429,"message":"m","retry_after_seconds":3}"#
        );
    }
}
