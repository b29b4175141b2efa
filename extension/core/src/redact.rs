//! Secrets out of every string the project stores, logs or shows: API keys, tokens and
//! signatures (Google's `key=`, signed-URL parameters), credentials in URLs and
//! `Authorization` headers. One rule, used by the extension (queue tables, attempt log,
//! error messages) and by the uploader (logs, metrics, write-back messages, dashboard
//! pages, which add literal secrets such as the ImageKit private key).
//!
//! The rule never tries to find where a URL ends (commas and parentheses are legal in
//! URLs, and messages wrap URLs in parentheses), so it works the same on a bare URL, on
//! a reqwest error message, on JSON, on a header line and on any free text:
//!
//! 1. **Secret pairs, anywhere:** a name, a separator `=` or `:` (spaces or tabs may
//!    stand around it), a value.
//!    - The **name** is the run of characters before the separator back to whitespace
//!      or one of `? & ; # " ' < > ( ) { } , / \ | =` (and `:` for a `:` pair), so after
//!      `?`, `&`, `;`, a fragment `#`, or in free text; or, when the separator follows a
//!      quote, the quoted string (`"api_key": ...`, `'token': ...`). It is
//!      percent-decoded and compared case-insensitively with `-` and `_` ignored (see
//!      [`is_secret_name`]). Signed-URL parameters (`s`, `ik-s`, `hdnts`, `hdnea`,
//!      `policy`) are secret before `=` only: before a `:` they are ordinary words.
//!      `::` (paths, IPv6) is no separator.
//!    - A **quoted value** (`"…"` or `'…'`, backslash escapes honoured) is the text up to
//!      the closing quote, or to the end of the text when there is none.
//!    - An **unquoted value** runs to whitespace, `& ; # " ' < > ) ] }` or the end of the
//!      text; after a `:` also to `,` (JSON, header lists); a `{` or `[` after a `:` is
//!      a structure, not a value (its own pairs are redacted one by one).
//!    - After an `Authorization` name (`Proxy-Authorization` too), a known scheme
//!      (`Bearer`, `Basic`, `Digest`, ...) is kept and what follows it is the value;
//!      after a `:` the value runs to the end of the line (a header's value).
//!
//!    The value becomes `REDACTED`; the name, the separator and the quotes are kept.
//! 2. **Bearer tokens, anywhere:** the word `Bearer` (any case) followed by spaces and a
//!    token: the token becomes `REDACTED`.
//! 3. **Credentials in an authority.** After a scheme-like `xxx:` and one or more `/` or
//!    `\`, the authority runs to the next `/`, `\`, `?`, `#` or whitespace; if it holds an
//!    `@`, everything up to and including its last `@` is dropped.
//! 4. Everything else is kept byte for byte.
//!
//! One round runs authority, pairs, bearer tokens, authority (a redacted value can end an
//! authority that used to stop at a `/` inside the value); rounds repeat until one
//! changes nothing, which makes redaction idempotent. Only ASCII delimiters are ever cut
//! at, so every cut is on a char boundary; nothing panics.

use std::borrow::Cow;
use std::ops::Range;

/// What a secret value becomes.
const REDACTED: &str = "REDACTED";

/// Parameter names whose values are secrets, lower-case with `-` and `_` removed.
const SECRET_NAMES: &[&str] = &[
    "key",
    "apikey",
    "xapikey",
    "token",
    "accesstoken",
    "refreshtoken",
    "idtoken",
    "auth",
    "authorization",
    "proxyauthorization",
    "signature",
    "sig",
    "clientsecret",
    "clientid",
    "password",
    "passwd",
    "pwd",
    "secret",
    "jwt",
    "hmac",
    "xamzsignature",
    "xamzcredential",
    "xamzsecuritytoken",
    "xgoogsignature",
    "xgoogcredential",
    "googleaccessid",
];

/// Signed-URL parameters (lower-case, `-` and `_` removed): ImageKit's `ik-s`, imgix's
/// `s`, Akamai's `hdnts` / `hdnea` tokens, CloudFront's `Policy`. Secret as `name=value`
/// only: as words before a `:` (`policy: ...`, `5 s: ...`) they are ordinary text.
const SIGNED_URL_NAMES: &[&str] = &["s", "iks", "hdnts", "hdnea", "policy"];

