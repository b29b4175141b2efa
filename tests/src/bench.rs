//! Benchmarks: every figure is a ratio against a baseline measured in the same run.
//!
//! - Analytics: each function against the floor (`SELECT sum(jsonb_array_length(...))`,
//!   a bare scan that detoasts every value) and against the original's plain SQL.
//! - Dedupe over every row against an equivalent plain-SQL function.
//!
//! Queries are interleaved (one run of each per round) so that caches and background
//! noise affect all of them alike; the median of the rounds is reported.

use crate::dataset::{Kind, Shape};
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

/// A database holding the generated dataset of `kind` with `venues` rows (created,
/// migrated and seeded when missing or of another size; reused otherwise, since seeding
/// 2,000,000 venues takes a while). Returns its URL.
pub async fn dataset_database(admin_url: &str, kind: Kind, venues: u64) -> Result<String> {
    let name = format!("vi_bench_{}_{venues}", kind.as_str());
    let mut admin = sqlx::PgConnection::connect(admin_url).await?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT FROM pg_database WHERE datname = $1)")
            .bind(&name)
            .fetch_one(&mut admin)
            .await?;
    if !exists {
        admin
            .execute(format!("CREATE DATABASE {name}").as_str())
            .await?;
    }
    admin.close().await?;
    let mut u = url::Url::parse(admin_url)?;
    u.set_path(&format!("/{name}"));
    let url = u.to_string();
    let pool = db::pool(&url, 1).await?;
    let table: bool = sqlx::query_scalar("SELECT to_regclass('public.venues') IS NOT NULL")
        .fetch_one(&pool)
        .await?;
    let has: i64 = if table {
        sqlx::query_scalar("SELECT count(*) FROM public.venues")
            .fetch_one(&pool)
            .await?
    } else {
        -1
    };
    pool.close().await;
    if has != venues as i64 {
        eprintln!(
            "==> Generating {venues} venues, {} shape (deterministic)",
            kind.as_str()
        );
        db::seed(
            &url,
            &Shape {
                venues,
                kind,
                ..Shape::default()
            },
            true,
        )
        .await?;
    }
    Ok(url)
}

fn cases() -> Vec<Case> {
    vec![
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
    ]
}

/// Median and range of a sample.
fn stats_of(v: &mut [f64]) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

/// One shape's measurement: per case, the ratios to the floor of each round.
pub struct ShapeRun {
    /// Floor time of each round.
    pub floor_ms: Vec<f64>,
    /// Per case: (ours/floor of each round, original/floor of each round, ours ms).
    pub cases: Vec<(Vec<f64>, Vec<f64>, Vec<f64>)>,
    /// Dataset description.
    pub info: String,
}

/// Measures every analytics function against the floor on the dataset at `url`: each
/// round runs, for every case, the floor, ours and the original's SQL back to back, so
/// that each ratio compares runs a moment apart.
/// With `with_original`, the original's SQL runs in each round too (the growth table leaves
/// it out: it is 2 to 10 times the floor, and only ours/floor is asked for there).
pub async fn measure(url: &str, runs: usize, with_original: bool) -> Result<ShapeRun> {
    let pool = db::pool(url, 2).await?;
    let info = sqlx::query(
        "SELECT count(*)::bigint, (SELECT sum(jsonb_array_length(venue_images)) FROM venues)::bigint,
                pg_size_pretty(pg_table_size('venues')),
                (pg_table_size('venues') / greatest(count(*), 1))::bigint,
                (SELECT avg(length(venue_images::text))::bigint FROM (SELECT venue_images FROM venues LIMIT 2000) s),
                (SELECT count(*) FROM venues v, jsonb_array_elements(v.venue_images) e
                  WHERE e->>'upload_status' IN ('failed', 'permanently_failed'))::bigint,
                current_setting('server_version')
           FROM venues",
    )
    .fetch_one(&pool)
    .await?;
    let (venues, images): (i64, i64) = (info.get(0), info.get(1));
    let failed: i64 = info.get(5);
    let info = format!(
        "{venues} venues, {images} images ({:.1}% failed), {} on disk ({} bytes per row), {} bytes of JSON per venue; PostgreSQL {}",
        100.0 * failed as f64 / images.max(1) as f64,
        info.get::<String, _>(2),
        info.get::<i64, _>(3),
        info.get::<i64, _>(4),
        info.get::<String, _>(6),
    );
    let cases = cases();
    for _ in 0..2 {
        time(&pool, FLOOR).await?;
    }
    let mut run = ShapeRun {
        floor_ms: Vec::new(),
        cases: vec![(Vec::new(), Vec::new(), Vec::new()); cases.len()],
        info,
    };
    for round in 0..runs {
        eprint!("\r    round {}/{runs}", round + 1);
        for (i, c) in cases.iter().enumerate() {
            let f = ms(time(&pool, FLOOR).await?);
            let o = ms(time(&pool, &c.ours).await?);
            let b = if with_original {
                ms(time(&pool, &c.baseline).await?)
            } else {
                f64::NAN
            };
            run.floor_ms.push(f);
            run.cases[i].0.push(o / f);
            run.cases[i].1.push(b / f);
            run.cases[i].2.push(o);
        }
    }
    eprintln!();
    pool.close().await;
    Ok(run)
}

