//! The dashboard in a real browser (headless Chromium over WebDriver, with `fantoccini`)
//! against a real PostgreSQL holding the fakes' data: a recovery run of the real
//! uploader against the fake providers and ImageKit.
//!
//! - Every page loads with zero console errors (CSP violations included).
//! - The figures on the pages are the SQL functions' figures.
//! - Force retry through the UI with the admin token makes the job due; without the
//!   token, with a wrong one or without the form's CSRF token the request is refused
//!   (401/403) and the queue and the venue are unchanged. Pause, resume, the scan and
//!   purge work through the UI too.
//! - A `key=` value planted in the data appears in no HTML, no JSON and no log line.
//! - A screenshot of every page is saved under `target/dashboard-screenshots/`.
//!
//! Needs `DATABASE_URL`, a built `venue-image-uploader`, and `chromium` +
//! `chromium-driver` (Debian packages).

use anyhow::{bail, Context, Result};
use axum::http::Method;
use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use sqlx::{PgPool, Row};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use venue_images_tests::browser::{self, Driver};
use venue_images_tests::dataset::{FakeRoute, Shape};
use venue_images_tests::db::{self, TestDb};
use venue_images_tests::fakes::ProviderConfig;
use venue_images_tests::sidecar::{self, Sidecar};
use venue_images_tests::world::{command, failed, World, GOOGLE_KEY, IK_KEY};

/// The secret planted in the data (a Google `key=` value).
const PLANTED: &str = "PLANTEDdashKEY9000";
const TOKEN: &str = "dashboard-test-admin-token-5f1c9e";

// ---- The dashboard process -----------------------------------------------------------

struct Dashboard {
    process: Sidecar,
    base: String,
}

