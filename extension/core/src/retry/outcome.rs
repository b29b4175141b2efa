//! The outcome of one attempt as the uploader reports it: one serde type, written by the
//! uploader and read by `venue_image_record_results`, and the validated form the
//! lifecycle applies. Bad values are refused here with a message naming the field
//! (SQLSTATE 22023 in SQL), so nothing unusable reaches a venue's array.

use crate::redact::{hex_value, percent_decode_fully};
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
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct OutcomeError(pub String);

fn bad(m: impl Into<String>) -> OutcomeError {
    OutcomeError(m.into())
}

fn printable(s: &str) -> bool {
    !s.chars().any(|c| c.is_control() || c.is_whitespace())
}

/// Characters no stored URL or path may hold: quotes and angle brackets (they end an HTML
/// attribute), the backslash (a path separator to some parsers), and the others URL
/// parsers or HTML treat differently (`` ` { } | ^ ``).
const UNSAFE: &[u8] = b"\"'<>\\`{}|^";

/// Why a URL (or path) is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UrlProblem {
    NotHttp,
    Characters,
    Escape,
    Credentials,
    Host,
    Port,
    EmptySegment,
    DotSegment,
    EncodedSeparator,
}

impl UrlProblem {
    fn message(self, what: &str) -> String {
        let why = match self {
            UrlProblem::NotHttp => "must be an http or https URL",
            UrlProblem::Characters => {
                "must be printable ASCII without spaces, quotes, angle brackets, backslashes or any of ` { } | ^"
            }
            UrlProblem::Escape => "has a malformed percent escape (% not followed by two hex digits)",
            UrlProblem::Credentials => "must not carry credentials (user@host)",
            UrlProblem::Host => {
                "must have a host: a DNS name, a dotted-decimal IPv4 address or a bracketed IPv6 address"
            }
            UrlProblem::Port => "has a bad port (1-65535)",
            UrlProblem::EmptySegment => "must not have empty path segments (//)",
            UrlProblem::DotSegment => "must not have . or .. path segments (also percent-encoded)",
            UrlProblem::EncodedSeparator => {
                "must not have percent-encoded slashes, backslashes or control characters in its path"
            }
        };
        format!("{what} {why}")
    }
}

/// An http(s) URL taken apart, after checks that make every URL parser read it the same
/// way: the scheme, the host (lower case), the port (the default one when absent) and
/// the path's segments, percent-decoded (a trailing `/` gives a last empty segment).
#[derive(Debug, Clone, PartialEq, Eq)]
struct HttpUrl {
    https: bool,
    host: String,
    port: u16,
    segments: Vec<Vec<u8>>,
    /// Whether a `?` or `#` follows the path.
    has_query_or_fragment: bool,
}

/// Printable ASCII without [`UNSAFE`] characters, and every `%` starts an escape.
fn check_characters(s: &str) -> Result<(), UrlProblem> {
    let b = s.as_bytes();
    for (i, &c) in b.iter().enumerate() {
        if !(0x21..=0x7e).contains(&c) || UNSAFE.contains(&c) {
            return Err(UrlProblem::Characters);
        }
        if c == b'%'
            && !(b.get(i + 1).copied().and_then(hex_value).is_some()
                && b.get(i + 2).copied().and_then(hex_value).is_some())
        {
            return Err(UrlProblem::Escape);
        }
    }
    Ok(())
}

/// The segments of an absolute path (`/a/b` → `a`, `b`), decoded; refuses empty segments
/// but the last, dot segments and encoded separators or control characters.
fn path_segments(path: &str) -> Result<Vec<Vec<u8>>, UrlProblem> {
    let path = path.strip_prefix('/').unwrap_or(path);
    let raw: Vec<&str> = path.split('/').collect();
    let mut out = Vec::with_capacity(raw.len());
    for (i, seg) in raw.iter().enumerate() {
        if seg.is_empty() && i + 1 < raw.len() {
            return Err(UrlProblem::EmptySegment);
        }
        let decoded = percent_decode_fully(seg.as_bytes());
        if decoded
            .iter()
            .any(|&c| c == b'/' || c == b'\\' || c < 0x20 || c == 0x7f)
        {
            return Err(UrlProblem::EncodedSeparator);
        }
        // `..;x` is `..` to servers that drop path parameters.
        let bare = decoded.split(|&c| c == b';').next().unwrap_or(&[]);
        if bare == b"." || bare == b".." {
            return Err(UrlProblem::DotSegment);
        }
        out.push(decoded);
    }
    Ok(out)
}

