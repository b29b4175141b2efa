//! `venue_image_claim`: leases the highest-priority due images to one worker, with
//! `not_before` slots that keep every provider's rate across all uploaders together.
//!
//! Every operator is written `OPERATOR(pg_catalog.op)` (see `owner.rs`); all such
//! operators share one precedence and associate to the left, so mixed expressions are
//! parenthesised.

use super::{log_attempts, require_jsonb, select_venues, Attempt};
use crate::datum::Jsonb;
use crate::errors::{Report, VenueError};
use crate::plans::{self, Sql};
use crate::settings;
use pgrx::datum::{TimestampWithTimeZone, Uuid};
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;
use std::collections::HashMap;
use venue_images_core::jsonb::parse_varlena;
use venue_images_core::naming;
use venue_images_core::retry::{AttemptOutcome, UrlHash};

/// One statement: lock the rate-limited providers that may be claimed now
/// (`SKIP LOCKED`: a provider whose slots another claimer is handing out right now is
/// skipped, never waited for; unlimited providers are not locked at all), take each
/// provider's budget of due jobs with `FOR UPDATE SKIP LOCKED`, lease them with paced
/// `not_before` slots (re-checking eligibility in the `UPDATE`), and move each paced
/// provider's next free slot forward.
///
/// $1 worker, $2 max images, $3 lease seconds, $4 pacing horizon in seconds, $5 only this
/// venue (NULL: any), $6 pacing margin: a provider hands out only the slots that start
/// within the horizon, so no worker hoards images it could not start before its lease
/// ran out, and its slots are `(1 + margin) / rate` apart, so jitter on the way to the
/// provider cannot put more than `rate` requests into one second.
const CLAIM: &str = r#"
WITH rates AS MATERIALIZED (
    SELECT p.provider,
           venue_images.venue_image_effective_rate(
               p.provider, p.per_second,
               (SELECT d.per_second FROM venue_images.venue_image_providers d
                 WHERE d.provider OPERATOR(pg_catalog.=) '*')) AS rate
      FROM venue_images.venue_image_providers p
     WHERE p.provider OPERATOR(pg_catalog.<>) '*'
       AND coalesce(p.paused_until, '-infinity') OPERATOR(pg_catalog.<=) pg_catalog.now()
       AND NOT EXISTS (SELECT 1 FROM venue_images.venue_image_providers g
                        WHERE g.provider OPERATOR(pg_catalog.=) '*'
                          AND g.paused_until OPERATOR(pg_catalog.>) pg_catalog.now())
), paced AS MATERIALIZED (
    SELECT p.provider, greatest(pg_catalog.now(), p.next_slot_at) AS base
      FROM venue_images.venue_image_providers p
     WHERE p.provider OPERATOR(pg_catalog.=) ANY (
               SELECT r.provider FROM rates r
                WHERE r.rate OPERATOR(pg_catalog.<>) 'Infinity'::pg_catalog.float8)
     ORDER BY p.provider
       FOR UPDATE OF p SKIP LOCKED
), budgets AS MATERIALIZED (
    SELECT r.provider, r.rate OPERATOR(pg_catalog./) (1 OPERATOR(pg_catalog.+) $6::pg_catalog.float8) AS rate,
           pc.base,
           CASE WHEN pc.base OPERATOR(pg_catalog.>)
                     (pg_catalog.now() OPERATOR(pg_catalog.+) pg_catalog.make_interval(secs => $4))
                THEN 0
                ELSE least($2::int, 1 OPERATOR(pg_catalog.+) pg_catalog.floor(
                       extract(epoch FROM pg_catalog.now() OPERATOR(pg_catalog.+)
                               pg_catalog.make_interval(secs => $4) OPERATOR(pg_catalog.-) pc.base)
                       OPERATOR(pg_catalog.*) r.rate
                       OPERATOR(pg_catalog./) (1 OPERATOR(pg_catalog.+) $6::pg_catalog.float8))::int)
           END AS n
      FROM paced pc JOIN rates r ON r.provider OPERATOR(pg_catalog.=) pc.provider
    UNION ALL
    SELECT r.provider, r.rate, pg_catalog.now(), $2::int FROM rates r
     WHERE r.rate OPERATOR(pg_catalog.=) 'Infinity'::pg_catalog.float8
), cand AS MATERIALIZED (
    SELECT c.job_id, c.provider, c.priority, c.next_attempt_at
      FROM budgets b
     CROSS JOIN LATERAL (
           SELECT j.job_id, j.provider, j.priority, j.next_attempt_at
             FROM venue_images.venue_image_jobs j
            WHERE j.provider OPERATOR(pg_catalog.=) b.provider
              AND ($5::bigint IS NULL OR j.venue_id OPERATOR(pg_catalog.=) $5)
              AND venue_images.venue_image_job_claimable(j.next_attempt_at, j.lease_token, j.lease_expires_at)
            ORDER BY j.priority DESC, j.next_attempt_at, j.job_id
            LIMIT b.n
              FOR UPDATE OF j SKIP LOCKED) c
     WHERE b.n OPERATOR(pg_catalog.>) 0
     ORDER BY c.priority DESC, c.next_attempt_at, c.job_id
     LIMIT $2::int
), numbered AS (
    SELECT cand.job_id, cand.provider,
           pg_catalog.row_number() OVER (PARTITION BY cand.provider
                              ORDER BY cand.priority DESC, cand.next_attempt_at, cand.job_id) AS rn
      FROM cand
), claimed AS (
    UPDATE venue_images.venue_image_jobs j
       SET lease_token = pg_catalog.gen_random_uuid(),
           leased_by = $1,
           leased_at = pg_catalog.now(),
           lease_expires_at = pg_catalog.now() OPERATOR(pg_catalog.+) pg_catalog.make_interval(secs => $3),
           not_before = CASE WHEN b.rate OPERATOR(pg_catalog.=) 'Infinity'::pg_catalog.float8
                             THEN pg_catalog.now()
                             ELSE b.base OPERATOR(pg_catalog.+) pg_catalog.make_interval(
                                      secs => (n.rn OPERATOR(pg_catalog.-) 1) OPERATOR(pg_catalog./) b.rate)
                        END,
           claims = j.claims OPERATOR(pg_catalog.+) 1
      FROM numbered n JOIN budgets b ON b.provider OPERATOR(pg_catalog.=) n.provider
     WHERE j.job_id OPERATOR(pg_catalog.=) n.job_id
       AND venue_images.venue_image_job_claimable(j.next_attempt_at, j.lease_token, j.lease_expires_at)
    RETURNING j.job_id, j.lease_token, j.venue_id, j.provider, j.url_hash, j.not_before,
              j.forced, j.error_type, j.provider_url, j.priority
), advance AS (
    UPDATE venue_images.venue_image_providers p
       SET next_slot_at = b.base OPERATOR(pg_catalog.+)
                          pg_catalog.make_interval(secs => k.claimed OPERATOR(pg_catalog./) b.rate),
           updated_at = pg_catalog.now()
      FROM (SELECT c.provider, pg_catalog.count(*)::pg_catalog.float8 AS claimed
              FROM claimed c GROUP BY c.provider) k
      JOIN budgets b ON b.provider OPERATOR(pg_catalog.=) k.provider
     WHERE p.provider OPERATOR(pg_catalog.=) k.provider
       AND b.rate OPERATOR(pg_catalog.<>) 'Infinity'::pg_catalog.float8
)
SELECT job_id, lease_token, venue_id, provider, url_hash, not_before, forced, error_type, provider_url
  FROM claimed
 ORDER BY priority DESC, not_before, job_id"#;

