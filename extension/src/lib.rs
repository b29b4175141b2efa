//! # venue_images
//!
//! PostgreSQL extension for recovering venue image uploads that failed part-way.
//! This file is the table of contents; each concern has its module, and the logic
//! lives in the pure-Rust `venue_images_core` crate.
//!
//! - [`settings`]: the `venue_images.*` GUCs.
//! - [`values`]: per-value functions (classification, scores, names, dedupe, merge, summary).
//! - [`analytics`]: table-level statistics, one pass over the venues table.
//! - [`scan`]: the zero-copy row scan behind the analytics.
//! - [`datum`]: `jsonb` in and out without the text round trip.
//! - [`errors`]: errors with SQLSTATEs.

use pgrx::prelude::*;

::pgrx::pg_module_magic!(name, version);

pub mod analytics;
pub mod datum;
pub mod errors;
pub mod scan;
pub mod settings;
pub mod values;

/// Registers the settings when the library loads.
#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    settings::register();
}

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests;

/// Required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    /// One-off initialisation when the test framework starts.
    pub fn setup(_options: Vec<&str>) {}

    /// postgresql.conf settings the tests need.
    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec![]
    }
}
