//! Safe download of a provider URL, following what trusted image proxies (imgproxy,
//! go-camo) do:
//!
//! - only `http`/`https`, no credentials in URLs, at most a few redirects, each re-checked;
//! - loopback, private, link-local, CGNAT, reserved and IPv4-in-IPv6 destinations refused,
//!   checked on the address actually dialled (our DNS resolver returns only permitted
//!   addresses, which defeats DNS rebinding) and separately on IP-literal hosts (reqwest
//!   does not ask the resolver for those), on every hop; `allow_loopback` permits
//!   loopback only, for tests and the demo; a refusal names the host, never the address
//!   a name resolved to (no DNS oracle in the stored messages);
//! - no `Referer` on redirects (it would carry the previous URL and its `key=`);
//! - connect and total timeouts; the size limit on `Content-Length` and on the stream;
//! - transport errors carry their [`NetworkKind`] (DNS, connect, timeout, other);
//! - any non-200 is a failure whatever its body (Google answers 403 with a PNG tile);
//! - the image type is decided by magic bytes, and the body must be a complete image.

use crate::failure::{ErrorType, Failure, NetworkKind, Stage};
use crate::redact::{redact_text, redact_url};
use bytes::{Bytes, BytesMut};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use url::{Host, Url};

/// Download settings.
#[derive(Debug, Clone)]
pub struct FetchConfig {
    /// TCP/TLS connect timeout.
    pub connect_timeout: Duration,
    /// Whole request, body included (a slow drip ends here).
    pub total_timeout: Duration,
    /// Largest body accepted.
    pub max_bytes: u64,
    /// Redirects followed.
    pub max_redirects: usize,
    /// Permit loopback destinations (tests, demo). Private ranges stay refused.
    pub allow_loopback: bool,
    /// `User-Agent`.
    pub user_agent: String,
}

impl Default for FetchConfig {
    fn default() -> Self {
        FetchConfig {
            connect_timeout: Duration::from_secs(5),
            total_timeout: Duration::from_secs(30),
            max_bytes: 25 * 1024 * 1024,
            max_redirects: 5,
            allow_loopback: false,
            user_agent: concat!("venue-image-uploader/", env!("CARGO_PKG_VERSION")).into(),
        }
    }
}

/// Image formats recognised by their magic bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageKind {
    /// JPEG.
    Jpeg,
    /// PNG.
    Png,
    /// GIF.
    Gif,
    /// WebP.
    Webp,
    /// AVIF.
    Avif,
    /// HEIC/HEIF.
    Heic,
    /// BMP.
    Bmp,
    /// TIFF.
    Tiff,
}

impl ImageKind {
    /// Usual file extension.
    pub fn extension(self) -> &'static str {
        match self {
            ImageKind::Jpeg => "jpg",
            ImageKind::Png => "png",
            ImageKind::Gif => "gif",
            ImageKind::Webp => "webp",
            ImageKind::Avif => "avif",
            ImageKind::Heic => "heic",
            ImageKind::Bmp => "bmp",
            ImageKind::Tiff => "tiff",
        }
    }

    /// MIME type.
    pub fn mime(self) -> &'static str {
        match self {
            ImageKind::Jpeg => "image/jpeg",
            ImageKind::Png => "image/png",
            ImageKind::Gif => "image/gif",
            ImageKind::Webp => "image/webp",
            ImageKind::Avif => "image/avif",
            ImageKind::Heic => "image/heic",
            ImageKind::Bmp => "image/bmp",
            ImageKind::Tiff => "image/tiff",
        }
    }
}

