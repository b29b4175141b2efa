//! PostgreSQL's on-disk `jsonb` format, read and written in safe Rust.
//!
//! The format is documented in `src/include/utils/jsonb.h` of PostgreSQL. A container
//! is a `u32` header (count and kind flags), then one `JEntry` (`u32`) per child, then
//! the children's data. Every 32nd `JEntry` stores an end offset instead of a length.
//! Numerics and nested containers are padded to a 4-byte boundary; the padding counts
//! toward the child's length. Object keys are sorted by (length, bytes) and stored
//! before all values.
//!
//! The reader is bounds-checked everywhere: any byte string yields `Ok` or
//! [`Malformed`], never a panic (this is fuzzed). The writer produces exactly the bytes
//! PostgreSQL itself would produce for the same value, which the extension's
//! `#[pg_test]`s check against `jsonb_in`.

#[cfg(test)]
pub(crate) mod deep;

/// A `NaN` numeric varlena, which jsonb never stores but the reader accepts.
#[cfg(test)]
pub(crate) fn numeric_nan_for_tests() -> Vec<u8> {
    numeric::encode_nan()
}
mod numeric;
mod parse;
mod text;
mod write;

pub use numeric::{encode_decimal, encode_i64, Number, Numeric, NumericError};
pub use parse::{parse_json, ParseError};
pub use text::{escape_json_string, to_json_text, value_to_text};
pub use write::{encode, encode_into, patch_object, EncodeError, Node};

#[cfg(target_endian = "big")]
compile_error!("venue_images reads jsonb in little-endian layout only");

const JB_CMASK: u32 = 0x0FFF_FFFF;
const JB_FSCALAR: u32 = 0x1000_0000;
const JB_FOBJECT: u32 = 0x2000_0000;
const JB_FARRAY: u32 = 0x4000_0000;

const JENTRY_OFFLENMASK: u32 = 0x0FFF_FFFF;
const JENTRY_TYPEMASK: u32 = 0x7000_0000;
const JENTRY_HAS_OFF: u32 = 0x8000_0000;
const JENTRY_ISSTRING: u32 = 0x0000_0000;
const JENTRY_ISNUMERIC: u32 = 0x1000_0000;
const JENTRY_ISBOOL_FALSE: u32 = 0x2000_0000;
const JENTRY_ISBOOL_TRUE: u32 = 0x3000_0000;
const JENTRY_ISNULL: u32 = 0x4000_0000;
const JENTRY_ISCONTAINER: u32 = 0x5000_0000;
const JB_OFFSET_STRIDE: usize = 32;

/// How deeply nested a value may be where the core builds a copy of it that mirrors its
/// nesting ([`parse_json`], [`crate::retry::redacted_copy`]); deeper values are refused
/// with [`TooDeep`] (SQLSTATE 54001 in SQL).
///
/// Every walk over jsonb values and [`Node`] trees is iterative (its stack lives on the
/// heap), so the limit does not protect the walks themselves: values of any depth are read,
/// printed ([`to_json_text`]), encoded, copied verbatim ([`Node::Raw`]), cloned and
/// dropped. It bounds the depth of the trees the core builds from input, so that code
/// which recurses over a [`Node`] tree (a derive, a test, code yet to be written) stays
/// within PostgreSQL's stack budget: `max_stack_depth` is 2 MB by default, and the
/// recursive walks this crate used to have took 60 to 950 bytes per level in a release
/// build (up to 3.7 kB unoptimised), so 1000 levels stay below 1 MB, while no image
/// element nests more than a handful of levels. PostgreSQL itself accepts about 12,000
/// levels of nesting.
pub const MAX_DEPTH: usize = 1000;

/// A value is nested deeper than [`MAX_DEPTH`] levels where the core would have to build
/// a copy of it level by level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooDeep {
    /// The limit that was exceeded.
    pub limit: usize,
}

impl TooDeep {
    /// The error for [`MAX_DEPTH`].
    pub const MAX: TooDeep = TooDeep { limit: MAX_DEPTH };
}

