//! Benchmarks: every figure is a ratio against a baseline measured in the same run.
//!
//! - Analytics: each function against the floor (`SELECT sum(jsonb_array_length(...))`,
//!   a bare scan that detoasts every value) and against the original's plain SQL.
//! - Dedupe over every row against an equivalent plain-SQL function.
//!
//! Queries are interleaved (one run of each per round) so that caches and background
//! noise affect all of them alike; the median of the rounds is reported.

use crate::dataset::{Compression, Kind, Shape};
use crate::{db, original};
use anyhow::Result;
use sqlx::{Connection, Executor, PgPool, Row};
use std::time::{Duration, Instant};

/// The floor: a bare scan that reads (and detoasts) every images value.
pub const FLOOR: &str = "SELECT sum(jsonb_array_length(venue_images)) FROM venues";

/// The floor a case's ratio is taken against, run back to back with it in each round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Floor {
    /// [`FLOOR`], counted in the server as the case's rows are (`SELECT count(*) FROM
    /// (...)`).
    Scan,
    /// [`ROWS_FLOOR`], its rows fetched by the client as the case's are.
    Rows,
}

impl Floor {
    fn sql(self) -> &'static str {
        match self {
            Floor::Scan => FLOOR,
            Floor::Rows => ROWS_FLOOR,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Floor::Scan => "scan",
            Floor::Rows => "rows",
        }
    }
}

