-- Runs last. Who owns what, and who may call what.
--
-- Every SECURITY DEFINER function is owned by venue_image_definer: never a superuser,
-- it cannot log in and has no members. Its rights: the queue's tables here, nothing
-- else. Statements on the application's venues table run as that table's owner (see
-- owner.rs), so the application's triggers never run with the queue's rights.

ALTER FUNCTION venue_images.venue_images_enqueue_trigger()
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp;

ALTER FUNCTION venue_images.venue_image_claim(text, int, int) OWNER TO venue_image_definer;
ALTER FUNCTION venue_images.venue_image_claim_venue(text, bigint, int, int) OWNER TO venue_image_definer;
ALTER FUNCTION venue_images.venue_image_extend_lease(bigint, uuid, int) OWNER TO venue_image_definer;
ALTER FUNCTION venue_images.venue_image_release(bigint, uuid) OWNER TO venue_image_definer;
ALTER FUNCTION venue_images.venue_image_record_success(bigint, uuid, text, text, text) OWNER TO venue_image_definer;
ALTER FUNCTION venue_images.venue_image_record_failure(bigint, uuid, text, int, text, int) OWNER TO venue_image_definer;
ALTER FUNCTION venue_images.venue_image_record_results(jsonb) OWNER TO venue_image_definer;
ALTER FUNCTION venue_images.venue_image_pause_provider(text, timestamptz, text) OWNER TO venue_image_definer;
ALTER FUNCTION venue_images.venue_image_resume_provider(text) OWNER TO venue_image_definer;
ALTER FUNCTION venue_images.venue_image_set_provider_rate(text, float8) OWNER TO venue_image_definer;
ALTER FUNCTION venue_images.venue_image_enqueue_venue(bigint) OWNER TO venue_image_definer;
ALTER FUNCTION venue_images.venue_image_cleanup_scan() OWNER TO venue_image_definer;
ALTER FUNCTION venue_images.venue_image_force_retry(bigint, text) OWNER TO venue_image_definer;
ALTER FUNCTION venue_images.venue_image_force_retry_image(bigint, int) OWNER TO venue_image_definer;
ALTER FUNCTION venue_images.venue_image_overview(int) OWNER TO venue_image_definer;
ALTER FUNCTION venue_images.venue_image_purge_permanently_failed(bigint) OWNER TO venue_image_definer;
ALTER FUNCTION venue_images.venue_image_prune_attempts(interval) OWNER TO venue_image_definer;
ALTER FUNCTION venue_images.venue_image_next_due(bigint) OWNER TO venue_image_definer;
ALTER FUNCTION venue_images.venue_image_retry_report(interval) OWNER TO venue_image_definer;
ALTER FUNCTION venue_images.venue_image_recovery_timeline(interval, interval) OWNER TO venue_image_definer;
ALTER FUNCTION venue_images.venue_image_venue_images(bigint) OWNER TO venue_image_definer;
ALTER FUNCTION venue_images.venue_image_venue_summary(bigint) OWNER TO venue_image_definer;
ALTER FUNCTION venue_images.venue_image_find_venues(text, int) OWNER TO venue_image_definer;
ALTER FUNCTION venue_images.venue_images_enqueue_trigger() OWNER TO venue_image_definer;
ALTER FUNCTION venue_images.venue_image_failure_breakdown() OWNER TO venue_image_definer;
ALTER FUNCTION venue_images.venues_with_image_failures() OWNER TO venue_image_definer;
ALTER FUNCTION venue_images.venue_image_partial_failure_candidates(int, int) OWNER TO venue_image_definer;
ALTER FUNCTION venue_images.venue_image_high_priority_venues(int) OWNER TO venue_image_definer;
ALTER FUNCTION venue_images.venue_image_summary_stats() OWNER TO venue_image_definer;
ALTER FUNCTION venue_images.venue_image_queue_summary(bigint) OWNER TO venue_image_definer;
ALTER FUNCTION venue_images.venue_image_provider_overview() OWNER TO venue_image_definer;
ALTER FUNCTION venue_images.venue_image_scan_log(int) OWNER TO venue_image_definer;
ALTER FUNCTION venue_images.venue_image_venue_attempts(bigint, int) OWNER TO venue_image_definer;
ALTER FUNCTION venue_images.venue_image_scheduled_scan(timestamptz) OWNER TO venue_image_definer;
ALTER VIEW venue_images.venue_image_retry_queue OWNER TO venue_image_definer;
ALTER VIEW venue_images.venue_image_provider_status OWNER TO venue_image_definer;

GRANT SELECT, INSERT, UPDATE, DELETE ON
    venue_images.venue_image_jobs, venue_images.venue_image_attempts,
    venue_images.venue_image_providers, venue_images.venue_image_skips,
    venue_images.venue_image_scans
TO venue_image_definer;

-- Nobody may call anything by default; venue_image_role_grants() (the one list of
-- grants, venue_images_core::roles) names what is everyone's (the per-value functions:
-- pure, or reading superuser settings), and the migration sql/002_roles.sql grants the
-- three roles their rows of the same list.
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA venue_images FROM PUBLIC;
DO $grants$
DECLARE
    g record;
BEGIN
    FOR g IN SELECT r.object FROM venue_images.venue_image_role_grants() r
              WHERE r.role OPERATOR(pg_catalog.=) 'PUBLIC' AND r.privilege OPERATOR(pg_catalog.=) 'EXECUTE'
    LOOP
        EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO PUBLIC', g.object);
    END LOOP;
END
$grants$;

-- The queue runs many small statements through kept generic plans; JIT compilation
-- (per execution, when a generic plan's estimate crosses jit_above_cost) only costs time.
ALTER FUNCTION venue_images.venue_image_claim(text, int, int) SET jit = off;
-- The claim's row counts depend on its parameters (max images, provider budgets); a
-- generic plan guesses 10% of the queue and joins by scanning the whole jobs table.
ALTER FUNCTION venue_images.venue_image_claim(text, int, int) SET plan_cache_mode = force_custom_plan;
ALTER FUNCTION venue_images.venue_image_claim_venue(text, bigint, int, int) SET jit = off;
ALTER FUNCTION venue_images.venue_image_claim_venue(text, bigint, int, int) SET plan_cache_mode = force_custom_plan;
ALTER FUNCTION venue_images.venue_image_record_success(bigint, uuid, text, text, text) SET jit = off;
ALTER FUNCTION venue_images.venue_image_record_failure(bigint, uuid, text, int, text, int) SET jit = off;
ALTER FUNCTION venue_images.venue_image_record_results(jsonb) SET jit = off;
ALTER FUNCTION venue_images.venue_image_enqueue_venue(bigint) SET jit = off;
ALTER FUNCTION venue_images.venue_image_force_retry(bigint, text) SET jit = off;
ALTER FUNCTION venue_images.venue_image_force_retry_image(bigint, int) SET jit = off;
ALTER FUNCTION venue_images.venue_image_purge_permanently_failed(bigint) SET jit = off;
ALTER FUNCTION venue_images.venue_images_enqueue_trigger() SET jit = off;
