//! Applying outcomes: the scan's finalisation and an attempt's outcome, written into a
//! venue's array with every other element and key kept byte for byte.

use super::element::{copies, Element, SourceKey, UrlHash};
use super::outcome::Reported;
use super::policy::{AfterFailure, FinalReason, Policy};
use super::scan::VenuePlan;
use super::vocabulary::{AttemptOutcome, WriteBackStatus};
use crate::image::{Image, ImageError, Status};
use crate::jsonb::{encode_decimal, patch_object, Container, Node, Value};
use crate::redact::redact_text;
use std::borrow::Cow;

impl Policy {
    /// The array with the plan's `Finalize` elements made `permanently_failed` (with
    /// `finalized_at`); `None` when there are none.
    pub fn finalize<'a>(
        &self,
        arr: Container<'a>,
        plan: &VenuePlan,
        now: &str,
    ) -> Result<Option<Node<'a>>, ImageError> {
        if plan.finalize.is_empty() {
            return Ok(None);
        }
        let mut out = Vec::with_capacity(plan.finalize.len());
        for &(index, reason) in &plan.finalize {
            let Some(Value::Container(obj)) = arr.array_get(index)? else {
                continue;
            };
            out.push((index, finalized_element(obj, reason, now)?));
        }
        Ok(Some(replace_elements(arr, out)?))
    }
}

/// One element made `permanently_failed` by the scan.
fn finalized_element<'a>(
    obj: Container<'a>,
    reason: FinalReason,
    now: &str,
) -> Result<Node<'a>, ImageError> {
    let mut set = vec![
        (
            key("upload_status"),
            Node::str(Status::PermanentlyFailed.as_str()),
        ),
        (key("finalized_at"), Node::str(now.to_string())),
    ];
    if reason == FinalReason::NoSourceUrl {
        let img = Image { index: 0, obj };
        let previous = match obj.get("error_details")? {
            Some(v) => Node::Raw(v),
            None => Node::Null,
        };
        set.push((
            key("error_details"),
            Node::Object(vec![
                (key("error"), Node::str(reason.as_str())),
                (key("error_type"), Node::str("invalid_provider_url")),
                (key("status_code"), Node::Null),
                (key("timestamp"), Node::str(now.to_string())),
                (key("retry_attempt"), Node::int(img.attempts().unwrap_or(0))),
                (key("previous"), previous),
            ]),
        ));
    }
    Ok(patch_object(obj, set, &[])?)
}

/// Maximum stored length of an error message, in bytes.
pub const MAX_MESSAGE: usize = 500;

/// A message fit to store: secrets redacted, NUL and other control characters (but
/// tab and newline) replaced, at most [`MAX_MESSAGE`] bytes.
pub fn clean_message(message: &str) -> String {
    let mut m: String = redact_text(message)
        .chars()
        .map(|c| {
            if c.is_control() && c != '\n' && c != '\t' {
                '\u{fffd}'
            } else {
                c
            }
        })
        .collect();
    if m.len() > MAX_MESSAGE {
        let mut cut = MAX_MESSAGE;
        while !m.is_char_boundary(cut) {
            cut -= 1;
        }
        m.truncate(cut);
    }
    m
}

/// What applying one reported outcome to a venue's array did.
#[derive(Debug)]
pub struct Applied<'a> {
    /// Elements to replace (every copy of the image), empty when superseded.
    pub replacements: Vec<(usize, Node<'a>)>,
    /// The answer to the uploader.
    pub status: WriteBackStatus,
    /// The attempt-log outcome.
    pub outcome: AttemptOutcome,
    /// The image's `retry_count` after the attempt (superseded: none).
    pub retry_count: Option<i64>,
    /// What becomes of the queue job.
    pub job: JobNext,
    /// Why, for superseded outcomes and reviews.
    pub note: Option<&'static str>,
}

/// What becomes of the queue job after write-back.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum JobNext {
    /// The job is done (uploaded, permanent, review, superseded).
    Delete,
    /// Queued again: next attempt in this many seconds.
    Retry {
        /// Seconds.
        wait_seconds: f64,
    },
}

fn superseded<'a>(why: &'static str) -> Applied<'a> {
    Applied {
        replacements: Vec::new(),
        status: WriteBackStatus::Superseded,
        outcome: AttemptOutcome::Superseded,
        retry_count: None,
        job: JobNext::Delete,
        note: Some(why),
    }
}

