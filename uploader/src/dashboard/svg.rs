//! Charts as server-rendered SVG: no JavaScript, no chart library, nothing to vendor.
//!
//! Colours are presentation attributes (`fill=`), never `style` attributes, so the strict
//! CSP needs no `'unsafe-inline'`. Each chart has a `<title>` and an `aria-label`, each
//! bar or point a `<title>` (the browser shows it as a tooltip), and every chart has a
//! table beside it on its page, so the figures are readable without the picture.

use super::html::{esc, num};
use std::fmt::Write;

/// Colours, shared by the charts and their legends (`assets/dashboard.css` uses the same).
pub mod colour {
    use venue_images_core::retry::QueueState;

    /// Transient failures (retried).
    pub const TRANSIENT: &str = "#d97706";
    /// Permanent failures.
    pub const PERMANENT: &str = "#dc2626";
    /// Ambiguous failures (left for review).
    pub const AMBIGUOUS: &str = "#7c3aed";
    /// Unknown class (no error type).
    pub const UNKNOWN: &str = "#6b7280";
    /// Recovered attempts.
    pub const RECOVERED: &str = "#16a34a";
    /// Attempts that failed again.
    pub const FAILED_AGAIN: &str = "#f59e0b";
    /// Queue: due now.
    pub const DUE: &str = "#2563eb";
    /// Queue: waiting for backoff.
    pub const WAITING: &str = "#94a3b8";
    /// Queue: leased (in flight).
    pub const LEASED: &str = "#0d9488";
    /// Queue: provider paused.
    pub const PAUSED: &str = "#d97706";
    /// Lines and single-series bars.
    pub const ACCENT: &str = "#2563eb";
    /// Axis text.
    pub const AXIS: &str = "#4b5563";
    /// Grid lines.
    pub const GRID: &str = "#e5e7eb";

    /// The colour of an error class.
    pub fn class(class: &str) -> &'static str {
        match class {
            "transient" => TRANSIENT,
            "permanent" => PERMANENT,
            "ambiguous" => AMBIGUOUS,
            _ => UNKNOWN,
        }
    }

    /// The colour of a queue state.
    pub fn state(state: QueueState) -> &'static str {
        match state {
            QueueState::Due => DUE,
            QueueState::Waiting => WAITING,
            QueueState::Leased => LEASED,
            QueueState::Paused => PAUSED,
        }
    }
}

/// One horizontal bar.
#[derive(Clone, Debug)]
pub struct HBar {
    /// Label left of the bar (plain text; truncated to fit, full in the tooltip).
    pub label: String,
    /// Length.
    pub value: i64,
    /// Fill colour.
    pub colour: &'static str,
    /// Tooltip (plain text).
    pub title: String,
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// Horizontal bars, one per row, longest first as given. `title` names the chart.
pub fn hbars(title: &str, rows: &[HBar]) -> String {
    const W: f64 = 900.0;
    const LABEL: f64 = 290.0;
    const ROW: f64 = 24.0;
    const VALUE: f64 = 70.0;
    let h = (rows.len().max(1) as f64) * ROW + 8.0;
    let max = rows.iter().map(|r| r.value).max().unwrap_or(0).max(1) as f64;
    let span = W - LABEL - VALUE;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg class="chart" viewBox="0 0 {W} {h}" width="{W}" height="{h}" role="img" aria-label="{t}" xmlns="http://www.w3.org/2000/svg" font-size="13"><title>{t}</title>"#,
        t = esc(title)
    );
    if rows.is_empty() {
        let _ = write!(
            s,
            r#"<text x="{}" y="18" fill="{}" text-anchor="middle">No failed images</text>"#,
            W / 2.0,
            colour::AXIS
        );
    }
    for (i, r) in rows.iter().enumerate() {
        let y = i as f64 * ROW + 4.0;
        let len = ((r.value.max(0) as f64) / max * span).max(if r.value > 0 { 2.0 } else { 0.0 });
        let _ = write!(
            s,
            r#"<g><title>{title}</title><text x="{lx}" y="{ty}" text-anchor="end" fill="{axis}">{label}</text><rect x="{LABEL}" y="{y}" width="{len:.1}" height="{bh}" rx="2" fill="{c}"/><text x="{vx:.1}" y="{ty}" fill="{axis}">{v}</text></g>"#,
            title = esc(&r.title),
            lx = LABEL - 8.0,
            ty = y + 14.0,
            axis = colour::AXIS,
            label = esc(&truncate(&r.label, 40)),
            bh = ROW - 6.0,
            c = r.colour,
            vx = LABEL + len + 6.0,
            v = num(r.value),
        );
    }
    s.push_str("</svg>");
    s
}