impl std::fmt::Display for TooDeep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "jsonb value nested deeper than {} levels", self.limit)
    }
}

impl std::error::Error for TooDeep {}

/// The bytes are not a valid jsonb value (truncated, offsets out of range, bad flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed(pub &'static str);

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "malformed jsonb: {}", self.0)
    }
}

impl std::error::Error for Malformed {}

#[inline]
fn read_u32(bytes: &[u8], at: usize) -> Result<u32, Malformed> {
    let end = at.checked_add(4).ok_or(Malformed("offset overflow"))?;
    let b = bytes.get(at..end).ok_or(Malformed("truncated"))?;
    let word = <[u8; 4]>::try_from(b).map_err(|_| Malformed("truncated"))?;
    Ok(u32::from_ne_bytes(word))
}

#[inline]
fn int_align(n: usize) -> usize {
    (n + 3) & !3
}

/// What a container holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A JSON array.
    Array,
    /// A JSON object.
    Object,
    /// A top-level scalar (stored as a one-element array flagged as scalar).
    Scalar,
}

/// A borrowed jsonb container (array or object), positioned on its header.
#[derive(Clone, Copy)]
pub struct Container<'a> {
    header: u32,
    entries: &'a [u8],
    data: &'a [u8],
    /// The container's bytes from header to the end of its data (for verbatim copies).
    raw: &'a [u8],
}

impl std::fmt::Debug for Container<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Container")
            .field("kind", &self.kind())
            .field("len", &self.len())
            .finish()
    }
}

/// One jsonb value, borrowed from its container.
#[derive(Debug, Clone, Copy)]
pub enum Value<'a> {
    /// JSON `null`.
    Null,
    /// JSON `true` / `false`.
    Bool(bool),
    /// A string's UTF-8 bytes (unescaped).
    String(&'a [u8]),
    /// A number, as PostgreSQL's `numeric` varlena.
    Numeric(Numeric<'a>),
    /// A nested array or object.
    Container(Container<'a>),
}

impl<'a> Value<'a> {
    /// The string's text, if this is a valid UTF-8 string.
    pub fn as_str(&self) -> Option<&'a str> {
        match self {
            Value::String(b) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }

    /// The nested object, if this is one.
    pub fn as_object(&self) -> Option<Container<'a>> {
        match self {
            Value::Container(c) if c.kind() == Kind::Object => Some(*c),
            _ => None,
        }
    }

    /// The nested array, if this is one.
    pub fn as_array(&self) -> Option<Container<'a>> {
        match self {
            Value::Container(c) if c.kind() == Kind::Array => Some(*c),
            _ => None,
        }
    }

    /// The JSON type name, as `jsonb_typeof` reports it.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::String(_) => "string",
            Value::Numeric(_) => "number",
            Value::Container(c) => match c.kind() {
                Kind::Object => "object",
                _ => "array",
            },
        }
    }
}

impl<'a> Container<'a> {
    /// Reads the container that starts at `bytes[0]` and ends at `bytes.len()`.
    ///
    /// For a datum, pass the bytes after the varlena header.
    #[inline(always)]
    pub fn parse(bytes: &'a [u8]) -> Result<Self, Malformed> {
        let header = read_u32(bytes, 0)?;
        let count = (header & JB_CMASK) as usize;
        let flags = header & !JB_CMASK;
        let nchildren = match flags {
            f if f == JB_FOBJECT => count.checked_mul(2).ok_or(Malformed("count overflow"))?,
            f if f == JB_FARRAY => count,
            f if f == JB_FARRAY | JB_FSCALAR => {
                if count != 1 {
                    return Err(Malformed("scalar container must hold one value"));
                }
                1
            }
            _ => return Err(Malformed("bad container flags")),
        };
        let entries_len = nchildren
            .checked_mul(4)
            .ok_or(Malformed("count overflow"))?;
        let data_start = entries_len
            .checked_add(4)
            .ok_or(Malformed("count overflow"))?;
        if data_start > bytes.len() {
            return Err(Malformed("entries run past the end"));
        }
        Ok(Container {
            header,
            entries: &bytes[4..data_start],
            data: &bytes[data_start..],
            raw: bytes,
        })
    }

