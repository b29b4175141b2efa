//! Per-value functions: classification, scores, names, dedupe/merge, summary.

use crate::datum::{Jsonb, JsonbResult};
use crate::errors::{PgResult, Report, VenueError};
use crate::settings;
use pgrx::prelude::*;
use venue_images_core::dedupe::{self, Deduped};
use venue_images_core::jsonb::encode;
use venue_images_core::{classify, naming, scores, summary};

/// Class of an error type under the configured lists:
/// `transient`, `permanent`, `ambiguous`, or `unknown` (NULL or empty).
#[pg_extern(stable, parallel_safe)]
fn venue_image_classify_error(error_type: Option<&str>) -> &'static str {
    settings::classifier().classify(error_type).as_str()
}

/// The error type of a failed HTTP exchange (429 `rate_limited`, 404 `not_found`, ...,
/// any other status `http_error`). Raises 22023 for a value that is not a status.
#[pg_extern(immutable, strict, parallel_safe)]
fn venue_image_error_type(http_status: i32) -> PgResult<&'static str> {
    classify::error_type_for_status(http_status)
        .map_err(|e| VenueError::InvalidParameter(e.to_string()))
        .report()
}

/// Quality score from pixel dimensions (0.1 when either is missing or not positive).
#[pg_extern(immutable, parallel_safe)]
fn venue_image_quality_score(width: Option<i32>, height: Option<i32>) -> f64 {
    scores::quality_score(width.map(i64::from), height.map(i64::from))
}

/// `failed_count*10 + failure_rate_pct + 20 if has_transient`, one decimal.
#[pg_extern(immutable, strict, parallel_safe)]
fn venue_image_priority_score(
    failed_count: i32,
    failure_rate_pct: f64,
    has_transient: bool,
) -> PgResult<f64> {
    scores::priority_score(failed_count as i64, failure_rate_pct, has_transient)
        .map_err(|e| VenueError::InvalidParameter(e.0))
        .report()
}

/// Deterministic ImageKit file name `<code>-<hash8>.<ext>` for a provider URL.
/// NULL URL gives NULL; NULL provider uses code `xx`.
#[pg_extern(immutable, parallel_safe)]
fn venue_image_file_name(
    provider_url: Option<&str>,
    provider: Option<&str>,
) -> PgResult<Option<String>> {
    let Some(url) = provider_url else {
        return Ok(None);
    };
    naming::file_name(url, provider)
        .map(Some)
        .map_err(|e| VenueError::InvalidParameter(e.0))
        .report()
}

/// ImageKit folder of a venue: `<venue_images.folder_base>/<safe slug>`, or
/// `.../venue-<id>` when the slug is NULL or has no safe characters.
#[pg_extern(stable, parallel_safe)]
fn venue_image_folder(slug: Option<&str>, venue_id: Option<i64>) -> Option<String> {
    naming::folder(&settings::folder_base(), slug, venue_id)
}

/// One element per `provider_url` (else `url`); the winner keeps the group's highest
/// `retry_count`; sorted by `quality_score` descending. Numbers compare exactly, as
/// `numeric` does. Elements are copied as they are, however deeply they nest. Raises
/// 22023 for a non-array or keys of the wrong JSON type.
#[pg_extern(immutable, strict, parallel_safe)]
fn venue_images_dedupe(images: Jsonb<'_>) -> PgResult<JsonbResult> {
    let c = images.container().report()?;
    match dedupe::dedupe(c).report()? {
        Deduped::Unchanged => Ok(JsonbResult::Datum(images.datum())),
        Deduped::Rewritten(node) => Ok(JsonbResult::Bytes(encode(&node).report()?)),
    }
}

/// `venue_images_dedupe(existing || incoming)`. A NULL side counts as an empty array
/// (so merging into a venue whose images are NULL keeps the incoming images); NULL only
/// when both are NULL.
#[pg_extern(immutable, parallel_safe)]
fn venue_images_merge(
    existing: Option<Jsonb<'_>>,
    incoming: Option<Jsonb<'_>>,
) -> PgResult<Option<JsonbResult>> {
    if existing.is_none() && incoming.is_none() {
        return Ok(None);
    }
    let a = existing
        .as_ref()
        .map(|j| j.container())
        .transpose()
        .report()?;
    let b = incoming
        .as_ref()
        .map(|j| j.container())
        .transpose()
        .report()?;
    let node = dedupe::merge(a, b).report()?;
    Ok(Some(JsonbResult::Bytes(encode(&node).report()?)))
}

/// The text with every secret removed: values of secret parameters anywhere
/// (`key=`, `token=`, `X-Amz-Signature=`, percent-encoded names, fragments) and
/// credentials in URLs. The rule the extension applies to everything it stores and
/// the uploader to everything it logs.
#[pg_extern(immutable, strict, parallel_safe)]
fn venue_images_redact(text: &str) -> String {
    venue_images_core::redact::redact_text(text)
}

/// A copy of a JSON value with every string value redacted like `venue_images_redact`
/// (keys are kept): for exporting image elements, and how the extension keeps removed
/// elements in its attempt log. A value nested deeper than 1000 levels
/// (`venue_images_core::jsonb::MAX_DEPTH`) raises 54001.
#[pg_extern(immutable, strict, parallel_safe)]
fn venue_images_redact_json(value: Jsonb<'_>) -> PgResult<JsonbResult> {
    let root = value.container().report()?;
    let node =
        venue_images_core::retry::redacted_copy(venue_images_core::jsonb::Value::Container(root))
            .report()?;
    Ok(JsonbResult::Bytes(encode(&node).report()?))
}

/// The counts behind `venue_images_summary`, as an array in its column order
/// (total, uploaded, failed, permanently_failed, transient, permanent, ambiguous,
/// retryable).
#[pg_extern(stable, strict, parallel_safe)]
fn venue_images_summary_counts(images: Jsonb<'_>) -> PgResult<Vec<i32>> {
    let c = images.container().report()?;
    let s = summary::summarize(c, &settings::classifier(), settings::max_retries()).report()?;
    let clamp = |v: i64| v.min(i32::MAX as i64) as i32;
    Ok(vec![
        clamp(s.total),
        clamp(s.uploaded),
        clamp(s.failed),
        clamp(s.permanently_failed),
        clamp(s.transient),
        clamp(s.permanent),
        clamp(s.ambiguous),
        clamp(s.retryable),
    ])
}

extension_sql!(
    r#"
CREATE FUNCTION venue_images.venue_images_summary(
    images jsonb,
    OUT total int, OUT uploaded int, OUT failed int, OUT permanently_failed int,
    OUT transient int, OUT permanent int, OUT ambiguous int, OUT retryable int)
RETURNS record
LANGUAGE sql STABLE STRICT PARALLEL SAFE
AS $$ SELECT c[1], c[2], c[3], c[4], c[5], c[6], c[7], c[8]
      FROM (SELECT venue_images.venue_images_summary_counts(images) AS c) s $$;
COMMENT ON FUNCTION venue_images.venue_images_summary(jsonb) IS
  'Counts of one image array: total, uploaded, failed, permanently_failed, transient, permanent, ambiguous, retryable';
"#,
    name = "venue_images_summary",
    requires = [venue_images_summary_counts]
);
