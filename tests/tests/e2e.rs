//! End to end: the real uploader binary, a real PostgreSQL with the extension, and the
//! fakes of ImageKit and the providers. Each failure route ends in the state the
//! contract gives it, nothing else in the table changes, ImageKit receives the right
//! bytes under the right names, the application's concurrent writes survive, and no
//! secret reaches a log line, a metric or the database.
//!
//! Needs `DATABASE_URL` and a built `venue-image-uploader` (scripts/test.sh does both).

use anyhow::{Context, Result};
use serde_json::{json, Value};
use sqlx::Row;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use venue_images_tests::dataset::FakeRoute;
use venue_images_tests::fakes::ProviderConfig;
use venue_images_tests::sidecar::{self, Sidecar};
use venue_images_tests::world::{command, command_as, failed, stats, World, GOOGLE_KEY, IK_KEY};

/// Elements the uploader has no business with.
fn bystanders(n: usize) -> Vec<Value> {
    vec![
        json!({"provider": "foursquare", "provider_url": format!("https://fastly.4sqi.net/img/general/original/{n}.jpg"),
               "url": format!("https://ik.imagekit.io/demo/venues/x/{n}.jpg"), "upload_status": "uploaded",
               "imagekit_path": format!("/venues/x/{n}.jpg"), "retry_count": 0, "position": 100 + n, "extra": [n]}),
        json!({"provider": "here", "provider_url": format!("https://here.example/{n}.jpg"), "upload_status": "failed",
               "retry_count": 1, "error_details": {"error_type": "not_found", "status_code": 404}, "position": 200 + n}),
        json!({"provider": "here", "provider_url": format!("https://here.example/p{n}.jpg"), "upload_status": "permanently_failed",
               "retry_count": 3, "error_details": {"error_type": "service_unavailable", "status_code": 503}}),
        json!("legacy-string-element"),
        json!({"no_provider_url": true, "upload_status": "failed"}),
    ]
}

/// (final status, retry_count, error type, attempts) for a route, with 3 retries allowed.
fn expected(route: FakeRoute) -> (&'static str, i64, Option<&'static str>) {
    match route {
        FakeRoute::Image | FakeRoute::GoogleRedirect => ("uploaded", 1, None),
        // The 429 pauses the provider and is not an attempt.
        FakeRoute::FlakyRateLimit => ("uploaded", 1, None),
        FakeRoute::FlakyUnavailable => ("uploaded", 3, None),
        FakeRoute::AlwaysUnavailable => ("permanently_failed", 3, Some("service_unavailable")),
        FakeRoute::NotFound => ("permanently_failed", 1, Some("not_found")),
        FakeRoute::Forbidden => ("permanently_failed", 1, Some("forbidden")),
        FakeRoute::Html => ("permanently_failed", 1, Some("not_an_image")),
    }
}

const ROUTES: [FakeRoute; 8] = [
    FakeRoute::Image,
    FakeRoute::GoogleRedirect,
    FakeRoute::FlakyRateLimit,
    FakeRoute::FlakyUnavailable,
    FakeRoute::AlwaysUnavailable,
    FakeRoute::NotFound,
    FakeRoute::Forbidden,
    FakeRoute::Html,
];

/// Keys the uploader may change on an element.
const OWNED: &[&str] = &[
    "upload_status",
    "url",
    "imagekit_path",
    "imagekit_file_id",
    "retry_count",
    "retried_at",
    "error_details",
    "finalized_at",
];

fn without_owned(v: &Value) -> Value {
    let mut o = v.as_object().cloned().unwrap_or_default();
    for k in OWNED {
        o.remove(*k);
    }
    Value::Object(o)
}

