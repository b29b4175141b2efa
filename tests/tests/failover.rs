//! Restarts and failover, on private clusters (`venue_images_tests::pgctl`): a sidecar
//! (`run`) works through a backlog of images from a slow provider while
//!
//! - (a) its primary restarts (stopped, down for a while, started again), and
//! - (b) its primary dies (`pg_ctl stop -m immediate`) and a synchronous streaming
//!   standby behind the same address (a TCP proxy in this test) is promoted; before the
//!   promotion the proxy already sends the sidecar to the standby, which refuses writes
//!   with 25006 (read-only), a transient error for the sidecar.
//!
//! In both, the sidecar reconnects by itself and finishes: every image uploaded and
//! written back exactly once, none charged for the outage (every image's `retry_count` is
//! the one attempt it took, and the attempt log holds nothing but uploads). The recovery
//! time, from the moment the server accepts connections again (or the standby is
//! promoted) to the first write-back after it, is measured on the server's clock and
//! printed, never asserted.
//!
//! Needs `PG_BIN` (default /usr/lib/postgresql/15/bin) with the extension installed and a
//! built `venue-image-uploader`.

use anyhow::{ensure, Context, Result};
use serde_json::Value;
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection, PgPool};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use venue_images_tests::dataset::FakeRoute;
use venue_images_tests::db::TestDb;
use venue_images_tests::fakes::{FakeImageKit, FakeProvider, ProviderConfig};
use venue_images_tests::pgctl::Cluster;
use venue_images_tests::sidecar::{self, Sidecar};
use venue_images_tests::world::{failed, tempdir};

const IK_KEY: &str = "private_failover_key";
const VENUES: usize = 40;
const PER_VENUE: usize = 6;

/// A database on a private cluster with the extension, a sidecar's login, and the fakes
/// (a provider slow enough that the backlog outlasts the outage).
struct Backlog {
    db: TestDb,
    uploader_url: String,
    ik: FakeImageKit,
    provider: FakeProvider,
    dir: tempdir::Dir,
    venues: Vec<i64>,
}

impl Backlog {
    async fn new(admin_url: &str, tag: &str) -> Result<Backlog> {
        let db = TestDb::on(admin_url, tag).await?;
        db.quick_retries().await?;
        db.unlimited_rates().await?;
        db.providers_healthy().await?;
        let uploader_url = db.login_url("venue_image_uploader").await?;
        let ik = FakeImageKit::with_key(IK_KEY, Duration::from_millis(20)).await?;
        let provider = FakeProvider::start(ProviderConfig {
            latency: Duration::from_millis(150),
            image_kb: 4,
            ..ProviderConfig::default()
        })
        .await?;
        let base = provider.base_url();
        let mut venues = Vec::new();
        for v in 0..VENUES {
            let images: Vec<Value> = (0..PER_VENUE)
                .map(|i| {
                    let (provider, route) = if i == 0 {
                        ("google_places", FakeRoute::GoogleRedirect)
                    } else {
                        (["foursquare", "here", "unsplash"][v % 3], FakeRoute::Image)
                    };
                    failed(&base, provider, route, &format!("f{v}-{i}"), i)
                })
                .collect();
            venues.push(
                sqlx::query_scalar(
                    "INSERT INTO venues (name, slug, venue_images) VALUES ($1, $2, $3) RETURNING id",
                )
                .bind(format!("Failover {v}"))
                .bind(format!("failover-{v}"))
                .bind(Value::Array(images))
                .fetch_one(&db.pool)
                .await?,
            );
        }
        Ok(Backlog {
            db,
            uploader_url,
            ik,
            provider,
            dir: tempdir::Dir::new(tag),
            venues,
        })
    }

