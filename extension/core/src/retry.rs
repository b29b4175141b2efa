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

use crate::classify::{Classifier, ErrorClass};
use crate::image::{require_array, Image, ImageError, Status};
use crate::jsonb::{
    encode_decimal, patch_object, Container, Elements, Kind, Node, Pairs, TooDeep, Value, MAX_DEPTH,
};
use crate::scores::failure_rate_tenths;
use md5::{Digest, Md5};
use std::borrow::Cow;

pub use crate::redact::{redact_text, redact_url};

mod outcome;
pub use outcome::{OutcomeError, OutcomeRecord, Reported};

/// Identity of an image inside the queue: md5 of its source URL. The queue stores this
/// (and a redacted URL) instead of the URL itself, so API keys in provider URLs never
/// land in the queue's tables.
pub type UrlHash = [u8; 16];

/// md5 of a source URL.
pub fn url_hash(url: &str) -> UrlHash {
    Md5::digest(url.as_bytes()).into()
}

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

/// Which key holds an element's source URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKey {
    /// `provider_url`.
    ProviderUrl,
    /// `url` (no `provider_url`).
    Url,
}

/// An element as the queue reads it.
#[derive(Debug, Clone, Copy)]
pub struct Element<'a> {
    /// Position in the array.
    pub index: usize,
    /// The object.
    pub obj: Container<'a>,
    /// `upload_status`.
    pub status: Status,
    /// `error_details.error_type`.
    pub error_type: Option<&'a [u8]>,
    /// `retry_count` as whole attempts.
    pub retry_count: i64,
    /// The URL to download from, and the key it came from.
    pub source: Option<(&'a str, SourceKey)>,
    /// `provider`.
    pub provider: Option<&'a str>,
}

impl Element<'_> {
    /// The identity hash, when there is a source URL.
    pub fn hash(&self) -> Option<UrlHash> {
        self.source.map(|(u, _)| url_hash(u))
    }

    /// The provider name the queue uses (`unknown` when absent).
    pub fn provider_name(&self) -> &str {
        self.provider.unwrap_or("unknown")
    }
}

/// An element the queue could not read, with why. It is left untouched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skip {
    /// Position in the array.
    pub index: usize,
    /// Its `upload_status`, when that much could be read.
    pub status: Option<Status>,
    /// What is wrong, e.g. `"retry_count" must be a number (or a numeric string) or null, got string`.
    pub reason: String,
}

fn utf8<'a>(b: &'a [u8], index: usize, status: Status, key: &str) -> Result<&'a str, Skip> {
    std::str::from_utf8(b).map_err(|_| Skip {
        index,
        status: Some(status),
        reason: format!("\"{key}\" is not valid UTF-8"),
    })
}

/// Reads one image object leniently: `Err(Skip)` when a key the queue relies on has a
/// type it cannot use. Only failures are read strictly; other elements are only needed
/// for their identity, and a key of the wrong type there just leaves it out.
pub fn read_element(index: usize, obj: Container<'_>) -> Result<Element<'_>, Skip> {
    let img = Image { index, obj };
    let status = img.status().map_err(|e| Skip {
        index,
        status: None,
        reason: e.to_string(),
    })?;
    let skip = |e: ImageError| Skip {
        index,
        status: Some(status),
        reason: e.to_string(),
    };
    if !status.is_failure() {
        let text = |k: &'static str| {
            img.str_bytes(k)
                .ok()
                .flatten()
                .filter(|b| !b.is_empty())
                .and_then(|b| std::str::from_utf8(b).ok())
        };
        let source = text("provider_url")
            .map(|u| (u, SourceKey::ProviderUrl))
            .or_else(|| text("url").map(|u| (u, SourceKey::Url)));
        return Ok(Element {
            index,
            obj,
            status,
            error_type: None,
            retry_count: 0,
            source,
            provider: text("provider"),
        });
    }
    let source = match img.str_bytes("provider_url").map_err(skip)? {
        Some(u) if !u.is_empty() => Some((
            utf8(u, index, status, "provider_url")?,
            SourceKey::ProviderUrl,
        )),
        _ => match img.str_bytes("url").map_err(skip)? {
            Some(u) if !u.is_empty() => Some((utf8(u, index, status, "url")?, SourceKey::Url)),
            _ => None,
        },
    };
    let provider = match img.str_bytes("provider").map_err(skip)? {
        Some(p) => Some(utf8(p, index, status, "provider")?),
        None => None,
    };
    Ok(Element {
        index,
        obj,
        status,
        error_type: img.error_type().map_err(skip)?,
        retry_count: img.attempts().map_err(skip)?,
        source,
        provider,
    })
}

