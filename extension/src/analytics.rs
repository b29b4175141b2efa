//! Table-level analytics over the configured venues table, each in one pass.
//!
//! Functions that only need venues with failures read them through a GIN index on the
//! images column when one exists (`@>` containment); otherwise they scan the table once.
//! Malformed values never abort a query (see `venue_image_summary_stats`' health columns).

use crate::datum::JsonbResult;
use crate::errors::{Report, VenueError};
use crate::scan::{self, VenueSource};
use crate::settings;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;
use std::borrow::Cow;
use venue_images_core::analytics::{
    failed_error_types, sort_venues, BreakdownRow, Scanner, SummaryStats, TopK, VenueOrder,
    VenueRow,
};
use venue_images_core::jsonb::{encode, Node};

const ID: usize = 1;
const NAME: usize = 2;
const CITY: usize = 3;
const IMAGES: usize = 4;

type VenueCols = (
    name!(id, Option<i64>),
    name!(name, Option<String>),
    name!(city_id, Option<i64>),
    name!(total_images, i32),
    name!(failed_count, i32),
    name!(uploaded_count, i32),
    name!(failure_rate_pct, f64),
);

fn clamp(v: i64) -> i32 {
    v.min(i32::MAX as i64) as i32
}

fn venue_cols(v: &VenueRow) -> VenueCols {
    (
        v.id,
        v.name.clone(),
        v.city_id,
        clamp(v.total_images),
        clamp(v.failed_count),
        clamp(v.uploaded_count),
        v.failure_rate_pct(),
    )
}

/// Scans the venues, calling `f(row, scan, images)` for every row.
fn scan_venues(
    src: &VenueSource,
    only_failures: bool,
    breakdown: bool,
    scanner: &mut Scanner<'_>,
    mut f: impl FnMut(&scan::Row, &venue_images_core::analytics::RowScan, Option<&[u8]>),
) -> Result<(), VenueError> {
    scan::for_each_row(&src.select_sql(only_failures), 4, |row| {
        let images = row.varlena(IMAGES, true);
        let r = scanner.scan(images, breakdown);
        f(row, &r, images);
    })?;
    Ok(())
}

/// Failed images (`failed` + `permanently_failed`) counted by provider and error type,
/// most frequent first.
#[pg_extern(stable, parallel_restricted)]
fn venue_image_failure_breakdown() -> Result<
    TableIterator<
        'static,
        (
            name!(provider, Option<String>),
            name!(error_type, Option<String>),
            name!(error_class, String),
            name!(count, i64),
        ),
    >,
    ErrorReport,
> {
    let src = scan::resolve().report()?;
    let classifier = settings::classifier();
    let mut scanner = Scanner::new(&classifier);
    scan::for_each_row(&src.select_images_sql(true), 1, |row| {
        scanner.scan(row.varlena(1, true), true);
    })
    .report()?;
    let rows = scanner.breakdown_rows();
    Ok(TableIterator::new(rows.into_iter().map(
        |r: BreakdownRow| {
            (
                r.provider,
                r.error_type,
                r.error_class.as_str().to_string(),
                r.count,
            )
        },
    )))
}

/// Every venue with at least one failed image, by `failed_count` then
/// `failure_rate_pct` (failed / image objects, one decimal), descending.
#[pg_extern(stable, parallel_restricted)]
fn venues_with_image_failures() -> Result<
    TableIterator<
        'static,
        (
            name!(id, Option<i64>),
            name!(name, Option<String>),
            name!(city_id, Option<i64>),
            name!(total_images, i32),
            name!(failed_count, i32),
            name!(uploaded_count, i32),
            name!(failure_rate_pct, f64),
        ),
    >,
    ErrorReport,
> {
    let src = scan::resolve().report()?;
    let classifier = settings::classifier();
    let mut scanner = Scanner::new(&classifier);
    let mut rows = Vec::new();
    scan_venues(&src, true, false, &mut scanner, |row, r, _| {
        if r.failed > 0 {
            rows.push(VenueRow::new(
                row.i64(ID),
                row.varlena(NAME, false),
                row.i64(CITY),
                r,
            ));
        }
    })
    .report()?;
    sort_venues(&mut rows, VenueOrder::ByFailures);
    Ok(TableIterator::new(rows.into_iter().map(|v| venue_cols(&v))))
}

fn check_non_negative(name: &str, v: i32) -> Result<usize, VenueError> {
    usize::try_from(v)
        .map_err(|_| VenueError::InvalidParameter(format!("{name} must not be negative, got {v}")))
}

/// Venues with at least `min_failures` failed images and at least one uploaded image
/// (partial failures: the best retry candidates), with the error types of their failed
/// images; at most `max_rows`, by `failed_count` then `failure_rate_pct` descending.
#[pg_extern(stable, parallel_restricted)]
fn venue_image_partial_failure_candidates(
    min_failures: default!(i32, 1),
    max_rows: default!(i32, 100),
) -> Result<
    TableIterator<
        'static,
        (
            name!(id, Option<i64>),
            name!(name, Option<String>),
            name!(city_id, Option<i64>),
            name!(total_images, i32),
            name!(failed_count, i32),
            name!(uploaded_count, i32),
            name!(failure_rate_pct, f64),
            name!(error_types, JsonbResult),
        ),
    >,
    ErrorReport,
