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
//!
//! # Stages
//!
//! One module per stage, each using only the ones listed before it (see the crate's
//! module graph); their public items are re-exported here:
//!
//! - `vocabulary`: the words the queue stores and returns, one enum each (below).
//! - `element`: reading elements leniently ([`read_element`], [`elements`], [`Skip`]) and
//!   their identity ([`url_hash`]).
//! - `outcome`: the uploader's reported outcome, validated ([`OutcomeRecord`],
//!   [`Reported`]).
//! - `policy`: state and policy: where an element stands ([`State`]) and what a failed
//!   attempt does ([`Policy`], [`AfterFailure`], [`backoff_seconds`]).
//! - `scan`: the scan's plan of a venue ([`VenuePlan`], [`ScanDecision`]) and the claim's
//!   re-check of a job ([`Policy::claim_target`]).
//! - `apply`: writing decisions into the array: the scan's finalisation
//!   ([`Policy::finalize`]) and an attempt's outcome ([`Policy::apply`]).
//! - `purge`: removing `permanently_failed` images ([`purge_permanently_failed`]) and the
//!   redacted copies the log keeps ([`redacted_copy`]).
//!
//! # Vocabularies
//!
//! Every vocabulary is an enum with `ALL` (every value), `as_str` (the spelling) and
//! `parse` (its exact inverse: `parse(x.as_str()) == Some(x)`, `None` for any other text):
//!
//! | Vocabulary | Enum | Words |
//! |---|---|---|
//! | an image's `upload_status` | [`Status`](crate::image::Status) | `uploaded`, `failed`, `permanently_failed`, `other` |
//! | an error type's class | [`ErrorClass`](crate::classify::ErrorClass) | `transient`, `permanent`, `ambiguous`, `unknown` |
//! | an element's lifecycle (`venue_image_venue_images.lifecycle`) | [`Lifecycle`] | `not_failed`, `queued`, `to_finalize`, `review`, `permanently_failed`, `skipped` |
//! | a queue job's state (`venue_image_retry_queue.state`) | [`QueueState`] | `due`, `waiting`, `leased`, `paused` |
//! | the attempt log's outcome (`venue_image_attempts.outcome`) | [`AttemptOutcome`] | `uploaded`, `failed`, `review`, `permanently_failed`, `superseded`, `finalized`, `forced`, `purged` |
//! | the retry report's groups of outcomes | [`ReportGroup`] | `recovered`, `failed_again`, `permanent_failure`, `finalized` |
//! | write-back's answer (`venue_image_record_*`) | [`WriteBackStatus`] | `uploaded`, `failed`, `permanently_failed`, `superseded`, `stale` |
//!
//! A word two vocabularies share means the same thing in both, so only one of them
//! spells it: the image's statuses are [`Status`](crate::image::Status)'s, `review` is
//! [`Lifecycle`]'s, `superseded` and `finalized` are [`AttemptOutcome`]'s. Where SQL
//! spells these words (`extension/src/queue/schema.sql`), a test pins it to the enum.

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
pub use vocabulary::{AttemptOutcome, Lifecycle, QueueState, ReportGroup, WriteBackStatus};

#[cfg(test)]
mod tests;
