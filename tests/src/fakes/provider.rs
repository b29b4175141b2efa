//! A fake image provider: one route per behaviour the uploader must handle.
//!
//! Every route is under `/{provider}/…` (the first segment is the provider the hit is
//! counted against), except the Google redirect target `/lh3/p/{name}`.
//!
//! | route | answer |
//! |---|---|
//! | `img/{name}` | 200 `image/png`, a PNG carrying `{name}` |
//! | `maps/api/place/photo?maxwidth&photo_reference&key` | 302 to `/lh3/p/{photo_reference}.png`; no `key` or a wrong one: 403 with a PNG error tile; no `photo_reference`: 400 |
//! | `redirect/{n}/{name}` | `n` redirects, then the image |
//! | `status/{code}/{name}` | that status (429 and 503 with `Retry-After`; 403 with a PNG tile) |
//! | `flaky/{n}/{code}/{name}` | the first `n` requests of this path get `code`, then the image |
//! | `slow-headers/{name}` | headers after `slow` |
//! | `drip/{name}` | headers, then one byte every 200 ms |
//! | `truncated/{name}` | `Content-Length` of the whole image, half of it, connection cut |
//! | `lying-length/{name}` | a consistent HTTP message carrying half a PNG |
//! | `html/{name}` | an HTML page served as `image/jpeg` |
//! | `oversize/{name}`, `oversize-chunked/{name}` | `oversize_bytes` of PNG-looking data, with and without a length |

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Json;
use bytes::Bytes;
use serde_json::{json, Value};

use super::image;

/// Settings of the fake.
#[derive(Debug, Clone)]
pub struct ProviderConfig {
    /// Size of the served images.
    pub image_kb: usize,
    /// Delay before every answer.
    pub latency: Duration,
    /// `Retry-After` seconds on 429 and 503.
    pub retry_after_secs: u64,
    /// Delay of `slow-headers`.
    pub slow: Duration,
    /// Size of `oversize` bodies.
    pub oversize_bytes: usize,
    /// The Google key accepted (`None`: any non-empty key).
    pub google_key: Option<String>,
}

impl Default for ProviderConfig {
    fn default() -> Self {
        ProviderConfig {
            image_kb: 64,
            latency: Duration::ZERO,
            retry_after_secs: 1,
            slow: Duration::from_secs(30),
            oversize_bytes: 64 * 1024 * 1024,
            google_key: None,
        }
    }
}

impl ProviderConfig {
    /// The defaults, answering each request after `latency`.
    pub fn with_latency(latency: Duration) -> ProviderConfig {
        ProviderConfig {
            latency,
            ..ProviderConfig::default()
        }
    }
}

/// One request as seen by the fake.
#[derive(Debug, Clone)]
pub struct ProviderHit {
    /// First path segment.
    pub provider: String,
    /// Path and query as requested.
    pub path: String,
    /// When it arrived.
    pub at: Instant,
    /// Status answered.
    pub status: u16,
}

#[derive(Default)]
struct Inner {
    hits: Vec<ProviderHit>,
    per_path: HashMap<String, u32>,
}

#[derive(Clone)]
struct Shared {
    cfg: Arc<ProviderConfig>,
    base_png: Bytes,
    tile: Bytes,
    inner: Arc<Mutex<Inner>>,
}

/// A running fake provider (cheap to clone; state is shared).
#[derive(Clone)]
pub struct FakeProvider {
    addr: SocketAddr,
    shared: Shared,
}

fn stem(segment: &str) -> &str {
    match segment.rfind('.') {
        Some(i) if i > 0 => &segment[..i],
        _ => segment,
    }
}

fn png(bytes: Bytes) -> Response {
    let len = bytes.len();
    let mut r = (StatusCode::OK, bytes).into_response();
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static("image/png"));
    r.headers_mut()
        .insert("content-length", HeaderValue::from(len));
    r
}

