//! The original application's statistics as plain SQL over `venues` (the final form of
//! its `Stats` module), used as the baseline of the benchmark and as the oracle of the
//! equality tests.
//!
//! Two of the original's defects are fixed so that the answers are comparable with ours:
//! defect 7 (`round(double precision, integer)` does not exist: we round numerics) and
//! defect 9 (two denominators: the rate is failed / all images everywhere, and "failed"
//! includes `permanently_failed` everywhere). Classification uses our built-in lists.
//! Ordering ties are broken by id, as ours are.

/// `Stats.failure_breakdown/0`.
pub const FAILURE_BREAKDOWN: &str = r#"
SELECT img->>'provider' AS provider, img->'error_details'->>'error_type' AS error_type, COUNT(*) AS count
FROM venues v, jsonb_array_elements(v.venue_images) img
WHERE img->>'upload_status' IN ('failed','permanently_failed')
GROUP BY provider, error_type
ORDER BY count DESC, provider NULLS LAST, error_type NULLS LAST"#;

/// `Stats.venues_with_failures/0`.
pub const VENUES_WITH_FAILURES: &str = r#"
SELECT v.id, v.name::text, v.city_id,
  jsonb_array_length(v.venue_images) AS total_images,
  (SELECT COUNT(*) FROM jsonb_array_elements(v.venue_images) img
    WHERE img->>'upload_status' IN ('failed', 'permanently_failed')) AS failed_count,
  (SELECT COUNT(*) FROM jsonb_array_elements(v.venue_images) img
    WHERE img->>'upload_status' = 'uploaded') AS uploaded_count,
  ROUND(100.0 * (SELECT COUNT(*) FROM jsonb_array_elements(v.venue_images) img
                 WHERE img->>'upload_status' IN ('failed', 'permanently_failed')) /
        NULLIF(jsonb_array_length(v.venue_images), 0), 1)::float8 AS failure_rate_pct
FROM venues v
WHERE EXISTS (SELECT 1 FROM jsonb_array_elements(v.venue_images) img
              WHERE img->>'upload_status' IN ('failed', 'permanently_failed'))
ORDER BY failed_count DESC, failure_rate_pct DESC, v.id"#;

/// `Stats.partial_failure_candidates/1` with `$1 = min_failures`, `$2 = limit`.
pub const PARTIAL_FAILURE_CANDIDATES: &str = r#"
SELECT v.id, v.name::text, v.city_id, total_images, failed_count, uploaded_count,
  ROUND(100.0 * failed_count / NULLIF(total_images, 0), 1)::float8 AS failure_rate_pct,
  (SELECT jsonb_agg(img->'error_details'->>'error_type')
     FROM jsonb_array_elements(v.venue_images) img
    WHERE img->>'upload_status' IN ('failed', 'permanently_failed')) AS error_types
FROM (
  SELECT v.id, v.name, v.city_id, v.venue_images,
    jsonb_array_length(v.venue_images) AS total_images,
    (SELECT COUNT(*) FROM jsonb_array_elements(v.venue_images) img
      WHERE img->>'upload_status' IN ('failed', 'permanently_failed')) AS failed_count,
    (SELECT COUNT(*) FROM jsonb_array_elements(v.venue_images) img
      WHERE img->>'upload_status' = 'uploaded') AS uploaded_count
  FROM venues v
  WHERE v.venue_images IS NOT NULL
) v
WHERE failed_count >= $1 AND uploaded_count > 0
ORDER BY failed_count DESC, failure_rate_pct DESC, v.id
LIMIT $2"#;

