//! Behind PgBouncer in transaction mode (Debian 12's 1.18, `venue_images_tests::pgbouncer`),
//! whose pool (3 server connections per login and database) is much smaller than the
//! connections the sidecars open, and which refuses unknown startup parameters:
//!
//! - the end-to-end flow: several sidecars (`run`, `--concurrency` larger than the pool)
//!   with `VENUE_UPLOADER_LISTEN` left at `auto` (they find the pooler and poll), then one
//!   with `off`: every image ends in its contract state, each uploaded exactly once;
//!   `stats --json` and `check` through the pooler give what they give directly;
//! - the dashboard's JSON API (reader login) under concurrent requests, and an admin
//!   action (pause, resume) through the pooler;
//! - a short chaos run: three sidecars, SIGKILLs and restarts, nothing lost, nothing
//!   written back twice;
//! - and nothing depends on session state: no sidecar, dashboard or server log says a
//!   prepared statement already exists or does not exist, PgBouncer refused no startup
//!   parameter, and the pool's server connections hold no named prepared statement.
//!
//! Needs `DATABASE_URL` (a server that trusts 127.0.0.1, as the test cluster does),
//! `/usr/sbin/pgbouncer` (scripts/lib.sh installs it) and a built `venue-image-uploader`.

use anyhow::{ensure, Context, Result};
use serde_json::Value;
use sqlx::{Connection, PgConnection, Row};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use venue_images_tests::dataset::{FakeRoute, Rng};
use venue_images_tests::fakes::ProviderConfig;
use venue_images_tests::pgbouncer::{show_pools, Config, PgBouncer};
use venue_images_tests::pgctl;
use venue_images_tests::sidecar::{self, Sidecar};
use venue_images_tests::world::{command_as, failed, World};

const TOKEN: &str = "pgbouncer-test-admin-token-3a9d";

/// What a log must never say behind a transaction-mode pooler.
const SESSION_STATE_ERRORS: &[&str] = &[
    "prepared statement",
    "unsupported startup parameter",
    "extra_float_digits",
];

fn login(url: &str) -> Result<String> {
    Ok(url::Url::parse(url)?.username().to_string())
}

/// The test's world and a PgBouncer in front of its server that lets its logins in.
struct Pooled {
    w: World,
    reader_url: String,
    bouncer: PgBouncer,
    server_log: Option<(PathBuf, u64)>,
}

impl Pooled {
    /// Stops PgBouncer, then the world (its uploaders, fakes and database).
    async fn finish(self) -> Result<()> {
        let Pooled { w, bouncer, .. } = self;
        drop(bouncer);
        w.finish().await
    }

    async fn new(tag: &str, provider: ProviderConfig) -> Result<Pooled> {
        Pooled::with(tag, provider, false).await
    }

    /// With `server_round_robin` on or off (see [`Config`]).
    async fn with(tag: &str, provider: ProviderConfig, round_robin: bool) -> Result<Pooled> {
        let w = World::new(tag, provider).await?;
        let reader_url = w.db.login_url("venue_image_reader").await?;
        let server_log = pgctl::server_log_file(&w.db.url).await.and_then(|p| {
            let len = std::fs::metadata(&p).ok()?.len();
            Some((p, len))
        });
        let users = vec![
            "postgres".to_string(),
            login(&w.uploader_url)?,
            login(&w.admin_url)?,
            login(&reader_url)?,
        ];
        let bouncer = PgBouncer::start(
            &w.db.url,
            &Config {
                users,
                server_round_robin: round_robin,
                ..Config::default()
            },
        )
        .await?;
        Ok(Pooled {
            w,
            reader_url,
            bouncer,
            server_log,
        })
    }

    /// `url` through the pooler.
    fn via(&self, url: &str) -> String {
        self.bouncer.url(url).expect("a database URL")
    }

    /// Starts `venue-image-uploader ARGS` through the pooler as the uploader login.
    fn spawn(&self, name: &str, args: &[&str], extra: &[(&str, &str)]) -> Result<Sidecar> {
        let mut env = self.w.env_as(&self.via(&self.w.uploader_url));
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        Sidecar::spawn(&args, &env, &self.w.dir.0.join(format!("{name}.log")))
    }

