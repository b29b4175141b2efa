//! The one error type of the database door.

/// A database error, with the URL's password kept out of messages.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The query or the connection failed.
    #[error("database: {0}")]
    Sql(#[from] sqlx::Error),
    /// The database is not set up for the uploader, the connection settings are wrong,
    /// or it answered something this uploader does not understand.
    #[error("{0}")]
    Setup(String),
}

impl DbError {
    /// Whether the error is the connection's, not the request's: the database is
    /// unreachable, restarting, failing over or shutting down (SQLSTATE classes 08, 57,
    /// 53; 25006 from a standby that is not promoted yet), so trying again later may
    /// succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            DbError::Sql(sqlx::Error::Database(d)) => d.code().is_some_and(|c| {
                c.starts_with("08") || c.starts_with("57") || c.starts_with("53") || c == "25006"
            }),
            DbError::Sql(
                sqlx::Error::Io(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::Protocol(_)
                | sqlx::Error::Tls(_)
                | sqlx::Error::WorkerCrashed,
            ) => true,
            _ => false,
        }
    }

    /// Whether the error is PostgreSQL's `insufficient_privilege` (42501).
    pub fn is_permission_error(&self) -> bool {
        self.sqlstate().as_deref() == Some("42501")
    }

    /// Whether the database refused the request's arguments (class 22: bad input).
    pub fn is_bad_input(&self) -> bool {
        self.sqlstate().is_some_and(|c| c.starts_with("22"))
    }

    /// The SQLSTATE, when the database answered with one.
    pub fn sqlstate(&self) -> Option<String> {
        match self {
            DbError::Sql(sqlx::Error::Database(d)) => d.code().map(|c| c.into_owned()),
            _ => None,
        }
    }

    /// The database's own message (without the `database:` prefix), for people.
    pub fn message(&self) -> String {
        match self {
            DbError::Sql(sqlx::Error::Database(d)) => d.message().to_string(),
            other => other.to_string(),
        }
    }

    pub(crate) fn shape(what: &str, e: impl std::fmt::Display) -> DbError {
        DbError::Setup(format!("{what} returned an unexpected shape: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_errors_are_transient_and_others_are_not() {
        assert!(DbError::Sql(sqlx::Error::PoolTimedOut).is_transient());
        assert!(!DbError::Setup("x".into()).is_transient());
        assert!(!DbError::Sql(sqlx::Error::RowNotFound).is_transient());
        assert_eq!(DbError::Setup("x".into()).sqlstate(), None);
    }
}
