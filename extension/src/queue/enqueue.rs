//! Putting images in the queue: one venue on demand, new failures as the application
//! writes them (trigger), and the manual replay of finished failures (force retry).

use super::{
    ensure_providers, log_attempt, queue_write_in_progress, read_venue, require_jsonb, Attempt,
};
use crate::datum::Jsonb;
use crate::errors::{Report, VenueError};
use crate::plans;
use crate::settings;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;
use pgrx::spi::SpiClient;
use pgrx::WhoAllocated;
use venue_images_core::classify::Classifier;
use venue_images_core::image::{images, require_array, Status};
use venue_images_core::jsonb::parse_varlena;
use venue_images_core::retry::{
    redact_url, retryable_images, url_hash, venue_priority, RetryableImage,
};

/// How an insert treats an image that is already queued.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum OnConflict {
    /// Leave it as it is (its backoff stands).
    Keep,
    /// Make it due now (unless it is leased).
    DueNow,
}

/// Queues images of one or more venues; returns how many were inserted or made due.
pub(crate) fn insert_jobs(
    c: &mut SpiClient<'_>,
    rows: &[(i64, f64, RetryableImage)],
    enqueued_by: &str,
    on_conflict: OnConflict,
) -> Result<usize, VenueError> {
    if rows.is_empty() {
        return Ok(0);
    }
    ensure_providers(c, rows.iter().map(|(_, _, r)| r.provider.clone()).collect())?;
    let conflict = match on_conflict {
        OnConflict::Keep => "DO NOTHING",
        OnConflict::DueNow => {
            "DO UPDATE SET next_attempt_at = least(j.next_attempt_at, now()), priority = excluded.priority
             WHERE j.lease_token IS NULL OR j.lease_expires_at < now()"
        }
    };
    let sql = format!(
        "INSERT INTO venue_image_jobs AS j
            (venue_id, url_hash, provider_url, provider, error_type, retry_count, priority, enqueued_by)
         SELECT v, h, u, p, e, r, pr, $8
           FROM unnest($1::bigint[], $2::bytea[], $3::text[], $4::text[], $5::text[], $6::int[], $7::float8[])
                AS t(v, h, u, p, e, r, pr)
         ON CONFLICT (venue_id, url_hash) {conflict}
         RETURNING 1"
    );
    let mut total = 0;
    for chunk in rows.chunks(5_000) {
        let venue_ids: Vec<i64> = chunk.iter().map(|(v, _, _)| *v).collect();
        let hashes: Vec<Vec<u8>> = chunk.iter().map(|(_, _, r)| r.hash.to_vec()).collect();
        let urls: Vec<String> = chunk
            .iter()
            .map(|(_, _, r)| r.redacted_url.clone())
            .collect();
        let providers: Vec<String> = chunk.iter().map(|(_, _, r)| r.provider.clone()).collect();
        let errors: Vec<Option<String>> =
            chunk.iter().map(|(_, _, r)| r.error_type.clone()).collect();
        let counts: Vec<i32> = chunk.iter().map(|(_, _, r)| r.retry_count as i32).collect();
        let priorities: Vec<f64> = chunk.iter().map(|(_, p, _)| *p).collect();
        total += plans::run_dynamic(
            c,
            &sql,
            &[
                venue_ids.into(),
                hashes.into(),
                urls.into(),
                providers.into(),
                errors.into(),
                counts.into(),
                priorities.into(),
                enqueued_by.into(),
            ],
        )?
        .len();
    }
    if total > 0 {
        // A hint for sleeping uploaders (delivered at commit); they also poll.
        plans::run(c, "SELECT pg_notify('venue_image_jobs', '')", &[])?;
    }
    Ok(total)
}

/// The retryable images of one array, with the venue's priority.
pub(crate) fn retryable_rows(
    venue_id: i64,
    bytes: &[u8],
    classifier: &Classifier,
    max_retries: i64,
) -> Result<Vec<(i64, f64, RetryableImage)>, VenueError> {
    let arr = parse_varlena(bytes)?;
    let found = retryable_images(arr, classifier, max_retries)?;
    if found.is_empty() {
        return Ok(Vec::new());
    }
    let priority = venue_priority(arr, classifier);
    Ok(found.into_iter().map(|r| (venue_id, priority, r)).collect())
}