    /// Array, object or top-level scalar.
    pub fn kind(&self) -> Kind {
        if self.header & JB_FOBJECT != 0 {
            Kind::Object
        } else if self.header & JB_FSCALAR != 0 {
            Kind::Scalar
        } else {
            Kind::Array
        }
    }

    /// A real JSON array (not the wrapper of a top-level scalar).
    pub fn is_array(&self) -> bool {
        self.kind() == Kind::Array
    }

    /// A JSON object.
    pub fn is_object(&self) -> bool {
        self.kind() == Kind::Object
    }

    /// Number of elements (arrays) or key/value pairs (objects).
    pub fn len(&self) -> usize {
        (self.header & JB_CMASK) as usize
    }

    /// No elements or pairs.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The container's own bytes (header through data), for verbatim copies.
    pub fn raw_bytes(&self) -> &'a [u8] {
        self.raw
    }

    fn nchildren(&self) -> usize {
        self.entries.len() / 4
    }

    #[inline]
    fn entry(&self, i: usize) -> Result<u32, Malformed> {
        read_u32(self.entries, i * 4)
    }

    /// Start offset (in the data area) of child `i`, as `getJsonbOffset` computes it:
    /// the lengths of the children before it, back to the nearest one that stores its
    /// end offset. Sums of at most 2^28 entries below 2^28 each cannot overflow a 64-bit
    /// `usize`; on narrower targets the sum is checked.
    #[inline]
    fn offset_of(&self, i: usize) -> Result<usize, Malformed> {
        let before = self
            .entries
            .get(..i.checked_mul(4).ok_or(Malformed("offset overflow"))?)
            .ok_or(Malformed("truncated"))?;
        let mut offset: usize = 0;
        for chunk in before.rchunks_exact(4) {
            let Ok(word) = <[u8; 4]>::try_from(chunk) else {
                return Err(Malformed("truncated"));
            };
            let e = u32::from_ne_bytes(word);
            offset = offset
                .checked_add((e & JENTRY_OFFLENMASK) as usize)
                .ok_or(Malformed("offset overflow"))?;
            if e & JENTRY_HAS_OFF != 0 {
                break;
            }
        }
        Ok(offset)
    }

    /// End offset of child `i`, given its start offset.
    #[inline]
    fn end_of(&self, i: usize, start: usize) -> Result<usize, Malformed> {
        end_from(self.entry(i)?, start)
    }

    /// Decodes child `i` that occupies `[start, end)` of the data area.
    #[inline]
    fn child(&self, i: usize, start: usize, end: usize) -> Result<Value<'a>, Malformed> {
        self.child_of(self.entry(i)?, start, end)
    }

    /// Decodes the child whose entry is `e`, occupying `[start, end)` of the data area.
    #[inline(always)]
    fn child_of(&self, e: u32, start: usize, end: usize) -> Result<Value<'a>, Malformed> {
        let region = self
            .data
            .get(start..end)
            .ok_or(Malformed("child runs past the end"))?;
        match e & JENTRY_TYPEMASK {
            JENTRY_ISSTRING => Ok(Value::String(region)),
            JENTRY_ISNULL => Ok(Value::Null),
            JENTRY_ISBOOL_FALSE => Ok(Value::Bool(false)),
            JENTRY_ISBOOL_TRUE => Ok(Value::Bool(true)),
            JENTRY_ISNUMERIC => {
                let aligned = int_align(start);
                let bytes = self
                    .data
                    .get(aligned..end)
                    .ok_or(Malformed("numeric padding runs past the end"))?;
                Ok(Value::Numeric(
                    Numeric::from_varlena(bytes).map_err(|_| Malformed("bad numeric"))?,
                ))
            }
            JENTRY_ISCONTAINER => {
                let aligned = int_align(start);
                let bytes = self
                    .data
                    .get(aligned..end)
                    .ok_or(Malformed("container padding runs past the end"))?;
                let c = Container::parse(bytes)?;
                if c.kind() == Kind::Scalar {
                    return Err(Malformed("nested scalar container"));
                }
                Ok(Value::Container(c))
            }
            _ => Err(Malformed("unknown JEntry type")),
        }
    }

    /// The top-level scalar of a `Kind::Scalar` container.
    pub fn scalar(&self) -> Result<Option<Value<'a>>, Malformed> {
        if self.kind() != Kind::Scalar {
            return Ok(None);
        }
        let end = self.end_of(0, 0)?;
        self.child(0, 0, end).map(Some)
    }

    /// Element `i` of an array.
    pub fn array_get(&self, i: usize) -> Result<Option<Value<'a>>, Malformed> {
        if self.kind() == Kind::Object || i >= self.nchildren() {
            return Ok(None);
        }
        let start = self.offset_of(i)?;
        let end = self.end_of(i, start)?;
        self.child(i, start, end).map(Some)
    }

    /// Elements of an array in order (nothing for an object).
    pub fn elements(&self) -> Elements<'a> {
        let n = if self.kind() == Kind::Array {
            self.len()
        } else {
            0
        };
        Elements {
            container: *self,
            // `parse` checked that the entries hold n words.
            rest: self.entries.get(..n * 4).unwrap_or(&[]),
            offset: 0,
        }
    }

    /// Key/value pairs of an object in stored order (nothing for an array).
    pub fn pairs(&self) -> Pairs<'a> {
        let n = if self.kind() == Kind::Object {
            self.len()
        } else {
            0
        };
        Pairs {
            container: *self,
            index: 0,
            n,
            key_offset: 0,
        }
    }

    /// The value of `key` in an object (`None` if absent or not an object).
    ///
    /// Keys are sorted by (length, bytes), so the walk stops as soon as it passes `key`.
    /// One forward walk over the entries finds the key and then the value's offset (the
    /// remaining keys, then the values before it), reading each entry once, so it avoids
    /// `getJsonbOffset`'s backward walk and decides most key comparisons on the first byte.
    /// Scans that read the same keys of many objects use [`Container::get_hinted`].
    #[inline]
    pub fn get(&self, key: &str) -> Result<Option<Value<'a>>, Malformed> {
        Ok(self.find(key.as_bytes())?.map(|(_, v)| v))
    }

    /// The value of `key` in an object, like [`Container::get`], looked for first at the
    /// position `hint` gives for objects with as many keys as this one (the position
    /// `key` had in the last such object the caller read; `hint` is updated wherever it
    /// is found).
    ///
    /// Objects in an array mostly share their keys, so the key sits at the same position
    /// in most objects of the same size (an uploaded image and a failed one differ in
    /// size and in where their keys sit): then the lookup is two branch-free sums over the entries (the
    /// offsets of the key and of its value) and one comparison, instead of a walk that
    /// compares key lengths one entry at a time. This is the per-image cost of every
    /// analytics scan. Any other case (another position, a stored offset among the
    /// entries, a short or corrupt container) takes the walk of [`Container::get`], so
    /// the answer is always the same as its answer.
    #[inline(always)]
    pub fn get_hinted(
        &self,
        key: &str,
        hint: &mut KeyHint,
    ) -> Result<Option<Value<'a>>, Malformed> {
        if self.kind() != Kind::Object {
            return Ok(None);
        }
        let key = key.as_bytes();
        let slot = &mut hint.0[self.len() % KeyHint::SLOTS];
        if let Some(v) = self.at_hint(key, *slot as usize) {
            return v.map(Some);
        }
        Ok(self.find(key)?.map(|(i, v)| {
            *slot = i as u32;
            v
        }))
    }

    /// The value of `key` if the object's key at `h` is `key` and no entry up to that of
    /// the value stores an offset (besides the first, whose offset is its length): `None`
    /// for anything else, which the caller then walks to.
    #[inline(always)]
    fn at_hint(&self, key: &[u8], h: usize) -> Option<Result<Value<'a>, Malformed>> {
        let n = self.len();
        // With more entries than a stride, one of them stores an offset (PostgreSQL
        // stores one every 32 entries).
        if h >= n || n + h >= JB_OFFSET_STRIDE {
            return None;
        }
        // Entries 0 ..= n + h: the keys, then the values up to the one of key h (`parse`
        // checked that the entries hold 2n words). When none but the first stores an
        // offset (the first one's offset is its length), the offset of a child is the
        // sum of the lengths before it.
        let words = self.entries.get(..(n + h + 1) * 4)?;
        let (first, rest) = words.split_first_chunk::<4>()?;
        let first = (u32::from_ne_bytes(*first) & JENTRY_OFFLENMASK) as usize;
        // Entry j + 1 is at rest[4j..].
        let entry = |j: usize| -> Option<u32> {
            Some(u32::from_ne_bytes(*rest.get(j * 4..)?.first_chunk::<4>()?))
        };
        let (before_flags, key_start, key_len) = match h.checked_sub(1) {
            None => (0, 0, first),
            Some(k) => {
                let (flags, sum) = run(rest.get(..k * 4)?);
                let w = entry(k)?;
                (flags | w, first + sum, (w & JENTRY_OFFLENMASK) as usize)
            }
        };
        let (between_flags, between) = run(rest.get(h * 4..(n + h - 1) * 4)?);
        let e = entry(n + h - 1)?;
        if (before_flags | between_flags | e) & JENTRY_HAS_OFF != 0 || key_len != key.len() {
            return None;
        }
        if !short_eq(self.data.get(key_start..key_start + key_len)?, key) {
            return None;
        }
        // The value starts after the key, the keys after it and the values before it.
        let start = key_start + key_len + between;
        let end = start + (e & JENTRY_OFFLENMASK) as usize;
        Some(self.child_of(e, start, end))
    }

    /// The position and value of `key` in an object: the walk of [`Container::get`].
    #[inline]
    fn find(&self, key: &[u8]) -> Result<Option<(usize, Value<'a>)>, Malformed> {
        if self.kind() != Kind::Object {
            return Ok(None);
        }
        let n = self.len();
        // `parse` checked that the entries hold 2n words.
        let (keys, values) = self
            .entries
            .split_at_checked(n * 4)
            .ok_or(Malformed("truncated"))?;
        let mut start = 0usize;
        let mut found = None;
        for (i, w) in keys.chunks_exact(4).enumerate() {
            let e = word(w);
            let end = next_offset(e, start);
            let klen = end.wrapping_sub(start);
            if klen == key.len() {
                let k = self
                    .data
                    .get(start..end)
                    .ok_or(Malformed("key runs past the end"))?;
                let order = match k.first().cmp(&key.first()) {
                    std::cmp::Ordering::Equal => k.cmp(key),
                    other => other,
                };
                match order {
                    std::cmp::Ordering::Equal => {
                        found = Some(i);
                        start = end;
                        break;
                    }
                    std::cmp::Ordering::Greater => return Ok(None),
                    std::cmp::Ordering::Less => {}
                }
            } else if klen > key.len() {
                // Longer keys sort after `key` (a backwards offset lands here too, and
                // is reported by the bounds checks of whoever reads that key).
                return Ok(None);
            }
            start = end;
        }
        let Some(i) = found else {
            return Ok(None);
        };
        // `start` is the end of key i: add the remaining keys and the values before i.
        // Offsets are only trusted after the bounds check of the child's region.
        start = skip_entries(&keys[(i + 1) * 4..], start);
        let before = values.get(..i * 4).ok_or(Malformed("truncated"))?;
        start = skip_entries(before, start);
        let e = word(values.get(i * 4..i * 4 + 4).ok_or(Malformed("truncated"))?);
        let end = next_offset(e, start);
        if end < start {
            return Err(Malformed("offset goes backwards"));
        }
        self.child_of(e, start, end).map(|v| Some((i, v)))
    }
}

