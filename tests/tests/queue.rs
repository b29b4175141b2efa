//! The retry queue against a real PostgreSQL with several connections: exclusive
//! claims, fencing by lease token, the application's concurrent writes, the retry cap,
//! pacing and pauses, least privilege.
//!
//! Needs `DATABASE_URL` (scripts/test.sh starts a private cluster).

use anyhow::Result;
use sqlx::{Connection, Executor, PgConnection, PgPool, Row};
use std::collections::HashSet;
use std::future::Future;
use std::time::Duration;
use venue_images_tests::db::{self, sqlstate, TestDb};
use venue_images_tests::site::one;

const G: &str = "https://maps.googleapis.com/maps/api/place/photo?maxwidth=1600&photo_reference=REF{}&key=SECRETKEY";

fn image(n: usize, provider: &str, retry_count: i64) -> String {
    format!(
        r#"{{"provider": "{provider}", "provider_url": "{url}", "url": "{url}", "upload_status": "failed", "retry_count": {retry_count},
            "error_details": {{"error_type": "rate_limited", "status_code": 429}}, "attribution": "a{n}", "position": {n}}}"#,
        url = G.replace("{}", &n.to_string())
    )
}

/// Creates `venues` venues with `per_venue` retryable images each and queues them.
async fn queued(t: &TestDb, venues: usize, per_venue: usize, provider: &str) -> Result<()> {
    let mut conn = t.pool.acquire().await?;
    for v in 0..venues {
        let imgs: Vec<String> = (0..per_venue)
            .map(|i| image(v * 1000 + i, provider, 0))
            .collect();
        sqlx::query("INSERT INTO venues (name, slug, venue_images) VALUES ($1, $2, $3::jsonb)")
            .bind(format!("Venue {v}"))
            .bind(format!("venue-{v}"))
            .bind(format!("[{}]", imgs.join(",")))
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// A database with [`queued`]'s venues and every provider unpaced.
async fn unpaced_backlog(
    tag: &str,
    venues: usize,
    per_venue: usize,
    provider: &str,
) -> Result<TestDb> {
    let t = TestDb::new(tag).await?;
    queued(&t, venues, per_venue, provider).await?;
    t.unlimited_rates().await?;
    Ok(t)
}

/// An [`unpaced_backlog`] of images of `here`, all claimed by one worker: the database,
/// the worker's connection and its claims.
async fn claimed_backlog(
    tag: &str,
    venues: usize,
    per_venue: usize,
) -> Result<(TestDb, PgConnection, Vec<Claim>)> {
    let t = unpaced_backlog(tag, venues, per_venue, "here").await?;
    let mut c = PgConnection::connect(&t.url).await?;
    let n = venues * per_venue;
    let jobs = claim(&mut c, "w", n as i32, 60).await?;
    assert_eq!(jobs.len(), n, "every image is claimed");
    Ok((t, c, jobs))
}

/// Runs `work` in `n` concurrent tasks, each given its number and a connection of its
/// own to `url`; returns what each returned, in order.
async fn workers<T, F, Fut>(url: &str, n: i64, work: F) -> Result<Vec<T>>
where
    F: Fn(i64, PgConnection) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<T>> + Send,
    T: Send + 'static,
{
    let tasks: Vec<_> = (0..n)
        .map(|w| {
            let (url, work) = (url.to_string(), work.clone());
            tokio::spawn(async move { work(w, PgConnection::connect(&url).await?).await })
        })
        .collect();
    let mut done = Vec::new();
    for task in tasks {
        done.push(task.await??);
    }
    Ok(done)
}

/// Fails unless `result` (of `what`) is a database error with one of these SQLSTATEs.
fn assert_fails_with<T: std::fmt::Debug>(result: sqlx::Result<T>, codes: &[&str], what: &str) {
    let err = result.expect_err(what);
    let code = sqlstate(&err);
    assert!(
        codes.contains(&code.as_deref().unwrap_or_default()),
        "{what}: {err}"
    );
}

#[derive(Debug, Clone)]
struct Claim {
    job_id: i64,
    /// Lease tokens travel as text between the test and the database.
    token: String,
    venue_id: i64,
    provider_url: String,
    attempt: i32,
    /// `not_before` as epoch milliseconds.
    not_before_ms: f64,
}

async fn claim(conn: &mut PgConnection, worker: &str, n: i32, lease: i32) -> Result<Vec<Claim>> {
    let rows = sqlx::query(
        "SELECT job_id, lease_token::text, venue_id, provider_url, attempt,
                extract(epoch FROM not_before)::float8 * 1000
           FROM venue_image_claim($1, $2, $3)",
    )
    .bind(worker)
    .bind(n)
    .bind(lease)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .iter()
        .map(|r| Claim {
            job_id: r.get(0),
            token: r.get(1),
            venue_id: r.get(2),
            provider_url: r.get(3),
            attempt: r.get(4),
            not_before_ms: r.get(5),
        })
        .collect())
}

async fn success(conn: &mut PgConnection, c: &Claim) -> Result<bool> {
    Ok(sqlx::query_scalar(
        "SELECT venue_image_record_success($1, $2::uuid, 'https://ik.imagekit.io/d/x.jpg', '/venues/x.jpg', 'fid')",
    )
    .bind(c.job_id)
    .bind(&c.token)
    .fetch_one(&mut *conn)
    .await?)
}

async fn failure(conn: &mut PgConnection, c: &Claim, error_type: &str) -> Result<Option<String>> {
    Ok(sqlx::query_scalar(
        "SELECT venue_image_record_failure($1, $2::uuid, $3, 503, 'HTTP 503 from ' || $4, 0)",
    )
    .bind(c.job_id)
    .bind(&c.token)
    .bind(error_type)
    .bind(&c.provider_url)
    .fetch_one(&mut *conn)
    .await?)
}

/// The element of a venue with this provider URL.
async fn element(pool: &PgPool, venue_id: i64, url: &str) -> Result<serde_json::Value> {
    let v: serde_json::Value = sqlx::query_scalar(
        "SELECT e FROM venues v, jsonb_array_elements(v.venue_images) e WHERE v.id = $1 AND e->>'provider_url' = $2",
    )
    .bind(venue_id)
    .bind(url)
    .fetch_one(pool)
    .await?;
    Ok(v)
}

#[tokio::test]
async fn concurrent_claimers_never_share_an_image() -> Result<()> {
    let t = unpaced_backlog("claimers", 40, 10, "google_places").await?;
    let queued: i64 = t.scalar("SELECT count(*) FROM venue_image_jobs").await?;
    assert_eq!(
        queued, 400,
        "the trigger queued every new transient failure"
    );
    let all: Vec<i64> = workers(&t.url, 8, |w, mut conn| async move {
        let mut mine = Vec::new();
        loop {
            let got = claim(&mut conn, &format!("w{w}"), 7, 300).await?;
            if got.is_empty() {
                break;
            }
            mine.extend(got.into_iter().map(|c| c.job_id));
        }
        Ok(mine)
    })
    .await?
    .concat();
    let unique: HashSet<i64> = all.iter().copied().collect();
    assert_eq!(
        all.len(),
        unique.len(),
        "an image was handed to two claimers"
    );
    assert_eq!(all.len(), 400);
    t.drop().await
}

#[tokio::test]
async fn stale_tokens_are_refused_after_expiry_and_reclaim() -> Result<()> {
    let t = unpaced_backlog("stale", 1, 1, "here").await?;
    let mut a = PgConnection::connect(&t.url).await?;
    let mut b = PgConnection::connect(&t.url).await?;
    let first = claim(&mut a, "a", 1, 1).await?.remove(0);
    assert!(
        claim(&mut b, "b", 1, 60).await?.is_empty(),
        "leased images are not claimable"
    );
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    // The crashed worker's lease expired: the image is claimable again, and the expiry
    // did not burn an attempt.
    let second = claim(&mut b, "b", 1, 60).await?.remove(0);
    assert_eq!(second.job_id, first.job_id);
    assert_eq!(second.attempt, first.attempt);
    assert!(!success(&mut a, &first).await?, "stale success accepted");
    assert_eq!(
        failure(&mut a, &first, "server_error").await?,
        None,
        "stale failure accepted"
    );
    let extended: Option<bool> =
        sqlx::query_scalar("SELECT venue_image_extend_lease($1, $2::uuid, 60)")
            .bind(first.job_id)
            .bind(&first.token)
            .fetch_one(&mut a)
            .await?;
    assert_eq!(extended, Some(false), "a stale heartbeat is refused");
    let e = element(&t.pool, first.venue_id, &first.provider_url).await?;
    assert_eq!(
        e["upload_status"], "failed",
        "a stale write changed the image"
    );
    assert_eq!(e["retry_count"], 0);
    assert!(success(&mut b, &second).await?);
    let e = element(&t.pool, second.venue_id, &second.provider_url).await?;
    assert_eq!(e["upload_status"], "uploaded");
    assert_eq!(e["retry_count"], 1);
    // Released leases are claimable at once, unattempted.
    t.drop().await
}

#[tokio::test]
async fn application_writes_during_write_back_are_never_lost() -> Result<()> {
    let (t, mut worker, jobs) = claimed_backlog("appwrites", 1, 3).await?;
    let venue = jobs[0].venue_id;

    // The application appends an image and renames the venue inside a transaction that
    // is still open while the write-back runs: the write-back waits for the row lock,
    // then patches the application's version.
    let mut app = PgConnection::connect(&t.url).await?;
    app.execute("BEGIN").await?;
    sqlx::query(
        r#"UPDATE venues SET name = 'renamed',
             venue_images = venue_images || '[{"provider_url": "https://app/new.jpg", "upload_status": "uploaded", "from": "app"}]'
           WHERE id = $1"#,
    )
    .bind(venue)
    .execute(&mut app)
    .await?;
    let j0 = jobs[0].clone();
    let url = t.url.clone();
    let wb = tokio::spawn(async move {
        let mut c = PgConnection::connect(&url).await?;
        success(&mut c, &j0).await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !wb.is_finished(),
        "write-back must wait for the application's row lock"
    );
    app.execute("COMMIT").await?;
    assert!(wb.await??);

    // The application removes an image while its retry is in flight.
    sqlx::query(
        "UPDATE venues SET venue_images = (SELECT jsonb_agg(e) FROM jsonb_array_elements(venue_images) e WHERE e->>'provider_url' <> $2) WHERE id = $1",
    )
    .bind(venue)
    .bind(&jobs[1].provider_url)
    .execute(&t.pool)
    .await?;
    assert_eq!(
        failure(&mut worker, &jobs[1], "server_error")
            .await?
            .as_deref(),
        Some("superseded")
    );
    assert!(success(&mut worker, &jobs[2]).await?);

    let (name, images): (String, serde_json::Value) =
        sqlx::query_as("SELECT name, venue_images FROM venues WHERE id = $1")
            .bind(venue)
            .fetch_one(&t.pool)
            .await?;
    assert_eq!(name, "renamed");
    let arr = images.as_array().unwrap();
    assert_eq!(arr.len(), 3, "{images}");
    assert!(
        arr.iter().any(|e| e["from"] == "app"),
        "the application's image was lost"
    );
    assert!(
        !arr.iter()
            .any(|e| e["provider_url"] == jobs[1].provider_url.as_str()),
        "a removed image came back"
    );
    for j in [&jobs[0], &jobs[2]] {
        let e = arr
            .iter()
            .find(|e| e["provider_url"] == j.provider_url.as_str())
            .unwrap();
        assert_eq!(e["upload_status"], "uploaded");
        assert!(
            e["attribution"].is_string() && e["position"].is_number(),
            "keys lost: {e}"
        );
        assert!(e.get("error_details").is_none());
    }
    let superseded: i64 = t
        .scalar("SELECT count(*) FROM venue_image_attempts WHERE outcome = 'superseded'")
        .await?;
    assert_eq!(superseded, 1);
    t.drop().await
}

#[tokio::test]
async fn retry_cap_and_permanent_errors() -> Result<()> {
    let (t, mut c, jobs) = claimed_backlog("cap", 1, 2).await?;
    c.execute("SET venue_images.retry_base_seconds = 0").await?;
    let (transient, permanent) = (&jobs[0], &jobs[1]);
    // A permanent error finalises at once.
    assert_eq!(
        failure(&mut c, permanent, "not_found").await?.as_deref(),
        Some("permanently_failed")
    );
    let e = element(&t.pool, permanent.venue_id, &permanent.provider_url).await?;
    assert_eq!(e["retry_count"], 1);
    assert!(e["finalized_at"].is_string());
    assert_eq!(e["error_details"]["retry_attempt"], 1);
    // A transient error is retried until retry_count reaches max_retries (3), exactly.
    let mut job = transient.clone();
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(failure(&mut c, &job, "service_unavailable").await?.unwrap());
        let next = claim(&mut c, "w", 2, 60).await?;
        if let Some(n) = next.into_iter().next() {
            assert_eq!(n.attempt as usize, statuses.len() + 1);
            job = n;
        }
    }
    assert_eq!(statuses, ["failed", "failed", "permanently_failed"]);
    let e = element(&t.pool, transient.venue_id, &transient.provider_url).await?;
    assert_eq!(e["retry_count"], 3);
    assert_eq!(e["upload_status"], "permanently_failed");
    // The key of the provider URL never reaches the queue's own tables.
    let leaked: i64 = t
        .scalar(
            "SELECT (SELECT count(*) FROM venue_image_attempts a WHERE a::text LIKE '%SECRETKEY%')
              + (SELECT count(*) FROM venue_image_jobs j WHERE j::text LIKE '%SECRETKEY%')
              + (SELECT count(*) FROM venues v, jsonb_array_elements(v.venue_images) e
                  WHERE (e->'error_details')::text LIKE '%SECRETKEY%')",
        )
        .await?;
    assert_eq!(leaked, 0);
    assert!(
        claim(&mut c, "w", 5, 60).await?.is_empty(),
        "nothing left to retry"
    );
    let over: i64 = t.scalar("SELECT count(*) FROM venues v, jsonb_array_elements(v.venue_images) e WHERE (e->>'retry_count')::int > 3").await?;
    assert_eq!(over, 0);
    t.drop().await
}

#[tokio::test]
async fn retry_count_never_exceeds_the_maximum_under_contention() -> Result<()> {
    let t = unpaced_backlog("contention", 10, 5, "foursquare").await?;
    workers(&t.url, 6, |w, mut conn| async move {
        conn.execute("SET venue_images.retry_base_seconds = 0")
            .await?;
        let mut idle = 0;
        while idle < 5 {
            let got = claim(&mut conn, &format!("w{w}"), 3, 1).await?;
            if got.is_empty() {
                idle += 1;
                tokio::time::sleep(Duration::from_millis(30)).await;
                continue;
            }
            idle = 0;
            for (i, c) in got.iter().enumerate() {
                // Some leases run out before the outcome is written.
                if (c.job_id + i as i64 + w) % 7 == 0 {
                    tokio::time::sleep(Duration::from_millis(1_100)).await;
                }
                let _ = failure(&mut conn, c, "gateway_timeout").await?;
            }
        }
        Ok(())
    })
    .await?;
    let (max, n, perm): (i32, i64, i64) = sqlx::query_as(
        "SELECT max((e->>'retry_count')::int), count(*), count(*) FILTER (WHERE e->>'upload_status' = 'permanently_failed')
           FROM venues v, jsonb_array_elements(v.venue_images) e",
    )
    .fetch_one(&t.pool)
    .await?;
    assert_eq!(n, 50, "images lost");
    assert_eq!(max, 3);
    assert_eq!(perm, 50);
    let attempts: i64 = t.scalar("SELECT count(*) FROM venue_image_attempts WHERE outcome IN ('failed', 'permanently_failed')").await?;
    assert_eq!(
        attempts, 150,
        "exactly max_retries attempts per image were recorded"
    );
    t.drop().await
}

#[tokio::test]
async fn pacing_and_pauses_hold_across_workers() -> Result<()> {
    let t = TestDb::new("pacing").await?;
    queued(&t, 4, 10, "google_places").await?;
    // google_places: 2 per second by default. Four workers claim at once; their slots
    // together must be half a second apart.
    let mut slots: Vec<f64> = workers(&t.url, 4, |w, mut conn| async move {
        // A claimer that meets a provider being paced by another one skips it (it never
        // waits), so each worker retries until it has its share.
        let mut mine = Vec::new();
        for _ in 0..200 {
            let want = 5 - mine.len() as i32;
            if want == 0 {
                break;
            }
            mine.extend(claim(&mut conn, &format!("w{w}"), want, 20).await?);
        }
        Ok(mine
            .into_iter()
            .map(|c| c.not_before_ms)
            .collect::<Vec<_>>())
    })
    .await?
    .concat();
    slots.sort_by(f64::total_cmp);
    assert_eq!(slots.len(), 20);
    for w in slots.windows(2) {
        assert!(w[1] - w[0] >= 499.0, "slots {:.0} ms apart", w[1] - w[0]);
    }
    // A paused provider is skipped by everyone, and '*' pauses all.
    let mut c = PgConnection::connect(&t.url).await?;
    c.execute(
        "SELECT venue_images.venue_image_set_provider_rate('google_places', 'Infinity');
         SELECT venue_image_pause_provider('google_places', now() + interval '1 hour', '429 storm')",
    )
    .await?;
    assert!(claim(&mut c, "w", 10, 60).await?.is_empty());
    let state: String = one(
        &mut c,
        "SELECT state FROM venue_image_retry_queue WHERE leased_by IS NULL LIMIT 1",
    )
    .await?;
    assert_eq!(state, "paused");
    c.execute(
        "UPDATE venue_image_providers SET paused_until = NULL;
         SELECT venue_image_pause_provider('*', now() + interval '1 hour', 'imagekit 429')",
    )
    .await?;
    assert!(claim(&mut c, "w", 10, 60).await?.is_empty());
    c.execute("UPDATE venue_image_providers SET paused_until = NULL")
        .await?;
    assert_eq!(claim(&mut c, "w", 10, 60).await?.len(), 10);
    t.drop().await
}

#[tokio::test]
async fn the_uploader_role_can_run_a_cycle_but_not_update_venues() -> Result<()> {
    let t = unpaced_backlog("role", 1, 2, "here").await?;
    let login = format!("vi_uploader_{}", std::process::id());
    t.pool
        .execute(
            format!(
                "DROP ROLE IF EXISTS {login}; CREATE ROLE {login} LOGIN IN ROLE venue_image_uploader"
            )
            .as_str(),
        )
        .await?;
    let mut c = PgConnection::connect(&db::with_user(&t.url, &login)?).await?;
    let jobs = claim(&mut c, "restricted", 2, 60).await?;
    assert_eq!(jobs.len(), 2);
    assert!(success(&mut c, &jobs[0]).await?);
    assert_eq!(
        failure(&mut c, &jobs[1], "bad_gateway").await?.as_deref(),
        Some("failed")
    );
    for allowed in [
        "SELECT venue_image_pause_provider('here', now(), 'test')",
        "SELECT venue_image_enqueue_venue(1)",
        "SELECT * FROM venue_image_cleanup_scan()",
        "SELECT count(*) FROM venue_image_retry_queue",
    ] {
        c.execute(allowed).await?;
    }
    for denied in [
        "UPDATE venues SET name = 'x'",
        "SELECT * FROM venues",
        "DELETE FROM venue_image_jobs",
        "UPDATE venue_images.venue_image_providers SET per_second = 1000",
        "SELECT venue_image_force_retry(1)",
        "SELECT venue_image_purge_permanently_failed(1)",
        "SELECT venue_images.venue_image_set_provider_rate('here', 1000)",
        "SELECT venue_images.venue_image_prune_attempts('1 second')",
        "SET venue_images.max_retries = 1000",
    ] {
        assert_fails_with(c.execute(denied).await, &["42501"], denied);
    }
    c.close().await?;
    t.pool
        .execute(format!("DROP OWNED BY {login}; DROP ROLE {login}").as_str())
        .await?;
    t.drop().await
}

#[tokio::test]
async fn scan_finalises_and_queues_per_the_decision_matrix() -> Result<()> {
    let t = TestDb::new("scan").await?;
    let mut c = PgConnection::connect(&t.url).await?;
    // Loaded without the trigger, as a backfill would be.
    c.execute("SET session_replication_role = replica").await?;
    c.execute(
        r#"INSERT INTO venues (name, venue_images) VALUES
          ('transient', '[{"provider_url":"https://p/1","upload_status":"failed","error_details":{"error_type":"rate_limited"}},
                         {"provider_url":"https://p/2","upload_status":"failed","retry_count":3,"error_details":{"error_type":"rate_limited"}},
                         {"provider_url":"https://p/3","upload_status":"uploaded"}]'),
          ('permanent', '[{"provider_url":"https://p/4","upload_status":"failed","error_details":{"error_type":"not_found"}}]'),
          ('only_permanently_failed', '[{"provider_url":"https://p/5","upload_status":"permanently_failed","error_details":{"error_type":"rate_limited"}}]'),
          ('ambiguous', '[{"provider_url":"https://p/6","upload_status":"failed","error_details":{"error_type":"http_error"}}]'),
          ('unknown', '[{"provider_url":"https://p/7","upload_status":"failed"}]'),
          ('clean', '[{"provider_url":"https://p/8","upload_status":"uploaded"}]'),
          ('malformed', '[{"provider_url":"https://p/9","upload_status":"failed","retry_count":"three","error_details":{"error_type":"rate_limited"}}]')"#,
    )
    .await?;
    c.execute("RESET session_replication_role").await?;
    let row = sqlx::query("SELECT * FROM venue_image_cleanup_scan()")
        .fetch_one(&mut c)
        .await?;
    let counts: (i64, i64, i64, i64, i64, i64) = (
        row.get(0),
        row.get(1),
        row.get(2),
        row.get(3),
        row.get(4),
        row.get("skipped_elements"),
    );
    assert_eq!(
        counts,
        (1, 2, 2, 2, 0, 1),
        "(queued, permanent, ambiguous, finalized, errors, skipped elements)"
    );
    // The unreadable element is recorded where an operator can find it.
    let skip: (i64, i32, String) = sqlx::query_as(
        "SELECT s.venue_id, s.element_index, s.reason FROM venue_images.venue_image_skips s
           JOIN venues v ON v.id = s.venue_id WHERE v.name = 'malformed'",
    )
    .fetch_one(&mut c)
    .await?;
    assert_eq!(skip.1, 0);
    assert!(skip.2.contains("retry_count"), "{skip:?}");
    let queued: Vec<String> =
        sqlx::query_scalar("SELECT provider_url FROM venue_image_jobs ORDER BY 1")
            .fetch_all(&mut c)
            .await?;
    assert_eq!(queued, ["https://p/1"]);
    let statuses: Vec<(String, String)> = sqlx::query_as(
        "SELECT e->>'provider_url', e->>'upload_status' || coalesce('+' || left(e->>'finalized_at', 2), '')
           FROM venues v, jsonb_array_elements(v.venue_images) e ORDER BY 1",
    )
    .fetch_all(&mut c)
    .await?;
    let expected: Vec<(String, String)> = [
        ("https://p/1", "failed"),
        ("https://p/2", "permanently_failed+20"),
        ("https://p/3", "uploaded"),
        ("https://p/4", "permanently_failed+20"),
        ("https://p/5", "permanently_failed"),
        ("https://p/6", "failed"),
        ("https://p/7", "failed"),
        ("https://p/8", "uploaded"),
        ("https://p/9", "failed"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(statuses, expected);
    // Idempotent: a second scan queues nothing new and finalises nothing.
    let row = sqlx::query("SELECT * FROM venue_image_cleanup_scan()")
        .fetch_one(&mut c)
        .await?;
    assert_eq!((row.get::<i64, _>(0), row.get::<i64, _>(3)), (1, 0));
    assert_eq!(
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM venue_image_jobs")
            .fetch_one(&mut c)
            .await?,
        1
    );
    t.drop().await
}

#[tokio::test]
async fn manual_review_force_retry_and_purge() -> Result<()> {
    let t = TestDb::new("review").await?;
    let mut c = PgConnection::connect(&t.url).await?;
    t.unlimited_rates().await?;
    let id: i64 = sqlx::query_scalar(
        r#"INSERT INTO venues (name, venue_images) VALUES ('v', '[
             {"provider":"here","provider_url":"https://p/a","upload_status":"permanently_failed","retry_count":3,"error_details":{"error_type":"rate_limited"},"keep":1},
             {"provider":"here","provider_url":"https://p/b","upload_status":"permanently_failed","retry_count":1,"error_details":{"error_type":"not_found"}},
             {"provider":"here","provider_url":"https://p/c","upload_status":"uploaded"}]') RETURNING id"#,
    )
    .fetch_one(&mut c)
    .await?;
    let n: i32 = sqlx::query_scalar("SELECT venue_image_force_retry($1, 'https://p/a')")
        .bind(id)
        .fetch_one(&mut c)
        .await?;
    assert_eq!(n, 1);
    let jobs = claim(&mut c, "w", 5, 60).await?;
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].attempt, 4);
    assert!(success(&mut c, &jobs[0]).await?);
    let e = element(&t.pool, id, "https://p/a").await?;
    assert_eq!(
        (
            e["upload_status"].as_str(),
            e["retry_count"].as_i64(),
            e["keep"].as_i64()
        ),
        (Some("uploaded"), Some(4), Some(1))
    );
    let purged: i32 = sqlx::query_scalar("SELECT venue_image_purge_permanently_failed($1)")
        .bind(id)
        .fetch_one(&mut c)
        .await?;
    assert_eq!(purged, 1);
    let left: i32 =
        sqlx::query_scalar("SELECT jsonb_array_length(venue_images) FROM venues WHERE id = $1")
            .bind(id)
            .fetch_one(&mut c)
            .await?;
    assert_eq!(left, 2);
    let logged: serde_json::Value = one(
        &mut c,
        "SELECT detail FROM venue_image_attempts WHERE outcome = 'purged'",
    )
    .await?;
    assert_eq!(logged["provider_url"], "https://p/b");
    assert_eq!(logged["error_details"]["error_type"], "not_found");
    t.drop().await
}

