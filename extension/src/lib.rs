//! # venue_images
//!
//! PostgreSQL extension for recovering venue image uploads that failed part-way.
//! This file is the table of contents; each concern has its module, and the logic
//! lives in the pure-Rust `venue_images_core` crate.
//!
//! - [`settings`]: the `venue_images.*` GUCs.
//! - [`values`]: per-value functions (classification, scores, names, dedupe, merge, summary).
//! - [`analytics`]: table-level statistics, one pass over the venues table.
//! - [`aggregates`]: the parallel-safe aggregates those statistics run on.
//! - [`source`]: the configured venues relation, resolved against the catalog.
//! - [`owner`]: statements on the venues table run as its owner, in a security-restricted
//!   operation whose settings are rolled back; other SQL of ours runs on a pinned path.
//! - [`plans`]: per-backend caches of prepared statements and of the resolved relation.
//! - [`queue`]: the retry queue: claims, leases, fenced write-back, scan, trigger.
//! - [`datum`]: `jsonb` in and out without the text round trip.
//! - [`errors`]: errors with SQLSTATEs.
//! - [`spi`]: plain reads through SPI; [`gin`]: full scan or the GIN index;
//!   [`handoff`], [`srf`]: how the analytics hand rows back.
//!
//! ## Module graph
//!
//! What each module imports from the crate; every module imports only modules listed
//! below it, so there is no cycle (`tests/tests/module_graphs.rs` checks it; within
//! `queue`, the submodules use their parent's helpers):
//!
//! ```text
//! analytics  → aggregates datum errors gin handoff owner plans settings source srf
//! queue      → datum errors gin owner plans settings source spi
//! values     → datum errors settings
//! aggregates → datum errors handoff settings
//! gin        → errors owner settings source spi
//! plans      → errors settings source spi
//! owner      → errors source
//! source     → errors settings spi
//! spi        → errors
//! settings   → errors
//! datum  errors  handoff  srf   (import nothing)
//! ```

// pgrx raises errors with their SQLSTATE through `Result<T, ErrorReport>`; the report is
// large, but errors are the cold path and this is the type PostgreSQL needs.
#![allow(clippy::result_large_err)]
// pgrx derives `RETURNS TABLE (...)` from the return type as written, so table functions
// spell their column tuples inline rather than behind type aliases.
#![allow(clippy::type_complexity)]

use pgrx::prelude::*;

::pgrx::pg_module_magic!(name, version);

pub mod aggregates;
pub mod analytics;
pub mod datum;
pub mod errors;
pub mod gin;
pub mod handoff;
pub mod owner;
pub mod plans;
pub mod queue;
pub mod settings;
pub mod source;
pub mod spi;
pub mod srf;
pub mod values;

/// Registers the settings and the transaction callbacks when the library loads.
#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    // No Rust backtrace may reach a SQL client in an error's DETAIL (it names the files and
    // functions of this build): pgrx attaches one whenever backtraces are enabled in the
    // server's environment (RUST_BACKTRACE=1), and RUST_LIB_BACKTRACE takes precedence.
    // SAFETY (edition 2024 wording): a backend is single-threaded, and this runs while the
    // library loads, before any thread of ours exists.
    std::env::set_var("RUST_LIB_BACKTRACE", "0");
    settings::register();
    queue::register_callbacks();
}

#[cfg(any(test, feature = "pg_test"))]
mod sql_tests;

/// Required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    /// One-off initialisation when the test framework starts.
    pub fn setup(_options: Vec<&str>) {}

    /// postgresql.conf settings the tests need.
    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        // What migration 001 does for a database: the extension's schema after public.
        vec![r#"search_path = '"$user", public, venue_images'"#]
    }
}
