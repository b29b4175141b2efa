//! The ImageKit upload client (`spec/imagekit.md`, "ImageKit Upload API").
//!
//! - One `multipart/form-data` POST per image: the bytes as a binary `file` part (no
//!   base64 inflation, no second fetch by ImageKit), `fileName`, `folder`, `tags`,
//!   `useUniqueFileName=false` and `overwriteFile=true`. With a fixed folder and name
//!   that makes a retried upload replace the same file instead of creating a duplicate.
//! - HTTP Basic auth with the private key as user and an empty password. The key never
//!   appears in a log line or an error message.
//! - Retries like the official SDKs: connection errors, 408, 409, 429 and ≥500, up to
//!   `max_retries` times, backoff `retry_base·2^n` capped at 8 s with jitter, honouring
//!   `retry-after-ms`, `retry-after` and `X-RateLimit-Reset`. A wait longer than the cap
//!   is not slept through here: the failure goes back to the worker, which pauses
//!   ImageKit for every uploader.
//! - Errors become typed [`Failure`]s: 401 and 403 are the account's fault
//!   ([`Scope::Service`]: the image keeps its attempt), a 400 about the file size is
//!   `file_too_large`, 429 is `rate_limited` with the reset time.
//! - Every response's `x-ik-requestId` is logged and kept on the failure.
//! - Proxy environment variables (`HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY`) are ignored:
//!   a proxy is used only when [`ImageKitConfig::proxy`] names one. Transport errors
//!   carry their [`NetworkKind`](crate::failure::NetworkKind).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::multipart::{Form, Part};
use serde::Deserialize;
use tracing::{debug, warn};

use crate::backoff::{Backoff, Jitter};
use crate::failure::{ErrorType, Failure, Scope, Stage};
use crate::fetch::{parse_retry_after, transport_kind, SystemResolver};
use crate::redact::{redact_text, redact_url};

/// The longest wait slept through inside one upload; longer ones pause ImageKit instead.
const MAX_INLINE_WAIT: Duration = Duration::from_secs(8);

/// Settings of the client.
#[derive(Clone)]
pub struct ImageKitConfig {
    /// The upload endpoint.
    pub upload_url: String,
    /// The private API key.
    pub private_key: String,
    /// Time limit of one request (connect + upload + response).
    pub timeout: Duration,
    /// Retries after the first try (the SDKs: 2).
    pub max_retries: u32,
    /// First backoff step (the SDKs: 0.5 s).
    pub retry_base: Duration,
    /// Proxy for every request (`http://`, `https://` or `socks5://` URL). `None`: connect
    /// directly, whatever `HTTP_PROXY`/`HTTPS_PROXY`/`ALL_PROXY` say.
    pub proxy: Option<String>,
}

impl std::fmt::Debug for ImageKitConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageKitConfig")
            .field("upload_url", &self.upload_url)
            .field("private_key", &"REDACTED")
            .field("timeout", &self.timeout)
            .field("max_retries", &self.max_retries)
            .field("retry_base", &self.retry_base)
            .field("proxy", &self.proxy.as_deref().map(redact_url))
            .finish()
    }
}

impl Default for ImageKitConfig {
    fn default() -> Self {
        ImageKitConfig {
            upload_url: "https://upload.imagekit.io/api/v1/files/upload".into(),
            private_key: String::new(),
            timeout: Duration::from_secs(60),
            max_retries: 2,
            retry_base: Duration::from_millis(500),
            proxy: None,
        }
    }
}

/// One upload.
#[derive(Debug, Clone)]
pub struct UploadRequest<'a> {
    /// The image.
    pub bytes: Bytes,
    /// `fileName` (deterministic, so retries overwrite).
    pub file_name: &'a str,
    /// `folder`.
    pub folder: &'a str,
    /// `tags`, joined with commas.
    pub tags: Vec<String>,
    /// Content type of the file part.
    pub mime: &'static str,
}

/// ImageKit's answer to a successful upload (parsed leniently).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Uploaded {
    /// `fileId`.
    pub file_id: String,
    /// `name`.
    #[serde(default)]
    pub name: String,
    /// `url`.
    pub url: String,
    /// `filePath`.
    #[serde(default)]
    pub file_path: String,
    /// `size`.
    #[serde(default)]
    pub size: Option<u64>,
    /// `width`.
    #[serde(default)]
    pub width: Option<u64>,
    /// `height`.
    #[serde(default)]
    pub height: Option<u64>,
    /// The response's `x-ik-requestId`.
    #[serde(skip)]
    pub request_id: Option<String>,
}

/// The client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ImageKitBuildError {
    /// No private key.
    #[error("the ImageKit private key is empty")]
    NoKey,
    /// The endpoint is not an http(s) URL (shown redacted).
    #[error("invalid ImageKit upload URL {0:?}")]
    BadUrl(String),
    /// reqwest refused the settings.
    #[error(transparent)]
    Client(#[from] reqwest::Error),
}

