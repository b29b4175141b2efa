//! A fake ImageKit Upload API v1 (`spec/imagekit.md`).

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::multipart::{Multipart, MultipartRejection};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Json;
use base64::Engine;
use bytes::Bytes;
use serde_json::{json, Value};

use super::image;

const HELP: &str = "For support kindly contact us at support@imagekit.io.";

/// Settings of the fake.
#[derive(Debug, Clone)]
pub struct ImageKitConfig {
    /// The account's private key.
    pub private_key: String,
    /// The URL endpoint files are served from (`url` in responses).
    pub url_endpoint: String,
    /// The plan's file size limit.
    pub max_file_bytes: usize,
    /// Rate limit: at most `.0` uploads per `.1`; beyond it, 429.
    pub rate_limit: Option<(u32, Duration)>,
    /// Delay before every answer.
    pub latency: Duration,
    /// Keep the bytes of stored files (benchmarks turn this off to save memory).
    pub keep_bytes: bool,
}

impl Default for ImageKitConfig {
    fn default() -> Self {
        ImageKitConfig {
            private_key: "private_fake_demo_key".into(),
            url_endpoint: "https://ik.imagekit.io/fake".into(),
            max_file_bytes: 25 * 1024 * 1024,
            rate_limit: None,
            latency: Duration::ZERO,
            keep_bytes: true,
        }
    }
}

/// A fault to answer the next request with (before it is looked at).
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// That status with ImageKit's JSON error body (429 gets `X-RateLimit-*` with a
    /// reset of 1000 ms).
    Status(u16),
    /// 429 with this reset.
    RateLimited(Duration),
    /// Wait this long, then process normally.
    Delay(Duration),
    /// Process and store the file, then break the connection in the middle of the
    /// response (the client cannot know the upload happened).
    ResetAfterStore,
}

/// A file as stored.
#[derive(Debug, Clone)]
pub struct StoredFile {
    /// `fileId`.
    pub file_id: String,
    /// Final name.
    pub name: String,
    /// `filePath` (folder + name).
    pub file_path: String,
    /// Size in bytes.
    pub size: usize,
    /// The bytes (empty unless `keep_bytes`).
    pub bytes: Bytes,
    /// Tags.
    pub tags: Vec<String>,
    /// How many times it was written (1 = never overwritten).
    pub versions: u32,
    /// Content type of the part, if any.
    pub content_type: Option<String>,
}

/// One request as seen by the fake.
#[derive(Debug, Clone)]
pub struct UploadLog {
    /// Answered status.
    pub status: u16,
    /// `fileName` field as sent.
    pub file_name: Option<String>,
    /// `folder` field as sent.
    pub folder: Option<String>,
    /// The `x-ik-requestId` answered.
    pub request_id: String,
    /// Fields sent (names only, in order).
    pub fields: Vec<String>,
}

#[derive(Default)]
struct Inner {
    files: BTreeMap<String, StoredFile>,
    log: Vec<UploadLog>,
    faults: VecDeque<Fault>,
    window: VecDeque<Instant>,
    next_id: u64,
}

#[derive(Clone)]
struct Shared {
    cfg: Arc<ImageKitConfig>,
    inner: Arc<Mutex<Inner>>,
}

/// A running fake (cheap to clone; state is shared).
#[derive(Clone)]
pub struct FakeImageKit {
    addr: SocketAddr,
    shared: Shared,
}