/// End offset of the child whose entry is `e`, given its start offset.
#[inline(always)]
fn end_from(e: u32, start: usize) -> Result<usize, Malformed> {
    let field = (e & JENTRY_OFFLENMASK) as usize;
    if e & JENTRY_HAS_OFF != 0 {
        if field < start {
            return Err(Malformed("offset goes backwards"));
        }
        Ok(field)
    } else {
        start.checked_add(field).ok_or(Malformed("length overflow"))
    }
}

/// The u32 in a 4-byte chunk (from `chunks_exact(4)`; anything shorter reads as 0).
#[inline(always)]
fn word(w: &[u8]) -> u32 {
    u32::from_ne_bytes(<[u8; 4]>::try_from(w).unwrap_or([0; 4]))
}

/// Where a key was found in the objects a scan read, by their number of keys modulo
/// [`KeyHint::SLOTS`] (see [`Container::get_hinted`]).
#[derive(Debug, Default, Clone, Copy)]
pub struct KeyHint([u32; KeyHint::SLOTS]);

impl KeyHint {
    /// Object sizes told apart.
    pub const SLOTS: usize = 16;

    /// A hint giving position `i` for objects of every size.
    #[cfg(test)]
    pub(crate) fn at(i: u32) -> KeyHint {
        KeyHint([i; KeyHint::SLOTS])
    }
}

