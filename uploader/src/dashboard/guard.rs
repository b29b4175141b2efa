//! What every request passes before a handler sees it: the `Host` it names, the `Origin`
//! of a `POST`, and the throttle on admin tokens presented in an `Authorization` header.
//!
//! - **Host** (DNS rebinding): a page whose name an attacker re-points at 127.0.0.1 reaches
//!   the dashboard with its own name in `Host`. Only the names the operator configured are
//!   served: the listen address (and `localhost:<port>` when it is a loopback one), each
//!   `--allowed-host`, and the IP literal of the address the connection arrived on (no
//!   rebinding page can send an IP literal: its origin would then be the dashboard's own).
//!   Anything else gets **421 Misdirected Request**. A request that names no host at all
//!   (HTTP/1.0 without `Host`) is served: browsers always send one, so it cannot come from
//!   a rebinding page, and old health checkers send none. The authority of an
//!   absolute-form request line or of HTTP/2's `:authority` is checked like `Host`.
//! - **Origin** (cross-site requests): every request that is not `GET`, `HEAD` or
//!   `OPTIONS` must carry no `Origin` or one of the allowed hosts with its scheme (`http`,
//!   or `https` for an `--allowed-host https://...`), and no `Sec-Fetch-Site` other than
//!   `same-origin` or `none`; otherwise **403**. `Origin: null` is refused (the pages set
//!   `Referrer-Policy: same-origin`, under which browsers send the real origin of a
//!   same-origin form). A missing `Origin` is accepted: browsers always send one on a
//!   cross-origin `POST` (and on same-origin ones), so a request without it comes from a
//!   script or an old browser; the CSRF token and the `SameSite=Strict` cookie still
//!   protect session actions, and a browser never adds the bearer header by itself.
//! - **Tokens**: see [`super::throttle`]. A client over its limit gets **429** with
//!   `Retry-After` before its token is even compared.

use super::throttle::{client_ip, Throttle};
use super::Dashboard;
pub use crate::host::{parse_allowed_host, AllowedHost};
use axum::extract::connect_info::{ConnectInfo, Connected};
use axum::extract::{Request, State};
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::{Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::serve::IncomingStream;
use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tracing::warn;

/// Both ends of the connection a request came on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peer {
    /// The client's address.
    pub remote: SocketAddr,
    /// The address it connected to (ours), when known.
    pub local: Option<SocketAddr>,
}

impl Connected<IncomingStream<'_, TcpListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, TcpListener>) -> Self {
        Peer {
            remote: *stream.remote_addr(),
            local: stream.io().local_addr().ok(),
        }
    }
}

/// The client's address as the handlers see it (`None` without connection information).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientIp(pub Option<IpAddr>);

/// The `Host` names and origins the dashboard answers to.
#[derive(Clone, Debug, Default)]
pub struct HostPolicy {
    hosts: HashSet<String>,
    origins: HashSet<String>,
    /// For messages: what is allowed.
    allowed: Vec<String>,
}

/// `ip:port` as it appears in a `Host` header (IPv6 in brackets).
fn literal(addr: SocketAddr) -> String {
    match addr.ip().to_canonical() {
        IpAddr::V4(ip) => format!("{ip}:{}", addr.port()),
        IpAddr::V6(ip) => format!("[{ip}]:{}", addr.port()),
    }
}

/// Whether `host` is the IP literal (with its port; 80 when absent) of the address the
/// connection arrived on.
fn is_local_literal(host: &str, local: Option<SocketAddr>) -> bool {
    let Some(local) = local else {
        return false;
    };
    let with_port = if host.ends_with(']') || !host.contains(':') {
        format!("{host}:80")
    } else {
        host.to_string()
    };
    with_port
        .parse::<SocketAddr>()
        .is_ok_and(|a| literal(a) == literal(local))
}