fn enqueue_venue(venue_id: i64) -> Result<i32, VenueError> {
    let src = plans::venue_source()?;
    require_jsonb(&src)?;
    let classifier = settings::classifier();
    let max_retries = settings::max_retries();
    Spi::connect_mut(|c| {
        let Some(Some(bytes)) = read_venue(c, &src, venue_id, false)? else {
            return Ok(0);
        };
        let rows = retryable_rows(venue_id, &bytes, &classifier, max_retries)?;
        insert_jobs(c, &rows, "venue", OnConflict::DueNow)?;
        Ok(rows.len() as i32)
    })
}

/// Makes the venue's retryable images (`failed`, transient, retries left) due now:
/// queues those not queued yet and moves the others' next attempt to now (leased ones
/// are left alone). Idempotent; returns how many retryable images the venue has
/// (0 for an unknown venue).
#[pg_extern(volatile, strict, security_definer, parallel_unsafe)]
#[search_path(@extschema@, pg_catalog, pg_temp)]
fn venue_image_enqueue_venue(venue_id: i64) -> Result<i32, ErrorReport> {
    enqueue_venue(venue_id).report()
}

/// The trigger's new row: its id and images, read straight from the tuple.
fn new_row(
    trigger: &PgTrigger<'_>,
    id_col: &str,
    img_col: &str,
) -> Result<Option<(i64, Jsonb<'static>)>, VenueError> {
    let td = trigger.trigger_data();
    // For UPDATE the new row is tg_newtuple; for INSERT it is tg_trigtuple.
    let tuple = if !td.tg_newtuple.is_null() {
        td.tg_newtuple
    } else {
        td.tg_trigtuple
    };
    if tuple.is_null() || td.tg_relation.is_null() {
        return Ok(None);
    }
    // SAFETY: trigger data handed to us by the executor for this call.
    unsafe {
        let tupdesc = (*td.tg_relation).rd_att;
        let attno = |name: &str| -> Result<std::num::NonZeroUsize, VenueError> {
            let c = std::ffi::CString::new(name)
                .map_err(|_| VenueError::InvalidParameter("column name contains NUL".into()))?;
            let n = pg_sys::SPI_fnumber(tupdesc, c.as_ptr());
            std::num::NonZeroUsize::new(usize::try_from(n).unwrap_or(0)).ok_or_else(|| {
                VenueError::UndefinedColumn(format!(
                    "venue_images_enqueue_trigger: column \"{name}\" does not exist"
                ))
            })
        };
        let id_no = attno(id_col)?;
        let img_no = attno(img_col)?;
        let id_type = pg_sys::SPI_gettypeid(tupdesc, id_no.get() as i32);
        let img_type = pg_sys::SPI_gettypeid(tupdesc, img_no.get() as i32);
        if img_type != pg_sys::JSONBOID {
            return Ok(None);
        }
        let Some(id) = pgrx::htup::heap_getattr_raw(tuple, id_no, tupdesc) else {
            return Ok(None);
        };
        let id = match id_type {
            pg_sys::INT8OID => id.value() as i64,
            pg_sys::INT4OID => id.value() as i32 as i64,
            pg_sys::INT2OID => id.value() as i16 as i64,
            _ => return Ok(None),
        };
        let Some(images) = pgrx::htup::heap_getattr_raw(tuple, img_no, tupdesc) else {
            return Ok(None);
        };
        Ok(Some((id, Jsonb::from_datum(images))))
    }
}

fn trigger_enqueue(trigger: &PgTrigger<'_>) -> Result<(), VenueError> {
    let names = settings::table_names()?;
    let args = trigger.extra_args().unwrap_or_default();
    let id_col = args.first().cloned().unwrap_or(names.id);
    let img_col = args.get(1).cloned().unwrap_or(names.images);
    let Some((id, images)) = new_row(trigger, &id_col, &img_col)? else {
        return Ok(());
    };
    let classifier = settings::classifier();
    // A malformed array is the application's business: the analytics report it; the
    // trigger must never fail the application's write because of it.
    let Ok(rows) = retryable_rows(id, images.bytes(), &classifier, settings::max_retries()) else {
        return Ok(());
    };
    if rows.is_empty() {
        return Ok(());
    }
    Spi::connect_mut(|c| insert_jobs(c, &rows, "trigger", OnConflict::Keep))?;
    Ok(())
}

