//! Upgrades: every released version, updated with `ALTER EXTENSION venue_images UPDATE`,
//! ends with exactly the catalog of a fresh install. (scripts/test.sh also re-runs the
//! analytics and queue suites on a database upgraded from 0.1.0.)
//!
//! Needs `DATABASE_URL` and the frozen install scripts of released versions
//! (`extension/sql/released/`) copied into PostgreSQL's extension directory, which
//! scripts/test.sh does.

use anyhow::Result;
use sqlx::{Connection, Executor, PgConnection};
use venue_images_tests::db;

/// Everything the extension owns, as comparable text.
const CATALOG: &str = r#"
WITH ext AS (SELECT oid, extnamespace FROM pg_extension WHERE extname = 'venue_images'),
objs AS (SELECT classid, objid FROM pg_depend d, ext WHERE d.refobjid = ext.oid AND d.deptype = 'e')
SELECT 'function ' || p.oid::regprocedure || ' -> ' || pg_get_function_result(p.oid)
       || ' ' || p.provolatile::text || p.proparallel::text || CASE WHEN p.prosecdef THEN ' definer' ELSE '' END
       || ' strict=' || p.proisstrict
       || ' cfg=' || coalesce(array_to_string(ARRAY(SELECT c FROM unnest(p.proconfig) c ORDER BY 1), ','), '')
       || ' owner=' || p.proowner::regrole || ' nsp=' || p.pronamespace::regnamespace
       || ' args=' || coalesce(pg_get_function_arguments(p.oid), '')
       || ' acl=' || coalesce(array_to_string(p.proacl, ','), 'default')
       || CASE WHEN p.prolang = (SELECT oid FROM pg_language WHERE lanname = 'c') THEN ' c:' || p.prosrc ELSE ' body:' || md5(p.prosrc) END
  FROM objs o JOIN pg_proc p ON o.classid = 'pg_proc'::regclass AND p.oid = o.objid
UNION ALL
SELECT 'relation ' || c.relnamespace::regnamespace || '.' || c.relname || ' ' || c.relkind::text
       || ' owner=' || c.relowner::regrole || ' acl=' || coalesce(array_to_string(c.relacl, ','), 'default') || ' ' || coalesce(
         (SELECT string_agg(a.attname || ':' || format_type(a.atttypid, a.atttypmod) || CASE WHEN a.attnotnull THEN '!' ELSE '' END
                            || coalesce('=' || pg_get_expr(ad.adbin, ad.adrelid), '') || a.attidentity::text, ',' ORDER BY a.attnum)
            FROM pg_attribute a LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
           WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), '')
       || CASE WHEN c.relkind = 'v' THEN ' view:' || md5(pg_get_viewdef(c.oid)) ELSE '' END
  FROM objs o JOIN pg_class c ON o.classid = 'pg_class'::regclass AND c.oid = o.objid
UNION ALL
SELECT 'index ' || pg_get_indexdef(i.indexrelid)
  FROM objs o JOIN pg_index i ON o.classid = 'pg_class'::regclass AND i.indrelid = o.objid
UNION ALL
SELECT 'constraint ' || conrelid::regclass || ' ' || pg_get_constraintdef(k.oid)
  FROM objs o JOIN pg_constraint k ON o.classid = 'pg_class'::regclass AND k.conrelid = o.objid
UNION ALL
SELECT 'config ' || c::regclass FROM pg_extension e, unnest(e.extconfig) c WHERE e.extname = 'venue_images'
UNION ALL
SELECT 'aggregate ' || a.aggfnoid::regprocedure || ' ' || a.aggtransfn || ' ' || a.aggfinalfn || ' ' || a.aggcombinefn
       || ' ' || a.aggserialfn || ' ' || a.aggdeserialfn
  FROM objs o JOIN pg_aggregate a ON o.classid = 'pg_proc'::regclass AND a.aggfnoid = o.objid
ORDER BY 1"#;

async fn catalog(conn: &mut PgConnection) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar::<_, String>(CATALOG)
        .fetch_all(&mut *conn)
        .await?)
}

/// A bare database (no migrations) on the test server, dropped by the caller.
async fn bare_database(tag: &str) -> Result<(String, String)> {
    let name = format!("vi_{tag}_{}", std::process::id());
    let url = db::create_database(&db::database_url()?, &name).await?;
    Ok((name, url))
}

async fn drop_database(name: &str) -> Result<()> {
    db::drop_database(&db::database_url()?, name).await
}

