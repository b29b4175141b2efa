//! Benchmarks: every figure is a ratio against a baseline measured in the same run.
//!
//! - Analytics: each function against the floor (`SELECT sum(jsonb_array_length(...))`,
//!   a bare scan that detoasts every value) and against the original's plain SQL.
//! - Dedupe over every row against an equivalent plain-SQL function.
//!
//! Queries are interleaved (one run of each per round) so that caches and background
//! noise affect all of them alike; the median of the rounds is reported.

use crate::dataset::Shape;
use crate::{db, original};
use anyhow::Result;
use sqlx::{Connection, Executor, PgPool, Row};
use std::time::{Duration, Instant};

/// The floor: a bare scan that reads (and detoasts) every images value.
pub const FLOOR: &str = "SELECT sum(jsonb_array_length(venue_images)) FROM venues";

struct Case {
    name: &'static str,
    ours: String,
    baseline: String,
    /// Maximum ours/floor ratio, if the issue sets one.
    floor_target: Option<f64>,
}

fn wrap(sql: &str) -> String {
    format!("SELECT count(*) FROM ({sql}) q")
}

async fn time(pool: &PgPool, sql: &str) -> Result<Duration> {
    let start = Instant::now();
    sqlx::query(sql).fetch_all(pool).await?;
    Ok(start.elapsed())
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Makes sure the venues table holds exactly the generated dataset of `venues` rows.
pub async fn ensure_dataset(url: &str, pool: &PgPool, venues: u64) -> Result<()> {
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('venues') IS NOT NULL")
        .fetch_one(pool)
        .await?;
    let count: i64 = if exists {
        sqlx::query_scalar("SELECT count(*) FROM venues")
            .fetch_one(pool)
            .await?
    } else {
        0
    };
    if count != venues as i64 {
        eprintln!("==> Generating {venues} venues (deterministic)");
        db::seed(
            url,
            &Shape {
                venues,
                ..Shape::default()
            },
            true,
        )
        .await?;
    }
    Ok(())
}

/// Runs the analytics and dedupe benchmark; returns whether every target was met.
pub async fn analytics(url: &str, venues: u64, runs: usize) -> Result<bool> {
    let runs = runs.max(1);
    let pool = db::pool(url, 2).await?;
    ensure_dataset(url, &pool, venues).await?;
    pool.execute(original::SQL_DEDUPE_FUNCTION).await?;
    let info = sqlx::query(
        "SELECT (SELECT sum(jsonb_array_length(venue_images)) FROM venues)::bigint,
                pg_size_pretty(pg_total_relation_size('venues')),
                EXISTS (SELECT 1 FROM pg_indexes WHERE tablename = 'venues' AND indexdef ILIKE '%gin%'),
                current_setting('server_version')",
    )
    .fetch_one(&pool)
    .await?;
    let images: i64 = info.get(0);
    let size: String = info.get(1);
    let gin: bool = info.get(2);
    let version: String = info.get(3);
    println!(
        "dataset: {venues} venues, {images} images, {size} on disk, GIN index: {}; PostgreSQL {version}; median of {runs} runs",
        if gin { "yes" } else { "no" }
    );

    let cases = [
        Case {
            name: "venue_image_failure_breakdown",
            ours: wrap("SELECT * FROM venue_image_failure_breakdown()"),
            baseline: wrap(original::FAILURE_BREAKDOWN),
            floor_target: Some(1.25),
        },
        Case {
            name: "venues_with_image_failures",
            ours: wrap("SELECT * FROM venues_with_image_failures()"),
            baseline: wrap(original::VENUES_WITH_FAILURES),
            floor_target: Some(1.5),
        },
        Case {
            name: "venue_image_partial_failure_candidates",
            ours: wrap("SELECT * FROM venue_image_partial_failure_candidates(1, 100)"),
            baseline: wrap(
                &original::PARTIAL_FAILURE_CANDIDATES
                    .replace("$1", "1")
                    .replace("$2", "100"),
            ),
            floor_target: None,
        },
        Case {
            name: "venue_image_high_priority_venues",
            ours: wrap("SELECT * FROM venue_image_high_priority_venues(50)"),
            baseline: wrap(&original::high_priority_venues().replace("$1", "50")),
            floor_target: None,
        },
        Case {
            name: "venue_image_summary_stats",
            ours: wrap("SELECT * FROM venue_image_summary_stats()"),
            baseline: wrap(&original::summary_stats()),
            floor_target: Some(1.5),
        },
    ];

    // Warm the caches.
    for _ in 0..2 {
        time(&pool, FLOOR).await?;
    }
    let mut floor = Vec::new();
    let mut ours: Vec<Vec<Duration>> = vec![Vec::new(); cases.len()];
    let mut base: Vec<Vec<Duration>> = vec![Vec::new(); cases.len()];
    for round in 0..runs {
        eprint!("\r    analytics round {}/{runs}", round + 1);
        floor.push(time(&pool, FLOOR).await?);
        for (i, c) in cases.iter().enumerate() {
            ours[i].push(time(&pool, &c.ours).await?);
            base[i].push(time(&pool, &c.baseline).await?);
        }
    }
    eprintln!();
    let floor = median(&mut floor);
    let mut ok = true;
    println!();
    println!(
        "floor (SELECT sum(jsonb_array_length(venue_images)) FROM venues): {:.0} ms",
        ms(floor)
    );
    println!();
    println!(
        "{:<40} {:>9} {:>9} {:>8} {:>8} {:>9} {:>7}",
        "function", "ours ms", "orig ms", "ours/fl", "orig/fl", "orig/ours", "target"
    );
    for (i, c) in cases.iter().enumerate() {
        let o = median(&mut ours[i]);
        let b = median(&mut base[i]);
        let rf = ms(o) / ms(floor);
        let verdict = match c.floor_target {
            Some(t) if rf <= t => format!("<={t} ok"),
            Some(t) => {
                ok = false;
                format!("<={t} MISS")
            }
            None => "-".into(),
        };
        println!(
            "{:<40} {:>9.0} {:>9.0} {:>8.2} {:>8.2} {:>9.1} {:>7}",
            c.name,
            ms(o),
            ms(b),
            rf,
            ms(b) / ms(floor),
            ms(b) / ms(o),
            verdict
        );
    }

    // Dedupe over every row.
    let ours_sql = "SELECT sum(jsonb_array_length(venue_images_dedupe(venue_images))) FROM venues";
    let sql_sql =
        "SELECT sum(jsonb_array_length(sql_venue_images_dedupe(venue_images))) FROM venues";
    let check: (i64, i64) =
        sqlx::query_as(&format!("SELECT ({ours_sql})::bigint, ({sql_sql})::bigint"))
            .fetch_one(&pool)
            .await?;
    let dedupe_runs = runs.min(3);
    let (mut o, mut s) = (Vec::new(), Vec::new());
    for round in 0..dedupe_runs {
        eprint!("\r    dedupe round {}/{dedupe_runs}", round + 1);
        o.push(time(&pool, ours_sql).await?);
        s.push(time(&pool, sql_sql).await?);
    }
    eprintln!();
    let (o, s) = (median(&mut o), median(&mut s));
    let speedup = ms(s) / ms(o);
    let verdict = if speedup >= 5.0 { ">=5 ok" } else { ">=5 MISS" };
    ok &= speedup >= 5.0;
    println!();
    println!(
        "venue_images_dedupe over every row: ours {:.0} ms, plain SQL {:.0} ms, speedup {:.1}x (target {verdict}); elements kept: {} vs {}",
        ms(o),
        ms(s),
        speedup,
        check.0,
        check.1
    );
    Ok(ok)
}

/// Latency percentiles of a sample.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Queue benchmark: `images` queued images across `venues` venues, `workers` concurrent
/// workers doing claim → record_success in a loop, no HTTP. Returns images per second.
pub async fn queue(
    url: &str,
    venues: u64,
    images: u64,
    workers: usize,
    batch: i32,
    per_image: bool,
) -> Result<f64> {
    let per_venue = (images / venues.max(1)).max(1);
    let pool = db::pool(url, 4).await?;
    let mut conn = sqlx::PgConnection::connect(url).await?;
    db::migrate(&mut conn).await?;
    eprintln!(
        "==> Preparing {} queued images across {venues} venues",
        venues * per_venue
    );
    conn.execute(
        "TRUNCATE venues; TRUNCATE venue_image_jobs, venue_image_attempts, venue_image_providers",
    )
    .await?;
    conn.execute("SET session_replication_role = replica")
        .await?;
    let mut rng = crate::dataset::Rng::new(42);
    let chunk = 500u64;
    let mut v = 0u64;
    while v < venues {
        let to = (v + chunk).min(venues);
        let mut rows = String::new();
        for id in v + 1..=to {
            let imgs: Vec<String> = (0..per_venue)
                .map(|n| {
                    let provider = *rng.weighted(crate::dataset::PROVIDERS);
                    crate::dataset::image(&mut rng, id, &format!("v{id}"), n, Some("failed"))
                        .as_object()
                        .map(|o| {
                            let mut o = o.clone();
                            o.insert("provider".into(), serde_json::json!(provider));
                            o.insert("retry_count".into(), serde_json::json!(0));
                            o.insert(
                                "error_details".into(),
                                serde_json::json!({"error_type": "rate_limited", "status_code": 429}),
                            );
                            serde_json::Value::Object(o).to_string()
                        })
                        .unwrap_or_default()
                })
                .collect();
            rows.push_str(&format!("{id}\tVenue {id}\tv{id}\t1\t"));
            crate::dataset::copy_escape(&format!("[{}]", imgs.join(",")), &mut rows);
            rows.push('\n');
        }
        let mut copy = conn
            .copy_in_raw("COPY venues (id, name, slug, city_id, venue_images) FROM STDIN")
            .await?;
        copy.send(rows.as_bytes()).await?;
        copy.finish().await?;
        v = to;
    }
    conn.execute("RESET session_replication_role").await?;
    conn.execute("VACUUM ANALYZE venues").await?;
    let scan = std::time::Instant::now();
    sqlx::query("SELECT * FROM venue_image_cleanup_scan()")
        .execute(&mut conn)
        .await?;
    let queued: i64 = sqlx::query_scalar("SELECT count(*) FROM venue_image_jobs")
        .fetch_one(&pool)
        .await?;
    eprintln!(
        "    queued {queued} images with venue_image_cleanup_scan() in {:.1}s",
        scan.elapsed().as_secs_f64()
    );
    for p in [
        "google_places",
        "foursquare",
        "here",
        "unsplash",
        "pexels",
        "*",
    ] {
        sqlx::query("SELECT venue_images.venue_image_set_provider_rate($1, 'Infinity')")
            .bind(p)
            .execute(&pool)
            .await?;
    }
    conn.execute("VACUUM ANALYZE venue_image_jobs").await?;

    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..workers {
        let url = url.to_string();
        tasks.push(tokio::spawn(async move {
            let mut c = sqlx::PgConnection::connect(&url).await?;
            let (mut claims, mut records, mut done) = (Vec::new(), Vec::new(), 0u64);
            loop {
                let t = Instant::now();
                let got: Vec<(i64, String)> = sqlx::query_as(
                    "SELECT job_id, lease_token::text FROM venue_image_claim($1, $2, 60)",
                )
                .bind(format!("bench-{w}"))
                .bind(batch)
                .fetch_all(&mut c)
                .await?;
                claims.push(t.elapsed());
                if got.is_empty() {
                    break;
                }
                if per_image {
                    for (job, token) in got {
                        let t = Instant::now();
                        let ok: bool = sqlx::query_scalar(
                            "SELECT venue_image_record_success($1, $2::uuid, 'https://ik.imagekit.io/b/x.jpg', '/venues/x.jpg', 'fid')",
                        )
                        .bind(job)
                        .bind(token)
                        .fetch_one(&mut c)
                        .await?;
                        records.push(t.elapsed());
                        done += ok as u64;
                    }
                } else {
                    let results: Vec<serde_json::Value> = got
                        .iter()
                        .map(|(job, token)| {
                            serde_json::json!({"job_id": job, "lease_token": token,
                                "url": "https://ik.imagekit.io/b/x.jpg", "imagekit_path": "/venues/x.jpg", "file_id": "fid"})
                        })
                        .collect();
                    let t = Instant::now();
                    let statuses: Vec<String> =
                        sqlx::query_scalar("SELECT status FROM venue_image_record_results($1)")
                            .bind(serde_json::Value::Array(results))
                            .fetch_all(&mut c)
                            .await?;
                    records.push(t.elapsed());
                    done += statuses.iter().filter(|s| *s == "uploaded").count() as u64;
                }
            }
            anyhow::Ok((claims, records, done))
        }));
    }
    let (mut claims, mut records, mut done) = (Vec::new(), Vec::new(), 0u64);
    for t in tasks {
        let (c, r, d) = t.await??;
        claims.extend(c);
        records.extend(r);
        done += d;
    }
    let elapsed = start.elapsed();
    claims.sort();
    records.sort();
    let rate = done as f64 / elapsed.as_secs_f64();
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM venue_image_jobs")
        .fetch_one(&pool)
        .await?;
    println!();
    let how = if per_image {
        "venue_image_record_success per image"
    } else {
        "venue_image_record_results per claimed batch"
    };
    println!(
        "queue ({how}): {done} images recorded by {workers} workers (claim batches of {batch}) in {:.1}s: {rate:.0} images/s (target >= 2000: {})",
        elapsed.as_secs_f64(),
        if rate >= 2000.0 { "ok" } else { "MISS" }
    );
    println!(
        "claim latency p50 {:.1} ms, p99 {:.1} ms (target p99 < 25 ms: {}); record call p50 {:.2} ms, p99 {:.2} ms; {} claims; {left} jobs left",
        ms(percentile(&claims, 0.5)),
        ms(percentile(&claims, 0.99)),
        if percentile(&claims, 0.99) < Duration::from_millis(25) { "ok" } else { "MISS" },
        ms(percentile(&records, 0.5)),
        ms(percentile(&records, 0.99)),
        claims.len()
    );
    Ok(rate)
}
