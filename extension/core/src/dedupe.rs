//! `venue_images_dedupe` / `venue_images_merge` (`sql-api.md`), fixing defects 1 and 2.
//!
//! One element per `provider_url` (else `url`). The winner of a group is chosen by
//! status rank (`uploaded` > `failed` > `permanently_failed` > others), then
//! `quality_score`, then newer `fetched_at`, then first in the array; it keeps the highest
//! `retry_count` of its group so the retry cap cannot be evaded. Elements without either
//! key, and non-object elements, are kept as they are. The result is ordered by
//! `quality_score` descending; ties keep input order, a group standing where its first
//! member stood. Untouched elements are copied byte for byte, so unknown keys survive.
//!
//! `quality_score` and `retry_count` are compared exactly, as PostgreSQL's `numeric`
//! compares them ([`Numeric::cmp_exact`]): never through `f64`, whose 17 digits make
//! `3.0000000000000000001` equal to `3`. An absent (or null) `quality_score` counts as 0,
//! an absent `retry_count` as 0; a numeric string `retry_count` counts as its number.

use crate::image::{require_array, Image, ImageError, Status};
use crate::jsonb::{patch_object, Container, Node, Number, Numeric, Value};
use crate::timestamp::parse_iso8601_micros;
use std::borrow::Cow;
use std::cmp::Ordering;
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
    /// `quality_score` (0 when absent).
    quality: Numeric<'a>,
    fetched: i64,
    /// `retry_count` as a number, and as written.
    retry: Option<(Number<'a>, Value<'a>)>,
}

impl Info<'_> {
    /// `retry_count`, 0 when absent.
    fn retry_number(&self) -> Numeric<'_> {
        match &self.retry {
            Some((n, _)) => n.numeric(),
            None => Numeric::ZERO,
        }
    }
}

struct Group {
    winner: usize,
    members: usize,
    /// The element with the group's highest `retry_count` (the first of equal ones).
    max_retry: Option<usize>,
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
            quality: Numeric::ZERO,
            fetched: 0,
            retry: None,
        });
    };
    let img = Image { index, obj };
    let provider_url = img.str_bytes("provider_url")?;
    let url = img.str_bytes("url")?;
    let key = non_empty(provider_url).or(non_empty(url));
    let rank = img.status()?;
    let quality = img.number("quality_score")?.unwrap_or(Numeric::ZERO);
    let fetched = img
        .str_bytes("fetched_at")?
        .and_then(|b| std::str::from_utf8(b).ok())
        .and_then(parse_iso8601_micros)
        .unwrap_or(0);
    let retry = match obj.get("retry_count")? {
        Some(v @ Value::Numeric(n)) => Some((Number::Stored(n), v)),
        None | Some(Value::Null) => None,
        // A numeric string counts as its number (the same rule as the queue's); the
        // winner keeps the value as it was written.
        Some(v @ Value::String(_)) => img.retry_number()?.map(|n| (n, v)),
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
    a.rank
        .cmp(&b.rank)
        .then_with(|| a.quality.cmp_exact(&b.quality))
        .then_with(|| a.fetched.cmp(&b.fetched))
        == Ordering::Greater
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
        let retry = inf.retry.is_some().then_some(i);
        match by_key.get(key) {
            Some(&g) => {
                let grp = &mut groups[g];
                grp.members += 1;
                if better(inf, &infos[grp.winner]) {
                    grp.winner = i;
                }
                if retry.is_some()
                    && grp.max_retry.is_none_or(|m| {
                        inf.retry_number().cmp_exact(&infos[m].retry_number()) == Ordering::Greater
                    })
                {
                    grp.max_retry = retry;
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
    let mut out: Vec<(Numeric<'a>, Node<'a>)> = Vec::with_capacity(slots.len());
    for slot in &slots {
        match *slot {
            Err(i) => out.push((infos[i].quality, Node::Raw(infos[i].value))),
            Ok(g) => {
                let grp = &groups[g];
                let w = &infos[grp.winner];
                // The group's highest `retry_count`, when it is above the winner's own.
                let raise = grp
                    .max_retry
                    .filter(|&from| from != grp.winner)
                    .and_then(|from| {
                        let (_, written) = infos[from].retry.as_ref()?;
                        let higher = infos[from].retry_number().cmp_exact(&w.retry_number())
                            == Ordering::Greater;
                        higher.then_some(*written)
                    });
                let node = match (raise, w.value.as_object()) {
                    (Some(max_value), Some(obj)) => {
                        changed = true;
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
    let sorted = out
        .windows(2)
        .all(|p| p[0].0.cmp_exact(&p[1].0) != Ordering::Less);
    if !sorted {
        changed = true;
        out.sort_by(|a, b| b.0.cmp_exact(&a.0));
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
