//! Analysts on a hot standby: a real streaming standby of the test cluster
//! (`pg_basebackup -R`, a second data directory, a second port), on which every read
//! function gives the primary's answer, as a `venue_image_reader` login, and
//! `venue-image-uploader stats` works; what writes is refused with PostgreSQL's own
//! read-only error (25006), never a crash.
//!
//! Needs `DATABASE_URL` (a local cluster that allows replication connections, as the
//! private cluster of scripts/test.sh does) and `PG_BIN` (its bin directory; default
//! /usr/lib/postgresql/15/bin). As root, the standby runs as the postgres OS user.

use anyhow::{ensure, Context, Result};
use serde_json::Value;
use sqlx::{Connection, Executor, PgConnection};
use std::process::Command;
use std::time::{Duration, Instant};
use venue_images_tests::db::TestDb;
use venue_images_tests::pgctl::Cluster;
use venue_images_tests::sidecar;

/// `of` with the standby's host and port.
fn standby_url(standby: &Cluster, of: &str) -> Result<String> {
    let mut u = url::Url::parse(of)?;
    u.set_host(Some("127.0.0.1"))?;
    u.set_port(Some(standby.port))
        .map_err(|_| anyhow::anyhow!("port"))?;
    Ok(u.to_string())
}

/// Every read function, as text, in a stable order.
const READS: &[&str] = &[
    "SELECT coalesce(string_agg(b::text, ';' ORDER BY b::text), '') FROM venue_image_failure_breakdown() b",
    "SELECT coalesce(string_agg(v::text, ';' ORDER BY v.id), '') FROM venues_with_image_failures() v",
    "SELECT coalesce(string_agg(v::text, ';' ORDER BY v.id), '') FROM venue_image_partial_failure_candidates(1, 100) v",
    "SELECT coalesce(string_agg(v::text, ';' ORDER BY v.id), '') FROM venue_image_high_priority_venues(20) v",
    "SELECT s::text FROM venue_image_summary_stats() s",
    "SELECT venue_image_overview(20)::text",
    "SELECT coalesce(string_agg(r::text, ';' ORDER BY r::text), '') FROM venue_image_retry_report() r",
    "SELECT coalesce(string_agg(r::text, ';' ORDER BY r::text), '') FROM venue_image_recovery_timeline('1 day', '1 hour') r",
    "SELECT coalesce(string_agg(i::text, ';' ORDER BY i.element_index), '') FROM venue_image_venue_images(1) i",
    "SELECT coalesce(string_agg(f::text, ';' ORDER BY f.id), '') FROM venue_image_find_venues('Venue 1', 5) f",
    "SELECT coalesce(venue_image_next_due()::text, 'none')",
    "SELECT count(*)::text FROM venue_image_retry_queue",
    "SELECT coalesce(string_agg(p.provider || '/' || coalesce(p.per_second::text, ''), ';' ORDER BY 1), '') FROM venue_image_provider_status p",
    // Per-value functions.
    "SELECT venue_image_classify_error('rate_limited') || venue_image_error_type(503)",
    "SELECT venue_image_quality_score(1920, 1080)::text || venue_image_priority_score(3, 30, true)::text",
    "SELECT venue_image_file_name('https://maps.googleapis.com/maps/api/place/photo?photo_reference=R&key=K', 'google_places') || venue_image_folder('S x', 1)",
    "SELECT venue_images_dedupe(venue_images)::text FROM venues WHERE id = 1",
    "SELECT venue_images_merge(venue_images, venue_images)::text FROM venues WHERE id = 2",
    "SELECT s::text FROM venues v, venue_images_summary(v.venue_images) s WHERE v.id = 3",
    "SELECT venue_images_finalize(venue_images)::text FROM venues WHERE id = 4",
    "SELECT venue_images_stats(venue_images)::text FROM venues",
    "SELECT venue_images_redact('https://h/x?key=SECRET')",
];

async fn answers(url: &str, superuser_reads: bool) -> Result<Vec<String>> {
    let mut c = PgConnection::connect(url).await?;
    let mut out = Vec::new();
    for q in READS {
        // The per-value functions that read `venues` directly need a role that may.
        if !superuser_reads && q.contains("FROM venues") {
            continue;
        }
        let v: Option<String> = sqlx::query_scalar(q)
            .fetch_one(&mut c)
            .await
            .with_context(|| q.to_string())?;
        out.push(v.unwrap_or_default());
    }
    c.close().await?;
    Ok(out)
}

