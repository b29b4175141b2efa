//! State and policy: where an element stands, and what a failed attempt does.

use super::element::Element;
use super::vocabulary::Lifecycle;
use crate::classify::{Classifier, ErrorClass};
use crate::image::Status;

/// The retry policy, as a superuser configured it.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// Error classes.
    pub classifier: Classifier,
    /// Attempts before an image becomes `permanently_failed`.
    pub max_retries: i64,
    /// Backoff base in seconds.
    pub base_seconds: f64,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            classifier: Classifier::builtin(),
            max_retries: 3,
            base_seconds: 30.0,
        }
    }
}

/// Why a `failed` image will become `permanently_failed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FinalReason {
    /// Its error type is permanent (404, 403, ...).
    PermanentError,
    /// Transient, but `retry_count` reached `max_retries`.
    RetriesExhausted,
    /// Transient, but it has neither `provider_url` nor `url` to download from; it is
    /// finalised with error type `invalid_provider_url` (the old details kept under
    /// `error_details.previous`).
    NoSourceUrl,
}

impl FinalReason {
    /// For logs and the attempt log.
    pub const fn as_str(self) -> &'static str {
        match self {
            FinalReason::PermanentError => "permanent error type",
            FinalReason::RetriesExhausted => "retries exhausted",
            FinalReason::NoSourceUrl => "no provider_url or url to download from",
        }
    }
}

/// Why a `failed` image is not retried automatically.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReviewReason {
    /// An error type in neither list (`http_error`, `download_failed`, ...).
    AmbiguousError,
    /// No error type at all.
    NoErrorType,
}

impl ReviewReason {
    /// For logs and the attempt log.
    pub const fn as_str(self) -> &'static str {
        match self {
            ReviewReason::AmbiguousError => "ambiguous error type: left for manual review",
            ReviewReason::NoErrorType => "no error type: left for manual review",
        }
    }
}

/// Where one readable element stands, with why for `Finalize` and `Review`. Its
/// spelling is its [`Lifecycle`]'s ([`State::as_str`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Not a failure (`uploaded`, `skipped_dev`, `external`, no status): not the queue's.
    Untouched,
    /// `failed` and retryable: queued, and attempted when due.
    Queued,
    /// `failed`, never retried automatically: the scan makes it `permanently_failed`.
    Finalize(FinalReason),
    /// `failed`, not retried automatically: left for manual review.
    Review(ReviewReason),
    /// `permanently_failed`: terminal until a force retry.
    PermanentlyFailed,
}

impl State {
    /// Its word in the lifecycle vocabulary (`Finalize` is `to_finalize`, `Untouched` is
    /// `not_failed`); the reason is dropped.
    pub const fn lifecycle(self) -> Lifecycle {
        match self {
            State::Untouched => Lifecycle::NotFailed,
            State::Queued => Lifecycle::Queued,
            State::Finalize(_) => Lifecycle::ToFinalize,
            State::Review(_) => Lifecycle::Review,
            State::PermanentlyFailed => Lifecycle::PermanentlyFailed,
        }
    }

    /// The SQL spelling (`venue_image_venue_images.lifecycle`): its [`Lifecycle`]'s.
    pub const fn as_str(self) -> &'static str {
        self.lifecycle().as_str()
    }

    /// Why it is finalised or left for review (`None` in the other states).
    pub const fn reason(self) -> Option<&'static str> {
        match self {
            State::Finalize(r) => Some(r.as_str()),
            State::Review(r) => Some(r.as_str()),
            State::Untouched | State::Queued | State::PermanentlyFailed => None,
        }
    }
}

/// Where an element stands under these lists and this maximum (see [`Policy::state`]).
pub fn state_of(classifier: &Classifier, max_retries: i64, e: &Element<'_>) -> State {
    match e.status {
        Status::Failed => {}
        Status::PermanentlyFailed => return State::PermanentlyFailed,
        Status::Uploaded | Status::Other => return State::Untouched,
    }
    match classifier.classify_bytes(e.error_type) {
        ErrorClass::Permanent => State::Finalize(FinalReason::PermanentError),
        ErrorClass::Transient if e.retry_count >= max_retries => {
            State::Finalize(FinalReason::RetriesExhausted)
        }
        ErrorClass::Transient if e.source.is_none() => State::Finalize(FinalReason::NoSourceUrl),
        ErrorClass::Transient => State::Queued,
        ErrorClass::Ambiguous => State::Review(ReviewReason::AmbiguousError),
        ErrorClass::Unknown => State::Review(ReviewReason::NoErrorType),
    }
}

impl Policy {
    /// The class of an error type.
    pub fn class(&self, error_type: Option<&[u8]>) -> ErrorClass {
        self.classifier.classify_bytes(error_type)
    }

    /// Where an element stands.
    pub fn state(&self, e: &Element<'_>) -> State {
        state_of(&self.classifier, self.max_retries, e)
    }

    /// The claim predicate on the element side: may this copy be attempted now? A
    /// forced job (manual review) may attempt any failed or permanently failed copy.
    pub fn attemptable(&self, e: &Element<'_>, forced: bool) -> bool {
        if e.source.is_none() {
            return false;
        }
        match self.state(e) {
            State::Queued => true,
            State::Finalize(_) | State::Review(_) | State::PermanentlyFailed => forced,
            State::Untouched => false,
        }
    }

    /// What a failed attempt does. `retry_count` is the image's count after this attempt.
    pub fn after_failure(
        &self,
        retry_count: i64,
        error_type: &str,
        retry_after: Option<f64>,
        jitter: f64,
    ) -> AfterFailure {
        match self.class(Some(error_type.as_bytes())) {
            ErrorClass::Permanent => AfterFailure::Permanent(FinalReason::PermanentError),
            ErrorClass::Transient if retry_count >= self.max_retries => {
                AfterFailure::Permanent(FinalReason::RetriesExhausted)
            }
            ErrorClass::Transient => AfterFailure::Retry {
                wait_seconds: backoff_seconds(self.base_seconds, retry_count, retry_after, jitter),
            },
            ErrorClass::Ambiguous => AfterFailure::Review(ReviewReason::AmbiguousError),
            ErrorClass::Unknown => AfterFailure::Review(ReviewReason::NoErrorType),
        }
    }
}

/// What happens to an image after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AfterFailure {
    /// Stays `failed`, queued again after this many seconds.
    Retry {
        /// Seconds until the next attempt.
        wait_seconds: f64,
    },
    /// Stays `failed`, leaves the queue: manual review.
    Review(ReviewReason),
    /// Becomes `permanently_failed`.
    Permanent(FinalReason),
}

/// Seconds until the next attempt after failed attempt `n` (1-based):
/// `base · 2^(n-1)` scaled by `jitter` (a factor, e.g. 0.8–1.2), and never less than the
/// provider's `retry_after`. Capped at one day.
pub fn backoff_seconds(base: f64, attempt: i64, retry_after: Option<f64>, jitter: f64) -> f64 {
    let exp = (attempt.clamp(1, 30) - 1) as i32;
    let b = base.max(0.0) * 2f64.powi(exp) * jitter.clamp(0.0, 2.0);
    let b = if b.is_finite() { b } else { 86_400.0 };
    b.max(retry_after.filter(|r| r.is_finite()).unwrap_or(0.0))
        .clamp(0.0, 86_400.0)
}
