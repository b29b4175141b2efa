//! Secrets out of every message: values of secret query parameters (Google's `key=`),
//! credentials in URLs, and literal secrets such as the ImageKit private key.

/// The URL with secret query values (Google's `key=`, `token=`, `signature=`, ...)
/// replaced by `REDACTED` and `user:pass@` removed: the extension's own rule, so the
/// database and the logs redact alike.
pub use venue_images_core::redact::redact_url;

/// Redacts the URLs inside a free text (reqwest's error messages contain them) and
/// every literal secret (empty ones are ignored).
pub fn redact_text(text: &str, secrets: &[&str]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        // Back up to the start of the scheme.
        let start = rest[..i]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '+' || c == '-' || c == '.'))
            .map(|p| p + 1)
            .unwrap_or(0);
        let end = rest[i..]
            .find(|c: char| c.is_whitespace() || matches!(c, ')' | '"' | '\'' | '<' | '>' | ','))
            .map(|p| i + p)
            .unwrap_or(rest.len());
        out.push_str(&rest[..start]);
        out.push_str(&redact_url(&rest[start..end]));
        rest = &rest[end..];
    }
    out.push_str(rest);
    for s in secrets.iter().filter(|s| !s.is_empty()) {
        out = out.replace(s, "REDACTED");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const G: &str = "https://maps.googleapis.com/maps/api/place/photo?maxwidth=1600&photo_reference=AbC&key=AIzaSyXXXX";

    #[test]
    fn urls() {
        assert_eq!(
            redact_url(G),
            "https://maps.googleapis.com/maps/api/place/photo?maxwidth=1600&photo_reference=AbC&key=REDACTED"
        );
        assert_eq!(
            redact_url("http://u:p@h:8080/x?TOKEN=1&a=2#f"),
            "http://h:8080/x?TOKEN=REDACTED&a=2#f"
        );
        assert_eq!(redact_url("not a url ?key=1"), "not a url ?key=REDACTED");
        assert_eq!(redact_url("https://h/p"), "https://h/p");
    }

    #[test]
    fn texts() {
        let t = redact_text(
            &format!("error sending request for url ({G}): connection refused; key private_abc"),
            &["private_abc", ""],
        );
        assert!(
            !t.contains("AIzaSyXXXX") && !t.contains("private_abc"),
            "{t}"
        );
        assert!(t.contains("(https://maps.googleapis.com/maps/api/place/photo?maxwidth=1600&photo_reference=AbC&key=REDACTED)"), "{t}");
        assert_eq!(redact_text("plain", &[]), "plain");
    }
}