/// The image type by magic bytes (SVG, HTML and text are not images).
pub fn sniff(b: &[u8]) -> Option<ImageKind> {
    if b.starts_with(&[0xFF, 0xD8, 0xFF]) {
        return Some(ImageKind::Jpeg);
    }
    if b.starts_with(&[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A]) {
        return Some(ImageKind::Png);
    }
    if b.starts_with(b"GIF87a") || b.starts_with(b"GIF89a") {
        return Some(ImageKind::Gif);
    }
    if b.len() >= 12 && &b[0..4] == b"RIFF" && &b[8..12] == b"WEBP" {
        return Some(ImageKind::Webp);
    }
    if b.len() >= 12 && &b[4..8] == b"ftyp" {
        return match &b[8..12] {
            b"avif" | b"avis" => Some(ImageKind::Avif),
            b"heic" | b"heix" | b"hevc" | b"hevx" | b"heim" | b"heis" | b"hevm" | b"hevs"
            | b"mif1" | b"msf1" => Some(ImageKind::Heic),
            _ => None,
        };
    }
    if b.starts_with(b"BM") && b.len() >= 14 {
        return Some(ImageKind::Bmp);
    }
    if b.starts_with(b"II*\0") || b.starts_with(b"MM\0*") {
        return Some(ImageKind::Tiff);
    }
    None
}

/// Does the body end like a complete image of its kind? (Catches bodies cut short by a
/// `Content-Length` that lied.)
pub fn looks_complete(kind: ImageKind, b: &[u8]) -> bool {
    match kind {
        ImageKind::Png => {
            b.ends_with(&[0, 0, 0, 0, b'I', b'E', b'N', b'D', 0xAE, 0x42, 0x60, 0x82])
        }
        ImageKind::Jpeg => {
            let tail = &b[b.len().saturating_sub(64)..];
            tail.windows(2).any(|w| w == [0xFF, 0xD9])
        }
        ImageKind::Gif => b.last() == Some(&0x3B),
        ImageKind::Webp => {
            let declared = u32::from_le_bytes([b[4], b[5], b[6], b[7]]) as usize;
            b.len() >= declared + 8
        }
        _ => true,
    }
}

fn blocked_v4(ip: Ipv4Addr, allow_loopback: bool) -> bool {
    let o = ip.octets();
    if ip.is_loopback() {
        return !allow_loopback;
    }
    o[0] == 0                                           // "this network"
        || ip.is_private()                              // 10/8, 172.16/12, 192.168/16
        || (o[0] == 100 && (o[1] & 0xC0) == 64)          // CGNAT 100.64/10
        || ip.is_link_local()                           // 169.254/16
        || (o[0] == 192 && o[1] == 0 && o[2] == 0)       // IETF protocol assignments
        || (o[0] == 192 && o[1] == 0 && o[2] == 2)       // documentation
        || (o[0] == 198 && o[1] == 51 && o[2] == 100)
        || (o[0] == 203 && o[1] == 0 && o[2] == 113)
        || (o[0] == 198 && (o[1] & 0xFE) == 18)          // benchmarking 198.18/15
        || (o[0] == 192 && o[1] == 88 && o[2] == 99)     // 6to4 relay anycast
        || o[0] >= 224 // multicast, reserved, broadcast
}