struct Case {
    name: &'static str,
    ours: String,
    baseline: String,
    floor: Floor,
    /// Maximum ours/floor ratio, if the issue sets one.
    target: Option<f64>,
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

/// A database holding the generated dataset of `kind` with `venues` rows, its images
/// compressed with pglz (see [`dataset_database_with`]). Returns its URL.
pub async fn dataset_database(admin_url: &str, kind: Kind, venues: u64) -> Result<String> {
    dataset_database_with(admin_url, kind, Compression::Pglz, venues).await
}

/// A database holding the generated dataset of `kind` with `venues` rows, its images
/// compressed with `compression` (created, migrated and seeded when missing, of another
/// size or stored with another compression; reused otherwise, since seeding 2,000,000
/// venues takes a while). Named `vi_bench_<shape>_<venues>` for pglz and
/// `vi_bench_<shape>_<venues>_lz4` for lz4. Returns its URL.
pub async fn dataset_database_with(
    admin_url: &str,
    kind: Kind,
    compression: Compression,
    venues: u64,
) -> Result<String> {
    let name = match compression {
        Compression::Pglz => format!("vi_bench_{}_{venues}", kind.as_str()),
        Compression::Lz4 => format!("vi_bench_{}_{venues}_lz4", kind.as_str()),
    };
    let mut admin = sqlx::PgConnection::connect(admin_url).await?;
    let offered: bool = sqlx::query_scalar(
        "SELECT $1 = ANY (enumvals) FROM pg_settings WHERE name = 'default_toast_compression'",
    )
    .bind(compression.as_str())
    .fetch_one(&mut admin)
    .await?;
    if !offered {
        anyhow::bail!(
            "this PostgreSQL server was built without {} (the PostgreSQL 18 wheel has pglz only)",
            compression.as_str()
        );
    }
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
    // Every session on the database (the seeding one included) stores new values with
    // this compression; the column itself keeps the application's default.
    admin
        .execute(
            format!(
                "ALTER DATABASE {name} SET default_toast_compression = {}",
                compression.as_str()
            )
            .as_str(),
        )
        .await?;
    admin.close().await?;
    let mut u = url::Url::parse(admin_url)?;
    u.set_path(&format!("/{name}"));
    let url = u.to_string();
    let pool = db::pool(&url, 1).await?;
    let table: bool = sqlx::query_scalar("SELECT to_regclass('public.venues') IS NOT NULL")
        .fetch_one(&pool)
        .await?;
    let (has, stored): (i64, Option<String>) = if table {
        sqlx::query_as(
            "SELECT (SELECT count(*) FROM public.venues),
                    (SELECT pg_column_compression(venue_images) FROM public.venues
                      WHERE pg_column_compression(venue_images) IS NOT NULL LIMIT 1)",
        )
        .fetch_one(&pool)
        .await?
    } else {
        (-1, None)
    };
    pool.close().await;
    let seed = has != venues as i64 || stored.as_deref().is_some_and(|s| s != compression.as_str());
    if seed {
        eprintln!(
            "==> Generating {venues} venues, {} shape, {} compression (deterministic)",
            kind.as_str(),
            compression.as_str()
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
    let pool = db::pool(&url, 1).await?;
    let listed: bool =
        sqlx::query_scalar("SELECT to_regclass('public.bench_failing_venues') IS NOT NULL")
            .fetch_one(&pool)
            .await?;
    if seed || !listed {
        // The venues with failed images, by the original's own test (for the rows floor).
        pool.execute(ROWS_FLOOR_TABLE).await?;
    }
    pool.execute(ROWS_FLOOR_FUNCTION).await?;
    pool.close().await;
    Ok(url)
}

/// The ids of the venues with failed images, kept beside the dataset for [`ROWS_FLOOR`].
const ROWS_FLOOR_TABLE: &str = r#"
DROP TABLE IF EXISTS public.bench_failing_venues;
CREATE TABLE public.bench_failing_venues AS
  SELECT v.id FROM venues v
   WHERE EXISTS (SELECT 1 FROM jsonb_array_elements(v.venue_images) img
                  WHERE img->>'upload_status' IN ('failed', 'permanently_failed'));
ALTER TABLE public.bench_failing_venues ADD PRIMARY KEY (id);
ANALYZE public.bench_failing_venues"#;

/// `jsonb_array_length` itself (the same C function), declared as costly as our
/// aggregates' transition functions (`COST 100`): with the built-in's cost of 1 the planner
/// sees no gain in reading the table with parallel workers when 130,000 rows must come
/// back through the Gather, and [`ROWS_FLOOR`] ran serially, at twice the time of a
/// parallel scan.
const ROWS_FLOOR_FUNCTION: &str = "CREATE OR REPLACE FUNCTION public.bench_array_length(jsonb)
  RETURNS integer LANGUAGE internal IMMUTABLE STRICT PARALLEL SAFE COST 100
  AS 'jsonb_array_length'";

/// The floor of a function that returns one row per venue with failed images: the bare
/// scan (every images value detoasted once, by the filter on `venues`, in parallel),
/// returning the same venues' rows (id, name, city, a number) to the client. The venues
/// are found by a join with the ids of [`ROWS_FLOOR_TABLE`] (a parallel hash join on
/// the ids); `pg_column_size` reads the stored value's header without detoasting it again.
pub const ROWS_FLOOR: &str = "SELECT v.id, v.name::text, v.city_id, pg_column_size(v.venue_images)
   FROM venues v JOIN bench_failing_venues f ON f.id = v.id
  WHERE bench_array_length(v.venue_images) IS NOT NULL";

/// The cases: each function against [`FLOOR`], and `venues_with_image_failures` once more
/// with its rows fetched by the client, against [`ROWS_FLOOR`]. Targets are issue 17's
/// (set for lz4, the cheaper floor, and applied to every combination).
fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "venue_image_failure_breakdown",
            ours: wrap("SELECT * FROM venue_image_failure_breakdown()"),
            baseline: wrap(original::FAILURE_BREAKDOWN),
            floor: Floor::Scan,
            target: Some(1.10),
        },
        Case {
            name: "venues_with_image_failures",
            ours: wrap("SELECT * FROM venues_with_image_failures()"),
            baseline: wrap(original::VENUES_WITH_FAILURES),
            floor: Floor::Scan,
            target: Some(1.30),
        },
        Case {
            name: "venues_with_image_failures (rows)",
            ours: "SELECT * FROM venues_with_image_failures()".into(),
            baseline: original::VENUES_WITH_FAILURES.into(),
            floor: Floor::Rows,
            target: Some(1.30),
        },
        Case {
            name: "venue_image_partial_failure_candidates",
            ours: wrap("SELECT * FROM venue_image_partial_failure_candidates(1, 100)"),
            baseline: wrap(
                &original::PARTIAL_FAILURE_CANDIDATES
                    .replace("$1", "1")
                    .replace("$2", "100"),
            ),
            floor: Floor::Scan,
            target: None,
        },
        Case {
            name: "venue_image_high_priority_venues",
            ours: wrap("SELECT * FROM venue_image_high_priority_venues(50)"),
            baseline: wrap(&original::high_priority_venues().replace("$1", "50")),
            floor: Floor::Scan,
            target: None,
        },
        Case {
            name: "venue_image_summary_stats",
            ours: wrap("SELECT * FROM venue_image_summary_stats()"),
            baseline: wrap(&original::summary_stats()),
            floor: Floor::Scan,
            target: Some(1.10),
        },
    ]
}

/// Median and range of a sample.
fn stats_of(v: &mut [f64]) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

