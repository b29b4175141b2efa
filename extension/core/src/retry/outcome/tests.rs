//! The write-back's URL check, attacked as an untrusted uploader would (security review
//! finding 9: with `venue_images.imagekit_url_prefix` set, markup and `..` got through a
//! string-prefix check).

use super::*;
use proptest::prelude::*;
use proptest::sample::select;

const PREFIX: &str = "https://ik.imagekit.io/acct/";

fn uploaded(url: &str, prefix: Option<&str>) -> Result<(), String> {
    Reported::uploaded(url, "/venues/v/x.jpg", Some("fid"), prefix)
        .map(|_| ())
        .map_err(|e| e.0)
}

#[test]
fn the_reviewers_urls_are_refused() {
    for url in [
        r#"https://ik.imagekit.io/acct/"><img/src=x/onerror=alert(1)>"#,
        "https://ik.imagekit.io/acct/../other-account/x.jpg",
    ] {
        let e = uploaded(url, Some(PREFIX)).unwrap_err();
        assert!(e.starts_with("url "), "{url}: {e}");
        // Refused without a prefix too.
        assert!(uploaded(url, None).is_err(), "{url}");
    }
}

#[test]
fn urls_under_the_prefix_are_accepted() {
    for url in [
        "https://ik.imagekit.io/acct/x.jpg",
        "https://ik.imagekit.io/acct/venues/blue-note/gp_1.jpg",
        "https://ik.imagekit.io/acct/venues/x.jpg?tr=w-300,h-200",
        "https://ik.imagekit.io/acct/tr:w-300/x.jpg?ik-t=1700000000&ik-s=abc#top",
        "HTTPS://IK.IMAGEKIT.IO/acct/x.jpg",
        "https://ik.imagekit.io:443/acct/x.jpg",
        "https://ik.imagekit.io/acct/a%20b.jpg",
        "https://ik.imagekit.io/acct/.well/x..jpg",
        "https://ik.imagekit.io/acct/",
        "https://ik.imagekit.io/acct",
    ] {
        assert_eq!(uploaded(url, Some(PREFIX)), Ok(()), "{url}");
    }
    // Prefixes with or without a trailing slash, or a bare origin.
    for prefix in [
        "https://ik.imagekit.io/acct",
        "https://IK.imagekit.io/acct/",
        "https://ik.imagekit.io:443/acct/",
    ] {
        assert_eq!(
            uploaded("https://ik.imagekit.io/acct/x.jpg", Some(prefix)),
            Ok(()),
            "{prefix}"
        );
    }
    for prefix in ["https://ik.imagekit.io/", "https://ik.imagekit.io"] {
        assert_eq!(
            uploaded("https://ik.imagekit.io/anyone/x.jpg", Some(prefix)),
            Ok(())
        );
    }
    assert_eq!(
        uploaded(
            "http://127.0.0.1:41231/fake/venues/x.jpg",
            Some("http://127.0.0.1:41231/fake/")
        ),
        Ok(())
    );
    // An empty prefix is no prefix.
    assert_eq!(uploaded("https://evil.example/x.jpg", Some("")), Ok(()));
}