    /// `run` as the uploader login, connecting to `database_url`.
    fn sidecar(&self, database_url: &str) -> Result<Sidecar> {
        let args: Vec<String> = [
            "run",
            "--concurrency",
            "8",
            "--poll-ms",
            "500",
            "--writeback-ms",
            "50",
            "--scan-schedule",
            "off",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        Sidecar::spawn(
            &args,
            &sidecar::env(database_url, &self.ik.upload_url(), IK_KEY),
            &self.dir.0.join("sidecar.log"),
        )
    }

    /// Every image uploaded once, written back once, charged one attempt: what the run
    /// gives without any outage.
    async fn assert_nothing_lost_or_charged(&self, pool: &PgPool) -> Result<()> {
        for (v, id) in self.venues.iter().enumerate() {
            let images: Value = sqlx::query_scalar("SELECT venue_images FROM venues WHERE id = $1")
                .bind(id)
                .fetch_one(pool)
                .await?;
            for (i, img) in images.as_array().context("an array")?.iter().enumerate() {
                assert_eq!(
                    img["upload_status"], "uploaded",
                    "venue {v} image {i}: {img}"
                );
                assert_eq!(
                    img["retry_count"], 1,
                    "venue {v} image {i} was charged for the outage: {img}"
                );
                let path = img["imagekit_path"].as_str().context("imagekit_path")?;
                assert_eq!(
                    self.ik.files()[path].bytes,
                    self.provider.image_bytes(&format!("f{v}-{i}"))
                );
            }
        }
        let outcomes: Vec<(String, i64)> = sqlx::query_as(
            "SELECT outcome, count(*) FROM venue_images.venue_image_attempts GROUP BY 1 ORDER BY 1",
        )
        .fetch_all(pool)
        .await?;
        assert_eq!(
            outcomes,
            vec![("uploaded".to_string(), (VENUES * PER_VENUE) as i64)],
            "one attempt per image, each an upload"
        );
        let dup: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM (SELECT venue_id, url_hash FROM venue_images.venue_image_attempts
                                    GROUP BY 1, 2 HAVING count(*) > 1) d",
        )
        .fetch_one(pool)
        .await?;
        assert_eq!(dup, 0, "an image was written back twice");
        let files = self.ik.files();
        assert_eq!(files.len(), VENUES * PER_VENUE);
        assert!(
            files.values().all(|f| f.versions == 1),
            "an image was uploaded twice"
        );
        Ok(())
    }
}

async fn uploaded(pool: &PgPool) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT count(*) FROM venue_images.venue_image_attempts WHERE outcome = 'uploaded'",
    )
    .fetch_one(pool)
    .await?)
}

