//! What the dashboard reads and the actions it runs: the extension's functions only
//! (a test fails if a dashboard statement names a table). The extension computes every
//! count, state and flag (which images can be forced, the queue's states, the timeline's
//! buckets); the dashboard renders them and decides nothing. Reads use the reader login
//! (`DATABASE_URL`); actions use the admin login, and only for requests that carry the
//! admin token.

use super::rows::QueueSummary;
pub use super::rows::{BreakdownRow, ProviderStatus, QueueCounts, ScanResult, ScanRun};
use super::{get, sql, statement, Db, DbError};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// `stats` of `venue_image_overview`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Stats {
    /// Venues scanned.
    pub venues: i64,
    /// Venues with at least one failed image.
    pub venues_with_failures: i64,
    /// `failed` + `permanently_failed` images.
    pub failed_images: i64,
    /// Uploaded images of the venues with failures.
    pub uploaded_images_of_failing_venues: i64,
    /// Mean failure rate (percent) over the venues with failures.
    pub average_failure_rate: f64,
    /// Venues with a transient failure.
    pub venues_with_transient: i64,
    /// Venues with a permanent failure.
    pub venues_with_permanent: i64,
    /// Venues with an ambiguous failure.
    pub venues_with_ambiguous: i64,
    /// Venues whose images value is NULL.
    pub null_image_values: i64,
    /// Venues whose images value is not an array.
    pub non_array_values: i64,
    /// Array elements that are not objects.
    pub non_object_elements: i64,
    /// Failed images by provider and error type, most frequent first.
    pub breakdown: Vec<BreakdownRow>,
}

/// A high-priority venue.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct PriorityVenue {
    /// Venue id.
    pub id: Option<i64>,
    /// Name.
    pub name: Option<String>,
    /// City.
    pub city_id: Option<i64>,
    /// Its images: keys of the row itself in the JSON.
    #[serde(flatten)]
    pub images: ImageCounts,
    /// failed / images, percent.
    pub failure_rate_pct: f64,
    /// Priority score (`venue_image_priority_score`).
    pub priority_score: f64,
}

/// A high-priority venue's image objects, failed and uploaded.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct ImageCounts {
    /// Image objects.
    pub total_images: i64,
    /// Failed images.
    pub failed_count: i64,
    /// Uploaded images.
    pub uploaded_count: i64,
}

/// `venue_image_overview`: the one scan of the venues table.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Overview {
    /// Table-wide figures.
    pub stats: Stats,
    /// Venues to fix first.
    pub high_priority: Vec<PriorityVenue>,
}

/// Rows of the high-priority list the overview asks for.
pub const HIGH_PRIORITY_ROWS: i32 = 50;

/// The queue, providers and last scan: cheap reads of the queue's own state.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Live {
    /// Jobs by state.
    pub queue: QueueCounts,
    /// Jobs by provider and state.
    pub queue_by_provider: Vec<(String, QueueCounts)>,
    /// `*` first, then every provider with settings or queued images.
    pub providers: Vec<ProviderStatus>,
    /// The latest scan.
    pub last_scan: Option<ScanRun>,
}

impl Db {
    /// Reads the overview (scans the venues table once).
    pub async fn overview(&self) -> Result<Overview, DbError> {
        let r = self
            .row(statement(sql::OVERVIEW).bind(HIGH_PRIORITY_ROWS))
            .await?;
        match get::<Option<serde_json::Value>>(&r, 0)? {
            None => Ok(Overview::default()),
            Some(v) => {
                serde_json::from_value(v).map_err(|e| DbError::shape("venue_image_overview", e))
            }
        }
    }

    /// Reads the queue by state, the providers and the last scan.
    pub async fn live(&self) -> Result<Live, DbError> {
        let queue = self.rows(statement(sql::QUEUE_SUMMARY).bind(None::<i64>));
        let providers = self.rows(statement(sql::PROVIDER_OVERVIEW));
        let scans = self.rows(statement(sql::SCAN_LOG).bind(1i32));
        let (queue, providers, scans) = tokio::try_join!(queue, providers, scans)?;
        let summary = QueueSummary::read(&queue)?;
        Ok(Live {
            queue: summary.total,
            queue_by_provider: summary.by_provider,
            providers: providers
                .iter()
                .map(ProviderStatus::read)
                .collect::<Result<_, _>>()?,
            last_scan: scans.first().map(ScanRun::read).transpose()?,
        })
    }
}

