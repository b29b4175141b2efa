//! Parallel-safe aggregates behind the table-level analytics.
//!
//! Each row is read by the transition function inside whichever process scans it
//! (parallel workers included); partial states are serialised, sent to the leader and
//! combined. So the analytics run under the same parallel plan as a bare scan of the
//! table, and each images value is detoasted exactly once.
//!
//! - `venue_images_stats(jsonb) → jsonb`: public; summary, health and breakdown of any
//!   set of rows (e.g. `GROUP BY city_id`).
//! - `venue_images_stats_state(jsonb) → bytea` and `venue_images_venue_list(...) → bytea`:
//!   the same machinery with a binary result, used by the table functions.
//!
//! States are Rust values owned by the aggregate's memory context (a reset callback drops
//! them), so nothing leaks when a query fails half-way.

use crate::datum::{JsonbResult, RawJsonb};
use crate::errors::{PgResult, Report, VenueError};
use crate::settings;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;
use pgrx::{Internal, PgMemoryContexts};
use std::borrow::Cow;
use venue_images_core::analytics::{
    encode_rows, BreakdownRow, ListSpec, Stats, VenueList, VenueOrder,
};
use venue_images_core::jsonb::{encode, Node};
use venue_images_core::wire::Writer;

/// The aggregate's long-lived memory context; errors when not called as an aggregate.
fn agg_context(fcinfo: pg_sys::FunctionCallInfo) -> Result<pg_sys::MemoryContext, ErrorReport> {
    let mut cx: pg_sys::MemoryContext = std::ptr::null_mut();
    // SAFETY: fcinfo is the live call info of this function.
    let kind = unsafe { pg_sys::AggCheckCallContext(fcinfo, &mut cx) };
    if kind == 0 || cx.is_null() {
        return Err(ErrorReport::new(
            PgSqlErrorCode::ERRCODE_WRONG_OBJECT_TYPE,
            "venue_images aggregate support function called outside an aggregate",
            "venue_images",
        ));
    }
    Ok(cx)
}

/// Moves `value` into the aggregate context (dropped when the context resets).
fn adopt<T>(cx: pg_sys::MemoryContext, value: T) -> Internal {
    let ptr = PgMemoryContexts::For(cx).leak_and_drop_on_delete(value);
    Internal::from(Some(pg_sys::Datum::from(ptr)))
}

/// The state behind an `internal` argument (`None` for SQL NULL).
///
/// # Safety
/// The datum must have been produced by [`adopt`] with the same `T`, and the aggregate
/// context that owns it must outlive `'a` (it does for the duration of a call).
unsafe fn state_mut<'a, T>(s: Option<Internal>) -> Option<&'a mut T> {
    let d = s.and_then(Internal::unwrap)?;
    unsafe { d.cast_mut_ptr::<T>().as_mut() }
}

/// Hands a state back to PostgreSQL.
fn internal<T>(st: &mut T) -> Option<Internal> {
    Some(Internal::from(Some(pg_sys::Datum::from(st as *mut T))))
}

// ---- venue_images_stats ----

/// The arguments of a transition function called through the call convention (see
/// `venue_images_stats_transfn_wrapper`): `arg(i)` is argument `i`, `None` for SQL NULL.
struct RawArgs<'a>(&'a [pg_sys::NullableDatum]);

