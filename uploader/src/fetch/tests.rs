use super::*;
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A tiny PNG (1x1), complete.
fn png() -> Vec<u8> {
    vec![
        0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 0x0D, 0x49, 0x48, 0x44, 0x52, 0,
        0, 0, 1, 0, 0, 0, 1, 8, 6, 0, 0, 0, 0x1F, 0x15, 0xC4, 0x89, 0, 0, 0, 0x0A, 0x49, 0x44,
        0x41, 0x54, 0x78, 0x9C, 0x63, 0, 1, 0, 0, 5, 0, 1, 0x0D, 0x0A, 0x2D, 0xB4, 0, 0, 0, 0,
        0x49, 0x45, 0x4E, 0x44, 0xAE, 0x42, 0x60, 0x82,
    ]
}

fn jpeg() -> Vec<u8> {
    let mut v = vec![0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10, b'J', b'F', b'I', b'F', 0];
    v.extend(std::iter::repeat_n(0x11, 200));
    v.extend([0xFF, 0xD9]);
    v
}

enum Reply {
    /// Raw bytes written at once.
    Raw(Vec<u8>),
    /// Wait, then raw bytes.
    Delayed(Duration, Vec<u8>),
    /// Headers, then the body one byte per `Duration`.
    Drip(Vec<u8>, Vec<u8>, Duration),
}

fn response(status: &str, headers: &[(&str, String)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status}\r\nconnection: close\r\n");
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    let mut b = out.into_bytes();
    b.extend_from_slice(body);
    b
}

fn ok(ct: &str, body: &[u8]) -> Vec<u8> {
    response(
        "200 OK",
        &[
            ("content-type", ct.into()),
            ("content-length", body.len().to_string()),
        ],
        body,
    )
}

/// Serves `handler(path)` on 127.0.0.1; returns the base URL.
async fn server(
    handler: impl Fn(&str, SocketAddr) -> Reply + Send + Sync + 'static,
) -> (String, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let handler = Arc::new(handler);
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let handler = handler.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut tmp = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    let Ok(n) = sock.read(&mut tmp).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&tmp[..n]);
                }
                let head = String::from_utf8_lossy(&buf).to_string();
                let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
                match handler(&path, addr) {
                    Reply::Raw(b) => {
                        let _ = sock.write_all(&b).await;
                    }
                    Reply::Delayed(d, b) => {
                        tokio::time::sleep(d).await;
                        let _ = sock.write_all(&b).await;
                    }
                    Reply::Drip(h, body, every) => {
                        let _ = sock.write_all(&h).await;
                        for byte in body {
                            tokio::time::sleep(every).await;
                            if sock.write_all(&[byte]).await.is_err() {
                                return;
                            }
                        }
                    }
                }
                let _ = sock.shutdown().await;
            });
        }
    });
    (format!("http://{addr}"), addr)
}

fn fetcher(allow_loopback: bool) -> Fetcher {
    Fetcher::new(FetchConfig {
        connect_timeout: Duration::from_millis(500),
        total_timeout: Duration::from_millis(800),
        max_bytes: 1_000,
        max_redirects: 3,
        allow_loopback,
        ..FetchConfig::default()
    })
    .unwrap()
}

