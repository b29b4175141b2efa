//! Reads through SPI that no other module of the extension depends on: the bottom of the
//! extension's module graph (see `lib.rs`).

use crate::errors::VenueError;
use pgrx::datum::DatumWithOid;

/// The first column of the first row of a read-only query, without marking the
/// transaction as writing: pgrx's `Spi::get_one*` and `SpiClient::update` assign a
/// transaction id, which a hot standby refuses ("cannot assign TransactionIds during
/// recovery"). Every read path of the extension goes through `select`.
pub fn select_one<T: pgrx::FromDatum + pgrx::IntoDatum>(
    sql: &str,
    args: &[DatumWithOid<'_>],
) -> Result<Option<T>, VenueError> {
    Ok(pgrx::spi::Spi::connect(|client| {
        let table = client.select(sql, Some(1), args)?;
        if table.is_empty() {
            return Ok::<_, pgrx::spi::Error>(None);
        }
        table.first().get_one::<T>()
    })?)
}
