//! The uploader benchmark: the real binary against the fakes (50 ms latency on each,
//! 1 MB images), over a real PostgreSQL with the extension.
//!
//! For each scenario it reports throughput against its bound, measured in the same run:
//! `min(Σ provider rates, concurrency ÷ per-image latency)`, where an image costs one
//! download and one upload, so its latency is twice the fakes' latency. It also checks at
//! the fake that no provider ever exceeded its rate in any 1-second window, and reads
//! the uploader's CPU time and peak RSS from `/proc`.
//!
//! Two ratios are judged: paced, throughput against the providers' rates (>= 0.95);
//! unpaced, throughput against `concurrency ÷ the per-image HTTP time the uploader
//! measured` (>= 0.97), which leaves out the cost of moving 1 MB each way over loopback on
//! shared cores and so isolates the uploader's own overhead.

use crate::db::TestDb;
use crate::fakes::{provider, FakeImageKit, FakeProvider, ImageKitConfig, ProviderConfig};
use crate::sidecar::{self, Sidecar};
use anyhow::{ensure, Result};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const PROVIDERS: [&str; 4] = ["foursquare", "here", "unsplash", "pexels"];

/// One benchmark run.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Label.
    pub name: &'static str,
    /// Images to recover (spread evenly over four providers).
    pub images: usize,
    /// Image size.
    pub image_kb: usize,
    /// Uploader concurrency.
    pub concurrency: usize,
    /// Each provider's rate (`None`: unlimited).
    pub rate: Option<f64>,
    /// Latency of each fake.
    pub latency: Duration,
}

