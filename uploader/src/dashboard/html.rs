//! HTML building blocks: escaping, the page layout, and formatting of numbers and times.
//!
//! Pages are plain strings put together with `format!`. Every value that comes from the
//! database or the request goes through [`text`] (redacted, then escaped) or one of the
//! number formatters; markup is only ever written here and in the page functions, and no
//! element carries a `style` attribute (the CSP allows the stylesheet only).

use crate::redact::redact_text;
use chrono::{DateTime, Utc};

/// `s` escaped for HTML text and attribute values (double- or single-quoted).
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\n' && c != '\t' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// A string from the database or the request, ready for HTML: secrets redacted (a second
/// line of defence: the extension stores redacted text already), then escaped.
pub fn text(s: &str) -> String {
    esc(&redact_text(s, &[]))
}

/// [`text`] of an optional string, or `none` (already HTML) when absent or empty.
pub fn opt_text(s: Option<&str>, none: &str) -> String {
    match s {
        Some(s) if !s.is_empty() => text(s),
        _ => none.to_string(),
    }
}

/// `1234567` → `1,234,567`.
pub fn num(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if n < 0 {
        out.push('-');
    }
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A percentage with one decimal: `12.3%`; `–` when not a number.
pub fn pct(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.1}%")
    } else {
        "–".into()
    }
}

/// A request rate: `2/s`, `0.5/s`, `unlimited`.
pub fn rate(per_second: Option<f64>) -> String {
    match per_second {
        None => "–".into(),
        Some(r) if r.is_infinite() => "unlimited".into(),
        Some(r) if r.fract() == 0.0 && r < 1e12 => format!("{r:.0}/s"),
        Some(r) => format!("{r:.2}/s"),
    }
}

/// An instant as `2026-12-01 14:05:09 UTC`.
pub fn time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// How far `t` is from `now`: `in 4 min`, `12 s ago`, `3 h ago`, `2 days ago`.
pub fn relative(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let secs = (t - now).num_seconds();
    let a = secs.unsigned_abs();
    let span = if a < 60 {
        format!("{a} s")
    } else if a < 3600 {
        format!("{} min", a / 60)
    } else if a < 2 * 86_400 {
        format!("{} h", a / 3600)
    } else {
        format!("{} days", a / 86_400)
    };
    if secs.abs() < 1 {
        "now".into()
    } else if secs > 0 {
        format!("in {span}")
    } else {
        format!("{span} ago")
    }
}

/// A `<time>` element showing the relative time, with the exact one as its tooltip.
pub fn when(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    format!(
        r#"<time datetime="{}" title="{}">{}</time>"#,
        t.to_rfc3339(),
        time(t),
        relative(t, now)
    )
}

/// [`when`], or `none` (HTML) for no time.
pub fn opt_when(t: Option<DateTime<Utc>>, now: DateTime<Utc>, none: &str) -> String {
    t.map(|t| when(t, now)).unwrap_or_else(|| none.to_string())
}

/// A duration in milliseconds, short: `850 ms`, `2.4 s`, `3 min`.
pub fn millis(ms: f64) -> String {
    if !ms.is_finite() || ms < 0.0 {
        "–".into()
    } else if ms < 1000.0 {
        format!("{ms:.0} ms")
    } else if ms < 120_000.0 {
        format!("{:.1} s", ms / 1000.0)
    } else {
        format!("{:.0} min", ms / 60_000.0)
    }
}

/// The sections of the navigation bar.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Nav {
    /// `/`.
    Overview,
    /// `/failures`.
    Failures,
    /// `/recovery`.
    Recovery,
    /// `/venues` and each venue.
    Venues,
    /// Anything else (login, errors).
    None,
}

/// Who is looking, as the layout needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Viewer {
    /// No admin token configured: read-only, no login.
    ReadOnly,
    /// A token is configured and this request does not carry it.
    Anonymous,
    /// An admin; `logout_csrf` is the CSRF token of the logout form (None for a bearer
    /// request, which has no session to end).
    Admin {
        /// CSRF token of `POST /logout`.
        logout_csrf: Option<String>,
    },
}