/// `a == b` for byte strings of equal length, comparing two overlapping 8-byte words when
/// they have 8 to 16 bytes (object keys and status values mostly do) instead of calling
/// `memcmp`.
#[inline(always)]
pub fn short_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    match (
        a.first_chunk::<8>(),
        a.last_chunk::<8>(),
        b.first_chunk::<8>(),
        b.last_chunk::<8>(),
    ) {
        (Some(ah), Some(at), Some(bh), Some(bt)) if a.len() <= 16 => {
            u64::from_ne_bytes(*ah) == u64::from_ne_bytes(*bh)
                && u64::from_ne_bytes(*at) == u64::from_ne_bytes(*bt)
        }
        _ => a == b,
    }
}

/// The flags of at most [`JB_OFFSET_STRIDE`] consecutive entries (`entries`, 4 bytes
/// each), or-ed together, and the sum of their lengths: two entries per 8-byte word (the
/// runs are short, a dozen entries, and a loop of one entry per step cost more than the
/// rest of a key lookup). Each half of the word adds at most 16 lengths below 2^28, so
/// the low half never carries into the high one.
#[inline(always)]
fn run(entries: &[u8]) -> (u32, usize) {
    const LENGTHS: u64 = (JENTRY_OFFLENMASK as u64) << 32 | JENTRY_OFFLENMASK as u64;
    let entries = entries.get(..JB_OFFSET_STRIDE * 4).unwrap_or(entries);
    let (pairs, rest) = entries.as_chunks::<8>();
    let (mut flags, mut sum) = (0u64, 0u64);
    for pair in pairs {
        let x = u64::from_ne_bytes(*pair);
        flags |= x;
        sum += x & LENGTHS;
    }
    let mut flags = (flags | flags >> 32) as u32;
    let mut sum = ((sum & 0xFFFF_FFFF) + (sum >> 32)) as usize;
    if let Some(last) = rest.first_chunk::<4>() {
        let e = u32::from_ne_bytes(*last);
        flags |= e;
        sum += (e & JENTRY_OFFLENMASK) as usize;
    }
    (flags, sum)
}

