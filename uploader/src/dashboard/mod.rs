//! `venue-image-uploader dashboard`: a web UI over the extension's functions.
//!
//! - **Pages** are server-rendered HTML with inline SVG charts: no JavaScript, no chart
//!   library, no build step; the stylesheet and the icon are compiled into the binary
//!   (`uploader/assets/`). Nothing is loaded from another site.
//! - **Load on the database**: the one function that scans the venues table
//!   (`venue_image_overview`) runs at most once per `--refresh`, whatever the number of
//!   viewers ([`cache`]); the queue, providers and last scan (the queue's own small
//!   tables) and the recovery figures (the attempt log) are cached the same way; a
//!   venue's page reads that venue only. Each page says how old its figures are.
//! - **Security**: only the configured `Host` names are served and a `POST` must come
//!   from one of them ([`guard`]: DNS rebinding, cross-site requests); wrong admin tokens
//!   are rationed ([`throttle`]); a strict Content-Security-Policy (`default-src 'none'`,
//!   the stylesheet and the icon from this origin only), `nosniff`, no referrer to other
//!   sites, no framing, `no-store`. Every string shown is redacted and escaped. Actions
//!   are POST forms with a CSRF token, for requests that carry the admin token
//!   ([`auth`]), and run as the admin login (`--admin-database-url`); without
//!   `--admin-token-file` there are no actions at all.
//!
//! [`data`] (the database door's [`crate::db::dashboard`]) reads and acts, [`pages`]
//! renders the bodies, [`html`] and [`svg`] are the building blocks.

pub mod auth;
pub mod cache;
pub use crate::db::dashboard as data;
pub mod guard;
pub mod html;
pub mod pages;
pub mod svg;
pub mod throttle;

use crate::cli::{Cli, DashboardArgs};
use crate::db::{self, Db, DbError};
use crate::error::AppError;
use crate::exit::Exit;
use crate::redact::redact_text;
use crate::shutdown::{self, on_signals, Shutdown};
use auth::{Admin, Credential};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Extension, Path, Query, State};
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use cache::{Cache, Snapshot};
use chrono::{DateTime, Utc};
use data::{Action, Done, Live, Overview, Range, Recovery};
use guard::{AllowedHost, ClientIp, Gate, HostPolicy, Peer};
use html::{esc, notice, time, Layout, Nav, Viewer};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tracing::{info, warn};

/// The stylesheet, compiled in.
pub const CSS: &str = include_str!("../../assets/dashboard.css");
/// The icon, compiled in.
pub const FAVICON: &str = include_str!("../../assets/favicon.svg");

/// The Content-Security-Policy of every response.
pub const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// What the dashboard needs.
#[derive(Clone, Debug)]
pub struct Config {
    /// The reader login's URL.
    pub reader_url: String,
    /// The admin login's URL (actions).
    pub admin_url: Option<String>,
    /// The admin token (None: read-only).
    pub admin_token: Option<String>,
    /// How long figures are cached.
    pub refresh: Duration,
    /// Host names served besides the listen address (`--allowed-host`).
    pub allowed_hosts: Vec<AllowedHost>,
    /// How many wrong admin tokens are answered.
    pub limits: throttle::Limits,
}

/// The dashboard's state, shared by the handlers.
pub struct Dashboard {
    reader: Db,
    admin_db: Option<Db>,
    admin: Option<Admin>,
    overview: Cache<Overview>,
    live: Cache<Live>,
    recovery: HashMap<Range, Cache<Recovery>>,
    refresh: Duration,
    allowed_hosts: Vec<AllowedHost>,
    throttle: throttle::Throttle,
}

/// A pool on `url` (libpq's meanings, TLS, `.pgpass`: the door's [`db::target`]).
fn pool(url: &str, max: u32, name: &str) -> Result<Db, String> {
    let mut target =
        db::target(Some(url)).map_err(|e| redact_text(&format!("database URL: {e}"), &[]))?;
    if target.options.get_application_name() == Some(db::connect::APPLICATION_NAME) {
        target.options = target.options.clone().application_name(name);
    }
    Ok(Db::open(target, max))
}

fn loader<T, F, Fut>(db: &Db, f: F) -> cache::Loader<T>
where
    T: Send + 'static,
    F: Fn(Db) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<T, DbError>> + Send + 'static,
{
    let db = db.clone();
    let f = Arc::new(f);
    Arc::new(move || {
        let db = db.clone();
        let f = f.clone();
        Box::pin(async move { f(db).await.map_err(|e| shown(&e)) })
    })
}