impl Dashboard {
    /// Starts `venue-image-uploader dashboard` as the reader login (and the admin login
    /// for actions when a token file is given) on a free port; waits for its URL.
    async fn start(
        dir: &std::path::Path,
        name: &str,
        reader_url: &str,
        admin: Option<(&str, &std::path::Path)>,
    ) -> Result<Dashboard> {
        let log = dir.join(format!("{name}.log"));
        let mut args: Vec<String> = ["dashboard", "--listen", "127.0.0.1:0", "--refresh", "60"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let mut env = vec![
            ("DATABASE_URL".to_string(), reader_url.to_string()),
            ("VENUE_UPLOADER_LOG".into(), "debug".into()),
            ("VENUE_UPLOADER_LOG_FORMAT".into(), "json".into()),
        ];
        if let Some((admin_url, token_file)) = admin {
            args.push("--admin-token-file".into());
            args.push(token_file.display().to_string());
            env.push((
                "VENUE_DASHBOARD_ADMIN_DATABASE_URL".into(),
                admin_url.to_string(),
            ));
        }
        let mut process = Sidecar::spawn(&args, &env, &log)?;
        let base = process.dashboard_url(Duration::from_secs(20)).await?;
        Ok(Dashboard { process, base })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.process.log).unwrap_or_default()
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// The "as of" time a page shows.
fn as_of(html: &str) -> Option<String> {
    let at = html.find(r#"id="as-of">"#)? + r#"id="as-of">"#.len();
    Some(html[at..].split('<').next()?.to_string())
}

// ---- The browser ---------------------------------------------------------------------

/// `POST /session/{id}/se/log {"type": "browser"}`: chromedriver's console log.
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/se/log", session.unwrap_or_default()))
    }

    fn method_and_body(&self, _: &url::Url) -> (Method, Option<String>) {
        (Method::POST, Some(r#"{"type":"browser"}"#.into()))
    }
}

struct Browser {
    client: Client,
    _driver: Driver,
    shots: PathBuf,
    /// Console errors so far, with the page they came from.
    errors: Vec<String>,
    /// Every page's DOM, for the secret check.
    sources: Vec<(String, String)>,
}

impl Browser {
    async fn start() -> Result<Browser> {
        let driver = Driver::start().await?;
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(driver.capabilities())
            .connect(&driver.url)
            .await
            .context("opening a WebDriver session with headless Chromium")?;
        Ok(Browser {
            client,
            _driver: driver,
            shots: browser::screenshot_dir()?,
            errors: Vec::new(),
            sources: Vec::new(),
        })
    }

    /// The console entries since the last call.
    async fn console(&self) -> Result<Vec<Value>> {
        let v = self
            .client
            .issue_cmd(BrowserLog)
            .await
            .context("reading the browser's console log")?;
        let v = match v {
            Value::Object(mut o) if o.contains_key("value") => {
                o.remove("value").unwrap_or_default()
            }
            v => v,
        };
        Ok(v.as_array().cloned().unwrap_or_default())
    }

    /// Records the console errors of the page just shown, its DOM, and a screenshot of
    /// the whole page.
    async fn check(&mut self, name: &str) -> Result<()> {
        let url = self.client.current_url().await?.to_string();
        for e in self.console().await? {
            if browser::is_error(&e) {
                self.errors
                    .push(format!("{name} ({url}): {}", e["message"]));
            }
        }
        self.sources.push((url, self.client.source().await?));
        // The whole page: grow the window so that its viewport (the window less the
        // browser's own bars) holds the document's height, then shoot.
        let size = self
            .client
            .execute(
                "return [document.documentElement.scrollHeight, window.outerHeight - window.innerHeight]",
                vec![],
            )
            .await?;
        let h = size[0].as_u64().unwrap_or(900).clamp(600, 8000);
        let bars = size[1].as_u64().unwrap_or(0).min(400);
        self.client.set_window_size(1280, (h + bars) as u32).await?;
        let png = self.client.screenshot().await?;
        std::fs::write(self.shots.join(format!("{name}.png")), png)?;
        self.client.set_window_size(1280, 900).await?;
        Ok(())
    }

    /// Opens a page and checks it.
    async fn visit(&mut self, name: &str, url: &str) -> Result<()> {
        self.client.goto(url).await?;
        self.check(name).await
    }

    async fn text(&self, css: &str) -> Result<String> {
        let e = match self.client.find(Locator::Css(css)).await {
            Ok(e) => e,
            Err(err) => {
                let url = self.client.current_url().await?;
                bail!("no {css} on {url}: {err}");
            }
        };
        Ok(e.text().await?.trim().to_string())
    }

    async fn number(&self, css: &str) -> Result<i64> {
        let t = self.text(css).await?;
        t.replace(',', "")
            .parse()
            .with_context(|| format!("{css} shows {t:?}, not a number"))
    }

    async fn rows(&self, css: &str) -> Result<Vec<Vec<String>>> {
        let mut out = Vec::new();
        for tr in self.client.find_all(Locator::Css(css)).await? {
            let mut cells = Vec::new();
            for td in tr.find_all(Locator::Css("td")).await? {
                cells.push(td.text().await?.trim().to_string());
            }
            out.push(cells);
        }
        Ok(out)
    }

    /// Clicks the submit button of the form posting to `action` (inside `scope`), and
    /// waits for the page it leads to.
    async fn submit(&self, scope: &str, action: &str) -> Result<()> {
        let before = self.client.current_url().await?;
        let css = format!(r#"{scope} form[action="{action}"] button[type="submit"]"#);
        self.client
            .find(Locator::Css(&css))
            .await
            .with_context(|| format!("no button {css}"))?
            .click()
            .await?;
        // Wait for the next document (the redirect's target) to be complete.
        let start = Instant::now();
        loop {
            let url = self.client.current_url().await?;
            let ready = self
                .client
                .execute("return document.readyState", vec![])
                .await
                .ok()
                .and_then(|v| v.as_str().map(String::from));
            if url != before && ready.as_deref() == Some("complete") {
                break;
            }
            if start.elapsed() > Duration::from_secs(15) {
                bail!("no new page after submitting {action} (still at {url})");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }
}

// ---- The data --------------------------------------------------------------------------

async fn overview(pool: &PgPool) -> Result<Value> {
    Ok(
        sqlx::query_scalar("SELECT venue_images.venue_image_overview(50)")
            .fetch_one(pool)
            .await?,
    )
}

async fn queue_by_state(pool: &PgPool) -> Result<BTreeMap<String, i64>> {
    let rows = sqlx::query(
        "SELECT state, count(*) FROM venue_images.venue_image_retry_queue GROUP BY state",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .iter()
        .map(|r| (r.get::<String, _>(0), r.get::<i64, _>(1)))
        .collect())
}

/// How many scans have run.
async fn scans(pool: &PgPool) -> Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM venue_images.venue_image_scans")
            .fetch_one(pool)
            .await?,
    )
}

/// The whole retry queue, as text.
async fn queue_text(pool: &PgPool) -> Result<String> {
    Ok(sqlx::query_scalar(
        "SELECT coalesce(string_agg(q::text, E'\\n' ORDER BY job_id), '') FROM venue_images.venue_image_retry_queue q",
    )
    .fetch_one(pool)
    .await?)
}

/// A venue's jobs and images: what a refused action must leave as it was.
async fn venue_state(pool: &PgPool, venue: i64) -> Result<String> {
    Ok(sqlx::query_scalar(
        "SELECT coalesce((SELECT string_agg(q::text, E'\\n' ORDER BY q.job_id)
                            FROM venue_images.venue_image_retry_queue q WHERE q.venue_id = $1), '')
                || E'\\n' || (SELECT venue_images::text FROM venues WHERE id = $1)",
    )
    .bind(venue)
    .fetch_one(pool)
    .await?)
}

/// Fails unless the answer `r` refused the request with `status` and left `venue` as it
/// was (`before`, its [`venue_state`]).
async fn assert_refused(
    pool: &PgPool,
    r: reqwest::Response,
    status: u16,
    venue: i64,
    before: &str,
) -> Result<()> {
    assert_eq!(r.status(), status);
    assert_eq!(
        venue_state(pool, venue).await?,
        before,
        "refused requests change nothing"
    );
    Ok(())
}

fn fmt_pct(v: &Value) -> String {
    match v.as_f64() {
        Some(x) => format!("{x:.1}%"),
        None => "–".into(),
    }
}

fn plain(v: Option<&str>) -> String {
    v.map(String::from).unwrap_or_else(|| "(none)".into())
}

/// A venue with a secret in every string the application may put one in, and a
/// permanently failed image (never queued, so no uploader tries to download it).
async fn plant(pool: &PgPool) -> Result<i64> {
    let url = format!(
        "https://maps.googleapis.com/maps/api/place/photo?maxwidth=1600&photo_reference=PLANTEDREF&key={PLANTED}"
    );
    let images = json!([
        {"provider": "google_places", "provider_url": url, "url": url,
         "upload_status": "permanently_failed", "retry_count": 3,
         "error_details": {"error_type": "not_found", "status_code": 404,
                           "error": format!("{{:download_failed, \"GET {url} returned 404\"}}")}},
        {"provider": "google_places", "provider_url": format!("{url}&n=2"),
         "url": "https://ik.imagekit.io/demo/venues/planted/a.jpg", "upload_status": "uploaded",
         "imagekit_path": "/venues/planted/a.jpg"},
    ]);
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO venues (name, slug, city_id, venue_images) VALUES ($1, 'planted', 42, $2) RETURNING id",
    )
    .bind(format!("Planted <b>venue</b> key={PLANTED}"))
    .bind(images)
    .fetch_one(pool)
    .await?;
    // A leak into the attempt log (as if an older version had stored it unredacted):
    // the dashboard redacts again before showing anything.
    sqlx::query(
        "INSERT INTO venue_images.venue_image_attempts
                (venue_id, provider, provider_url, outcome, error_type, status_code, message, worker, retry_count)
         VALUES ($1, 'google_places', $2, 'permanently_failed', 'not_found', 404, $3, 'old-uploader', 3)",
    )
    .bind(id)
    .bind(&url)
    .bind(format!("GET {url} answered 404"))
    .execute(pool)
    .await?;
    Ok(id)
}

/// A recovery run of the real uploader against the fakes, the attempt log spread over a
/// month (as a month of runs would leave it), and the images still waiting for their
/// backoff kept waiting for the length of the test (so the queue's figures hold still).
async fn recovery_data(w: &World) -> Result<()> {
    db::seed(
        &w.db.url,
        &Shape {
            venues: 160,
            seed: 11,
            provider_base: Some(w.provider.base_url()),
            ..Shape::default()
        },
        false,
    )
    .await?;
    let (code, out) = command(w, &["scan"]).await?;
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = command(w, &["once", "--concurrency", "16", "--linger", "3"]).await?;
    assert_eq!(code, Some(0), "{out}");
    // 40% within the day, 30% within the week, 30% within the month; 17 minutes off
    // every range's edge, so that the page and the test count the same rows.
    sqlx::query(
        "UPDATE venue_images.venue_image_attempts
            SET at = at - interval '17 minutes' - CASE
                  WHEN (attempt_id * 7) % 10 < 4 THEN ((attempt_id * 13) % 23) * interval '1 hour'
                  WHEN (attempt_id * 7) % 10 < 7 THEN ((attempt_id * 13) % 6 + 1) * interval '1 day'
                                                      + ((attempt_id * 5) % 24) * interval '1 hour'
                  ELSE ((attempt_id * 13) % 22 + 7) * interval '1 day'
                       + ((attempt_id * 5) % 24) * interval '1 hour' END",
    )
    .execute(&w.db.pool)
    .await?;
    // Failures the application wrote after the run: queued by the trigger, due now; one
    // venue's images waiting for their backoff.
    let base = w.provider.base_url();
    for v in 0..4 {
        let images: Vec<Value> = (0..3)
            .map(|n| {
                failed(
                    &base,
                    ["foursquare", "here", "unsplash", "google_places"][v],
                    FakeRoute::Image,
                    &format!("late-{v}-{n}"),
                    n,
                )
            })
            .collect();
        let id = w.insert_venue(&format!("late-{v}"), &images).await?;
        if v == 0 {
            sqlx::query(
                "UPDATE venue_images.venue_image_jobs SET next_attempt_at = now() + interval '90 minutes'
                  WHERE venue_id = $1",
            )
            .bind(id)
            .execute(&w.db.pool)
            .await?;
        }
    }
    sqlx::query(
        "UPDATE venue_images.venue_image_jobs SET next_attempt_at = now() + interval '2 hours'
          WHERE next_attempt_at > now()",
    )
    .execute(&w.db.pool)
    .await?;
    // Pauses left by the fakes' 429s end within a second or two; end them now.
    sqlx::query("UPDATE venue_images.venue_image_providers SET paused_until = NULL")
        .execute(&w.db.pool)
        .await?;
    Ok(())
}

fn assert_no_secret(what: &str, text: &str) {
    for secret in [PLANTED, GOOGLE_KEY, IK_KEY, TOKEN] {
        assert!(
            !text.contains(secret),
            "{secret} in {what}:\n{}",
            text.lines()
                .find(|l| l.contains(secret))
                .unwrap_or_default()
        );
    }
}

// ---- The tests -------------------------------------------------------------------------

/// How long the whole browser walk may take. It takes about a minute; a Chromium or
/// chromedriver that stops answering would otherwise hang the suite until CI's limit.
const BROWSER_DEADLINE: Duration = Duration::from_secs(600);

#[tokio::test]
async fn dashboard_in_a_browser() -> Result<()> {
    tokio::time::timeout(BROWSER_DEADLINE, browser_walk())
        .await
        .with_context(|| {
            format!("the browser walk did not finish within {BROWSER_DEADLINE:?} (Chromium hung?)")
        })?
}

async fn browser_walk() -> Result<()> {
    let w = World::new("dash", ProviderConfig::default()).await?;
    recovery_data(&w).await?;
    let planted = plant(&w.db.pool).await?;
    let pool = w.db.pool.clone();
    let reader_url = w.db.login_url("venue_image_reader").await?;
    let token_file = w.dir.0.join("admin-token");
    std::fs::write(&token_file, format!("{TOKEN}\n"))?;
    let dash = Dashboard::start(
        &w.dir.0,
        "dashboard",
        &reader_url,
        Some((&w.admin_url, &token_file)),
    )
    .await?;
    let client = http();

    // Many viewers at once: one scan of the venues table, the same figures for all.
    let pages = (0..24).map(|i| {
        let url = dash.url(if i % 2 == 0 { "/" } else { "/failures" });
        let c = client.clone();
        async move { c.get(url).send().await?.text().await }
    });
    let htmls = futures_util::future::try_join_all(pages).await?;
    let first = as_of(&htmls[0]).context("no as-of on /")?;
    for h in &htmls {
        assert_eq!(
            as_of(h).as_deref(),
            Some(first.as_str()),
            "one load for every viewer"
        );
    }

    let mut b = Browser::start().await?;
    let o = overview(&pool).await?;
    let stats = &o["stats"];

    // Overview: tiles, queue, last scan.
    b.visit("01-overview", &dash.url("/")).await?;
    for (css, key) in [
        ("#tile-venues-with-failures", "venues_with_failures"),
        ("#tile-failed-images", "failed_images"),
        ("#tile-uploaded-images", "uploaded_images_of_failing_venues"),
        ("#venues-transient", "venues_with_transient"),
        ("#venues-permanent", "venues_with_permanent"),
        ("#venues-ambiguous", "venues_with_ambiguous"),
    ] {
        assert_eq!(b.number(css).await?, stats[key].as_i64().unwrap(), "{css}");
    }
    assert_eq!(
        b.text("#tile-failure-rate").await?,
        fmt_pct(&stats["average_failure_rate"])
    );
    let q = queue_by_state(&pool).await?;
    assert!(
        q.get("due").copied().unwrap_or(0) > 0 && q.get("waiting").copied().unwrap_or(0) > 0,
        "{q:?}"
    );
    for state in ["due", "waiting", "leased", "paused"] {
        assert_eq!(
            b.number(&format!("#queue-{state}")).await?,
            q.get(state).copied().unwrap_or(0),
            "{state}"
        );
    }
    assert_eq!(
        b.number("#images-in-flight").await?,
        q.get("leased").copied().unwrap_or(0)
    );
    let scan: (i64, i64) = sqlx::query_as(
        "SELECT images_queued, finalized FROM venue_images.venue_image_scans ORDER BY started_at DESC LIMIT 1",
    )
    .fetch_one(&pool)
    .await?;
    assert_eq!(b.number("#scan-images-queued").await?, scan.0);
    assert_eq!(b.number("#scan-finalized").await?, scan.1);
    // Read-only for a visitor without the token: no action forms.
    assert!(b
        .client
        .find_all(Locator::Css("form.action"))
        .await?
        .is_empty());

    // Failures: the whole breakdown in the table, in order.
    b.visit("02-failures", &dash.url("/failures")).await?;
    let rows = b.rows("#breakdown tbody tr").await?;
    let breakdown = stats["breakdown"].as_array().unwrap();
    assert!(!breakdown.is_empty());
    assert_eq!(rows.len(), breakdown.len());
    for (row, want) in rows.iter().zip(breakdown) {
        assert_eq!(row[0], plain(want["provider"].as_str()));
        assert_eq!(row[1], plain(want["error_type"].as_str()));
        assert_eq!(row[2], want["error_class"].as_str().unwrap());
        assert_eq!(row[3].replace(',', ""), want["count"].to_string());
    }
    assert_eq!(
        b.client
            .find_all(Locator::Css("svg.chart g rect"))
            .await?
            .len(),
        breakdown.len().min(20)
    );

    // Recovery over each range: the report's total row.
    for (i, (range, since)) in [("24h", "24 hours"), ("7d", "7 days"), ("30d", "30 days")]
        .iter()
        .enumerate()
    {
        b.visit(
            &format!("0{}-recovery-{range}", 3 + i),
            &dash.url(&format!("/recovery?range={range}")),
        )
        .await?;
        let report = sqlx::query(
            "SELECT attempts, recovered, success_rate_pct, api_calls_saved, permanent_failures
               FROM venue_images.venue_image_retry_report($1::interval)
              WHERE provider IS NULL AND error_type IS NULL LIMIT 1",
        )
        .bind(since)
        .fetch_one(&pool)
        .await?;
        for (css, column) in [
            ("#rec-attempts", 0),
            ("#rec-recovered", 1),
            ("#rec-api-calls-saved", 3),
            ("#rec-permanent", 4),
        ] {
            assert_eq!(
                b.number(css).await?,
                report.get::<i64, _>(column),
                "{range}: {css}"
            );
        }
        assert_eq!(
            b.text("#rec-success-rate").await?,
            fmt_pct(&json!(report.get::<Option<f64>, _>(2))),
            "{range}"
        );
        if *range == "30d" {
            assert!(report.get::<i64, _>(0) > 0, "the run left attempts");
        }
    }

    // Venues: the high-priority list, and a search by id.
    b.visit("06-venues", &dash.url("/venues")).await?;
    let ids = db::high_priority_ids(&o);
    let mut shown = Vec::new();
    for tr in b
        .client
        .find_all(Locator::Css("#high-priority tbody tr"))
        .await?
    {
        shown.push(
            tr.attr("data-venue")
                .await?
                .unwrap_or_default()
                .parse::<i64>()?,
        );
    }
    assert_eq!(shown, ids);
    let busiest = ids[0];
    b.visit(
        "07-venues-search",
        &dash.url(&format!("/venues?q={busiest}")),
    )
    .await?;
    let href = b
        .client
        .find(Locator::Css("#search-results tbody tr a"))
        .await?
        .attr("href")
        .await?;
    assert_eq!(href.as_deref(), Some(format!("/venues/{busiest}").as_str()));

    // A venue: every image, every attempt.
    for (name, id) in [("08-venue", busiest), ("09-venue-planted-secret", planted)] {
        b.visit(name, &dash.url(&format!("/venues/{id}"))).await?;
        let images: i64 =
            sqlx::query_scalar("SELECT count(*) FROM venue_images.venue_image_venue_images($1)")
                .bind(id)
                .fetch_one(&pool)
                .await?;
        let attempts: i64 = sqlx::query_scalar(
            "SELECT least(count(*), 100) FROM venue_images.venue_image_attempts WHERE venue_id = $1",
        )
        .bind(id)
        .fetch_one(&pool)
        .await?;
        assert_eq!(
            b.rows("#images tbody tr").await?.len() as i64,
            images,
            "{name}"
        );
        if attempts > 0 {
            assert_eq!(
                b.rows("#attempts tbody tr").await?.len() as i64,
                attempts,
                "{name}"
            );
        }
    }
    let planted_page = b.client.source().await?;
    assert!(
        planted_page.contains("key=REDACTED"),
        "the planted key is shown redacted"
    );
    assert!(!planted_page.contains("<b>venue</b>"), "names are escaped");

    // Force retry without the token, with a wrong one, without the CSRF token: refused,
    // and the venue and its jobs are as they were.
    let (venue_a, venue_b): (i64, i64) = {
        let v: Vec<i64> = sqlx::query_scalar(
            "SELECT DISTINCT venue_id FROM venue_images.venue_image_attempts
              WHERE outcome = 'permanently_failed' AND venue_id <> $1 ORDER BY venue_id LIMIT 2",
        )
        .bind(planted)
        .fetch_all(&pool)
        .await?;
        assert!(
            v.len() == 2,
            "the run left permanently failed images: {v:?}"
        );
        (v[0], v[1])
    };
    let before = venue_state(&pool, venue_a).await?;
    let path = dash.url(&format!("/venues/{venue_a}/force-retry"));
    let r = client.post(&path).form(&[("csrf", "0")]).send().await?;
    assert_refused(&pool, r, 401, venue_a, &before).await?;
    let r = client
        .post(&path)
        .bearer_auth("dashboard-test-admin-token-WRONG")
        .send()
        .await?;
    assert_refused(&pool, r, 403, venue_a, &before).await?;

    // Log in through the form: a wrong token first.
    b.client
        .goto(&dash.url(&format!("/login?next=/venues/{venue_a}")))
        .await?;
    b.check("10-login").await?;
    b.client
        .find(Locator::Css("#token"))
        .await?
        .send_keys("not-the-token")
        .await?;
    b.submit("", "/login").await?;
    let refusal = b.text(".notice-error").await?;
    assert!(refusal.contains("not the admin token"), "{refusal}");
    // The 401 of that answer is the one console error we expect.
    let seen: Vec<Value> = b
        .console()
        .await?
        .into_iter()
        .filter(browser::is_error)
        .collect();
    assert!(
        !seen.is_empty(),
        "the console log is read (the 401 is in it)"
    );
    for e in &seen {
        assert!(
            e["message"].as_str().unwrap_or("").contains("401"),
            "unexpected console error {e}"
        );
    }
    b.client
        .find(Locator::Css("#token"))
        .await?
        .send_keys(TOKEN)
        .await?;
    b.submit("", "/login").await?;
    assert!(b
        .client
        .current_url()
        .await?
        .path()
        .ends_with(&format!("/venues/{venue_a}")));
    b.check("11-venue-admin").await?;

    // The session cookie without the form's CSRF token: refused.
    let cookie = b
        .client
        .get_all_cookies()
        .await?
        .into_iter()
        .find(|c| c.name() == "vi_dashboard_session")
        .context("no session cookie")?;
    assert_eq!(cookie.http_only(), Some(true));
    let session = format!("vi_dashboard_session={}", cookie.value());
    let r = client
        .post(&path)
        .header("cookie", &session)
        .form(&[("csrf", "f".repeat(64))])
        .send()
        .await?;
    assert_refused(&pool, r, 403, venue_a, &before).await?;

    // With the token, through the UI: the venue's failed images are due.
    b.submit("", &format!("/venues/{venue_a}/force-retry"))
        .await?;
    assert!(b
        .text(".notice-ok")
        .await?
        .contains("queued for one more attempt"));
    b.check("12-venue-after-force-retry").await?;
    let after = sqlx::query(
        "SELECT i.upload_status, i.job_state FROM venue_images.venue_image_venue_images($1) i
          WHERE i.upload_status IN ('failed', 'permanently_failed')",
    )
    .bind(venue_a)
    .fetch_all(&pool)
    .await?;
    assert!(!after.is_empty());
    for r in &after {
        assert_eq!(
            r.get::<Option<String>, _>(1).as_deref(),
            Some("due"),
            "every failed image of venue {venue_a} is due"
        );
    }
    let forced: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM venue_images.venue_image_retry_queue
          WHERE venue_id = $1 AND state = 'due' AND forced",
    )
    .bind(venue_a)
    .fetch_one(&pool)
    .await?;
    assert!(forced > 0);

