//! The second round of attacks (issue 15): one or more per class of
//! `shared/spec/attack-classes.md` that applies, each run as the untrusted role it names
//! (the database owner above all: it controls the venues table's triggers, policies and
//! rules, the public schema and the database's `search_path`). Every test states its class
//! in a comment. scripts/test.sh runs this suite on a fresh install and again on
//! extensions updated from 0.2.0 and from 0.3.0.
//!
//! Each attack here worked on 0.3.0 (965c787), or would have without the fix it names.

use anyhow::{ensure, Context, Result};
use serde_json::json;
use sqlx::{Connection, Executor, PgConnection};
use std::process::Command;
use venue_images_tests::db;
use venue_images_tests::site::{
    checker, claim_all, code_of, insert_venue, one, record_failure, show, sqlstate, Site,
};
use venue_images_tests::traps;

/// The definer functions as the catalog has them (security, path, owner, rights, body),
/// for proving that nothing rewired them.
async fn definers(c: &mut PgConnection) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar(
        "SELECT p.oid::pg_catalog.regprocedure::pg_catalog.text OPERATOR(pg_catalog.||) ' '
                OPERATOR(pg_catalog.||) p.prosecdef::pg_catalog.text OPERATOR(pg_catalog.||) ' '
                OPERATOR(pg_catalog.||) coalesce(pg_catalog.array_to_string(p.proconfig, ','), '')
                OPERATOR(pg_catalog.||) ' ' OPERATOR(pg_catalog.||) p.proowner::pg_catalog.regrole::pg_catalog.text
                OPERATOR(pg_catalog.||) ' ' OPERATOR(pg_catalog.||) coalesce(pg_catalog.array_to_string(p.proacl, ','), '')
                OPERATOR(pg_catalog.||) ' ' OPERATOR(pg_catalog.||) pg_catalog.md5(p.prosrc)
           FROM pg_catalog.pg_proc p
          WHERE p.pronamespace OPERATOR(pg_catalog.=) 'venue_images'::pg_catalog.regnamespace
          ORDER BY 1",
    )
    .fetch_all(&mut *c)
    .await?)
}

/// A venue with `n` transient failures, inserted by the owner (the trigger queues them).
async fn venue_with_failures(s: &Site, n: usize) -> Result<i64> {
    let images: Vec<_> = (0..n)
        .map(|i| {
            json!({"provider": "here", "provider_url": format!("https://p.example/{i}.jpg"),
                   "upload_status": "failed", "error_details": {"error_type": "rate_limited"}})
        })
        .collect();
    s.owner_inserts(serde_json::Value::Array(images)).await
}

/// Runs each statement on `c`, with `venue` bound to `$1` where there is one.
async fn run_each(c: &mut PgConnection, venue: i64, statements: &[&str]) -> Result<()> {
    for sql in statements {
        let q = sqlx::query(sql);
        let q = if sql.contains("$1") { q.bind(venue) } else { q };
        q.execute(&mut *c).await.with_context(|| sql.to_string())?;
    }
    Ok(())
}

/// Runs `sql` on `c` with a claimed job (`(job_id, lease_token)`) bound to `$1` and `$2`.
async fn on_job(c: &mut PgConnection, job: &(i64, String), sql: &str) -> Result<()> {
    sqlx::query(sql)
        .bind(job.0)
        .bind(&job.1)
        .execute(c)
        .await
        .with_context(|| sql.to_string())?;
    Ok(())
}

const RECORD_SUCCESS: &str = "SELECT venue_images.venue_image_record_success($1, $2::uuid, \
                              'https://ik.imagekit.io/demo/a.jpg', '/venues/v/a.jpg')";

/// One of everything the extension's privileged code does, as the roles that do it.
/// Inserts a venue with one transient failure as the owner, claims it as `u` (an
/// uploader) and writes back a server error: the write-back that fires the owner's
/// triggers and policies. Returns the write-back's own result.
async fn failed_write_back(s: &Site, u: &mut PgConnection) -> Result<sqlx::Result<Option<String>>> {
    venue_with_failures(s, 1).await?;
    let jobs = claim_all(u).await?;
    Ok(record_failure(u, &jobs[0], "server_error", 500, "x").await)
}

