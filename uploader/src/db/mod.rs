//! The uploader's only door to PostgreSQL, for every command (`run`, `once`, `retry`,
//! `scan`, `stats`, `migrate`, `check`, `rates`, `dashboard`): it owns the pool, the error
//! type, the row types and every SQL text. Nothing else in the uploader names sqlx's
//! query API (a test greps for it).
//!
//! The rules every statement here follows, so that it works the same on a TLS-only
//! server, behind PgBouncer in transaction mode, and whatever `search_path` the database's
//! owner configured:
//!
//! 1. It calls a function of the extension (or reads one of its views), written with the
//!    schema, with every type and operator qualified (`$1::pg_catalog.uuid`): nothing
//!    resolves through the session's `search_path` ([`sql`]).
//! 2. It runs inside its own explicit transaction as an unnamed statement (Parse, Describe,
//!    Bind and Execute inside `BEGIN` ... `COMMIT`): a transaction-mode pooler keeps the
//!    server connection for exactly that long, and no named prepared statement, `SET` or
//!    lock outlives it.
//! 3. The scheduled scan's one-per-firing rule is a transaction-level lock inside the
//!    extension ([`Db::scheduled_scan`]); `LISTEN` (a wake-up hint) is only used where the
//!    connection is a session of its own ([`listen`]).
//!
//! - [`connect`]: where and how to connect (libpq's URL, environment, `.pgpass`, TLS).
//! - [`rows`]: what the extension returns, typed.
//! - [`queue`]: what the worker asks ([`QueueApi`]), and its implementation.
//! - [`ops`]: the one-off commands (stats, scan, rates, enqueue, check, migrate).
//! - [`dashboard`]: what the dashboard reads and the actions it runs.

pub mod connect;
pub mod dashboard;
mod error;
pub mod listen;
pub mod ops;
pub mod queue;
pub mod rows;
mod sql;

pub use connect::{target, Target};
pub use error::DbError;
pub use queue::QueueApi;
pub use rows::*;

use sqlx::postgres::{PgArguments, PgPoolOptions, PgRow};
use sqlx::{Connection, PgPool, Postgres};
use std::sync::Arc;
use std::time::Duration;
use tracing::warn;

/// A statement with its arguments bound.
type Statement<'q> = sqlx::query::Query<'q, Postgres, PgArguments>;

/// A statement of this module (see the rules above).
fn statement<'q>(sql: &'static str) -> Statement<'q> {
    sqlx::query(sql)
}

/// The database, through a pool.
#[derive(Clone)]
pub struct Db {
    pool: PgPool,
    target: Arc<Target>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("target", &self.target.describe)
            .finish()
    }
}

/// What [`Db::probe`] learnt about the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// Whether the connection is encrypted (as the server sees it).
    pub encrypted: bool,
}

impl Db {
    /// A pool of up to `max_connections` to `target`; it opens connections when first
    /// used, so a sidecar can start before its database.
    pub fn open(target: Target, max_connections: u32) -> Db {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(10))
            // A connection that broke during a restart or a failover is found out (and
            // replaced) before it is handed out, not by the statement that uses it.
            .test_before_acquire(true)
            .connect_lazy_with(target.options.clone());
        Db {
            pool,
            target: Arc::new(target),
        }
    }

    /// The target, for messages.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// Opens one connection now, so that a wrong URL, a refused connection, a failed TLS
    /// handshake or a bad password is reported with its cause (the lazy pool would only
    /// say it timed out). Warns when a connection to another machine is not encrypted.
    pub async fn probe(target: &Target) -> Result<Probe, DbError> {
        let attempt = tokio::time::timeout(
            Duration::from_secs(10),
            sqlx::PgConnection::connect_with(&target.options),
        );
        let mut conn = match attempt.await {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => {
                return Err(DbError::Setup(format!(
                    "cannot connect to the database at {}: {e}",
                    target.describe
                )))
            }
            Err(_) => {
                return Err(DbError::Setup(format!(
                    "cannot connect to the database at {}: no answer within 10 s",
                    target.describe
                )))
            }
        };
        let encrypted = ops::encrypted(&mut conn).await.unwrap_or(false);
        let _ = conn.close().await;
        if !encrypted && !target.is_local() {
            warn!(
                target = %target.describe,
                sslmode = connect::ssl_mode_name(target.ssl_mode()),
                "the connection to the database is not encrypted: set sslmode=verify-full and sslrootcert in DATABASE_URL"
            );
        }
        Ok(Probe { encrypted })
    }

    /// Runs one statement in its own transaction; all its rows.
    async fn rows(&self, q: Statement<'_>) -> Result<Vec<PgRow>, DbError> {
        let mut tx = self.pool.begin().await?;
        let rows = q.persistent(false).fetch_all(&mut *tx).await?;
        tx.commit().await?;
        Ok(rows)
    }

    /// Runs one statement in its own transaction; its one row.
    async fn row(&self, q: Statement<'_>) -> Result<PgRow, DbError> {
        let mut tx = self.pool.begin().await?;
        let row = q.persistent(false).fetch_one(&mut *tx).await?;
        tx.commit().await?;
        Ok(row)
    }

    /// Runs several statements without parameters (the migrations, each its own
    /// transaction), through the simple query protocol: nothing is prepared at all.
    async fn script(&self, sql: &'static str) -> Result<(), DbError> {
        use sqlx::Executor;
        self.pool.execute(sqlx::raw_sql(sql)).await?;
        Ok(())
    }

    /// Closes the pool (waits for connections in use to come back).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Reads column `i` of a row, naming the function in the error.
fn get<'r, T>(row: &'r PgRow, i: usize) -> Result<T, DbError>
where
    T: sqlx::Decode<'r, Postgres> + sqlx::Type<Postgres>,
{
    use sqlx::Row;
    Ok(row.try_get(i)?)
}

#[cfg(test)]
mod tests {
    /// The door is the only code that talks to PostgreSQL: no other source file of the
    /// uploader builds a statement or opens a connection itself.
    #[test]
    fn no_other_module_talks_to_postgres() {
        fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
            for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(&p, out);
                } else if p.extension().is_some_and(|x| x == "rs") {
                    out.push(p);
                }
            }
        }
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        walk(&src, &mut files);
        assert!(files.len() > 20, "{files:?}");
        for f in files {
            if f.starts_with(src.join("db")) {
                continue;
            }
            let text = std::fs::read_to_string(&f).unwrap_or_default();
            for api in [
                "sqlx::query",
                "sqlx::raw_sql",
                "query_scalar",
                "query_as",
                "PgConnection",
                "PgPool",
                "PgListener::connect",
            ] {
                assert!(
                    !text.contains(api),
                    "{} uses {api}: only uploader/src/db talks to PostgreSQL",
                    f.display()
                );
            }
        }
    }

    /// The door reads the extension's functions and views, never one of its tables.
    #[test]
    fn no_statement_reads_a_table() {
        for text in super::sql::ALL {
            for table in ["jobs", "attempts", "providers", "skips", "scans"] {
                let name = format!("venue_images.venue_image_{table}");
                let hit = text.match_indices(&name).any(|(i, _)| {
                    !text[i + name.len()..].starts_with(|c: char| c == '_' || c.is_alphanumeric())
                });
                assert!(!hit, "{text} reads the table {name}");
            }
        }
    }
}
