//! Chaos: four uploaders recover 2000 images while one of them is SIGKILLed twenty
//! times, the application keeps rewriting the same rows, and PostgreSQL restarts
//! (`RESTART_CLUSTER_CMD`, set by scripts/test.sh for its private cluster). At the end
//! every image is uploaded and written back exactly once, every acknowledged write of
//! the application is there, and ImageKit holds one file per image.
//!
//! Needs `DATABASE_URL` and a built `venue-image-uploader`.

use anyhow::{ensure, Result};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use venue_images_tests::dataset::Rng;
use venue_images_tests::dataset::{fake_url, FakeRoute};
use venue_images_tests::db::TestDb;
use venue_images_tests::fakes::{FakeImageKit, FakeProvider, ProviderConfig};
use venue_images_tests::sidecar::{self, Sidecar};

const VENUES: usize = 200;
const PER_VENUE: usize = 10;
const UPLOADERS: usize = 4;
const KILLS: usize = 20;
const IK_KEY: &str = "private_chaos_key";

fn image(base: &str, v: usize, i: usize) -> Value {
    let (provider, route) = match (v * PER_VENUE + i) % 20 {
        0 | 1 => ("google_places", FakeRoute::GoogleRedirect),
        2 => ("here", FakeRoute::FlakyRateLimit),
        _ => (["foursquare", "here", "unsplash"][v % 3], FakeRoute::Image),
    };
    let url = fake_url(base, provider, route, &format!("c{v}-{i}"));
    json!({"provider": provider, "provider_url": url, "url": url, "upload_status": "failed", "retry_count": 0,
           "error_details": {"error_type": "network_timeout"}, "position": i, "note": format!("keep {v}-{i}")})
}

/// What the application managed to write (acknowledged commits).
#[derive(Default)]
struct AppWrites {
    /// Appended element ids, acknowledged.
    appended: HashSet<String>,
    /// Appended element ids whose commit outcome is unknown (error during the restart).
    ambiguous: HashSet<String>,
    /// Highest acknowledged edit sequence per venue.
    last_edit: BTreeMap<i64, u64>,
    errors: u64,
}