/// Waits until `n` images are written back (some work is done and more is left).
async fn wait_for_progress(pool: &PgPool, n: i64, up: &Sidecar) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while uploaded(pool).await? < n {
        ensure!(
            Instant::now() < deadline,
            "no progress:\n{}",
            sidecar::tail(&up.log, 20)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// Waits until the queue is empty.
async fn wait_for_drain(pool: &PgPool, up: &Sidecar) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let left: Result<i64, _> =
            sqlx::query_scalar("SELECT count(*) FROM venue_images.venue_image_jobs")
                .fetch_one(pool)
                .await;
        if let Ok(0) = left {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "the queue did not drain ({left:?} left):\n{}",
            sidecar::tail(&up.log, 30)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The server's clock (as text), read as soon as it accepts a connection (polled every
/// 10 ms).
async fn first_accepting(url: &str) -> Result<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(mut c) = PgConnection::connect(url).await {
            let at = sqlx::query_scalar("SELECT clock_timestamp()::text")
                .fetch_one(&mut c)
                .await?;
            c.close().await?;
            return Ok(at);
        }
        ensure!(Instant::now() < deadline, "the server did not come back");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Seconds from `since` (server clock) to the first write-back at or after it.
async fn first_write_back_after(pool: &PgPool, since: &str) -> Result<f64> {
    let s: Option<f64> = sqlx::query_scalar(
        "SELECT extract(epoch FROM min(at) - $1::timestamptz)::float8
           FROM venue_images.venue_image_attempts WHERE at >= $1::timestamptz",
    )
    .bind(since)
    .fetch_one(pool)
    .await?;
    s.context("no write-back after the outage")
}

/// The sidecar's warnings and errors: how many, and the distinct messages with their
/// errors (for the report printed at the end).
fn outage_lines(log: &str) -> String {
    let mut distinct = std::collections::BTreeSet::new();
    let mut n = 0;
    for l in log.lines() {
        let Ok(v) = serde_json::from_str::<Value>(l) else {
            continue;
        };
        if v["level"] != "WARN" && v["level"] != "ERROR" {
            continue;
        }
        n += 1;
        let f = &v["fields"];
        let error = f["error"].as_str().unwrap_or_default();
        distinct.insert(format!(
            "{}: {}",
            f["message"].as_str().unwrap_or_default(),
            error.chars().take(160).collect::<String>()
        ));
    }
    format!(
        "{n} warnings in the sidecar's log:\n  {}",
        distinct.into_iter().collect::<Vec<_>>().join("\n  ")
    )
}

async fn stop(mut up: Sidecar) -> Result<String> {
    up.signal(sidecar::Signal::TERM)?;
    let st = up.wait_for(Duration::from_secs(40)).await?;
    let log = std::fs::read_to_string(&up.log)?;
    ensure!(st.success(), "the sidecar exited with {st}:\n{log}");
    assert!(!log.contains("panicked"), "{log}");
    Ok(log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_primary_restart_mid_run_loses_and_charges_nothing() -> Result<()> {
    let cluster = Cluster::init("failover-restart", &[])?;
    let b = Backlog::new(&cluster.url("postgres", "postgres"), "restart").await?;
    let mut up = b.sidecar(&b.uploader_url)?;
    wait_for_progress(&b.db.pool, 40, &up).await?;
    if let Some(st) = up.try_wait()? {
        anyhow::bail!("the sidecar exited: {st}");
    }

    // Down for two seconds (fast shutdown: sessions are terminated), then back.
    cluster.stop("fast")?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.start()?;
    let back = first_accepting(&b.db.url).await?;
    wait_for_drain(&b.db.pool, &up).await?;
    let recovery = first_write_back_after(&b.db.pool, &back).await?;
    let log = stop(up).await?;
    eprintln!(
        "restart: first write-back {:.0} ms after the server accepted connections again; {}",
        recovery * 1000.0,
        outage_lines(&log)
    );
    b.assert_nothing_lost_or_charged(&b.db.pool).await?;
    assert!(!log.contains(IK_KEY));
    b.db.pool.close().await;
    drop(cluster);
    Ok(())
}

/// A TCP proxy on a free 127.0.0.1 port that forwards each new connection to the port
/// in `to` at that moment: "the same address" in front of a primary and its standby.
async fn switchable_proxy(to: Arc<AtomicU16>) -> Result<u16> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let target = to.load(Ordering::SeqCst);
            tokio::spawn(async move {
                if let Ok(mut out) = tokio::net::TcpStream::connect(("127.0.0.1", target)).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                }
            });
        }
    });
    Ok(port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_promoted_standby_behind_the_same_address_takes_over() -> Result<()> {
    let primary = Cluster::init("failover-primary", &[])?;
    let b = Backlog::new(&primary.url("postgres", "postgres"), "promote").await?;
    let standby = Cluster::standby_of("failover-standby", "127.0.0.1", primary.port, &[])?;
    // Synchronous replication: a write-back the primary acknowledged is on the standby,
    // so that the failover itself loses nothing the sidecar was told is written. (Set
    // after the base backup: the standby, once promoted, has no standby to wait for.)
    let mut c = PgConnection::connect(&primary.url("postgres", "postgres")).await?;
    sqlx::raw_sql("ALTER SYSTEM SET synchronous_standby_names = '*'")
        .execute(&mut c)
        .await?;
    sqlx::raw_sql("SELECT pg_reload_conf()")
        .execute(&mut c)
        .await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let sync: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync' AND state = 'streaming'",
        )
        .fetch_one(&mut c)
        .await?;
        if sync == 1 {
            break;
        }
        ensure!(Instant::now() < deadline, "the standby is not synchronous");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    c.close().await?;

    let target = Arc::new(AtomicU16::new(primary.port));
    let proxy_port = switchable_proxy(target.clone()).await?;
    let mut via_proxy = url::Url::parse(&b.uploader_url)?;
    via_proxy
        .set_port(Some(proxy_port))
        .map_err(|_| anyhow::anyhow!("port"))?;
    let mut up = b.sidecar(via_proxy.as_str())?;
    wait_for_progress(&b.db.pool, 40, &up).await?;
    if let Some(st) = up.try_wait()? {
        anyhow::bail!("the sidecar exited: {st}");
    }

    // The primary dies; the address points at the standby, still read-only for a while
    // (the sidecar's writes get 25006), then it is promoted.
    primary.stop("immediate")?;
    b.db.pool.close().await;
    target.store(standby.port, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    standby.promote()?;
    let mut standby_url = url::Url::parse(&b.db.url)?;
    standby_url
        .set_port(Some(standby.port))
        .map_err(|_| anyhow::anyhow!("port"))?;
    let promoted = first_accepting(standby_url.as_str()).await?;
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect(standby_url.as_str())
        .await?;
    let writable: bool = sqlx::query_scalar("SELECT NOT pg_is_in_recovery()")
        .fetch_one(&pool)
        .await?;
    assert!(writable, "the standby was promoted");
    wait_for_drain(&pool, &up).await?;
    let recovery = first_write_back_after(&pool, &promoted).await?;
    let log = stop(up).await?;
    eprintln!(
        "promotion: first write-back {:.0} ms after the standby was promoted; {}",
        recovery * 1000.0,
        outage_lines(&log)
    );
    b.assert_nothing_lost_or_charged(&pool).await?;
    pool.close().await;
    drop(standby);
    drop(primary);
    Ok(())
}