async fn run_every_privileged_path(s: &Site) -> Result<()> {
    let venue = venue_with_failures(s, 4).await?;
    let mut u = s.connect(&s.uploader_url).await?;
    let jobs = claim_all(&mut u).await?;
    ensure!(jobs.len() == 4, "claimed {jobs:?}");
    on_job(
        &mut u,
        &jobs[0],
        "SELECT venue_images.venue_image_extend_lease($1, $2::uuid, 60)",
    )
    .await?;
    on_job(&mut u, &jobs[0], RECORD_SUCCESS).await?;
    on_job(
        &mut u,
        &jobs[1],
        "SELECT venue_images.venue_image_record_failure($1, $2::uuid, 'not_found', 404, 'gone')",
    )
    .await?;
    let batch = json!([{"job_id": jobs[2].0, "lease_token": jobs[2].1, "error_type": "rate_limited",
                        "status_code": 429, "message": "slow down", "retry_after_seconds": 1}]);
    sqlx::query("SELECT * FROM venue_images.venue_image_record_results($1)")
        .bind(batch)
        .execute(&mut u)
        .await?;
    on_job(
        &mut u,
        &jobs[3],
        "SELECT venue_images.venue_image_release($1, $2::uuid)",
    )
    .await?;
    run_each(&mut u, venue, &[
        "SELECT venue_images.venue_image_pause_provider('here', pg_catalog.now() OPERATOR(pg_catalog.+) '1 second'::interval, 'test')",
        "SELECT * FROM venue_images.venue_image_claim_venue('w', $1, 10, 60)",
        "SELECT venue_images.venue_image_enqueue_venue($1)",
        "SELECT venue_images.venue_image_next_due($1)",
        "SELECT * FROM venue_images.venue_image_cleanup_scan()",
        "SELECT * FROM venue_images.venue_image_scheduled_scan(pg_catalog.now() OPERATOR(pg_catalog.-) '1 day'::interval)",
    ]).await?;
    u.close().await?;
    let mut a = s.connect(&s.admin_url).await?;
    run_each(
        &mut a,
        venue,
        &[
            "SELECT venue_images.venue_image_resume_provider('here')",
            "SELECT venue_images.venue_image_set_provider_rate('foursquare', 3)",
            "SELECT venue_images.venue_image_force_retry($1)",
            "SELECT venue_images.venue_image_force_retry_image($1, 1)",
            "SELECT venue_images.venue_image_purge_permanently_failed($1)",
            "SELECT venue_images.venue_image_purge_permanently_failed()",
            "SELECT venue_images.venue_image_prune_attempts('1 day')",
            "SELECT * FROM venue_images.venue_image_retry_report()",
            "SELECT * FROM venue_images.venue_image_recovery_timeline('1 day', '1 hour')",
            "SELECT * FROM venue_images.venue_image_retry_queue",
            "SELECT * FROM venue_images.venue_image_provider_status",
            "SELECT * FROM venue_images.venue_image_failure_breakdown()",
            "SELECT * FROM venue_images.venues_with_image_failures()",
            "SELECT * FROM venue_images.venue_image_partial_failure_candidates()",
            "SELECT * FROM venue_images.venue_image_high_priority_venues()",
            "SELECT * FROM venue_images.venue_image_summary_stats()",
            "SELECT venue_images.venue_image_overview()",
            "SELECT * FROM venue_images.venue_image_venue_images($1)",
            "SELECT * FROM venue_images.venue_image_find_venues('v')",
            "SELECT venue_images.venue_images_relation()",
            "SELECT * FROM venue_images.venue_image_venue_summary($1)",
            "SELECT * FROM venue_images.venue_image_venue_attempts($1, 10)",
            "SELECT * FROM venue_images.venue_image_queue_summary($1)",
            "SELECT * FROM venue_images.venue_image_queue_summary()",
            "SELECT * FROM venue_images.venue_image_provider_overview()",
            "SELECT * FROM venue_images.venue_image_scan_log(10)",
            "SELECT * FROM venue_images.venue_image_role_grants()",
            "SELECT venue_images.venue_image_success_rate(3, 4)",
            "SELECT venue_images.venue_image_outcome_group('recovered')",
            "SELECT venue_images.venue_image_effective_rate('google', NULL, NULL)",
            "SELECT venue_images.venue_image_job_claimable(pg_catalog.now(), NULL, NULL)",
            "SELECT venue_images.venue_image_default_rate('google')",
        ],
    )
    .await?;
    a.close().await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Class: Search path capture (CVE-2018-1058). Not one SQL text of the extension's
// privileged code leaves a name to the search path: with every function's pinned path
// pointed at a schema that shadows every built-in with exact types, no shadow runs.

#[tokio::test]
async fn every_name_in_the_extensions_sql_is_qualified() -> Result<()> {
    let s = Site::unpaced("atk_qualified").await?;
    let mut su = s.checker().await?;
    let planted = traps::plant(&mut su, "trap", "SELECT 1").await?;
    assert!(planted > 2000, "only {planted} traps planted");
    traps::canary(&mut su, "trap").await?;
    // Every function of the extension with a pinned path now searches the traps first.
    su.execute(
        "DO $$ DECLARE f record; BEGIN
           FOR f IN SELECT p.oid::pg_catalog.regprocedure AS sig FROM pg_catalog.pg_proc p
                     WHERE p.pronamespace OPERATOR(pg_catalog.=) 'venue_images'::pg_catalog.regnamespace
                       AND p.proconfig IS NOT NULL LOOP
             EXECUTE pg_catalog.format('ALTER FUNCTION %s SET search_path = trap, pg_catalog, pg_temp', f.sig);
           END LOOP; END $$",
    )
    .await?;
    run_every_privileged_path(&s).await?;
    let hits = traps::hits(&mut su, "trap").await?;
    assert!(
        hits.is_empty(),
        "unqualified names in the extension's SQL: {hits:#?}"
    );
    su.close().await?;
    s.finish().await
}

// ---------------------------------------------------------------------------------------
// Class: Owner code in a privileged context (CVE-2020-25695, CVE-2022-1552). A trigger
// and an RLS policy of the owner change search_path for the session; before 0.4.0 the
// setting survived: the definer function's next statements resolved the owner's objects
// as venue_image_definer (which could then rewire every definer function), and the path
// reached the caller's session.

#[tokio::test]
async fn settings_changed_by_owner_code_do_not_outlive_its_statement() -> Result<()> {
    let s = Site::unpaced("atk_setconfig").await?;
    let owner = s.owner.clone();
    let mut o = s.connect(&s.owner_url).await?;
    traps::plant_checked(
        &mut o,
        "public",
        &format!(
            "GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA venue_images TO {owner};
             ALTER FUNCTION venue_images.venue_image_claim(text, int, int) SECURITY INVOKER;
             ALTER ROLE {owner} SUPERUSER"
        ),
    )
    .await?;
    o.close().await?;
    s.as_owner(
        "CREATE FUNCTION public.repath() RETURNS trigger LANGUAGE plpgsql AS $f$
         BEGIN
           PERFORM pg_catalog.set_config('search_path', 'public, pg_catalog', false);
           PERFORM pg_catalog.set_config('application_name', 'owned', false);
           RETURN NEW;
         END $f$;
         CREATE TRIGGER repath BEFORE UPDATE ON public.venues
           FOR EACH ROW EXECUTE FUNCTION public.repath();
         CREATE FUNCTION public.repath_policy() RETURNS bool LANGUAGE plpgsql AS $f$
         BEGIN
           PERFORM pg_catalog.set_config('search_path', 'public, pg_catalog', false);
           RETURN true;
         END $f$;
         ALTER TABLE public.venues ENABLE ROW LEVEL SECURITY;
         ALTER TABLE public.venues FORCE ROW LEVEL SECURITY;
         CREATE POLICY repath ON public.venues USING (public.repath_policy())",
    )
    .await?;
    let mut su = s.checker().await?;
    let before = definers(&mut su).await?;

    // The uploader's write-back fires the trigger; its session keeps its own path.
    let mut u = s.connect(&s.uploader_url).await?;
    let path = show(&mut u, "search_path").await?;
    let app = show(&mut u, "application_name").await?;
    run_every_privileged_path(&s).await?;
    failed_write_back(&s, &mut u).await??;
    assert_eq!(
        show(&mut u, "search_path").await?,
        path,
        "the owner's path reached the uploader's session"
    );
    assert_eq!(
        show(&mut u, "application_name").await?,
        app,
        "the owner's setting reached the uploader's session"
    );
    u.close().await?;

    // A superuser running the scan by hand keeps its session too.
    let su_path = show(&mut su, "search_path").await?;
    su.execute("SELECT * FROM venue_images.venue_image_cleanup_scan()")
        .await?;
    su.execute("SELECT * FROM venue_images.venue_image_purge_permanently_failed()")
        .await?;
    assert_eq!(
        show(&mut su, "search_path").await?,
        su_path,
        "the owner's path reached the superuser's session"
    );

    assert_eq!(
        definers(&mut su).await?,
        before,
        "a definer function was rewired"
    );
    su.close().await?;
    assert_unharmed(&s.db.url, &owner).await?;
    s.finish().await
}

// Class: Owner code in a privileged context. Session state other than settings: owner code
// runs in a security-restricted operation, so it cannot prepare or deallocate statements
// under the caller's names (sqlx_s_1 ...), listen, create temporary objects, change role,
// open cursors WITH HOLD, or queue a deferred trigger that would run at commit as the
// caller. Each attempt is refused, and the caller's session is as it was.

#[tokio::test]
async fn owner_code_cannot_leave_session_state_behind() -> Result<()> {
    let s = Site::unpaced("atk_session").await?;
    s.as_owner(
        "CREATE TABLE public.tried (what text, outcome text);
         GRANT INSERT ON public.tried TO PUBLIC;
         CREATE FUNCTION public.meddle() RETURNS trigger LANGUAGE plpgsql AS $f$
         DECLARE
           stmt text;
         BEGIN
           FOREACH stmt IN ARRAY ARRAY[
               'DEALLOCATE ALL',
               'PREPARE sqlx_s_1 AS SELECT 1',
               'PREPARE owners_statement AS SELECT 1',
               'LISTEN owners_channel',
               'CREATE TEMP TABLE owners_temp (x int)',
               'SET ROLE NONE',
               'SET SESSION AUTHORIZATION DEFAULT',
               'DECLARE owners_cursor CURSOR WITH HOLD FOR SELECT 1',
               'DISCARD ALL'] LOOP
             BEGIN
               EXECUTE stmt;
               INSERT INTO public.tried VALUES (stmt, 'allowed');
             EXCEPTION WHEN OTHERS THEN
               INSERT INTO public.tried VALUES (stmt, SQLSTATE);
             END;
           END LOOP;
           RETURN NEW;
         END $f$;
         CREATE TRIGGER meddle BEFORE UPDATE ON public.venues
           FOR EACH ROW EXECUTE FUNCTION public.meddle()",
    )
    .await?;
    let mut u = s.connect(&s.uploader_url).await?;
    u.execute("PREPARE mine AS SELECT 42").await?;
    failed_write_back(&s, &mut u).await??;
    let prepared: Vec<String> =
        sqlx::query_scalar("SELECT name FROM pg_catalog.pg_prepared_statements WHERE NOT from_sql OR name OPERATOR(pg_catalog.=) 'mine' OR name OPERATOR(pg_catalog.~~) 'owners%' ORDER BY 1")
            .fetch_all(&mut u)
            .await?;
    assert!(
        prepared.contains(&"mine".to_string()),
        "the caller's statement was deallocated: {prepared:?}"
    );
    assert!(
        !prepared.iter().any(|p| p.starts_with("owners")),
        "{prepared:?}"
    );
    let listening: i64 = one(
        &mut u,
        "SELECT pg_catalog.count(*) FROM pg_catalog.pg_listening_channels()",
    )
    .await?;
    assert_eq!(listening, 0, "the owner's LISTEN outlived the statement");
    let temp: i64 = one(
        &mut u,
        "SELECT pg_catalog.count(*) FROM pg_catalog.pg_class WHERE relname OPERATOR(pg_catalog.=) 'owners_temp'",
    )
    .await?;
    assert_eq!(temp, 0, "the owner's temporary table exists");
    let cursors: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM pg_catalog.pg_cursors WHERE name OPERATOR(pg_catalog.<>) ''",
    )
    .fetch_all(&mut u)
    .await?;
    assert!(
        cursors.is_empty(),
        "the owner's cursor outlived the transaction: {cursors:?}"
    );
    u.close().await?;
    let tried: Vec<(String, String)> = sqlx::query_as("SELECT what, outcome FROM public.tried")
        .fetch_all(&s.db.pool)
        .await?;
    assert_eq!(tried.len(), 9, "the trigger ran once: {tried:?}");
    for (what, outcome) in &tried {
        assert_ne!(
            outcome, "allowed",
            "owner code could run {what} in the write-back"
        );
    }
    s.finish().await
}