/// A series of a column chart.
#[derive(Clone, Debug)]
pub struct Series {
    /// Its name (legend and tooltips).
    pub name: &'static str,
    /// Fill colour.
    pub colour: &'static str,
}

/// A "nice" axis top and step for values up to `max`: steps of 1, 2 or 5 × 10ⁿ, at most
/// 5 of them.
pub fn nice_axis(max: f64) -> (f64, f64) {
    if !max.is_finite() || max <= 0.0 {
        return (1.0, 1.0);
    }
    let raw = max / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag)
        .max(1.0);
    let step = if step < 1.0 { 1.0 } else { step.round() };
    ((max / step).ceil() * step, step)
}

/// Width of a full-width chart (a card's width), in SVG units (≈ CSS pixels).
pub const WIDE: f64 = 900.0;
/// Width of a chart in one of two side-by-side cards.
pub const NARROW: f64 = 480.0;
const CH: f64 = 240.0;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 30.0;

fn plot_w(cw: f64) -> f64 {
    cw - LEFT - RIGHT
}
fn plot_h() -> f64 {
    CH - TOP - BOTTOM
}

/// Horizontal grid lines and the y axis labels, with `fmt` for the tick values.
fn y_axis(s: &mut String, cw: f64, top: f64, step: f64, fmt: &dyn Fn(f64) -> String) {
    let mut v = 0.0;
    while v <= top + step / 2.0 {
        let y = TOP + plot_h() - v / top * plot_h();
        let _ = write!(
            s,
            r#"<line x1="{LEFT}" x2="{x2}" y1="{y:.1}" y2="{y:.1}" stroke="{g}" stroke-width="1"/><text x="{tx}" y="{ty:.1}" text-anchor="end" fill="{a}">{label}</text>"#,
            x2 = cw - RIGHT,
            g = colour::GRID,
            tx = LEFT - 6.0,
            ty = y + 4.0,
            a = colour::AXIS,
            label = esc(&fmt(v)),
        );
        v += step;
    }
}

/// The x labels under every `every`-th bucket (empty labels are skipped).
fn x_labels(s: &mut String, cw: f64, labels: &[String]) {
    let n = labels.len().max(1);
    let slot = plot_w(cw) / n as f64;
    for (i, l) in labels.iter().enumerate() {
        if l.is_empty() {
            continue;
        }
        let x = LEFT + slot * (i as f64 + 0.5);
        let _ = write!(
            s,
            r#"<text x="{x:.1}" y="{y}" text-anchor="middle" fill="{a}">{l}</text>"#,
            y = CH - 10.0,
            a = colour::AXIS,
            l = esc(l)
        );
    }
}

fn open(s: &mut String, cw: f64, title: &str) {
    let _ = write!(
        s,
        r#"<svg class="chart" viewBox="0 0 {cw} {CH}" width="{cw}" height="{CH}" role="img" aria-label="{t}" xmlns="http://www.w3.org/2000/svg" font-size="12"><title>{t}</title>"#,
        t = esc(title)
    );
}

/// Stacked columns `cw` wide: `values[bucket][series]`, one tooltip per bucket, x labels
/// under the buckets whose label is not empty.
pub fn stacked_columns(
    cw: f64,
    title: &str,
    series: &[Series],
    values: &[Vec<i64>],
    labels: &[String],
    tooltips: &[String],
) -> String {
    let mut s = String::new();
    open(&mut s, cw, title);
    let max = values
        .iter()
        .map(|b| b.iter().map(|v| (*v).max(0)).sum::<i64>())
        .max()
        .unwrap_or(0);
    let (top, step) = nice_axis(max as f64);
    y_axis(&mut s, cw, top, step, &|v| num(v as i64));
    let n = values.len().max(1);
    let slot = plot_w(cw) / n as f64;
    let bw = (slot * 0.72).max(1.0);
    for (i, bucket) in values.iter().enumerate() {
        let x = LEFT + slot * i as f64 + (slot - bw) / 2.0;
        let mut y = TOP + plot_h();
        let _ = write!(
            s,
            "<g><title>{}</title>",
            esc(tooltips.get(i).map(String::as_str).unwrap_or(""))
        );
        // An invisible full-height target, so that empty buckets have a tooltip too.
        let _ = write!(
            s,
            r#"<rect x="{:.1}" y="{TOP}" width="{:.1}" height="{}" fill="transparent"/>"#,
            LEFT + slot * i as f64,
            slot,
            plot_h()
        );
        for (k, v) in bucket.iter().enumerate() {
            if *v <= 0 {
                continue;
            }
            let h = *v as f64 / top * plot_h();
            y -= h;
            let c = series.get(k).map(|s| s.colour).unwrap_or(colour::UNKNOWN);
            let _ = write!(
                s,
                r#"<rect x="{x:.1}" y="{y:.1}" width="{bw:.1}" height="{h:.1}" fill="{c}"/>"#
            );
        }
        s.push_str("</g>");
    }
    if max == 0 {
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="{}">Nothing in this range</text>"#,
            LEFT + plot_w(cw) / 2.0,
            TOP + plot_h() / 2.0,
            colour::AXIS
        );
    }
    x_labels(&mut s, cw, labels);
    s.push_str("</svg>");
    s
}

