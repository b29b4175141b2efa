-- ===========================================================================================
-- 0.2.0 -> 0.3.0, part 1 (hand-written): the extension moves into its own schema.
--
-- 0.2.0 lived in the schema it was created in (normally public, which the database owner
-- controls): its SECURITY DEFINER functions could be made to resolve objects that role
-- created. 0.3.0 lives in venue_images, owned by a superuser, with nobody else allowed to
-- create objects there. Every member object is moved with ALTER ... SET SCHEMA (same OIDs,
-- so the application's trigger and any dependent views keep working; every queued job,
-- attempt and provider setting stays), then the catalog records the new schema.
-- ===========================================================================================

DO $move$
DECLARE
    ext oid := (SELECT oid FROM pg_catalog.pg_extension WHERE extname = 'venue_images');
    old_nsp oid := (SELECT extnamespace FROM pg_catalog.pg_extension WHERE extname = 'venue_images');
    new_nsp oid;
    obj record;
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_namespace WHERE nspname = 'venue_images') THEN
        CREATE SCHEMA venue_images;
        -- A schema created by an extension script would become a member; a fresh install's
        -- schema is not (CREATE EXTENSION makes it from the control file): the same here.
        ALTER EXTENSION venue_images DROP SCHEMA venue_images;
    END IF;
    new_nsp := 'venue_images'::regnamespace;
    IF old_nsp = new_nsp THEN
        RETURN;
    END IF;
    FOR obj IN
        SELECT o.type, o.identity
          FROM pg_catalog.pg_depend d,
               LATERAL pg_catalog.pg_identify_object(d.classid, d.objid, 0) o
         WHERE d.refclassid = 'pg_catalog.pg_extension'::regclass AND d.refobjid = ext AND d.deptype = 'e'
           AND o.type IN ('table', 'view', 'function', 'aggregate')
         ORDER BY o.type DESC, o.identity
    LOOP
        EXECUTE pg_catalog.format('ALTER %s %s SET SCHEMA venue_images', obj.type, obj.identity);
    END LOOP;
    UPDATE pg_catalog.pg_extension SET extnamespace = new_nsp WHERE oid = ext;
    UPDATE pg_catalog.pg_depend SET refobjid = new_nsp
     WHERE classid = 'pg_catalog.pg_extension'::regclass AND objid = ext
       AND refclassid = 'pg_catalog.pg_namespace'::regclass AND refobjid = old_nsp;
END
$move$;

-- The rest of this script creates unqualified objects (pgrx's CREATE FUNCTIONs): here.
SELECT pg_catalog.set_config('search_path', 'venue_images, pg_catalog', true);

-- Whatever was granted on our functions and tables (0.2.0's migration gave
-- venue_image_uploader provider rates, for one) is withdrawn; the grants block at the end
-- and the migration sql/002_roles.sql grant the 0.3.0 matrix again.
DO $acl$
DECLARE
    ext oid := (SELECT oid FROM pg_catalog.pg_extension WHERE extname = 'venue_images');
    g record;
BEGIN
    FOR g IN
        SELECT DISTINCT o.type, o.identity, a.grantee
          FROM pg_catalog.pg_depend d
          JOIN LATERAL pg_catalog.pg_identify_object(d.classid, d.objid, 0) o ON true
          LEFT JOIN pg_catalog.pg_proc p ON d.classid = 'pg_catalog.pg_proc'::regclass AND p.oid = d.objid
          LEFT JOIN pg_catalog.pg_class c ON d.classid = 'pg_catalog.pg_class'::regclass AND c.oid = d.objid
          CROSS JOIN LATERAL pg_catalog.aclexplode(coalesce(p.proacl, c.relacl)) a
         WHERE d.refclassid = 'pg_catalog.pg_extension'::regclass AND d.refobjid = ext AND d.deptype = 'e'
           AND o.type IN ('table', 'view', 'function', 'aggregate')
           AND a.grantee <> coalesce(p.proowner, c.relowner)
    LOOP
        EXECUTE pg_catalog.format('REVOKE ALL ON %s %s FROM %s',
            CASE WHEN g.type IN ('view', 'table') THEN 'TABLE' ELSE 'FUNCTION' END,
            g.identity,
            CASE WHEN g.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(g.grantee::regrole::text) END);
    END LOOP;
END
$acl$;

-- Functions whose result columns change are dropped and created again below.
DROP FUNCTION venue_images.venue_image_cleanup_scan();
DROP FUNCTION venue_images.venue_image_retry_report(interval);

-- ===========================================================================================
-- Tables: 0.3.0's changes to 0.2.0's tables, and its new tables.
-- ===========================================================================================
ALTER TABLE venue_images.venue_image_attempts ALTER COLUMN at SET DEFAULT now();
ALTER TABLE venue_images.venue_image_attempts DROP CONSTRAINT venue_image_attempts_outcome_check;
ALTER TABLE venue_images.venue_image_attempts ADD CONSTRAINT venue_image_attempts_outcome_check
    CHECK (outcome IN ('uploaded', 'failed', 'review', 'permanently_failed', 'superseded', 'finalized',
                       'forced', 'purged'));
UPDATE venue_images.venue_image_attempts SET message = left(message, 500) WHERE octet_length(message) > 2000;
ALTER TABLE venue_images.venue_image_attempts ADD CONSTRAINT venue_image_attempts_message_check
    CHECK (octet_length(message) <= 2000);
UPDATE venue_images.venue_image_providers SET per_second = NULL WHERE per_second = 'NaN';
ALTER TABLE venue_images.venue_image_providers DROP CONSTRAINT venue_image_providers_per_second_check;
ALTER TABLE venue_images.venue_image_providers ADD CONSTRAINT venue_image_providers_per_second_check
    CHECK (per_second IS NULL OR (per_second > 0 AND per_second <> 'NaN'));

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
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('venue_images.venue_image_scans', 'scan_id')::regclass, '');

-- ===========================================================================================
-- 0.3.0's objects (generated from the install script by scripts/dev/gen-upgrade.py).
-- ===========================================================================================
