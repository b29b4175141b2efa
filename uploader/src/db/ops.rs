//! The one-off commands' calls: statistics, the scan, rates and pauses, enqueueing and
//! forcing, the checks of `check`, and the migrations.

use super::rows::{
    BreakdownRow, QueueCounts, QueueSummary, ScanResult, Summary, REQUIRED_EXTENSION_VERSION,
};
use super::{get, sql, statement, Db, DbError};
use chrono::{DateTime, Utc};
use sqlx::Row;

/// Whether this connection is encrypted, as the server sees it. Like every statement of
/// the door, in a transaction of its own (a pooler keeps one server connection for it).
pub(crate) async fn encrypted(conn: &mut sqlx::PgConnection) -> Result<bool, DbError> {
    use sqlx::Connection;
    let mut tx = conn.begin().await?;
    let r = sqlx::query(sql::ENCRYPTED)
        .persistent(false)
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(r.try_get::<bool, _>(0)?)
}

/// `a < b` for dotted numeric versions.
pub fn version_lt(a: &str, b: &str) -> bool {
    let parse = |v: &str| -> Vec<u64> { v.split('.').map(|p| p.parse().unwrap_or(0)).collect() };
    parse(a) < parse(b)
}

impl Db {
    /// Sets a provider's shared rate (requests per second; infinity for none; `None` for
    /// the built-in default). Needs `venue_image_admin`.
    pub async fn set_rate(&self, provider: &str, per_second: Option<f64>) -> Result<(), DbError> {
        self.row(statement(sql::SET_RATE).bind(provider).bind(per_second))
            .await?;
        Ok(())
    }

    /// Ends a provider's pause now. Needs `venue_image_admin`.
    pub async fn resume(&self, provider: &str) -> Result<bool, DbError> {
        let r = self
            .row(statement(sql::RESUME_PROVIDER).bind(provider))
            .await?;
        Ok(get::<Option<bool>>(&r, 0)?.unwrap_or(false))
    }

    /// Makes a venue's retryable images due now; returns how many it has.
    pub async fn enqueue_venue(&self, venue_id: i64) -> Result<i32, DbError> {
        let r = self
            .row(statement(sql::ENQUEUE_VENUE).bind(venue_id))
            .await?;
        Ok(get::<Option<i32>>(&r, 0)?.unwrap_or(0))
    }

    /// Queues a venue's failed images (or the one with this source URL) for one more
    /// attempt, whatever their class and count. Needs `venue_image_admin`.
    pub async fn force_retry(&self, venue_id: i64, url: Option<&str>) -> Result<i32, DbError> {
        let r = self
            .row(statement(sql::FORCE_RETRY).bind(venue_id).bind(url))
            .await?;
        Ok(get::<Option<i32>>(&r, 0)?.unwrap_or(0))
    }

    /// Runs the nightly scan.
    pub async fn scan(&self) -> Result<ScanResult, DbError> {
        ScanResult::read(&self.row(statement(sql::SCAN)).await?, 0)
    }

    /// Runs the scan for one firing of a schedule shared with other uploaders, unless one
    /// of them runs it now or a scan started after `since` (then `None`).
    pub async fn scheduled_scan(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Option<ScanResult>, DbError> {
        let rows = self
            .rows(statement(sql::SCHEDULED_SCAN).bind(since))
            .await?;
        rows.first().map(|r| ScanResult::read(r, 0)).transpose()
    }

    /// Images waiting for or under retry by state (only `venue`'s when given).
    pub async fn depth(&self, venue: Option<i64>) -> Result<QueueCounts, DbError> {
        let rows = self.rows(statement(sql::QUEUE_SUMMARY).bind(venue)).await?;
        Ok(QueueSummary::read(&rows)?.total)
    }

    /// Summary statistics and failure breakdown (`venue_image_reader`'s functions).
    pub async fn stats(&self) -> Result<(Summary, Vec<BreakdownRow>), DbError> {
        let summary = Summary::read(&self.row(statement(sql::SUMMARY_STATS)).await?)?;
        let breakdown = self
            .rows(statement(sql::FAILURE_BREAKDOWN))
            .await?
            .iter()
            .map(BreakdownRow::read)
            .collect::<Result<_, _>>()?;
        Ok((summary, breakdown))
    }

    /// Checks the server, the extension version and the login's right to execute
    /// `needs` (function signatures); returns findings for people (`Err` for the first
    /// blocking one). `grant` names the role that gives the rights, for the hint.
    pub async fn check(&self, needs: &[&str], grant: &str) -> Result<Vec<String>, DbError> {
        let mut notes = Vec::new();
        let r = self.row(statement(sql::SERVER_VERSION)).await?;
        let (version, user): (String, String) = (get(&r, 0)?, get(&r, 1)?);
        notes.push(format!("PostgreSQL {version}, connected as {user}"));
        let ext: Option<String> = self
            .rows(statement(sql::EXTENSION_VERSION))
            .await?
            .first()
            .map(|r| get(r, 0))
            .transpose()?;
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
        let missing: Vec<String> = self
            .rows(statement(sql::MISSING_PRIVILEGES).bind(needs))
            .await?
            .iter()
            .map(|r| get(r, 0))
            .collect::<Result<_, _>>()?;
        if !missing.is_empty() {
            return Err(DbError::Setup(format!(
                "this role may not execute {} (GRANT {grant} TO {user})",
                missing.join(", ")
            )));
        }
        notes.push(format!("the role may run what it needs ({grant})"));
        Ok(notes)
    }

    /// Applies migrations (SQL files that are each one transaction, pinning their own
    /// search path), in order.
    pub async fn migrate(&self, scripts: &[(&str, &'static str)]) -> Result<(), (String, DbError)> {
        for (name, sql) in scripts {
            self.script(sql).await.map_err(|e| (name.to_string(), e))?;
        }
        Ok(())
    }

    /// Whether the database answers (one trivial statement).
    pub async fn ping(&self) -> Result<(), DbError> {
        self.row(statement(sql::PING)).await?;
        Ok(())
    }

    /// The server's port as the server sees it (`None` on a Unix socket).
    pub async fn server_port(&self) -> Result<Option<i32>, DbError> {
        get(&self.row(statement(sql::SERVER_PORT)).await?, 0)
    }
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
