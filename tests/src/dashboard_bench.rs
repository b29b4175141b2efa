//! The dashboard benchmark: the real `venue-image-uploader dashboard` over a generated
//! dataset (200,000 venues by default), pages timed from the client over loopback.
//!
//! 1. The dataset database (`bench::dataset_database`), its cleanup scan run once (so
//!    the queue holds jobs), and a synthetic month of attempt log when it has none (so
//!    the recovery pages have something to draw).
//! 2. The dashboard, as a `venue_image_reader` login, with `--refresh 600`.
//! 3. The first request to `/`: it waits for the one scan of the venues table (cold).
//! 4. Every page warmed once, then `requests` sequential requests per page: median,
//!    p95 and max, and the page's size. Target: a page served from the warm cache in
//!    under 50 ms (median). A venue's page and a search read the database on every
//!    request (one venue; the names) and are reported apart.

use crate::bench;
use crate::dataset::Kind;
use crate::db;
use crate::sidecar::Sidecar;
use anyhow::{bail, Context, Result};
use std::time::{Duration, Instant};

/// The target for a page served from the warm cache.
pub const TARGET_MS: f64 = 50.0;

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn login(url: &str, role: &str) -> Result<String> {
    let pool = db::pool(url, 1).await?;
    let login = format!("vi_bench_{}", role.trim_start_matches("venue_image_"));
    sqlx::query(&format!(
        "DO $$ BEGIN CREATE ROLE {login} LOGIN IN ROLE {role};
         EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$"
    ))
    .execute(&pool)
    .await?;
    pool.close().await;
    let mut u = url::Url::parse(url)?;
    u.set_username(&login)
        .map_err(|_| anyhow::anyhow!("cannot set the user of the database URL"))?;
    Ok(u.to_string())
}

/// Queues the scan's jobs once, and fills an empty attempt log with a month of synthetic
/// attempts (three per queued image at most, spread over 30 days).
async fn prepare(url: &str) -> Result<(i64, i64)> {
    let pool = db::pool(url, 1).await?;
    let jobs: i64 = sqlx::query_scalar("SELECT count(*) FROM venue_images.venue_image_jobs")
        .fetch_one(&pool)
        .await?;
    if jobs == 0 {
        eprintln!("==> Running the cleanup scan once (queues the transient failures)");
        sqlx::query("SELECT * FROM venue_images.venue_image_cleanup_scan()")
            .execute(&pool)
            .await?;
    }
    let attempts: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM venue_images.venue_image_attempts WHERE outcome <> 'finalized'",
    )
    .fetch_one(&pool)
    .await?;
    if attempts == 0 {
        eprintln!("==> Writing a synthetic month of attempt log");
        sqlx::query(
            "INSERT INTO venue_images.venue_image_attempts
                    (at, job_id, venue_id, provider, provider_url, worker, retried_error_type,
                     retry_count, outcome, error_type, status_code, message)
             SELECT now() - ((j.job_id * 7919 + g * 104729) % (30 * 24 * 60)) * interval '1 minute',
                    j.job_id, j.venue_id, j.provider, j.provider_url, 'bench-uploader',
                    j.error_type, j.retry_count + g,
                    o.outcome,
                    CASE WHEN o.outcome = 'uploaded' THEN NULL ELSE j.error_type END,
                    CASE WHEN o.outcome = 'uploaded' THEN NULL ELSE 503 END,
                    CASE WHEN o.outcome = 'uploaded' THEN NULL ELSE 'download: HTTP 503' END
               FROM venue_images.venue_image_jobs j
              CROSS JOIN generate_series(1, 3) g
              CROSS JOIN LATERAL (SELECT (ARRAY['uploaded', 'uploaded', 'failed', 'permanently_failed'])
                                         [1 + ((j.job_id + g) % 4)::int] AS outcome) o
              WHERE (j.job_id + g) % 3 <> 0",
        )
        .execute(&pool)
        .await?;
    }
    let jobs: i64 = sqlx::query_scalar("SELECT count(*) FROM venue_images.venue_image_jobs")
        .fetch_one(&pool)
        .await?;
    let attempts: i64 =
        sqlx::query_scalar("SELECT count(*) FROM venue_images.venue_image_attempts")
            .fetch_one(&pool)
            .await?;
    pool.close().await;
    Ok((jobs, attempts))
}

struct Timing {
    path: String,
    median: f64,
    p95: f64,
    max: f64,
    kb: f64,
}