#[test]
fn urls_elsewhere_are_refused() {
    for url in [
        // another scheme, host or port
        "http://ik.imagekit.io/acct/x.jpg",
        "https://ik.imagekit.io.evil.example/acct/x.jpg",
        "https://evil.example/ik.imagekit.io/acct/x.jpg",
        "https://evil.example?https://ik.imagekit.io/acct/",
        "https://ik.imagekit.io:8443/acct/x.jpg",
        "https://ik.imagekit.io./acct/x.jpg",
        // credentials: the host is after the '@'
        "https://ik.imagekit.io@evil.example/acct/x.jpg",
        "https://ik.imagekit.io:443@evil.example/acct/x.jpg",
        // the path: not on a segment boundary, another case, dot segments
        "https://ik.imagekit.io/acctx/x.jpg",
        "https://ik.imagekit.io/ACCT/x.jpg",
        "https://ik.imagekit.io/other/x.jpg",
        "https://ik.imagekit.io/",
        "https://ik.imagekit.io/acct/./x.jpg",
        "https://ik.imagekit.io/acct/..",
        "https://ik.imagekit.io/acct/%2e%2e/other/x.jpg",
        "https://ik.imagekit.io/acct/%2E%2E/other/x.jpg",
        "https://ik.imagekit.io/acct/.%2e/other/x.jpg",
        "https://ik.imagekit.io/acct/%2e./other/x.jpg",
        "https://ik.imagekit.io/acct/%252e%252e/other/x.jpg",
        "https://ik.imagekit.io/acct/..;/other/x.jpg",
        "https://ik.imagekit.io/acct/..%3b/other/x.jpg",
        "https://ik.imagekit.io/acct/..%2fother/x.jpg",
        "https://ik.imagekit.io/acct/..%5cother/x.jpg",
        "https://ik.imagekit.io/acct/x%00.jpg",
        "https://ik.imagekit.io/acct//x.jpg",
        "https://ik.imagekit.io//acct/x.jpg",
        // characters parsers disagree on, or that leave an attribute
        r"https://ik.imagekit.io/acct\..\other\x.jpg",
        r"https://ik.imagekit.io\acct/x.jpg",
        "https://ik.imagekit.io/acct/x.jpg\"onerror=\"alert(1)",
        "https://ik.imagekit.io/acct/x.jpg'",
        "https://ik.imagekit.io/acct/<x>.jpg",
        "https://ik.imagekit.io/acct/`x`.jpg",
        "https://ik.imagekit.io/acct/{x}.jpg",
        "https://ik.imagekit.io/acct/x|y.jpg",
        "https://ik.imagekit.io/acct/x^y.jpg",
        "https://ik.imagekit.io/acct/x.jpg?a=\"b\"",
        "https://ik.imagekit.io/acct/x.jpg#<script>",
        "https://ik.imagekit.io/acct/x y.jpg",
        "https://ik.imagekit.io/ac\tct/x.jpg",
        "https://ik.imagekit.io/acct/x\n.jpg",
        "https://ik.imagekit.io/acct/café.jpg",
        "https://ik.imagekit.io/acct/x%zz.jpg",
        "https://ik.imagekit.io/acct/x%2",
    ] {
        assert!(uploaded(url, Some(PREFIX)).is_err(), "{url}");
    }
}

#[test]
fn the_character_and_segment_rules_hold_without_a_prefix() {
    for url in [
        r#"https://evil.example/"><img/src=x/onerror=alert(1)>"#,
        "https://evil.example/a/../b.jpg",
        "https://evil.example/a/%2e%2e/b.jpg",
        r"https://evil.example\@ik.imagekit.io/x",
        "https://u:p@evil.example/x.jpg",
        "https://u@/x",
        "https:///x",
        "https://:443/x",
        "https://h:/x",
        "https://h:0/x",
        "https://h:65536/x",
        "https://h:8o/x",
        "https://0x7f.1/x.jpg",
        "https://127.1/x.jpg",
        "https://127.000.000.001/x.jpg",
        "https://010.0.0.1/x.jpg",
        "https://1.2.3.4.5/x.jpg",
        "https://256.0.0.1/x.jpg",
        "https://h..example/x.jpg",
        "https://[::1/x.jpg",
        "https://[zz::1]/x.jpg",
        "https://h%2eexample/x.jpg",
        "javascript:alert(1)",
        "data:text/html,x",
        "ftp://h/x",
        "",
    ] {
        assert!(uploaded(url, None).is_err(), "{url}");
    }
    for url in [
        "https://evil.example/x.jpg",
        "http://127.0.0.1:8080/x.jpg",
        "https://[::1]:8443/x.jpg",
        "https://[2001:db8::1]/x.jpg",
        "https://h/x.jpg?a=b&c=d%20e",
        "https://h",
        "https://h?x=1",
        "https://my_host.example/x.jpg",
    ] {
        assert_eq!(uploaded(url, None), Ok(()), "{url}");
    }
}

#[test]
fn a_malformed_prefix_refuses_every_upload_and_says_so() {
    for prefix in [
        "ik.imagekit.io/acct/",
        "https://ik.imagekit.io/acct/?x=1",
        "https://ik.imagekit.io/acct/#x",
        "https://ik.imagekit.io/a/../acct/",
        "javascript:",
    ] {
        let e = uploaded("https://ik.imagekit.io/acct/x.jpg", Some(prefix)).unwrap_err();
        assert!(e.contains("imagekit_url_prefix"), "{prefix}: {e}");
    }
}