/// A line `cw` wide over buckets (gaps where a value is missing), for percentages 0–100.
pub fn percent_line(
    cw: f64,
    title: &str,
    points: &[Option<f64>],
    labels: &[String],
    tooltips: &[String],
) -> String {
    let mut s = String::new();
    open(&mut s, cw, title);
    y_axis(&mut s, cw, 100.0, 25.0, &|v| format!("{v:.0}%"));
    let n = points.len().max(1);
    let slot = plot_w(cw) / n as f64;
    let at = |i: usize, v: f64| {
        (
            LEFT + slot * (i as f64 + 0.5),
            TOP + plot_h() - v.clamp(0.0, 100.0) / 100.0 * plot_h(),
        )
    };
    // Segments of consecutive known points.
    let mut segment: Vec<(f64, f64)> = Vec::new();
    let flush = |seg: &mut Vec<(f64, f64)>, s: &mut String| {
        if seg.len() > 1 {
            let pts: Vec<String> = seg.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
            let _ = write!(
                s,
                r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="2"/>"#,
                pts.join(" "),
                colour::ACCENT
            );
        }
        seg.clear();
    };
    for (i, p) in points.iter().enumerate() {
        match p {
            Some(v) if v.is_finite() => segment.push(at(i, *v)),
            _ => flush(&mut segment, &mut s),
        }
    }
    flush(&mut segment, &mut s);
    for (i, p) in points.iter().enumerate() {
        if let Some(v) = p.filter(|v| v.is_finite()) {
            let (x, y) = at(i, v);
            let _ = write!(
                s,
                r#"<g><title>{}</title><circle cx="{x:.1}" cy="{y:.1}" r="3.5" fill="{}"/></g>"#,
                esc(tooltips.get(i).map(String::as_str).unwrap_or("")),
                colour::ACCENT
            );
        }
    }
    if points.iter().all(|p| p.is_none()) {
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="{}">No attempts in this range</text>"#,
            LEFT + plot_w(cw) / 2.0,
            TOP + plot_h() / 2.0 - 20.0,
            colour::AXIS
        );
    }
    x_labels(&mut s, cw, labels);
    s.push_str("</svg>");
    s
}

