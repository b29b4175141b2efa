//! The analytics functions against the original's plain SQL on the same generated rows,
//! in every execution mode: serial, with parallel workers forced (so partial states are
//! serialised and combined), and through the GIN index.
//!
//! Needs `DATABASE_URL` (scripts/test.sh starts a private cluster).

use anyhow::Result;
use sqlx::{Connection, Executor, PgConnection};
use venue_images_tests::db::TestDb;
use venue_images_tests::original;

async fn rows(conn: &mut PgConnection, sql: &str) -> Result<Vec<String>> {
    Ok(
        sqlx::query_scalar::<_, String>(&format!("SELECT to_jsonb(q)::text FROM ({sql}) q"))
            .fetch_all(&mut *conn)
            .await?,
    )
}

/// Every analytics function equals the original's SQL on the current settings.
async fn compare_all(conn: &mut PgConnection, mode: &str) -> Result<()> {
    let ours = rows(
        conn,
        "SELECT provider, error_type, count FROM venue_image_failure_breakdown()",
    )
    .await?;
    let theirs = rows(conn, original::FAILURE_BREAKDOWN).await?;
    assert!(!ours.is_empty());
    assert_eq!(ours, theirs, "{mode}: failure_breakdown");

    let ours = rows(conn, "SELECT * FROM venues_with_image_failures()").await?;
    let theirs = rows(conn, original::VENUES_WITH_FAILURES).await?;
    assert!(ours.len() > 100, "{mode}: {} venues", ours.len());
    assert_eq!(ours, theirs, "{mode}: venues_with_image_failures");

    for (min, max) in [(1, 100), (2, 50), (3, 7), (1, 0), (4, 100_000)] {
        let ours = rows(
            conn,
            &format!("SELECT * FROM venue_image_partial_failure_candidates({min}, {max})"),
        )
        .await?;
        let sql = original::PARTIAL_FAILURE_CANDIDATES
            .replace("$1", &min.to_string())
            .replace("$2", &max.to_string());
        assert_eq!(
            ours,
            rows(conn, &sql).await?,
            "{mode}: candidates({min}, {max})"
        );
    }

    for max in [50, 1, 1000] {
        let ours = rows(
            conn,
            &format!("SELECT * FROM venue_image_high_priority_venues({max})"),
        )
        .await?;
        let sql = original::high_priority_venues().replace("$1", &max.to_string());
        assert_eq!(
            ours,
            rows(conn, &sql).await?,
            "{mode}: high_priority({max})"
        );
    }

    let ours = rows(
        conn,
        "SELECT total_venues_with_failures, total_failed_images, total_uploaded_images,
                average_failure_rate, venues_with_transient, venues_with_permanent,
                venues_with_ambiguous,
                (SELECT jsonb_agg(e - 'error_class') FROM jsonb_array_elements(top_error_types) e) AS top_error_types
           FROM venue_image_summary_stats()",
    )
    .await?;
    assert_eq!(
        ours,
        rows(conn, &original::summary_stats()).await?,
        "{mode}: summary_stats"
    );
    Ok(())
}

#[tokio::test]
async fn analytics_equal_the_original_sql_in_every_mode() -> Result<()> {
    let t = TestDb::seeded("analytics", 3_000, 7).await?;
    let mut conn = PgConnection::connect(&t.url).await?;
    // Rows the original's SQL also accepts: NULL and empty arrays.
    conn.execute(
        "INSERT INTO venues (name, city_id, venue_images) VALUES ('null images', 1, NULL), ('empty', 2, '[]');
         ANALYZE venues;",
    )
    .await?;

    compare_all(&mut conn, "default").await?;

    conn.execute(
        "SET parallel_setup_cost = 0; SET parallel_tuple_cost = 0;
         SET min_parallel_table_scan_size = 0; SET max_parallel_workers_per_gather = 4;",
    )
    .await?;
    let plan: String = sqlx::query_scalar::<_, String>(
        "EXPLAIN (FORMAT TEXT) SELECT venue_images_stats_state(venue_images) FROM venues",
    )
    .fetch_all(&mut conn)
    .await?
    .join("\n");
    assert!(plan.contains("Partial Aggregate"), "not parallel:\n{plan}");
    compare_all(&mut conn, "parallel").await?;

    conn.execute("SET venue_images.gin_max_failing_share = 1")
        .await?;
    compare_all(&mut conn, "gin index").await?;
    conn.execute("RESET ALL").await?;
    conn.execute(
        "SET venue_images.gin_max_failing_share = 0; SET max_parallel_workers_per_gather = 0",
    )
    .await?;
    compare_all(&mut conn, "serial, no index").await?;

    conn.close().await?;
    t.drop().await
}