#[tokio::test]
async fn upgraded_catalog_equals_a_fresh_install() -> Result<()> {
    let (fresh, fresh_url) = bare_database("fresh").await?;
    let mut f = PgConnection::connect(&fresh_url).await?;
    f.execute("CREATE EXTENSION venue_images").await?;
    let want = catalog(&mut f).await?;
    let version: String =
        sqlx::query_scalar("SELECT extversion FROM pg_extension WHERE extname = 'venue_images'")
            .fetch_one(&mut f)
            .await?;
    assert!(want.len() > 40, "{want:#?}");

    for from in ["0.1.0", "0.2.0", "0.3.0"] {
        let (name, url) = bare_database(&format!("upgrade_{}", from.replace('.', "_"))).await?;
        let mut c = PgConnection::connect(&url).await?;
        db::upgrade_from(&mut c, from).await?;
        let got_version: String = sqlx::query_scalar(
            "SELECT extversion FROM pg_extension WHERE extname = 'venue_images'",
        )
        .fetch_one(&mut c)
        .await?;
        assert_eq!(got_version, version);
        let got = catalog(&mut c).await?;
        let missing: Vec<&String> = want.iter().filter(|w| !got.contains(w)).collect();
        let extra: Vec<&String> = got.iter().filter(|g| !want.contains(g)).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "upgrade from {from}:\nmissing {missing:#?}\nextra {extra:#?}"
        );
        c.close().await?;
        drop_database(&name).await?;
    }
    f.close().await?;
    drop_database(&fresh).await
}

#[tokio::test]
async fn the_suites_can_run_on_an_upgraded_extension() -> Result<()> {
    // scripts/test.sh runs tests/analytics.rs and tests/queue.rs a second time with
    // VENUE_IMAGES_UPGRADE_FROM=0.1.0; here, one quick cycle proves the path works.
    let (name, url) = bare_database("upgrade_cycle").await?;
    let mut c = PgConnection::connect(&url).await?;
    db::upgrade_from(&mut c, "0.1.0").await?;
    db::migrate(&mut c).await?;
    c.execute(
        r#"INSERT INTO venues (name, venue_images) VALUES ('v', '[{"provider":"here","provider_url":"https://p/1","upload_status":"failed","error_details":{"error_type":"rate_limited"}}]')"#,
    )
    .await?;
    let n: i64 =
        sqlx::query_scalar("SELECT count(*) FROM venue_images.venue_image_claim('w', 5, 60)")
            .fetch_one(&mut c)
            .await?;
    assert_eq!(n, 1);
    c.close().await?;
    drop_database(&name).await
}

/// What 0.2.0's migrations did: the uploader role with its grants, the trigger.
const MIGRATIONS_0_2_0: &str = r#"
DO $$ BEGIN
    CREATE ROLE venue_image_uploader NOLOGIN;
EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
END $$;
GRANT USAGE ON SCHEMA public TO venue_image_uploader;
GRANT EXECUTE ON FUNCTION venue_image_claim(text, int, int), venue_image_set_provider_rate(text, float8),
    venue_image_cleanup_scan() TO venue_image_uploader;
CREATE TRIGGER venue_images_enqueue AFTER INSERT OR UPDATE OF venue_images ON venues
    FOR EACH ROW EXECUTE FUNCTION venue_images_enqueue_trigger();
"#;

