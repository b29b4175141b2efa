-- ===========================================================================================
-- Versions before 0.3.0 lived in the schema they were created in (normally public, which
-- the database owner controls). Before anything else the extension's own schema must
-- exist: created here when missing (and, like a fresh install's, not a member of the
-- extension); when someone made it beforehand, the bootstrap checks that follow refuse it
-- unless a superuser owns it and nothing of an untrusted role is in it.
-- ===========================================================================================
DO $schema$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_namespace
                    WHERE nspname OPERATOR(pg_catalog.=) 'venue_images'::pg_catalog.name) THEN
        CREATE SCHEMA venue_images;
        ALTER EXTENSION venue_images DROP SCHEMA venue_images;
    END IF;
END
$schema$;
