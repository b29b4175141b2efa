//! The retry lifecycle of one image, as pure functions over a venue's image array:
//! which images are retryable, what the nightly scan decides, and the exact patch that
//! a successful or failed attempt applies to the one element it concerns.
//!
//! Patches keep every other element and every other key byte for byte (defect 1 of the
//! original rewrote the whole array from a stale read and dropped images).

use crate::classify::{Classifier, ErrorClass};
use crate::image::{images, require_array, Image, ImageError, Status};
use crate::jsonb::{encode_decimal, patch_object, Container, Node, Value};
use crate::scores::failure_rate_tenths;
use md5::{Digest, Md5};
use std::borrow::Cow;

pub use crate::redact::{redact_text, redact_url};

/// Identity of an image inside the queue: md5 of its `provider_url`. The queue stores
/// this (and a redacted URL) instead of the URL itself, so API keys in provider URLs
/// never land in the queue's tables.
pub type UrlHash = [u8; 16];

/// md5 of a provider URL.
pub fn url_hash(url: &str) -> UrlHash {
    Md5::digest(url.as_bytes()).into()
}

/// A `failed` image the queue may retry.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryableImage {
    /// Position in the array.
    pub index: usize,
    /// md5 of `provider_url`.
    pub hash: UrlHash,
    /// `provider_url` with secrets redacted.
    pub redacted_url: String,
    /// `provider` (`unknown` when absent).
    pub provider: String,
    /// `error_details.error_type`.
    pub error_type: Option<String>,
    /// `retry_count` (absent = 0).
    pub retry_count: i64,
}

fn text(b: Option<&[u8]>) -> Option<String> {
    b.map(|b| String::from_utf8_lossy(b).into_owned())
}

fn retry_count_of(img: &Image<'_>) -> Result<i64, ImageError> {
    Ok(img.retry_count()?.max(0.0).floor() as i64)
}

/// The images with status `failed`, a transient error type and `retry_count` below
/// `max_retries` — what the original called retryable — that have a provider URL.
pub fn retryable_images(
    arr: Container<'_>,
    classifier: &Classifier,
    max_retries: i64,
) -> Result<Vec<RetryableImage>, ImageError> {
    let arr = require_array(arr)?;
    let mut out = Vec::new();
    for img in images(arr) {
        let Some(img) = img? else { continue };
        if img.status()? != Status::Failed {
            continue;
        }
        let et = img.error_type()?;
        if classifier.classify_bytes(et) != ErrorClass::Transient {
            continue;
        }
        let rc = retry_count_of(&img)?;
        if rc >= max_retries {
            continue;
        }
        let Some(url) = img.str_bytes("provider_url")?.filter(|u| !u.is_empty()) else {
            continue;
        };
        let url = String::from_utf8_lossy(url);
        out.push(RetryableImage {
            index: img.index,
            hash: url_hash(&url),
            redacted_url: redact_url(&url),
            provider: text(img.str_bytes("provider")?).unwrap_or_else(|| "unknown".into()),
            error_type: text(et),
            retry_count: rc,
        });
    }
    Ok(out)
}

/// Remediation priority of a venue (in tenths, like the analytics): failed images × 10
/// plus the failure rate, plus 20 when a failure is transient.
pub fn venue_priority(arr: Container<'_>, classifier: &Classifier) -> f64 {
    let (mut total, mut failed, mut transient) = (0i64, 0i64, false);
    for e in arr.elements().flatten() {
        let Some(obj) = e.as_object() else { continue };
        total += 1;
        let img = Image { index: 0, obj };
        if img.status().map(Status::is_failure).unwrap_or(false) {
            failed += 1;
            if classifier.classify_bytes(img.error_type().ok().flatten()) == ErrorClass::Transient {
                transient = true;
            }
        }
    }
    (failed * 100 + failure_rate_tenths(failed, total) + if transient { 200 } else { 0 }) as f64
        / 10.0
}

/// Finds the element whose `provider_url` hashes to `hash` (the first `failed` one when
/// there are several; otherwise the first match).
pub fn find_by_hash<'a>(
    arr: Container<'a>,
    hash: &UrlHash,
) -> Result<Option<(usize, Container<'a>)>, ImageError> {
    let arr = require_array(arr)?;
    let mut first = None;
    for img in images(arr) {
        let Some(img) = img? else { continue };
        let Some(url) = img.str_bytes("provider_url")? else {
            continue;
        };
        if Md5::digest(url).as_slice() != hash {
            continue;
        }
        if img.status()? == Status::Failed {
            return Ok(Some((img.index, img.obj)));
        }
        first.get_or_insert((img.index, img.obj));
    }
    Ok(first)
}

/// The provider URL of an element (for the claim's answer).
pub fn provider_url<'a>(obj: Container<'a>) -> Option<&'a str> {
    match obj.get("provider_url").ok()?? {
        Value::String(b) => std::str::from_utf8(b).ok(),
        _ => None,
    }
}

