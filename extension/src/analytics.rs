//! Table-level analytics over the configured venues table, each one SQL statement: a
//! parallel-safe aggregate over one scan of the table (see [`crate::aggregates`]).
//!
//! They are `SECURITY DEFINER` (owned by `venue_image_definer`, `search_path =
//! pg_catalog, pg_temp`): analysts get them through `venue_image_reader` without any
//! right on the venues table, so they never read the raw arrays and the API keys in
//! their provider URLs.
//!
//! Functions that only need venues with failures read them through a GIN index on the
//! images column when one exists and failures are rare (see
//! [`crate::gin::failures_filter`]). Malformed values never abort a
//! query (see `venue_image_summary_stats`' health columns).

use crate::aggregates::breakdown_node;
use crate::datum::JsonbResult;
use crate::errors::{Report, VenueError};
use crate::settings;
use crate::source::VenueSource;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;
use venue_images_core::analytics::{decode_rows, Stats, VenueRow, VenueRows};
use venue_images_core::jsonb::{encode, Node};
use venue_images_core::wire::Reader;

fn clamp(v: i64) -> i32 {
    v.min(i32::MAX as i64) as i32
}

/// Runs a one-row, one-column query and returns its bytea value.
///
/// No row limit is passed to SPI: a limit makes PostgreSQL run the plan without parallel
/// workers ("Workers Launched: 0"), which would leave the analytics at the speed of one
/// process while a bare scan of the table uses all of them.
fn query_bytes(src: &VenueSource, sql: &str) -> Result<Vec<u8>, VenueError> {
    let _as_owner = crate::owner::AsOwner::of(src)?;
    Ok(
        Spi::connect(|client| client.select(sql, None, &[])?.first().get_one::<Vec<u8>>())?
            .unwrap_or_default(),
    )
}

/// Runs `venue_images_stats_state` over the table (all rows, or the filter's).
fn stats(src: &VenueSource, filter: &str) -> Result<Stats, VenueError> {
    let sql = format!(
        "SELECT venue_images.venue_images_stats_state({}) FROM {}{filter}",
        src.images_expr, src.relation
    );
    let bytes = query_bytes(src, &sql)?;
    Ok(Stats::decode(&bytes, settings::classifier())?)
}

/// Which venues a list keeps.
struct List {
    min_failures: i64,
    require_uploaded: bool,
    max_rows: Option<usize>,
    by_priority: bool,
    with_error_types: bool,
}

/// Runs `venue_images_venue_list` over the table.
fn venue_list(src: &VenueSource, l: List) -> Result<VenueRows, VenueError> {
    let filter = crate::gin::failures_filter(src)?;
    let sql = format!(
        "SELECT venue_images.venue_images_venue_list({id}, {name}, {city}, {img}, {min}, {up}, {max}, {prio}, {types})
           FROM {rel}{filter}",
        id = src.id_expr,
        name = src.name_expr,
        city = src.city_expr,
        img = src.images_expr,
        min = l.min_failures,
        up = l.require_uploaded,
        max = l.max_rows.map(|k| k.to_string()).unwrap_or_else(|| "NULL".into()),
        prio = l.by_priority,
        types = l.with_error_types,
        rel = src.relation,
    );
    let handoff = crate::handoff::Scope::open();
    let bytes = query_bytes(src, &sql)?;
    if let Some(rows) = handoff.redeem(&bytes).map_err(VenueError::Spi)? {
        return Ok(rows);
    }
    if bytes.is_empty() {
        return Ok(VenueRows::default());
    }
    let mut r = Reader::new(&bytes);
    let rows = decode_rows(&mut r)?;
    r.finish()?;
    Ok(VenueRows::Rows(rows))
}

fn check_non_negative(name: &str, v: i32) -> Result<usize, VenueError> {
    usize::try_from(v)
        .map_err(|_| VenueError::InvalidParameter(format!("{name} must not be negative, got {v}")))
}