/// Name endings that make a parameter secret (`-` and `_` removed): `apiKey`,
/// `session_token`, `x-goog-credential`, `db_password`, ...
const SECRET_SUFFIXES: &[&str] = &[
    "key",
    "token",
    "tokens",
    "secret",
    "secrets",
    "signature",
    "password",
    "credential",
    "credentials",
    "authorization",
    "jwt",
    "hmac",
];

/// HTTP authentication schemes kept before a redacted credential (lower-case).
const AUTH_SCHEMES: &[&str] = &[
    "basic",
    "bearer",
    "digest",
    "token",
    "negotiate",
    "ntlm",
    "apikey",
    "oauth",
    "dpop",
    "hawk",
    "hoba",
    "mutual",
    "vapid",
    "privatetoken",
    "aws4-hmac-sha256",
    "scram-sha-1",
    "scram-sha-256",
];

/// Which separator a pair has.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Sep {
    /// `name=value`: query strings, forms, free text.
    Equals,
    /// `name: value`: JSON, headers, YAML.
    Colon,
}

/// Is `name` (as written before an `=`) the name of a secret?
///
/// The name is percent-decoded (repeatedly, so `%256Bey` is `key` too), lower-cased and
/// split into words at every character that is not a letter, digit, `-` or `_`. The last
/// non-empty word decides (`api_key`, `cfg.apiKey`, `user[api_key]`); in a bracketed
/// name any word does (`key[0]`). A word is secret when, with `-` and `_` removed, it is
/// one of the known names (signed-URL parameters such as `ik-s`, `s`, `hdnts` and
/// `policy` included) or ends like one (`key`, `token`, `secret`, `signature`,
/// `password`, `credential`, `authorization`, `jwt`, `hmac`).
pub fn is_secret_name(name: &str) -> bool {
    secret_name(name, Sep::Equals)
}

