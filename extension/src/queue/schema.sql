-- The retry queue's state: logged tables owned by the extension (pg_dump keeps their
-- rows: pg_extension_config_dump), the views, and the plain-SQL operations.
--
-- Jobs identify an image by venue and md5 of its source URL (provider_url, else url);
-- they keep a redacted copy of the URL for display. Provider URLs carry API keys
-- (Google's key=), which must not be copied into the queue's tables, logs or messages:
-- the claim reads the real URL from the venue's own row.
--
-- Every definer function runs with search_path = pg_catalog, pg_temp and names our
-- objects with their schema, so nothing any other role creates can be resolved instead.

-- BEGIN TABLES (a fresh install creates these; upgrade scripts alter them)
CREATE TABLE venue_images.venue_image_jobs (
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
    ON venue_images.venue_image_jobs (provider, priority DESC, next_attempt_at, job_id);
COMMENT ON TABLE venue_images.venue_image_jobs IS
    'venue_images retry queue: one row per image waiting for or under retry';

CREATE TABLE venue_images.venue_image_attempts (
    attempt_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT now(),
    job_id bigint,
    venue_id bigint NOT NULL,
    url_hash bytea,
    provider_url text,                   -- redacted
    provider text,
    worker text,
    retried_error_type text,             -- the error the attempt tried to recover from
    retry_count int,                     -- the image's retry_count after the attempt
    outcome text NOT NULL CHECK (outcome IN (
        'uploaded', 'failed', 'review', 'permanently_failed', 'superseded', 'finalized',
        'forced', 'purged')),
    error_type text,
    status_code int,
    message text CHECK (octet_length(message) <= 2000),  -- redacted
    imagekit_path text,
    detail jsonb                         -- redacted
);
CREATE INDEX venue_image_attempts_at ON venue_images.venue_image_attempts (at);
CREATE INDEX venue_image_attempts_venue ON venue_images.venue_image_attempts (venue_id);
COMMENT ON TABLE venue_images.venue_image_attempts IS
    'venue_images attempt log: append-only, pruned after venue_images.attempt_retention_days';

CREATE TABLE venue_images.venue_image_providers (
    provider text PRIMARY KEY,
    -- NULL: the built-in default; else 0.001 to 1,000,000 requests a second, or Infinity (no limit)
    per_second float8 CONSTRAINT venue_image_providers_per_second_check
        CHECK (per_second IS NULL OR per_second = 'Infinity'
               OR (per_second >= 0.001 AND per_second <= 1000000)),
    next_slot_at timestamptz NOT NULL DEFAULT '-infinity',
    paused_until timestamptz,
    pause_reason text,
    updated_at timestamptz NOT NULL DEFAULT now(),
    last_success_at timestamptz          -- the last upload recorded for this provider
);
COMMENT ON TABLE venue_images.venue_image_providers IS
    'venue_images per-provider pacing shared by all uploaders; provider * is the default rate and the global pause';

CREATE TABLE venue_images.venue_image_skips (
    venue_id bigint NOT NULL,
    element_index int NOT NULL,
    reason text NOT NULL,
    seen_by text NOT NULL,
    first_seen_at timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (venue_id, element_index)
);
COMMENT ON TABLE venue_images.venue_image_skips IS
    'venue_images: image elements the queue could not read (venue, index in the array, reason); left untouched';

CREATE TABLE venue_images.venue_image_scans (
    scan_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    started_at timestamptz NOT NULL,
    finished_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    run_by text NOT NULL,
    transient_queued bigint NOT NULL,
    permanent_logged bigint NOT NULL,
    ambiguous_skipped bigint NOT NULL,
    finalized bigint NOT NULL,
    errors bigint NOT NULL,
    skipped_elements bigint NOT NULL,
    images_queued bigint NOT NULL,
    elapsed_ms float8 NOT NULL
);
CREATE INDEX venue_image_scans_started ON venue_images.venue_image_scans (started_at);
COMMENT ON TABLE venue_images.venue_image_scans IS
    'venue_images: one row per cleanup scan, with its counts';

SELECT pg_catalog.pg_extension_config_dump('venue_images.venue_image_jobs', '');
SELECT pg_catalog.pg_extension_config_dump('venue_images.venue_image_attempts', '');
SELECT pg_catalog.pg_extension_config_dump('venue_images.venue_image_providers', '');
SELECT pg_catalog.pg_extension_config_dump('venue_images.venue_image_skips', '');
SELECT pg_catalog.pg_extension_config_dump('venue_images.venue_image_scans', '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('venue_images.venue_image_jobs', 'job_id')::regclass, '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('venue_images.venue_image_attempts', 'attempt_id')::regclass, '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('venue_images.venue_image_scans', 'scan_id')::regclass, '');
-- END TABLES

-- Every SQL text below names its functions, operators and types with their schema, so
-- that it means the same whatever search_path is in effect (the definer functions also
-- pin theirs, and owner code run inside them cannot change it: see owner.rs). Operators
-- written OPERATOR(pg_catalog.op) all share one precedence and associate to the left:
-- mixed expressions are parenthesised.

-- Built-in rates (requests per second), overridable per provider in venue_image_providers.
CREATE OR REPLACE FUNCTION venue_images.venue_image_default_rate(provider text) RETURNS float8
LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp
AS $$ SELECT CASE WHEN provider OPERATOR(pg_catalog.=) 'google_places' THEN 2
                  WHEN provider OPERATOR(pg_catalog.=) 'foursquare' THEN 5
                  WHEN provider OPERATOR(pg_catalog.=) 'here' THEN 5
                  ELSE 10 END::pg_catalog.float8 $$;

-- The one rule for a provider's effective rate: its own, else the default row's
-- (provider *), else the built-in one; always within the bounds the table enforces.
CREATE OR REPLACE FUNCTION venue_images.venue_image_effective_rate(
    provider text, per_second float8, default_per_second float8) RETURNS float8
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT CASE WHEN r OPERATOR(pg_catalog.=) 'Infinity'::pg_catalog.float8 THEN r
                  ELSE greatest(least(r, 1000000::pg_catalog.float8), 0.001::pg_catalog.float8) END
        FROM (SELECT coalesce(per_second, default_per_second,
                              venue_images.venue_image_default_rate(provider)) AS r) s $$;
COMMENT ON FUNCTION venue_images.venue_image_effective_rate(text, float8, float8) IS
    'A provider''s rate: its own per_second, else the default row''s (provider *), else the built-in one; within 0.001-1000000 or Infinity';

-- The one rule for a job that may be claimed: due, and not under a live lease. The claim
-- (its candidate scan and its re-check inside the UPDATE), the queue view's due state
-- and venue_image_next_due use it; it is inlined into each.
CREATE OR REPLACE FUNCTION venue_images.venue_image_job_claimable(
    next_attempt_at timestamptz, lease_token uuid, lease_expires_at timestamptz) RETURNS bool
LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT next_attempt_at OPERATOR(pg_catalog.<=) pg_catalog.now()
             AND (lease_token IS NULL OR lease_expires_at OPERATOR(pg_catalog.<) pg_catalog.now()) $$;
COMMENT ON FUNCTION venue_images.venue_image_job_claimable(timestamptz, uuid, timestamptz) IS
    'Whether a queue job may be claimed now: due, and not under a live lease';

-- The queue view: each job with its state (leased, paused, due or waiting).
CREATE OR REPLACE VIEW venue_images.venue_image_retry_queue AS
SELECT j.job_id,
       j.venue_id,
       j.provider,
       j.provider_url,
       j.error_type,
       j.retry_count,
       j.next_attempt_at,
       j.priority AS priority_score,
       CASE WHEN j.lease_expires_at OPERATOR(pg_catalog.>) pg_catalog.now() THEN j.leased_by END AS leased_by,
       CASE WHEN j.lease_expires_at OPERATOR(pg_catalog.>) pg_catalog.now() THEN j.lease_expires_at END AS lease_expires_at,
       CASE WHEN j.lease_expires_at OPERATOR(pg_catalog.>) pg_catalog.now() THEN 'leased'
            WHEN p.paused THEN 'paused'
            WHEN venue_images.venue_image_job_claimable(j.next_attempt_at, j.lease_token, j.lease_expires_at)
            THEN 'due'
            ELSE 'waiting' END AS state,
       j.forced,
       j.claims,
       j.enqueued_by,
       j.enqueued_at
  FROM venue_images.venue_image_jobs j
  LEFT JOIN LATERAL (
       SELECT pg_catalog.bool_or(pr.paused_until OPERATOR(pg_catalog.>) pg_catalog.now()) AS paused
         FROM venue_images.venue_image_providers pr
        WHERE pr.provider OPERATOR(pg_catalog.=) j.provider OR pr.provider OPERATOR(pg_catalog.=) '*') p ON true;
COMMENT ON VIEW venue_images.venue_image_retry_queue IS
    'Every image waiting for or under retry (provider URLs redacted)';

-- Providers as uploaders see them: the effective rate, pauses, and the last success.
CREATE OR REPLACE VIEW venue_images.venue_image_provider_status AS
SELECT p.provider,
       venue_images.venue_image_effective_rate(
           p.provider, p.per_second,
           (SELECT d.per_second FROM venue_images.venue_image_providers d
             WHERE d.provider OPERATOR(pg_catalog.=) '*')) AS per_second,
       p.per_second IS NULL AS default_rate,
       CASE WHEN p.paused_until OPERATOR(pg_catalog.>) pg_catalog.now() THEN p.paused_until END AS paused_until,
       CASE WHEN p.paused_until OPERATOR(pg_catalog.>) pg_catalog.now() THEN p.pause_reason END AS pause_reason,
       p.last_success_at,
       p.updated_at
  FROM venue_images.venue_image_providers p;
COMMENT ON VIEW venue_images.venue_image_provider_status IS
    'Each provider''s shared rate, pause (until when and why) and last recorded upload; provider * is the default and the global pause';

CREATE OR REPLACE FUNCTION venue_images.venue_image_extend_lease(job_id bigint, lease_token uuid, seconds int)
RETURNS bool LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    WITH u AS (
        UPDATE venue_images.venue_image_jobs j
           SET lease_expires_at = pg_catalog.now() OPERATOR(pg_catalog.+)
                   pg_catalog.make_interval(secs => least(greatest(coalesce(seconds, 1), 1), 86400))
         WHERE j.job_id OPERATOR(pg_catalog.=) venue_image_extend_lease.job_id
           AND j.lease_token OPERATOR(pg_catalog.=) venue_image_extend_lease.lease_token
        RETURNING 1)
    SELECT pg_catalog.count(*) OPERATOR(pg_catalog.>) 0 FROM u
$$;
COMMENT ON FUNCTION venue_images.venue_image_extend_lease(bigint, uuid, int) IS
    'Heartbeat: keeps a claimed image leased for `seconds` more (clamped to 1-86400); false when the token is stale';

CREATE OR REPLACE FUNCTION venue_images.venue_image_release(job_id bigint, lease_token uuid)
RETURNS bool LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    WITH u AS (
        UPDATE venue_images.venue_image_jobs j
           SET lease_token = NULL, leased_by = NULL, leased_at = NULL, lease_expires_at = NULL, not_before = NULL,
               next_attempt_at = least(j.next_attempt_at, pg_catalog.now())
         WHERE j.job_id OPERATOR(pg_catalog.=) venue_image_release.job_id
           AND j.lease_token OPERATOR(pg_catalog.=) venue_image_release.lease_token
        RETURNING 1),
    n AS (SELECT pg_catalog.pg_notify('venue_image_jobs', '') FROM u LIMIT 1)
    SELECT (SELECT pg_catalog.count(*) FROM u) OPERATOR(pg_catalog.>) 0
       AND (SELECT pg_catalog.count(*) OPERATOR(pg_catalog.>=) 0 FROM n)
$$;
COMMENT ON FUNCTION venue_images.venue_image_release(bigint, uuid) IS
    'Gives a claimed image back unattempted (shutdown, paused provider, outage): due again at once, no attempt counted; false when the token is stale';

CREATE OR REPLACE FUNCTION venue_images.venue_image_pause_provider(provider text, until timestamptz, reason text DEFAULT NULL)
RETURNS timestamptz LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    effective timestamptz;
BEGIN
    IF venue_image_pause_provider.provider IS NULL
       OR pg_catalog.btrim(venue_image_pause_provider.provider) OPERATOR(pg_catalog.=) ''
       OR pg_catalog.length(venue_image_pause_provider.provider) OPERATOR(pg_catalog.>) 100 THEN
        RAISE EXCEPTION 'provider must be a name of 1-100 characters (* pauses every provider)' USING ERRCODE = '22023';
    END IF;
    IF venue_image_pause_provider.until IS NULL
       OR venue_image_pause_provider.until OPERATOR(pg_catalog.=) 'infinity'::pg_catalog.timestamptz THEN
        RAISE EXCEPTION 'until must be a finite time' USING ERRCODE = '22023';
    END IF;
    INSERT INTO venue_images.venue_image_providers AS p (provider, paused_until, pause_reason, updated_at)
    VALUES (venue_image_pause_provider.provider, venue_image_pause_provider.until,
            pg_catalog.left(venue_images.venue_images_redact(venue_image_pause_provider.reason), 500),
            pg_catalog.now())
    ON CONFLICT (provider) DO UPDATE
       SET paused_until = greatest(p.paused_until, excluded.paused_until),
           pause_reason = CASE WHEN excluded.paused_until OPERATOR(pg_catalog.>=)
                                    coalesce(p.paused_until, '-infinity'::pg_catalog.timestamptz)
                               THEN excluded.pause_reason ELSE p.pause_reason END,
           updated_at = pg_catalog.now()
    RETURNING p.paused_until INTO effective;
    RETURN effective;
END
$$;
COMMENT ON FUNCTION venue_images.venue_image_pause_provider(text, timestamptz, text) IS
    'Stops every uploader from claiming that provider''s images until then (provider * pauses all); a pause is never shortened here; returns the effective end';

CREATE OR REPLACE FUNCTION venue_images.venue_image_resume_provider(provider text)
RETURNS bool LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    WITH u AS (
        UPDATE venue_images.venue_image_providers p
           SET paused_until = NULL, pause_reason = NULL, updated_at = pg_catalog.now()
         WHERE p.provider OPERATOR(pg_catalog.=) venue_image_resume_provider.provider
           AND p.paused_until OPERATOR(pg_catalog.>) pg_catalog.now()
        RETURNING 1),
    n AS (SELECT pg_catalog.pg_notify('venue_image_jobs', '') FROM u LIMIT 1)
    SELECT (SELECT pg_catalog.count(*) FROM u) OPERATOR(pg_catalog.>) 0
       AND (SELECT pg_catalog.count(*) OPERATOR(pg_catalog.>=) 0 FROM n)
$$;
COMMENT ON FUNCTION venue_images.venue_image_resume_provider(text) IS
    'Ends a provider''s pause now (provider * ends the global pause); false when it was not paused';

CREATE OR REPLACE FUNCTION venue_images.venue_image_set_provider_rate(provider text, per_second float8)
RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
BEGIN
    IF venue_image_set_provider_rate.provider IS NULL
       OR pg_catalog.btrim(venue_image_set_provider_rate.provider) OPERATOR(pg_catalog.=) ''
       OR pg_catalog.length(venue_image_set_provider_rate.provider) OPERATOR(pg_catalog.>) 100 THEN
        RAISE EXCEPTION 'provider must be a name of 1-100 characters (* sets the default)' USING ERRCODE = '22023';
    END IF;
    IF venue_image_set_provider_rate.per_second IS NOT NULL
       AND venue_image_set_provider_rate.per_second OPERATOR(pg_catalog.<>) 'Infinity'::pg_catalog.float8
       AND NOT (venue_image_set_provider_rate.per_second OPERATOR(pg_catalog.>=) 0.001::pg_catalog.float8
                AND venue_image_set_provider_rate.per_second OPERATOR(pg_catalog.<=) 1000000::pg_catalog.float8) THEN
        RAISE EXCEPTION 'per_second must be between 0.001 and 1000000 requests a second (Infinity for no limit, NULL for the built-in default), got %',
              venue_image_set_provider_rate.per_second
            USING ERRCODE = '22023';
    END IF;
    INSERT INTO venue_images.venue_image_providers AS p (provider, per_second, updated_at)
    VALUES (venue_image_set_provider_rate.provider, venue_image_set_provider_rate.per_second, pg_catalog.now())
    ON CONFLICT (provider) DO UPDATE SET per_second = excluded.per_second, updated_at = pg_catalog.now();
END
$$;
COMMENT ON FUNCTION venue_images.venue_image_set_provider_rate(text, float8) IS
    'Sets a provider''s shared request rate (0.001 to 1000000 per second; Infinity for none, NULL for the built-in default); 22023 otherwise';

-- The retention in days: venue_images.attempt_retention_days (a superuser setting), or 30.
CREATE OR REPLACE FUNCTION venue_images.venue_image_prune_attempts(older_than interval DEFAULT NULL)
RETURNS bigint LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    WITH horizon AS (
        SELECT pg_catalog.now() OPERATOR(pg_catalog.-) coalesce(older_than, pg_catalog.make_interval(days =>
                   coalesce((SELECT CASE WHEN v.d OPERATOR(pg_catalog.<>) '' THEN v.d::int END
                               FROM (SELECT pg_catalog.current_setting('venue_images.attempt_retention_days', true) AS d) v),
                            30))) AS t),
    gone AS (
        DELETE FROM venue_images.venue_image_attempts
         WHERE at OPERATOR(pg_catalog.<) (SELECT h.t FROM horizon h)
        RETURNING 1),
    scans AS (
        DELETE FROM venue_images.venue_image_scans
         WHERE started_at OPERATOR(pg_catalog.<) (SELECT h.t FROM horizon h)
        RETURNING 1)
    SELECT pg_catalog.count(*) FROM gone
$$;
COMMENT ON FUNCTION venue_images.venue_image_prune_attempts(interval) IS
    'Deletes attempt-log (and scan-log) rows older than venue_images.attempt_retention_days (or the given age); returns the attempt rows deleted';

CREATE OR REPLACE FUNCTION venue_images.venue_image_next_due(venue_id bigint DEFAULT NULL)
RETURNS timestamptz LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT pg_catalog.min(greatest(
               j.next_attempt_at,
               CASE WHEN j.lease_expires_at OPERATOR(pg_catalog.>) pg_catalog.now() THEN j.lease_expires_at END,
               (SELECT pg_catalog.max(p.paused_until) FROM venue_images.venue_image_providers p
                 WHERE (p.provider OPERATOR(pg_catalog.=) j.provider OR p.provider OPERATOR(pg_catalog.=) '*')
                   AND p.paused_until OPERATOR(pg_catalog.>) pg_catalog.now())))
      FROM venue_images.venue_image_jobs j
     WHERE venue_image_next_due.venue_id IS NULL OR j.venue_id OPERATOR(pg_catalog.=) venue_image_next_due.venue_id
$$;
COMMENT ON FUNCTION venue_images.venue_image_next_due(bigint) IS
    'When the next image becomes claimable (backoff, lease or pause ending; now or earlier when one is due); NULL when nothing is queued. Uploaders sleep until then.';

-- The report's figures come from the attempt log, each row in the group that
-- venue_images.venue_image_outcome_group (venue_images_core::retry::AttemptOutcome)
-- gives its outcome: recovered, failed_again, permanent_failure (an attempt each) or
-- finalized (the scan's); other outcomes (superseded, forced, purged) are not counted.
CREATE OR REPLACE FUNCTION venue_images.venue_image_retry_report(since interval DEFAULT '7 days')
RETURNS TABLE (provider text, error_type text, attempts bigint, recovered bigint,
               failed_again bigint, permanent_failures bigint, success_rate_pct float8,
               venues_recovered bigint, api_calls_saved bigint, oldest_live_lease_seconds float8)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    WITH a AS (
        SELECT x.provider, x.retried_error_type, x.venue_id, x.retry_count, g.grp,
               g.grp OPERATOR(pg_catalog.<>) 'finalized' AS attempt
          FROM venue_images.venue_image_attempts x
         CROSS JOIN LATERAL (SELECT venue_images.venue_image_outcome_group(x.outcome) AS grp) g
         WHERE x.at OPERATOR(pg_catalog.>=) (pg_catalog.now() OPERATOR(pg_catalog.-) since)
           AND g.grp IS NOT NULL),
    lease AS (
        SELECT extract(epoch FROM pg_catalog.now() OPERATOR(pg_catalog.-) pg_catalog.min(j.leased_at))::pg_catalog.float8 AS age
          FROM venue_images.venue_image_jobs j
         WHERE j.lease_expires_at OPERATOR(pg_catalog.>) pg_catalog.now())
    SELECT a.provider, a.retried_error_type,
           pg_catalog.count(*) FILTER (WHERE a.attempt),
           pg_catalog.count(*) FILTER (WHERE a.grp OPERATOR(pg_catalog.=) 'recovered'),
           pg_catalog.count(*) FILTER (WHERE a.grp OPERATOR(pg_catalog.=) 'failed_again'),
           pg_catalog.count(*) FILTER (WHERE a.grp OPERATOR(pg_catalog.=) 'permanent_failure'
                                          OR a.grp OPERATOR(pg_catalog.=) 'finalized'),
           venue_images.venue_image_success_rate(
               pg_catalog.count(*) FILTER (WHERE a.grp OPERATOR(pg_catalog.=) 'recovered'),
               pg_catalog.count(*) FILTER (WHERE a.attempt)),
           pg_catalog.count(DISTINCT a.venue_id) FILTER (WHERE a.grp OPERATOR(pg_catalog.=) 'recovered'),
           pg_catalog.count(DISTINCT (a.venue_id, a.provider, a.retry_count)) FILTER (WHERE a.attempt),
           CASE WHEN GROUPING(a.provider, a.retried_error_type) OPERATOR(pg_catalog.=) 3
                THEN (SELECT l.age FROM lease l) END
      FROM a
     GROUP BY GROUPING SETS ((a.provider, a.retried_error_type), ())
     ORDER BY GROUPING(a.provider, a.retried_error_type) DESC, pg_catalog.count(*) DESC, 1, 2
$$;
COMMENT ON FUNCTION venue_images.venue_image_retry_report(interval) IS
    'Retry outcomes since then, by provider and the error type retried, with a total row (provider and error_type NULL) that also gives the age of the oldest live lease. See docs/sql-api.md for each figure.';

-- Recovered attempts as a percentage of attempts, one decimal; NULL without attempts.
CREATE OR REPLACE FUNCTION venue_images.venue_image_success_rate(recovered bigint, attempts bigint)
RETURNS float8 LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT CASE WHEN attempts OPERATOR(pg_catalog.>) 0
                  THEN pg_catalog.round(100.0 OPERATOR(pg_catalog.*) recovered
                                        OPERATOR(pg_catalog./) attempts, 1)::pg_catalog.float8 END $$;

-- One row per bucket of the window, empty buckets included (as zeros), so charts need no
-- knowledge of how buckets are aligned: buckets start on multiples of the bucket length
-- since 2000-01-01 UTC.
CREATE OR REPLACE FUNCTION venue_images.venue_image_recovery_timeline(since interval DEFAULT '7 days', bucket interval DEFAULT '1 day')
RETURNS TABLE (bucket_start timestamptz, attempts bigint, recovered bigint, failed_again bigint,
               permanent_failures bigint, success_rate_pct float8, api_calls_saved bigint)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    WITH w AS (
        SELECT greatest(bucket, '1 minute'::interval) AS step,
               pg_catalog.now() OPERATOR(pg_catalog.-) since AS start),
    b AS (
        SELECT pg_catalog.generate_series(
                   pg_catalog.date_bin(w.step, w.start, '2000-01-01 00:00:00+00'::pg_catalog.timestamptz),
                   pg_catalog.now(), w.step) AS b
          FROM w),
    a AS (
        SELECT pg_catalog.date_bin(w.step, x.at, '2000-01-01 00:00:00+00'::pg_catalog.timestamptz) AS b,
               x.venue_id, x.provider, x.retry_count, g.grp,
               g.grp OPERATOR(pg_catalog.<>) 'finalized' AS attempt
          FROM w, venue_images.venue_image_attempts x
         CROSS JOIN LATERAL (SELECT venue_images.venue_image_outcome_group(x.outcome) AS grp) g
         WHERE x.at OPERATOR(pg_catalog.>=) w.start
           AND g.grp IS NOT NULL)
    SELECT b.b,
           pg_catalog.count(a.b) FILTER (WHERE a.attempt),
           pg_catalog.count(a.b) FILTER (WHERE a.grp OPERATOR(pg_catalog.=) 'recovered'),
           pg_catalog.count(a.b) FILTER (WHERE a.grp OPERATOR(pg_catalog.=) 'failed_again'),
           pg_catalog.count(a.b) FILTER (WHERE a.grp OPERATOR(pg_catalog.=) 'permanent_failure'
                                            OR a.grp OPERATOR(pg_catalog.=) 'finalized'),
           venue_images.venue_image_success_rate(
               pg_catalog.count(a.b) FILTER (WHERE a.grp OPERATOR(pg_catalog.=) 'recovered'),
               pg_catalog.count(a.b) FILTER (WHERE a.attempt)),
           pg_catalog.count(DISTINCT (a.venue_id, a.provider, a.retry_count)) FILTER (WHERE a.attempt)
      FROM b LEFT JOIN a ON a.b OPERATOR(pg_catalog.=) b.b
     GROUP BY b.b
     ORDER BY b.b
$$;
COMMENT ON FUNCTION venue_images.venue_image_recovery_timeline(interval, interval) IS
    'The retry report''s figures per time bucket of the window (for charts; empty buckets included): attempts, recovered, failed again, permanent failures, success rate, API calls saved';

-- ===========================================================================================
-- What dashboards and operators read (venue_image_reader): counts, states and flags computed
-- here, once, so that clients render them and decide nothing.
-- ===========================================================================================

-- Jobs by provider and state, a total row (provider NULL) first; one venue's only when
-- venue_id is given.
CREATE OR REPLACE FUNCTION venue_images.venue_image_queue_summary(venue_id bigint DEFAULT NULL)
RETURNS TABLE (provider text, due bigint, waiting bigint, leased bigint, paused bigint, total bigint)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT q.provider,
           pg_catalog.count(*) FILTER (WHERE q.state OPERATOR(pg_catalog.=) 'due'),
           pg_catalog.count(*) FILTER (WHERE q.state OPERATOR(pg_catalog.=) 'waiting'),
           pg_catalog.count(*) FILTER (WHERE q.state OPERATOR(pg_catalog.=) 'leased'),
           pg_catalog.count(*) FILTER (WHERE q.state OPERATOR(pg_catalog.=) 'paused'),
           pg_catalog.count(*)
      FROM venue_images.venue_image_retry_queue q
     WHERE venue_image_queue_summary.venue_id IS NULL
        OR q.venue_id OPERATOR(pg_catalog.=) venue_image_queue_summary.venue_id
     GROUP BY GROUPING SETS ((q.provider), ())
     ORDER BY GROUPING(q.provider) DESC, q.provider
$$;
COMMENT ON FUNCTION venue_images.venue_image_queue_summary(bigint) IS
    'Images in the retry queue by provider and state (due, waiting, leased, paused), with a total row (provider NULL) first; only one venue''s when venue_id is given';

-- Every provider that has settings or queued images, and the default (*), with its
-- effective rate, pause and last success.
CREATE OR REPLACE FUNCTION venue_images.venue_image_provider_overview()
RETURNS TABLE (provider text, per_second float8, default_rate bool, paused_until timestamptz,
               pause_reason text, last_success_at timestamptz, updated_at timestamptz, queued bigint)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    WITH names AS (
        SELECT p.provider FROM venue_images.venue_image_providers p
        UNION SELECT j.provider FROM venue_images.venue_image_jobs j
        UNION SELECT '*'),
    star AS (
        SELECT d.per_second FROM venue_images.venue_image_providers d
         WHERE d.provider OPERATOR(pg_catalog.=) '*')
    SELECT n.provider,
           venue_images.venue_image_effective_rate(
               n.provider, p.per_second,
               CASE WHEN n.provider OPERATOR(pg_catalog.<>) '*' THEN (SELECT s.per_second FROM star s) END),
           p.per_second IS NULL,
           CASE WHEN p.paused_until OPERATOR(pg_catalog.>) pg_catalog.now() THEN p.paused_until END,
           CASE WHEN p.paused_until OPERATOR(pg_catalog.>) pg_catalog.now() THEN p.pause_reason END,
           p.last_success_at,
           p.updated_at,
           (SELECT pg_catalog.count(*) FROM venue_images.venue_image_jobs j
             WHERE j.provider OPERATOR(pg_catalog.=) n.provider)
      FROM names n
      LEFT JOIN venue_images.venue_image_providers p ON p.provider OPERATOR(pg_catalog.=) n.provider
     ORDER BY n.provider OPERATOR(pg_catalog.=) '*' DESC, n.provider
$$;
COMMENT ON FUNCTION venue_images.venue_image_provider_overview() IS
    'Every provider with settings or queued images, and * (the default rate and the global pause): effective rate, whether it is a default, pause, last upload, queued images';

-- The latest cleanup scans, newest first.
CREATE OR REPLACE FUNCTION venue_images.venue_image_scan_log(max_rows int DEFAULT 1)
RETURNS TABLE (scan_id bigint, started_at timestamptz, finished_at timestamptz, run_by text,
               transient_queued bigint, permanent_logged bigint, ambiguous_skipped bigint,
               finalized bigint, errors bigint, skipped_elements bigint, images_queued bigint,
               elapsed_ms float8)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT s.scan_id, s.started_at, s.finished_at, s.run_by, s.transient_queued, s.permanent_logged,
           s.ambiguous_skipped, s.finalized, s.errors, s.skipped_elements, s.images_queued, s.elapsed_ms
      FROM venue_images.venue_image_scans s
     ORDER BY s.started_at DESC, s.scan_id DESC
     LIMIT least(greatest(coalesce(max_rows, 1), 0), 1000)
$$;
COMMENT ON FUNCTION venue_images.venue_image_scan_log(int) IS
    'The latest cleanup scans (at most 1000), newest first, with their counts';

-- One venue's attempt log, newest first (URLs and messages were redacted when written).
CREATE OR REPLACE FUNCTION venue_images.venue_image_venue_attempts(venue_id bigint, max_rows int DEFAULT 50)
RETURNS TABLE (attempt_id bigint, at timestamptz, outcome text, provider text, provider_url text,
               retried_error_type text, error_type text, status_code int, message text,
               retry_count int, worker text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT a.attempt_id, a.at, a.outcome, a.provider, a.provider_url, a.retried_error_type,
           a.error_type, a.status_code, a.message, a.retry_count, a.worker
      FROM venue_images.venue_image_attempts a
     WHERE a.venue_id OPERATOR(pg_catalog.=) venue_image_venue_attempts.venue_id
     ORDER BY a.at DESC, a.attempt_id DESC
     LIMIT least(greatest(coalesce(max_rows, 50), 0), 1000)
$$;
COMMENT ON FUNCTION venue_images.venue_image_venue_attempts(bigint, int) IS
    'One venue''s attempt log (at most 1000 rows), newest first';

-- A scheduled scan run by at most one of many uploaders per firing, without session
-- state (PgBouncer in transaction mode): the first caller whose transaction takes the
-- transaction-level lock, when no scan has started since `since`, runs the scan; every
-- other caller gets no row. The lock ends with the transaction.
CREATE OR REPLACE FUNCTION venue_images.venue_image_scheduled_scan(since timestamptz)
RETURNS TABLE (transient_queued bigint, permanent_logged bigint, ambiguous_skipped bigint,
               finalized bigint, errors bigint, elapsed_ms float8, skipped_elements bigint,
               images_queued bigint)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF since IS NULL THEN
        RAISE EXCEPTION 'since must not be NULL' USING ERRCODE = '22004';
    END IF;
    -- The key: hashtext('venue_images.scheduled_scan'), written out.
    IF NOT pg_catalog.pg_try_advisory_xact_lock(974064484) THEN
        RETURN;
    END IF;
    IF EXISTS (SELECT FROM venue_images.venue_image_scans s
                WHERE s.started_at OPERATOR(pg_catalog.>=) since) THEN
        RETURN;
    END IF;
    RETURN QUERY SELECT * FROM venue_images.venue_image_cleanup_scan();
END
$$;
COMMENT ON FUNCTION venue_images.venue_image_scheduled_scan(timestamptz) IS
    'The cleanup scan for one firing of a schedule shared by several uploaders: runs it unless another caller holds the scan lock now or a scan started since then (no row then)';