struct Claimed {
    job_id: i64,
    lease_token: Uuid,
    venue_id: i64,
    provider: String,
    url_hash: Vec<u8>,
    not_before: TimestampWithTimeZone,
    forced: bool,
    error_type: Option<String>,
    redacted_url: String,
}

fn validate(worker: &str, max_images: i32, lease_seconds: i32) -> Result<(), VenueError> {
    if worker.trim().is_empty() || worker.len() > 200 {
        return Err(VenueError::InvalidParameter(
            "worker must be a non-empty name of at most 200 bytes".into(),
        ));
    }
    if !(1..=1000).contains(&max_images) {
        return Err(VenueError::InvalidParameter(format!(
            "max_images must be between 1 and 1000, got {max_images}"
        )));
    }
    if !(1..=86_400).contains(&lease_seconds) {
        return Err(VenueError::InvalidParameter(format!(
            "lease_seconds must be between 1 and 86400, got {lease_seconds}"
        )));
    }
    Ok(())
}

type ClaimRow = (
    i64,
    Uuid,
    i64,
    String,
    String,
    String,
    String,
    i32,
    TimestampWithTimeZone,
);

fn claim(
    worker: &str,
    max_images: i32,
    lease_seconds: i32,
    venue_id: Option<i64>,
) -> Result<Vec<ClaimRow>, VenueError> {
    validate(worker, max_images, lease_seconds)?;
    let src = plans::venue_source()?;
    require_jsonb(&src)?;
    let policy = settings::policy();
    let folder_base = settings::folder_base();
    let horizon = (lease_seconds as f64 / 2.0).clamp(1.0, 60.0);
    Spi::connect_mut(|c| {
        let mut jobs = Vec::new();
        for row in plans::run(
            c,
            CLAIM,
            &[
                worker.into(),
                max_images.into(),
                (lease_seconds as f64).into(),
                horizon.into(),
                venue_id.into(),
                settings::pacing_margin().into(),
            ],
        )? {
            jobs.push(Claimed {
                job_id: row.get::<i64>(1)?.unwrap_or_default(),
                lease_token: row
                    .get::<Uuid>(2)?
                    .ok_or_else(|| VenueError::Spi("claim returned no lease token".into()))?,
                venue_id: row.get::<i64>(3)?.unwrap_or_default(),
                provider: row.get::<String>(4)?.unwrap_or_default(),
                url_hash: row.get::<Vec<u8>>(5)?.unwrap_or_default(),
                not_before: row
                    .get::<TimestampWithTimeZone>(6)?
                    .ok_or_else(|| VenueError::Spi("claim returned no not_before".into()))?,
                forced: row.get::<bool>(7)?.unwrap_or(false),
                error_type: row.get::<String>(8)?,
                redacted_url: row.get::<String>(9)?.unwrap_or_default(),
            });
        }
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        // The real URLs live only in the venues' own rows.
        let ids: Vec<i64> = jobs.iter().map(|j| j.venue_id).collect();
        let sql = select_venues(
            &src,
            &[&src.id_expr, &src.slug_expr, &src.images_column],
            "ANY($1)",
        );
        let mut venues: HashMap<i64, (Option<String>, Option<Vec<u8>>)> = HashMap::new();
        let rows = {
            let _as_owner = crate::owner::AsOwner::of(&src)?;
            plans::run(c, Sql::Built(&sql), &[ids.into()])?
        };
        for row in rows {
            let id = row.get::<i64>(1)?.unwrap_or_default();
            let slug = row.get::<String>(2)?;
            let images = row.get::<Jsonb<'_>>(3)?.map(|j| j.bytes().to_vec());
            venues.insert(id, (slug, images));
        }
        let mut out = Vec::with_capacity(jobs.len());
        let mut gone = Vec::new();
        for job in jobs {
            // The element side of the claim predicate: the core's.
            let found = venues.get(&job.venue_id).and_then(|(slug, images)| {
                let arr = parse_varlena(images.as_ref()?).ok()?;
                let hash: UrlHash = job.url_hash.as_slice().try_into().ok()?;
                let target = policy.claim_target(arr, &hash, job.forced).ok()??;
                Some((target.url.to_string(), slug.clone(), target.retry_count))
            });
            match found {
                Some((url, slug, rc)) => {
                    let folder = naming::folder(&folder_base, slug.as_deref(), Some(job.venue_id))
                        .unwrap_or_else(|| format!("{folder_base}/venue-{}", job.venue_id));
                    let file_name = naming::file_name(&url, Some(&job.provider))
                        .map_err(|e| VenueError::InvalidParameter(e.0))?;
                    out.push((
                        job.job_id,
                        job.lease_token,
                        job.venue_id,
                        job.provider,
                        url,
                        folder,
                        file_name,
                        rc.saturating_add(1).min(i32::MAX as i64) as i32,
                        job.not_before,
                    ));
                }
                None => gone.push(job),
            }
        }
        if !gone.is_empty() {
            // The application removed, replaced or finished these images meanwhile.
            plans::run(
                c,
                "DELETE FROM venue_images.venue_image_jobs WHERE job_id OPERATOR(pg_catalog.=) ANY($1)",
                &[gone.iter().map(|j| j.job_id).collect::<Vec<i64>>().into()],
            )?;
            let log: Vec<Attempt> = gone
                .into_iter()
                .map(|job| Attempt {
                    job_id: Some(job.job_id),
                    venue_id: job.venue_id,
                    url_hash: Some(job.url_hash),
                    provider_url: Some(job.redacted_url),
                    provider: Some(job.provider),
                    worker: Some(worker.to_string()),
                    retried_error_type: job.error_type,
                    outcome: Some(AttemptOutcome::Superseded),
                    message: Some("image no longer retryable when claimed".into()),
                    ..Default::default()
                })
                .collect();
            log_attempts(c, &log)?;
        }
        Ok(out)
    })
}

