//! A tiny binary format for aggregate states that cross process boundaries (parallel
//! workers serialise their partial states for the leader). Reading is bounds-checked:
//! bad bytes give [`Malformed`], never a panic.

use crate::jsonb::Malformed;

/// Appends values.
#[derive(Default)]
pub struct Writer {
    /// The bytes written so far.
    pub buf: Vec<u8>,
}

impl Writer {
    /// A `u8`.
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    /// A `u32` (little-endian).
    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    /// An `i64` (little-endian).
    pub fn i64(&mut self, v: i64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    /// An optional `i64`.
    pub fn opt_i64(&mut self, v: Option<i64>) {
        match v {
            Some(v) => {
                self.u8(1);
                self.i64(v);
            }
            None => self.u8(0),
        }
    }

    /// Optional bytes (length-prefixed; `u32::MAX` for none).
    pub fn opt_bytes(&mut self, v: Option<&[u8]>) {
        match v {
            Some(b) => {
                self.u32(b.len() as u32);
                self.buf.extend_from_slice(b);
            }
            None => self.u32(u32::MAX),
        }
    }
}

/// Reads values written by [`Writer`].
pub struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    /// Reads from `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, at: 0 }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        let end = self
            .at
            .checked_add(n)
            .ok_or(Malformed("state length overflow"))?;
        let s = self
            .buf
            .get(self.at..end)
            .ok_or(Malformed("truncated state"))?;
        self.at = end;
        Ok(s)
    }

    /// A `u8`.
    pub fn u8(&mut self) -> Result<u8, Malformed> {
        Ok(self.take(1)?[0])
    }

    /// A `u32`.
    pub fn u32(&mut self) -> Result<u32, Malformed> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// An `i64`.
    pub fn i64(&mut self) -> Result<i64, Malformed> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(i64::from_le_bytes(a))
    }

    /// An optional `i64`.
    pub fn opt_i64(&mut self) -> Result<Option<i64>, Malformed> {
        match self.u8()? {
            0 => Ok(None),
            1 => Ok(Some(self.i64()?)),
            _ => Err(Malformed("bad option tag")),
        }
    }

    /// Optional bytes.
    pub fn opt_bytes(&mut self) -> Result<Option<&'a [u8]>, Malformed> {
        let n = self.u32()?;
        if n == u32::MAX {
            return Ok(None);
        }
        self.take(n as usize).map(Some)
    }

    /// A count that must fit the remaining bytes at `min_item` bytes per item.
    pub fn count(&mut self, min_item: usize) -> Result<usize, Malformed> {
        let n = self.u32()? as usize;
        if n.saturating_mul(min_item) > self.buf.len() - self.at {
            return Err(Malformed("count exceeds state size"));
        }
        Ok(n)
    }

    /// Requires that everything was read.
    pub fn finish(&self) -> Result<(), Malformed> {
        if self.at == self.buf.len() {
            Ok(())
        } else {
            Err(Malformed("trailing bytes in state"))
        }
    }
}
