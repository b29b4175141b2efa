//! The adversarial suite: every attack of issue 7 (and variants), each run as the untrusted
//! role it names: the database owner, a role with no grants, the uploader's role, an
//! analyst, an admin. Each test fails on 0.2.0 (see the closing note of the issue) and
//! must pass on a clean install and on an upgrade from 0.2.0 (scripts/test.sh runs the
//! suite twice).
//!
//! Names are written unqualified where 0.2.0 had them, so that the suite states the same
//! attack against either version; the database's search_path finds them.

use anyhow::{Context, Result};
use serde_json::{json, Value};
use sqlx::{Connection, Executor, PgConnection};
use std::time::Duration;
use venue_images_tests::db;
use venue_images_tests::fakes::{FakeImageKit, ImageKitConfig};
use venue_images_tests::sidecar::{self, Sidecar};
use venue_images_tests::site::{claim_all, code_of, expect_code, record_failure, sqlstate, Site};

// ---------------------------------------------------------------------------------------
// 1. Privilege escalation through the search path.

#[tokio::test]
async fn db_owner_shadowing_builtins_in_public_does_not_become_superuser() -> Result<()> {
    let s = Site::unpaced("sec_shadow").await?;
    let owner = &s.owner;
    let mut o = s.connect(&s.owner_url).await?;
    o.execute("CREATE TABLE public.pwned (who text, via text)")
        .await?;
    o.execute("GRANT INSERT ON public.pwned TO PUBLIC").await?;
    // Built-ins the queue calls, shadowed in public, plus an operator. Each records that
    // it ran and tries to make the owner a superuser (it can only if it runs as one).
    let body = |via: &str| {
        format!(
            "BEGIN
               INSERT INTO public.pwned VALUES (current_user, '{via}');
               BEGIN EXECUTE 'ALTER ROLE {owner} SUPERUSER'; EXCEPTION WHEN OTHERS THEN NULL; END;"
        )
    };
    for (sig, ret) in [
        ("pg_notify(text, text)", "void"),
        ("now()", "timestamptz"),
        ("gen_random_uuid()", "uuid"),
        ("to_char(timestamp, text)", "text"),
        ("md5(text)", "text"),
        ("make_interval(years int, months int, weeks int, days int, hours int, mins int, secs double precision)", "interval"),
        ("unnest(text[])", "setof text"),
        ("least(timestamptz, timestamptz)", "timestamptz"),
    ] {
        let via = sig.split('(').next().unwrap_or(sig);
        let ret_stmt = match ret {
            "void" => "RETURN;".to_string(),
            "setof text" => "RETURN;".to_string(),
            "timestamptz" => "RETURN pg_catalog.now();".to_string(),
            "uuid" => "RETURN pg_catalog.gen_random_uuid();".to_string(),
            "interval" => "RETURN interval '0';".to_string(),
            _ => "RETURN 'x';".to_string(),
        };
        let sql = format!(
            "CREATE FUNCTION public.{sig} RETURNS {ret} LANGUAGE plpgsql AS $f$ {} {ret_stmt} END $f$",
            body(via)
        );
        // least() is syntax, not a function: nothing to shadow there.
        let _ = o.execute(sql.as_str()).await;
    }
    o.execute(
        format!(
            "CREATE FUNCTION public.evil_eq(bigint, bigint) RETURNS bool LANGUAGE plpgsql AS $f$ {} RETURN $1 OPERATOR(pg_catalog.=) $2; END $f$;
             CREATE OPERATOR public.= (LEFTARG = bigint, RIGHTARG = bigint, PROCEDURE = public.evil_eq)",
            body("operator =")
        )
        .as_str(),
    )
    .await?;
    o.close().await?;
    // Every definer path: the trigger (owner's insert), claim, write-back, enqueue, scan.
    let (venue, mut u, job) = s.one_claimed().await?;
    record_failure(&mut u, &job, "server_error", 500, "boom").await?;
    u.execute(format!("SELECT venue_image_enqueue_venue({venue})").as_str())
        .await?;
    u.execute("SELECT * FROM venue_image_cleanup_scan()")
        .await?;
    u.close().await?;
    let mut a = s.connect(&s.admin_url).await?;
    a.execute(format!("SELECT venue_image_force_retry({venue})").as_str())
        .await?;
    a.close().await?;
    assert!(
        !s.owner_is_superuser().await?,
        "the database owner became a superuser"
    );
    s.assert_no_rows(
        "SELECT who, via FROM public.pwned",
        "a shadowing object of the owner's ran",
    )
    .await?;
    s.finish().await
}