async fn time_page(client: &reqwest::Client, base: &str, path: &str, n: usize) -> Result<Timing> {
    let url = format!("{base}{path}");
    let warm = client.get(&url).send().await?;
    if !warm.status().is_success() {
        bail!("{path}: {}", warm.status());
    }
    let size = warm.bytes().await?.len();
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        let r = client.get(&url).send().await?;
        let status = r.status();
        let _ = r.bytes().await?;
        times.push(ms(start.elapsed()));
        if !status.is_success() {
            bail!("{path}: {status}");
        }
    }
    times.sort_by(|a, b| a.total_cmp(b));
    Ok(Timing {
        path: path.to_string(),
        median: times[times.len() / 2],
        p95: times[(times.len() * 95 / 100).min(times.len() - 1)],
        max: times[times.len() - 1],
        kb: size as f64 / 1024.0,
    })
}

/// Runs the benchmark; returns whether every cached page met the target.
pub async fn run(admin_url: &str, venues: u64, kind: Kind, requests: usize) -> Result<bool> {
    let requests = requests.max(5);
    let url = bench::dataset_database(admin_url, kind, venues).await?;
    let (jobs, attempts) = prepare(&url).await?;
    let reader = login(&url, "venue_image_reader").await?;
    let dir = std::env::temp_dir().join(format!("vi-bench-dashboard-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let log = dir.join("dashboard.log");
    let args: Vec<String> = ["dashboard", "--listen", "127.0.0.1:0", "--refresh", "600"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let env = vec![
        ("DATABASE_URL".to_string(), reader),
        ("VENUE_UPLOADER_LOG".into(), "warn".into()),
    ];
    let mut dash = Sidecar::spawn(&args, &env, &log)?;
    let start = Instant::now();
    let base = dash.dashboard_url(Duration::from_secs(30)).await?;
    let client = reqwest::Client::new();

    // Cold: the first page waits for the scan the dashboard started at launch.
    let cold_start = Instant::now();
    let r = client.get(format!("{base}/")).send().await?;
    if !r.status().is_success() {
        bail!("/: {}\n{}", r.status(), r.text().await.unwrap_or_default());
    }
    let _ = r.bytes().await?;
    let cold = ms(cold_start.elapsed());
    let since_launch = ms(start.elapsed());

    let venue: i64 = {
        let html = client
            .get(format!("{base}/venues"))
            .send()
            .await?
            .text()
            .await?;
        let at = html
            .find("data-venue=\"")
            .context("no high-priority venue")?
            + 12;
        html[at..].split('"').next().unwrap_or("1").parse()?
    };
    let cached = [
        "/".to_string(),
        "/failures".into(),
        "/recovery?range=24h".into(),
        "/recovery?range=7d".into(),
        "/recovery?range=30d".into(),
        "/venues".into(),
        "/api/overview".into(),
    ];
    let live = [
        format!("/venues/{venue}"),
        format!("/venues?q={venue}"),
        "/venues?q=Venue%201234".to_string(),
    ];
    println!(
        "dashboard benchmark: {venues} venues ({} shape), {jobs} queued images, {attempts} attempt-log rows; {requests} sequential requests per page over loopback",
        kind.as_str()
    );
    println!(
        "  first page (cold: waits for the one scan of the venues table): {cold:.0} ms ({since_launch:.0} ms after launch)"
    );
    println!(
        "  {:<24} {:>10} {:>10} {:>10} {:>9}",
        "page (warm cache)", "median ms", "p95 ms", "max ms", "size KB"
    );
    let mut ok = true;
    for p in &cached {
        let t = time_page(&client, &base, p, requests).await?;
        let verdict = if t.median < TARGET_MS { "ok" } else { "MISSED" };
        ok &= t.median < TARGET_MS;
        println!(
            "  {:<24} {:>10.2} {:>10.2} {:>10.2} {:>9.1}  {verdict} (< {TARGET_MS} ms)",
            t.path, t.median, t.p95, t.max, t.kb
        );
    }
    println!(
        "  {:<24} (read from the database on every request)",
        "live pages"
    );
    for p in &live {
        let t = time_page(&client, &base, p, requests).await?;
        println!(
            "  {:<24} {:>10.2} {:>10.2} {:>10.2} {:>9.1}",
            t.path, t.median, t.p95, t.max, t.kb
        );
    }
    // A venue nobody searched for, opened by its URL: the first view looks its name up
    // (a scan of the venues table's names); the next ones do not.
    let stranger = venues / 2 + 7;
    let first = Instant::now();
    let r = client
        .get(format!("{base}/venues/{stranger}"))
        .send()
        .await?;
    let _ = r.bytes().await?;
    println!(
        "  /venues/{stranger} opened by URL, first view (name looked up): {:.0} ms",
        ms(first.elapsed())
    );
    let _ = dash.kill();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(ok)
}