// Class: Owner code in a privileged context. A deferred constraint trigger would run at
// commit, after our function returned, as whoever commits (the uploader): PostgreSQL
// refuses to queue one inside a security-restricted operation, so the write-back fails
// cleanly and the owner's function never runs as the uploader.

#[tokio::test]
async fn a_deferred_trigger_of_the_owner_never_runs_as_the_caller() -> Result<()> {
    let s = Site::unpaced("atk_deferred").await?;
    s.as_owner(
        "CREATE TABLE public.ran (who text);
         GRANT INSERT ON public.ran TO PUBLIC;
         CREATE FUNCTION public.later() RETURNS trigger LANGUAGE plpgsql AS $f$
         BEGIN INSERT INTO public.ran VALUES (current_user); RETURN NULL; END $f$;
         CREATE CONSTRAINT TRIGGER later AFTER UPDATE ON public.venues
           DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION public.later()",
    )
    .await?;
    let mut u = s.connect(&s.uploader_url).await?;
    let code = failed_write_back(&s, &mut u)
        .await?
        .err()
        .and_then(|e| sqlstate(&e));
    assert_eq!(
        code.as_deref(),
        Some("42501"),
        "the deferred trigger was queued"
    );
    u.close().await?;
    s.assert_no_rows(
        "SELECT who FROM public.ran",
        "the owner's deferred trigger ran as",
    )
    .await?;
    s.finish().await
}

// ---------------------------------------------------------------------------------------
// Class: Resource exhaustion (check_stack_depth). A value nested 10,000 levels deep in a
// venue's array: the queue and the analytics work around it, the functions that must look
// into it refuse it with 54001, and the server never restarts.

/// When the server started (it changes when a crashed backend makes it restart).
const STARTED: &str = "SELECT pg_catalog.pg_postmaster_start_time()::pg_catalog.text";

