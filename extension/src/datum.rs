//! `jsonb` arguments and results without the text round trip.
//!
//! pgrx's `JsonB` converts through `jsonb_out` and serde_json, which is far too slow per
//! row. [`Jsonb`] instead detoasts the datum and hands the core the binary container;
//! [`JsonbResult`] returns either freshly encoded bytes or the input datum unchanged.

use pgrx::callconv::{Arg, ArgAbi, BoxRet, FcInfo};
use pgrx::datum::Datum;
use pgrx::nullable::Nullable;
use pgrx::pg_sys;
use pgrx::pgrx_sql_entity_graph::metadata::{
    ArgumentError, ReturnsError, ReturnsRef, SqlMappingRef, SqlTranslatable, TypeOrigin,
};
use pgrx::{FromDatum, IntoDatum};
use std::cell::RefCell;
use venue_images_core::jsonb::{parse_varlena, Container, Malformed};
use venue_images_core::pglz::Inflater;

/// A detoasted `jsonb` argument, borrowed for the duration of the call.
pub struct Jsonb<'a> {
    datum: pg_sys::Datum,
    bytes: &'a [u8],
}

impl<'a> Jsonb<'a> {
    /// Detoasts `datum` (a non-null jsonb datum) in the current memory context.
    ///
    /// # Safety
    /// `datum` must be a valid, non-null `jsonb` datum that outlives `'a`.
    pub unsafe fn from_datum(datum: pg_sys::Datum) -> Self {
        unsafe {
            let ptr = pg_sys::pg_detoast_datum_packed(datum.cast_mut_ptr());
            let len = varsize_any(ptr as *const u8);
            Jsonb {
                datum: pg_sys::Datum::from(ptr),
                bytes: std::slice::from_raw_parts(ptr as *const u8, len),
            }
        }
    }

    /// The varlena bytes (header included).
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The root container.
    pub fn container(&self) -> Result<Container<'a>, Malformed> {
        parse_varlena(self.bytes)
    }

    /// The (detoasted) datum, to hand back unchanged.
    pub fn datum(&self) -> pg_sys::Datum {
        self.datum
    }
}

/// `VARSIZE_ANY` of an uncompressed, non-external varlena.
///
/// # Safety
/// `ptr` must point at a detoasted varlena.
pub unsafe fn varsize_any(ptr: *const u8) -> usize {
    unsafe {
        let first = *ptr;
        if first & 0x01 == 0x01 {
            (first >> 1) as usize
        } else {
            let h = u32::from_ne_bytes([*ptr, *ptr.add(1), *ptr.add(2), *ptr.add(3)]);
            (h >> 2) as usize
        }
    }
}

impl FromDatum for Jsonb<'_> {
    unsafe fn from_polymorphic_datum(
        datum: pg_sys::Datum,
        is_null: bool,
        _typoid: pg_sys::Oid,
    ) -> Option<Self> {
        if is_null {
            None
        } else {
            Some(unsafe { Jsonb::from_datum(datum) })
        }
    }
}

impl IntoDatum for Jsonb<'_> {
    fn into_datum(self) -> Option<pg_sys::Datum> {
        Some(self.datum)
    }

    fn type_oid() -> pg_sys::Oid {
        pg_sys::JSONBOID
    }
}

/// A `jsonb` result: new bytes (a complete varlena) or an input datum passed through.
pub enum JsonbResult {
    /// Freshly encoded varlena bytes.
    Bytes(Vec<u8>),
    /// An argument returned as it is.
    Datum(pg_sys::Datum),
}

impl IntoDatum for JsonbResult {
    fn into_datum(self) -> Option<pg_sys::Datum> {
        match self {
            JsonbResult::Datum(d) => Some(d),
            JsonbResult::Bytes(b) => unsafe {
                let ptr = pg_sys::palloc(b.len()) as *mut u8;
                std::ptr::copy_nonoverlapping(b.as_ptr(), ptr, b.len());
                Some(pg_sys::Datum::from(ptr))
            },
        }
    }

    fn type_oid() -> pg_sys::Oid {
        pg_sys::JSONBOID
    }
}

unsafe impl BoxRet for JsonbResult {
    unsafe fn box_into<'fcx>(self, fcinfo: &mut FcInfo<'fcx>) -> Datum<'fcx> {
        match self.into_datum() {
            Some(datum) => unsafe { fcinfo.return_raw_datum(datum) },
            None => fcinfo.return_null(),
        }
    }
}

/// A `jsonb` datum not yet detoasted (for scans that detoast row by row in a memory
/// context they reset; see [`Jsonb::from_datum`]).
#[derive(Clone, Copy)]
pub struct RawJsonb(pub pg_sys::Datum);

impl FromDatum for RawJsonb {
    unsafe fn from_polymorphic_datum(
        datum: pg_sys::Datum,
        is_null: bool,
        _typoid: pg_sys::Oid,
    ) -> Option<Self> {
        (!is_null).then_some(RawJsonb(datum))
    }
}