/// One horizontal bar split into parts (the queue by state); zero parts are left out.
pub fn stacked_bar(title: &str, parts: &[(&str, i64, &'static str)]) -> String {
    const W: f64 = 900.0;
    const H: f64 = 28.0;
    let total: i64 = parts.iter().map(|p| p.1.max(0)).sum();
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg class="chart chart-bar" viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" aria-label="{t}" xmlns="http://www.w3.org/2000/svg"><title>{t}</title>"#,
        t = esc(title)
    );
    if total == 0 {
        let _ = write!(
            s,
            r#"<rect x="0" y="0" width="{W}" height="{H}" rx="4" fill="{}"/>"#,
            colour::GRID
        );
    } else {
        let mut x = 0.0;
        for (name, v, c) in parts {
            if *v <= 0 {
                continue;
            }
            let w = *v as f64 / total as f64 * W;
            let _ = write!(
                s,
                r#"<g><title>{}: {}</title><rect x="{x:.1}" y="0" width="{w:.1}" height="{H}" fill="{c}"/></g>"#,
                esc(name),
                num(*v)
            );
            x += w;
        }
    }
    s.push_str("</svg>");
    s
}

/// A small inline bar for a fraction 0–1 (table cells).
pub fn mini_bar(fraction: f64, colour: &str) -> String {
    let f = if fraction.is_finite() {
        fraction.clamp(0.0, 1.0)
    } else {
        0.0
    };
    format!(
        r#"<svg class="mini" viewBox="0 0 60 8" width="60" height="8" aria-hidden="true" xmlns="http://www.w3.org/2000/svg"><rect x="0" y="0" width="60" height="8" rx="2" fill="{g}"/><rect x="0" y="0" width="{w:.1}" height="8" rx="2" fill="{c}"/></svg>"#,
        g = colour::GRID,
        w = f * 60.0,
        c = esc(colour)
    )
}

/// A legend: coloured squares and names (HTML).
pub fn legend(items: &[(&str, &str)]) -> String {
    let mut s = String::from(r#"<ul class="legend">"#);
    for (name, c) in items {
        let _ = write!(
            s,
            r#"<li><svg viewBox="0 0 10 10" width="10" height="10" aria-hidden="true" xmlns="http://www.w3.org/2000/svg"><rect width="10" height="10" rx="2" fill="{}"/></svg>{}</li>"#,
            esc(c),
            esc(name)
        );
    }
    s.push_str("</ul>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn well_formed(svg: &str) {
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"), "{svg}");
        assert_eq!(
            svg.matches("<g>").count(),
            svg.matches("</g>").count(),
            "{svg}"
        );
        assert!(!svg.contains("style="), "no style attributes under the CSP");
        assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
    }

    #[test]
    fn axis_steps_are_nice() {
        assert_eq!(nice_axis(0.0), (1.0, 1.0));
        assert_eq!(nice_axis(3.0), (3.0, 1.0));
        assert_eq!(nice_axis(7.0), (8.0, 2.0));
        assert_eq!(nice_axis(42.0), (50.0, 10.0));
        assert_eq!(nice_axis(1234.0), (1500.0, 500.0));
        assert_eq!(nice_axis(f64::NAN), (1.0, 1.0));
    }

    #[test]
    fn hbars_scale_to_the_longest_and_escape_labels() {
        let svg = hbars(
            "Failures <by> type",
            &[
                HBar {
                    label: "google_places · rate_limited".into(),
                    value: 100,
                    colour: colour::TRANSIENT,
                    title: "100 images".into(),
                },
                HBar {
                    label: "<script>alert(1)</script>".into(),
                    value: 50,
                    colour: colour::PERMANENT,
                    title: "\"quoted\"".into(),
                },
            ],
        );
        well_formed(&svg);
        assert!(svg.contains(r#"width="540.0""#), "{svg}");
        assert!(svg.contains(r#"width="270.0""#), "{svg}");
        assert!(!svg.contains("<script>"));
        assert!(svg.contains("&lt;script&gt;"));
        assert!(svg.contains("<title>Failures &lt;by&gt; type</title>"));
        let empty = hbars("none", &[]);
        well_formed(&empty);
        assert!(empty.contains("No failed images"));
    }

    #[test]
    fn stacked_columns_stack_and_say_when_empty() {
        let series = [
            Series {
                name: "a",
                colour: colour::RECOVERED,
            },
            Series {
                name: "b",
                colour: colour::PERMANENT,
            },
        ];
        let svg = stacked_columns(
            WIDE,
            "t",
            &series,
            &[vec![3, 1], vec![0, 0], vec![2, 2]],
            &["x".into(), String::new(), "z".into()],
            &["one".into(), "two".into(), "three".into()],
        );
        well_formed(&svg);
        // Axis to 4 in steps of 1: a unit is 198/4 = 49.5 px high.
        assert!(svg.contains(r##"height="148.5" fill="#16a34a""##), "{svg}");
        assert!(svg.contains(r##"height="49.5" fill="#dc2626""##), "{svg}");
        assert_eq!(svg.matches("<title>").count(), 4);
        assert!(!svg.contains("Nothing in this range"));
        let empty = stacked_columns(WIDE, "t", &series, &[vec![0, 0]], &[], &[]);
        well_formed(&empty);
        assert!(empty.contains("Nothing in this range"));
    }

    #[test]
    fn percent_line_has_gaps() {
        let svg = percent_line(
            NARROW,
            "rate",
            &[Some(50.0), Some(100.0), None, Some(0.0), Some(f64::NAN)],
            &[],
            &[],
        );
        well_formed(&svg);
        assert_eq!(svg.matches("<polyline").count(), 1);
        assert_eq!(svg.matches("<circle").count(), 3);
        let none = percent_line(NARROW, "rate", &[None, None], &[], &[]);
        assert!(none.contains("No attempts in this range"));
    }

    #[test]
    fn stacked_bar_and_mini_bar() {
        let svg = stacked_bar(
            "queue",
            &[
                ("due", 3, colour::DUE),
                ("waiting", 0, colour::WAITING),
                ("leased", 1, colour::LEASED),
            ],
        );
        well_formed(&svg);
        assert!(
            svg.contains(r#"width="675.0""#) && svg.contains(r#"width="225.0""#),
            "{svg}"
        );
        assert!(!svg.contains("waiting"));
        well_formed(&stacked_bar("queue", &[("due", 0, colour::DUE)]));
        assert!(mini_bar(2.0, "#000").contains(r#"width="60.0""#));
        assert!(mini_bar(f64::NAN, "#000").contains(r#"width="0.0""#));
        assert!(legend(&[("a<b", "#fff")]).contains("a&lt;b"));
    }
}
