//! The choice between a full scan of the venues table and its GIN index on the images
//! column, for the functions that only need venues with failed images.

use crate::errors::VenueError;
use crate::settings;
use crate::source::VenueSource;

/// `WHERE` clause restricting a query to venues with a failed image: the
/// containment test the GIN index answers.
fn failures_predicate(src: &VenueSource) -> String {
    format!(
        "({c} OPERATOR(pg_catalog.@>) '[{{\"upload_status\": \"failed\"}}]'::pg_catalog.jsonb \
         OR {c} OPERATOR(pg_catalog.@>) '[{{\"upload_status\": \"permanently_failed\"}}]'::pg_catalog.jsonb)",
        c = src.images_column
    )
}

/// The `WHERE` clause for a query that only needs venues with failures: the GIN
/// predicate when an index exists and a small sample says failures are rarer than
/// `venue_images.gin_max_failing_share`, otherwise nothing (one full, parallel scan).
/// Measured on the benchmark data: at 25% of venues failing, the bitmap heap scan
/// plus its recheck already costs as much as the parallel scan of the whole table.
pub fn failures_filter(src: &VenueSource) -> Result<String, VenueError> {
    let threshold = settings::gin_max_failing_share();
    if !src.has_gin || threshold <= 0.0 {
        return Ok(String::new());
    }
    if threshold >= 1.0 {
        return Ok(format!(" WHERE {}", failures_predicate(src)));
    }
    let reltuples = crate::spi::select_one::<f32>(
        "SELECT reltuples FROM pg_catalog.pg_class WHERE oid OPERATOR(pg_catalog.=) $1",
        &[src.oid.into()],
    )?
    .unwrap_or(-1.0) as f64;
    // About 500 rows, whole pages at random (cheap), same sample every time. The
    // share only chooses a plan, and near the threshold both plans cost about the
    // same: at a 5% share, 500 rows estimate it within about 1 point (one standard
    // error), and the sample costs 3 ms instead of 2,000 rows' 12 ms on 200,000
    // compact venues (its rows are detoasted for the containment test).
    let pct = if reltuples > 0.0 {
        (500.0 / reltuples * 100.0).clamp(0.01, 100.0)
    } else {
        100.0
    };
    let _as_owner = crate::owner::AsOwner::of(src)?;
    let share = crate::spi::select_one::<f64>(
        &format!(
            "SELECT (pg_catalog.count(*) FILTER (WHERE {pred}))::pg_catalog.float8
                OPERATOR(pg_catalog./) greatest(pg_catalog.count(*), 1)
           FROM {rel} TABLESAMPLE pg_catalog.system ({pct}) REPEATABLE (2008)",
            pred = failures_predicate(src),
            rel = src.relation,
        ),
        &[],
    )?
    .unwrap_or(1.0);
    Ok(if share < threshold {
        format!(" WHERE {}", failures_predicate(src))
    } else {
        String::new()
    })
}
