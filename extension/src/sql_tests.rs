//! `#[pg_test]`s of the SQL surface: names and signatures, NULL handling, SQLSTATEs,
//! settings, and the analytics on small edge-case tables. Each test runs in its own
//! rolled-back transaction.

#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;

    fn one<T: pgrx::FromDatum + pgrx::IntoDatum>(sql: &str) -> Option<T> {
        Spi::get_one::<T>(sql).unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    fn text(sql: &str) -> Option<String> {
        one::<String>(sql)
    }

    fn run(sql: &str) {
        Spi::run(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// Each query answers its text (`None`: NULL).
    fn texts_are(cases: &[(&str, Option<&str>)]) {
        for (sql, want) in cases {
            assert_eq!(text(sql).as_deref(), *want, "{sql}");
        }
    }

    /// Each query answers its value (`None`: NULL).
    fn values_are<T>(cases: &[(&str, Option<T>)])
    where
        T: pgrx::FromDatum + pgrx::IntoDatum + PartialEq + std::fmt::Debug,
    {
        for (sql, want) in cases {
            assert_eq!(&one::<T>(sql), want, "{sql}");
        }
    }

    /// The query answers true.
    fn holds(sql: &str) {
        assert_eq!(one::<bool>(sql), Some(true), "{sql}");
    }

    /// Runs `stmt` in PL/pgSQL and requires it to fail with exactly `sqlstate`; returns the
    /// error message.
    fn expect_sqlstate(stmt: &str, sqlstate: &str) -> String {
        let body = format!(
            "DO $t$ DECLARE msg text; BEGIN
               BEGIN {stmt}; EXCEPTION WHEN SQLSTATE '{sqlstate}' THEN
                 GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT;
                 PERFORM set_config('venue_images_test.msg', msg, true);
                 RETURN;
               END;
               RAISE EXCEPTION 'expected SQLSTATE {sqlstate} from: %', {lit};
             END $t$",
            lit = pgrx::spi::quote_literal(stmt)
        );
        run(&body);
        text("SELECT current_setting('venue_images_test.msg')").unwrap_or_default()
    }

    #[pg_test]
    fn every_documented_function_exists_with_its_signature() {
        for (sig, ret) in [
            ("venue_image_classify_error(text)", "text"),
            ("venue_image_error_type(integer)", "text"),
            (
                "venue_image_quality_score(integer,integer)",
                "double precision",
            ),
            (
                "venue_image_priority_score(integer,double precision,boolean)",
                "double precision",
            ),
            ("venue_image_file_name(text,text)", "text"),
            ("venue_image_folder(text,bigint)", "text"),
            ("venue_images_dedupe(jsonb)", "jsonb"),
            ("venue_images_merge(jsonb,jsonb)", "jsonb"),
            ("venue_images_summary(jsonb)", "record"),
            ("venue_image_failure_breakdown()", "record"),
            ("venues_with_image_failures()", "record"),
            (
                "venue_image_partial_failure_candidates(integer,integer)",
                "record",
            ),
            ("venue_image_high_priority_venues(integer)", "record"),
            ("venue_image_summary_stats()", "record"),
        ] {
            let got = text(&format!("SELECT format_type(prorettype, NULL) FROM pg_proc WHERE oid = '{sig}'::regprocedure"));
            assert_eq!(got.as_deref(), Some(ret), "{sig}");
        }
        // Output columns of the table functions ('t') and of the OUT parameters ('o'), in
        // order.
        for (sig, mode, want) in [
            (
                "venue_image_failure_breakdown()",
                't',
                "provider,error_type,error_class,count",
            ),
            (
                "venues_with_image_failures()",
                't',
                "id,name,city_id,total_images,failed_count,uploaded_count,failure_rate_pct",
            ),
            (
                "venue_images_summary(jsonb)",
                'o',
                "total,uploaded,failed,permanently_failed,transient,permanent,ambiguous,retryable",
            ),
        ] {
            let cols = text(&format!(
                "SELECT string_agg(a, ',' ORDER BY o) FROM pg_proc p,
                   unnest(p.proargnames, p.proargmodes) WITH ORDINALITY AS t(a, m, o)
                 WHERE p.oid = '{sig}'::regprocedure AND m = '{mode}'"
            ));
            assert_eq!(cols.as_deref(), Some(want), "{sig}");
        }
        // Defaults.
        texts_are(&[
            (
                "SELECT pg_get_function_identity_arguments('venue_image_partial_failure_candidates(int,int)'::regprocedure)",
                Some("min_failures integer, max_rows integer"),
            ),
            (
                "SELECT pg_get_function_arguments('venue_image_partial_failure_candidates(int,int)'::regprocedure)",
                Some("min_failures integer DEFAULT 1, max_rows integer DEFAULT 100"),
            ),
            (
                "SELECT pg_get_function_arguments('venue_image_high_priority_venues(int)'::regprocedure)",
                Some("max_rows integer DEFAULT 50"),
            ),
        ]);
    }

    #[pg_test]
    fn volatility_and_parallel_safety_are_declared() {
        for (f, vol, par) in [
            ("venue_image_error_type(integer)", "i", "s"),
            ("venue_image_quality_score(integer,integer)", "i", "s"),
            ("venue_images_dedupe(jsonb)", "i", "s"),
            ("venue_image_classify_error(text)", "s", "s"),
            ("venue_images_summary(jsonb)", "s", "s"),
            ("venue_image_summary_stats()", "s", "r"),
        ] {
            let got = text(&format!(
                "SELECT provolatile::text || proparallel::text FROM pg_proc WHERE oid = '{f}'::regprocedure"
            ));
            assert_eq!(got, Some(format!("{vol}{par}")), "{f}");
        }
        // The analytics' transition functions are costed as the per-row work they are, so
        // the planner gives their aggregates the parallel plan that a bare scan gets.
        for f in [
            "venue_images_stats_transfn(internal,jsonb)",
            "venue_images_venue_list_transfn(internal,bigint,text,bigint,jsonb,integer,boolean,integer,boolean,boolean)",
        ] {
            let cost = one::<f32>(&format!(
                "SELECT procost FROM pg_proc WHERE oid = 'venue_images.{f}'::regprocedure"
            ));
            assert_eq!(cost, Some(100.0), "{f}");
        }
    }

    #[pg_test]
    fn classification_and_status_table() {
        texts_are(&[
            (
                "SELECT venue_image_classify_error('rate_limited')",
                Some("transient"),
            ),
            (
                "SELECT venue_image_classify_error('server_error')",
                Some("transient"),
            ),
            (
                "SELECT venue_image_classify_error('not_found')",
                Some("permanent"),
            ),
            (
                "SELECT venue_image_classify_error('http_error')",
                Some("ambiguous"),
            ),
            ("SELECT venue_image_classify_error('')", Some("unknown")),
            ("SELECT venue_image_classify_error(NULL)", Some("unknown")),
            ("SELECT venue_image_error_type(NULL)", None),
        ]);
        // The SQL function answers the core's status table (whose values the core's
        // tests pin).
        for code in [429, 401, 403, 404, 500, 502, 503, 504, 418, 200, 999, 100] {
            assert_eq!(
                text(&format!("SELECT venue_image_error_type({code})")).as_deref(),
                venue_images_core::classify::error_type_for_status(code).ok(),
                "{code}"
            );
        }
        let msg = expect_sqlstate("PERFORM venue_image_error_type(0)", "22023");
        assert!(msg.contains("HTTP status"), "{msg}");
    }

    #[pg_test]
    fn settings_replace_lists_and_change_retryable() {
        run("SET LOCAL venue_images.transient_errors = 'custom_a, custom_b'");
        texts_are(&[
            (
                "SELECT venue_image_classify_error('custom_b')",
                Some("transient"),
            ),
            (
                "SELECT venue_image_classify_error('rate_limited')",
                Some("ambiguous"),
            ),
        ]);
        run("SET LOCAL venue_images.permanent_errors = ''");
        texts_are(&[(
            "SELECT venue_image_classify_error('not_found')",
            Some("ambiguous"),
        )]);
        run("RESET venue_images.transient_errors; RESET venue_images.permanent_errors");
        let retryable = r#"SELECT retryable FROM venue_images_summary('[{"upload_status":"failed","retry_count":2,"provider_url":"https://p/1","error_details":{"error_type":"rate_limited"}}]')"#;
        values_are(&[(retryable, Some(1))]);
        run("SET LOCAL venue_images.max_retries = 2");
        values_are(&[(retryable, Some(0))]);
        run("SET LOCAL venue_images.folder_base = '/venues_test/'");
        texts_are(&[
            ("SELECT venue_image_folder('x', 1)", Some("/venues_test/x")),
            ("SHOW venue_images.retry_base_seconds", Some("30")),
        ]);
        expect_sqlstate("SET venue_images.max_retries = -1", "22023");
    }

    #[pg_test]
    fn settings_are_superuser_only_and_the_prefix_is_reserved() {
        run("CREATE ROLE vi_test_plain");
        run("SET LOCAL ROLE vi_test_plain");
        for stmt in [
            "SET venue_images.max_retries = 0",
            "SET venue_images.transient_errors = 'x'",
            "SET venue_images.retry_base_seconds = 0",
            "SET venue_images.folder_base = '/elsewhere'",
            "SET venue_images.attempt_retention_days = 1",
            "SET venue_images.venues_table = 'mine'",
            "SET venue_images.imagekit_url_prefix = ''",
            "SET venue_images.gin_max_failing_share = 1",
        ] {
            expect_sqlstate(stmt, "42501");
        }
        run("RESET ROLE");
        // No new names under the prefix, from anyone.
        expect_sqlstate("SET venue_images.no_such_setting = 1", "42602");
    }

    #[pg_test]
    fn scores_and_names() {
        values_are(&[
            ("SELECT venue_image_quality_score(4032, 3024)", Some(1.0)),
            ("SELECT venue_image_quality_score(2000, 2000)", Some(0.95)),
            (
                "SELECT venue_image_quality_score(1920, 1080)",
                Some(0.66288),
            ),
            ("SELECT venue_image_quality_score(800, 800)", Some(0.362)),
            ("SELECT venue_image_quality_score(1000, 400)", Some(0.27)),
            ("SELECT venue_image_quality_score(NULL, 400)", Some(0.1)),
            (
                "SELECT venue_image_priority_score(3, 30.0, true)",
                Some(80.0),
            ),
            (
                "SELECT venue_image_priority_score(NULL, 30.0, true)",
                None::<f64>,
            ),
        ]);
        for stmt in [
            "PERFORM venue_image_priority_score(-1, 30.0, true)",
            "PERFORM venue_image_priority_score(1, 'NaN', true)",
            "PERFORM venue_image_file_name('', 'here')",
        ] {
            expect_sqlstate(stmt, "22023");
        }
        let a = text("SELECT venue_image_file_name('https://maps.googleapis.com/maps/api/place/photo?maxwidth=1600&photo_reference=A&key=K1', 'google_places')").unwrap();
        let b = text("SELECT venue_image_file_name('https://maps.googleapis.com/maps/api/place/photo?key=K2&photo_reference=A&maxwidth=1600', 'google_places')").unwrap();
        let c = text("SELECT venue_image_file_name('https://maps.googleapis.com/maps/api/place/photo?maxwidth=1600&photo_reference=B&key=K1', 'google_places')").unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(a.starts_with("gp-") && a.ends_with(".jpg"));
        assert!(
            text("SELECT venue_image_file_name('https://x/y.png', NULL)")
                .unwrap()
                .starts_with("xx-")
        );
        texts_are(&[
            ("SELECT venue_image_file_name(NULL, 'here')", None),
            (
                "SELECT venue_image_folder('Blue Note', 7)",
                Some("/venues/blue-note"),
            ),
            (
                "SELECT venue_image_folder(NULL, 7)",
                Some("/venues/venue-7"),
            ),
            ("SELECT venue_image_folder(NULL, NULL)", None),
        ]);
    }

    #[pg_test]
    fn dedupe_and_merge_in_sql() {
        texts_are(&[
            (
                r#"SELECT venue_images_dedupe('[
                    {"provider_url":"p","url":"https://ik/p.jpg","upload_status":"uploaded","quality_score":0.5,"retry_count":1,"attribution":"keep"},
                    {"provider_url":"p","url":"p","upload_status":"failed","quality_score":0.5,"retry_count":2,"fetched_at":"2030-01-01T00:00:00Z"},
                    "loose", {"no":"key"}
                ]')::text"#,
                Some(
                    r#"[{"url": "https://ik/p.jpg", "attribution": "keep", "retry_count": 2, "provider_url": "p", "quality_score": 0.5, "upload_status": "uploaded"}, "loose", {"no": "key"}]"#,
                ),
            ),
            ("SELECT venue_images_dedupe(NULL)::text", None),
            ("SELECT venue_images_dedupe('[]')::text", Some("[]")),
            ("SELECT venue_images_merge(NULL, NULL)::text", None),
            (
                r#"SELECT venue_images_merge(NULL, '[{"url":"a"}]')::text"#,
                Some(r#"[{"url": "a"}]"#),
            ),
            (
                r#"SELECT venue_images_merge('[{"url":"a","upload_status":"uploaded"}]', '[{"url":"a","upload_status":"failed"},{"url":"b"}]')::text"#,
                Some(r#"[{"url": "a", "upload_status": "uploaded"}, {"url": "b"}]"#),
            ),
        ]);
        // Results are real jsonb: operators and equality work on them.
        holds(
            r#"SELECT venue_images_dedupe('[{"url":"b","quality_score":0.1},{"url":"a","quality_score":0.9}]') = '[{"url":"a","quality_score":0.9},{"url":"b","quality_score":0.1}]'::jsonb"#,
        );
        // A huge array.
        values_are(&[(
            "SELECT jsonb_array_length(venue_images_dedupe((SELECT jsonb_agg(jsonb_build_object('url', 'u' || (g % 50000), 'quality_score', g % 7)) FROM generate_series(1, 200000) g)))",
            Some(50000),
        )]);
    }

    #[pg_test]
    fn bad_input_raises_22023_naming_the_problem() {
        for (stmt, needle) in [
            (
                r#"PERFORM venue_images_dedupe('{"url":"a"}')"#,
                "must be a JSON array, got object",
            ),
            (r#"PERFORM venue_images_dedupe('"text"')"#, "got string"),
            (r#"PERFORM venue_images_dedupe('42')"#, "got number"),
            (r#"PERFORM venue_images_dedupe('null')"#, "got null"),
            (
                r#"PERFORM venue_images_dedupe('[{"url":1}]')"#,
                "\"url\" must be a string",
            ),
            (
                r#"PERFORM venue_images_dedupe('[{"url":"a","quality_score":"hi"}]')"#,
                "\"quality_score\" must be a number",
            ),
            (
                r#"PERFORM venue_images_dedupe('[{"url":"a","retry_count":[1]}]')"#,
                "\"retry_count\" must be a number",
            ),
            (
                r#"PERFORM venue_images_merge('[]', '{}')"#,
                "must be a JSON array",
            ),
            (
                r#"PERFORM venue_images_summary('{}')"#,
                "must be a JSON array",
            ),
            (
                r#"PERFORM venue_images_summary('[{"upload_status":true}]')"#,
                "\"upload_status\" must be a string",
            ),
            (
                r#"PERFORM venue_images_summary('[{"upload_status":"failed","error_details":{"error_type":7}}]')"#,
                "error_details.error_type",
            ),
        ] {
            let msg = expect_sqlstate(stmt, "22023");
            assert!(msg.contains(needle), "{stmt}: {msg}");
        }
    }

    /// `jsonb` of `depth` nested arrays, `[[…]]`, as SQL.
    fn deep_arrays(depth: usize) -> String {
        format!("(repeat('[', {depth}) || repeat(']', {depth}))::jsonb")
    }

    /// `jsonb` of `depth` nested objects, `{"a": {"a": … {}}}`, as SQL.
    fn deep_objects(depth: usize) -> String {
        format!(
            "(repeat('{{\"a\": ', {n}) || '{{}}' || repeat('}}', {n}))::jsonb",
            n = depth - 1
        )
    }

    /// Runs `stmt` in PL/pgSQL and returns the SQLSTATE it failed with (`None`: it
    /// succeeded).
    fn sqlstate_of(stmt: &str) -> Option<String> {
        run(&format!(
            "DO $t$ BEGIN
               PERFORM set_config('venue_images_test.state', '', true);
               BEGIN {stmt}; EXCEPTION WHEN OTHERS THEN
                 PERFORM set_config('venue_images_test.state', SQLSTATE, true);
               END;
             END $t$"
        ));
        text("SELECT current_setting('venue_images_test.state')").filter(|s| !s.is_empty())
    }

    /// Every SQL function that takes jsonb, given 10,000 (and 12,000) levels of nesting:
    /// `venue_images_redact_json` refuses more than 1000 levels with 54001
    /// (`statement_too_complex`, PostgreSQL's own class for "stack depth limit
    /// exceeded"); the others never look into what they copy and answer correctly. The
    /// backend survives all of it (a crash would end this test's session).
    /// Attack class: Resource exhaustion (../shared/spec/attack-classes.md).
    #[pg_test]
    fn deep_jsonb_gives_54001_or_a_correct_result_never_a_crash() {
        let d = deep_arrays(10_000);
        let o = deep_objects(10_000);
        // redact_json: at the limit a copy, past it 54001 with a clear message.
        for deep in [deep_arrays(1000), deep_objects(1000)] {
            holds(&format!(
                "SELECT venue_images.venue_images_redact_json({deep}) = {deep}"
            ));
        }
        for deep in [deep_arrays(1001), d.clone(), o.clone()] {
            let msg = expect_sqlstate(
                &format!("PERFORM venue_images.venue_images_redact_json({deep})"),
                "54001",
            );
            assert_eq!(msg, "jsonb value nested deeper than 1000 levels");
        }
        assert_eq!(
            text(&format!(
                r#"SELECT venue_images.venue_images_redact_json(jsonb_build_object('u', 'https://x/p?key=SECRET', 'd', {}))::text"#,
                deep_arrays(3)
            ))
            .as_deref(),
            Some(r#"{"d": [[[]]], "u": "https://x/p?key=REDACTED"}"#)
        );

        // dedupe and merge: a deep element and a deep key are copied as they are.
        holds(&format!(
            "SELECT venue_images.venue_images_dedupe({d}) = {d}"
        ));
        let images = format!(
            "jsonb_build_array({d},
               jsonb_build_object('url', 'a', 'upload_status', 'uploaded', 'junk', {o}),
               jsonb_build_object('url', 'a', 'upload_status', 'failed', 'retry_count', 2))"
        );
        holds(&format!(
            "SELECT r -> 0 = {d} AND r -> 1 -> 'junk' = {o} AND r -> 1 ->> 'retry_count' = '2'
                        AND jsonb_array_length(r) = 2
                   FROM venue_images.venue_images_dedupe({images}) r"
        ));
        holds(&format!(
            "SELECT r = venue_images.venue_images_dedupe({d} || {images})
                   FROM venue_images.venue_images_merge({d}, {images}) r"
        ));

        // summary and summary_counts: deep elements are not images, deep keys unread.
        let failed = format!(
            "jsonb_build_array({d}, jsonb_build_object('upload_status', 'failed',
               'provider_url', 'https://p/1', 'junk', {o},
               'error_details', jsonb_build_object('error_type', 'rate_limited')))"
        );
        assert_eq!(
            text(&format!(
                "SELECT row(s.*)::text FROM venue_images.venue_images_summary({failed}) s"
            ))
            .as_deref(),
            Some("(1,0,1,0,1,0,0,1)")
        );
        assert_eq!(
            text(&format!(
                "SELECT venue_images.venue_images_summary_counts({d})::text"
            ))
            .as_deref(),
            Some("{0,0,0,0,0,0,0,0}")
        );

        // finalize: the deep element and key survive byte for byte.
        let finalizable = format!(
            "jsonb_build_array({d}, jsonb_build_object('upload_status', 'failed', 'junk', {o},
               'error_details', jsonb_build_object('error_type', 'not_found')))"
        );
        holds(&format!(
            "SELECT r -> 0 = {d} AND r -> 1 -> 'junk' = {o}
                        AND r -> 1 ->> 'upload_status' = 'permanently_failed'
                   FROM venue_images.venue_images_finalize({finalizable}) r"
        ));

        // The aggregates' transition functions: a deep provider and error type are
        // printed as `->>` prints them.
        let printed = "repeat('[', 10000) || repeat(']', 10000)";
        let row = format!(
            "jsonb_build_array({d}, jsonb_build_object('upload_status', 'failed',
               'provider', {d}, 'error_details', jsonb_build_object('error_type', {d})))"
        );
        // Rows: a deep array (one non-object element), a deep object (not an array),
        // the image row (one more non-object element), NULL.
        assert_eq!(
            text(&format!(
                "SELECT concat_ws('/', s ->> 'venues', s ->> 'failed_images',
                          s ->> 'non_object_elements', s ->> 'non_array_values',
                          s -> 'breakdown' -> 0 ->> 'provider' = {printed},
                          s -> 'breakdown' -> 0 ->> 'error_type' = {printed})
                   FROM (SELECT venue_images.venue_images_stats(v) AS s
                           FROM (VALUES ({d}), ({o}), ({row}), (NULL)) t(v)) x"
            ))
            .as_deref(),
            Some("4/1/2/1/t/t")
        );
        holds(&format!(
            "SELECT venue_images.venue_images_stats_state(v) IS NOT NULL
                   FROM (VALUES ({d}), ({row})) t(v)"
        ));
        holds(&format!(
                "SELECT venue_images.venue_images_venue_list(1, 'v', 1, v, 1, false, NULL, true, true) IS NOT NULL
                   FROM (VALUES ({d}), ({row})) t(v)"
            ));

        // Write-back's batch entry point: not an array of outcome objects (22023).
        let state = sqlstate_of(&format!(
            "PERFORM * FROM venue_images.venue_image_record_results({d})"
        ));
        assert_eq!(state.as_deref(), Some("22023"));

        // At PostgreSQL's own depth (about 12,000 levels): 54001 (ours, or PostgreSQL's
        // own) or an answer, never XX000 or a crash.
        let deep = deep_arrays(12_000);
        assert_eq!(
            one::<i32>(&format!("SELECT jsonb_array_length({deep})")),
            Some(1),
            "PostgreSQL parses 12,000 levels here"
        );
        for stmt in [
            format!("PERFORM venue_images.venue_images_redact_json({deep})"),
            format!("PERFORM venue_images.venue_images_dedupe({deep})"),
            format!("PERFORM venue_images.venue_images_merge({deep}, {deep})"),
            format!("PERFORM venue_images.venue_images_summary({deep})"),
            format!("PERFORM venue_images.venue_images_summary_counts({deep})"),
            format!("PERFORM venue_images.venue_images_finalize({deep})"),
            format!("PERFORM venue_images.venue_images_stats({deep})"),
            format!("PERFORM venue_images.venue_images_stats_state({deep})"),
            format!("PERFORM venue_images.venue_images_venue_list(1, 'v', 1, {deep}, 1, false, NULL, true, true)"),
        ] {
            let state = sqlstate_of(&stmt);
            assert!(
                state.is_none() || state.as_deref() == Some("54001"),
                "{stmt}: {state:?}"
            );
        }
        assert_eq!(one::<i32>("SELECT 1"), Some(1), "the backend is alive");
    }

    /// The table-level analytics and the purge over rows with 10,000-deep values.
    /// Attack class: Resource exhaustion (../shared/spec/attack-classes.md).
    #[pg_test]
    fn deep_jsonb_in_the_venues_table_is_read_and_purged_safely() {
        venues_table("t_deep");
        let d = deep_arrays(10_000);
        let o = deep_objects(10_000);
        run(&format!(
            "INSERT INTO t_deep (name, city_id, venue_images) VALUES
               ('deep', 1, {d}),
               ('keys', 1, jsonb_build_array({d}, jsonb_build_object('upload_status', 'failed',
                  'provider', {d}, 'junk', {o},
                  'error_details', jsonb_build_object('error_type', 'rate_limited')),
                  jsonb_build_object('upload_status', 'uploaded'))),
               ('purge', 2, jsonb_build_array({d}, jsonb_build_object('upload_status', 'permanently_failed',
                  'provider_url', 'https://x/a.jpg?key=SECRET'))),
               ('purge-deep', 2, jsonb_build_array(jsonb_build_object('upload_status', 'permanently_failed',
                  'provider_url', 'https://x/b.jpg', 'junk', {o})))"
        ));
        assert_eq!(
            text("SELECT string_agg(concat_ws('/', name, total_images, failed_count, uploaded_count), ' ' ORDER BY name) FROM venues_with_image_failures()").as_deref(),
            Some("keys/2/1/1 purge/1/1/0 purge-deep/1/1/0")
        );
        assert_eq!(
            one::<i64>(
                "SELECT count FROM venue_image_failure_breakdown()
                  WHERE provider = repeat('[', 10000) || repeat(']', 10000)"
            ),
            Some(1)
        );
        assert_eq!(
            one::<i64>("SELECT total_failed_images FROM venue_image_summary_stats()"),
            Some(3)
        );
        assert_eq!(
            one::<i64>("SELECT count(*) FROM venue_image_high_priority_venues(10)"),
            Some(3)
        );
        assert_eq!(
            one::<i32>("SELECT (venue_image_overview(10) -> 'stats' ->> 'failed_images')::int"),
            Some(3)
        );
        // Purge: the deep neighbour is kept as it is; the removed element is logged.
        let id = |name: &str| {
            one::<i64>(&format!("SELECT id FROM t_deep WHERE name = '{name}'")).unwrap()
        };
        assert_eq!(
            one::<i32>(&format!(
                "SELECT venue_images.venue_image_purge_permanently_failed({})",
                id("purge")
            )),
            Some(1)
        );
        holds(&format!(
            "SELECT venue_images = jsonb_build_array({d}) FROM t_deep WHERE name = 'purge'"
        ));
        // A removed element nested deeper than the limit cannot be copied into the log
        // with its strings redacted: it is removed all the same, and the log says why
        // there is no copy (no admin could ever purge it otherwise).
        assert_eq!(
            one::<i32>(&format!(
                "SELECT venue_images.venue_image_purge_permanently_failed({})",
                id("purge-deep")
            )),
            Some(1)
        );
        assert_eq!(
            one::<i32>(
                "SELECT jsonb_array_length(venue_images) FROM t_deep WHERE name = 'purge-deep'"
            ),
            Some(0)
        );
        assert_eq!(
            one::<String>(
                "SELECT detail ->> 'not_kept' FROM venue_images.venue_image_attempts
                  WHERE outcome = 'purged' ORDER BY attempt_id DESC LIMIT 1"
            )
            .as_deref(),
            Some("jsonb value nested deeper than 1000 levels: the element was removed without a copy")
        );
    }

    /// Issue 17: jsonb numbers decide as `numeric` does, so the functions agree with the
    /// same rule written in plain SQL where `f64` would not.
    #[pg_test]
    fn numbers_decide_as_numeric_does() {
        // retryable: `greatest(0, floor(retry_count::numeric)) < max_retries`.
        for rc in [
            "2.9999999999999999999",
            "\"2.9999999999999999999\"",
            "3",
            "3.0000000000000000001",
            "2.99999999999999999999999999999999999999999",
            "-1",
            "1e300",
        ] {
            let images = format!(
                r#"[{{"upload_status":"failed","provider_url":"https://p/1",
                     "error_details":{{"error_type":"rate_limited"}},"retry_count":{rc}}}]"#
            );
            let ours = one::<i32>(&format!(
                "SELECT (venue_images_summary('{images}')).retryable"
            ));
            let plain = one::<i32>(&format!(
                "SELECT count(*)::int FROM jsonb_array_elements('{images}') e
                  WHERE greatest(0, floor((e ->> 'retry_count')::numeric)) < 3"
            ));
            assert_eq!(ours, plain, "retry_count {rc}");
        }
        assert_eq!(
            one::<i32>(
                r#"SELECT (venue_images_summary('[{"upload_status":"failed","provider_url":"https://p/1",
                     "error_details":{"error_type":"rate_limited"},"retry_count":2.9999999999999999999}]')).retryable"#
            ),
            Some(1)
        );
        // dedupe: the group's highest retry_count, as written.
        assert_eq!(
            text(
                r#"SELECT venue_images_dedupe('[{"provider_url":"p","upload_status":"uploaded","retry_count":3},
                     {"provider_url":"p","upload_status":"failed","retry_count":3.0000000000000000001}]') -> 0 ->> 'retry_count'"#
            )
            .as_deref(),
            Some("3.0000000000000000001")
        );
        // dedupe's order is `ORDER BY quality_score::numeric DESC`.
        let images = r#"'[{"url":"a","quality_score":0.12345678901234567890123},
                          {"url":"b","quality_score":0.123456789012345678901234567890},
                          {"url":"c","quality_score":0.1234567890123456789012300001}]'"#;
        assert_eq!(
            text(&format!(
                "SELECT string_agg(e ->> 'url', ',' ORDER BY o)
                   FROM jsonb_array_elements(venue_images_dedupe({images})) WITH ORDINALITY x(e, o)"
            )),
            text(&format!(
                "SELECT string_agg(e ->> 'url', ',' ORDER BY (e ->> 'quality_score')::numeric DESC)
                   FROM jsonb_array_elements({images}) e"
            ))
        );
        assert_eq!(
            text(&format!(
                "SELECT venue_images_dedupe({images}) -> 0 ->> 'url'"
            ))
            .as_deref(),
            Some("b")
        );
    }

    #[pg_test]
    fn summary_counts_and_nulls() {
        let row = text(
            r#"SELECT row(s.*)::text FROM venue_images_summary('[
                {"upload_status":"uploaded"},
                {"upload_status":"failed","error_details":{"error_type":"rate_limited"},"retry_count":1,"provider_url":"https://p/1"},
                {"upload_status":"failed","error_details":{"error_type":"rate_limited"},"retry_count":3},
                {"upload_status":"failed","error_details":{"error_type":"not_found"}},
                {"upload_status":"permanently_failed","error_details":{"error_type":"weird"}},
                {"upload_status":"failed"}, {"upload_status":"skipped_dev"}, {}, "x", 1]') s"#,
        );
        assert_eq!(row.as_deref(), Some("(8,1,4,1,2,1,1,1)"));
        assert_eq!(
            one::<i32>("SELECT (venue_images_summary(NULL)).total"),
            None
        );
    }

    fn venues_table(name: &str) {
        run(&format!(
            "CREATE TABLE {name} (id bigserial PRIMARY KEY, name varchar NOT NULL, slug varchar, city_id bigint, venue_images jsonb);
             SET LOCAL venue_images.venues_table = '{name}';"
        ));
    }

    const EDGE_ROWS: &str = r#"
        ('A', 1, '[{"upload_status":"failed","provider":"google_places","error_details":{"error_type":"rate_limited"}},
                  {"upload_status":"uploaded","provider":"google_places"},
                  {"upload_status":"permanently_failed","provider":"here","error_details":{"error_type":"not_found"}}]'),
        ('B', 1, '[{"upload_status":"failed","provider":"foursquare","error_details":{"error_type":"http_error"}}]'),
        ('C', 2, '[{"upload_status":"failed"}, 5, "str", {"upload_status":"uploaded"}]'),
        ('D', 2, '{"upload_status":"failed"}'),
        ('E', NULL, NULL),
        ('F', 3, '"scalar"'),
        ('G', 3, '[]'),
        ('H', 3, '[{"upload_status":"uploaded"}]')"#;

    #[pg_test]
    fn analytics_skip_and_count_malformed_rows() {
        venues_table("t_edge");
        run(&format!(
            "INSERT INTO t_edge (name, city_id, venue_images) VALUES {EDGE_ROWS}"
        ));
        let breakdown = text(
            "SELECT string_agg(concat_ws('/', provider, error_type, error_class, count), ' ') FROM venue_image_failure_breakdown()",
        );
        assert_eq!(
            breakdown.as_deref(),
            Some("foursquare/http_error/ambiguous/1 google_places/rate_limited/transient/1 here/not_found/permanent/1 unknown/1")
        );
        let venues = text(
            "SELECT string_agg(concat_ws('/', name, total_images, failed_count, uploaded_count, failure_rate_pct), ' ') FROM venues_with_image_failures()",
        );
        assert_eq!(
            venues.as_deref(),
            Some("A/3/2/1/66.7 B/1/1/0/100 C/2/1/1/50")
        );
        // Returned in materialize mode: also in a select list, a lateral join and a CTE.
        for q in [
            "SELECT string_agg(concat_ws('/', (v).name, (v).total_images, (v).failed_count, (v).uploaded_count, (v).failure_rate_pct), ' ') FROM (SELECT venues_with_image_failures() AS v) s",
            "SELECT string_agg(concat_ws('/', f.name, f.total_images, f.failed_count, f.uploaded_count, f.failure_rate_pct), ' ') FROM (VALUES (1)) x, LATERAL venues_with_image_failures() f",
            "WITH f AS (SELECT * FROM venues_with_image_failures()) SELECT string_agg(concat_ws('/', name, total_images, failed_count, uploaded_count, failure_rate_pct), ' ') FROM f",
        ] {
            assert_eq!(text(q), venues, "{q}");
        }
        // The list's rows are handed to the function without bytes (crate::handoff); the
        // aggregate called from SQL, outside any handoff, still answers with the rows'
        // bytes, and leaves nothing behind for the next call to take.
        let direct = text(
            "SELECT encode(substr(venue_images.venue_images_venue_list(id, name, city_id, venue_images, 1, false, NULL, false, false), 1, 8), 'hex') FROM t_edge",
        );
        assert_eq!(
            direct.as_deref(),
            Some("0300000001010000"),
            "3 rows, then venue 1"
        );
        assert_eq!(
            text("SELECT string_agg(concat_ws('/', name, total_images, failed_count, uploaded_count, failure_rate_pct), ' ') FROM venues_with_image_failures()"),
            venues
        );
        let cand = text(
            "SELECT string_agg(concat_ws('/', name, failed_count, error_types::text), ' ') FROM venue_image_partial_failure_candidates(1, 10)",
        );
        assert_eq!(
            cand.as_deref(),
            Some(r#"A/2/["rate_limited", "not_found"] C/1/[null]"#)
        );
        let prio = text(
            "SELECT string_agg(concat_ws('/', name, priority_score), ' ') FROM venue_image_high_priority_venues(2)",
        );
        assert_eq!(prio.as_deref(), Some("B/110 A/106.7"));
        let stats = text("SELECT row(s.*)::text FROM venue_image_summary_stats() s");
        assert_eq!(
            stats.as_deref(),
            Some(
                r#"(3,4,2,72.2,1,1,1,"[{""count"": 1, ""provider"": ""foursquare"", ""error_type"": ""http_error"", ""error_class"": ""ambiguous""}, {""count"": 1, ""provider"": ""google_places"", ""error_type"": ""rate_limited"", ""error_class"": ""transient""}, {""count"": 1, ""provider"": ""here"", ""error_type"": ""not_found"", ""error_class"": ""permanent""}, {""count"": 1, ""provider"": null, ""error_type"": null, ""error_class"": ""unknown""}]",8,1,2,2)"#
            )
        );
        assert_eq!(
            one::<i64>("SELECT count(*) FROM venue_image_partial_failure_candidates(1, 0)"),
            Some(0)
        );
        expect_sqlstate(
            "PERFORM * FROM venue_image_partial_failure_candidates(1, -1)",
            "22023",
        );
        expect_sqlstate(
            "PERFORM * FROM venue_image_high_priority_venues(-5)",
            "22023",
        );
    }

    #[pg_test]
    fn analytics_agree_with_and_without_a_gin_index() {
        venues_table("t_gin");
        run(&format!(
            "INSERT INTO t_gin (name, city_id, venue_images) VALUES {EDGE_ROWS}"
        ));
        let q = "SELECT string_agg(concat_ws('/', name, failed_count), ' ') FROM venues_with_image_failures()";
        let without = text(q);
        run("CREATE INDEX ON t_gin USING gin (venue_images)");
        assert_eq!(text(q), without);
        run("SET LOCAL enable_seqscan = off");
        assert_eq!(text(q), without);
    }

    #[pg_test]
    fn configured_table_columns_and_errors() {
        run(
            "CREATE SCHEMA other; CREATE TABLE other.places (place_id int, title text, imgs jsonb)",
        );
        run(
            r#"INSERT INTO other.places VALUES (7, 'P', '[{"upload_status":"failed","provider":"here"}]')"#,
        );
        run("SET LOCAL venue_images.venues_table = 'other.places'");
        run("SET LOCAL venue_images.id_column = 'place_id'");
        run("SET LOCAL venue_images.name_column = 'title'");
        run("SET LOCAL venue_images.images_column = 'imgs'");
        // city_id is absent: reported as NULL.
        assert_eq!(
            text("SELECT concat_ws('/', id, name, coalesce(city_id::text, 'null')) FROM venues_with_image_failures()").as_deref(),
            Some("7/P/null")
        );
        run("SET LOCAL venue_images.venues_table = 'nope'");
        let msg = expect_sqlstate("PERFORM * FROM venue_image_failure_breakdown()", "42P01");
        assert!(msg.contains("\"nope\""), "{msg}");
        run("SET LOCAL venue_images.venues_table = 'other.places'");
        run("SET LOCAL venue_images.images_column = 'missing'");
        expect_sqlstate("PERFORM * FROM venue_image_summary_stats()", "42703");
        run("SET LOCAL venue_images.images_column = 'title'");
        expect_sqlstate("PERFORM * FROM venue_image_summary_stats()", "42804");
        run("SET LOCAL venue_images.images_column = ''");
        expect_sqlstate("PERFORM * FROM venue_image_summary_stats()", "22023");
    }

    #[pg_test]
    fn json_column_is_read_too() {
        run("CREATE TABLE t_json (id int, name text, city_id int, venue_images json)");
        run(
            r#"INSERT INTO t_json VALUES (1, 'J', 1, '[{"upload_status":"failed"},{"upload_status":"uploaded"}]')"#,
        );
        run("SET LOCAL venue_images.venues_table = 't_json'");
        assert_eq!(
            one::<i64>("SELECT total_failed_images FROM venue_image_summary_stats()"),
            Some(1)
        );
    }

    /// The analytics' pglz decoder against the server's own detoasting, on values stored
    /// compressed inline by the server (pglz), out of line, with lz4, and uncompressed:
    /// every value reads back byte for byte, and most took the decoder's path.
    #[pg_test]
    fn inline_pglz_values_inflate_as_the_server_detoasts_them() {
        use crate::datum::{Jsonb, RawJsonb};
        use venue_images_core::pglz::Inflater;
        run("SET LOCAL default_toast_compression = 'pglz'");
        venues_table("t_pglz");
        run("ALTER TABLE t_pglz ALTER COLUMN venue_images SET STORAGE MAIN");
        // Galleries of 1 to 120 images (repeated keys and URL prefixes), long runs,
        // and values too random to compress.
        run(r#"INSERT INTO t_pglz (id, name, venue_images)
               SELECT n, 'v', (SELECT jsonb_agg(jsonb_build_object(
                      'provider', 'google_places',
                      'provider_url', 'https://maps.example.com/photo?ref=' || md5((n * 1000 + g)::text),
                      'upload_status', CASE WHEN g % 10 = 0 THEN 'failed' ELSE 'uploaded' END,
                      'pad', repeat('ab', (n * 7 + g) % 90),
                      'n', g))
                 FROM generate_series(1, n) g)
               FROM generate_series(1, 120) n"#);
        run("INSERT INTO t_pglz (id, name, venue_images) SELECT 1000 + n, 'v', jsonb_build_array(repeat('x', n * 500)) FROM generate_series(1, 8) n");
        run("INSERT INTO t_pglz (id, name, venue_images) SELECT 2000 + n, 'v', (SELECT jsonb_agg(md5(g::text || n)) FROM generate_series(1, n * 20) g) FROM generate_series(1, 8) n");
        // lz4 where the server was built with it (Debian's 15 is; the 18 wheel is not).
        let lz4 = one::<bool>(
            "SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'",
        ) == Some(true);
        if lz4 {
            run("SET LOCAL default_toast_compression = 'lz4'");
            run("INSERT INTO t_pglz (id, name, venue_images) SELECT 3000 + n, 'v', jsonb_build_array(repeat('y', n * 900)) FROM generate_series(1, 4) n");
        }
        assert!(
            one::<i64>(
                "SELECT count(*) FROM t_pglz WHERE pg_column_compression(venue_images) = 'pglz'"
            )
            .unwrap_or(0)
                >= 100
        );
        let (rows, inflated) = Spi::connect(|client| {
            let (mut rows, mut inflated) = (0, 0);
            for row in client
                .select("SELECT id, venue_images FROM t_pglz", None, &[])
                .unwrap()
            {
                let id = row.get::<i64>(1).unwrap().unwrap();
                let raw = row.get::<RawJsonb>(2).unwrap().unwrap();
                // SAFETY: a non-null jsonb datum of the live tuple table.
                let server = unsafe { Jsonb::from_datum(raw.0) }.bytes().to_vec();
                let ours = unsafe { raw.with_bytes(|b| b.to_vec()) };
                assert_eq!(ours, server, "row {id}");
                // SAFETY: as above.
                if let Some(datum) = unsafe { raw.inline_compressed() } {
                    match Inflater::default().inflate(datum) {
                        Ok(Some(b)) => {
                            assert_eq!(b, &server[..], "row {id}");
                            inflated += 1;
                        }
                        Ok(None) => assert!(id > 3000, "row {id} was left to the server"),
                        Err(e) => panic!("row {id}: {e:?}"),
                    }
                }
                rows += 1;
            }
            (rows, inflated)
        });
        assert_eq!(rows, if lz4 { 140 } else { 136 });
        assert!(
            inflated >= 100,
            "only {inflated} values were compressed inline"
        );
        assert_eq!(
            one::<i64>("SELECT total_failed_images FROM venue_image_summary_stats()"),
            one::<i64>(
                "SELECT count(*) FROM t_pglz, jsonb_array_elements(venue_images) img
                 WHERE jsonb_typeof(img) = 'object' AND img->>'upload_status' = 'failed'"
            )
        );
    }

    /// Our encoder against the server's own `jsonb_in`, byte for byte, on random values.
    #[pg_test]
    fn encoder_matches_jsonb_in_byte_for_byte() {
        use venue_images_core::jsonb::{encode, parse_json};
        let mut seed = 0x1234_5678_9abc_def0u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        fn value(next: &mut dyn FnMut() -> u64, depth: u32) -> String {
            match next() % if depth > 3 { 6 } else { 8 } {
                0 => "null".into(),
                1 => "true".into(),
                2 => format!("{}", (next() as i64) >> (next() % 60)),
                3 => format!(
                    "{}.{:0>3}",
                    (next() % 100_000) as i64 - 50_000,
                    next() % 1000
                ),
                4 => format!("{}e{}", next() % 1000, (next() % 40) as i64 - 20),
                5 => format!("\"s{}\\n\\u00e9\"", next() % 1000),
                6 => {
                    let n = next() % 40;
                    let items: Vec<String> = (0..n).map(|_| value(next, depth + 1)).collect();
                    format!("[{}]", items.join(","))
                }
                _ => {
                    let n = next() % 40;
                    let items: Vec<String> = (0..n)
                        .map(|_| format!("\"k{}\":{}", next() % 50, value(next, depth + 1)))
                        .collect();
                    format!("{{{}}}", items.join(","))
                }
            }
        }
        for _ in 0..300 {
            let json = value(&mut next, 0);
            let ours = encode(&parse_json(&json).unwrap()).unwrap();
            let theirs: Vec<u8> = unsafe {
                let cstr = std::ffi::CString::new(json.clone()).unwrap();
                let d = pgrx::direct_function_call_as_datum(
                    pg_sys::jsonb_in,
                    &[Some(pg_sys::Datum::from(cstr.as_ptr()))],
                )
                .unwrap();
                let p = pg_sys::pg_detoast_datum(d.cast_mut_ptr()) as *const u8;
                let len = crate::datum::varsize_any(p);
                std::slice::from_raw_parts(p, len).to_vec()
            };
            assert_eq!(ours, theirs, "{json}");
        }
    }
}
