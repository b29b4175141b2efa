//! Reading elements: one image object as the queue reads it, leniently, and its identity.

use crate::image::{require_array, Image, ImageError, Status};
use crate::jsonb::Container;
use md5::{Digest, Md5};

/// Identity of an image inside the queue: md5 of its source URL. The queue stores this
/// (and a redacted URL) instead of the URL itself, so API keys in provider URLs never
/// land in the queue's tables.
pub type UrlHash = [u8; 16];

/// md5 of a source URL.
pub fn url_hash(url: &str) -> UrlHash {
    Md5::digest(url.as_bytes()).into()
}

/// Which key holds an element's source URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKey {
    /// `provider_url`.
    ProviderUrl,
    /// `url` (no `provider_url`).
    Url,
}

/// An element as the queue reads it.
#[derive(Debug, Clone, Copy)]
pub struct Element<'a> {
    /// Position in the array.
    pub index: usize,
    /// The object.
    pub obj: Container<'a>,
    /// `upload_status`.
    pub status: Status,
    /// `error_details.error_type`.
    pub error_type: Option<&'a [u8]>,
    /// `retry_count` as whole attempts.
    pub retry_count: i64,
    /// The URL to download from, and the key it came from.
    pub source: Option<(&'a str, SourceKey)>,
    /// `provider`.
    pub provider: Option<&'a str>,
}

impl Element<'_> {
    /// The identity hash, when there is a source URL.
    pub fn hash(&self) -> Option<UrlHash> {
        self.source.map(|(u, _)| url_hash(u))
    }

    /// The provider name the queue uses (`unknown` when absent).
    pub fn provider_name(&self) -> &str {
        self.provider.unwrap_or("unknown")
    }
}

/// An element the queue could not read, with why. It is left untouched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skip {
    /// Position in the array.
    pub index: usize,
    /// Its `upload_status`, when that much could be read.
    pub status: Option<Status>,
    /// What is wrong, e.g. `"retry_count" must be a number (or a numeric string) or null, got string`.
    pub reason: String,
}

fn utf8<'a>(b: &'a [u8], index: usize, status: Status, key: &str) -> Result<&'a str, Skip> {
    std::str::from_utf8(b).map_err(|_| Skip {
        index,
        status: Some(status),
        reason: format!("\"{key}\" is not valid UTF-8"),
    })
}

/// Reads one image object leniently: `Err(Skip)` when a key the queue relies on has a
/// type it cannot use. Only failures are read strictly; other elements are only needed
/// for their identity, and a key of the wrong type there just leaves it out.
pub fn read_element(index: usize, obj: Container<'_>) -> Result<Element<'_>, Skip> {
    let img = Image { index, obj };
    let status = img.status().map_err(|e| Skip {
        index,
        status: None,
        reason: e.to_string(),
    })?;
    let skip = |e: ImageError| Skip {
        index,
        status: Some(status),
        reason: e.to_string(),
    };
    if !status.is_failure() {
        let text = |k: &'static str| {
            img.str_bytes(k)
                .ok()
                .flatten()
                .filter(|b| !b.is_empty())
                .and_then(|b| std::str::from_utf8(b).ok())
        };
        let source = text("provider_url")
            .map(|u| (u, SourceKey::ProviderUrl))
            .or_else(|| text("url").map(|u| (u, SourceKey::Url)));
        return Ok(Element {
            index,
            obj,
            status,
            error_type: None,
            retry_count: 0,
            source,
            provider: text("provider"),
        });
    }
    let source = match img.str_bytes("provider_url").map_err(skip)? {
        Some(u) if !u.is_empty() => Some((
            utf8(u, index, status, "provider_url")?,
            SourceKey::ProviderUrl,
        )),
        _ => match img.str_bytes("url").map_err(skip)? {
            Some(u) if !u.is_empty() => Some((utf8(u, index, status, "url")?, SourceKey::Url)),
            _ => None,
        },
    };
    let provider = match img.str_bytes("provider").map_err(skip)? {
        Some(p) => Some(utf8(p, index, status, "provider")?),
        None => None,
    };
    Ok(Element {
        index,
        obj,
        status,
        error_type: img.error_type().map_err(skip)?,
        retry_count: img.attempts().map_err(skip)?,
        source,
        provider,
    })
}

/// The elements of an array: image objects read leniently (non-object elements are not
/// images and are passed over). `Err` only for bytes that are not valid jsonb.
pub fn elements<'a>(
    arr: Container<'a>,
) -> impl Iterator<Item = Result<Result<Element<'a>, Skip>, ImageError>> + 'a {
    arr.elements().enumerate().filter_map(|(index, e)| match e {
        Err(m) => Some(Err(ImageError::Malformed(m))),
        Ok(v) => v.as_object().map(|obj| Ok(read_element(index, obj))),
    })
}

/// The copies of one image (same identity) in an array.
pub(super) fn copies<'a>(
    arr: Container<'a>,
    hash: &UrlHash,
) -> Result<Vec<Element<'a>>, ImageError> {
    let mut out = Vec::new();
    for e in elements(require_array(arr)?) {
        let Ok(e) = e? else { continue };
        if e.hash().as_ref() == Some(hash) {
            out.push(e);
        }
    }
    Ok(out)
}
