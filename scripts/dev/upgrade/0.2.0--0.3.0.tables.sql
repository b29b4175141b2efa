-- ===========================================================================================
-- 0.3.0's changes to 0.2.0's tables, and its new tables. Functions whose result columns
-- changed are dropped here and created again below.
-- ===========================================================================================
DROP FUNCTION venue_images.venue_image_cleanup_scan();
DROP FUNCTION venue_images.venue_image_retry_report(interval);

ALTER TABLE venue_images.venue_image_attempts ALTER COLUMN at SET DEFAULT pg_catalog.now();
ALTER TABLE venue_images.venue_image_attempts DROP CONSTRAINT venue_image_attempts_outcome_check;
ALTER TABLE venue_images.venue_image_attempts ADD CONSTRAINT venue_image_attempts_outcome_check
    CHECK (outcome IN ('uploaded', 'failed', 'review', 'permanently_failed', 'superseded', 'finalized',
                       'forced', 'purged'));
UPDATE venue_images.venue_image_attempts SET message = pg_catalog.left(message, 500)
 WHERE pg_catalog.octet_length(message) OPERATOR(pg_catalog.>) 2000;
ALTER TABLE venue_images.venue_image_attempts ADD CONSTRAINT venue_image_attempts_message_check
    CHECK (octet_length(message) <= 2000);
UPDATE venue_images.venue_image_providers SET per_second = NULL
 WHERE per_second OPERATOR(pg_catalog.=) 'NaN'::pg_catalog.float8;

ALTER TABLE venue_images.venue_image_providers ADD COLUMN last_success_at timestamptz;

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
SELECT pg_catalog.pg_extension_config_dump('venue_images.venue_image_skips', '');
SELECT pg_catalog.pg_extension_config_dump('venue_images.venue_image_scans', '');
SELECT pg_catalog.pg_extension_config_dump(
    pg_catalog.pg_get_serial_sequence('venue_images.venue_image_scans', 'scan_id')::pg_catalog.regclass, '');