fn request_id() -> String {
    let r: u128 = rand::random();
    let h = format!("{r:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

struct Answer {
    status: StatusCode,
    body: Value,
    headers: Vec<(&'static str, String)>,
    reset_body: bool,
}

impl Answer {
    fn error(status: u16, message: &str) -> Answer {
        Answer {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            body: json!({"message": message, "help": HELP}),
            headers: vec![],
            reset_body: false,
        }
    }

    fn rate_limited(limit: u32, reset: Duration, interval: Duration) -> Answer {
        let mut a = Answer::error(429, "Too Many Requests. Request rate limit exceeded.");
        a.headers = vec![
            ("X-RateLimit-Limit", limit.to_string()),
            ("X-RateLimit-Reset", reset.as_millis().to_string()),
            ("X-RateLimit-Interval", interval.as_millis().to_string()),
        ];
        a
    }

    fn into_response(self, request_id: &str) -> Response {
        let text = self.body.to_string();
        let body = if self.reset_body {
            // Headers go out, then the body stream fails: the connection is cut.
            let half = Bytes::from(text[..text.len() / 2].to_string());
            let stream = futures_util::stream::iter(vec![
                Ok::<_, std::io::Error>(half),
                Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "fake reset",
                )),
            ]);
            Body::from_stream(stream)
        } else {
            Body::from(text)
        };
        let mut resp = (self.status, body).into_response();
        let h = resp.headers_mut();
        h.insert(
            "content-type",
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        h.insert(
            "x-ik-requestId",
            HeaderValue::from_str(request_id).expect("request id"),
        );
        for (k, v) in self.headers {
            h.insert(k, HeaderValue::from_str(&v).expect("header"));
        }
        resp
    }
}

/// `fileName` as ImageKit stores it: characters outside `a-zA-Z0-9.-` become `_`.
pub fn sanitise_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// `folder` normalised: leading `/`, no trailing `/`, no empty segments.
pub fn normalise_folder(folder: &str) -> String {
    let parts: Vec<String> = folder
        .split('/')
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                        c
                    } else {
                        '_'
                    }
                })
                .collect()
        })
        .collect();
    format!("/{}", parts.join("/"))
}

fn unique_suffix(name: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let suffix: String = (0..9)
        .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
        .collect();
    match name.rfind('.') {
        Some(i) if i > 0 => format!("{}_{suffix}{}", &name[..i], &name[i..]),
        _ => format!("{name}_{suffix}"),
    }
}

fn parse_bool(v: Option<&String>, default: bool) -> Result<bool, Answer> {
    match v.map(|s| s.trim()) {
        None | Some("") => Ok(default),
        Some("true") => Ok(true),
        Some("false") => Ok(false),
        Some(_) => Err(Answer::error(
            400,
            "Invalid value for a boolean parameter. It should be either true or false.",
        )),
    }
}

fn authorised(headers: &HeaderMap, key: &str) -> Result<(), Answer> {
    let Some(v) = headers.get("authorization").and_then(|v| v.to_str().ok()) else {
        return Err(Answer::error(
            401,
            "Your request does not contain private API key.",
        ));
    };
    let Some(b64) = v
        .strip_prefix("Basic ")
        .or_else(|| v.strip_prefix("basic "))
    else {
        return Err(Answer::error(
            401,
            "Your request does not contain private API key.",
        ));
    };
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()
        .and_then(|d| String::from_utf8(d).ok())
        .unwrap_or_default();
    let user = decoded.split(':').next().unwrap_or("");
    if user.is_empty() {
        return Err(Answer::error(
            401,
            "Your request does not contain private API key.",
        ));
    }
    if user != key {
        return Err(Answer::error(403, "Your account cannot be authenticated."));
    }
    Ok(())
}

struct Fields {
    text: BTreeMap<String, String>,
    names: Vec<String>,
    file: Option<Bytes>,
    file_text: Option<String>,
    content_type: Option<String>,
}

