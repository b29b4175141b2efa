//! `venue_image_record_success` / `venue_image_record_failure`: the fenced write-back.
//!
//! In one short transaction: lock the job by `job_id` and `lease_token` (a wrong or stale
//! token changes nothing), lock the venue row, find the element by `provider_url`, patch
//! only that element (every other element and key stays byte for byte), and append to
//! the attempt log. The venue row is read *after* its lock is taken, so a concurrent
//! application write is never overwritten; if the application removed or replaced the
//! element meanwhile, the outcome goes to the log and the venue is left alone.

use super::{lock_venue, log_attempt, now_iso, require_jsonb, write_venue, Attempt};
use crate::errors::{Report, VenueError};
use crate::settings;
use crate::source::{self, VenueSource};
use pgrx::datum::Uuid;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;
use pgrx::spi::SpiClient;
use venue_images_core::image::{Image, Status};
use venue_images_core::jsonb::{parse_varlena, Container};
use venue_images_core::retry::{
    backoff_seconds, failure_outcome, find_by_hash, patch_failure, patch_success, redact_text,
    Failure, Success, UrlHash,
};

struct Job {
    job_id: i64,
    venue_id: i64,
    url_hash: Vec<u8>,
    provider: String,
    redacted_url: String,
    error_type: Option<String>,
    forced: bool,
    worker: Option<String>,
}

fn required<T>(v: Option<T>, name: &str) -> Result<T, VenueError> {
    v.ok_or_else(|| VenueError::NullArgument(name.to_string()))
}

/// Locks the job if `lease_token` is its current token.
fn lock_job(c: &mut SpiClient<'_>, job_id: i64, token: Uuid) -> Result<Option<Job>, VenueError> {
    let table = c.update(
        "SELECT job_id, venue_id, url_hash, provider, provider_url, error_type, forced, leased_by
           FROM venue_image_jobs WHERE job_id = $1 AND lease_token = $2 FOR UPDATE",
        Some(1),
        &[job_id.into(), token.into()],
    )?;
    if table.is_empty() {
        return Ok(None);
    }
    let r = table.first();
    Ok(Some(Job {
        job_id: r.get::<i64>(1)?.unwrap_or_default(),
        venue_id: r.get::<i64>(2)?.unwrap_or_default(),
        url_hash: r.get::<Vec<u8>>(3)?.unwrap_or_default(),
        provider: r.get::<String>(4)?.unwrap_or_default(),
        redacted_url: r.get::<String>(5)?.unwrap_or_default(),
        error_type: r.get::<String>(6)?,
        forced: r.get::<bool>(7)?.unwrap_or(false),
        worker: r.get::<String>(8)?,
    }))
}

/// Locks the venue and finds the job's element; `None` when the venue, its array or
/// the element is gone.
fn locate(
    c: &mut SpiClient<'_>,
    src: &VenueSource,
    job: &Job,
) -> Result<Option<Vec<u8>>, VenueError> {
    Ok(lock_venue(c, src, job.venue_id)?.flatten())
}

fn element<'a>(
    bytes: &'a [u8],
    job: &Job,
) -> Option<(Container<'a>, usize, Container<'a>, Status, i64)> {
    let arr = parse_varlena(bytes).ok()?;
    let hash: UrlHash = job.url_hash.as_slice().try_into().ok()?;
    let (index, obj) = find_by_hash(arr, &hash).ok()??;
    let img = Image { index, obj };
    let status = img.status().ok()?;
    let rc = img.retry_count().ok()?.max(0.0).floor() as i64;
    Some((arr, index, obj, status, rc))
}

fn superseded(c: &mut SpiClient<'_>, job: &Job, why: &str) -> Result<(), VenueError> {
    c.update(
        "DELETE FROM venue_image_jobs WHERE job_id = $1",
        None,
        &[job.job_id.into()],
    )?;
    log_attempt(
        c,
        &Attempt {
            job_id: Some(job.job_id),
            venue_id: job.venue_id,
            url_hash: Some(&job.url_hash),
            provider_url: Some(&job.redacted_url),
            provider: Some(&job.provider),
            worker: job.worker.as_deref(),
            retried_error_type: job.error_type.as_deref(),
            outcome: "superseded",
            message: Some(why),
            ..Default::default()
        },
    )
}

