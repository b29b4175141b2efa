//! Traps for the search-path attacks (CVE-2018-1058's class): a schema full of objects that
//! shadow PostgreSQL's built-ins with exactly the same argument types, names and defaults,
//! each recording who ran it before doing what the built-in does.
//!
//! An exact-type function or operator anywhere on a `search_path` wins over a built-in that
//! needs a cast, and the first schema on the path wins between exact matches: any SQL text
//! that leaves a function, operator or aggregate unqualified runs a trap when the schema is
//! on the path before `pg_catalog`. What is shadowed:
//!
//! - every operator of `pg_catalog` whose argument and result types are not pseudo-types;
//! - every plain function of `pg_catalog` with up to ten such arguments that returns one
//!   value (or nothing), with the built-in's argument names and defaults, so calls with
//!   named arguments (`make_interval(secs => ...)`) are caught too;
//! - concrete forms of the polymorphic and variadic functions the project's SQL uses
//!   (`unnest`, `array_length`, `cardinality`, `format`, `generate_series`, ...);
//! - the common aggregates (`count(*)`, `min`, `max`, `sum`, `bool_or`, `string_agg`, ...).
//!
//! A hit is logged in `<schema>.trap_log` (open to everyone) with the role it ran as; the
//! caller's extra statement runs after that (for example an attempt to make the planting
//! role a superuser, which only succeeds when a trap runs as one).

use anyhow::Result;
use sqlx::{Connection, Executor, PgConnection};

/// Plants the traps in `schema` (created when missing) as the role of `conn`; `on_hit` is
/// SQL that every trap runs after logging (inside its own exception block), e.g.
/// `ALTER ROLE owner SUPERUSER`. Returns how many objects were planted.
pub async fn plant(conn: &mut PgConnection, schema: &str, on_hit: &str) -> Result<i64> {
    let sql = GENERATOR
        .replace("{schema}", schema)
        .replace("{on_hit}", &on_hit.replace('\'', "''"));
    conn.execute(sql.as_str()).await?;
    let n: i64 = sqlx::query_scalar(&format!(
        "SELECT pg_catalog.count(*) FROM pg_catalog.pg_proc
          WHERE pronamespace OPERATOR(pg_catalog.=) '{schema}'::pg_catalog.regnamespace"
    ))
    .fetch_one(&mut *conn)
    .await?;
    Ok(n)
}

/// Proves the traps catch what they must: unqualified calls of a function, an operator, a
/// function with named arguments and an aggregate, made with `schema` first on the path,
/// each run a trap. The log is emptied afterwards. Fails when a trap did not fire.
pub async fn canary(conn: &mut PgConnection, schema: &str) -> Result<()> {
    let mut tx = conn.begin().await?;
    tx.execute(format!("SET LOCAL search_path = {schema}, pg_catalog").as_str())
        .await?;
    tx.execute(
        "SELECT now(), 1::bigint = 2::bigint, make_interval(secs => 1), lower('A'),
                (SELECT count(*) FROM (VALUES (1)) v), 'a'::text || 'b'::text",
    )
    .await?;
    tx.commit().await?;
    let fired: Vec<String> = sqlx::query_scalar(&format!(
        "SELECT DISTINCT trap FROM {schema}.trap_log ORDER BY 1"
    ))
    .fetch_all(&mut *conn)
    .await?;
    for want in [
        "now",
        "operator =",
        "make_interval",
        "lower",
        "count",
        "operator ||",
    ] {
        anyhow::ensure!(
            fired.iter().any(|f| f == want),
            "the trap for {want} did not fire (fired: {fired:?})"
        );
    }
    conn.execute(format!("DELETE FROM {schema}.trap_log").as_str())
        .await?;
    Ok(())
}

/// [`plant`], then [`canary`]: traps proven to fire.
pub async fn plant_checked(conn: &mut PgConnection, schema: &str, on_hit: &str) -> Result<i64> {
    let planted = plant(conn, schema, on_hit).await?;
    canary(conn, schema).await?;
    Ok(planted)
}

/// Every hit so far: (trap, role it ran as, session user, the statement).
pub async fn hits(
    conn: &mut PgConnection,
    schema: &str,
) -> Result<Vec<(String, String, String, String)>> {
    Ok(sqlx::query_as(&format!(
        "SELECT trap, run_as, session_as, pg_catalog.left(query, 300)
           FROM {schema}.trap_log ORDER BY at"
    ))
    .fetch_all(&mut *conn)
    .await?)
}