/// A database error as people see it: the database's message, redacted, with its
/// SQLSTATE.
fn shown(e: &DbError) -> String {
    let message = match e {
        DbError::Sql(sqlx::Error::PoolTimedOut) => "the database did not answer in time".into(),
        other => other.message(),
    };
    let message = redact_text(&message, &[]);
    match e.sqlstate() {
        Some(c) => format!("{message} (SQLSTATE {c})"),
        None => message,
    }
}

/// A JSON value with every string redacted (what the JSON endpoints send).
pub fn redact_json(v: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::String(s) => Value::String(redact_text(&s, &[])),
        Value::Array(a) => Value::Array(a.into_iter().map(redact_json).collect()),
        Value::Object(o) => Value::Object(
            o.into_iter()
                .map(|(k, v)| (redact_text(&k, &[]), redact_json(v)))
                .collect(),
        ),
        other => other,
    }
}

impl Dashboard {
    /// The state for `config` (connections are opened on first use).
    pub fn new(config: Config) -> Result<Arc<Dashboard>, String> {
        if config.admin_token.is_some() && config.admin_url.is_none() {
            return Err(
                "--admin-token-file needs --admin-database-url (a login with venue_image_admin)"
                    .into(),
            );
        }
        if let Some(t) = &config.admin_token {
            auth::check_token_length(t)?;
        }
        let reader = pool(&config.reader_url, 6, "venue-image-dashboard")?;
        let admin = config.admin_token.as_deref().map(Admin::new);
        let admin_db = match (&admin, &config.admin_url) {
            (Some(_), Some(url)) => Some(pool(url, 2, "venue-image-dashboard-admin")?),
            _ => None,
        };
        let refresh = config.refresh.max(Duration::from_secs(1));
        let overview = Cache::new(
            refresh,
            loader(&reader, |db| async move { db.overview().await }),
        );
        let live = Cache::new(
            refresh.min(Duration::from_secs(5)),
            loader(&reader, |db| async move { db.live().await }),
        );
        let recovery = Range::ALL
            .into_iter()
            .map(|r| {
                (
                    r,
                    Cache::new(
                        refresh,
                        loader(&reader, move |db| async move { db.recovery(r).await }),
                    ),
                )
            })
            .collect();
        Ok(Arc::new(Dashboard {
            reader,
            admin_db,
            admin,
            overview,
            live,
            recovery,
            refresh,
            allowed_hosts: config.allowed_hosts,
            throttle: throttle::Throttle::new(config.limits),
        }))
    }

    /// How many times the venues table was scanned (the overview loaded).
    pub fn overview_loads(&self) -> u64 {
        self.overview.loads()
    }

    /// A venue's page data.
    async fn venue(&self, id: i64) -> Result<data::VenueDetail, DbError> {
        self.reader.venue(id).await
    }

    fn credential(&self, headers: &HeaderMap) -> Credential {
        let Some(admin) = &self.admin else {
            return Credential::None;
        };
        let authz = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let session = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|c| auth::cookie(c, auth::SESSION_COOKIE));
        admin.credential(authz, session)
    }

    fn viewer(&self, cred: &Credential) -> Viewer {
        match (&self.admin, cred) {
            (None, _) => Viewer::ReadOnly,
            (Some(a), Credential::Session(id)) => Viewer::Admin {
                logout_csrf: Some(a.csrf_token(id, "/logout")),
            },
            (Some(_), Credential::Bearer) => Viewer::Admin { logout_csrf: None },
            (Some(_), _) => Viewer::Anonymous,
        }
    }

    fn forms(&self, cred: &Credential) -> pages::Forms<'_> {
        match &self.admin {
            Some(a) if cred.is_admin() => pages::Forms::new(Some(a), cred.binding()),
            _ => pages::Forms::none(),
        }
    }

    fn as_of<T>(&self, s: &Snapshot<T>) -> String {
        let mut out = format!(
            r#"<span id="as-of">as of {}</span> · cached, refreshed at most every {} s"#,
            time(s.as_of),
            self.refresh.as_secs()
        );
        if let Some(e) = &s.refresh_error {
            out.push_str(&format!(
                r#" · <span class="stale" title="{}">the last refresh failed; these figures are older</span>"#,
                html::text(e)
            ));
        }
        out
    }
}