#[tokio::test]
async fn deep_values_never_crash_the_server() -> Result<()> {
    let s = Site::unpaced("atk_deep").await?;
    let mut su = s.checker().await?;
    let started: String = one(&mut su, STARTED).await?;
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let venue = venue_with_failures(&s, 2).await?;
    // The deep value sits in a permanently failed element (so the purge looks into it).
    su.execute(
        format!(
            "UPDATE public.venues SET venue_images = venue_images OPERATOR(pg_catalog.||)
               pg_catalog.jsonb_build_array(pg_catalog.jsonb_build_object(
                 'provider_url', 'https://p.example/deep.jpg', 'upload_status', 'permanently_failed',
                 'notes', '{deep}'::pg_catalog.jsonb))
             WHERE id OPERATOR(pg_catalog.=) {venue}"
        )
        .as_str(),
    )
    .await?;
    let mut u = s.connect(&s.uploader_url).await?;
    let jobs = claim_all(&mut u).await?;
    ensure!(jobs.len() == 2, "{jobs:?}");
    on_job(&mut u, &jobs[0], RECORD_SUCCESS)
        .await
        .context("the write-back next to a deep element")?;
    u.execute("SELECT * FROM venue_images.venue_image_cleanup_scan()")
        .await?;
    u.close().await?;
    let mut a = s.connect(&s.admin_url).await?;
    a.execute("SELECT * FROM venue_images.venue_image_summary_stats()")
        .await?;
    a.execute(format!("SELECT * FROM venue_images.venue_image_venue_images({venue})").as_str())
        .await?;
    let purge = code_of(
        &mut a,
        &format!("SELECT venue_images.venue_image_purge_permanently_failed({venue})"),
    )
    .await;
    assert_eq!(purge, None, "purge of a deep element");
    a.close().await?;
    let mut nobody = s.connect(&s.nobody_url).await?;
    for f in [
        "venue_images.venue_images_redact_json",
        "venue_images.venue_images_dedupe",
        "venue_images.venue_images_summary_counts",
        "venue_images.venue_images_finalize",
    ] {
        let code = code_of(
            &mut nobody,
            &format!("SELECT {f}('{deep}'::pg_catalog.jsonb)"),
        )
        .await;
        assert!(
            code.is_none() || code.as_deref() == Some("54001") || code.as_deref() == Some("22023"),
            "{f} on a 10,000-deep value: {code:?}"
        );
    }
    nobody.close().await?;
    let now_started: String = one(&mut su, STARTED).await?;
    assert_eq!(now_started, started, "the server restarted");
    let status: Option<String> = sqlx::query_scalar(
        "SELECT venue_images OPERATOR(pg_catalog.->) 0 OPERATOR(pg_catalog.->>) 'upload_status'
           FROM public.venues WHERE id OPERATOR(pg_catalog.=) $1",
    )
    .bind(venue)
    .fetch_one(&mut su)
    .await?;
    assert_eq!(status.as_deref(), Some("uploaded"));
    su.close().await?;
    s.finish().await
}

// ---------------------------------------------------------------------------------------
// Bad input from an admin (not a class of the list, a finding of the review): a rate of
// 1e-300 passed the old check and made every claim fail with 22008 from then on.

#[tokio::test]
async fn rates_outside_their_bounds_are_refused_and_claims_keep_working() -> Result<()> {
    let s = Site::new("atk_rates").await?;
    let mut a = s.connect(&s.admin_url).await?;
    for rate in ["1e-300", "0.0009", "1000001", "-1", "'NaN'", "0"] {
        let code = code_of(
            &mut a,
            &format!("SELECT venue_images.venue_image_set_provider_rate('here', {rate})"),
        )
        .await;
        assert_eq!(code.as_deref(), Some("22023"), "rate {rate}");
    }
    // The bounds are accepted; the slowest rate stays set.
    for rate in ["0.001", "1000000", "'Infinity'", "0.001"] {
        a.execute(
            format!("SELECT venue_images.venue_image_set_provider_rate('here', {rate})").as_str(),
        )
        .await?;
    }
    a.close().await?;
    // The table refuses what the function would (a superuser writing it directly).
    let mut su = s.checker().await?;
    let code = code_of(
        &mut su,
        "UPDATE venue_images.venue_image_providers SET per_second = 1e-300 WHERE provider OPERATOR(pg_catalog.=) 'here'",
    )
    .await;
    assert_eq!(code.as_deref(), Some("23514"));
    su.close().await?;
    venue_with_failures(&s, 3).await?;
    let mut u = s.connect(&s.uploader_url).await?;
    let jobs = claim_all(&mut u).await?;
    assert_eq!(jobs.len(), 1, "one slot per 1,000 s at the slowest rate");
    u.close().await?;
    s.finish().await
}

// Information disclosure (a finding of the review): with RUST_BACKTRACE=1 in the server's
// environment (scripts/test.sh starts its clusters so), an error raised inside the
// extension's SQL carried a Rust backtrace in DETAIL.

#[tokio::test]
async fn no_rust_backtrace_reaches_a_client() -> Result<()> {
    let s = Site::unpaced("atk_backtrace").await?;
    s.as_owner(
        "CREATE FUNCTION public.boom() RETURNS trigger LANGUAGE plpgsql AS $f$
         BEGIN RAISE EXCEPTION 'the application says no'; END $f$;
         CREATE TRIGGER boom BEFORE UPDATE ON public.venues FOR EACH ROW EXECUTE FUNCTION public.boom()",
    )
    .await?;
    let mut u = s.connect(&s.uploader_url).await?;
    let err = failed_write_back(&s, &mut u)
        .await?
        .err()
        .context("the application's trigger refused the write-back")?;
    let pg = err
        .as_database_error()
        .and_then(|d| d.try_downcast_ref::<sqlx::postgres::PgDatabaseError>())
        .context("a database error")?;
    let detail = pg.detail().unwrap_or("");
    assert!(pg.message().contains("the application says no"), "{pg:?}");
    assert!(
        !detail.contains(".rs") && !detail.contains("backtrace") && !detail.contains("pgrx"),
        "DETAIL: {detail}"
    );
    u.close().await?;
    let _ = db::database_url()?;
    s.finish().await
}

// Class: resource exhaustion (a crash restarts every session). The analytics' transition
// functions are C functions that trust the state PostgreSQL hands them back, and since
// fc1d81a they ask for the aggregate's context only when there is no state yet. No role may
// hand them a state of its own: PostgreSQL lets only a superuser create an aggregate with
// an `internal` state (wiring our transition function to another's final function would be
// a type confusion), and SQL cannot make an `internal` value, not even a NULL one, so no
// direct call resolves (42883 or 42846, the superuser's included). Outside an aggregate,
// a call with no state is refused by the functions themselves (42809).

