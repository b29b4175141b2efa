//! The admin credential: the token from `--admin-token-file`, sessions opened by the
//! login form, and CSRF tokens for every action form.
//!
//! - A request is an admin's when it carries `Authorization: Bearer <token>` or the
//!   session cookie set by `POST /login` (HttpOnly, SameSite=Strict, 12 hours, forgotten
//!   on logout and when the process restarts).
//! - Tokens are compared in constant time (SHA-256 of both sides, then
//!   [`subtle::ConstantTimeEq`], so not even the length leaks).
//! - Every form of an action carries a CSRF token: an HMAC-SHA256, under a random key
//!   drawn at start, of the session and the form's action path. It is checked in
//!   constant time; a token for one venue's purge is no good for another's. A request
//!   authenticated with the bearer header needs none (a browser never adds that header
//!   by itself, so a cross-site form cannot carry it).

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "vi_dashboard_session";

/// How long a session lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);

/// What binds the CSRF token of the login form (there is no session yet).
pub const LOGIN_BINDING: &str = "login";

/// What binds the CSRF tokens of pages shown to a bearer request.
pub const BEARER_BINDING: &str = "bearer";

/// The shortest admin token the dashboard starts with, in characters.
pub const MIN_TOKEN_CHARS: usize = 16;

/// Refuses a token shorter than [`MIN_TOKEN_CHARS`] (surrounding whitespace is not part
/// of it).
pub fn check_token_length(token: &str) -> Result<(), String> {
    let n = token.trim().chars().count();
    if n < MIN_TOKEN_CHARS {
        return Err(format!(
            "the admin token has {n} characters, fewer than {MIN_TOKEN_CHARS}: use a long random one (for example: openssl rand -base64 32)"
        ));
    }
    Ok(())
}

type HmacSha256 = Hmac<Sha256>;

/// The admin credential and its sessions.
pub struct Admin {
    token_digest: [u8; 32],
    key: [u8; 32],
    sessions: Mutex<HashMap<String, Instant>>,
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Neither the token's digest nor the key nor the sessions.
        f.write_str("Admin { .. }")
    }
}

/// How a request presented itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credential {
    /// Nothing (or an expired session).
    None,
    /// The right token in the `Authorization` header.
    Bearer,
    /// A live session (its id).
    Session(String),
    /// An `Authorization` header with a wrong token, or not a bearer one.
    Wrong,
}

impl Credential {
    /// Whether the request is an admin's.
    pub fn is_admin(&self) -> bool {
        matches!(self, Credential::Bearer | Credential::Session(_))
    }

    /// What its CSRF tokens are bound to.
    pub fn binding(&self) -> &str {
        match self {
            Credential::Session(id) => id,
            Credential::Bearer => BEARER_BINDING,
            _ => LOGIN_BINDING,
        }
    }
}

