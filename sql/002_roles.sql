-- The three roles of venue_images, and exactly what each may call (idempotent: each run
-- first revokes what the roles had on the extension's objects, then grants this list).
-- Give people and services these roles:  GRANT venue_image_reader TO alice;
--
--   venue_image_reader    analysts: the table-level analytics, the retry report and
--                         timeline, the queue and provider views, the skip and scan logs,
--                         the per-venue inspection functions. No rights on venues itself.
--   venue_image_uploader  the sidecar: claim, leases, write-back, pause a provider on a
--                         429, enqueue one venue, the scheduled scan, when the next image
--                         is due; and everything venue_image_reader may (for `stats`).
--   venue_image_admin     people doing manual review and operations: force retry, purge,
--                         pause and resume providers, provider rates, the scan, pruning
--                         the log, enqueue; and everything venue_image_reader may.
--
-- None of them can change retry policy (the venue_images.* settings are superuser-only),
-- touch the venues table, or act as another role. The per-value functions
-- (classification, scores, names, dedupe, merge, summary, redact) are everyone's.
--
-- Like every migration: one transaction, search_path pinned, every name qualified (see
-- 001_enable_venue_images.sql). It first checks that venue_images is the extension's
-- schema and a superuser's, so no grant below can reach an object someone planted.
BEGIN;
SET LOCAL search_path = pg_catalog, pg_temp;

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_extension e
                     JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) e.extnamespace
                     JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) n.nspowner
                    WHERE e.extname OPERATOR(pg_catalog.=) 'venue_images'::pg_catalog.name
                      AND n.nspname OPERATOR(pg_catalog.=) 'venue_images'::pg_catalog.name
                      AND r.rolsuper) THEN
        RAISE EXCEPTION 'the venue_images extension is not installed in its own schema venue_images'
            USING ERRCODE = '55000',
                  HINT = 'Apply sql/001_enable_venue_images.sql first (as a superuser).';
    END IF;
END
$$;

DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['venue_image_reader', 'venue_image_uploader', 'venue_image_admin'] LOOP
        IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) r) THEN
            BEGIN
                EXECUTE pg_catalog.format('CREATE ROLE %I NOLOGIN', r);
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL;  -- roles are cluster-wide: another database's migration made it
            END;
        END IF;
    END LOOP;
    FOREACH r IN ARRAY ARRAY['venue_image_uploader', 'venue_image_admin'] LOOP
        IF NOT pg_catalog.pg_has_role(r, 'venue_image_reader', 'MEMBER') THEN
            BEGIN
                EXECUTE pg_catalog.format('GRANT venue_image_reader TO %I', r);
            EXCEPTION WHEN OTHERS THEN
                -- a concurrent migration in another database granted it first
                IF NOT pg_catalog.pg_has_role(r, 'venue_image_reader', 'MEMBER') THEN RAISE; END IF;
            END;
        END IF;
    END LOOP;
END
$$;

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA venue_images
    FROM venue_image_reader, venue_image_uploader, venue_image_admin;
REVOKE ALL ON ALL TABLES IN SCHEMA venue_images
    FROM venue_image_reader, venue_image_uploader, venue_image_admin;
GRANT USAGE ON SCHEMA venue_images TO venue_image_reader, venue_image_uploader, venue_image_admin;

GRANT EXECUTE ON FUNCTION
    venue_images.venue_image_failure_breakdown(),
    venue_images.venues_with_image_failures(),
    venue_images.venue_image_partial_failure_candidates(int, int),
    venue_images.venue_image_high_priority_venues(int),
    venue_images.venue_image_summary_stats(),
    venue_images.venue_image_overview(int),
    venue_images.venue_image_retry_report(interval),
    venue_images.venue_image_recovery_timeline(interval, interval),
    venue_images.venue_image_next_due(bigint),
    venue_images.venue_image_venue_images(bigint),
    venue_images.venue_image_find_venues(text, int),
    venue_images.venue_image_queue_summary(),
    venue_images.venue_image_provider_overview(),
    venue_images.venue_image_scan_log(int),
    venue_images.venue_image_venue_attempts(bigint, int)
TO venue_image_reader;
GRANT SELECT ON
    venue_images.venue_image_retry_queue,
    venue_images.venue_image_provider_status,
    venue_images.venue_image_attempts,
    venue_images.venue_image_skips,
    venue_images.venue_image_scans
TO venue_image_reader;

GRANT EXECUTE ON FUNCTION
    venue_images.venue_image_claim(text, int, int),
    venue_images.venue_image_claim_venue(text, bigint, int, int),
    venue_images.venue_image_extend_lease(bigint, uuid, int),
    venue_images.venue_image_release(bigint, uuid),
    venue_images.venue_image_record_success(bigint, uuid, text, text, text),
    venue_images.venue_image_record_failure(bigint, uuid, text, int, text, int),
    venue_images.venue_image_record_results(jsonb),
    venue_images.venue_image_pause_provider(text, timestamptz, text),
    venue_images.venue_image_enqueue_venue(bigint),
    venue_images.venue_image_cleanup_scan(),
    venue_images.venue_image_scheduled_scan(timestamptz)
TO venue_image_uploader;

GRANT EXECUTE ON FUNCTION
    venue_images.venue_image_force_retry(bigint, text),
    venue_images.venue_image_force_retry_image(bigint, int),
    venue_images.venue_image_purge_permanently_failed(bigint),
    venue_images.venue_image_pause_provider(text, timestamptz, text),
    venue_images.venue_image_resume_provider(text),
    venue_images.venue_image_set_provider_rate(text, float8),
    venue_images.venue_image_cleanup_scan(),
    venue_images.venue_image_scheduled_scan(timestamptz),
    venue_images.venue_image_prune_attempts(interval),
    venue_images.venue_image_enqueue_venue(bigint)
TO venue_image_admin;

COMMIT;
