//! The nightly scan, finalisation of images that can never be retried, and the purge
//! of permanently failed images (manual review).

use super::enqueue::{insert_jobs, OnConflict};
use super::{log_attempt, now_iso, read_venue, require_jsonb, write_venue, Attempt, QUEUE_WRITE};
use crate::datum::{Jsonb, JsonbResult, RawJsonb};
use crate::errors::{PgResult, Report, VenueError};
use crate::plans;
use crate::settings;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;
use pgrx::PgMemoryContexts;
use std::borrow::Cow;
use std::time::Instant;
use venue_images_core::image::{images, require_array, Image, Status};
use venue_images_core::jsonb::{encode, parse_varlena, patch_object, Node};
use venue_images_core::retry::{
    purge_permanently_failed, redact_url, scan_venue, url_hash, ScanDecision,
};

#[derive(Default)]
struct ScanCounts {
    transient_queued: i64,
    permanent_logged: i64,
    ambiguous_skipped: i64,
    finalized: i64,
    errors: i64,
}

/// A finalised image, for the attempt log.
struct Finalized {
    venue_id: i64,
    hash: Vec<u8>,
    url: String,
    provider: Option<String>,
    error_type: Option<String>,
}

fn cleanup_scan() -> Result<(ScanCounts, f64), VenueError> {
    let started = Instant::now();
    let src = plans::venue_source()?;
    require_jsonb(&src)?;
    let classifier = settings::classifier();
    let max_retries = settings::max_retries();
    let mut counts = ScanCounts::default();
    let mut queue = Vec::new();
    let mut to_finalize: Vec<i64> = Vec::new();
    let mut finalized_log: Vec<Finalized> = Vec::new();
    Spi::connect_mut(|c| {
        let now = now_iso(c)?;
        let filter = src.failures_filter()?;
        let sql = format!(
            "SELECT {id}, {img} FROM {rel}{filter}",
            id = src.id_expr,
            img = src.images_column,
            rel = src.relation
        );
        // Read pass, without locks: each row is detoasted in a context reset per row.
        let mut row_cx = PgMemoryContexts::new("venue_images cleanup scan");
        {
            let mut cursor = c.try_open_cursor(sql.as_str(), &[])?;
            loop {
                let batch = cursor.fetch(500)?;
                if batch.is_empty() {
                    break;
                }
                for row in batch {
                    let Some(id) = row.get::<i64>(1)? else {
                        continue;
                    };
                    let Some(raw) = row.get::<RawJsonb>(2)? else {
                        continue;
                    };
                    // SAFETY: a live jsonb datum of the fetched row; the copy lives in
                    // `row_cx`, reset right after this row.
                    let outcome = unsafe {
                        row_cx.switch_to(|_| -> Result<(), VenueError> {
                            let bytes = Jsonb::from_datum(raw.0).bytes();
                            let Ok(arr) = parse_varlena(bytes) else {
                                counts.errors += 1;
                                return Ok(());
                            };
                            let scan = match scan_venue(arr, &classifier, max_retries, &now) {
                                Ok(s) => s,
                                Err(_) => {
                                    counts.errors += 1;
                                    return Ok(());
                                }
                            };
                            match scan.decision {
                                ScanDecision::Transient => counts.transient_queued += 1,
                                ScanDecision::Permanent => counts.permanent_logged += 1,
                                ScanDecision::Ambiguous => counts.ambiguous_skipped += 1,
                                ScanDecision::Nothing => {}
                            }
                            if !scan.retryable.is_empty() {
                                let priority =
                                    venue_images_core::retry::venue_priority(arr, &classifier);
                                queue.extend(scan.retryable.into_iter().map(|r| (id, priority, r)));
                            }
                            if scan.finalized_count > 0 {
                                counts.finalized += scan.finalized_count as i64;
                                to_finalize.push(id);
                                finalized_log.extend(finalizable(
                                    arr,
                                    &classifier,
                                    max_retries,
                                    id,
                                ));
                            }
                            Ok(())
                        })
                    };
                    // SAFETY: nothing allocated in the context outlives this row.
                    unsafe { row_cx.reset() };
                    outcome?;
                }
            }
        }
        insert_jobs(c, &queue, "scan", OnConflict::Keep)?;
        if !to_finalize.is_empty() {
            // The UPDATE re-reads each row under its lock, so the application's
            // concurrent writes are kept; only failed images that can never be retried
            // change.
            let sql = format!(
                "UPDATE {rel} SET {img} = venue_images_finalize({img}) WHERE {id} = ANY($1)",
                rel = src.relation,
                img = src.images_column,
                id = src.id_column
            );
            QUEUE_WRITE.with(|f| f.set(true));
            let res = c.update(&sql, None, &[to_finalize.clone().into()]);
            QUEUE_WRITE.with(|f| f.set(false));
            res?;
            for f in &finalized_log {
                log_attempt(
                    c,
                    &Attempt {
                        venue_id: f.venue_id,
                        url_hash: Some(&f.hash),
                        provider_url: Some(&f.url),
                        provider: f.provider.as_deref(),
                        retried_error_type: f.error_type.as_deref(),
                        outcome: "finalized",
                        error_type: f.error_type.as_deref(),
                        message: Some(
                            "cannot be retried (permanent error type or retries exhausted)",
                        ),
                        ..Default::default()
                    },
                )?;
            }
        }
        c.update("SELECT venue_image_prune_attempts()", None, &[])?;
        Ok::<(), VenueError>(())
    })?;
    Ok((counts, started.elapsed().as_secs_f64() * 1000.0))
}