async fn routes() -> String {
    server(|path, addr| {
        let p = path.split('?').next().unwrap_or(path);
        match p {
            "/png" => Reply::Raw(ok("image/png", &png())),
            "/jpeg" => Reply::Raw(ok("application/octet-stream", &jpeg())),
            "/html" => Reply::Raw(ok("image/jpeg", b"<html><body>not an image</body></html>")),
            "/403" => Reply::Raw(response("403 Forbidden", &[("content-type", "image/png".into()), ("content-length", png().len().to_string())], &png())),
            "/404" => Reply::Raw(response("404 Not Found", &[("content-length", "0".into())], b"")),
            "/429" => Reply::Raw(response("429 Too Many Requests", &[("retry-after", "7".into()), ("content-length", "0".into())], b"")),
            "/503-date" => Reply::Raw(response("503 Service Unavailable", &[("retry-after", (chrono::Utc::now() + chrono::Duration::seconds(30)).to_rfc2822()), ("content-length", "0".into())], b"")),
            "/slow-headers" => Reply::Delayed(Duration::from_secs(3), ok("image/png", &png())),
            "/drip" => {
                let body = png();
                let h = format!("HTTP/1.1 200 OK\r\ncontent-type: image/png\r\ncontent-length: {}\r\n\r\n", body.len()).into_bytes();
                Reply::Drip(h, body, Duration::from_millis(100))
            }
            "/truncated" => {
                let body = png();
                Reply::Raw(response("200 OK", &[("content-length", (body.len() + 50).to_string())], &body))
            }
            "/lying-length" => {
                let body = png();
                Reply::Raw(response("200 OK", &[("content-length", (body.len() - 20).to_string())], &body))
            }
            "/big" => Reply::Raw(ok("image/png", &[png(), vec![0; 2_000]].concat())),
            "/big-chunked" => {
                let mut body = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-type: image/png\r\n\r\n".to_vec();
                for _ in 0..4 {
                    body.extend(format!("{:x}\r\n", 500).into_bytes());
                    body.extend(vec![0x89; 500]);
                    body.extend(b"\r\n");
                }
                body.extend(b"0\r\n\r\n");
                Reply::Raw(body)
            }
            p if p.starts_with("/redirect/") => {
                let n: usize = p["/redirect/".len()..].parse().unwrap_or(0);
                let to = if n == 0 { format!("http://{addr}/png") } else { format!("http://{addr}/redirect/{}", n - 1) };
                Reply::Raw(response("302 Found", &[("location", to), ("content-length", "0".into())], b""))
            }
            "/to-private" => Reply::Raw(response("302 Found", &[("location", "http://10.0.0.1/secret".into()), ("content-length", "0".into())], b"")),
            "/to-metadata" => Reply::Raw(response("302 Found", &[("location", "http://[::ffff:169.254.169.254]/latest".into()), ("content-length", "0".into())], b"")),
            "/to-file" => Reply::Raw(response("302 Found", &[("location", "file:///etc/passwd".into()), ("content-length", "0".into())], b"")),
            // Street View-style hops: commas in `location`, the key last.
            "/sv-to-slow" => Reply::Raw(response("302 Found", &[("location", format!("http://{addr}/slow-headers?size=600x300&location=46.41,10.01&key={HOP_KEY}")), ("content-length", "0".into())], b"")),
            "/sv-to-404" => Reply::Raw(response("302 Found", &[("location", format!("http://{addr}/404?size=600x300&location=46.41,10.01&key={HOP_KEY}")), ("content-length", "0".into())], b"")),
            "/sv-to-truncated" => Reply::Raw(response("302 Found", &[("location", format!("http://{addr}/truncated?size=600x300&location=46.41,10.01&key={HOP_KEY}")), ("content-length", "0".into())], b"")),
            "/sv-to-private" => Reply::Raw(response("302 Found", &[("location", format!("http://10.0.0.1/x?location=46.41,10.01&key={HOP_KEY}")), ("content-length", "0".into())], b"")),
            "/sv-loop" => Reply::Raw(response("302 Found", &[("location", format!("http://{addr}/sv-loop?location=46.41,10.01&key={HOP_KEY}")), ("content-length", "0".into())], b"")),
            _ => Reply::Raw(response("404 Not Found", &[("content-length", "0".into())], b"")),
        }
    })
    .await
    .0
}

/// The key the Street View-style redirect hops add (never in a message).
const HOP_KEY: &str = "SECRETHOPKEY";

async fn err(f: &Fetcher, url: &str) -> Failure {
    f.fetch(url).await.expect_err(url)
}

#[tokio::test]
async fn downloads_images_by_magic_bytes() {
    let base = routes().await;
    let f = fetcher(true);
    let d = f.fetch(&format!("{base}/png")).await.unwrap();
    assert_eq!(d.kind, ImageKind::Png);
    assert_eq!(d.bytes.as_ref(), png().as_slice());
    let d = f.fetch(&format!("{base}/jpeg")).await.unwrap();
    assert_eq!(d.kind, ImageKind::Jpeg, "Content-Type is ignored");
    let e = err(&f, &format!("{base}/html")).await;
    assert_eq!(e.error_type, ErrorType::NotAnImage);
}