/// A DNS name, a canonical dotted-decimal IPv4 address, or `[IPv6]`; lower-cased.
fn check_host(host: &str) -> Result<String, UrlProblem> {
    if let Some(inner) = host.strip_prefix('[') {
        let inner = inner.strip_suffix(']').ok_or(UrlProblem::Host)?;
        let ok = inner.contains(':')
            && inner
                .bytes()
                .all(|c| c.is_ascii_hexdigit() || c == b':' || c == b'.');
        return if ok {
            Ok(host.to_ascii_lowercase())
        } else {
            Err(UrlProblem::Host)
        };
    }
    if host.is_empty()
        || host.len() > 253
        || !host
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'_'))
    {
        return Err(UrlProblem::Host);
    }
    let labels: Vec<&str> = host.split('.').collect();
    if labels.iter().any(|l| l.is_empty() || l.len() > 63) {
        return Err(UrlProblem::Host);
    }
    // A last label that starts with a digit makes WHATWG parsers read an IPv4 address
    // (in decimal, octal or hex, in 1 to 4 parts): accept the canonical form only.
    let last = labels.last().copied().unwrap_or("");
    if last.starts_with(|c: char| c.is_ascii_digit()) {
        let canonical = labels.len() == 4
            && labels.iter().all(|l| {
                l.len() <= 3
                    && l.bytes().all(|c| c.is_ascii_digit())
                    && (l.len() == 1 || !l.starts_with('0'))
                    && l.parse::<u16>().is_ok_and(|n| n <= 255)
            });
        if !canonical {
            return Err(UrlProblem::Host);
        }
    }
    Ok(host.to_ascii_lowercase())
}

impl HttpUrl {
    /// Parses and checks `url` (see [`HttpUrl`]).
    fn parse(url: &str) -> Result<HttpUrl, UrlProblem> {
        let has = |n: usize, p: &str| url.get(..n).is_some_and(|s| s.eq_ignore_ascii_case(p));
        let (https, rest) = if has(8, "https://") {
            (true, &url[8..])
        } else if has(7, "http://") {
            (false, &url[7..])
        } else {
            return Err(UrlProblem::NotHttp);
        };
        check_characters(url)?;
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, after) = rest.split_at(authority_end);
        if authority.contains('@') {
            return Err(UrlProblem::Credentials);
        }
        let (host, port) = match authority.rfind(':') {
            Some(i) if !authority[i..].contains(']') => {
                (&authority[..i], Some(&authority[i + 1..]))
            }
            _ => (authority, None),
        };
        let host = check_host(host)?;
        let port = match port {
            None => {
                if https {
                    443
                } else {
                    80
                }
            }
            Some(p) => {
                if p.is_empty() || p.len() > 5 || !p.bytes().all(|c| c.is_ascii_digit()) {
                    return Err(UrlProblem::Port);
                }
                match p.parse::<u16>() {
                    Ok(n) if n > 0 => n,
                    _ => return Err(UrlProblem::Port),
                }
            }
        };
        let path_end = after.find(['?', '#']).unwrap_or(after.len());
        let segments = path_segments(&after[..path_end])?;
        Ok(HttpUrl {
            https,
            host,
            port,
            segments,
            has_query_or_fragment: path_end < after.len(),
        })
    }

    /// Whether this URL is at `prefix` or under it: same scheme, host and port, and the
    /// prefix's path segments are the first of this one's.
    fn is_under(&self, prefix: &HttpUrl) -> bool {
        let mut want: &[Vec<u8>] = &prefix.segments;
        if let Some((last, init)) = want.split_last() {
            if last.is_empty() {
                want = init;
            }
        }
        self.https == prefix.https
            && self.host == prefix.host
            && self.port == prefix.port
            && self.segments.len() >= want.len()
            && self.segments[..want.len()] == *want
    }
}

impl<'a> Reported<'a> {
    /// A success, checked: `url` is an absolute http(s) URL of at most 2048 bytes that
    /// every URL parser reads the same way (printable ASCII without quotes, angle
    /// brackets, backslashes or `` ` { } | ^ ``; well-formed percent escapes; no
    /// credentials; a DNS name, canonical IPv4 or bracketed IPv6 host; no empty, `.` or
    /// `..` path segments, percent-encoded ones included; no encoded `/` or `\`), and,
    /// when `url_prefix` is configured, under it: same scheme, host (any case) and port
    /// (the default one when absent), and the prefix's path segments first.
    /// `imagekit_path` starts with `/` and obeys the same character and segment rules;
    /// `file_id` is short and printable.
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
        if url.len() > 2048 {
            return Err(bad("url must be at most 2048 bytes"));
        }
        let parsed = HttpUrl::parse(url).map_err(|p| bad(p.message("url")))?;
        if let Some(prefix) = url_prefix.filter(|p| !p.is_empty()) {
            let prefix_url = match HttpUrl::parse(prefix) {
                Ok(p) if !p.has_query_or_fragment => p,
                _ => {
                    return Err(bad(
                        "venue_images.imagekit_url_prefix is not a valid prefix (an http or https URL with a path, without query or fragment): no upload can be recorded until a superuser fixes it",
                    ))
                }
            };
            if !parsed.is_under(&prefix_url) {
                return Err(bad(format!(
                    "url must be under {prefix} (venue_images.imagekit_url_prefix): same scheme, host and port, and a path below the prefix's"
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
        check_characters(imagekit_path)
            .and_then(|()| path_segments(imagekit_path).map(|_| ()))
            .map_err(|p| bad(p.message("imagekit_path")))?;
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

#[cfg(test)]
mod tests;
