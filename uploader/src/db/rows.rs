//! What the extension's functions return, typed. Each row type is declared once and read
//! from its function's columns in one place.

use super::{get, DbError};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgRow;
pub use venue_images_core::retry::{OutcomeRecord, QueueState, WriteBackStatus};

/// Oldest extension version whose functions this uploader calls.
pub const REQUIRED_EXTENSION_VERSION: &str = "0.4.0";

/// One leased image (`venue_image_claim`).
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

    pub(crate) fn read(r: &PgRow) -> Result<Claim, DbError> {
        Ok(Claim {
            job_id: get(r, 0)?,
            lease_token: get(r, 1)?,
            venue_id: get(r, 2)?,
            provider: get(r, 3)?,
            provider_url: get(r, 4)?,
            folder: get(r, 5)?,
            file_name: get(r, 6)?,
            attempt: get(r, 7)?,
            not_before: get(r, 8)?,
        })
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

impl ProviderState {
    pub(crate) fn read(r: &PgRow) -> Result<ProviderState, DbError> {
        Ok(ProviderState {
            provider: get(r, 0)?,
            paused_until: get(r, 1)?,
            pause_reason: get(r, 2)?,
            last_success_at: get(r, 3)?,
        })
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

impl Summary {
    pub(crate) fn read(r: &PgRow) -> Result<Summary, DbError> {
        Ok(Summary {
            total_venues_with_failures: get(r, 0)?,
            total_failed_images: get(r, 1)?,
            total_uploaded_images: get(r, 2)?,
            average_failure_rate: get(r, 3)?,
            venues_with_transient: get(r, 4)?,
            venues_with_permanent: get(r, 5)?,
            venues_with_ambiguous: get(r, 6)?,
            venues_scanned: get(r, 7)?,
        })
    }
}

/// One row of the failure breakdown (`venue_image_failure_breakdown`, and the
/// `breakdown` of `venue_image_overview`).
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

impl BreakdownRow {
    pub(crate) fn read(r: &PgRow) -> Result<BreakdownRow, DbError> {
        Ok(BreakdownRow {
            provider: get(r, 0)?,
            error_type: get(r, 1)?,
            error_class: get(r, 2)?,
            count: get(r, 3)?,
        })
    }
}

/// What a cleanup scan did (`venue_image_cleanup_scan`, `venue_image_scheduled_scan`).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
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

impl ScanResult {
    /// Reads the eight counts starting at column `at`, in the functions' order.
    pub(crate) fn read(r: &PgRow, at: usize) -> Result<ScanResult, DbError> {
        Ok(ScanResult {
            transient_queued: get(r, at)?,
            permanent_logged: get(r, at + 1)?,
            ambiguous_skipped: get(r, at + 2)?,
            finalized: get(r, at + 3)?,
            errors: get(r, at + 4)?,
            elapsed_ms: get(r, at + 5)?,
            skipped_elements: get(r, at + 6)?,
            images_queued: get(r, at + 7)?,
        })
    }
}

/// A logged run of the cleanup scan (`venue_image_scan_log`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ScanRun {
    /// Started.
    pub started_at: DateTime<Utc>,
    /// Finished.
    pub finished_at: DateTime<Utc>,
    /// Who ran it.
    pub run_by: String,
    /// What it did.
    #[serde(flatten)]
    pub result: ScanResult,
}

impl ScanRun {
    pub(crate) fn read(r: &PgRow) -> Result<ScanRun, DbError> {
        Ok(ScanRun {
            started_at: get(r, 0)?,
            finished_at: get(r, 1)?,
            run_by: get(r, 2)?,
            result: ScanResult::read(r, 3)?,
        })
    }
}

/// Images in the retry queue by state (`venue_image_queue_summary`).
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
    /// All of them.
    pub total: i64,
}

impl QueueCounts {
    /// The count of one state.
    pub fn of(&self, state: QueueState) -> i64 {
        match state {
            QueueState::Due => self.due,
            QueueState::Waiting => self.waiting,
            QueueState::Leased => self.leased,
            QueueState::Paused => self.paused,
        }
    }
}

/// The queue: the total and each provider's counts (`venue_image_queue_summary`).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct QueueSummary {
    /// Every job.
    pub total: QueueCounts,
    /// By provider, in name order.
    pub by_provider: Vec<(String, QueueCounts)>,
}

impl QueueSummary {
    pub(crate) fn read(rows: &[PgRow]) -> Result<QueueSummary, DbError> {
        let mut s = QueueSummary::default();
        for r in rows {
            let provider: Option<String> = get(r, 0)?;
            let counts = QueueCounts {
                due: get(r, 1)?,
                waiting: get(r, 2)?,
                leased: get(r, 3)?,
                paused: get(r, 4)?,
                total: get(r, 5)?,
            };
            match provider {
                None => s.total = counts,
                Some(p) => s.by_provider.push((p, counts)),
            }
        }
        Ok(s)
    }
}

/// A provider's rate and pause (`venue_image_provider_overview`).
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
    /// Images of it in the queue.
    pub queued: i64,
}

impl ProviderStatus {
    pub(crate) fn read(r: &PgRow) -> Result<ProviderStatus, DbError> {
        Ok(ProviderStatus {
            provider: get(r, 0)?,
            per_second: get(r, 1)?,
            default_rate: get(r, 2)?,
            paused_until: get(r, 3)?,
            pause_reason: get(r, 4)?,
            last_success_at: get(r, 5)?,
            updated_at: get(r, 6)?,
            queued: get(r, 7)?,
        })
    }
}