/// The secrets must not be anywhere the uploader or the extension wrote.
async fn assert_no_secrets(w: &World, extra_text: &str) -> Result<()> {
    let logs = w.logs();
    assert!(!logs.is_empty(), "the uploaders logged nothing");
    for secret in [GOOGLE_KEY, IK_KEY] {
        assert!(
            !logs.contains(secret),
            "secret {secret} in a log:\n{}",
            logs.lines().find(|l| l.contains(secret)).unwrap()
        );
        assert!(!extra_text.contains(secret), "secret {secret} in metrics");
    }
    let dumps: Vec<(String, String)> = vec![
        ("jobs".into(), "SELECT coalesce(string_agg(j::text, E'\\n'), '') FROM venue_image_jobs j".into()),
        ("attempts".into(), "SELECT coalesce(string_agg(a::text, E'\\n'), '') FROM venue_image_attempts a".into()),
        ("providers".into(), "SELECT coalesce(string_agg(p::text, E'\\n'), '') FROM venue_image_providers p".into()),
        (
            "error_details".into(),
            "SELECT coalesce(string_agg(e->>'error_details', E'\\n'), '') FROM venues, jsonb_array_elements(venue_images) e \
             WHERE jsonb_typeof(e) = 'object'"
                .into(),
        ),
    ];
    for (what, q) in dumps {
        let text: String = sqlx::query_scalar(&q).fetch_one(&w.db.pool).await?;
        for secret in [GOOGLE_KEY, IK_KEY] {
            assert!(!text.contains(secret), "secret {secret} in {what}");
        }
    }
    Ok(())
}