impl RawArgs<'_> {
    /// # Safety
    /// `fcinfo` is the live call info of the calling function.
    unsafe fn of(fcinfo: pg_sys::FunctionCallInfo) -> Self {
        // SAFETY: the caller's contract; `nargs` arguments follow the call info.
        unsafe {
            let nargs = usize::try_from((*fcinfo).nargs).unwrap_or(0);
            RawArgs((*fcinfo).args.as_slice(nargs))
        }
    }

    fn arg(&self, i: usize) -> Option<pg_sys::Datum> {
        self.0.get(i).filter(|a| !a.isnull).map(|a| a.value)
    }

    /// The state in argument 0, or `fresh()` adopted by the aggregate's context on the
    /// first call (raising an ERROR when not called as an aggregate). The context is only
    /// asked for then: each call into PostgreSQL from Rust sets a jump point.
    ///
    /// # Safety
    /// Argument 0 is NULL or a state adopted by this same function as a `T`.
    unsafe fn state<'s, T>(
        &self,
        fcinfo: pg_sys::FunctionCallInfo,
        fresh: impl FnOnce() -> T,
    ) -> &'s mut T {
        // SAFETY: the caller's contract.
        if let Some(st) = unsafe { state_mut::<T>(self.arg(0).map(|d| Internal::from(Some(d)))) } {
            return st;
        }
        let cx = match agg_context(fcinfo) {
            Ok(cx) => cx,
            Err(e) => {
                e.report(PgLogLevel::ERROR);
                unreachable!("ERROR does not return")
            }
        };
        // SAFETY: just adopted, as a T.
        unsafe { state_mut::<T>(Some(adopt(cx, fresh()))) }.expect("adopted state")
    }
}

/// The `pg_finfo_` record PostgreSQL looks for beside each C function of version 1.
macro_rules! finfo_v1 {
    ($name:ident) => {
        #[doc(hidden)]
        #[no_mangle]
        pub extern "C" fn $name() -> &'static pg_sys::Pg_finfo_record {
            const V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
            &V1
        }
    };
}

/// Transition function of `venue_images_stats` (adds one row).
///
/// `COST 100`, in units of `cpu_operator_cost`: reading a row's whole image array costs
/// about as much as reading its share of a heap page, far more than the default 1 (a
/// built-in operator). With the default, a table compressed with lz4 got a serial plan for
/// the analytics while the bare scan (`sum(jsonb_array_length(...))`, two calls per row)
/// got a parallel one: the aggregate looked too cheap per row to be worth the workers.
///
/// Written against the call convention rather than through `#[pg_extern]`, whose wrapper
/// (argument unboxing, a memory context switch and a jump point per call) was a quarter of
/// this function's own time on compact lz4 rows (perf, 200,000 rows).
///
/// # Safety
/// Called by PostgreSQL's function manager only, as the C function declared below.
#[doc(hidden)]
#[no_mangle]
#[pg_guard]
pub unsafe extern "C-unwind" fn venue_images_stats_transfn_wrapper(
    fcinfo: pg_sys::FunctionCallInfo,
) -> pg_sys::Datum {
    // SAFETY: the function manager's call info, for the function declared below; its
    // state is only ever adopted here.
    let args = unsafe { RawArgs::of(fcinfo) };
    let st = unsafe { args.state(fcinfo, || Stats::new(settings::classifier())) };
    let images = args.arg(1).map(RawJsonb);
    // SAFETY: a jsonb argument, valid for this call.
    unsafe { RawJsonb::with_opt(images, |bytes| st.add(bytes)) };
    pg_sys::Datum::from(st as *mut Stats)
}

finfo_v1!(pg_finfo_venue_images_stats_transfn_wrapper);

extension_sql!(
    r#"
CREATE FUNCTION "venue_images_stats_transfn"("state" internal, "images" jsonb) RETURNS internal
STABLE PARALLEL SAFE COST 100
LANGUAGE c
AS 'MODULE_PATHNAME', 'venue_images_stats_transfn_wrapper';
"#,
    name = "venue_images_stats_transfn"
);

/// Combine function of `venue_images_stats` (merges a worker's state).
#[pg_extern(stable, parallel_safe)]
fn venue_images_stats_combinefn(
    a: Option<Internal>,
    b: Option<Internal>,
    fcinfo: pg_sys::FunctionCallInfo,
) -> PgResult<Option<Internal>> {
    let cx = agg_context(fcinfo)?;
    match unsafe { (state_mut::<Stats>(a), state_mut::<Stats>(b)) } {
        (Some(sa), Some(sb)) => {
            sa.merge(sb);
            Ok(internal(sa))
        }
        (Some(sa), None) => Ok(internal(sa)),
        (None, Some(sb)) => {
            let mut fresh = Stats::new(settings::classifier());
            fresh.merge(sb);
            Ok(Some(adopt(cx, fresh)))
        }
        (None, None) => Ok(None),
    }
}