/// The array with the given elements replaced, every other element verbatim.
pub fn replace_elements<'a>(
    arr: Container<'a>,
    mut replacements: Vec<(usize, Node<'a>)>,
) -> Result<Node<'a>, ImageError> {
    replacements.sort_by_key(|(i, _)| std::cmp::Reverse(*i));
    let mut items = Vec::with_capacity(arr.len());
    for (i, e) in arr.elements().enumerate() {
        let e = e?;
        if replacements.last().is_some_and(|(ri, _)| *ri == i) {
            items.push(replacements.pop().expect("checked").1);
        } else {
            items.push(Node::Raw(e));
        }
    }
    Ok(Node::Array(items))
}

fn key(k: &'static str) -> Cow<'static, [u8]> {
    Cow::Borrowed(k.as_bytes())
}

/// The outcome recorded for a successful upload.
pub struct Success<'s> {
    /// ImageKit URL.
    pub url: &'s str,
    /// `/venues/<slug>/<file>`.
    pub imagekit_path: &'s str,
    /// ImageKit file id.
    pub file_id: Option<&'s str>,
    /// Now, ISO-8601.
    pub now: &'s str,
}

/// Marks element `index` uploaded: new `url`, `imagekit_path`, `imagekit_file_id`,
/// `retry_count` + 1, `retried_at`; `error_details` and `finalized_at` removed.
pub fn patch_success<'a>(
    arr: Container<'a>,
    index: usize,
    obj: Container<'a>,
    s: &Success<'a>,
) -> Result<Node<'a>, ImageError> {
    let patched = success_element(index, obj, s)?;
    replace_elements(arr, vec![(index, patched)])
}

/// The uploaded version of one element (see [`patch_success`]).
pub fn success_element<'a>(
    index: usize,
    obj: Container<'a>,
    s: &Success<'a>,
) -> Result<Node<'a>, ImageError> {
    let img = Image { index, obj };
    let rc = retry_count_of(&img)? + 1;
    let mut set = vec![
        (key("upload_status"), Node::str("uploaded")),
        (key("url"), Node::str(s.url)),
        (key("imagekit_path"), Node::str(s.imagekit_path)),
        (key("retry_count"), Node::int(rc)),
        (key("retried_at"), Node::str(s.now)),
    ];
    if let Some(id) = s.file_id {
        set.push((key("imagekit_file_id"), Node::str(id)));
    }
    Ok(patch_object(obj, set, &["error_details", "finalized_at"])?)
}

/// The outcome recorded for a failed attempt.
pub struct Failure<'s> {
    /// Error type reported by the uploader.
    pub error_type: &'s str,
    /// HTTP status, if any.
    pub status_code: Option<i32>,
    /// Message (redacted again here, and truncated).
    pub message: &'s str,
    /// Now, ISO-8601.
    pub now: &'s str,
}

/// What a failure does to the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureOutcome {
    /// The new `retry_count`.
    pub retry_count: i64,
    /// `permanently_failed` (true) or `failed`.
    pub permanent: bool,
}

/// Decides the new status: `permanently_failed` once `retry_count` reaches
/// `max_retries`, or at once for a permanent error type.
pub fn failure_outcome(
    old_retry_count: i64,
    class: ErrorClass,
    max_retries: i64,
) -> FailureOutcome {
    let retry_count = old_retry_count + 1;
    FailureOutcome {
        retry_count,
        permanent: class == ErrorClass::Permanent || retry_count >= max_retries,
    }
}

/// Maximum stored length of an error message.
pub const MAX_MESSAGE: usize = 500;

/// Applies a failed attempt to element `index`: new `error_details` (with
/// `retry_attempt`), `retry_count`, `retried_at`, status, and `finalized_at` when it
/// becomes permanent.
pub fn patch_failure<'a>(
    arr: Container<'a>,
    index: usize,
    obj: Container<'a>,
    f: &Failure<'_>,
    outcome: FailureOutcome,
) -> Result<Node<'a>, ImageError> {
    let patched = failure_element(obj, f, outcome)?;
    replace_elements(arr, vec![(index, patched)])
}

/// The failed version of one element (see [`patch_failure`]).
pub fn failure_element<'a>(
    obj: Container<'a>,
    f: &Failure<'_>,
    outcome: FailureOutcome,
) -> Result<Node<'a>, ImageError> {
    let mut message = redact_text(f.message);
    if message.len() > MAX_MESSAGE {
        let mut cut = MAX_MESSAGE;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
    }
    let details = Node::Object(vec![
        (key("error"), Node::str(message)),
        (key("error_type"), Node::str(f.error_type.to_string())),
        (
            key("status_code"),
            f.status_code
                .map(|c| Node::int(c as i64))
                .unwrap_or(Node::Null),
        ),
        (key("timestamp"), Node::str(f.now.to_string())),
        (key("retry_attempt"), Node::int(outcome.retry_count)),
    ]);
    let status = if outcome.permanent {
        "permanently_failed"
    } else {
        "failed"
    };
    let mut set = vec![
        (key("upload_status"), Node::str(status)),
        (key("retry_count"), Node::int(outcome.retry_count)),
        (key("retried_at"), Node::str(f.now.to_string())),
        (key("error_details"), details),
    ];
    if outcome.permanent {
        set.push((key("finalized_at"), Node::str(f.now.to_string())));
    }
    Ok(patch_object(obj, set, &[])?)
}