/// Trigger: queues an image as soon as the application writes it as a transient
/// failure, so recovery does not wait for the nightly scan. Install it on the venues
/// table (the migration does):
/// `CREATE TRIGGER ... AFTER INSERT OR UPDATE OF venue_images ON venues FOR EACH ROW
///  EXECUTE FUNCTION venue_images_enqueue_trigger()`; optional arguments name the id
/// and images columns.
#[pg_trigger]
fn venue_images_enqueue_trigger<'a>(
    trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, impl WhoAllocated>>, ErrorReport> {
    if !queue_write_in_progress() {
        trigger_enqueue(trigger).report()?;
    }
    Ok(trigger.new())
}

fn force_retry(venue_id: Option<i64>, url: Option<&str>) -> Result<i32, VenueError> {
    let venue_id = venue_id.ok_or_else(|| VenueError::NullArgument("venue_id".into()))?;
    let src = plans::venue_source()?;
    require_jsonb(&src)?;
    let classifier = settings::classifier();
    let only = url.map(url_hash);
    Spi::connect_mut(|c| {
        let Some(Some(bytes)) = read_venue(c, &src, venue_id, false)? else {
            return Ok(0);
        };
        let arr = require_array(parse_varlena(&bytes)?)?;
        let priority = venue_priority(arr, &classifier);
        let mut rows = Vec::new();
        for img in images(arr) {
            let Some(img) = img? else { continue };
            if !matches!(img.status()?, Status::Failed | Status::PermanentlyFailed) {
                continue;
            }
            let Some(u) = img.str_bytes("provider_url")?.filter(|u| !u.is_empty()) else {
                continue;
            };
            let u = String::from_utf8_lossy(u).into_owned();
            let hash = url_hash(&u);
            if only.is_some_and(|h| h != hash) {
                continue;
            }
            rows.push((
                venue_id,
                priority,
                RetryableImage {
                    index: img.index,
                    hash,
                    redacted_url: redact_url(&u),
                    provider: img
                        .str_bytes("provider")?
                        .map(|p| String::from_utf8_lossy(p).into_owned())
                        .unwrap_or_else(|| "unknown".into()),
                    error_type: img
                        .error_type()?
                        .map(|e| String::from_utf8_lossy(e).into_owned()),
                    retry_count: img.retry_count()?.max(0.0) as i64,
                },
            ));
        }
        insert_jobs(c, &rows, "force", OnConflict::DueNow)?;
        let hashes: Vec<Vec<u8>> = rows.iter().map(|(_, _, r)| r.hash.to_vec()).collect();
        c.update(
            "UPDATE venue_image_jobs SET forced = true
              WHERE venue_id = $1 AND url_hash = ANY($2)
                AND (lease_token IS NULL OR lease_expires_at < now())",
            None,
            &[venue_id.into(), hashes.into()],
        )?;
        for (_, _, r) in &rows {
            log_attempt(
                c,
                &Attempt {
                    venue_id,
                    url_hash: Some(&r.hash),
                    provider_url: Some(&r.redacted_url),
                    provider: Some(&r.provider),
                    retried_error_type: r.error_type.as_deref(),
                    retry_count: Some(r.retry_count as i32),
                    outcome: "forced",
                    message: Some("queued for one more attempt by venue_image_force_retry"),
                    ..Default::default()
                },
            )?;
        }
        Ok(rows.len() as i32)
    })
}

/// Manual review: queues the venue's `failed` and `permanently_failed` images (or only
/// the one with that `provider_url`) for one more attempt now, whatever their error type
/// and retry count. The image changes only when the attempt's outcome is recorded.
/// Returns how many images were queued.
#[pg_extern(volatile, security_definer, parallel_unsafe)]
#[search_path(@extschema@, pg_catalog, pg_temp)]
fn venue_image_force_retry(
    venue_id: Option<i64>,
    provider_url: default!(Option<&str>, "NULL"),
) -> Result<i32, ErrorReport> {
    force_retry(venue_id, provider_url).report()
}
