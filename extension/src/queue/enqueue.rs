//! Putting images in the queue: one venue on demand, new failures as the application
//! writes them (trigger), and the manual replay of finished failures (force retry).
//! Which images qualify is the core's [`Policy::plan`]; copies of one image (same source
//! URL) become one job.

use super::{
    column, ensure_providers, log_attempts, notify_due, queue_write_in_progress, record_skips,
    with_venue_images, Attempt,
};
use crate::datum::Jsonb;
use crate::errors::{Report, VenueError};
use crate::plans::{self, Sql};
use crate::settings;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;
use pgrx::spi::SpiClient;
use pgrx::PgLogLevel;
use pgrx::WhoAllocated;
use std::collections::HashSet;
use venue_images_core::image::require_array;
use venue_images_core::jsonb::parse_varlena;
use venue_images_core::retry::{
    elements, redact_url, url_hash, AttemptOutcome, Policy, QueueItem, VenuePlan,
};

/// How an insert treats an image that is already queued.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum OnConflict {
    /// Leave it as it is (its backoff stands).
    Keep,
    /// Make it due now (unless it is leased).
    DueNow,
    /// Make it due now and forced (manual review), unless it is leased.
    Force,
}

/// One job to insert: venue, the venue's priority, the image.
pub(crate) type JobRow = (i64, f64, QueueItem);

/// Queues images of one or more venues; returns how many rows were inserted or made due.
/// Rows repeating a (venue, image) of the same call are merged first, so the
/// `INSERT ... ON CONFLICT DO UPDATE` never meets one row twice.
pub(crate) fn insert_jobs(
    c: &mut SpiClient<'_>,
    rows: &[JobRow],
    enqueued_by: &str,
    on_conflict: OnConflict,
) -> Result<usize, VenueError> {
    if rows.is_empty() {
        return Ok(0);
    }
    let mut seen = HashSet::with_capacity(rows.len());
    let rows: Vec<&JobRow> = rows
        .iter()
        .filter(|(v, _, q)| seen.insert((*v, q.hash)))
        .collect();
    ensure_providers(c, rows.iter().map(|(_, _, r)| r.provider.clone()).collect())?;
    let forced = on_conflict == OnConflict::Force;
    let conflict = match on_conflict {
        OnConflict::Keep => "DO NOTHING",
        OnConflict::DueNow | OnConflict::Force => {
            "DO UPDATE SET next_attempt_at = least(j.next_attempt_at, pg_catalog.now()),
                           priority = excluded.priority, forced = j.forced OR excluded.forced
             WHERE j.lease_token IS NULL OR j.lease_expires_at OPERATOR(pg_catalog.<) pg_catalog.now()"
        }
    };
    let sql = format!(
        "INSERT INTO venue_images.venue_image_jobs AS j
            (venue_id, url_hash, provider_url, provider, error_type, retry_count, priority, forced, enqueued_by)
         SELECT v, h, u, p, e, r, pr, $8, $9
           FROM ROWS FROM (pg_catalog.unnest($1::bigint[]), pg_catalog.unnest($2::pg_catalog.bytea[]),
                           pg_catalog.unnest($3::pg_catalog.text[]), pg_catalog.unnest($4::pg_catalog.text[]),
                           pg_catalog.unnest($5::pg_catalog.text[]), pg_catalog.unnest($6::int[]),
                           pg_catalog.unnest($7::pg_catalog.float8[]))
                AS t(v, h, u, p, e, r, pr)
         ON CONFLICT (venue_id, url_hash) {conflict}
         RETURNING 1"
    );
    let mut total = 0;
    for chunk in rows.chunks(5_000) {
        total += plans::run(
            c,
            Sql::Built(&sql),
            &[
                column(chunk, |(v, _, _)| *v).into(),
                column(chunk, |(_, _, r)| r.hash.to_vec()).into(),
                column(chunk, |(_, _, r)| r.redacted_url.clone()).into(),
                column(chunk, |(_, _, r)| r.provider.clone()).into(),
                column(chunk, |(_, _, r)| r.error_type.clone()).into(),
                column(chunk, |(_, _, r)| {
                    r.retry_count.clamp(0, i32::MAX as i64) as i32
                })
                .into(),
                column(chunk, |(_, p, _)| *p).into(),
                forced.into(),
                enqueued_by.into(),
            ],
        )?
        .len();
    }
    if total > 0 {
        notify_due(c)?;
    }
    Ok(total)
}

