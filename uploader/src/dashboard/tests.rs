//! The HTTP layer without a database: headers, the credential and CSRF checks, login.
//! (Pages and actions against a real database and a real browser are in
//! `tests/tests/dashboard.rs`.)

use super::*;
use clap::Parser;
use reqwest::redirect::Policy;

/// A dashboard whose database is never reached by these tests (pools connect lazily).
async fn start(token: Option<&str>) -> (String, crate::shutdown::Trigger) {
    start_with(token, &[], throttle::Limits::default()).await
}

/// [`start`] with more host names and other throttle limits.
async fn start_with(
    token: Option<&str>,
    allowed_hosts: &[&str],
    limits: throttle::Limits,
) -> (String, crate::shutdown::Trigger) {
    let d = Dashboard::new(Config {
        allowed_hosts: allowed_hosts
            .iter()
            .map(|h| guard::parse_allowed_host(h).unwrap())
            .collect(),
        limits,
        ..config(token)
    })
    .unwrap();
    let (trigger, shutdown) = shutdown::channel();
    let (addr, _task) = serve(d, "127.0.0.1:0".parse().unwrap(), shutdown)
        .await
        .unwrap();
    (format!("http://{addr}"), trigger)
}

/// A configuration whose database is never reached: with an admin login when `token`.
fn config(token: Option<&str>) -> Config {
    const NOWHERE: &str = "postgres://nobody@127.0.0.1:1/none";
    Config {
        reader_url: NOWHERE.into(),
        admin_url: token.map(|_| NOWHERE.into()),
        admin_token: token.map(String::from),
        refresh: Duration::from_secs(60),
        allowed_hosts: Vec::new(),
        limits: throttle::Limits::default(),
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap()
}

/// The admin token of the dashboards these tests start with one.
const TOKEN: &str = "the-admin-token-123";

/// Sends a request, which must be answered.
async fn send(r: reqwest::RequestBuilder) -> reqwest::Response {
    r.send().await.unwrap()
}

/// Sends a request: the status of the answer.
async fn status_of(r: reqwest::RequestBuilder) -> reqwest::StatusCode {
    send(r).await.status()
}

/// The answer to `GET {base}{path}` from a fresh client.
async fn get(base: &str, path: &str) -> reqwest::Response {
    send(client().get(format!("{base}{path}"))).await
}

/// [`get`], for another `Host`.
async fn get_for_host(base: &str, path: &str, host: &str) -> reqwest::Response {
    send(client().get(format!("{base}{path}")).header("host", host)).await
}

fn csrf_of(html: &str, action: &str) -> String {
    let at = html
        .find(&format!(r#"action="{action}""#))
        .unwrap_or_else(|| panic!("no form for {action} in {html}"));
    let rest = &html[at..];
    let v = rest.find(r#"name="csrf" value=""#).unwrap() + r#"name="csrf" value=""#.len();
    rest[v..v + 64].to_string()
}

/// The CSRF token of the login form, as `c` is served it.
async fn login_csrf(c: &reqwest::Client, base: &str) -> String {
    let page = send(c.get(format!("{base}/login"))).await;
    assert_eq!(page.status(), 200);
    csrf_of(&page.text().await.unwrap(), "/login")
}

/// Logs in with `token` through the login form: the answer's status and cookie.
async fn login(base: &str, token: &str) -> (reqwest::StatusCode, Option<String>) {
    login_from(&client(), base, token).await
}

/// [`login`] from a given client.
async fn login_from(
    c: &reqwest::Client,
    base: &str,
    token: &str,
) -> (reqwest::StatusCode, Option<String>) {
    let csrf = login_csrf(c, base).await;
    let r = send(c.post(format!("{base}/login")).form(&[
        ("csrf", csrf.as_str()),
        ("token", token),
        ("next", "/venues"),
    ]))
    .await;
    let cookie = r
        .headers()
        .get("set-cookie")
        .map(|v| v.to_str().unwrap().to_string());
    (r.status(), cookie)
}

#[tokio::test]
async fn every_response_has_the_security_headers() {
    let (base, _t) = start(Some(TOKEN)).await;
    for path in [
        "/assets/dashboard.css",
        "/login",
        "/no-such-page",
        "/favicon.ico",
    ] {
        let r = get(&base, path).await;
        let h = r.headers();
        assert_eq!(h["content-security-policy"], CSP, "{path}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["referrer-policy"], "same-origin", "{path}");
        assert_eq!(h["x-frame-options"], "DENY", "{path}");
        assert!(h.contains_key("cache-control"), "{path}");
    }
    let r = get(&base, "/login").await;
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let r = get(&base, "/assets/dashboard.css").await;
    assert_eq!(r.headers()["content-type"], "text/css; charset=utf-8");
    assert!(r.text().await.unwrap().contains(":root"));
    assert_eq!(get(&base, "/no-such-page").await.status(), 404);
}

#[tokio::test]
async fn actions_need_the_token_and_a_csrf_token() {
    let (base, _t) = start(Some(TOKEN)).await;
    let c = client();
    let post = |path: &str| c.post(format!("{base}{path}"));
    // No credential: 401, with the scheme to use.
    let r = send(post("/venues/1/force-retry").form(&[("csrf", "x")])).await;
    assert_eq!(r.status(), 401);
    assert!(r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Bearer"));
    // A wrong bearer token: 403.
    for path in [
        "/venues/1/force-retry",
        "/venues/1/purge",
        "/venues/1/images/0/force-retry",
        "/providers/pause",
        "/providers/resume",
        "/scan",
    ] {
        let wrong = post(path).bearer_auth("the-admin-token-12").form(&[
            ("provider", "here"),
            ("minutes", "60"),
            ("confirm", "yes"),
        ]);
        assert_eq!(status_of(wrong).await, 403, "{path}");
        assert_eq!(status_of(post(path)).await, 401, "{path}");
    }
    // A forged session cookie is no session.
    let forged = post("/scan").header("cookie", "vi_dashboard_session=00ff");
    assert_eq!(status_of(forged).await, 401);

    // A real session, but no CSRF token, or another form's: 403.
    let (status, cookie) = login(&base, TOKEN).await;
    assert_eq!(status, 303);
    let cookie = cookie.unwrap();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let session = cookie.split(';').next().unwrap().to_string();
    assert_eq!(
        status_of(post("/scan").header("cookie", &session)).await,
        403
    );
    let admin_page = send(c.get(format!("{base}/login")).header("cookie", &session)).await;
    // The page of an admin has the logout form with its own token.
    let logout_csrf = csrf_of(&admin_page.text().await.unwrap(), "/logout");
    let r = post("/scan")
        .header("cookie", &session)
        .form(&[("csrf", logout_csrf.as_str())]);
    assert_eq!(
        status_of(r).await,
        403,
        "a token for /logout is no token for /scan"
    );

    // Cross-site: refused whatever the credential.
    for (header, value) in [
        ("origin", "http://evil.example"),
        ("sec-fetch-site", "cross-site"),
    ] {
        let r = post("/scan").bearer_auth(TOKEN).header(header, value);
        assert_eq!(status_of(r).await, 403, "{header}: {value}");
    }

    // Credential and CSRF right, input wrong: the action is checked before the database.
    let r = post("/providers/pause")
        .bearer_auth(TOKEN)
        .form(&[("provider", "here"), ("minutes", "0")]);
    assert_eq!(status_of(r).await, 400);
    let r = post("/venues/1/purge").bearer_auth(TOKEN);
    assert_eq!(status_of(r).await, 400, "purge needs its confirmation");

    // Logging out ends the session.
    let r = send(
        post("/logout")
            .header("cookie", &session)
            .form(&[("csrf", logout_csrf.as_str())]),
    )
    .await;
    assert_eq!(r.status(), 303);
    assert!(r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
    assert_eq!(
        status_of(post("/scan").header("cookie", &session)).await,
        401
    );
}

#[tokio::test]
async fn login_refuses_a_wrong_token_and_returns_only_to_local_pages() {
    let (base, _t) = start(Some(TOKEN)).await;
    let (status, cookie) = login(&base, "nope").await;
    assert_eq!(status, 401);
    assert!(cookie.is_none());
    // Without the login page's CSRF token: refused.
    let r = send(
        client()
            .post(format!("{base}/login"))
            .form(&[("token", TOKEN)]),
    )
    .await;
    assert_eq!(r.status(), 403);
    assert!(r.headers().get("set-cookie").is_none());
    assert_eq!(safe_next(Some("/venues/3?x=1")), "/venues/3?x=1");
    for bad in [
        "//evil.example/",
        "https://evil.example/",
        "/\\evil",
        "venues",
        "/login",
    ] {
        assert_eq!(safe_next(Some(bad)), "/", "{bad}");
    }
    assert_eq!(safe_next(None), "/");
}

#[tokio::test]
async fn without_a_token_file_there_is_nothing_to_log_in_to() {
    let (base, _t) = start(None).await;
    assert_eq!(get(&base, "/login").await.status(), 403);
    for path in ["/scan", "/venues/1/force-retry", "/login"] {
        let r = client()
            .post(format!("{base}{path}"))
            .bearer_auth("anything");
        assert_eq!(status_of(r).await, 403, "{path}");
    }
}

#[test]
fn a_token_file_without_an_admin_login_is_refused() {
    let e = Dashboard::new(Config {
        admin_url: None,
        ..config(Some("t"))
    })
    .err()
    .unwrap();
    assert!(e.contains("--admin-database-url"), "{e}");
}

// ---- Security review findings 6 and 7 ------------------------------------------------

/// The port of a base URL (`http://127.0.0.1:PORT`).
fn port(base: &str) -> &str {
    base.rsplit(':').next().unwrap()
}

/// A client whose connections come from `ip` (127.0.0.0/8 is all loopback on Linux).
fn client_from(ip: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .local_address(Some(ip.parse().unwrap()))
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_rebinding_page_gets_421_everywhere() {
    let (base, _t) = start(Some(TOKEN)).await;
    let evil = format!("evil.example:{}", port(&base));
    for path in [
        "/",
        "/failures",
        "/recovery?range=7d",
        "/venues",
        "/venues/1",
        "/api/overview",
        "/api/recovery?range=24h",
        "/api/venues/1",
        "/login",
        "/healthz",
        "/assets/dashboard.css",
        "/no-such-page",
    ] {
        let r = get_for_host(&base, path, &evil).await;
        assert_eq!(r.status(), 421, "{path}");
        assert_eq!(r.headers()["content-security-policy"], CSP, "{path}");
        let body = r.text().await.unwrap();
        assert!(
            body.len() < 200 && body.starts_with("421"),
            "{path}: {body}"
        );
    }
    // Its POSTs too, whatever they carry.
    let r = client()
        .post(format!("{base}/scan"))
        .header("host", &evil)
        .header("origin", format!("http://{evil}"))
        .header("sec-fetch-site", "same-origin")
        .bearer_auth(TOKEN);
    assert_eq!(status_of(r).await, 421);
    // The names it does answer to.
    for host in [
        format!("127.0.0.1:{}", port(&base)),
        format!("localhost:{}", port(&base)),
        format!("LOCALHOST:{}", port(&base)),
    ] {
        let r = get_for_host(&base, "/assets/dashboard.css", &host).await;
        assert_eq!(r.status(), 200, "{host}");
    }
    for host in ["localhost", "127.0.0.1", "dash.example.com"] {
        let r = get_for_host(&base, "/login", host).await;
        assert_eq!(r.status(), 421, "{host}");
    }
}

#[tokio::test]
async fn allowed_hosts_are_served() {
    let (base, _t) = start_with(
        Some(TOKEN),
        &["dash.example.com", "https://dash.example.org"],
        throttle::Limits::default(),
    )
    .await;
    for host in [
        "dash.example.com",
        "dash.example.org",
        "dash.example.org:443",
    ] {
        let r = get_for_host(&base, "/login", host).await;
        assert_eq!(r.status(), 200, "{host}");
    }
    // Its origin is the https one: a POST from the http one is refused.
    for (origin, status) in [
        ("https://dash.example.org", 401),
        ("http://dash.example.org", 403),
    ] {
        let r = client()
            .post(format!("{base}/scan"))
            .header("host", "dash.example.org")
            .header("origin", origin);
        assert_eq!(status_of(r).await, status, "{origin}");
    }
}

#[tokio::test]
async fn posts_from_another_origin_are_refused() {
    let (base, _t) = start(Some(TOKEN)).await;
    let c = client();
    let csrf = login_csrf(&c, &base).await;
    let login = |origin: Option<&str>, site: Option<&str>| {
        let mut r = c.post(format!("{base}/login")).form(&[
            ("csrf", csrf.as_str()),
            ("token", TOKEN),
            ("next", "/"),
        ]);
        if let Some(o) = origin {
            r = r.header("origin", o);
        }
        if let Some(s) = site {
            r = r.header("sec-fetch-site", s);
        }
        r.send()
    };
    for (origin, site) in [
        (Some("null"), None),
        (Some("null"), Some("same-origin")),
        (Some("http://evil.example"), None),
        (Some("http://evil.example"), Some("cross-site")),
        (Some("https://127.0.0.1:1"), None),
        (None, Some("cross-site")),
        (None, Some("same-site")),
    ] {
        let r = login(origin, site).await.unwrap();
        assert_eq!(r.status(), 403, "{origin:?} {site:?}");
        assert!(r.headers().get("set-cookie").is_none());
    }
    // What a browser sends for the dashboard's own form, and what curl sends.
    let own = base.clone();
    let r = login(Some(own.as_str()), Some("same-origin"))
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let r = login(None, None).await.unwrap();
    assert_eq!(r.status(), 303);
    let r = login(
        Some(&format!("http://localhost:{}", port(&base))),
        Some("same-origin"),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 303);
}

#[tokio::test]
async fn wrong_tokens_are_throttled_per_client_and_in_all() {
    let limits = throttle::Limits {
        client_burst: 3,
        client_every: Duration::from_secs(3600),
        global_burst: 5,
        global_every: Duration::from_secs(3600),
        exempt_loopback: false,
        ..throttle::Limits::default()
    };
    let (base, _t) = start_with(Some(TOKEN), &[], limits).await;
    // Input checked after the credential and before the database: 400 means "let in".
    let pause = |c: &reqwest::Client, token: &str| {
        c.post(format!("{base}/providers/pause"))
            .bearer_auth(token)
            .form(&[("provider", "here"), ("minutes", "0")])
            .send()
    };
    let a = client_from("127.0.0.2");
    for _ in 0..3 {
        assert_eq!(
            pause(&a, "wrong-token-0000000").await.unwrap().status(),
            403
        );
    }
    // Over its limit, the client is answered 429 even with the right token: it learns
    // nothing about the tokens it tries.
    let r = pause(&a, TOKEN).await.unwrap();
    assert_eq!(r.status(), 429);
    let wait: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=3600).contains(&wait), "{wait}");
    // A wrong bearer on a page, and the log-in form, are throttled alike.
    let r = a
        .get(format!("{base}/login"))
        .bearer_auth("wrong-token-0000000")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    let (status, cookie) = login_from(&a, &base, TOKEN).await;
    assert_eq!(status, 429);
    assert!(cookie.is_none());

    // Another client with the right token is let in, and trusted from then on.
    let b = client_from("127.0.0.3");
    assert_eq!(pause(&b, TOKEN).await.unwrap().status(), 400);

    // Two more wrong tokens from elsewhere spend the global budget (5).
    for ip in ["127.0.0.4", "127.0.0.5"] {
        let c = client_from(ip);
        let (status, _) = login_from(&c, &base, "wrong-token-0000000").await;
        assert_eq!(status, 401, "{ip}");
    }
    let newcomer = client_from("127.0.0.6");
    assert_eq!(
        pause(&newcomer, TOKEN).await.unwrap().status(),
        429,
        "a new client meets the global limit"
    );
    assert_eq!(
        pause(&b, TOKEN).await.unwrap().status(),
        400,
        "the trusted client is not locked out by others' failures"
    );
    // Requests without a token are not throttled.
    let r = newcomer.get(format!("{base}/login")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn a_short_admin_token_is_refused_at_start() {
    let e = Dashboard::new(config(Some("fifteen-chars-x")))
        .err()
        .unwrap();
    assert!(e.contains("fewer than 16"), "{e}");
    // The command, from a token file: a configuration error, before anything is served.
    let dir = crate::cli::ScratchDir::new("dash-short");
    let file = dir.file("token", "short-token\n");
    let cli = crate::cli::Cli::try_parse_from([
        "venue-image-uploader",
        "--database-url",
        "postgres://x@127.0.0.1:1/x",
        "dashboard",
        "--listen",
        "127.0.0.1:0",
        "--admin-token-file",
        file.to_str().unwrap(),
        "--admin-database-url",
        "postgres://x@127.0.0.1:1/x",
    ])
    .unwrap();
    let crate::cli::Command::Dashboard(args) = &cli.command else {
        unreachable!("parsed as dashboard")
    };
    let e = run(&cli, args).await.err().unwrap();
    assert_eq!(e.exit, Exit::Failure);
    assert!(e.message.contains("fewer than 16"), "{}", e.message);
}
