//! The retry lifecycle of one image: the only place that decides what the queue does.
//!
//! Everything else asks this module: the extension's enqueue, trigger, scan, claim,
//! write-back, force retry and purge, and `venue_images_summary`'s `retryable` count.
//!
//! ```text
//!                         scan / enqueue / trigger
//!   failed ──┬─ transient, retries left, has a source URL ──▶ Queued ──claim──▶ attempt
//!            ├─ permanent type ───────────────────────────▶ Finalize(PermanentError)
//!            ├─ transient, retries exhausted ─────────────▶ Finalize(RetriesExhausted)
//!            ├─ transient, no provider_url and no url ────▶ Finalize(NoSourceUrl)
//!            ├─ ambiguous type ───────────────────────────▶ Review(AmbiguousError)
//!            └─ no error type ────────────────────────────▶ Review(NoErrorType)
//!   Finalize(..) ──scan──▶ permanently_failed (+ finalized_at)
//!
//!   attempt ─ success ──────────────────────────────────────▶ uploaded
//!           ─ failure: permanent type ──────────────────────▶ permanently_failed
//!           ─ failure: transient, retry_count reaches max ──▶ permanently_failed
//!           ─ failure: transient, retries left ─────────────▶ failed, queued again after backoff
//!           ─ failure: ambiguous or no type ────────────────▶ failed, left for review (not queued)
//! ```
//!
//! An element whose keys cannot be read (a `retry_count` of `"abc"`, a numeric
//! `upload_status`) is [`Skip`]ped: left untouched, reported with its index and reason,
//! and it never blocks the venue's other images. A numeric string `retry_count` (`"2"`)
//! is read as its number everywhere.
//!
//! An image's identity is the md5 of its source URL: `provider_url`, else `url` (the
//! original kept the provider URL in `url` until the upload succeeded; dedupe uses the
//! same rule). Copies of one image in an array (the original's dedupe bug left some)
//! share one queue job, are attempted once, and all get the outcome.
//!
//! Patches keep every other element and every other key byte for byte (defect 1 of the
//! original rewrote the whole array from a stale read and dropped images).

pub use crate::redact::{redact_text, redact_url};

mod apply;
mod element;
mod outcome;
mod policy;
mod purge;
mod scan;
mod vocabulary;

pub use apply::{clean_message, number, replace_elements, Applied, JobNext, MAX_MESSAGE};
pub use element::{elements, read_element, url_hash, Element, Skip, SourceKey, UrlHash};
pub use outcome::{OutcomeError, OutcomeRecord, Reported};
pub use policy::{
    backoff_seconds, state_of, AfterFailure, FinalReason, Policy, ReviewReason, State,
};
pub use purge::{purge_permanently_failed, redacted_copy};
pub use scan::{QueueItem, ScanDecision, Target, VenuePlan};
pub use vocabulary::{AttemptOutcome, QueueState, ReportGroup, WriteBackStatus};

#[cfg(test)]
mod tests;
