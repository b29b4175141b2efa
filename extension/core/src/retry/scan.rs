//! The scan: what the queue makes of one venue's array, and the claim's re-check of one job.

use super::element::{copies, elements, Skip, UrlHash};
use super::policy::{FinalReason, Policy, ReviewReason, State};
use crate::classify::ErrorClass;
use crate::image::{require_array, ImageError, Status};
use crate::jsonb::Container;
use crate::redact::redact_url;
use crate::scores::failure_rate_tenths;

/// What the nightly scan does with one venue (the original's decision matrix).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanDecision {
    /// Some image is retryable: queue it.
    Transient,
    /// Nothing retryable, some permanent failure (including `permanently_failed`):
    /// logged for monitoring.
    Permanent,
    /// Only failures left for review: skipped.
    Ambiguous,
    /// No failures.
    Nothing,
}

/// One image to queue (copies with the same identity are one item).
#[derive(Debug, Clone, PartialEq)]
pub struct QueueItem {
    /// Position of its first copy.
    pub index: usize,
    /// Identity.
    pub hash: UrlHash,
    /// The source URL, secrets redacted.
    pub redacted_url: String,
    /// Provider (`unknown` when absent).
    pub provider: String,
    /// `error_details.error_type`.
    pub error_type: Option<String>,
    /// The highest `retry_count` of its copies.
    pub retry_count: i64,
}

/// The queue's view of one venue's array.
#[derive(Debug, Clone, Default)]
pub struct VenuePlan {
    /// Images to queue, one per identity.
    pub queue: Vec<QueueItem>,
    /// Elements in state [`State::Queued`] (copies counted): `venue_images_summary`'s
    /// `retryable`, and what `venue_image_enqueue_venue` returns.
    pub queued_elements: usize,
    /// Elements the scan finalises, with why.
    pub finalize: Vec<(usize, FinalReason)>,
    /// Elements left for review, with why.
    pub review: Vec<(usize, ReviewReason)>,
    /// Elements that could not be read.
    pub skipped: Vec<Skip>,
    /// `permanently_failed` elements.
    pub permanently_failed: usize,
    /// Image objects read (skipped ones included).
    pub images: usize,
    /// Failed or permanently failed images (readable ones).
    pub failures: usize,
    /// Some failure has a transient error type.
    pub any_transient: bool,
}

impl VenuePlan {
    /// The decision matrix.
    pub fn decision(&self) -> ScanDecision {
        if !self.queue.is_empty() {
            ScanDecision::Transient
        } else if !self.finalize.is_empty() || self.permanently_failed > 0 {
            ScanDecision::Permanent
        } else if !self.review.is_empty() {
            ScanDecision::Ambiguous
        } else {
            ScanDecision::Nothing
        }
    }

    /// Remediation priority of the venue: failed images × 10 plus the failure rate (one
    /// decimal), plus 20 when a failure is transient.
    pub fn priority(&self) -> f64 {
        let (failed, total) = (self.failures as i64, self.images as i64);
        (failed * 100
            + failure_rate_tenths(failed, total)
            + if self.any_transient { 200 } else { 0 }) as f64
            / 10.0
    }
}

impl Policy {
    /// Reads a venue's array and decides every element.
    pub fn plan(&self, arr: Container<'_>) -> Result<VenuePlan, ImageError> {
        let arr = require_array(arr)?;
        let mut plan = VenuePlan::default();
        for e in elements(arr) {
            plan.images += 1;
            let e = match e? {
                Ok(e) => e,
                Err(skip) => {
                    if skip.status.is_some_and(Status::is_failure) {
                        plan.failures += 1;
                    }
                    plan.skipped.push(skip);
                    continue;
                }
            };
            if e.status.is_failure() {
                plan.failures += 1;
                if self.class(e.error_type) == ErrorClass::Transient {
                    plan.any_transient = true;
                }
            }
            match self.state(&e) {
                State::Untouched => {}
                State::PermanentlyFailed => plan.permanently_failed += 1,
                State::Finalize(r) => plan.finalize.push((e.index, r)),
                State::Review(r) => plan.review.push((e.index, r)),
                State::Queued => {
                    plan.queued_elements += 1;
                    let Some(hash) = e.hash() else { continue };
                    match plan.queue.iter_mut().find(|q| q.hash == hash) {
                        Some(q) => q.retry_count = q.retry_count.max(e.retry_count),
                        None => plan.queue.push(QueueItem {
                            index: e.index,
                            hash,
                            redacted_url: redact_url(e.source.map(|(u, _)| u).unwrap_or("")),
                            provider: e.provider_name().to_string(),
                            error_type: e
                                .error_type
                                .map(|b| String::from_utf8_lossy(b).into_owned()),
                            retry_count: e.retry_count,
                        }),
                    }
                }
            }
        }
        Ok(plan)
    }
}

/// What a claim hands out for one job, read from the venue's own row.
#[derive(Debug, Clone, PartialEq)]
pub struct Target<'a> {
    /// The URL to download (the real one, secrets included: never stored by the queue).
    pub url: &'a str,
    /// The highest `retry_count` of the attemptable copies.
    pub retry_count: i64,
}

impl Policy {
    /// The claim's re-check: the job's image, when some copy of it may be attempted now.
    pub fn claim_target<'a>(
        &self,
        arr: Container<'a>,
        hash: &UrlHash,
        forced: bool,
    ) -> Result<Option<Target<'a>>, ImageError> {
        let mut target: Option<Target<'a>> = None;
        for e in copies(arr, hash)? {
            if !self.attemptable(&e, forced) {
                continue;
            }
            let Some((url, _)) = e.source else { continue };
            match &mut target {
                Some(t) => t.retry_count = t.retry_count.max(e.retry_count),
                None => {
                    target = Some(Target {
                        url,
                        retry_count: e.retry_count,
                    })
                }
            }
        }
        Ok(target)
    }
}