    /// What the server logged since the test started (when this process can read it).
    fn server_log(&self) -> Option<String> {
        let (path, from) = self.server_log.as_ref()?;
        let bytes = std::fs::read(path).ok()?;
        Some(String::from_utf8_lossy(bytes.get(*from as usize..)?).into_owned())
    }

    /// The server's log lines since the test started that say something about session
    /// state; `None` when the log cannot be read here.
    fn server_session_errors(&self) -> Option<Vec<String>> {
        Some(
            self.server_log()?
                .lines()
                .filter(|l| SESSION_STATE_ERRORS.iter().any(|bad| l.contains(bad)))
                .map(String::from)
                .collect(),
        )
    }

    /// No log says anything that session state would have caused (but the known probe
    /// error); and the pool's server connections for the uploader login hold no named
    /// prepared statement.
    async fn assert_no_session_state(&self) -> Result<()> {
        match self.server_session_errors() {
            Some(errors) => assert!(
                errors.is_empty(),
                "the server's log says:\n{}",
                errors.join("\n")
            ),
            None => eprintln!("the server's log cannot be read here: not checked"),
        }
        let logs = vec![
            ("the uploaders' logs".to_string(), self.w.logs()),
            ("PgBouncer's log".to_string(), self.bouncer.log()),
        ];
        for (what, text) in &logs {
            for bad in SESSION_STATE_ERRORS {
                let hit = text.lines().find(|l| l.contains(bad));
                assert!(hit.is_none(), "{what} says {bad:?}: {}", hit.unwrap());
            }
        }
        // Hold every server connection of the uploader login's pool (3) in a transaction
        // of our own, and look at its prepared statements.
        let opts = self.bouncer.options(&self.w.uploader_url)?;
        let mut held = Vec::new();
        let mut pids = std::collections::BTreeSet::new();
        for _ in 0..3 {
            let mut c = PgConnection::connect_with(&opts).await?;
            let rows = sqlx::raw_sql(
                "BEGIN; SELECT pg_backend_pid(), (SELECT count(*) FROM pg_prepared_statements)",
            )
            .fetch_all(&mut c)
            .await?;
            let row = rows.last().context("no row")?;
            let (pid, prepared): (i32, i64) = (row.try_get(0)?, row.try_get(1)?);
            assert_eq!(
                prepared, 0,
                "server connection {pid} holds named prepared statements"
            );
            pids.insert(pid);
            held.push(c);
        }
        assert_eq!(
            pids.len(),
            3,
            "three transactions, three server connections"
        );
        for mut c in held {
            sqlx::raw_sql("COMMIT").execute(&mut c).await?;
            c.close().await?;
        }
        Ok(())
    }
}

/// Samples `SHOW POOLS` until `sampling` is cleared: the most client connections
/// (active and waiting) and server connections seen at once for (`db`, `user`).
fn peak_pool_use(port: u16, db: &str, user: &str, sampling: &AtomicBool) -> Result<(u64, u64)> {
    let (mut clients, mut servers) = (0, 0);
    while sampling.load(Ordering::SeqCst) {
        for pool in show_pools(port)? {
            if pool.get("database").map(String::as_str) != Some(db)
                || pool.get("user").map(String::as_str) != Some(user)
            {
                continue;
            }
            let n = |cols: &[&str]| -> u64 {
                cols.iter()
                    .filter_map(|c| pool.get(*c)?.parse::<u64>().ok())
                    .sum()
            };
            clients = clients.max(n(&["cl_active", "cl_waiting"]));
            servers = servers.max(n(&[
                "sv_active",
                "sv_idle",
                "sv_used",
                "sv_tested",
                "sv_login",
            ]));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok((clients, servers))
}

async fn queue_left(w: &World) -> Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM venue_images.venue_image_jobs")
            .fetch_one(&w.db.pool)
            .await?,
    )
}