/// Seconds until the next attempt after failed attempt `n` (1-based):
/// `base · 2^(n-1)` scaled by `jitter` (a factor, e.g. 0.8–1.2), and never less than the
/// provider's `retry_after`. Capped at one day.
pub fn backoff_seconds(base: f64, attempt: i64, retry_after: Option<f64>, jitter: f64) -> f64 {
    let exp = (attempt.clamp(1, 30) - 1) as i32;
    let b = base.max(0.0) * 2f64.powi(exp) * jitter;
    b.max(retry_after.unwrap_or(0.0)).min(86_400.0)
}

/// What the nightly scan does with one venue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanDecision {
    /// Some failure is retryable: queue it.
    Transient,
    /// No retryable failure, some permanent one (including `permanently_failed`):
    /// logged for monitoring.
    Permanent,
    /// Only ambiguous or unknown failures: left for manual review.
    Ambiguous,
    /// No failures.
    Nothing,
}

/// The scan's view of one venue.
pub struct VenueScan<'a> {
    /// The decision matrix's answer.
    pub decision: ScanDecision,
    /// Images to queue.
    pub retryable: Vec<RetryableImage>,
    /// The array with non-retryable `failed` images finalised, when any were.
    pub finalized: Option<Node<'a>>,
    /// How many images were finalised.
    pub finalized_count: usize,
}

/// The original's decision matrix, with `permanently_failed` counted as permanent, and
/// `failed` images that can never be retried (permanent type, or retries exhausted)
/// finalised to `permanently_failed` with `finalized_at`.
pub fn scan_venue<'a>(
    arr: Container<'a>,
    classifier: &Classifier,
    max_retries: i64,
    now: &str,
) -> Result<VenueScan<'a>, ImageError> {
    let arr = require_array(arr)?;
    let retryable = retryable_images(arr, classifier, max_retries)?;
    let (mut permanent, mut ambiguous) = (false, false);
    let mut finalize: Vec<(usize, Container<'a>)> = Vec::new();
    for img in images(arr) {
        let Some(img) = img? else { continue };
        let status = img.status()?;
        if !status.is_failure() {
            continue;
        }
        let class = classifier.classify_bytes(img.error_type()?);
        match class {
            ErrorClass::Permanent => permanent = true,
            ErrorClass::Ambiguous | ErrorClass::Unknown => ambiguous = true,
            ErrorClass::Transient => {}
        }
        if status == Status::PermanentlyFailed {
            permanent = true;
            continue;
        }
        let exhausted = class == ErrorClass::Transient && retry_count_of(&img)? >= max_retries;
        if class == ErrorClass::Permanent || exhausted {
            permanent = true;
            finalize.push((img.index, img.obj));
        }
    }
    let decision = if !retryable.is_empty() {
        ScanDecision::Transient
    } else if permanent {
        ScanDecision::Permanent
    } else if ambiguous {
        ScanDecision::Ambiguous
    } else {
        ScanDecision::Nothing
    };
    let finalized_count = finalize.len();
    let finalized = if finalize.is_empty() {
        None
    } else {
        let mut items = Vec::with_capacity(arr.len());
        for (i, e) in arr.elements().enumerate() {
            let e = e?;
            match finalize.iter().find(|(fi, _)| *fi == i) {
                Some((_, obj)) => items.push(patch_object(
                    *obj,
                    vec![
                        (key("upload_status"), Node::str("permanently_failed")),
                        (key("finalized_at"), Node::str(now.to_string())),
                    ],
                    &[],
                )?),
                None => items.push(Node::Raw(e)),
            }
        }
        Some(Node::Array(items))
    };
    Ok(VenueScan {
        decision,
        retryable,
        finalized,
        finalized_count,
    })
}

/// The array without its `permanently_failed` images (or only the one whose URL hashes
/// to `only`), and the removed elements.
pub fn purge_permanently_failed<'a>(
    arr: Container<'a>,
    only: Option<&UrlHash>,
) -> Result<(Node<'a>, Vec<Container<'a>>), ImageError> {
    let arr = require_array(arr)?;
    let mut keep = Vec::with_capacity(arr.len());
    let mut removed = Vec::new();
    for (index, e) in arr.elements().enumerate() {
        let e = e?;
        if let Some(obj) = e.as_object() {
            let img = Image { index, obj };
            let matches = match only {
                None => true,
                Some(h) => img
                    .str_bytes("provider_url")?
                    .is_some_and(|u| Md5::digest(u).as_slice() == h),
            };
            if matches && img.status()? == Status::PermanentlyFailed {
                removed.push(obj);
                continue;
            }
        }
        keep.push(Node::Raw(e));
    }
    Ok((Node::Array(keep), removed))
}

/// A numeric node from decimal text (for timestamps and rates written by callers).
pub fn number(text: &str) -> Option<Node<'static>> {
    encode_decimal(text).ok().map(|b| Node::Num(Cow::Owned(b)))
}

#[cfg(test)]
mod tests;
