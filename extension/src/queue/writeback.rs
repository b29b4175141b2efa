//! The fenced write-back: `venue_image_record_success`, `venue_image_record_failure`,
//! and the batch form `venue_image_record_results`, which all share one path.
//!
//! In one short transaction: lock the jobs whose `lease_token` matches (a wrong or stale
//! token changes nothing), then each venue row in id order, find each element by
//! `provider_url`, patch only those elements (every other element and key stays byte
//! for byte), rewrite the row once, and append to the attempt log. The venue row is read
//! *after* its lock is taken, so a concurrent application write is never overwritten; if
//! the application removed or replaced an element meanwhile, the outcome goes to the log
//! and the venue is left alone.

use super::{read_venue, require_jsonb, write_venue};
use crate::datum::Jsonb;
use crate::errors::{Report, VenueError};
use crate::plans;
use crate::settings;
use pgrx::datum::Uuid;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;
use pgrx::spi::SpiClient;
use std::collections::{BTreeMap, HashMap};
use venue_images_core::classify::Classifier;
use venue_images_core::image::{Image, Status};
use venue_images_core::jsonb::{parse_varlena, Value};
use venue_images_core::retry::{
    backoff_seconds, failure_element, failure_outcome, find_by_hash, redact_text, replace_elements,
    success_element, Failure, Success, UrlHash,
};

/// What happened to one attempt.
pub(crate) enum Outcome {
    /// Uploaded to ImageKit.
    Uploaded {
        url: String,
        imagekit_path: String,
        file_id: Option<String>,
    },
    /// Failed.
    Failed {
        error_type: String,
        status_code: Option<i32>,
        message: String,
        retry_after: Option<i32>,
    },
}

/// One reported outcome.
pub(crate) struct Reported {
    pub job_id: i64,
    pub token: Uuid,
    pub outcome: Outcome,
}

fn required<T>(v: Option<T>, name: &str) -> Result<T, VenueError> {
    v.ok_or_else(|| VenueError::NullArgument(name.to_string()))
}

fn success(
    url: Option<&str>,
    path: Option<&str>,
    file_id: Option<&str>,
) -> Result<Outcome, VenueError> {
    let url = required(url, "url")?;
    let path = required(path, "imagekit_path")?;
    if url.trim().is_empty() || path.trim().is_empty() {
        return Err(VenueError::InvalidParameter(
            "url and imagekit_path must not be empty".into(),
        ));
    }
    Ok(Outcome::Uploaded {
        url: url.to_string(),
        imagekit_path: path.to_string(),
        file_id: file_id.map(str::to_string),
    })
}

fn failure(
    error_type: Option<&str>,
    status_code: Option<i32>,
    message: Option<&str>,
    retry_after: Option<i32>,
) -> Result<Outcome, VenueError> {
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
    if retry_after.is_some_and(|r| r < 0) {
        return Err(VenueError::InvalidParameter(
            "retry_after_seconds must not be negative".into(),
        ));
    }
    Ok(Outcome::Failed {
        error_type: error_type.to_string(),
        status_code,
        message: redact_text(message.unwrap_or("")),
        retry_after,
    })
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
    token: Uuid,
}

/// Rows for the attempt log and the job table, collected and written in bulk.
#[derive(Default)]
struct Effects {
    delete: Vec<i64>,
    retry: Vec<(i64, i32, String, f64)>,
    log: Vec<LogRow>,
}

struct LogRow {
    job_id: i64,
    venue_id: i64,
    url_hash: Vec<u8>,
    provider_url: String,
    provider: String,
    worker: Option<String>,
    retried_error_type: Option<String>,
    retry_count: Option<i32>,
    outcome: &'static str,
    error_type: Option<String>,
    status_code: Option<i32>,
    message: Option<String>,
    imagekit_path: Option<String>,
}

/// One field of every log row, as an array parameter of the batched INSERT.
fn column<T>(rows: &[LogRow], field: impl Fn(&LogRow) -> T) -> Vec<T> {
    rows.iter().map(field).collect()
}

