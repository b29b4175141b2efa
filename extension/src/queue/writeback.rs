//! The fenced write-back: `venue_image_record_success`, `venue_image_record_failure`,
//! and the batch form `venue_image_record_results`, which all share one path.
//!
//! In one short transaction: lock the jobs whose `lease_token` matches (a wrong or stale
//! token changes nothing), then each venue row in id order, apply each outcome with the
//! core's [`Policy::apply`] to every copy of its image (every other element and key stays
//! byte for byte), rewrite the row once, update or delete the jobs, and append to the
//! attempt log. The venue row is read *after* its lock is taken, so a concurrent
//! application write is never overwritten; if the application removed or replaced an
//! image meanwhile, the outcome goes to the log (`superseded`) and the venue is left alone.

use super::{log_attempts, now_iso, read_venue, require_jsonb, write_venue, Attempt};
use crate::datum::Jsonb;
use crate::errors::{Report, VenueError};
use crate::plans;
use crate::settings;
use pgrx::datum::Uuid;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;
use pgrx::spi::SpiClient;
use std::collections::{BTreeMap, HashMap};
use venue_images_core::jsonb::{parse_varlena, to_json_text};
use venue_images_core::retry::{
    clean_message, replace_elements, AttemptOutcome, JobNext, OutcomeRecord, Reported, UrlHash,
    WriteBackStatus,
};

/// One reported outcome, validated.
pub(crate) struct Incoming<'a> {
    pub job_id: i64,
    pub token: Uuid,
    pub reported: Reported<'a>,
}

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

/// A uniform random number in [0, 1) from PostgreSQL's generator.
fn random_unit() -> f64 {
    // SAFETY: the global PRNG state is initialised by the backend.
    unsafe { pg_sys::pg_prng_double(&raw mut pg_sys::pg_global_prng_state) }
}

