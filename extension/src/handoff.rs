//! Hands the venue list's final rows to the function that ran the aggregate, inside the
//! same backend, without encoding them into a bytea and decoding them again.
//!
//! The table-level lists run `SELECT venue_images.venue_images_venue_list(...) FROM venues`
//! through SPI, and the aggregate's final function runs in that same backend (the leader,
//! when the plan is parallel). For `venues_with_image_failures()` the list can hold most of
//! the table (130,000 venues of 200,000); encoding it, copying the bytea out of SPI and
//! decoding it again was a serial tail of about 40 ms after the parallel scan.
//!
//! While a [`Scope`] is open, the final function parks its sorted rows here and returns a
//! ticket (a marker and a sequence number) instead of their bytes. The scope redeems the
//! ticket its own query returned, and nothing else: rows parked by any other call of the
//! aggregate are never taken for its own, since its query's final function, which runs
//! last, replaces them with a fresh sequence number. Without a scope (the aggregate called
//! from SQL by anyone) the final function returns the rows' bytes as before.

use std::cell::RefCell;
use venue_images_core::analytics::VenueRows;

/// First bytes of a ticket. An encoded row list starts with its row count (4 bytes,
/// little-endian): these bytes would announce 1,230,260,566 rows, which never fit in the
/// 16 bytes of a ticket, so no row list is taken for one.
const MARKER: &[u8; 8] = b"VITICKET";

#[derive(Default)]
struct Slot {
    /// Open scopes (nested calls are possible: a function can run inside a scan).
    open: u32,
    /// Last ticket number issued.
    seq: u64,
    /// Rows parked under a ticket number.
    parked: Option<(u64, VenueRows)>,
}

thread_local! {
    static SLOT: RefCell<Slot> = RefCell::default();
}

/// An open handoff; closing it (on drop, errors included) frees anything left parked.
pub struct Scope {
    _not_send: std::marker::PhantomData<*const ()>,
}

impl Scope {
    /// Opens a handoff for the query about to run.
    pub fn open() -> Scope {
        SLOT.with(|s| {
            let mut s = s.borrow_mut();
            s.open += 1;
            s.parked = None;
        });
        Scope {
            _not_send: std::marker::PhantomData,
        }
    }

    /// What the query returned, as rows: `Ok(Some(rows))` for a ticket of the rows parked
    /// under it, `Ok(None)` when `bytes` is not a ticket (decode them), `Err` for a ticket
    /// whose rows are not here.
    pub fn redeem(&self, bytes: &[u8]) -> Result<Option<VenueRows>, String> {
        let Some(ticket) = ticket_of(bytes) else {
            return Ok(None);
        };
        SLOT.with(|s| match s.borrow_mut().parked.take() {
            Some((seq, rows)) if seq == ticket => Ok(Some(rows)),
            _ => Err(format!(
                "venue list ticket {ticket} does not match the rows parked for it"
            )),
        })
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        SLOT.with(|s| {
            let mut s = s.borrow_mut();
            s.open = s.open.saturating_sub(1);
            s.parked = None;
        });
    }
}

/// Whether a scope is open (the final function then parks its rows).
pub fn wanted() -> bool {
    SLOT.with(|s| s.borrow().open > 0)
}

/// Parks `rows` and returns the ticket for them (call only when [`wanted`]).
pub fn park(rows: VenueRows) -> Vec<u8> {
    SLOT.with(|s| {
        let mut s = s.borrow_mut();
        s.seq += 1;
        let seq = s.seq;
        s.parked = Some((seq, rows));
        let mut t = MARKER.to_vec();
        t.extend_from_slice(&seq.to_le_bytes());
        t
    })
}

fn ticket_of(bytes: &[u8]) -> Option<u64> {
    let rest = bytes.strip_prefix(MARKER.as_slice())?;
    Some(u64::from_le_bytes(rest.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use venue_images_core::analytics::{encode_rows, RowScan, VenueRow};
    use venue_images_core::wire::Writer;

    fn row(id: i64) -> VenueRow {
        VenueRow::new(Some(id), Some(b"v"), None, &RowScan::default())
    }

    fn rows(ids: &[i64]) -> VenueRows {
        VenueRows::Rows(ids.iter().map(|&id| row(id)).collect())
    }

    #[test]
    fn a_scope_redeems_its_own_ticket_once() {
        let scope = Scope::open();
        assert!(wanted());
        let t = park(rows(&[1, 2]));
        let got = scope.redeem(&t).unwrap().unwrap();
        assert_eq!(
            got.views().map(|r| r.id).collect::<Vec<_>>(),
            [Some(1), Some(2)]
        );
        assert!(scope.redeem(&t).is_err(), "a ticket is redeemed once");
        drop(scope);
        assert!(!wanted());
    }

    #[test]
    fn a_later_park_replaces_an_earlier_one() {
        let scope = Scope::open();
        let stale = park(rows(&[9]));
        let fresh = park(rows(&[1]));
        assert!(scope.redeem(&stale).is_err());
        let scope = Scope::open();
        let fresh2 = park(rows(&[1]));
        assert_ne!(fresh, fresh2);
        assert_eq!(scope.redeem(&fresh2).unwrap().unwrap().len(), 1);
    }

    #[test]
    fn encoded_rows_are_never_taken_for_a_ticket() {
        let scope = Scope::open();
        for n in 0..3 {
            let mut w = Writer::default();
            let rows: Vec<VenueRow> = (0..n).map(row).collect();
            encode_rows(&mut w, rows.iter().map(VenueRow::view));
            assert!(scope.redeem(&w.buf).unwrap().is_none());
        }
        assert!(scope.redeem(&[]).unwrap().is_none());
    }

    #[test]
    fn closing_a_scope_frees_what_is_parked() {
        let scope = Scope::open();
        park(rows(&[1]));
        drop(scope);
        SLOT.with(|s| assert!(s.borrow().parked.is_none()));
    }
}