/// The recovery page's ranges.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum Range {
    /// 24 hours in hourly buckets.
    Day,
    /// 7 days in 6-hour buckets.
    Week,
    /// 30 days in daily buckets.
    Month,
}

impl Range {
    /// Every range, in order.
    pub const ALL: [Range; 3] = [Range::Day, Range::Week, Range::Month];

    /// From the `range` query parameter.
    pub fn parse(s: &str) -> Option<Range> {
        match s {
            "24h" => Some(Range::Day),
            "7d" => Some(Range::Week),
            "30d" => Some(Range::Month),
            _ => None,
        }
    }

    /// The query parameter.
    pub fn key(self) -> &'static str {
        match self {
            Range::Day => "24h",
            Range::Week => "7d",
            Range::Month => "30d",
        }
    }

    /// For people.
    pub fn label(self) -> &'static str {
        match self {
            Range::Day => "24 hours",
            Range::Week => "7 days",
            Range::Month => "30 days",
        }
    }

    /// The `since` interval.
    pub fn since(self) -> &'static str {
        match self {
            Range::Day => "24 hours",
            Range::Week => "7 days",
            Range::Month => "30 days",
        }
    }

    /// The bucket interval.
    pub fn bucket(self) -> &'static str {
        match self {
            Range::Day => "1 hour",
            Range::Week => "6 hours",
            Range::Month => "1 day",
        }
    }

    /// The bucket, for people ("per hour").
    pub fn per(self) -> &'static str {
        match self {
            Range::Day => "per hour",
            Range::Week => "per 6 hours",
            Range::Month => "per day",
        }
    }
}

/// A row of `venue_image_retry_report`.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct ReportRow {
    /// Provider (None on the total row).
    pub provider: Option<String>,
    /// The error type retried (None on the total row).
    pub error_type: Option<String>,
    /// Attempts made.
    pub attempts: i64,
    /// Attempts that uploaded the image.
    pub recovered: i64,
    /// Attempts that failed and left the image failed.
    pub failed_again: i64,
    /// Images that became permanently_failed.
    pub permanent_failures: i64,
    /// recovered / attempts, percent.
    pub success_rate_pct: Option<f64>,
    /// Distinct venues with a recovered image.
    pub venues_recovered: i64,
    /// Provider API calls not made.
    pub api_calls_saved: i64,
    /// (Total row) age of the oldest live lease.
    pub oldest_live_lease_seconds: Option<f64>,
}

/// A bucket of `venue_image_recovery_timeline` (empty buckets included, as zeros).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Bucket {
    /// Start.
    pub start: DateTime<Utc>,
    /// Attempts made.
    pub attempts: i64,
    /// Recovered.
    pub recovered: i64,
    /// Failed again.
    pub failed_again: i64,
    /// Became permanently_failed.
    pub permanent_failures: i64,
    /// recovered / attempts, percent (None without attempts).
    pub success_rate_pct: Option<f64>,
    /// API calls saved.
    pub api_calls_saved: i64,
}

/// The recovery page's figures for a range.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Recovery {
    /// The range.
    pub range: Range,
    /// The report's total row.
    pub total: ReportRow,
    /// By provider and error type retried.
    pub rows: Vec<ReportRow>,
    /// Every bucket of the range, oldest first.
    pub buckets: Vec<Bucket>,
}

impl ReportRow {
    fn read(r: &sqlx::postgres::PgRow) -> Result<ReportRow, DbError> {
        Ok(ReportRow {
            provider: get(r, 0)?,
            error_type: get(r, 1)?,
            attempts: get::<Option<i64>>(r, 2)?.unwrap_or(0),
            recovered: get::<Option<i64>>(r, 3)?.unwrap_or(0),
            failed_again: get::<Option<i64>>(r, 4)?.unwrap_or(0),
            permanent_failures: get::<Option<i64>>(r, 5)?.unwrap_or(0),
            success_rate_pct: get(r, 6)?,
            venues_recovered: get::<Option<i64>>(r, 7)?.unwrap_or(0),
            api_calls_saved: get::<Option<i64>>(r, 8)?.unwrap_or(0),
            oldest_live_lease_seconds: get(r, 9)?,
        })
    }
}