#[tokio::test]
async fn bad_arguments_get_sqlstates() -> Result<()> {
    let t = TestDb::new("args").await?;
    let mut c = PgConnection::connect(&t.url).await?;
    for (sql, code) in [
        ("SELECT * FROM venue_image_claim('', 1, 60)", "22023"),
        ("SELECT * FROM venue_image_claim('w', 0, 60)", "22023"),
        ("SELECT * FROM venue_image_claim('w', 1, 0)", "22023"),
        (
            "SELECT venue_image_record_success(NULL, gen_random_uuid(), 'u', 'p')",
            "22004",
        ),
        (
            "SELECT venue_image_record_success(1, gen_random_uuid(), '', 'p')",
            "22023",
        ),
        (
            "SELECT venue_image_record_failure(1, gen_random_uuid(), '', 500, 'm')",
            "22023",
        ),
        (
            "SELECT venue_image_record_failure(1, gen_random_uuid(), 'x', 42, 'm')",
            "22023",
        ),
        (
            "SELECT venue_image_record_failure(1, gen_random_uuid(), 'x', 500, 'm', -1)",
            "22023",
        ),
        ("SELECT venue_image_force_retry(NULL)", "22004"),
        (
            "SELECT venue_images.venue_image_set_provider_rate('x', -1)",
            "22023",
        ),
        (
            "SELECT venue_images.venue_image_set_provider_rate('x', 'NaN')",
            "22023",
        ),
        (
            "SELECT venue_image_record_success(1, gen_random_uuid(), 'javascript:alert(1)', '/p')",
            "22023",
        ),
    ] {
        assert_fails_with(c.execute(sql).await, &[code], sql);
    }
    // Unknown jobs and tokens are simply refused.
    let ok: bool = one(&mut c, "SELECT venue_image_record_success(424242, gen_random_uuid(), 'https://ik.imagekit.io/x/u.jpg', '/p/u.jpg')").await?;
    assert!(!ok);
    t.drop().await
}