/// The images `scan_venue` finalises, for the log.
fn finalizable(
    arr: venue_images_core::jsonb::Container<'_>,
    classifier: &venue_images_core::classify::Classifier,
    max_retries: i64,
    venue_id: i64,
) -> Vec<Finalized> {
    let mut out = Vec::new();
    for img in images(arr).flatten().flatten() {
        if img.status().ok() != Some(Status::Failed) {
            continue;
        }
        let et = img.error_type().ok().flatten();
        let class = classifier.classify_bytes(et);
        let exhausted = img.retry_count().unwrap_or(0.0) >= max_retries as f64;
        let permanent = class == venue_images_core::classify::ErrorClass::Permanent;
        if !(permanent
            || (class == venue_images_core::classify::ErrorClass::Transient && exhausted))
        {
            continue;
        }
        let url = img
            .str_bytes("provider_url")
            .ok()
            .flatten()
            .map(|u| String::from_utf8_lossy(u).into_owned())
            .unwrap_or_default();
        out.push(Finalized {
            venue_id,
            hash: url_hash(&url).to_vec(),
            url: redact_url(&url),
            provider: img
                .str_bytes("provider")
                .ok()
                .flatten()
                .map(|p| String::from_utf8_lossy(p).into_owned()),
            error_type: et.map(|e| String::from_utf8_lossy(e).into_owned()),
        });
    }
    out
}

/// The nightly scan over the venues with failures, following the original's decision
/// matrix per venue: any retryable failure → its images are queued
/// (`transient_queued` venues); else any permanent failure, `permanently_failed`
/// included → `permanent_logged`; else only ambiguous or unknown ones →
/// `ambiguous_skipped` (manual review). `failed` images that can never be retried
/// (permanent error type, or retries exhausted) become `permanently_failed` with
/// `finalized_at` (`finalized` counts images). Venues whose arrays cannot be read count
/// as `errors` and are skipped. Old attempt-log rows are pruned.
#[pg_extern(volatile, security_definer, parallel_unsafe)]
#[search_path(@extschema@, pg_catalog, pg_temp)]
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
    )))
}

/// The array with its `failed` images that can never be retried (permanent error type,
/// or retries exhausted) turned `permanently_failed` with `finalized_at`; returned
/// unchanged when there are none, and for values that are not arrays. STABLE: follows
/// the classification and `max_retries` settings.
#[pg_extern(stable, strict, parallel_safe)]
fn venue_images_finalize(images: Jsonb<'_>) -> PgResult<JsonbResult> {
    let Ok(arr) = images.container() else {
        return Ok(JsonbResult::Datum(images.datum()));
    };
    if !arr.is_array() {
        return Ok(JsonbResult::Datum(images.datum()));
    }
    let now = Spi::get_one::<String>(
        r#"SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')"#,
    )
    .map_err(VenueError::from)
    .report()?
    .unwrap_or_default();
    let scan = scan_venue(arr, &settings::classifier(), settings::max_retries(), &now).report()?;
    Ok(match scan.finalized {
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
                    "SELECT {id} FROM {rel} WHERE {img} @> '[{{\"upload_status\": \"permanently_failed\"}}]'",
                    id = src.id_expr,
                    rel = src.relation,
                    img = src.images_column
                );
                let mut v = Vec::new();
                for row in c.select(&sql, None, &[])? {
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
            let Ok(arr) = require_array(arr) else {
                continue;
            };
            let (kept, removed) = purge_permanently_failed(arr, None)?;
            if removed.is_empty() {
                continue;
            }
            write_venue(c, &src, id, &kept)?;
            for obj in removed {
                let img = Image { index: 0, obj };
                let url = img
                    .str_bytes("provider_url")?
                    .map(|u| String::from_utf8_lossy(u).into_owned());
                let redacted = url.as_deref().map(redact_url);
                // Keep the removed element in the log (its provider URL redacted).
                let detail = match &redacted {
                    Some(r) => patch_object(
                        obj,
                        vec![(Cow::Borrowed(&b"provider_url"[..]), Node::str(r.clone()))],
                        &[],
                    )?,
                    None => Node::Raw(venue_images_core::jsonb::Value::Container(obj)),
                };
                let hash = url.as_deref().map(|u| url_hash(u).to_vec());
                c.update(
                    "INSERT INTO venue_image_attempts (venue_id, url_hash, provider_url, provider, outcome, error_type, message, detail)
                     VALUES ($1, $2, $3, $4, 'purged', $5, 'removed by venue_image_purge_permanently_failed', $6)",
                    None,
                    &[
                        id.into(),
                        hash.clone().into(),
                        redacted.into(),
                        img.str_bytes("provider")?.map(|p| String::from_utf8_lossy(p).into_owned()).into(),
                        img.error_type()?.map(|e| String::from_utf8_lossy(e).into_owned()).into(),
                        JsonbResult::Bytes(encode(&detail)?).into(),
                    ],
                )?;
                if let Some(h) = hash {
                    c.update(
                        "DELETE FROM venue_image_jobs WHERE venue_id = $1 AND url_hash = $2",
                        None,
                        &[id.into(), h.into()],
                    )?;
                }
                purged += 1;
            }
        }
        Ok(purged)
    })
}

/// Manual review: removes `permanently_failed` images from one venue's array (or from
/// every venue's when `venue_id` is NULL). Each removed element is kept in the attempt
/// log (`outcome = 'purged'`, `detail` holds the element with its provider URL redacted).
/// Returns how many images were removed.
#[pg_extern(volatile, security_definer, parallel_unsafe)]
#[search_path(@extschema@, pg_catalog, pg_temp)]
fn venue_image_purge_permanently_failed(
    venue_id: default!(Option<i64>, "NULL"),
) -> Result<i32, ErrorReport> {
    purge(venue_id).report()
}