fn record_success(
    job_id: Option<i64>,
    lease_token: Option<Uuid>,
    url: Option<&str>,
    imagekit_path: Option<&str>,
    file_id: Option<&str>,
) -> Result<bool, VenueError> {
    let job_id = required(job_id, "job_id")?;
    let token = required(lease_token, "lease_token")?;
    let url = required(url, "url")?;
    let path = required(imagekit_path, "imagekit_path")?;
    if url.trim().is_empty() || path.trim().is_empty() {
        return Err(VenueError::InvalidParameter(
            "url and imagekit_path must not be empty".into(),
        ));
    }
    let src = source::resolve()?;
    require_jsonb(&src)?;
    Spi::connect_mut(|c| {
        let Some(job) = lock_job(c, job_id, token)? else {
            return Ok(false);
        };
        let now = now_iso(c)?;
        let Some(bytes) = locate(c, &src, &job)? else {
            superseded(c, &job, "venue or its images removed by the application")?;
            return Ok(true);
        };
        let Some((arr, index, obj, status, rc)) = element(&bytes, &job) else {
            superseded(c, &job, "image removed or replaced by the application")?;
            return Ok(true);
        };
        if status == Status::Uploaded {
            superseded(c, &job, "image already uploaded by the application")?;
            return Ok(true);
        }
        let patched = patch_success(
            arr,
            index,
            obj,
            &Success {
                url,
                imagekit_path: path,
                file_id,
                now: &now,
            },
        )?;
        write_venue(c, &src, job.venue_id, &patched)?;
        c.update(
            "DELETE FROM venue_image_jobs WHERE job_id = $1",
            None,
            &[job.job_id.into()],
        )?;
        log_attempt(
            c,
            &Attempt {
                job_id: Some(job.job_id),
                venue_id: job.venue_id,
                url_hash: Some(&job.url_hash),
                provider_url: Some(&job.redacted_url),
                provider: Some(&job.provider),
                worker: job.worker.as_deref(),
                retried_error_type: job.error_type.as_deref(),
                retry_count: Some((rc + 1) as i32),
                outcome: "uploaded",
                imagekit_path: Some(path),
                ..Default::default()
            },
        )?;
        Ok(true)
    })
}

/// Records a successful upload for a claimed image: `uploaded`, the new `url`,
/// `imagekit_path` and `imagekit_file_id`, `retry_count` + 1, `retried_at`, without
/// `error_details`. Returns false (and changes nothing) when `lease_token` is not the
/// job's current token; true when the outcome was recorded, including when the
/// application had removed or replaced the image meanwhile (then only the log changes).
#[pg_extern(volatile, security_definer, parallel_unsafe)]
#[search_path(@extschema@, pg_catalog, pg_temp)]
fn venue_image_record_success(
    job_id: Option<i64>,
    lease_token: Option<Uuid>,
    url: Option<&str>,
    imagekit_path: Option<&str>,
    file_id: default!(Option<&str>, "NULL"),
) -> Result<bool, ErrorReport> {
    record_success(job_id, lease_token, url, imagekit_path, file_id).report()
}

/// A uniform random number in [0, 1) from PostgreSQL's generator.
fn random_unit() -> f64 {
    // SAFETY: the global PRNG state is initialised by the backend.
    unsafe { pg_sys::pg_prng_double(&raw mut pg_sys::pg_global_prng_state) }
}

