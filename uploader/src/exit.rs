//! The process's exit statuses.

/// How `venue-image-uploader` ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Done.
    Ok = 0,
    /// A configuration or database error, or a failed `check`.
    Failure = 1,
    /// A usage error (clap exits with it).
    Usage = 2,
    /// ImageKit refused the credentials or the account: nothing can be uploaded until an
    /// operator acts; no image was charged an attempt.
    ImageKitRefused = 3,
}

impl Exit {
    /// The status code.
    pub fn code(self) -> i32 {
        self as i32
    }
}

impl From<Exit> for std::process::ExitCode {
    fn from(e: Exit) -> Self {
        std::process::ExitCode::from(e as u8)
    }
}