const GENERATOR: &str = r#"
CREATE SCHEMA IF NOT EXISTS {schema};
GRANT USAGE ON SCHEMA {schema} TO PUBLIC;
CREATE TABLE {schema}.trap_log (
    trap text, run_as text, session_as text, query text,
    at timestamptz DEFAULT pg_catalog.clock_timestamp());
GRANT SELECT, INSERT ON {schema}.trap_log TO PUBLIC;

CREATE FUNCTION {schema}.trap_hit(trap text) RETURNS void LANGUAGE plpgsql
SET search_path = pg_catalog AS $hit$
BEGIN
    BEGIN
        INSERT INTO {schema}.trap_log (trap, run_as, session_as, query)
        VALUES (trap, current_user, session_user, pg_catalog.current_query());
    EXCEPTION WHEN OTHERS THEN
        RAISE WARNING 'trap % ran as % (not logged: %)', trap, current_user, SQLERRM;
    END;
    BEGIN
        EXECUTE '{on_hit}';
    EXCEPTION WHEN OTHERS THEN
        NULL;
    END;
END
$hit$;
GRANT EXECUTE ON FUNCTION {schema}.trap_hit(text) TO PUBLIC;

DO $gen$
DECLARE
    f record;
    o record;
    call text;
    body text;
    planted int := 0;
BEGIN
    -- Functions: the built-in's signature (names, defaults), its result, a call to it.
    FOR f IN
        SELECT p.oid, p.proname, p.pronargs, p.prorettype,
               pg_catalog.pg_get_function_arguments(p.oid) AS args,
               pg_catalog.format_type(p.prorettype, NULL) AS ret
          FROM pg_catalog.pg_proc p
         WHERE p.pronamespace OPERATOR(pg_catalog.=) 'pg_catalog'::pg_catalog.regnamespace
           AND p.prokind OPERATOR(pg_catalog.=) 'f'
           AND NOT p.proretset
           AND p.provariadic OPERATOR(pg_catalog.=) 0::pg_catalog.oid
           AND p.pronargs OPERATOR(pg_catalog.<=) 10
           AND p.proallargtypes IS NULL
           AND NOT EXISTS (
               SELECT FROM pg_catalog.unnest(p.proargtypes::pg_catalog.oid[]) AS a(t)
                 JOIN pg_catalog.pg_type ty ON ty.oid OPERATOR(pg_catalog.=) a.t
                WHERE ty.typtype OPERATOR(pg_catalog.=) 'p')
           AND NOT EXISTS (
               SELECT FROM pg_catalog.pg_type ty
                WHERE ty.oid OPERATOR(pg_catalog.=) p.prorettype
                  AND ty.typtype OPERATOR(pg_catalog.=) 'p'
                  AND ty.typname OPERATOR(pg_catalog.<>) 'void')
    LOOP
        SELECT pg_catalog.string_agg('$' OPERATOR(pg_catalog.||) i::pg_catalog.text, ', ' ORDER BY i)
          INTO call FROM pg_catalog.generate_series(1, f.pronargs) AS i;
        call := pg_catalog.format('pg_catalog.%I(%s)', f.proname, coalesce(call, ''));
        IF f.ret OPERATOR(pg_catalog.=) 'void' THEN
            body := pg_catalog.format('BEGIN PERFORM {schema}.trap_hit(%L); PERFORM %s; END',
                                      f.proname, call);
        ELSE
            body := pg_catalog.format('BEGIN PERFORM {schema}.trap_hit(%L); RETURN %s; END',
                                      f.proname, call);
        END IF;
        BEGIN
            EXECUTE pg_catalog.format('CREATE FUNCTION {schema}.%I(%s) RETURNS %s LANGUAGE plpgsql AS %L',
                                      f.proname, f.args, f.ret, body);
            planted := planted OPERATOR(pg_catalog.+) 1;
        EXCEPTION WHEN OTHERS THEN
            NULL;  -- a name or type plpgsql cannot take
        END;
    END LOOP;

    -- Operators: a trap function per operator, then the operator itself.
    FOR o IN
        SELECT op.oid, op.oprname, op.oprkind,
               pg_catalog.format('pg_catalog.%I', pc.proname) AS code,
               pg_catalog.format_type(op.oprleft, NULL) AS l,
               pg_catalog.format_type(op.oprright, NULL) AS r,
               pg_catalog.format_type(op.oprresult, NULL) AS res
          FROM pg_catalog.pg_operator op
          JOIN pg_catalog.pg_proc pc ON pc.oid OPERATOR(pg_catalog.=) op.oprcode
         WHERE op.oprnamespace OPERATOR(pg_catalog.=) 'pg_catalog'::pg_catalog.regnamespace
           AND NOT EXISTS (
               SELECT FROM pg_catalog.pg_type ty
                WHERE ty.oid OPERATOR(pg_catalog.=) ANY (ARRAY[op.oprleft, op.oprright, op.oprresult])
                  AND ty.typtype OPERATOR(pg_catalog.=) 'p')
    LOOP
        BEGIN
            IF o.oprkind OPERATOR(pg_catalog.=) 'b' THEN
                EXECUTE pg_catalog.format(
                    'CREATE FUNCTION {schema}.trap_op_%s(%s, %s) RETURNS %s LANGUAGE plpgsql AS %L',
                    o.oid, o.l, o.r, o.res,
                    pg_catalog.format('BEGIN PERFORM {schema}.trap_hit(%L); RETURN %s($1, $2); END',
                                      'operator ' OPERATOR(pg_catalog.||) o.oprname, o.code));
                EXECUTE pg_catalog.format(
                    'CREATE OPERATOR {schema}.%s (LEFTARG = %s, RIGHTARG = %s, FUNCTION = {schema}.trap_op_%s)',
                    o.oprname, o.l, o.r, o.oid);
            ELSE
                EXECUTE pg_catalog.format(
                    'CREATE FUNCTION {schema}.trap_op_%s(%s) RETURNS %s LANGUAGE plpgsql AS %L',
                    o.oid, o.r, o.res,
                    pg_catalog.format('BEGIN PERFORM {schema}.trap_hit(%L); RETURN %s($1); END',
                                      'operator ' OPERATOR(pg_catalog.||) o.oprname, o.code));
                EXECUTE pg_catalog.format(
                    'CREATE OPERATOR {schema}.%s (RIGHTARG = %s, FUNCTION = {schema}.trap_op_%s)',
                    o.oprname, o.r, o.oid);
            END IF;
            planted := planted OPERATOR(pg_catalog.+) 1;
        EXCEPTION WHEN OTHERS THEN
            NULL;
        END;
    END LOOP;
    RAISE NOTICE 'planted % traps in {schema}', planted;
