//! The scheduled scan (`--scan-schedule`, a cron expression). Every uploader ticks; at
//! each firing each asks the extension's `venue_image_scheduled_scan(since)`, which runs
//! the scan for the first of them (a transaction-level lock) and for nobody else when a
//! scan already started since the firing's window opened. Nothing is held between
//! transactions, so this works through PgBouncer in transaction mode, and an uploader that
//! dies holds nothing up.

use crate::db::Db;
use crate::shutdown::Shutdown;
use chrono::{DateTime, Utc};
use croner::Cron;
use std::str::FromStr;
use std::time::Duration;
use tracing::{info, warn};

/// Parses a cron expression (5 fields, or 6 with seconds).
pub fn parse(expr: &str) -> Result<Cron, String> {
    Cron::from_str(expr).map_err(|e| format!("invalid --scan-schedule {expr:?}: {e}"))
}

/// The start of a firing's window: a scan that started after it counts for that firing.
/// Half the way back to the previous firing (at most an hour), so that uploaders whose
/// clocks differ by less than that agree on the firing, and a scan of the previous firing
/// does not count.
pub fn window_start(cron: &Cron, firing: DateTime<Utc>) -> DateTime<Utc> {
    let period = cron
        .find_next_occurrence(&firing, false)
        .ok()
        .map(|next| next - firing)
        .unwrap_or_else(|| chrono::Duration::hours(2));
    let half = (period / 2).min(chrono::Duration::hours(1));
    firing - half
}

/// `info!(message)` with the named figures of `scan`, each a field of the same name.
macro_rules! log_figures {
    ($message:literal, $scan:ident: $($figure:ident)*) => {
        info!($($figure = $scan.$figure,)* $message)
    };
}

/// Runs the scan at every firing, unless another uploader runs that one.
pub async fn run(db: Db, cron: Cron, shutdown: Shutdown) {
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
        match db.scheduled_scan(window_start(&cron, next)).await {
            Ok(Some(r)) => log_figures!(
                "scheduled scan done",
                r: transient_queued permanent_logged ambiguous_skipped finalized errors elapsed_ms
            ),
            Ok(None) => info!("scheduled scan: another uploader runs this one"),
            Err(e) => warn!(error = %e, "scheduled scan failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn parses_cron() {
        let c = parse("0 4 * * *").unwrap();
        let next = c
            .find_next_occurrence(&at("2026-11-24T05:00:00Z"), false)
            .unwrap();
        assert_eq!(next.to_rfc3339(), "2026-11-25T04:00:00+00:00");
        assert!(parse("every day").is_err());
    }

    #[test]
    fn a_firings_window_opens_half_a_period_before_it_at_most_an_hour() {
        let daily = parse("0 4 * * *").unwrap();
        let firing = at("2026-11-25T04:00:00Z");
        assert_eq!(window_start(&daily, firing), at("2026-11-25T03:00:00Z"));
        let every_10s = parse("*/10 * * * * *").unwrap();
        let firing = at("2026-11-25T04:00:10Z");
        assert_eq!(window_start(&every_10s, firing), at("2026-11-25T04:00:05Z"));
    }
}