/// What a run measured.
#[derive(Debug, Clone)]
pub struct Measured {
    /// Images per second, first download to last write-back.
    pub throughput: f64,
    /// The bound.
    pub bound: f64,
    /// Busiest 1-second window per provider.
    pub busiest: Vec<(String, usize)>,
    /// Uploader CPU per image.
    pub cpu_per_image: Duration,
    /// Uploader peak RSS, bytes.
    pub peak_rss: u64,
    /// Mean download and upload time the uploader measured (its metrics).
    pub mean_download: Duration,
    /// See `mean_download`.
    pub mean_upload: Duration,
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The mean of a Prometheus histogram in a scrape (`<name>_sum / <name>_count`).
fn histogram_mean(scrape: &str, name: &str) -> Duration {
    let value = |suffix: &str| -> f64 {
        scrape
            .lines()
            .filter(|l| l.starts_with(&format!("{name}{suffix}")))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    let count = value("_count");
    if count == 0.0 {
        return Duration::ZERO;
    }
    Duration::from_secs_f64(value("_sum") / count)
}

/// The three scenarios of docs/development.md's benchmark section.
pub fn scenarios(scale: f64, latency: Duration) -> Vec<Scenario> {
    let n = |x: f64| ((x * scale) as usize).max(40);
    vec![
        Scenario {
            name: "paced: 4 providers at 20/s, concurrency 16, 1 MB",
            images: n(1600.0),
            image_kb: 1024,
            concurrency: 16,
            rate: Some(20.0),
            latency,
        },
        Scenario {
            name: "unpaced: concurrency 16, 1 MB",
            images: n(2400.0),
            image_kb: 1024,
            concurrency: 16,
            rate: None,
            latency,
        },
        Scenario {
            name: "memory: concurrency 16, 5 MB",
            images: n(480.0),
            image_kb: 5 * 1024,
            concurrency: 16,
            rate: None,
            latency,
        },
    ]
}

async fn seed(t: &TestDb, base: &str, images: usize) -> Result<()> {
    let per_venue = 10;
    let venues = images.div_ceil(per_venue);
    let mut batch: Vec<(String, Value)> = vec![];
    let mut made = 0;
    for v in 0..venues {
        let imgs: Vec<Value> = (0..per_venue.min(images - made))
            .map(|i| {
                let p = PROVIDERS[(v * per_venue + i) % PROVIDERS.len()];
                let url = format!("{base}/{p}/img/b{v}-{i}.png");
                json!({"provider": p, "provider_url": url, "url": url, "upload_status": "failed",
                       "retry_count": 0, "error_details": {"error_type": "network_timeout"}})
            })
            .collect();
        made += imgs.len();
        batch.push((format!("bench-{v}"), Value::Array(imgs)));
        if batch.len() == 200 || v + 1 == venues {
            let (slugs, arrays): (Vec<String>, Vec<Value>) =
                std::mem::take(&mut batch).into_iter().unzip();
            sqlx::query(
                "INSERT INTO venues (name, slug, venue_images)
                 SELECT s, s, a FROM unnest($1::text[], $2::jsonb[]) AS u(s, a)",
            )
            .bind(&slugs)
            .bind(&arrays)
            .execute(&t.pool)
            .await?;
        }
    }
    let queued: i64 = sqlx::query_scalar("SELECT count(*) FROM venue_image_jobs")
        .fetch_one(&t.pool)
        .await?;
    ensure!(queued as usize == images, "queued {queued} of {images}");
    Ok(())
}

/// Runs one scenario.
pub async fn run(admin_url: &str, s: &Scenario) -> Result<Measured> {
    let t = TestDb::on(admin_url, "bench_uploader").await?;
    let ik = FakeImageKit::start(ImageKitConfig {
        latency: s.latency,
        keep_bytes: false,
        max_file_bytes: 25 * 1024 * 1024,
        ..ImageKitConfig::default()
    })
    .await?;
    let p = FakeProvider::start(ProviderConfig {
        image_kb: s.image_kb,
        latency: s.latency,
        ..ProviderConfig::default()
    })
    .await?;
    seed(&t, &p.base_url(), s.images).await?;

    // The operator sets the shared rates (the sidecar's role may not).
    let rate = s.rate.unwrap_or(f64::INFINITY);
    for p in PROVIDERS.iter().chain(std::iter::once(&"*")) {
        sqlx::query("SELECT venue_images.venue_image_set_provider_rate($1, $2)")
            .bind(*p)
            .bind(rate)
            .execute(&t.pool)
            .await?;
    }
    let mut env = sidecar::env(
        &t.login_url("venue_image_uploader").await?,
        &ik.upload_url(),
        ik.private_key(),
    );
    env.retain(|(k, _)| k != "VENUE_UPLOADER_LOG");
    env.push(("VENUE_UPLOADER_LOG".into(), "warn".into()));
    let metrics_addr = format!("127.0.0.1:{}", free_port()?);
    env.push(("VENUE_UPLOADER_METRICS_ADDR".into(), metrics_addr.clone()));
    let log = std::env::temp_dir().join(format!("vi-bench-uploader-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&log);
    let args: Vec<String> = [
        "run",
        "--concurrency",
        &s.concurrency.to_string(),
        "--poll-ms",
        "500",
    ]
    .iter()
    .map(|a| a.to_string())
    .collect();
    let mut up = Sidecar::spawn(&args, &env, &log)?;

    let deadline = Instant::now() + Duration::from_secs(600);
    let done_at = loop {
        let left: i64 = sqlx::query_scalar("SELECT count(*) FROM venue_image_jobs")
            .fetch_one(&t.pool)
            .await?;
        if left == 0 {
            break Instant::now();
        }
        ensure!(
            up.try_wait()?.is_none(),
            "the uploader exited:\n{}",
            sidecar::tail(&log, 30)
        );
        ensure!(
            Instant::now() < deadline,
            "not done after 10 minutes ({left} left)"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let (cpu, peak_rss) = up.usage().unwrap_or_default();
    let scrape = reqwest::get(format!("http://{metrics_addr}/metrics"))
        .await?
        .text()
        .await?;
    up.signal(sidecar::Signal::TERM)?;
    up.wait_for(Duration::from_secs(30)).await?;

    let uploaded: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM venues, jsonb_array_elements(venue_images) e WHERE e->>'upload_status' = 'uploaded'",
    )
    .fetch_one(&t.pool)
    .await?;
    ensure!(
        uploaded as usize == s.images,
        "only {uploaded} of {} uploaded:\n{}",
        s.images,
        sidecar::tail(&log, 30)
    );
    let hits = p.hits();
    let first = hits.iter().map(|h| h.at).min().expect("no provider hit");
    let elapsed = done_at.duration_since(first).as_secs_f64();
    let per_image_latency = 2.0 * s.latency.as_secs_f64();
    let by_concurrency = s.concurrency as f64 / per_image_latency;
    let by_rates = s
        .rate
        .map(|r| r * PROVIDERS.len() as f64)
        .unwrap_or(f64::INFINITY);
    let busiest = PROVIDERS
        .iter()
        .map(|name| {
            (
                name.to_string(),
                provider::max_in_window(&hits, name, Duration::from_secs(1)),
            )
        })
        .collect();
    let _ = std::fs::remove_file(&log);
    t.drop().await?;
    Ok(Measured {
        throughput: s.images as f64 / elapsed,
        bound: by_concurrency.min(by_rates),
        busiest,
        cpu_per_image: cpu / s.images as u32,
        peak_rss,
        mean_download: histogram_mean(&scrape, "venue_image_uploader_download_seconds"),
        mean_upload: histogram_mean(&scrape, "venue_image_uploader_upload_seconds"),
    })
}

/// Runs every scenario, prints the figures; returns whether every target was met.
pub async fn all(admin_url: &str, scale: f64, latency: Duration) -> Result<bool> {
    let mut ok = true;
    println!(
        "uploader benchmark: fakes with {} ms latency each (an image = one download + one upload)",
        latency.as_millis()
    );
    for s in scenarios(scale, latency) {
        eprintln!("==> {} ({} images)", s.name, s.images);
        let m = run(admin_url, &s).await?;
        let ratio = m.throughput / m.bound;
        // The bound from the HTTP time the uploader measured itself (download + upload per
        // image), capped by the providers' rates: what is left is the uploader's own cost.
        let measured = (m.mean_download + m.mean_upload).as_secs_f64();
        let by_http = if measured > 0.0 {
            (s.concurrency as f64 / measured)
                .min(s.rate.map_or(f64::INFINITY, |r| r * PROVIDERS.len() as f64))
        } else {
            f64::INFINITY
        };
        let http_ratio = m.throughput / by_http;
        let pacing_ok = s
            .rate
            .is_none_or(|r| m.busiest.iter().all(|(_, n)| *n as f64 <= r));
        // The throughput and CPU targets are for 1 MB images; the RSS target for 5 MB.
        // Paced: against the providers' rates (>= 0.95). Unpaced: against the bound from
        // the measured HTTP time (>= 0.97); the nominal `concurrency / 100 ms` ignores
        // moving 1 MB each way on two shared cores, so it is printed but not judged.
        let sized = s.image_kb <= 1024;
        let paced = s.rate.is_some();
        let cpu_ok = !sized || m.cpu_per_image <= Duration::from_millis(2);
        let rss_ok = sized || m.peak_rss <= 150 * 1024 * 1024;
        let rate_ok = !(sized && paced) || ratio >= 0.95;
        let http_ok = !sized || paced || http_ratio >= 0.97;
        ok &= pacing_ok && cpu_ok && rss_ok && rate_ok && http_ok;
        let mark = |b: bool| if b { "ok" } else { "MISSED" };
        let target = |t: &str, judged: bool, b: bool| {
            if judged {
                format!("(target {t}) {}", mark(b))
            } else {
                String::new()
            }
        };
        println!("{}", s.name);
        println!(
            "  throughput      {:>8.1} images/s   {} bound {:>6.1}/s   ratio {:.3}  {}",
            m.throughput,
            if paced { "rate" } else { "nominal" },
            m.bound,
            ratio,
            target(">= 0.95", sized && paced, rate_ok)
        );
        if let Some(r) = s.rate {
            let busiest: Vec<String> = m.busiest.iter().map(|(p, n)| format!("{p} {n}")).collect();
            println!(
                "  busiest second  {}   (rate {r}/s each) {}",
                busiest.join(", "),
                mark(pacing_ok)
            );
        }
        println!(
            "  per image       download {:.1} ms + upload {:.1} ms (the uploader's metrics)",
            m.mean_download.as_secs_f64() * 1000.0,
            m.mean_upload.as_secs_f64() * 1000.0
        );
        if by_http.is_finite() {
            println!(
                "  vs HTTP time    bound {:>6.1}/s from the measured per-image time; ratio {:.3}  {}",
                by_http,
                http_ratio,
                target(">= 0.97", sized && !paced, http_ok)
            );
        }
        println!(
            "  cpu per image   {:>8.3} ms   {}",
            m.cpu_per_image.as_secs_f64() * 1000.0,
            target("<= 2 ms", sized, cpu_ok)
        );
        println!(
            "  peak RSS        {:>8.1} MB{}",
            m.peak_rss as f64 / 1048576.0,
            if !sized {
                format!("   (target <= 150 MB) {}", mark(rss_ok))
            } else {
                String::new()
            }
        );
    }
    Ok(ok)
}