/// The end of the last of consecutive children whose entries are `entries` (4 bytes each),
/// the first starting at `start`: `next_offset` applied entry by entry.
///
/// Most runs hold no stored offset (PostgreSQL stores one every 32 entries), and then the
/// end is `start` plus the sum of the lengths: a branch-free sum the compiler vectorises.
/// It is the value half of [`Container::get`], which the analytics run once per image.
#[inline(always)]
fn skip_entries(entries: &[u8], start: usize) -> usize {
    let words = entries.chunks_exact(4).map(word);
    if words.clone().fold(0, |acc, e| acc | e) & JENTRY_HAS_OFF == 0 {
        // At most 2^28 - 1 per entry and 2^28 entries: no overflow in u64.
        let sum: u64 = words.map(|e| (e & JENTRY_OFFLENMASK) as u64).sum();
        start.wrapping_add(sum as usize)
    } else {
        words.fold(start, |at, e| next_offset(e, at))
    }
}

/// The end of a child whose entry is `e` and which starts at `start`: its stored end
/// offset, or `start` plus its length. Wrapping: a corrupt length yields an offset that
/// the region's bounds check rejects.
#[inline(always)]
fn next_offset(e: u32, start: usize) -> usize {
    let field = (e & JENTRY_OFFLENMASK) as usize;
    if e & JENTRY_HAS_OFF != 0 {
        field
    } else {
        start.wrapping_add(field)
    }
}

