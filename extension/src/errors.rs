//! Every error the extension raises, each with a real SQLSTATE (never XX000).

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::PgSqlErrorCode;
use venue_images_core::image::ImageError;
use venue_images_core::jsonb::TooDeep;

/// Errors of the extension's SQL functions.
#[derive(Debug)]
pub enum VenueError {
    /// Bad argument value (22023).
    InvalidParameter(String),
    /// A required argument is NULL (22004).
    NullArgument(String),
    /// Bad jsonb input (22023), or corrupt bytes (XX001).
    Image(ImageError),
    /// A setting has an unusable value (22023).
    BadSetting {
        /// Setting name.
        name: &'static str,
        /// What is wrong.
        problem: String,
    },
    /// The configured relation does not exist (42P01).
    UndefinedTable(String),
    /// A configured column does not exist (42703).
    UndefinedColumn(String),
    /// A configured column has the wrong type (42804).
    WrongType(String),
    /// A function used on the wrong kind of object, e.g. the enqueue trigger on a table
    /// other than the configured venues table (42809).
    WrongObject(String),
    /// The database's extension version is not the library's (55000): the package was
    /// upgraded but `ALTER EXTENSION venue_images UPDATE` has not run yet.
    NotReady(String),
    /// A write on a server in recovery, a hot standby (25006).
    ReadOnly(String),
    /// A jsonb value is nested deeper than the core copies level by level (54001,
    /// `statement_too_complex`: PostgreSQL's class for "stack depth limit exceeded").
    TooDeep(TooDeep),
    /// An internal query failed (38000).
    Spi(String),
}

impl std::fmt::Display for VenueError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VenueError::InvalidParameter(m) => f.write_str(m),
            VenueError::NullArgument(name) => write!(f, "{name} must not be NULL"),
            VenueError::Image(e) => write!(f, "{e}"),
            VenueError::TooDeep(t) => write!(f, "{t}"),
            VenueError::BadSetting { name, problem } => write!(f, "setting {name} {problem}"),
            VenueError::UndefinedTable(m)
            | VenueError::UndefinedColumn(m)
            | VenueError::WrongType(m)
            | VenueError::WrongObject(m)
            | VenueError::NotReady(m)
            | VenueError::ReadOnly(m)
            | VenueError::Spi(m) => f.write_str(m),
        }
    }
}

impl VenueError {
    /// The SQLSTATE.
    pub fn code(&self) -> PgSqlErrorCode {
        match self {
            VenueError::InvalidParameter(_) | VenueError::BadSetting { .. } => {
                PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE
            }
            VenueError::NullArgument(_) => PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
            VenueError::Image(ImageError::Malformed(_)) => PgSqlErrorCode::ERRCODE_DATA_CORRUPTED,
            VenueError::Image(ImageError::TooLarge(_)) => {
                PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED
            }
            VenueError::TooDeep(_) | VenueError::Image(ImageError::TooDeep(_)) => {
                PgSqlErrorCode::ERRCODE_STATEMENT_TOO_COMPLEX
            }
            VenueError::Image(_) => PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            VenueError::UndefinedTable(_) => PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE,
            VenueError::UndefinedColumn(_) => PgSqlErrorCode::ERRCODE_UNDEFINED_COLUMN,
            VenueError::WrongType(_) => PgSqlErrorCode::ERRCODE_DATATYPE_MISMATCH,
            VenueError::WrongObject(_) => PgSqlErrorCode::ERRCODE_WRONG_OBJECT_TYPE,
            VenueError::NotReady(_) => PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            VenueError::ReadOnly(_) => PgSqlErrorCode::ERRCODE_READ_ONLY_SQL_TRANSACTION,
            VenueError::Spi(_) => PgSqlErrorCode::ERRCODE_EXTERNAL_ROUTINE_EXCEPTION,
        }
    }

    /// Converts into a report PostgreSQL raises with the right SQLSTATE.
    pub fn report(self) -> ErrorReport {
        let hint = match &self {
            VenueError::BadSetting { .. }
            | VenueError::UndefinedTable(_)
            | VenueError::UndefinedColumn(_) => {
                Some("check the venue_images.* settings (SHOW venue_images.venues_table)")
            }
            _ => None,
        };
        let r = ErrorReport::new(self.code(), self.to_string(), "venue_images");
        match hint {
            Some(h) => r.set_hint(h),
            None => r,
        }
    }
}

impl From<ImageError> for VenueError {
    fn from(e: ImageError) -> Self {
        match e {
            ImageError::TooDeep(t) => VenueError::TooDeep(t),
            e => VenueError::Image(e),
        }
    }
}

impl From<TooDeep> for VenueError {
    fn from(t: TooDeep) -> Self {
        VenueError::TooDeep(t)
    }
}

impl From<venue_images_core::jsonb::Malformed> for VenueError {
    fn from(e: venue_images_core::jsonb::Malformed) -> Self {
        VenueError::Image(ImageError::Malformed(e))
    }
}

impl From<venue_images_core::jsonb::EncodeError> for VenueError {
    fn from(e: venue_images_core::jsonb::EncodeError) -> Self {
        VenueError::Image(ImageError::TooLarge(e.0))
    }
}

impl From<pgrx::spi::Error> for VenueError {
    fn from(e: pgrx::spi::Error) -> Self {
        VenueError::Spi(format!("internal query failed: {e}"))
    }
}

/// Result of the extension's functions: errors become reports with SQLSTATEs.
pub type PgResult<T> = Result<T, ErrorReport>;

/// Shorthand to convert a `Result<T, VenueError>` into a [`PgResult`].
pub trait Report<T> {
    /// Maps the error to its report.
    fn report(self) -> PgResult<T>;
}

impl<T, E: Into<VenueError>> Report<T> for Result<T, E> {
    fn report(self) -> PgResult<T> {
        self.map_err(|e| e.into().report())
    }
}