/// Failed images (`failed` + `permanently_failed`) counted by provider and error type,
/// most frequent first.
#[pg_extern(stable, parallel_restricted, security_definer)]
#[search_path(pg_catalog, pg_temp)]
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
    let src = crate::plans::venue_source().report()?;
    let filter = crate::gin::failures_filter(&src).report()?;
    let st = stats(&src, &filter).report()?;
    Ok(TableIterator::new(
        st.scanner.breakdown_rows().into_iter().map(|r| {
            (
                r.provider,
                r.error_type,
                r.error_class.as_str().to_string(),
                r.count,
            )
        }),
    ))
}

/// Every venue with at least one failed image, by `failed_count` then
/// `failure_rate_pct` (failed / image objects, one decimal), descending.
///
/// Returned in materialize mode (see [`crate::srf`]): the list can hold most of the table.
fn failure_list() -> Result<VenueRows, VenueError> {
    let src = crate::plans::venue_source()?;
    venue_list(
        &src,
        List {
            min_failures: 1,
            require_uploaded: false,
            max_rows: None,
            by_priority: false,
            with_error_types: false,
        },
    )
}

#[doc(hidden)]
#[no_mangle]
pub extern "C" fn pg_finfo_venues_with_image_failures_wrapper() -> &'static pg_sys::Pg_finfo_record
{
    const V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
    &V1
}

/// `venues_with_image_failures()`, see [`failure_list`]. The symbol keeps the name pgrx
/// gave it in 0.1.0 and 0.2.0, whose install scripts (and databases not yet updated) name it.
///
/// # Safety
/// Called by PostgreSQL's function manager only, as the C function declared below.
#[doc(hidden)]
#[no_mangle]
#[pg_guard]
pub unsafe extern "C-unwind" fn venues_with_image_failures_wrapper(
    fcinfo: pg_sys::FunctionCallInfo,
) -> pg_sys::Datum {
    let rows = match failure_list() {
        Ok(rows) => rows,
        Err(e) => {
            e.report().report(PgLogLevel::ERROR);
            unreachable!("ERROR does not return")
        }
    };
    // SAFETY: a set-returning call of the function declared below, whose seven result
    // columns are bigint, text, bigint, int, int, int and float8, as built here.
    unsafe {
        crate::srf::materialize(fcinfo, rows.views(), |v| {
            let rate = v.failure_rate_pct();
            [
                v.id.into_datum(),
                v.name.map(text_datum),
                v.city_id.into_datum(),
                clamp(v.total_images).into_datum(),
                clamp(v.failed_count).into_datum(),
                clamp(v.uploaded_count).into_datum(),
                rate.into_datum(),
            ]
        });
    }
    pg_sys::Datum::from(0)
}

/// A `text` datum of `bytes` (a venue's name as read from its text column), allocated
/// in the current memory context: no `String` on the way.
fn text_datum(bytes: &[u8]) -> pg_sys::Datum {
    // SAFETY: PostgreSQL copies `bytes.len()` bytes into a new text value; a name read
    // from a text column is below 1 GB, so its length fits an int.
    let text = unsafe {
        pg_sys::cstring_to_text_with_len(bytes.as_ptr().cast(), bytes.len() as std::ffi::c_int)
    };
    pg_sys::Datum::from(text)
}

extension_sql!(
    r#"
CREATE FUNCTION "venues_with_image_failures"() RETURNS TABLE (
	"id" bigint,
	"name" TEXT,
	"city_id" bigint,
	"total_images" INT,
	"failed_count" INT,
	"uploaded_count" INT,
	"failure_rate_pct" double precision
)
STRICT STABLE SECURITY DEFINER PARALLEL RESTRICTED
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'venues_with_image_failures_wrapper';
"#,
    name = "venues_with_image_failures"
);

fn opt_str(s: &Option<String>) -> Node<'_> {
    match s {
        Some(s) => Node::str(s.as_str()),
        None => Node::Null,
    }
}

