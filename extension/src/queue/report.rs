//! The retry report's vocabulary in SQL: which of the report's groups an attempt-log
//! outcome counts in. The rule is `venue_images_core::retry::AttemptOutcome`'s; the
//! report and the timeline (`schema.sql`) call this function instead of listing outcomes.

use pgrx::prelude::*;
use venue_images_core::retry::{AttemptOutcome, ReportGroup};

/// The retry report's group of an attempt-log outcome: `recovered`, `failed_again`,
/// `permanent_failure` (each an attempt), `finalized` (the scan's), or NULL for outcomes
/// the report does not count (`superseded`, `forced`, `purged`, anything unknown).
#[pg_extern(immutable, strict, parallel_safe)]
fn venue_image_outcome_group(outcome: &str) -> Option<&'static str> {
    AttemptOutcome::parse(outcome)
        .and_then(AttemptOutcome::report_group)
        .map(ReportGroup::as_str)
}