#[tokio::test]
async fn db_owner_trigger_on_venues_runs_as_the_owner_never_as_the_queue() -> Result<()> {
    let s = Site::unpaced("sec_apptrigger").await?;
    let owner = &s.owner;
    s.as_owner(
        &format!(
            "CREATE TABLE public.seen (who text, escalated bool, rates bool);
             CREATE FUNCTION public.spy() RETURNS trigger LANGUAGE plpgsql AS $f$
             DECLARE esc bool := true; rates bool := true;
             BEGIN
               BEGIN EXECUTE 'ALTER ROLE {owner} SUPERUSER'; EXCEPTION WHEN OTHERS THEN esc := false; END;
               BEGIN EXECUTE 'UPDATE venue_images.venue_image_providers SET per_second = 999';
               EXCEPTION WHEN OTHERS THEN rates := false; END;
               INSERT INTO public.seen VALUES (current_user, esc, rates);
               RETURN NEW;
             END $f$;
             CREATE TRIGGER spy BEFORE UPDATE ON venues FOR EACH ROW EXECUTE FUNCTION public.spy()"
        ),
    )
    .await?;
    let (_, mut u, job) = s.one_claimed().await?;
    record_failure(&mut u, &job, "server_error", 500, "boom").await?;
    u.close().await?;
    let seen: Vec<(String, bool, bool)> =
        sqlx::query_as("SELECT who, escalated, rates FROM public.seen")
            .fetch_all(&s.db.pool)
            .await?;
    assert_eq!(
        seen.len(),
        1,
        "the application's trigger fired for the write-back"
    );
    assert_eq!(seen[0].0, *owner, "it ran as the table's owner");
    assert!(!seen[0].1, "it could not escalate");
    assert!(
        !seen[0].2,
        "it could not use the queue's rights (provider rates)"
    );
    assert!(!s.owner_is_superuser().await?);
    let rate: Option<f64> = sqlx::query_scalar(
        "SELECT max(per_second) FILTER (WHERE per_second < 'Infinity') FROM venue_images.venue_image_providers",
    )
    .fetch_one(&s.db.pool)
    .await?;
    assert_eq!(rate, None);
    s.finish().await
}

#[tokio::test]
async fn db_owner_planting_the_extension_schema_before_install_is_refused() -> Result<()> {
    let owner = format!("vi_planter_{}", std::process::id());
    let admin = db::database_url()?;
    let name = format!("vi_sec_plant_{}", std::process::id());
    let url = db::create_database(&admin, &name).await?;
    let mut su = PgConnection::connect(&url).await?;
    su.execute(
        format!(
            "{}; ALTER DATABASE {name} OWNER TO {owner}",
            db::create_login(&owner)
        )
        .as_str(),
    )
    .await?;
    db::run(&db::with_user(&url, &owner)?, "CREATE SCHEMA venue_images").await?;
    let err = su
        .execute("CREATE EXTENSION venue_images")
        .await
        .expect_err("installed into a schema the database owner controls");
    let d = err.as_database_error().context("a database error")?;
    assert_eq!(d.code().as_deref(), Some("42501"), "{err}");
    assert!(d.message().contains("not a superuser"), "{err}");
    su.close().await?;
    db::drop_database(&admin, &name).await
}

#[tokio::test]
async fn a_temp_venues_table_of_the_uploader_is_never_used() -> Result<()> {
    let s = Site::unpaced("sec_temp").await?;
    let real = s
        .venue_with_failure("https://p.example/real.jpg", 0)
        .await?;
    let mut u = s.connect(&s.uploader_url).await?;
    u.execute(
        r#"CREATE TEMP TABLE venues (id bigint, name text, slug text, city_id bigint, venue_images jsonb);
           INSERT INTO venues VALUES (424242, 'mine', 'mine', NULL,
             '[{"provider":"here","provider_url":"https://evil.example/x.jpg","upload_status":"failed","error_details":{"error_type":"rate_limited"}}]')"#,
    )
    .await?;
    let n: i32 = sqlx::query_scalar("SELECT venue_image_enqueue_venue(424242)")
        .fetch_one(&mut u)
        .await?;
    assert_eq!(n, 0, "the temp table is not the venues table");
    let urls: Vec<String> =
        sqlx::query_scalar("SELECT provider_url FROM venue_image_claim('w', 10, 60)")
            .fetch_all(&mut u)
            .await?;
    assert_eq!(urls, vec!["https://p.example/real.jpg".to_string()]);
    u.close().await?;
    assert_eq!(s.element(real, 0).await?["upload_status"], "failed");
    s.finish().await
}

// ---------------------------------------------------------------------------------------
// 2. The enqueue trigger.

#[tokio::test]
async fn anyone_attaching_the_enqueue_trigger_to_their_own_table_is_refused() -> Result<()> {
    let s = Site::new("sec_trigger").await?;
    for url in [&s.nobody_url, &s.owner_url, &s.uploader_url] {
        let mut c = s.connect(url).await?;
        c.execute("CREATE TEMP TABLE t (id bigint, venue_images jsonb)")
            .await?;
        expect_code(
            &mut c,
            "CREATE TRIGGER q AFTER INSERT ON t FOR EACH ROW EXECUTE FUNCTION venue_images_enqueue_trigger()",
            "42501",
        )
        .await;
        c.close().await?;
    }
    // Even attached by mistake (by a superuser), it refuses another table.
    s.superuser(
        "CREATE TABLE other (id bigint, venue_images jsonb);
         CREATE TRIGGER q AFTER INSERT ON other FOR EACH ROW EXECUTE FUNCTION venue_images_enqueue_trigger()",
    )
    .await?;
    let mut c = s.connect(&s.db.url).await?;
    expect_code(
        &mut c,
        r#"INSERT INTO other SELECT g, '[{"provider":"here","provider_url":"https://x/1","upload_status":"failed","error_details":{"error_type":"rate_limited"}}]'
             FROM generate_series(1, 3000) g"#,
        "42809",
    )
    .await;
    c.close().await?;
    assert_eq!(s.queued_jobs().await?, 0);
    s.finish().await
}

// ---------------------------------------------------------------------------------------
// 3. Policy follows only what a superuser configured.

