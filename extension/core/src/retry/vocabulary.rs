//! The stored vocabulary: the words the queue's tables, views and functions store and
//! return, each spelled once, in its enum's `as_str`.
//!
//! The table of every vocabulary, those of [`Status`] and
//! [`ErrorClass`](crate::classify::ErrorClass) included, is in [`crate::retry`]'s docs.
//!
//! A word two vocabularies share means the same thing in both, so it is spelled by one
//! and borrowed by the other: the image's statuses by [`Status`] (an attempt's outcome and
//! write-back's answer are the status the image now has), `review` by [`Lifecycle`],
//! `superseded` and `finalized` by [`AttemptOutcome`].
//!
//! Where SQL spells these words (the attempt log's CHECK constraint, the queue view's
//! states, the report's groups in `extension/src/queue/schema.sql`), this module's tests
//! read the SQL and pin it to the enum.

use crate::image::Status;

/// Where an element stands in the retry lifecycle, as `venue_image_venue_images` reports
/// it (its `lifecycle` column): the words of [`State`](super::State), plus `skipped` for
/// an element the queue cannot read ([`Skip`](super::Skip)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lifecycle {
    /// Not a failure (`uploaded`, `skipped_dev`, `external`, no status): not the queue's.
    NotFailed,
    /// `failed` and retryable: queued, and attempted when due.
    Queued,
    /// `failed`, never retried automatically: the scan makes it `permanently_failed`.
    ToFinalize,
    /// `failed`, not retried automatically: left for manual review.
    Review,
    /// `permanently_failed`: terminal until a force retry.
    PermanentlyFailed,
    /// A key the queue relies on has a type it cannot use: left untouched.
    Skipped,
}

impl Lifecycle {
    /// Every value, in the order the lifecycle runs (`skipped`, outside it, last).
    pub const ALL: [Lifecycle; 6] = [
        Lifecycle::NotFailed,
        Lifecycle::Queued,
        Lifecycle::ToFinalize,
        Lifecycle::Review,
        Lifecycle::PermanentlyFailed,
        Lifecycle::Skipped,
    ];

    /// The SQL spelling. `permanently_failed` is the image's status ([`Status`]).
    pub const fn as_str(self) -> &'static str {
        match self {
            Lifecycle::NotFailed => "not_failed",
            Lifecycle::Queued => "queued",
            Lifecycle::ToFinalize => "to_finalize",
            Lifecycle::Review => "review",
            Lifecycle::PermanentlyFailed => Status::PermanentlyFailed.as_str(),
            Lifecycle::Skipped => "skipped",
        }
    }

    /// The value with this spelling (`None` for any other text).
    pub fn parse(s: &str) -> Option<Lifecycle> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
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
    /// Every value, in the order of the table's CHECK constraint (a test pins it).
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

    /// The stored spelling. `uploaded`, `failed` and `permanently_failed` are the status
    /// the attempt left the image in ([`Status`]), `review` the lifecycle state
    /// ([`Lifecycle`]).
    pub const fn as_str(self) -> &'static str {
        match self {
            AttemptOutcome::Uploaded => Status::Uploaded.as_str(),
            AttemptOutcome::Failed => Status::Failed.as_str(),
            AttemptOutcome::Review => Lifecycle::Review.as_str(),
            AttemptOutcome::PermanentlyFailed => Status::PermanentlyFailed.as_str(),
            AttemptOutcome::Superseded => "superseded",
            AttemptOutcome::Finalized => "finalized",
            AttemptOutcome::Forced => "forced",
            AttemptOutcome::Purged => "purged",
        }
    }

    /// The value with this stored spelling (`None` for any other text).
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
    /// Every value, in the order of the report's columns.
    pub const ALL: [ReportGroup; 4] = [
        ReportGroup::Recovered,
        ReportGroup::FailedAgain,
        ReportGroup::PermanentFailure,
        ReportGroup::Finalized,
    ];

    /// The SQL spelling (what `venue_image_outcome_group` returns). `finalized` is the
    /// group's one outcome ([`AttemptOutcome::Finalized`]).
    pub const fn as_str(self) -> &'static str {
        match self {
            ReportGroup::Recovered => "recovered",
            ReportGroup::FailedAgain => "failed_again",
            ReportGroup::PermanentFailure => "permanent_failure",
            ReportGroup::Finalized => AttemptOutcome::Finalized.as_str(),
        }
    }

    /// The value with this SQL spelling (`None` for any other text).
    pub fn parse(s: &str) -> Option<ReportGroup> {
        Self::ALL.into_iter().find(|g| g.as_str() == s)
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

    /// The SQL spelling. `uploaded`, `failed` and `permanently_failed` are the image's new
    /// status ([`Status`]); `superseded` is what the attempt log records too
    /// ([`AttemptOutcome::Superseded`]).
    pub const fn as_str(self) -> &'static str {
        match self {
            WriteBackStatus::Uploaded => Status::Uploaded.as_str(),
            WriteBackStatus::Failed => Status::Failed.as_str(),
            WriteBackStatus::PermanentlyFailed => Status::PermanentlyFailed.as_str(),
            WriteBackStatus::Superseded => AttemptOutcome::Superseded.as_str(),
            WriteBackStatus::Stale => "stale",
        }
    }

    /// Parses the SQL spelling (`None` for any other text).
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
    /// Every value (the view tests them in another order: leased, paused, due, waiting).
    pub const ALL: [QueueState; 4] = [
        QueueState::Due,
        QueueState::Waiting,
        QueueState::Leased,
        QueueState::Paused,
    ];

    /// The SQL spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            QueueState::Due => "due",
            QueueState::Waiting => "waiting",
            QueueState::Leased => "leased",
            QueueState::Paused => "paused",
        }
    }

    /// Parses the SQL spelling (`None` for any other text).
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

#[cfg(test)]
mod tests;