/// The plan of one venue's images, with its jobs (empty for an unreadable array).
pub(crate) fn plan_rows(
    venue_id: i64,
    bytes: &[u8],
    policy: &Policy,
) -> Result<(VenuePlan, Vec<JobRow>), VenueError> {
    let arr = parse_varlena(bytes)?;
    let plan = policy.plan(arr)?;
    let priority = plan.priority();
    let rows = plan
        .queue
        .iter()
        .cloned()
        .map(|q| (venue_id, priority, q))
        .collect();
    Ok((plan, rows))
}

fn enqueue_venue(venue_id: i64) -> Result<i32, VenueError> {
    with_venue_images(venue_id, |c, policy, bytes| {
        let (plan, rows) = plan_rows(venue_id, bytes, policy)?;
        record_skips(
            c,
            &[venue_id],
            &plan
                .skipped
                .iter()
                .map(|s| (venue_id, s.clone()))
                .collect::<Vec<_>>(),
            "enqueue",
        )?;
        insert_jobs(c, &rows, "venue", OnConflict::DueNow)?;
        Ok(plan.queued_elements.min(i32::MAX as usize) as i32)
    })
}

/// Makes the venue's retryable images (`failed`, transient, retries left, a
/// `provider_url` or `url` to download from) due now: queues those not queued yet and
/// moves the others' next attempt to now (leased ones are left alone). Copies of one
/// image share one job. Elements that cannot be read are skipped and recorded in
/// `venue_image_skips`. Idempotent; returns how many retryable elements the venue has
/// (0 for an unknown venue): the same count as `venue_images_summary(...).retryable`.
#[pg_extern(volatile, strict, security_definer, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
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
    // Only the configured venues table: the function runs as venue_image_definer and
    // writes the queue, so it must not be usable on anyone's own table.
    let src = match plans::venue_source() {
        Ok(src) => src,
        Err(VenueError::NotReady(m)) => {
            // Never fail the application's write for that; the scan catches up later.
            pgrx::warning!("venue_images_enqueue_trigger did nothing: {m}");
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    let td = trigger.trigger_data();
    // SAFETY: the relation of the trigger event, valid for this call.
    let fired_on = unsafe { td.tg_relation.as_ref().map(|r| r.rd_id) };
    if fired_on != Some(src.oid) {
        return Err(VenueError::WrongObject(format!(
            "venue_images_enqueue_trigger may only be attached to the configured venues table {} (venue_images.venues_table)",
            src.relation
        )));
    }
    let names = &src.names;
    let args = trigger.extra_args().unwrap_or_default();
    let id_col = args.first().cloned().unwrap_or_else(|| names.id.clone());
    let img_col = args.get(1).cloned().unwrap_or_else(|| names.images.clone());
    let Some((id, images)) = new_row(trigger, &id_col, &img_col)? else {
        return Ok(());
    };
    if queue_write_in_progress(id) {
        return Ok(());
    }
    // A malformed array is the application's business: the analytics report it; the
    // trigger must never fail the application's write because of it.
    let Ok((plan, rows)) = plan_rows(id, images.bytes(), &settings::policy()) else {
        return Ok(());
    };
    if rows.is_empty() && plan.skipped.is_empty() {
        return Ok(());
    }
    Spi::connect_mut(|c| {
        if !plan.skipped.is_empty() {
            let skips: Vec<_> = plan.skipped.iter().map(|s| (id, s.clone())).collect();
            record_skips(c, &[id], &skips, "trigger")?;
        }
        insert_jobs(c, &rows, "trigger", OnConflict::Keep)
    })?;
    Ok(())
}

/// Trigger: queues an image as soon as the application writes it as a transient
/// failure, so recovery does not wait for the nightly scan. It refuses (42809) to run
/// for any table but the configured venues table; EXECUTE is not granted to anyone, and
/// the migration (`sql/003_venues_table.sql`) installs it:
/// `CREATE TRIGGER ... AFTER INSERT OR UPDATE OF venue_images ON venues FOR EACH ROW
///  EXECUTE FUNCTION venue_images.venue_images_enqueue_trigger()`; optional arguments
/// name the id and images columns.
#[pg_trigger]
fn venue_images_enqueue_trigger<'a>(
    trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, impl WhoAllocated>>, ErrorReport> {
    if let Err(e) = trigger_enqueue(trigger) {
        // Raised here with its SQLSTATE (a trigger's error result would become XX000).
        e.report().report(PgLogLevel::ERROR);
    }
    Ok(trigger.new())
}

/// Which of a venue's images a force retry takes.
enum Only<'a> {
    /// Every failed and permanently failed image.
    All,
    /// The one with this source URL.
    Url(&'a str),
    /// The one at this index of the array.
    Index(i32),
}

fn force_retry(venue_id: Option<i64>, which: Only<'_>) -> Result<i32, VenueError> {
    let venue_id = venue_id.ok_or_else(|| VenueError::NullArgument("venue_id".into()))?;
    with_venue_images(venue_id, |c, policy, bytes| {
        let arr = require_array(parse_varlena(bytes)?)?;
        let only = match which {
            Only::All => None,
            Only::Url(u) => Some(url_hash(u)),
            Only::Index(i) => {
                let e = usize::try_from(i)
                    .ok()
                    .and_then(|i| arr.array_get(i).ok().flatten())
                    .and_then(|v| v.as_object().map(|o| (i as usize, o)))
                    .and_then(|(i, o)| venue_images_core::retry::read_element(i, o).ok());
                match e.and_then(|e| e.hash()) {
                    Some(h) => Some(h),
                    None => return Ok(0),
                }
            }
        };
        let priority = policy.plan(arr)?.priority();
        let mut rows: Vec<JobRow> = Vec::new();
        for e in elements(arr) {
            let Ok(e) = e? else { continue };
            // What a forced job may attempt: the claim's own rule.
            if !policy.attemptable(&e, true) {
                continue;
            }
            let (Some(hash), Some((source, _))) = (e.hash(), e.source) else {
                continue;
            };
            if only.is_some_and(|h| h != hash) || rows.iter().any(|(_, _, q)| q.hash == hash) {
                continue;
            }
            rows.push((
                venue_id,
                priority,
                QueueItem {
                    index: e.index,
                    hash,
                    redacted_url: redact_url(source),
                    provider: e.provider_name().to_string(),
                    error_type: e
                        .error_type
                        .map(|b| String::from_utf8_lossy(b).into_owned()),
                    retry_count: e.retry_count,
                },
            ));
        }
        insert_jobs(c, &rows, "force", OnConflict::Force)?;
        let log: Vec<Attempt> = rows
            .iter()
            .map(|(_, _, r)| Attempt {
                venue_id,
                url_hash: Some(r.hash.to_vec()),
                provider_url: Some(r.redacted_url.clone()),
                provider: Some(r.provider.clone()),
                retried_error_type: r.error_type.clone(),
                retry_count: Some(r.retry_count),
                outcome: Some(AttemptOutcome::Forced),
                message: Some("queued for one more attempt by venue_image_force_retry".into()),
                ..Default::default()
            })
            .collect();
        log_attempts(c, &log)?;
        Ok(rows.len() as i32)
    })
}

/// Manual review: queues the venue's `failed` and `permanently_failed` images (or only
/// the one with that source URL) for one more attempt now, whatever their error type
/// and retry count. Copies of one image are one job. The image changes only when the
/// attempt's outcome is recorded. Returns how many images were queued.
#[pg_extern(volatile, security_definer, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn venue_image_force_retry(
    venue_id: Option<i64>,
    provider_url: default!(Option<&str>, "NULL"),
) -> Result<i32, ErrorReport> {
    force_retry(venue_id, provider_url.map_or(Only::All, Only::Url)).report()
}

/// Manual review of one image named by its index in the venue's array (the dashboard
/// shows redacted URLs only): like `venue_image_force_retry` for that image and its
/// copies. Returns 1 when it was queued, 0 when that element is not a failed image.
#[pg_extern(volatile, strict, security_definer, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn venue_image_force_retry_image(venue_id: i64, element_index: i32) -> Result<i32, ErrorReport> {
    force_retry(Some(venue_id), Only::Index(element_index)).report()
}
