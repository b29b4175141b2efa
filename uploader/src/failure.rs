//! Why an attempt failed, in the terms the queue understands (`original.md`, "Error
//! types"). Every download or upload error becomes a [`Failure`]: an error type from the
//! shared vocabulary, the HTTP status when there was one, a short redacted message, and
//! what the worker should do about it.

use std::time::Duration;

/// Error types written to `error_details.error_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorType {
    /// HTTP 429.
    RateLimited,
    /// HTTP 401 (and ImageKit's 403 "cannot be authenticated").
    AuthError,
    /// HTTP 403.
    Forbidden,
    /// HTTP 404.
    NotFound,
    /// HTTP 500.
    ServerError,
    /// HTTP 502.
    BadGateway,
    /// HTTP 503.
    ServiceUnavailable,
    /// HTTP 504.
    GatewayTimeout,
    /// Any other HTTP status.
    HttpError,
    /// Connect or read timeout.
    NetworkTimeout,
    /// Other transport error (refused, reset, truncated body, TLS).
    NetworkError,
    /// Other download failure.
    DownloadFailed,
    /// Larger than the size limit (download) or ImageKit's plan limit (upload 400).
    FileTooLarge,
    /// Missing, unparsable, non-http(s), credentialed, or blocked (private address) URL.
    InvalidProviderUrl,
    /// The body is not an image (decided by magic bytes).
    NotAnImage,
    /// Anything else.
    UnknownError,
}

impl ErrorType {
    /// The string stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorType::RateLimited => "rate_limited",
            ErrorType::AuthError => "auth_error",
            ErrorType::Forbidden => "forbidden",
            ErrorType::NotFound => "not_found",
            ErrorType::ServerError => "server_error",
            ErrorType::BadGateway => "bad_gateway",
            ErrorType::ServiceUnavailable => "service_unavailable",
            ErrorType::GatewayTimeout => "gateway_timeout",
            ErrorType::HttpError => "http_error",
            ErrorType::NetworkTimeout => "network_timeout",
            ErrorType::NetworkError => "network_error",
            ErrorType::DownloadFailed => "download_failed",
            ErrorType::FileTooLarge => "file_too_large",
            ErrorType::InvalidProviderUrl => "invalid_provider_url",
            ErrorType::NotAnImage => "not_an_image",
            ErrorType::UnknownError => "unknown_error",
        }
    }

    /// The status table of the original (`venue_image_error_type` in SQL).
    pub fn from_status(status: u16) -> Self {
        match status {
            429 => ErrorType::RateLimited,
            401 => ErrorType::AuthError,
            403 => ErrorType::Forbidden,
            404 => ErrorType::NotFound,
            500 => ErrorType::ServerError,
            502 => ErrorType::BadGateway,
            503 => ErrorType::ServiceUnavailable,
            504 => ErrorType::GatewayTimeout,
            _ => ErrorType::HttpError,
        }
    }
}

impl std::fmt::Display for ErrorType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which side failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Downloading `provider_url` from the image provider.
    Download,
    /// Uploading to ImageKit.
    Upload,
}

impl Stage {
    /// Lower-case name for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Download => "download",
            Stage::Upload => "upload",
        }
    }
}

/// Whose fault it is, which decides what the worker does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// This image failed: record the attempt against it.
    Image,
    /// The service as a whole refused (ImageKit credentials or account limits): do not
    /// burn the image's attempt; release it and stop claiming until an operator acts.
    Service,
}

/// What kind of network failure a transport error was (`None` on a [`Failure`] that is
/// an HTTP response, of any status, or a refusal of our own such as an SSRF block).
/// Lets the worker tell "the image is bad" from "the network or the host is down".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NetworkKind {
    /// The host name did not resolve.
    Dns,
    /// The TCP connection was refused or reset, or the TLS handshake failed.
    Connect,
    /// The connect timeout or the whole-request timeout ran out.
    Timeout,
    /// Any other transport error (a connection closed mid-request, a body cut short).
    Other,
}

impl NetworkKind {
    /// Lower-case name for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            NetworkKind::Dns => "dns",
            NetworkKind::Connect => "connect",
            NetworkKind::Timeout => "timeout",
            NetworkKind::Other => "other",
        }
    }
}

impl std::fmt::Display for NetworkKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    /// The error type.
    pub error_type: ErrorType,
    /// HTTP status, when the failure was an HTTP response.
    pub status_code: Option<u16>,
    /// Short human-readable cause, with secrets redacted (see `crate::redact`).
    pub message: String,
    /// How long the other side asked us to wait (`Retry-After`, `X-RateLimit-Reset`).
    pub retry_after: Option<Duration>,
    /// ImageKit's `x-ik-requestId`, when the response had one.
    pub request_id: Option<String>,
    /// Download or upload.
    pub stage: Stage,
    /// Image or service.
    pub scope: Scope,
    /// For transport errors, which kind; `None` for HTTP responses and refusals.
    pub network: Option<NetworkKind>,
}

impl Failure {
    /// An image-scoped failure without status, retry hint or network kind.
    pub fn new(stage: Stage, error_type: ErrorType, message: impl Into<String>) -> Self {
        Failure {
            error_type,
            status_code: None,
            message: message.into(),
            retry_after: None,
            request_id: None,
            stage,
            scope: Scope::Image,
            network: None,
        }
    }

    /// A transport failure (no HTTP response) of this network kind.
    pub fn transport(
        stage: Stage,
        error_type: ErrorType,
        kind: NetworkKind,
        message: impl Into<String>,
    ) -> Self {
        Failure {
            network: Some(kind),
            ..Failure::new(stage, error_type, message)
        }
    }

    /// A failure from an HTTP status (error type by the status table; no network kind).
    pub fn from_status(stage: Stage, status: u16, message: impl Into<String>) -> Self {
        Failure {
            status_code: Some(status),
            ..Failure::new(stage, ErrorType::from_status(status), message)
        }
    }

    /// Should the provider (download) or ImageKit (upload) be paused for everyone?
    pub fn pauses(&self) -> bool {
        self.error_type == ErrorType::RateLimited || self.retry_after.is_some()
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} failed: {}", self.stage.as_str(), self.error_type)?;
        if let Some(s) = self.status_code {
            write!(f, " (HTTP {s})")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for Failure {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_table_matches_the_extension() {
        for (s, t) in [
            (429, "rate_limited"),
            (401, "auth_error"),
            (403, "forbidden"),
            (404, "not_found"),
            (500, "server_error"),
            (502, "bad_gateway"),
            (503, "service_unavailable"),
            (504, "gateway_timeout"),
            (418, "http_error"),
        ] {
            assert_eq!(ErrorType::from_status(s).as_str(), t);
            assert_eq!(
                venue_images_core::classify::error_type_for_status(s as i32).unwrap(),
                t
            );
        }
    }

    #[test]
    fn constructors_set_the_network_kind() {
        assert_eq!(
            Failure::new(Stage::Download, ErrorType::NotAnImage, "m").network,
            None
        );
        assert_eq!(Failure::from_status(Stage::Upload, 503, "m").network, None);
        let f = Failure::transport(
            Stage::Download,
            ErrorType::NetworkTimeout,
            NetworkKind::Timeout,
            "m",
        );
        assert_eq!(
            (f.network, f.error_type, f.scope, f.status_code),
            (
                Some(NetworkKind::Timeout),
                ErrorType::NetworkTimeout,
                Scope::Image,
                None
            )
        );
        assert_eq!(NetworkKind::Dns.to_string(), "dns");
    }
}
