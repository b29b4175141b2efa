//! Serialises a [`Node`] tree into jsonb bytes, byte-for-byte as PostgreSQL's
//! `JsonbValueToJsonb` would (`convertJsonbValue` in `jsonb_util.c`).
//!
//! Nothing here recurses over a tree: the encoder keeps the containers it is writing on a
//! heap stack, and [`Node`]'s `Clone` and `Debug` walk the tree the same way, so a tree of
//! any depth costs them the same machine stack. Dropping a tree is the compiler's
//! recursive drop (see [`Node`]).

use super::{
    int_align, Container, Kind, Value, JB_CMASK, JB_FARRAY, JB_FOBJECT, JB_FSCALAR,
    JB_OFFSET_STRIDE, JENTRY_HAS_OFF, JENTRY_ISBOOL_FALSE, JENTRY_ISBOOL_TRUE, JENTRY_ISCONTAINER,
    JENTRY_ISNULL, JENTRY_ISNUMERIC, JENTRY_ISSTRING, JENTRY_OFFLENMASK,
};
use std::borrow::Cow;

/// A value to serialise. `Raw` copies an existing value's bytes verbatim, which is how
/// untouched elements and keys survive a rewrite exactly (however deeply they nest: their
/// insides are never looked at).
///
/// Depth: encoding, `Clone` and `Debug` are iterative, but dropping a tree recurses once
/// per level of `Array`/`Object` nodes (63 bytes of stack per level in a release build,
/// 176 unoptimised). An iterative `Drop` would need `impl Drop for Node`, which makes
/// every borrow a node holds outlive the node's drop and so breaks ordinary callers
/// (`cur = encode(&node)` while `node` borrows `cur`). So the depth is bounded where
/// trees are built from input instead: [`super::parse_json`] and
/// [`crate::retry::redacted_copy`] refuse values nested deeper than
/// [`super::MAX_DEPTH`], every other builder nests input only as `Raw`, and code that
/// builds trees itself must stay within that depth too.
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
        Node::Array(_) | Node::Object(_) => write_tree(buf, root)?,
        Node::Raw(Value::Container(c)) if c.kind() != Kind::Scalar => {
            buf.extend_from_slice(c.raw_bytes())
        }
        Node::Raw(Value::Container(c)) => {
            // A top-level scalar read from a datum: already in its final form.
            buf.extend_from_slice(c.raw_bytes())
        }
        scalar => {
            // A top-level scalar is a one-element array flagged as scalar.
            buf.extend_from_slice(&(JB_FARRAY | JB_FSCALAR | 1).to_ne_bytes());
            let epos = buf.len();
            buf.extend_from_slice(&[0, 0, 0, 0]);
            let (ty, len) = write_leaf(buf, scalar)?;
            let meta = ty | (len as u32) | JENTRY_HAS_OFF;
            buf[epos..epos + 4].copy_from_slice(&meta.to_ne_bytes());
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

/// Writes a value that holds no [`Node`] children (anything but `Array` and `Object`);
/// returns its JEntry type and its length (padding included).
fn write_leaf(buf: &mut Vec<u8>, node: &Node<'_>) -> Result<(u32, usize), EncodeError> {
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
            Value::Container(c) if c.kind() == Kind::Scalar => {
                // A top-level scalar (a whole datum) placed inside a container: its value,
                // never the scalar wrapper, which jsonb does not allow below the top.
                match c.scalar() {
                    Ok(Some(v)) if !matches!(v, Value::Container(_)) => {
                        return write_leaf(buf, &Node::Raw(v))
                    }
                    _ => return Err(EncodeError("malformed jsonb scalar")),
                }
            }
            Value::Container(c) => {
                let pad = pad_to_int(buf);
                let raw = c.raw_bytes();
                buf.extend_from_slice(raw);
                (JENTRY_ISCONTAINER, pad + raw.len())
            }
        },
        Node::Array(_) | Node::Object(_) => {
            return Err(EncodeError("internal: a container is not a leaf"))
        }
    })
}

fn check_count(n: usize) -> Result<u32, EncodeError> {
    if n > JB_CMASK as usize {
        return Err(EncodeError("too many elements for a jsonb container"));
    }
    Ok(n as u32)
}

/// The children of a container being written that are still to come, in stored order.
enum Children<'n, 'a> {
    /// An array's elements.
    Items(std::slice::Iter<'n, Node<'a>>),
    /// An object's values, in the order of its sorted, de-duplicated keys.
    Values {
        pairs: &'n [(Cow<'a, [u8]>, Node<'a>)],
        order: std::vec::IntoIter<usize>,
    },
}

impl<'n, 'a> Iterator for Children<'n, 'a> {
    type Item = &'n Node<'a>;

