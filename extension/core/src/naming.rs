//! Deterministic ImageKit names: `<code>-<hash>.<ext>` in `/venues/<safe_slug>`.
//!
//! The same provider URL always gives the same file name, so a retried upload with
//! `useUniqueFileName=false` replaces the same file instead of creating a duplicate.
//! The normaliser follows the original's (`URI.decode_query`, `URI.encode_query`,
//! `URI.to_string` in Elixir) with defect 3 fixed: for Google Places URLs it keeps
//! `photo_reference` (the parameter Google actually uses) as well as the legacy
//! `photoreference`, so photos of one venue no longer hash to the same name.

use md5::{Digest, Md5};

/// Query parameters that identify a Google Places photo (everything else, notably the
/// `key=` API key, is dropped before hashing).
pub const GOOGLE_STABLE_PARAMS: &[&str] = &[
    "photo_reference",
    "photoreference",
    "photo_id",
    "maxwidth",
    "maxheight",
];

/// The two-letter code of a provider in file names (`xx` for any other provider).
pub fn provider_code(provider: Option<&str>) -> &'static str {
    match provider {
        Some("google_places") => "gp",
        Some("unsplash") => "us",
        Some("foursquare") => "fs",
        Some("pexels") => "px",
        Some("instagram") => "ig",
        _ => "xx",
    }
}

/// Why a name could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadName(pub String);

/// `<code>-<first 8 hex of md5(normalised url)>.<ext>`.
pub fn file_name(provider_url: &str, provider: Option<&str>) -> Result<String, BadName> {
    if provider_url.trim().is_empty() {
        return Err(BadName("provider_url must not be empty".into()));
    }
    let normalized = normalize_url_for_hash(provider_url);
    let digest = Md5::digest(normalized.as_bytes());
    let mut hash = String::with_capacity(8);
    for b in &digest[..4] {
        hash.push_str(&format!("{b:02x}"));
    }
    Ok(format!(
        "{}-{}.{}",
        provider_code(provider),
        hash,
        extension_from_url(provider_url).unwrap_or("jpg")
    ))
}

struct UrlParts<'a> {
    scheme: Option<&'a str>,
    authority: Option<&'a str>,
    path: &'a str,
    query: Option<&'a str>,
    fragment: Option<&'a str>,
}

/// Splits a URI reference per RFC 3986 appendix B.
fn split_url(url: &str) -> UrlParts<'_> {
    let mut rest = url;
    let (fragment, before_frag) = match rest.find('#') {
        Some(i) => (Some(&rest[i + 1..]), &rest[..i]),
        None => (None, rest),
    };
    rest = before_frag;
    let (query, before_query) = match rest.find('?') {
        Some(i) => (Some(&rest[i + 1..]), &rest[..i]),
        None => (None, rest),
    };
    rest = before_query;
    let scheme = match rest.find(':') {
        Some(i)
            if i > 0
                && !rest[..i].contains('/')
                && rest[..i]
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) =>
        {
            let s = &rest[..i];
            rest = &rest[i + 1..];
            Some(s)
        }
        _ => None,
    };
    let authority = if let Some(after) = rest.strip_prefix("//") {
        let end = after.find('/').unwrap_or(after.len());
        let a = &after[..end];
        rest = &after[end..];
        Some(a)
    } else {
        None
    };
    UrlParts {
        scheme,
        authority,
        path: rest,
        query,
        fragment,
    }
}

fn default_port(scheme: &str) -> Option<&'static str> {
    match scheme {
        "http" | "ws" => Some("80"),
        "https" | "wss" => Some("443"),
        "ftp" => Some("21"),
        _ => None,
    }
}