fn secret_name(name: &str, sep: Sep) -> bool {
    let decoded = percent_decode_fully(name.as_bytes());
    let words: Vec<Vec<u8>> = decoded
        .split(|b| !(b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_'))
        .map(|w| {
            w.iter()
                .filter(|b| **b != b'-' && **b != b'_')
                .map(u8::to_ascii_lowercase)
                .collect::<Vec<u8>>()
        })
        .filter(|w| !w.is_empty())
        .collect();
    let secret = |w: &Vec<u8>| is_secret_word(w, sep);
    if decoded.contains(&b'[') {
        words.iter().any(secret)
    } else {
        words.last().is_some_and(secret)
    }
}

fn is_secret_word(w: &[u8], sep: Sep) -> bool {
    SECRET_NAMES.iter().any(|n| w == n.as_bytes())
        || SECRET_SUFFIXES.iter().any(|s| w.ends_with(s.as_bytes()))
        || (sep == Sep::Equals && SIGNED_URL_NAMES.iter().any(|n| w == n.as_bytes()))
}

/// Whether a (secret) name is an `Authorization` header's.
fn is_authorization(name: &str) -> bool {
    let w: Vec<u8> = percent_decode_fully(name.as_bytes())
        .into_iter()
        .filter(|b| b.is_ascii_alphanumeric())
        .map(|b| b.to_ascii_lowercase())
        .collect();
    w.ends_with(b"authorization")
}

/// Percent-decodes until nothing changes (so that `%252e`, decoded twice by some servers,
/// is `.`); malformed or truncated escapes stay as they are. Also what
/// [`crate::retry`] decodes URL paths with.
pub(crate) fn percent_decode_fully(b: &[u8]) -> Vec<u8> {
    let mut cur = b.to_vec();
    loop {
        let next = percent_decode(&cur);
        if next == cur {
            return cur;
        }
        cur = next;
    }
}

/// The value of a hexadecimal digit (either case).
pub(crate) fn hex_value(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

fn percent_decode(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex_value(b[i + 1]), hex_value(b[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// Characters that end a name when scanning back from its separator.
fn ends_name(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '=' | '?'
                | '&'
                | ';'
                | '#'
                | '"'
                | '\''
                | '<'
                | '>'
                | '('
                | ')'
                | '{'
                | '}'
                | ','
                | '/'
                | '\\'
                | '|'
        )
}

/// Characters that end an unquoted value.
fn ends_value(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '&' | ';' | '#' | '"' | '\'' | '<' | '>' | ')' | ']' | '}'
        )
}

/// Spaces and tabs, which may stand around a separator (not line ends).
fn is_blank(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// Characters that may precede the `:` of a scheme.
fn is_scheme_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.')
}

fn is_slash(b: u8) -> bool {
    b == b'/' || b == b'\\'
}

/// The name before the separator at `sep_at`: a quoted string right before it (blanks
/// between allowed), or the run of characters back to a name delimiter.
fn name_before(text: &str, sep_at: usize, sep: Sep) -> Option<Range<usize>> {
    let b = text.as_bytes();
    let mut end = sep_at;
    while end > 0 && is_blank(b[end - 1]) {
        end -= 1;
    }
    let last = *b.get(end.checked_sub(1)?)?;
    if last == b'"' || last == b'\'' {
        let close = end - 1;
        let open = text[..close].rfind(last as char)?;
        return Some(open + 1..close);
    }
    let start = text[..end]
        .char_indices()
        .rev()
        .find(|&(_, c)| ends_name(c) || (sep == Sep::Colon && c == ':'))
        .map_or(0, |(i, c)| i + c.len_utf8());
    Some(start..end)
}

/// Where the credential after a known authentication scheme starts (`Bearer abc` → the
/// `a`), if `text[at..]` starts with a scheme, blanks and something more.
fn after_scheme(text: &str, at: usize) -> Option<usize> {
    let b = text.as_bytes();
    let word_end = at
        + b[at..]
            .iter()
            .take_while(|c| c.is_ascii_alphanumeric() || **c == b'-')
            .count();
    let word = text[at..word_end].to_ascii_lowercase();
    if !AUTH_SCHEMES.contains(&word.as_str()) {
        return None;
    }
    let next = word_end + b[word_end..].iter().take_while(|c| is_blank(**c)).count();
    let more = b.get(next).is_some_and(|c| !c.is_ascii_whitespace());
    (next > word_end && more).then_some(next)
}

/// The secret part of the value that starts after the separator (at `from`), if any.
fn value_after(text: &str, from: usize, sep: Sep, authorization: bool) -> Option<Range<usize>> {
    let b = text.as_bytes();
    let mut at = from;
    while at < b.len() && is_blank(b[at]) {
        at += 1;
    }
    let first = *b.get(at)?;
    if first == b'"' || first == b'\'' {
        let start = at + 1;
        let mut i = start;
        while i < b.len() && b[i] != first {
            i += if b[i] == b'\\' { 2 } else { 1 };
        }
        let end = i.min(b.len());
        return (end > start).then_some(start..end);
    }
    if sep == Sep::Colon && (first == b'{' || first == b'[') {
        return None;
    }
    let mut start = at;
    if authorization {
        start = after_scheme(text, at).unwrap_or(at);
        if sep == Sep::Colon {
            // A header's value: the rest of the line.
            let end = text[start..]
                .find(['\n', '\r'])
                .map_or(text.len(), |p| start + p);
            return (end > start).then_some(start..end);
        }
    }
    let end = text[start..]
        .find(|c: char| ends_value(c) || (sep == Sep::Colon && c == ','))
        .map_or(text.len(), |p| start + p);
    (end > start).then_some(start..end)
}

/// A text with some of its ranges replaced, built as a scan goes from left to right.
struct Edited<'a> {
    text: &'a str,
    out: String,
    /// `text[..copied]` is in `out` (replaced where it was).
    copied: usize,
}

impl<'a> Edited<'a> {
    fn new(text: &'a str) -> Self {
        Edited {
            text,
            out: String::new(),
            copied: 0,
        }
    }

    /// Replaces `range`, which starts at or after the end of the last one replaced.
    fn replace(&mut self, range: Range<usize>, with: &str) {
        self.out.push_str(&self.text[self.copied..range.start]);
        self.out.push_str(with);
        self.copied = range.end;
    }

    /// The text with its replacements (borrowed when there were none).
    fn finish(mut self) -> Cow<'a, str> {
        if self.copied == 0 {
            return Cow::Borrowed(self.text);
        }
        self.out.push_str(&self.text[self.copied..]);
        Cow::Owned(self.out)
    }
}

/// Rule 1: the values of secret `name=value` and `name: value` pairs become `REDACTED`.
fn redact_pairs(text: &str) -> Cow<'_, str> {
    let b = text.as_bytes();
    let mut out = Edited::new(text);
    let mut i = 0;
    while i < b.len() {
        let sep = match b[i] {
            b'=' => Sep::Equals,
            b':' => Sep::Colon,
            _ => {
                i += 1;
                continue;
            }
        };
        if sep == Sep::Colon && ((i > 0 && b[i - 1] == b':') || b.get(i + 1) == Some(&b':')) {
            i += 1;
            continue;
        }
        let value = name_before(text, i, sep).and_then(|n| {
            let name = &text[n];
            if secret_name(name, sep) {
                value_after(text, i + 1, sep, is_authorization(name))
            } else {
                None
            }
        });
        let Some(v) = value else {
            i += 1;
            continue;
        };
        if &text[v.clone()] != REDACTED {
            out.replace(v.clone(), REDACTED);
        }
        i = v.end.max(i + 1);
    }
    out.finish()
}

/// Rule 2: the token after the word `Bearer` becomes `REDACTED`.
fn redact_bearer(text: &str) -> Cow<'_, str> {
    // ASCII lower-casing keeps every byte where it was.
    let lower = text.to_ascii_lowercase();
    let b = text.as_bytes();
    let mut out = Edited::new(text);
    let mut from = 0;
    while let Some(p) = lower[from..].find("bearer") {
        let at = from + p;
        from = at + "bearer".len();
        if at > 0 && (b[at - 1].is_ascii_alphanumeric() || b[at - 1] == b'_') {
            continue;
        }
        let start = from + b[from..].iter().take_while(|c| is_blank(**c)).count();
        if start == from {
            continue;
        }
        let end = text[start..]
            .find(|c: char| ends_value(c) || c == ',')
            .map_or(text.len(), |q| start + q);
        if end == start || &text[start..end] == REDACTED {
            continue;
        }
        out.replace(start..end, REDACTED);
        from = end;
    }
    out.finish()
}