/// Settings a definer function follows, with hostile values.
const POLICY: &[(&str, &str)] = &[
    ("venue_images.max_retries", "0"),
    ("venue_images.max_retries", "1000"),
    ("venue_images.attempt_retention_days", "1"),
    ("venue_images.transient_errors", "''"),
    ("venue_images.permanent_errors", "'rate_limited'"),
    ("venue_images.retry_base_seconds", "86400"),
    ("venue_images.folder_base", "'/elsewhere'"),
    ("venue_images.venues_table", "'pg_temp.venues'"),
    ("venue_images.images_column", "'name'"),
    ("venue_images.imagekit_url_prefix", "''"),
    ("venue_images.pacing_margin", "0"),
    ("venue_images.gin_max_failing_share", "1"),
];

#[tokio::test]
async fn uploader_setting_max_retries_zero_before_the_scan_finalizes_nothing() -> Result<()> {
    let s = Site::new("sec_max0").await?;
    let venue = s.venue_with_failure("https://p.example/1.jpg", 1).await?;
    // A new session, before the library is loaded: a placeholder is accepted, then
    // discarded (with a warning) when the library defines the setting.
    let mut u = s.connect(&s.uploader_url).await?;
    u.execute("SET venue_images.max_retries = 0").await?;
    u.execute("SELECT * FROM venue_image_cleanup_scan()")
        .await?;
    // Loaded now: refused.
    expect_code(&mut u, "SET venue_images.max_retries = 0", "42501").await;
    u.execute("SELECT * FROM venue_image_cleanup_scan()")
        .await?;
    u.close().await?;
    let e = s.element(venue, 0).await?;
    assert_eq!(
        e["upload_status"], "failed",
        "the scan finalised a retryable image: {e}"
    );
    assert_eq!(s.queued_jobs().await?, 1);
    s.finish().await
}

#[tokio::test]
async fn uploader_setting_max_retries_1000_cannot_retry_past_the_cap() -> Result<()> {
    let s = Site::unpaced("sec_max1000").await?;
    let venue = s.venue_with_failure("https://p.example/1.jpg", 2).await?;
    let mut u = s.connect(&s.uploader_url).await?;
    u.execute("SET venue_images.max_retries = 1000").await?; // placeholder, discarded
    let jobs = claim_all(&mut u).await?;
    assert_eq!(jobs.len(), 1);
    expect_code(&mut u, "SET venue_images.max_retries = 1000", "42501").await;
    let status = record_failure(&mut u, &jobs[0], "server_error", 500, "boom").await?;
    assert_eq!(
        status.as_deref(),
        Some("permanently_failed"),
        "the third attempt is the last"
    );
    assert!(claim_all(&mut u).await?.is_empty());
    u.close().await?;
    assert_eq!(s.element(venue, 0).await?["retry_count"], 3);
    s.finish().await
}

#[tokio::test]
async fn uploader_setting_attempt_retention_one_day_prunes_nothing() -> Result<()> {
    let s = Site::new("sec_retention").await?;
    s.superuser(
        "INSERT INTO venue_images.venue_image_attempts (at, venue_id, outcome, message)
         SELECT now() - make_interval(days => d), 1, 'failed', 'old' FROM generate_series(2, 20) d",
    )
    .await?;
    let mut u = s.connect(&s.uploader_url).await?;
    u.execute("SET venue_images.attempt_retention_days = 1")
        .await?; // placeholder
    u.execute("SELECT * FROM venue_image_cleanup_scan()")
        .await?;
    expect_code(
        &mut u,
        "SET venue_images.attempt_retention_days = 1",
        "42501",
    )
    .await;
    expect_code(
        &mut u,
        "SELECT venue_image_prune_attempts('1 day')",
        "42501",
    )
    .await;
    u.execute("SELECT * FROM venue_image_cleanup_scan()")
        .await?;
    u.close().await?;
    let kept: i64 = s
        .scalar("SELECT count(*) FROM venue_images.venue_image_attempts")
        .await?;
    assert_eq!(kept, 19, "the default 30 days of history stay");
    s.finish().await
}

#[tokio::test]
async fn no_session_setting_of_any_untrusted_role_reaches_a_definer_function() -> Result<()> {
    let s = Site::new("sec_settings").await?;
    for url in [
        &s.uploader_url,
        &s.reader_url,
        &s.admin_url,
        &s.owner_url,
        &s.nobody_url,
    ] {
        let mut c = s.connect(url).await?;
        c.execute("SELECT venue_image_classify_error('x')").await?; // loads the library
        for (name, value) in POLICY {
            expect_code(&mut c, &format!("SET {name} = {value}"), "42501").await;
            expect_code(&mut c, &format!("SET LOCAL {name} = {value}"), "42501").await;
            expect_code(
                &mut c,
                &format!("SELECT set_config('{name}', {value}::text, false)"),
                "42501",
            )
            .await;
        }
        expect_code(&mut c, "SET venue_images.anything_new = 1", "42602").await;
        c.close().await?;
    }
    // The database owner cannot set them for the database or for a role either, and a
    // function of theirs cannot carry them.
    let mut o = s.connect(&s.owner_url).await?;
    let dbname: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&mut o)
        .await?;
    // With the library loaded in the owner's session (any per-value function loads it):
    // on 0.2.0 this is how the owner set policy for the whole database.
    o.execute("SELECT venue_images_dedupe('[]')").await?;
    expect_code(
        &mut o,
        &format!("ALTER DATABASE {dbname} SET venue_images.max_retries = 1000"),
        "42501",
    )
    .await;
    expect_code(
        &mut o,
        &format!("ALTER ROLE {} SET venue_images.max_retries = 1000", s.owner),
        "42501",
    )
    .await;
    expect_code(
        &mut o,
        "CREATE FUNCTION public.f() RETURNS void LANGUAGE sql SET venue_images.max_retries = 1000 AS 'SELECT'",
        "42501",
    )
    .await;
    o.close().await?;
    // Nor before the library is loaded (a placeholder cannot be stored for later).
    let mut o = s.connect(&s.owner_url).await?;
    expect_code(
        &mut o,
        &format!("ALTER DATABASE {dbname} SET venue_images.max_retries = 1000"),
        "42501",
    )
    .await;
    o.close().await?;
    s.finish().await
}