/// Is a destination refused? IPv4 embedded in IPv6 (mapped, compatible, 6to4, NAT64
/// `64:ff9b::/96`) is judged by the IPv4 rules. Refused outright: IPv4-translated
/// `::ffff:0:0/96`, local-use NAT64 `64:ff9b:1::/48` (its IPv4 may sit at several
/// offsets), `2001::/23` (IETF protocol assignments, Teredo included), unique local,
/// link-local, site-local, multicast, and the documentation (`2001:db8::/32`,
/// `3fff::/20`), discard (`100::/64`) and SRv6 SID (`5f00::/16`) ranges.
pub fn is_blocked(ip: IpAddr, allow_loopback: bool) -> bool {
    let v6 = match ip {
        IpAddr::V4(v4) => return blocked_v4(v4, allow_loopback),
        IpAddr::V6(v6) => v6,
    };
    let s = v6.segments();
    let embedded =
        |hi: u16, lo: u16| Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
    if v6.is_loopback() {
        return !allow_loopback;
    }
    if v6.is_unspecified() {
        return true;
    }
    if let Some(v4) = v6.to_ipv4_mapped() {
        return blocked_v4(v4, allow_loopback);
    }
    if s[0..4] == [0; 4] && s[4] == 0xffff && s[5] == 0 {
        return true; // ::ffff:0:a.b.c.d, IPv4-translated (RFC 2765 SIIT)
    }
    if s[0..6] == [0; 6] {
        // ::a.b.c.d (IPv4-compatible, deprecated)
        return blocked_v4(embedded(s[6], s[7]), allow_loopback);
    }
    if s[0] == 0x0064 && s[1] == 0xff9b && s[2..6] == [0; 4] {
        // NAT64 well-known prefix 64:ff9b::/96: the IPv4 address is the last 32 bits
        return blocked_v4(embedded(s[6], s[7]), false);
    }
    if s[0] == 0x0064 && s[1] == 0xff9b && s[2] == 0x0001 {
        // Local-use NAT64 64:ff9b:1::/48 (RFC 8215): the prefix may be /48 to /96, so
        // the IPv4 address cannot be located reliably.
        return true;
    }
    if s[0] == 0x2002 {
        // 6to4: the IPv4 address is in bits 16..48
        return blocked_v4(embedded(s[1], s[2]), false);
    }
    (s[0] == 0x2001 && (s[1] & 0xfe00) == 0) // IETF protocol assignments 2001::/23 (Teredo 2001::/32, ...)
        || (s[0] & 0xfe00) == 0xfc00        // unique local fc00::/7
        || (s[0] & 0xffc0) == 0xfe80        // link-local
        || (s[0] & 0xffc0) == 0xfec0        // site-local (deprecated)
        || (s[0] & 0xff00) == 0xff00        // multicast
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation 2001:db8::/32
        || (s[0] == 0x3fff && (s[1] & 0xf000) == 0) // documentation 3fff::/20 (RFC 9637)
        || (s[0] == 0x0100 && s[1..4] == [0; 3]) // discard 100::/64
        || s[0] == 0x5f00 // SRv6 SIDs 5f00::/16 (RFC 9602)
}

/// Why a destination or redirect was refused (found again in reqwest's error chain).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Refused {
    /// An IP-literal host (the operator wrote it in the URL: naming it reveals nothing).
    Address(String),
    /// A host name whose every address is refused. Only the name is kept: the
    /// addresses it resolved to would make stored messages a DNS oracle.
    Host(String),
    Url(String),
    TooManyRedirects(usize),
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Address(a) => write!(
                f,
                "destination {a} is not allowed (private or reserved address)"
            ),
            Refused::Host(h) => write!(
                f,
                "destination host {h} resolves only to private or reserved addresses"
            ),
            Refused::Url(m) => f.write_str(m),
            Refused::TooManyRedirects(n) => write!(f, "more than {n} redirects"),
        }
    }
}

impl std::error::Error for Refused {}

/// Checks scheme, credentials and IP-literal hosts of one URL.
fn check_url(url: &Url, allow_loopback: bool) -> Result<(), Refused> {
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(Refused::Url(format!(
            "scheme {} is not allowed (http/https only)",
            url.scheme()
        )));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Refused::Url("credentials in URLs are not allowed".into()));
    }
    let ip = match url.host() {
        None => return Err(Refused::Url("URL has no host".into())),
        Some(Host::Ipv4(v4)) => IpAddr::V4(v4),
        Some(Host::Ipv6(v6)) => IpAddr::V6(v6),
        Some(Host::Domain(_)) => return Ok(()),
    };
    if is_blocked(ip, allow_loopback) {
        return Err(Refused::Address(ip.to_string()));
    }
    Ok(())
}

/// A host name did not resolve (found again in reqwest's error chain: that is how a
/// transport error is known to be [`NetworkKind::Dns`]).
#[derive(Debug)]
pub(crate) struct DnsFailure {
    host: String,
    cause: Option<std::io::Error>,
}

impl std::fmt::Display for DnsFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "could not resolve host {}", self.host)
    }
}

impl std::error::Error for DnsFailure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.cause.as_ref().map(|e| e as _)
    }
}

