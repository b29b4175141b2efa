//! The pages' bodies, as pure functions of the figures (the handlers in `mod.rs` fetch
//! the figures and wrap the bodies in the layout).

use super::auth::Admin;
use super::data::{
    Attempt, BreakdownRow, FoundVenue, Image, Live, Overview, PriorityVenue, ProviderStatus, Range,
    Recovery, ReportRow, ScanRun, VenueDetail,
};
use super::html::{
    badge, badge_as, esc, millis, notice, num, opt_text, opt_when, pct, query_escape, rate, text,
    time, when,
};
use super::svg::{self, colour, HBar, Series};
use chrono::{DateTime, Utc};
use std::fmt::Write;
use venue_images_core::retry::QueueState;

/// Renders action forms for an admin (with CSRF tokens), or nothing for anyone else.
pub struct Forms<'a> {
    admin: Option<&'a Admin>,
    binding: String,
}

impl<'a> Forms<'a> {
    /// Forms for a request whose CSRF tokens are bound to `binding` (None: no forms).
    pub fn new(admin: Option<&'a Admin>, binding: &str) -> Self {
        Forms {
            admin,
            binding: binding.to_string(),
        }
    }

    /// No forms (read-only pages).
    pub fn none() -> Forms<'static> {
        Forms {
            admin: None,
            binding: String::new(),
        }
    }

    /// Whether forms are shown.
    pub fn enabled(&self) -> bool {
        self.admin.is_some()
    }

    /// A POST form to `action` with `fields` (HTML) and a submit button.
    pub fn form(&self, action: &str, fields: &str, button: &str, class: &str) -> String {
        let Some(admin) = self.admin else {
            return String::new();
        };
        format!(
            r#"<form class="action" method="post" action="{a}"><input type="hidden" name="csrf" value="{c}">{fields}<button class="btn {class}" type="submit">{b}</button></form>"#,
            a = esc(action),
            c = esc(&admin.csrf_token(&self.binding, action)),
            b = esc(button),
        )
    }
}

/// What a table cell shows for a value it does not have.
const MISSING: &str = r#"<span class="muted">–</span>"#;

/// What a table cell shows for a provider or error type that is not set.
const NONE: &str = r#"<span class="muted">(none)</span>"#;

fn tile(id: &str, label: &str, value: &str, note: &str) -> String {
    format!(
        r#"<div class="tile"><div class="tile-label">{label}</div><div class="tile-value" id="{id}">{value}</div><div class="tile-note">{note}</div></div>"#
    )
}

/// A tile's element id and label: what a page's row of tiles fixes.
type TileName = (&'static str, &'static str);

/// A row of tiles: each name with its figure, `(value, note)`, in the same place.
fn tiles<const N: usize>(names: [TileName; N], figures: [(String, &str); N]) -> String {
    let mut b = String::from(r#"<div class="tiles">"#);
    for ((id, label), (value, note)) in names.into_iter().zip(figures) {
        b.push_str(&tile(id, label, &value, note));
    }
    b.push_str("</div>");
    b
}

/// What a queue state's images are waiting for (the note beside its count).
fn state_note(state: QueueState) -> &'static str {
    match state {
        QueueState::Due => "claimable now",
        QueueState::Waiting => "backoff or Retry-After not over",
        QueueState::Leased => "being downloaded or uploaded",
        QueueState::Paused => "their provider is paused",
    }
}

fn card(title: &str, body: &str) -> String {
    format!(
        r#"<section class="card"><h2>{}</h2>{body}</section>"#,
        esc(title)
    )
}

/// The message shown after an action, from the redirect's query (`done` and figures).
pub fn flash(done: Option<&str>, q: &dyn Fn(&str) -> Option<String>) -> String {
    let n = |k: &str| q(k).and_then(|v| v.parse::<i64>().ok()).unwrap_or(0);
    let provider = q("p")
        .filter(|p| {
            !p.is_empty()
                && p.len() <= 64
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-.*".contains(c))
        })
        .unwrap_or_else(|| "?".into());
    let msg = match done {
        Some("force-retry") => match n("n") {
            0 => "Nothing to retry: this venue has no failed images.".to_string(),
            k => format!(
                "{} image{} queued for one more attempt now: the uploaders take {} at their next claim.",
                num(k),
                if k == 1 { "" } else { "s" },
                if k == 1 { "it" } else { "them" }
            ),
        },
        Some("force-retry-image") => {
            if n("n") > 0 {
                format!(
                    "Image #{} queued for one more attempt now.",
                    n("i")
                )
            } else {
                format!("Image #{} is not a failed image: nothing queued.", n("i"))
            }
        }
        Some("purge") => format!(
            "{} permanently failed image{} removed from the venue (each is kept, redacted, in the attempt log).",
            num(n("n")),
            if n("n") == 1 { "" } else { "s" }
        ),
        Some("pause") => format!(
            "Provider <strong>{}</strong> paused: no uploader downloads from it until the pause ends or you resume it.",
            text(&provider)
        ),
        Some("resume") => {
            if n("n") > 0 {
                format!("Provider <strong>{}</strong> resumed.", text(&provider))
            } else {
                format!("Provider <strong>{}</strong> was not paused.", text(&provider))
            }
        }
        Some("scan") => format!(
            "Scan done in {}: {} venue{} with retryable images ({} newly queued), {} image{} finalised as permanently failed, {} venue{} left for review. The analytics above catch up at their next refresh.",
            millis(n("ms") as f64),
            num(n("v")),
            if n("v") == 1 { "" } else { "s" },
            num(n("i")),
            num(n("f")),
            if n("f") == 1 { "" } else { "s" },
            num(n("a")),
            if n("a") == 1 { "" } else { "s" },
        ),
        _ => return String::new(),
    };
    notice("ok", &msg)
}

/// The failure rate tile's figure: the mean over venues with failures, as the extension
/// computes it (the overall failed / images ratio is not among its figures).
fn failure_rate_note() -> &'static str {
    "mean over the venues with failures of failed ÷ images"
}

