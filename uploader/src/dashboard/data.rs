//! What the dashboard reads and does, as the extension's functions and views (always
//! schema-qualified). Reads use the reader login (`DATABASE_URL`); actions use the admin
//! login, and only for requests that carry the admin token.

use crate::redact::redact_text;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};

/// A database call that failed: its SQLSTATE and a message safe to show (redacted).
#[derive(Debug, Clone)]
pub struct DbFailure {
    /// SQLSTATE, when the server answered.
    pub sqlstate: Option<String>,
    /// The message, redacted.
    pub message: String,
}

impl From<sqlx::Error> for DbFailure {
    fn from(e: sqlx::Error) -> Self {
        let sqlstate = match &e {
            sqlx::Error::Database(d) => d.code().map(|c| c.into_owned()),
            _ => None,
        };
        let message = match &e {
            sqlx::Error::Database(d) => d.message().to_string(),
            sqlx::Error::PoolTimedOut => "the database did not answer in time".into(),
            other => other.to_string(),
        };
        DbFailure {
            sqlstate,
            message: redact_text(&message, &[]),
        }
    }
}

impl std::fmt::Display for DbFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.sqlstate {
            Some(c) => write!(f, "{} (SQLSTATE {c})", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl DbFailure {
    /// The login lacks the role (42501).
    pub fn is_permission(&self) -> bool {
        self.sqlstate.as_deref() == Some("42501")
    }

    /// Bad input refused by the extension (22023, 22004, 22P02...).
    pub fn is_bad_input(&self) -> bool {
        self.sqlstate
            .as_deref()
            .is_some_and(|c| c.starts_with("22"))
    }
}

/// One row of the failure breakdown.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct BreakdownRow {
    /// Provider (None when the image names none).
    pub provider: Option<String>,
    /// Error type (None when the image has none).
    pub error_type: Option<String>,
    /// `transient`, `permanent`, `ambiguous` or `unknown`.
    pub error_class: String,
    /// Failed images.
    pub count: i64,
}

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
    /// Image objects.
    pub total_images: i64,
    /// Failed images.
    pub failed_count: i64,
    /// Uploaded images.
    pub uploaded_count: i64,
    /// failed / images, percent.
    pub failure_rate_pct: f64,
    /// Priority score (`venue_image_priority_score`).
    pub priority_score: f64,
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

/// Reads the overview (scans the venues table once).
pub async fn overview(pool: &PgPool) -> Result<Overview, DbFailure> {
    let v: Option<Value> = sqlx::query_scalar("SELECT venue_images.venue_image_overview($1)")
        .bind(HIGH_PRIORITY_ROWS)
        .fetch_one(pool)
        .await?;
    match v {
        None => Ok(Overview::default()),
        Some(v) => serde_json::from_value(v).map_err(|e| DbFailure {
            sqlstate: None,
            message: format!("venue_image_overview returned an unexpected shape: {e}"),
        }),
    }
}

/// The retry queue by state.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct QueueCounts {
    /// Claimable now.
    pub due: i64,
    /// Waiting for their backoff.
    pub waiting: i64,
    /// Leased by an uploader: in flight.
    pub leased: i64,
    /// Their provider is paused.
    pub paused: i64,
}

impl QueueCounts {
    /// All jobs.
    pub fn total(&self) -> i64 {
        self.due + self.waiting + self.leased + self.paused
    }
}

/// A provider's rate and pause (`venue_image_provider_status`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ProviderStatus {
    /// Provider; `*` is the default rate and the global pause.
    pub provider: String,
    /// Effective requests per second (infinite: none).
    pub per_second: Option<f64>,
    /// Whether that is the built-in or `*` rate rather than one set for it.
    pub default_rate: Option<bool>,
    /// Paused until then.
    pub paused_until: Option<DateTime<Utc>>,
    /// Why.
    pub pause_reason: Option<String>,
    /// The last upload recorded for it.
    pub last_success_at: Option<DateTime<Utc>>,
    /// Last change.
    pub updated_at: Option<DateTime<Utc>>,
}