thread_local! {
    /// The scans' pglz buffer, reused from row to row (at most `pglz::MAX_RAW` bytes).
    static INFLATER: RefCell<Inflater> = RefCell::new(Inflater::default());
}

impl RawJsonb {
    /// Calls `f` with the value's uncompressed varlena bytes.
    ///
    /// A value compressed inline in its tuple with pglz (the common case for a venue's
    /// few kilobytes of JSON) is inflated by the core's decoder into a buffer reused from
    /// row to row (see `venue_images_core::pglz`). Anything else (short, external, lz4,
    /// too large, or a stream the decoder calls corrupt) is detoasted by PostgreSQL, which
    /// reports a corruption its own way.
    ///
    /// # Safety
    /// The datum must be a valid, non-null `jsonb` datum for the duration of the call.
    pub unsafe fn with_bytes<R>(self, f: impl FnOnce(&[u8]) -> R) -> R {
        // SAFETY (all three): the caller's contract.
        let detoasted = || unsafe { Jsonb::from_datum(self.0) }.bytes();
        let Some(datum) = (unsafe { self.inline_compressed() }) else {
            return f(detoasted());
        };
        INFLATER.with(|cell| match cell.try_borrow_mut() {
            Ok(mut inflater) => match inflater.inflate(datum) {
                Ok(Some(bytes)) => f(bytes),
                Ok(None) | Err(_) => f(detoasted()),
            },
            Err(_) => f(detoasted()),
        })
    }

    /// [`RawJsonb::with_bytes`] of a nullable argument: `f(None)` for SQL NULL.
    ///
    /// # Safety
    /// As for [`RawJsonb::with_bytes`].
    pub unsafe fn with_opt<R>(value: Option<Self>, f: impl FnOnce(Option<&[u8]>) -> R) -> R {
        match value {
            Some(raw) => unsafe { raw.with_bytes(|bytes| f(Some(bytes))) },
            None => f(None),
        }
    }

    /// The whole varlena, if it is compressed inline in its tuple (`VARATT_IS_4B_C`).
    ///
    /// # Safety
    /// As for [`RawJsonb::with_bytes`]; the slice lives as long as the datum.
    pub unsafe fn inline_compressed<'a>(self) -> Option<&'a [u8]> {
        let ptr = self.0.cast_mut_ptr::<u8>() as *const u8;
        // SAFETY: a valid varlena has at least its first header byte.
        // Little-endian layout: a 4-byte header whose low bits are 0b10.
        if unsafe { *ptr } & 0x03 != 0x02 {
            return None;
        }
        // SAFETY: a 4-byte header, read unaligned, gives the varlena's total size.
        let header = unsafe { std::ptr::read_unaligned(ptr as *const u32) };
        Some(unsafe { std::slice::from_raw_parts(ptr, (header >> 2) as usize) })
    }
}

impl IntoDatum for RawJsonb {
    fn into_datum(self) -> Option<pg_sys::Datum> {
        Some(self.0)
    }

    fn type_oid() -> pg_sys::Oid {
        pg_sys::JSONBOID
    }
}

/// `jsonb` in SQL, whichever Rust type carries it.
macro_rules! sql_jsonb {
    ($($t:ty => $name:ident),*) => {$(
        unsafe impl SqlTranslatable for $t {
            const TYPE_IDENT: &'static str = pgrx::pgrx_resolved_type!($name);
            const TYPE_ORIGIN: TypeOrigin = TypeOrigin::External;
            const ARGUMENT_SQL: Result<SqlMappingRef, ArgumentError> =
                Ok(SqlMappingRef::literal("jsonb"));
            const RETURN_SQL: Result<ReturnsRef, ReturnsError> =
                Ok(ReturnsRef::One(SqlMappingRef::literal("jsonb")));
        }
    )*};
}

/// Arguments read with their `FromDatum`.
macro_rules! arg_from_datum {
    ($($t:ty),*) => {$(
        unsafe impl<'fcx> ArgAbi<'fcx> for $t {
            unsafe fn unbox_arg_unchecked(arg: Arg<'_, 'fcx>) -> Self {
                let index = arg.index();
                unsafe {
                    arg.unbox_arg_using_from_datum()
                        .unwrap_or_else(|| panic!("argument {index} must not be null"))
                }
            }

            unsafe fn unbox_nullable_arg(arg: Arg<'_, 'fcx>) -> Nullable<Self> {
                unsafe { arg.unbox_arg_using_from_datum().into() }
            }
        }
    )*};
}

sql_jsonb!(Jsonb<'_> => Jsonb, JsonbResult => JsonbResult, RawJsonb => RawJsonb);
arg_from_datum!(Jsonb<'fcx>, RawJsonb);