async fn read_fields(mut mp: Multipart, max: usize) -> Result<Fields, Answer> {
    let too_big = || {
        Answer::error(
            400,
            "Your request contains invalid file parameter. The file size exceeds limits.",
        )
    };
    let mut f = Fields {
        text: BTreeMap::new(),
        names: vec![],
        file: None,
        file_text: None,
        content_type: None,
    };
    loop {
        let field = match mp.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(e) => {
                return Err(Answer::error(
                    400,
                    &format!("Malformed multipart body: {e}"),
                ))
            }
        };
        let name = field.name().unwrap_or("").to_string();
        f.names.push(name.clone());
        if name == "file" && field.file_name().is_some() {
            f.content_type = field.content_type().map(str::to_string);
            let mut field = field;
            let mut buf = bytes::BytesMut::new();
            loop {
                match field.chunk().await {
                    Ok(Some(c)) => {
                        if buf.len() + c.len() > max {
                            return Err(too_big());
                        }
                        buf.extend_from_slice(&c);
                    }
                    Ok(None) => break,
                    Err(e) => {
                        return Err(Answer::error(
                            400,
                            &format!("Malformed multipart body: {e}"),
                        ))
                    }
                }
            }
            f.file = Some(buf.freeze());
        } else {
            let v = field
                .text()
                .await
                .map_err(|e| Answer::error(400, &format!("Malformed multipart body: {e}")))?;
            if name == "file" {
                f.file_text = Some(v);
            } else {
                f.text.insert(name, v);
            }
        }
    }
    Ok(f)
}

async fn fetch_url(url: &str) -> Option<Bytes> {
    let resp = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .ok()?
        .get(url)
        .send()
        .await
        .ok()?;
    if !resp.status().is_success() {
        return None;
    }
    resp.bytes().await.ok()
}

async fn file_bytes(f: &Fields) -> Result<Bytes, Answer> {
    let missing = || Answer::error(400, "Missing file parameter for upload");
    if let Some(b) = &f.file {
        return Ok(b.clone());
    }
    let Some(t) = f.file_text.as_deref().map(str::trim) else {
        return Err(missing());
    };
    if t.is_empty() {
        return Err(missing());
    }
    if t.starts_with("http://") || t.starts_with("https://") {
        return fetch_url(t).await.ok_or_else(|| {
            Answer::error(
                400,
                "Your request contains invalid file parameter. The URL could not be fetched.",
            )
        });
    }
    let b64 = match t.strip_prefix("data:") {
        Some(rest) => rest.split_once(";base64,").map(|(_, d)| d).unwrap_or(""),
        None => t,
    };
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map(Bytes::from)
        .map_err(|_| Answer::error(400, "Your request contains invalid file parameter."))
}

async fn upload(
    State(s): State<Shared>,
    headers: HeaderMap,
    mp: Result<Multipart, MultipartRejection>,
) -> Response {
    let id = request_id();
    let answer = handle(&s, &headers, mp).await;
    let status = answer.0.status.as_u16();
    {
        let mut inner = s.inner.lock().expect("fake state");
        inner.log.push(UploadLog {
            status,
            file_name: answer
                .1
                .as_ref()
                .and_then(|f| f.text.get("fileName").cloned()),
            folder: answer
                .1
                .as_ref()
                .and_then(|f| f.text.get("folder").cloned()),
            request_id: id.clone(),
            fields: answer
                .1
                .as_ref()
                .map(|f| f.names.clone())
                .unwrap_or_default(),
        });
    }
    answer.0.into_response(&id)
}

async fn handle(
    s: &Shared,
    headers: &HeaderMap,
    mp: Result<Multipart, MultipartRejection>,
) -> (Answer, Option<Fields>) {
    if !s.cfg.latency.is_zero() {
        tokio::time::sleep(s.cfg.latency).await;
    }
    if let Err(a) = authorised(headers, &s.cfg.private_key) {
        return (a, None);
    }
    let fault = s.inner.lock().expect("fake state").faults.pop_front();
    let mut reset_body = false;
    match fault {
        Some(Fault::Status(429)) => {
            return (
                Answer::rate_limited(10, Duration::from_millis(1000), Duration::from_secs(1)),
                None,
            )
        }
        Some(Fault::RateLimited(d)) => {
            return (Answer::rate_limited(10, d, Duration::from_secs(1)), None)
        }
        Some(Fault::Status(code)) => {
            let msg = match code {
                500 => "We have experienced an internal error while processing your request.",
                502 => "Bad Gateway",
                503 => "Service Unavailable",
                504 => "Gateway Timeout",
                _ => "Fault injected by the fake.",
            };
            return (Answer::error(code, msg), None);
        }
        Some(Fault::Delay(d)) => tokio::time::sleep(d).await,
        Some(Fault::ResetAfterStore) => reset_body = true,
        None => {}
    }
    if let Some((limit, interval)) = s.cfg.rate_limit {
        let mut inner = s.inner.lock().expect("fake state");
        let now = Instant::now();
        while inner
            .window
            .front()
            .is_some_and(|t| now.duration_since(*t) >= interval)
        {
            inner.window.pop_front();
        }
        if inner.window.len() >= limit as usize {
            let reset = interval.saturating_sub(now.duration_since(inner.window[0]));
            return (Answer::rate_limited(limit, reset, interval), None);
        }
        inner.window.push_back(now);
    }
    let mp = match mp {
        Ok(mp) => mp,
        Err(_) => {
            return (
                Answer::error(400, "Missing file parameter for upload"),
                None,
            )
        }
    };
    let fields = match read_fields(mp, s.cfg.max_file_bytes).await {
        Ok(f) => f,
        Err(a) => return (a, None),
    };
    let mut answer = store(s, &fields).await;
    answer.reset_body = reset_body && answer.status == StatusCode::OK;
    (answer, Some(fields))
}