impl Effects {
    fn log(&mut self, job: &Job, outcome: &'static str) -> &mut LogRow {
        self.log.push(LogRow {
            job_id: job.job_id,
            venue_id: job.venue_id,
            url_hash: job.url_hash.clone(),
            provider_url: job.redacted_url.clone(),
            provider: job.provider.clone(),
            worker: job.worker.clone(),
            retried_error_type: job.error_type.clone(),
            retry_count: None,
            outcome,
            error_type: None,
            status_code: None,
            message: None,
            imagekit_path: None,
        });
        self.log.last_mut().expect("just pushed")
    }

    fn superseded(&mut self, job: &Job, why: &str) {
        self.delete.push(job.job_id);
        self.log(job, "superseded").message = Some(why.to_string());
    }
}

/// A uniform random number in [0, 1) from PostgreSQL's generator.
fn random_unit() -> f64 {
    // SAFETY: the global PRNG state is initialised by the backend.
    unsafe { pg_sys::pg_prng_double(&raw mut pg_sys::pg_global_prng_state) }
}

/// Records outcomes; returns each job's result: the image's new status, `superseded`,
/// or `stale` (wrong or expired-and-reclaimed token: nothing changed).
pub(crate) fn record(reports: Vec<Reported>) -> Result<Vec<(i64, &'static str)>, VenueError> {
    if reports.is_empty() {
        return Ok(Vec::new());
    }
    let classifier = settings::classifier();
    let max_retries = settings::max_retries();
    let base = settings::retry_base_seconds() as f64;
    let src = plans::venue_source()?;
    require_jsonb(&src)?;
    Spi::connect_mut(|c| {
        // Lock the jobs whose token matches, in id order.
        let ids: Vec<i64> = reports.iter().map(|r| r.job_id).collect();
        let tokens: Vec<Uuid> = reports.iter().map(|r| r.token).collect();
        let mut jobs: HashMap<i64, Job> = HashMap::new();
        let mut now = String::new();
        for row in plans::run(
            c,
            r#"SELECT j.job_id, j.venue_id, j.url_hash, j.provider, j.provider_url, j.error_type,
                      j.forced, j.leased_by, j.lease_token,
                      to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
                 FROM venue_image_jobs j
                 JOIN unnest($1::bigint[], $2::uuid[]) AS t(id, token)
                   ON j.job_id = t.id AND j.lease_token = t.token
                ORDER BY j.job_id
                  FOR UPDATE OF j"#,
            &[ids.into(), tokens.into()],
        )? {
            let job = Job {
                job_id: row.get::<i64>(1)?.unwrap_or_default(),
                venue_id: row.get::<i64>(2)?.unwrap_or_default(),
                url_hash: row.get::<Vec<u8>>(3)?.unwrap_or_default(),
                provider: row.get::<String>(4)?.unwrap_or_default(),
                redacted_url: row.get::<String>(5)?.unwrap_or_default(),
                error_type: row.get::<String>(6)?,
                forced: row.get::<bool>(7)?.unwrap_or(false),
                worker: row.get::<String>(8)?,
                token: row.get::<Uuid>(9)?.expect("locked jobs have a token"),
            };
            now = row.get::<String>(10)?.unwrap_or_default();
            jobs.insert(job.job_id, job);
        }
        // One result per reported entry: an entry counts when its token is the job's
        // current one, and only the first such entry of a job does.
        let mut results: Vec<&'static str> = vec!["stale"; reports.len()];
        let mut taken: HashMap<i64, usize> = HashMap::new();
        let mut by_venue: BTreeMap<i64, Vec<(usize, &Reported, &Job)>> = BTreeMap::new();
        for (i, r) in reports.iter().enumerate() {
            if let Some(job) = jobs.get(&r.job_id).filter(|j| j.token == r.token) {
                if let std::collections::hash_map::Entry::Vacant(v) = taken.entry(r.job_id) {
                    v.insert(i);
                    by_venue.entry(job.venue_id).or_default().push((i, r, job));
                }
            }
        }
        let mut fx = Effects::default();
        // Each venue row: lock, patch every reported element, rewrite once.
        for (venue_id, items) in &by_venue {
            let bytes = read_venue(c, &src, *venue_id, true)?.flatten();
            let arr = bytes
                .as_deref()
                .and_then(|b| parse_varlena(b).ok())
                .filter(|a| a.is_array());
            let Some(arr) = arr else {
                for (i, _, job) in items {
                    fx.superseded(job, "venue or its images removed by the application");
                    results[*i] = "superseded";
                }
                continue;
            };
            let mut replacements = Vec::new();
            for (i, report, job) in items {
                let status = apply(
                    arr,
                    report,
                    job,
                    &classifier,
                    max_retries,
                    base,
                    &now,
                    &mut replacements,
                    &mut fx,
                )?;
                results[*i] = status;
            }
            if !replacements.is_empty() {
                let node = replace_elements(arr, replacements)?;
                write_venue(c, &src, *venue_id, &node)?;
            }
        }
        flush(c, fx)?;
        Ok(reports.iter().map(|r| r.job_id).zip(results).collect())
    })
}