#[tokio::test]
async fn no_role_can_hand_the_analytics_a_state_of_its_own() -> Result<()> {
    let s = Site::unpaced("atk_state").await?;
    let stats = "venue_images.venue_images_stats_transfn";
    let list = "venue_images.venue_images_venue_list_transfn";
    let direct = [
        format!("SELECT {stats}(NULL, '[]'::jsonb)"),
        format!("SELECT {stats}({stats}(NULL, '[]'::jsonb), '[]'::jsonb)"),
        format!("SELECT {list}(NULL, 1, 'v', 1, '[]'::jsonb, 1, false, 10, false, false)"),
    ];
    let aggregates = [
        format!(
            "CREATE AGGREGATE public.confused(jsonb) (SFUNC = {stats}, STYPE = internal,
               FINALFUNC = venue_images.venue_images_venue_list_finalfn)"
        ),
        format!(
            "CREATE AGGREGATE public.mine(jsonb) (SFUNC = {stats}, STYPE = internal,
               FINALFUNC = venue_images.venue_images_stats_finalfn)"
        ),
    ];
    for url in [
        &s.owner_url,
        &s.uploader_url,
        &s.reader_url,
        &s.admin_url,
        &s.nobody_url,
    ] {
        let mut c = s.connect(url).await?;
        for sql in &aggregates {
            // The owner may create in public: PostgreSQL's own rule refuses it (42P13).
            let code = code_of(&mut c, sql).await;
            let want: &[&str] = if url == &s.owner_url {
                &["42P13"]
            } else {
                &["42P13", "42501"]
            };
            assert!(
                code.as_deref().is_some_and(|c| want.contains(&c)),
                "{url}: {sql}: {code:?}"
            );
        }
        for sql in &direct {
            let code = code_of(&mut c, sql).await;
            assert!(
                matches!(code.as_deref(), Some("42883" | "42846" | "42501")),
                "{url}: {sql}: {code:?}"
            );
        }
        c.close().await?;
    }
    let mut su = s.db.pool.acquire().await?;
    for sql in &direct {
        let code = code_of(&mut su, sql).await;
        assert!(
            matches!(code.as_deref(), Some("42883" | "42846")),
            "superuser: {sql}: {code:?}"
        );
    }
    drop(su);
    s.finish().await
}

// ---------------------------------------------------------------------------------------
// Databases prepared by hand (no migration yet), for the migration and update attacks.

/// Plants traps in public that try to make `owner` a superuser (on `o`, the owner's
/// connection) and points the database's search_path at them (new sessions see it).
async fn hostile_search_path(o: &mut PgConnection, name: &str, owner: &str) -> Result<()> {
    traps::plant_checked(o, "public", &format!("ALTER ROLE {owner} SUPERUSER")).await?;
    o.execute(format!("ALTER DATABASE {name} SET search_path = public, pg_catalog").as_str())
        .await?;
    Ok(())
}

/// A new database owned by a new untrusted login, which also owns the venues table; the
/// extension is not installed. Returns (database name, superuser URL, owner name, owner URL).
async fn bare_site(tag: &str) -> Result<(String, String, String, String)> {
    let admin = db::database_url()?;
    let name = format!("vi_{tag}_{}", std::process::id());
    let url = db::create_database(&admin, &name).await?;
    let owner = format!("vi_{tag}_owner_{}", std::process::id());
    db::run(
        &url,
        &format!(
            "{}; ALTER DATABASE {name} OWNER TO {owner}",
            db::create_login(&owner)
        ),
    )
    .await?;
    let owner_url = db::with_user(&url, &owner)?;
    db::run(&owner_url, db::VENUES_SCHEMA).await?;
    Ok((name, url, owner, owner_url))
}

/// The owner's attack on a database: traps in public that try to make the owner a
/// superuser, and the database's search_path pointed at them (new sessions see it).
async fn arm(name: &str, owner: &str, owner_url: &str) -> Result<()> {
    let mut o = PgConnection::connect(owner_url).await?;
    hostile_search_path(&mut o, name, owner).await?;
    // 0.2.0's update script's first block compared an oid with a regclass.
    o.execute(
        "CREATE FUNCTION public.oid_eq_regclass(oid, regclass) RETURNS bool LANGUAGE plpgsql AS $f$
         BEGIN PERFORM public.trap_hit('operator = (oid, regclass)'); RETURN $1 OPERATOR(pg_catalog.=) $2::oid; END $f$;
         CREATE OPERATOR public.= (LEFTARG = oid, RIGHTARG = regclass, FUNCTION = public.oid_eq_regclass)",
    )
    .await?;
    o.close().await?;
    Ok(())
}

/// The schema and the version of the installed extension.
async fn installed(su: &mut PgConnection) -> Result<(String, String)> {
    Ok(sqlx::query_as(
        "SELECT extnamespace::pg_catalog.regnamespace::pg_catalog.text, extversion
           FROM pg_catalog.pg_extension WHERE extname OPERATOR(pg_catalog.=) 'venue_images'",
    )
    .fetch_one(su)
    .await?)
}

/// Fails when any trap (in public, when planted) ran as a role other than `owner`, or the
/// owner became a superuser.
async fn assert_unharmed(url: &str, owner: &str) -> Result<()> {
    let mut c = checker(url).await?;
    let planted: bool = one(
        &mut c,
        "SELECT pg_catalog.to_regclass('public.trap_log') IS NOT NULL",
    )
    .await?;
    if planted {
        let hits = traps::hits(&mut c, "public").await?;
        let foreign: Vec<_> = hits
            .iter()
            .filter(|h| h.1 != owner || h.2 != owner)
            .collect();
        assert!(
            foreign.is_empty(),
            "the owner's objects ran as someone else: {foreign:#?}"
        );
    }
    let sup: bool = sqlx::query_scalar(
        "SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) $1",
    )
    .bind(owner)
    .fetch_one(&mut c)
    .await?;
    assert!(!sup, "the database owner became a superuser");
    c.close().await?;
    Ok(())
}