/// The elements of an array: image objects read leniently (non-object elements are not
/// images and are passed over). `Err` only for bytes that are not valid jsonb.
pub fn elements<'a>(
    arr: Container<'a>,
) -> impl Iterator<Item = Result<Result<Element<'a>, Skip>, ImageError>> + 'a {
    arr.elements().enumerate().filter_map(|(index, e)| match e {
        Err(m) => Some(Err(ImageError::Malformed(m))),
        Ok(v) => v.as_object().map(|obj| Ok(read_element(index, obj))),
    })
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
    pub fn as_str(self) -> &'static str {
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
    pub fn as_str(self) -> &'static str {
        match self {
            ReviewReason::AmbiguousError => "ambiguous error type: left for manual review",
            ReviewReason::NoErrorType => "no error type: left for manual review",
        }
    }
}

/// Where one readable element stands.
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

/// The attempt-log outcomes (`venue_image_attempts.outcome`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AttemptOutcome {
    /// An attempt uploaded the image.
    Uploaded,
    /// An attempt failed; the image is queued again.
    Failed,
    /// An attempt failed with an ambiguous error; the image is left for review.
    Review,
    /// An attempt made the image `permanently_failed`.
    PermanentlyFailed,
    /// The outcome could not be applied: the application changed the image meanwhile.
    Superseded,
    /// The scan made a `failed` image `permanently_failed`.
    Finalized,
    /// `venue_image_force_retry` queued the image.
    Forced,
    /// `venue_image_purge_permanently_failed` removed the image.
    Purged,
}

impl AttemptOutcome {
    /// Every value, in the order of the table's CHECK constraint.
    pub const ALL: [AttemptOutcome; 8] = [
        AttemptOutcome::Uploaded,
        AttemptOutcome::Failed,
        AttemptOutcome::Review,
        AttemptOutcome::PermanentlyFailed,
        AttemptOutcome::Superseded,
        AttemptOutcome::Finalized,
        AttemptOutcome::Forced,
        AttemptOutcome::Purged,
    ];

    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptOutcome::Uploaded => "uploaded",
            AttemptOutcome::Failed => "failed",
            AttemptOutcome::Review => "review",
            AttemptOutcome::PermanentlyFailed => "permanently_failed",
            AttemptOutcome::Superseded => "superseded",
            AttemptOutcome::Finalized => "finalized",
            AttemptOutcome::Forced => "forced",
            AttemptOutcome::Purged => "purged",
        }
    }

    /// The value with this stored spelling.
    pub fn parse(s: &str) -> Option<AttemptOutcome> {
        Self::ALL.into_iter().find(|o| o.as_str() == s)
    }

    /// Where the retry report counts this outcome (`None`: not counted).
    pub fn report_group(self) -> Option<ReportGroup> {
        match self {
            AttemptOutcome::Uploaded => Some(ReportGroup::Recovered),
            AttemptOutcome::Failed | AttemptOutcome::Review => Some(ReportGroup::FailedAgain),
            AttemptOutcome::PermanentlyFailed => Some(ReportGroup::PermanentFailure),
            AttemptOutcome::Finalized => Some(ReportGroup::Finalized),
            AttemptOutcome::Superseded | AttemptOutcome::Forced | AttemptOutcome::Purged => None,
        }
    }

    /// Was this an attempt (a download and upload were tried)?
    pub fn is_attempt(self) -> bool {
        self.report_group()
            .is_some_and(|g| g != ReportGroup::Finalized)
    }
}

