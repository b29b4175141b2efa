-- Upgrade script drafted by scripts/dev/gen-upgrade.py and reviewed by hand.
\echo Use "ALTER EXTENSION venue_images UPDATE" to load this file. \quit

-- extension/src/queue/mod.rs:23
-- The retry queue's state: logged tables owned by the extension (pg_dump keeps their
-- rows: pg_extension_config_dump), the view, and the plain-SQL operations.
--
-- Jobs identify an image by venue and md5(provider_url); they keep a redacted copy of
-- the URL for display. Provider URLs carry API keys (Google's key=), which must not be
-- copied into the queue's tables, logs or messages: the claim reads the real URL from
-- the venue's own row.

CREATE TABLE venue_image_jobs (
    job_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    venue_id bigint NOT NULL,
    url_hash bytea NOT NULL CHECK (octet_length(url_hash) = 16),
    provider_url text NOT NULL,          -- redacted
    provider text NOT NULL,
    error_type text,
    retry_count int NOT NULL DEFAULT 0,
    priority float8 NOT NULL DEFAULT 0,
    forced bool NOT NULL DEFAULT false,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    not_before timestamptz,
    leased_by text,
    leased_at timestamptz,
    lease_token uuid,
    lease_expires_at timestamptz,
    claims int NOT NULL DEFAULT 0,
    enqueued_by text NOT NULL,
    enqueued_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT venue_image_jobs_one_per_image UNIQUE (venue_id, url_hash)
);
CREATE INDEX venue_image_jobs_claim_order
    ON venue_image_jobs (provider, priority DESC, next_attempt_at, job_id);
COMMENT ON TABLE venue_image_jobs IS
    'venue_images retry queue: one row per image waiting for or under retry';

CREATE TABLE venue_image_attempts (
    attempt_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT clock_timestamp(),
    job_id bigint,
    venue_id bigint NOT NULL,
    url_hash bytea,
    provider_url text,                   -- redacted
    provider text,
    worker text,
    retried_error_type text,             -- the error the attempt tried to recover from
    retry_count int,                     -- the image's retry_count after the attempt
    outcome text NOT NULL CHECK (outcome IN (
        'uploaded', 'failed', 'permanently_failed', 'superseded', 'finalized', 'forced', 'purged')),
    error_type text,
    status_code int,
    message text,                        -- redacted
    imagekit_path text,
    detail jsonb
);
CREATE INDEX venue_image_attempts_at ON venue_image_attempts (at);
CREATE INDEX venue_image_attempts_venue ON venue_image_attempts (venue_id);
COMMENT ON TABLE venue_image_attempts IS
    'venue_images attempt log: append-only, pruned after venue_images.attempt_retention_days';

CREATE TABLE venue_image_providers (
    provider text PRIMARY KEY,
    per_second float8 CHECK (per_second IS NULL OR per_second > 0),  -- NULL: built-in default
    next_slot_at timestamptz NOT NULL DEFAULT '-infinity',
    paused_until timestamptz,
    pause_reason text,
    updated_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE venue_image_providers IS
    'venue_images per-provider pacing shared by all uploaders; provider * is the default rate and the global pause';

SELECT pg_catalog.pg_extension_config_dump('venue_image_jobs', '');
SELECT pg_catalog.pg_extension_config_dump('venue_image_attempts', '');
SELECT pg_catalog.pg_extension_config_dump('venue_image_providers', '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('@extschema@.venue_image_jobs', 'job_id')::regclass, '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('@extschema@.venue_image_attempts', 'attempt_id')::regclass, '');

-- Built-in rates (requests per second), overridable per provider in venue_image_providers.
CREATE FUNCTION venue_image_default_rate(provider text) RETURNS float8
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT CASE provider WHEN 'google_places' THEN 2 WHEN 'foursquare' THEN 5 WHEN 'here' THEN 5 ELSE 10 END::float8 $$;

CREATE VIEW venue_image_retry_queue AS
SELECT j.job_id,
       j.venue_id,
       j.provider,
       j.provider_url,
       j.error_type,
       j.retry_count,
       j.next_attempt_at,
       j.priority AS priority_score,
       CASE WHEN j.lease_expires_at > now() THEN j.leased_by END AS leased_by,
       CASE WHEN j.lease_expires_at > now() THEN j.lease_expires_at END AS lease_expires_at,
       CASE WHEN j.lease_expires_at > now() THEN 'leased'
            WHEN p.paused THEN 'paused'
            WHEN j.next_attempt_at <= now() THEN 'due'
            ELSE 'waiting' END AS state,
       j.forced,
       j.claims,
       j.enqueued_by,
       j.enqueued_at
  FROM venue_image_jobs j
  LEFT JOIN LATERAL (
       SELECT bool_or(pr.paused_until > now()) AS paused
         FROM venue_image_providers pr
        WHERE pr.provider IN (j.provider, '*')) p ON true;
COMMENT ON VIEW venue_image_retry_queue IS
    'Every image waiting for or under retry (provider URLs redacted)';

CREATE FUNCTION venue_image_extend_lease(job_id bigint, lease_token uuid, seconds int)
RETURNS bool LANGUAGE sql SECURITY DEFINER SET search_path = @extschema@, pg_catalog, pg_temp
AS $$
    UPDATE venue_image_jobs j
       SET lease_expires_at = now() + make_interval(secs => greatest(seconds, 1))
     WHERE j.job_id = venue_image_extend_lease.job_id
       AND j.lease_token = venue_image_extend_lease.lease_token
    RETURNING true
$$;
COMMENT ON FUNCTION venue_image_extend_lease(bigint, uuid, int) IS
    'Heartbeat: keeps a claimed image leased for `seconds` more; false when the token is stale';

CREATE FUNCTION venue_image_release(job_id bigint, lease_token uuid)
RETURNS bool LANGUAGE sql SECURITY DEFINER SET search_path = @extschema@, pg_catalog, pg_temp
AS $$
    UPDATE venue_image_jobs j
       SET lease_token = NULL, leased_by = NULL, leased_at = NULL, lease_expires_at = NULL, not_before = NULL,
           next_attempt_at = least(j.next_attempt_at, now())
     WHERE j.job_id = venue_image_release.job_id
       AND j.lease_token = venue_image_release.lease_token
    RETURNING true
$$;
COMMENT ON FUNCTION venue_image_release(bigint, uuid) IS
    'Gives a claimed image back unattempted (shutdown, paused provider); false when the token is stale';

CREATE FUNCTION venue_image_pause_provider(provider text, until timestamptz, reason text DEFAULT NULL)
RETURNS timestamptz LANGUAGE sql SECURITY DEFINER SET search_path = @extschema@, pg_catalog, pg_temp
AS $$
    INSERT INTO venue_image_providers AS p (provider, paused_until, pause_reason, updated_at)
    VALUES (venue_image_pause_provider.provider, until, left(reason, 500), now())
    ON CONFLICT (provider) DO UPDATE
       SET paused_until = greatest(p.paused_until, excluded.paused_until),
           pause_reason = CASE WHEN excluded.paused_until >= coalesce(p.paused_until, '-infinity')
                               THEN excluded.pause_reason ELSE p.pause_reason END,
           updated_at = now()
    RETURNING p.paused_until
$$;
COMMENT ON FUNCTION venue_image_pause_provider(text, timestamptz, text) IS
    'Stops every uploader from claiming that provider''s images until then (provider * pauses all); returns the effective end';

CREATE FUNCTION venue_image_set_provider_rate(provider text, per_second float8)
RETURNS void LANGUAGE sql SECURITY DEFINER SET search_path = @extschema@, pg_catalog, pg_temp
AS $$
    INSERT INTO venue_image_providers AS p (provider, per_second, updated_at)
    VALUES (venue_image_set_provider_rate.provider, per_second, now())
    ON CONFLICT (provider) DO UPDATE SET per_second = excluded.per_second, updated_at = now()
$$;
COMMENT ON FUNCTION venue_image_set_provider_rate(text, float8) IS
    'Sets a provider''s shared request rate (per second; Infinity for none, NULL for the built-in default)';

CREATE FUNCTION venue_image_prune_attempts(older_than interval DEFAULT NULL)
RETURNS bigint LANGUAGE sql SECURITY DEFINER SET search_path = @extschema@, pg_catalog, pg_temp
AS $$
    WITH gone AS (
        DELETE FROM venue_image_attempts
         WHERE at < now() - coalesce(older_than, make_interval(days =>
                   coalesce(nullif(current_setting('venue_images.attempt_retention_days', true), '')::int, 30)))
        RETURNING 1)
    SELECT count(*) FROM gone
$$;
COMMENT ON FUNCTION venue_image_prune_attempts(interval) IS
    'Deletes attempt-log rows older than venue_images.attempt_retention_days (or the given age)';

CREATE FUNCTION venue_image_retry_report(since interval DEFAULT '7 days')
RETURNS TABLE (provider text, error_type text, attempts bigint, recovered bigint,
               failed_again bigint, permanent_failures bigint, success_rate_pct float8,
               venues_recovered bigint, oldest_live_lease_seconds float8)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = @extschema@, pg_catalog, pg_temp
AS $$
    WITH a AS (
        SELECT * FROM venue_image_attempts
         WHERE at >= now() - since
           AND outcome IN ('uploaded', 'failed', 'permanently_failed')),
    lease AS (
        SELECT extract(epoch FROM now() - min(leased_at))::float8 AS age
          FROM venue_image_jobs WHERE lease_expires_at > now())
    SELECT a.provider, a.retried_error_type,
           count(*),
           count(*) FILTER (WHERE a.outcome = 'uploaded'),
           count(*) FILTER (WHERE a.outcome = 'failed'),
           count(*) FILTER (WHERE a.outcome = 'permanently_failed'),
           round(100.0 * count(*) FILTER (WHERE a.outcome = 'uploaded') / nullif(count(*), 0), 1)::float8,
           count(DISTINCT a.venue_id) FILTER (WHERE a.outcome = 'uploaded'),
           CASE WHEN GROUPING(a.provider, a.retried_error_type) = 3
                THEN (SELECT age FROM lease) END
      FROM a
     GROUP BY GROUPING SETS ((a.provider, a.retried_error_type), ())
     ORDER BY GROUPING(a.provider, a.retried_error_type) DESC, count(*) DESC, 1, 2
$$;
COMMENT ON FUNCTION venue_image_retry_report(interval) IS
    'Retry outcomes since then, by provider and the error type retried, with a total row (provider and error_type NULL) that also gives the age of the oldest live lease';

-- extension/src/queue/claim.rs:275
-- venue_images::queue::claim::venue_image_claim
CREATE  FUNCTION "venue_image_claim"(
	"worker" TEXT, /* & str */
	"max_images" INT, /* i32 */
	"lease_seconds" INT /* i32 */
) RETURNS TABLE (
	"job_id" bigint,  /* i64 */
	"lease_token" uuid,  /* Uuid */
	"venue_id" bigint,  /* i64 */
	"provider" TEXT,  /* String */
	"provider_url" TEXT,  /* String */
	"folder" TEXT,  /* String */
	"file_name" TEXT,  /* String */
	"attempt" INT,  /* i32 */
	"not_before" timestamp with time zone  /* TimestampWithTimeZone */
)
STRICT VOLATILE SECURITY DEFINER PARALLEL UNSAFE
SET search_path TO @extschema@, pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'venue_image_claim_wrapper';

-- extension/src/queue/claim.rs:305
-- venue_images::queue::claim::venue_image_claim_venue
CREATE  FUNCTION "venue_image_claim_venue"(
	"worker" TEXT, /* & str */
	"venue_id" bigint, /* i64 */
	"max_images" INT, /* i32 */
	"lease_seconds" INT /* i32 */
) RETURNS TABLE (
	"job_id" bigint,  /* i64 */
	"lease_token" uuid,  /* Uuid */
	"venue_id" bigint,  /* i64 */
	"provider" TEXT,  /* String */
	"provider_url" TEXT,  /* String */
	"folder" TEXT,  /* String */
	"file_name" TEXT,  /* String */
	"attempt" INT,  /* i32 */
	"not_before" timestamp with time zone  /* TimestampWithTimeZone */
)
STRICT VOLATILE SECURITY DEFINER PARALLEL UNSAFE
SET search_path TO @extschema@, pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'venue_image_claim_venue_wrapper';

-- extension/src/queue/maintenance.rs:210
-- venue_images::queue::maintenance::venue_image_cleanup_scan
CREATE  FUNCTION "venue_image_cleanup_scan"() RETURNS TABLE (
	"transient_queued" bigint,  /* i64 */
	"permanent_logged" bigint,  /* i64 */
	"ambiguous_skipped" bigint,  /* i64 */
	"finalized" bigint,  /* i64 */
	"errors" bigint,  /* i64 */
	"elapsed_ms" double precision  /* f64 */
)
STRICT VOLATILE SECURITY DEFINER PARALLEL UNSAFE
SET search_path TO @extschema@, pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'venue_image_cleanup_scan_wrapper';

-- extension/src/queue/enqueue.rs:152
-- venue_images::queue::enqueue::venue_image_enqueue_venue
CREATE  FUNCTION "venue_image_enqueue_venue"(
	"venue_id" bigint /* i64 */
) RETURNS INT /* Result < i32, ErrorReport > */
STRICT VOLATILE SECURITY DEFINER PARALLEL UNSAFE
SET search_path TO @extschema@, pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'venue_image_enqueue_venue_wrapper';

-- extension/src/queue/enqueue.rs:324
-- venue_images::queue::enqueue::venue_image_force_retry
CREATE  FUNCTION "venue_image_force_retry"(
	"venue_id" bigint, /* Option < i64 > */
	"provider_url" TEXT DEFAULT NULL /* Option < & str > */
) RETURNS INT /* Result < i32, ErrorReport > */
VOLATILE SECURITY DEFINER PARALLEL UNSAFE
SET search_path TO @extschema@, pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'venue_image_force_retry_wrapper';

-- extension/src/queue/maintenance.rs:347
-- venue_images::queue::maintenance::venue_image_purge_permanently_failed
CREATE  FUNCTION "venue_image_purge_permanently_failed"(
	"venue_id" bigint DEFAULT NULL /* Option < i64 > */
) RETURNS INT /* Result < i32, ErrorReport > */
VOLATILE SECURITY DEFINER PARALLEL UNSAFE
SET search_path TO @extschema@, pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'venue_image_purge_permanently_failed_wrapper';

-- extension/src/queue/writeback.rs:496
-- venue_images::queue::writeback::venue_image_record_failure
CREATE  FUNCTION "venue_image_record_failure"(
	"job_id" bigint, /* Option < i64 > */
	"lease_token" uuid, /* Option < Uuid > */
	"error_type" TEXT, /* Option < & str > */
	"status_code" INT, /* Option < i32 > */
	"message" TEXT, /* Option < & str > */
	"retry_after_seconds" INT DEFAULT NULL /* Option < i32 > */
) RETURNS TEXT /* Result < Option < String > , ErrorReport > */
VOLATILE SECURITY DEFINER PARALLEL UNSAFE
SET search_path TO @extschema@, pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'venue_image_record_failure_wrapper';

-- extension/src/queue/writeback.rs:613
-- venue_images::queue::writeback::venue_image_record_results
CREATE  FUNCTION "venue_image_record_results"(
	"results" jsonb /* Jsonb < '_ > */
) RETURNS TABLE (
	"job_id" bigint,  /* i64 */
	"status" TEXT  /* String */
)
STRICT VOLATILE SECURITY DEFINER PARALLEL UNSAFE
SET search_path TO @extschema@, pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'venue_image_record_results_wrapper';

-- extension/src/queue/writeback.rs:469
-- venue_images::queue::writeback::venue_image_record_success
CREATE  FUNCTION "venue_image_record_success"(
	"job_id" bigint, /* Option < i64 > */
	"lease_token" uuid, /* Option < Uuid > */
	"url" TEXT, /* Option < & str > */
	"imagekit_path" TEXT, /* Option < & str > */
	"file_id" TEXT DEFAULT NULL /* Option < & str > */
) RETURNS bool /* Result < bool, ErrorReport > */
VOLATILE SECURITY DEFINER PARALLEL UNSAFE
SET search_path TO @extschema@, pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'venue_image_record_success_wrapper';

-- extension/src/queue/maintenance.rs:241
-- venue_images::queue::maintenance::venue_images_finalize
CREATE  FUNCTION "venue_images_finalize"(
	"images" jsonb /* Jsonb < '_ > */
) RETURNS jsonb /* PgResult < JsonbResult > */
STRICT STABLE PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'venue_images_finalize_wrapper';

-- extension/src/queue/enqueue.rs:237
-- venue_images::queue::enqueue::venue_images_enqueue_trigger
CREATE FUNCTION "venue_images_enqueue_trigger"()
	RETURNS TRIGGER
	LANGUAGE c
	AS 'MODULE_PATHNAME', 'venue_images_enqueue_trigger_wrapper';

-- extension/src/queue/mod.rs:169
-- finalize

-- Only the uploader role (granted by the migration) may run the queue's privileged functions.
REVOKE EXECUTE ON FUNCTION
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
    venue_image_force_retry(bigint, text),
    venue_image_purge_permanently_failed(bigint),
    venue_image_prune_attempts(interval),
    venue_image_retry_report(interval)
FROM PUBLIC;

-- The queue runs many small statements through kept generic plans; JIT compilation
-- (per execution, when a generic plan's estimate crosses jit_above_cost) only costs time.
ALTER FUNCTION venue_image_claim(text, int, int) SET jit = off;
-- The claim's row counts depend on its parameters (max images, provider budgets); a
-- generic plan guesses 10% of the queue and joins by scanning the whole jobs table.
ALTER FUNCTION venue_image_claim(text, int, int) SET plan_cache_mode = force_custom_plan;
ALTER FUNCTION venue_image_claim_venue(text, bigint, int, int) SET jit = off;
ALTER FUNCTION venue_image_claim_venue(text, bigint, int, int) SET plan_cache_mode = force_custom_plan;
ALTER FUNCTION venue_image_record_success(bigint, uuid, text, text, text) SET jit = off;
ALTER FUNCTION venue_image_record_failure(bigint, uuid, text, int, text, int) SET jit = off;
ALTER FUNCTION venue_image_record_results(jsonb) SET jit = off;
ALTER FUNCTION venue_image_enqueue_venue(bigint) SET jit = off;
ALTER FUNCTION venue_image_force_retry(bigint, text) SET jit = off;
ALTER FUNCTION venue_image_purge_permanently_failed(bigint) SET jit = off;
ALTER FUNCTION venue_images_enqueue_trigger() SET jit = off;

-- The trigger runs as the application's role, which has no rights on the queue's tables.
ALTER FUNCTION venue_images_enqueue_trigger()
    SECURITY DEFINER SET search_path = @extschema@, pg_catalog, pg_temp;