impl HostPolicy {
    /// The policy of a dashboard bound to `bound`, with the operator's `extra` hosts.
    pub fn new(bound: SocketAddr, extra: &[AllowedHost]) -> HostPolicy {
        let mut entries: Vec<AllowedHost> = Vec::new();
        let ip = bound.ip().to_canonical();
        if !ip.is_unspecified() {
            let host = match ip {
                IpAddr::V4(v4) => v4.to_string(),
                IpAddr::V6(v6) => format!("[{v6}]"),
            };
            entries.push(AllowedHost {
                https: false,
                host,
                port: bound.port(),
            });
            if ip.is_loopback() {
                entries.push(AllowedHost {
                    https: false,
                    host: "localhost".into(),
                    port: bound.port(),
                });
            }
        }
        entries.extend(extra.iter().cloned());
        let mut p = HostPolicy::default();
        for e in &entries {
            p.hosts.extend(e.host_values());
            p.origins.insert(e.origin());
            p.allowed.push(e.origin());
        }
        p
    }

    /// Whether `host` (a `Host` header value or a URI authority) is one of ours, for a
    /// connection that arrived on `local`.
    pub fn host_ok(&self, host: &str, local: Option<SocketAddr>) -> bool {
        let host = host.trim().to_ascii_lowercase();
        if self.hosts.contains(&host) {
            return true;
        }
        is_local_literal(&host, local)
    }

    /// Whether `origin` (an `Origin` header value) is one of ours.
    pub fn origin_ok(&self, origin: &str, local: Option<SocketAddr>) -> bool {
        let origin = origin.trim().to_ascii_lowercase();
        if self.origins.contains(&origin) {
            return true;
        }
        origin
            .strip_prefix("http://")
            .is_some_and(|host| is_local_literal(host, local))
    }

    /// What is allowed, for the operator's log.
    pub fn describe(&self) -> String {
        self.allowed.join(", ")
    }
}

/// Why the guard refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A `Host` (or authority) that is not ours: 421.
    Host,
    /// A cross-site or foreign-origin request that changes something: 403.
    Origin,
}

/// Checks `Host`, the request line's authority and, for requests that may change
/// something, `Origin` and `Sec-Fetch-Site`.
pub fn check(
    policy: &HostPolicy,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    local: Option<SocketAddr>,
) -> Result<(), Refusal> {
    // No Host at all is served (see the module documentation).
    for host in headers.get_all(header::HOST) {
        match host.to_str() {
            Ok(h) if policy.host_ok(h, local) => {}
            _ => return Err(Refusal::Host),
        }
    }
    if let Some(authority) = uri.authority() {
        if !policy.host_ok(authority.as_str(), local) || authority.as_str().contains('@') {
            return Err(Refusal::Host);
        }
    }
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(());
    }
    if let Some(site) = headers.get("sec-fetch-site") {
        if !matches!(site.to_str(), Ok("same-origin" | "none")) {
            return Err(Refusal::Origin);
        }
    }
    let mut origins = headers.get_all(header::ORIGIN).iter();
    match (origins.next(), origins.next()) {
        (None, _) => Ok(()),
        (Some(o), None) => match o.to_str() {
            Ok(o) if policy.origin_ok(o, local) => Ok(()),
            _ => Err(Refusal::Origin),
        },
        (Some(_), Some(_)) => Err(Refusal::Origin),
    }
}