/// Applies one outcome to its element; returns the result for the caller.
#[allow(clippy::too_many_arguments)]
fn apply<'a>(
    arr: venue_images_core::jsonb::Container<'a>,
    report: &'a Reported,
    job: &Job,
    classifier: &Classifier,
    max_retries: i64,
    base: f64,
    now: &'a str,
    replacements: &mut Vec<(usize, venue_images_core::jsonb::Node<'a>)>,
    fx: &mut Effects,
) -> Result<&'static str, VenueError> {
    let found = job
        .url_hash
        .as_slice()
        .try_into()
        .ok()
        .and_then(|h: UrlHash| find_by_hash(arr, &h).ok().flatten());
    let Some((index, obj)) = found else {
        fx.superseded(job, "image removed or replaced by the application");
        return Ok("superseded");
    };
    let img = Image { index, obj };
    let (Ok(status), Ok(rc)) = (img.status(), img.retry_count()) else {
        fx.superseded(job, "image changed by the application (unreadable keys)");
        return Ok("superseded");
    };
    let rc = rc.max(0.0).floor() as i64;
    match &report.outcome {
        Outcome::Uploaded {
            url,
            imagekit_path,
            file_id,
        } => {
            if status == Status::Uploaded {
                fx.superseded(job, "image already uploaded by the application");
                return Ok("superseded");
            }
            let node = success_element(
                index,
                obj,
                &Success {
                    url,
                    imagekit_path,
                    file_id: file_id.as_deref(),
                    now,
                },
            )?;
            replacements.push((index, node));
            fx.delete.push(job.job_id);
            let log = fx.log(job, "uploaded");
            log.retry_count = Some((rc + 1) as i32);
            log.imagekit_path = Some(imagekit_path.clone());
            Ok("uploaded")
        }
        Outcome::Failed {
            error_type,
            status_code,
            message,
            retry_after,
        } => {
            let attemptable =
                status == Status::Failed || (job.forced && status == Status::PermanentlyFailed);
            if !attemptable {
                fx.superseded(job, "image no longer failed (changed by the application)");
                return Ok("superseded");
            }
            let outcome = failure_outcome(rc, classifier.classify(Some(error_type)), max_retries);
            let node = failure_element(
                obj,
                &Failure {
                    error_type,
                    status_code: *status_code,
                    message,
                    now,
                },
                outcome,
            )?;
            replacements.push((index, node));
            let new_status = if outcome.permanent {
                fx.delete.push(job.job_id);
                "permanently_failed"
            } else {
                let wait = backoff_seconds(
                    base,
                    outcome.retry_count,
                    retry_after.map(f64::from),
                    0.8 + 0.4 * random_unit(),
                );
                fx.retry.push((
                    job.job_id,
                    outcome.retry_count as i32,
                    error_type.clone(),
                    wait,
                ));
                "failed"
            };
            let log = fx.log(job, new_status);
            log.retry_count = Some(outcome.retry_count as i32);
            log.error_type = Some(error_type.clone());
            log.status_code = *status_code;
            log.message = Some(message.clone());
            Ok(new_status)
        }
    }
}