impl Bucket {
    fn read(r: &sqlx::postgres::PgRow) -> Result<Bucket, DbError> {
        Ok(Bucket {
            start: get(r, 0)?,
            attempts: get(r, 1)?,
            recovered: get(r, 2)?,
            failed_again: get(r, 3)?,
            permanent_failures: get(r, 4)?,
            success_rate_pct: get(r, 5)?,
            api_calls_saved: get(r, 6)?,
        })
    }
}

impl Db {
    /// Reads the retry report and the timeline of a range (the attempt log, not the
    /// venues); the timeline has every bucket of the range, empty ones as zeros.
    pub async fn recovery(&self, range: Range) -> Result<Recovery, DbError> {
        let report = self.rows(statement(sql::RETRY_REPORT).bind(range.since()));
        let timeline = self.rows(
            statement(sql::RECOVERY_TIMELINE)
                .bind(range.since())
                .bind(range.bucket()),
        );
        let (report, timeline) = tokio::try_join!(report, timeline)?;
        let mut rows = report
            .iter()
            .map(ReportRow::read)
            .collect::<Result<Vec<_>, _>>()?;
        // The total row comes first (provider and error type NULL).
        let total = match rows.first() {
            Some(r) if r.provider.is_none() && r.error_type.is_none() => rows.remove(0),
            _ => ReportRow::default(),
        };
        Ok(Recovery {
            range,
            total,
            rows,
            buckets: timeline
                .iter()
                .map(Bucket::read)
                .collect::<Result<_, _>>()?,
        })
    }
}

/// A venue found by id or name.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FoundVenue {
    /// Id.
    pub id: i64,
    /// Name.
    pub name: Option<String>,
    /// City.
    pub city_id: Option<i64>,
    /// Image objects.
    pub total_images: i32,
    /// Failed images.
    pub failed_count: i32,
    /// Uploaded images.
    pub uploaded_count: i32,
}

/// Rows a search returns.
pub const SEARCH_ROWS: i32 = 50;

impl FoundVenue {
    fn read(r: &sqlx::postgres::PgRow) -> Result<FoundVenue, DbError> {
        Ok(FoundVenue {
            id: get(r, 0)?,
            name: get(r, 1)?,
            city_id: get(r, 2)?,
            total_images: get(r, 3)?,
            failed_count: get(r, 4)?,
            uploaded_count: get(r, 5)?,
        })
    }
}

impl Db {
    /// Venues whose id is `query` or whose name contains it.
    pub async fn find_venues(
        &self,
        query: &str,
        max_rows: i32,
    ) -> Result<Vec<FoundVenue>, DbError> {
        self.rows(
            statement(sql::FIND_VENUES)
                .bind(query.to_string())
                .bind(max_rows),
        )
        .await?
        .iter()
        .map(FoundVenue::read)
        .collect()
    }
}

/// An image of a venue as the queue sees it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Image {
    /// Index in the venue's array.
    pub element_index: i32,
    /// Provider.
    pub provider: Option<String>,
    /// Source URL, redacted.
    pub source_url: Option<String>,
    /// upload_status.
    pub upload_status: Option<String>,
    /// Error type.
    pub error_type: Option<String>,
    /// Its class.
    pub error_class: Option<String>,
    /// Attempts so far.
    pub retry_count: Option<i64>,
    /// not_failed, queued, to_finalize, review, permanently_failed, skipped.
    pub lifecycle: Option<String>,
    /// Why (for review and skipped).
    pub reason: Option<String>,
    /// Queue job.
    pub job_id: Option<i64>,
    /// Its state.
    pub job_state: Option<String>,
    /// Its next attempt.
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// Where the copy is on ImageKit.
    pub imagekit_path: Option<String>,
    /// Whether a force retry would take it now (the extension's rule: a failed or
    /// permanently failed image with a source, not already due or in flight).
    pub can_force: bool,
}

