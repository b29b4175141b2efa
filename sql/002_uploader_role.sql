-- The uploader's database role: EXECUTE on exactly the queue functions a sidecar needs
-- (claim, leases, write-back, provider pacing, enqueue, scan, report) and nothing else:
-- no table privileges, so it cannot UPDATE venues itself. The functions are SECURITY
-- DEFINER with a pinned search_path; EXECUTE on them is revoked from PUBLIC.
-- Give a login role these rights with:  GRANT venue_image_uploader TO my_uploader_login;
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'venue_image_uploader') THEN
        CREATE ROLE venue_image_uploader NOLOGIN;
    END IF;
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO venue_image_uploader',
                   (SELECT n.nspname FROM pg_catalog.pg_extension e
                      JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
                     WHERE e.extname = 'venue_images'));
END
$$;

GRANT EXECUTE ON FUNCTION
    venue_image_claim(text, int, int),
    venue_image_claim_venue(text, bigint, int, int),
    venue_image_extend_lease(bigint, uuid, int),
    venue_image_release(bigint, uuid),
    venue_image_record_success(bigint, uuid, text, text, text),
    venue_image_record_failure(bigint, uuid, text, int, text, int),
    venue_image_record_results(jsonb),
    venue_image_pause_provider(text, timestamptz, text),
    venue_image_set_provider_rate(text, float8),
    venue_image_enqueue_venue(bigint),
    venue_image_cleanup_scan(),
    venue_image_retry_report(interval)
TO venue_image_uploader;

GRANT SELECT ON venue_image_retry_queue TO venue_image_uploader;