/// Writes the job-table changes and the attempt log in three statements.
fn flush(c: &mut SpiClient<'_>, fx: Effects) -> Result<(), VenueError> {
    if !fx.delete.is_empty() {
        plans::run(
            c,
            "DELETE FROM venue_image_jobs WHERE job_id = ANY($1)",
            &[fx.delete.into()],
        )?;
    }
    if !fx.retry.is_empty() {
        let ids: Vec<i64> = fx.retry.iter().map(|r| r.0).collect();
        let counts: Vec<i32> = fx.retry.iter().map(|r| r.1).collect();
        let types: Vec<String> = fx.retry.iter().map(|r| r.2.clone()).collect();
        let waits: Vec<f64> = fx.retry.iter().map(|r| r.3).collect();
        plans::run(
            c,
            "UPDATE venue_image_jobs j
                SET lease_token = NULL, leased_by = NULL, leased_at = NULL,
                    lease_expires_at = NULL, not_before = NULL, forced = false,
                    retry_count = t.rc, error_type = t.et,
                    next_attempt_at = now() + make_interval(secs => t.wait)
               FROM unnest($1::bigint[], $2::int[], $3::text[], $4::float8[]) AS t(id, rc, et, wait)
              WHERE j.job_id = t.id",
            &[ids.into(), counts.into(), types.into(), waits.into()],
        )?;
    }
    if !fx.log.is_empty() {
        let l = &fx.log;
        plans::run(
            c,
            "INSERT INTO venue_image_attempts
               (job_id, venue_id, url_hash, provider_url, provider, worker, retried_error_type,
                retry_count, outcome, error_type, status_code, message, imagekit_path)
             SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bytea[], $4::text[], $5::text[],
                                  $6::text[], $7::text[], $8::int[], $9::text[], $10::text[],
                                  $11::int[], $12::text[], $13::text[])",
            &[
                column(l, |r| r.job_id).into(),
                column(l, |r| r.venue_id).into(),
                column(l, |r| r.url_hash.clone()).into(),
                column(l, |r| r.provider_url.clone()).into(),
                column(l, |r| r.provider.clone()).into(),
                column(l, |r| r.worker.clone()).into(),
                column(l, |r| r.retried_error_type.clone()).into(),
                column(l, |r| r.retry_count).into(),
                column(l, |r| r.outcome.to_string()).into(),
                column(l, |r| r.error_type.clone()).into(),
                column(l, |r| r.status_code).into(),
                column(l, |r| r.message.clone()).into(),
                column(l, |r| r.imagekit_path.clone()).into(),
            ],
        )?;
    }
    Ok(())
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
    let run = || -> Result<bool, VenueError> {
        let report = Reported {
            job_id: required(job_id, "job_id")?,
            token: required(lease_token, "lease_token")?,
            outcome: success(url, imagekit_path, file_id)?,
        };
        Ok(record(vec![report])?[0].1 != "stale")
    };
    run().report()
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
    let run = || -> Result<Option<String>, VenueError> {
        let report = Reported {
            job_id: required(job_id, "job_id")?,
            token: required(lease_token, "lease_token")?,
            outcome: failure(error_type, status_code, message, retry_after_seconds)?,
        };
        let status = record(vec![report])?[0].1;
        Ok((status != "stale").then(|| status.to_string()))
    };
    run().report()
}

