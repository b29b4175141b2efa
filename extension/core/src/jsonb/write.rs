//! Serialises a [`Node`] tree into jsonb bytes, byte-for-byte as PostgreSQL's
//! `JsonbValueToJsonb` would (`convertJsonbValue` in `jsonb_util.c`).

use super::{
    int_align, Container, Kind, Value, JB_CMASK, JB_FARRAY, JB_FOBJECT, JB_FSCALAR,
    JB_OFFSET_STRIDE, JENTRY_HAS_OFF, JENTRY_ISBOOL_FALSE, JENTRY_ISBOOL_TRUE, JENTRY_ISCONTAINER,
    JENTRY_ISNULL, JENTRY_ISNUMERIC, JENTRY_ISSTRING, JENTRY_OFFLENMASK,
};
use std::borrow::Cow;

/// A value to serialise. `Raw` copies an existing value's bytes verbatim, which is how
/// untouched elements and keys survive a rewrite exactly.
#[derive(Debug, Clone)]
pub enum Node<'a> {
    /// JSON `null`.
    Null,
    /// JSON boolean.
    Bool(bool),
    /// A string (UTF-8 bytes, unescaped).
    Str(Cow<'a, [u8]>),
    /// A number as a `numeric` varlena (see [`super::numeric::encode_decimal`]).
    Num(Cow<'a, [u8]>),
    /// An existing value, copied as it is.
    Raw(Value<'a>),
    /// An array.
    Array(Vec<Node<'a>>),
    /// An object; keys are sorted and de-duplicated (last wins) when written.
    Object(Vec<(Cow<'a, [u8]>, Node<'a>)>),
}

impl<'a> Node<'a> {
    /// A string node from text.
    pub fn str(s: impl Into<Cow<'a, str>>) -> Self {
        match s.into() {
            Cow::Borrowed(b) => Node::Str(Cow::Borrowed(b.as_bytes())),
            Cow::Owned(o) => Node::Str(Cow::Owned(o.into_bytes())),
        }
    }

    /// An integer number node.
    pub fn int(v: i64) -> Self {
        Node::Num(Cow::Owned(super::numeric::encode_i64(v)))
    }
}

/// The value cannot be represented as jsonb (too many elements, too large).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncodeError(pub &'static str);

impl std::fmt::Display for EncodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for EncodeError {}

/// Serialises `root` as a complete jsonb varlena (4-byte header included).
pub fn encode(root: &Node<'_>) -> Result<Vec<u8>, EncodeError> {
    let mut buf = Vec::with_capacity(256);
    encode_into(root, &mut buf)?;
    Ok(buf)
}

/// Like [`encode`], reusing `buf` (cleared first).
pub fn encode_into(root: &Node<'_>, buf: &mut Vec<u8>) -> Result<(), EncodeError> {
    buf.clear();
    buf.extend_from_slice(&[0, 0, 0, 0]);
    match root {
        Node::Array(items) => write_array(buf, items)?,
        Node::Object(pairs) => write_object(buf, pairs)?,
        Node::Raw(Value::Container(c)) if c.kind() != Kind::Scalar => {
            buf.extend_from_slice(c.raw_bytes())
        }
        scalar => {
            // A top-level scalar is a one-element array flagged as scalar.
            let hpos = buf.len();
            buf.extend_from_slice(&(JB_FARRAY | JB_FSCALAR | 1).to_ne_bytes());
            let epos = buf.len();
            buf.extend_from_slice(&[0, 0, 0, 0]);
            let (ty, len) = write_value(buf, scalar)?;
            let meta = ty | (len as u32) | JENTRY_HAS_OFF;
            buf[epos..epos + 4].copy_from_slice(&meta.to_ne_bytes());
            let _ = hpos;
        }
    }
    let total = buf.len();
    if total > 0x3FFF_FFFF {
        return Err(EncodeError("jsonb value exceeds the maximum size (1 GB)"));
    }
    buf[0..4].copy_from_slice(&((total as u32) << 2).to_ne_bytes());
    Ok(())
}

fn pad_to_int(buf: &mut Vec<u8>) -> usize {
    let pad = int_align(buf.len()) - buf.len();
    buf.resize(buf.len() + pad, 0);
    pad
}

fn write_value(buf: &mut Vec<u8>, node: &Node<'_>) -> Result<(u32, usize), EncodeError> {
    Ok(match node {
        Node::Null => (JENTRY_ISNULL, 0),
        Node::Bool(true) => (JENTRY_ISBOOL_TRUE, 0),
        Node::Bool(false) => (JENTRY_ISBOOL_FALSE, 0),
        Node::Str(s) => {
            buf.extend_from_slice(s);
            (JENTRY_ISSTRING, s.len())
        }
        Node::Num(n) => {
            let pad = pad_to_int(buf);
            buf.extend_from_slice(n);
            (JENTRY_ISNUMERIC, pad + n.len())
        }
        Node::Raw(v) => match v {
            Value::Null => (JENTRY_ISNULL, 0),
            Value::Bool(true) => (JENTRY_ISBOOL_TRUE, 0),
            Value::Bool(false) => (JENTRY_ISBOOL_FALSE, 0),
            Value::String(s) => {
                buf.extend_from_slice(s);
                (JENTRY_ISSTRING, s.len())
            }
            Value::Numeric(n) => {
                let pad = pad_to_int(buf);
                let raw = n.raw_bytes();
                buf.extend_from_slice(raw);
                (JENTRY_ISNUMERIC, pad + raw.len())
            }
            Value::Container(c) => {
                let pad = pad_to_int(buf);
                let raw = c.raw_bytes();
                buf.extend_from_slice(raw);
                (JENTRY_ISCONTAINER, pad + raw.len())
            }
        },
        Node::Array(items) => {
            let pad = pad_to_int(buf);
            let start = buf.len();
            write_array(buf, items)?;
            (JENTRY_ISCONTAINER, pad + buf.len() - start)
        }
        Node::Object(pairs) => {
            let pad = pad_to_int(buf);
            let start = buf.len();
            write_object(buf, pairs)?;
            (JENTRY_ISCONTAINER, pad + buf.len() - start)
        }
    })
}

fn check_count(n: usize) -> Result<u32, EncodeError> {
    if n > JB_CMASK as usize {
        return Err(EncodeError("too many elements for a jsonb container"));
    }
    Ok(n as u32)
}

/// Writes children data after a reserved JEntry area, filling the entries in.
fn write_children<'n, 'a: 'n>(
    buf: &mut Vec<u8>,
    entries_at: usize,
    first_index: usize,
    mut totallen: usize,
    children: impl Iterator<Item = ChildRef<'n, 'a>>,
) -> Result<usize, EncodeError> {
    for (k, child) in children.enumerate() {
        let i = first_index + k;
        let (ty, len) = match child {
            ChildRef::Key(key) => {
                buf.extend_from_slice(key);
                (JENTRY_ISSTRING, key.len())
            }
            ChildRef::Node(n) => write_value(buf, n)?,
        };
        totallen += len;
        if totallen > JENTRY_OFFLENMASK as usize {
            return Err(EncodeError(
                "jsonb container exceeds the maximum size (256 MB)",
            ));
        }
        let meta = if i.is_multiple_of(JB_OFFSET_STRIDE) {
            ty | totallen as u32 | JENTRY_HAS_OFF
        } else {
            ty | len as u32
        };
        let at = entries_at + i * 4;
        buf[at..at + 4].copy_from_slice(&meta.to_ne_bytes());
    }
    Ok(totallen)
}

enum ChildRef<'n, 'a> {
    Key(&'n [u8]),
    Node(&'n Node<'a>),
}

fn write_array(buf: &mut Vec<u8>, items: &[Node<'_>]) -> Result<(), EncodeError> {
    let n = check_count(items.len())?;
    buf.extend_from_slice(&(JB_FARRAY | n).to_ne_bytes());
    let entries_at = buf.len();
    buf.resize(buf.len() + items.len() * 4, 0);
    write_children(buf, entries_at, 0, 0, items.iter().map(ChildRef::Node))?;
    Ok(())
}

/// Key order of jsonb objects: shorter first, then bytewise.
pub(crate) fn key_cmp(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

fn write_object(buf: &mut Vec<u8>, pairs: &[(Cow<'_, [u8]>, Node<'_>)]) -> Result<(), EncodeError> {
    // Stable sort, then keep the last of each run of equal keys (PostgreSQL keeps the last).
    let mut order: Vec<usize> = (0..pairs.len()).collect();
    order.sort_by(|&a, &b| key_cmp(&pairs[a].0, &pairs[b].0));
    let mut uniq: Vec<usize> = Vec::with_capacity(order.len());
    for idx in order {
        if let Some(&last) = uniq.last() {
            if pairs[last].0 == pairs[idx].0 {
                *uniq.last_mut().expect("non-empty") = idx;
                continue;
            }
        }
        uniq.push(idx);
    }
    let n = check_count(uniq.len())?;
    buf.extend_from_slice(&(JB_FOBJECT | n).to_ne_bytes());
    let entries_at = buf.len();
    buf.resize(buf.len() + uniq.len() * 8, 0);
    let keys_len = write_children(
        buf,
        entries_at,
        0,
        0,
        uniq.iter().map(|&i| ChildRef::Key(&pairs[i].0)),
    )?;
    write_children(
        buf,
        entries_at,
        uniq.len(),
        keys_len,
        uniq.iter().map(|&i| ChildRef::Node(&pairs[i].1)),
    )?;
    Ok(())
}

/// Builds a [`Node`] that reproduces an existing container with some keys replaced.
///
/// Every pair of `obj` whose key is not in `replace` is kept verbatim; each replacement
/// is set (added when absent); `remove` keys are dropped.
pub fn patch_object<'a>(
    obj: Container<'a>,
    replace: Vec<(Cow<'a, [u8]>, Node<'a>)>,
    remove: &[&str],
) -> Result<Node<'a>, super::Malformed> {
    let mut pairs: Vec<(Cow<'a, [u8]>, Node<'a>)> = Vec::with_capacity(obj.len() + replace.len());
    for pair in obj.pairs() {
        let (k, v) = pair?;
        if remove.iter().any(|r| r.as_bytes() == k) || replace.iter().any(|(rk, _)| &rk[..] == k) {
            continue;
        }
        pairs.push((Cow::Borrowed(k), Node::Raw(v)));
    }
    pairs.extend(replace);
    Ok(Node::Object(pairs))
}