/// The upload client (cheap to clone).
#[derive(Clone)]
pub struct ImageKit {
    client: reqwest::Client,
    cfg: Arc<ImageKitConfig>,
}

#[derive(Deserialize)]
struct ErrorBody {
    message: Option<String>,
}

/// One response or transport error, before the retry decision.
struct Attempt {
    failure: Failure,
    retryable: bool,
}

fn upload_failure(t: ErrorType, message: impl Into<String>) -> Failure {
    Failure::new(Stage::Upload, t, message)
}

fn header<'h>(h: &'h HeaderMap, name: &str) -> Option<&'h str> {
    h.get(name).and_then(|v| v.to_str().ok()).map(str::trim)
}

/// How long ImageKit asked us to wait: `retry-after-ms`, `X-RateLimit-Reset`
/// (milliseconds), or `Retry-After` (seconds or a date).
pub fn requested_wait(h: &HeaderMap) -> Option<Duration> {
    if let Some(ms) = header(h, "retry-after-ms").and_then(|v| v.parse::<f64>().ok()) {
        return (ms.is_finite() && ms >= 0.0).then(|| Duration::from_millis(ms as u64));
    }
    if let Some(ms) = header(h, "x-ratelimit-reset").and_then(|v| v.parse::<f64>().ok()) {
        return (ms.is_finite() && ms >= 0.0).then(|| Duration::from_millis(ms as u64));
    }
    h.get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after)
}

/// Maps an error response to a failure (pure, so it is unit-tested).
pub fn classify_response(status: u16, headers: &HeaderMap, body: &[u8], secret: &str) -> Failure {
    let message = serde_json::from_slice::<ErrorBody>(body)
        .ok()
        .and_then(|b| b.message)
        .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned());
    let message = redact_text(message.trim(), &[secret]);
    let lower = message.to_ascii_lowercase();
    let mut f = Failure::from_status(
        Stage::Upload,
        status,
        format!("ImageKit HTTP {status}: {message}"),
    );
    f.request_id = header(headers, "x-ik-requestid").map(str::to_string);
    match status {
        401 => {
            f.error_type = ErrorType::AuthError;
            f.scope = Scope::Service;
        }
        403 => {
            // "Your account cannot be authenticated." is a bad key; anything else
            // (storage limit, account suspended) is still the account, not the image.
            if lower.contains("authenticat") {
                f.error_type = ErrorType::AuthError;
            }
            f.scope = Scope::Service;
        }
        400 if lower.contains("size") && lower.contains("exceed") => {
            f.error_type = ErrorType::FileTooLarge;
        }
        400 if lower.contains("upload limit") => {
            // The account's upload quota: every image would fail the same way.
            f.scope = Scope::Service;
        }
        429 => {
            f.retry_after = requested_wait(headers);
        }
        500..=599 => {
            f.retry_after = requested_wait(headers).filter(|_| status == 503);
        }
        _ => {}
    }
    f
}

fn sdk_retryable(status: u16) -> bool {
    matches!(status, 408 | 409 | 429) || status >= 500
}