fn str_of<'a>(
    obj: venue_images_core::jsonb::Container<'a>,
    key: &'static str,
    i: usize,
) -> Result<Option<&'a str>, VenueError> {
    match obj.get(key)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(b)) => std::str::from_utf8(b).map(Some).map_err(|_| {
            VenueError::InvalidParameter(format!("result {i}: \"{key}\" is not UTF-8"))
        }),
        Some(v) => Err(VenueError::InvalidParameter(format!(
            "result {i}: \"{key}\" must be a string, got {}",
            v.type_name()
        ))),
    }
}

fn int_of(
    obj: venue_images_core::jsonb::Container<'_>,
    key: &'static str,
    i: usize,
) -> Result<Option<i64>, VenueError> {
    match obj.get(key)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Numeric(n)) => n.to_i64().map(Some).ok_or_else(|| {
            VenueError::InvalidParameter(format!("result {i}: \"{key}\" must be an integer"))
        }),
        Some(v) => Err(VenueError::InvalidParameter(format!(
            "result {i}: \"{key}\" must be an integer, got {}",
            v.type_name()
        ))),
    }
}

fn parse_results(results: &Jsonb<'_>) -> Result<Vec<Reported>, VenueError> {
    let arr = results.container()?;
    if !arr.is_array() {
        return Err(VenueError::InvalidParameter(
            "results must be a JSON array".into(),
        ));
    }
    let mut out = Vec::with_capacity(arr.len());
    for (i, e) in arr.elements().enumerate() {
        let obj = e?
            .as_object()
            .ok_or_else(|| VenueError::InvalidParameter(format!("result {i} must be an object")))?;
        let job_id = required(int_of(obj, "job_id", i)?, &format!("result {i}: job_id"))?;
        let token = required(
            str_of(obj, "lease_token", i)?,
            &format!("result {i}: lease_token"),
        )?;
        let token = parse_uuid(token).ok_or_else(|| {
            VenueError::InvalidParameter(format!("result {i}: lease_token is not a UUID"))
        })?;
        let outcome = match str_of(obj, "url", i)? {
            Some(url) => success(
                Some(url),
                str_of(obj, "imagekit_path", i)?,
                str_of(obj, "file_id", i)?,
            )?,
            None => failure(
                str_of(obj, "error_type", i)?,
                int_of(obj, "status_code", i)?
                    .map(|v| v.clamp(i32::MIN as i64, i32::MAX as i64) as i32),
                str_of(obj, "message", i)?,
                int_of(obj, "retry_after_seconds", i)?.map(|v| v.clamp(-1, i32::MAX as i64) as i32),
            )?,
        };
        out.push(Reported {
            job_id,
            token,
            outcome,
        });
    }
    Ok(out)
}

fn parse_uuid(s: &str) -> Option<Uuid> {
    let hex: String = s.chars().filter(|c| *c != '-').collect();
    if hex.len() != 32 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let mut bytes = [0u8; 16];
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[i * 2..i * 2 + 2], 16).ok()?;
    }
    Some(Uuid::from_bytes(bytes))
}

/// Records many outcomes at once, rewriting each venue row once for all of its images
/// (what an uploader should use: fewer row rewrites, index updates and locks). `results`
/// is a JSON array of objects with `job_id` and `lease_token`, and either `url`,
/// `imagekit_path` (and optionally `file_id`) for a success, or `error_type`,
/// `status_code`, `message`, `retry_after_seconds` for a failure. Returns each job's
/// result: the image's new status, `superseded`, or `stale` (nothing changed).
#[pg_extern(volatile, strict, security_definer, parallel_unsafe)]
#[search_path(@extschema@, pg_catalog, pg_temp)]
fn venue_image_record_results(
    results: Jsonb<'_>,
) -> Result<TableIterator<'static, (name!(job_id, i64), name!(status, String))>, ErrorReport> {
    let run = || -> Result<Vec<(i64, String)>, VenueError> {
        let reports = parse_results(&results)?;
        Ok(record(reports)?
            .into_iter()
            .map(|(id, s)| (id, s.to_string()))
            .collect())
    };
    Ok(TableIterator::new(run().report()?))
}