// ---------------------------------------------------------------------------------------
// 4. The trigger's "queue write in progress" marker.

#[tokio::test]
async fn an_application_trigger_error_during_write_back_does_not_silence_the_trigger() -> Result<()>
{
    let s = Site::unpaced("sec_flag").await?;
    // The application's login also runs an uploader here (one connection does both).
    s.superuser(&format!("GRANT venue_image_uploader TO {}", s.owner))
        .await?;
    let mut o = s.connect(&s.owner_url).await?;
    o.execute(
        "CREATE FUNCTION public.picky() RETURNS trigger LANGUAGE plpgsql AS $f$
         BEGIN
           IF current_setting('app.fail', true) = 'on' THEN RAISE EXCEPTION 'application says no'; END IF;
           RETURN NEW;
         END $f$;
         CREATE TRIGGER picky BEFORE UPDATE ON venues FOR EACH ROW EXECUTE FUNCTION public.picky()",
    )
    .await?;
    let venue = s.venue_with_failure("https://p.example/1.jpg", 0).await?;
    let jobs = claim_all(&mut o).await?;
    o.execute("SET app.fail = 'on'").await?;
    let err = record_failure(&mut o, &jobs[0], "server_error", 500, "boom").await;
    assert!(
        err.is_err(),
        "the application's trigger refused the write-back"
    );
    o.execute("RESET app.fail").await?;
    // The same connection (a pooled one, say) writes a new transient failure.
    let add = |u: &str| {
        format!(
            r#"UPDATE venues SET venue_images = venue_images || '[{{"provider":"here","provider_url":"{u}","upload_status":"failed","error_details":{{"error_type":"rate_limited"}}}}]' WHERE id = {venue}"#
        )
    };
    o.execute(add("https://p.example/2.jpg").as_str()).await?;
    // And after an error inside a savepoint, in the same transaction.
    o.execute("BEGIN").await?;
    o.execute("SAVEPOINT s; SET LOCAL app.fail = 'on'").await?;
    let jobs = claim_all(&mut o).await?;
    let job = jobs.first().cloned().unwrap_or((0, String::new()));
    let failed = record_failure(&mut o, &job, "server_error", 500, "boom").await;
    assert!(failed.is_err());
    o.execute("ROLLBACK TO SAVEPOINT s").await?;
    o.execute(add("https://p.example/3.jpg").as_str()).await?;
    o.execute("COMMIT").await?;
    o.close().await?;
    let queued: Vec<String> = sqlx::query_scalar(
        "SELECT provider_url FROM venue_images.venue_image_jobs ORDER BY provider_url",
    )
    .fetch_all(&s.db.pool)
    .await?;
    for url in ["https://p.example/2.jpg", "https://p.example/3.jpg"] {
        assert!(queued.iter().any(|q| q == url), "{url}: {queued:?}");
    }
    s.finish().await
}

// ---------------------------------------------------------------------------------------
// 5. Secrets.

const SECRET: &str = "AIzaSyPLANTEDSECRET0123456789";

#[tokio::test]
async fn purge_keeps_no_key_in_the_attempt_log() -> Result<()> {
    let s = Site::new("sec_purge").await?;
    let images = json!([{"provider": "google_places", "upload_status": "permanently_failed",
        "provider_url": format!("https://maps.googleapis.com/maps/api/place/photo?photo_reference=R&key={SECRET}"),
        "url": format!("https://maps.googleapis.com/maps/api/place/photo?photo_reference=R&key={SECRET}"),
        "original_tigris_url": format!("https://u:{SECRET}@tigris.example/x.jpg"),
        "note": format!("fetched with key={SECRET}"),
        "error_details": {"error_type": "not_found", "error": format!("HTTP 404 from https://h/?sig={SECRET}")}}]);
    let venue = s.owner_inserts(images).await?;
    let mut a = s.connect(&s.admin_url).await?;
    let n: i32 = sqlx::query_scalar("SELECT venue_image_purge_permanently_failed($1)")
        .bind(venue)
        .fetch_one(&mut a)
        .await?;
    assert_eq!(n, 1);
    a.close().await?;
    let log: String = s
        .scalar("SELECT string_agg(a::text, E'\\n') FROM venue_images.venue_image_attempts a")
        .await?;
    assert!(
        log.contains("purged") && log.contains("photo_reference=R"),
        "{log}"
    );
    assert!(!log.contains(SECRET), "a secret in the attempt log: {log}");
    s.finish().await
}

