//! Read-only views of single venues for people (`venue_image_reader`): each image with
//! where the lifecycle has it, and a venue search. Readers have no rights on the venues
//! table; these definer functions show them only redacted URLs.

use super::{require_jsonb, select_venues, with_venue_images};
use crate::datum::Jsonb;
use crate::errors::{Report, VenueError};
use crate::plans::{self, Sql};
use crate::source::VenueSource;
use pgrx::datum::TimestampWithTimeZone;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;
use std::collections::HashMap;
use venue_images_core::image::Status;
use venue_images_core::jsonb::{parse_varlena, Value};
use venue_images_core::retry::{read_element, redact_url, Lifecycle, QueueState};

/// Declares a function for readers (`stable`, a definer's, pinned path) that returns a
/// table. pgrx derives `RETURNS TABLE (...)` from a function's return type as written, so
/// the type is written here whole. `-> (venue, ...)` puts first the columns that describe
/// a venue (id, name, city, images, failed), written once for every function about one.
macro_rules! reader_function {
    ($(#$attr:tt)* fn $name:ident($($param:tt)*) -> (venue, $($column:tt)*) $body:block) => {
        reader_function! {
            $(#$attr)*
            fn $name($($param)*) -> (
                name!(id, i64),
                name!(name, Option<String>),
                name!(city_id, Option<i64>),
                name!(total_images, i32),
                name!(failed_count, i32),
                $($column)*
            ) $body
        }
    };
    ($(#$attr:tt)* fn $name:ident($($param:tt)*) -> ($($column:tt)*) $body:block) => {
        $(#$attr)*
        #[pg_extern(stable, security_definer, parallel_restricted)]
        #[search_path(pg_catalog, pg_temp)]
        fn $name($($param)*) -> Result<TableIterator<'static, ($($column)*)>, ErrorReport> $body
    };
}

type ImageRow = (
    i32,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    i64,
    String,
    Option<String>,
    Option<i64>,
    Option<String>,
    Option<TimestampWithTimeZone>,
    Option<String>,
    bool,
);

/// The status as stored: its spelling, or for `Other` the text itself (`skipped_dev`, ...).
fn status_text(s: Status, raw: Option<&str>) -> Option<String> {
    match s {
        Status::Other => raw.map(str::to_string),
        s => Some(s.as_str().to_string()),
    }
}

fn venue_images(venue_id: i64) -> Result<Vec<ImageRow>, VenueError> {
    // Reads only (select, never update), so that it works on a hot standby.
    with_venue_images(venue_id, |c, policy, bytes| {
        let mut jobs: HashMap<Vec<u8>, (i64, String, Option<TimestampWithTimeZone>)> =
            HashMap::new();
        for row in plans::read(
            c,
            "SELECT j.url_hash, j.job_id, q.state, q.next_attempt_at
               FROM venue_images.venue_image_jobs j
               JOIN venue_images.venue_image_retry_queue q ON q.job_id OPERATOR(pg_catalog.=) j.job_id
              WHERE j.venue_id OPERATOR(pg_catalog.=) $1",
            &[venue_id.into()],
        )? {
            let hash = row.get::<Vec<u8>>(1)?.unwrap_or_default();
            jobs.insert(
                hash,
                (
                    row.get::<i64>(2)?.unwrap_or_default(),
                    row.get::<String>(3)?.unwrap_or_default(),
                    row.get::<TimestampWithTimeZone>(4)?,
                ),
            );
        }
        let Ok(arr) = parse_varlena(bytes) else {
            return Ok(Vec::new());
        };
        if !arr.is_array() {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for (index, e) in arr.elements().enumerate() {
            let Some(obj) = e?.as_object() else { continue };
            let text = |k: &str| match obj.get(k) {
                Ok(Some(Value::String(b))) => Some(String::from_utf8_lossy(b).into_owned()),
                _ => None,
            };
            let raw_status = text("upload_status");
            let row = match read_element(index, obj) {
                Err(skip) => (
                    index as i32,
                    text("provider"),
                    None,
                    raw_status,
                    None,
                    None,
                    0,
                    Lifecycle::Skipped.as_str().to_string(),
                    Some(skip.reason),
                    None,
                    None,
                    None,
                    text("imagekit_path"),
                    false,
                ),
                Ok(el) => {
                    let state = policy.state(&el);
                    let reason = state.reason();
                    let error_type = el
                        .error_type
                        .map(|b| String::from_utf8_lossy(b).into_owned());
                    let class = el
                        .status
                        .is_failure()
                        .then(|| policy.class(el.error_type).as_str().to_string());
                    let job = el.hash().and_then(|h| jobs.get(h.as_slice()));
                    // What the dashboard offers to force: what a force retry would take
                    // (the claim's rule for a forced job), unless already due or in flight.
                    let busy = job.is_some_and(|j| {
                        matches!(
                            QueueState::parse(&j.1),
                            Some(QueueState::Due | QueueState::Leased)
                        )
                    });
                    let can_force = policy.attemptable(&el, true) && !busy;
                    (
                        index as i32,
                        el.provider.map(str::to_string),
                        el.source.map(|(u, _)| redact_url(u)),
                        status_text(el.status, raw_status.as_deref()),
                        error_type,
                        class,
                        el.retry_count,
                        state.as_str().to_string(),
                        reason.map(str::to_string),
                        job.map(|j| j.0),
                        job.map(|j| j.1.clone()),
                        job.and_then(|j| j.2),
                        text("imagekit_path"),
                        can_force,
                    )
                }
            };
            out.push(row);
        }
        Ok(out)
    })
}

reader_function! {
    /// One venue's images as the queue sees them: index in the array, provider, the source
    /// URL (redacted), status, error type and class, retry count, lifecycle state
    /// (`not_failed`, `queued`, `to_finalize`, `review`, `permanently_failed`, `skipped`)
    /// with its reason, the queue job (id, state, next attempt) when there is one, and
    /// whether a force retry would take the image now (`can_force`: failed or permanently
    /// failed with a source to download from, and not already due or in flight).
    fn venue_image_venue_images(venue_id: i64) -> (
        name!(element_index, i32),
        name!(provider, Option<String>),
        name!(source_url, Option<String>),
        name!(upload_status, Option<String>),
        name!(error_type, Option<String>),
        name!(error_class, Option<String>),
        name!(retry_count, i64),
        name!(lifecycle, String),
        name!(reason, Option<String>),
        name!(job_id, Option<i64>),
        name!(job_state, Option<String>),
        name!(next_attempt_at, Option<TimestampWithTimeZone>),
        name!(imagekit_path, Option<String>),
        name!(can_force, bool),
    ) {
        Ok(TableIterator::new(venue_images(venue_id).report()?))
    }
}

type FoundRow = (i64, Option<String>, Option<i64>, i32, i32, i32);

fn find_venues(query: &str, max_rows: i32) -> Result<Vec<FoundRow>, VenueError> {
    if !(1..=1000).contains(&max_rows) {
        return Err(VenueError::InvalidParameter(format!(
            "max_rows must be between 1 and 1000, got {max_rows}"
        )));
    }
    let src = plans::venue_source()?;
    let query = query.trim();
    let id: Option<i64> = query.parse().ok();
    let pattern = format!(
        "%{}%",
        query
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_")
    );
    let VenueSource {
        relation,
        id_column,
        id_expr,
        name_expr,
        city_expr,
        images_expr,
        ..
    } = &src;
    let sql = format!(
        "SELECT {id_expr}, {name_expr}, {city_expr}, {images_expr} FROM {relation}
          WHERE {id_column} OPERATOR(pg_catalog.=) $1
             OR ($2 OPERATOR(pg_catalog.<>) '%%' AND {name_expr} OPERATOR(pg_catalog.~~*) $2)
          ORDER BY ({id_column} OPERATOR(pg_catalog.=) $1) DESC NULLS LAST, {id_column}
          LIMIT $3"
    );
    Spi::connect_mut(|c| {
        let mut out = Vec::new();
        let rows = {
            let _as_owner = crate::owner::AsOwner::of(&src)?;
            plans::read(
                c,
                Sql::Built(&sql),
                &[id.into(), pattern.as_str().into(), (max_rows as i64).into()],
            )?
        };
        for row in rows {
            let Some(vid) = row.get::<i64>(1)? else {
                continue;
            };
            let (mut total, mut failed, mut uploaded) = (0i32, 0i32, 0i32);
            if let Some(j) = row.get::<Jsonb<'_>>(4)? {
                if let Ok(arr) = j.container() {
                    if arr.is_array() {
                        for e in arr.elements().flatten() {
                            let Some(obj) = e.as_object() else { continue };
                            total += 1;
                            // Only a string is a status (`->>` semantics).
                            let status = match obj.get("upload_status") {
                                Ok(Some(Value::String(b))) => Status::from_bytes(Some(b)),
                                _ => Status::Other,
                            };
                            match status {
                                Status::Uploaded => uploaded += 1,
                                Status::Failed | Status::PermanentlyFailed => failed += 1,
                                Status::Other => {}
                            }
                        }
                    }
                }
            }
            out.push((
                vid,
                row.get::<String>(2)?,
                row.get::<i64>(3)?,
                total,
                failed,
                uploaded,
            ));
        }
        Ok(out)
    })
}

reader_function! {
    /// Venues whose id is `query`, or whose name contains it (case-insensitive), with their
    /// image counts (`failed` counts `failed` + `permanently_failed`); an exact id first.
    fn venue_image_find_venues(query: &str, max_rows: default!(i32, 20)) -> (
        venue,
        name!(uploaded_count, i32),
    ) {
        Ok(TableIterator::new(find_venues(query, max_rows).report()?))
    }
}

/// One venue's figures for a page about it: (id, name, city, images, failed (failed +
/// permanently failed), permanently failed, uploaded, queued jobs, whether a force retry
/// would take any image now, whether a purge would remove any).
type VenueSummary = (
    i64,
    Option<String>,
    Option<i64>,
    i32,
    i32,
    i32,
    i32,
    i32,
    bool,
    bool,
);

fn venue_summary(venue_id: i64) -> Result<Option<VenueSummary>, VenueError> {
    let src = plans::venue_source()?;
    require_jsonb(&src)?;
    let sql = select_venues(&src, &[&src.name_expr, &src.city_expr], "$1");
    let found = Spi::connect_mut(|c| {
        let rows = {
            let _as_owner = crate::owner::AsOwner::of(&src)?;
            plans::read(c, Sql::Built(&sql), &[venue_id.into()])?
        };
        let mut found = None;
        for row in rows {
            found = Some((row.get::<String>(1)?, row.get::<i64>(2)?));
        }
        Ok::<_, VenueError>(found)
    })?;
    let Some((name, city)) = found else {
        return Ok(None);
    };
    let images = venue_images(venue_id)?;
    let clamp = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
    let status = |r: &ImageRow| r.3.as_deref().and_then(Status::parse);
    let failed = images
        .iter()
        .filter(|r| status(r).is_some_and(Status::is_failure))
        .count();
    let permanent = images
        .iter()
        .filter(|r| status(r) == Some(Status::PermanentlyFailed))
        .count();
    let uploaded = images
        .iter()
        .filter(|r| status(r) == Some(Status::Uploaded))
        .count();
    let queued = images.iter().filter(|r| r.9.is_some()).count();
    Ok(Some((
        venue_id,
        name,
        city,
        clamp(images.len()),
        clamp(failed),
        clamp(permanent),
        clamp(uploaded),
        clamp(queued),
        images.iter().any(|r| r.13),
        permanent > 0,
    )))
}

reader_function! {
    /// One venue's figures, for a page about it (no row for an unknown venue): its name and
    /// city, its image objects, failed (`failed` + `permanently_failed`), permanently
    /// failed, uploaded, images in the retry queue, whether a force retry would take any
    /// image now (`can_force`), and whether a purge would remove any (`can_purge`).
    fn venue_image_venue_summary(venue_id: i64) -> (
        venue,
        name!(permanently_failed_count, i32),
        name!(uploaded_count, i32),
        name!(queued_count, i32),
        name!(can_force, bool),
        name!(can_purge, bool),
    ) {
        Ok(TableIterator::new(venue_summary(venue_id).report()?))
    }
}
