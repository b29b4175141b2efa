//! Set-returning functions in materialize mode.
//!
//! pgrx's `TableIterator` returns rows in value-per-call mode: PostgreSQL calls the
//! function once per row. For a `SECURITY DEFINER` function with `SET search_path` every
//! one of those calls goes through `fmgr_security_definer`, which switches the user and
//! saves, sets and restores the setting: on a list of 130,000 venues that was a fifth of
//! the function's time. In materialize mode the function is called once and hands
//! PostgreSQL a tuplestore with every row.

use pgrx::pg_sys;
use pgrx::PgMemoryContexts;

/// One column's value (`None` is SQL NULL).
pub type Cell = Option<pg_sys::Datum>;

/// Fills the call's result tuplestore with `rows` (each with as many cells as the
/// function's result columns). Datums built by `row` are allocated in a context reset
/// after each row (the tuplestore copies them).
///
/// # Safety
/// `fcinfo` must be the live call info of a set-returning function declared with `N`
/// result columns whose types match the datums `row` builds.
pub unsafe fn materialize<T, const N: usize>(
    fcinfo: pg_sys::FunctionCallInfo,
    rows: impl IntoIterator<Item = T>,
    mut row: impl FnMut(T) -> [Cell; N],
) {
    // SAFETY: the caller guarantees a live set-returning call; InitMaterializedSRF raises
    // a proper error when materialize mode is not allowed in this context.
    unsafe {
        pg_sys::InitMaterializedSRF(fcinfo, 0);
        let rsinfo = (*fcinfo).resultinfo as *mut pg_sys::ReturnSetInfo;
        let store = (*rsinfo).setResult;
        let desc = (*rsinfo).setDesc;
        let mut per_row = PgMemoryContexts::new("venue_images materialize row");
        for r in rows {
            per_row.switch_to(|_| {
                let cells = row(r);
                let mut values = [pg_sys::Datum::from(0); N];
                let mut nulls = [true; N];
                for (i, c) in cells.into_iter().enumerate() {
                    if let Some(d) = c {
                        values[i] = d;
                        nulls[i] = false;
                    }
                }
                pg_sys::tuplestore_putvalues(store, desc, values.as_mut_ptr(), nulls.as_mut_ptr());
            });
            per_row.reset();
        }
    }
}