/// A run of the cleanup scan.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ScanRun {
    /// Started.
    pub started_at: DateTime<Utc>,
    /// Finished.
    pub finished_at: DateTime<Utc>,
    /// Who ran it.
    pub run_by: String,
    /// Venues queued.
    pub transient_queued: i64,
    /// Venues with permanent failures only.
    pub permanent_logged: i64,
    /// Venues left for review.
    pub ambiguous_skipped: i64,
    /// Images finalised as permanently_failed.
    pub finalized: i64,
    /// Venues whose value could not be read.
    pub errors: i64,
    /// Elements skipped.
    pub skipped_elements: i64,
    /// Jobs created.
    pub images_queued: i64,
    /// Duration.
    pub elapsed_ms: f64,
}

impl QueueCounts {
    fn add(&mut self, state: Option<&str>, n: i64) {
        match state {
            Some("due") => self.due += n,
            Some("waiting") => self.waiting += n,
            Some("leased") => self.leased += n,
            Some("paused") => self.paused += n,
            _ => {}
        }
    }
}

/// The queue, providers and last scan: cheap reads of the queue's own tables.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Live {
    /// Jobs by state.
    pub queue: QueueCounts,
    /// Jobs by provider and state.
    pub queue_by_provider: Vec<(String, QueueCounts)>,
    /// `*` first, then every provider with a row (rate set, paused, or used) or a job.
    pub providers: Vec<ProviderStatus>,
    /// The latest scan.
    pub last_scan: Option<ScanRun>,
}