#[tokio::test]
async fn the_public_aggregate_groups_like_any_aggregate() -> Result<()> {
    let t = TestDb::seeded("stats_agg", 500, 11).await?;
    // Per-city figures add up to the table's.
    let (sum_failed, total_failed): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT sum((s->>'failed_images')::bigint) FROM
                  (SELECT venue_images_stats(venue_images) s FROM venues GROUP BY city_id) g)::bigint,
                (SELECT total_failed_images FROM venue_image_summary_stats())",
    )
    .fetch_one(&t.pool)
    .await?;
    assert_eq!(sum_failed, total_failed);
    let empty: String = t
        .scalar("SELECT venue_images_stats(venue_images)::text FROM venues WHERE false")
        .await?;
    assert!(empty.contains(r#""venues": 0"#), "{empty}");
    t.drop().await
}

#[tokio::test]
async fn dedupe_equals_a_plain_sql_dedupe_on_messy_arrays() -> Result<()> {
    let t = TestDb::seeded("dedupe", 400, 3).await?;
    t.pool.execute(original::SQL_DEDUPE_FUNCTION).await?;
    // Each venue's array plus altered copies of some of its images: other statuses,
    // qualities, timestamps and retry counts, appended in a different order.
    t.pool.execute(
        r#"CREATE TABLE messy AS
           SELECT id, (
             SELECT jsonb_agg(e ORDER BY k) FROM (
               SELECT e, random() AS k FROM jsonb_array_elements(venue_images) e
               UNION ALL
               SELECT e || jsonb_build_object(
                        'upload_status', (ARRAY['uploaded','failed','permanently_failed','skipped_dev'])[1 + (abs(hashtext(e->>'provider_url')) % 4)],
                        'quality_score', round((abs(hashtext(e->>'fetched_at')) % 10) / 10.0, 1),
                        'retry_count', abs(hashtext(e->>'url')) % 4,
                        'fetched_at', '2025-0' || (1 + abs(hashtext(e->>'provider')) % 9) || '-15T10:00:00Z'),
                      random()
                 FROM jsonb_array_elements(venue_images) e
                WHERE abs(hashtext(e->>'provider_url')) % 3 = 0
               UNION ALL
               SELECT '"loose string"'::jsonb, random()
               UNION ALL
               SELECT '{"attribution": "no key"}'::jsonb, random()
             ) x
           ) AS images
           FROM venues"#,
    )
    .await?;
    let (n, differ): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE venue_images_dedupe(images) IS DISTINCT FROM sql_venue_images_dedupe(images)) FROM messy",
    )
    .fetch_one(&t.pool)
    .await?;
    assert_eq!(n, 400);
    if differ > 0 {
        let sample: (String, String, String) = sqlx::query_as(
            "SELECT images::text, venue_images_dedupe(images)::text, sql_venue_images_dedupe(images)::text FROM messy
              WHERE venue_images_dedupe(images) IS DISTINCT FROM sql_venue_images_dedupe(images) LIMIT 1",
        )
        .fetch_one(&t.pool)
        .await?;
        panic!(
            "{differ} arrays differ; e.g.\ninput {}\nours  {}\nsql   {}",
            sample.0, sample.1, sample.2
        );
    }
    // Nothing is lost: every distinct key of the input survives.
    let lost: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM messy m, LATERAL (
            SELECT DISTINCT coalesce(e->>'provider_url', e->>'url') k FROM jsonb_array_elements(m.images) e
            WHERE coalesce(e->>'provider_url', e->>'url') IS NOT NULL) i
          WHERE NOT EXISTS (SELECT 1 FROM jsonb_array_elements(venue_images_dedupe(m.images)) o
                             WHERE coalesce(o->>'provider_url', o->>'url') = i.k)",
    )
    .fetch_one(&t.pool)
    .await?;
    assert_eq!(lost, 0);
    t.drop().await
}