async fn store(s: &Shared, f: &Fields) -> Answer {
    let bytes = match file_bytes(f).await {
        Ok(b) => b,
        Err(a) => return a,
    };
    if bytes.len() > s.cfg.max_file_bytes {
        return Answer::error(
            400,
            "Your request contains invalid file parameter. The file size exceeds limits.",
        );
    }
    let Some(file_name) = f.text.get("fileName").filter(|n| !n.trim().is_empty()) else {
        return Answer::error(400, "Missing fileName parameter for upload");
    };
    let unique = match parse_bool(f.text.get("useUniqueFileName"), true) {
        Ok(b) => b,
        Err(a) => return a,
    };
    let overwrite = match parse_bool(f.text.get("overwriteFile"), true) {
        Ok(b) => b,
        Err(a) => return a,
    };
    if let Some(cm) = f.text.get("customMetadata") {
        if serde_json::from_str::<Value>(cm)
            .map(|v| !v.is_object())
            .unwrap_or(true)
        {
            return Answer::error(
                400,
                "Invalid customMetadata. It should be a valid JSON object.",
            );
        }
    }
    let folder = normalise_folder(f.text.get("folder").map(String::as_str).unwrap_or("/"));
    let mut name = sanitise_name(file_name.trim());
    if unique {
        name = unique_suffix(&name);
    }
    let path = if folder == "/" {
        format!("/{name}")
    } else {
        format!("{folder}/{name}")
    };
    let tags: Vec<String> = f
        .text
        .get("tags")
        .map(|t| {
            t.split(',')
                .map(|x| x.trim().to_string())
                .filter(|x| !x.is_empty())
                .collect()
        })
        .unwrap_or_default();
    let mut inner = s.inner.lock().expect("fake state");
    inner.next_id += 1;
    let version_id = format!(
        "{:024x}",
        0x6673_f882_0000_0000_0000_0000u128 + inner.next_id as u128
    );
    let (file_id, versions) = match inner.files.get(&path) {
        Some(_) if !overwrite && !unique => {
            return Answer::error(
                400,
                "A file with the same name already exists at the exact location. We could not overwrite it because both overwriteFile and useUniqueFileName are set to false.",
            );
        }
        Some(existing) => (existing.file_id.clone(), existing.versions + 1),
        None => (version_id.clone(), 1),
    };
    let size = bytes.len();
    let dims = image::dimensions(&bytes);
    let is_image = image::is_image(&bytes);
    inner.files.insert(
        path.clone(),
        StoredFile {
            file_id: file_id.clone(),
            name: name.clone(),
            file_path: path.clone(),
            size,
            bytes: if s.cfg.keep_bytes {
                bytes
            } else {
                Bytes::new()
            },
            tags: tags.clone(),
            versions,
            content_type: f.content_type.clone(),
        },
    );
    drop(inner);
    let endpoint = s.cfg.url_endpoint.trim_end_matches('/');
    let mut body = json!({
        "fileId": file_id,
        "name": name,
        "size": size,
        "versionInfo": {"id": version_id, "name": format!("Version {versions}")},
        "filePath": path,
        "url": format!("{endpoint}{path}"),
        "fileType": if is_image { "image" } else { "non-image" },
        "AITags": null,
        "tags": if tags.is_empty() { Value::Null } else { json!(tags) },
        "isPrivateFile": f.text.get("isPrivateFile").map(|v| v == "true").unwrap_or(false),
    });
    if is_image {
        body["thumbnailUrl"] = json!(format!("{endpoint}/tr:n-ik_ml_thumbnail{path}"));
    }
    if let Some((w, h)) = dims {
        body["width"] = json!(w);
        body["height"] = json!(h);
    }
    Answer {
        status: StatusCode::OK,
        body,
        headers: vec![],
        reset_body: false,
    }
}