#[test]
fn imagekit_paths_obey_the_same_rules() {
    let path = |p: &str| {
        Reported::uploaded("https://ik.imagekit.io/acct/x.jpg", p, None, Some(PREFIX))
            .map(|_| ())
            .map_err(|e| e.0)
    };
    assert_eq!(path("/venues/blue-note/gp_1.jpg"), Ok(()));
    for p in [
        "/venues/../x.jpg",
        "/venues/%2e%2e/x.jpg",
        "/venues/\"><b>.jpg",
        r"/venues\x.jpg",
        "venues/x.jpg",
        "/venues/x y.jpg",
    ] {
        assert!(path(p).unwrap_err().contains("imagekit_path"), "{p}");
    }
}

// ---------------------------------------------------------------------------------------
// Properties

/// Pieces an attacker strings together after the prefix.
const PIECES: &[&str] = &[
    "a", "x.jpg", "acct", "other", ".", "..", "/", "//", "%2e", "%2E", "%252e", "%2f", "%2F",
    "%5c", "\\", ";", "..;", "%3b", "?", "#", "@", ":", "\"", "'", "<", ">", "`", "%", "%00",
    "%20", "-", "_", "~", "é", " ", "\t",
];

/// The path of `url` (after the authority, before `?` or `#`), resolved as RFC 3986 does
/// after decoding each segment until it stops changing, with `\` and `;` parameters as
/// the most lenient servers read them: what a server could end up serving.
fn lenient_resolution(url: &str) -> Vec<String> {
    // Its own decoder, not the one under test.
    fn decode_all(s: &str) -> String {
        let mut cur = s.as_bytes().to_vec();
        loop {
            let mut next = Vec::with_capacity(cur.len());
            let mut i = 0;
            while i < cur.len() {
                let hex = cur
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match (cur[i], hex) {
                    (b'%', Some(v)) => {
                        next.push(v);
                        i += 3;
                    }
                    (c, _) => {
                        next.push(c);
                        i += 1;
                    }
                }
            }
            if next == cur {
                return String::from_utf8_lossy(&cur).into_owned();
            }
            cur = next;
        }
    }
    let rest = url.splitn(4, '/').nth(3).unwrap_or("");
    let path = rest.split(['?', '#']).next().unwrap_or("");
    let mut out: Vec<String> = Vec::new();
    let decoded = decode_all(path);
    for seg in decoded.split(['/', '\\']) {
        match seg.split(';').next().unwrap_or("") {
            "." | "" => {}
            ".." => {
                out.pop();
            }
            s => out.push(s.to_string()),
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    /// Whatever follows the prefix: a URL that is accepted stays under the prefix however
    /// leniently it is resolved, and holds nothing that ends an HTML attribute.
    #[test]
    fn accepted_urls_stay_under_the_prefix(pieces in proptest::collection::vec(select(PIECES), 0..12)) {
        let url = format!("{PREFIX}{}", pieces.concat());
        if uploaded(&url, Some(PREFIX)).is_ok() {
            let resolved = lenient_resolution(&url);
            prop_assert_eq!(resolved.first().map(String::as_str), Some("acct"), "{}", url);
            prop_assert!(!url.contains(['"', '\'', '<', '>', '\\', '`', ' ']), "{}", url);
        }
    }

    /// An accepted URL under the prefix has the prefix's host and port, whatever is
    /// written between the scheme and the path.
    #[test]
    fn accepted_urls_have_the_prefix_host(
        pieces in proptest::collection::vec(
            select(&["ik.imagekit.io", "IK.ImageKit.IO", ".", "evil.example", "@", ":", "443",
                     "8443", "[", "]", "::1", "%2e", "/", "?", "#", "\\"][..]),
            1..6,
        )
    ) {
        let authority = pieces.concat();
        let url = format!("https://{authority}/acct/x.jpg");
        if uploaded(&url, Some(PREFIX)).is_ok() {
            let lower = authority.to_ascii_lowercase();
            prop_assert!(
                lower == "ik.imagekit.io" || lower == "ik.imagekit.io:443",
                "{}", url
            );
        }
    }

    /// Inserting any unsafe character anywhere refuses the URL, with or without a prefix.
    #[test]
    fn unsafe_characters_are_refused_anywhere(
        at in 0usize..40,
        c in select(&['"', '\'', '<', '>', '\\', '`', '{', '}', '|', '^', ' ', '\n', '\u{7f}', 'é'][..]),
    ) {
        let good = "https://ik.imagekit.io/acct/v/x.jpg?tr=w-3";
        let mut url = good.to_string();
        let at = at.min(url.len());
        url.insert(at, c);
        prop_assert!(uploaded(&url, Some(PREFIX)).is_err(), "{}", url);
        prop_assert!(uploaded(&url, None).is_err(), "{}", url);
    }
}
