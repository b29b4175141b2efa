//! The retry queue: state in logged tables, claims with leases and per-provider pacing,
//! token-fenced write-back that patches one image under a short row lock, the nightly
//! scan, the enqueue trigger, and the manual-review operations.
//!
//! The rules (what is queued, attempted, finalised or left for review; what an outcome
//! does; the backoff) are `venue_images_core::retry`'s; this module only moves rows.
//!
//! Security (see docs/security.md): every function here that touches the
//! queue's tables or the venues table is `SECURITY DEFINER`, owned by the
//! `venue_image_definer` role (never a superuser, it cannot log in), with
//! `search_path = pg_catalog, pg_temp` and every object of ours schema-qualified
//! (`venue_images.`). Application code that runs inside our statements (its triggers on
//! the venues table) therefore runs with that role's few rights, not a superuser's.

mod claim;
mod enqueue;
mod inspect;
mod maintenance;
mod report;
mod roles;
mod writeback;

use crate::datum::{Jsonb, JsonbResult};
use crate::errors::VenueError;
use crate::plans::{self, Sql};
use crate::settings;
use crate::source::VenueSource;
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::spi::SpiClient;
use std::cell::RefCell;
use venue_images_core::jsonb::{encode, Node};
use venue_images_core::retry::{AttemptOutcome, Policy, Skip};

extension_sql_file!("bootstrap.sql", name = "bootstrap", bootstrap);
extension_sql_file!(
    "schema.sql",
    name = "queue_schema",
    requires = ["bootstrap", report::venue_image_outcome_group]
);
extension_sql_file!(
    "grants.sql",
    name = "grants",
    finalize,
    requires = [roles::venue_image_role_grants]
);

thread_local! {
    /// Venue ids whose rows the queue itself is rewriting right now (the enqueue trigger
    /// skips them). Set only through [`QueueWrite`], cleared when it is dropped (Rust
    /// unwinding included) and, whatever happens, when the (sub)transaction ends.
    static QUEUE_WRITE: RefCell<Vec<i64>> = const { RefCell::new(Vec::new()) };
}

/// Marks venue rows as being rewritten by the queue for as long as it lives.
pub(crate) struct QueueWrite(());

impl QueueWrite {
    /// Marks these venues.
    pub(crate) fn begin(ids: &[i64]) -> Self {
        QUEUE_WRITE.with(|w| {
            let mut w = w.borrow_mut();
            w.clear();
            w.extend_from_slice(ids);
            w.sort_unstable();
        });
        QueueWrite(())
    }
}

impl Drop for QueueWrite {
    fn drop(&mut self) {
        clear_queue_write();
    }
}

fn clear_queue_write() {
    let _ = QUEUE_WRITE.try_with(|w| {
        if let Ok(mut w) = w.try_borrow_mut() {
            w.clear();
        }
    });
}

/// Is this venue's row being rewritten by the queue itself?
pub(crate) fn queue_write_in_progress(venue_id: i64) -> bool {
    QUEUE_WRITE.with(|w| w.borrow().binary_search(&venue_id).is_ok())
}

#[pg_guard]
unsafe extern "C-unwind" fn on_xact(_event: pg_sys::XactEvent::Type, _arg: *mut std::ffi::c_void) {
    // Commit, abort, prepare: no statement of ours is running any more.
    clear_queue_write();
}

#[pg_guard]
unsafe extern "C-unwind" fn on_subxact(
    event: pg_sys::SubXactEvent::Type,
    _my: pg_sys::SubTransactionId,
    _parent: pg_sys::SubTransactionId,
    _arg: *mut std::ffi::c_void,
) {
    if event == pg_sys::SubXactEvent::SUBXACT_EVENT_ABORT_SUB {
        clear_queue_write();
    }
}

/// Registers the transaction callbacks that clear the queue-write marker; from `_PG_init`.
pub fn register_callbacks() {
    // SAFETY: the callbacks only clear thread-local state and never raise.
    unsafe {
        pg_sys::RegisterXactCallback(Some(on_xact), std::ptr::null_mut());
        pg_sys::RegisterSubXactCallback(Some(on_subxact), std::ptr::null_mut());
    }
}

/// The statement of [`now_iso`], also used by `venue_images_finalize`.
pub(crate) const NOW_ISO_SQL: &str = r#"SELECT pg_catalog.to_char(pg_catalog.now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')"#;