#[tokio::test]
async fn batch_write_back_records_each_outcome_with_one_rewrite_per_venue() -> Result<()> {
    let (t, mut c, jobs) = claimed_backlog("batch", 2, 3).await?;
    let mut results = Vec::new();
    for (i, j) in jobs.iter().enumerate() {
        results.push(match i % 3 {
            0 => serde_json::json!({"job_id": j.job_id, "lease_token": j.token,
                    "url": format!("https://ik/{i}.jpg"), "imagekit_path": format!("/v/{i}.jpg"), "file_id": "f"}),
            1 => serde_json::json!({"job_id": j.job_id, "lease_token": j.token,
                    "error_type": "service_unavailable", "status_code": 503, "message": "busy", "retry_after_seconds": 90}),
            _ => serde_json::json!({"job_id": j.job_id, "lease_token": j.token,
                    "error_type": "not_found", "status_code": 404, "message": "gone"}),
        });
    }
    // A stale token and a repeated job in the same call.
    results.push(serde_json::json!({"job_id": jobs[0].job_id, "lease_token": "00000000-0000-0000-0000-000000000000",
        "url": "https://ik/x.jpg", "imagekit_path": "/v/x.jpg"}));
    let before: i64 = sqlx::query_scalar(
        "SELECT n_tup_upd FROM pg_stat_xact_user_tables WHERE relname = 'venues'",
    )
    .fetch_optional(&mut c)
    .await?
    .unwrap_or(0);
    c.execute("BEGIN").await?;
    let got: Vec<(i64, String)> =
        sqlx::query_as("SELECT job_id, status FROM venue_image_record_results($1)")
            .bind(serde_json::Value::Array(results))
            .fetch_all(&mut c)
            .await?;
    let updates: i64 = one(
        &mut c,
        "SELECT n_tup_upd FROM pg_stat_xact_user_tables WHERE relname = 'venues'",
    )
    .await?;
    c.execute("COMMIT").await?;
    assert_eq!(updates - before, 2, "one rewrite per venue");
    let statuses: Vec<&str> = got.iter().map(|(_, s)| s.as_str()).collect();
    assert_eq!(
        statuses,
        [
            "uploaded",
            "failed",
            "permanently_failed",
            "uploaded",
            "failed",
            "permanently_failed",
            "stale"
        ]
    );
    let e = element(&t.pool, jobs[1].venue_id, &jobs[1].provider_url).await?;
    assert_eq!(e["error_details"]["status_code"], 503);
    let wait: f64 = sqlx::query_scalar("SELECT extract(epoch FROM next_attempt_at - now())::float8 FROM venue_image_jobs WHERE job_id = $1")
        .bind(jobs[1].job_id)
        .fetch_one(&t.pool)
        .await?;
    assert!(wait > 85.0, "Retry-After honoured: {wait}");
    for bad in [
        r#"{"a":1}"#,
        r#"[1]"#,
        r#"[{"job_id":1}]"#,
        r#"[{"job_id":"x","lease_token":"00000000-0000-0000-0000-000000000000"}]"#,
    ] {
        let result = sqlx::query("SELECT * FROM venue_image_record_results($1::jsonb)")
            .bind(bad)
            .execute(&mut c)
            .await;
        assert_fails_with(result, &["22023", "22004"], bad);
    }
    t.drop().await
}

