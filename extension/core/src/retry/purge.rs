//! Purging: `permanently_failed` images out of an array, and the redacted copies the
//! attempt log keeps of removed elements.

use super::element::{elements, Element, UrlHash};
use crate::image::{require_array, ImageError, Status};
use crate::jsonb::{Container, Elements, Kind, Node, Pairs, TooDeep, Value, MAX_DEPTH};
use crate::redact::redact_text;
use std::borrow::Cow;

/// A container being copied by [`redacted_copy`].
enum Redacting<'a> {
    Array(Elements<'a>, Vec<Node<'static>>),
    /// The pairs so far, and the key of the value being copied.
    Object(Pairs<'a>, Vec<(Cow<'static, [u8]>, Node<'static>)>, Vec<u8>),
}

/// A copy of a value with every string (keys aside) redacted, for logs that keep a
/// removed element: secrets can sit in any key (`url`, `original_tigris_url`, ...).
///
/// The copy is built level by level, so a value nested deeper than
/// [`MAX_DEPTH`] levels is refused with
/// [`ImageError::TooDeep`]; the walk itself is iterative (its open containers are on a
/// heap stack), so it never overflows the machine stack, whatever the input.
pub fn redacted_copy(v: Value<'_>) -> Result<Node<'static>, ImageError> {
    let mut open: Vec<Redacting<'_>> = Vec::new();
    let mut next = Some(v);
    loop {
        let mut done = None;
        if let Some(v) = next.take() {
            match v {
                Value::String(b) => {
                    done = Some(Node::str(redact_text(&String::from_utf8_lossy(b))))
                }
                Value::Numeric(n) => done = Some(Node::Num(Cow::Owned(n.raw_bytes().to_vec()))),
                Value::Bool(b) => done = Some(Node::Bool(b)),
                Value::Null => done = Some(Node::Null),
                Value::Container(c) if c.kind() == Kind::Scalar => {
                    // A top-level scalar: its value (never a container).
                    done = Some(match c.scalar()? {
                        Some(Value::Container(_)) | None => Node::Null,
                        Some(s) => {
                            next = Some(s);
                            continue;
                        }
                    });
                }
                Value::Container(c) => {
                    if open.len() >= MAX_DEPTH {
                        return Err(ImageError::TooDeep(TooDeep::MAX));
                    }
                    open.push(if c.is_array() {
                        Redacting::Array(c.elements(), Vec::with_capacity(c.len()))
                    } else {
                        Redacting::Object(c.pairs(), Vec::with_capacity(c.len()), Vec::new())
                    });
                }
            }
        }
        // Hand the copy to its container, then find the next value to copy, closing
        // the containers that are done.
        loop {
            let Some(top) = open.last_mut() else {
                return Ok(done.unwrap_or(Node::Null));
            };
            match top {
                Redacting::Array(elements, items) => {
                    if let Some(d) = done.take() {
                        items.push(d);
                    }
                    if let Some(e) = elements.next() {
                        next = Some(e?);
                        break;
                    }
                }
                Redacting::Object(pairs, out, key) => {
                    if let Some(d) = done.take() {
                        out.push((Cow::Owned(std::mem::take(key)), d));
                    }
                    if let Some(p) = pairs.next() {
                        let (k, v) = p?;
                        *key = k.to_vec();
                        next = Some(v);
                        break;
                    }
                }
            }
            done = match open.pop() {
                Some(Redacting::Array(_, items)) => Some(Node::Array(items)),
                Some(Redacting::Object(_, pairs, _)) => Some(Node::Object(pairs)),
                None => None,
            };
        }
    }
}

/// The array without its `permanently_failed` images (or only the copies whose identity
/// is `only`), and the removed elements. Unreadable elements are kept.
pub fn purge_permanently_failed<'a>(
    arr: Container<'a>,
    only: Option<&UrlHash>,
) -> Result<(Node<'a>, Vec<Element<'a>>), ImageError> {
    let arr = require_array(arr)?;
    let mut removed = Vec::new();
    for e in elements(arr) {
        let Ok(e) = e? else { continue };
        if e.status == Status::PermanentlyFailed
            && only.is_none_or(|h| e.hash().as_ref() == Some(h))
        {
            removed.push(e);
        }
    }
    let mut keep = Vec::with_capacity(arr.len());
    for (i, e) in arr.elements().enumerate() {
        let e = e?;
        if !removed.iter().any(|r| r.index == i) {
            keep.push(Node::Raw(e));
        }
    }
    Ok((Node::Array(keep), removed))
}