impl Policy {
    /// Applies one attempt's outcome to every attemptable copy of the job's image.
    /// `jitter` scales the backoff (0.8–1.2 in production).
    pub fn apply<'a>(
        &self,
        arr: Container<'a>,
        hash: &UrlHash,
        forced: bool,
        reported: &Reported<'a>,
        now: &'a str,
        jitter: f64,
    ) -> Result<Applied<'a>, ImageError> {
        let all = copies(arr, hash)?;
        if all.is_empty() {
            return Ok(superseded("image removed or replaced by the application"));
        }
        let targets: Vec<Element<'a>> = all
            .iter()
            .copied()
            .filter(|e| match e.status {
                Status::Failed => true,
                Status::PermanentlyFailed => forced,
                _ => false,
            })
            .collect();
        if targets.is_empty() {
            return Ok(superseded(
                if all.iter().any(|e| e.status == Status::Uploaded) {
                    "image already uploaded by the application"
                } else {
                    "image no longer failed (changed by the application)"
                },
            ));
        }
        let retry_count = targets
            .iter()
            .map(|e| e.retry_count)
            .max()
            .unwrap_or(0)
            .saturating_add(1);
        match reported {
            Reported::Uploaded {
                url,
                imagekit_path,
                file_id,
            } => {
                let mut replacements = Vec::with_capacity(targets.len());
                for e in &targets {
                    let mut set = vec![
                        (key("upload_status"), Node::str(Status::Uploaded.as_str())),
                        (key("url"), Node::str(*url)),
                        (key("imagekit_path"), Node::str(*imagekit_path)),
                        (key("retry_count"), Node::int(retry_count)),
                        (key("retried_at"), Node::str(now)),
                    ];
                    if let Some(id) = file_id {
                        set.push((key("imagekit_file_id"), Node::str(*id)));
                    }
                    if let Some((source, SourceKey::Url)) = e.source {
                        // The source lived in `url`, which now holds the ImageKit URL.
                        set.push((key("provider_url"), Node::str(source)));
                    }
                    replacements.push((
                        e.index,
                        patch_object(e.obj, set, &["error_details", "finalized_at"])?,
                    ));
                }
                Ok(Applied {
                    replacements,
                    status: WriteBackStatus::Uploaded,
                    outcome: AttemptOutcome::Uploaded,
                    retry_count: Some(retry_count),
                    job: JobNext::Delete,
                    note: None,
                })
            }
            Reported::Failed {
                error_type,
                status_code,
                message,
                retry_after_seconds,
            } => {
                let next =
                    self.after_failure(retry_count, error_type, *retry_after_seconds, jitter);
                let permanent = matches!(next, AfterFailure::Permanent(_));
                let message = clean_message(message);
                let mut replacements = Vec::with_capacity(targets.len());
                for e in &targets {
                    replacements.push((
                        e.index,
                        failure_element(
                            e.obj,
                            error_type,
                            *status_code,
                            &message,
                            now,
                            retry_count,
                            permanent,
                        )?,
                    ));
                }
                let (status, outcome, job, note) = match next {
                    AfterFailure::Retry { wait_seconds } => (
                        WriteBackStatus::Failed,
                        AttemptOutcome::Failed,
                        JobNext::Retry { wait_seconds },
                        None,
                    ),
                    AfterFailure::Review(r) => (
                        WriteBackStatus::Failed,
                        AttemptOutcome::Review,
                        JobNext::Delete,
                        Some(r.as_str()),
                    ),
                    AfterFailure::Permanent(r) => (
                        WriteBackStatus::PermanentlyFailed,
                        AttemptOutcome::PermanentlyFailed,
                        JobNext::Delete,
                        Some(r.as_str()),
                    ),
                };
                Ok(Applied {
                    replacements,
                    status,
                    outcome,
                    retry_count: Some(retry_count),
                    job,
                    note,
                })
            }
        }
    }
}

fn key(k: &'static str) -> Cow<'static, [u8]> {
    Cow::Borrowed(k.as_bytes())
}

/// The failed version of one element: new `error_details` (with `retry_attempt`),
/// `retry_count`, `retried_at`, status, and `finalized_at` when it becomes permanent.
fn failure_element<'a>(
    obj: Container<'a>,
    error_type: &str,
    status_code: Option<i32>,
    message: &str,
    now: &str,
    retry_count: i64,
    permanent: bool,
) -> Result<Node<'a>, ImageError> {
    let details = Node::Object(vec![
        (key("error"), Node::str(message.to_string())),
        (key("error_type"), Node::str(error_type.to_string())),
        (
            key("status_code"),
            status_code
                .map(|c| Node::int(c as i64))
                .unwrap_or(Node::Null),
        ),
        (key("timestamp"), Node::str(now.to_string())),
        (key("retry_attempt"), Node::int(retry_count)),
    ]);
    let status = if permanent {
        Status::PermanentlyFailed
    } else {
        Status::Failed
    };
    let mut set = vec![
        (key("upload_status"), Node::str(status.as_str())),
        (key("retry_count"), Node::int(retry_count)),
        (key("retried_at"), Node::str(now.to_string())),
        (key("error_details"), details),
    ];
    if permanent {
        set.push((key("finalized_at"), Node::str(now.to_string())));
    }
    Ok(patch_object(obj, set, &[])?)
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
        // Several replacements of one index: the last one given wins.
        let mut node = None;
        while replacements.last().is_some_and(|(ri, _)| *ri == i) {
            node = replacements.pop().map(|(_, n)| n);
        }
        items.push(node.unwrap_or(Node::Raw(e)));
    }
    Ok(Node::Array(items))
}

/// A numeric node from decimal text (for timestamps and rates written by callers).
pub fn number(text: &str) -> Option<Node<'static>> {
    encode_decimal(text).ok().map(|b| Node::Num(Cow::Owned(b)))
}