/// The system resolver (`getaddrinfo`); a failure or an empty answer is a [`DnsFailure`].
async fn lookup(host: String) -> Result<Vec<SocketAddr>, DnsFailure> {
    let found = tokio::net::lookup_host((host.as_str(), 0))
        .await
        .map(|addrs| addrs.collect::<Vec<SocketAddr>>());
    match found {
        Ok(addrs) if !addrs.is_empty() => Ok(addrs),
        Ok(_) => Err(DnsFailure { host, cause: None }),
        Err(e) => Err(DnsFailure {
            host,
            cause: Some(e),
        }),
    }
}

/// Resolves with the system resolver, unguarded, with typed failures (the ImageKit
/// client: its endpoint is configuration, not user data).
pub(crate) struct SystemResolver;

impl reqwest::dns::Resolve for SystemResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs = lookup(host).await?;
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Resolves with the system resolver and keeps only permitted addresses.
struct GuardedResolver {
    allow_loopback: bool,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow_loopback = self.allow_loopback;
        let host = name.as_str().to_string();
        Box::pin(async move {
            let allowed: Vec<SocketAddr> = lookup(host.clone())
                .await?
                .into_iter()
                .filter(|a| !is_blocked(a.ip(), allow_loopback))
                .collect();
            if allowed.is_empty() {
                return Err(
                    Box::new(Refused::Host(host)) as Box<dyn std::error::Error + Send + Sync>
                );
            }
            Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The downloader could not be built.
#[derive(Debug, thiserror::Error)]
#[error("building the HTTP client: {0}")]
pub struct FetchBuildError(#[from] reqwest::Error);

/// A downloaded image.
#[derive(Debug, Clone)]
pub struct Downloaded {
    /// The body.
    pub bytes: Bytes,
    /// Its type, by magic bytes.
    pub kind: ImageKind,
    /// The `Content-Type` the server claimed.
    pub content_type_header: Option<String>,
    /// The URL finally served (redacted).
    pub final_url: String,
}

/// Safe downloader (cheap to clone).
#[derive(Clone)]
pub struct Fetcher {
    client: reqwest::Client,
    cfg: Arc<FetchConfig>,
}

fn failure(t: ErrorType, message: impl Into<String>) -> Failure {
    Failure::new(Stage::Download, t, message)
}

/// An error and its sources, outermost first.
fn chain<'e>(
    e: &'e (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'e (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(e), |err| err.source())
}

fn find<'e, T: std::error::Error + 'static>(
    e: &'e (dyn std::error::Error + 'static),
) -> Option<&'e T> {
    chain(e).find_map(|err| err.downcast_ref::<T>())
}

fn any_io(e: &(dyn std::error::Error + 'static), kinds: &[std::io::ErrorKind]) -> bool {
    chain(e).any(|err| {
        err.downcast_ref::<std::io::Error>()
            .is_some_and(|io| kinds.contains(&io.kind()))
    })
}

/// The error type and network kind of a transport error (no HTTP response), for both
/// clients: a name that did not resolve is `Dns`; a connect or total timeout is
/// `Timeout` (`network_timeout`); a refused or reset connection or a failed TLS
/// handshake (everything reqwest reports as a connect error) is `Connect`; anything
/// else (a connection closed mid-request, a body cut short) is `Other`.
pub(crate) fn transport_kind(e: &reqwest::Error) -> (ErrorType, NetworkKind) {
    use std::io::ErrorKind as K;
    if find::<DnsFailure>(e).is_some() {
        return (ErrorType::NetworkError, NetworkKind::Dns);
    }
    if e.is_timeout() || any_io(e, &[K::TimedOut]) {
        return (ErrorType::NetworkTimeout, NetworkKind::Timeout);
    }
    if e.is_connect() || any_io(e, &[K::ConnectionRefused]) {
        return (ErrorType::NetworkError, NetworkKind::Connect);
    }
    (ErrorType::NetworkError, NetworkKind::Other)
}

fn classify(e: &reqwest::Error) -> Failure {
    if let Some(r) = find::<Refused>(e) {
        // Our own refusal (SSRF guard, redirect limit): no network kind.
        return match r {
            Refused::TooManyRedirects(_) => Failure {
                status_code: Some(302),
                ..failure(ErrorType::HttpError, r.to_string())
            },
            _ => failure(ErrorType::InvalidProviderUrl, r.to_string()),
        };
    }
    let (error_type, kind) = transport_kind(e);
    Failure::transport(
        Stage::Download,
        error_type,
        kind,
        redact_text(&e.to_string(), &[]),
    )
}

/// `Retry-After`: seconds or an HTTP date.
pub fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(s) = v.parse::<u64>() {
        return Some(Duration::from_secs(s));
    }
    let when = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let secs = (when.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_seconds();
    Some(Duration::from_secs(secs.max(0) as u64))
}

impl Fetcher {
    /// A downloader with these settings.
    pub fn new(cfg: FetchConfig) -> Result<Self, FetchBuildError> {
        let allow_loopback = cfg.allow_loopback;
        let max = cfg.max_redirects;
        let policy = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() > max {
                return attempt.error(Refused::TooManyRedirects(max));
            }
            match check_url(attempt.url(), allow_loopback) {
                Ok(()) => attempt.follow(),
                Err(r) => attempt.error(r),
            }
        });
        let client = reqwest::Client::builder()
            .connect_timeout(cfg.connect_timeout)
            .timeout(cfg.total_timeout)
            .redirect(policy)
            .referer(false)
            .no_proxy()
            .dns_resolver(Arc::new(GuardedResolver { allow_loopback }))
            .user_agent(cfg.user_agent.clone())
            .build()?;
        Ok(Fetcher {
            client,
            cfg: Arc::new(cfg),
        })
    }