fn record_failure(
    job_id: Option<i64>,
    lease_token: Option<Uuid>,
    error_type: Option<&str>,
    status_code: Option<i32>,
    message: Option<&str>,
    retry_after_seconds: Option<i32>,
) -> Result<Option<String>, VenueError> {
    let job_id = required(job_id, "job_id")?;
    let token = required(lease_token, "lease_token")?;
    let error_type = required(error_type, "error_type")?.trim();
    if error_type.is_empty() || error_type.len() > 100 {
        return Err(VenueError::InvalidParameter(
            "error_type must be a non-empty name (e.g. rate_limited)".into(),
        ));
    }
    if let Some(s) = status_code {
        if !(100..=999).contains(&s) {
            return Err(VenueError::InvalidParameter(format!(
                "status_code must be an HTTP status (100-999) or NULL, got {s}"
            )));
        }
    }
    if retry_after_seconds.is_some_and(|r| r < 0) {
        return Err(VenueError::InvalidParameter(
            "retry_after_seconds must not be negative".into(),
        ));
    }
    let message = redact_text(message.unwrap_or(""));
    let classifier = settings::classifier();
    let max_retries = settings::max_retries();
    let base = settings::retry_base_seconds() as f64;
    let src = source::resolve()?;
    require_jsonb(&src)?;
    Spi::connect_mut(|c| {
        let Some(job) = lock_job(c, job_id, token)? else {
            return Ok(None);
        };
        let now = now_iso(c)?;
        let Some(bytes) = locate(c, &src, &job)? else {
            superseded(c, &job, "venue or its images removed by the application")?;
            return Ok(Some("superseded".into()));
        };
        let Some((arr, index, obj, status, rc)) = element(&bytes, &job) else {
            superseded(c, &job, "image removed or replaced by the application")?;
            return Ok(Some("superseded".into()));
        };
        let attemptable =
            status == Status::Failed || (job.forced && status == Status::PermanentlyFailed);
        if !attemptable {
            superseded(
                c,
                &job,
                "image no longer failed (changed by the application)",
            )?;
            return Ok(Some("superseded".into()));
        }
        let class = classifier.classify(Some(error_type));
        let outcome = failure_outcome(rc, class, max_retries);
        let patched = patch_failure(
            arr,
            index,
            obj,
            &Failure {
                error_type,
                status_code,
                message: &message,
                now: &now,
            },
            outcome,
        )?;
        write_venue(c, &src, job.venue_id, &patched)?;
        let new_status = if outcome.permanent {
            "permanently_failed"
        } else {
            "failed"
        };
        if outcome.permanent {
            c.update(
                "DELETE FROM venue_image_jobs WHERE job_id = $1",
                None,
                &[job.job_id.into()],
            )?;
        } else {
            let wait = backoff_seconds(
                base,
                outcome.retry_count,
                retry_after_seconds.map(f64::from),
                0.8 + 0.4 * random_unit(),
            );
            c.update(
                "UPDATE venue_image_jobs
                    SET lease_token = NULL, leased_by = NULL, leased_at = NULL,
                        lease_expires_at = NULL, not_before = NULL, forced = false,
                        retry_count = $2, error_type = $3,
                        next_attempt_at = now() + make_interval(secs => $4)
                  WHERE job_id = $1",
                None,
                &[
                    job.job_id.into(),
                    (outcome.retry_count as i32).into(),
                    error_type.into(),
                    wait.into(),
                ],
            )?;
        }
        log_attempt(
            c,
            &Attempt {
                job_id: Some(job.job_id),
                venue_id: job.venue_id,
                url_hash: Some(&job.url_hash),
                provider_url: Some(&job.redacted_url),
                provider: Some(&job.provider),
                worker: job.worker.as_deref(),
                retried_error_type: job.error_type.as_deref(),
                retry_count: Some(outcome.retry_count as i32),
                outcome: new_status,
                error_type: Some(error_type),
                status_code,
                message: Some(&message),
                ..Default::default()
            },
        )?;
        Ok(Some(new_status.into()))
    })
}

/// Records a failed attempt for a claimed image: new `error_details` (with
/// `retry_attempt`), `retry_count` + 1, `retried_at`; `permanently_failed` (with
/// `finalized_at`) when the error is permanent or retries are exhausted, otherwise
/// `failed` with the next attempt after `retry_base_seconds · 2^(n-1)` with jitter, or
/// `retry_after_seconds` if longer. Returns the image's new status, `superseded` when
/// the application changed the image meanwhile, or NULL (changing nothing) for a wrong
/// or stale `lease_token`.
#[pg_extern(volatile, security_definer, parallel_unsafe)]
#[search_path(@extschema@, pg_catalog, pg_temp)]
fn venue_image_record_failure(
    job_id: Option<i64>,
    lease_token: Option<Uuid>,
    error_type: Option<&str>,
    status_code: Option<i32>,
    message: Option<&str>,
    retry_after_seconds: default!(Option<i32>, "NULL"),
) -> Result<Option<String>, ErrorReport> {
    record_failure(
        job_id,
        lease_token,
        error_type,
        status_code,
        message,
        retry_after_seconds,
    )
    .report()
}