/// Waits until the queue is empty (checked directly on the server).
async fn drained(w: &World, limit: Duration, logs: &[&Sidecar]) -> Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        let left = queue_left(w).await?;
        if left == 0 {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "{left} images still queued; last log lines:\n{}",
            logs.iter()
                .map(|s| sidecar::tail(&s.log, 15))
                .collect::<Vec<_>>()
                .join("\n--\n")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn stop(sidecars: Vec<Sidecar>) -> Result<()> {
    for s in &sidecars {
        s.signal(sidecar::Signal::TERM)?;
    }
    for mut s in sidecars {
        let st = s.wait_for(Duration::from_secs(40)).await?;
        ensure!(st.success(), "exit {st}:\n{}", sidecar::tail(&s.log, 20));
    }
    Ok(())
}

/// Venue `v`'s images: mostly plain ones, a Google redirect, a flaky provider (two 503s,
/// then the image: retries that become due later, found without NOTIFY), a 404.
fn backlog(base: &str, v: usize) -> Vec<(FakeRoute, Value)> {
    [
        FakeRoute::Image,
        FakeRoute::Image,
        FakeRoute::GoogleRedirect,
        FakeRoute::Image,
        FakeRoute::FlakyUnavailable,
        FakeRoute::NotFound,
    ]
    .into_iter()
    .enumerate()
    .map(|(i, route)| {
        let provider = if route == FakeRoute::GoogleRedirect {
            "google_places"
        } else {
            ["foursquare", "here", "unsplash"][v % 3]
        };
        (
            route,
            failed(base, provider, route, &format!("pgb{v}-{i}"), i),
        )
    })
    .collect()
}

/// Checks every venue against its routes; the number of images that must be uploaded.
/// Inserts venues `<prefix>-<v>` for each `v` of `range`, with the [`backlog`] of `v`;
/// returns each venue's id and routes.
async fn insert_backlog(
    w: &World,
    prefix: &str,
    range: std::ops::Range<usize>,
) -> Result<Vec<(i64, Vec<FakeRoute>)>> {
    let base = w.provider.base_url();
    let mut venues = Vec::new();
    for v in range {
        let (routes, images): (Vec<FakeRoute>, Vec<Value>) = backlog(&base, v).into_iter().unzip();
        venues.push((
            w.insert_venue(&format!("{prefix}-{v}"), &images).await?,
            routes,
        ));
    }
    Ok(venues)
}

/// The JSON body of a GET.
async fn get_json(client: &reqwest::Client, url: String) -> Result<Value> {
    Ok(client.get(url).send().await?.json().await?)
}

async fn check_venues(w: &World, venues: &[(i64, Vec<FakeRoute>)]) -> Result<usize> {
    let mut uploaded = 0;
    for (id, routes) in venues {
        let images = w.images(*id).await?;
        for (img, route) in images.iter().zip(routes) {
            // A 503 is charged to the image only when its provider has answered well
            // recently (`worker::health`): with eight images in flight at once, the first
            // 503s of a provider may come before its first image, and those are given back
            // unattempted. So the flaky image took one to three attempts.
            let (status, retries) = match route {
                FakeRoute::NotFound => ("permanently_failed", 1..=1),
                FakeRoute::FlakyUnavailable => ("uploaded", 1..=3),
                _ => ("uploaded", 1..=1),
            };
            assert_eq!(img["upload_status"], status, "venue {id} {route:?}: {img}");
            let n = img["retry_count"].as_i64().unwrap_or(-1);
            assert!(retries.contains(&n), "venue {id} {route:?}: {img}");
            if status == "uploaded" {
                uploaded += 1;
            }
        }
    }
    Ok(uploaded)
}

/// Each image written back as uploaded exactly once, and ImageKit holds one file each.
async fn assert_uploaded_once(w: &World, expected: usize, max_reuploads: u32) -> Result<()> {
    let dup: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT venue_id, url_hash FROM venue_images.venue_image_attempts
                                WHERE outcome = 'uploaded' GROUP BY 1, 2 HAVING count(*) > 1) d",
    )
    .fetch_one(&w.db.pool)
    .await?;
    assert_eq!(dup, 0, "an image was written back twice");
    let uploaded: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM venue_images.venue_image_attempts WHERE outcome = 'uploaded'",
    )
    .fetch_one(&w.db.pool)
    .await?;
    assert_eq!(uploaded as usize, expected);
    let files = w.ik.files();
    assert_eq!(files.len(), expected);
    let reuploads: u32 = files.values().map(|f| f.versions - 1).sum();
    assert!(
        reuploads <= max_reuploads,
        "{reuploads} re-uploads (at most {max_reuploads})"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn end_to_end_through_pgbouncer_in_transaction_mode() -> Result<()> {
    let p = Pooled::new(
        "pgbe2e",
        ProviderConfig::with_latency(Duration::from_millis(20)),
    )
    .await?;
    let w = &p.w;
    let mut venues = insert_backlog(w, "pgb", 0..30).await?;

    // Three sidecars, 12 images at once each (16 connections each), LISTEN left at auto.
    let args = [
        "run",
        "--concurrency",
        "12",
        "--poll-ms",
        "300",
        "--writeback-ms",
        "50",
        "--scan-schedule",
        "off",
    ];
    let ups: Vec<Sidecar> = (0..3)
        .map(|i| p.spawn(&format!("auto-{i}"), &args, &[]))
        .collect::<Result<_>>()?;
    // Meanwhile, PgBouncer's own count of the uploader login's clients and servers.
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (sampling, port) = (sampling.clone(), p.bouncer.port);
        let (db, user) = (
            url::Url::parse(&w.db.url)?
                .path()
                .trim_start_matches('/')
                .to_string(),
            login(&w.uploader_url)?,
        );
        tokio::task::spawn_blocking(move || peak_pool_use(port, &db, &user, &sampling))
    };
    drained(w, Duration::from_secs(120), &ups.iter().collect::<Vec<_>>()).await?;
    sampling.store(false, Ordering::SeqCst);
    let (clients, servers) = sampler.await??;
    eprintln!(
        "through PgBouncer: up to {clients} client connections on {servers} server connections"
    );
    assert!(
        clients > 3,
        "the sidecars had {clients} connections: no more than the pool"
    );
    assert!(servers <= 3, "{servers} server connections for a pool of 3");
    for s in &ups {
        let log = std::fs::read_to_string(&s.log)?;
        assert!(
            log.contains("not listening for NOTIFY"),
            "auto did not find the pooler:\n{log}"
        );
    }
    stop(ups).await?;

    // Then with LISTEN off, a second backlog.
    venues.extend(insert_backlog(w, "pgb", 30..40).await?);
    let off = p.spawn("off", &args, &[("VENUE_UPLOADER_LISTEN", "off")])?;
    drained(w, Duration::from_secs(120), &[&off]).await?;
    stop(vec![off]).await?;

    let uploaded = check_venues(w, &venues).await?;
    assert_eq!(uploaded, 40 * 5);
    assert_uploaded_once(w, uploaded, 0).await?;

    // stats --json and check, through the pooler and directly: the same answers.
    let pooled = command_as(w, &p.via(&p.reader_url), &["stats", "--json"]).await?;
    let direct = command_as(w, &p.reader_url, &["stats", "--json"]).await?;
    assert_eq!(pooled.0, Some(0), "{}", pooled.1);
    let json = |text: &str| -> Result<Value> {
        Ok(serde_json::from_str(
            &text[text.find('{').context("no JSON")?..],
        )?)
    };
    let (pooled, direct) = (json(&pooled.1)?, json(&direct.1)?);
    assert_eq!(pooled["summary"], direct["summary"]);
    assert_eq!(pooled["breakdown"], direct["breakdown"]);
    assert_eq!(pooled["summary"]["total_failed_images"], 40);
    let check = command_as(w, &p.via(&w.uploader_url), &["check", "--skip-imagekit"]).await?;
    assert_eq!(check.0, Some(0), "{}", check.1);
    assert!(!check.1.contains("FAIL"), "{}", check.1);

    p.assert_no_session_state().await?;
    p.finish().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dashboard_and_an_admin_action_through_pgbouncer() -> Result<()> {
    // Round robin: each transaction of a client lands on another server connection.
    let p = Pooled::with("pgbdash", ProviderConfig::default(), true).await?;
    let w = &p.w;
    let venues = insert_backlog(w, "pgbd", 0..8).await?;
    // `once` through the pooler too.
    let once = command_as(
        w,
        &p.via(&w.uploader_url),
        &[
            "once",
            "--concurrency",
            "8",
            "--linger",
            "10",
            "--writeback-ms",
            "20",
        ],
    )
    .await?;
    assert_eq!(once.0, Some(0), "{}", once.1);
    let uploaded = check_venues(w, &venues).await?;
    assert_uploaded_once(w, uploaded, 0).await?;

    let token_file = w.dir.0.join("admin-token");
    std::fs::write(&token_file, format!("{TOKEN}\n"))?;
    let dash_args: Vec<String> = [
        "dashboard",
        "--listen",
        "127.0.0.1:0",
        "--refresh",
        "1",
        "--admin-token-file",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([token_file.display().to_string()])
    .collect();
    let env = vec![
        ("DATABASE_URL".to_string(), p.via(&p.reader_url)),
        (
            "VENUE_DASHBOARD_ADMIN_DATABASE_URL".into(),
            p.via(&w.admin_url),
        ),
        ("VENUE_UPLOADER_LOG".into(), "debug".into()),
        ("VENUE_UPLOADER_LOG_FORMAT".into(), "json".into()),
    ];
    let log = w.dir.0.join("dashboard.log");
    let mut dash = Sidecar::spawn(&dash_args, &env, &log)?;
    let base_url = dash.dashboard_url(Duration::from_secs(30)).await?;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    // Many requests at once: many more than the pool's three server connections.
    let mut paths = vec![
        "/api/overview".to_string(),
        "/api/recovery?range=24h".into(),
        "/api/recovery?range=7d".into(),
        "/api/recovery?range=30d".into(),
        "/healthz".into(),
    ];
    paths.extend(venues.iter().map(|(id, _)| format!("/api/venues/{id}")));
    for round in 0..3 {
        let requests = paths.iter().map(|path| {
            let client = client.clone();
            let url = format!("{base_url}{path}");
            async move {
                let r = client.get(&url).send().await?;
                let status = r.status();
                let body = r.text().await?;
                anyhow::Ok((url, status, body))
            }
        });
        for r in futures_util::future::join_all(requests).await {
            let (url, status, body) = r?;
            assert_eq!(status, 200, "round {round}: {url}: {body}");
            if url.contains("/api/") {
                serde_json::from_str::<Value>(&body).with_context(|| url.clone())?;
            }
        }
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    let overview: Value = get_json(&client, format!("{base_url}/api/overview")).await?;
    assert_eq!(overview["stats"]["failed_images"], 8, "{overview}");
    let venue: Value = get_json(&client, format!("{base_url}/api/venues/{}", venues[0].0)).await?;
    assert!(venue["venue"].is_object(), "{venue}");

    // Pause and resume a provider: the admin login, through the pooler.
    let r = client
        .post(format!("{base_url}/providers/pause"))
        .bearer_auth(TOKEN)
        .form(&[
            ("provider", "here"),
            ("minutes", "10"),
            ("reason", "pgbouncer test"),
        ])
        .send()
        .await?;
    assert_eq!(r.status(), 303, "{}", sidecar::tail(&log, 10));
    let paused: Option<String> = sqlx::query_scalar(
        "SELECT pause_reason FROM venue_images.venue_image_providers
          WHERE provider = 'here' AND paused_until > now()",
    )
    .fetch_optional(&w.db.pool)
    .await?;
    assert_eq!(paused.as_deref(), Some("pgbouncer test"));
    let overview: Value = get_json(&client, format!("{base_url}/api/overview")).await?;
    let here = overview["providers"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["provider"] == "here"))
        .cloned()
        .unwrap_or_default();
    assert!(here["paused_until"].is_string(), "{overview}");
    let r = client
        .post(format!("{base_url}/providers/resume"))
        .bearer_auth(TOKEN)
        .form(&[("provider", "here")])
        .send()
        .await?;
    assert_eq!(r.status(), 303, "{}", sidecar::tail(&log, 10));
    let still: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM venue_images.venue_image_providers
          WHERE provider = 'here' AND paused_until > now()",
    )
    .fetch_one(&w.db.pool)
    .await?;
    assert_eq!(still, 0);
    let text = std::fs::read_to_string(&log)?;
    assert!(text.contains("dashboard: admin action"), "{text}");
    assert!(!text.contains("admin action failed"), "{text}");
    dash.kill()?;

    p.assert_no_session_state().await?;
    p.finish().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_short_chaos_run_through_pgbouncer() -> Result<()> {
    const VENUES: usize = 40;
    const PER_VENUE: usize = 8;
    const SIDECARS: usize = 3;
    const KILLS: usize = 6;
    let seed = Rng::chaos_seed("pgbouncer chaos")?;
    let mut rng = Rng::new(seed);
    let p = Pooled::new(
        "pgbchaos",
        ProviderConfig {
            latency: Duration::from_millis(60),
            image_kb: 8,
            ..ProviderConfig::default()
        },
    )
    .await?;
    let w = &p.w;
    let base = w.provider.base_url();
    let mut venues = Vec::new();
    for v in 0..VENUES {
        let routes: Vec<FakeRoute> = (0..PER_VENUE)
            .map(|i| match (v * PER_VENUE + i) % 10 {
                0 => FakeRoute::GoogleRedirect,
                1 => FakeRoute::FlakyRateLimit,
                _ => FakeRoute::Image,
            })
            .collect();
        let images: Vec<Value> = routes
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let provider = if *r == FakeRoute::GoogleRedirect {
                    "google_places"
                } else {
                    ["foursquare", "here", "unsplash"][v % 3]
                };
                failed(&base, provider, *r, &format!("pc{v}-{i}"), i)
            })
            .collect();
        venues.push((w.insert_venue(&format!("pgbc-{v}"), &images).await?, routes));
    }
    let args = [&sidecar::CHAOS_RUN[..], &["--scan-schedule", "off"]].concat();
    let mut spawned = 0;
    let mut spawn = |p: &Pooled| {
        spawned += 1;
        p.spawn(&format!("chaos-{spawned}"), &args, &[])
    };
    let mut ups: Vec<Sidecar> = (0..SIDECARS).map(|_| spawn(&p)).collect::<Result<_>>()?;
    for _ in 0..KILLS {
        tokio::time::sleep(Duration::from_millis(300 + rng.below(500))).await;
        let victim = rng.below(SIDECARS as u64) as usize;
        ups[victim].kill()?;
        ups[victim] = spawn(&p)?;
    }
    drained(w, Duration::from_secs(180), &ups.iter().collect::<Vec<_>>()).await?;
    stop(ups).await?;

    let uploaded = check_venues(w, &venues).await?;
    assert_eq!(uploaded, VENUES * PER_VENUE);
    // Re-uploads only for work a kill interrupted (idempotent: same name, same bytes).
    assert_uploaded_once(w, uploaded, (KILLS * 8) as u32).await?;
    for (id, _) in &venues {
        for (i, img) in w.images(*id).await?.iter().enumerate() {
            let path = img["imagekit_path"].as_str().context("imagekit_path")?;
            let files = w.ik.files();
            let v = venues.iter().position(|(x, _)| x == id).unwrap_or_default();
            assert_eq!(
                files[path].bytes,
                w.provider.image_bytes(&format!("pc{v}-{i}")),
                "{img}"
            );
        }
    }
    assert!(!w.logs().contains("panicked"), "an uploader panicked");
    p.assert_no_session_state().await?;
    p.finish().await
}