    /// Downloads one image. Every error is a [`Failure`] with stage `Download`.
    pub async fn fetch(&self, url: &str) -> Result<Downloaded, Failure> {
        let url = url.trim();
        if url.is_empty() {
            return Err(failure(
                ErrorType::InvalidProviderUrl,
                "provider_url is empty",
            ));
        }
        let parsed = Url::parse(url).map_err(|e| {
            failure(
                ErrorType::InvalidProviderUrl,
                format!("unparsable URL: {e}"),
            )
        })?;
        check_url(&parsed, self.cfg.allow_loopback)
            .map_err(|r| failure(ErrorType::InvalidProviderUrl, r.to_string()))?;
        let mut resp = self
            .client
            .get(parsed)
            .header(reqwest::header::ACCEPT, "image/*")
            .send()
            .await
            .map_err(|e| classify(&e))?;
        let status = resp.status().as_u16();
        let final_url = redact_url(resp.url().as_str());
        if status != 200 {
            let mut f = Failure::from_status(
                Stage::Download,
                status,
                format!("HTTP {status} from {final_url}"),
            );
            if status == 429 || status == 503 {
                f.retry_after = resp
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_retry_after);
            }
            return Err(f);
        }
        let content_type_header = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let max = self.cfg.max_bytes;
        if let Some(len) = resp.content_length() {
            if len > max {
                return Err(failure(
                    ErrorType::FileTooLarge,
                    format!("{len} bytes declared, limit {max}"),
                ));
            }
        }
        let mut body =
            BytesMut::with_capacity(resp.content_length().unwrap_or(64 * 1024).min(max) as usize);
        while let Some(chunk) = resp.chunk().await.map_err(|e| classify(&e))? {
            if body.len() as u64 + chunk.len() as u64 > max {
                return Err(failure(
                    ErrorType::FileTooLarge,
                    format!("body exceeds the limit of {max} bytes"),
                ));
            }
            body.extend_from_slice(&chunk);
        }
        let bytes = body.freeze();
        let Some(kind) = sniff(&bytes) else {
            return Err(failure(
                ErrorType::NotAnImage,
                format!(
                    "body is not an image (claimed {})",
                    content_type_header.as_deref().unwrap_or("no content type")
                ),
            ));
        };
        if !looks_complete(kind, &bytes) {
            return Err(failure(
                ErrorType::DownloadFailed,
                format!(
                    "{} body is incomplete ({} bytes)",
                    kind.extension(),
                    bytes.len()
                ),
            ));
        }
        Ok(Downloaded {
            bytes,
            kind,
            content_type_header,
            final_url,
        })
    }
}

#[cfg(test)]
mod tests;