/// Reads the queue by state, the providers and the last scan.
pub async fn live(pool: &PgPool) -> Result<Live, DbFailure> {
    let states = sqlx::query(
        "SELECT provider, state, count(*) FROM venue_images.venue_image_retry_queue
          GROUP BY provider, state ORDER BY provider, state",
    )
    .fetch_all(pool);
    // The providers with a row, those with queued images, and `*`; a provider without a
    // row has the `*` rate when one is set, else its built-in one (as the view computes).
    let providers = sqlx::query(
        "SELECT n.provider,
                coalesce(s.per_second, star.per_second, venue_images.venue_image_default_rate(n.provider)),
                coalesce(s.default_rate, true), s.paused_until, s.pause_reason, s.last_success_at,
                s.updated_at
           FROM (SELECT provider FROM venue_images.venue_image_provider_status
                 UNION SELECT provider FROM venue_images.venue_image_retry_queue WHERE provider IS NOT NULL
                 UNION SELECT '*') n
           LEFT JOIN venue_images.venue_image_provider_status s ON s.provider = n.provider
           LEFT JOIN LATERAL (SELECT d.per_second FROM venue_images.venue_image_provider_status d
                               WHERE d.provider = '*' AND NOT d.default_rate) star ON n.provider <> '*'
          ORDER BY n.provider = '*' DESC, n.provider",
    )
    .fetch_all(pool);
    let scan = sqlx::query(
        "SELECT started_at, finished_at, run_by, transient_queued, permanent_logged,
                ambiguous_skipped, finalized, errors, skipped_elements, images_queued, elapsed_ms
           FROM venue_images.venue_image_scans ORDER BY started_at DESC LIMIT 1",
    )
    .fetch_optional(pool);
    let (states, providers, scan) = tokio::try_join!(states, providers, scan)?;
    let mut queue = QueueCounts::default();
    let mut queue_by_provider: Vec<(String, QueueCounts)> = Vec::new();
    for r in states {
        let provider: Option<String> = r.try_get(0)?;
        let state: Option<String> = r.try_get(1)?;
        let n: i64 = r.try_get(2)?;
        queue.add(state.as_deref(), n);
        let provider = provider.unwrap_or_default();
        match queue_by_provider.last_mut() {
            Some((p, c)) if *p == provider => c.add(state.as_deref(), n),
            _ => {
                let mut c = QueueCounts::default();
                c.add(state.as_deref(), n);
                queue_by_provider.push((provider, c));
            }
        }
    }
    let providers = providers
        .iter()
        .map(|r| {
            Ok(ProviderStatus {
                provider: r.try_get::<Option<String>, _>(0)?.unwrap_or_default(),
                per_second: r.try_get(1)?,
                default_rate: r.try_get(2)?,
                paused_until: r.try_get(3)?,
                pause_reason: r.try_get(4)?,
                last_success_at: r.try_get(5)?,
                updated_at: r.try_get(6)?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    let last_scan = scan.map(|r| scan_run(&r)).transpose()?;
    Ok(Live {
        queue,
        queue_by_provider,
        providers,
        last_scan,
    })
}

fn scan_run(r: &PgRow) -> Result<ScanRun, sqlx::Error> {
    Ok(ScanRun {
        started_at: r.try_get("started_at")?,
        finished_at: r.try_get("finished_at")?,
        run_by: r.try_get("run_by")?,
        transient_queued: r.try_get("transient_queued")?,
        permanent_logged: r.try_get("permanent_logged")?,
        ambiguous_skipped: r.try_get("ambiguous_skipped")?,
        finalized: r.try_get("finalized")?,
        errors: r.try_get("errors")?,
        skipped_elements: r.try_get("skipped_elements")?,
        images_queued: r.try_get("images_queued")?,
        elapsed_ms: r.try_get("elapsed_ms")?,
    })
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

fn report_row(r: &PgRow) -> Result<ReportRow, sqlx::Error> {
    Ok(ReportRow {
        provider: r.try_get("provider")?,
        error_type: r.try_get("error_type")?,
        attempts: r.try_get::<Option<i64>, _>("attempts")?.unwrap_or(0),
        recovered: r.try_get::<Option<i64>, _>("recovered")?.unwrap_or(0),
        failed_again: r.try_get::<Option<i64>, _>("failed_again")?.unwrap_or(0),
        permanent_failures: r
            .try_get::<Option<i64>, _>("permanent_failures")?
            .unwrap_or(0),
        success_rate_pct: r.try_get("success_rate_pct")?,
        venues_recovered: r
            .try_get::<Option<i64>, _>("venues_recovered")?
            .unwrap_or(0),
        api_calls_saved: r.try_get::<Option<i64>, _>("api_calls_saved")?.unwrap_or(0),
        oldest_live_lease_seconds: r.try_get("oldest_live_lease_seconds")?,
    })
}

/// Reads the retry report and the timeline of a range (the attempt log, not the venues).
pub async fn recovery(pool: &PgPool, range: Range) -> Result<Recovery, DbFailure> {
    let report = sqlx::query("SELECT * FROM venue_images.venue_image_retry_report($1::interval)")
        .bind(range.since())
        .fetch_all(pool);
    // Every bucket of the range (the timeline only has buckets with attempts), aligned as
    // the timeline aligns them.
    let timeline = sqlx::query(
        "SELECT g.b AS start, t.attempts, t.recovered, t.failed_again, t.permanent_failures,
                t.success_rate_pct, t.api_calls_saved
           FROM generate_series(
                  date_bin($2::interval, now() - $1::interval, '2000-01-01 00:00:00+00'::timestamptz),
                  now(), $2::interval) AS g(b)
           LEFT JOIN venue_images.venue_image_recovery_timeline($1::interval, $2::interval) t
                  ON t.bucket_start = g.b
          ORDER BY g.b",
    )
    .bind(range.since())
    .bind(range.bucket())
    .fetch_all(pool);
    let (report, timeline) = tokio::try_join!(report, timeline)?;
    let mut rows = report
        .iter()
        .map(report_row)
        .collect::<Result<Vec<_>, _>>()?;
    // The total row comes first (provider and error type NULL).
    let total = match rows.first() {
        Some(r) if r.provider.is_none() && r.error_type.is_none() => rows.remove(0),
        _ => ReportRow::default(),
    };
    let buckets = timeline
        .iter()
        .map(|r| {
            Ok(Bucket {
                start: r.try_get("start")?,
                attempts: r.try_get::<Option<i64>, _>("attempts")?.unwrap_or(0),
                recovered: r.try_get::<Option<i64>, _>("recovered")?.unwrap_or(0),
                failed_again: r.try_get::<Option<i64>, _>("failed_again")?.unwrap_or(0),
                permanent_failures: r
                    .try_get::<Option<i64>, _>("permanent_failures")?
                    .unwrap_or(0),
                success_rate_pct: r.try_get("success_rate_pct")?,
                api_calls_saved: r.try_get::<Option<i64>, _>("api_calls_saved")?.unwrap_or(0),
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok(Recovery {
        range,
        total,
        rows,
        buckets,
    })
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

/// Venues whose id is `query` or whose name contains it.
pub async fn find_venues(
    pool: &PgPool,
    query: &str,
    max_rows: i32,
) -> Result<Vec<FoundVenue>, DbFailure> {
    let rows = sqlx::query(
        "SELECT id, name, city_id, total_images, failed_count, uploaded_count
           FROM venue_images.venue_image_find_venues($1, $2)",
    )
    .bind(query)
    .bind(max_rows)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .iter()
        .map(|r| {
            Ok(FoundVenue {
                id: r.try_get("id")?,
                name: r.try_get("name")?,
                city_id: r.try_get("city_id")?,
                total_images: r.try_get("total_images")?,
                failed_count: r.try_get("failed_count")?,
                uploaded_count: r.try_get("uploaded_count")?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?)
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

/// Rows of attempt history shown.
pub const ATTEMPT_ROWS: i64 = 100;

/// A venue's page: the venue (None when there is none with that id), its images, its
/// attempts.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct VenueDetail {
    /// The venue.
    pub venue: Option<FoundVenue>,
    /// Its images.
    pub images: Vec<Image>,
    /// Its latest attempts.
    pub attempts: Vec<Attempt>,
}

impl From<&PriorityVenue> for FoundVenue {
    fn from(v: &PriorityVenue) -> Self {
        let small = |n: i64| i32::try_from(n).unwrap_or(i32::MAX);
        FoundVenue {
            id: v.id.unwrap_or(0),
            name: v.name.clone(),
            city_id: v.city_id,
            total_images: small(v.total_images),
            failed_count: small(v.failed_count),
            uploaded_count: small(v.uploaded_count),
        }
    }
}

/// Reads one venue. `known` is the venue's name and city when the caller has them: the
/// extension's only lookup of a venue's name, `venue_image_find_venues`, also searches
/// every name (a scan of the venues table), so it is skipped when it can be.
pub async fn venue(
    pool: &PgPool,
    id: i64,
    known: Option<FoundVenue>,
) -> Result<VenueDetail, DbFailure> {
    let key = id.to_string();
    let found = async {
        match known {
            Some(v) => Ok(vec![v]),
            None => find_venues(pool, &key, 1).await,
        }
    };
    let images = sqlx::query(
        "SELECT element_index, provider, source_url, upload_status, error_type, error_class,
                retry_count, lifecycle, reason, job_id, job_state, next_attempt_at, imagekit_path
           FROM venue_images.venue_image_venue_images($1) ORDER BY element_index",
    )
    .bind(id)
    .fetch_all(pool);
    let attempts = sqlx::query(
        "SELECT at, outcome, provider, provider_url, retried_error_type, error_type, status_code,
                message, retry_count, worker
           FROM venue_images.venue_image_attempts WHERE venue_id = $1
          ORDER BY at DESC, attempt_id DESC LIMIT $2",
    )
    .bind(id)
    .bind(ATTEMPT_ROWS)
    .fetch_all(pool);
    let (found, images, attempts) = tokio::try_join!(
        found,
        async { images.await.map_err(DbFailure::from) },
        async { attempts.await.map_err(DbFailure::from) }
    )?;
    let images = images
        .iter()
        .map(|r| {
            Ok(Image {
                element_index: r.try_get("element_index")?,
                provider: r.try_get("provider")?,
                source_url: r.try_get("source_url")?,
                upload_status: r.try_get("upload_status")?,
                error_type: r.try_get("error_type")?,
                error_class: r.try_get("error_class")?,
                retry_count: r.try_get("retry_count")?,
                lifecycle: r.try_get("lifecycle")?,
                reason: r.try_get("reason")?,
                job_id: r.try_get("job_id")?,
                job_state: r.try_get("job_state")?,
                next_attempt_at: r.try_get("next_attempt_at")?,
                imagekit_path: r.try_get("imagekit_path")?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    let attempts = attempts
        .iter()
        .map(|r| {
            Ok(Attempt {
                at: r.try_get("at")?,
                outcome: r.try_get("outcome")?,
                provider: r.try_get("provider")?,
                provider_url: r.try_get("provider_url")?,
                retried_error_type: r.try_get("retried_error_type")?,
                error_type: r.try_get("error_type")?,
                status_code: r.try_get("status_code")?,
                message: r.try_get("message")?,
                retry_count: r.try_get("retry_count")?,
                worker: r.try_get("worker")?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok(VenueDetail {
        venue: found.into_iter().find(|v| v.id == id),
        images,
        attempts,
    })
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
    Scan(Box<ScanRun>),
}

/// Runs an action as the admin login.
pub async fn act(pool: &PgPool, action: &Action) -> Result<Done, DbFailure> {
    Ok(match action {
        Action::ForceRetry { venue_id } => {
            let n: Option<i32> =
                sqlx::query_scalar("SELECT venue_images.venue_image_force_retry($1)")
                    .bind(venue_id)
                    .fetch_one(pool)
                    .await?;
            Done::Count(n.unwrap_or(0).into())
        }
        Action::ForceRetryImage {
            venue_id,
            element_index,
        } => {
            let n: Option<i32> =
                sqlx::query_scalar("SELECT venue_images.venue_image_force_retry_image($1, $2)")
                    .bind(venue_id)
                    .bind(element_index)
                    .fetch_one(pool)
                    .await?;
            Done::Count(n.unwrap_or(0).into())
        }
        Action::Purge { venue_id } => {
            let n: Option<i32> =
                sqlx::query_scalar("SELECT venue_images.venue_image_purge_permanently_failed($1)")
                    .bind(venue_id)
                    .fetch_one(pool)
                    .await?;
            Done::Count(n.unwrap_or(0).into())
        }
        Action::Pause {
            provider,
            seconds,
            reason,
        } => {
            let until: Option<DateTime<Utc>> = sqlx::query_scalar(
                "SELECT venue_images.venue_image_pause_provider($1, now() + make_interval(secs => $2), $3)",
            )
            .bind(provider)
            .bind(*seconds as f64)
            .bind(reason)
            .fetch_one(pool)
            .await?;
            Done::PausedUntil(until)
        }
        Action::Resume { provider } => {
            let was: Option<bool> =
                sqlx::query_scalar("SELECT venue_images.venue_image_resume_provider($1)")
                    .bind(provider)
                    .fetch_one(pool)
                    .await?;
            Done::Resumed(was.unwrap_or(false))
        }
        Action::Scan => {
            let started: DateTime<Utc> = Utc::now();
            let r = sqlx::query("SELECT * FROM venue_images.venue_image_cleanup_scan()")
                .fetch_one(pool)
                .await?;
            Done::Scan(Box::new(ScanRun {
                started_at: started,
                finished_at: Utc::now(),
                run_by: String::new(),
                transient_queued: r.try_get("transient_queued")?,
                permanent_logged: r.try_get("permanent_logged")?,
                ambiguous_skipped: r.try_get("ambiguous_skipped")?,
                finalized: r.try_get("finalized")?,
                errors: r.try_get("errors")?,
                skipped_elements: r.try_get("skipped_elements")?,
                images_queued: r.try_get("images_queued")?,
                elapsed_ms: r.try_get("elapsed_ms")?,
            }))
        }
    })
}

/// A JSON value with every string redacted (what the JSON endpoints send).
pub fn redact_json(v: Value) -> Value {
    match v {
        Value::String(s) => Value::String(redact_text(&s, &[])),
        Value::Array(a) => Value::Array(a.into_iter().map(redact_json).collect()),
        Value::Object(o) => Value::Object(
            o.into_iter()
                .map(|(k, v)| (redact_text(&k, &[]), redact_json(v)))
                .collect(),
        ),
        other => other,
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
    }

    #[test]
    fn ranges() {
        for r in Range::ALL {
            assert_eq!(Range::parse(r.key()), Some(r));
        }
        assert_eq!(Range::parse("1y"), None);
    }

    #[test]
    fn json_is_redacted_everywhere() {
        let v = redact_json(
            json!({"a": ["https://h/p?key=SECRET1"], "b": {"c": "token=SECRET2 x"}, "n": 1}),
        );
        let s = v.to_string();
        assert!(!s.contains("SECRET1") && !s.contains("SECRET2"), "{s}");
        assert_eq!(v["n"], 1);
    }
}
