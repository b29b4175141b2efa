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
ALTER FUNCTION venue_images.venue_image_find_venues(text, int) OWNER TO venue_image_definer;
ALTER FUNCTION venue_images.venue_images_enqueue_trigger() OWNER TO venue_image_definer;
ALTER FUNCTION venue_images.venue_image_failure_breakdown() OWNER TO venue_image_definer;
ALTER FUNCTION venue_images.venues_with_image_failures() OWNER TO venue_image_definer;
ALTER FUNCTION venue_images.venue_image_partial_failure_candidates(int, int) OWNER TO venue_image_definer;
ALTER FUNCTION venue_images.venue_image_high_priority_venues(int) OWNER TO venue_image_definer;
ALTER FUNCTION venue_images.venue_image_summary_stats() OWNER TO venue_image_definer;
ALTER FUNCTION venue_images.venue_image_queue_summary() OWNER TO venue_image_definer;
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

-- Nobody may call anything by default; the migration sql/002_roles.sql grants the three
-- roles what each needs. Only these per-value functions (pure, or reading settings) are
-- everyone's.
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA venue_images FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    venue_images.venue_image_classify_error(text),
    venue_images.venue_image_error_type(int),
    venue_images.venue_image_quality_score(int, int),
    venue_images.venue_image_priority_score(int, float8, bool),
    venue_images.venue_image_file_name(text, text),
    venue_images.venue_image_folder(text, bigint),
    venue_images.venue_images_dedupe(jsonb),
    venue_images.venue_images_merge(jsonb, jsonb),
    venue_images.venue_images_summary(jsonb),
    venue_images.venue_images_summary_counts(jsonb),
    venue_images.venue_images_finalize(jsonb),
    venue_images.venue_images_redact(text),
    venue_images.venue_images_redact_json(jsonb),
    venue_images.venue_images_relation(),
    venue_images.venue_image_default_rate(text),
    venue_images.venue_image_effective_rate(text, float8, float8),
    venue_images.venue_image_job_claimable(timestamptz, uuid, timestamptz),
    venue_images.venue_image_outcome_group(text),
    venue_images.venue_image_success_rate(bigint, bigint),
    venue_images.venue_images_stats(jsonb),
    -- The analytics' aggregates run as the venues table's owner (owner.rs); they only
    -- compute over the arrays they are given.
    venue_images.venue_images_stats_state(jsonb),
    venue_images.venue_images_venue_list(bigint, text, bigint, jsonb, int, bool, int, bool, bool)
TO PUBLIC;

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
