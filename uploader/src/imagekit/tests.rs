use super::*;
use crate::failure::NetworkKind;
use axum::body::Bytes as AxBytes;
use axum::http::{HeaderMap as AxHeaders, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use std::sync::atomic::{AtomicUsize, Ordering};

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.insert(
            reqwest::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    h
}

fn body(msg: &str) -> Vec<u8> {
    serde_json::json!({"message": msg, "help": "For support kindly contact us at support@imagekit.io."})
        .to_string()
        .into_bytes()
}

#[test]
fn error_responses_are_typed() {
    let none = HeaderMap::new();
    // ImageKit's status and message: the type, and whether the image or the service is
    // at fault.
    for (status, message, error_type, scope) in [
        (
            401,
            "Your request does not contain private API key.",
            ErrorType::AuthError,
            Scope::Service,
        ),
        (
            403,
            "Your account cannot be authenticated.",
            ErrorType::AuthError,
            Scope::Service,
        ),
        (
            403,
            "Storage limit exceeded.",
            ErrorType::Forbidden,
            Scope::Service,
        ),
        (
            400,
            "Your request contains invalid file parameter. The file size exceeds limits.",
            ErrorType::FileTooLarge,
            Scope::Image,
        ),
        (
            400,
            "Upload Limit Exceeded.",
            ErrorType::HttpError,
            Scope::Service,
        ),
        (
            400,
            "Missing file parameter for upload",
            ErrorType::HttpError,
            Scope::Image,
        ),
    ] {
        let f = classify_response(status, &none, &body(message), "k");
        assert_eq!(
            (f.error_type, f.scope, f.status_code),
            (error_type, scope, Some(status)),
            "{status} {message}"
        );
    }
    let h = headers(&[("x-ratelimit-reset", "1500"), ("x-ik-requestId", "req-1")]);
    let f = classify_response(429, &h, &body("Too many requests"), "k");
    assert_eq!(f.error_type, ErrorType::RateLimited);
    assert_eq!(f.retry_after, Some(Duration::from_millis(1500)));
    assert_eq!(f.request_id.as_deref(), Some("req-1"));
    for (s, t) in [
        (500, ErrorType::ServerError),
        (502, ErrorType::BadGateway),
        (503, ErrorType::ServiceUnavailable),
        (504, ErrorType::GatewayTimeout),
    ] {
        assert_eq!(
            classify_response(s, &none, b"<html>oops</html>", "k").error_type,
            t
        );
    }
    // The key never survives into a message, even when a server echoes it.
    let f = classify_response(
        400,
        &none,
        &body("bad key private_SECRET"),
        "private_SECRET",
    );
    assert!(!f.message.contains("private_SECRET"), "{}", f.message);
}

#[test]
fn waits_prefer_the_precise_headers() {
    assert_eq!(
        requested_wait(&headers(&[("retry-after-ms", "250"), ("retry-after", "9")])),
        Some(Duration::from_millis(250))
    );
    assert_eq!(
        requested_wait(&headers(&[("retry-after", "3")])),
        Some(Duration::from_secs(3))
    );
    assert_eq!(requested_wait(&headers(&[("retry-after-ms", "-1")])), None);
    assert_eq!(requested_wait(&HeaderMap::new()), None);
}

#[test]
fn config_debug_hides_the_key() {
    let c = ImageKitConfig {
        private_key: "private_SECRET".into(),
        proxy: Some("http://proxyuser:proxySECRET@proxy.example:3128".into()),
        ..ImageKitConfig::default()
    };
    let shown = format!("{c:?}");
    assert!(!shown.contains("private_SECRET"), "{shown}");
    assert!(!shown.contains("proxySECRET"), "{shown}");
    assert!(shown.contains("proxy.example:3128"), "{shown}");
    assert!(matches!(
        ImageKit::new(ImageKitConfig::default()),
        Err(ImageKitBuildError::NoKey)
    ));
    assert!(matches!(
        ImageKit::new(ImageKitConfig {
            upload_url: "ftp://x".into(),
            private_key: "k".into(),
            ..ImageKitConfig::default()
        }),
        Err(ImageKitBuildError::BadUrl(_))
    ));
}

/// A server answering with `script[n]` to the n-th request (the last one repeats), and
/// recording every request body.
type Script = Vec<(u16, Vec<(&'static str, &'static str)>, Vec<u8>)>;
type Seen = Arc<std::sync::Mutex<Vec<(AxHeaders, AxBytes)>>>;

/// [`scripted`]: every request is answered `status`, with ImageKit's JSON `message`.
async fn answering(status: u16, message: &str) -> (String, Seen) {
    scripted(vec![(status, vec![], body(message))]).await
}

async fn scripted(script: Script) -> (String, Seen) {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let count = Arc::new(AtomicUsize::new(0));
    let script = Arc::new(script);
    let s2 = seen.clone();
    let app = axum::Router::new().route(
        "/api/v1/files/upload",
        post(move |h: AxHeaders, b: AxBytes| {
            let seen = s2.clone();
            let count = count.clone();
            let script = script.clone();
            async move {
                seen.lock().unwrap().push((h, b));
                let n = count.fetch_add(1, Ordering::SeqCst).min(script.len() - 1);
                let (status, hs, body) = script[n].clone();
                let mut resp = (StatusCode::from_u16(status).unwrap(), body).into_response();
                resp.headers_mut()
                    .insert("x-ik-requestId", format!("req-{n}").parse().unwrap());
                for (k, v) in hs {
                    resp.headers_mut().insert(k, v.parse().unwrap());
                }
                resp
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/api/v1/files/upload"), seen)
}

fn config(url: String) -> ImageKitConfig {
    ImageKitConfig {
        upload_url: url,
        private_key: "private_TEST".into(),
        timeout: Duration::from_secs(5),
        max_retries: 2,
        retry_base: Duration::from_millis(10),
        proxy: None,
    }
}

fn client(url: String) -> ImageKit {
    ImageKit::new(config(url)).unwrap()
}

/// A local port nothing listens on.
fn dead_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

fn ok_body() -> Vec<u8> {
    serde_json::json!({"fileId": "f1", "name": "a.jpg", "size": 3, "filePath": "/v/a.jpg",
        "url": "https://ik.imagekit.io/demo/v/a.jpg", "fileType": "image", "height": 1, "width": 2,
        "versionInfo": {"id": "f1", "name": "Version 1"}, "extra": [1, 2]})
    .to_string()
    .into_bytes()
}

fn request(bytes: &'static [u8]) -> UploadRequest<'static> {
    UploadRequest {
        bytes: Bytes::from_static(bytes),
        file_name: "a.jpg",
        folder: "/venues/v",
        tags: vec!["google_places".into(), "venue:v".into()],
        mime: "image/jpeg",
    }
}

#[tokio::test]
async fn uploads_a_binary_part_with_fixed_name_and_basic_auth() {
    let (url, seen) = scripted(vec![(200, vec![], ok_body())]).await;
    let u = client(url)
        .upload(request(b"\xFF\xD8\xFFabc"))
        .await
        .unwrap();
    assert_eq!(u.file_id, "f1");
    assert_eq!(u.file_path, "/v/a.jpg");
    assert_eq!((u.width, u.height), (Some(2), Some(1)));
    assert_eq!(u.request_id.as_deref(), Some("req-0"));
    let seen = seen.lock().unwrap();
    let (h, b) = &seen[0];
    // "private_TEST:" in base64.
    assert_eq!(h["authorization"], "Basic cHJpdmF0ZV9URVNUOg==");
    assert!(h["content-type"]
        .to_str()
        .unwrap()
        .starts_with("multipart/form-data; boundary="));
    let text = String::from_utf8_lossy(b);
    for needle in [
        "name=\"file\"; filename=\"a.jpg\"",
        "name=\"fileName\"\r\n\r\na.jpg\r\n",
        "name=\"folder\"\r\n\r\n/venues/v\r\n",
        "name=\"useUniqueFileName\"\r\n\r\nfalse\r\n",
        "name=\"overwriteFile\"\r\n\r\ntrue\r\n",
        "name=\"tags\"\r\n\r\ngoogle_places,venue:v\r\n",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in {text}");
    }
    assert!(
        b.windows(6).any(|w| w == b"\xFF\xD8\xFFabc"),
        "binary part sent as is"
    );
}

#[tokio::test]
async fn retries_server_errors_then_succeeds() {
    let (url, seen) = scripted(vec![
        (500, vec![], body("Internal error")),
        (503, vec![("retry-after-ms", "20")], body("busy")),
        (200, vec![], ok_body()),
    ])
    .await;
    let u = client(url).upload(request(b"x")).await.unwrap();
    assert_eq!(u.request_id.as_deref(), Some("req-2"));
    assert_eq!(seen.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn gives_up_after_two_retries() {
    let (url, seen) = scripted(vec![(502, vec![], b"<html>bad gateway</html>".to_vec())]).await;
    let f = client(url).upload(request(b"x")).await.unwrap_err();
    assert_eq!(
        (f.error_type, f.status_code, f.stage, f.network),
        (ErrorType::BadGateway, Some(502), Stage::Upload, None)
    );
    assert_eq!(seen.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn long_rate_limit_is_handed_back_not_slept() {
    let (url, seen) = scripted(vec![(
        429,
        vec![
            ("x-ratelimit-reset", "60000"),
            ("x-ratelimit-limit", "10"),
            ("x-ratelimit-interval", "60000"),
        ],
        body("Too many requests"),
    )])
    .await;
    let t = std::time::Instant::now();
    let f = client(url).upload(request(b"x")).await.unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(5));
    assert_eq!(f.error_type, ErrorType::RateLimited);
    assert_eq!(f.retry_after, Some(Duration::from_secs(60)));
    assert!(f.pauses());
    assert_eq!(seen.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn auth_errors_are_not_retried_and_stop_the_service() {
    let (url, seen) = answering(403, "Your account cannot be authenticated.").await;
    let f = client(url.clone()).upload(request(b"x")).await.unwrap_err();
    assert_eq!(
        (f.error_type, f.scope),
        (ErrorType::AuthError, Scope::Service)
    );
    assert_eq!(seen.lock().unwrap().len(), 1);
    let f = client(url).check_credentials().await.unwrap_err();
    assert_eq!(f.error_type, ErrorType::AuthError);
}

#[tokio::test]
async fn credentials_check_accepts_a_missing_file_400() {
    let (url, _) = answering(400, "Missing file parameter for upload").await;
    client(url).check_credentials().await.unwrap();
}

#[tokio::test]
async fn connection_refused_is_a_network_error_without_the_key() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let f = client(format!("http://127.0.0.1:{port}/upload?key=private_TEST"))
        .upload(request(b"x"))
        .await
        .unwrap_err();
    assert_eq!(
        (f.error_type, f.network),
        (ErrorType::NetworkError, Some(NetworkKind::Connect)),
        "{f}"
    );
    assert!(!f.message.contains("private_TEST"), "{}", f.message);
}

#[tokio::test]
async fn unresolvable_host_is_a_dns_failure() {
    let t = std::time::Instant::now();
    let f = client("http://nothing.invalid/api/v1/files/upload".into())
        .upload(request(b"x"))
        .await
        .unwrap_err();
    assert_eq!(
        (f.error_type, f.network, f.status_code),
        (ErrorType::NetworkError, Some(NetworkKind::Dns), None),
        "{f}"
    );
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
}

/// A server that accepts and never answers, behind a Street View-style URL (commas in
/// `location`, a `key=`): a timeout, and neither key reaches the message.
#[tokio::test]
async fn silent_server_is_a_timeout_without_secrets() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            held.push(sock);
        }
    });
    let ik = ImageKit::new(ImageKitConfig {
        timeout: Duration::from_millis(300),
        max_retries: 1,
        ..config(format!(
            "http://{addr}/api/v1/files/upload?size=600x300&location=46.41,10.01&key=SECRETKEY"
        ))
    })
    .unwrap();
    let t = std::time::Instant::now();
    let f = ik.upload(request(b"x")).await.unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    assert_eq!(
        (f.error_type, f.network),
        (ErrorType::NetworkTimeout, Some(NetworkKind::Timeout)),
        "{f}"
    );
    let all = format!("{f} {f:?}");
    assert!(
        !all.contains("SECRETKEY") && !all.contains("private_TEST"),
        "{all}"
    );
    assert!(
        f.message
            .contains("/api/v1/files/upload?size=600x300&location=46.41,10.01&key=REDACTED)"),
        "{}",
        f.message
    );
}

#[tokio::test]
async fn explicit_proxy_is_used() {
    // The fake answers absolute-form requests too, so it can stand in for a forward
    // proxy: the upload reaches it although `imagekit.invalid` never resolves here.
    let (fake, seen) = scripted(vec![(200, vec![], ok_body())]).await;
    let proxy = fake.trim_end_matches("/api/v1/files/upload").to_string();
    let u = ImageKit::new(ImageKitConfig {
        proxy: Some(proxy),
        ..config("http://imagekit.invalid/api/v1/files/upload".into())
    })
    .unwrap()
    .upload(request(b"x"))
    .await
    .unwrap();
    assert_eq!(u.file_id, "f1");
    assert_eq!(
        seen.lock().unwrap()[0].0["host"],
        "imagekit.invalid",
        "the request was for ImageKit, sent through the proxy"
    );
    // A configured proxy that is down is a connect failure.
    let f = ImageKit::new(ImageKitConfig {
        proxy: Some(format!("http://127.0.0.1:{}", dead_port())),
        max_retries: 0,
        ..config("http://imagekit.invalid/api/v1/files/upload".into())
    })
    .unwrap()
    .upload(request(b"x"))
    .await
    .unwrap_err();
    assert_eq!(f.network, Some(NetworkKind::Connect), "{f}");
    assert!(matches!(
        ImageKit::new(ImageKitConfig {
            proxy: Some("not a proxy url".into()),
            ..config("http://imagekit.invalid/api/v1/files/upload".into())
        }),
        Err(ImageKitBuildError::Client(_))
    ));
}

/// Set in the child process of `proxy_environment_is_ignored`.
const CHILD_MARK: &str = "VENUE_IMAGES_TEST_PROXY_ENV_CHILD";

/// Proxy variables pointing at a dead port must not stop uploads. Environment variables
/// are process-global (and `set_var` races with other test threads), so the check runs
/// in a child process of this test binary that gets them from the start.
#[test]
fn proxy_environment_is_ignored() {
    let dead = format!("http://127.0.0.1:{}", dead_port());
    let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "imagekit::tests::proxy_environment_child",
        "--ignored",
        "--test-threads=1",
        "--nocapture",
    ])
    .env(CHILD_MARK, "1");
    for v in [
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
    ] {
        cmd.env(v, &dead);
    }
    for v in ["NO_PROXY", "no_proxy", "REQUEST_METHOD"] {
        cmd.env_remove(v);
    }
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("1 passed"),
        "the child test did not run: {text}"
    );
}

#[tokio::test]
#[ignore = "run by proxy_environment_is_ignored, in a child process with proxy variables set"]
async fn proxy_environment_child() {
    if std::env::var_os(CHILD_MARK).is_none() {
        return;
    }
    let (url, seen) = scripted(vec![(200, vec![], ok_body())]).await;
    // Control: a client that honours the environment goes to the dead proxy.
    let honours_env = reqwest::Client::new().post(&url).send().await;
    assert!(
        honours_env.is_err(),
        "the proxy variables are not in effect: {honours_env:?}"
    );
    assert!(seen.lock().unwrap().is_empty());
    let u = client(url).upload(request(b"x")).await.unwrap();
    assert_eq!(u.file_id, "f1");
    assert_eq!(seen.lock().unwrap().len(), 1);
}