/// `application/x-www-form-urlencoded` decoding: `+` is a space, `%XX` a byte.
fn decode_www_form(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => {
                        out.push(v);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `URI.encode_www_form`: unreserved characters kept, space as `+`, the rest `%XX`.
fn encode_www_form(s: &str, out: &mut String) {
    for &b in s.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
}

/// The string that is hashed: the URL with its query parsed, filtered (Google: only the
/// photo reference and size parameters), emptied of empty values, sorted and re-encoded.
/// A URL without a query is used as it is.
pub fn normalize_url_for_hash(url: &str) -> String {
    let parts = split_url(url);
    let Some(query) = parts.query else {
        return url.to_string();
    };
    // URI.decode_query into a map: a later duplicate key wins.
    let mut params: Vec<(String, String)> = Vec::new();
    for pair in query.split('&') {
        if pair.is_empty() {
            continue;
        }
        let (k, v) = match pair.find('=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, ""),
        };
        let (k, v) = (decode_www_form(k), decode_www_form(v));
        if let Some(existing) = params.iter_mut().find(|(ek, _)| *ek == k) {
            existing.1 = v;
        } else {
            params.push((k, v));
        }
    }
    if url.contains("maps.googleapis.com") {
        params.retain(|(k, _)| GOOGLE_STABLE_PARAMS.contains(&k.as_str()));
    }
    params.retain(|(_, v)| !v.is_empty());
    params.sort_by(|a, b| a.0.cmp(&b.0));
    let mut q = String::new();
    for (i, (k, v)) in params.iter().enumerate() {
        if i > 0 {
            q.push('&');
        }
        encode_www_form(k, &mut q);
        q.push('=');
        encode_www_form(v, &mut q);
    }
    let mut out = String::with_capacity(url.len());
    let scheme = parts.scheme.map(|s| s.to_ascii_lowercase());
    if let Some(s) = &scheme {
        out.push_str(s);
        out.push(':');
    }
    if let Some(a) = parts.authority {
        out.push_str("//");
        let dp = scheme.as_deref().and_then(default_port);
        match (dp, a.rfind(':')) {
            (Some(p), Some(i)) if &a[i + 1..] == p && !a[i..].contains(']') => {
                out.push_str(&a[..i])
            }
            _ => out.push_str(a),
        }
    }
    out.push_str(parts.path);
    out.push('?');
    out.push_str(&q);
    if let Some(f) = parts.fragment {
        out.push('#');
        out.push_str(f);
    }
    out
}

/// Extension from the URL path (`jpg jpeg png webp gif svg`, `jpeg` → `jpg`).
pub fn extension_from_url(url: &str) -> Option<&'static str> {
    let path = split_url(url).path;
    let last = path.rsplit('/').next().unwrap_or("");
    let dot = last.rfind('.')?;
    if dot == 0 {
        return None;
    }
    match &last[dot + 1..] {
        "jpg" | "jpeg" => Some("jpg"),
        "png" => Some("png"),
        "webp" => Some("webp"),
        "gif" => Some("gif"),
        "svg" => Some("svg"),
        _ => None,
    }
}

/// Lower-cased slug with every character outside `[a-z0-9-]` turned into `-`, trimmed
/// of `-`; `None` when nothing is left.
pub fn safe_slug(slug: &str) -> Option<String> {
    let s: String = slug
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let t = s.trim_matches('-');
    if t.is_empty() {
        None
    } else {
        Some(t.to_string())
    }
}

/// The venue's folder segment: its safe slug, or `venue-<id>`.
pub fn venue_slug(slug: Option<&str>, venue_id: Option<i64>) -> Option<String> {
    slug.and_then(safe_slug)
        .or_else(|| venue_id.map(|id| format!("venue-{id}")))
}

/// `<base>/<safe_slug>` (base normally `/venues`).
pub fn folder(base: &str, slug: Option<&str>, venue_id: Option<i64>) -> Option<String> {
    let seg = venue_slug(slug, venue_id)?;
    let base = base.trim_end_matches('/');
    Some(format!("{base}/{seg}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn md5_8(s: &str) -> String {
        let d = Md5::digest(s.as_bytes());
        d[..4].iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn google_photos_of_one_venue_get_distinct_names() {
        let a = "https://maps.googleapis.com/maps/api/place/photo?maxwidth=1600&photo_reference=AAA&key=SECRET1";
        let b = "https://maps.googleapis.com/maps/api/place/photo?maxwidth=1600&photo_reference=BBB&key=SECRET1";
        let a2 = "https://maps.googleapis.com/maps/api/place/photo?key=OTHER&photo_reference=AAA&maxwidth=1600";
        let na = file_name(a, Some("google_places")).unwrap();
        assert_ne!(na, file_name(b, Some("google_places")).unwrap());
        // The key and parameter order do not matter.
        assert_eq!(na, file_name(a2, Some("google_places")).unwrap());
        assert_eq!(
            normalize_url_for_hash(a),
            "https://maps.googleapis.com/maps/api/place/photo?maxwidth=1600&photo_reference=AAA"
        );
        assert!(na.starts_with("gp-") && na.ends_with(".jpg") && na.len() == 15);
        assert_eq!(na, format!("gp-{}.jpg", md5_8(&normalize_url_for_hash(a))));
    }

    #[test]
    fn urls_without_query_hash_verbatim() {
        let u = "https://images.unsplash.com/photo-123.png";
        assert_eq!(normalize_url_for_hash(u), u);
        assert_eq!(
            file_name(u, Some("unsplash")).unwrap(),
            format!("us-{}.png", md5_8(u))
        );
        assert_eq!(file_name(u, None).unwrap(), format!("xx-{}.png", md5_8(u)));
        assert_eq!(
            file_name(u, Some("here")).unwrap(),
            format!("xx-{}.png", md5_8(u))
        );
    }

    #[test]
    fn other_queries_are_sorted_and_reencoded() {
        assert_eq!(
            normalize_url_for_hash(
                "HTTPS://cdn.example.com:443/a.jpeg?b=2&a=x+y&empty=&a=z%20w#frag"
            ),
            "https://cdn.example.com/a.jpeg?a=z+w&b=2#frag"
        );
        assert_eq!(extension_from_url("https://x/a.jpeg?x=1"), Some("jpg"));
        assert_eq!(extension_from_url("https://x/a.JPG"), None);
        assert_eq!(extension_from_url("https://x/.png"), None);
        assert_eq!(extension_from_url("https://x/dir.png/photo"), None);
        assert!(file_name("  ", None).is_err());
    }

    #[test]
    fn folders() {
        for (base, slug, id, want) in [
            (
                "/venues",
                Some("blue-note-jazz-club"),
                1,
                "/venues/blue-note-jazz-club",
            ),
            (
                "/venues",
                Some("Blue Note / Jazz!"),
                1,
                "/venues/blue-note---jazz",
            ),
            ("/venues", Some("../etc/passwd"), 1, "/venues/etc-passwd"),
            ("/venues", Some("---"), 42, "/venues/venue-42"),
            ("/venues/", None, 7, "/venues/venue-7"),
            ("/venues", Some("café"), 7, "/venues/caf"),
        ] {
            assert_eq!(
                folder(base, slug, Some(id)).as_deref(),
                Some(want),
                "{slug:?}"
            );
        }
        assert_eq!(folder("/venues", None, None), None);
    }
}