impl ImageKit {
    /// A client with these settings.
    pub fn new(cfg: ImageKitConfig) -> Result<Self, ImageKitBuildError> {
        if cfg.private_key.is_empty() {
            return Err(ImageKitBuildError::NoKey);
        }
        match url::Url::parse(&cfg.upload_url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => {}
            _ => return Err(ImageKitBuildError::BadUrl(redact_url(&cfg.upload_url))),
        }
        let builder = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout.min(Duration::from_secs(10)))
            .redirect(reqwest::redirect::Policy::none())
            .referer(false)
            .dns_resolver(Arc::new(SystemResolver))
            .user_agent(concat!("venue-image-uploader/", env!("CARGO_PKG_VERSION")));
        let builder = match &cfg.proxy {
            None => builder.no_proxy(),
            Some(p) => builder.proxy(reqwest::Proxy::all(p.as_str())?),
        };
        let client = builder.build()?;
        Ok(ImageKit {
            client,
            cfg: Arc::new(cfg),
        })
    }

    /// The settings.
    pub fn config(&self) -> &ImageKitConfig {
        &self.cfg
    }

    /// The SDKs' backoff: `retry_base·2ⁿ`, capped, between 50 % and 100 % of the step.
    fn backoff(&self) -> Backoff {
        Backoff::new(self.cfg.retry_base, MAX_INLINE_WAIT).with_jitter(Jitter::UpperHalf)
    }

    fn transport_failure(&self, e: &reqwest::Error) -> Failure {
        let msg = redact_text(&e.to_string(), &[&self.cfg.private_key]);
        let mut chain = String::new();
        let mut cur = std::error::Error::source(e);
        while let Some(s) = cur {
            chain.push_str(": ");
            chain.push_str(&redact_text(&s.to_string(), &[&self.cfg.private_key]));
            cur = s.source();
        }
        let (error_type, kind) = transport_kind(e);
        Failure::transport(
            Stage::Upload,
            error_type,
            kind,
            format!("ImageKit: {msg}{chain}"),
        )
    }

    async fn post(&self, form: Form) -> Result<(u16, HeaderMap, Bytes), Failure> {
        let resp = self
            .client
            .post(&self.cfg.upload_url)
            .basic_auth(&self.cfg.private_key, Some(""))
            .header(reqwest::header::ACCEPT, "application/json")
            .multipart(form)
            .send()
            .await
            .map_err(|e| self.transport_failure(&e))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.bytes().await.map_err(|e| self.transport_failure(&e))?;
        Ok((status, headers, body))
    }

    fn form(&self, req: &UploadRequest<'_>) -> Form {
        let len = req.bytes.len() as u64;
        let part = Part::stream_with_length(reqwest::Body::from(req.bytes.clone()), len)
            .file_name(req.file_name.to_string())
            .mime_str(req.mime)
            .unwrap_or_else(|_| {
                Part::stream_with_length(reqwest::Body::from(req.bytes.clone()), len)
            });
        let mut form = Form::new()
            .part("file", part)
            .text("fileName", req.file_name.to_string())
            .text("folder", req.folder.to_string())
            .text("useUniqueFileName", "false")
            .text("overwriteFile", "true");
        let tags: Vec<String> = req
            .tags
            .iter()
            .map(|t| t.replace(',', "_").trim().to_string())
            .filter(|t| !t.is_empty())
            .collect();
        if !tags.is_empty() {
            form = form.text("tags", tags.join(","));
        }
        form
    }

    async fn try_once(&self, req: &UploadRequest<'_>) -> Result<Uploaded, Attempt> {
        let (status, headers, body) = match self.post(self.form(req)).await {
            Ok(r) => r,
            Err(failure) => {
                return Err(Attempt {
                    failure,
                    retryable: true,
                })
            }
        };
        let request_id = header(&headers, "x-ik-requestid").map(str::to_string);
        if status == 200 || status == 201 {
            return match serde_json::from_slice::<Uploaded>(&body) {
                Ok(mut u) => {
                    u.request_id = request_id;
                    debug!(request_id = u.request_id.as_deref(), file_id = %u.file_id, path = %u.file_path,
                           "ImageKit accepted the upload");
                    Ok(u)
                }
                Err(e) => {
                    let mut f = upload_failure(
                        ErrorType::UnknownError,
                        format!("ImageKit answered {status} with an unreadable body: {e}"),
                    );
                    f.status_code = Some(status);
                    f.request_id = request_id;
                    Err(Attempt {
                        failure: f,
                        retryable: false,
                    })
                }
            };
        }
        let failure = classify_response(status, &headers, &body, &self.cfg.private_key);
        warn!(request_id = failure.request_id.as_deref(), status, error_type = %failure.error_type,
              message = %failure.message, "ImageKit refused the upload");
        Err(Attempt {
            retryable: sdk_retryable(status),
            failure,
        })
    }

    /// Uploads one image, retrying like the SDKs. Every error is a [`Failure`] with
    /// stage `Upload`.
    pub async fn upload(&self, req: UploadRequest<'_>) -> Result<Uploaded, Failure> {
        let mut retry = 0;
        let backoff = self.backoff();
        loop {
            match self.try_once(&req).await {
                Ok(u) => return Ok(u),
                Err(Attempt { failure, retryable }) => {
                    if !retryable || retry >= self.cfg.max_retries {
                        return Err(failure);
                    }
                    let wait = match failure.retry_after {
                        Some(w) if w > MAX_INLINE_WAIT => return Err(failure),
                        Some(w) => w,
                        None => backoff.step(retry),
                    };
                    debug!(retry = retry + 1, wait_ms = wait.as_millis() as u64, error_type = %failure.error_type,
                           "retrying the ImageKit upload");
                    tokio::time::sleep(wait).await;
                    retry += 1;
                }
            }
        }
    }

    /// Checks the private key without uploading anything: a request without a file is
    /// refused with 400 by a valid key and with 401/403 by an invalid one.
    pub async fn check_credentials(&self) -> Result<(), Failure> {
        let form = Form::new().text("fileName", "venue-image-uploader-check.jpg");
        let (status, headers, body) = self.post(form).await?;
        match status {
            400 => Ok(()),
            200 | 201 => Ok(()),
            _ => Err(classify_response(
                status,
                &headers,
                &body,
                &self.cfg.private_key,
            )),
        }
    }
}

#[cfg(test)]
mod tests;