/// Runs `cmd` (`what`) to completion; fails unless it succeeds.
fn succeeds(cmd: &mut Command, what: &str) -> Result<()> {
    let out = cmd.output().with_context(|| what.to_string())?;
    ensure!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

// Class: Search path capture and Extension scripts (CVE-2018-1058, CVE-2023-39417). The
// owner sets the database's search_path to its own schema first; a superuser then applies
// the migrations with psql and with `venue-image-uploader migrate`. Before 0.4.0 the
// migrations called the owner's public.substr() as the superuser.

#[tokio::test]
async fn migrations_under_a_hostile_database_search_path_run_nothing_of_the_owner() -> Result<()> {
    for via in ["psql", "uploader"] {
        let (name, url, owner, owner_url) = bare_site(&format!("atk_mig_{via}")).await?;
        arm(&name, &owner, &owner_url).await?;
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../sql");
        match via {
            "psql" => {
                for f in [
                    "001_enable_venue_images.sql",
                    "002_roles.sql",
                    "003_venues_table.sql",
                ] {
                    succeeds(
                        Command::new("psql")
                            .args([url.as_str(), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f"])
                            .arg(format!("{dir}/{f}")),
                        &format!("psql -f {f}"),
                    )?;
                }
            }
            _ => succeeds(
                Command::new(venue_images_tests::sidecar::uploader_bin()?)
                    .arg("migrate")
                    .env("DATABASE_URL", &url),
                "venue-image-uploader migrate",
            )?,
        }
        assert_unharmed(&url, &owner).await?;
        db::drop_database(&db::database_url()?, &name).await?;
    }
    Ok(())
}

// Class: Extension scripts (CVE-2020-14350, CVE-2022-2625, CVE-2023-39417). Every release
// updated under the owner's traps: public.=(oid, regclass) was picked up by the 0.2.0 ->
// 0.3.0 script's first block, as the superuser. Each update script now pins its path
// before anything else.

#[tokio::test]
async fn updates_from_every_release_run_nothing_of_the_owner() -> Result<()> {
    for from in ["0.1.0", "0.2.0", "0.3.0"] {
        let (name, url, owner, owner_url) =
            bare_site(&format!("atk_upd_{}", from.replace('.', "_"))).await?;
        db::run(
            &url,
            &format!("CREATE EXTENSION venue_images VERSION '{from}'"),
        )
        .await?;
        arm(&name, &owner, &owner_url).await?;
        let mut su = PgConnection::connect(&url).await?;
        su.execute("ALTER EXTENSION venue_images UPDATE").await?;
        assert_eq!(
            installed(&mut su).await?,
            (
                "venue_images".to_string(),
                env!("CARGO_PKG_VERSION").to_string()
            )
        );
        su.close().await?;
        assert_unharmed(&url, &owner).await?;
        db::drop_database(&db::database_url()?, &name).await?;
    }
    Ok(())
}

// Class: Extension scripts and Schema elements defeat a pinned path (CVE-2023-2454: code
// that trusts a schema it did not create). A venue_images schema the owner made before
// the update from 0.2.0 received every object, and its operators answered the ownership
// check, so the update committed with the extension in the owner's schema. Now the update
// stops (42501), nothing of the owner's runs, and 0.2.0 stays as it was.

#[tokio::test]
async fn an_update_into_a_planted_schema_stops() -> Result<()> {
    let (name, url, owner, owner_url) = bare_site("atk_plant_upd").await?;
    db::run(&url, "CREATE EXTENSION venue_images VERSION '0.2.0'").await?;
    let mut o = PgConnection::connect(&owner_url).await?;
    o.execute("CREATE SCHEMA venue_images").await?;
    traps::plant(
        &mut o,
        "venue_images",
        &format!("ALTER ROLE {owner} SUPERUSER"),
    )
    .await?;
    o.execute(
        format!("ALTER DATABASE {name} SET search_path = venue_images, public, pg_catalog")
            .as_str(),
    )
    .await?;
    o.close().await?;
    let mut su = PgConnection::connect(&url).await?;
    let code = code_of(&mut su, "ALTER EXTENSION venue_images UPDATE").await;
    assert_eq!(code.as_deref(), Some("42501"));
    assert_eq!(
        installed(&mut su).await?,
        ("public".to_string(), "0.2.0".to_string())
    );
    su.execute("SET search_path = pg_catalog").await?;
    let hits = traps::hits(&mut su, "venue_images").await?;
    assert!(
        hits.is_empty(),
        "the planted schema's objects ran: {hits:#?}"
    );
    su.close().await?;
    assert_unharmed(&url, &owner).await?;
    db::drop_database(&db::database_url()?, &name).await
}

// Class: Schema elements defeat a pinned path (a schema someone else filled). The schema
// belongs to a superuser, but the owner was allowed to create in it once and left a
// function there: CREATE EXTENSION refuses (42501) instead of installing beside it.

#[tokio::test]
async fn a_superusers_schema_holding_an_untrusted_object_is_refused() -> Result<()> {
    let (name, url, owner, owner_url) = bare_site("atk_plant_obj").await?;
    let mut su = PgConnection::connect(&url).await?;
    su.execute(
        format!(
            "CREATE SCHEMA venue_images; GRANT CREATE, USAGE ON SCHEMA venue_images TO {owner}"
        )
        .as_str(),
    )
    .await?;
    db::run(
        &owner_url,
        "CREATE FUNCTION venue_images.venue_image_claim(text, int, int) RETURNS int LANGUAGE sql AS 'SELECT 1'",
    )
    .await?;
    su.execute(format!("REVOKE CREATE ON SCHEMA venue_images FROM {owner}").as_str())
        .await?;
    let code = code_of(&mut su, "CREATE EXTENSION venue_images").await;
    assert_eq!(code.as_deref(), Some("42501"));
    su.close().await?;
    db::drop_database(&db::database_url()?, &name).await
}

/// Fails unless everything that recorded itself in `public.<table>` (`who`) ran as `role`.
async fn assert_only_ran_as(s: &Site, table: &str, role: &str, what: &str) -> Result<()> {
    let who = s
        .strings(&format!(
            "SELECT DISTINCT who FROM public.{table} ORDER BY 1"
        ))
        .await?;
    assert_eq!(who, [role], "{what} ran as {who:?}");
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Class: Row security and user switches (CVE-2024-10976). The owner forces row security
// with a policy that records the role it is evaluated as. Whoever calls (uploader, reader,
// admin, a superuser), the policy only ever runs as the table's owner; when a superuser
// gives the table to another role, the next calls in the same sessions run as that role,
// never with a plan or a role cached from before.

#[tokio::test]
async fn row_security_policies_run_as_the_current_owner_only() -> Result<()> {
    let s = Site::unpaced("atk_rls").await?;
    let second = format!("vi_atk_rls_second_{}", std::process::id());
    s.superuser(&format!(
        "{};
         CREATE TABLE public.policy_ran (who text, at timestamptz DEFAULT pg_catalog.clock_timestamp());
         GRANT INSERT ON public.policy_ran TO PUBLIC;
         CREATE FUNCTION public.note_policy() RETURNS bool LANGUAGE plpgsql AS $f$
         BEGIN INSERT INTO public.policy_ran (who) VALUES (current_user); RETURN true; END $f$;
         ALTER FUNCTION public.note_policy() OWNER TO {owner};
         GRANT EXECUTE ON FUNCTION public.note_policy() TO PUBLIC",
        db::create_login(&second),
        owner = s.owner
    ))
    .await?;
    s.as_owner(
        "ALTER TABLE public.venues ENABLE ROW LEVEL SECURITY;
         ALTER TABLE public.venues FORCE ROW LEVEL SECURITY;
         CREATE POLICY note ON public.venues USING (public.note_policy())",
    )
    .await?;
    let mut u = s.connect(&s.uploader_url).await?;
    let mut r = s.connect(&s.reader_url).await?;
    for phase in 0..2 {
        if phase == 0 {
            venue_with_failures(&s, 1).await?;
        } else {
            // The first owner has no rights on the table any more.
            s.superuser(
                r#"INSERT INTO public.venues (name, venue_images) VALUES ('w',
                   '[{"provider": "here", "provider_url": "https://p.example/w.jpg",
                      "upload_status": "failed", "error_details": {"error_type": "rate_limited"}}]')"#,
            )
            .await?;
        }
        let jobs = claim_all(&mut u).await?;
        for job in &jobs {
            record_failure(&mut u, job, "server_error", 500, "x").await?;
        }
        r.execute("SELECT * FROM venue_images.venue_image_summary_stats()")
            .await?;
        r.execute("SELECT * FROM venue_images.venues_with_image_failures()")
            .await?;
        s.superuser("SELECT * FROM venue_images.venue_image_cleanup_scan()")
            .await?;
        let expected = if phase == 0 {
            s.owner.clone()
        } else {
            second.clone()
        };
        assert_only_ran_as(
            &s,
            "policy_ran",
            &expected,
            &format!("phase {phase}: the policy"),
        )
        .await?;
        s.superuser(&format!(
            "TRUNCATE public.policy_ran; ALTER TABLE public.venues OWNER TO {second}"
        ))
        .await?;
    }
    u.close().await?;
    r.close().await?;
    s.finish().await
}

// ---------------------------------------------------------------------------------------
// Class: Relation replacement (CVE-2024-7348). (1) Between calls, the owner renames its
// table and another untrusted role with CREATE on public puts a view of its own in its
// place: the extension then runs that view as the view's owner, never as the table's
// former owner, the definer or the caller. (2) During a call, the owner's trigger renames
// the schema and puts a view under the old name: the extension refuses (55000) to go on
// with a relation it did not check.

#[tokio::test]
async fn a_replaced_venues_relation_runs_only_as_its_own_owner() -> Result<()> {
    let s = Site::unpaced("atk_replace").await?;
    let mallory = format!("vi_atk_mallory_{}", std::process::id());
    venue_with_failures(&s, 1).await?;
    s.superuser(&format!(
        "{};
         GRANT CREATE ON SCHEMA public TO {mallory};
         CREATE TABLE public.view_ran (who text); GRANT INSERT ON public.view_ran TO PUBLIC",
        db::create_login(&mallory)
    ))
    .await?;
    s.as_owner("ALTER TABLE public.venues RENAME TO venues_real")
        .await?;
    db::run(
        &db::with_user(&s.db.url, &mallory)?,
        "CREATE FUNCTION public.note_view() RETURNS jsonb LANGUAGE plpgsql AS $f$
         BEGIN INSERT INTO public.view_ran VALUES (current_user); RETURN '[]'::jsonb; END $f$;
         CREATE VIEW public.venues AS
           SELECT 1::bigint AS id, 'x'::varchar AS name, NULL::varchar AS slug, NULL::bigint AS city_id,
                  public.note_view() AS venue_images",
    )
    .await?;
    db::run(
        &s.reader_url,
        "SELECT * FROM venue_images.venue_image_summary_stats()",
    )
    .await?;
    db::run(
        &s.uploader_url,
        "SELECT venue_images.venue_image_enqueue_venue(1)",
    )
    .await?;
    assert_only_ran_as(&s, "view_ran", &mallory, "the replacing view").await?;
    s.finish().await
}

#[tokio::test]
async fn a_relation_swapped_during_a_call_is_refused() -> Result<()> {
    let s = Site::unpaced("atk_swap").await?;
    let first = venue_with_failures(&s, 1).await?;
    let second = venue_with_failures(&s, 1).await?;
    assert!(first < second);
    s.as_owner(
        "CREATE FUNCTION public.swap() RETURNS trigger LANGUAGE plpgsql AS $f$
         BEGIN
           IF NOT EXISTS (SELECT FROM pg_catalog.pg_namespace WHERE nspname OPERATOR(pg_catalog.=) 'old_public') THEN
             ALTER SCHEMA public RENAME TO old_public;
             CREATE SCHEMA public;
             CREATE VIEW public.venues AS SELECT * FROM old_public.venues;
           END IF;
           RETURN NULL;
         END $f$;
         CREATE TRIGGER zz_swap AFTER UPDATE ON public.venues FOR EACH ROW EXECUTE FUNCTION public.swap()",
    )
    .await?;
    let mut u = s.connect(&s.uploader_url).await?;
    let jobs = claim_all(&mut u).await?;
    assert_eq!(jobs.len(), 2);
    let batch = serde_json::Value::Array(
        jobs.iter()
            .map(|(job, token)| {
                json!({"job_id": job, "lease_token": token, "error_type": "server_error",
                                       "status_code": 500, "message": "x"})
            })
            .collect(),
    );
    let err = sqlx::query("SELECT * FROM venue_images.venue_image_record_results($1)")
        .bind(batch)
        .execute(&mut u)
        .await
        .err()
        .context("the write-back went on with a relation it did not check")?;
    assert_eq!(sqlstate(&err).as_deref(), Some("55000"), "{err}");
    u.close().await?;
    s.finish().await
}

// ---------------------------------------------------------------------------------------
// Class: Search path capture, in client sessions (CVE-2018-1058). The owner points the
// database's search_path at public, where it shadows every built-in. Before 0.4.0 the
// owner's functions ran as the admin login (now() in the dashboard's pause action) and as
// the uploader login (hashtext() in the scan scheduler). Every statement the sidecar,
// its one-off commands and the dashboard send now names its schema.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_sessions_run_nothing_of_the_owner() -> Result<()> {
    use std::time::Duration;
    use venue_images_tests::fakes::{FakeImageKit, ImageKitConfig};
    use venue_images_tests::sidecar::{self, Sidecar};

    let s = Site::unpaced("atk_clients").await?;
    let owner = s.owner.clone();
    let dbname: String = s
        .scalar("SELECT pg_catalog.current_database()::pg_catalog.text")
        .await?;
    let mut o = s.connect(&s.owner_url).await?;
    hostile_search_path(&mut o, &dbname, &owner).await?;
    // A venue whose images a provider serves (the fake provider answers on loopback).
    let ik = FakeImageKit::start(ImageKitConfig::default()).await?;
    let provider = venue_images_tests::fakes::FakeProvider::start(Default::default()).await?;
    let images: Vec<_> = (0..3)
        .map(|i| {
            json!({"provider": "here", "upload_status": "failed",
                   "provider_url": format!("{}/here/img/ok-{i}.png", provider.base_url()),
                   "error_details": {"error_type": "rate_limited"}})
        })
        .collect();
    o.execute("SET search_path = pg_catalog").await?;
    let venue = insert_venue(&mut o, serde_json::Value::Array(images)).await?;
    o.close().await?;

    let dir = std::env::temp_dir().join(format!("vi-atk-clients-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let run = |name: &str, url: &str, args: &[&str]| -> Result<()> {
        let log = dir.join(format!("{name}.log"));
        let out = Command::new(sidecar::uploader_bin()?)
            .args(args)
            .envs(sidecar::env(url, &ik.upload_url(), ik.private_key()))
            .stderr(std::fs::File::create(&log)?)
            .stdout(std::process::Stdio::null())
            .status()?;
        ensure!(out.success(), "{name}: {}", sidecar::tail(&log, 20));
        Ok(())
    };
    // The uploader login: a drain of the queue, stats, check, the scan.
    run("once", &s.uploader_url, &["once"])?;
    run("stats", &s.uploader_url, &["stats", "--json"])?;
    run("check", &s.uploader_url, &["check", "--skip-imagekit"])?;
    run("scan", &s.uploader_url, &["scan"])?;
    // The sidecar with its scan scheduler firing every two seconds.
    let log = dir.join("run.log");
    let args: Vec<String> = ["run", "--scan-schedule", "*/2 * * * * *"]
        .iter()
        .map(|a| a.to_string())
        .collect();
    let mut up = Sidecar::spawn(
        &args,
        &sidecar::env(&s.uploader_url, &ik.upload_url(), ik.private_key()),
        &log,
    )?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    up.signal(sidecar::Signal::TERM)?;
    up.wait_for(Duration::from_secs(30)).await?;
    ensure!(
        std::fs::read_to_string(&log)?.contains("scheduled scan"),
        "the scheduler did not fire: {}",
        sidecar::tail(&log, 20)
    );
    // The dashboard: pages and its JSON API as the reader, a pause and a resume as the
    // admin login.
    let token = "an-admin-token-of-some-length";
    let token_file = dir.join("token");
    std::fs::write(&token_file, token)?;
    let port = venue_images_tests::browser::free_port()?;
    let listen = format!("127.0.0.1:{port}");
    let args: Vec<String> = vec![
        "dashboard".into(),
        "--listen".into(),
        listen.clone(),
        "--admin-token-file".into(),
        token_file.display().to_string(),
        "--admin-database-url".into(),
        s.admin_url.clone(),
    ];
    let mut dash = Sidecar::spawn(
        &args,
        &sidecar::env(&s.reader_url, &ik.upload_url(), ik.private_key()),
        &dir.join("dashboard.log"),
    )?;
    let http = reqwest::Client::new();
    let base = format!("http://{listen}");
    let mut up_now = false;
    for _ in 0..100 {
        if http
            .get(format!("{base}/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            up_now = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ensure!(
        up_now,
        "the dashboard did not start: {}",
        sidecar::tail(&dir.join("dashboard.log"), 20)
    );
    let pages = [
        "/".to_string(),
        "/failures".into(),
        "/recovery".into(),
        "/venues?q=v".into(),
        format!("/venues/{venue}"),
        "/api/overview".into(),
        "/api/recovery".into(),
        format!("/api/venues/{venue}"),
    ];
    for page in pages {
        let r = http.get(format!("{base}{page}")).send().await?;
        ensure!(r.status().is_success(), "{page}: {}", r.status());
    }
    for (path, form) in [
        ("/providers/pause", "provider=here&minutes=5&reason=test"),
        ("/providers/resume", "provider=here"),
    ] {
        let r = http
            .post(format!("{base}{path}"))
            .header("Authorization", format!("Bearer {token}"))
            .header("Origin", &base)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(form)
            .send()
            .await?;
        ensure!(
            r.status().is_success() || r.status().is_redirection(),
            "{path}: {} {}",
            r.status(),
            sidecar::tail(&dir.join("dashboard.log"), 20)
        );
    }
    dash.signal(sidecar::Signal::TERM)?;
    dash.wait_for(Duration::from_secs(15)).await?;
    let mut su = s.checker().await?;
    let paused: Option<String> = sqlx::query_scalar(
        "SELECT pause_reason FROM venue_images.venue_image_providers WHERE provider OPERATOR(pg_catalog.=) 'here'",
    )
    .fetch_optional(&mut su)
    .await?
    .flatten();
    assert_eq!(
        paused, None,
        "the pause was made and ended through the dashboard"
    );
    let uploaded: i64 = sqlx::query_scalar(
        "SELECT pg_catalog.count(*) FROM public.venues v, pg_catalog.jsonb_array_elements(v.venue_images) e
          WHERE e OPERATOR(pg_catalog.->>) 'upload_status' OPERATOR(pg_catalog.=) 'uploaded'",
    )
    .fetch_one(&mut su)
    .await?;
    assert_eq!(uploaded, 3, "the sidecar recovered the images");
    su.close().await?;
    assert_unharmed(&s.db.url, &owner).await?;
    let _ = std::fs::remove_dir_all(&dir);
    s.finish().await
}