/// One case's rounds.
#[derive(Clone, Default)]
pub struct CaseRun {
    /// Its floor's time in each round, ms.
    pub floor_ms: Vec<f64>,
    /// ours / floor, each round.
    pub ours: Vec<f64>,
    /// The original's SQL / floor, each round (NaN when not run).
    pub original: Vec<f64>,
    /// Ours, ms, each round.
    pub ours_ms: Vec<f64>,
}

/// One dataset's measurement.
pub struct ShapeRun {
    /// Per case (in the order of `cases()`).
    pub cases: Vec<CaseRun>,
    /// Dataset description.
    pub info: String,
}

/// Measures every analytics function against its floor on the dataset at `url`: each
/// round runs, for every case, its floor, ours and the original's SQL back to back, so
/// that each ratio compares runs a moment apart.
/// With `with_original`, the original's SQL runs in each round too (the growth table leaves
/// it out: it is 2 to 10 times the floor, and only ours/floor is asked for there).
/// With `rows`, the cases against [`ROWS_FLOOR`] run too.
pub async fn measure(url: &str, runs: usize, with_original: bool, rows: bool) -> Result<ShapeRun> {
    let pool = db::pool(url, 2).await?;
    let info = sqlx::query(
        "SELECT count(*)::bigint, (SELECT sum(jsonb_array_length(venue_images)) FROM venues)::bigint,
                pg_size_pretty(pg_table_size('venues')),
                (pg_table_size('venues') / greatest(count(*), 1))::bigint,
                (SELECT avg(length(venue_images::text))::bigint FROM (SELECT venue_images FROM venues LIMIT 2000) s),
                (SELECT count(*) FROM venues v, jsonb_array_elements(v.venue_images) e
                  WHERE e->>'upload_status' IN ('failed', 'permanently_failed'))::bigint,
                current_setting('server_version'),
                (SELECT string_agg(m || ' ' || n, ', ' ORDER BY n DESC) FROM
                   (SELECT coalesce(pg_column_compression(venue_images), 'uncompressed') m, count(*) n
                      FROM (SELECT venue_images FROM venues LIMIT 2000) s GROUP BY 1) c),
                (SELECT count(*) FROM bench_failing_venues)::bigint
           FROM venues",
    )
    .fetch_one(&pool)
    .await?;
    let (venues, images): (i64, i64) = (info.get(0), info.get(1));
    let failed: i64 = info.get(5);
    let info = format!(
        "{venues} venues ({} with failures), {images} images ({:.1}% failed), {} on disk ({} bytes per row), {} bytes of JSON per venue, values stored: {} (of the first 2000); PostgreSQL {}",
        info.get::<i64, _>(8),
        100.0 * failed as f64 / images.max(1) as f64,
        info.get::<String, _>(2),
        info.get::<i64, _>(3),
        info.get::<i64, _>(4),
        info.get::<String, _>(7),
        info.get::<String, _>(6),
    );
    let cases = cases();
    for _ in 0..2 {
        time(&pool, FLOOR).await?;
    }
    if rows {
        time(&pool, ROWS_FLOOR).await?;
    }
    let mut run = ShapeRun {
        cases: vec![CaseRun::default(); cases.len()],
        info,
    };
    for round in 0..runs {
        eprint!("\r    round {}/{runs}", round + 1);
        for (c, r) in cases.iter().zip(run.cases.iter_mut()) {
            if c.floor == Floor::Rows && !rows {
                continue;
            }
            let f = ms(time(&pool, c.floor.sql()).await?);
            let o = ms(time(&pool, &c.ours).await?);
            let b = if with_original {
                ms(time(&pool, &c.baseline).await?)
            } else {
                f64::NAN
            };
            r.floor_ms.push(f);
            r.ours.push(o / f);
            r.original.push(b / f);
            r.ours_ms.push(o);
        }
    }
    eprintln!();
    pool.close().await;
    Ok(run)
}

/// One line of the results: a function on one dataset.
pub struct Line {
    /// Shape of data.
    pub kind: Kind,
    /// Compression of the images column.
    pub compression: Compression,
    /// Function (and how its rows are counted).
    pub name: &'static str,
    /// Its floor: `scan` or `rows`.
    pub floor: &'static str,
    /// Median floor time, ms.
    pub floor_ms: f64,
    /// Median time, ms.
    pub ours_ms: f64,
    /// Median ours/floor, and the range of the rounds.
    pub ratio: (f64, f64, f64),
    /// Median original/floor.
    pub original: f64,
    /// The target, if any.
    pub target: Option<f64>,
}

