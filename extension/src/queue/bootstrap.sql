-- Runs first, on install and on every upgrade: the extension's objects may only live in
-- a schema that no untrusted role controls, and its SECURITY DEFINER functions run as a
-- role that is not a superuser and that nobody can log in as or be a member of.
-- (PostgreSQL's "Security Considerations for Extensions"; pgmq and pg_cron do the same
-- with their own schemas.)
DO $bootstrap$
DECLARE
    nsp pg_catalog.pg_namespace%ROWTYPE;
    owner_is_super bool;
    creators text;
    bad_role text;
BEGIN
    SELECT * INTO nsp FROM pg_catalog.pg_namespace WHERE nspname = 'venue_images';
    IF NOT FOUND THEN
        RAISE EXCEPTION 'venue_images must be installed in the schema venue_images'
            USING ERRCODE = '42501';
    END IF;
    SELECT r.rolsuper INTO owner_is_super FROM pg_catalog.pg_roles r WHERE r.oid = nsp.nspowner;
    IF NOT coalesce(owner_is_super, false) THEN
        RAISE EXCEPTION 'schema venue_images is owned by %, who is not a superuser',
                nsp.nspowner::regrole
            USING ERRCODE = '42501',
                  DETAIL = 'The extension''s SECURITY DEFINER functions may only live in a schema that no untrusted role controls.',
                  HINT = 'As a superuser: DROP SCHEMA venue_images (if it holds nothing of yours), then CREATE EXTENSION venue_images again; or ALTER SCHEMA venue_images OWNER TO a superuser after checking what it contains.';
    END IF;
    SELECT pg_catalog.string_agg(CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END, ', ')
      INTO creators
      FROM pg_catalog.aclexplode(nsp.nspacl) a
      LEFT JOIN pg_catalog.pg_roles r ON r.oid = a.grantee
     WHERE a.privilege_type = 'CREATE' AND a.grantee <> nsp.nspowner AND NOT coalesce(r.rolsuper, false);
    IF creators IS NOT NULL THEN
        RAISE EXCEPTION 'roles other than superusers may create objects in schema venue_images: %', creators
            USING ERRCODE = '42501',
                  HINT = 'REVOKE CREATE ON SCHEMA venue_images FROM those roles, then try again.';
    END IF;

    -- The role the SECURITY DEFINER functions run as.
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'venue_image_definer') THEN
        BEGIN
            CREATE ROLE venue_image_definer NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE
                NOREPLICATION NOINHERIT NOBYPASSRLS;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;  -- created meanwhile by an install in another database; checked below
        END;
    END IF;
    SELECT r.rolname INTO bad_role FROM pg_catalog.pg_roles r
     WHERE r.rolname = 'venue_image_definer'
       AND (r.rolsuper OR r.rolcanlogin OR r.rolcreaterole OR r.rolcreatedb OR r.rolreplication
            OR r.rolbypassrls
            OR EXISTS (SELECT FROM pg_catalog.pg_auth_members m WHERE m.roleid = r.oid OR m.member = r.oid));
    IF bad_role IS NOT NULL THEN
        RAISE EXCEPTION 'role venue_image_definer exists with powers it must not have'
            USING ERRCODE = '42501',
                  DETAIL = 'It must be NOLOGIN, not a superuser, without CREATEDB/CREATEROLE/REPLICATION/BYPASSRLS, and neither a member of any role nor have members.',
                  HINT = 'As a superuser, DROP ROLE venue_image_definer (or fix it), then try again.';
    END IF;
END
$bootstrap$;

REVOKE ALL ON SCHEMA venue_images FROM PUBLIC;
GRANT USAGE ON SCHEMA venue_images TO PUBLIC;
GRANT USAGE ON SCHEMA venue_images TO venue_image_definer;