/// Serial function of `venue_images_stats` (state → bytes, also the final function of
/// `venue_images_stats_state`).
#[pg_extern(stable, parallel_safe)]
fn venue_images_stats_serialfn(state: Option<Internal>) -> Vec<u8> {
    match unsafe { state_mut::<Stats>(state) } {
        Some(st) => st.encode(),
        None => Stats::new(settings::classifier()).encode(),
    }
}

/// Deserial function of `venue_images_stats`.
#[pg_extern(stable, strict, parallel_safe)]
fn venue_images_stats_deserialfn(
    bytes: &[u8],
    _unused: Internal,
    fcinfo: pg_sys::FunctionCallInfo,
) -> PgResult<Internal> {
    let cx = agg_context(fcinfo)?;
    let st = Stats::decode(bytes, settings::classifier()).report()?;
    Ok(adopt(cx, st))
}

fn opt_str(s: &Option<String>) -> Node<'_> {
    match s {
        Some(s) => Node::str(s.as_str()),
        None => Node::Null,
    }
}

/// The breakdown as a jsonb array of `{provider, error_type, error_class, count}`.
pub fn breakdown_node(rows: &[BreakdownRow]) -> Node<'_> {
    Node::Array(
        rows.iter()
            .map(|r| {
                Node::Object(vec![
                    (Cow::Borrowed(&b"provider"[..]), opt_str(&r.provider)),
                    (Cow::Borrowed(&b"error_type"[..]), opt_str(&r.error_type)),
                    (
                        Cow::Borrowed(&b"error_class"[..]),
                        Node::str(r.error_class.as_str()),
                    ),
                    (Cow::Borrowed(&b"count"[..]), Node::int(r.count)),
                ])
            })
            .collect(),
    )
}

/// Final function of `venue_images_stats`: the figures as a jsonb object.
#[pg_extern(stable, parallel_safe)]
fn venue_images_stats_finalfn(state: Option<Internal>) -> PgResult<JsonbResult> {
    let empty;
    let st = match unsafe { state_mut::<Stats>(state) } {
        Some(st) => &*st,
        None => {
            empty = Stats::new(settings::classifier());
            &empty
        }
    };
    let s = &st.summary;
    let h = &st.scanner.health;
    let rows = st.scanner.breakdown_rows();
    let num = |k: &'static str, v: i64| (Cow::Borrowed(k.as_bytes()), Node::int(v));
    let rate =
        venue_images_core::jsonb::encode_decimal(&format!("{:.1}", s.average_failure_rate()))
            .map_err(|e| VenueError::InvalidParameter(e.to_string()))
            .report()?;
    let node = Node::Object(vec![
        num("venues", h.rows),
        num("null_image_values", h.null_values),
        num("non_array_values", h.non_array_values),
        num(
            "non_object_elements",
            h.non_object_elements + h.malformed_values,
        ),
        num("venues_with_failures", s.total_venues_with_failures),
        num("failed_images", s.total_failed_images),
        num("uploaded_images_of_failing_venues", s.total_uploaded_images),
        (
            Cow::Borrowed(&b"average_failure_rate"[..]),
            Node::Num(Cow::Owned(rate)),
        ),
        num("venues_with_transient", s.venues_with_transient),
        num("venues_with_permanent", s.venues_with_permanent),
        num("venues_with_ambiguous", s.venues_with_ambiguous),
        (Cow::Borrowed(&b"breakdown"[..]), breakdown_node(&rows)),
    ]);
    Ok(JsonbResult::Bytes(encode(&node).report()?))
}

// ---- venue_images_venue_list ----

