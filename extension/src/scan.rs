//! One pass over the configured venues table, row by row, without copying tuples.
//!
//! The query runs through `SPI_execute_extended` with our own `DestReceiver`, so each
//! row reaches Rust straight from the executor's slot: no tuplestore, no tuple copies.
//! Detoasted values live in a memory context that is reset after every row. A panic or
//! PostgreSQL error inside the callback stops the scan and is re-raised after SPI
//! returns, so unwinding never crosses the executor's C frames.

use crate::errors::VenueError;
use crate::settings::{self, TableNames};
use pgrx::datum::DatumWithOid;
use pgrx::pg_sys;
use pgrx::spi::Spi;
use std::any::Any;
use std::ffi::CString;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// The venues relation as resolved from the settings.
#[derive(Debug, Clone)]
pub struct VenueSource {
    /// `schema.table`, quoted.
    pub relation: String,
    /// Relation oid.
    pub oid: pg_sys::Oid,
    /// Select-list expressions: id (bigint), name (text), city (bigint), images (jsonb).
    pub id_expr: String,
    /// Name expression (`NULL::text` when the column is absent).
    pub name_expr: String,
    /// City expression (`NULL::bigint` when absent).
    pub city_expr: String,
    /// Slug expression (`NULL::text` when absent).
    pub slug_expr: String,
    /// Images expression.
    pub images_expr: String,
    /// Quoted images column (for updates).
    pub images_column: String,
    /// Quoted id column.
    pub id_column: String,
    /// A plain GIN index exists on the images column (and it is jsonb).
    pub has_gin: bool,
    /// The settings used.
    pub names: TableNames,
}

fn quote_ident(s: &str) -> String {
    pgrx::spi::quote_identifier(s)
}

/// Resolves `venue_images.venues_table` and its columns against the catalog.
pub fn resolve() -> Result<VenueSource, VenueError> {
    let names = settings::table_names()?;
    let query = "
        SELECT c.oid,
               format('%I.%I', n.nspname, c.relname),
               (SELECT format_type(a.atttypid, NULL) FROM pg_attribute a
                 WHERE a.attrelid = c.oid AND a.attname = $2 AND a.attnum > 0 AND NOT a.attisdropped),
               (SELECT a.attnum FROM pg_attribute a
                 WHERE a.attrelid = c.oid AND a.attname = $2 AND a.attnum > 0 AND NOT a.attisdropped),
               EXISTS (SELECT 1 FROM pg_attribute a
                 WHERE a.attrelid = c.oid AND a.attname = $3 AND a.attnum > 0 AND NOT a.attisdropped),
               EXISTS (SELECT 1 FROM pg_attribute a
                 WHERE a.attrelid = c.oid AND a.attname = $4 AND a.attnum > 0 AND NOT a.attisdropped),
               EXISTS (SELECT 1 FROM pg_attribute a
                 WHERE a.attrelid = c.oid AND a.attname = $5 AND a.attnum > 0 AND NOT a.attisdropped),
               EXISTS (SELECT 1 FROM pg_attribute a
                 WHERE a.attrelid = c.oid AND a.attname = $6 AND a.attnum > 0 AND NOT a.attisdropped)
          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE c.oid = to_regclass($1)";
    let args: Vec<DatumWithOid> = vec![
        names.table.as_str().into(),
        names.images.as_str().into(),
        names.id.as_str().into(),
        names.name.as_str().into(),
        names.city.as_str().into(),
        names.slug.as_str().into(),
    ];
    type Found = (
        Option<pg_sys::Oid>,
        Option<String>,
        Option<String>,
        Option<i16>,
        bool,
        bool,
        bool,
        bool,
    );
    let found: Option<Found> = Spi::connect(|client| {
        let table = client.select(query, Some(1), &args)?;
        if table.is_empty() {
            return Ok::<_, pgrx::spi::Error>(None);
        }
        let row = table.first();
        Ok(Some((
            row.get::<pg_sys::Oid>(1)?,
            row.get::<String>(2)?,
            row.get::<String>(3)?,
            row.get::<i16>(4)?,
            row.get::<bool>(5)?.unwrap_or(false),
            row.get::<bool>(6)?.unwrap_or(false),
            row.get::<bool>(7)?.unwrap_or(false),
            row.get::<bool>(8)?.unwrap_or(false),
        )))
    })?;
    let Some((
        Some(oid),
        Some(relation),
        images_type,
        images_attnum,
        has_id,
        has_name,
        has_city,
        has_slug,
    )) = found
    else {
        return Err(VenueError::UndefinedTable(format!(
            "relation \"{}\" does not exist (venue_images.venues_table)",
            names.table
        )));
    };
    let images_column = quote_ident(&names.images);
    let images_expr = match images_type.as_deref() {
        Some("jsonb") => images_column.clone(),
        Some("json") => format!("{images_column}::jsonb"),
        Some(other) => {
            return Err(VenueError::WrongType(format!(
                "column \"{}\" of {relation} has type {other}, expected jsonb (venue_images.images_column)",
                names.images
            )))
        }
        None => {
            return Err(VenueError::UndefinedColumn(format!(
                "column \"{}\" of {relation} does not exist (venue_images.images_column)",
                names.images
            )))
        }
    };
    if !has_id {
        return Err(VenueError::UndefinedColumn(format!(
            "column \"{}\" of {relation} does not exist (venue_images.id_column)",
            names.id
        )));
    }
    let id_column = quote_ident(&names.id);
    let has_gin = images_type.as_deref() == Some("jsonb")
        && match images_attnum {
            Some(attnum) => Spi::get_one_with_args::<bool>(
                "SELECT EXISTS (SELECT 1 FROM pg_index i
                   JOIN pg_class ic ON ic.oid = i.indexrelid
                   JOIN pg_am am ON am.oid = ic.relam
                  WHERE i.indrelid = $1 AND am.amname = 'gin' AND i.indkey[0] = $2
                    AND i.indnatts = 1 AND i.indpred IS NULL AND i.indisvalid)",
                &[oid.into(), attnum.into()],
            )?
            .unwrap_or(false),
            None => false,
        };
    Ok(VenueSource {
        oid,
        id_expr: format!("{id_column}::bigint"),
        name_expr: if has_name {
            format!("{}::text", quote_ident(&names.name))
        } else {
            "NULL::text".into()
        },
        city_expr: if has_city {
            format!("{}::bigint", quote_ident(&names.city))
        } else {
            "NULL::bigint".into()
        },
        slug_expr: if has_slug {
            format!("{}::text", quote_ident(&names.slug))
        } else {
            "NULL::text".into()
        },
        images_expr,
        images_column,
        id_column,
        relation,
        has_gin,
        names,
    })
}