#[tokio::test]
async fn an_upgrade_from_0_2_0_keeps_every_job_attempt_and_provider_setting() -> Result<()> {
    let (name, url) = bare_database("upgrade_keep").await?;
    let mut c = PgConnection::connect(&url).await?;
    c.execute(db::VENUES_SCHEMA).await?;
    c.execute("CREATE EXTENSION venue_images VERSION '0.2.0'")
        .await?;
    c.execute(MIGRATIONS_0_2_0).await?;
    // 0.2.0's state, written as 0.2.0 would have (in public; a purge that kept a key).
    c.execute(
        r#"INSERT INTO venues (name, venue_images) VALUES ('v', '[{"provider":"here","provider_url":"https://p/1?key=SECRETKEY","upload_status":"failed","error_details":{"error_type":"rate_limited"}}]');
           INSERT INTO public.venue_image_providers (provider, per_second, paused_until, pause_reason)
                VALUES ('here', 7, now() + interval '1 hour', 'maintenance'), ('*', 40, NULL, NULL);
           INSERT INTO public.venue_image_jobs (venue_id, url_hash, provider_url, provider, error_type, retry_count, enqueued_by)
                VALUES (1, decode(md5('https://p/1?key=SECRETKEY'), 'hex'), 'https://p/1?key=REDACTED', 'here', 'rate_limited', 1, 'scan');
           INSERT INTO public.venue_image_attempts (venue_id, outcome, message, detail)
                VALUES (1, 'failed', 'boom', NULL),
                       (1, 'purged', 'removed', '{"url": "https://maps.googleapis.com/x?key=SECRETKEY"}');"#,
    )
    .await?;
    db::migrate_from_upgrade(&mut c).await?;
    let (schema, version): (String, String) = sqlx::query_as(
        "SELECT extnamespace::regnamespace::text, extversion FROM pg_extension WHERE extname = 'venue_images'",
    )
    .fetch_one(&mut c)
    .await?;
    assert_eq!(
        (schema.as_str(), version.as_str()),
        ("venue_images", env!("CARGO_PKG_VERSION"))
    );
    let left_behind: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_proc WHERE pronamespace = 'public'::regnamespace AND proname LIKE 'venue_image%'",
    )
    .fetch_one(&mut c)
    .await?;
    assert_eq!(left_behind, 0, "every function moved");
    let providers: Vec<(String, Option<f64>, bool, Option<String>)> = sqlx::query_as(
        "SELECT provider, per_second, coalesce(paused_until > now(), false), pause_reason FROM venue_images.venue_image_providers ORDER BY 1",
    )
    .fetch_all(&mut c)
    .await?;
    assert_eq!(
        providers,
        vec![
            ("*".into(), Some(40.0), false, None),
            ("here".into(), Some(7.0), true, Some("maintenance".into()))
        ]
    );
    let jobs: Vec<(String, i32)> =
        sqlx::query_as("SELECT provider_url, retry_count FROM venue_images.venue_image_jobs")
            .fetch_all(&mut c)
            .await?;
    assert_eq!(jobs, vec![("https://p/1?key=REDACTED".into(), 1)]);
    let attempts: Vec<String> =
        sqlx::query_scalar("SELECT coalesce(detail::text, message) FROM venue_images.venue_image_attempts ORDER BY attempt_id")
            .fetch_all(&mut c)
            .await?;
    assert_eq!(attempts.len(), 2);
    assert!(
        !attempts.concat().contains("SECRETKEY"),
        "0.2.0's stored secret was redacted: {attempts:?}"
    );
    // 0.2.0 had given the uploader provider rates; 0.3.0's matrix does not.
    let can_set_rates: bool = sqlx::query_scalar(
        "SELECT has_function_privilege('venue_image_uploader', 'venue_images.venue_image_set_provider_rate(text,float8)', 'EXECUTE')",
    )
    .fetch_one(&mut c)
    .await?;
    assert!(!can_set_rates);
    // The application's trigger still fires, through the moved function.
    c.execute(r#"UPDATE venues SET venue_images = venue_images || '[{"provider":"here","provider_url":"https://p/2","upload_status":"failed","error_details":{"error_type":"rate_limited"}}]'"#)
        .await?;
    let queued: i64 = sqlx::query_scalar("SELECT count(*) FROM venue_images.venue_image_jobs")
        .fetch_one(&mut c)
        .await?;
    assert_eq!(queued, 2);
    c.close().await?;
    drop_database(&name).await
}

#[tokio::test]
async fn an_upgraded_database_survives_pg_dump_and_restore() -> Result<()> {
    let (name, url) = bare_database("upgrade_dump").await?;
    let mut c = PgConnection::connect(&url).await?;
    c.execute(db::VENUES_SCHEMA).await?;
    c.execute("CREATE EXTENSION venue_images VERSION '0.2.0'")
        .await?;
    c.execute(MIGRATIONS_0_2_0).await?;
    db::migrate_from_upgrade(&mut c).await?;
    c.execute(
        r#"INSERT INTO venues (name, venue_images) VALUES ('v', '[{"provider":"here","provider_url":"https://p/1","upload_status":"failed","error_details":{"error_type":"rate_limited"}}]');
           SELECT venue_images.venue_image_set_provider_rate('here', 3);"#,
    )
    .await?;
    c.close().await?;
    let dump = std::env::temp_dir().join(format!("vi-dump-{}.sql", std::process::id()));
    let pg_bin = std::env::var("PG_BIN").unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".into());
    let st = std::process::Command::new(format!("{pg_bin}/pg_dump"))
        .args(["--no-owner", "-f"])
        .arg(&dump)
        .arg(&url)
        .status()?;
    assert!(st.success(), "pg_dump failed");
    let text = std::fs::read_to_string(&dump)?;
    assert!(
        text.contains("CREATE EXTENSION IF NOT EXISTS venue_images WITH SCHEMA venue_images"),
        "the dump names the extension's new schema"
    );
    let (restored, restored_url) = bare_database("upgrade_restored").await?;
    let st = std::process::Command::new(format!("{pg_bin}/psql"))
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-f"])
        .arg(&dump)
        .arg(&restored_url)
        .stdout(std::process::Stdio::null())
        .status()?;
    assert!(st.success(), "restoring the dump failed");
    let mut r = PgConnection::connect(&restored_url).await?;
    let jobs: i64 = sqlx::query_scalar("SELECT count(*) FROM venue_images.venue_image_jobs")
        .fetch_one(&mut r)
        .await?;
    let rate: f64 = sqlx::query_scalar(
        "SELECT per_second FROM venue_images.venue_image_providers WHERE provider = 'here'",
    )
    .fetch_one(&mut r)
    .await?;
    assert_eq!((jobs, rate), (1, 3.0));
    r.close().await?;
    let _ = std::fs::remove_file(&dump);
    drop_database(&restored).await?;
    drop_database(&name).await
}
