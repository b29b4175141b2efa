//! Code that an untrusted role controls runs with that role's rights only, and nothing it
//! does outlives the statement that ran it.
//!
//! The queue's and the analytics' functions are `SECURITY DEFINER` (owned by
//! `venue_image_definer`), but the venues table, its triggers, RLS policies, rules,
//! defaults and index expressions belong to the application's role, which the extension
//! does not trust. Every statement that reads or writes the venues table therefore runs
//! inside [`AsOwner`], which does what PostgreSQL does when VACUUM, ANALYZE, CREATE INDEX
//! or REFRESH MATERIALIZED VIEW run a table owner's code (CVE-2020-25695, CVE-2022-1552):
//!
//! - the current user becomes the table's owner, so the owner's code never runs with the
//!   definer's rights (or the caller's: a superuser running the scan by hand);
//! - inside a *security-restricted operation*: no `SET ROLE` or `SET SESSION
//!   AUTHORIZATION`, no temporary objects, no `PREPARE`/`DEALLOCATE`, no cursors
//!   `WITH HOLD`, no `LISTEN`/`UNLISTEN`/`DISCARD`/`CLOSE`, no deferred triggers: none of
//!   the session state that could outlive the statement or run later as someone else;
//! - in a new GUC nest level with `search_path = pg_catalog, pg_temp` (PostgreSQL 17's
//!   `RestrictSearchPath`), rolled back when the scope ends, error or not: a
//!   `set_config('search_path', ..., false)` in a trigger reaches neither the rest of our
//!   function nor the caller's session;
//! - and only after checking that the configured name still denotes the relation that was
//!   resolved, with the same owner and kind (a relation renamed, replaced by a view, or
//!   given to another role between the check and the statement is refused, 55000).
//!
//! [`PinnedPath`] is the nest level alone, for functions that run SQL without touching
//! the venues table but are not `SECURITY DEFINER` (so no `SET search_path` clause pins
//! their path): every SQL text the extension runs is parsed with `pg_catalog` only.
//!
//! What owner code may still do, as itself, and what that means, is in docs/security.md's
//! threat model (session-level advisory locks, non-holdable cursors that close at the end
//! of the transaction).

use crate::errors::VenueError;
use crate::source::VenueSource;
use pgrx::pg_sys;
use std::ffi::c_int;

/// The search path every statement of the extension is parsed with.
const SAFE_SEARCH_PATH: &std::ffi::CStr = c"pg_catalog, pg_temp";

/// A GUC nest level with `search_path = pg_catalog, pg_temp`; every setting changed
/// inside it (by anyone, `SET` or `set_config(..., false)` included) is rolled back when
/// it is dropped, as PostgreSQL does after running a table owner's code.
pub struct PinnedPath {
    nest_level: c_int,
}

impl PinnedPath {
    /// Opens the nest level and pins the path.
    pub fn new() -> PinnedPath {
        // SAFETY: plain backend calls; `set_config_option` with `GUC_ACTION_SAVE` records
        // the old value in the new nest level, which `Drop` pops. An error inside is
        // raised as a Rust panic by pgrx's FFI guard, and the abort of the (sub)transaction
        // pops the nest level then.
        let nest_level = unsafe { pg_sys::NewGUCNestLevel() };
        let guard = PinnedPath { nest_level };
        unsafe {
            pg_sys::set_config_option(
                c"search_path".as_ptr(),
                SAFE_SEARCH_PATH.as_ptr(),
                pg_sys::GucContext::PGC_USERSET,
                pg_sys::GucSource::PGC_S_SESSION,
                pg_sys::GucAction::GUC_ACTION_SAVE,
                true,
                0,
                false,
            );
        }
        guard
    }
}

impl Default for PinnedPath {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for PinnedPath {
    fn drop(&mut self) {
        // SAFETY: pops exactly the levels opened since `new` (nested ones included); with
        // `isCommit = false` every change made inside is undone, session-level ones too.
        unsafe { pg_sys::AtEOXact_GUC(false, self.nest_level) };
    }
}

/// The owner's identity inside a security-restricted operation, with a pinned and
/// rolled-back search path, while it lives; the previous identity is restored on drop
/// (unwinding included; PostgreSQL also restores it when a transaction aborts).
pub struct AsOwner {
    user: pg_sys::Oid,
    context: c_int,
    // Dropped before the identity is restored (fields drop after `Drop::drop`; the
    // explicit `take` in `drop` keeps PostgreSQL's order: GUCs first, then the user).
    path: Option<PinnedPath>,
}

impl AsOwner {
    /// Becomes the owner of the venues relation, after checking that its name still
    /// denotes the relation `src` resolved (55000 otherwise).
    pub fn of(src: &VenueSource) -> Result<AsOwner, VenueError> {
        check_identity(src)?;
        let mut user = pg_sys::Oid::INVALID;
        let mut context: c_int = 0;
        // SAFETY: reads and sets the backend's current user, as fmgr does for SECURITY
        // DEFINER functions and index builds do for the table owner.
        unsafe {
            pg_sys::GetUserIdAndSecContext(&mut user, &mut context);
            pg_sys::SetUserIdAndSecContext(
                src.owner,
                context
                    | pg_sys::SECURITY_LOCAL_USERID_CHANGE as c_int
                    | pg_sys::SECURITY_RESTRICTED_OPERATION as c_int,
            );
        }
        let mut guard = AsOwner {
            user,
            context,
            path: None,
        };
        guard.path = Some(PinnedPath::new());
        Ok(guard)
    }
}

impl Drop for AsOwner {
    fn drop(&mut self) {
        drop(self.path.take());
        // SAFETY: restores exactly what `of` saved.
        unsafe { pg_sys::SetUserIdAndSecContext(self.user, self.context) };
    }
}

/// Refuses (55000) when the configured name no longer denotes the resolved relation, or
/// when its owner or kind changed: the statement would reach an object the check did not
/// see, possibly someone else's, with the resolved owner's rights (CVE-2024-7348's class).
fn check_identity(src: &VenueSource) -> Result<(), VenueError> {
    let changed = || {
        VenueError::NotReady(format!(
            "the venues relation {} changed during the call (renamed, replaced, or given to \
             another owner); call again",
            src.relation
        ))
    };
    let (Ok(nsp), Ok(rel)) = (
        std::ffi::CString::new(src.schema_name.as_str()),
        std::ffi::CString::new(src.relation_name.as_str()),
    ) else {
        return Err(changed());
    };
    // SAFETY: catalog lookups through the syscache; the tuple is released before return.
    unsafe {
        let nsp_oid = pg_sys::get_namespace_oid(nsp.as_ptr(), true);
        if nsp_oid == pg_sys::Oid::INVALID
            || pg_sys::get_relname_relid(rel.as_ptr(), nsp_oid) != src.oid
        {
            return Err(changed());
        }
        let tuple = pg_sys::SearchSysCache1(
            pg_sys::SysCacheIdentifier::RELOID as c_int,
            pg_sys::Datum::from(src.oid),
        );
        if tuple.is_null() {
            return Err(changed());
        }
        let form = pg_sys::heap_tuple_get_struct::<pg_sys::FormData_pg_class>(tuple);
        let same = (*form).relowner == src.owner && (*form).relkind as u8 == src.kind;
        pg_sys::ReleaseSysCache(tuple);
        if !same {
            return Err(changed());
        }
    }
    Ok(())
}