/// A table function whose rows are venues: the columns every such row starts with (id,
/// name, city, image counts, failure rate), written once, then `$extra` and its type.
/// The whole `#[pg_extern]` item is written out before pgrx reads it, so the generated
/// `RETURNS TABLE` names every column.
macro_rules! venue_rows_function {
    ($(#$attr:tt)* fn $name:ident($($param:tt)*) -> (venue, $extra:ident: $extra_ty:tt) $body:block) => {
        $(#$attr)*
        #[pg_extern(stable, parallel_restricted, security_definer)]
        #[search_path(pg_catalog, pg_temp)]
        fn $name($($param)*) -> Result<
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
                    name!($extra, $extra_ty),
                ),
            >,
            ErrorReport,
        > $body
    };
}

/// The columns of a venue row that [`venue_rows_function!`] declares, then `extra`.
type VenueColumns<X> = (
    Option<i64>,
    Option<String>,
    Option<i64>,
    i32,
    i32,
    i32,
    f64,
    X,
);

fn venue_columns<X>(v: &VenueRow, extra: X) -> VenueColumns<X> {
    (
        v.id,
        v.name.clone(),
        v.city_id,
        clamp(v.total_images),
        clamp(v.failed_count),
        clamp(v.uploaded_count),
        v.failure_rate_pct(),
        extra,
    )
}

venue_rows_function! {
    /// Venues with at least `min_failures` failed images and at least one uploaded image
    /// (partial failures: the best retry candidates), with the error types of their failed
    /// images; at most `max_rows`, by `failed_count` then `failure_rate_pct` descending.
    fn venue_image_partial_failure_candidates(
        min_failures: default!(i32, 1),
        max_rows: default!(i32, 100),
    ) -> (venue, error_types: JsonbResult) {
        let min = check_non_negative("min_failures", min_failures).report()? as i64;
        let k = check_non_negative("max_rows", max_rows).report()?;
        let src = crate::plans::venue_source().report()?;
        let rows = venue_list(
            &src,
            List {
                min_failures: min.max(1),
                require_uploaded: true,
                max_rows: Some(k),
                by_priority: false,
                with_error_types: true,
            },
        )
        .report()?
        .into_vec();
        let mut out = Vec::with_capacity(rows.len());
        for v in rows {
            let types = Node::Array(v.error_types.iter().map(opt_str).collect());
            out.push(venue_columns(&v, JsonbResult::Bytes(encode(&types).report()?)));
        }
        Ok(TableIterator::new(out))
    }
}

venue_rows_function! {
    /// Venues with failures by remediation priority
    /// (`failed_count*10 + failure_rate_pct + 20 if any failure is transient`), at most
    /// `max_rows`.
    fn venue_image_high_priority_venues(
        max_rows: default!(i32, 50),
    ) -> (venue, priority_score: f64) {
        let k = check_non_negative("max_rows", max_rows).report()?;
        let src = crate::plans::venue_source().report()?;
        let rows = venue_list(
            &src,
            List {
                min_failures: 1,
                require_uploaded: false,
                max_rows: Some(k),
                by_priority: true,
                with_error_types: false,
            },
        )
        .report()?
        .into_vec();
        Ok(TableIterator::new(
            rows.iter().map(|v| venue_columns(v, v.priority_score())).collect::<Vec<_>>(),
        ))
    }
}

/// Dashboard summary in one pass over the whole table. Besides the failure figures it
/// reports what the scan met: rows, NULL image values, non-array values, and non-object
/// elements (all ignored by the figures).
#[pg_extern(stable, parallel_restricted, security_definer)]
#[search_path(pg_catalog, pg_temp)]
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
    let src = crate::plans::venue_source().report()?;
    let st = stats(&src, "").report()?;
    let mut top = st.scanner.breakdown_rows();
    top.truncate(5);
    let top = JsonbResult::Bytes(encode(&breakdown_node(&top)).report()?);
    let (s, h) = (&st.summary, st.scanner.health);
    Ok(TableIterator::once((
        s.total_venues_with_failures,
        s.total_failed_images,
        s.total_uploaded_images,
        s.average_failure_rate(),
        s.venues_with_transient,
        s.venues_with_permanent,
        s.venues_with_ambiguous,
        top,
        h.rows,
        h.null_values,
        h.non_array_values,
        h.non_object_elements + h.malformed_values,
    )))
}

