//! The stored vocabulary: the words the queue's tables and functions store and return.

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
