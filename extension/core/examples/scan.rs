//! Times the analytics scanner on rows shaped like a real app's (10 images, about 4.8 KB
//! of JSON, 10% failed), without PostgreSQL: the per-element cost that the table-level
//! analytics add on top of detoasting. `cargo run --release -p venue_images_core --example scan`
//!
//! `ROWS_FILE=<file>` reads the rows from a file instead, one JSON array per line (for
//! example `COPY (SELECT venue_images FROM venues) TO '<file>'` from a benchmark
//! database, whose text format leaves JSON arrays of plain strings as they are).
//! `WHAT=list` times the venue list of `venues_with_image_failures` (every venue with a
//! failure, sorted) instead of the summary and breakdown. Run under
//! `valgrind --tool=callgrind` with `ROUNDS=1` for instruction counts by function.
//! `HOT=1` keeps the rows in the cache instead (`ROWS=20`: as a row just decompressed by
//! PostgreSQL is) and reports the median of many rounds.
use std::time::Instant;
use venue_images_core::analytics::{ListSpec, Stats, VenueList, VenueOrder};
use venue_images_core::classify::Classifier;
use venue_images_core::jsonb::{encode, parse_json};

fn row(id: u64) -> String {
    let mut images = Vec::new();
    for n in 0..10u64 {
        let h = id
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .wrapping_add(n * 7919);
        let purl = format!(
            "https://maps.googleapis.com/maps/api/place/photo?maxwidth=1600&photo_reference={h:040x}&key=AIzaSyB4-demo"
        );
        let common = format!(
            r#""provider":"google_places","provider_url":"{purl}","width":4032,"height":3024,"quality_score":0.9,"fetched_at":"2025-06-01T10:00:00Z","position":{n},"attribution":"Contributor {}""#,
            h % 100_000
        );
        if h.is_multiple_of(10) {
            images.push(format!(
                r#"{{{common},"url":"{purl}","upload_status":"failed","retry_count":1,"error_details":{{"error":"download failed","error_type":"rate_limited","status_code":429,"timestamp":"2025-06-01T10:00:00Z","retry_attempt":1}}}}"#
            ));
        } else {
            images.push(format!(
                r#"{{{common},"url":"https://ik.imagekit.io/e/venues/v{id}/{h:x}.jpg","imagekit_path":"/venues/v{id}/{h:x}.jpg","upload_status":"uploaded"}}"#
            ));
        }
    }
    format!("[{}]", images.join(","))
}

/// `HOT=1`: the rows stay in the cache (as a row just decompressed is), and the state
/// lives across rounds (as an aggregate's does): the median over many rounds of the
/// scan alone, per element.
fn hot(rows: &[Vec<u8>]) {
    let elements: usize = rows
        .iter()
        .map(|r| {
            venue_images_core::jsonb::parse_varlena(r)
                .map(|c| c.len())
                .unwrap_or(0)
        })
        .sum();
    let mut stats = Stats::new(Classifier::default());
    let mut times: Vec<f64> = (0..20_000)
        .map(|_| {
            let start = Instant::now();
            for r in rows {
                stats.add(Some(r));
            }
            start.elapsed().as_nanos() as f64 / elements as f64
        })
        .collect();
    times.sort_by(f64::total_cmp);
    println!(
        "hot: median {:.1} ns, p10 {:.1} ns per element ({} failed)",
        times[times.len() / 2],
        times[times.len() / 10],
        stats.summary.total_failed_images
    );
}

fn main() {
    let n: u64 = std::env::var("ROWS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(50_000);
    let texts: Vec<String> = match std::env::var("ROWS_FILE") {
        Ok(path) => std::fs::read_to_string(&path)
            .expect("ROWS_FILE")
            .lines()
            .take(n as usize)
            .map(str::to_owned)
            .collect(),
        Err(_) => (0..n).map(row).collect(),
    };
    let rows: Vec<Vec<u8>> = texts
        .iter()
        .map(|t| encode(&parse_json(t).expect("json")).expect("encode"))
        .collect();
    if std::env::var("HOT").is_ok() {
        hot(&rows);
        return;
    }
    let names: Vec<String> = (0..rows.len()).map(|id| format!("Venue {id}")).collect();
    let list = std::env::var("WHAT").is_ok_and(|w| w == "list");
    let spec = ListSpec {
        min_failures: 1,
        require_uploaded: false,
        max_rows: None,
        order: VenueOrder::ByFailures,
        with_error_types: false,
    };
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5);
    let elements = rows
        .iter()
        .map(|r| {
            venue_images_core::jsonb::parse_varlena(r)
                .map(|c| c.len())
                .unwrap_or(0)
        })
        .sum::<usize>() as f64;
    let mut best = f64::MAX;
    for round in 0..rounds {
        // The floor: the copy alone, as decompression leaves each row in cache.
        let mut hot = Vec::new();
        let start = Instant::now();
        let mut sum = 0usize;
        for r in &rows {
            hot.clear();
            hot.extend_from_slice(r);
            sum += hot[hot.len() / 2] as usize;
        }
        let floor = start.elapsed();
        let start = Instant::now();
        let kept = if list {
            let mut venues = VenueList::new(spec, Classifier::default());
            for (id, r) in rows.iter().enumerate() {
                hot.clear();
                hot.extend_from_slice(r);
                venues.add(
                    Some(id as i64),
                    Some(names[id].as_bytes()),
                    Some(1),
                    Some(&hot),
                );
            }
            venues.into_sorted().len()
        } else {
            let mut stats = Stats::new(Classifier::default());
            for r in &rows {
                hot.clear();
                hot.extend_from_slice(r);
                stats.add(Some(&hot));
            }
            stats.scanner.breakdown_rows().len()
        };
        let el = start.elapsed();
        println!(
            "round {round}: copy {:.1} ns per element, copy + scan {:.1} ns per element: scan {:.1} ns ({sum}, {kept} kept)",
            floor.as_nanos() as f64 / elements,
            el.as_nanos() as f64 / elements,
            (el.as_nanos() as f64 - floor.as_nanos() as f64) / elements,
        );
        best = best.min((el.as_nanos() as f64 - floor.as_nanos() as f64) / elements);
    }
    println!("best: scan {best:.1} ns per element");
}