/// The overview's tiles.
const OVERVIEW_TILES: [TileName; 4] = [
    ("tile-venues-with-failures", "Venues with failures"),
    ("tile-failed-images", "Failed images"),
    ("tile-uploaded-images", "Uploaded images"),
    ("tile-failure-rate", "Failure rate"),
];

/// `/`.
pub fn overview(
    o: &Overview,
    live: &Live,
    forms: &Forms<'_>,
    now: DateTime<Utc>,
    live_as_of: DateTime<Utc>,
) -> String {
    let s = &o.stats;
    let mut b = String::new();
    b.push_str(&tiles(
        OVERVIEW_TILES,
        [
            (
                num(s.venues_with_failures),
                &format!("of {} venues", num(s.venues)),
            ),
            (num(s.failed_images), "failed + permanently failed"),
            (
                num(s.uploaded_images_of_failing_venues),
                "of the venues with failures",
            ),
            (pct(s.average_failure_rate), failure_rate_note()),
        ],
    ));
    let _ = write!(
        b,
        r#"<p class="classes">Venues with transient failures: <strong id="venues-transient">{}</strong> · with permanent failures: <strong id="venues-permanent">{}</strong> · with ambiguous failures (for review): <strong id="venues-ambiguous">{}</strong> · <a href="/failures">failures by provider and error type →</a></p>"#,
        num(s.venues_with_transient),
        num(s.venues_with_permanent),
        num(s.venues_with_ambiguous)
    );

    // The queue and the last scan, side by side.
    let q = &live.queue;
    let mut queue = String::new();
    let _ = write!(
        queue,
        r#"<div class="inflight"><span class="big" id="images-in-flight">{}</span> image{} in flight (leased by an uploader now)</div>"#,
        num(q.leased),
        if q.leased == 1 { "" } else { "s" }
    );
    queue.push_str(&svg::stacked_bar(
        "Retry queue by state",
        &QueueState::ALL.map(|s| (s.as_str(), q.of(s), colour::state(s))),
    ));
    queue.push_str(r#"<table class="states"><tbody>"#);
    for s in QueueState::ALL {
        let _ = write!(
            queue,
            r#"<tr><td>{}</td><td class="num" id="queue-{}">{}</td><td class="muted">{}</td></tr>"#,
            svg::legend(&[(s.as_str(), colour::state(s))]),
            s.as_str(),
            num(q.of(s)),
            state_note(s)
        );
    }
    let _ = write!(
        queue,
        r#"<tr class="total"><td>total</td><td class="num" id="queue-total">{}</td><td class="muted">images in the retry queue</td></tr></tbody></table>"#,
        num(q.total)
    );
    let mut scan = String::new();
    match &live.last_scan {
        None => scan.push_str(r#"<p class="muted">No scan has run yet.</p>"#),
        Some(r) => scan.push_str(&scan_summary(r, now)),
    }
    scan.push_str(&forms.form("/scan", "", "Run the scan now", "primary"));
    if forms.enabled() {
        scan.push_str(r#"<p class="hint">Queues transient failures the trigger did not see and finalises images that can never be retried (one pass over the venues with failures).</p>"#);
    }
    let _ = write!(
        b,
        r#"<div class="grid2">{}{}</div>"#,
        card("Retry queue", &queue),
        card("Last scan", &scan)
    );

    // Providers.
    b.push_str(&card(
        "Providers",
        &providers(&live.providers, &live.queue_by_provider, forms, now),
    ));

    // Data the analytics could not read.
    let bad = s.null_image_values + s.non_array_values + s.non_object_elements;
    if bad > 0 {
        b.push_str(&notice(
            "warn",
            &format!(
                "Unreadable data, counted as no images: {} venue{} with a NULL images value, {} with a value that is not an array, {} array element{} that {} not objects.",
                num(s.null_image_values),
                if s.null_image_values == 1 { "" } else { "s" },
                num(s.non_array_values),
                num(s.non_object_elements),
                if s.non_object_elements == 1 { "" } else { "s" },
                if s.non_object_elements == 1 { "is" } else { "are" },
            ),
        ));
    }
    let _ = write!(
        b,
        r#"<p class="as-of-detail">Queue and providers as of {}.</p>"#,
        time(live_as_of)
    );
    b
}

fn scan_summary(run: &ScanRun, now: DateTime<Utc>) -> String {
    let mut s = String::new();
    let r = &run.result;
    let _ = write!(
        s,
        r#"<p>Finished {} by <code>{}</code>, in {}.</p><dl class="figures">"#,
        when(run.finished_at, now),
        text(&run.run_by),
        millis(r.elapsed_ms)
    );
    for (id, label, v) in [
        (
            "scan-queued",
            "venues with retryable images",
            r.transient_queued,
        ),
        ("scan-images-queued", "images newly queued", r.images_queued),
        ("scan-finalized", "images finalised", r.finalized),
        (
            "scan-permanent",
            "venues with permanent failures only",
            r.permanent_logged,
        ),
        (
            "scan-ambiguous",
            "venues left for review",
            r.ambiguous_skipped,
        ),
        ("scan-errors", "unreadable venues", r.errors),
        ("scan-skipped", "elements skipped", r.skipped_elements),
    ] {
        let _ = write!(
            s,
            r#"<div><dt>{label}</dt><dd id="{id}">{}</dd></div>"#,
            num(v)
        );
    }
    s.push_str("</dl>");
    s
}

fn providers(
    list: &[ProviderStatus],
    queue: &[(String, super::data::QueueCounts)],
    forms: &Forms<'_>,
    now: DateTime<Utc>,
) -> String {
    let mut s = String::from(
        r#"<table class="data" id="providers"><thead><tr><th>Provider</th><th class="num">Rate</th><th>Status</th><th class="num">Queued</th><th>Last upload</th>"#,
    );
    if forms.enabled() {
        s.push_str("<th>Actions</th>");
    }
    s.push_str("</tr></thead><tbody>");
    for p in list {
        // Every trace of the name in the page (text, attributes, ids) is the redacted one.
        let shown = crate::redact::redact_text(&p.provider, &[]);
        let star = p.provider == "*";
        let name = if star {
            r#"<strong>all providers</strong>&nbsp;<code>*</code>"#.to_string()
        } else {
            format!("<code>{}</code>", text(&p.provider))
        };
        let rate_note = match (star, p.default_rate) {
            (true, Some(true)) => "built-in default",
            (true, _) => "default for the others",
            (false, Some(true)) => "default",
            _ => "",
        };
        let status = match p.paused_until {
            Some(until) if until > now => format!(
                r#"<span class="badge badge-warn">paused</span><div class="small">ends {}</div>{}"#,
                when(until, now),
                p.pause_reason
                    .as_deref()
                    .filter(|r| !r.is_empty())
                    .map(|r| format!(r#"<div class="muted small">{}</div>"#, text(r)))
                    .unwrap_or_default()
            ),
            _ => r#"<span class="badge badge-ok">active</span>"#.into(),
        };
        let queued = if star {
            String::from("–")
        } else {
            queue
                .iter()
                .find(|(name, _)| *name == p.provider)
                .map(|(_, c)| num(c.total))
                .unwrap_or_else(|| "0".into())
        };
        let _ = write!(
            s,
            r#"<tr data-provider="{pid}"><td class="nowrap">{name}</td><td class="num">{}{}</td><td>{status}</td><td class="num">{queued}</td><td class="nowrap">{}</td>"#,
            rate(p.per_second),
            if rate_note.is_empty() {
                String::new()
            } else {
                format!(r#"<div class="muted small">{rate_note}</div>"#)
            },
            opt_when(p.last_success_at, now, MISSING),
            pid = esc(&shown),
        );
        if forms.enabled() && shown != p.provider {
            // A form would have to carry the name unredacted: act on it from the CLI.
            s.push_str(r#"<td class="actions"><span class="muted small">name redacted: use <code>venue-image-uploader resume</code> or SQL</span></td>"#);
        } else if forms.enabled() {
            let paused = p.paused_until.is_some_and(|u| u > now);
            let provider_field = format!(
                r#"<input type="hidden" name="provider" value="{}">"#,
                esc(&p.provider)
            );
            s.push_str("<td class=\"actions\">");
            if paused {
                s.push_str(&forms.form("/providers/resume", &provider_field, "Resume", ""));
            }
            let fields = format!(
                r#"{provider_field}<label class="sr" for="pause-min-{id}">Pause for</label><select id="pause-min-{id}" name="minutes"><option value="15">15 min</option><option value="60" selected>1 hour</option><option value="360">6 hours</option><option value="1440">24 hours</option></select><label class="sr" for="pause-why-{id}">Reason</label><input id="pause-why-{id}" name="reason" maxlength="200" placeholder="reason (optional)">"#,
                id = esc(&query_escape(&shown))
            );
            s.push_str(&forms.form(
                "/providers/pause",
                &fields,
                if paused { "Extend pause" } else { "Pause" },
                "",
            ));
            s.push_str("</td>");
        }
        s.push_str("</tr>");
    }
    s.push_str("</tbody></table>");
    s.push_str(r#"<p class="hint">Rates are shared by every uploader (the database hands out each provider's request slots). A pause stops downloads from that provider for every uploader; <code>*</code> pauses all of them, ImageKit uploads included.</p>"#);
    s
}

fn breakdown_label(r: &BreakdownRow) -> String {
    format!(
        "{} · {}",
        r.provider.as_deref().unwrap_or("(no provider)"),
        r.error_type.as_deref().unwrap_or("(no error type)")
    )
}

/// Rows of the breakdown drawn in the chart (the table has all of them).
pub const CHART_ROWS: usize = 20;

/// The failures page's tiles.
const FAILURES_TILES: [TileName; 4] = [
    ("tile-failed-images", "Failed images"),
    ("tile-transient", "Transient"),
    ("tile-permanent", "Permanent"),
    ("tile-ambiguous", "Ambiguous or unknown"),
];

/// `/failures`.
pub fn failures(o: &Overview) -> String {
    let s = &o.stats;
    let by_class = |c: &str| -> i64 {
        s.breakdown
            .iter()
            .filter(|r| r.error_class == c)
            .map(|r| r.count)
            .sum()
    };
    let total: i64 = s.breakdown.iter().map(|r| r.count).sum();
    let mut b = tiles(
        FAILURES_TILES,
        [
            (
                num(s.failed_images),
                &format!("in {} venues", num(s.venues_with_failures)),
            ),
            (num(by_class("transient")), "retried by the uploaders"),
            (num(by_class("permanent")), "never retried automatically"),
            (
                num(by_class("ambiguous") + by_class("unknown")),
                "left for manual review",
            ),
        ],
    );

    let rows: Vec<HBar> = s
        .breakdown
        .iter()
        .take(CHART_ROWS)
        .map(|r| HBar {
            label: breakdown_label(r),
            value: r.count,
            colour: colour::class(&r.error_class),
            title: format!(
                "{}: {} failed images ({})",
                breakdown_label(r),
                num(r.count),
                r.error_class
            ),
        })
        .collect();
    let mut chart = svg::legend(&[
        ("transient", colour::TRANSIENT),
        ("permanent", colour::PERMANENT),
        ("ambiguous", colour::AMBIGUOUS),
        ("unknown", colour::UNKNOWN),
    ]);
    // Cleaned of secrets before drawing: labels come from the data.
    let rows: Vec<HBar> = rows
        .into_iter()
        .map(|mut r| {
            r.label = crate::redact::redact_text(&r.label, &[]);
            r.title = crate::redact::redact_text(&r.title, &[]);
            r
        })
        .collect();
    chart.push_str(&svg::hbars(
        "Failed images by provider and error type",
        &rows,
    ));
    if s.breakdown.len() > CHART_ROWS {
        let rest: i64 = s.breakdown.iter().skip(CHART_ROWS).map(|r| r.count).sum();
        let _ = write!(
            chart,
            r#"<p class="hint">The chart shows the {CHART_ROWS} most frequent combinations; the {} others ({} images) are in the table below.</p>"#,
            s.breakdown.len() - CHART_ROWS,
            num(rest)
        );
    }
    b.push_str(&card("Failed images by provider and error type", &chart));

    let mut t = String::from(
        r#"<table class="data" id="breakdown"><thead><tr><th>Provider</th><th>Error type</th><th>Class</th><th class="num">Images</th><th class="num">Share</th></tr></thead><tbody>"#,
    );
    for r in &s.breakdown {
        let share = if total > 0 {
            r.count as f64 / total as f64
        } else {
            0.0
        };
        let _ = write!(
            t,
            r#"<tr><td>{}</td><td>{}</td><td>{}</td><td class="num">{}</td><td class="num share">{} {}</td></tr>"#,
            opt_text(r.provider.as_deref(), NONE),
            opt_text(r.error_type.as_deref(), NONE),
            badge(&r.error_class),
            num(r.count),
            svg::mini_bar(share, colour::class(&r.error_class)),
            pct(share * 100.0)
        );
    }
    if s.breakdown.is_empty() {
        t.push_str(r#"<tr><td colspan="5" class="muted">No failed images.</td></tr>"#);
    }
    t.push_str("</tbody></table>");
    t.push_str(r#"<p class="hint">Classes follow the extension's settings (<code>venue_images.transient_errors</code>, <code>venue_images.permanent_errors</code>): transient failures are retried with backoff, permanent ones become <code>permanently_failed</code> at the next scan, ambiguous ones and images without an error type wait for a manual force retry.</p>"#);
    b.push_str(&card("All combinations", &t));
    b
}

fn bucket_label(r: Range, t: DateTime<Utc>, i: usize) -> String {
    match r {
        Range::Day => {
            if i.is_multiple_of(3) {
                t.format("%H:%M").to_string()
            } else {
                String::new()
            }
        }
        Range::Week => {
            if t.format("%H").to_string() == "00" {
                t.format("%a %d").to_string()
            } else {
                String::new()
            }
        }
        Range::Month => {
            if i.is_multiple_of(4) {
                t.format("%b %d").to_string()
            } else {
                String::new()
            }
        }
    }
}

fn report_table(rows: &[ReportRow]) -> String {
    let mut t = String::from(
        r#"<table class="data" id="report"><thead><tr><th>Provider</th><th>Error type retried</th><th class="num">Attempts</th><th class="num">Recovered</th><th class="num">Failed again</th><th class="num">Permanent</th><th class="num">Success rate</th><th class="num">Venues recovered</th><th class="num">API calls saved</th></tr></thead><tbody>"#,
    );
    for r in rows {
        let _ = write!(
            t,
            r#"<tr><td>{}</td><td>{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td></tr>"#,
            opt_text(r.provider.as_deref(), NONE),
            opt_text(r.error_type.as_deref(), NONE),
            num(r.attempts),
            num(r.recovered),
            num(r.failed_again),
            num(r.permanent_failures),
            r.success_rate_pct.map(pct).unwrap_or_else(|| "–".into()),
            num(r.venues_recovered),
            num(r.api_calls_saved)
        );
    }
    if rows.is_empty() {
        t.push_str(r#"<tr><td colspan="9" class="muted">No attempts in this range.</td></tr>"#);
    }
    t.push_str("</tbody></table>");
    t
}

/// The recovery page's tiles.
const RECOVERY_TILES: [TileName; 5] = [
    ("rec-attempts", "Attempts"),
    ("rec-recovered", "Recovered"),
    ("rec-success-rate", "Success rate"),
    ("rec-api-calls-saved", "API calls saved"),
    ("rec-permanent", "Became permanent"),
];

/// `/recovery`.
pub fn recovery(r: &Recovery) -> String {
    let mut b = String::from(r#"<nav class="tabs" aria-label="Range">"#);
    for range in Range::ALL {
        let current = if range == r.range {
            r#" aria-current="page""#
        } else {
            ""
        };
        let _ = write!(
            b,
            r#"<a href="/recovery?range={}"{current}>{}</a>"#,
            range.key(),
            range.label()
        );
    }
    b.push_str("</nav>");
    let t = &r.total;
    b.push_str(&tiles(
        RECOVERY_TILES,
        [
            (num(t.attempts), &format!("in the last {}", r.range.label())),
            (
                num(t.recovered),
                &format!("images, in {} venues", num(t.venues_recovered)),
            ),
            (
                t.success_rate_pct.map(pct).unwrap_or_else(|| "–".into()),
                "recovered / attempts",
            ),
            (
                num(t.api_calls_saved),
                "provider calls a full re-enrichment would have made",
            ),
            (
                num(t.permanent_failures),
                "by an attempt or finalised by the scan",
            ),
        ],
    ));

    let labels: Vec<String> = r
        .buckets
        .iter()
        .enumerate()
        .map(|(i, k)| bucket_label(r.range, k.start, i))
        .collect();
    let stamp = |k: &super::data::Bucket| match r.range {
        Range::Month => k.start.format("%Y-%m-%d").to_string(),
        _ => k.start.format("%Y-%m-%d %H:%M UTC").to_string(),
    };
    let tooltips: Vec<String> = r
        .buckets
        .iter()
        .map(|k| {
            format!(
                "{}: {} attempts — {} recovered, {} failed again, {} permanent",
                stamp(k),
                num(k.attempts),
                num(k.recovered),
                num(k.failed_again),
                num(k.permanent_failures)
            )
        })
        .collect();
    let series = [
        Series {
            name: "recovered",
            colour: colour::RECOVERED,
        },
        Series {
            name: "failed again",
            colour: colour::FAILED_AGAIN,
        },
        Series {
            name: "permanent",
            colour: colour::PERMANENT,
        },
    ];
    let values: Vec<Vec<i64>> = r
        .buckets
        .iter()
        .map(|k| vec![k.recovered, k.failed_again, k.permanent_failures])
        .collect();
    let mut chart = svg::legend(&[
        ("recovered", colour::RECOVERED),
        ("failed again", colour::FAILED_AGAIN),
        ("became permanent", colour::PERMANENT),
    ]);
    chart.push_str(&svg::stacked_columns(
        svg::WIDE,
        &format!("Outcomes {}", r.range.per()),
        &series,
        &values,
        &labels,
        &tooltips,
    ));
    b.push_str(&card(&format!("Outcomes {}", r.range.per()), &chart));

    let rate_tips: Vec<String> = r
        .buckets
        .iter()
        .map(|k| match k.success_rate_pct {
            Some(p) => format!(
                "{}: {} of {} attempts recovered ({})",
                stamp(k),
                num(k.recovered),
                num(k.attempts),
                pct(p)
            ),
            None => format!("{}: no attempts", stamp(k)),
        })
        .collect();
    let rates: Vec<Option<f64>> = r
        .buckets
        .iter()
        .map(|k| {
            if k.attempts > 0 {
                k.success_rate_pct
            } else {
                None
            }
        })
        .collect();
    let saved_tips: Vec<String> = r
        .buckets
        .iter()
        .map(|k| format!("{}: {} API calls saved", stamp(k), num(k.api_calls_saved)))
        .collect();
    let saved: Vec<Vec<i64>> = r.buckets.iter().map(|k| vec![k.api_calls_saved]).collect();
    // Half as many labels under the half-width charts.
    let narrow_labels: Vec<String> = {
        let mut keep = false;
        labels
            .iter()
            .map(|l| {
                if l.is_empty() {
                    return String::new();
                }
                keep = !keep;
                if keep {
                    l.clone()
                } else {
                    String::new()
                }
            })
            .collect()
    };
    let _ = write!(
        b,
        r#"<div class="grid2">{}{}</div>"#,
        card(
            &format!("Success rate {}", r.range.per()),
            &svg::percent_line(
                svg::NARROW,
                &format!("Success rate {}", r.range.per()),
                &rates,
                &narrow_labels,
                &rate_tips
            )
        ),
        card(
            &format!("API calls saved {}", r.range.per()),
            &svg::stacked_columns(
                svg::NARROW,
                &format!("API calls saved {}", r.range.per()),
                &[Series {
                    name: "API calls saved",
                    colour: colour::ACCENT
                }],
                &saved,
                &narrow_labels,
                &saved_tips
            )
        )
    );
    let mut table = report_table(&r.rows);
    if let Some(age) = t.oldest_live_lease_seconds {
        let _ = write!(
            table,
            r#"<p class="hint">The oldest lease still held is {} old.</p>"#,
            millis(age * 1000.0)
        );
    }
    table.push_str(r#"<p class="hint"><strong>Attempts</strong>: uploads tried (a 429 or an outage gives the image back without an attempt). <strong>Failed again</strong>: the image is still <code>failed</code> (queued again, or left for review). <strong>Became permanent</strong>: by an attempt, or finalised by the scan. <strong>API calls saved</strong>: each venue, provider and retry round retried directly instead of re-fetching the venue's photo list from the provider.</p>"#);
    b.push_str(&card("By provider and error type retried", &table));
    b
}

fn venue_name(name: Option<&str>, id: i64) -> String {
    match name {
        Some(n) if !n.trim().is_empty() => text(n),
        _ => format!("Venue {id}"),
    }
}

/// `/venues`: the search and the high-priority list.
pub fn venues(high: &[PriorityVenue], query: Option<&str>, found: Option<&[FoundVenue]>) -> String {
    let mut b = format!(
        r#"<form class="search" method="get" action="/venues" role="search"><label for="q">Find a venue by id or name</label><div class="row"><input id="q" name="q" type="search" value="{}" placeholder="e.g. 1234 or Blue Note" autocomplete="off"><button class="btn primary" type="submit">Search</button></div></form>"#,
        text(query.unwrap_or(""))
    );
    if let (Some(q), Some(found)) = (query, found) {
        let mut t = String::new();
        if found.is_empty() {
            let _ = write!(
                t,
                r#"<p class="muted" id="search-empty">No venue has the id or a name containing “{}”.</p>"#,
                text(q)
            );
        } else {
            t.push_str(r#"<table class="data" id="search-results"><thead><tr><th>Venue</th><th class="num">City</th><th class="num">Images</th><th class="num">Failed</th><th class="num">Uploaded</th></tr></thead><tbody>"#);
            for v in found {
                let _ = write!(
                    t,
                    r#"<tr><td><a href="/venues/{id}">{}</a> <span class="muted">#{id}</span></td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td></tr>"#,
                    venue_name(v.name.as_deref(), v.id),
                    v.city_id.map(num).unwrap_or_else(|| "–".into()),
                    num(v.total_images.into()),
                    num(v.failed_count.into()),
                    num(v.uploaded_count.into()),
                    id = v.id
                );
            }
            t.push_str("</tbody></table>");
            if found.len() as i32 >= super::data::SEARCH_ROWS {
                let _ = write!(
                    t,
                    r#"<p class="hint">The first {} matches; narrow the search to see others.</p>"#,
                    super::data::SEARCH_ROWS
                );
            }
        }
        b.push_str(&card(&format!("Search results ({})", found.len()), &t));
    }
    let mut t = String::from(
        r#"<table class="data" id="high-priority"><thead><tr><th class="num">#</th><th>Venue</th><th class="num">City</th><th class="num">Images</th><th class="num">Failed</th><th class="num">Uploaded</th><th>Failure rate</th><th class="num">Priority</th></tr></thead><tbody>"#,
    );
    for (i, v) in high.iter().enumerate() {
        let id = v.id.unwrap_or(0);
        let _ = write!(
            t,
            r#"<tr data-venue="{id}"><td class="num muted">{}</td><td><a href="/venues/{id}">{}</a> <span class="muted">#{id}</span></td><td class="num">{}</td><td class="num">{}</td><td class="num failed">{}</td><td class="num">{}</td><td class="share">{} {}</td><td class="num">{:.1}</td></tr>"#,
            i + 1,
            venue_name(v.name.as_deref(), id),
            v.city_id.map(num).unwrap_or_else(|| "–".into()),
            num(v.images.total_images),
            num(v.images.failed_count),
            num(v.images.uploaded_count),
            svg::mini_bar(v.failure_rate_pct / 100.0, colour::PERMANENT),
            pct(v.failure_rate_pct),
            v.priority_score
        );
    }
    if high.is_empty() {
        t.push_str(r#"<tr><td colspan="8" class="muted">No venue has failed images.</td></tr>"#);
    }
    t.push_str("</tbody></table>");
    t.push_str(r#"<p class="hint">Priority = failed images × 10 + failure rate + 20 when a failure is transient (<code>venue_image_priority_score</code>): the venues where a retry brings back the most.</p>"#);
    b.push_str(&card("High priority: fix these first", &t));
    b
}

/// Characters of a source URL shown (the whole URL is the tooltip).
const URL_CHARS: usize = 64;

/// A redacted URL, short: without its scheme, cut in the middle when long (the host and
/// the file name are what tell images apart), and breaking only after `/`, `?` and `&`
/// when it needs more than one line.
fn short_url(u: &str) -> String {
    let clean = crate::redact::redact_text(u, &[]);
    let bare = clean
        .strip_prefix("https://")
        .or_else(|| clean.strip_prefix("http://"))
        .unwrap_or(&clean);
    let chars: Vec<char> = bare.chars().collect();
    let shown: Vec<char> = if chars.len() > URL_CHARS {
        let mut v = chars[..URL_CHARS / 2 - 1].to_vec();
        v.push('…');
        v.extend_from_slice(&chars[chars.len() - URL_CHARS / 2..]);
        v
    } else {
        chars
    };
    let mut html = String::with_capacity(shown.len() + 16);
    for c in shown {
        html.push_str(&esc(c.encode_utf8(&mut [0; 4])));
        if matches!(c, '/' | '?' | '&') {
            html.push_str("<wbr>");
        }
    }
    format!(r#"<code class="url" title="{}">{html}</code>"#, esc(&clean))
}

fn image_row(v: i64, img: &Image, forms: &Forms<'_>, now: DateTime<Utc>) -> String {
    let status = img.upload_status.as_deref().unwrap_or("(none)");
    let lifecycle = img.lifecycle.as_deref().unwrap_or("");
    let lifecycle_html = if lifecycle.is_empty() {
        MISSING.into()
    } else {
        let label = lifecycle.replace('_', " ");
        let reason = img
            .reason
            .as_deref()
            .filter(|r| !r.is_empty())
            .map(|r| format!(r#"<div class="muted small">{}</div>"#, text(r)))
            .unwrap_or_default();
        format!("{}{reason}", badge_as(lifecycle, &label))
    };
    let state = img.job_state.as_deref();
    let queue = match (state.and_then(QueueState::parse), img.next_attempt_at) {
        (Some(s @ QueueState::Waiting), Some(t)) => format!(
            r#"{}<div class="muted small">next attempt {}</div>"#,
            badge(s.as_str()),
            when(t, now)
        ),
        (Some(s @ QueueState::Leased), _) => {
            format!(
                r#"{}<div class="muted small">in flight</div>"#,
                badge(s.as_str())
            )
        }
        (Some(s @ QueueState::Paused), _) => format!(
            r#"{}<div class="muted small">its provider is paused</div>"#,
            badge(s.as_str())
        ),
        _ => match state {
            Some(s) => badge(s),
            None => MISSING.into(),
        },
    };
    // Retry now: where the extension says a force retry would take the image.
    let retry = if img.can_force {
        forms.form(
            &format!("/venues/{v}/images/{}/force-retry", img.element_index),
            "",
            "Retry",
            "small",
        )
    } else {
        String::new()
    };
    let mut row = format!(
        r#"<tr id="image-{i}"><td class="num muted">{i}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class="num">{}</td><td>{lifecycle_html}</td><td>{queue}</td><td>{}</td>"#,
        opt_text(img.provider.as_deref(), "–"),
        badge(status),
        opt_text(img.error_type.as_deref(), MISSING),
        img.error_class
            .as_deref()
            .filter(|c| !c.is_empty())
            .map(badge)
            .unwrap_or_else(|| MISSING.into()),
        img.retry_count.map(num).unwrap_or_else(|| "–".into()),
        img.source_url
            .as_deref()
            .map(short_url)
            .unwrap_or_else(|| MISSING.into()),
        i = img.element_index,
    );
    if forms.enabled() {
        let _ = write!(row, r#"<td class="actions">{retry}</td>"#);
    }
    row.push_str("</tr>");
    row
}

fn attempt_row(a: &Attempt, now: DateTime<Utc>) -> String {
    let error = match (&a.retried_error_type, &a.error_type) {
        (Some(r), Some(e)) if r != e => format!("{} → {}", text(r), text(e)),
        (_, Some(e)) => text(e),
        (Some(r), None) => text(r),
        (None, None) => MISSING.into(),
    };
    format!(
        r#"<tr><td class="nowrap">{}</td><td>{}</td><td>{}</td><td>{error}</td><td class="num">{}</td><td class="num">{}</td><td class="nowrap">{}</td><td class="message">{}</td></tr>"#,
        when(a.at, now),
        badge(&a.outcome),
        opt_text(a.provider.as_deref(), "–"),
        a.status_code
            .map(|c| c.to_string())
            .unwrap_or_else(|| "–".into()),
        a.retry_count
            .map(|c| c.to_string())
            .unwrap_or_else(|| "–".into()),
        opt_text(a.worker.as_deref(), MISSING),
        opt_text(a.message.as_deref(), ""),
    )
}

/// A venue's page's tiles.
const VENUE_TILES: [TileName; 4] = [
    ("venue-images", "Images"),
    ("venue-failed", "Failed"),
    ("venue-uploaded", "Uploaded"),
    ("venue-queued", "In the retry queue"),
];

/// `/venues/{id}`.
pub fn venue(id: i64, d: &VenueDetail, forms: &Forms<'_>, now: DateTime<Utc>) -> String {
    let mut b = String::new();
    let s = d.venue.as_ref();
    let figure = |f: fn(&super::data::VenueSummary) -> i32| s.map(f).map_or(0, i64::from);
    let failed = figure(|v| v.failed_count);
    let permanent = figure(|v| v.permanently_failed_count);
    let uploaded = figure(|v| v.uploaded_count);
    let queued = figure(|v| v.queued_count);
    let images = figure(|v| v.total_images);
    let city = s
        .and_then(|v| v.city_id)
        .map(|c| format!("city {}", num(c)));
    b.push_str(&tiles(
        VENUE_TILES,
        [
            (num(images), city.as_deref().unwrap_or("")),
            (num(failed), &format!("{} permanently", num(permanent))),
            (num(uploaded), ""),
            (num(queued), "jobs of this venue"),
        ],
    ));

    if forms.enabled() {
        let mut a = String::from(r#"<div class="actions-row">"#);
        if s.is_some_and(|v| v.can_force) {
            a.push_str(&forms.form(
                &format!("/venues/{id}/force-retry"),
                "",
                "Force retry all failed images",
                "primary",
            ));
        }
        if s.is_some_and(|v| v.can_purge) {
            a.push_str(&forms.form(
                &format!("/venues/{id}/purge"),
                r#"<label class="confirm"><input type="checkbox" name="confirm" value="yes" required> remove the permanently failed images from the venue</label>"#,
                "Purge",
                "danger",
            ));
        }
        a.push_str("</div>");
        a.push_str(r#"<p class="hint">Force retry gives every failed or permanently failed image one more attempt now, whatever its error and retry count (for a single image, use its Retry button). Purge removes the permanently failed images from the venue's array; each is kept, redacted, in the attempt log.</p>"#);
        b.push_str(&card("Actions", &a));
    }

    let mut t = String::from(
        r#"<table class="data" id="images"><thead><tr><th class="num">#</th><th>Provider</th><th>Status</th><th>Error type</th><th>Class</th><th class="num">Retries</th><th>Lifecycle</th><th>Queue</th><th>Source URL (redacted)</th>"#,
    );
    if forms.enabled() {
        t.push_str("<th></th>");
    }
    t.push_str("</tr></thead><tbody>");
    for img in &d.images {
        t.push_str(&image_row(id, img, forms, now));
    }
    if d.images.is_empty() {
        t.push_str(r#"<tr><td colspan="10" class="muted">This venue has no images.</td></tr>"#);
    }
    t.push_str("</tbody></table>");
    b.push_str(&card("Images", &t));

    let mut t = String::from(
        r#"<table class="data" id="attempts"><thead><tr><th>When</th><th>Outcome</th><th>Provider</th><th>Error retried → new error</th><th class="num">HTTP</th><th class="num">Retry count</th><th>Uploader</th><th>Message</th></tr></thead><tbody>"#,
    );
    for a in &d.attempts {
        t.push_str(&attempt_row(a, now));
    }
    if d.attempts.is_empty() {
        t.push_str(
            r#"<tr><td colspan="8" class="muted">No attempt recorded for this venue.</td></tr>"#,
        );
    }
    t.push_str("</tbody></table>");
    if d.attempts.len() as i64 >= i64::from(super::data::ATTEMPT_ROWS) {
        let _ = write!(
            t,
            r#"<p class="hint">The latest {} entries.</p>"#,
            super::data::ATTEMPT_ROWS
        );
    }
    b.push_str(&card("Attempt history", &t));
    b
}

/// The way back from a venue's page.
pub const CRUMBS: &str = r#"<p class="crumbs"><a href="/venues">← Venues</a></p>"#;

/// The title of a venue's page.
pub fn venue_title(id: i64, d: &VenueDetail) -> String {
    match &d.venue {
        Some(v) => match v.name.as_deref() {
            Some(n) if !n.trim().is_empty() => {
                format!("{} (#{id})", crate::redact::redact_text(n, &[]))
            }
            _ => format!("Venue {id}"),
        },
        None => format!("Venue {id}"),
    }
}

/// `/login`.
pub fn login(csrf: &str, next: &str, wrong: bool) -> String {
    let mut b = String::new();
    if wrong {
        b.push_str(&notice("error", "That is not the admin token."));
    }
    let _ = write!(
        b,
        r#"<section class="card narrow"><form method="post" action="/login" class="login-form"><input type="hidden" name="csrf" value="{}"><input type="hidden" name="next" value="{}"><input type="text" name="username" value="admin" autocomplete="username" readonly hidden><label for="token">Admin token</label><input id="token" name="token" type="password" autocomplete="current-password" required autofocus><button class="btn primary" type="submit">Log in</button></form><p class="hint">The token is in the file given to <code>--admin-token-file</code>. Logging in sets a session cookie for this site only (HttpOnly, SameSite=Strict) that lasts 12 hours or until you log out. Scripts can send <code>Authorization: Bearer &lt;token&gt;</code> instead.</p></section>"#,
        esc(csrf),
        esc(next)
    );
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dashboard::data::{ImageCounts, QueueCounts, Stats};
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 4, 12, 0, 0).unwrap()
    }

    fn overview_fixture() -> Overview {
        Overview {
            stats: Stats {
                venues: 1000,
                venues_with_failures: 250,
                failed_images: 600,
                uploaded_images_of_failing_venues: 1800,
                average_failure_rate: 23.45,
                breakdown: vec![BreakdownRow {
                    provider: Some("google_places".into()),
                    error_type: Some("rate_limited <b>".into()),
                    error_class: "transient".into(),
                    count: 600,
                }],
                ..Stats::default()
            },
            high_priority: vec![PriorityVenue {
                id: Some(7),
                name: Some("<script>alert(1)</script> key=SECRETKEY".into()),
                images: ImageCounts {
                    total_images: 10,
                    failed_count: 4,
                    uploaded_count: 6,
                },
                failure_rate_pct: 40.0,
                priority_score: 80.0,
                ..PriorityVenue::default()
            }],
        }
    }

    #[test]
    fn read_only_pages_have_no_forms_and_escape_everything() {
        let o = overview_fixture();
        let live = Live {
            queue: QueueCounts {
                due: 3,
                waiting: 2,
                leased: 1,
                paused: 0,
                total: 6,
            },
            ..Live::default()
        };
        let forms = Forms::none();
        for html in [
            overview(&o, &live, &forms, now(), now()),
            failures(&o),
            venues(&o.high_priority, Some("<q>"), Some(&[])),
        ] {
            assert!(!html.contains("<form class=\"action\""), "{html}");
            assert!(!html.contains("<script>"), "{html}");
            assert!(!html.contains("SECRETKEY"), "{html}");
            assert!(!html.contains("style="), "{html}");
            assert!(!html.contains("<b>"), "{html}");
        }
        let html = overview(&o, &live, &forms, now(), now());
        assert!(html.contains(r#"id="tile-venues-with-failures">250<"#));
        assert!(
            html.contains(r#"id="tile-failure-rate">23.4%<"#)
                || html.contains(r#"id="tile-failure-rate">23.5%<"#)
        );
        assert!(html.contains(r#"id="images-in-flight">1<"#));
        assert!(html.contains(r#"id="queue-total">6<"#));
    }

    #[test]
    fn admin_forms_carry_csrf_tokens_for_their_own_action() {
        let admin = Admin::new("tok");
        let forms = Forms::new(Some(&admin), "session-1");
        let d = VenueDetail {
            venue: Some(crate::db::dashboard::VenueSummary {
                id: 9,
                name: Some("V".into()),
                city_id: None,
                total_images: 1,
                failed_count: 1,
                permanently_failed_count: 1,
                uploaded_count: 0,
                queued_count: 0,
                can_force: true,
                can_purge: true,
            }),
            images: vec![Image {
                element_index: 2,
                provider: Some("here".into()),
                source_url: Some("https://x/y?key=LEAK".into()),
                upload_status: Some("permanently_failed".into()),
                error_type: Some("not_found".into()),
                error_class: Some("permanent".into()),
                retry_count: Some(1),
                lifecycle: Some("permanently_failed".into()),
                reason: None,
                job_id: None,
                job_state: None,
                next_attempt_at: None,
                imagekit_path: None,
                can_force: true,
            }],
            attempts: vec![],
        };
        let html = venue(9, &d, &forms, now());
        for action in [
            "/venues/9/force-retry",
            "/venues/9/purge",
            "/venues/9/images/2/force-retry",
        ] {
            let token = admin.csrf_token("session-1", action);
            assert!(
                html.contains(&format!(
                    r#"action="{action}"><input type="hidden" name="csrf" value="{token}">"#
                )),
                "{action}: {html}"
            );
        }
        assert!(!html.contains("LEAK"));
        assert!(html.contains("key=REDACTED"));
        assert!(
            html.contains("required"),
            "purge needs its confirmation box"
        );
    }

    /// Security review finding 8: the overview's `data-provider` attribute (and every
    /// other trace of a provider's name) was escaped but not redacted.
    #[test]
    fn provider_names_are_redacted_in_text_attributes_and_forms() {
        let o = overview_fixture();
        let admin = Admin::new("tok");
        let names = [
            "cdn?key=SECRET1",
            r#"{"api_key": "SECRET2"}"#,
            "Authorization: Bearer SECRET3",
            "x-api-key: SECRET4",
            "imgix?s=SECRET5",
        ];
        let status = |name: &str, paused: bool| ProviderStatus {
            provider: name.to_string(),
            per_second: Some(2.0),
            default_rate: Some(false),
            paused_until: paused.then(|| now() + chrono::Duration::hours(1)),
            pause_reason: paused.then(|| "token=SECRET6".into()),
            last_success_at: None,
            updated_at: None,
            queued: 0,
        };
        let live = Live {
            providers: names
                .iter()
                .map(|n| status(n, true))
                .chain([status("google_places", false)])
                .collect(),
            ..Live::default()
        };
        for forms in [Forms::none(), Forms::new(Some(&admin), "s")] {
            let html = overview(&o, &live, &forms, now(), now());
            assert!(!html.contains("SECRET"), "{html}");
            assert!(
                html.contains(r#"data-provider="cdn?key=REDACTED""#),
                "{html}"
            );
            assert!(html.contains(r#"data-provider="google_places""#), "{html}");
        }
        // A provider whose name needs no redaction keeps its action forms.
        let html = overview(&o, &live, &Forms::new(Some(&admin), "s"), now(), now());
        assert!(
            html.contains(r#"name="provider" value="google_places""#),
            "{html}"
        );
    }

    #[test]
    fn urls_are_redacted_shortened_in_the_middle_and_break_at_slashes() {
        let u = format!(
            "https://maps.googleapis.com/maps/api/place/photo?photo_reference={}&key=SECRET",
            "A".repeat(80)
        );
        let html = short_url(&u);
        assert!(!html.contains("SECRET"), "{html}");
        let (title, shown) = html.split_once("\">").unwrap();
        assert!(title.contains("https://maps.googleapis.com/") && title.contains("key=REDACTED"));
        assert!(shown.starts_with("maps.googleapis.com/<wbr>"), "{shown}");
        assert!(
            shown.contains('…') && shown.ends_with("&amp;<wbr>key=REDACTED</code>"),
            "{shown}"
        );
        // Signed-URL parameters too (ImageKit's ik-s, imgix's s, Akamai's tokens).
        let html = short_url("https://ik.imagekit.io/acct/x.jpg?ik-t=1700000000&ik-s=SIGNATURE");
        assert!(!html.contains("SIGNATURE"), "{html}");
        assert!(html.contains("ik-s=REDACTED"), "{html}");
        let short = short_url("http://h/a<b>.png");
        assert!(short.ends_with(">h/<wbr>a&lt;b&gt;.png</code>"), "{short}");
    }

    #[test]
    fn flash_messages_only_say_what_they_are_told_and_escape_it() {
        let q = |k: &str| match k {
            "n" => Some("3".to_string()),
            "p" => Some("<x>".to_string()),
            _ => None,
        };
        assert!(flash(Some("force-retry"), &q).contains("3 images queued"));
        assert!(flash(Some("pause"), &q).contains("<strong>?</strong>"));
        assert_eq!(flash(Some("bogus"), &q), "");
        assert_eq!(flash(None, &q), "");
    }
}