async fn app_writer(
    url: String,
    ids: Vec<i64>,
    seed: u64,
    stop: Arc<AtomicBool>,
    out: Arc<Mutex<AppWrites>>,
) {
    let mut rng = Rng::new(seed);
    let mut seq = 0u64;
    let mut pool = venue_images_tests::db::pool(&url, 2).await.ok();
    while !stop.load(Ordering::SeqCst) {
        let Some(p) = pool.as_ref() else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            pool = venue_images_tests::db::pool(&url, 2).await.ok();
            continue;
        };
        seq += 1;
        let id = ids[rng.below(ids.len() as u64) as usize];
        let tag = format!("app-{seq}");
        let r = sqlx::query(
            "UPDATE venues SET venue_images = jsonb_set(venue_images, '{0,attribution}', to_jsonb($2::bigint))
                 || jsonb_build_array(jsonb_build_object('provider', 'app', 'app_id', $3::text,
                                                         'provider_url', 'https://app.example/' || $3, 'upload_status', 'uploaded')),
                 name = 'Chaos ' || $3
             WHERE id = $1",
        )
        .bind(id)
        .bind(seq as i64)
        .bind(&tag)
        .execute(p)
        .await;
        {
            let mut w = out.lock().unwrap();
            match r {
                Ok(_) => {
                    w.appended.insert(tag);
                    let e = w.last_edit.entry(id).or_default();
                    *e = (*e).max(seq);
                }
                Err(_) => {
                    w.ambiguous.insert(tag);
                    w.errors += 1;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kills_restarts_and_concurrent_writes_lose_nothing() -> Result<()> {
    // Seeded: every random choice (kill times, victims, the application's writes) replays
    // with CHAOS_SEED=<seed>; only the operating system's timing differs between runs.
    let seed = Rng::chaos_seed("chaos")?;
    let mut rng = Rng::new(seed);
    let db = TestDb::new("chaos").await?;
    db.quick_retries().await?;
    db.unlimited_rates().await?;
    let uploader_url = db.login_url("venue_image_uploader").await?;
    let ik = FakeImageKit::with_key(IK_KEY, Duration::from_millis(40)).await?;
    let provider = FakeProvider::start(ProviderConfig {
        latency: Duration::from_millis(60),
        image_kb: 16,
        ..ProviderConfig::default()
    })
    .await?;
    let base = provider.base_url();
    let mut ids = vec![];
    for v in 0..VENUES {
        let imgs: Vec<Value> = (0..PER_VENUE).map(|i| image(&base, v, i)).collect();
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO venues (name, slug, venue_images) VALUES ($1, $2, $3) RETURNING id",
        )
        .bind(format!("Chaos {v}"))
        .bind(format!("chaos-{v}"))
        .bind(Value::Array(imgs))
        .fetch_one(&db.pool)
        .await?;
        ids.push(id);
    }
    let queued: i64 = sqlx::query_scalar("SELECT count(*) FROM venue_image_jobs")
        .fetch_one(&db.pool)
        .await?;
    assert_eq!(queued, (VENUES * PER_VENUE) as i64);

    let dir = std::env::temp_dir().join(format!("vi-chaos-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let env = sidecar::env(&uploader_url, &ik.upload_url(), IK_KEY);
    let args: Vec<String> = sidecar::CHAOS_RUN.iter().map(|s| s.to_string()).collect();
    let mut spawned = 0usize;
    let mut spawn = |dir: &std::path::Path| -> Result<Sidecar> {
        spawned += 1;
        Sidecar::spawn(&args, &env, &dir.join(format!("uploader-{spawned}.log")))
    };
    let mut ups: Vec<Sidecar> = (0..UPLOADERS).map(|_| spawn(&dir)).collect::<Result<_>>()?;

    let stop = Arc::new(AtomicBool::new(false));
    let writes = Arc::new(Mutex::new(AppWrites::default()));
    let writer = tokio::spawn(app_writer(
        db.url.clone(),
        ids.clone(),
        seed ^ 0x5eed,
        stop.clone(),
        writes.clone(),
    ));

    // Chaos phase.
    let restart = std::env::var("RESTART_CLUSTER_CMD")
        .ok()
        .filter(|c| !c.trim().is_empty());
    let mut restarted = false;
    for k in 0..KILLS {
        tokio::time::sleep(Duration::from_millis(250 + rng.below(300))).await;
        let victim = rng.below(UPLOADERS as u64) as usize;
        ups[victim].kill()?;
        ups[victim] = spawn(&dir)?;
        if k == KILLS / 2 {
            if let Some(cmd) = &restart {
                let st = tokio::process::Command::new("sh")
                    .arg("-c")
                    .arg(cmd)
                    .stdout(std::process::Stdio::null())
                    .status()
                    .await?;
                ensure!(st.success(), "restart command failed: {cmd}");
                restarted = true;
            }
        }
    }
    if restart.is_none() {
        eprintln!("RESTART_CLUSTER_CMD is not set: the PostgreSQL restart was skipped");
    }

    // Let the survivors finish.
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let left: Result<i64, _> = sqlx::query_scalar("SELECT count(*) FROM venue_image_jobs")
            .fetch_one(&db.pool)
            .await;
        if let Ok(0) = left {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "queue not drained ({left:?} jobs left); last log lines:\n{}",
            sidecar::tail(&ups[0].log, 30)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    stop.store(true, Ordering::SeqCst);
    writer.await?;
    for u in ups.iter_mut() {
        u.signal(sidecar::Signal::TERM)?;
    }
    for u in ups.iter_mut() {
        let st = u.wait_for(Duration::from_secs(40)).await?;
        ensure!(
            st.success(),
            "an uploader exited with {st}:\n{}",
            sidecar::tail(&u.log, 20)
        );
    }

    // 1. Every image recovered, every key kept, every acknowledged app write present.
    // Copy the writer's record out so no lock is held across an await.
    let w = std::mem::take(&mut *writes.lock().unwrap());
    let mut found_app = HashSet::new();
    for (v, id) in ids.iter().enumerate() {
        let imgs: Value = sqlx::query_scalar("SELECT venue_images FROM venues WHERE id = $1")
            .bind(id)
            .fetch_one(&db.pool)
            .await?;
        let imgs = imgs.as_array().unwrap();
        for (i, img) in imgs.iter().take(PER_VENUE).enumerate() {
            assert_eq!(
                img["upload_status"], "uploaded",
                "venue {v} image {i}: {img}"
            );
            assert_eq!(img["note"], format!("keep {v}-{i}"), "{img}");
            let path = img["imagekit_path"].as_str().unwrap();
            let files = ik.files();
            assert_eq!(
                files[path].bytes,
                provider.image_bytes(&format!("c{v}-{i}")),
                "{img}"
            );
        }
        for img in &imgs[PER_VENUE..] {
            found_app.insert(img["app_id"].as_str().unwrap().to_string());
        }
        if let Some(last) = w.last_edit.get(id) {
            let got = imgs[0]["attribution"].as_u64().unwrap_or(0);
            assert!(
                got >= *last,
                "venue {id}: the app's edit {last} was overwritten by an older value {got}"
            );
        }
    }
    for tag in &w.appended {
        assert!(
            found_app.contains(tag),
            "the application's append {tag} was lost"
        );
    }
    for tag in &found_app {
        assert!(
            w.appended.contains(tag) || w.ambiguous.contains(tag),
            "{tag} came from nowhere"
        );
    }

    // 2. Written back exactly once per image.
    let dup: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT venue_id, url_hash FROM venue_image_attempts WHERE outcome = 'uploaded'
                               GROUP BY 1, 2 HAVING count(*) > 1) d",
    )
    .fetch_one(&db.pool)
    .await?;
    assert_eq!(dup, 0, "an image was written back twice");
    let uploaded: i64 =
        sqlx::query_scalar("SELECT count(*) FROM venue_image_attempts WHERE outcome = 'uploaded'")
            .fetch_one(&db.pool)
            .await?;
    assert_eq!(uploaded, (VENUES * PER_VENUE) as i64);

    // 3. One ImageKit file per image; re-uploads only for work a kill interrupted.
    let files = ik.files();
    assert_eq!(files.len(), VENUES * PER_VENUE);
    let overwrites: u32 = files.values().map(|f| f.versions - 1).sum();
    assert!(
        overwrites as usize <= (KILLS + UPLOADERS) * 8,
        "{overwrites} re-uploads"
    );

    // 4. No panics, no secrets.
    let mut logs = String::new();
    for e in std::fs::read_dir(&dir)?.flatten() {
        logs.push_str(&std::fs::read_to_string(e.path())?);
    }
    assert!(!logs.contains("panicked"), "an uploader panicked");
    assert!(!logs.contains(IK_KEY) && !logs.contains("DEMOSECRETKEY42"));
    eprintln!(
        "chaos: {} images, {KILLS} kills, postgres restarted: {restarted}, app writes {} (+{} ambiguous, {} errors), \
         re-uploads after kills {overwrites}",
        VENUES * PER_VENUE,
        w.appended.len(),
        w.ambiguous.len(),
        w.errors
    );
    std::fs::remove_dir_all(&dir)?;
    db.drop().await
}