END
$gen$;

-- Concrete forms of polymorphic and variadic built-ins: an exact type wins over them.
DO $poly$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['bigint', 'integer', 'text', 'bytea', 'uuid', 'double precision',
                             'jsonb', 'timestamp with time zone', 'boolean', 'smallint'] LOOP
        EXECUTE pg_catalog.format($f$
            CREATE FUNCTION {schema}.unnest(%1$s[]) RETURNS SETOF %1$s LANGUAGE plpgsql AS $b$
            BEGIN PERFORM {schema}.trap_hit('unnest'); RETURN QUERY SELECT pg_catalog.unnest($1); END $b$;
            CREATE FUNCTION {schema}.array_length(%1$s[], integer) RETURNS integer LANGUAGE plpgsql AS $b$
            BEGIN PERFORM {schema}.trap_hit('array_length'); RETURN pg_catalog.array_length($1, $2); END $b$;
            CREATE FUNCTION {schema}.cardinality(%1$s[]) RETURNS integer LANGUAGE plpgsql AS $b$
            BEGIN PERFORM {schema}.trap_hit('cardinality'); RETURN pg_catalog.cardinality($1); END $b$;
            CREATE FUNCTION {schema}.array_agg_sf(%1$s[], %1$s) RETURNS %1$s[] LANGUAGE plpgsql AS $b$
            BEGIN PERFORM {schema}.trap_hit('array_agg'); RETURN pg_catalog.array_append($1, $2); END $b$;
            CREATE AGGREGATE {schema}.array_agg(%1$s) (SFUNC = {schema}.array_agg_sf, STYPE = %1$s[]);
            CREATE FUNCTION {schema}.max_sf(%1$s, %1$s) RETURNS %1$s LANGUAGE plpgsql AS $b$
            BEGIN PERFORM {schema}.trap_hit('min/max'); RETURN greatest($1, $2); END $b$;
            $f$, t);
        BEGIN
            EXECUTE pg_catalog.format(
                'CREATE AGGREGATE {schema}.max(%1$s) (SFUNC = {schema}.max_sf, STYPE = %1$s);
                 CREATE AGGREGATE {schema}.min(%1$s) (SFUNC = {schema}.max_sf, STYPE = %1$s)', t);
        EXCEPTION WHEN OTHERS THEN NULL;
        END;
    END LOOP;
    FOR n IN 1..4 LOOP
        EXECUTE pg_catalog.format(
            'CREATE FUNCTION {schema}.format(text%s) RETURNS text LANGUAGE plpgsql AS %L',
            pg_catalog.repeat(', text', n),
            'BEGIN PERFORM {schema}.trap_hit(''format''); RETURN pg_catalog.format($1, VARIADIC ARRAY['
              OPERATOR(pg_catalog.||) (SELECT pg_catalog.string_agg('$' OPERATOR(pg_catalog.||) (i OPERATOR(pg_catalog.+) 1)::pg_catalog.text, ', ')
                                         FROM pg_catalog.generate_series(1, n) i)
              OPERATOR(pg_catalog.||) ']::text[]); END');
    END LOOP;
END
$poly$;

CREATE FUNCTION {schema}.generate_series(timestamptz, timestamptz, interval) RETURNS SETOF timestamptz
LANGUAGE plpgsql AS $b$
BEGIN PERFORM {schema}.trap_hit('generate_series'); RETURN QUERY SELECT pg_catalog.generate_series($1, $2, $3); END $b$;
CREATE FUNCTION {schema}.generate_series(integer, integer) RETURNS SETOF integer
LANGUAGE plpgsql AS $b$
BEGIN PERFORM {schema}.trap_hit('generate_series'); RETURN QUERY SELECT pg_catalog.generate_series($1, $2); END $b$;
CREATE FUNCTION {schema}.aclexplode(aclitem[], OUT grantor oid, OUT grantee oid, OUT privilege_type text,
                                    OUT is_grantable boolean) RETURNS SETOF record
LANGUAGE plpgsql AS $b$
BEGIN PERFORM {schema}.trap_hit('aclexplode'); RETURN QUERY SELECT * FROM pg_catalog.aclexplode($1); END $b$;

CREATE FUNCTION {schema}.count_sf(bigint) RETURNS bigint LANGUAGE plpgsql AS $b$
BEGIN PERFORM {schema}.trap_hit('count'); RETURN $1 OPERATOR(pg_catalog.+) 1; END $b$;
CREATE AGGREGATE {schema}.count(*) (SFUNC = {schema}.count_sf, STYPE = bigint, INITCOND = '0');
CREATE FUNCTION {schema}.count_any_sf(bigint, text) RETURNS bigint LANGUAGE plpgsql AS $b$
BEGIN PERFORM {schema}.trap_hit('count'); RETURN $1 OPERATOR(pg_catalog.+) 1; END $b$;
CREATE AGGREGATE {schema}.count(text) (SFUNC = {schema}.count_any_sf, STYPE = bigint, INITCOND = '0');
CREATE FUNCTION {schema}.sum_sf(bigint, bigint) RETURNS bigint LANGUAGE plpgsql AS $b$
BEGIN PERFORM {schema}.trap_hit('sum'); RETURN coalesce($1, 0) OPERATOR(pg_catalog.+) $2; END $b$;
CREATE AGGREGATE {schema}.sum(bigint) (SFUNC = {schema}.sum_sf, STYPE = bigint);
CREATE FUNCTION {schema}.bool_or_sf(boolean, boolean) RETURNS boolean LANGUAGE plpgsql AS $b$
BEGIN PERFORM {schema}.trap_hit('bool_or'); RETURN coalesce($1, false) OR $2; END $b$;
CREATE AGGREGATE {schema}.bool_or(boolean) (SFUNC = {schema}.bool_or_sf, STYPE = boolean);
CREATE FUNCTION {schema}.string_agg_sf(text, text, text) RETURNS text LANGUAGE plpgsql AS $b$
BEGIN PERFORM {schema}.trap_hit('string_agg');
      RETURN CASE WHEN $1 IS NULL THEN $2 ELSE $1 OPERATOR(pg_catalog.||) $3 OPERATOR(pg_catalog.||) $2 END; END $b$;
CREATE AGGREGATE {schema}.string_agg(text, text) (SFUNC = {schema}.string_agg_sf, STYPE = text);
"#;
