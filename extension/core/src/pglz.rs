//! PostgreSQL's pglz decompression, for inline-compressed varlenas.
//!
//! A jsonb value of a few kilobytes is stored compressed in the heap tuple itself (an
//! "inline compressed" varlena: a 4-byte header, a 4-byte size-and-method word, then the
//! pglz stream). Detoasting it is most of what any scan of the venues table costs, and
//! PostgreSQL's own decoder (`pglz_decompress` in `src/common/pg_lzcompress.c`) calls
//! `memcpy` once per back-reference. JSON repeats keys and URL prefixes, so its streams
//! are mostly short back-references: this decoder copies them with fixed-size moves into
//! a buffer that keeps [`SLACK`] spare bytes at its end, moves runs of literals 8 bytes
//! at a time, and reuses that buffer from row to row instead of allocating one per value.
//!
//! The format: a control byte, then up to 8 items, one per bit from the lowest: a 0 bit
//! is one literal byte; a 1 bit is a tag of 2 bytes (length - 3 in the low nibble of the
//! first, a 12-bit offset in its high nibble and the second) or 3 bytes (a low nibble of
//! 15 means the length is 18 plus the third byte). A tag copies `length` bytes starting
//! `offset` bytes back in the output; the two may overlap (a run).
//!
//! It accepts exactly the streams PostgreSQL accepts (with its `check_complete`): any
//! other byte string gives [`Corrupt`], never a panic (this is property-tested), and the
//! caller then lets PostgreSQL detoast the value, which reports the corruption its own way.

/// Spare bytes kept after the output so back-references copy in whole 16-byte moves.
const SLACK: usize = 16;

/// Values larger than this are left to PostgreSQL (the buffer is kept for reuse, so its
/// size is bounded).
///
/// With the default 8 kB pages no inline value comes near it: a heap tuple holds at most
/// 8,160 bytes, and pglz's densest stream (3 bytes and a control bit per 273 bytes)
/// inflates that to about 710 kB. It is kept because pages of 16 or 32 kB (a build
/// option) hold streams that inflate past 1 MiB, and because the raw size comes from the
/// datum's own header, which may say up to 1 GB; it is tested at its boundary.
pub const MAX_RAW: usize = 1 << 20;

/// `VARHDRSZ_COMPRESSED`: the 4-byte header and the size-and-method word.
const COMPRESSED_HEADER: usize = 8;
/// `VARLENA_EXTSIZE_MASK`.
const EXTSIZE_MASK: u32 = 0x3FFF_FFFF;
/// `TOAST_PGLZ_COMPRESSION_ID`, in the top two bits of the size-and-method word.
const METHOD_PGLZ: u32 = 0;

/// The stream is not one PostgreSQL would decompress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Corrupt;

/// Decompresses one pglz stream into `dst[..raw]`, as `pglz_decompress(src, .., raw,
/// check_complete = true)` does. `dst` holds at least `raw + SLACK` bytes; the bytes after
/// `raw` are scratch.
fn decompress(src: &[u8], dst: &mut [u8], raw: usize) -> Result<(), Corrupt> {
    debug_assert!(dst.len() >= raw + SLACK);
    let (mut sp, mut dp) = (0usize, 0usize);
    while sp < src.len() && dp < raw {
        // The group's items, one bit each from the lowest; bit 8 marks the group's end.
        let mut ctrl = src[sp] as u32 | 0x100;
        sp += 1;
        while ctrl != 1 && sp < src.len() && dp < raw {
            if ctrl & 1 == 0 {
                // A run of literals (up to the next tag or the group's end), as far as
                // the input and the output allow: one 8-byte move when both have room.
                let run = (ctrl.trailing_zeros() as usize)
                    .min(src.len() - sp)
                    .min(raw - dp);
                if sp + 8 <= src.len() {
                    dst[dp..dp + 8].copy_from_slice(&src[sp..sp + 8]);
                } else {
                    dst[dp..dp + run].copy_from_slice(&src[sp..sp + run]);
                }
                sp += run;
                dp += run;
                ctrl >>= run;
            } else {
                let (Some(&b0), Some(&b1)) = (src.get(sp), src.get(sp + 1)) else {
                    return Err(Corrupt);
                };
                sp += 2;
                let mut len = (b0 & 0x0f) as usize + 3;
                let off = (((b0 & 0xf0) as usize) << 4) | b1 as usize;
                if len == 18 {
                    len += *src.get(sp).ok_or(Corrupt)? as usize;
                    sp += 1;
                }
                if off == 0 || off > dp {
                    return Err(Corrupt);
                }
                let len = len.min(raw - dp);
                copy_back(dst, dp, off, len);
                dp += len;
                ctrl >>= 1;
            }
        }
    }
    if dp == raw && sp == src.len() {
        Ok(())
    } else {
        Err(Corrupt)
    }
}

/// Copies `len` bytes from `off` bytes back to `dp`, byte by byte in effect (an overlap
/// repeats the pattern). With `off` ≥ 16 (or 8) every whole move reads only bytes already
/// final; a move may write up to 15 bytes past `dp + len`, into bytes the next items
/// overwrite (or the slack).
#[inline(always)]
fn copy_back(dst: &mut [u8], dp: usize, off: usize, len: usize) {
    let from = dp - off;
    if off >= 16 {
        let mut k = 0;
        while k < len {
            dst.copy_within(from + k..from + k + 16, dp + k);
            k += 16;
        }
    } else if off >= 8 {
        let mut k = 0;
        while k < len {
            dst.copy_within(from + k..from + k + 8, dp + k);
            k += 8;
        }
    } else {
        for k in 0..len {
            dst[dp + k] = dst[from + k];
        }
    }
}

/// A reusable buffer that inflates inline pglz-compressed varlenas.
///
/// The buffer is never cleared between values: the decoder writes every output byte
/// before it reads it (literals come from the stream, back-references read only bytes
/// this value already produced), so what an earlier value left behind never shows. A
/// property test fills the buffer with garbage before each value and compares with a
/// fresh decoder and with PostgreSQL's loop.
#[derive(Default)]
pub struct Inflater {
    buf: Vec<u8>,
}

impl Inflater {
    /// The uncompressed varlena (a 4-byte header, then the data) of `datum`, the complete
    /// bytes of an inline-compressed varlena (`VARATT_IS_4B_C`).
    ///
    /// `Ok(None)`: not a pglz value of at most [`MAX_RAW`] bytes (lz4, say): detoast it the
    /// usual way. `Err`: the stream is corrupt.
    pub fn inflate(&mut self, datum: &[u8]) -> Result<Option<&[u8]>, Corrupt> {
        let (Some(h), Some(info)) = (word(datum, 0), word(datum, 4)) else {
            return Err(Corrupt);
        };
        if h & 0x03 != 0x02 || (h >> 2) as usize != datum.len() {
            return Err(Corrupt);
        }
        let raw = (info & EXTSIZE_MASK) as usize;
        if info >> 30 != METHOD_PGLZ || raw > MAX_RAW {
            return Ok(None);
        }
        let total = raw + 4;
        if self.buf.len() < total + SLACK {
            self.buf.resize(total + SLACK, 0);
        }
        self.buf[..4].copy_from_slice(&((total as u32) << 2).to_ne_bytes());
        decompress(
            &datum[COMPRESSED_HEADER..],
            &mut self.buf[4..total + SLACK],
            raw,
        )?;
        Ok(Some(&self.buf[..total]))
    }
}

fn word(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

#[cfg(test)]
mod tests;