/// The retry report's groups of attempt-log outcomes (`venue_image_retry_report`,
/// `venue_image_recovery_timeline`): every group but `Finalized` is an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReportGroup {
    /// The attempt uploaded the image.
    Recovered,
    /// The attempt failed; the image is queued again or left for review.
    FailedAgain,
    /// The attempt made the image `permanently_failed`.
    PermanentFailure,
    /// The scan made a `failed` image `permanently_failed` (not an attempt).
    Finalized,
}

impl ReportGroup {
    /// The SQL spelling (what `venue_image_outcome_group` returns).
    pub fn as_str(self) -> &'static str {
        match self {
            ReportGroup::Recovered => "recovered",
            ReportGroup::FailedAgain => "failed_again",
            ReportGroup::PermanentFailure => "permanent_failure",
            ReportGroup::Finalized => "finalized",
        }
    }
}

/// What write-back answers for one reported outcome (`venue_image_record_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WriteBackStatus {
    /// The image is now `uploaded`.
    Uploaded,
    /// The image is still `failed` (queued again, or left for review).
    Failed,
    /// The image is now `permanently_failed`.
    PermanentlyFailed,
    /// The application removed, replaced or finished the image: nothing changed in it.
    Superseded,
    /// The lease token is wrong or expired and re-claimed: nothing changed.
    Stale,
}

impl WriteBackStatus {
    /// Every value.
    pub const ALL: [WriteBackStatus; 5] = [
        WriteBackStatus::Uploaded,
        WriteBackStatus::Failed,
        WriteBackStatus::PermanentlyFailed,
        WriteBackStatus::Superseded,
        WriteBackStatus::Stale,
    ];

    /// The SQL spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            WriteBackStatus::Uploaded => "uploaded",
            WriteBackStatus::Failed => "failed",
            WriteBackStatus::PermanentlyFailed => "permanently_failed",
            WriteBackStatus::Superseded => "superseded",
            WriteBackStatus::Stale => "stale",
        }
    }

    /// Parses the SQL spelling.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// The states of a queue job (`venue_image_retry_queue.state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum QueueState {
    /// Claimable now.
    Due,
    /// Waiting for its backoff to end.
    Waiting,
    /// Leased by an uploader.
    Leased,
    /// Its provider (or everything) is paused.
    Paused,
}

impl QueueState {
    /// Every value.
    pub const ALL: [QueueState; 4] = [
        QueueState::Due,
        QueueState::Waiting,
        QueueState::Leased,
        QueueState::Paused,
    ];

    /// The SQL spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            QueueState::Due => "due",
            QueueState::Waiting => "waiting",
            QueueState::Leased => "leased",
            QueueState::Paused => "paused",
        }
    }

    /// Parses the SQL spelling.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

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
        (key("upload_status"), Node::str("permanently_failed")),
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

/// The copies of one image (same identity) in an array.
fn copies<'a>(arr: Container<'a>, hash: &UrlHash) -> Result<Vec<Element<'a>>, ImageError> {
    let mut out = Vec::new();
    for e in elements(require_array(arr)?) {
        let Ok(e) = e? else { continue };
        if e.hash().as_ref() == Some(hash) {
            out.push(e);
        }
    }
    Ok(out)
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
                        (key("upload_status"), Node::str("uploaded")),
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
        "permanently_failed"
    } else {
        "failed"
    };
    let mut set = vec![
        (key("upload_status"), Node::str(status)),
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
/// [`MAX_DEPTH`](crate::jsonb::MAX_DEPTH) levels is refused with
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

/// A numeric node from decimal text (for timestamps and rates written by callers).
pub fn number(text: &str) -> Option<Node<'static>> {
    encode_decimal(text).ok().map(|b| Node::Num(Cow::Owned(b)))
}

#[cfg(test)]
mod tests;
