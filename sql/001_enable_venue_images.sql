-- Enables the venue_images extension in the current database, or updates it to the
-- installed version (idempotent). Run as a superuser: the extension is not trusted (it
-- loads a shared library), and only the superuser who installs it is trusted.
--
-- The extension lives in its own schema, venue_images, owned by that superuser, in which
-- nobody else may create objects. So that analysts can keep writing
-- SELECT * FROM venue_image_failure_breakdown() unqualified, this migration appends
-- venue_images to the database's search_path (after "$user" and public; sessions
-- opened from now on see it). Roles with a search_path of their own (ALTER ROLE ... SET
-- search_path) must add venue_images themselves, or qualify the names.
--
-- Each migration is one transaction that first pins search_path to pg_catalog, pg_temp
-- (SET LOCAL: nothing outlives the transaction, which matters behind PgBouncer) and names
-- every function and operator with its schema: the database owner can set the
-- database's search_path (ALTER DATABASE ... SET search_path) and put objects in public,
-- and none of them may run as the superuser who applies this.
BEGIN;
SET LOCAL search_path = pg_catalog, pg_temp;

CREATE EXTENSION IF NOT EXISTS venue_images;
ALTER EXTENSION venue_images UPDATE;

DO $$
DECLARE
    current_path text;
BEGIN
    SELECT pg_catalog.substr(cfg, pg_catalog.length('search_path=') OPERATOR(pg_catalog.+) 1) INTO current_path
      FROM pg_catalog.pg_db_role_setting s, pg_catalog.unnest(s.setconfig) AS cfg
     WHERE s.setdatabase OPERATOR(pg_catalog.=)
           (SELECT d.oid FROM pg_catalog.pg_database d
             WHERE d.datname OPERATOR(pg_catalog.=) pg_catalog.current_database())
       AND s.setrole OPERATOR(pg_catalog.=) 0::pg_catalog.oid
       AND cfg OPERATOR(pg_catalog.~~) 'search_path=%';
    current_path := coalesce(current_path, '"$user", public');
    IF current_path OPERATOR(pg_catalog.!~) '(^|[ ,])"?venue_images"?( *,|$)' THEN
        -- The value goes through set_config (a setting, never SQL text), then FROM CURRENT.
        PERFORM pg_catalog.set_config('search_path',
                                      current_path OPERATOR(pg_catalog.||) ', venue_images', true);
        EXECUTE pg_catalog.format('ALTER DATABASE %I SET search_path FROM CURRENT',
                                  pg_catalog.current_database());
    END IF;
END
$$;

COMMIT;
