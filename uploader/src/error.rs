//! A command's failure, [`AppError`]: the message for the user and the exit status it
//! ends the process with (from [`crate::exit`]).

use crate::cli::ImageKitSettingsError;
use crate::db::DbError;
use crate::exit::Exit;
use crate::redact::redact_text;

/// A command's failure: message for the user and the exit status.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct AppError {
    /// What went wrong (secrets redacted).
    pub message: String,
    /// Process exit status.
    pub exit: Exit,
}

impl AppError {
    /// A configuration, database or runtime failure (exit status 1).
    pub fn new(message: impl Into<String>) -> Self {
        AppError {
            message: redact_text(&message.into(), &[]),
            exit: Exit::Failure,
        }
    }

    /// A usage error (exit status 2): settings refused before anything starts.
    pub fn usage(message: impl Into<String>) -> Self {
        AppError {
            message: redact_text(&message.into(), &[]),
            exit: Exit::Usage,
        }
    }

    /// A database error, with a hint at the role it needs when permission was denied.
    pub fn db(e: DbError, role: &str) -> Self {
        if e.is_permission_error() {
            AppError::new(format!(
                "{e}\n(this command needs a login with {role}: GRANT {role} TO <your login>; see sql/002_roles.sql)"
            ))
        } else {
            AppError::new(e.to_string())
        }
    }
}

impl From<ImageKitSettingsError> for AppError {
    fn from(e: ImageKitSettingsError) -> Self {
        match e {
            ImageKitSettingsError::Usage(m) => AppError::usage(m),
            ImageKitSettingsError::Config(m) => AppError::new(m),
        }
    }
}

impl From<DbError> for AppError {
    fn from(e: DbError) -> Self {
        AppError::new(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_ends_with_its_exit_status() {
        assert_eq!(AppError::new("no database").exit, Exit::Failure);
        assert_eq!(AppError::usage("http endpoint").exit, Exit::Usage);
        assert_eq!(
            AppError::from(ImageKitSettingsError::Usage("twice".into())).exit,
            Exit::Usage
        );
        assert_eq!(
            AppError::from(ImageKitSettingsError::Config("unreadable".into())).exit,
            Exit::Failure
        );
        let e = AppError::db(
            DbError::Setup("no such function".into()),
            "venue_image_admin",
        );
        assert_eq!(e.exit, Exit::Failure);
        assert!(!e.message.contains("GRANT"), "{}", e.message);
    }
}
