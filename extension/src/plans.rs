//! Per-backend caches for the queue's hot paths.
//!
//! - Statements are prepared once per backend and kept (`SPI_keepplan`); PostgreSQL's
//!   plan cache revalidates them when the objects they use change. Parameter types come
//!   from the first call's arguments, so every call of one statement must pass the same
//!   types.
//! - The resolved venues relation is kept until any relation's cache entry is
//!   invalidated (ALTER, DROP, CREATE INDEX ...) or the settings change.

use crate::errors::VenueError;
use crate::settings::{self, TableNames};
use crate::source::{self, VenueSource};
use pgrx::datum::DatumWithOid;
use pgrx::pg_sys;
use pgrx::pg_sys::PgOid;
use pgrx::spi::{OwnedPreparedStatement, SpiClient, SpiTupleTable};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

thread_local! {
    static PLANS: RefCell<HashMap<&'static str, Rc<OwnedPreparedStatement>>> = RefCell::new(HashMap::new());
    static BUILT_PLANS: RefCell<HashMap<String, Rc<OwnedPreparedStatement>>> = RefCell::new(HashMap::new());
    static SOURCE: RefCell<Option<(TableNames, VenueSource)>> = const { RefCell::new(None) };
    static CALLBACK_REGISTERED: Cell<bool> = const { Cell::new(false) };
    static VERSION_CHECKED: Cell<bool> = const { Cell::new(false) };
}

/// The library's version (the extension version its SQL was generated for).
pub const LIBRARY_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Refuses (55000) to run the queue or the analytics while the database still has the
/// SQL objects of another version: between installing a new package and running
/// `ALTER EXTENSION venue_images UPDATE`, the old functions call this library, whose
/// statements name the new version's objects. Checked once per backend once it holds.
pub fn require_current_version() -> Result<(), VenueError> {
    if VERSION_CHECKED.with(Cell::get) {
        return Ok(());
    }
    let installed = crate::spi::select_one::<String>(
        "SELECT extversion FROM pg_catalog.pg_extension WHERE extname OPERATOR(pg_catalog.=) 'venue_images'",
        &[],
    )?;
    match installed {
        Some(v) if v == LIBRARY_VERSION => {
            VERSION_CHECKED.with(|c| c.set(true));
            Ok(())
        }
        Some(v) => Err(VenueError::NotReady(format!(
            "the venue_images library is {LIBRARY_VERSION} but this database's extension is {v}: \
             run ALTER EXTENSION venue_images UPDATE (migration sql/001_enable_venue_images.sql)"
        ))),
        None => Err(VenueError::NotReady(
            "the venue_images extension is not installed in this database".into(),
        )),
    }
}

/// A statement's text, which also says which cache keeps its plan.
#[derive(Clone, Copy)]
pub enum Sql<'a> {
    /// Constant text (`"..."` converts to this): its plan is kept for the backend's life.
    Constant(&'static str),
    /// Text built at run time (it names the configured venues table): its plan is kept
    /// in a cache of at most 64 texts.
    Built(&'a str),
}

impl From<&'static str> for Sql<'static> {
    fn from(sql: &'static str) -> Self {
        Sql::Constant(sql)
    }
}

/// The statement's kept plan (prepared on first use).
fn kept_plan(
    client: &SpiClient<'_>,
    sql: Sql<'_>,
    args: &[DatumWithOid<'_>],
) -> Result<Rc<OwnedPreparedStatement>, VenueError> {
    let cached = match sql {
        Sql::Constant(text) => PLANS.with(|p| p.borrow().get(text).cloned()),
        Sql::Built(text) => BUILT_PLANS.with(|p| p.borrow().get(text).cloned()),
    };
    if let Some(stmt) = cached {
        return Ok(stmt);
    }
    let text = match sql {
        Sql::Constant(text) | Sql::Built(text) => text,
    };
    let types: Vec<PgOid> = args.iter().map(|a| PgOid::from(a.oid())).collect();
    let stmt = Rc::new(client.prepare_mut(text, &types)?.keep());
    match sql {
        Sql::Constant(text) => PLANS.with(|p| p.borrow_mut().insert(text, stmt.clone())),
        Sql::Built(text) => BUILT_PLANS.with(|p| {
            let mut p = p.borrow_mut();
            if p.len() > 64 {
                p.clear();
            }
            p.insert(text.to_string(), stmt.clone())
        }),
    };
    Ok(stmt)
}

/// Runs a read-only statement through its kept plan, without marking the transaction as
/// writing (see [`crate::spi::select_one`]).
pub fn read<'conn, 'a>(
    client: &SpiClient<'conn>,
    sql: impl Into<Sql<'a>>,
    args: &[DatumWithOid<'_>],
) -> Result<SpiTupleTable<'conn>, VenueError> {
    let stmt = kept_plan(client, sql.into(), args)?;
    Ok(client.select(&*stmt, None, args)?)
}

/// Refuses to write during recovery with PostgreSQL's own 25006, before anything asks
/// for a transaction id (which a hot standby refuses with an XX000).
pub fn require_writable() -> Result<(), VenueError> {
    // SAFETY: reads shared-memory state; callable in any backend at any time.
    if unsafe { pg_sys::RecoveryInProgress() } {
        return Err(VenueError::ReadOnly(
            "cannot change the retry queue on a hot standby: the server is in recovery; \
             connect to the primary"
                .into(),
        ));
    }
    Ok(())
}

/// Runs a statement through its kept plan.
pub fn run<'conn, 'a>(
    client: &mut SpiClient<'conn>,
    sql: impl Into<Sql<'a>>,
    args: &[DatumWithOid<'_>],
) -> Result<SpiTupleTable<'conn>, VenueError> {
    require_writable()?;
    let stmt = kept_plan(client, sql.into(), args)?;
    Ok(client.update(&*stmt, None, args)?)
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn forget_source(_arg: pg_sys::Datum, _relid: pg_sys::Oid) {
    // Only clears thread-local state; must not raise.
    let _ = SOURCE.try_with(|s| s.borrow_mut().take());
}

/// The venues relation, resolved once per backend until invalidated. Every queue and
/// analytics function starts here, so the version check is here too.
pub fn venue_source() -> Result<VenueSource, VenueError> {
    require_current_version()?;
    if !CALLBACK_REGISTERED.with(Cell::get) {
        // SAFETY: registers a callback that only clears a thread-local cache.
        unsafe {
            pg_sys::CacheRegisterRelcacheCallback(Some(forget_source), pg_sys::Datum::from(0))
        };
        CALLBACK_REGISTERED.with(|c| c.set(true));
    }
    let names = settings::table_names()?;
    if let Some(src) = SOURCE.with(|s| {
        s.borrow()
            .as_ref()
            .filter(|(n, _)| *n == names)
            .map(|(_, src)| src.clone())
    }) {
        return Ok(src);
    }
    let src = source::resolve()?;
    SOURCE.with(|s| *s.borrow_mut() = Some((names, src.clone())));
    Ok(src)
}