impl VenueSource {
    /// `SELECT id, name, city, images FROM venues`, restricted to venues with a failed
    /// image through the GIN index when `only_failures` and an index exists.
    pub fn select_sql(&self, only_failures: bool) -> String {
        let mut sql = format!(
            "SELECT {}, {}, {}, {} FROM {}",
            self.id_expr, self.name_expr, self.city_expr, self.images_expr, self.relation
        );
        if only_failures && self.has_gin {
            sql.push_str(&format!(
                " WHERE {c} @> '[{{\"upload_status\": \"failed\"}}]'::jsonb \
                 OR {c} @> '[{{\"upload_status\": \"permanently_failed\"}}]'::jsonb",
                c = self.images_column
            ));
        }
        sql
    }

    /// Like [`Self::select_sql`], selecting only the images column.
    pub fn select_images_sql(&self, only_failures: bool) -> String {
        let full = self.select_sql(only_failures);
        let from = full.find(" FROM ").expect("select has FROM");
        format!("SELECT {}{}", self.images_expr, &full[from..])
    }
}

/// One row of a scan: datums of the current slot.
pub struct Row {
    slot: *mut pg_sys::TupleTableSlot,
}

impl Row {
    fn raw(&self, att: usize) -> Option<pg_sys::Datum> {
        // SAFETY: the slot is valid during the callback and `att` is within the select list
        // (all attributes were deformed before the callback).
        unsafe {
            let slot = &*self.slot;
            if att == 0 || att > slot.tts_nvalid as usize {
                return None;
            }
            if *slot.tts_isnull.add(att - 1) {
                None
            } else {
                Some(*slot.tts_values.add(att - 1))
            }
        }
    }

    /// A `bigint` column.
    pub fn i64(&self, att: usize) -> Option<i64> {
        self.raw(att).map(|d| d.value() as i64)
    }

