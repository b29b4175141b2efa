use super::*;
use proptest::prelude::*;
use proptest::sample::select;

const PHOTO: &str = "https://maps.googleapis.com/maps/api/place/photo?maxwidth=1600&photo_reference=AbC&key=AIzaSyXXXX";

fn r(t: &str) -> String {
    redact_text(t)
}

/// Each text redacts to its pair.
fn redacts_to(cases: &[(&str, &str)]) {
    for (t, want) in cases {
        assert_eq!(r(t), *want, "{t}");
    }
}

/// Each text is left as it is.
fn unchanged(texts: &[&str]) {
    for t in texts {
        assert_eq!(r(t), *t);
    }
}

#[test]
fn google_urls() {
    assert_eq!(
        redact_url(PHOTO),
        "https://maps.googleapis.com/maps/api/place/photo?maxwidth=1600&photo_reference=AbC&key=REDACTED"
    );
    // Street View / Static Maps: commas in other parameters are kept byte for byte.
    assert_eq!(
        r("https://maps.googleapis.com/maps/api/streetview?size=600x300&location=46.41,10.01&key=SECRET&fov=90"),
        "https://maps.googleapis.com/maps/api/streetview?size=600x300&location=46.41,10.01&key=REDACTED&fov=90"
    );
    assert_eq!(
        r("https://h/p?photo_reference=a,b&key=SECRET"),
        "https://h/p?photo_reference=a,b&key=REDACTED"
    );
    assert_eq!(
        r("https://h/staticmap?markers=color:red|label:(A)|46.4,10.0&key=SECRET&size=1x1"),
        "https://h/staticmap?markers=color:red|label:(A)|46.4,10.0&key=REDACTED&size=1x1"
    );
    assert_eq!(r("https://h/p"), "https://h/p");
    assert_eq!(redact_url(PHOTO), redact_text(PHOTO));
}

