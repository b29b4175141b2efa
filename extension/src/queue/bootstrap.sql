-- Runs first, on install and on every update: the extension's objects may only live in a
-- schema that no untrusted role controls, and its SECURITY DEFINER functions run as a
-- role that is not a superuser and that nobody can log in as or be a member of.
-- (PostgreSQL's "Security Considerations for Extensions"; pgmq and pg_cron do the same
-- with their own schemas.)
--
-- The checks run with search_path = pg_catalog, pg_temp and name every operator and
-- function with its schema, so nothing in the schema being checked (or anywhere else)
-- can answer them (CVE-2018-1058, CVE-2023-39417); the path the rest of the script
-- creates its objects in is set again afterwards.
SELECT pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);

DO $bootstrap$
DECLARE
    nsp pg_catalog.pg_namespace%ROWTYPE;
    owner_is_super bool;
    creators text;
    foreign_object text;
    bad_role text;
BEGIN
    SELECT * INTO nsp FROM pg_catalog.pg_namespace
     WHERE nspname OPERATOR(pg_catalog.=) 'venue_images'::pg_catalog.name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'venue_images must be installed in the schema venue_images'
            USING ERRCODE = '42501';
    END IF;
    SELECT r.rolsuper INTO owner_is_super FROM pg_catalog.pg_roles r
     WHERE r.oid OPERATOR(pg_catalog.=) nsp.nspowner;
    IF NOT coalesce(owner_is_super, false) THEN
        RAISE EXCEPTION 'schema venue_images is owned by %, who is not a superuser',
                nsp.nspowner::pg_catalog.regrole
            USING ERRCODE = '42501',
                  DETAIL = 'The extension''s SECURITY DEFINER functions may only live in a schema that no untrusted role controls.',
                  HINT = 'As a superuser: DROP SCHEMA venue_images (if it holds nothing of yours), then CREATE EXTENSION venue_images again; or ALTER SCHEMA venue_images OWNER TO a superuser after checking what it contains.';
    END IF;
    SELECT pg_catalog.string_agg(CASE WHEN a.grantee OPERATOR(pg_catalog.=) 0::pg_catalog.oid THEN 'PUBLIC'
                                      ELSE a.grantee::pg_catalog.regrole::pg_catalog.text END, ', ')
      INTO creators
      FROM pg_catalog.aclexplode(nsp.nspacl) a
      LEFT JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) a.grantee
     WHERE a.privilege_type OPERATOR(pg_catalog.=) 'CREATE'
       AND a.grantee OPERATOR(pg_catalog.<>) nsp.nspowner
       AND NOT coalesce(r.rolsuper, false);
    IF creators IS NOT NULL THEN
        RAISE EXCEPTION 'roles other than superusers may create objects in schema venue_images: %', creators
            USING ERRCODE = '42501',
                  HINT = 'REVOKE CREATE ON SCHEMA venue_images FROM those roles, then try again.';
    END IF;
    -- Objects someone else made there earlier (while the schema was theirs, or while they
    -- had CREATE): their functions and operators would be found by the objects created
    -- below, or be mistaken for ours. Only superusers and venue_image_definer (which owns
    -- the extension's own functions) may own anything in it.
    SELECT pg_catalog.format('%s %s (owner %s)', o.kind, o.name, o.owner::pg_catalog.regrole)
      INTO foreign_object
      FROM (SELECT 'relation' AS kind, c.oid::pg_catalog.regclass::pg_catalog.text AS name, c.relowner AS owner
              FROM pg_catalog.pg_class c WHERE c.relnamespace OPERATOR(pg_catalog.=) nsp.oid
            UNION ALL
            SELECT 'function', p.oid::pg_catalog.regprocedure::pg_catalog.text, p.proowner
              FROM pg_catalog.pg_proc p WHERE p.pronamespace OPERATOR(pg_catalog.=) nsp.oid
            UNION ALL
            SELECT 'type', t.oid::pg_catalog.regtype::pg_catalog.text, t.typowner
              FROM pg_catalog.pg_type t WHERE t.typnamespace OPERATOR(pg_catalog.=) nsp.oid
            UNION ALL
            SELECT 'operator', o.oid::pg_catalog.regoperator::pg_catalog.text, o.oprowner
              FROM pg_catalog.pg_operator o WHERE o.oprnamespace OPERATOR(pg_catalog.=) nsp.oid
            UNION ALL
            SELECT 'collation', k.collname::pg_catalog.text, k.collowner
              FROM pg_catalog.pg_collation k WHERE k.collnamespace OPERATOR(pg_catalog.=) nsp.oid
            UNION ALL
            SELECT 'conversion', v.conname::pg_catalog.text, v.conowner
              FROM pg_catalog.pg_conversion v WHERE v.connamespace OPERATOR(pg_catalog.=) nsp.oid
            UNION ALL
            SELECT 'operator class', oc.opcname::pg_catalog.text, oc.opcowner
              FROM pg_catalog.pg_opclass oc WHERE oc.opcnamespace OPERATOR(pg_catalog.=) nsp.oid
            UNION ALL
            SELECT 'operator family', f.opfname::pg_catalog.text, f.opfowner
              FROM pg_catalog.pg_opfamily f WHERE f.opfnamespace OPERATOR(pg_catalog.=) nsp.oid
            UNION ALL
            SELECT 'text search configuration', tc.cfgname::pg_catalog.text, tc.cfgowner
              FROM pg_catalog.pg_ts_config tc WHERE tc.cfgnamespace OPERATOR(pg_catalog.=) nsp.oid
            UNION ALL
            SELECT 'text search dictionary', td.dictname::pg_catalog.text, td.dictowner
              FROM pg_catalog.pg_ts_dict td WHERE td.dictnamespace OPERATOR(pg_catalog.=) nsp.oid
            UNION ALL
            SELECT 'statistics object', s.stxname::pg_catalog.text, s.stxowner
              FROM pg_catalog.pg_statistic_ext s WHERE s.stxnamespace OPERATOR(pg_catalog.=) nsp.oid) o
      LEFT JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) o.owner
     WHERE NOT coalesce(r.rolsuper, false)
       AND (r.rolname IS NULL OR r.rolname OPERATOR(pg_catalog.<>) 'venue_image_definer'::pg_catalog.name)
     LIMIT 1;
    IF foreign_object IS NOT NULL THEN
        RAISE EXCEPTION 'schema venue_images holds an object of a role that is not a superuser: %', foreign_object
            USING ERRCODE = '42501',
                  DETAIL = 'Objects of untrusted roles in the extension''s schema could be resolved by the extension''s own code.',
                  HINT = 'As a superuser, check and drop that object, then try again.';
    END IF;

    -- The role the SECURITY DEFINER functions run as.
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles
                    WHERE rolname OPERATOR(pg_catalog.=) 'venue_image_definer'::pg_catalog.name) THEN
        BEGIN
            CREATE ROLE venue_image_definer NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE
                NOREPLICATION NOINHERIT NOBYPASSRLS;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;  -- created meanwhile by an install in another database; checked below
        END;
    END IF;
    SELECT r.rolname INTO bad_role FROM pg_catalog.pg_roles r
     WHERE r.rolname OPERATOR(pg_catalog.=) 'venue_image_definer'::pg_catalog.name
       AND (r.rolsuper OR r.rolcanlogin OR r.rolcreaterole OR r.rolcreatedb OR r.rolreplication
            OR r.rolbypassrls
            OR EXISTS (SELECT FROM pg_catalog.pg_auth_members m
                        WHERE m.roleid OPERATOR(pg_catalog.=) r.oid OR m.member OPERATOR(pg_catalog.=) r.oid));
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

-- The rest of the script creates its objects (unqualified, as pgrx writes them) in the
-- schema just checked, with pg_catalog searched first as CREATE EXTENSION does.
SELECT pg_catalog.set_config('search_path', 'venue_images, pg_temp', true);