fn sha256(b: &[u8]) -> [u8; 32] {
    Sha256::digest(b).into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || s.len() > 128 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

impl Admin {
    /// The credential for `token`, with a fresh random CSRF key.
    pub fn new(token: &str) -> Admin {
        Admin {
            token_digest: sha256(token.as_bytes()),
            key: rand::random(),
            sessions: Mutex::new(HashMap::new()),
        }
    }

    /// Reads the token from a file (surrounding whitespace and the final newline are not
    /// part of it). Refuses an empty token, and one shorter than [`MIN_TOKEN_CHARS`].
    pub fn from_file(path: &std::path::Path) -> Result<Admin, String> {
        const WHAT: &str = "admin token file";
        let token = crate::cli::read_secret_file(path, WHAT)?;
        check_token_length(&token).map_err(|e| format!("{WHAT} {}: {e}", path.display()))?;
        Ok(Admin::new(&token))
    }

    /// Whether `presented` is the token (constant time).
    pub fn token_matches(&self, presented: &str) -> bool {
        sha256(presented.trim().as_bytes())
            .ct_eq(&self.token_digest)
            .into()
    }

    /// The credential of a request, from its `Authorization` header and session cookie.
    pub fn credential(&self, authorization: Option<&str>, session: Option<&str>) -> Credential {
        if let Some(h) = authorization {
            return match h.strip_prefix("Bearer ") {
                Some(t) if self.token_matches(t) => Credential::Bearer,
                _ => Credential::Wrong,
            };
        }
        match session {
            Some(id) if self.session_alive(id) => Credential::Session(id.to_string()),
            _ => Credential::None,
        }
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Opens a session; returns its id (the cookie's value).
    pub fn open_session(&self) -> String {
        let id = hex(&rand::random::<[u8; 32]>());
        let now = Instant::now();
        let mut s = self.sessions();
        s.retain(|_, exp| *exp > now);
        s.insert(id.clone(), now + SESSION_TTL);
        id
    }

    /// Whether a session is open.
    pub fn session_alive(&self, id: &str) -> bool {
        self.sessions()
            .get(id)
            .is_some_and(|exp| *exp > Instant::now())
    }

    /// Ends a session.
    pub fn close_session(&self, id: &str) {
        self.sessions().remove(id);
    }

    fn mac(&self, binding: &str, action: &str) -> HmacSha256 {
        // new_from_slice accepts keys of any length; 32 bytes never fails.
        let mut m = <HmacSha256 as Mac>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        m.update(b"venue-image-dashboard csrf\0");
        m.update(binding.as_bytes());
        m.update(b"\0");
        m.update(action.as_bytes());
        m
    }

    /// The CSRF token of the form posting to `action`, for this session (`binding`).
    pub fn csrf_token(&self, binding: &str, action: &str) -> String {
        hex(&self.mac(binding, action).finalize().into_bytes())
    }

    /// Whether `presented` is the CSRF token of `action` for `binding` (constant time).
    pub fn csrf_ok(&self, binding: &str, action: &str, presented: &str) -> bool {
        match unhex(presented) {
            Some(bytes) => self.mac(binding, action).verify_slice(&bytes).is_ok(),
            None => false,
        }
    }
}

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|kv| {
        let (k, v) = kv.trim().split_once('=')?;
        (k == name).then_some(v)
    })
}

/// The `Set-Cookie` value that opens a session.
pub fn session_cookie(id: &str) -> String {
    format!(
        "{SESSION_COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
        SESSION_TTL.as_secs()
    )
}

/// The `Set-Cookie` value that removes the session cookie.
pub fn clear_cookie() -> String {
    format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_and_bearer_header() {
        let a = Admin::new("s3cret-token");
        assert!(a.token_matches("s3cret-token"));
        assert!(a.token_matches("s3cret-token\n"));
        assert!(!a.token_matches("s3cret-toke"));
        assert!(!a.token_matches(""));
        assert_eq!(
            a.credential(Some("Bearer s3cret-token"), None),
            Credential::Bearer
        );
        assert_eq!(a.credential(Some("Bearer nope"), None), Credential::Wrong);
        assert_eq!(
            a.credential(Some("Basic czNjcmV0LXRva2Vu"), None),
            Credential::Wrong
        );
        // A wrong header is wrong even with a good session.
        let id = a.open_session();
        assert_eq!(
            a.credential(Some("Bearer nope"), Some(&id)),
            Credential::Wrong
        );
        assert_eq!(
            a.credential(None, Some(&id)),
            Credential::Session(id.clone())
        );
        assert_eq!(a.credential(None, Some("forged")), Credential::None);
        a.close_session(&id);
        assert_eq!(a.credential(None, Some(&id)), Credential::None);
    }

    #[test]
    fn token_file() {
        let dir = crate::cli::ScratchDir::new("dash-token");
        let p = dir.file("token", "  abc123-abc123-abc123\n");
        assert!(Admin::from_file(&p)
            .unwrap()
            .token_matches("abc123-abc123-abc123"));
        std::fs::write(&p, "abc123\n").unwrap();
        assert!(Admin::from_file(&p).unwrap_err().contains("fewer than 16"));
        // Characters, not bytes: 15 two-byte characters are too short.
        std::fs::write(&p, "é".repeat(15)).unwrap();
        assert!(Admin::from_file(&p).is_err());
        std::fs::write(&p, "é".repeat(16)).unwrap();
        assert!(Admin::from_file(&p).is_ok());
        std::fs::write(&p, "\n").unwrap();
        assert!(Admin::from_file(&p).unwrap_err().contains("empty"));
        assert!(Admin::from_file(&dir.0.join("missing")).is_err());
    }

    #[test]
    fn csrf_tokens_are_bound_to_session_and_action() {
        let a = Admin::new("t");
        let s1 = a.open_session();
        let s2 = a.open_session();
        let t = a.csrf_token(&s1, "/venues/5/purge");
        assert_eq!(t.len(), 64);
        assert!(a.csrf_ok(&s1, "/venues/5/purge", &t));
        assert!(!a.csrf_ok(&s2, "/venues/5/purge", &t), "other session");
        assert!(!a.csrf_ok(&s1, "/venues/6/purge", &t), "other action");
        assert!(!a.csrf_ok(&s1, "/venues/5/purge", &t[..63]), "truncated");
        assert!(!a.csrf_ok(&s1, "/venues/5/purge", ""), "empty");
        assert!(!a.csrf_ok(&s1, "/venues/5/purge", "zz"), "not hex");
        assert!(
            !a.csrf_ok(&s1, "/venues/5/purge", &"0".repeat(64)),
            "made up"
        );
        // Another process (another key) does not accept it.
        let b = Admin::new("t");
        assert!(!b.csrf_ok(&s1, "/venues/5/purge", &t));
        // The separator keeps binding and action apart.
        assert_ne!(a.csrf_token("a", "b/c"), a.csrf_token("ab", "/c"));
    }

    #[test]
    fn cookies() {
        assert_eq!(
            cookie("a=1; vi_dashboard_session=abc; b=2", SESSION_COOKIE),
            Some("abc")
        );
        assert_eq!(cookie("xvi_dashboard_session=abc", SESSION_COOKIE), None);
        assert_eq!(cookie("", SESSION_COOKIE), None);
        let c = session_cookie("abc");
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict"));
        assert!(clear_cookie().contains("Max-Age=0"));
    }
}