/// Prints one shape's table; returns whether the targets were met.
fn report(kind: Kind, run: &mut ShapeRun) -> bool {
    let mut ok = true;
    let (floor, _, _) = stats_of(&mut run.floor_ms);
    println!();
    println!("shape {}: {}", kind.as_str(), run.info);
    println!(
        "floor (SELECT sum(jsonb_array_length(venue_images)) FROM venues): median {floor:.0} ms"
    );
    println!(
        "{:<40} {:>8} {:>16} {:>8} {:>8} {:>11}",
        "function", "ours ms", "ours/floor", "range", "orig/fl", "target"
    );
    for (c, (r, b, o)) in cases().iter().zip(run.cases.iter_mut()) {
        let (rm, rlo, rhi) = stats_of(r);
        let (bm, _, _) = stats_of(b);
        let (om, _, _) = stats_of(o);
        let verdict = match c.floor_target {
            Some(t) if rm <= t => format!("<={t} ok"),
            Some(t) => {
                ok = false;
                format!("<={t} MISS")
            }
            None => "-".into(),
        };
        println!(
            "{:<40} {:>8.0} {:>16.2} {:>8} {:>8.2} {:>11}",
            c.name,
            om,
            rm,
            format!("{rlo:.2}-{rhi:.2}"),
            bm,
            verdict
        );
    }
    ok
}

/// Runs the analytics benchmark on each shape (median of `runs` interleaved rounds, at
/// least 7) and the dedupe comparison; returns whether every target was met.
pub async fn analytics(admin_url: &str, venues: u64, runs: usize, kinds: &[Kind]) -> Result<bool> {
    let runs = runs.max(7);
    let mut ok = true;
    for &kind in kinds {
        let url = dataset_database(admin_url, kind, venues).await?;
        eprintln!("==> {} shape: {runs} interleaved rounds", kind.as_str());
        let mut run = measure(&url, runs, true).await?;
        ok &= report(kind, &mut run);
        if kind == Kind::Wide {
            ok &= dedupe(&url, runs).await?;
        }
    }
    Ok(ok)
}

