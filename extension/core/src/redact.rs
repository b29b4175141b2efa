//! Secrets out of every string the project stores, logs or shows: API keys, tokens and
//! signatures (Google's `key=`), and credentials in URLs. One rule, used by the extension
//! (queue tables, attempt log, error messages) and by the uploader (logs, metrics,
//! write-back messages, which add literal secrets such as the ImageKit private key).
//!
//! The rule never tries to find where a URL ends (commas and parentheses are legal in
//! URLs, and messages wrap URLs in parentheses), so it works the same on a bare URL, on
//! a reqwest error message and on any free text:
//!
//! 1. **Secret `name=value` pairs, anywhere.** For every `=`, the name is the run of
//!    characters before it back to whitespace or one of `? & ; # " ' < > ( ) { } , / \ | =`
//!    (so after `?`, `&`, `;`, a fragment `#`, or in free text). It is percent-decoded
//!    and compared case-insensitively with `-` and `_` ignored (see [`is_secret_name`]).
//!    A secret value runs to whitespace, `& ; # " ' < > ) ] }` or the end of the text and
//!    becomes `REDACTED`; the name is kept as written.
//! 2. **Credentials in an authority.** After a scheme-like `xxx:` and one or more `/` or
//!    `\`, the authority runs to the next `/`, `\`, `?`, `#` or whitespace; if it holds an
//!    `@`, everything up to and including its last `@` is dropped.
//! 3. Everything else is kept byte for byte.
//!
//! The passes run as authority, pairs, authority (a redacted value can end an authority
//! that used to stop at a `/` inside the value), which makes redaction idempotent. Only
//! ASCII delimiters are ever cut at, so every cut is on a char boundary; nothing panics.

use std::borrow::Cow;

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
    "signature",
    "sig",
    "clientsecret",
    "clientid",
    "password",
    "passwd",
    "pwd",
    "secret",
    "xamzsignature",
    "xamzcredential",
    "xamzsecuritytoken",
    "xgoogsignature",
    "xgoogcredential",
    "googleaccessid",
];

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
];

/// Is `name` (as written before an `=`) the name of a secret?
///
/// The name is percent-decoded (repeatedly, so `%256Bey` is `key` too), lower-cased and
/// split into words at every character that is not a letter, digit, `-` or `_`. The last
/// non-empty word decides (`api_key`, `cfg.apiKey`, `user[api_key]`); in a bracketed
/// name any word does (`key[0]`). A word is secret when, with `-` and `_` removed, it is
/// one of the known names or ends like one (`key`, `token`, `secret`, `signature`,
/// `password`, `credential`).
pub fn is_secret_name(name: &str) -> bool {
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
    if decoded.contains(&b'[') {
        words.iter().any(|w| is_secret_word(w))
    } else {
        words.last().is_some_and(|w| is_secret_word(w))
    }
}

fn is_secret_word(w: &[u8]) -> bool {
    SECRET_NAMES.iter().any(|n| w == n.as_bytes())
        || SECRET_SUFFIXES.iter().any(|s| w.ends_with(s.as_bytes()))
}

/// Percent-decodes until nothing changes; malformed or truncated escapes stay as they are.
fn percent_decode_fully(b: &[u8]) -> Vec<u8> {
    let mut cur = b.to_vec();
    loop {
        let next = percent_decode(&cur);
        if next == cur {
            return cur;
        }
        cur = next;
    }
}

fn percent_decode(b: &[u8]) -> Vec<u8> {
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
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

/// Characters that end a name when scanning back from its `=`.
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

/// Characters that end a value.
fn ends_value(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '&' | ';' | '#' | '"' | '\'' | '<' | '>' | ')' | ']' | '}'
        )
}

/// Characters that may precede the `:` of a scheme.
fn is_scheme_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.')
}

fn is_slash(b: u8) -> bool {
    b == b'/' || b == b'\\'
}

/// Rule 1: the values of secret `name=value` pairs become `REDACTED`.
fn redact_pairs(text: &str) -> Cow<'_, str> {
    let mut out = String::new();
    let mut copied = 0; // text[..copied] is already in `out`
    let mut from = 0; // where to look for the next '='
    while let Some(off) = text[from..].find('=') {
        let eq = from + off;
        let name_start = text[..eq]
            .char_indices()
            .rev()
            .find(|&(_, c)| ends_name(c))
            .map_or(0, |(i, c)| i + c.len_utf8());
        let value_start = eq + 1;
        let value_end = text[value_start..]
            .find(ends_value)
            .map_or(text.len(), |p| value_start + p);
        let value = &text[value_start..value_end];
        if value.is_empty() || !is_secret_name(&text[name_start..eq]) {
            from = value_start;
            continue;
        }
        if value != REDACTED {
            out.push_str(&text[copied..value_start]);
            out.push_str(REDACTED);
            copied = value_end;
        }
        from = value_end;
    }
    if copied == 0 {
        return Cow::Borrowed(text);
    }
    out.push_str(&text[copied..]);
    Cow::Owned(out)
}

/// Rule 2: `user:password@` out of every authority (up to the last `@`).
fn strip_userinfo(text: &str) -> Cow<'_, str> {
    let b = text.as_bytes();
    let mut out = String::new();
    let mut copied = 0;
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
            out.push_str(&text[copied..start]);
            copied = start + at + 1;
            pos = copied;
        }
        // Go on after the slashes: a `:` inside this authority may start another one.
        i += 2;
    }
    if copied == 0 {
        return Cow::Borrowed(text);
    }
    out.push_str(&text[copied..]);
    Cow::Owned(out)
}

/// The text with every secret redacted (see the module documentation for the rule).
/// Works on any text: URLs, reqwest error messages, messages from uploaders.
pub fn redact_text(text: &str) -> String {
    let t = strip_userinfo(text);
    let t = redact_pairs(&t);
    strip_userinfo(&t).into_owned()
}

/// The URL with secret parameter values replaced by `REDACTED` and `user:pass@`
/// removed. A URL is a text: this is [`redact_text`], kept under its own name for the
/// callers that hold a URL.
pub fn redact_url(url: &str) -> String {
    redact_text(url)
}

#[cfg(test)]
mod tests;