impl Viewer {
    /// Whether actions are shown.
    pub fn is_admin(&self) -> bool {
        matches!(self, Viewer::Admin { .. })
    }
}

/// What every page shows besides its body.
pub struct Layout<'a> {
    /// `<title>` and heading.
    pub title: &'a str,
    /// Active navigation entry.
    pub nav: Nav,
    /// The data's age, as HTML (for example "as of 14:05:09 UTC").
    pub as_of: String,
    /// Who is looking.
    pub viewer: &'a Viewer,
    /// The current path (where login returns to).
    pub path: &'a str,
}

/// A complete HTML document.
pub fn page(l: &Layout<'_>, body: &str) -> String {
    let link = |nav: Nav, href: &str, label: &str| {
        let current = if l.nav == nav {
            r#" aria-current="page""#
        } else {
            ""
        };
        format!(r#"<a href="{href}"{current}>{label}</a>"#)
    };
    let who = match l.viewer {
        Viewer::ReadOnly => {
            r#"<span class="badge badge-muted" title="Start with --admin-token-file to enable actions">read-only</span>"#
                .to_string()
        }
        Viewer::Anonymous if l.path.starts_with("/login") => String::new(),
        Viewer::Anonymous => format!(
            r#"<a class="login" href="/login?next={}">Admin log in</a>"#,
            esc(&query_escape(l.path))
        ),
        Viewer::Admin { logout_csrf: None } => {
            r#"<span class="badge badge-admin">admin (token)</span>"#.to_string()
        }
        Viewer::Admin {
            logout_csrf: Some(csrf),
        } => format!(
            r#"<span class="badge badge-admin">admin</span><form class="inline" method="post" action="/logout"><input type="hidden" name="csrf" value="{}"><button class="link" type="submit">Log out</button></form>"#,
            esc(csrf)
        ),
    };
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="same-origin">
<title>{title} · venue_images</title>
<link rel="stylesheet" href="/assets/dashboard.css?v={version}">
<link rel="icon" href="/assets/favicon.svg" type="image/svg+xml">
</head>
<body>
<header class="top">
<div class="brand"><a href="/">venue_images</a></div>
<nav>{o}{f}{r}{v}</nav>
<div class="who">{who}</div>
</header>
<main>
<div class="page-head"><h1>{title}</h1><p class="as-of">{as_of}</p></div>
{body}
</main>
<footer>venue-image-uploader {version} · figures from the <code>venue_images</code> extension · nothing on this page is loaded from another site</footer>
</body>
</html>
"#,
        title = esc(l.title),
        o = link(Nav::Overview, "/", "Overview"),
        f = link(Nav::Failures, "/failures", "Failures"),
        r = link(Nav::Recovery, "/recovery", "Recovery"),
        v = link(Nav::Venues, "/venues", "Venues"),
        as_of = l.as_of,
        version = env!("CARGO_PKG_VERSION"),
    )
}

/// Percent-encodes a string for a query parameter value.
pub fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A message box: `kind` is `ok`, `warn` or `error`; `html` is already HTML.
pub fn notice(kind: &str, html: &str) -> String {
    let role = if kind == "error" { "alert" } else { "status" };
    format!(r#"<div class="notice notice-{kind}" role="{role}">{html}</div>"#)
}

/// A status badge for an image's upload status, a lifecycle, an outcome or a class.
pub fn badge(value: &str) -> String {
    badge_as(value, value)
}

/// A badge's colour: what the word means for the person looking at it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    /// Done, nothing to do.
    Ok,
    /// Needs time or attention.
    Warn,
    /// Lost for good unless someone acts.
    Bad,
    /// In flight.
    Info,
    /// Neutral.
    Muted,
}

impl Tone {
    /// The CSS class suffix (`badge-<tone>`).
    pub fn as_str(self) -> &'static str {
        match self {
            Tone::Ok => "ok",
            Tone::Warn => "warn",
            Tone::Bad => "bad",
            Tone::Info => "info",
            Tone::Muted => "muted",
        }
    }
}