> {
    let min = check_non_negative("min_failures", min_failures).report()? as i64;
    let k = check_non_negative("max_rows", max_rows).report()?;
    let src = scan::resolve().report()?;
    let classifier = settings::classifier();
    let mut scanner = Scanner::new(&classifier);
    let mut top = TopK::new(k, VenueOrder::ByFailures);
    scan_venues(&src, min >= 1, false, &mut scanner, |row, r, images| {
        if r.failed >= min && r.uploaded > 0 {
            let mut v = VenueRow::new(row.i64(ID), row.varlena(NAME, false), row.i64(CITY), r);
            if top.admits(&v) {
                v.error_types = images.map(failed_error_types).unwrap_or_default();
                top.push(v);
            }
        }
    })
    .report()?;
    let mut out = Vec::new();
    for v in top.into_sorted() {
        let types = Node::Array(v.error_types.iter().map(opt_str).collect());
        let json = JsonbResult::Bytes(encode(&types).report()?);
        let c = venue_cols(&v);
        out.push((c.0, c.1, c.2, c.3, c.4, c.5, c.6, json));
    }
    Ok(TableIterator::new(out))
}

/// Venues with failures by remediation priority
/// (`failed_count*10 + failure_rate_pct + 20 if any failure is transient`), at most
/// `max_rows`.
#[pg_extern(stable, parallel_restricted)]
fn venue_image_high_priority_venues(
    max_rows: default!(i32, 50),
) -> Result<
    TableIterator<
        'static,
        (
            name!(id, Option<i64>),
            name!(name, Option<String>),
            name!(city_id, Option<i64>),
            name!(total_images, i32),
            name!(failed_count, i32),
            name!(uploaded_count, i32),
            name!(failure_rate_pct, f64),
            name!(priority_score, f64),
        ),
    >,
    ErrorReport,
> {
    let k = check_non_negative("max_rows", max_rows).report()?;
    let src = scan::resolve().report()?;
    let classifier = settings::classifier();
    let mut scanner = Scanner::new(&classifier);
    let mut top = TopK::new(k, VenueOrder::ByPriority);
    scan_venues(&src, true, false, &mut scanner, |row, r, _| {
        if r.failed > 0 {
            let v = VenueRow::new(row.i64(ID), None, row.i64(CITY), r);
            if top.admits(&v) {
                let name = row
                    .varlena(NAME, false)
                    .map(|b| String::from_utf8_lossy(b).into_owned());
                top.push(VenueRow { name, ..v });
            }
        }
    })
    .report()?;
    Ok(TableIterator::new(top.into_sorted().into_iter().map(|v| {
        let c = venue_cols(&v);
        (c.0, c.1, c.2, c.3, c.4, c.5, c.6, v.priority_score())
    })))
}

fn opt_str(s: &Option<String>) -> Node<'_> {
    match s {
        Some(s) => Node::str(s.as_str()),
        None => Node::Null,
    }
}

fn breakdown_json(rows: &[BreakdownRow]) -> Result<Vec<u8>, VenueError> {
    let opt = opt_str;
    let items = rows
        .iter()
        .map(|r| {
            Node::Object(vec![
                (Cow::Borrowed(&b"provider"[..]), opt(&r.provider)),
                (Cow::Borrowed(&b"error_type"[..]), opt(&r.error_type)),
                (
                    Cow::Borrowed(&b"error_class"[..]),
                    Node::str(r.error_class.as_str()),
                ),
                (Cow::Borrowed(&b"count"[..]), Node::int(r.count)),
            ])
        })
        .collect();
    Ok(encode(&Node::Array(items))?)
}

/// Dashboard summary in one pass over the whole table. Besides the failure figures it
/// reports what the scan met: rows, NULL image values, non-array values, and non-object
/// elements (all ignored by the figures).
#[pg_extern(stable, parallel_restricted)]
fn venue_image_summary_stats() -> Result<
    TableIterator<
        'static,
        (
            name!(total_venues_with_failures, i64),
            name!(total_failed_images, i64),
            name!(total_uploaded_images, i64),
            name!(average_failure_rate, f64),
            name!(venues_with_transient, i64),
            name!(venues_with_permanent, i64),
            name!(venues_with_ambiguous, i64),
            name!(top_error_types, JsonbResult),
            name!(venues_scanned, i64),
            name!(null_image_values, i64),
            name!(non_array_values, i64),
            name!(non_object_elements, i64),
        ),
    >,
    ErrorReport,
> {
    let src = scan::resolve().report()?;
    let classifier = settings::classifier();
    let mut scanner = Scanner::new(&classifier);
    let mut stats = SummaryStats::default();
    scan::for_each_row(&src.select_images_sql(false), 1, |row| {
        let r = scanner.scan(row.varlena(1, true), true);
        stats.add(&r);
    })
    .report()?;
    let mut top = scanner.breakdown_rows();
    top.truncate(5);
    let top = JsonbResult::Bytes(breakdown_json(&top).report()?);
    let h = scanner.health;
    Ok(TableIterator::once((
        stats.total_venues_with_failures,
        stats.total_failed_images,
        stats.total_uploaded_images,
        stats.average_failure_rate(),
        stats.venues_with_transient,
        stats.venues_with_permanent,
        stats.venues_with_ambiguous,
        top,
        h.rows,
        h.null_values,
        h.non_array_values,
        h.non_object_elements + h.malformed_values,
    )))
}
