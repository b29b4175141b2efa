//! The nightly scan, finalisation of images that can never be retried, and the purge
//! of permanently failed images (manual review).

use super::enqueue::{insert_jobs, plan_rows, JobRow, OnConflict};
use super::{
    log_attempts, now_iso, read_venue, record_skips, require_jsonb, write_venue, Attempt,
    QueueWrite,
};
use crate::datum::{Jsonb, JsonbResult, RawJsonb};
use crate::errors::{PgResult, Report, VenueError};
use crate::plans::{self, Sql};
use crate::settings;
use crate::source::VenueSource;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;
use pgrx::spi::SpiClient;
use pgrx::PgMemoryContexts;
use std::borrow::Cow;
use std::time::Instant;
use venue_images_core::image::ImageError;
use venue_images_core::jsonb::{encode, parse_varlena, Node, Value};
use venue_images_core::retry::{
    purge_permanently_failed, read_element, redact_url, redacted_copy, AttemptOutcome,
    ScanDecision, Skip,
};

/// Venues read per batch; each batch's jobs, skips, finalisations and log rows are
/// written before the next is read, so memory stays bounded whatever the table's size.
const BATCH: usize = 500;

#[derive(Default, Debug)]
struct ScanCounts {
    transient_queued: i64,
    permanent_logged: i64,
    ambiguous_skipped: i64,
    finalized: i64,
    errors: i64,
    skipped_elements: i64,
    images_queued: i64,
}

/// What one batch of venues asks to write.
#[derive(Default)]
struct Batch {
    venues: Vec<i64>,
    jobs: Vec<JobRow>,
    skips: Vec<(i64, Skip)>,
    finalize: Vec<i64>,
    log: Vec<Attempt>,
}

fn scan_row(
    id: i64,
    bytes: &[u8],
    policy: &venue_images_core::retry::Policy,
    counts: &mut ScanCounts,
    batch: &mut Batch,
) {
    let Ok((plan, rows)) = plan_rows(id, bytes, policy) else {
        counts.errors += 1;
        return;
    };
    batch.venues.push(id);
    match plan.decision() {
        ScanDecision::Transient => counts.transient_queued += 1,
        ScanDecision::Permanent => counts.permanent_logged += 1,
        ScanDecision::Ambiguous => counts.ambiguous_skipped += 1,
        ScanDecision::Nothing => {}
    }
    counts.skipped_elements += plan.skipped.len() as i64;
    batch
        .skips
        .extend(plan.skipped.iter().map(|s| (id, s.clone())));
    batch.jobs.extend(rows);
    if plan.finalize.is_empty() {
        return;
    }
    counts.finalized += plan.finalize.len() as i64;
    batch.finalize.push(id);
    let Ok(arr) = parse_varlena(bytes) else {
        return;
    };
    for &(index, reason) in &plan.finalize {
        let Ok(Some(Value::Container(obj))) = arr.array_get(index) else {
            continue;
        };
        let Ok(e) = read_element(index, obj) else {
            continue;
        };
        batch.log.push(Attempt {
            venue_id: id,
            url_hash: e.hash().map(|h| h.to_vec()),
            provider_url: e.source.map(|(u, _)| redact_url(u)),
            provider: e.provider.map(str::to_string),
            retried_error_type: e
                .error_type
                .map(|b| String::from_utf8_lossy(b).into_owned()),
            retry_count: Some(e.retry_count),
            outcome: Some(AttemptOutcome::Finalized),
            error_type: e
                .error_type
                .map(|b| String::from_utf8_lossy(b).into_owned()),
            message: Some(format!(
                "finalized by the cleanup scan: {}",
                reason.as_str()
            )),
            ..Default::default()
        });
    }
}

fn write_batch(
    c: &mut SpiClient<'_>,
    src: &VenueSource,
    batch: Batch,
    counts: &mut ScanCounts,
) -> Result<(), VenueError> {
    counts.images_queued += insert_jobs(c, &batch.jobs, "scan", OnConflict::Keep)? as i64;
    record_skips(c, &batch.venues, &batch.skips, "scan")?;
    if !batch.finalize.is_empty() {
        // The UPDATE re-reads each row under its lock, so the application's concurrent
        // writes are kept; only failed images that can never be retried change.
        let sql = format!(
            "UPDATE {rel} SET {img} = venue_images.venue_images_finalize({img})
              WHERE {id} OPERATOR(pg_catalog.=) ANY($1)",
            rel = src.relation,
            img = src.images_column,
            id = src.id_column
        );
        let _marker = QueueWrite::begin(&batch.finalize);
        let _as_owner = crate::owner::AsOwner::of(src)?;
        plans::run(c, Sql::Built(&sql), &[batch.finalize.into()])?;
    }
    log_attempts(c, &batch.log)
}