/// Claims everything due and records `f(provider_url)` for each: `Ok(())` for an upload,
/// `Err(error_type)` for a failure.
async fn attempt_all(
    conn: &mut PgConnection,
    f: impl Fn(&str) -> std::result::Result<(), &'static str>,
) -> Result<usize> {
    let claims = claim(conn, "report", 100, 60).await?;
    for c in &claims {
        match f(&c.provider_url) {
            Ok(()) => {
                success(conn, c).await?;
            }
            Err(et) => {
                failure(conn, c, et).await?;
            }
        }
    }
    Ok(claims.len())
}

#[tokio::test]
async fn the_weekly_report_figures_are_what_the_readme_says() -> Result<()> {
    let t = TestDb::new("report").await?;
    t.unlimited_rates().await?;
    let mut c = PgConnection::connect(&t.url).await?;
    c.execute("SET venue_images.retry_base_seconds = 0").await?;
    let img = |p: &str, u: &str, et: &str| {
        format!(
            r#"{{"provider":"{p}","provider_url":"https://{p}.example/{u}","upload_status":"failed","error_details":{{"error_type":"{et}"}}}}"#
        )
    };
    for (name, imgs) in [
        (
            "v1",
            vec![
                img("here", "a", "rate_limited"),
                img("here", "b", "rate_limited"),
            ],
        ),
        ("v2", vec![img("here", "c", "rate_limited")]),
        ("v3", vec![img("foursquare", "d", "rate_limited")]),
        ("v4", vec![img("foursquare", "e", "rate_limited")]),
        ("v5", vec![img("foursquare", "f", "not_found")]),
    ] {
        sqlx::query("INSERT INTO venues (name, venue_images) VALUES ($1, $2::jsonb)")
            .bind(name)
            .bind(format!("[{}]", imgs.join(",")))
            .execute(&mut c)
            .await?;
    }
    // Round 1: a, b recovered; c fails (server_error, queued again); d permanent; e
    // ambiguous (left for review). Round 2: c recovered. The scan finalises f.
    let round1 = |u: &str| match u.rsplit('/').next().unwrap_or("") {
        "c" => Err("server_error"),
        "d" => Err("not_found"),
        "e" => Err("http_error"),
        _ => Ok(()),
    };
    assert_eq!(attempt_all(&mut c, round1).await?, 5);
    assert_eq!(attempt_all(&mut c, |_| Ok(())).await?, 1);
    c.execute("SELECT * FROM venue_image_cleanup_scan()")
        .await?;
    let total = sqlx::query(
        "SELECT attempts, recovered, failed_again, permanent_failures, success_rate_pct,
                venues_recovered, api_calls_saved
           FROM venue_image_retry_report() WHERE provider IS NULL AND error_type IS NULL",
    )
    .fetch_one(&mut c)
    .await?;
    let got: (i64, i64, i64, i64, f64, i64, i64) = (
        total.get(0),
        total.get(1),
        total.get(2),
        total.get(3),
        total.get(4),
        total.get(5),
        total.get(6),
    );
    // attempts: a b c c d e; recovered: a b c; failed again: c (queued) and e (review);
    // permanent: d (attempt) and f (finalised by the scan, not an attempt); success rate
    // 3/6; venues recovered: v1 v2; API calls saved: one provider call per (venue,
    // provider, retry round): v1 round 1, v2 rounds 1 and 2, v3 and v4 round 1.
    assert_eq!(got, (6, 3, 2, 2, 50.0, 2, 5));
    let here = sqlx::query(
        "SELECT attempts, recovered, failed_again FROM venue_image_retry_report()
          WHERE provider = 'here' AND error_type = 'rate_limited'",
    )
    .fetch_one(&mut c)
    .await?;
    // Grouped by the error the attempt retried: c's first attempt retried rate_limited
    // (and failed again), its second retried server_error (and recovered).
    assert_eq!(
        (
            here.get::<i64, _>(0),
            here.get::<i64, _>(1),
            here.get::<i64, _>(2)
        ),
        (3, 2, 1)
    );
    // The window: nothing before now - since.
    let none: i64 = one(
        &mut c,
        "SELECT attempts FROM venue_image_retry_report('0 seconds') WHERE provider IS NULL",
    )
    .await?;
    assert_eq!(none, 0);
    // The timeline adds up to the report.
    let (attempts, recovered): (i64, i64) = sqlx::query_as(
        "SELECT sum(attempts)::bigint, sum(recovered)::bigint FROM venue_image_recovery_timeline('1 day', '1 hour')",
    )
    .fetch_one(&mut c)
    .await?;
    assert_eq!((attempts, recovered), (6, 3));
    c.close().await?;
    t.drop().await
}