/// Transition function of `venue_images_venue_list` (declared below, `COST 100` as
/// `venue_images_stats_transfn`).
///
/// Written against the call convention rather than through `#[pg_extern]`: pgrx unboxes
/// each of the ten arguments through its generic argument machinery on every call, which
/// cost about 110 ns per row more than the two arguments of `venue_images_stats_transfn`
/// (perf, 200,000 rows: a fifth of what `venues_with_image_failures` adds to a bare scan,
/// outside the scan of the images themselves). Here each argument is one read of the
/// call's argument array.
///
/// # Safety
/// Called by PostgreSQL's function manager only, as the C function declared below (ten
/// arguments of the types declared there).
#[doc(hidden)]
#[no_mangle]
#[pg_guard]
pub unsafe extern "C-unwind" fn venue_images_venue_list_transfn_wrapper(
    fcinfo: pg_sys::FunctionCallInfo,
) -> pg_sys::Datum {
    // SAFETY: the function manager's call info, with the ten arguments declared below;
    // its state is only ever adopted here.
    let args = unsafe { RawArgs::of(fcinfo) };
    let arg = |i: usize| args.arg(i);
    let list = unsafe {
        args.state(fcinfo, || {
            let int = |i: usize| arg(i).map(|d| d.value() as i32);
            let flag = |i: usize| arg(i).map(|d| d.value() != 0);
            let spec = ListSpec {
                min_failures: int(5).unwrap_or(1) as i64,
                require_uploaded: flag(6).unwrap_or(false),
                max_rows: int(7).and_then(|k| usize::try_from(k).ok()),
                order: if flag(8).unwrap_or(false) {
                    VenueOrder::ByPriority
                } else {
                    VenueOrder::ByFailures
                },
                with_error_types: flag(9).unwrap_or(false),
            };
            VenueList::new(spec, settings::classifier())
        })
    };
    let id = arg(1).map(|d| d.value() as i64);
    let city_id = arg(3).map(|d| d.value() as i64);
    // SAFETY: a text argument, valid for this call; detoasted (a name is short: this
    // reads it in place) and read as bytes.
    let name = arg(2).map(|d| unsafe {
        pgrx::varlena::varlena_to_byte_slice(pg_sys::pg_detoast_datum_packed(d.cast_mut_ptr()))
    });
    let images = arg(4).map(RawJsonb);
    // SAFETY: a jsonb argument, valid for this call.
    unsafe { RawJsonb::with_opt(images, |bytes| list.add(id, name, city_id, bytes)) };
    pg_sys::Datum::from(list as *mut VenueList)
}

finfo_v1!(pg_finfo_venue_images_venue_list_transfn_wrapper);

extension_sql!(
    r#"
CREATE  FUNCTION "venue_images_venue_list_transfn"(
	"state" internal,
	"id" bigint,
	"name" TEXT,
	"city_id" bigint,
	"images" jsonb,
	"min_failures" INT,
	"require_uploaded" bool,
	"max_rows" INT,
	"by_priority" bool,
	"with_error_types" bool
) RETURNS internal
STABLE PARALLEL SAFE COST 100
LANGUAGE c
AS 'MODULE_PATHNAME', 'venue_images_venue_list_transfn_wrapper';
"#,
    name = "venue_images_venue_list_transfn"
);

/// Combine function of `venue_images_venue_list`.
#[pg_extern(stable, parallel_safe)]
fn venue_images_venue_list_combinefn(
    a: Option<Internal>,
    b: Option<Internal>,
    fcinfo: pg_sys::FunctionCallInfo,
) -> PgResult<Option<Internal>> {
    let cx = agg_context(fcinfo)?;
    match unsafe { (state_mut::<VenueList>(a), state_mut::<VenueList>(b)) } {
        (Some(la), Some(lb)) => {
            la.merge(lb.take());
            Ok(internal(la))
        }
        (Some(la), None) => Ok(internal(la)),
        (None, Some(lb)) => Ok(Some(adopt(cx, lb.take()))),
        (None, None) => Ok(None),
    }
}