fn cleanup_scan() -> Result<(ScanCounts, f64), VenueError> {
    let started = Instant::now();
    let src = plans::venue_source()?;
    require_jsonb(&src)?;
    let policy = settings::policy();
    let mut counts = ScanCounts::default();
    // Each batch runs in its own SPI connection: pgrx never frees a fetched tuple table, so
    // in one connection every row fetched would stay in memory until the end of the scan
    // (3 GB for 1,000,000 venues). The cursor's portal lives across connections by name.
    let (now, cursor_name) = Spi::connect_mut(|c| {
        let now = now_iso(c)?;
        let filter = crate::gin::failures_filter(&src)?;
        let sql = format!(
            "SELECT {id}, {img} FROM {rel}{filter}",
            id = src.id_expr,
            img = src.images_column,
            rel = src.relation
        );
        let _as_owner = crate::owner::AsOwner::of(&src)?;
        let cursor = c.try_open_cursor(sql.as_str(), &[])?;
        Ok::<_, VenueError>((now, cursor.detach_into_name()))
    })?;
    // Each row is detoasted in a context reset per row.
    let mut row_cx = PgMemoryContexts::new("venue_images cleanup scan");
    loop {
        let done = Spi::connect_mut(|c| {
            let mut cursor = c.find_cursor(&cursor_name)?;
            let mut batch = Batch::default();
            let fetched = {
                let rows = {
                    let _as_owner = crate::owner::AsOwner::of(&src)?;
                    cursor.fetch(BATCH as i64)?
                };
                let fetched = rows.len();
                for row in rows {
                    let Some(id) = row.get::<i64>(1)? else {
                        continue;
                    };
                    let Some(raw) = row.get::<RawJsonb>(2)? else {
                        continue;
                    };
                    // SAFETY: a live jsonb datum of the fetched row; the detoasted copy
                    // lives in `row_cx`, reset right after this row, and nothing borrowed
                    // from it is kept (the batch holds owned values).
                    unsafe {
                        row_cx.switch_to(|_| {
                            let bytes = Jsonb::from_datum(raw.0).bytes();
                            scan_row(id, bytes, &policy, &mut counts, &mut batch);
                        });
                        row_cx.reset();
                    }
                }
                fetched
            };
            if fetched == 0 {
                // Dropping the cursor closes the portal.
                return Ok::<bool, VenueError>(true);
            }
            // Keep the portal (and its snapshot) open for the next batch; the batch's
            // writes run beside it.
            cursor.detach_into_name();
            write_batch(c, &src, batch, &mut counts)?;
            Ok(false)
        })?;
        if done {
            break;
        }
    }
    Spi::connect_mut(|c| {
        // Skip records of venues no longer seen (fixed, or without failures now).
        plans::run(
            c,
            "DELETE FROM venue_images.venue_image_skips
              WHERE last_seen_at OPERATOR(pg_catalog.<) pg_catalog.now()",
            &[],
        )?;
        let elapsed_ms = (started.elapsed().as_secs_f64() * 10_000.0).round() / 10.0;
        plans::run(
            c,
            "INSERT INTO venue_images.venue_image_scans
               (started_at, run_by, transient_queued, permanent_logged, ambiguous_skipped,
                finalized, errors, skipped_elements, images_queued, elapsed_ms)
             VALUES ($1::pg_catalog.timestamptz, session_user, $2, $3, $4, $5, $6, $7, $8, $9)",
            &[
                now.as_str().into(),
                counts.transient_queued.into(),
                counts.permanent_logged.into(),
                counts.ambiguous_skipped.into(),
                counts.finalized.into(),
                counts.errors.into(),
                counts.skipped_elements.into(),
                counts.images_queued.into(),
                elapsed_ms.into(),
            ],
        )?;
        plans::run(c, "SELECT venue_images.venue_image_prune_attempts()", &[])?;
        Ok::<(), VenueError>(())
    })?;
    Ok((counts, started.elapsed().as_secs_f64() * 1000.0))
}

/// The nightly scan over the venues with failures, following the original's decision
/// matrix per venue: any retryable image → queued (`transient_queued` venues); else any
/// permanent failure, `permanently_failed` included → `permanent_logged`; else only
/// failures left for review (ambiguous or no error type) → `ambiguous_skipped`. `failed`
/// images that can never be retried (permanent type, retries exhausted, no URL to
/// download from) become `permanently_failed` with `finalized_at` (`finalized` counts
/// images). Arrays that cannot be read count as `errors`; elements that cannot be read
/// are left alone, counted in `skipped_elements` and listed in `venue_image_skips`.
/// `images_queued` counts jobs the scan created. Each run is logged in
/// `venue_image_scans`; old attempt-log rows are pruned. Reads and writes in batches of
/// 500 venues, so memory stays bounded.
#[pg_extern(volatile, security_definer, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn venue_image_cleanup_scan() -> Result<
    TableIterator<
        'static,
        (
            name!(transient_queued, i64),
            name!(permanent_logged, i64),
            name!(ambiguous_skipped, i64),
            name!(finalized, i64),
            name!(errors, i64),
            name!(elapsed_ms, f64),
            name!(skipped_elements, i64),
            name!(images_queued, i64),
        ),
    >,
    ErrorReport,
> {
    let (c, ms) = cleanup_scan().report()?;
    Ok(TableIterator::once((
        c.transient_queued,
        c.permanent_logged,
        c.ambiguous_skipped,
        c.finalized,
        c.errors,
        (ms * 10.0).round() / 10.0,
        c.skipped_elements,
        c.images_queued,
    )))
}