    /// A varlena column (text or jsonb) as bytes, detoasted into the row context.
    /// For text the varlena header is stripped; for jsonb it is kept (`header = true`).
    pub fn varlena(&self, att: usize, header: bool) -> Option<&[u8]> {
        let d = self.raw(att)?;
        // SAFETY: a non-null varlena datum; the copy lives in the per-row context, which is
        // reset only after the callback returns.
        unsafe {
            let ptr = pg_sys::pg_detoast_datum_packed(d.cast_mut_ptr()) as *const u8;
            let total = crate::datum::varsize_any(ptr);
            let hdr = if *ptr & 0x01 == 0x01 { 1 } else { 4 };
            let bytes = std::slice::from_raw_parts(ptr, total);
            Some(if header { bytes } else { &bytes[hdr..] })
        }
    }
}

#[repr(C)]
struct Receiver<F> {
    base: pg_sys::DestReceiver,
    natts: i32,
    row_cx: pg_sys::MemoryContext,
    callback: F,
    failure: Option<Box<dyn Any + Send>>,
    rows: u64,
}

unsafe extern "C-unwind" fn receive<F: FnMut(&Row)>(
    slot: *mut pg_sys::TupleTableSlot,
    this: *mut pg_sys::DestReceiver,
) -> bool {
    // SAFETY: `this` is the `base` field of a live `Receiver<F>` (repr(C), first field).
    let r = unsafe { &mut *(this as *mut Receiver<F>) };
    if r.failure.is_some() {
        return false;
    }
    let natts = r.natts;
    let row_cx = r.row_cx;
    let callback = &mut r.callback;
    // SAFETY: `row_cx` is a live context owned by the scan; we switch back before
    // returning whatever the callback did.
    let old = unsafe { pg_sys::MemoryContextSwitchTo(row_cx) };
    let outcome = catch_unwind(AssertUnwindSafe(|| unsafe {
        if ((*slot).tts_nvalid as i32) < natts {
            pg_sys::slot_getsomeattrs_int(slot, natts);
        }
        callback(&Row { slot });
    }));
    unsafe {
        pg_sys::MemoryContextSwitchTo(old);
        pg_sys::MemoryContextReset(row_cx);
    }
    match outcome {
        Ok(()) => {
            r.rows += 1;
            true
        }
        Err(p) => {
            r.failure = Some(p);
            false
        }
    }
}

unsafe extern "C-unwind" fn startup(_: *mut pg_sys::DestReceiver, _: i32, _: pg_sys::TupleDesc) {}
unsafe extern "C-unwind" fn shutdown(_: *mut pg_sys::DestReceiver) {}

/// Runs a read-only query and calls `f` for every row, in one pass. `natts` is the
/// number of select-list columns the callback reads. Returns the number of rows.
pub fn for_each_row<F: FnMut(&Row)>(sql: &str, natts: i32, f: F) -> Result<u64, VenueError> {
    let csql = CString::new(sql).map_err(|_| VenueError::Spi("query contains NUL".into()))?;
    let (rows, failure) = Spi::connect(|_client| unsafe {
        let row_cx = pg_sys::AllocSetContextCreateExtended(
            pg_sys::CurrentMemoryContext,
            c"venue_images row".as_ptr(),
            pg_sys::ALLOCSET_DEFAULT_MINSIZE as usize,
            pg_sys::ALLOCSET_DEFAULT_INITSIZE as usize,
            pg_sys::ALLOCSET_DEFAULT_MAXSIZE as usize,
        );
        let mut receiver = Receiver {
            base: pg_sys::DestReceiver {
                receiveSlot: Some(receive::<F>),
                rStartup: Some(startup),
                rShutdown: Some(shutdown),
                rDestroy: Some(shutdown),
                mydest: pg_sys::CommandDest::DestNone,
            },
            natts,
            row_cx,
            callback: f,
            failure: None,
            rows: 0,
        };
        let options = pg_sys::SPIExecuteOptions {
            read_only: true,
            dest: &mut receiver.base,
            ..Default::default()
        };
        let rc = pg_sys::SPI_execute_extended(csql.as_ptr(), &options);
        pg_sys::MemoryContextDelete(row_cx);
        if rc < 0 {
            return (
                Err(VenueError::Spi(format!(
                    "scan query failed (SPI code {rc})"
                ))),
                None,
            );
        }
        (Ok(receiver.rows), receiver.failure.take())
    });
    if let Some(p) = failure {
        std::panic::resume_unwind(p);
    }
    rows
}
