//! Secrets out of every message: the project's one rule (`venue_images_core::redact`:
//! secret `name=value` pairs such as Google's `key=`, credentials in URLs), plus literal
//! secrets only the uploader knows, such as the ImageKit private key.

/// The URL with secret parameter values (Google's `key=`, `token=`, `signature=`, ...)
/// replaced by `REDACTED` and `user:pass@` removed: the extension's own rule, so the
/// database and the logs redact alike.
pub use venue_images_core::redact::redact_url;

/// The shared rule applied to any text (reqwest's error messages contain URLs), then
/// every literal secret replaced by `REDACTED` (empty ones are ignored).
///
/// Literal secrets are also replaced before the shared rule runs, so a secret that
/// itself looks like a `name=value` pair (ImageKit keys may end in `=`) is never half
/// redacted.
pub fn redact_text(text: &str, literal_secrets: &[&str]) -> String {
    let secrets = || literal_secrets.iter().filter(|s| !s.is_empty());
    let mut out = text.to_string();
    for s in secrets() {
        out = out.replace(s, "REDACTED");
    }
    let mut out = venue_images_core::redact::redact_text(&out);
    for s in secrets() {
        out = out.replace(s, "REDACTED");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const G: &str = "https://maps.googleapis.com/maps/api/place/photo?maxwidth=1600&photo_reference=AbC&key=AIzaSyXXXX";
    const SV: &str = "https://maps.googleapis.com/maps/api/streetview?size=600x300&location=46.41,10.01&key=AIzaSyXXXX";

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

    #[test]
    fn commas_and_parentheses_do_not_end_the_url() {
        let t = redact_text(
            &format!("error sending request for url ({SV}): operation timed out"),
            &[],
        );
        assert_eq!(
            t,
            "error sending request for url (https://maps.googleapis.com/maps/api/streetview?size=600x300&location=46.41,10.01&key=REDACTED): operation timed out"
        );
        let t = redact_text(
            "https://h/p?photo_reference=a,b(c)&key=AIzaSyXXXX and invalid key=AIzaSyXXXX supplied",
            &[],
        );
        assert_eq!(
            t,
            "https://h/p?photo_reference=a,b(c)&key=REDACTED and invalid key=REDACTED supplied"
        );
    }

    #[test]
    fn literal_secrets_that_look_like_pairs() {
        // An ImageKit-style key ending in '=' is replaced whole, not cut at its '='.
        let key = "private_lZ0Ua9token=";
        let t = redact_text(&format!("auth {key}&x=1 and {key}"), &[key]);
        assert_eq!(t, "auth REDACTED&x=1 and REDACTED");
        let t = redact_text("https://private_k3y@h/p", &["private_k3y"]);
        assert_eq!(t, "https://h/p");
    }
}