impl Line {
    fn verdict(&self) -> String {
        match self.target {
            Some(t) if self.ratio.0 <= t => format!("<={t:.2} ok"),
            Some(t) => format!("<={t:.2} MISS"),
            None => "-".into(),
        }
    }

    fn met(&self) -> bool {
        self.target.is_none_or(|t| self.ratio.0 <= t)
    }
}

/// The lines of one dataset's run.
fn lines(kind: Kind, compression: Compression, run: &mut ShapeRun) -> Vec<Line> {
    cases()
        .iter()
        .zip(run.cases.iter_mut())
        .filter(|(_, r)| !r.ours.is_empty())
        .map(|(c, r)| Line {
            kind,
            compression,
            name: c.name,
            floor: c.floor.as_str(),
            floor_ms: stats_of(&mut r.floor_ms).0,
            ours_ms: stats_of(&mut r.ours_ms).0,
            ratio: stats_of(&mut r.ours),
            original: stats_of(&mut r.original).0,
            target: c.target,
        })
        .collect()
}

/// Prints result lines as one table.
fn print_lines(lines: &[Line]) {
    println!(
        "{:<8} {:<5} {:<40} {:>5} {:>9} {:>8} {:>10} {:>11} {:>8} {:>10}",
        "shape",
        "comp",
        "function",
        "floor",
        "floor ms",
        "ours ms",
        "ours/floor",
        "range",
        "orig/fl",
        "target"
    );
    for l in lines {
        println!(
            "{:<8} {:<5} {:<40} {:>5} {:>9.0} {:>8.0} {:>10.2} {:>11} {:>8.2} {:>10}",
            l.kind.as_str(),
            l.compression.as_str(),
            l.name,
            l.floor,
            l.floor_ms,
            l.ours_ms,
            l.ratio.0,
            format!("{:.2}-{:.2}", l.ratio.1, l.ratio.2),
            l.original,
            l.verdict()
        );
    }
}

/// Runs the analytics benchmark on each shape with each compression (median of `runs`
/// interleaved rounds, at least 7) and the dedupe comparison (on the wide shape, with the
/// first compression); prints each dataset's table as it is measured, then every
/// combination in one table. Returns whether every target was met.
pub async fn analytics(
    admin_url: &str,
    venues: u64,
    runs: usize,
    kinds: &[Kind],
    compressions: &[Compression],
) -> Result<bool> {
    let runs = runs.max(7);
    let mut ok = true;
    let mut all = Vec::new();
    for &kind in kinds {
        for (n, &compression) in compressions.iter().enumerate() {
            let url = dataset_database_with(admin_url, kind, compression, venues).await?;
            eprintln!(
                "==> {} shape, {}: {runs} interleaved rounds",
                kind.as_str(),
                compression.as_str()
            );
            let mut run = measure(&url, runs, true, true).await?;
            let ls = lines(kind, compression, &mut run);
            println!();
            println!(
                "shape {}, {} compression: {}",
                kind.as_str(),
                compression.as_str(),
                run.info
            );
            println!("floors: scan = {FLOOR} (counted in the server);");
            println!("        rows = the same scan returning the rows of the venues with failures to the client");
            print_lines(&ls);
            ok &= ls.iter().all(Line::met);
            all.extend(ls);
            if kind == Kind::Wide && n == 0 {
                ok &= dedupe(&url, runs).await?;
            }
        }
    }
    if all.len() > cases().len() {
        println!();
        println!("every combination (median of {runs} interleaved rounds):");
        print_lines(&all);
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
        let mut run = measure(&url, runs, false, false).await?;
        let ls = lines(Kind::Compact, Compression::Pglz, &mut run);
        rows.push((venues, ls));
    }
    println!();
    println!("growth, compact shape: ours/floor (ms per 100,000 venues)");
    print!("{:>10} {:>16}", "venues", "floor");
    for c in cases().iter().filter(|c| c.floor == Floor::Scan) {
        print!(
            " {:>22}",
            c.name
                .trim_start_matches("venue_image_")
                .trim_start_matches("venues_")
        );
    }
    println!();
    for (venues, ls) in &rows {
        let per = |ms: f64| ms / (*venues as f64 / 100_000.0);
        let floor = ls.first().map_or(f64::NAN, |l| l.floor_ms);
        print!(
            "{:>10} {:>16}",
            venues,
            format!("{floor:.0} ms ({:.0})", per(floor))
        );
        for l in ls {
            print!(
                " {:>22}",
                format!("{:.2} ({:.0})", l.ratio.0, per(l.ours_ms))
            );
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