    fn next(&mut self) -> Option<&'n Node<'a>> {
        match self {
            Children::Items(it) => it.next(),
            Children::Values { pairs, order } => order.next().map(|i| &pairs[i].1),
        }
    }
}

/// A container being written: its JEntry area, the running end offset of its children,
/// and where it started in its parent (to fill the parent's JEntry when it is done).
struct Writing<'n, 'a> {
    children: Children<'n, 'a>,
    entries_at: usize,
    /// Index of the next child's JEntry.
    next: usize,
    /// End offset of the children written so far (keys included).
    totallen: usize,
    /// Padding before the container and its start in `buf`.
    pad: usize,
    start: usize,
}

impl Writing<'_, '_> {
    /// Fills the JEntry of the next child, which was just written with this length.
    fn record(&mut self, buf: &mut [u8], ty: u32, len: usize) -> Result<(), EncodeError> {
        let i = self.next;
        self.next += 1;
        self.totallen += len;
        if self.totallen > JENTRY_OFFLENMASK as usize {
            return Err(EncodeError(
                "jsonb container exceeds the maximum size (256 MB)",
            ));
        }
        let meta = if i.is_multiple_of(JB_OFFSET_STRIDE) {
            ty | self.totallen as u32 | JENTRY_HAS_OFF
        } else {
            ty | len as u32
        };
        let at = self.entries_at + i * 4;
        buf[at..at + 4].copy_from_slice(&meta.to_ne_bytes());
        Ok(())
    }
}

/// Starts writing container `node` (an `Array` or an `Object`) at the end of `buf`: its
/// header, its reserved JEntries, and for an object its keys. `pad` bytes of alignment
/// were written just before it.
fn open<'n, 'a>(
    buf: &mut Vec<u8>,
    node: &'n Node<'a>,
    pad: usize,
) -> Result<Writing<'n, 'a>, EncodeError> {
    let start = buf.len();
    match node {
        Node::Array(items) => {
            let n = check_count(items.len())?;
            buf.extend_from_slice(&(JB_FARRAY | n).to_ne_bytes());
            let entries_at = buf.len();
            buf.resize(buf.len() + items.len() * 4, 0);
            Ok(Writing {
                children: Children::Items(items.iter()),
                entries_at,
                next: 0,
                totallen: 0,
                pad,
                start,
            })
        }
        Node::Object(pairs) => {
            // Stable sort, then keep the last of each run of equal keys (PostgreSQL keeps
            // the last).
            let mut order: Vec<usize> = (0..pairs.len()).collect();
            order.sort_by(|&a, &b| key_cmp(&pairs[a].0, &pairs[b].0));
            let mut uniq: Vec<usize> = Vec::with_capacity(order.len());
            for idx in order {
                match uniq.last_mut() {
                    Some(last) if pairs[*last].0 == pairs[idx].0 => *last = idx,
                    _ => uniq.push(idx),
                }
            }
            let n = check_count(uniq.len())?;
            buf.extend_from_slice(&(JB_FOBJECT | n).to_ne_bytes());
            let entries_at = buf.len();
            buf.resize(buf.len() + uniq.len() * 8, 0);
            let mut w = Writing {
                children: Children::Values {
                    pairs,
                    order: Vec::new().into_iter(),
                },
                entries_at,
                next: 0,
                totallen: 0,
                pad,
                start,
            };
            for &i in &uniq {
                let key = &pairs[i].0;
                buf.extend_from_slice(key);
                w.record(buf, JENTRY_ISSTRING, key.len())?;
            }
            w.children = Children::Values {
                pairs,
                order: uniq.into_iter(),
            };
            Ok(w)
        }
        _ => Err(EncodeError("internal: a leaf is not a container")),
    }
}

/// Writes container `root` and everything below it, depth first, with the containers
/// being written on a heap stack (any depth, constant machine stack).
fn write_tree(buf: &mut Vec<u8>, root: &Node<'_>) -> Result<(), EncodeError> {
    let mut stack = vec![open(buf, root, 0)?];
    while let Some(top) = stack.last_mut() {
        match top.children.next() {
            Some(child @ (Node::Array(_) | Node::Object(_))) => {
                let pad = pad_to_int(buf);
                let w = open(buf, child, pad)?;
                stack.push(w);
            }
            Some(leaf) => {
                let (ty, len) = write_leaf(buf, leaf)?;
                top.record(buf, ty, len)?;
            }
            None => {
                let done = stack.pop();
                if let (Some(done), Some(parent)) = (done, stack.last_mut()) {
                    let len = done.pad + buf.len() - done.start;
                    parent.record(buf, JENTRY_ISCONTAINER, len)?;
                }
            }
        }
    }
    Ok(())
}