/// Records outcomes; returns each entry's result in order.
pub(crate) fn record(items: &[Incoming<'_>]) -> Result<Vec<(i64, WriteBackStatus)>, VenueError> {
    if items.is_empty() {
        return Ok(Vec::new());
    }
    let policy = settings::policy();
    let src = plans::venue_source()?;
    require_jsonb(&src)?;
    Spi::connect_mut(|c| {
        let now = now_iso(c)?;
        // Lock the jobs whose token matches, in id order.
        let mut jobs: HashMap<i64, (Job, Uuid)> = HashMap::new();
        for row in plans::run(
            c,
            "SELECT j.job_id, j.venue_id, j.url_hash, j.provider, j.provider_url, j.error_type,
                    j.forced, j.leased_by, j.lease_token
               FROM venue_images.venue_image_jobs j
               JOIN ROWS FROM (pg_catalog.unnest($1::bigint[]),
                               pg_catalog.unnest($2::pg_catalog.uuid[])) AS t(id, token)
                 ON j.job_id OPERATOR(pg_catalog.=) t.id AND j.lease_token OPERATOR(pg_catalog.=) t.token
              ORDER BY j.job_id
                FOR UPDATE OF j",
            &[
                items.iter().map(|r| r.job_id).collect::<Vec<i64>>().into(),
                items.iter().map(|r| r.token).collect::<Vec<Uuid>>().into(),
            ],
        )? {
            let token = row
                .get::<Uuid>(9)?
                .ok_or_else(|| VenueError::Spi("locked job without a token".into()))?;
            let job = Job {
                job_id: row.get::<i64>(1)?.unwrap_or_default(),
                venue_id: row.get::<i64>(2)?.unwrap_or_default(),
                url_hash: row.get::<Vec<u8>>(3)?.unwrap_or_default(),
                provider: row.get::<String>(4)?.unwrap_or_default(),
                redacted_url: row.get::<String>(5)?.unwrap_or_default(),
                error_type: row.get::<String>(6)?,
                forced: row.get::<bool>(7)?.unwrap_or(false),
                worker: row.get::<String>(8)?,
            };
            jobs.insert(job.job_id, (job, token));
        }
        // An entry counts when its token is the job's current one; only the first such
        // entry of a job does.
        let mut results = vec![WriteBackStatus::Stale; items.len()];
        let mut taken = std::collections::HashSet::new();
        let mut by_venue: BTreeMap<i64, Vec<(usize, &Incoming<'_>, &Job)>> = BTreeMap::new();
        for (i, r) in items.iter().enumerate() {
            if let Some((job, token)) = jobs.get(&r.job_id) {
                if *token == r.token && taken.insert(r.job_id) {
                    by_venue.entry(job.venue_id).or_default().push((i, r, job));
                }
            }
        }
        let mut delete: Vec<i64> = Vec::new();
        let mut retry: Vec<(i64, i32, String, f64)> = Vec::new();
        let mut log: Vec<Attempt> = Vec::new();
        // Each venue row: lock, patch every reported image, rewrite once.
        for (venue_id, entries) in &by_venue {
            let bytes = read_venue(c, &src, *venue_id, true)?.flatten();
            let arr = bytes
                .as_deref()
                .and_then(|b| parse_varlena(b).ok())
                .filter(|a| a.is_array());
            let mut replacements = Vec::new();
            for (i, incoming, job) in entries {
                let entry = log_entry(job);
                let Some(arr) = arr else {
                    delete.push(job.job_id);
                    results[*i] = WriteBackStatus::Superseded;
                    log.push(Attempt {
                        outcome: Some(AttemptOutcome::Superseded),
                        message: Some("venue or its images removed by the application".into()),
                        ..entry
                    });
                    continue;
                };
                let hash: Option<UrlHash> = job.url_hash.as_slice().try_into().ok();
                let applied = match hash {
                    Some(h) => policy.apply(
                        arr,
                        &h,
                        job.forced,
                        &incoming.reported,
                        &now,
                        0.8 + 0.4 * random_unit(),
                    )?,
                    None => return Err(VenueError::Spi("job without an image hash".into())),
                };
                results[*i] = applied.status;
                match applied.job {
                    JobNext::Delete => delete.push(job.job_id),
                    JobNext::Retry { wait_seconds } => {
                        let Reported::Failed { error_type, .. } = &incoming.reported else {
                            unreachable!("only failures are retried")
                        };
                        retry.push((
                            job.job_id,
                            applied.retry_count.unwrap_or(0).clamp(0, i32::MAX as i64) as i32,
                            error_type.to_string(),
                            wait_seconds,
                        ));
                    }
                }
                let mut row = Attempt {
                    outcome: Some(applied.outcome),
                    retry_count: applied.retry_count,
                    message: applied.note.map(str::to_string),
                    ..entry
                };
                match &incoming.reported {
                    Reported::Uploaded { imagekit_path, .. } => {
                        if applied.status == WriteBackStatus::Uploaded {
                            row.imagekit_path = Some(imagekit_path.to_string());
                        }
                    }
                    Reported::Failed {
                        error_type,
                        status_code,
                        message,
                        ..
                    } => {
                        if applied.status != WriteBackStatus::Superseded {
                            row.error_type = Some(error_type.to_string());
                            row.status_code = *status_code;
                            row.message = Some(clean_message(message));
                        }
                    }
                }
                log.push(row);
                replacements.extend(applied.replacements);
            }
            if let (Some(arr), false) = (arr, replacements.is_empty()) {
                let node = replace_elements(arr, replacements)?;
                write_venue(c, &src, *venue_id, &node)?;
            }
        }
        flush(c, &delete, &retry)?;
        let recovered: Vec<String> = log
            .iter()
            .filter(|a| a.outcome == Some(AttemptOutcome::Uploaded))
            .filter_map(|a| a.provider.clone())
            .collect();
        if !recovered.is_empty() {
            // What uploaders ask to tell an outage from one image's dead host.
            plans::run(
                c,
                "UPDATE venue_images.venue_image_providers SET last_success_at = pg_catalog.now()
                  WHERE provider OPERATOR(pg_catalog.=) ANY($1)
                    AND (last_success_at IS NULL
                         OR last_success_at OPERATOR(pg_catalog.<>) pg_catalog.now())",
                &[recovered.into()],
            )?;
        }
        log_attempts(c, &log)?;
        Ok(items.iter().map(|r| r.job_id).zip(results).collect())
    })
}

fn log_entry(job: &Job) -> Attempt {
    Attempt {
        job_id: Some(job.job_id),
        venue_id: job.venue_id,
        url_hash: Some(job.url_hash.clone()),
        provider_url: Some(job.redacted_url.clone()),
        provider: Some(job.provider.clone()),
        worker: job.worker.clone(),
        retried_error_type: job.error_type.clone(),
        ..Default::default()
    }
}

/// Deletes finished jobs and re-queues the others with their backoff.
fn flush(
    c: &mut SpiClient<'_>,
    delete: &[i64],
    retry: &[(i64, i32, String, f64)],
) -> Result<(), VenueError> {
    if !delete.is_empty() {
        plans::run(
            c,
            "DELETE FROM venue_images.venue_image_jobs WHERE job_id OPERATOR(pg_catalog.=) ANY($1)",
            &[delete.to_vec().into()],
        )?;
    }
    if !retry.is_empty() {
        plans::run(
            c,
            "UPDATE venue_images.venue_image_jobs j
                SET lease_token = NULL, leased_by = NULL, leased_at = NULL,
                    lease_expires_at = NULL, not_before = NULL, forced = false,
                    retry_count = t.rc, error_type = t.et,
                    next_attempt_at = pg_catalog.now() OPERATOR(pg_catalog.+)
                                      pg_catalog.make_interval(secs => t.wait)
               FROM ROWS FROM (pg_catalog.unnest($1::bigint[]), pg_catalog.unnest($2::int[]),
                               pg_catalog.unnest($3::pg_catalog.text[]),
                               pg_catalog.unnest($4::pg_catalog.float8[])) AS t(id, rc, et, wait)
              WHERE j.job_id OPERATOR(pg_catalog.=) t.id",
            &[
                retry.iter().map(|r| r.0).collect::<Vec<i64>>().into(),
                retry.iter().map(|r| r.1).collect::<Vec<i32>>().into(),
                retry
                    .iter()
                    .map(|r| r.2.clone())
                    .collect::<Vec<String>>()
                    .into(),
                retry.iter().map(|r| r.3).collect::<Vec<f64>>().into(),
            ],
        )?;
    }
    Ok(())
}

fn required<T>(v: Option<T>, name: &str) -> Result<T, VenueError> {
    v.ok_or_else(|| VenueError::NullArgument(name.to_string()))
}

fn invalid(e: venue_images_core::retry::OutcomeError) -> VenueError {
    VenueError::InvalidParameter(e.0)
}

/// Records a successful upload for a claimed image: every copy of it becomes `uploaded`
/// with the new `url`, `imagekit_path` and `imagekit_file_id`, `retry_count` + 1 and
/// `retried_at`, without `error_details` (a source that lived in `url` is kept as
/// `provider_url`). The URL must be http(s) and start with
/// `venue_images.imagekit_url_prefix` when that is set (22023 otherwise). Returns false
/// (and changes nothing) when `lease_token` is not the job's current token; true when the
/// outcome was recorded, including when the application had removed or replaced the
/// image meanwhile (then only the log changes).
#[pg_extern(volatile, security_definer, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn venue_image_record_success(
    job_id: Option<i64>,
    lease_token: Option<Uuid>,
    url: Option<&str>,
    imagekit_path: Option<&str>,
    file_id: default!(Option<&str>, "NULL"),
) -> Result<bool, ErrorReport> {
    let run = || -> Result<bool, VenueError> {
        let prefix = settings::imagekit_url_prefix();
        let item = Incoming {
            job_id: required(job_id, "job_id")?,
            token: required(lease_token, "lease_token")?,
            reported: Reported::uploaded(
                required(url, "url")?,
                required(imagekit_path, "imagekit_path")?,
                file_id,
                prefix.as_deref(),
            )
            .map_err(invalid)?,
        };
        Ok(record(&[item])?[0].1 != WriteBackStatus::Stale)
    };
    run().report()
}

/// Records a failed attempt for a claimed image, on every copy of it: new
/// `error_details` (with `retry_attempt`), `retry_count` + 1, `retried_at`. A permanent
/// error type, or a transient one that reaches `venue_images.max_retries`, makes it
/// `permanently_failed` (with `finalized_at`); another transient one queues it again after
/// `retry_base_seconds · 2^(n-1)` with jitter, or `retry_after_seconds` if longer; an
/// ambiguous or empty one leaves it `failed` for manual review (not queued again).
/// Returns the image's new status (`failed` or `permanently_failed`), `superseded` when
/// the application changed the image meanwhile, or NULL (changing nothing) for a wrong or
/// stale `lease_token`.
#[pg_extern(volatile, security_definer, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn venue_image_record_failure(
    job_id: Option<i64>,
    lease_token: Option<Uuid>,
    error_type: Option<&str>,
    status_code: Option<i32>,
    message: Option<&str>,
    retry_after_seconds: default!(Option<i32>, "NULL"),
) -> Result<Option<String>, ErrorReport> {
    let run = || -> Result<Option<String>, VenueError> {
        let item = Incoming {
            job_id: required(job_id, "job_id")?,
            token: required(lease_token, "lease_token")?,
            reported: Reported::failed(
                required(error_type, "error_type")?,
                status_code.map(i64::from),
                message.unwrap_or(""),
                retry_after_seconds.map(f64::from),
            )
            .map_err(invalid)?,
        };
        let status = record(&[item])?[0].1;
        Ok((status != WriteBackStatus::Stale).then(|| status.as_str().to_string()))
    };
    run().report()
}