/// The growth table: the compact shape at each size, ratios to the floor and the cost
/// per 100,000 venues, so that linear growth shows as a constant.
pub async fn growth(admin_url: &str, sizes: &[u64], runs: usize) -> Result<()> {
    let runs = runs.max(7);
    let mut rows = Vec::new();
    for &venues in sizes {
        let url = dataset_database(admin_url, Kind::Compact, venues).await?;
        eprintln!("==> growth: {venues} venues, {runs} rounds");
        let mut run = measure(&url, runs, false).await?;
        let (floor, _, _) = stats_of(&mut run.floor_ms);
        let per_case: Vec<(f64, f64)> = run
            .cases
            .iter_mut()
            .map(|(r, _, o)| (stats_of(r).0, stats_of(o).0))
            .collect();
        rows.push((venues, floor, per_case));
    }
    println!();
    println!("growth, compact shape: ours/floor (ms per 100,000 venues)");
    print!("{:>10} {:>16}", "venues", "floor");
    for c in cases() {
        print!(
            " {:>22}",
            c.name
                .trim_start_matches("venue_image_")
                .trim_start_matches("venues_")
        );
    }
    println!();
    for (venues, floor, per_case) in &rows {
        let per = |ms: f64| ms / (*venues as f64 / 100_000.0);
        print!(
            "{:>10} {:>16}",
            venues,
            format!("{floor:.0} ms ({:.0})", per(*floor))
        );
        for (ratio, om) in per_case {
            print!(" {:>22}", format!("{ratio:.2} ({:.0})", per(*om)));
        }
        println!();
    }
    Ok(())
}

/// Dedupe over every row, against an equivalent plain-SQL dedupe.
async fn dedupe(url: &str, runs: usize) -> Result<bool> {
    let pool = db::pool(url, 2).await?;
    pool.execute(original::SQL_DEDUPE_FUNCTION).await?;
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
    println!();
    println!(
        "venue_images_dedupe over every row: ours {:.0} ms, plain SQL {:.0} ms, speedup {:.1}x (target {verdict}); elements kept: {} vs {}",
        ms(o),
        ms(s),
        speedup,
        check.0,
        check.1
    );
    Ok(speedup >= 5.0)
}

/// Latency percentiles of a sample.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// What one queue run measured.
#[derive(Debug, Clone, Copy)]
pub struct QueueRun {
    /// Jobs queued when the workers started.
    pub queued: i64,
    /// Images recorded per second.
    pub rate: f64,
    /// Claim latency percentiles.
    pub claim_p50: Duration,
    /// 99th percentile claim latency.
    pub claim_p99: Duration,
}