/// Key order of jsonb objects: shorter first, then bytewise.
pub(crate) fn key_cmp(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
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

/// A container being copied by [`Node::clone`].
enum Copying<'n, 'a> {
    Array(std::slice::Iter<'n, Node<'a>>, Vec<Node<'a>>),
    Object(
        std::slice::Iter<'n, (Cow<'a, [u8]>, Node<'a>)>,
        Vec<(Cow<'a, [u8]>, Node<'a>)>,
        Option<Cow<'a, [u8]>>,
    ),
}

impl<'a> Node<'a> {
    /// A copy of a node that holds no [`Node`] children, or an empty container of the
    /// same kind.
    fn shallow_clone(&self) -> Node<'a> {
        match self {
            Node::Null => Node::Null,
            Node::Bool(b) => Node::Bool(*b),
            Node::Str(s) => Node::Str(s.clone()),
            Node::Num(n) => Node::Num(n.clone()),
            Node::Raw(v) => Node::Raw(*v),
            Node::Array(items) => Node::Array(Vec::with_capacity(items.len())),
            Node::Object(pairs) => Node::Object(Vec::with_capacity(pairs.len())),
        }
    }
}

/// Clones the tree iteratively (copies being built are kept on a heap stack).
impl<'a> Clone for Node<'a> {
    fn clone(&self) -> Self {
        let mut stack: Vec<Copying<'_, 'a>> = Vec::new();
        let mut next = Some(self);
        loop {
            let mut done = None;
            if let Some(n) = next.take() {
                match n {
                    Node::Array(items) => stack.push(Copying::Array(
                        items.iter(),
                        Vec::with_capacity(items.len()),
                    )),
                    Node::Object(pairs) => stack.push(Copying::Object(
                        pairs.iter(),
                        Vec::with_capacity(pairs.len()),
                        None,
                    )),
                    leaf => done = Some(leaf.shallow_clone()),
                }
            }
            loop {
                let Some(top) = stack.last_mut() else {
                    return done.unwrap_or(Node::Null);
                };
                match top {
                    Copying::Array(it, out) => {
                        if let Some(d) = done.take() {
                            out.push(d);
                        }
                        if let Some(child) = it.next() {
                            next = Some(child);
                            break;
                        }
                    }
                    Copying::Object(it, out, key) => {
                        if let (Some(d), Some(k)) = (done.take(), key.take()) {
                            out.push((k, d));
                        }
                        if let Some((k, child)) = it.next() {
                            *key = Some(k.clone());
                            next = Some(child);
                            break;
                        }
                    }
                }
                done = match stack.pop() {
                    Some(Copying::Array(_, out)) => Some(Node::Array(out)),
                    Some(Copying::Object(_, out, _)) => Some(Node::Object(out)),
                    None => None,
                };
            }
        }
    }
}

/// A container being printed by `Debug`.
enum Printing<'n, 'a> {
    Array(std::slice::Iter<'n, Node<'a>>, bool),
    Object(std::slice::Iter<'n, (Cow<'a, [u8]>, Node<'a>)>, bool),
}

/// Prints the tree iteratively: `Array[..]`, `Object{"key": ..}`, `Str("..")`,
/// `Num(1.5)`, `Raw(..)`.
impl std::fmt::Debug for Node<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut stack: Vec<Printing<'_, '_>> = Vec::new();
        let mut next = Some(self);
        loop {
            if let Some(n) = next.take() {
                match n {
                    Node::Null => f.write_str("Null")?,
                    Node::Bool(b) => write!(f, "Bool({b})")?,
                    Node::Str(s) => write!(f, "Str({:?})", String::from_utf8_lossy(s))?,
                    Node::Num(n) => match super::Numeric::from_varlena(n) {
                        Ok(n) => write!(f, "Num({})", n.to_decimal_string())?,
                        Err(_) => write!(f, "Num({n:?})")?,
                    },
                    Node::Raw(v) => write!(f, "Raw({v:?})")?,
                    Node::Array(items) => {
                        f.write_str("Array[")?;
                        stack.push(Printing::Array(items.iter(), true));
                    }
                    Node::Object(pairs) => {
                        f.write_str("Object{")?;
                        stack.push(Printing::Object(pairs.iter(), true));
                    }
                }
            }
            let Some(top) = stack.last_mut() else {
                return Ok(());
            };
            match top {
                Printing::Array(it, first) => match it.next() {
                    Some(child) => {
                        if !std::mem::replace(first, false) {
                            f.write_str(", ")?;
                        }
                        next = Some(child);
                    }
                    None => {
                        f.write_str("]")?;
                        stack.pop();
                    }
                },
                Printing::Object(it, first) => match it.next() {
                    Some((k, child)) => {
                        if !std::mem::replace(first, false) {
                            f.write_str(", ")?;
                        }
                        write!(f, "{:?}: ", String::from_utf8_lossy(k))?;
                        next = Some(child);
                    }
                    None => {
                        f.write_str("}")?;
                        stack.pop();
                    }
                },
            }
        }
    }
}
