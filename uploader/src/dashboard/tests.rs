//! The HTTP layer without a database: headers, the credential and CSRF checks, login.
//! (Pages and actions against a real database and a real browser are in
//! `tests/tests/dashboard.rs`.)

use super::*;
use reqwest::redirect::Policy;

/// A dashboard whose database is never reached by these tests (pools connect lazily).
async fn start(token: Option<&str>) -> (String, crate::shutdown::Trigger) {
    let d = Dashboard::new(Config {
        reader_url: "postgres://nobody@127.0.0.1:1/none".into(),
        admin_url: token.map(|_| "postgres://nobody@127.0.0.1:1/none".into()),
        admin_token: token.map(String::from),
        refresh: Duration::from_secs(60),
    })
    .unwrap();
    let (trigger, shutdown) = shutdown::channel();
    let (addr, _task) = serve(d, "127.0.0.1:0".parse().unwrap(), shutdown)
        .await
        .unwrap();
    (format!("http://{addr}"), trigger)
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap()
}

fn csrf_of(html: &str, action: &str) -> String {
    let at = html
        .find(&format!(r#"action="{action}""#))
        .unwrap_or_else(|| panic!("no form for {action} in {html}"));
    let rest = &html[at..];
    let v = rest.find(r#"name="csrf" value=""#).unwrap() + r#"name="csrf" value=""#.len();
    rest[v..v + 64].to_string()
}

async fn login(base: &str, token: &str) -> (reqwest::StatusCode, Option<String>) {
    let c = client();
    let page = c.get(format!("{base}/login")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    let csrf = csrf_of(&html, "/login");
    let r = c
        .post(format!("{base}/login"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("token", token),
            ("next", "/venues"),
        ])
        .send()
        .await
        .unwrap();
    let cookie = r
        .headers()
        .get("set-cookie")
        .map(|v| v.to_str().unwrap().to_string());
    (r.status(), cookie)
}

#[tokio::test]
async fn every_response_has_the_security_headers() {
    let (base, _t) = start(Some("the-admin-token-123")).await;
    for path in [
        "/assets/dashboard.css",
        "/login",
        "/no-such-page",
        "/favicon.ico",
    ] {
        let r = client().get(format!("{base}{path}")).send().await.unwrap();
        let h = r.headers();
        assert_eq!(h["content-security-policy"], CSP, "{path}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{path}");
        assert_eq!(h["x-frame-options"], "DENY", "{path}");
        assert!(h.contains_key("cache-control"), "{path}");
    }
    let r = client().get(format!("{base}/login")).send().await.unwrap();
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let r = client()
        .get(format!("{base}/assets/dashboard.css"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], "text/css; charset=utf-8");
    assert!(r.text().await.unwrap().contains(":root"));
    let r = client()
        .get(format!("{base}/no-such-page"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn actions_need_the_token_and_a_csrf_token() {
    let (base, _t) = start(Some("the-admin-token-123")).await;
    let c = client();
    let post = |path: &str| c.post(format!("{base}{path}"));
    // No credential: 401, with the scheme to use.
    let r = post("/venues/1/force-retry")
        .form(&[("csrf", "x")])
        .send()
        .await
        .unwrap();
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
        let r = post(path)
            .bearer_auth("the-admin-token-12")
            .form(&[("provider", "here"), ("minutes", "60"), ("confirm", "yes")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{path}");
        let r = post(path).send().await.unwrap();
        assert_eq!(r.status(), 401, "{path}");
    }
    // A forged session cookie is no session.
    let r = post("/scan")
        .header("cookie", "vi_dashboard_session=00ff")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // A real session, but no CSRF token, or another form's: 403.
    let (status, cookie) = login(&base, "the-admin-token-123").await;
    assert_eq!(status, 303);
    let cookie = cookie.unwrap();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let session = cookie.split(';').next().unwrap().to_string();
    let r = post("/scan")
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let d_admin_page = c
        .get(format!("{base}/login"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // The page of an admin has the logout form with its own token.
    let logout_csrf = csrf_of(&d_admin_page, "/logout");
    let r = post("/scan")
        .header("cookie", &session)
        .form(&[("csrf", logout_csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "a token for /logout is no token for /scan");

    // Cross-site: refused whatever the credential.
    let r = post("/scan")
        .bearer_auth("the-admin-token-123")
        .header("origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = post("/scan")
        .bearer_auth("the-admin-token-123")
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    // Credential and CSRF right, input wrong: the action is checked before the database.
    let r = post("/providers/pause")
        .bearer_auth("the-admin-token-123")
        .form(&[("provider", "here"), ("minutes", "0")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = post("/venues/1/purge")
        .bearer_auth("the-admin-token-123")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "purge needs its confirmation");

    // Logging out ends the session.
    let r = post("/logout")
        .header("cookie", &session)
        .form(&[("csrf", logout_csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert!(r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
    let r = post("/scan")
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn login_refuses_a_wrong_token_and_returns_only_to_local_pages() {
    let (base, _t) = start(Some("the-admin-token-123")).await;
    let (status, cookie) = login(&base, "nope").await;
    assert_eq!(status, 401);
    assert!(cookie.is_none());
    // Without the login page's CSRF token: refused.
    let r = client()
        .post(format!("{base}/login"))
        .form(&[("token", "the-admin-token-123")])
        .send()
        .await
        .unwrap();
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
    let c = client();
    let r = c.get(format!("{base}/login")).send().await.unwrap();
    assert_eq!(r.status(), 403);
    for path in ["/scan", "/venues/1/force-retry", "/login"] {
        let r = c
            .post(format!("{base}{path}"))
            .bearer_auth("anything")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{path}");
    }
}

#[test]
fn a_token_file_without_an_admin_login_is_refused() {
    let e = Dashboard::new(Config {
        reader_url: "postgres://x@127.0.0.1:1/x".into(),
        admin_url: None,
        admin_token: Some("t".into()),
        refresh: Duration::from_secs(60),
    })
    .err()
    .unwrap();
    assert!(e.contains("--admin-database-url"), "{e}");
}

#[test]
fn same_origin_checks() {
    let mut h = HeaderMap::new();
    assert!(
        same_origin(&h),
        "curl and other clients send neither header"
    );
    h.insert("host", HeaderValue::from_static("127.0.0.1:8780"));
    h.insert("origin", HeaderValue::from_static("http://127.0.0.1:8780"));
    h.insert("sec-fetch-site", HeaderValue::from_static("same-origin"));
    assert!(same_origin(&h));
    // What Chrome sends for a same-origin form under Referrer-Policy: no-referrer.
    h.insert("origin", HeaderValue::from_static("null"));
    assert!(same_origin(&h));
    h.insert("sec-fetch-site", HeaderValue::from_static("same-site"));
    assert!(!same_origin(&h));
    h.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
    assert!(!same_origin(&h));
    // Without Sec-Fetch-Site (older browsers), the Origin decides.
    h.remove("sec-fetch-site");
    h.insert("origin", HeaderValue::from_static("http://127.0.0.1:8781"));
    assert!(!same_origin(&h));
    h.insert("origin", HeaderValue::from_static("http://evil.example"));
    assert!(!same_origin(&h));
    h.insert("origin", HeaderValue::from_static("http://127.0.0.1:8780"));
    assert!(same_origin(&h));
}