#[test]
fn reqwest_style_messages() {
    let sv = "https://maps.googleapis.com/maps/api/streetview?size=600x300&location=46.41,10.01&key=SECRET";
    assert_eq!(
        r(&format!("error sending request for url ({sv}): connection refused")),
        "error sending request for url (https://maps.googleapis.com/maps/api/streetview?size=600x300&location=46.41,10.01&key=REDACTED): connection refused"
    );
    assert_eq!(
        r(&format!("HTTP 403 from {PHOTO} after 3 tries")),
        "HTTP 403 from https://maps.googleapis.com/maps/api/place/photo?maxwidth=1600&photo_reference=AbC&key=REDACTED after 3 tries"
    );
    assert_eq!(
        r(r#"{"url":"https://h/p?key=SECRET","n":1}"#),
        r#"{"url":"https://h/p?key=REDACTED","n":1}"#
    );
    assert_eq!(r("<https://h/p?key=SECRET>"), "<https://h/p?key=REDACTED>");
}

#[test]
fn separators_fragments_and_free_text() {
    redacts_to(&[
        (
            "https://h/p?a=1;key=SECRET;b=2",
            "https://h/p?a=1;key=REDACTED;b=2",
        ),
        (
            "https://h/cb#access_token=SECRET&token_type=bearer&state=s",
            "https://h/cb#access_token=REDACTED&token_type=bearer&state=s",
        ),
        ("https://h/p?a=1#key=SECRET", "https://h/p?a=1#key=REDACTED"),
        (
            "invalid key=AIzaSy_SECRET supplied",
            "invalid key=REDACTED supplied",
        ),
        ("key=SECRET", "key=REDACTED"),
        ("(token=SECRET)", "(token=REDACTED)"),
        ("a,key=SECRET", "a,key=REDACTED"),
        ("cfg.apiKey=SECRET", "cfg.apiKey=REDACTED"),
        ("user[api_key]=SECRET", "user[api_key]=REDACTED"),
        ("key[0]=SECRET&x=1", "key[0]=REDACTED&x=1"),
        // A value holding '=' is redacted whole.
        ("?sig=abc==&x=1", "?sig=REDACTED&x=1"),
    ]);
}

/// Names that must be redacted, as a provider or a cloud would write them.
const SECRET_NAMES_WRITTEN: &[&str] = &[
    "key",
    "api_key",
    "apikey",
    "api-key",
    "x-api-key",
    "token",
    "access_token",
    "refresh_token",
    "id_token",
    "auth",
    "signature",
    "sig",
    "client_secret",
    "client_id",
    "password",
    "passwd",
    "pwd",
    "secret",
    "X-Amz-Signature",
    "X-Amz-Credential",
    "X-Amz-Security-Token",
    "X-Goog-Signature",
    "X-Goog-Credential",
    "GoogleAccessId",
    // by their ending
    "apiKey",
    "session_token",
    "db_password",
];

#[test]
fn every_secret_name() {
    // More names secret by their ending.
    let more = [
        "db-password",
        "my_secret",
        "upload_signature",
        "aws_credential",
        "MasterKey",
    ];
    for name in SECRET_NAMES_WRITTEN.iter().chain(&more) {
        for n in [name.to_string(), name.to_uppercase(), name.to_lowercase()] {
            assert!(is_secret_name(&n), "{n}");
            let t = format!("https://h/p?a=1&{n}=S3CRET&b=2");
            assert_eq!(r(&t), format!("https://h/p?a=1&{n}=REDACTED&b=2"), "{n}");
        }
    }
}

#[test]
fn names_that_are_not_secrets() {
    for name in [
        "photo_reference",
        "photoreference",
        "maxwidth",
        "maxheight",
        "location",
        "size",
        "fov",
        "heading",
        "pitch",
        "X-Amz-Date",
        "X-Amz-SignedHeaders",
        "Expires",
        "keyword",
        "key.photo_reference",
        "",
        "%",
        "%zz",
    ] {
        assert!(!is_secret_name(name), "{name:?}");
        let t = format!("https://h/p?{name}=value,(1)&x=2");
        assert_eq!(r(&t), t);
    }
}

#[test]
fn names_are_percent_decoded() {
    for name in [
        "%6Bey",
        "%6bey",
        "k%65y",
        "%6B%65%79",
        "%4BEY",
        "%256Bey",
        "api%5Fkey",
        "api%2Dkey",
        "%61ccess_token",
    ] {
        assert!(is_secret_name(name), "{name}");
        assert_eq!(
            r(&format!("https://h/p?{name}=SECRET&a=1")),
            format!("https://h/p?{name}=REDACTED&a=1")
        );
    }
}

#[test]
fn where_a_value_ends() {
    for end in [
        " ", "\t", "\n", "&", ";", "#", "\"", "'", "<", ">", ")", "]", "}", "\u{a0}",
    ] {
        assert_eq!(
            r(&format!("key=SECRET{end}tail")),
            format!("key=REDACTED{end}tail"),
            "{end:?}"
        );
    }
    // ',' and '(' are not ends: the value runs on to the next end.
    assert_eq!(r("key=SECRET,more(x) y"), "key=REDACTED) y");
    assert_eq!(r("key=SECRET,more rest"), "key=REDACTED rest");
}

#[test]
fn redacted_and_empty_values_stay() {
    unchanged(&["?key=REDACTED&a=1", "?key=&a=1", "?key=", "="]);
    redacts_to(&[("=key=x", "=key=REDACTED")]);
}

#[test]
fn credentials_in_authorities() {
    redacts_to(&[
        ("https://u:p@h/x", "https://h/x"),
        ("https:/u:p@h/x", "https:/h/x"),
        ("https:\\\\u:p@h\\x", "https:\\\\h\\x"),
        ("https:\\u:p@h", "https:\\h"),
        (
            "http://u:p@ss@word@h:8080/x?TOKEN=1&a=2#f",
            "http://h:8080/x?TOKEN=REDACTED&a=2#f",
        ),
        ("http://user@h?x=1", "http://h?x=1"),
        ("ftp://u:p@h#f", "ftp://h#f"),
        (
            "see (https://u:p@h/x): refused",
            "see (https://h/x): refused",
        ),
        (
            "a https://u:p@h b http://v:q@i c",
            "a https://h b http://i c",
        ),
        // an emptied authority followed by more slashes: the next one is stripped too
        ("https://u@/x@h/y", "https:///h/y"),
        ("https://u@/x@/y@h/z", "https:////h/z"),
        ("s3+https://AKIA:SECRET@bucket", "s3+https://bucket"),
    ]);
    // The authority ends at '/', '\', '?', '#' and whitespace: a later '@' is kept.
    unchanged(&[
        "https://h/p@q",
        "https://h\\p@q",
        "https://h?from=a@b.c",
        "https://h#a@b",
        "https://h mail me@example.com",
        "mailto:me@example.com",
        "write to me@example.com: soon",
        "ratio 1:2 at noon",
    ]);
}

#[test]
fn never_panics_on_odd_input() {
    for t in [
        "",
        "%",
        "%6",
        "key%",
        "%6=x",
        "=",
        "==",
        "@",
        ":",
        ":/",
        "a:/",
        "a://",
        "a://@",
        "a:\\\\@",
        "é=é",
        "clé=valeur",
        "キー=値 key=秘密 token=🔑🔑",
        "https://ü:ß@höst/päth?kéy=1&key=é",
        "\u{0}key\u{0}=\u{0}",
        "%C3%28=x",
        "%FF%FEkey=x",
    ] {
        let once = r(t);
        assert_eq!(r(&once), once, "{t:?}");
    }
    redacts_to(&[
        ("键=值 key=秘密 end", "键=值 key=REDACTED end"),
        ("%FF%FEkey=x", "%FF%FEkey=REDACTED"),
        ("https://ü:ß@höst/päth", "https://höst/päth"),
    ]);
}

#[test]
fn json_and_quoted_values() {
    redacts_to(&[
        (
            r#"{"api_key": "AIzaSECRET", "n": 1}"#,
            r#"{"api_key": "REDACTED", "n": 1}"#,
        ),
        (
            r#"{"key":"SECRET","url":"https://h/p"}"#,
            r#"{"key":"REDACTED","url":"https://h/p"}"#,
        ),
        (r#"{"password" : "a b, c"}"#, r#"{"password" : "REDACTED"}"#),
        (r#"{"token": "a\"b SECRET"}"#, r#"{"token": "REDACTED"}"#),
        (
            r#"{"client_secret": 12345, "x": 2}"#,
            r#"{"client_secret": REDACTED, "x": 2}"#,
        ),
        (r#"{'apiKey': 'SECRET'}"#, r#"{'apiKey': 'REDACTED'}"#),
        (
            r#"Some({"authorization": "Bearer SECRET"})"#,
            r#"Some({"authorization": "REDACTED"})"#,
        ),
        // rust Debug and logfmt
        (
            r#"Config { api_key: "SECRET", url: "https://h" }"#,
            r#"Config { api_key: "REDACTED", url: "https://h" }"#,
        ),
        (
            r#"msg="upload" api_key="SECRET" n=1"#,
            r#"msg="upload" api_key="REDACTED" n=1"#,
        ),
        // cut short: to the end of the text
        (r#"{"key": "SECRET"#, r#"{"key": "REDACTED"#),
        // blanks around '='
        ("key = SECRET rest", "key = REDACTED rest"),
        ("key= SECRET", "key= REDACTED"),
    ]);
    // Structures are not values: their own pairs are redacted.
    let t = r#"{"secrets": {"token": "SECRET"}, "keys": ["a"]}"#;
    assert_eq!(r(t), r#"{"secrets": {"token": "REDACTED"}, "keys": ["a"]}"#);
    // Names and values that are not secrets stay.
    unchanged(&[
        r#"{"url": "https://h/p", "provider": "google_places", "n": 1}"#,
        r#"{"token_type": "bearer-ish", "keyword": "x"}"#,
        r#"{"key": ""}"#,
    ]);
}

#[test]
fn headers_and_yaml() {
    redacts_to(&[
        ("x-api-key: SECRET", "x-api-key: REDACTED"),
        ("X-Api-Key:SECRET\nHost: h", "X-Api-Key:REDACTED\nHost: h"),
        (
            "api_key: SECRET\nname: Blue Note",
            "api_key: REDACTED\nname: Blue Note",
        ),
        ("  password: 'p a s s'\n", "  password: 'REDACTED'\n"),
        (
            "invalid key: AIzaSECRET supplied",
            "invalid key: REDACTED supplied",
        ),
        ("key: SECRET, other: 1", "key: REDACTED, other: 1"),
        // Authorization: the scheme stays, the rest of the line goes.
        (
            "Authorization: Bearer SECRET",
            "Authorization: Bearer REDACTED",
        ),
        (
            "authorization: bearer SECRET trailing\nnext",
            "authorization: bearer REDACTED\nnext",
        ),
        (
            "Authorization: Basic dXNlcjpwYXNz",
            "Authorization: Basic REDACTED",
        ),
        (
            "Proxy-Authorization: Digest username=\"u\", response=\"r\"",
            "Proxy-Authorization: Digest REDACTED",
        ),
        ("Authorization: SECRET more", "Authorization: REDACTED"),
        (
            "Authorization:\tToken SECRET",
            "Authorization:\tToken REDACTED",
        ),
        (
            "authorization=Bearer SECRET&x=1",
            "authorization=Bearer REDACTED&x=1",
        ),
        // a bare bearer token, anywhere
        ("sent Bearer SECRET to h", "sent Bearer REDACTED to h"),
        ("(BEARER\tSECRET)", "(BEARER\tREDACTED)"),
    ]);
    // Colons that are no separators, and words that are secret before '=' only.
    unchanged(&[
        "HTTP 403: Forbidden",
        "at 12:30:00 UTC",
        "fe80::1 and venue_images::key::x",
        "retry policy: exponential",
        "timed out after 5 s: retrying",
        "https://ik.imagekit.io/demo/tr:w-300/x.jpg",
        "markers=color:red|label:A",
        "a bearer",
        "unbearer x",
        "Authorization: Bearer REDACTED",
    ]);
}

#[test]
fn signed_url_parameters() {
    redacts_to(&[
        (
            "https://ik.imagekit.io/demo/tr:w-300/x.jpg?ik-t=1700000000&ik-s=9f8e7d6c",
            "https://ik.imagekit.io/demo/tr:w-300/x.jpg?ik-t=1700000000&ik-s=REDACTED",
        ),
        (
            "https://acme.imgix.net/a.jpg?w=400&s=0f1e2d3c4b5a",
            "https://acme.imgix.net/a.jpg?w=400&s=REDACTED",
        ),
        (
            "https://cdn.example/v.jpg?hdnts=exp=1700000000~acl=/*~hmac=abcdef0123",
            "https://cdn.example/v.jpg?hdnts=REDACTED",
        ),
        (
            "https://cdn.example/v.jpg?hdnea=st=1~exp=2~hmac=abc&x=1",
            "https://cdn.example/v.jpg?hdnea=REDACTED&x=1",
        ),
        (
            "https://cdn.example/v.jpg?__token__=exp=1~hmac=abc",
            "https://cdn.example/v.jpg?__token__=REDACTED",
        ),
        (
            "https://h/v.jpg?x=1&hmac=abc",
            "https://h/v.jpg?x=1&hmac=REDACTED",
        ),
        (
            "https://h/v.jpg?jwt=eyJhbGciOi.eyJzdWIi.sig",
            "https://h/v.jpg?jwt=REDACTED",
        ),
        (
            "https://d1.cloudfront.net/v.jpg?Policy=eyJTdGF0&Signature=abc~&Key-Pair-Id=K2",
            "https://d1.cloudfront.net/v.jpg?Policy=REDACTED&Signature=REDACTED&Key-Pair-Id=K2",
        ),
    ]);
    for name in [
        "ik-s",
        "IK-S",
        "ik_s",
        "s",
        "S",
        "hmac",
        "hdnts",
        "hdnea",
        "jwt",
        "policy",
        "access_jwt",
    ] {
        assert!(is_secret_name(name), "{name}");
    }
    for name in ["ik-t", "size", "sig_version_x", "w", "ss"] {
        assert!(!is_secret_name(name), "{name}");
    }
}

// ---------------------------------------------------------------------------------------
// Properties

/// Parameters that must survive unchanged (commas, parentheses, colons, pipes).
const PLAIN_PARAMS: &[&str] = &[
    "photo_reference=AAA",
    "photoreference=Ab,C(d)e",
    "maxwidth=1600",
    "maxheight=900",
    "location=46.41,10.01",
    "size=600x300",
    "q=caf(e),bar",
    "fields=a,b(c)",
    "markers=color:red|label:A|46.4,10.0",
    "fov=90",
];

/// `key` with each letter in either case and possibly percent-encoded (either hex case).
fn encoded_key() -> impl Strategy<Value = String> {
    proptest::collection::vec((any::<bool>(), any::<bool>(), any::<bool>()), 3).prop_map(|v| {
        "key"
            .chars()
            .zip(v)
            .map(|(c, (upper, encode, upper_hex))| {
                let c = if upper { c.to_ascii_uppercase() } else { c };
                match (encode, upper_hex) {
                    (false, _) => c.to_string(),
                    (true, true) => format!("%{:02X}", c as u8),
                    (true, false) => format!("%{:02x}", c as u8),
                }
            })
            .collect()
    })
}

fn secret_name() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => (select(SECRET_NAMES_WRITTEN), proptest::collection::vec(any::<bool>(), 24)).prop_map(
            |(n, up)| n
                .chars()
                .zip(up.into_iter().chain(std::iter::repeat(false)))
                .map(|(c, u)| if u { c.to_ascii_uppercase() } else { c.to_ascii_lowercase() })
                .collect()
        ),
        1 => select(SECRET_NAMES_WRITTEN).prop_map(str::to_string),
        2 => encoded_key(),
    ]
}

/// Where the secret sits.
#[derive(Debug, Clone)]
enum Spot {
    /// A query parameter at this index.
    Query(usize),
    /// A fragment parameter (`#access_token=...`), after these fragment parameters.
    Fragment(bool),
    /// In the password of the userinfo, after this scheme separator; maybe with '@' in it.
    Password(&'static str, bool),
    /// As the user name.
    User(&'static str),
    /// `name=token` in the free text around the URL.
    FreeText,
    /// `"name": "token"` (JSON, Debug output, Python): with this quote, blanks around the
    /// colon or not, an escaped quote inside the value or not.
    Quoted(char, bool, bool),
    /// `name: token` on a line of its own (a header, YAML).
    Header,
    /// `Authorization: <scheme> token` on a line of its own, or `Bearer token` anywhere.
    Authorization(&'static str),
    /// A signed-URL parameter (`ik-s=`, `s=`, `hdnts=exp=..~hmac=..`) at this index.
    Signed(&'static str, usize),
}

/// Signed-URL parameters as CDNs write them (`{}` is the secret).
const SIGNED_WRITTEN: &[&str] = &[
    "ik-s={}",
    "s={}",
    "hmac={}",
    "hdnts=exp=1700000000~acl=/*~hmac={}",
    "hdnea=st=1~exp=2~hmac={}",
    "jwt={}",
    "Policy={}",
    "policy={}",
    "IK-S={}",
];

fn spot() -> impl Strategy<Value = Spot> {
    let sep = select(&["://", ":/", ":\\\\", ":\\", "://///"][..]);
    prop_oneof![
        4 => (0usize..6).prop_map(Spot::Query),
        1 => any::<bool>().prop_map(Spot::Fragment),
        1 => (sep.clone(), any::<bool>()).prop_map(|(s, at)| Spot::Password(s, at)),
        1 => sep.prop_map(Spot::User),
        1 => Just(Spot::FreeText),
        2 => (select(&['"', '\''][..]), any::<bool>(), any::<bool>())
            .prop_map(|(q, blanks, escaped)| Spot::Quoted(q, blanks, escaped)),
        1 => Just(Spot::Header),
        1 => select(&["Bearer", "bearer", "Basic", "Token", "Digest", "", "bare"][..])
            .prop_map(Spot::Authorization),
        2 => (select(SIGNED_WRITTEN), 0usize..6).prop_map(|(n, i)| Spot::Signed(n, i)),
    ]
}

#[derive(Debug, Clone)]
struct Case {
    token: String,
    name: String,
    plain: Vec<&'static str>,
    sep: &'static str,
    spot: Spot,
    wrapper: usize,
}

fn case() -> impl Strategy<Value = Case> {
    (
        "[A-Za-z0-9_-]{8,16}".prop_map(|s| format!("SECRET{s}")),
        secret_name(),
        proptest::collection::vec(select(PLAIN_PARAMS), 0..5),
        select(&["&", ";"][..]),
        spot(),
        0usize..8,
    )
        .prop_map(|(token, name, plain, sep, spot, wrapper)| Case {
            token,
            name,
            plain,
            sep,
            spot,
            wrapper,
        })
}

impl Case {
    fn text(&self) -> String {
        let Case {
            token, name, sep, ..
        } = self;
        let mut params: Vec<String> = self.plain.iter().map(|p| p.to_string()).collect();
        let (mut scheme_sep, mut userinfo, mut fragment, mut free, mut own_line) =
            ("://", String::new(), String::new(), None, None);
        match &self.spot {
            Spot::Query(i) => {
                let i = (*i).min(params.len());
                params.insert(i, format!("{name}={token}"));
            }
            Spot::Fragment(more) => {
                fragment = format!("#{name}={token}");
                if *more {
                    fragment.push_str("&token_type=bearer&expires_in=3600");
                }
            }
            Spot::Password(s, at) => {
                scheme_sep = s;
                userinfo = if *at {
                    format!("user:p@ss{token}@")
                } else {
                    format!("user:{token}@")
                };
            }
            Spot::User(s) => {
                scheme_sep = s;
                userinfo = format!("{token}@");
            }
            Spot::FreeText => free = Some(format!("{name}={token}")),
            Spot::Quoted(q, blanks, escaped) => {
                let b = if *blanks { " " } else { "" };
                let e = if *escaped {
                    format!("a\\{q}b ")
                } else {
                    String::new()
                };
                free = Some(format!(
                    "{{{q}{name}{q}{b}:{b}{q}{e}{token}{q}, {q}n{q}: 1}}"
                ));
            }
            Spot::Header => own_line = Some(format!("{name}: {token}")),
            Spot::Authorization("bare") => free = Some(format!("Bearer {token}")),
            Spot::Authorization(scheme) => {
                own_line = Some(format!("Authorization: {scheme} {token}"))
            }
            Spot::Signed(p, i) => {
                let i = (*i).min(params.len());
                params.insert(i, p.replace("{}", token));
            }
        }
        let query = if params.is_empty() {
            String::new()
        } else {
            format!("?{}", params.join(sep))
        };
        let url = format!(
            "https{scheme_sep}{userinfo}maps.googleapis.com/maps/api/streetview{query}{fragment}"
        );
        let msg = match self.wrapper {
            0 => url,
            1 => format!("error sending request for url ({url}): connection refused"),
            2 => format!("HTTP 403 from {url}"),
            3 => format!("\"{url}\""),
            4 => format!("<{url}>"),
            5 => format!("[{url}]"),
            6 => format!("{{\"url\":\"{url}\"}}"),
            _ => format!("{url}, retrying"),
        };
        let msg = match free {
            None => msg,
            Some(kv) => format!("invalid {kv} supplied; {msg}; also ({kv}) and {kv}"),
        };
        match own_line {
            None => msg,
            Some(line) => format!("{msg}\n{line}\r\nsee above"),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    /// The token never survives, wherever it sits; the other parameters are untouched;
    /// redacting again changes nothing.
    #[test]
    fn secrets_never_survive(c in case()) {
        let text = c.text();
        let out = redact_text(&text);
        prop_assert!(!out.contains(&c.token), "{} -> {}", text, out);
        for p in &c.plain {
            prop_assert!(out.contains(p), "{} lost in {}", p, out);
        }
        prop_assert!(out.contains("maps.googleapis.com/maps/api/streetview"), "{}", out);
        prop_assert_eq!(redact_text(&out), out.clone());
        prop_assert_eq!(redact_url(&text), out);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// Text without '=', ':' and '@' (so without pairs or userinfo), and without the
    /// word bearer, has nothing to redact.
    #[test]
    fn text_without_pairs_or_userinfo_is_unchanged(
        t in prop_oneof![
            "[^=@:]{0,80}",
            "[a-zA-Z0-9/\\\\?#&;%.,()\\[\\]{}\"'<> é€-]{0,80}",
        ]
    ) {
        prop_assume!(!t.to_ascii_lowercase().contains("bearer"));
        prop_assert_eq!(redact_text(&t), t);
    }

    /// Redacting twice is redacting once, on any text (and nothing panics).
    #[test]
    fn redaction_is_idempotent(
        t in prop_oneof![
            any::<String>(),
            "[a-zA-Z0-9:/\\\\?#&;%=@.,()\\[\\]{}\"'<> é-]{0,80}",
            "(https?(://|:/|:\\\\)|key=|%6[bB]ey=|token=|@|/|\\]|&|[a-z0-9]{1,4}|REDACTED|=| ){0,24}",
            "(\"|'|key|token|Authorization|Bearer|Basic|: |:|=|\\\\|\\{|\\[|,|\n|[a-z0-9]{1,4}|REDACTED| |\t){0,24}",
        ]
    ) {
        let once = redact_text(&t);
        prop_assert_eq!(redact_text(&once), once);
    }
}