/// Declares a claim function: both lease the same rows. pgrx derives `RETURNS TABLE
/// (...)` from a function's return type as written, so the rows' columns are written here,
/// once for both.
macro_rules! claim_function {
    ($(#$attr:tt)* fn $name:ident($($param:tt)*) $body:block) => {
        $(#$attr)*
        #[pg_extern(volatile, security_definer, parallel_unsafe)]
        #[search_path(pg_catalog, pg_temp)]
        fn $name($($param)*) -> Result<
            TableIterator<
                'static,
                (
                    name!(job_id, i64),
                    name!(lease_token, Uuid),
                    name!(venue_id, i64),
                    name!(provider, String),
                    name!(provider_url, String),
                    name!(folder, String),
                    name!(file_name, String),
                    name!(attempt, i32),
                    name!(not_before, TimestampWithTimeZone),
                ),
            >,
            ErrorReport,
        > $body
    };
}

claim_function! {
    /// Leases up to `max_images` due images to `worker` for `lease_seconds`: highest
    /// priority first, skipping paused providers, each with a `not_before` slot that keeps
    /// its provider's rate across all uploaders. Returns what the uploader needs,
    /// including the real `provider_url` (read from the venue's row) and the deterministic
    /// ImageKit `folder` and `file_name`; `attempt` is the image's `retry_count` + 1.
    fn venue_image_claim(worker: &str, max_images: i32, lease_seconds: i32) {
        Ok(TableIterator::new(claim(worker, max_images, lease_seconds, None).report()?))
    }
}

claim_function! {
    /// Like `venue_image_claim`, for one venue's images only (the uploader's synchronous
    /// `retry --venue`); pacing and pauses apply as usual.
    fn venue_image_claim_venue(worker: &str, venue_id: i64, max_images: i32, lease_seconds: i32) {
        Ok(TableIterator::new(claim(worker, max_images, lease_seconds, Some(venue_id)).report()?))
    }
}
