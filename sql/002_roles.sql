-- The three roles of venue_images, and exactly what each may call (idempotent: each run
-- first revokes what the roles had on the extension's objects, then grants this list).
-- Give people and services these roles:  GRANT venue_image_reader TO alice;
--
--   venue_image_reader    analysts: the table-level analytics, the retry report and
--                         timeline, the queue and provider views, the skip and scan logs,
--                         the per-venue inspection functions. No rights on venues itself.
--   venue_image_uploader  the sidecar: claim, leases, write-back, pause a provider on a
--                         429, enqueue one venue, the scheduled scan, when the next image
--                         is due; and everything venue_image_reader may (for `stats`).
--   venue_image_admin     people doing manual review and operations: force retry, purge,
--                         pause and resume providers, provider rates, the scan, pruning
--                         the log, enqueue; and everything venue_image_reader may.
--
-- None of them can change retry policy (the venue_images.* settings are superuser-only),
-- touch the venues table, or act as another role. The per-value functions
-- (classification, scores, names, dedupe, merge, summary, redact) are everyone's.
--
-- Like every migration: one transaction, search_path pinned, every name qualified (see
-- 001_enable_venue_images.sql). It first checks that venue_images is the extension's
-- schema and a superuser's, so no grant below can reach an object someone planted.
BEGIN;
SET LOCAL search_path = pg_catalog, pg_temp;

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_extension e
                     JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) e.extnamespace
                     JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) n.nspowner
                    WHERE e.extname OPERATOR(pg_catalog.=) 'venue_images'::pg_catalog.name
                      AND n.nspname OPERATOR(pg_catalog.=) 'venue_images'::pg_catalog.name
                      AND r.rolsuper) THEN
        RAISE EXCEPTION 'the venue_images extension is not installed in its own schema venue_images'
            USING ERRCODE = '55000',
                  HINT = 'Apply sql/001_enable_venue_images.sql first (as a superuser).';
    END IF;
END
$$;

DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['venue_image_reader', 'venue_image_uploader', 'venue_image_admin'] LOOP
        IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) r) THEN
            BEGIN
                EXECUTE pg_catalog.format('CREATE ROLE %I NOLOGIN', r);
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL;  -- roles are cluster-wide: another database's migration made it
            END;
        END IF;
    END LOOP;
    FOREACH r IN ARRAY ARRAY['venue_image_uploader', 'venue_image_admin'] LOOP
        IF NOT pg_catalog.pg_has_role(r, 'venue_image_reader', 'MEMBER') THEN
            BEGIN
                EXECUTE pg_catalog.format('GRANT venue_image_reader TO %I', r);
            EXCEPTION WHEN OTHERS THEN
                -- a concurrent migration in another database granted it first
                IF NOT pg_catalog.pg_has_role(r, 'venue_image_reader', 'MEMBER') THEN RAISE; END IF;
            END;
        END IF;
    END LOOP;
END
$$;

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA venue_images
    FROM venue_image_reader, venue_image_uploader, venue_image_admin;
REVOKE ALL ON ALL TABLES IN SCHEMA venue_images
    FROM venue_image_reader, venue_image_uploader, venue_image_admin;
GRANT USAGE ON SCHEMA venue_images TO venue_image_reader, venue_image_uploader, venue_image_admin;

-- What each role may call: its rows of the extension's one list of grants
-- (venue_images.venue_image_role_grants(), venue_images_core::roles in the source).
DO $$
DECLARE
    g record;
BEGIN
    FOR g IN SELECT r.role, r.privilege, r.object FROM venue_images.venue_image_role_grants() r
              WHERE r.role OPERATOR(pg_catalog.<>) 'PUBLIC'
    LOOP
        EXECUTE pg_catalog.format('GRANT %s ON %s %s TO %I', g.privilege,
            CASE WHEN g.privilege OPERATOR(pg_catalog.=) 'EXECUTE' THEN 'FUNCTION' ELSE 'TABLE' END,
            g.object, g.role);
    END LOOP;
END
$$;

COMMIT;
