//! The scheduled scan (`--scan-schedule`, a cron expression). Only one uploader runs it:
//! the one whose dedicated connection holds a session advisory lock. If that uploader
//! dies its session ends, the lock is released, and another takes over at the next tick.

use crate::queue::Queue;
use crate::shutdown::Shutdown;
use chrono::Utc;
use croner::Cron;
use sqlx::Connection;
use std::str::FromStr;
use std::time::Duration;
use tracing::{info, warn};

/// Advisory lock key of the scheduler role.
const LOCK_SQL: &str = "SELECT pg_try_advisory_lock(hashtext('venue_images.scheduled_scan'))";

/// Parses a cron expression (5 fields, or 6 with seconds).
pub fn parse(expr: &str) -> Result<Cron, String> {
    Cron::from_str(expr).map_err(|e| format!("invalid --scan-schedule {expr:?}: {e}"))
}

/// Runs the scan at every tick while this process holds the scheduler lock.
pub async fn run(queue: Queue, cron: Cron, shutdown: Shutdown) {
    let mut lock: Option<sqlx::PgConnection> = None;
    loop {
        let now = Utc::now();
        let Ok(next) = cron.find_next_occurrence(&now, false) else {
            warn!("the scan schedule never fires again");
            return;
        };
        let wait = (next - now).to_std().unwrap_or(Duration::from_secs(1));
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.triggered() => return,
        }
        // Still the leader? (The lock lives as long as its session.)
        if let Some(conn) = lock.as_mut() {
            if conn.ping().await.is_err() {
                lock = None;
            }
        }
        if lock.is_none() {
            lock = try_lead(&queue).await;
        }
        if lock.is_none() {
            info!("scheduled scan: another uploader holds the schedule");
            continue;
        }
        match queue.scan().await {
            Ok(r) => info!(
                transient_queued = r.transient_queued,
                permanent_logged = r.permanent_logged,
                ambiguous_skipped = r.ambiguous_skipped,
                finalized = r.finalized,
                errors = r.errors,
                elapsed_ms = r.elapsed_ms,
                "scheduled scan done"
            ),
            Err(e) => warn!(error = %e, "scheduled scan failed"),
        }
    }
}

async fn try_lead(queue: &Queue) -> Option<sqlx::PgConnection> {
    let mut conn = queue.pool().acquire().await.ok()?.detach();
    let got: bool = sqlx::query_scalar(LOCK_SQL)
        .fetch_one(&mut conn)
        .await
        .ok()?;
    if got {
        info!("this uploader now runs the scheduled scan");
        Some(conn)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cron() {
        let c = parse("0 4 * * *").unwrap();
        let from = chrono::DateTime::parse_from_rfc3339("2026-11-24T05:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let next = c.find_next_occurrence(&from, false).unwrap();
        assert_eq!(next.to_rfc3339(), "2026-11-25T04:00:00+00:00");
        assert!(parse("every day").is_err());
    }
}