/// Serial function of `venue_images_venue_list`.
#[pg_extern(stable, strict, parallel_safe)]
fn venue_images_venue_list_serialfn(state: Internal) -> Vec<u8> {
    match unsafe { state_mut::<VenueList>(Some(state)) } {
        Some(l) => l.encode(),
        None => Vec::new(),
    }
}

/// Deserial function of `venue_images_venue_list`.
#[pg_extern(stable, strict, parallel_safe)]
fn venue_images_venue_list_deserialfn(
    bytes: &[u8],
    _unused: Internal,
    fcinfo: pg_sys::FunctionCallInfo,
) -> PgResult<Internal> {
    let cx = agg_context(fcinfo)?;
    let l = VenueList::decode(bytes, settings::classifier()).report()?;
    Ok(adopt(cx, l))
}

/// Final function of `venue_images_venue_list`: the rows, best first, as bytes (or, for
/// a table-level function of this backend waiting for them, parked with a ticket: see
/// [`crate::handoff`]).
#[pg_extern(stable, parallel_safe)]
fn venue_images_venue_list_finalfn(state: Option<Internal>) -> PgResult<Vec<u8>> {
    let list = unsafe { state_mut::<VenueList>(state) };
    if crate::handoff::wanted() {
        // The scope's query calls the aggregate once, so its state can be moved out.
        let rows = list.map(|l| l.take().into_rows()).unwrap_or_default();
        return Ok(crate::handoff::park(rows));
    }
    let mut w = Writer::default();
    match list {
        Some(l) => l.write_sorted(&mut w),
        None => encode_rows(&mut w, []),
    }
    Ok(w.buf)
}

extension_sql!(
    r#"
CREATE AGGREGATE venue_images_stats(jsonb) (
    SFUNC = venue_images_stats_transfn, STYPE = internal,
    FINALFUNC = venue_images_stats_finalfn,
    COMBINEFUNC = venue_images_stats_combinefn,
    SERIALFUNC = venue_images_stats_serialfn, DESERIALFUNC = venue_images_stats_deserialfn,
    PARALLEL = SAFE);
COMMENT ON AGGREGATE venue_images_stats(jsonb) IS
  'Failure figures, health counts and the (provider, error type) breakdown of a set of image arrays, as jsonb';

CREATE AGGREGATE venue_images_stats_state(jsonb) (
    SFUNC = venue_images_stats_transfn, STYPE = internal,
    FINALFUNC = venue_images_stats_serialfn,
    COMBINEFUNC = venue_images_stats_combinefn,
    SERIALFUNC = venue_images_stats_serialfn, DESERIALFUNC = venue_images_stats_deserialfn,
    PARALLEL = SAFE);
COMMENT ON AGGREGATE venue_images_stats_state(jsonb) IS
  'Internal: the state of venue_images_stats as bytes (used by the table-level functions)';

CREATE AGGREGATE venue_images_venue_list(
    id bigint, name text, city_id bigint, images jsonb,
    min_failures int, require_uploaded bool, max_rows int, by_priority bool, with_error_types bool) (
    SFUNC = venue_images_venue_list_transfn, STYPE = internal,
    FINALFUNC = venue_images_venue_list_finalfn,
    COMBINEFUNC = venue_images_venue_list_combinefn,
    SERIALFUNC = venue_images_venue_list_serialfn, DESERIALFUNC = venue_images_venue_list_deserialfn,
    PARALLEL = SAFE);
COMMENT ON AGGREGATE venue_images_venue_list(bigint, text, bigint, jsonb, int, bool, int, bool, bool) IS
  'Internal: the best venues with failed images by a given order, as bytes (used by the table-level functions)';
"#,
    name = "aggregates",
    requires = [
        "venue_images_stats_transfn",
        venue_images_stats_combinefn,
        venue_images_stats_serialfn,
        venue_images_stats_deserialfn,
        venue_images_stats_finalfn,
        "venue_images_venue_list_transfn",
        venue_images_venue_list_combinefn,
        venue_images_venue_list_serialfn,
        venue_images_venue_list_deserialfn,
        venue_images_venue_list_finalfn
    ]
);