#[tokio::test]
async fn any_non_200_is_a_failure_with_its_type() {
    let base = routes().await;
    let f = fetcher(true);
    let e = err(&f, &format!("{base}/403")).await;
    assert_eq!(
        (e.error_type, e.status_code),
        (ErrorType::Forbidden, Some(403)),
        "a PNG body does not make a 403 a success"
    );
    assert_eq!(
        err(&f, &format!("{base}/404")).await.error_type,
        ErrorType::NotFound
    );
    let e = err(&f, &format!("{base}/429")).await;
    assert_eq!(
        (e.error_type, e.retry_after),
        (ErrorType::RateLimited, Some(Duration::from_secs(7)))
    );
    assert!(e.pauses());
    let e = err(&f, &format!("{base}/503-date")).await;
    assert_eq!(e.error_type, ErrorType::ServiceUnavailable);
    assert!(e.retry_after.unwrap() >= Duration::from_secs(25));
}

#[tokio::test]
async fn redirects_are_limited_and_rechecked() {
    let base = routes().await;
    let f = fetcher(true);
    // /redirect/n answers n + 1 redirects; the limit is 3.
    assert!(f.fetch(&format!("{base}/redirect/2")).await.is_ok());
    let e = err(&f, &format!("{base}/redirect/3")).await;
    assert_eq!(e.error_type, ErrorType::HttpError);
    for p in ["/to-private", "/to-metadata"] {
        let e = err(&f, &format!("{base}{p}")).await;
        assert_eq!(e.error_type, ErrorType::InvalidProviderUrl, "{p}: {e}");
    }
    // reqwest never follows a redirect to a non-http scheme: the 302 itself is the failure.
    let e = err(&f, &format!("{base}/to-file")).await;
    assert_eq!(
        (e.error_type, e.status_code),
        (ErrorType::HttpError, Some(302)),
        "{e}"
    );
}

#[tokio::test]
async fn timeouts_and_truncation() {
    let base = routes().await;
    let f = fetcher(true);
    for (path, error_type) in [
        ("/slow-headers", ErrorType::NetworkTimeout),
        ("/drip", ErrorType::NetworkTimeout),
        ("/lying-length", ErrorType::DownloadFailed),
    ] {
        let e = err(&f, &format!("{base}{path}")).await;
        assert_eq!(e.error_type, error_type, "{path}: {e}");
    }
    let e = err(&f, &format!("{base}/truncated")).await;
    assert_eq!(
        (e.error_type, e.network),
        (ErrorType::NetworkError, Some(NetworkKind::Other)),
        "a body cut short: {e}"
    );
    let e = err(&f, &format!("{base}/slow-headers")).await;
    assert_eq!(e.network, Some(NetworkKind::Timeout));
}

#[tokio::test]
async fn size_limit_on_header_and_stream() {
    let base = routes().await;
    let f = fetcher(true);
    for path in ["/big", "/big-chunked"] {
        let e = err(&f, &format!("{base}{path}")).await;
        assert_eq!(e.error_type, ErrorType::FileTooLarge, "{path}: {e}");
    }
}

#[tokio::test]
async fn loopback_is_refused_unless_allowed() {
    let base = routes().await;
    let f = fetcher(false);
    let e = err(&f, &format!("{base}/png")).await;
    assert_eq!(e.error_type, ErrorType::InvalidProviderUrl, "{e}");
    let port = base.rsplit(':').next().unwrap();
    let e = err(&f, &format!("http://localhost:{port}/png")).await;
    assert_eq!(
        e.error_type,
        ErrorType::InvalidProviderUrl,
        "name resolving to loopback: {e}"
    );
    // The host is named; the address it resolved to is not (no DNS oracle).
    assert_eq!(
        e.message,
        "destination host localhost resolves only to private or reserved addresses"
    );
    assert_eq!(e.network, None, "a refusal is not a network failure");
    for u in [
        format!("http://[::ffff:127.0.0.1]:{port}/png"),
        format!("http://0x7f000001:{port}/png"),
        format!("http://2130706433:{port}/png"),
    ] {
        let e = err(&f, &u).await;
        assert_eq!(e.error_type, ErrorType::InvalidProviderUrl, "{u}: {e}");
    }
}

#[tokio::test]
async fn bad_urls() {
    let f = fetcher(true);
    for u in [
        "",
        "   ",
        "ftp://example.com/a.png",
        "not a url",
        "http://user:pw@127.0.0.1/a.png",
        "file:///etc/passwd",
        "http://10.1.2.3/a.png",
        "http://[fd00::1]/a.png",
        "http://169.254.169.254/latest",
    ] {
        let e = err(&f, u).await;
        assert_eq!(e.error_type, ErrorType::InvalidProviderUrl, "{u:?}: {e}");
        assert_eq!(e.network, None, "{u:?}");
    }
    // An IP literal is the operator's own text: naming it reveals nothing.
    assert_eq!(
        err(&f, "http://10.1.2.3/a.png").await.message,
        "destination 10.1.2.3 is not allowed (private or reserved address)"
    );
}