/// Serves the dashboard on `listen` until `shutdown`; returns the bound address and the
/// server's task. It answers to the bound address (and `localhost` on loopback), the
/// configured `--allowed-host` names and the IP literal a connection arrived on.
pub async fn serve(
    d: Arc<Dashboard>,
    listen: SocketAddr,
    shutdown: Shutdown,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let bound = listener.local_addr()?;
    let hosts = HostPolicy::new(bound, &d.allowed_hosts);
    info!(hosts = %hosts.describe(), "dashboard: serving these host names (and the IP address a connection arrives on)");
    let app = router(d, hosts);
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app.into_make_service_with_connect_info::<Peer>())
            .with_graceful_shutdown(async move { shutdown.triggered().await })
            .await
        {
            warn!(error = %e, "dashboard server stopped");
        }
    });
    Ok((bound, task))
}

/// The routes, behind the [`guard`] for `hosts`.
pub fn router(d: Arc<Dashboard>, hosts: HostPolicy) -> Router {
    let gate = Arc::new(Gate {
        dashboard: d.clone(),
        hosts,
    });
    Router::new()
        .route("/", get(overview_page))
        .route("/failures", get(failures_page))
        .route("/recovery", get(recovery_page))
        .route("/venues", get(venues_page))
        .route("/venues/{id}", get(venue_page))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/venues/{id}/force-retry", post(force_retry))
        .route("/venues/{id}/purge", post(purge))
        .route(
            "/venues/{id}/images/{index}/force-retry",
            post(force_retry_image),
        )
        .route("/providers/pause", post(pause))
        .route("/providers/resume", post(resume))
        .route("/scan", post(scan))
        .route("/api/overview", get(api_overview))
        .route("/api/recovery", get(api_recovery))
        .route("/api/venues/{id}", get(api_venue))
        .route("/healthz", get(healthz))
        .route("/assets/dashboard.css", get(css))
        .route("/assets/favicon.svg", get(favicon))
        .route("/favicon.ico", get(favicon))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(16 * 1024))
        .layer(axum::middleware::from_fn_with_state(gate, guard::gate))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(d)
}

async fn security_headers(mut res: Response) -> Response {
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // No referrer to other sites; same-origin requests keep theirs, and with it the
    // `Origin` of a POST that the guard checks (under `no-referrer` it would be `null`).
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    res
}

type St = State<Arc<Dashboard>>;
type Params = Query<HashMap<String, String>>;

fn html_response(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
        .into_response()
}

fn path_of(uri: &Uri) -> String {
    uri.path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into())
}

/// `r` with another status.
fn with_status(mut r: Response, status: StatusCode) -> Response {
    *r.status_mut() = status;
    r
}

/// A page in the layout (200 OK).
fn render(
    d: &Dashboard,
    cred: &Credential,
    title: &str,
    nav: Nav,
    as_of: String,
    path: &str,
    body: &str,
) -> Response {
    let viewer = d.viewer(cred);
    html_response(
        StatusCode::OK,
        html::page(
            &Layout {
                title,
                nav,
                as_of,
                viewer: &viewer,
                path,
            },
            body,
        ),
    )
}

/// A page saying what went wrong.
fn error_page(
    d: &Dashboard,
    cred: &Credential,
    status: StatusCode,
    title: &str,
    message_html: &str,
) -> Response {
    with_status(
        render(
            d,
            cred,
            title,
            Nav::None,
            String::new(),
            "/",
            &format!(
                r#"{}<p><a href="/">Back to the overview</a></p>"#,
                notice("error", message_html)
            ),
        ),
        status,
    )
}

fn db_unavailable(d: &Dashboard, cred: &Credential, e: &str) -> Response {
    warn!(error = %redact_text(e, &[]), "dashboard: database read failed");
    error_page(
        d,
        cred,
        StatusCode::SERVICE_UNAVAILABLE,
        "Database unavailable",
        &format!(
            "The figures could not be read: {}. The dashboard keeps trying; reload in a few seconds.",
            html::text(e)
        ),
    )
}

async fn overview_page(State(d): St, headers: HeaderMap, uri: Uri, Query(q): Params) -> Response {
    let cred = d.credential(&headers);
    let (o, l) = tokio::join!(d.overview.get(), d.live.get());
    let (o, l) = match (o, l) {
        (Ok(o), Ok(l)) => (o, l),
        (Err(e), _) | (_, Err(e)) => return db_unavailable(&d, &cred, &e),
    };
    let now = Utc::now();
    let mut body = pages::flash(q.get("done").map(String::as_str), &|k| q.get(k).cloned());
    body.push_str(&pages::overview(
        &o.value,
        &l.value,
        &d.forms(&cred),
        now,
        l.as_of,
    ));
    render(
        &d,
        &cred,
        "Overview",
        Nav::Overview,
        d.as_of(&o),
        &path_of(&uri),
        &body,
    )
}

