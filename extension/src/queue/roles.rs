//! The grant matrix in SQL: `venue_images_core::roles::GRANTS`, which the install script
//! (`grants.sql`, the `PUBLIC` rows) and the migration `sql/002_roles.sql` (the three
//! roles) grant from, so that the list exists once.

use pgrx::prelude::*;
use venue_images_core::roles::GRANTS;

/// Every grant of the extension's objects: role (`PUBLIC`, `venue_image_reader`,
/// `venue_image_uploader`, `venue_image_admin`), privilege (`EXECUTE` or `SELECT`) and
/// object (a function's signature, or a view or table).
#[pg_extern(immutable, parallel_safe)]
fn venue_image_role_grants() -> TableIterator<
    'static,
    (
        name!(role, &'static str),
        name!(privilege, &'static str),
        name!(object, &'static str),
    ),
> {
    TableIterator::new(GRANTS.iter().map(|(r, p, o)| (r.as_str(), p.as_str(), *o)))
}
