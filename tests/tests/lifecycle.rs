//! The retry lifecycle end to end (issue 8), with the real uploader binary, a real
//! PostgreSQL and the fakes: outages are not charged to images, ambiguous failures are
//! left for review, copies of one image are uploaded once, a malformed element never
//! blocks its venue, the sidecar wakes when the next image is due, and the scheduled
//! scan runs once per firing however many sidecars there are (or in pg_cron).
//!
//! Needs `DATABASE_URL` and a built `venue-image-uploader` (scripts/test.sh does both).

use anyhow::{ensure, Result};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use venue_images_tests::dataset::FakeRoute;
use venue_images_tests::fakes::ProviderConfig;
use venue_images_tests::sidecar;
use venue_images_tests::world::{command, command_as, failed, World, GOOGLE_KEY};

/// Waits until `check` holds (polling), or fails after `limit`.
async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if check().await? {
            return Ok(());
        }
        ensure!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A TCP proxy from `port` to `to`, started when the "host comes back".
fn proxy(port: u16, to: String) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let Ok(listener) = tokio::net::TcpListener::bind(("127.0.0.1", port)).await else {
            return;
        };
        while let Ok((mut inbound, _)) = listener.accept().await {
            let to = to.clone();
            tokio::spawn(async move {
                if let Ok(mut out) = tokio::net::TcpStream::connect(to).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                }
            });
        }
    })
}

