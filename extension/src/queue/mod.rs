//! The retry queue: state in logged tables, claims with leases and per-provider pacing,
//! token-fenced write-back that patches one element under a short row lock, the nightly
//! scan, the enqueue trigger, and the manual-review operations.
//!
//! Every function that writes is `SECURITY DEFINER` with a pinned `search_path`, and
//! `EXECUTE` on them is revoked from `PUBLIC`: the uploader's role is granted exactly
//! these functions by `sql/002_uploader_role.sql`, never `UPDATE` on the venues table.

mod claim;
mod enqueue;
mod maintenance;
mod writeback;

use crate::datum::{Jsonb, JsonbResult};
use crate::errors::VenueError;
use crate::plans;
use crate::source::VenueSource;
use pgrx::prelude::*;
use pgrx::spi::SpiClient;
use std::cell::Cell;
use venue_images_core::jsonb::{encode, Node};

extension_sql_file!("schema.sql", name = "queue_schema");

thread_local! {
    /// Set while the queue itself updates a venue row, so the enqueue trigger skips it.
    pub(crate) static QUEUE_WRITE: Cell<bool> = const { Cell::new(false) };
}

/// Is the current venue update the queue's own?
pub(crate) fn queue_write_in_progress() -> bool {
    QUEUE_WRITE.with(Cell::get)
}

/// `now()` as ISO-8601 UTC with microseconds (`2026-11-24T01:02:03.456789Z`).
pub(crate) fn now_iso(client: &SpiClient<'_>) -> Result<String, VenueError> {
    Ok(client
        .select(
            r#"SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')"#,
            None,
            &[],
        )?
        .first()
        .get_one::<String>()?
        .unwrap_or_default())
}

/// Requires a jsonb images column (the queue writes jsonb back).
pub(crate) fn require_jsonb(src: &VenueSource) -> Result<(), VenueError> {
    if src.images_expr != src.images_column {
        return Err(VenueError::WrongType(format!(
            "the retry queue needs column \"{}\" of {} to be jsonb",
            src.names.images, src.relation
        )));
    }
    Ok(())
}

/// Reads a venue's images value (owned), locking the row first when `for_update`;
/// `None` when the venue is gone, `Some(None)` when the row holds NULL images.
pub(crate) fn read_venue(
    client: &mut SpiClient<'_>,
    src: &VenueSource,
    venue_id: i64,
    for_update: bool,
) -> Result<Option<Option<Vec<u8>>>, VenueError> {
    let sql = format!(
        "SELECT {img} FROM {rel} WHERE {id} = $1{lock}",
        img = src.images_column,
        rel = src.relation,
        id = src.id_column,
        lock = if for_update { " FOR UPDATE" } else { "" }
    );
    let table = plans::run_dynamic(client, &sql, &[venue_id.into()])?;
    if table.is_empty() {
        return Ok(None);
    }
    let row = table.first();
    let images = row.get_one::<Jsonb<'_>>()?.map(|j| j.bytes().to_vec());
    Ok(Some(images))
}

/// Writes a new images value for a venue (the trigger is told to skip it).
pub(crate) fn write_venue(
    client: &mut SpiClient<'_>,
    src: &VenueSource,
    venue_id: i64,
    images: &Node<'_>,
) -> Result<(), VenueError> {
    let bytes = encode(images)?;
    let sql = format!(
        "UPDATE {rel} SET {img} = $1 WHERE {id} = $2",
        rel = src.relation,
        img = src.images_column,
        id = src.id_column
    );
    QUEUE_WRITE.with(|f| f.set(true));
    let res = plans::run_dynamic(
        client,
        &sql,
        &[JsonbResult::Bytes(bytes).into(), venue_id.into()],
    );
    QUEUE_WRITE.with(|f| f.set(false));
    res?;
    Ok(())
}

/// One row of the attempt log.
#[derive(Default)]
pub(crate) struct Attempt<'a> {
    pub job_id: Option<i64>,
    pub venue_id: i64,
    pub url_hash: Option<&'a [u8]>,
    pub provider_url: Option<&'a str>,
    pub provider: Option<&'a str>,
    pub worker: Option<&'a str>,
    pub retried_error_type: Option<&'a str>,
    pub retry_count: Option<i32>,
    pub outcome: &'a str,
    pub error_type: Option<&'a str>,
    pub status_code: Option<i32>,
    pub message: Option<&'a str>,
    pub imagekit_path: Option<&'a str>,
}

