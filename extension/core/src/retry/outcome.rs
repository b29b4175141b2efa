//! The outcome of one attempt as the uploader reports it: one serde type, written by the
//! uploader and read by `venue_image_record_results`, and the validated form the
//! lifecycle applies. Bad values are refused here with a message naming the field
//! (SQLSTATE 22023 in SQL), so nothing unusable reaches a venue's array.

use serde::{Deserialize, Serialize};

/// One outcome, as JSON: either the upload's `url` and `imagekit_path` (success) or an
/// `error_type` (failure).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutcomeRecord {
    /// The queue job.
    pub job_id: i64,
    /// The lease token from the claim (fences the write).
    pub lease_token: String,
    /// Success: the ImageKit URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Success: the ImageKit file path (`/venues/<slug>/<file>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imagekit_path: Option<String>,
    /// Success: the ImageKit file id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_id: Option<String>,
    /// Failure: the error type (`rate_limited`, `not_found`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_type: Option<String>,
    /// Failure: the HTTP status, if there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<i64>,
    /// Failure: a short message (redacted again and capped when stored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Failure: how long the other side asked us to wait, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_seconds: Option<f64>,
}

/// A validated outcome.
#[derive(Debug, Clone, PartialEq)]
pub enum Reported<'a> {
    /// Uploaded to ImageKit.
    Uploaded {
        /// ImageKit URL (http or https).
        url: &'a str,
        /// ImageKit path.
        imagekit_path: &'a str,
        /// ImageKit file id.
        file_id: Option<&'a str>,
    },
    /// The attempt failed.
    Failed {
        /// Error type.
        error_type: &'a str,
        /// HTTP status (100–999).
        status_code: Option<i32>,
        /// Message as reported (cleaned when stored).
        message: &'a str,
        /// Wait hint, seconds (finite, not negative).
        retry_after_seconds: Option<f64>,
    },
}

/// An outcome that cannot be recorded, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutcomeError(pub String);

impl std::fmt::Display for OutcomeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for OutcomeError {}

fn bad(m: impl Into<String>) -> OutcomeError {
    OutcomeError(m.into())
}

fn printable(s: &str) -> bool {
    !s.chars().any(|c| c.is_control() || c.is_whitespace())
}

impl<'a> Reported<'a> {
    /// A success, checked: `url` is an absolute http(s) URL of at most 2048 bytes without
    /// spaces or control characters, starting with `url_prefix` when one is configured;
    /// `imagekit_path` starts with `/`; `file_id` is short and printable.
    pub fn uploaded(
        url: &'a str,
        imagekit_path: &'a str,
        file_id: Option<&'a str>,
        url_prefix: Option<&str>,
    ) -> Result<Self, OutcomeError> {
        let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
        if !(lower.starts_with("https://") || lower.starts_with("http://")) {
            return Err(bad(format!(
                "url must be an http or https URL, got {:?}",
                crate::redact::redact_text(&url.chars().take(40).collect::<String>())
            )));
        }
        let rest = url.find("://").map(|i| &url[i + 3..]).unwrap_or("");
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        let host = authority.rsplit('@').next().unwrap_or("");
        if url.len() > 2048 || !printable(url) || host.is_empty() || host.starts_with(':') {
            return Err(bad(
                "url must be at most 2048 bytes, with a host and without spaces or control characters",
            ));
        }
        if let Some(prefix) = url_prefix.filter(|p| !p.is_empty()) {
            if !url.starts_with(prefix) {
                return Err(bad(format!(
                    "url must start with {prefix} (venue_images.imagekit_url_prefix)"
                )));
            }
        }
        if !imagekit_path.starts_with('/')
            || imagekit_path.len() > 1024
            || !printable(imagekit_path)
        {
            return Err(bad(
                "imagekit_path must start with / and be at most 1024 bytes without spaces or control characters",
            ));
        }
        if let Some(id) = file_id {
            if id.len() > 200 || !printable(id) {
                return Err(bad(
                    "file_id must be at most 200 bytes without spaces or control characters",
                ));
            }
        }
        Ok(Reported::Uploaded {
            url,
            imagekit_path,
            file_id: file_id.filter(|f| !f.is_empty()),
        })
    }

    /// A failure, checked: `error_type` is 1–64 characters of `[A-Za-z0-9_.-]`,
    /// `status_code` an HTTP status, `retry_after_seconds` finite and not negative.
    pub fn failed(
        error_type: &'a str,
        status_code: Option<i64>,
        message: &'a str,
        retry_after_seconds: Option<f64>,
    ) -> Result<Self, OutcomeError> {
        let error_type = error_type.trim();
        if error_type.is_empty()
            || error_type.len() > 64
            || !error_type
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
        {
            return Err(bad(
                "error_type must be a name of 1-64 letters, digits, '_', '.' or '-' (e.g. rate_limited)",
            ));
        }
        let status_code = match status_code {
            None => None,
            Some(s @ 100..=999) => Some(s as i32),
            Some(s) => {
                return Err(bad(format!(
                    "status_code must be an HTTP status (100-999) or null, got {s}"
                )))
            }
        };
        if let Some(r) = retry_after_seconds {
            if !r.is_finite() || r < 0.0 {
                return Err(bad(
                    "retry_after_seconds must be a finite number, not negative",
                ));
            }
        }
        Ok(Reported::Failed {
            error_type,
            status_code,
            message,
            retry_after_seconds,
        })
    }
}

impl OutcomeRecord {
    /// A success record.
    pub fn uploaded(
        job_id: i64,
        lease_token: impl Into<String>,
        url: impl Into<String>,
        imagekit_path: impl Into<String>,
        file_id: Option<String>,
    ) -> Self {
        OutcomeRecord {
            job_id,
            lease_token: lease_token.into(),
            url: Some(url.into()),
            imagekit_path: Some(imagekit_path.into()),
            file_id,
            error_type: None,
            status_code: None,
            message: None,
            retry_after_seconds: None,
        }
    }

    /// A failure record.
    pub fn failed(
        job_id: i64,
        lease_token: impl Into<String>,
        error_type: impl Into<String>,
        status_code: Option<i64>,
        message: impl Into<String>,
        retry_after_seconds: Option<f64>,
    ) -> Self {
        OutcomeRecord {
            job_id,
            lease_token: lease_token.into(),
            url: None,
            imagekit_path: None,
            file_id: None,
            error_type: Some(error_type.into()),
            status_code,
            message: Some(message.into()),
            retry_after_seconds,
        }
    }

    /// The validated outcome.
    pub fn reported(&self, url_prefix: Option<&str>) -> Result<Reported<'_>, OutcomeError> {
        match (&self.url, &self.error_type) {
            (Some(url), None) => {
                let path = self.imagekit_path.as_deref().ok_or_else(|| {
                    bad(format!(
                        "job {}: an upload needs imagekit_path",
                        self.job_id
                    ))
                })?;
                Reported::uploaded(url, path, self.file_id.as_deref(), url_prefix)
            }
            (None, Some(error_type)) => Reported::failed(
                error_type,
                self.status_code,
                self.message.as_deref().unwrap_or(""),
                self.retry_after_seconds,
            ),
            (Some(_), Some(_)) => Err(bad(format!(
                "job {}: an outcome has either url (uploaded) or error_type (failed), not both",
                self.job_id
            ))),
            (None, None) => Err(bad(format!(
                "job {}: an outcome needs url (uploaded) or error_type (failed)",
                self.job_id
            ))),
        }
        .map_err(|e| {
            if e.0.starts_with("job ") {
                e
            } else {
                bad(format!("job {}: {}", self.job_id, e.0))
            }
        })
    }
}