/// The transaction's `now()` as ISO-8601 UTC with microseconds
/// (`2026-11-24T01:02:03.456789Z`): the one clock of the queue. Rows, elements and log
/// entries written by one call all carry it.
pub(crate) fn now_iso(client: &mut SpiClient<'_>) -> Result<String, VenueError> {
    Ok(plans::run(client, NOW_ISO_SQL, &[])?
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

/// `SELECT <columns> FROM <the venues table> WHERE <its id column> = <ids>`, where `ids`
/// is `$1` or `ANY($1)`.
pub(crate) fn select_venues(src: &VenueSource, columns: &[&str], ids: &str) -> String {
    format!(
        "SELECT {} FROM {} WHERE {} OPERATOR(pg_catalog.=) {ids}",
        columns.join(", "),
        src.relation,
        src.id_column
    )
}

/// Reads a venue's images value (owned), locking the row first when `for_update`;
/// `None` when the venue is gone, `Some(None)` when the row holds NULL images.
pub(crate) fn read_venue(
    client: &mut SpiClient<'_>,
    src: &VenueSource,
    venue_id: i64,
    for_update: bool,
) -> Result<Option<Option<Vec<u8>>>, VenueError> {
    let mut sql = select_venues(src, &[&src.images_column], "$1");
    if for_update {
        sql.push_str(" FOR UPDATE");
    }
    let table = {
        let _as_owner = crate::owner::AsOwner::of(src)?;
        if for_update {
            plans::run(client, Sql::Built(&sql), &[venue_id.into()])?
        } else {
            plans::read(client, Sql::Built(&sql), &[venue_id.into()])?
        }
    };
    if table.is_empty() {
        return Ok(None);
    }
    let row = table.first();
    let images = row.get::<Jsonb<'_>>(1)?.map(|j| j.bytes().to_vec());
    Ok(Some(images))
}

/// Runs `f` on a venue's images value, read without a lock (so also on a hot standby),
/// with the retry policy in force; `T::default()` when the venue is gone or its images
/// are NULL.
pub(crate) fn with_venue_images<T: Default>(
    venue_id: i64,
    f: impl FnOnce(&mut SpiClient<'_>, &Policy, &[u8]) -> Result<T, VenueError>,
) -> Result<T, VenueError> {
    let src = plans::venue_source()?;
    require_jsonb(&src)?;
    let policy = settings::policy();
    Spi::connect_mut(|c| match read_venue(c, &src, venue_id, false)? {
        Some(Some(bytes)) => f(c, &policy, &bytes),
        _ => Ok(T::default()),
    })
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
        "UPDATE {rel} SET {img} = $1 WHERE {id} OPERATOR(pg_catalog.=) $2",
        rel = src.relation,
        img = src.images_column,
        id = src.id_column
    );
    let _marker = QueueWrite::begin(&[venue_id]);
    let _as_owner = crate::owner::AsOwner::of(src)?;
    plans::run(
        client,
        Sql::Built(&sql),
        &[JsonbResult::Bytes(bytes).into(), venue_id.into()],
    )?;
    Ok(())
}

/// One row of the attempt log (`venue_images.venue_image_attempts`).
#[derive(Default, Clone)]
pub(crate) struct Attempt {
    pub job_id: Option<i64>,
    pub venue_id: i64,
    pub url_hash: Option<Vec<u8>>,
    /// Already redacted.
    pub provider_url: Option<String>,
    pub provider: Option<String>,
    pub worker: Option<String>,
    pub retried_error_type: Option<String>,
    pub retry_count: Option<i64>,
    pub outcome: Option<AttemptOutcome>,
    pub error_type: Option<String>,
    pub status_code: Option<i32>,
    /// Cleaned (`venue_images_core::retry::clean_message`) before it gets here.
    pub message: Option<String>,
    pub imagekit_path: Option<String>,
    /// Already redacted (see `venue_images_core::retry::redacted_copy`).
    pub detail: Option<Vec<u8>>,
}

/// One column of rows, for a statement that reads its rows from arrays (`unnest`).
pub(crate) fn column<R, T>(rows: &[R], field: impl Fn(&R) -> T) -> Vec<T> {
    rows.iter().map(field).collect()
}

/// Appends to the attempt log, in one statement: the only writer of the log.
pub(crate) fn log_attempts(client: &mut SpiClient<'_>, rows: &[Attempt]) -> Result<(), VenueError> {
    if rows.is_empty() {
        return Ok(());
    }
    let details: Vec<Option<JsonbResult>> = rows
        .iter()
        .map(|r| r.detail.clone().map(JsonbResult::Bytes))
        .collect();
    plans::run(
        client,
        "INSERT INTO venue_images.venue_image_attempts
           (job_id, venue_id, url_hash, provider_url, provider, worker, retried_error_type,
            retry_count, outcome, error_type, status_code, message, imagekit_path, detail)
         SELECT * FROM ROWS FROM (
             pg_catalog.unnest($1::bigint[]),
             pg_catalog.unnest($2::bigint[]),
             pg_catalog.unnest($3::pg_catalog.bytea[]),
             pg_catalog.unnest($4::pg_catalog.text[]),
             pg_catalog.unnest($5::pg_catalog.text[]),
             pg_catalog.unnest($6::pg_catalog.text[]),
             pg_catalog.unnest($7::pg_catalog.text[]),
             pg_catalog.unnest($8::int[]),
             pg_catalog.unnest($9::pg_catalog.text[]),
             pg_catalog.unnest($10::pg_catalog.text[]),
             pg_catalog.unnest($11::int[]),
             pg_catalog.unnest($12::pg_catalog.text[]),
             pg_catalog.unnest($13::pg_catalog.text[]),
             pg_catalog.unnest($14::pg_catalog.jsonb[]))",
        &[
            column(rows, |r| r.job_id).into(),
            column(rows, |r| r.venue_id).into(),
            column(rows, |r| r.url_hash.clone()).into(),
            column(rows, |r| r.provider_url.clone()).into(),
            column(rows, |r| r.provider.clone()).into(),
            column(rows, |r| r.worker.clone()).into(),
            column(rows, |r| r.retried_error_type.clone()).into(),
            column(rows, |r| {
                r.retry_count.map(|n| n.clamp(0, i32::MAX as i64) as i32)
            })
            .into(),
            column(rows, |r| r.outcome.map(|o| o.as_str().to_string())).into(),
            column(rows, |r| r.error_type.clone()).into(),
            column(rows, |r| r.status_code).into(),
            column(rows, |r| r.message.clone()).into(),
            column(rows, |r| r.imagekit_path.clone()).into(),
            details.into(),
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
        "INSERT INTO venue_images.venue_image_providers (provider)
         SELECT DISTINCT p FROM pg_catalog.unnest($1::pg_catalog.text[]) AS p
         ON CONFLICT (provider) DO NOTHING",
        &[providers.into()],
    )?;
    Ok(())
}

/// Wakes sleeping uploaders (`LISTEN venue_image_jobs`; delivered at commit). A hint
/// only: uploaders also ask `venue_image_next_due()` and poll.
pub(crate) fn notify_due(client: &mut SpiClient<'_>) -> Result<(), VenueError> {
    plans::run(
        client,
        "SELECT pg_catalog.pg_notify('venue_image_jobs', '')",
        &[],
    )?;
    Ok(())
}

/// Replaces what is recorded about the unreadable elements of these venues (one call
/// per venue or batch; venues with none get their old rows removed).
pub(crate) fn record_skips(
    client: &mut SpiClient<'_>,
    venues: &[i64],
    skips: &[(i64, Skip)],
    seen_by: &str,
) -> Result<(), VenueError> {
    if venues.is_empty() {
        return Ok(());
    }
    let skip_venues: Vec<i64> = skips.iter().map(|(v, _)| *v).collect();
    let skip_indexes: Vec<i32> = skips
        .iter()
        .map(|(_, s)| s.index.min(i32::MAX as usize) as i32)
        .collect();
    plans::run(
        client,
        "DELETE FROM venue_images.venue_image_skips s
          WHERE s.venue_id OPERATOR(pg_catalog.=) ANY($1)
            AND NOT EXISTS (SELECT 1
                              FROM ROWS FROM (pg_catalog.unnest($2::bigint[]),
                                              pg_catalog.unnest($3::int[])) AS k(v, i)
                             WHERE k.v OPERATOR(pg_catalog.=) s.venue_id
                               AND k.i OPERATOR(pg_catalog.=) s.element_index)",
        &[
            venues.to_vec().into(),
            skip_venues.clone().into(),
            skip_indexes.clone().into(),
        ],
    )?;
    if skips.is_empty() {
        return Ok(());
    }
    plans::run(
        client,
        "INSERT INTO venue_images.venue_image_skips AS s (venue_id, element_index, reason, seen_by)
         SELECT k.v, k.i, k.r, $4
           FROM ROWS FROM (pg_catalog.unnest($1::bigint[]),
                           pg_catalog.unnest($2::int[]),
                           pg_catalog.unnest($3::pg_catalog.text[])) AS k(v, i, r)
         ON CONFLICT (venue_id, element_index) DO UPDATE
            SET reason = excluded.reason, seen_by = excluded.seen_by, last_seen_at = pg_catalog.now()",
        &[
            skip_venues.into(),
            skip_indexes.into(),
            skips
                .iter()
                .map(|(_, s)| venue_images_core::retry::clean_message(&s.reason))
                .collect::<Vec<String>>()
                .into(),
            seen_by.into(),
        ],
    )?;
    Ok(())
}

/// The venues relation the queue and the analytics read (`venue_images.venues_table`,
/// an unqualified name meaning `public.<name>`), quoted and schema-qualified; 42P01 when
/// there is none. The migrations use it to grant `venue_image_definer` its rights and
/// to install the trigger.
#[pg_extern(stable, parallel_safe)]
fn venue_images_relation() -> Result<String, pgrx::pg_sys::panic::ErrorReport> {
    use crate::errors::Report;
    // Not SECURITY DEFINER: its catalog queries are parsed with pg_catalog only, whatever
    // the caller's search_path (the migrations call it as a superuser).
    let _path = crate::owner::PinnedPath::new();
    plans::venue_source().map(|s| s.relation).report()
}