/// Queue benchmark: `images` queued images across `venues` venues, `workers` concurrent
/// workers doing claim → record in a loop, no HTTP, until `measure` images are recorded
/// (0: all of them).
#[allow(clippy::too_many_arguments)]
pub async fn queue(
    url: &str,
    venues: u64,
    images: u64,
    workers: usize,
    batch: i32,
    per_image: bool,
    measure: u64,
) -> Result<QueueRun> {
    let measure = if measure == 0 { u64::MAX } else { measure };
    let recorded = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
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
        let recorded = recorded.clone();
        tasks.push(tokio::spawn(async move {
            let mut c = sqlx::PgConnection::connect(&url).await?;
            let (mut claims, mut records, mut done) = (Vec::new(), Vec::new(), 0u64);
            while recorded.load(std::sync::atomic::Ordering::Relaxed) < measure {
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
                        recorded.fetch_add(ok as u64, std::sync::atomic::Ordering::Relaxed);
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
                    let ok = statuses.iter().filter(|s| *s == "uploaded").count() as u64;
                    done += ok;
                    recorded.fetch_add(ok, std::sync::atomic::Ordering::Relaxed);
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
        "queue ({how}), {queued} queued: {done} images recorded by {workers} workers (claim batches of {batch}) in {:.1}s: {rate:.0} images/s (target >= 2000: {})",
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
    Ok(QueueRun {
        queued,
        rate,
        claim_p50: percentile(&claims, 0.5),
        claim_p99: percentile(&claims, 0.99),
    })
}

/// The queue at two depths (for example 100,000 and 1,000,000 queued images, ten per
/// venue): the same `measure` images are recorded from each, batched; claim p99 must stay
/// under 25 ms and throughput within 20% of the smaller depth's. Returns whether it did.
pub async fn queue_growth(url: &str, depths: &[u64], workers: usize, measure: u64) -> Result<bool> {
    let mut runs = Vec::new();
    for &images in depths {
        eprintln!("==> queue at {images} queued images");
        let r = queue(url, images / 10, images, workers, 10, false, measure).await?;
        runs.push(r);
    }
    let Some(first) = runs.first().copied() else {
        return Ok(true);
    };
    println!();
    println!(
        "queue growth (batched write-back, the first {measure} images recorded at each depth):"
    );
    println!(
        "{:>10} {:>12} {:>10} {:>14} {:>14} {:>8}",
        "queued", "images/s", "x smallest", "claim p50 ms", "claim p99 ms", "verdict"
    );
    let mut ok = true;
    for r in &runs {
        let ratio = r.rate / first.rate;
        let good = r.claim_p99 < Duration::from_millis(25) && ratio >= 0.8;
        ok &= good;
        println!(
            "{:>10} {:>12.0} {:>10.2} {:>14.1} {:>14.1} {:>8}",
            r.queued,
            r.rate,
            ratio,
            ms(r.claim_p50),
            ms(r.claim_p99),
            if good { "ok" } else { "MISS" }
        );
    }
    println!("(targets: claim p99 < 25 ms; throughput >= 0.80 x the smallest depth's)");
    Ok(ok)
}

/// Peak memory of a backend, read from /proc while `sql` runs on it: the largest
/// private (anonymous) resident size sampled every 5 ms, and the kernel's high-water mark
/// of its whole resident set (shared buffers it touched included).
async fn backend_peak(url: &str, sql: &str) -> Result<(Option<u64>, Option<u64>, Duration)> {
    fn field(status: &str, name: &str) -> Option<u64> {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
    }
    let mut c = sqlx::PgConnection::connect(url).await?;
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut c)
        .await?;
    let path = format!("/proc/{pid}/status");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (stop, path) = (stop.clone(), path.clone());
        std::thread::spawn(move || {
            let mut peak: Option<u64> = None;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if let Some(kb) = std::fs::read_to_string(&path)
                    .ok()
                    .and_then(|s| field(&s, "RssAnon:"))
                {
                    peak = Some(peak.map_or(kb, |p| p.max(kb)));
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            peak
        })
    };
    let start = Instant::now();
    c.execute("BEGIN").await?;
    c.execute(sql).await?;
    let took = start.elapsed();
    let hwm = std::fs::read_to_string(&path)
        .ok()
        .and_then(|s| field(&s, "VmHWM:"));
    c.execute("ROLLBACK").await?;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let anon = sampler.join().unwrap_or(None);
    c.close().await?;
    Ok((anon, hwm, took))
}

/// The cleanup scan over the compact dataset of `venues` venues, in a transaction that is
/// rolled back (the dataset is reused): its backend's peak memory against the floor
/// scan's on a fresh backend of the same database.
pub async fn scan_memory(admin_url: &str, venues: u64) -> Result<()> {
    let url = dataset_database(admin_url, Kind::Compact, venues).await?;
    eprintln!("==> cleanup scan over {venues} venues (rolled back), sampling its backend's memory");
    let kb = |v: Option<u64>| {
        v.map_or("unreadable".to_string(), |k| {
            format!("{:.1} MB", k as f64 / 1024.0)
        })
    };
    let (fa, fh, ft) = backend_peak(&url, FLOOR).await?;
    let (sa, sh, st) = backend_peak(&url, "SELECT * FROM venue_image_cleanup_scan()").await?;
    let pool = db::pool(&url, 1).await?;
    pool.execute("VACUUM venues").await?;
    pool.close().await;
    println!();
    println!("cleanup scan over {venues} venues (compact shape), peak backend memory:");
    println!(
        "  floor scan:    private RSS peak {}, VmHWM {} ({:.1}s)",
        kb(fa),
        kb(fh),
        ft.as_secs_f64()
    );
    println!(
        "  cleanup scan:  private RSS peak {}, VmHWM {} ({:.1}s)",
        kb(sa),
        kb(sh),
        st.as_secs_f64()
    );
    println!(
        "  (VmHWM counts the shared buffers a backend touched; private RSS is its own memory)"
    );
    Ok(())
}
