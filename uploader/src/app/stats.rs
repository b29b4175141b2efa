//! `stats`: the failure statistics as text tables or JSON.

use super::setup::connect;
use crate::cli::Cli;
use crate::db::{BreakdownRow, QueueCounts, QueueState, Summary};
use crate::error::AppError;
use crate::exit::Exit;

/// `venue-image-uploader stats [--json]`.
pub async fn stats(cli: &Cli, json: bool) -> Result<Exit, AppError> {
    let queue = connect(cli, None).await?;
    let (summary, breakdown) = queue
        .stats()
        .await
        .map_err(|e| AppError::db(e, "venue_image_reader"))?;
    let depth = queue.depth(None).await.unwrap_or_default();
    if json {
        let v = serde_json::json!({"summary": summary, "breakdown": breakdown,
            "queue": QueueState::ALL.iter().map(|s| (s.as_str(), depth.of(*s))).collect::<std::collections::BTreeMap<_, _>>()});
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    } else {
        print!("{}", render_stats(&summary, &breakdown, &depth));
    }
    Ok(Exit::Ok)
}

/// The statistics as text tables.
pub fn render_stats(s: &Summary, breakdown: &[BreakdownRow], depth: &QueueCounts) -> String {
    let mut out = String::new();
    out.push_str("Summary\n");
    for (k, v) in [
        (
            "venues with failures",
            s.total_venues_with_failures.to_string(),
        ),
        ("failed images", s.total_failed_images.to_string()),
        (
            "uploaded images (of those venues)",
            s.total_uploaded_images.to_string(),
        ),
        (
            "average failure rate %",
            format!("{:.1}", s.average_failure_rate),
        ),
        (
            "venues with transient failures",
            s.venues_with_transient.to_string(),
        ),
        (
            "venues with permanent failures",
            s.venues_with_permanent.to_string(),
        ),
        (
            "venues with ambiguous failures",
            s.venues_with_ambiguous.to_string(),
        ),
        ("venues scanned", s.venues_scanned.to_string()),
    ] {
        out.push_str(&format!("  {k:<36} {v:>10}\n"));
    }
    if depth.total > 0 {
        let q: Vec<String> = QueueState::ALL
            .iter()
            .filter(|s| depth.of(**s) > 0)
            .map(|s| format!("{} {}", s.as_str(), depth.of(*s)))
            .collect();
        out.push_str(&format!("  {:<36} {:>10}\n", "retry queue", q.join(", ")));
    }
    out.push_str("\nFailure breakdown\n");
    let rows: Vec<[String; 4]> = breakdown
        .iter()
        .map(|r| {
            [
                r.provider.clone().unwrap_or_else(|| "(none)".into()),
                r.error_type.clone().unwrap_or_else(|| "(none)".into()),
                r.error_class.clone(),
                r.count.to_string(),
            ]
        })
        .collect();
    let head = ["provider", "error_type", "class", "count"];
    let mut w = head.map(str::len);
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.len());
        }
    }
    let line = |r: [&str; 4]| {
        format!(
            "  {:<a$}  {:<b$}  {:<c$}  {:>d$}\n",
            r[0],
            r[1],
            r[2],
            r[3],
            a = w[0],
            b = w[1],
            c = w[2],
            d = w[3]
        )
    };
    out.push_str(&line(head));
    for r in &rows {
        out.push_str(&line([&r[0], &r[1], &r[2], &r[3]]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_line_up() {
        let s = Summary {
            total_venues_with_failures: 2,
            total_failed_images: 5,
            total_uploaded_images: 40,
            average_failure_rate: 11.111,
            venues_with_transient: 1,
            venues_with_permanent: 1,
            venues_with_ambiguous: 0,
            venues_scanned: 900,
        };
        let rows = [
            BreakdownRow {
                provider: Some("google_places".into()),
                error_type: Some("rate_limited".into()),
                error_class: "transient".into(),
                count: 4,
            },
            BreakdownRow {
                provider: None,
                error_type: None,
                error_class: "permanent".into(),
                count: 1,
            },
        ];
        let text = render_stats(
            &s,
            &rows,
            &QueueCounts {
                due: 3,
                total: 3,
                ..QueueCounts::default()
            },
        );
        assert!(
            text.contains("  average failure rate %                     11.1\n"),
            "{text}"
        );
        assert!(
            text.contains("  retry queue                          "),
            "{text}"
        );
        assert!(text.contains("due 3"), "{text}");
        assert!(
            text.contains("  provider       error_type    class      count\n"),
            "{text}"
        );
        assert!(
            text.contains("  (none)         (none)        permanent      1\n"),
            "{text}"
        );
    }
}