/// Rule 3: `user:password@` out of every authority (up to the last `@`).
fn strip_userinfo(text: &str) -> Cow<'_, str> {
    let b = text.as_bytes();
    let mut out = Edited::new(text);
    let mut i = 1;
    while i + 1 < b.len() {
        if !(b[i] == b':' && is_scheme_char(b[i - 1]) && is_slash(b[i + 1])) {
            i += 1;
            continue;
        }
        let mut pos = i + 1;
        // A removed userinfo may be followed by more slashes (`https://u@/x@h`): the text
        // after them then reads as an authority again, so strip it too (idempotence).
        loop {
            let start = pos + b[pos..].iter().take_while(|c| is_slash(**c)).count();
            if start == pos {
                break;
            }
            let end = text[start..]
                .find(|c: char| c.is_whitespace() || matches!(c, '/' | '\\' | '?' | '#'))
                .map_or(text.len(), |p| start + p);
            let Some(at) = text[start..end].rfind('@') else {
                break;
            };
            pos = start + at + 1;
            out.replace(start..pos, "");
        }
        // Go on after the slashes: a `:` inside this authority may start another one.
        i += 2;
    }
    out.finish()
}

/// Rounds at most: one is all most texts need, a second confirms; the bound only guards
/// against a pathological text.
const MAX_ROUNDS: usize = 16;

/// One round of the rule; `None` when it changes nothing.
fn round(text: &str) -> Option<String> {
    let t = strip_userinfo(text);
    let t = redact_pairs(&t);
    let t = redact_bearer(&t);
    let t = strip_userinfo(&t);
    (t.as_ref() != text).then(|| t.into_owned())
}

/// The text with every secret redacted (see the module documentation for the rule).
/// Works on any text: URLs, reqwest error messages, JSON, header lines, messages from
/// uploaders.
pub fn redact_text(text: &str) -> String {
    let mut cur = text.to_string();
    for _ in 0..MAX_ROUNDS {
        match round(&cur) {
            Some(next) => cur = next,
            None => break,
        }
    }
    cur
}

/// The URL with secret parameter values replaced by `REDACTED` and `user:pass@`
/// removed. A URL is a text: this is [`redact_text`], kept under its own name for the
/// callers that hold a URL.
pub fn redact_url(url: &str) -> String {
    redact_text(url)
}

#[cfg(test)]
mod tests;