#[tokio::test]
async fn secrets_never_reach_messages() {
    let f = fetcher(false);
    let e = err(
        &f,
        "http://127.0.0.1:9/maps/api/place/photo?photo_reference=x&key=SECRETKEY",
    )
    .await;
    let all = format!("{e} {e:?}");
    assert!(!all.contains("SECRETKEY"), "{all}");
    let f = fetcher(true);
    let e = err(
        &f,
        "http://127.0.0.1:9/maps/api/place/photo?photo_reference=x&key=SECRETKEY",
    )
    .await;
    assert_eq!(e.error_type, ErrorType::NetworkError);
    let all = format!("{e} {e:?}");
    assert!(!all.contains("SECRETKEY"), "{all}");
}

/// Every failure of a redirect chain whose hops carry a Street View-style URL (commas in
/// `location`, the key last): the key never reaches the message, the rest of the URL does.
#[tokio::test]
async fn secrets_never_reach_messages_through_redirects_and_timeouts() {
    let base = routes().await;
    let f = fetcher(true);
    let first = "?size=600x300&location=46.41,10.01&key=SECRETFIRSTKEY";
    let cases: &[(&str, ErrorType, Option<NetworkKind>)] = &[
        (
            "/sv-to-slow",
            ErrorType::NetworkTimeout,
            Some(NetworkKind::Timeout),
        ),
        ("/sv-to-404", ErrorType::NotFound, None),
        (
            "/sv-to-truncated",
            ErrorType::NetworkError,
            Some(NetworkKind::Other),
        ),
        ("/sv-to-private", ErrorType::InvalidProviderUrl, None),
        ("/sv-loop", ErrorType::HttpError, None),
    ];
    for (path, error_type, network) in cases {
        let e = err(&f, &format!("{base}{path}{first}")).await;
        assert_eq!(
            (e.error_type, e.network),
            (*error_type, *network),
            "{path}: {e}"
        );
        let all = format!("{e} {e:?}");
        assert!(
            !all.contains(HOP_KEY) && !all.contains("SECRETFIRSTKEY"),
            "{path}: {all}"
        );
        if e.message.contains("location=") {
            assert!(
                e.message
                    .contains("?size=600x300&location=46.41,10.01&key=REDACTED"),
                "{path}: {}",
                e.message
            );
        }
    }
    // The timeout names the URL requested (reqwest's choice), the 404 the hop that
    // answered it; both redacted, the commas kept.
    let e = err(&f, &format!("{base}/sv-to-slow{first}")).await;
    assert_eq!(
        e.message,
        format!("error sending request for url ({base}/sv-to-slow?size=600x300&location=46.41,10.01&key=REDACTED)")
    );
    let e = err(&f, &format!("{base}/sv-to-404{first}")).await;
    assert_eq!(
        e.message,
        format!("HTTP 404 from {base}/404?size=600x300&location=46.41,10.01&key=REDACTED")
    );
}

/// reqwest would send the previous URL (with its `key=`) as `Referer` to the next hop.
#[tokio::test]
async fn redirects_carry_no_referer() {
    use axum::http::HeaderMap as AxHeaders;
    use axum::response::{IntoResponse, Redirect};
    use axum::routing::get;
    type Seen = Arc<std::sync::Mutex<Vec<Option<String>>>>;
    let seen: Seen = Arc::default();
    let s2 = seen.clone();
    let app = axum::Router::new()
        .route(
            "/start",
            get(|| async { Redirect::to("/second?size=1x1").into_response() }),
        )
        .route(
            "/second",
            get(move |h: AxHeaders| {
                let seen = s2.clone();
                async move {
                    seen.lock().unwrap().push(
                        h.get("referer")
                            .map(|v| v.to_str().unwrap_or("?").to_string()),
                    );
                    ([("content-type", "image/png")], png()).into_response()
                }
            }),
        );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let d = fetcher(true)
        .fetch(&format!("http://{addr}/start?key=SECRETKEY"))
        .await
        .unwrap();
    assert_eq!(d.kind, ImageKind::Png);
    assert_eq!(d.final_url, format!("http://{addr}/second?size=1x1"));
    assert_eq!(
        *seen.lock().unwrap(),
        vec![None],
        "second hop saw a Referer"
    );
}