async fn failures_page(State(d): St, headers: HeaderMap, uri: Uri) -> Response {
    let cred = d.credential(&headers);
    match d.overview.get().await {
        Ok(o) => render(
            &d,
            &cred,
            "Failures",
            Nav::Failures,
            d.as_of(&o),
            &path_of(&uri),
            &pages::failures(&o.value),
        ),
        Err(e) => db_unavailable(&d, &cred, &e),
    }
}

fn range_param(q: &HashMap<String, String>) -> Option<Range> {
    match q.get("range") {
        None => Some(Range::Day),
        Some(r) => Range::parse(r),
    }
}

async fn recovery_page(State(d): St, headers: HeaderMap, uri: Uri, Query(q): Params) -> Response {
    let cred = d.credential(&headers);
    let Some(range) = range_param(&q) else {
        return error_page(
            &d,
            &cred,
            StatusCode::BAD_REQUEST,
            "Unknown range",
            r#"The range is one of <a href="/recovery?range=24h">24h</a>, <a href="/recovery?range=7d">7d</a> or <a href="/recovery?range=30d">30d</a>."#,
        );
    };
    let Some(cache) = d.recovery.get(&range) else {
        return not_found().await;
    };
    match cache.get().await {
        Ok(r) => render(
            &d,
            &cred,
            &format!("Recovery over the last {}", range.label()),
            Nav::Recovery,
            d.as_of(&r),
            &path_of(&uri),
            &pages::recovery(&r.value),
        ),
        Err(e) => db_unavailable(&d, &cred, &e),
    }
}

async fn venues_page(State(d): St, headers: HeaderMap, uri: Uri, Query(q): Params) -> Response {
    let cred = d.credential(&headers);
    let query = q
        .get("q")
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty());
    let overview = d.overview.get();
    let found = async {
        match &query {
            Some(q) => d.reader.find_venues(q, data::SEARCH_ROWS).await.map(Some),
            None => Ok(None),
        }
    };
    let (o, found) = tokio::join!(overview, found);
    let o = match o {
        Ok(o) => o,
        Err(e) => return db_unavailable(&d, &cred, &e),
    };
    let found = match found {
        Ok(f) => f,
        Err(e) if e.is_bad_input() => Some(Vec::new()),
        Err(e) => return db_unavailable(&d, &cred, &shown(&e)),
    };
    render(
        &d,
        &cred,
        "Venues",
        Nav::Venues,
        d.as_of(&o),
        &path_of(&uri),
        &pages::venues(&o.value.high_priority, query.as_deref(), found.as_deref()),
    )
}

async fn venue_page(
    State(d): St,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<String>,
    Query(q): Params,
) -> Response {
    let cred = d.credential(&headers);
    let Ok(id) = id.parse::<i64>() else {
        return not_found().await;
    };
    let detail = match d.venue(id).await {
        Ok(v) => v,
        Err(e) => return db_unavailable(&d, &cred, &e.to_string()),
    };
    if detail.venue.is_none() && detail.images.is_empty() && detail.attempts.is_empty() {
        return error_page(
            &d,
            &cred,
            StatusCode::NOT_FOUND,
            "No such venue",
            &format!(r#"There is no venue {id}. <a href="/venues">Search the venues</a>."#),
        );
    }
    let now = Utc::now();
    let mut body = String::from(pages::CRUMBS);
    body.push_str(&pages::flash(q.get("done").map(String::as_str), &|k| {
        q.get(k).cloned()
    }));
    body.push_str(&pages::venue(id, &detail, &d.forms(&cred), now));
    render(
        &d,
        &cred,
        &pages::venue_title(id, &detail),
        Nav::Venues,
        format!(r#"<span id="as-of">live, read at {}</span>"#, time(now)),
        &path_of(&uri),
        &body,
    )
}

fn json_response(status: StatusCode, v: serde_json::Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        redact_json(v).to_string(),
    )
        .into_response()
}

fn json_error(e: &str) -> Response {
    json_response(
        StatusCode::SERVICE_UNAVAILABLE,
        serde_json::json!({ "error": e }),
    )
}

fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339()
}