#[tokio::test]
async fn secrets_in_every_position_of_a_message_never_reach_the_database() -> Result<()> {
    let s = Site::unpaced("sec_redact").await?;
    let forms = [
        format!("https://maps.googleapis.com/maps/api/streetview?size=600x300&location=46.41,10.01&key={SECRET}"),
        format!("https://maps.googleapis.com/p?photo_reference=a,b&key={SECRET}"),
        format!("https://h/x?%6Bey={SECRET}"),
        format!("https://h/x?a=1;key={SECRET}"),
        format!("https://h/cb#access_token={SECRET}"),
        format!("https://s3.example/o?X-Amz-Signature={SECRET}&X-Amz-Credential={SECRET}&X-Amz-Security-Token={SECRET}"),
        format!("https://storage.example/o?X-Goog-Signature={SECRET}"),
        format!("https://h/o?client_id={SECRET}&password={SECRET}"),
        format!("https:/user:{SECRET}@h/x"),
        format!("https:\\\\user:{SECRET}@h/x"),
        format!("the provider said: invalid key={SECRET} (quota)"),
        format!("error sending request for url (https://h/x?sig={SECRET}): connection refused"),
    ];
    let venue = s.venue_with_failure("https://p.example/1.jpg", 0).await?;
    let mut u = s.connect(&s.uploader_url).await?;
    for form in &forms {
        // Retryable again (as the application might write it), then one attempt whose
        // message carries the secret.
        s.superuser(&format!(
            r#"UPDATE venues SET venue_images = jsonb_set(jsonb_set(venue_images,
                   '{{0,error_details,error_type}}', '"rate_limited"'), '{{0,retry_count}}', '0')
                WHERE id = {venue};
               SELECT venue_images.venue_image_enqueue_venue({venue});"#
        ))
        .await?;
        let jobs = claim_all(&mut u).await?;
        assert_eq!(jobs.len(), 1, "{form}");
        record_failure(&mut u, &jobs[0], "http_error", 418, form).await?;
    }
    u.close().await?;
    let everything: String = s
        .scalar(
            "SELECT concat_ws(E'\\n',
                (SELECT string_agg(a::text, E'\\n') FROM venue_images.venue_image_attempts a),
                (SELECT string_agg(j::text, E'\\n') FROM venue_images.venue_image_jobs j),
                (SELECT string_agg(v.venue_images::text, E'\\n') FROM venues v))",
        )
        .await?;
    assert!(everything.contains("REDACTED"));
    assert!(
        !everything.contains(SECRET),
        "a secret was stored:\n{everything}"
    );
    s.finish().await
}