#[tokio::test]
async fn unresolvable_host_is_a_dns_failure() {
    for allow_loopback in [false, true] {
        let f = fetcher(allow_loopback);
        let t = std::time::Instant::now();
        let e = err(&f, "http://nothing.invalid/x.jpg?key=SECRETKEY").await;
        assert_eq!(
            (e.error_type, e.network, e.status_code),
            (ErrorType::NetworkError, Some(NetworkKind::Dns), None),
            "{e}"
        );
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
        assert!(!e.message.contains("SECRETKEY"), "{}", e.message);
    }
}

/// A listener on 127.0.0.1 that hands each connection to `each`, in turn; its address.
async fn accept_each<F, Fut>(mut each: F) -> SocketAddr
where
    F: FnMut(tokio::net::TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            each(sock).await;
        }
    });
    addr
}

/// Fetching `url` (loopback allowed) fails at the network with this type and kind.
async fn assert_network_failure(url: &str, error_type: ErrorType, network: NetworkKind) {
    let e = err(&fetcher(true), url).await;
    assert_eq!(
        (e.error_type, e.network),
        (error_type, Some(network)),
        "{e}"
    );
}

/// Fetching `url` times out, well within the test's patience.
async fn assert_times_out(url: &str) {
    let t = std::time::Instant::now();
    assert_network_failure(url, ErrorType::NetworkTimeout, NetworkKind::Timeout).await;
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
}

#[tokio::test]
async fn closed_port_is_a_connect_failure() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    assert_network_failure(
        &format!("http://127.0.0.1:{port}/x.jpg"),
        ErrorType::NetworkError,
        NetworkKind::Connect,
    )
    .await;
}

#[tokio::test]
async fn failed_tls_handshake_is_a_connect_failure() {
    // A plain-HTTP server behind an https:// URL: the handshake gets garbage and fails.
    let addr = accept_each(|mut sock| async move {
        let _ = sock
            .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
            .await;
        let _ = sock.shutdown().await;
    })
    .await;
    assert_network_failure(
        &format!("https://{addr}/x.jpg"),
        ErrorType::NetworkError,
        NetworkKind::Connect,
    )
    .await;
}

#[tokio::test]
async fn silent_server_is_a_timeout() {
    // Accepts and never answers: the total timeout (800 ms) ends it.
    let mut held = Vec::new();
    let addr = accept_each(move |sock| {
        held.push(sock);
        async {}
    })
    .await;
    assert_times_out(&format!("http://{addr}/x.jpg")).await;
}

#[tokio::test]
async fn connect_timeout_is_a_timeout() {
    // A listener that never accepts, its backlog full: the kernel drops further SYNs, so
    // a connect hangs until the connect timeout (500 ms).
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(0).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut fillers = Vec::new();
    let mut full = false;
    for _ in 0..8 {
        let c = tokio::time::timeout(
            Duration::from_millis(200),
            tokio::net::TcpStream::connect(addr),
        )
        .await;
        match c {
            Ok(Ok(stream)) => fillers.push(stream),
            _ => {
                full = true;
                break;
            }
        }
    }
    if !full {
        eprintln!("this kernel completes connects beyond the backlog: nothing to test");
        return;
    }
    assert_times_out(&format!("http://{addr}/x.jpg")).await;
    drop(listener);
}

#[tokio::test]
async fn http_responses_have_no_network_kind() {
    let base = routes().await;
    let f = fetcher(true);
    for p in ["/403", "/404", "/429", "/html", "/big", "/lying-length"] {
        let e = err(&f, &format!("{base}{p}")).await;
        assert_eq!(e.network, None, "{p}: {e}");
    }
}