async fn attempts_by_outcome(w: &World) -> Result<Vec<(String, i64)>> {
    Ok(sqlx::query_as(
        "SELECT outcome, count(*) FROM venue_images.venue_image_attempts GROUP BY 1 ORDER BY 1",
    )
    .fetch_all(&w.db.pool)
    .await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unreachable_provider_burns_no_attempts_and_recovers() -> Result<()> {
    let w = World::new("outage", ProviderConfig::default()).await?;
    // Nobody has uploaded anything yet: nothing says the provider is up.
    sqlx::query("UPDATE venue_images.venue_image_providers SET last_success_at = NULL")
        .execute(&w.db.pool)
        .await?;
    // Every Google image points at a host where nothing listens (connection refused).
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let provider_addr = w
        .provider
        .base_url()
        .trim_start_matches("http://")
        .to_string();
    let images: Vec<Value> = (0..6)
        .map(|i| {
            json!({"provider": "google_places", "upload_status": "failed", "retry_count": 0,
                   "error_details": {"error_type": "network_error"},
                   "provider_url": format!("http://127.0.0.1:{port}/google_places/img/outage-{i}.png?key={GOOGLE_KEY}")})
        })
        .collect();
    let venue = w.insert_venue("outage", &images).await?;
    let mut up = w.spawn(
        "outage",
        &[
            "run",
            "--outage-probe",
            "1",
            "--outage-probe-max",
            "2",
            "--poll-ms",
            "500",
            "--scan-schedule",
            "off",
        ],
    )?;
    // max_retries x backoff with retry_base_seconds = 1 is 1 + 2 + 4 s: run far longer.
    tokio::time::sleep(Duration::from_secs(15)).await;
    let now = w.images(venue).await?;
    for e in &now {
        assert_eq!(e["upload_status"], "failed", "{e}");
        assert_eq!(
            e["retry_count"], 0,
            "an outage was charged to the image: {e}"
        );
    }
    assert!(
        attempts_by_outcome(&w).await?.is_empty(),
        "no attempt was recorded during the outage"
    );
    let paused: Option<String> = sqlx::query_scalar(
        "SELECT pause_reason FROM venue_images.venue_image_providers WHERE provider = 'google_places'",
    )
    .fetch_one(&w.db.pool)
    .await?;
    assert!(
        paused
            .as_deref()
            .unwrap_or_default()
            .contains("unreachable"),
        "{paused:?}"
    );
    // The host comes back.
    let _proxy = proxy(port, provider_addr);
    eventually(Duration::from_secs(60), "every image uploaded", || async {
        w.all_are(venue, "uploaded").await
    })
    .await?;
    for e in w.images(venue).await? {
        assert_eq!(e["retry_count"], 1, "{e}");
    }
    assert_eq!(attempts_by_outcome(&w).await?, vec![("uploaded".into(), 6)]);
    up.signal(sidecar::Signal::TERM)?;
    let st = up.wait_for(Duration::from_secs(30)).await?;
    assert!(st.success(), "{}", sidecar::tail(&up.log, 20));
    assert!(!w.logs().contains(GOOGLE_KEY));
    w.finish().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ambiguous_failures_after_a_retry_are_left_for_review() -> Result<()> {
    let w = World::new("review", ProviderConfig::default()).await?;
    let base = w.provider.base_url();
    // A transient failure whose retry ends in a 418 (http_error: ambiguous).
    let mut e = failed(&base, "here", FakeRoute::Image, "teapot", 0);
    e["provider_url"] = json!(format!("{base}/here/status/418/teapot.png"));
    let venue = w.insert_venue("review", &[e]).await?;
    let (code, out) = command(&w, &["once", "--linger", "5"]).await?;
    assert_eq!(code, Some(0), "{out}");
    let after = w.images(venue).await?;
    assert_eq!(after[0]["upload_status"], "failed");
    assert_eq!(after[0]["error_details"]["error_type"], "http_error");
    assert_eq!(after[0]["retry_count"], 1, "one attempt, not max_retries");
    let jobs: i64 = sqlx::query_scalar("SELECT count(*) FROM venue_images.venue_image_jobs")
        .fetch_one(&w.db.pool)
        .await?;
    assert_eq!(jobs, 0, "left the queue: not retried automatically");
    assert_eq!(attempts_by_outcome(&w).await?, vec![("review".into(), 1)]);
    // The scan agrees: ambiguous, skipped; enqueue finds nothing to retry.
    let (code, out) = command(&w, &["scan"]).await?;
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("ambiguous_skipped 1") && out.contains("images_queued 0"),
        "{out}"
    );
    let (_, out) = command(&w, &["enqueue", "--venue", &venue.to_string()]).await?;
    assert!(out.contains("0 retryable"), "{out}");
    // An admin's force retry is how it gets one more attempt.
    let (code, out) = command_as(
        &w,
        &w.admin_url,
        &["force-retry", "--venue", &venue.to_string()],
    )
    .await?;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("1 image(s) queued"), "{out}");
    w.finish().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn duplicate_copies_are_uploaded_once_and_all_get_the_outcome() -> Result<()> {
    let w = World::new("dupes", ProviderConfig::default()).await?;
    let base = w.provider.base_url();
    let one = failed(&base, "here", FakeRoute::Image, "dupe", 0);
    let mut two = one.clone();
    two["position"] = json!(99);
    two["retry_count"] = json!(1);
    let other = failed(&base, "here", FakeRoute::Image, "single", 2);
    let venue = w.insert_venue("dupes", &[one, other, two]).await?;
    // enqueue and retry --venue (the original's retry_failed_only) cope with the copies.
    let (code, out) = command(&w, &["enqueue", "--venue", &venue.to_string()]).await?;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("3 retryable"), "{out}");
    let (code, out) = command(&w, &["retry", "--venue", &venue.to_string()]).await?;
    assert_eq!(code, Some(0), "{out}");
    let after = w.images(venue).await?;
    assert!(
        after.iter().all(|e| e["upload_status"] == "uploaded"),
        "{after:?}"
    );
    assert_eq!(after[0]["retry_count"], 2, "the copies' highest count + 1");
    assert_eq!(after[2]["retry_count"], 2);
    assert_eq!(after[2]["position"], 99, "each copy keeps its own keys");
    assert_eq!(after[0]["imagekit_path"], after[2]["imagekit_path"]);
    let files = w.ik.files();
    assert_eq!(files.len(), 2, "the duplicated image was uploaded once");
    assert!(files.values().all(|f| f.versions == 1));
    let downloads = w
        .provider
        .hits()
        .iter()
        .filter(|h| h.path.contains("dupe"))
        .count();
    assert_eq!(downloads, 1, "and fetched once");
    w.finish().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_malformed_element_does_not_block_its_venue() -> Result<()> {
    let w = World::new("malformed", ProviderConfig::default()).await?;
    let base = w.provider.base_url();
    let mut bad = failed(&base, "here", FakeRoute::Image, "bad", 0);
    bad["retry_count"] = json!("two");
    let mut numeric = failed(&base, "here", FakeRoute::Image, "numeric", 1);
    numeric["retry_count"] = json!("1");
    let good = failed(&base, "here", FakeRoute::Image, "good", 2);
    let venue = w
        .insert_venue("malformed", &[bad.clone(), numeric, good])
        .await?;
    let (code, out) = command(&w, &["enqueue", "--venue", &venue.to_string()]).await?;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("2 retryable"), "{out}");
    let (code, out) = command(&w, &["once"]).await?;
    assert_eq!(code, Some(0), "{out}");
    let after = w.images(venue).await?;
    assert_eq!(
        after[0], bad,
        "the malformed element is left exactly as it was"
    );
    assert_eq!(after[1]["upload_status"], "uploaded");
    assert_eq!(after[1]["retry_count"], 2, "\"1\" read as 1");
    assert_eq!(after[2]["upload_status"], "uploaded");
    let skip: (i64, i32, String) = sqlx::query_as(
        "SELECT venue_id, element_index, reason FROM venue_images.venue_image_skips",
    )
    .fetch_one(&w.db.pool)
    .await?;
    assert_eq!((skip.0, skip.1), (venue, 0));
    assert!(skip.2.contains("retry_count"), "{skip:?}");
    let (code, out) = command(&w, &["scan"]).await?;
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("skipped_elements 1") && out.contains("errors 0"),
        "{out}"
    );
    w.finish().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_sidecar_wakes_when_the_next_image_is_due_not_at_the_poll() -> Result<()> {
    let w = World::new("wake", ProviderConfig::default()).await?;
    let venue = w.insert_one_failed("wake", "here", "later").await?;
    // Due in 4 s (a backoff: no NOTIFY is sent when it ends); the poll is a minute.
    sqlx::query(
        "UPDATE venue_images.venue_image_jobs SET next_attempt_at = now() + interval '4 seconds'",
    )
    .execute(&w.db.pool)
    .await?;
    let started = Instant::now();
    let mut up = w.spawn(
        "wake",
        &["run", "--poll-ms", "60000", "--scan-schedule", "off"],
    )?;
    eventually(Duration::from_secs(30), "uploaded", || async {
        w.all_are(venue, "uploaded").await
    })
    .await?;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(15), "woke after {took:?}");
    up.signal(sidecar::Signal::TERM)?;
    up.wait_for(Duration::from_secs(30)).await?;
    w.finish().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_sidecars_run_exactly_one_scheduled_scan_per_firing() -> Result<()> {
    let w = World::new("schedule", ProviderConfig::default()).await?;
    let every = [
        "run",
        "--scan-schedule",
        "*/3 * * * * *",
        "--poll-ms",
        "500",
    ];
    let mut a = w.spawn("sched-a", &every)?;
    let mut b = w.spawn("sched-b", &every)?;
    tokio::time::sleep(Duration::from_secs(14)).await;
    a.signal(sidecar::Signal::TERM)?;
    b.signal(sidecar::Signal::TERM)?;
    a.wait_for(Duration::from_secs(30)).await?;
    b.wait_for(Duration::from_secs(30)).await?;
    let starts: Vec<f64> = sqlx::query_scalar(
        "SELECT extract(epoch FROM started_at)::float8 FROM venue_images.venue_image_scans ORDER BY started_at",
    )
    .fetch_all(&w.db.pool)
    .await?;
    assert!(starts.len() >= 3, "scans: {starts:?}\n{}", w.logs());
    // One per 3-second firing: never two in one slot, however many sidecars.
    let slots: std::collections::BTreeSet<i64> =
        starts.iter().map(|t| (*t / 3.0).floor() as i64).collect();
    assert_eq!(
        slots.len(),
        starts.len(),
        "two scans in one firing: {starts:?}"
    );
    for pair in starts.windows(2) {
        assert!(pair[1] - pair[0] > 2.0, "{starts:?}");
    }
    w.finish().await
}

#[tokio::test]
async fn pg_cron_runs_the_scan_in_the_database() -> Result<()> {
    let w = World::new("pgcron", ProviderConfig::default()).await?;
    // pg_cron must be preloaded (scripts/test.sh starts the cluster so); its jobs live in
    // cron.database_name, and run in any database with cron.schedule_in_database.
    let preloaded: String =
        sqlx::query_scalar("SELECT current_setting('shared_preload_libraries')")
            .fetch_one(&w.db.pool)
            .await?;
    if !preloaded.contains("pg_cron") {
        eprintln!("pg_cron is not preloaded on this server: skipped");
        return w.finish().await;
    }
    let admin = venue_images_tests::db::database_url()?;
    let cron_db: String = {
        let pool = venue_images_tests::db::pool(&admin, 1).await?;
        sqlx::query_scalar("SELECT current_setting('cron.database_name')")
            .fetch_one(&pool)
            .await?
    };
    let mut cron_url = url::Url::parse(&admin)?;
    cron_url.set_path(&format!("/{cron_db}"));
    let cron = venue_images_tests::db::pool(cron_url.as_str(), 1).await?;
    sqlx::query("CREATE EXTENSION IF NOT EXISTS pg_cron")
        .execute(&cron)
        .await?;
    let dbname: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&w.db.pool)
        .await?;
    let job = format!("venue-images-scan-{}", std::process::id());
    let id: i64 = sqlx::query_scalar(
        "SELECT cron.schedule_in_database($1, '* * * * *', 'SELECT * FROM venue_images.venue_image_cleanup_scan()', $2)",
    )
    .bind(&job)
    .bind(&dbname)
    .fetch_one(&cron)
    .await?;
    let ran = eventually(Duration::from_secs(75), "a scan run by pg_cron", || async {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM venue_images.venue_image_scans")
            .fetch_one(&w.db.pool)
            .await?;
        Ok(n >= 1)
    })
    .await;
    sqlx::query("SELECT cron.unschedule($1)")
        .bind(id)
        .execute(&cron)
        .await?;
    ran?;
    w.finish().await
}
