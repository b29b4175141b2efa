//! Secrets out of every string the project stores, logs or shows: API keys and
//! signatures in provider URLs (Google's `key=`), credentials in URLs. One rule, used by
//! the extension (queue tables, attempt log, error messages) and by the uploader (logs,
//! metrics, write-back messages).

/// Query parameters whose values are secrets.
const SECRET_PARAMS: &[&str] = &[
    "key",
    "api_key",
    "apikey",
    "token",
    "access_token",
    "signature",
    "sig",
    "client_secret",
];

/// The URL with secret query values replaced by `REDACTED` and `user:pass@` removed.
/// Works on any string (no parsing that could fail). The uploader redacts with it too.
pub fn redact_url(url: &str) -> String {
    let (head, fragment) = match url.find('#') {
        Some(i) => (&url[..i], &url[i..]),
        None => (url, ""),
    };
    let (base, query) = match head.find('?') {
        Some(i) => (&head[..i], Some(&head[i + 1..])),
        None => (head, None),
    };
    // userinfo@ in the authority (the last '@' before the path: a password may hold '@')
    let base = match base.find("://") {
        Some(s) => {
            let rest = &base[s + 3..];
            let auth_end = rest.find('/').unwrap_or(rest.len());
            match rest[..auth_end].rfind('@') {
                Some(at) => format!("{}{}", &base[..s + 3], &rest[at + 1..]),
                None => base.to_string(),
            }
        }
        None => base.to_string(),
    };
    let Some(q) = query else {
        return format!("{base}{fragment}");
    };
    let query = q
        .split('&')
        .map(|p| match p.find('=') {
            Some(i) if SECRET_PARAMS.iter().any(|s| p[..i].eq_ignore_ascii_case(s)) => {
                format!("{}=REDACTED", &p[..i])
            }
            _ => p.to_string(),
        })
        .collect::<Vec<_>>()
        .join("&");
    format!("{base}?{query}{fragment}")
}

/// Redacts every URL-looking token of a free text (messages from uploaders).
pub fn redact_text(text: &str) -> String {
    text.split_inclusive(char::is_whitespace)
        .map(|tok| {
            if tok.contains("://") || tok.contains('?') {
                let trimmed = tok.trim_end();
                format!("{}{}", redact_url(trimmed), &tok[trimmed.len()..])
            } else {
                tok.to_string()
            }
        })
        .collect()
}
