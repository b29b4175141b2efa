//! Statements on the application's venues table run as the table's owner.
//!
//! The queue's functions are `SECURITY DEFINER` (owned by `venue_image_definer`), but the
//! venues table, its triggers, its policies and its index functions belong to the
//! application. So that none of the application's code ever runs with the queue's rights
//! (or anyone else's), every statement that reads or writes the venues table switches to
//! the table owner's identity for its duration, as PostgreSQL's own foreign-key triggers
//! do: the application's triggers fire as the application. The definer role needs no
//! right on the venues table at all.

use crate::source::VenueSource;
use pgrx::pg_sys;

/// The owner's identity while it lives; the previous one is restored on drop (unwinding
/// included; PostgreSQL also restores it when a transaction aborts).
pub struct AsOwner {
    user: pg_sys::Oid,
    context: std::ffi::c_int,
}

impl AsOwner {
    /// Becomes the owner of the venues relation.
    pub fn of(src: &VenueSource) -> AsOwner {
        let mut user = pg_sys::Oid::INVALID;
        let mut context: std::ffi::c_int = 0;
        // SAFETY: reads and sets the backend's current user, as fmgr does for SECURITY
        // DEFINER functions; `SECURITY_LOCAL_USERID_CHANGE` forbids SET ROLE meanwhile.
        unsafe {
            pg_sys::GetUserIdAndSecContext(&mut user, &mut context);
            pg_sys::SetUserIdAndSecContext(
                src.owner,
                context | pg_sys::SECURITY_LOCAL_USERID_CHANGE as std::ffi::c_int,
            );
        }
        AsOwner { user, context }
    }
}

impl Drop for AsOwner {
    fn drop(&mut self) {
        // SAFETY: restores exactly what `of` saved.
        unsafe { pg_sys::SetUserIdAndSecContext(self.user, self.context) };
    }
}
