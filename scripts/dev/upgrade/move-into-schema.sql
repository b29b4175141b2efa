-- ===========================================================================================
-- The extension moves into its own schema: every member object is moved with ALTER ...
-- SET SCHEMA (same OIDs, so the application's trigger and any dependent views keep
-- working; every queued job, attempt and provider setting stays), then the catalog
-- records the new schema. Whatever was granted on the extension's functions and tables is
-- withdrawn; the grants block at the end and the migration sql/002_roles.sql grant the
-- current matrix again.
-- ===========================================================================================
DO $move$
DECLARE
    ext pg_catalog.oid := (SELECT e.oid FROM pg_catalog.pg_extension e
                            WHERE e.extname OPERATOR(pg_catalog.=) 'venue_images'::pg_catalog.name);
    old_nsp pg_catalog.oid := (SELECT e.extnamespace FROM pg_catalog.pg_extension e
                                WHERE e.extname OPERATOR(pg_catalog.=) 'venue_images'::pg_catalog.name);
    new_nsp pg_catalog.oid := (SELECT n.oid FROM pg_catalog.pg_namespace n
                                WHERE n.nspname OPERATOR(pg_catalog.=) 'venue_images'::pg_catalog.name);
    obj record;
BEGIN
    IF old_nsp OPERATOR(pg_catalog.=) new_nsp THEN
        RETURN;
    END IF;
    FOR obj IN
        SELECT o.type, o.identity
          FROM pg_catalog.pg_depend d,
               LATERAL pg_catalog.pg_identify_object(d.classid, d.objid, 0) o
         WHERE d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_extension'::pg_catalog.regclass
           AND d.refobjid OPERATOR(pg_catalog.=) ext
           AND d.deptype OPERATOR(pg_catalog.=) 'e'
           AND o.type OPERATOR(pg_catalog.=) ANY ('{table,view,function,aggregate}'::pg_catalog.text[])
         ORDER BY o.type DESC, o.identity
    LOOP
        EXECUTE pg_catalog.format('ALTER %s %s SET SCHEMA venue_images', obj.type, obj.identity);
    END LOOP;
    UPDATE pg_catalog.pg_extension SET extnamespace = new_nsp WHERE oid OPERATOR(pg_catalog.=) ext;
    UPDATE pg_catalog.pg_depend SET refobjid = new_nsp
     WHERE classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_extension'::pg_catalog.regclass
       AND objid OPERATOR(pg_catalog.=) ext
       AND refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_namespace'::pg_catalog.regclass
       AND refobjid OPERATOR(pg_catalog.=) old_nsp;
END
$move$;

DO $acl$
DECLARE
    ext pg_catalog.oid := (SELECT e.oid FROM pg_catalog.pg_extension e
                            WHERE e.extname OPERATOR(pg_catalog.=) 'venue_images'::pg_catalog.name);
    g record;
BEGIN
    FOR g IN
        SELECT DISTINCT o.type, o.identity, a.grantee
          FROM pg_catalog.pg_depend d
          JOIN LATERAL pg_catalog.pg_identify_object(d.classid, d.objid, 0) o ON true
          LEFT JOIN pg_catalog.pg_proc p
                 ON d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass
                AND p.oid OPERATOR(pg_catalog.=) d.objid
          LEFT JOIN pg_catalog.pg_class c
                 ON d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass
                AND c.oid OPERATOR(pg_catalog.=) d.objid
          CROSS JOIN LATERAL pg_catalog.aclexplode(coalesce(p.proacl, c.relacl)) a
         WHERE d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_extension'::pg_catalog.regclass
           AND d.refobjid OPERATOR(pg_catalog.=) ext
           AND d.deptype OPERATOR(pg_catalog.=) 'e'
           AND o.type OPERATOR(pg_catalog.=) ANY ('{table,view,function,aggregate}'::pg_catalog.text[])
           AND a.grantee OPERATOR(pg_catalog.<>) coalesce(p.proowner, c.relowner)
    LOOP
        EXECUTE pg_catalog.format('REVOKE ALL ON %s %s FROM %s',
            CASE WHEN g.type OPERATOR(pg_catalog.=) 'view' OR g.type OPERATOR(pg_catalog.=) 'table'
                 THEN 'TABLE' ELSE 'FUNCTION' END,
            g.identity,
            CASE WHEN g.grantee OPERATOR(pg_catalog.=) 0::pg_catalog.oid THEN 'PUBLIC'
                 ELSE pg_catalog.quote_ident(g.grantee::pg_catalog.regrole::pg_catalog.text) END);
    END LOOP;
END
$acl$;