/// Runs `once` as the uploader against `images` (allow_loopback as given) and returns its
/// log, the venue, and the database's text.
async fn uploader_once(
    s: &Site,
    images: Value,
    allow_loopback: bool,
) -> Result<(String, i64, String)> {
    let ik = FakeImageKit::start(ImageKitConfig::default()).await?;
    let venue = s.owner_inserts(images).await?;
    let log = std::env::temp_dir().join(format!("vi-sec-{}-{venue}.log", std::process::id()));
    let mut env = sidecar::env(&s.uploader_url, &ik.upload_url(), ik.private_key());
    env.retain(|(k, _)| k != "VENUE_UPLOADER_ALLOW_LOOPBACK");
    env.push((
        "VENUE_UPLOADER_ALLOW_LOOPBACK".into(),
        allow_loopback.to_string(),
    ));
    env.push(("VENUE_UPLOADER_LOG".into(), "debug".into()));
    let args: Vec<String> = ["once", "--connect-timeout", "1", "--download-timeout", "2"]
        .iter()
        .map(|a| a.to_string())
        .collect();
    let mut up = Sidecar::spawn(&args, &env, &log)?;
    let st = up.wait_for(Duration::from_secs(60)).await?;
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(st.success(), "{}", sidecar::tail(&log, 30));
    let _ = std::fs::remove_file(&log);
    // Everything the extension wrote (the application's own provider_url keeps its key).
    let db_text: String = s
        .scalar(
            "SELECT concat_ws(E'\\n',
                (SELECT string_agg(a::text, E'\\n') FROM venue_images.venue_image_attempts a),
                (SELECT string_agg(j::text, E'\\n') FROM venue_images.venue_image_jobs j),
                (SELECT string_agg(p::text, E'\\n') FROM venue_images.venue_image_providers p),
                (SELECT string_agg(e->>'error_details', E'\\n') FROM venues v, jsonb_array_elements(v.venue_images) e))",
        )
        .await?;
    Ok((text, venue, db_text))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_errors_on_urls_with_commas_log_no_key() -> Result<()> {
    let s = Site::unpaced("sec_commas").await?;
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let images = json!([
        {"provider": "google_places", "upload_status": "failed", "error_details": {"error_type": "network_error"},
         "provider_url": format!("http://127.0.0.1:{closed}/maps/api/streetview?size=600x300&location=46.41,10.01&key={SECRET}")},
        {"provider": "google_places", "upload_status": "failed", "error_details": {"error_type": "network_error"},
         "provider_url": format!("http://127.0.0.1:{closed}/maps/api/place/photo?photo_reference=a,b&key={SECRET}")}
    ]);
    let (log, _, db_text) = uploader_once(&s, images, true).await?;
    assert!(log.contains("attempt failed"), "{log}");
    assert!(!log.contains(SECRET), "a key in the log:\n{log}");
    assert!(
        !db_text.contains(SECRET),
        "a key in the database:\n{db_text}"
    );
    s.finish().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_download_names_no_internal_address() -> Result<()> {
    let s = Site::unpaced("sec_dns").await?;
    let images = json!([{"provider": "here", "upload_status": "failed", "error_details": {"error_type": "network_error"},
                         "provider_url": "http://localhost:9/secret-service/x.jpg"}]);
    let (log, venue, _) = uploader_once(&s, images, false).await?;
    let e = s.element(venue, 0).await?;
    assert_eq!(
        e["error_details"]["error_type"], "invalid_provider_url",
        "{e}"
    );
    let msg = e["error_details"]["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(msg.contains("localhost"), "{msg}");
    for addr in ["127.0.0.1", "::1"] {
        assert!(!msg.contains(addr), "the resolved address leaked: {msg}");
        assert!(!log.contains(&format!("({addr})")), "{log}");
    }
    s.finish().await
}

// ---------------------------------------------------------------------------------------
// 6. Bad input to the queue.

#[tokio::test]
async fn an_admin_setting_a_nan_rate_is_refused_and_claims_keep_working() -> Result<()> {
    let s = Site::new("sec_nan").await?;
    s.venue_with_failure("https://p.example/1.jpg", 0).await?;
    let mut a = s.connect(&s.admin_url).await?;
    for bad in ["'NaN'", "0", "-1", "'-Infinity'"] {
        expect_code(
            &mut a,
            &format!("SELECT venue_image_set_provider_rate('here', {bad})"),
            "22023",
        )
        .await;
    }
    a.execute("SELECT venue_image_set_provider_rate('here', 5)")
        .await?;
    a.close().await?;
    let mut u = s.connect(&s.uploader_url).await?;
    assert_eq!(claim_all(&mut u).await?.len(), 1);
    u.close().await?;
    s.finish().await
}

#[tokio::test]
async fn an_uploader_recording_a_javascript_or_foreign_url_is_refused() -> Result<()> {
    let s = Site::unpaced("sec_url").await?;
    let (venue, mut u, job) = s.one_claimed().await?;
    for bad in [
        "javascript:alert(1)",
        "data:text/html,x",
        "",
        "ftp://h/x",
        "https://h/x y",
        "https:///x",
    ] {
        let sql = format!(
            "SELECT venue_image_record_success({}, '{}', '{bad}', '/venues/v/x.jpg')",
            job.0, job.1
        );
        expect_code(&mut u, &sql, "22023").await;
    }
    let batch = json!([{"job_id": job.0, "lease_token": job.1, "url": "javascript:alert(1)", "imagekit_path": "/x"}]);
    let code = sqlx::query("SELECT * FROM venue_image_record_results($1)")
        .bind(batch)
        .execute(&mut u)
        .await
        .err()
        .and_then(|e| sqlstate(&e));
    assert_eq!(code.as_deref(), Some("22023"));
    u.close().await?;
    // With the prefix a superuser configured, only ImageKit's own URLs are accepted.
    let dbname: String = s.scalar("SELECT current_database()").await?;
    s.superuser(&format!(
        "ALTER DATABASE {dbname} SET venue_images.imagekit_url_prefix = 'https://ik.imagekit.io/'"
    ))
    .await?;
    let mut u = s.connect(&s.uploader_url).await?;
    expect_code(
        &mut u,
        &format!(
            "SELECT venue_image_record_success({}, '{}', 'https://evil.example/x.jpg', '/x')",
            job.0, job.1
        ),
        "22023",
    )
    .await;
    let ok: bool = sqlx::query_scalar(&format!(
        "SELECT venue_image_record_success({}, '{}', 'https://ik.imagekit.io/demo/x.jpg', '/venues/v/x.jpg')",
        job.0, job.1
    ))
    .fetch_one(&mut u)
    .await?;
    assert!(ok);
    u.close().await?;
    assert_eq!(
        s.element(venue, 0).await?["url"],
        "https://ik.imagekit.io/demo/x.jpg"
    );
    s.finish().await
}

#[tokio::test]
async fn huge_messages_are_capped_and_leases_are_clamped() -> Result<()> {
    let s = Site::unpaced("sec_caps").await?;
    let (venue, mut u, job) = s.one_claimed().await?;
    let extended: bool =
        sqlx::query_scalar("SELECT venue_image_extend_lease($1, $2::uuid, 2000000000)")
            .bind(job.0)
            .bind(&job.1)
            .fetch_one(&mut u)
            .await?;
    assert!(extended);
    let lease_days: f64 = s
        .scalar("SELECT extract(epoch FROM lease_expires_at - now())::float8 / 86400 FROM venue_images.venue_image_jobs")
        .await?;
    assert!(lease_days <= 1.0, "a lease of {lease_days} days");
    let huge = "x".repeat(1_000_000);
    record_failure(&mut u, &job, "server_error", 500, &huge).await?;
    u.close().await?;
    let e = s.element(venue, 0).await?;
    assert!(
        e["error_details"]["error"]
            .as_str()
            .unwrap_or_default()
            .len()
            <= 500
    );
    let longest: i32 = s
        .scalar("SELECT max(octet_length(message)) FROM venue_images.venue_image_attempts")
        .await?;
    assert!(longest <= 500, "{longest}");
    s.finish().await
}

#[tokio::test]
async fn retry_counts_that_do_not_fit_saturate() -> Result<()> {
    let s = Site::unpaced("sec_saturate").await?;
    let images = json!([
        {"provider": "here", "provider_url": "https://p.example/1.jpg", "upload_status": "permanently_failed",
         "retry_count": 9223372036854775807i64, "error_details": {"error_type": "rate_limited"}},
        {"provider": "here", "provider_url": "https://p.example/2.jpg", "upload_status": "permanently_failed",
         "retry_count": 1e30, "error_details": {"error_type": "rate_limited"}},
        {"provider": "here", "provider_url": "https://p.example/3.jpg", "upload_status": "failed",
         "retry_count": "2", "error_details": {"error_type": "rate_limited"}}
    ]);
    let venue = s.owner_inserts(images).await?;
    let mut a = s.connect(&s.admin_url).await?;
    a.execute(format!("SELECT venue_image_force_retry({venue})").as_str())
        .await?;
    a.close().await?;
    let mut u = s.connect(&s.uploader_url).await?;
    let claimed: Vec<(i64, String, i32)> = sqlx::query_as(
        "SELECT job_id, lease_token::text, attempt FROM venue_image_claim('w', 10, 60)",
    )
    .fetch_all(&mut u)
    .await?;
    assert_eq!(claimed.len(), 3);
    assert!(claimed.iter().any(|c| c.2 == i32::MAX), "{claimed:?}");
    assert!(
        claimed.iter().any(|c| c.2 == 3),
        "\"2\" is read as 2: {claimed:?}"
    );
    for (job, token, _) in claimed {
        record_failure(&mut u, &(job, token), "server_error", 500, "boom").await?;
    }
    u.close().await?;
    for (i, key, want) in [
        (0, "retry_count", json!(i64::MAX)),
        (2, "retry_count", json!(3)),
        (2, "upload_status", json!("permanently_failed")),
    ] {
        assert_eq!(s.element(venue, i).await?[key], want, "image {i}: {key}");
    }
    s.finish().await
}

// ---------------------------------------------------------------------------------------
// 7. The role matrix: each role against each function, allowed or 42501.

#[tokio::test]
async fn the_role_matrix_holds() -> Result<()> {
    let s = Site::unpaced("sec_matrix").await?;
    // A queued image for the functions to work on.
    s.venue_with_failure("https://p.example/1.jpg", 0).await?;
    // R reader, U uploader, A admin; the per-value functions are everyone's (E).
    let matrix: Vec<(&str, &str)> = vec![
        ("SELECT venue_image_classify_error('x')", "E"),
        ("SELECT venue_image_error_type(404)", "E"),
        ("SELECT venue_image_quality_score(10, 10)", "E"),
        ("SELECT venue_image_priority_score(1, 10, true)", "E"),
        ("SELECT venue_image_file_name('https://h/x.jpg', 'here')", "E"),
        ("SELECT venue_image_folder('s', 1)", "E"),
        ("SELECT venue_images_dedupe('[]')", "E"),
        ("SELECT venue_images_merge('[]', '[]')", "E"),
        ("SELECT * FROM venue_images_summary('[]')", "E"),
        ("SELECT venue_images_redact('key=x')", "E"),
        ("SELECT venue_images_redact_json('{}')", "E"),
        ("SELECT venue_images_finalize('[]')", "E"),
        ("SELECT venue_images_stats(x) FROM (VALUES ('[]'::jsonb)) t(x)", "E"),
        ("SELECT * FROM venue_image_failure_breakdown()", "RUA"),
        ("SELECT * FROM venues_with_image_failures()", "RUA"),
        ("SELECT * FROM venue_image_partial_failure_candidates()", "RUA"),
        ("SELECT * FROM venue_image_high_priority_venues()", "RUA"),
        ("SELECT * FROM venue_image_summary_stats()", "RUA"),
        ("SELECT venue_image_overview(5)", "RUA"),
        ("SELECT * FROM venue_image_retry_report()", "RUA"),
        ("SELECT * FROM venue_image_recovery_timeline()", "RUA"),
        ("SELECT venue_image_next_due()", "RUA"),
        ("SELECT * FROM venue_image_venue_images(1)", "RUA"),
        ("SELECT * FROM venue_image_find_venues('v')", "RUA"),
        ("SELECT * FROM venue_image_venue_summary(1)", "RUA"),
        ("SELECT * FROM venue_image_venue_attempts(1, 10)", "RUA"),
        ("SELECT * FROM venue_image_queue_summary(1)", "RUA"),
        ("SELECT * FROM venue_image_provider_overview()", "RUA"),
        ("SELECT * FROM venue_image_scan_log(10)", "RUA"),
        ("SELECT * FROM venue_image_role_grants()", "E"),
        ("SELECT venue_image_success_rate(3, 4)", "E"),
        ("SELECT venue_image_outcome_group('recovered')", "E"),
        ("SELECT venue_image_effective_rate('google', NULL, NULL)", "E"),
        ("SELECT venue_image_job_claimable(now(), NULL, NULL)", "E"),
        ("SELECT venue_image_default_rate('google')", "E"),
        ("SELECT * FROM venue_images_summary_counts('[]')", "E"),
        ("SELECT * FROM venue_image_retry_queue", "RUA"),
        ("SELECT * FROM venue_image_provider_status", "RUA"),
        ("SELECT * FROM venue_images.venue_image_attempts", "RUA"),
        ("SELECT * FROM venue_images.venue_image_skips", "RUA"),
        ("SELECT * FROM venue_images.venue_image_scans", "RUA"),
        ("SELECT * FROM venue_image_claim('w', 1, 60)", "U"),
        ("SELECT * FROM venue_image_claim_venue('w', 1, 1, 60)", "U"),
        ("SELECT venue_image_extend_lease(1, gen_random_uuid(), 60)", "U"),
        ("SELECT venue_image_release(1, gen_random_uuid())", "U"),
        ("SELECT venue_image_record_success(1, gen_random_uuid(), 'https://ik.imagekit.io/x', '/x')", "U"),
        ("SELECT venue_image_record_failure(1, gen_random_uuid(), 'server_error', 500, 'm')", "U"),
        ("SELECT * FROM venue_image_record_results('[]')", "U"),
        ("SELECT venue_image_pause_provider('here', now() + interval '1 second', 'm')", "UA"),
        ("SELECT venue_image_enqueue_venue(1)", "UA"),
        ("SELECT * FROM venue_image_cleanup_scan()", "UA"),
        ("SELECT * FROM venue_image_scheduled_scan(now() - interval '1 day')", "UA"),
        ("SELECT venue_image_resume_provider('here')", "A"),
        ("SELECT venue_image_set_provider_rate('here', 5)", "A"),
        ("SELECT venue_image_force_retry(1)", "A"),
        ("SELECT venue_image_force_retry_image(1, 0)", "A"),
        ("SELECT venue_image_purge_permanently_failed(1)", "A"),
        ("SELECT venue_image_prune_attempts()", "A"),
        ("SELECT * FROM venues", ""),
        ("UPDATE venues SET name = name", ""),
        ("INSERT INTO venue_images.venue_image_jobs (venue_id, url_hash, provider_url, provider, enqueued_by) VALUES (1, '\\x00112233445566778899aabbccddeeff', 'x', 'x', 'x')", ""),
        ("UPDATE venue_images.venue_image_providers SET per_second = 1", ""),
        ("DELETE FROM venue_images.venue_image_attempts", ""),
    ];
    for (role, key, url) in [
        ("reader", 'R', &s.reader_url),
        ("uploader", 'U', &s.uploader_url),
        ("admin", 'A', &s.admin_url),
        ("no grants", 'N', &s.nobody_url),
    ] {
        let mut c = s.connect(url).await?;
        for (sql, who) in &matrix {
            c.execute("BEGIN").await?;
            let got = code_of(&mut c, sql).await;
            c.execute("ROLLBACK").await?;
            let allowed = who.contains('E') || who.contains(key);
            if allowed {
                assert_eq!(got, None, "{role} may run: {sql}");
            } else {
                assert_eq!(got.as_deref(), Some("42501"), "{role} may not run: {sql}");
            }
        }
        c.close().await?;
    }
    s.finish().await
}

/// The grants in the database are exactly the one list's (`venue_images_core::roles`):
/// each function and relation of the extension is granted to exactly the roles the list
/// names, directly, and nothing else is (the trigger and the aggregates' internal
/// functions are nobody's). The install script and sql/002_roles.sql grant from the list;
/// this pins both to it.
#[tokio::test]
async fn the_grants_are_exactly_the_one_lists() -> Result<()> {
    use venue_images_core::roles::GRANTS;
    let s = Site::new("sec_grants").await?;
    let actual: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT CASE WHEN a.grantee OPERATOR(pg_catalog.=) 0::pg_catalog.oid THEN 'PUBLIC'
                     ELSE a.grantee::pg_catalog.regrole::pg_catalog.text END,
                a.privilege_type,
                o.obj
           FROM (SELECT p.oid::pg_catalog.regprocedure::pg_catalog.text AS obj, p.proacl AS acl, p.proowner AS owner
                   FROM pg_catalog.pg_proc p
                  WHERE p.pronamespace OPERATOR(pg_catalog.=) 'venue_images'::pg_catalog.regnamespace
                 UNION ALL
                 SELECT c.oid::pg_catalog.regclass::pg_catalog.text, c.relacl, c.relowner
                   FROM pg_catalog.pg_class c
                  WHERE c.relnamespace OPERATOR(pg_catalog.=) 'venue_images'::pg_catalog.regnamespace
                    AND c.relkind OPERATOR(pg_catalog.=) ANY ('{r,v}'::pg_catalog.\"char\"[])) o
          CROSS JOIN LATERAL pg_catalog.aclexplode(o.acl) a
          LEFT JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) a.grantee
          WHERE a.grantee OPERATOR(pg_catalog.<>) o.owner
            AND (a.grantee OPERATOR(pg_catalog.=) 0::pg_catalog.oid
                 OR r.rolname OPERATOR(pg_catalog.~~) 'venue_image\\_%')
            AND r.rolname IS DISTINCT FROM 'venue_image_definer'
          ORDER BY 1, 2, 3",
    )
    .fetch_all(&s.db.pool)
    .await?;
    let mut want: Vec<(String, String, String)> = GRANTS
        .iter()
        .map(|(r, p, o)| {
            // regprocedure and regclass print our objects without the schema when it is
            // on the search path; compare without it.
            (
                r.as_str().to_string(),
                p.as_str().to_string(),
                o.to_string(),
            )
        })
        .collect();
    want.sort();
    let norm = |o: &str| o.trim_start_matches("venue_images.").replace(", ", ",");
    let actual: Vec<(String, String, String)> = actual
        .into_iter()
        .map(|(r, p, o)| (r, p, norm(&o)))
        .collect();
    let want: Vec<(String, String, String)> =
        want.into_iter().map(|(r, p, o)| (r, p, norm(&o))).collect();
    let missing: Vec<_> = want.iter().filter(|g| !actual.contains(g)).collect();
    let extra: Vec<_> = actual.iter().filter(|g| !want.contains(g)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "grants differ from venue_images_core::roles::GRANTS:\nmissing {missing:#?}\nextra {extra:#?}"
    );
    s.finish().await
}