impl Image {
    fn read(r: &sqlx::postgres::PgRow) -> Result<Image, DbError> {
        Ok(Image {
            element_index: get(r, 0)?,
            provider: get(r, 1)?,
            source_url: get(r, 2)?,
            upload_status: get(r, 3)?,
            error_type: get(r, 4)?,
            error_class: get(r, 5)?,
            retry_count: get(r, 6)?,
            lifecycle: get(r, 7)?,
            reason: get(r, 8)?,
            job_id: get(r, 9)?,
            job_state: get(r, 10)?,
            next_attempt_at: get(r, 11)?,
            imagekit_path: get(r, 12)?,
            can_force: get::<Option<bool>>(r, 13)?.unwrap_or(false),
        })
    }
}

/// A row of the attempt log.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Attempt {
    /// When.
    pub at: DateTime<Utc>,
    /// uploaded, failed, review, permanently_failed, superseded, finalized, forced, purged.
    pub outcome: String,
    /// Provider.
    pub provider: Option<String>,
    /// Source URL, redacted.
    pub provider_url: Option<String>,
    /// The error type the attempt retried.
    pub retried_error_type: Option<String>,
    /// The attempt's error type.
    pub error_type: Option<String>,
    /// HTTP status.
    pub status_code: Option<i32>,
    /// Message, redacted.
    pub message: Option<String>,
    /// retry_count after it.
    pub retry_count: Option<i32>,
    /// Uploader.
    pub worker: Option<String>,
}

impl Attempt {
    fn read(r: &sqlx::postgres::PgRow) -> Result<Attempt, DbError> {
        Ok(Attempt {
            at: get(r, 0)?,
            outcome: get(r, 1)?,
            provider: get(r, 2)?,
            provider_url: get(r, 3)?,
            retried_error_type: get(r, 4)?,
            error_type: get(r, 5)?,
            status_code: get(r, 6)?,
            message: get(r, 7)?,
            retry_count: get(r, 8)?,
            worker: get(r, 9)?,
        })
    }
}

/// Rows of attempt history shown.
pub const ATTEMPT_ROWS: i32 = 100;

/// One venue's figures (`venue_image_venue_summary`): computed by the extension, shown
/// as they are.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct VenueSummary {
    /// Id.
    pub id: i64,
    /// Name.
    pub name: Option<String>,
    /// City.
    pub city_id: Option<i64>,
    /// Image objects.
    pub total_images: i32,
    /// `failed` + `permanently_failed` images.
    pub failed_count: i32,
    /// `permanently_failed` images.
    pub permanently_failed_count: i32,
    /// Uploaded images.
    pub uploaded_count: i32,
    /// Images in the retry queue.
    pub queued_count: i32,
    /// Whether a force retry would take any image now.
    pub can_force: bool,
    /// Whether a purge would remove any image.
    pub can_purge: bool,
}

impl VenueSummary {
    fn read(r: &sqlx::postgres::PgRow) -> Result<VenueSummary, DbError> {
        Ok(VenueSummary {
            id: get(r, 0)?,
            name: get(r, 1)?,
            city_id: get(r, 2)?,
            total_images: get(r, 3)?,
            failed_count: get(r, 4)?,
            permanently_failed_count: get(r, 5)?,
            uploaded_count: get(r, 6)?,
            queued_count: get(r, 7)?,
            can_force: get(r, 8)?,
            can_purge: get(r, 9)?,
        })
    }
}

/// A venue's page: the venue (None when there is none with that id), its images, its
/// attempts.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct VenueDetail {
    /// The venue.
    pub venue: Option<VenueSummary>,
    /// Its images.
    pub images: Vec<Image>,
    /// Its latest attempts.
    pub attempts: Vec<Attempt>,
}

impl Db {
    /// Reads one venue: its figures, its images and its latest attempts.
    pub async fn venue(&self, id: i64) -> Result<VenueDetail, DbError> {
        let summary = self.rows(statement(sql::VENUE_SUMMARY).bind(id));
        let images = self.rows(statement(sql::VENUE_IMAGES).bind(id));
        let attempts = self.rows(statement(sql::VENUE_ATTEMPTS).bind(id).bind(ATTEMPT_ROWS));
        let (summary, images, attempts) = tokio::try_join!(summary, images, attempts)?;
        Ok(VenueDetail {
            venue: summary.first().map(VenueSummary::read).transpose()?,
            images: images.iter().map(Image::read).collect::<Result<_, _>>()?,
            attempts: attempts
                .iter()
                .map(Attempt::read)
                .collect::<Result<_, _>>()?,
        })
    }
}