/// A deterministic variety of arrays: every status, error class, retry count form
/// (numbers, numeric strings, malformed), with and without provider_url or url, copies.
fn arrays(n: usize, seed: u64) -> Vec<serde_json::Value> {
    use serde_json::json;
    let mut rng = venue_images_tests::dataset::Rng::new(seed);
    let types = [
        "rate_limited",
        "server_error",
        "not_found",
        "http_error",
        "",
        "network_timeout",
    ];
    let counts = [
        json!(0),
        json!(1),
        json!(2),
        json!(3),
        json!("1"),
        json!("x"),
        json!(null),
    ];
    (0..n)
        .map(|_| {
            let len = rng.below(6) as usize;
            let items: Vec<serde_json::Value> = (0..len)
                .map(|_| {
                    let mut o = serde_json::Map::new();
                    // Half of the images failed.
                    let status = match rng.below(6) {
                        0..=2 => "failed",
                        3 => "permanently_failed",
                        4 => "uploaded",
                        _ => "skipped_dev",
                    };
                    o.insert("upload_status".into(), json!(status));
                    let u = format!("https://p.example/{}.jpg", rng.below(4));
                    match rng.below(4) {
                        0 => {}
                        1 => {
                            o.insert("url".into(), json!(u));
                        }
                        _ => {
                            o.insert("provider_url".into(), json!(u));
                        }
                    }
                    o.insert(
                        "error_details".into(),
                        json!({"error_type": types[rng.below(6) as usize]}),
                    );
                    o.insert("retry_count".into(), counts[rng.below(7) as usize].clone());
                    o.insert("provider".into(), json!("here"));
                    serde_json::Value::Object(o)
                })
                .collect();
            serde_json::Value::Array(items)
        })
        .collect()
}