/// Appends to `venue_image_attempts`.
pub(crate) fn log_attempt(client: &mut SpiClient<'_>, a: &Attempt<'_>) -> Result<(), VenueError> {
    plans::run(
        client,
        "INSERT INTO venue_image_attempts
           (job_id, venue_id, url_hash, provider_url, provider, worker, retried_error_type,
            retry_count, outcome, error_type, status_code, message, imagekit_path)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        &[
            a.job_id.into(),
            a.venue_id.into(),
            a.url_hash.map(|h| h.to_vec()).into(),
            a.provider_url.into(),
            a.provider.into(),
            a.worker.into(),
            a.retried_error_type.into(),
            a.retry_count.into(),
            a.outcome.into(),
            a.error_type.into(),
            a.status_code.into(),
            a.message.into(),
            a.imagekit_path.into(),
        ],
    )?;
    Ok(())
}

/// Makes sure every provider has a pacing row (claims lock these rows).
pub(crate) fn ensure_providers(
    client: &mut SpiClient<'_>,
    providers: Vec<String>,
) -> Result<(), VenueError> {
    if providers.is_empty() {
        return Ok(());
    }
    plans::run(
        client,
        "INSERT INTO venue_image_providers (provider)
         SELECT DISTINCT p FROM unnest($1::text[]) AS p
         ON CONFLICT (provider) DO NOTHING",
        &[providers.into()],
    )?;
    Ok(())
}

extension_sql!(
    r#"
-- Only the uploader role (granted by the migration) may run the queue's privileged functions.
REVOKE EXECUTE ON FUNCTION
    venue_image_claim(text, int, int),
    venue_image_claim_venue(text, bigint, int, int),
    venue_image_extend_lease(bigint, uuid, int),
    venue_image_release(bigint, uuid),
    venue_image_record_success(bigint, uuid, text, text, text),
    venue_image_record_failure(bigint, uuid, text, int, text, int),
    venue_image_record_results(jsonb),
    venue_image_pause_provider(text, timestamptz, text),
    venue_image_set_provider_rate(text, float8),
    venue_image_enqueue_venue(bigint),
    venue_image_cleanup_scan(),
    venue_image_force_retry(bigint, text),
    venue_image_purge_permanently_failed(bigint),
    venue_image_prune_attempts(interval),
    venue_image_retry_report(interval)
FROM PUBLIC;

-- The queue runs many small statements through kept generic plans; JIT compilation
-- (per execution, when a generic plan's estimate crosses jit_above_cost) only costs time.
ALTER FUNCTION venue_image_claim(text, int, int) SET jit = off;
-- The claim's row counts depend on its parameters (max images, provider budgets); a
-- generic plan guesses 10% of the queue and joins by scanning the whole jobs table.
ALTER FUNCTION venue_image_claim(text, int, int) SET plan_cache_mode = force_custom_plan;
ALTER FUNCTION venue_image_claim_venue(text, bigint, int, int) SET jit = off;
ALTER FUNCTION venue_image_claim_venue(text, bigint, int, int) SET plan_cache_mode = force_custom_plan;
ALTER FUNCTION venue_image_record_success(bigint, uuid, text, text, text) SET jit = off;
ALTER FUNCTION venue_image_record_failure(bigint, uuid, text, int, text, int) SET jit = off;
ALTER FUNCTION venue_image_record_results(jsonb) SET jit = off;
ALTER FUNCTION venue_image_enqueue_venue(bigint) SET jit = off;
ALTER FUNCTION venue_image_force_retry(bigint, text) SET jit = off;
ALTER FUNCTION venue_image_purge_permanently_failed(bigint) SET jit = off;
ALTER FUNCTION venue_images_enqueue_trigger() SET jit = off;

-- The trigger runs as the application's role, which has no rights on the queue's tables.
ALTER FUNCTION venue_images_enqueue_trigger()
    SECURITY DEFINER SET search_path = @extschema@, pg_catalog, pg_temp;
"#,
    name = "queue_grants",
    finalize
);