async fn api_overview(State(d): St) -> Response {
    match tokio::join!(d.overview.get(), d.live.get()) {
        (Ok(o), Ok(l)) => json_response(
            StatusCode::OK,
            serde_json::json!({
                "as_of": stamp(o.as_of),
                "stats": o.value.stats,
                "high_priority": o.value.high_priority,
                "live_as_of": stamp(l.as_of),
                "queue": l.value.queue,
                "providers": l.value.providers,
                "last_scan": l.value.last_scan,
            }),
        ),
        (Err(e), _) | (_, Err(e)) => json_error(&e),
    }
}

async fn api_recovery(State(d): St, Query(q): Params) -> Response {
    let Some(cache) = range_param(&q).and_then(|r| d.recovery.get(&r)) else {
        return json_response(
            StatusCode::BAD_REQUEST,
            serde_json::json!({"error": "range is 24h, 7d or 30d"}),
        );
    };
    match cache.get().await {
        Ok(r) => json_response(
            StatusCode::OK,
            serde_json::json!({"as_of": stamp(r.as_of), "recovery": *r.value}),
        ),
        Err(e) => json_error(&e),
    }
}

async fn api_venue(State(d): St, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse::<i64>() else {
        return json_response(
            StatusCode::NOT_FOUND,
            serde_json::json!({"error": "no such venue"}),
        );
    };
    match d.venue(id).await {
        Ok(v) if v.venue.is_none() && v.images.is_empty() && v.attempts.is_empty() => {
            json_response(
                StatusCode::NOT_FOUND,
                serde_json::json!({"error": "no such venue"}),
            )
        }
        Ok(v) => json_response(
            StatusCode::OK,
            serde_json::json!({"as_of": stamp(Utc::now()), "venue": v}),
        ),
        Err(e) => json_error(&e.to_string()),
    }
}

async fn healthz(State(d): St) -> Response {
    let probe = tokio::time::timeout(Duration::from_secs(3), d.reader.ping()).await;
    match probe {
        Ok(Ok(_)) => (StatusCode::OK, "ok\n").into_response(),
        _ => (StatusCode::SERVICE_UNAVAILABLE, "database unreachable\n").into_response(),
    }
}

async fn css() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        CSS,
    )
        .into_response()
}

async fn favicon() -> Response {
    (
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        FAVICON,
    )
        .into_response()
}

async fn not_found() -> Response {
    html_response(
        StatusCode::NOT_FOUND,
        html::page(
            &Layout {
                title: "Not found",
                nav: Nav::None,
                as_of: String::new(),
                viewer: &Viewer::ReadOnly,
                path: "/",
            },
            r#"<p>There is no such page. <a href="/">Back to the overview</a>.</p>"#,
        ),
    )
}

// ---- Login -------------------------------------------------------------------------

/// A local path to return to after logging in (never another site).
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.contains('\\')
                && !n.chars().any(|c| c.is_control())
                && !n.starts_with("/login")
                && n.len() <= 2000 =>
        {
            n.to_string()
        }
        _ => "/".into(),
    }
}

fn disabled(d: &Dashboard, cred: &Credential) -> Response {
    error_page(
        d,
        cred,
        StatusCode::FORBIDDEN,
        "Actions are disabled",
        "This dashboard is read-only: it was started without <code>--admin-token-file</code>.",
    )
}

async fn login_page(State(d): St, headers: HeaderMap, Query(q): Params) -> Response {
    let cred = d.credential(&headers);
    let Some(admin) = &d.admin else {
        return disabled(&d, &cred);
    };
    let next = safe_next(q.get("next").map(String::as_str));
    login_form(&d, &cred, admin, &next, false)
}

/// The log-in form (with a fresh CSRF token); `failed` adds the "wrong token" notice.
fn login_form(
    d: &Dashboard,
    cred: &Credential,
    admin: &Admin,
    next: &str,
    failed: bool,
) -> Response {
    render(
        d,
        cred,
        "Admin log in",
        Nav::None,
        String::new(),
        "/login",
        &pages::login(
            &admin.csrf_token(auth::LOGIN_BINDING, "/login"),
            next,
            failed,
        ),
    )
}

fn form_fields(body: &[u8]) -> HashMap<String, String> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

fn refused(d: &Dashboard, cred: &Credential, status: StatusCode, message: &str) -> Response {
    let mut r = error_page(d, cred, status, "Not allowed", message);
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(r#"Bearer realm="venue-images-dashboard""#),
        );
    }
    r
}

fn redirect(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, to.to_string())]).into_response()
}