/// Per-venue classification flags the original computed with one query per venue,
/// as a single statement.
const WITH_FLAGS: &str = r#"
WITH vf AS (
  SELECT v.id, v.name::text AS name, v.city_id,
    jsonb_array_length(v.venue_images) AS total_images,
    (SELECT COUNT(*) FROM jsonb_array_elements(v.venue_images) img
      WHERE img->>'upload_status' IN ('failed', 'permanently_failed')) AS failed_count,
    (SELECT COUNT(*) FROM jsonb_array_elements(v.venue_images) img
      WHERE img->>'upload_status' = 'uploaded') AS uploaded_count,
    EXISTS (SELECT 1 FROM jsonb_array_elements(v.venue_images) img
      WHERE img->>'upload_status' IN ('failed', 'permanently_failed')
        AND img->'error_details'->>'error_type' IN ('rate_limited','service_unavailable','network_timeout','gateway_timeout','bad_gateway','server_error','network_error')) AS has_transient,
    EXISTS (SELECT 1 FROM jsonb_array_elements(v.venue_images) img
      WHERE img->>'upload_status' IN ('failed', 'permanently_failed')
        AND img->'error_details'->>'error_type' IN ('not_found','forbidden','auth_error','file_too_large','invalid_provider_url','not_an_image')) AS has_permanent,
    EXISTS (SELECT 1 FROM jsonb_array_elements(v.venue_images) img
      WHERE img->>'upload_status' IN ('failed', 'permanently_failed')
        AND img->'error_details'->>'error_type' <> ''
        AND img->'error_details'->>'error_type' NOT IN ('rate_limited','service_unavailable','network_timeout','gateway_timeout','bad_gateway','server_error','network_error','not_found','forbidden','auth_error','file_too_large','invalid_provider_url','not_an_image')) AS has_ambiguous
  FROM venues v
  WHERE EXISTS (SELECT 1 FROM jsonb_array_elements(v.venue_images) img
                WHERE img->>'upload_status' IN ('failed', 'permanently_failed'))
), vr AS (
  SELECT vf.*, ROUND(100.0 * failed_count / NULLIF(total_images, 0), 1) AS rate FROM vf
)"#;

/// `Stats.high_priority_venues/1` with `$1 = limit`.
pub fn high_priority_venues() -> String {
    format!(
        "{WITH_FLAGS}
SELECT id, name, city_id, total_images, failed_count, uploaded_count, rate::float8 AS failure_rate_pct,
  ROUND(failed_count * 10 + rate + CASE WHEN has_transient THEN 20 ELSE 0 END, 1)::float8 AS priority_score
FROM vr ORDER BY priority_score DESC, id LIMIT $1"
    )
}

/// `Stats.summary_stats/0` (without `top_error_types`, which is the breakdown's head).
pub fn summary_stats() -> String {
    format!(
        "{WITH_FLAGS}
SELECT COUNT(*)::bigint AS total_venues_with_failures,
  COALESCE(SUM(failed_count), 0)::bigint AS total_failed_images,
  COALESCE(SUM(uploaded_count), 0)::bigint AS total_uploaded_images,
  COALESCE(ROUND(AVG(rate), 1), 0)::float8 AS average_failure_rate,
  COUNT(*) FILTER (WHERE has_transient)::bigint AS venues_with_transient,
  COUNT(*) FILTER (WHERE has_permanent)::bigint AS venues_with_permanent,
  COUNT(*) FILTER (WHERE has_ambiguous)::bigint AS venues_with_ambiguous,
  (SELECT COALESCE(jsonb_agg(b), '[]') FROM ({FAILURE_BREAKDOWN} LIMIT 5) b) AS top_error_types
FROM vr"
    )
}

/// A plain-SQL `venue_images_dedupe` with the same rules, for the dedupe benchmark.
pub const SQL_DEDUPE_FUNCTION: &str = r#"
CREATE OR REPLACE FUNCTION sql_venue_images_dedupe(images jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE STRICT AS $$
  WITH e AS (
    SELECT elem, pos,
      COALESCE(NULLIF(elem->>'provider_url', ''), NULLIF(elem->>'url', '')) AS k,
      COALESCE((elem->>'quality_score')::float8, 0) AS q,
      CASE elem->>'upload_status' WHEN 'uploaded' THEN 3 WHEN 'failed' THEN 2
        WHEN 'permanently_failed' THEN 1 ELSE 0 END AS rnk,
      COALESCE((elem->>'fetched_at')::timestamptz, 'epoch') AS f,
      (elem->>'retry_count')::float8 AS rc
    FROM jsonb_array_elements(images) WITH ORDINALITY AS t(elem, pos)
  ), g AS (
    SELECT *, min(pos) OVER w AS first_pos, max(rc) OVER w AS max_rc,
      row_number() OVER (PARTITION BY k ORDER BY rnk DESC, q DESC, f DESC, pos) AS rn
    FROM e WINDOW w AS (PARTITION BY k)
  ), winners AS (
    SELECT CASE WHEN k IS NOT NULL AND max_rc > COALESCE(rc, 0)
             THEN elem || jsonb_build_object('retry_count', max_rc) ELSE elem END AS elem,
           q, CASE WHEN k IS NULL THEN pos ELSE first_pos END AS slot
    FROM g WHERE k IS NULL OR rn = 1
  )
  SELECT COALESCE(jsonb_agg(elem ORDER BY q DESC, slot), '[]'::jsonb) FROM winners
$$"#;