/// The array with its `failed` images that can never be retried (permanent error type,
/// retries exhausted, no URL to download from) turned `permanently_failed` with
/// `finalized_at`; returned unchanged when there are none, and for values that are not
/// arrays. STABLE: follows the classification and `max_retries` settings.
#[pg_extern(stable, strict, parallel_safe)]
fn venue_images_finalize(images: Jsonb<'_>) -> PgResult<JsonbResult> {
    let Ok(arr) = images.container() else {
        return Ok(JsonbResult::Datum(images.datum()));
    };
    if !arr.is_array() {
        return Ok(JsonbResult::Datum(images.datum()));
    }
    // Not SECURITY DEFINER (everyone may call it): its one statement is parsed with
    // pg_catalog only, whatever the caller's search_path.
    let _path = crate::owner::PinnedPath::new();
    let now = crate::spi::select_one::<String>(super::NOW_ISO_SQL, &[])
        .report()?
        .unwrap_or_default();
    let policy = settings::policy();
    let plan = policy.plan(arr).report()?;
    Ok(match policy.finalize(arr, &plan, &now).report()? {
        Some(node) => JsonbResult::Bytes(encode(&node).report()?),
        None => JsonbResult::Datum(images.datum()),
    })
}

fn purge(venue_id: Option<i64>) -> Result<i32, VenueError> {
    let src = plans::venue_source()?;
    require_jsonb(&src)?;
    Spi::connect_mut(|c| {
        let ids: Vec<i64> = match venue_id {
            Some(id) => vec![id],
            None => {
                let sql = format!(
                    "SELECT {id} FROM {rel}
                      WHERE {img} OPERATOR(pg_catalog.@>) '[{{\"upload_status\": \"permanently_failed\"}}]'::pg_catalog.jsonb",
                    id = src.id_expr,
                    rel = src.relation,
                    img = src.images_column
                );
                let mut v = Vec::new();
                let rows = {
                    let _as_owner = crate::owner::AsOwner::of(&src)?;
                    plans::run(c, Sql::Built(&sql), &[])?
                };
                for row in rows {
                    if let Some(id) = row.get::<i64>(1)? {
                        v.push(id);
                    }
                }
                v
            }
        };
        let mut purged = 0i32;
        for id in ids {
            let Some(Some(bytes)) = read_venue(c, &src, id, true)? else {
                continue;
            };
            let Ok(arr) = parse_varlena(&bytes) else {
                continue;
            };
            let Ok((kept, removed)) = purge_permanently_failed(arr, None) else {
                continue;
            };
            if removed.is_empty() {
                continue;
            }
            write_venue(c, &src, id, &kept)?;
            let mut log = Vec::with_capacity(removed.len());
            let mut hashes = Vec::new();
            for e in &removed {
                // The removed element is kept in the log with every string redacted:
                // secrets can sit in any key (url, provider_url, notes, ...). One nested
                // too deeply to be copied is purged all the same, with a note instead of
                // its copy (otherwise no admin could ever remove it).
                let copy = match redacted_copy(Value::Container(e.obj)) {
                    Ok(node) => node,
                    Err(ImageError::TooDeep(limit)) => Node::Object(vec![(
                        Cow::Borrowed(&b"not_kept"[..]),
                        Node::str(format!("{limit}: the element was removed without a copy")),
                    )]),
                    Err(other) => return Err(other.into()),
                };
                let detail = encode(&copy)?;
                let hash = e.hash().map(|h| h.to_vec());
                if let Some(h) = &hash {
                    hashes.push(h.clone());
                }
                log.push(Attempt {
                    venue_id: id,
                    url_hash: hash,
                    provider_url: e.source.map(|(u, _)| redact_url(u)),
                    provider: e.provider.map(str::to_string),
                    retry_count: Some(e.retry_count),
                    outcome: Some(AttemptOutcome::Purged),
                    error_type: e
                        .error_type
                        .map(|b| String::from_utf8_lossy(b).into_owned()),
                    message: Some("removed by venue_image_purge_permanently_failed".into()),
                    detail: Some(detail),
                    ..Default::default()
                });
            }
            log_attempts(c, &log)?;
            if !hashes.is_empty() {
                plans::run(
                    c,
                    "DELETE FROM venue_images.venue_image_jobs
                      WHERE venue_id OPERATOR(pg_catalog.=) $1 AND url_hash OPERATOR(pg_catalog.=) ANY($2)",
                    &[id.into(), hashes.into()],
                )?;
            }
            purged += removed.len() as i32;
        }
        Ok(purged)
    })
}

/// Manual review: removes `permanently_failed` images from one venue's array (or from
/// every venue's when `venue_id` is NULL). Each removed element is kept in the attempt
/// log (`outcome = 'purged'`, `detail` holds the element with every string redacted).
/// Returns how many images were removed.
#[pg_extern(volatile, security_definer, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn venue_image_purge_permanently_failed(
    venue_id: default!(Option<i64>, "NULL"),
) -> Result<i32, ErrorReport> {
    purge(venue_id).report()
}