/// The start-up probe (`db::ops::encrypted`, run by every command on a connection of its
/// own) sends its unnamed statement outside an explicit transaction: behind PgBouncer in
/// transaction mode its Parse and its Bind may go to two server connections, and the
/// server answers "unnamed prepared statement does not exist" (or, worse, binds the
/// unnamed statement another client left on that connection). The probe swallows the
/// error (`unwrap_or(false)`), so the command goes on; only the server's log shows it.
/// `server_round_robin = 1` makes it happen every time.
///
/// (It did, until the probe got a transaction of its own like every other statement.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_start_up_probe_keeps_to_one_server_connection() -> Result<()> {
    let p = Pooled::with("pgbprobe", ProviderConfig::default(), true).await?;
    if p.server_log.is_none() {
        eprintln!("the server's log cannot be read here: skipped");
        return p.finish().await;
    }
    // Three idle server connections in the uploader login's pool.
    let opts = p.bouncer.options(&p.w.uploader_url)?;
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut c = PgConnection::connect_with(&opts).await?;
        sqlx::raw_sql("BEGIN; SELECT 1").execute(&mut c).await?;
        held.push(c);
    }
    for mut c in held {
        sqlx::raw_sql("COMMIT").execute(&mut c).await?;
        c.close().await?;
    }
    for args in [&["stats", "--json"][..], &["check", "--skip-imagekit"][..]] {
        let out = command_as(&p.w, &p.via(&p.w.uploader_url), args).await?;
        assert_eq!(out.0, Some(0), "{}", out.1);
    }
    let errors = p.server_session_errors().unwrap_or_default();
    assert!(
        errors.is_empty(),
        "the server's log, after `stats` and `check` through PgBouncer:\n{}",
        errors.join("\n")
    );
    p.finish().await
}