/// Iterator over an array's elements.
pub struct Elements<'a> {
    container: Container<'a>,
    /// The entries of the elements not read yet (4 bytes each).
    rest: &'a [u8],
    offset: usize,
}

impl<'a> Iterator for Elements<'a> {
    type Item = Result<Value<'a>, Malformed>;

    #[inline(always)]
    fn next(&mut self) -> Option<Self::Item> {
        let (e, rest) = match self.rest.split_first_chunk::<4>() {
            Some((e, rest)) => (u32::from_ne_bytes(*e), rest),
            None if self.rest.is_empty() => return None,
            None => {
                self.rest = &[];
                return Some(Err(Malformed("truncated")));
            }
        };
        self.rest = rest;
        let start = self.offset;
        let res = match end_from(e, start) {
            Ok(end) => {
                self.offset = end;
                self.container.child_of(e, start, end)
            }
            Err(m) => Err(m),
        };
        if res.is_err() {
            self.rest = &[];
        }
        Some(res)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.rest.len() / 4))
    }
}

/// Iterator over an object's key/value pairs.
pub struct Pairs<'a> {
    container: Container<'a>,
    index: usize,
    n: usize,
    key_offset: usize,
}

impl<'a> Iterator for Pairs<'a> {
    type Item = Result<(&'a [u8], Value<'a>), Malformed>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.index >= self.n {
            return None;
        }
        let i = self.index;
        self.index += 1;
        let c = self.container;
        let res = (|| {
            let kend = c.end_of(i, self.key_offset)?;
            let key = c
                .data
                .get(self.key_offset..kend)
                .ok_or(Malformed("key runs past the end"))?;
            self.key_offset = kend;
            let vi = self.n + i;
            let vstart = c.offset_of(vi)?;
            let vend = c.end_of(vi, vstart)?;
            let v = c.child(vi, vstart, vend)?;
            Ok((key, v))
        })();
        if res.is_err() {
            self.index = self.n;
        }
        Some(res)
    }
}

/// Reads a whole jsonb datum: `bytes` starts with a varlena header (1- or 4-byte,
/// uncompressed) as found after `pg_detoast_datum_packed`.
pub fn parse_varlena(bytes: &[u8]) -> Result<Container<'_>, Malformed> {
    let first = *bytes.first().ok_or(Malformed("empty datum"))?;
    let (hdr, total) = if first & 0x01 == 0x01 {
        // 1-byte header (little-endian layout): length in the upper 7 bits.
        if first == 0x01 {
            return Err(Malformed("external toast pointer"));
        }
        (1usize, (first >> 1) as usize)
    } else {
        let h = read_u32(bytes, 0)?;
        if h & 0x03 != 0 {
            return Err(Malformed("compressed datum"));
        }
        (4usize, (h >> 2) as usize)
    };
    if total < hdr || total > bytes.len() {
        return Err(Malformed("varlena length out of range"));
    }
    Container::parse(&bytes[hdr..total])
}

#[cfg(test)]
mod tests;