fn status_response(s: &Shared, code: u16) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut r = if code == 403 {
        // Google's error tile: an image body on a failure status.
        let mut r = (status, s.tile.clone()).into_response();
        r.headers_mut()
            .insert("content-type", HeaderValue::from_static("image/png"));
        r
    } else if code == 429 {
        let body = json!({"error": {"code": 429, "message": "Resource has been exhausted (e.g. check quota).", "status": "RESOURCE_EXHAUSTED"}});
        let mut r = (status, body.to_string()).into_response();
        r.headers_mut()
            .insert("content-type", HeaderValue::from_static("application/json"));
        r
    } else {
        (
            status,
            format!("{code} {}\n", status.canonical_reason().unwrap_or("error")),
        )
            .into_response()
    };
    if code == 429 || code == 503 {
        r.headers_mut()
            .insert("retry-after", HeaderValue::from(s.cfg.retry_after_secs));
    }
    r
}

fn redirect(host: &str, to: &str) -> Response {
    let mut r = StatusCode::FOUND.into_response();
    r.headers_mut().insert(
        "location",
        HeaderValue::from_str(&format!("http://{host}{to}")).expect("location"),
    );
    r
}

fn stream_response(
    len: Option<usize>,
    chunks: impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static,
) -> Response {
    let mut r = Response::new(Body::from_stream(chunks));
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static("image/png"));
    if let Some(len) = len {
        r.headers_mut()
            .insert("content-length", HeaderValue::from(len));
    }
    r
}

async fn route(
    s: &Shared,
    host: &str,
    segs: &[&str],
    query: &HashMap<String, String>,
    full_path: &str,
) -> Response {
    let image_for = |name: &str| image::personalise(&s.base_png, name);
    match segs {
        ["lh3", "p", name] => png(image_for(stem(name))),
        [_, "img", name] => png(image_for(stem(name))),
        [_, "maps", "api", "place", "photo"] => {
            let key = query.get("key").map(String::as_str).unwrap_or("");
            let key_ok = !key.is_empty() && s.cfg.google_key.as_deref().is_none_or(|k| k == key);
            if !key_ok {
                return status_response(s, 403);
            }
            match query.get("photo_reference").filter(|r| !r.is_empty()) {
                Some(r) => redirect(host, &format!("/lh3/p/{r}.png")),
                None => status_response(s, 400),
            }
        }
        [p, "redirect", n, name] => match n.parse::<u32>() {
            Ok(0) | Err(_) => png(image_for(stem(name))),
            Ok(n) => redirect(host, &format!("/{p}/redirect/{}/{name}", n - 1)),
        },
        [_, "status", code, _] => status_response(s, code.parse().unwrap_or(500)),
        [_, "flaky", n, code, name] => {
            let seen = {
                let mut inner = s.inner.lock().expect("fake state");
                let c = inner.per_path.entry(full_path.to_string()).or_insert(0);
                *c += 1;
                *c
            };
            if seen <= n.parse().unwrap_or(1) {
                status_response(s, code.parse().unwrap_or(503))
            } else {
                png(image_for(stem(name)))
            }
        }
        [_, "slow-headers", name] => {
            tokio::time::sleep(s.cfg.slow).await;
            png(image_for(stem(name)))
        }
        [_, "drip", name] => {
            let body = image_for(stem(name));
            let len = body.len();
            let stream = futures_util::stream::unfold(0usize, move |i| {
                let body = body.clone();
                async move {
                    if i >= body.len() {
                        return None;
                    }
                    if i > 0 {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    Some((Ok(body.slice(i..i + 1)), i + 1))
                }
            });
            stream_response(Some(len), stream)
        }
        [_, "truncated", name] => {
            let body = image_for(stem(name));
            let half = body.slice(..body.len() / 2);
            let stream = futures_util::stream::iter(vec![
                Ok(half),
                Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "fake: cut",
                )),
            ]);
            stream_response(Some(body.len()), stream)
        }
        [_, "lying-length", name] => {
            let body = image_for(stem(name));
            png(body.slice(..body.len() / 2))
        }
        [_, "html", _] => {
            let mut r = (
                StatusCode::OK,
                "<!doctype html><html><body>Sign in to view this photo</body></html>",
            )
                .into_response();
            r.headers_mut()
                .insert("content-type", HeaderValue::from_static("image/jpeg"));
            r
        }
        [_, kind @ ("oversize" | "oversize-chunked"), _] => {
            let total = s.cfg.oversize_bytes;
            let head = s.base_png.slice(..s.base_png.len().min(64 * 1024));
            let stream = futures_util::stream::unfold(0usize, move |sent| {
                let head = head.clone();
                async move {
                    if sent >= total {
                        return None;
                    }
                    let n = (total - sent).min(64 * 1024);
                    let chunk = if sent == 0 {
                        head.slice(..n.min(head.len()))
                    } else {
                        Bytes::from(vec![0u8; n])
                    };
                    let len = chunk.len();
                    Some((Ok(chunk), sent + len))
                }
            });
            stream_response((*kind == "oversize").then_some(total), stream)
        }
        _ => (StatusCode::NOT_FOUND, "404 Not Found\n").into_response(),
    }
}