fn parse_token(s: &str, i: usize) -> Result<Uuid, VenueError> {
    let hex: String = s.chars().filter(|c| *c != '-').collect();
    let bytes: Option<Vec<u8>> = (hex.len() == 32)
        .then(|| {
            (0..16)
                .map(|k| u8::from_str_radix(hex.get(2 * k..2 * k + 2)?, 16).ok())
                .collect()
        })
        .flatten();
    bytes
        .and_then(|b| Uuid::from_slice(&b).ok())
        .ok_or_else(|| {
            VenueError::InvalidParameter(format!("result {i}: lease_token is not a UUID"))
        })
}

/// Records many outcomes at once (what the uploader does): one row rewrite per venue.
/// `results` is a JSON array of objects, each `{"job_id", "lease_token", "url",
/// "imagekit_path", "file_id"}` for an upload or `{"job_id", "lease_token",
/// "error_type", "status_code", "message", "retry_after_seconds"}` for a failure
/// (`venue_images_core::retry::OutcomeRecord`; unknown keys are refused). One entry that
/// cannot be recorded refuses the whole call (22023, naming the entry); uploaders then
/// record entries one by one. Returns each entry's job and result: the image's new
/// status, `superseded`, or `stale` (nothing changed).
#[pg_extern(volatile, strict, security_definer, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn venue_image_record_results(
    results: Jsonb<'_>,
) -> Result<TableIterator<'static, (name!(job_id, i64), name!(status, String))>, ErrorReport> {
    let run = || -> Result<Vec<(i64, String)>, VenueError> {
        let root = results.container()?;
        if !root.is_array() {
            return Err(VenueError::InvalidParameter(
                "results must be a JSON array of outcome objects".into(),
            ));
        }
        let text = to_json_text(&root)?;
        let records: Vec<OutcomeRecord> = serde_json::from_str(&text).map_err(|e| {
            VenueError::InvalidParameter(format!("results: {}", clean_message(&e.to_string())))
        })?;
        let prefix = settings::imagekit_url_prefix();
        let mut items = Vec::with_capacity(records.len());
        for (i, r) in records.iter().enumerate() {
            items.push(Incoming {
                job_id: r.job_id,
                token: parse_token(&r.lease_token, i)?,
                reported: r
                    .reported(prefix.as_deref())
                    .map_err(|e| VenueError::InvalidParameter(format!("result {i}: {}", e.0)))?,
            });
        }
        Ok(record(&items)?
            .into_iter()
            .map(|(id, s)| (id, s.as_str().to_string()))
            .collect())
    };
    Ok(TableIterator::new(run().report()?))
}