fn plain(status: StatusCode, body: &'static str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

/// `Retry-After` for a wait: whole seconds, rounded up, at least 1.
pub fn retry_after_secs(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

/// `body` as a 429 answer saying when to come back.
pub fn too_many(wait: Duration, body: Response) -> Response {
    let mut r = body;
    *r.status_mut() = StatusCode::TOO_MANY_REQUESTS;
    if let Ok(v) = HeaderValue::from_str(&retry_after_secs(wait).to_string()) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

/// What the guard middleware holds.
pub struct Gate {
    /// The dashboard (its admin token and throttle).
    pub dashboard: Arc<Dashboard>,
    /// The names it answers to.
    pub hosts: HostPolicy,
}

/// The middleware: host and origin checks, then the throttle on bearer tokens; inserts
/// [`ClientIp`] for the handlers.
pub async fn gate(State(g): State<Arc<Gate>>, mut req: Request, next: Next) -> Response {
    let peer = req.extensions().get::<ConnectInfo<Peer>>().map(|c| c.0);
    let local = peer.and_then(|p| p.local);
    match check(&g.hosts, req.method(), req.uri(), req.headers(), local) {
        Ok(()) => {}
        Err(Refusal::Host) => {
            return plain(
                StatusCode::MISDIRECTED_REQUEST,
                "421 Misdirected Request: this dashboard does not answer to that host name (see --allowed-host).\n",
            )
        }
        Err(Refusal::Origin) => {
            warn!(path = %req.uri().path(), "dashboard: cross-origin request refused");
            return plain(
                StatusCode::FORBIDDEN,
                "403 Forbidden: cross-origin request refused.\n",
            );
        }
    }
    let ip = client_ip(peer.map(|p| p.remote));
    req.extensions_mut().insert(ClientIp(ip));
    if let Some(admin) = &g.dashboard.admin {
        if let Some(authz) = req.headers().get(header::AUTHORIZATION) {
            let throttle: &Throttle = &g.dashboard.throttle;
            if let Err(wait) = throttle.check(ip) {
                warn!(client = ?ip, "dashboard: token refused unread (too many wrong tokens)");
                return too_many(
                    wait,
                    plain(
                        StatusCode::TOO_MANY_REQUESTS,
                        "429 Too Many Requests: too many wrong admin tokens; try again later.\n",
                    ),
                );
            }
            match admin.credential(Some(authz.to_str().unwrap_or("")), None) {
                super::auth::Credential::Bearer => throttle.success(ip),
                _ => {
                    warn!(client = ?ip, "dashboard: wrong admin token in the Authorization header");
                    throttle.failure(ip);
                }
            }
        }
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bound(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn only_configured_hosts() {
        let p = HostPolicy::new(bound("127.0.0.1:8780"), &[]);
        for ok in ["127.0.0.1:8780", "localhost:8780", "LOCALHOST:8780"] {
            assert!(p.host_ok(ok, None), "{ok}");
        }
        for bad in [
            "evil.example:8780",
            "evil.example",
            "127.0.0.1:8781",
            "127.0.0.1",
            "localhost",
            "localhost.:8780",
            "127.0.0.1.nip.io:8780",
            "",
        ] {
            assert!(!p.host_ok(bad, None), "{bad}");
        }
        let extra = [
            parse_allowed_host("dash.example.com").unwrap(),
            parse_allowed_host("https://dash.example.org").unwrap(),
        ];
        let p = HostPolicy::new(bound("0.0.0.0:8780"), &extra);
        for ok in [
            "dash.example.com",
            "dash.example.com:80",
            "dash.example.org",
            "dash.example.org:443",
        ] {
            assert!(p.host_ok(ok, None), "{ok}");
        }
        assert!(!p.host_ok("0.0.0.0:8780", None));
        assert!(!p.host_ok("localhost:8780", None), "not bound to loopback");
        // The IP literal of the address the connection arrived on.
        let local = Some(bound("10.0.0.5:8780"));
        assert!(p.host_ok("10.0.0.5:8780", local));
        assert!(!p.host_ok("10.0.0.6:8780", local));
        assert!(!p.host_ok("10.0.0.5:8781", local));
        let local = Some(bound("[::ffff:10.0.0.5]:8780"));
        assert!(
            p.host_ok("10.0.0.5:8780", local),
            "IPv4 on a dual-stack socket"
        );
        let p = HostPolicy::new(bound("[::1]:8780"), &[]);
        assert!(p.host_ok("[::1]:8780", None));
        assert!(p.host_ok("localhost:8780", None));
    }

    #[test]
    fn origins() {
        let extra = [parse_allowed_host("https://dash.example.org").unwrap()];
        let p = HostPolicy::new(bound("127.0.0.1:8780"), &extra);
        for ok in [
            "http://127.0.0.1:8780",
            "http://localhost:8780",
            "https://dash.example.org",
        ] {
            assert!(p.origin_ok(ok, None), "{ok}");
        }
        for bad in [
            "null",
            "",
            "https://127.0.0.1:8780",
            "http://dash.example.org",
            "http://evil.example",
            "http://127.0.0.1:8781",
            "http://127.0.0.1:8780/",
            "http://127.0.0.1:8780.evil.example",
        ] {
            assert!(!p.origin_ok(bad, None), "{bad}");
        }
        let local = Some(bound("127.0.0.1:8780"));
        assert!(p.origin_ok("http://127.0.0.1:8780", local));
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn posts_need_an_origin_of_ours_or_none() {
        let p = HostPolicy::new(bound("127.0.0.1:8780"), &[]);
        let uri: Uri = "/scan".parse().unwrap();
        let post = |pairs: &[(&'static str, &'static str)]| {
            check(&p, &Method::POST, &uri, &headers(pairs), None)
        };
        assert_eq!(post(&[("host", "127.0.0.1:8780")]), Ok(()), "curl, scripts");
        assert_eq!(
            post(&[
                ("host", "127.0.0.1:8780"),
                ("origin", "http://127.0.0.1:8780"),
                ("sec-fetch-site", "same-origin")
            ]),
            Ok(())
        );
        for bad in [
            &[("host", "127.0.0.1:8780"), ("origin", "null")][..],
            &[
                ("host", "127.0.0.1:8780"),
                ("origin", "http://evil.example"),
            ],
            &[
                ("host", "127.0.0.1:8780"),
                ("origin", "null"),
                ("sec-fetch-site", "same-origin"),
            ],
            &[("host", "127.0.0.1:8780"), ("sec-fetch-site", "cross-site")],
            &[("host", "127.0.0.1:8780"), ("sec-fetch-site", "same-site")],
            &[
                ("host", "127.0.0.1:8780"),
                ("origin", "http://127.0.0.1:8780"),
                ("origin", "http://evil.example"),
            ],
        ] {
            assert_eq!(post(bad), Err(Refusal::Origin), "{bad:?}");
        }
        // A rebinding page: its own name in Host, and (same-origin to the browser) its
        // own origin.
        assert_eq!(
            post(&[
                ("host", "evil.example:8780"),
                ("origin", "http://evil.example:8780"),
                ("sec-fetch-site", "same-origin")
            ]),
            Err(Refusal::Host)
        );
        // GETs need no Origin, but the Host still counts.
        let get = |pairs: &[(&'static str, &'static str)]| {
            check(&p, &Method::GET, &uri, &headers(pairs), None)
        };
        assert_eq!(
            get(&[("host", "127.0.0.1:8780"), ("origin", "null")]),
            Ok(())
        );
        assert_eq!(get(&[("host", "evil.example:8780")]), Err(Refusal::Host));
        assert_eq!(
            get(&[("host", "127.0.0.1:8780"), ("host", "evil.example")]),
            Err(Refusal::Host),
            "a second Host header"
        );
        assert_eq!(get(&[]), Ok(()), "HTTP/1.0 without Host");
        // The authority of an absolute-form request line.
        let abs: Uri = "http://evil.example:8780/".parse().unwrap();
        assert_eq!(
            check(
                &p,
                &Method::GET,
                &abs,
                &headers(&[("host", "127.0.0.1:8780")]),
                None
            ),
            Err(Refusal::Host)
        );
        let ours: Uri = "http://127.0.0.1:8780/".parse().unwrap();
        assert_eq!(
            check(&p, &Method::GET, &ours, &HeaderMap::new(), None),
            Ok(())
        );
    }
}