/// An admin action.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// `venue_image_force_retry(venue)`.
    ForceRetry {
        /// Venue.
        venue_id: i64,
    },
    /// `venue_image_force_retry_image(venue, index)`.
    ForceRetryImage {
        /// Venue.
        venue_id: i64,
        /// Element index.
        element_index: i32,
    },
    /// `venue_image_purge_permanently_failed(venue)`.
    Purge {
        /// Venue.
        venue_id: i64,
    },
    /// `venue_image_pause_provider(provider, now() + seconds, reason)`.
    Pause {
        /// Provider (`*`: all).
        provider: String,
        /// For how long.
        seconds: i64,
        /// Why.
        reason: Option<String>,
    },
    /// `venue_image_resume_provider(provider)`.
    Resume {
        /// Provider.
        provider: String,
    },
    /// `venue_image_cleanup_scan()`.
    Scan,
}

/// What an action did, for the message shown after it.
#[derive(Debug, Clone, PartialEq)]
pub enum Done {
    /// Images queued or purged.
    Count(i64),
    /// Paused until then.
    PausedUntil(Option<DateTime<Utc>>),
    /// Whether a pause was ended.
    Resumed(bool),
    /// The scan's result.
    Scan(Box<ScanResult>),
}

impl Db {
    /// Runs an action as the admin login.
    pub async fn act(&self, action: &Action) -> Result<Done, DbError> {
        let count = |r: &sqlx::postgres::PgRow| -> Result<Done, DbError> {
            Ok(Done::Count(get::<Option<i32>>(r, 0)?.unwrap_or(0).into()))
        };
        Ok(match action {
            Action::ForceRetry { venue_id } => count(
                &self
                    .row(
                        statement(sql::FORCE_RETRY)
                            .bind(venue_id)
                            .bind(None::<String>),
                    )
                    .await?,
            )?,
            Action::ForceRetryImage {
                venue_id,
                element_index,
            } => count(
                &self
                    .row(
                        statement(sql::FORCE_RETRY_IMAGE)
                            .bind(venue_id)
                            .bind(element_index),
                    )
                    .await?,
            )?,
            Action::Purge { venue_id } => {
                count(&self.row(statement(sql::PURGE).bind(venue_id)).await?)?
            }
            Action::Pause {
                provider,
                seconds,
                reason,
            } => Done::PausedUntil(get(
                &self
                    .row(
                        statement(sql::PAUSE_FOR)
                            .bind(provider.clone())
                            .bind(*seconds as f64)
                            .bind(reason.clone()),
                    )
                    .await?,
                0,
            )?),
            Action::Resume { provider } => Done::Resumed(self.resume(provider).await?),
            Action::Scan => Done::Scan(Box::new(self.scan().await?)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn overview_shape_parses_and_tolerates_missing_keys() {
        let v = json!({"stats": {"venues": 10, "venues_with_failures": 2, "failed_images": 3,
            "average_failure_rate": 12.5, "breakdown": [{"provider": null, "error_type": "x",
            "error_class": "ambiguous", "count": 3}], "new_key": true},
            "high_priority": [{"id": 7, "name": null, "city_id": 1, "total_images": 4,
            "failed_count": 2, "uploaded_count": 2, "failure_rate_pct": 50.0, "priority_score": 90.0}]});
        let o: Overview = serde_json::from_value(v).unwrap();
        assert_eq!(o.stats.venues, 10);
        assert_eq!(o.stats.breakdown[0].provider, None);
        assert_eq!(o.stats.null_image_values, 0);
        assert_eq!(o.high_priority[0].id, Some(7));
        assert_eq!(o.high_priority[0].images.failed_count, 2);
        // The counts are keys of the row itself, in the extension's order.
        assert_eq!(
            serde_json::to_string(&o.high_priority[0]).unwrap(),
            r#"{"id":7,"name":null,"city_id":1,"total_images":4,"failed_count":2,"uploaded_count":2,"failure_rate_pct":50.0,"priority_score":90.0}"#
        );
    }

    #[test]
    fn ranges() {
        for r in Range::ALL {
            assert_eq!(Range::parse(r.key()), Some(r));
        }
        assert_eq!(Range::parse("1y"), None);
    }
}
