//! `venue_images_dedupe` / `venue_images_merge` (`sql-api.md`), fixing defects 1 and 2.
//!
//! One element per `provider_url` (else `url`). The winner of a group is chosen by
//! status rank (`uploaded` > `failed` > `permanently_failed` > others), then
//! `quality_score`, then newer `fetched_at`, then first in the array; it keeps the highest
//! `retry_count` of its group so the retry cap cannot be evaded. Elements without either
//! key, and non-object elements, are kept as they are. The result is ordered by
//! `quality_score` descending; ties keep input order, a group standing where its first
//! member stood. Untouched elements are copied byte for byte, so unknown keys survive.

use crate::image::{require_array, Image, ImageError, Status};
use crate::jsonb::{patch_object, Container, Node, Value};
use crate::timestamp::parse_iso8601_micros;
use std::borrow::Cow;
use std::collections::HashMap;

/// The outcome of a dedupe.
pub enum Deduped<'a> {
    /// Nothing to change: the input is already deduplicated and ordered.
    Unchanged,
    /// The new array.
    Rewritten(Node<'a>),
}

struct Info<'a> {
    value: Value<'a>,
    key: Option<&'a [u8]>,
    rank: Status,
    quality: f64,
    fetched: i64,
    retry: Option<(f64, Value<'a>)>,
}

struct Group {
    winner: usize,
    members: usize,
    max_retry: Option<(f64, usize)>,
}

fn non_empty(b: Option<&[u8]>) -> Option<&[u8]> {
    b.filter(|s| !s.is_empty())
}

fn info<'a>(index: usize, value: Value<'a>) -> Result<Info<'a>, ImageError> {
    let Some(obj) = value.as_object() else {
        return Ok(Info {
            value,
            key: None,
            rank: Status::Other,
            quality: 0.0,
            fetched: 0,
            retry: None,
        });
    };
    let img = Image { index, obj };
    let provider_url = img.str_bytes("provider_url")?;
    let url = img.str_bytes("url")?;
    let key = non_empty(provider_url).or(non_empty(url));
    let rank = img.status()?;
    let quality = img
        .number("quality_score")?
        .map(|n| n.to_f64())
        .filter(|q| !q.is_nan())
        .unwrap_or(0.0);
    let fetched = img
        .str_bytes("fetched_at")?
        .and_then(|b| std::str::from_utf8(b).ok())
        .and_then(parse_iso8601_micros)
        .unwrap_or(0);
    let retry = match obj.get("retry_count")? {
        Some(v @ Value::Numeric(n)) => Some((n.to_f64(), v)),
        None | Some(Value::Null) => None,
        // A numeric string counts as its number (the same rule as the queue's); the
        // winner keeps the value as it was written.
        Some(v @ Value::String(_)) => Some((img.retry_count()?, v)),
        Some(v) => {
            return Err(ImageError::WrongType {
                index,
                key: "retry_count",
                expected: "a number",
                found: v.type_name(),
            })
        }
    };
    Ok(Info {
        value,
        key,
        rank,
        quality,
        fetched,
        retry,
    })
}

/// Is `a` a strictly better group winner than `b`? (Ties keep the earlier element.)
fn better(a: &Info<'_>, b: &Info<'_>) -> bool {
    (a.rank, a.quality, a.fetched)
        .partial_cmp(&(b.rank, b.quality, b.fetched))
        .is_some_and(|o| o == std::cmp::Ordering::Greater)
}

fn dedupe_values<'a>(values: Vec<Value<'a>>) -> Result<(Vec<Node<'a>>, bool), ImageError> {
    let infos = values
        .into_iter()
        .enumerate()
        .map(|(i, v)| info(i, v))
        .collect::<Result<Vec<_>, _>>()?;
    let mut groups: Vec<Group> = Vec::new();
    let mut by_key: HashMap<&[u8], usize> = HashMap::with_capacity(infos.len());
    // Output slots in input order: Ok(group) or Err(element index) for keyless elements.
    let mut slots: Vec<Result<usize, usize>> = Vec::with_capacity(infos.len());
    for (i, inf) in infos.iter().enumerate() {
        let Some(key) = inf.key else {
            slots.push(Err(i));
            continue;
        };
        let retry = inf.retry.as_ref().map(|(r, _)| (*r, i));
        match by_key.get(key) {
            Some(&g) => {
                let grp = &mut groups[g];
                grp.members += 1;
                if better(inf, &infos[grp.winner]) {
                    grp.winner = i;
                }
                if let Some((r, _)) = retry {
                    if grp.max_retry.is_none_or(|(m, _)| r > m) {
                        grp.max_retry = retry;
                    }
                }
            }
            None => {
                by_key.insert(key, groups.len());
                slots.push(Ok(groups.len()));
                groups.push(Group {
                    winner: i,
                    members: 1,
                    max_retry: retry,
                });
            }
        }
    }
    let mut changed = slots.len() != infos.len();
    let mut out: Vec<(f64, Node<'a>)> = Vec::with_capacity(slots.len());
    for slot in &slots {
        match *slot {
            Err(i) => out.push((infos[i].quality, Node::Raw(infos[i].value))),
            Ok(g) => {
                let grp = &groups[g];
                let w = &infos[grp.winner];
                let winner_retry = w.retry.as_ref().map(|(r, _)| *r).unwrap_or(0.0);
                let node = match grp.max_retry {
                    Some((m, from)) if m > winner_retry && from != grp.winner => {
                        changed = true;
                        let obj = w.value.as_object().expect("keyed elements are objects");
                        let max_value = infos[from].retry.as_ref().expect("has retry").1;
                        patch_object(
                            obj,
                            vec![(Cow::Borrowed(&b"retry_count"[..]), Node::Raw(max_value))],
                            &[],
                        )?
                    }
                    _ => Node::Raw(w.value),
                };
                if grp.members > 1 {
                    changed = true;
                }
                out.push((w.quality, node));
            }
        }
    }
    // Stable sort by quality descending.
    let sorted = out.windows(2).all(|p| p[0].0 >= p[1].0);
    if !sorted {
        changed = true;
        out.sort_by(|a, b| b.0.total_cmp(&a.0));
    }
    Ok((out.into_iter().map(|(_, n)| n).collect(), changed))
}

/// Deduplicates one array.
pub fn dedupe(arr: Container<'_>) -> Result<Deduped<'_>, ImageError> {
    let arr = require_array(arr)?;
    let values = arr.elements().collect::<Result<Vec<_>, _>>()?;
    let (nodes, changed) = dedupe_values(values)?;
    Ok(if changed {
        Deduped::Rewritten(Node::Array(nodes))
    } else {
        Deduped::Unchanged
    })
}

/// `dedupe(existing || incoming)`; a missing side counts as an empty array.
pub fn merge<'a>(
    existing: Option<Container<'a>>,
    incoming: Option<Container<'a>>,
) -> Result<Node<'a>, ImageError> {
    let mut values = Vec::new();
    for c in [existing, incoming].into_iter().flatten() {
        let c = require_array(c)?;
        for e in c.elements() {
            values.push(e?);
        }
    }
    Ok(Node::Array(dedupe_values(values)?.0))
}

#[cfg(test)]
mod tests;
