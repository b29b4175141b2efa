-- ===========================================================================================
-- Functions whose result columns change are dropped here and created again below (0.2.0
-- does not have them).
-- ===========================================================================================
DROP FUNCTION IF EXISTS venue_images.venue_image_venue_images(bigint);

-- ===========================================================================================
-- 0.4.0's changes to 0.3.0's tables: provider rates are bounded (0.001 to 1,000,000 a
-- second, or Infinity); a stored rate outside the bounds is clamped to them.
-- ===========================================================================================
ALTER TABLE venue_images.venue_image_providers DROP CONSTRAINT venue_image_providers_per_second_check;
UPDATE venue_images.venue_image_providers
   SET per_second = greatest(least(per_second, 1000000::pg_catalog.float8), 0.001::pg_catalog.float8)
 WHERE per_second OPERATOR(pg_catalog.<>) 'Infinity'::pg_catalog.float8
   AND (per_second OPERATOR(pg_catalog.<) 0.001::pg_catalog.float8
        OR per_second OPERATOR(pg_catalog.>) 1000000::pg_catalog.float8);
ALTER TABLE venue_images.venue_image_providers ADD CONSTRAINT venue_image_providers_per_second_check
    CHECK (per_second IS NULL OR per_second = 'Infinity'
           OR (per_second >= 0.001 AND per_second <= 1000000));
