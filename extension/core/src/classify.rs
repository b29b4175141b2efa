//! Error types and their classes (`original.md`, "Error types"; `sql-api.md`, "Settings").

/// Built-in transient error types. Unlike the original, `server_error` and
/// `network_error` are retried (the original left them ambiguous by accident).
pub const BUILTIN_TRANSIENT: &[&str] = &[
    "rate_limited",
    "service_unavailable",
    "network_timeout",
    "gateway_timeout",
    "bad_gateway",
    "server_error",
    "network_error",
];

/// Built-in permanent error types.
pub const BUILTIN_PERMANENT: &[&str] = &[
    "not_found",
    "forbidden",
    "auth_error",
    "file_too_large",
    "invalid_provider_url",
    "not_an_image",
];

/// How an error type is treated by the retry logic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// Worth retrying.
    Transient,
    /// Never retried.
    Permanent,
    /// A known, non-empty type in neither list: left for manual review.
    Ambiguous,
    /// No error type at all (NULL or empty).
    Unknown,
}

impl ErrorClass {
    /// Every value.
    pub const ALL: [ErrorClass; 4] = [
        ErrorClass::Transient,
        ErrorClass::Permanent,
        ErrorClass::Ambiguous,
        ErrorClass::Unknown,
    ];

    /// The SQL spelling (what `venue_image_classify_error` returns).
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Transient => "transient",
            ErrorClass::Permanent => "permanent",
            ErrorClass::Ambiguous => "ambiguous",
            ErrorClass::Unknown => "unknown",
        }
    }

    /// The value with this SQL spelling (`None` for any other text).
    pub fn parse(s: &str) -> Option<ErrorClass> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// The two configured lists. A type listed in both counts as permanent (the safe side:
/// it is never retried).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classifier {
    transient: Vec<String>,
    permanent: Vec<String>,
}

impl Default for Classifier {
    fn default() -> Self {
        Self::builtin()
    }
}

/// Splits a comma list: items are trimmed, empty items ignored.
pub fn parse_list(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

impl Classifier {
    /// The built-in lists.
    pub fn builtin() -> Self {
        Classifier {
            transient: BUILTIN_TRANSIENT.iter().map(|s| s.to_string()).collect(),
            permanent: BUILTIN_PERMANENT.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// Lists from settings; `None` keeps the built-in list, `Some` replaces it.
    pub fn from_settings(transient: Option<&str>, permanent: Option<&str>) -> Self {
        let mut c = Self::builtin();
        if let Some(t) = transient {
            c.transient = parse_list(t);
        }
        if let Some(p) = permanent {
            c.permanent = parse_list(p);
        }
        c
    }

    /// Classifies raw bytes of an error type (as found in jsonb).
    pub fn classify_bytes(&self, error_type: Option<&[u8]>) -> ErrorClass {
        match error_type {
            None => ErrorClass::Unknown,
            Some([]) => ErrorClass::Unknown,
            Some(b) => {
                if self.permanent.iter().any(|p| p.as_bytes() == b) {
                    ErrorClass::Permanent
                } else if self.transient.iter().any(|t| t.as_bytes() == b) {
                    ErrorClass::Transient
                } else {
                    ErrorClass::Ambiguous
                }
            }
        }
    }

    /// Classifies an error type; NULL or empty gives `Unknown`.
    pub fn classify(&self, error_type: Option<&str>) -> ErrorClass {
        self.classify_bytes(error_type.map(str::as_bytes))
    }

    /// The transient list in effect.
    pub fn transient(&self) -> &[String] {
        &self.transient
    }

    /// The permanent list in effect.
    pub fn permanent(&self) -> &[String] {
        &self.permanent
    }
}

/// An HTTP status outside `100..=999` is not a status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadStatus(pub i32);

impl std::fmt::Display for BadStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "HTTP status must be a three-digit code (100-999), got {}",
            self.0
        )
    }
}

impl std::error::Error for BadStatus {}

/// The error type of a failed HTTP exchange, by status (the original's status table).
pub fn error_type_for_status(status: i32) -> Result<&'static str, BadStatus> {
    if !(100..=999).contains(&status) {
        return Err(BadStatus(status));
    }
    Ok(match status {
        429 => "rate_limited",
        401 => "auth_error",
        403 => "forbidden",
        404 => "not_found",
        500 => "server_error",
        502 => "bad_gateway",
        503 => "service_unavailable",
        504 => "gateway_timeout",
        _ => "http_error",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_classes() {
        let c = Classifier::builtin();
        assert_eq!(c.classify(Some("rate_limited")), ErrorClass::Transient);
        assert_eq!(c.classify(Some("server_error")), ErrorClass::Transient);
        assert_eq!(c.classify(Some("network_error")), ErrorClass::Transient);
        assert_eq!(c.classify(Some("not_found")), ErrorClass::Permanent);
        assert_eq!(c.classify(Some("not_an_image")), ErrorClass::Permanent);
        assert_eq!(c.classify(Some("http_error")), ErrorClass::Ambiguous);
        assert_eq!(c.classify(Some("Rate_Limited")), ErrorClass::Ambiguous);
        assert_eq!(c.classify(Some("")), ErrorClass::Unknown);
        assert_eq!(c.classify(None), ErrorClass::Unknown);
    }

    #[test]
    fn settings_replace_lists_and_permanent_wins() {
        let c = Classifier::from_settings(Some(" a , b,,"), Some("b,not_found"));
        assert_eq!(c.classify(Some("a")), ErrorClass::Transient);
        assert_eq!(c.classify(Some("b")), ErrorClass::Permanent);
        assert_eq!(c.classify(Some("rate_limited")), ErrorClass::Ambiguous);
        let empty = Classifier::from_settings(Some(""), None);
        assert_eq!(empty.classify(Some("rate_limited")), ErrorClass::Ambiguous);
    }

    #[test]
    fn status_table() {
        assert_eq!(error_type_for_status(429), Ok("rate_limited"));
        assert_eq!(error_type_for_status(401), Ok("auth_error"));
        assert_eq!(error_type_for_status(403), Ok("forbidden"));
        assert_eq!(error_type_for_status(404), Ok("not_found"));
        assert_eq!(error_type_for_status(500), Ok("server_error"));
        assert_eq!(error_type_for_status(502), Ok("bad_gateway"));
        assert_eq!(error_type_for_status(503), Ok("service_unavailable"));
        assert_eq!(error_type_for_status(504), Ok("gateway_timeout"));
        assert_eq!(error_type_for_status(418), Ok("http_error"));
        assert_eq!(error_type_for_status(200), Ok("http_error"));
        assert_eq!(error_type_for_status(0), Err(BadStatus(0)));
        assert_eq!(error_type_for_status(1000), Err(BadStatus(1000)));
    }
}
