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
       || ' strict=' || p.proisstrict || ' cfg=' || coalesce(array_to_string(p.proconfig, ','), '')
       || ' args=' || coalesce(pg_get_function_arguments(p.oid), '')
       || ' acl=' || coalesce(array_to_string(p.proacl, ','), 'default')
       || CASE WHEN p.prolang = (SELECT oid FROM pg_language WHERE lanname = 'c') THEN ' c:' || p.prosrc ELSE ' body:' || md5(p.prosrc) END
  FROM objs o JOIN pg_proc p ON o.classid = 'pg_proc'::regclass AND p.oid = o.objid
UNION ALL
SELECT 'relation ' || c.relname || ' ' || c.relkind::text || ' ' || coalesce(
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

    for from in ["0.1.0"] {
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
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM venue_image_claim('w', 5, 60)")
        .fetch_one(&mut c)
        .await?;
    assert_eq!(n, 1);
    c.close().await?;
    drop_database(&name).await
}