    // One image of another venue.
    let index: i32 = sqlx::query_scalar(
        "SELECT element_index FROM venue_images.venue_image_venue_images($1)
          WHERE upload_status = 'permanently_failed' ORDER BY element_index LIMIT 1",
    )
    .bind(venue_b)
    .fetch_one(&pool)
    .await?;
    b.client
        .goto(&dash.url(&format!("/venues/{venue_b}")))
        .await?;
    b.check("13-venue-b-admin").await?;
    b.submit(
        &format!("tr#image-{index}"),
        &format!("/venues/{venue_b}/images/{index}/force-retry"),
    )
    .await?;
    assert!(b
        .text(".notice-ok")
        .await?
        .contains(&format!("Image #{index} queued")));
    let state: Option<String> = sqlx::query_scalar(
        "SELECT job_state FROM venue_images.venue_image_venue_images($1) WHERE element_index = $2",
    )
    .bind(venue_b)
    .bind(index)
    .fetch_one(&pool)
    .await?;
    assert_eq!(state.as_deref(), Some("due"));

    // Pause and resume a provider, run the scan: through the overview's forms.
    b.visit("14-overview-admin", &dash.url("/")).await?;
    b.client
        .find(Locator::Css(
            r#"tr[data-provider="here"] input[name="reason"]"#,
        ))
        .await?
        .send_keys("maintenance window")
        .await?;
    b.submit(r#"tr[data-provider="here"]"#, "/providers/pause")
        .await?;
    assert!(b.text(".notice-ok").await?.contains("paused"));
    let paused: Option<String> = sqlx::query_scalar(
        "SELECT pause_reason FROM venue_images.venue_image_provider_status
          WHERE provider = 'here' AND paused_until > now() + interval '50 minutes'",
    )
    .fetch_optional(&pool)
    .await?
    .flatten();
    assert_eq!(paused.as_deref(), Some("maintenance window"));
    b.check("15-overview-provider-paused").await?;
    assert!(b
        .text(r#"tr[data-provider="here"]"#)
        .await?
        .contains("maintenance window"));
    b.submit(r#"tr[data-provider="here"]"#, "/providers/resume")
        .await?;
    assert!(b.text(".notice-ok").await?.contains("resumed"));
    let still: Option<i64> = sqlx::query_scalar(
        "SELECT 1::bigint FROM venue_images.venue_image_provider_status WHERE provider = 'here' AND paused_until IS NOT NULL",
    )
    .fetch_optional(&pool)
    .await?;
    assert_eq!(still, None);
    let scans_before = scans(&pool).await?;
    b.submit("", "/scan").await?;
    assert!(b.text(".notice-ok").await?.starts_with("Scan done"));
    b.check("16-overview-after-scan").await?;
    assert_eq!(scans(&pool).await?, scans_before + 1);

    // Purge the planted venue's permanently failed image (it stays, redacted, in the log).
    b.client
        .goto(&dash.url(&format!("/venues/{planted}")))
        .await?;
    b.client
        .find(Locator::Css(r#"input[name="confirm"]"#))
        .await?
        .click()
        .await?;
    b.submit("", &format!("/venues/{planted}/purge")).await?;
    assert!(b
        .text(".notice-ok")
        .await?
        .starts_with("1 permanently failed image removed"));
    b.check("17-venue-after-purge").await?;
    let left: i64 = sqlx::query_scalar(
        "SELECT jsonb_array_length(venue_images)::bigint FROM venues WHERE id = $1",
    )
    .bind(planted)
    .fetch_one(&pool)
    .await?;
    assert_eq!(left, 1);

    // No console error on any page (the login's expected 401 was taken out above).
    assert!(
        b.errors.is_empty(),
        "console errors:\n{}",
        b.errors.join("\n")
    );
    // And the check would see one: an inline style is refused by the CSP, and said so.
    b.client.goto(&dash.url("/")).await?;
    b.console().await?;
    b.client
        .execute(
            "document.body.insertAdjacentHTML('beforeend', '<p style=\"color: red\">inline</p>')",
            vec![],
        )
        .await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let csp: Vec<Value> = b.console().await?;
    assert!(
        csp.iter().any(|e| browser::is_error(e)
            && e["message"]
                .as_str()
                .unwrap_or("")
                .contains("Content Security Policy")),
        "a CSP violation shows as a console error: {csp:?}"
    );

    // The planted secret: in no page, no HTML as served, no JSON, no log line.
    for (url, html) in &b.sources {
        assert_no_secret(&format!("the page {url}"), html);
    }
    for path in [
        "/".to_string(),
        "/failures".into(),
        "/recovery?range=30d".into(),
        "/venues".into(),
        format!("/venues/{planted}"),
        format!("/venues?q={planted}"),
        "/venues?q=Planted".into(),
        "/api/overview".into(),
        "/api/recovery?range=30d".into(),
        format!("/api/venues/{planted}"),
    ] {
        for auth in [None, Some(TOKEN)] {
            let mut req = client.get(dash.url(&path));
            if let Some(t) = auth {
                req = req.bearer_auth(t);
            }
            let r = req.send().await?;
            assert_eq!(r.status(), 200, "{path}");
            let csp = r.headers()["content-security-policy"].to_str()?.to_string();
            assert!(csp.starts_with("default-src 'none'"), "{path}: {csp}");
            let body = r.text().await?;
            assert_no_secret(&format!("GET {path}"), &body);
            if path.starts_with("/api/") {
                serde_json::from_str::<Value>(&body)
                    .with_context(|| format!("{path} is not JSON"))?;
            }
        }
    }
    let api: Value = client
        .get(dash.url("/api/overview"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(
        api["stats"]["venues_with_failures"],
        stats["venues_with_failures"]
    );
    let log = dash.log();
    assert!(
        log.contains("dashboard: admin action"),
        "actions are logged"
    );
    assert_no_secret("the dashboard's log", &log);

    b.client.close().await?;
    drop(dash);
    w.finish().await
}

#[tokio::test]
async fn read_only_without_a_token_file() -> Result<()> {
    let db = TestDb::seeded("dashro", 60, 5).await?;
    sqlx::query("SELECT * FROM venue_images.venue_image_cleanup_scan()")
        .execute(&db.pool)
        .await?;
    let dir = venue_images_tests::world::tempdir::Dir::new("dashro");
    let reader = db.login_url("venue_image_reader").await?;
    let dash = Dashboard::start(&dir.0, "dashboard", &reader, None).await?;
    let client = http();
    let pages = [
        "/",
        "/failures",
        "/recovery?range=7d",
        "/venues",
        "/venues/1",
    ];
    for path in pages {
        let r = client.get(dash.url(path)).send().await?;
        assert_eq!(r.status(), 200, "{path}");
        let html = r.text().await?;
        assert!(
            !html.contains("<form class=\"action\""),
            "{path} has an action form"
        );
        assert!(!html.contains("/login"), "{path} offers a login");
        assert!(html.contains("read-only"), "{path}");
    }
    let login = client.get(dash.url("/login")).send().await?;
    assert_eq!(login.status(), 403, "nothing to log in to");
    let before = (scans(&db.pool).await?, queue_text(&db.pool).await?);
    for path in [
        "/scan",
        "/venues/1/force-retry",
        "/venues/1/purge",
        "/providers/pause",
    ] {
        let r = client
            .post(dash.url(path))
            .bearer_auth("any-token-at-all")
            .form(&[("provider", "here"), ("minutes", "60"), ("confirm", "yes")])
            .send()
            .await?;
        assert_eq!(r.status(), 403, "{path}");
    }
    assert_eq!(
        (scans(&db.pool).await?, queue_text(&db.pool).await?),
        before,
        "refused actions change nothing"
    );
    let health = client.get(dash.url("/healthz")).send().await?;
    assert_eq!(health.status(), 200);
    drop(dash);
    db.drop().await
}

#[test]
fn the_sidecar_binary_is_built() {
    // A clear message instead of a confusing failure in the tests above.
    sidecar::uploader_bin().expect("venue-image-uploader is built next to the tests");
}