#[tokio::test]
async fn counts_agree_across_summary_summary_stats_enqueue_and_the_scan() -> Result<()> {
    use venue_images_core::jsonb::{encode, parse_json, parse_varlena};
    use venue_images_core::retry::{Policy, ScanDecision};
    let t = TestDb::new("counts").await?;
    let mut c = PgConnection::connect(&t.url).await?;
    let all = arrays(300, 20_261_201);
    // Loaded without the trigger, like a backfill; the scan then queues.
    c.execute("SET session_replication_role = replica").await?;
    let mut ids = Vec::new();
    for a in &all {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO venues (name, venue_images) VALUES ('c', $1) RETURNING id",
        )
        .bind(a)
        .fetch_one(&mut c)
        .await?;
        ids.push(id);
    }
    c.execute("RESET session_replication_role").await?;
    // What the core's state machine says, array by array.
    let policy = Policy::default();
    let plans: Vec<_> = all
        .iter()
        .map(|a| {
            let bytes = encode(&parse_json(&a.to_string()).unwrap()).unwrap();
            policy.plan(parse_varlena(&bytes).unwrap()).unwrap()
        })
        .collect();
    let scan = sqlx::query("SELECT * FROM venue_image_cleanup_scan()")
        .fetch_one(&mut c)
        .await?;
    let want = |d: ScanDecision| plans.iter().filter(|p| p.decision() == d).count() as i64;
    assert_eq!(
        scan.get::<i64, _>("transient_queued"),
        want(ScanDecision::Transient)
    );
    assert_eq!(
        scan.get::<i64, _>("permanent_logged"),
        want(ScanDecision::Permanent)
    );
    assert_eq!(
        scan.get::<i64, _>("ambiguous_skipped"),
        want(ScanDecision::Ambiguous)
    );
    assert_eq!(
        scan.get::<i64, _>("finalized"),
        plans.iter().map(|p| p.finalize.len() as i64).sum::<i64>()
    );
    assert_eq!(
        scan.get::<i64, _>("skipped_elements"),
        plans.iter().map(|p| p.skipped.len() as i64).sum::<i64>()
    );
    assert_eq!(scan.get::<i64, _>("errors"), 0);
    let jobs: i64 = one(&mut c, "SELECT count(*) FROM venue_image_jobs").await?;
    assert_eq!(
        jobs,
        plans.iter().map(|p| p.queue.len() as i64).sum::<i64>()
    );
    // Per venue: enqueue_venue and summary's retryable say the same (after the scan,
    // nothing finalisable is left to change it).
    for (id, a) in ids.iter().zip(&all) {
        let enq: i32 = sqlx::query_scalar("SELECT venue_image_enqueue_venue($1)")
            .bind(id)
            .fetch_one(&mut c)
            .await?;
        let now: serde_json::Value =
            sqlx::query_scalar("SELECT venue_images FROM venues WHERE id = $1")
                .bind(id)
                .fetch_one(&mut c)
                .await?;
        let summary: Result<i32, _> =
            sqlx::query_scalar("SELECT retryable FROM venue_images_summary($1)")
                .bind(&now)
                .fetch_one(&mut c)
                .await;
        if let Ok(retryable) = summary {
            assert_eq!(enq, retryable, "{a}");
        }
    }
    let again: i64 = one(&mut c, "SELECT count(*) FROM venue_image_jobs").await?;
    assert_eq!(again, jobs, "enqueue finds exactly what the scan queued");
    // The table's figures agree with the arrays.
    let failed: i64 = one(
        &mut c,
        "SELECT total_failed_images FROM venue_image_summary_stats()",
    )
    .await?;
    assert_eq!(failed, plans.iter().map(|p| p.failures as i64).sum::<i64>());
    c.close().await?;
    t.drop().await
}