async fn list(State(s): State<Shared>) -> Json<Value> {
    let inner = s.inner.lock().expect("fake state");
    Json(json!({
        "uploads": inner.log.iter().filter(|l| l.status == 200).count(),
        "requests": inner.log.len(),
        "files": inner.files.values().map(|f| json!({
            "fileId": f.file_id, "filePath": f.file_path, "size": f.size,
            "tags": f.tags, "versions": f.versions,
        })).collect::<Vec<_>>(),
    }))
}

impl FakeImageKit {
    /// Starts on an ephemeral port.
    pub async fn start(cfg: ImageKitConfig) -> std::io::Result<FakeImageKit> {
        Self::start_on(0, cfg).await
    }

    /// Starts on an ephemeral port, taking `private_key` and answering each upload after
    /// `latency`: what the end-to-end suites' sidecars upload to.
    pub async fn with_key(private_key: &str, latency: Duration) -> std::io::Result<FakeImageKit> {
        Self::start(ImageKitConfig {
            private_key: private_key.into(),
            latency,
            ..ImageKitConfig::default()
        })
        .await
    }

    /// Starts on 127.0.0.1:`port`.
    pub async fn start_on(port: u16, cfg: ImageKitConfig) -> std::io::Result<FakeImageKit> {
        let shared = Shared {
            cfg: Arc::new(cfg),
            inner: Arc::new(Mutex::new(Inner::default())),
        };
        let app = axum::Router::new()
            .route("/api/v1/files/upload", post(upload))
            .route("/_fake/files", get(list))
            .layer(DefaultBodyLimit::disable())
            .with_state(shared.clone());
        let addr = super::serve(port, app).await?;
        Ok(FakeImageKit { addr, shared })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:port`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The upload endpoint.
    pub fn upload_url(&self) -> String {
        format!("{}/api/v1/files/upload", self.base_url())
    }

    /// The private key it accepts.
    pub fn private_key(&self) -> &str {
        &self.shared.cfg.private_key
    }

    /// Answers the next requests with these faults, in order.
    pub fn push_fault(&self, fault: Fault) {
        self.shared
            .inner
            .lock()
            .expect("fake state")
            .faults
            .push_back(fault);
    }

    /// Stored files by `filePath`.
    pub fn files(&self) -> BTreeMap<String, StoredFile> {
        self.shared.inner.lock().expect("fake state").files.clone()
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<UploadLog> {
        self.shared.inner.lock().expect("fake state").log.clone()
    }

    /// Successful uploads so far (overwrites included).
    pub fn uploads(&self) -> usize {
        self.requests().iter().filter(|l| l.status == 200).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_folders_like_imagekit() {
        assert_eq!(sanitise_name("my photo (1).jpg"), "my_photo__1_.jpg");
        assert_eq!(sanitise_name("a-b.c_d"), "a-b.c_d");
        assert_eq!(normalise_folder(""), "/");
        assert_eq!(normalise_folder("venues//café/"), "/venues/caf_");
        let u = unique_suffix("x.jpg");
        assert!(
            u.starts_with("x_") && u.ends_with(".jpg") && u.len() == "x_.jpg".len() + 9,
            "{u}"
        );
    }
}