async fn login(
    State(d): St,
    Extension(ClientIp(ip)): Extension<ClientIp>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let cred = d.credential(&headers);
    let Some(admin) = &d.admin else {
        return disabled(&d, &cred);
    };
    let f = form_fields(&body);
    let csrf = f.get("csrf").map(String::as_str).unwrap_or("");
    if !admin.csrf_ok(auth::LOGIN_BINDING, "/login", csrf) {
        return refused(
            &d,
            &cred,
            StatusCode::FORBIDDEN,
            "The form has expired (the dashboard restarted?). Go back, reload the page and try again.",
        );
    }
    let next = safe_next(f.get("next").map(String::as_str));
    if let Err(wait) = d.throttle.check(ip) {
        warn!(client = ?ip, "dashboard: admin log in refused unread (too many wrong tokens)");
        return guard::too_many(
            wait,
            error_page(
                &d,
                &cred,
                StatusCode::TOO_MANY_REQUESTS,
                "Too many wrong tokens",
                &format!(
                    "Too many wrong admin tokens: try again in {} s.",
                    guard::retry_after_secs(wait)
                ),
            ),
        );
    }
    let token = f.get("token").map(String::as_str).unwrap_or("");
    if !admin.token_matches(token) {
        d.throttle.failure(ip);
        warn!(client = ?ip, "dashboard: admin log in refused (wrong token)");
        return with_status(
            login_form(&d, &Credential::None, admin, &next, true),
            StatusCode::UNAUTHORIZED,
        );
    }
    d.throttle.success(ip);
    let id = admin.open_session();
    info!("dashboard: admin logged in");
    let mut r = redirect(&next);
    if let Ok(v) = HeaderValue::from_str(&auth::session_cookie(&id)) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

async fn logout(State(d): St, headers: HeaderMap, body: Bytes) -> Response {
    let cred = d.credential(&headers);
    if let (Some(admin), Credential::Session(id)) = (&d.admin, &cred) {
        let f = form_fields(&body);
        let csrf = f.get("csrf").map(String::as_str).unwrap_or("");
        if !admin.csrf_ok(id, "/logout", csrf) {
            return refused(
                &d,
                &cred,
                StatusCode::FORBIDDEN,
                "Cross-site request refused.",
            );
        }
        admin.close_session(id);
        info!("dashboard: admin logged out");
    }
    let mut r = redirect("/");
    if let Ok(v) = HeaderValue::from_str(&auth::clear_cookie()) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

// ---- Actions -----------------------------------------------------------------------

type Fields = HashMap<String, String>;

impl Dashboard {
    /// Checks the credential and the CSRF token of a POST to `path`, runs the action as
    /// the admin login, and redirects to `back(done)`.
    async fn act(
        &self,
        headers: &HeaderMap,
        path: &str,
        body: &[u8],
        build: impl FnOnce(&Fields) -> Result<Action, String>,
        back: impl FnOnce(&Done) -> String,
    ) -> Response {
        let cred = self.credential(headers);
        let (Some(admin), Some(pool)) = (&self.admin, &self.admin_db) else {
            return disabled(self, &cred);
        };
        let f = form_fields(body);
        let via = match &cred {
            Credential::None => {
                return refused(
                    self,
                    &cred,
                    StatusCode::UNAUTHORIZED,
                    r#"Actions need the admin token: <a href="/login">log in</a>, or send <code>Authorization: Bearer &lt;token&gt;</code>."#,
                )
            }
            Credential::Wrong => {
                warn!(action = path, "dashboard: action refused (wrong token)");
                return refused(self, &cred, StatusCode::FORBIDDEN, "Wrong admin token.");
            }
            Credential::Session(id) => {
                let csrf = f.get("csrf").map(String::as_str).unwrap_or("");
                if !admin.csrf_ok(id, path, csrf) {
                    warn!(action = path, "dashboard: action refused (CSRF token)");
                    return refused(
                        self,
                        &cred,
                        StatusCode::FORBIDDEN,
                        "The form's CSRF token is missing or wrong (the dashboard restarted, or the request did not come from its page). Reload the page and try again.",
                    );
                }
                "session"
            }
            Credential::Bearer => "bearer",
        };
        let action = match build(&f) {
            Ok(a) => a,
            Err(m) => {
                return error_page(
                    self,
                    &cred,
                    StatusCode::BAD_REQUEST,
                    "Bad request",
                    &esc(&m),
                )
            }
        };
        match pool.act(&action).await {
            Ok(done) => {
                info!(
                    action = %redact_text(&format!("{action:?}"), &[]),
                    result = %redact_text(&format!("{done:?}"), &[]),
                    via,
                    "dashboard: admin action"
                );
                self.live.invalidate();
                redirect(&back(&done))
            }
            Err(e) => {
                warn!(action = path, error = %e, "dashboard: admin action failed");
                let e = DbFailureText::from(&e);
                let (status, msg) = if e.permission {
                    (
                        StatusCode::FORBIDDEN,
                        format!(
                            "The admin database login may not do this: grant it <code>venue_image_admin</code> ({}).",
                            html::text(&e.text)
                        ),
                    )
                } else if e.bad_input {
                    (StatusCode::BAD_REQUEST, html::text(&e.text))
                } else {
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!("The database did not do it: {}", html::text(&e.text)),
                    )
                };
                error_page(self, &cred, status, "Action failed", &msg)
            }
        }
    }
}

fn count(done: &Done) -> i64 {
    match done {
        Done::Count(n) => *n,
        Done::Resumed(b) => *b as i64,
        _ => 0,
    }
}

async fn force_retry(
    State(d): St,
    headers: HeaderMap,
    Path(id): Path<i64>,
    body: Bytes,
) -> Response {
    d.act(
        &headers,
        &format!("/venues/{id}/force-retry"),
        &body,
        |_| Ok(Action::ForceRetry { venue_id: id }),
        |done| format!("/venues/{id}?done=force-retry&n={}", count(done)),
    )
    .await
}

async fn force_retry_image(
    State(d): St,
    headers: HeaderMap,
    Path((id, index)): Path<(i64, i32)>,
    body: Bytes,
) -> Response {
    d.act(
        &headers,
        &format!("/venues/{id}/images/{index}/force-retry"),
        &body,
        |_| {
            Ok(Action::ForceRetryImage {
                venue_id: id,
                element_index: index,
            })
        },
        |done| {
            format!(
                "/venues/{id}?done=force-retry-image&i={index}&n={}#image-{index}",
                count(done)
            )
        },
    )
    .await
}

async fn purge(State(d): St, headers: HeaderMap, Path(id): Path<i64>, body: Bytes) -> Response {
    d.act(
        &headers,
        &format!("/venues/{id}/purge"),
        &body,
        |f| {
            if f.get("confirm").map(String::as_str) == Some("yes") {
                Ok(Action::Purge { venue_id: id })
            } else {
                Err("Tick the confirmation box to purge.".into())
            }
        },
        |done| format!("/venues/{id}?done=purge&n={}", count(done)),
    )
    .await
}

/// The provider a pause or resume form names.
fn provider_field(body: &[u8]) -> Result<String, String> {
    let f = form_fields(body);
    let p = f.get("provider").map(|s| s.trim()).unwrap_or("");
    if p.is_empty() || p.len() > 100 {
        return Err("Which provider?".into());
    }
    Ok(p.to_string())
}

/// The provider for the redirect's query (empty when the form named none).
fn provider_query(provider: &Result<String, String>) -> String {
    html::query_escape(provider.as_deref().unwrap_or(""))
}

async fn pause(State(d): St, headers: HeaderMap, body: Bytes) -> Response {
    let provider = provider_field(&body);
    let back = format!("/?done=pause&p={}", provider_query(&provider));
    d.act(
        &headers,
        "/providers/pause",
        &body,
        |f| {
            let provider = provider?;
            let minutes: i64 = f
                .get("minutes")
                .and_then(|m| m.parse().ok())
                .filter(|m| (1..=7 * 24 * 60).contains(m))
                .ok_or("The pause lasts 1 minute to 7 days.")?;
            let reason = f
                .get("reason")
                .map(|r| r.trim().chars().take(200).collect::<String>())
                .filter(|r| !r.is_empty())
                .or_else(|| Some("paused from the dashboard".into()));
            Ok(Action::Pause {
                provider,
                seconds: minutes * 60,
                reason,
            })
        },
        |_| back,
    )
    .await
}

async fn resume(State(d): St, headers: HeaderMap, body: Bytes) -> Response {
    let provider = provider_field(&body);
    let p = provider_query(&provider);
    d.act(
        &headers,
        "/providers/resume",
        &body,
        |_| provider.map(|provider| Action::Resume { provider }),
        |done| format!("/?done=resume&p={p}&n={}", count(done)),
    )
    .await
}

async fn scan(State(d): St, headers: HeaderMap, body: Bytes) -> Response {
    d.act(
        &headers,
        "/scan",
        &body,
        |_| Ok(Action::Scan),
        |done| match done {
            Done::Scan(r) => format!(
                "/?done=scan&v={}&i={}&f={}&a={}&ms={}",
                r.transient_queued,
                r.images_queued,
                r.finalized,
                r.ambiguous_skipped,
                r.elapsed_ms.round() as i64
            ),
            _ => "/".into(),
        },
    )
    .await
}

// ---- The command -------------------------------------------------------------------

/// What a failed action says, already redacted.
struct DbFailureText {
    text: String,
    permission: bool,
    bad_input: bool,
}

impl From<&DbError> for DbFailureText {
    fn from(e: &DbError) -> Self {
        DbFailureText {
            text: shown(e),
            permission: e.is_permission_error(),
            bad_input: e.is_bad_input(),
        }
    }
}

async fn check_grants(d: Arc<Dashboard>) {
    use venue_images_core::roles::{executable, Role};
    if let Err(e) = d
        .reader
        .check(&executable(Role::Reader), Role::Reader.as_str())
        .await
    {
        warn!(error = %shown(&e), "DATABASE_URL's login is not ready for the dashboard (it needs venue_image_reader); pages will say so until it is");
    }
    if let Some(admin) = &d.admin_db {
        if let Err(e) = admin
            .check(&executable(Role::Admin), Role::Admin.as_str())
            .await
        {
            warn!(error = %shown(&e), "--admin-database-url's login is not ready (it needs venue_image_admin): actions will be refused");
        }
    }
}

/// `venue-image-uploader dashboard`: serves until SIGTERM or Ctrl-C.
pub async fn run(cli: &Cli, args: &DashboardArgs) -> Result<Exit, AppError> {
    let fail = |message: String| AppError {
        message: redact_text(&message, &[]),
        exit: Exit::Failure,
    };
    let reader_url = cli.database_url.clone().ok_or_else(|| {
        fail(
            "DATABASE_URL is not set (or pass --database-url): a login with venue_image_reader"
                .into(),
        )
    })?;
    let admin_token = match &args.admin_token_file {
        Some(path) => {
            // Read here only to report errors early; Admin::from_file trims the same way.
            let raw = std::fs::read_to_string(path)
                .map_err(|e| fail(format!("admin token file {}: {e}", path.display())))?;
            let t = raw.trim().to_string();
            if t.is_empty() {
                return Err(fail(format!(
                    "admin token file {} is empty",
                    path.display()
                )));
            }
            auth::check_token_length(&t)
                .map_err(|e| fail(format!("admin token file {}: {e}", path.display())))?;
            Some(t)
        }
        None => {
            if args.admin_database_url.is_some() {
                warn!("--admin-database-url is ignored without --admin-token-file: the dashboard is read-only");
            }
            None
        }
    };
    let d = Dashboard::new(Config {
        reader_url,
        admin_url: args.admin_database_url.clone(),
        admin_token,
        refresh: Duration::from_secs(args.refresh),
        allowed_hosts: args.allowed_hosts.clone(),
        limits: throttle::Limits::default(),
    })
    .map_err(fail)?;
    let (trigger, shutdown) = shutdown::channel();
    let _signals = on_signals(trigger);
    let (bound, server) = serve(d.clone(), args.listen, shutdown)
        .await
        .map_err(|e| fail(format!("dashboard on {}: {e}", args.listen)))?;
    {
        use std::io::Write;
        let mut out = std::io::stdout();
        // On 0.0.0.0 or [::], a URL that works from this host (its loopback address is
        // the address such a connection arrives on, which the dashboard answers to).
        let shown = match bound.ip() {
            std::net::IpAddr::V4(ip) if ip.is_unspecified() => {
                SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, bound.port()))
            }
            std::net::IpAddr::V6(ip) if ip.is_unspecified() => {
                SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, bound.port()))
            }
            _ => bound,
        };
        let _ = writeln!(out, "dashboard: http://{shown}/");
        let _ = out.flush();
    }
    info!(
        addr = %bound,
        refresh_s = d.refresh.as_secs(),
        actions = d.admin.is_some(),
        "dashboard serving{}",
        if d.admin.is_some() { "" } else { " (read-only: no --admin-token-file)" }
    );
    tokio::spawn(check_grants(d.clone()));
    // Start the first scan now, so that the first viewer does not wait for it.
    let warm = d.clone();
    tokio::spawn(async move {
        let _ = warm.overview.get().await;
    });
    let _ = server.await;
    info!("dashboard stopped");
    Ok(Exit::Ok)
}

#[cfg(test)]
mod tests;