/// A venue row of the overview, as a jsonb object.
fn venue_node(v: &VenueRow) -> Node<'_> {
    use std::borrow::Cow;
    let opt_int = |x: Option<i64>| x.map(Node::int).unwrap_or(Node::Null);
    let dec = |x: f64| venue_images_core::retry::number(&format!("{x:.1}")).unwrap_or(Node::Null);
    Node::Object(vec![
        (Cow::Borrowed(&b"id"[..]), opt_int(v.id)),
        (
            Cow::Borrowed(&b"name"[..]),
            v.name.as_deref().map(Node::str).unwrap_or(Node::Null),
        ),
        (Cow::Borrowed(&b"city_id"[..]), opt_int(v.city_id)),
        (
            Cow::Borrowed(&b"total_images"[..]),
            Node::int(v.total_images),
        ),
        (
            Cow::Borrowed(&b"failed_count"[..]),
            Node::int(v.failed_count),
        ),
        (
            Cow::Borrowed(&b"uploaded_count"[..]),
            Node::int(v.uploaded_count),
        ),
        (
            Cow::Borrowed(&b"failure_rate_pct"[..]),
            dec(v.failure_rate_pct()),
        ),
        (
            Cow::Borrowed(&b"priority_score"[..]),
            dec(v.priority_score()),
        ),
    ])
}

/// Everything a dashboard shows about the table, from ONE scan of it: the figures of
/// `venue_images_stats` (summary, health counts and the full breakdown) under `stats`,
/// and the `max_rows` highest-priority venues under `high_priority`. Readers call this
/// (it is `SECURITY DEFINER`); refreshing a dashboard costs one scan, not three.
#[pg_extern(stable, parallel_restricted, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn venue_image_overview(max_rows: default!(i32, 50)) -> Result<JsonbResult, ErrorReport> {
    let run = || -> Result<JsonbResult, VenueError> {
        let k = check_non_negative("max_rows", max_rows)?;
        let src = crate::plans::venue_source()?;
        let sql = format!(
            "SELECT venue_images.venue_images_stats({img}),
                    venue_images.venue_images_venue_list({id}, {name}, {city}, {img}, 1, false, {k}, true, false)
               FROM {rel}",
            id = src.id_expr,
            name = src.name_expr,
            city = src.city_expr,
            img = src.images_expr,
            rel = src.relation,
        );
        let (stats, list) = {
            let _as_owner = crate::owner::AsOwner::of(&src)?;
            Spi::connect(|client| {
                let row = client.select(&sql, None, &[])?.first();
                Ok::<_, pgrx::spi::Error>((
                    row.get::<crate::datum::Jsonb<'_>>(1)?
                        .map(|j| j.bytes().to_vec()),
                    row.get::<Vec<u8>>(2)?,
                ))
            })?
        };
        let rows = match list.filter(|b| !b.is_empty()) {
            Some(bytes) => {
                let mut r = Reader::new(&bytes);
                let rows = decode_rows(&mut r)?;
                r.finish()?;
                rows
            }
            None => Vec::new(),
        };
        let stats_bytes = stats.unwrap_or_default();
        let stats_node = match venue_images_core::jsonb::parse_varlena(&stats_bytes) {
            Ok(c) => Node::Raw(venue_images_core::jsonb::Value::Container(c)),
            Err(_) => Node::Null,
        };
        let node = Node::Object(vec![
            (std::borrow::Cow::Borrowed(&b"stats"[..]), stats_node),
            (
                std::borrow::Cow::Borrowed(&b"high_priority"[..]),
                Node::Array(rows.iter().map(venue_node).collect()),
            ),
        ]);
        Ok(JsonbResult::Bytes(encode(&node)?))
    };
    run().report()
}