/// The tone of each word of the extension's vocabularies (`venue_images_core`'s enums):
/// a new word cannot be added to one of them without deciding its colour here.
pub mod tones {
    use super::Tone;
    use venue_images_core::classify::ErrorClass;
    use venue_images_core::image::Status;
    use venue_images_core::retry::{AttemptOutcome, Lifecycle, QueueState, ReportGroup};

    /// An image's upload status.
    pub fn status(s: Status) -> Tone {
        match s {
            Status::Uploaded => Tone::Ok,
            Status::Failed => Tone::Warn,
            Status::PermanentlyFailed => Tone::Bad,
            Status::Other => Tone::Muted,
        }
    }

    /// Where the lifecycle has an image.
    pub fn lifecycle(l: Lifecycle) -> Tone {
        match l {
            Lifecycle::NotFailed => Tone::Ok,
            Lifecycle::Queued | Lifecycle::Review => Tone::Warn,
            Lifecycle::ToFinalize | Lifecycle::PermanentlyFailed => Tone::Bad,
            Lifecycle::Skipped => Tone::Muted,
        }
    }

    /// A queue job's state.
    pub fn queue(q: QueueState) -> Tone {
        match q {
            QueueState::Due | QueueState::Waiting | QueueState::Paused => Tone::Warn,
            QueueState::Leased => Tone::Info,
        }
    }

    /// An attempt-log outcome.
    pub fn outcome(o: AttemptOutcome) -> Tone {
        match o {
            AttemptOutcome::Uploaded => Tone::Ok,
            AttemptOutcome::Failed | AttemptOutcome::Review => Tone::Warn,
            AttemptOutcome::PermanentlyFailed | AttemptOutcome::Purged => Tone::Bad,
            AttemptOutcome::Superseded | AttemptOutcome::Finalized | AttemptOutcome::Forced => {
                Tone::Muted
            }
        }
    }

    /// An error class.
    pub fn class(c: ErrorClass) -> Tone {
        match c {
            ErrorClass::Transient => Tone::Warn,
            ErrorClass::Permanent => Tone::Bad,
            ErrorClass::Ambiguous | ErrorClass::Unknown => Tone::Muted,
        }
    }

    /// A group of the retry report.
    pub fn group(g: ReportGroup) -> Tone {
        match g {
            ReportGroup::Recovered => Tone::Ok,
            ReportGroup::FailedAgain => Tone::Warn,
            ReportGroup::PermanentFailure => Tone::Bad,
            ReportGroup::Finalized => Tone::Muted,
        }
    }

    /// The tone of a word of any vocabulary (a word several vocabularies share has one
    /// tone: a test checks it); muted for any other word.
    pub fn of(word: &str) -> Tone {
        Status::parse(word)
            .filter(|s| *s != Status::Other)
            .map(status)
            .or_else(|| Lifecycle::parse(word).map(lifecycle))
            .or_else(|| QueueState::parse(word).map(queue))
            .or_else(|| AttemptOutcome::parse(word).map(outcome))
            .or_else(|| ErrorClass::parse(word).map(class))
            .or_else(|| ReportGroup::parse(word).map(group))
            .unwrap_or(Tone::Muted)
    }
}