/// Waits until the standby has replayed everything the primary has inserted into its WAL.
/// The insert position, not `pg_current_wal_lsn()` (the write position): the test clusters
/// run with `synchronous_commit = off`, so a commit record may still sit in the WAL buffers
/// when the write position is read, and the standby would be "caught up" without it.
async fn wait_for_replay(primary: &str, standby: &str) -> Result<()> {
    let mut p = PgConnection::connect(primary).await?;
    let lsn: String = sqlx::query_scalar("SELECT pg_current_wal_insert_lsn()::text")
        .fetch_one(&mut p)
        .await?;
    let mut s = PgConnection::connect(standby).await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let caught_up: bool = sqlx::query_scalar("SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn")
            .bind(&lsn)
            .fetch_one(&mut s)
            .await?;
        if caught_up {
            return Ok(());
        }
        ensure!(Instant::now() < deadline, "the standby did not catch up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analysts_on_a_hot_standby_get_the_primarys_answers() -> Result<()> {
    let t = TestDb::new("standby").await?;
    let primary = url::Url::parse(&t.url)?;
    if !matches!(primary.host_str(), Some("127.0.0.1" | "localhost")) {
        eprintln!("DATABASE_URL is not a local cluster: the standby test needs one; skipped");
        return t.drop().await;
    }
    // Few venues with failures (under 5%), so the GIN-sampling path is taken too.
    let mut c = PgConnection::connect(&t.url).await?;
    c.execute(
        r#"INSERT INTO venues (name, slug, city_id, venue_images)
           SELECT 'Venue ' || g, 'v-' || g, g % 7,
                  CASE WHEN g % 40 = 0 THEN jsonb_build_array(
                         jsonb_build_object('provider', 'here', 'provider_url', 'https://p/' || g || '?key=K',
                                            'upload_status', 'failed', 'error_details', jsonb_build_object('error_type', 'rate_limited')),
                         jsonb_build_object('provider', 'foursquare', 'provider_url', 'https://q/' || g,
                                            'upload_status', 'permanently_failed', 'error_details', jsonb_build_object('error_type', 'not_found')),
                         jsonb_build_object('provider', 'here', 'provider_url', 'https://r/' || g, 'upload_status', 'uploaded'))
                       ELSE jsonb_build_array(jsonb_build_object('provider', 'here', 'provider_url', 'https://r/' || g,
                                                                  'upload_status', 'uploaded', 'retry_count', '2')) END
             FROM generate_series(1, 4000) g;
           CREATE INDEX venues_images_gin ON venues USING gin (venue_images);
           ANALYZE venues;
           SELECT * FROM venue_image_cleanup_scan();"#,
    )
    .await?;
    let reader = t.login_url("venue_image_reader").await?;
    let settings: Vec<(String, String)> = sqlx::query_as(
        "SELECT name, setting FROM pg_settings WHERE name IN
           ('max_connections', 'max_worker_processes', 'max_wal_senders',
            'max_prepared_transactions', 'max_locks_per_transaction')",
    )
    .fetch_all(&mut c)
    .await?;
    // A hot standby needs these at least as high as the primary's.
    let settings: Vec<(&str, &str)> = settings
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let standby = Cluster::standby_of(
        "standby",
        primary.host_str().unwrap_or("127.0.0.1"),
        primary.port().unwrap_or(5432),
        &settings,
    )?;
    let standby_super = standby_url(&standby, &t.url)?;
    let standby_reader = standby_url(&standby, &reader)?;
    // Streaming works: a write on the primary reaches the standby.
    c.execute("UPDATE venues SET name = name || ' (renamed)' WHERE id = 1")
        .await?;
    wait_for_replay(&t.url, &standby_super).await?;
    let in_recovery: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()")
        .fetch_one(&mut PgConnection::connect(&standby_super).await?)
        .await?;
    assert!(in_recovery);

    // Every read function: the primary's answer, on the standby, as the reader.
    let want = answers(&reader, false).await?;
    let got = answers(&standby_reader, false).await?;
    for ((q, w), g) in READS
        .iter()
        .filter(|q| !q.contains("FROM venues"))
        .zip(&want)
        .zip(&got)
    {
        assert_eq!(g, w, "{q}");
    }
    // And the per-value functions over rows (as a role that may read venues).
    assert_eq!(
        answers(&standby_super, true).await?,
        answers(&t.url, true).await?
    );

    // What writes is refused by PostgreSQL itself, clearly (25006), not a crash.
    let mut s = PgConnection::connect(&standby_super).await?;
    for write in [
        "SELECT * FROM venue_image_cleanup_scan()",
        "SELECT * FROM venue_image_claim('w', 1, 60)",
        "SELECT venue_image_enqueue_venue(40)",
    ] {
        let err = s.execute(write).await.expect_err(write);
        let code = err
            .as_database_error()
            .and_then(|d| d.code())
            .map(|c| c.to_string());
        assert_eq!(code.as_deref(), Some("25006"), "{write}: {err}");
    }
    s.close().await?;

    // venue-image-uploader stats, pointed at the standby, with the reader's login.
    let bin = sidecar::uploader_bin()?;
    let stats = |url: String| {
        let bin = bin.clone();
        move || -> Result<Value> {
            let out = Command::new(bin)
                .args(["stats", "--json"])
                .env("DATABASE_URL", url)
                .output()?;
            ensure!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let text = String::from_utf8_lossy(&out.stdout).to_string();
            Ok(serde_json::from_str(
                &text[text.find('{').context("no JSON")?..],
            )?)
        }
    };
    let on_standby = tokio::task::spawn_blocking(stats(standby_reader)).await??;
    let on_primary = tokio::task::spawn_blocking(stats(reader)).await??;
    assert_eq!(on_standby["summary"], on_primary["summary"]);
    assert_eq!(on_standby["breakdown"], on_primary["breakdown"]);
    assert_eq!(on_standby["summary"]["total_failed_images"], 200);
    c.close().await?;
    drop(standby);
    t.drop().await
}