#[test]
fn blocked_addresses() {
    let cases: &[(&str, bool, bool)] = &[
        // address, blocked by default, blocked with allow_loopback
        ("8.8.8.8", false, false),
        ("142.250.74.14", false, false),
        ("127.0.0.1", true, false),
        ("127.8.9.10", true, false),
        ("10.0.0.1", true, true),
        ("172.16.5.4", true, true),
        ("172.32.0.1", false, false),
        ("192.168.1.1", true, true),
        ("100.64.0.1", true, true),
        ("100.127.255.255", true, true),
        ("100.128.0.1", false, false),
        ("169.254.169.254", true, true),
        ("0.0.0.0", true, true),
        ("192.0.2.1", true, true),
        ("198.18.0.1", true, true),
        ("224.0.0.1", true, true),
        ("255.255.255.255", true, true),
        ("240.0.0.1", true, true),
        ("::1", true, false),
        ("::", true, true),
        ("::ffff:127.0.0.1", true, false),
        ("::ffff:10.0.0.1", true, true),
        ("::ffff:8.8.8.8", false, false),
        ("::10.0.0.1", true, true),
        ("64:ff9b::a00:1", true, true),
        ("64:ff9b::808:808", false, false),
        ("64:ff9b:1::a00:1", true, true),
        // local-use NAT64 64:ff9b:1::/48: refused whatever it embeds
        ("64:ff9b:1::808:808", true, true),
        ("64:ff9b:1:808:808::", true, true),
        ("64:ff9b:1:ffff:ffff:ffff:ffff:ffff", true, true),
        ("64:ff9b:2::808:808", false, false),
        ("64:ff9b:0:ffff::808:808", false, false),
        // IPv4-translated ::ffff:0:0/96 (SIIT)
        ("::ffff:0:808:808", true, true),
        ("::ffff:0:0", true, true),
        ("::ffff:0:ffff:ffff", true, true),
        ("::ffff:1:808:808", false, false),
        ("::fffe:ffff:ffff:ffff", false, false),
        // IETF protocol assignments 2001::/23
        ("2001::1", true, true),
        ("2001:2::1", true, true),
        ("2001:1ff:ffff:ffff:ffff:ffff:ffff:ffff", true, true),
        ("2001:200::1", false, false),
        ("2000:ffff:ffff:ffff:ffff:ffff:ffff:ffff", false, false),
        // documentation 3fff::/20
        ("3fff::1", true, true),
        ("3fff:fff:ffff:ffff:ffff:ffff:ffff:ffff", true, true),
        ("3fff:1000::1", false, false),
        ("3ffe:ffff:ffff:ffff:ffff:ffff:ffff:ffff", false, false),
        // SRv6 SIDs 5f00::/16
        ("5f00::1", true, true),
        ("5f00:ffff:ffff:ffff:ffff:ffff:ffff:ffff", true, true),
        ("5eff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", false, false),
        ("5f01::1", false, false),
        // discard 100::/64, documentation 2001:db8::/32: kept
        ("100::1", true, true),
        ("100:0:0:1::1", false, false),
        ("2001:db8:ffff::1", true, true),
        ("2001:db9::1", false, false),
        ("2002:a00:1::1", true, true),
        ("2002:808:808::1", false, false),
        ("2002:7f00:1::1", true, true),
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", true, true),
        ("fd00::1", true, true),
        ("fe80::1", true, true),
        ("ff02::1", true, true),
        ("2001:db8::1", true, true),
        ("2606:4700:4700::1111", false, false),
    ];
    for (a, by_default, with_loopback) in cases {
        let ip: IpAddr = a.parse().unwrap();
        assert_eq!(is_blocked(ip, false), *by_default, "{a}");
        assert_eq!(
            is_blocked(ip, true),
            *with_loopback,
            "{a} with loopback allowed"
        );
    }
}

#[test]
fn sniffing() {
    assert_eq!(sniff(&png()), Some(ImageKind::Png));
    assert_eq!(sniff(&jpeg()), Some(ImageKind::Jpeg));
    assert_eq!(sniff(b"GIF89a....;"), Some(ImageKind::Gif));
    assert_eq!(sniff(b"RIFF\x04\0\0\0WEBPVP8 "), Some(ImageKind::Webp));
    assert_eq!(sniff(b"\0\0\0\x1cftypavif\0\0\0\0"), Some(ImageKind::Avif));
    assert_eq!(sniff(b"\0\0\0\x18ftypheic\0\0\0\0"), Some(ImageKind::Heic));
    assert_eq!(sniff(b"<svg xmlns='http://www.w3.org/2000/svg'/>"), None);
    assert_eq!(sniff(b"<!doctype html>"), None);
    assert_eq!(sniff(b""), None);
    assert!(looks_complete(ImageKind::Png, &png()));
    assert!(!looks_complete(ImageKind::Png, &png()[..40]));
}

#[test]
fn retry_after_forms() {
    assert_eq!(parse_retry_after(" 12 "), Some(Duration::from_secs(12)));
    assert!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT").is_some());
    assert_eq!(parse_retry_after("soon"), None);
}