/// Checks one recovered or finalised image against its route and the fakes.
fn check_image(w: &World, slug: &str, route: FakeRoute, name: &str, before: &Value, after: &Value) {
    let (status, rc, error_type) = expected(route);
    let ctx = format!("{route:?} {name}: {after}");
    assert_eq!(after["upload_status"], status, "{ctx}");
    assert_eq!(after["retry_count"], rc, "{ctx}");
    assert_eq!(
        without_owned(after),
        without_owned(before),
        "keys the uploader does not own changed: {ctx}"
    );
    assert!(after["retried_at"].is_string(), "{ctx}");
    if status == "uploaded" {
        assert!(after.get("error_details").is_none(), "{ctx}");
        let path = after["imagekit_path"].as_str().expect("imagekit_path");
        assert!(path.starts_with(&format!("/venues/{slug}/")), "{ctx}");
        assert_eq!(
            after["url"],
            format!("https://ik.imagekit.io/fake{path}"),
            "{ctx}"
        );
        let files = w.ik.files();
        let file = files
            .get(path)
            .unwrap_or_else(|| panic!("ImageKit has no {path}: {ctx}"));
        assert_eq!(
            file.bytes,
            w.provider.image_bytes(name),
            "ImageKit got other bytes: {ctx}"
        );
        assert_eq!(after["imagekit_file_id"], file.file_id, "{ctx}");
        let provider = before["provider"].as_str().unwrap();
        assert!(
            file.tags.iter().any(|t| t == provider),
            "{ctx}: tags {:?}",
            file.tags
        );
    } else {
        let d = &after["error_details"];
        assert_eq!(d["error_type"], error_type.unwrap(), "{ctx}");
        assert_eq!(d["retry_attempt"], rc, "{ctx}");
        assert!(after["finalized_at"].is_string(), "{ctx}");
        assert_eq!(
            after["url"], before["url"],
            "a failed image keeps its url: {ctx}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_route_ends_in_its_contract_state() -> Result<()> {
    let w = World::new("routes", ProviderConfig::default()).await?;
    let base = w.provider.base_url();
    let mut venues = vec![];
    for v in 0..3 {
        let slug = format!("e2e-venue-{v}");
        let mut images = vec![];
        let mut cases = vec![];
        for (i, route) in ROUTES.iter().enumerate() {
            let provider = if *route == FakeRoute::GoogleRedirect {
                "google_places"
            } else {
                ["foursquare", "here", "unsplash"][v]
            };
            let name = format!("v{v}-{i}");
            cases.push((images.len(), *route, name.clone()));
            images.push(failed(&base, provider, *route, &name, i));
        }
        images.extend(bystanders(v));
        // The application inserts: the trigger queues the transient failures.
        let id = w.insert_venue(&slug, &images).await?;
        venues.push((id, slug, images, cases));
    }
    let queued: i64 = sqlx::query_scalar("SELECT count(*) FROM venue_image_jobs")
        .fetch_one(&w.db.pool)
        .await?;
    assert_eq!(
        queued,
        3 * ROUTES.len() as i64,
        "the trigger queues exactly the retryable images"
    );

    let mut up = w.spawn(
        "once",
        &[
            "once",
            "--concurrency",
            "8",
            "--linger",
            "20",
            "--writeback-ms",
            "20",
        ],
    )?;
    let st = up.wait_for(Duration::from_secs(180)).await?;
    assert!(
        st.success(),
        "uploader exited with {st}:\n{}",
        sidecar::tail(&up.log, 40)
    );

    for (id, slug, before, cases) in &venues {
        let after = w.images(*id).await?;
        assert_eq!(after.len(), before.len(), "no element lost or added");
        for (idx, route, name) in cases {
            check_image(&w, slug, *route, name, &before[*idx], &after[*idx]);
        }
        for i in ROUTES.len()..before.len() {
            assert_eq!(after[i], before[i], "a bystander element changed");
        }
    }
    // One attempt row per attempt, and nothing left in the queue.
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM venue_image_jobs")
        .fetch_one(&w.db.pool)
        .await?;
    assert_eq!(left, 0);
    let rows = sqlx::query("SELECT outcome, count(*) FROM venue_image_attempts GROUP BY 1")
        .fetch_all(&w.db.pool)
        .await?;
    let by: BTreeMap<String, i64> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let uploaded_expected = 3 * ROUTES
        .iter()
        .filter(|r| expected(**r).0 == "uploaded")
        .count() as i64;
    assert_eq!(
        by.get("uploaded").copied().unwrap_or(0),
        uploaded_expected,
        "{by:?}"
    );
    // No image was uploaded twice: every ImageKit file has one version.
    let files = w.ik.files();
    assert_eq!(files.len() as i64, uploaded_expected);
    assert!(
        files.values().all(|f| f.versions == 1),
        "an image was uploaded twice"
    );
    // ImageKit saw the idempotent form of every upload.
    for r in w.ik.requests() {
        assert!(r.fields.iter().any(|f| f == "useUniqueFileName"), "{r:?}");
    }
    // Google's key went to the provider (it has to) but nowhere else.
    assert!(w
        .provider
        .hits()
        .iter()
        .any(|h| h.path.contains(GOOGLE_KEY)));
    assert_no_secrets(&w, "").await?;
    w.finish().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_sidecar_keeps_the_applications_writes_and_stops_cleanly() -> Result<()> {
    let w = World::new(
        "sidecar",
        ProviderConfig::with_latency(Duration::from_millis(30)),
    )
    .await?;
    let base = w.provider.base_url();
    let metrics_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        l.local_addr()?.port()
    };
    let addr = format!("127.0.0.1:{metrics_port}");
    let mut up = w.spawn(
        "run",
        &[
            "run",
            "--concurrency",
            "8",
            "--metrics-addr",
            &addr,
            "--poll-ms",
            "200",
        ],
    )?;

    // The application writes venues while the sidecar works on them.
    let mut ids = vec![];
    for v in 0..20 {
        let images: Vec<Value> = (0..5)
            .map(|i| {
                let route = if i == 4 {
                    FakeRoute::GoogleRedirect
                } else {
                    FakeRoute::Image
                };
                let provider = if route == FakeRoute::GoogleRedirect {
                    "google_places"
                } else {
                    "foursquare"
                };
                failed(&base, provider, route, &format!("s{v}-{i}"), i)
            })
            .collect();
        ids.push(w.insert_venue(&format!("side-{v}"), &images).await?);
    }
    let pool = w.db.pool.clone();
    let writer_ids = ids.clone();
    let writer = tokio::spawn(async move {
        let mut edits = 0u32;
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(4) {
            for id in &writer_ids {
                // Edit a key the uploader does not own on an element it is processing,
                // append an image, and change the row elsewhere.
                sqlx::query(
                    "UPDATE venues SET venue_images = jsonb_set(venue_images, '{0,attribution}', to_jsonb($2::text))
                         || jsonb_build_array(jsonb_build_object('provider', 'app', 'provider_url', 'https://app.example/' || $2,
                                                                 'upload_status', 'uploaded', 'url', 'https://ik.imagekit.io/app/' || $2)),
                         name = 'edited ' || $2
                     WHERE id = $1",
                )
                .bind(id)
                .bind(format!("edit-{edits}"))
                .execute(&pool)
                .await
                .unwrap();
                edits += 1;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        edits
    });
    let edits = writer.await?;

    // Wait until the queue is empty.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let left: i64 = sqlx::query_scalar("SELECT count(*) FROM venue_image_jobs")
            .fetch_one(&w.db.pool)
            .await?;
        if left == 0 {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "queue not drained: {left} left\n{}",
            sidecar::tail(&up.log, 30)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut appended = 0;
    for id in &ids {
        let imgs = w.images(*id).await?;
        for (i, img) in imgs.iter().take(5).enumerate() {
            assert_eq!(
                img["upload_status"], "uploaded",
                "venue {id} image {i}: {img}"
            );
            assert_eq!(img["position"], i, "{img}");
        }
        assert!(
            imgs[0]["attribution"]
                .as_str()
                .unwrap()
                .starts_with("edit-"),
            "the app's edit was lost: {}",
            imgs[0]
        );
        appended += imgs.iter().filter(|i| i["provider"] == "app").count() as u32;
    }
    assert_eq!(
        appended, edits,
        "every image the application appended survives"
    );
    let last_edit: String = sqlx::query_scalar("SELECT max(name) FROM venues")
        .fetch_one(&w.db.pool)
        .await?;
    assert!(last_edit.starts_with("edited "));

    // Health and metrics, without secrets.
    let client = reqwest::Client::new();
    let health = client.get(format!("http://{addr}/healthz")).send().await?;
    assert_eq!(health.status(), 200);
    let metrics = client
        .get(format!("http://{addr}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    assert!(
        metrics.contains("venue_image_uploader_attempts_total")
            || metrics.contains("attempts_total"),
        "{metrics}"
    );
    assert!(metrics.contains("google_places"), "{metrics}");

    // SIGTERM: a clean exit within the grace period.
    up.signal(sidecar::Signal::TERM)?;
    let st = up.wait_for(Duration::from_secs(30)).await?;
    assert!(st.success(), "exit status {st}");
    assert_no_secrets(&w, &metrics).await?;
    w.finish().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wrong_imagekit_key_stops_the_uploader_without_burning_attempts() -> Result<()> {
    let w = World::new("badkey", ProviderConfig::default()).await?;
    let base = w.provider.base_url();
    let images: Vec<Value> = (0..4)
        .map(|i| failed(&base, "foursquare", FakeRoute::Image, &format!("k{i}"), i))
        .collect();
    let id = w.insert_venue("badkey", &images).await?;
    let mut env = w.env();
    env.retain(|(k, _)| k != "IMAGEKIT_PRIVATE_KEY");
    env.push(("IMAGEKIT_PRIVATE_KEY".into(), "private_wrong_key".into()));
    let args: Vec<String> = ["once", "--concurrency", "2"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut up = Sidecar::spawn(&args, &env, &w.dir.0.join("badkey.log"))?;
    let st = up.wait_for(Duration::from_secs(60)).await?;
    assert_eq!(
        st.code(),
        Some(3),
        "a refused account is a distinct exit code:\n{}",
        sidecar::tail(&up.log, 20)
    );
    for img in w.images(id).await? {
        assert_eq!(img["upload_status"], "failed", "{img}");
        assert_eq!(
            img["retry_count"], 0,
            "the account's fault must not cost the image an attempt: {img}"
        );
    }
    let leased: i64 =
        sqlx::query_scalar("SELECT count(*) FROM venue_image_jobs WHERE lease_token IS NOT NULL")
            .fetch_one(&w.db.pool)
            .await?;
    assert_eq!(leased, 0, "claims are released");
    // `check` says what is wrong.
    let out = std::process::Command::new(sidecar::uploader_bin()?)
        .arg("check")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .context("check")?;
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("FAIL ImageKit"), "{text}");
    assert!(!text.contains("private_wrong_key"), "{text}");
    w.finish().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_one_off_commands_do_what_their_help_says() -> Result<()> {
    let w = World::new("cli", ProviderConfig::default()).await?;
    let base = w.provider.base_url();

    // migrate (as the superuser) is idempotent; check passes on a good setup.
    let (code, out) = command_as(&w, &w.db.url, &["migrate"]).await?;
    assert_eq!(code, Some(0), "{out}");
    for f in [
        "001_enable_venue_images.sql",
        "002_roles.sql",
        "003_venues_table.sql",
    ] {
        assert!(out.contains(&format!("applied {f}")), "{out}");
    }
    // ... and refused, with the reason, as the uploader.
    let (code, out) = command(&w, &["migrate"]).await?;
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("superuser"), "{out}");
    // Operators' commands need venue_image_admin: the uploader is told which role.
    let (code, out) = command(&w, &["rates", "here=7"]).await?;
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("GRANT venue_image_admin"), "{out}");
    let (code, out) =
        command_as(&w, &w.admin_url, &["rates", "here=7", "foursquare=default"]).await?;
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("here: 7/s") && out.contains("foursquare: built-in default"),
        "{out}"
    );
    let (code, out) = command_as(&w, &w.admin_url, &["resume", "--provider", "here"]).await?;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("here: was not paused"), "{out}");
    w.db.unlimited_rates().await?;
    let (code, out) = command(&w, &["check"]).await?;
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("ok   ImageKit accepted the private key"),
        "{out}"
    );
    assert!(!out.contains("FAIL"), "{out}");

    // Two venues whose failures the trigger queued; none due for an hour.
    let a_images: Vec<Value> = (0..2)
        .map(|i| {
            failed(
                &base,
                "foursquare",
                FakeRoute::Image,
                &format!("cli-a{i}"),
                i,
            )
        })
        .collect();
    let a = w.insert_venue("cli-a", &a_images).await?;
    let b_images = vec![failed(&base, "here", FakeRoute::Image, "cli-b0", 0)];
    let b = w.insert_venue("cli-b", &b_images).await?;
    sqlx::query("UPDATE venue_image_jobs SET next_attempt_at = now() + interval '1 hour'")
        .execute(&w.db.pool)
        .await?;
    let due = |venue: i64| {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM venue_image_retry_queue WHERE venue_id = $1 AND state = 'due'",
        )
        .bind(venue)
        .fetch_one(&w.db.pool)
    };
    assert_eq!(due(a).await?, 0);
    let before = stats(&w).await?;
    assert_eq!(before["summary"]["total_failed_images"], 3, "{before}");
    assert_eq!(before["summary"]["venues_with_transient"], 2, "{before}");
    assert_eq!(before["summary"]["venues_scanned"], 2, "{before}");

    // once: nothing is due, so nothing changes.
    let (code, out) = command(&w, &["once"]).await?;
    assert_eq!(code, Some(0), "{out}");
    assert!(w.all_are(a, "failed").await?);

    // enqueue: venue a due now, b untouched.
    let (code, out) = command(&w, &["enqueue", "--venue", &a.to_string()]).await?;
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains(&format!("venue {a}: 2 retryable image(s) due now")),
        "{out}"
    );
    assert_eq!(due(a).await?, 2);
    assert_eq!(due(b).await?, 0);

    // retry --venue b: only b, at once, waiting for it.
    let (code, out) = command(&w, &["retry", "--venue", &b.to_string()]).await?;
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(w.images(b).await?[0]["upload_status"], "uploaded");
    assert!(w.all_are(a, "failed").await?);
    let (code, out) = command(&w, &["retry", "--venue", "987654321"]).await?;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("has no retryable images"), "{out}");

    // once: drains what enqueue made due.
    let (code, out) = command(&w, &["once"]).await?;
    assert_eq!(code, Some(0), "{out}");
    assert!(w.all_are(a, "uploaded").await?);
    assert_eq!(w.ik.files().len(), 3);

    // stats --json agrees with the table; scan reports in one line.
    let after = stats(&w).await?;
    assert_eq!(after["summary"]["total_failed_images"], 0, "{after}");
    assert_eq!(after["summary"]["venues_scanned"], 2, "{after}");
    let (code, out) = command(&w, &["scan"]).await?;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("transient_queued 0"), "{out}");

    // An unreachable database: the cause, not a pool timeout, and never the password.
    let (code, out) = command(
        &w,
        &[
            "--database-url",
            "postgres://app:hunter2@127.0.0.1:1/app",
            "stats",
        ],
    )
    .await?;
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("cannot connect to the database at 127.0.0.1:1/app"),
        "{out}"
    );
    assert!(!out.contains("hunter2"), "{out}");

    // Usage errors are exit status 2 and say what is missing.
    let (code, out) = command(&w, &["retry"]).await?;
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("--venue"), "{out}");
    assert!(!w.logs().contains("panicked"));
    w.finish().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sidecar_started_before_its_database_waits_for_it() -> Result<()> {
    let w = World::new("early", ProviderConfig::default()).await?;
    let id = w
        .insert_one_failed("early", "foursquare", "early-0")
        .await?;

    // The uploader reaches the database through a port where nothing listens yet.
    let real = url::Url::parse(&w.uploader_url)?;
    let real_addr = format!(
        "{}:{}",
        real.host_str().unwrap_or("127.0.0.1"),
        real.port().unwrap_or(5432)
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut via_proxy = real.clone();
    via_proxy
        .set_port(Some(port))
        .map_err(|_| anyhow::anyhow!("port"))?;
    let mut env = w.env();
    env.retain(|(k, _)| k != "DATABASE_URL");
    env.push(("DATABASE_URL".into(), via_proxy.to_string()));
    let args: Vec<String> = ["run", "--poll-ms", "200"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut up = Sidecar::spawn(&args, &env, &w.dir.0.join("early.log"))?;
    // Longer than the pool's 10 s acquire timeout: the sidecar must outlast it.
    tokio::time::sleep(Duration::from_secs(12)).await;
    assert!(
        up.try_wait()?.is_none(),
        "the sidecar gave up on a database that is not up yet:\n{}",
        sidecar::tail(&up.log, 20)
    );

    // The database "comes up": a TCP proxy to the real server opens on that port.
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let proxy = tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let real_addr = real_addr.clone();
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(real_addr).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    while !w.all_are(id, "uploaded").await? {
        assert!(
            Instant::now() < deadline,
            "not recovered after the database came up:\n{}",
            sidecar::tail(&up.log, 30)
        );
        assert!(
            up.try_wait()?.is_none(),
            "the sidecar exited:\n{}",
            sidecar::tail(&up.log, 30)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    up.signal(sidecar::Signal::TERM)?;
    let st = up.wait_for(Duration::from_secs(30)).await?;
    assert!(st.success(), "exit status {st}");
    proxy.abort();
    w.finish().await
}