#[tokio::test]
async fn the_overview_is_the_three_analytics_in_one_scan() -> Result<()> {
    let t = TestDb::new("overview").await?;
    for v in arrays(120, 7) {
        sqlx::query("INSERT INTO venues (name, venue_images) VALUES ('o', $1)")
            .bind(v)
            .execute(&t.pool)
            .await?;
    }
    let o: serde_json::Value = t.scalar("SELECT venue_image_overview(10)").await?;
    let (venues, failed): (i64, i64) = sqlx::query_as(
        "SELECT total_venues_with_failures, total_failed_images FROM venue_image_summary_stats()",
    )
    .fetch_one(&t.pool)
    .await?;
    assert_eq!(o["stats"]["venues_with_failures"], venues);
    assert_eq!(o["stats"]["failed_images"], failed);
    let breakdown: serde_json::Value = t
        .scalar(
            "SELECT coalesce(jsonb_agg(to_jsonb(b)), '[]') FROM venue_image_failure_breakdown() b",
        )
        .await?;
    assert_eq!(o["stats"]["breakdown"], breakdown);
    let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM venue_image_high_priority_venues(10)")
        .fetch_all(&t.pool)
        .await?;
    assert_eq!(db::high_priority_ids(&o), ids);
    t.drop().await
}

#[tokio::test]
async fn force_retry_of_one_image_by_its_index() -> Result<()> {
    let t = TestDb::new("force_index").await?;
    t.pool.execute(
        r#"INSERT INTO venues (name, venue_images) VALUES ('f', '[
             {"provider":"here","provider_url":"https://p/a","upload_status":"permanently_failed","error_details":{"error_type":"not_found"}},
             {"provider":"here","provider_url":"https://p/b","upload_status":"uploaded"},
             {"provider":"here","provider_url":"https://p/c","upload_status":"failed","error_details":{"error_type":"http_error"}}]')"#,
    )
    .await?;
    for (index, queued) in [(1, 0), (5, 0), (-1, 0), (2, 1), (0, 1)] {
        let n: i32 = sqlx::query_scalar("SELECT venue_image_force_retry_image(1, $1)")
            .bind(index)
            .fetch_one(&t.pool)
            .await?;
        assert_eq!(n, queued, "index {index}");
    }
    let urls: Vec<String> = sqlx::query_scalar(
        "SELECT provider_url FROM venue_image_jobs WHERE forced ORDER BY provider_url",
    )
    .fetch_all(&t.pool)
    .await?;
    assert_eq!(
        urls,
        vec!["https://p/a".to_string(), "https://p/c".to_string()]
    );
    t.drop().await
}