/// A badge coloured for `value` (a word of one of the extension's vocabularies), saying
/// `label`.
pub fn badge_as(value: &str, label: &str) -> String {
    format!(
        r#"<span class="badge badge-{}">{}</span>"#,
        tones::of(value).as_str(),
        text(label)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A word that several vocabularies share means the same to people in each.
    #[test]
    fn shared_words_have_one_tone() {
        use venue_images_core::classify::ErrorClass;
        use venue_images_core::image::Status;
        use venue_images_core::retry::{AttemptOutcome, Lifecycle, QueueState, ReportGroup};
        /// Each word of a vocabulary, with its tone.
        fn words<T: Copy>(
            all: &[T],
            word: fn(T) -> &'static str,
            tone: fn(T) -> Tone,
        ) -> Vec<(&'static str, Tone)> {
            all.iter().map(|v| (word(*v), tone(*v))).collect()
        }
        let all = [
            words(&Status::ALL, Status::as_str, tones::status),
            words(&Lifecycle::ALL, Lifecycle::as_str, tones::lifecycle),
            words(&QueueState::ALL, QueueState::as_str, tones::queue),
            words(&AttemptOutcome::ALL, AttemptOutcome::as_str, tones::outcome),
            words(&ErrorClass::ALL, ErrorClass::as_str, tones::class),
            words(&ReportGroup::ALL, ReportGroup::as_str, tones::group),
        ]
        .concat();
        for (word, tone) in &all {
            if *word == Status::Other.as_str() {
                continue;
            }
            assert_eq!(tones::of(word), *tone, "{word} has two tones");
        }
        assert_eq!(tones::of("uploaded"), Tone::Ok);
        assert_eq!(tones::of("something_else"), Tone::Muted);
    }
    use chrono::TimeZone;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            esc(r#"<img src=x onerror="a('b')">&"#),
            "&lt;img src=x onerror=&quot;a(&#39;b&#39;)&quot;&gt;&amp;"
        );
        assert_eq!(esc("a\u{0}b\u{1b}c"), "a\u{FFFD}b\u{FFFD}c");
        assert_eq!(esc("plain café"), "plain café");
    }

    #[test]
    fn text_redacts_then_escapes() {
        let t = text("https://maps.googleapis.com/p?photo_reference=A&key=AIzaSECRET <b>");
        assert!(!t.contains("AIzaSECRET"), "{t}");
        assert!(t.contains("key=REDACTED"), "{t}");
        assert!(t.contains("&amp;key=") && t.ends_with("&lt;b&gt;"), "{t}");
        assert_eq!(opt_text(None, "–"), "–");
        assert_eq!(opt_text(Some(""), "–"), "–");
    }

    #[test]
    fn numbers() {
        assert_eq!(num(0), "0");
        assert_eq!(num(999), "999");
        assert_eq!(num(1000), "1,000");
        assert_eq!(num(1234567), "1,234,567");
        assert_eq!(num(-1234), "-1,234");
        assert_eq!(num(i64::MIN), "-9,223,372,036,854,775,808");
        assert_eq!(pct(12.345), "12.3%");
        assert_eq!(pct(f64::NAN), "–");
        assert_eq!(rate(Some(f64::INFINITY)), "unlimited");
        assert_eq!(rate(Some(2.0)), "2/s");
        assert_eq!(rate(Some(0.5)), "0.50/s");
        assert_eq!(millis(850.0), "850 ms");
        assert_eq!(millis(2400.0), "2.4 s");
    }

    #[test]
    fn relative_times() {
        let now = Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap();
        let s = |secs: i64| relative(now + chrono::Duration::seconds(secs), now);
        assert_eq!(s(0), "now");
        assert_eq!(s(30), "in 30 s");
        assert_eq!(s(-90), "1 min ago");
        assert_eq!(s(7200), "in 2 h");
        assert_eq!(s(-3 * 86_400), "3 days ago");
        assert!(when(now, now).contains(r#"title="2026-01-02 03:04:05 UTC""#));
    }

    #[test]
    fn layout_escapes_and_hides_actions_when_read_only() {
        let v = Viewer::ReadOnly;
        let html = page(
            &Layout {
                title: "<x>",
                nav: Nav::Failures,
                as_of: "as of now".into(),
                viewer: &v,
                path: "/",
            },
            "<p>body</p>",
        );
        assert!(html.contains("<title>&lt;x&gt; · venue_images</title>"));
        assert!(html.contains(r#"<a href="/failures" aria-current="page">"#));
        assert!(!html.contains("<form"));
        assert!(!html.contains("style="));
        let v = Viewer::Anonymous;
        let html = page(
            &Layout {
                title: "t",
                nav: Nav::None,
                as_of: String::new(),
                viewer: &v,
                path: "/venues/1?x=\"",
            },
            "",
        );
        assert!(
            html.contains(r#"href="/login?next=/venues/1%3Fx%3D%22""#),
            "{html}"
        );
    }
}