async fn handler(
    State(s): State<Shared>,
    uri: Uri,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let at = Instant::now();
    if !s.cfg.latency.is_zero() {
        tokio::time::sleep(s.cfg.latency).await;
    }
    let host = headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1")
        .to_string();
    let path = uri.path().to_string();
    let segs: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let resp = route(&s, &host, &segs, &query, &path).await;
    let full = uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or(path.clone());
    s.inner.lock().expect("fake state").hits.push(ProviderHit {
        provider: segs.first().unwrap_or(&"").to_string(),
        path: full,
        at,
        status: resp.status().as_u16(),
    });
    resp
}

async fn stats(State(s): State<Shared>) -> Json<Value> {
    let inner = s.inner.lock().expect("fake state");
    let mut per: HashMap<String, usize> = HashMap::new();
    for h in &inner.hits {
        *per.entry(h.provider.clone()).or_default() += 1;
    }
    Json(json!({ "requests": inner.hits.len(), "per_provider": per }))
}

/// The most hits a provider took within any `window` (sliding), from a list of hits.
pub fn max_in_window(hits: &[ProviderHit], provider: &str, window: Duration) -> usize {
    let mut times: Vec<Instant> = hits
        .iter()
        .filter(|h| h.provider == provider)
        .map(|h| h.at)
        .collect();
    times.sort();
    let (mut best, mut lo) = (0, 0);
    for hi in 0..times.len() {
        while times[hi].duration_since(times[lo]) >= window {
            lo += 1;
        }
        best = best.max(hi - lo + 1);
    }
    best
}

impl FakeProvider {
    /// Starts on an ephemeral port.
    pub async fn start(cfg: ProviderConfig) -> std::io::Result<FakeProvider> {
        Self::start_on(0, cfg).await
    }

    /// Starts on 127.0.0.1:`port`.
    pub async fn start_on(port: u16, cfg: ProviderConfig) -> std::io::Result<FakeProvider> {
        let shared = Shared {
            base_png: image::noise_png(cfg.image_kb),
            tile: image::error_tile(),
            cfg: Arc::new(cfg),
            inner: Arc::new(Mutex::new(Inner::default())),
        };
        let app = axum::Router::new()
            .route("/_fake/stats", get(stats))
            .fallback(handler)
            .with_state(shared.clone());
        let addr = super::serve(port, app).await?;
        Ok(FakeProvider { addr, shared })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:port`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The bytes `img/{name}` (and every successful route for `name`) serves.
    pub fn image_bytes(&self, name: &str) -> Bytes {
        image::personalise(&self.shared.base_png, name)
    }

    /// Every request so far.
    pub fn hits(&self) -> Vec<ProviderHit> {
        self.shared.inner.lock().expect("fake state").hits.clone()
    }

    /// The most hits `provider` took within any `window`.
    pub fn max_in_window(&self, provider: &str, window: Duration) -> usize {
        max_in_window(&self.hits(), provider, window)
    }
}
