-- ===========================================================================================
-- 0.3.0's changes to 0.2.0's tables. Its new tables (venue_image_skips, venue_image_scans)
-- are not written here: gen-upgrade.py creates the tables an old version lacks from the
-- install script's table section, below. Functions whose result columns changed are
-- dropped here and created again below.
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
