#!/usr/bin/env bash
# Random SQL against the installed extension (SQLsmith, from Debian): as a superuser, as
# the reader and uploader roles' logins and as a login with no grants, on a private
# cluster seeded with well-formed, malformed and deeply nested image arrays. Fails when
# the server restarted (a crash) or when an internal error (XX000) came from one of the
# extension's functions; prints what SQLsmith met.
#
# usage: scripts/sqlsmith.sh [QUERIES_PER_ROLE]   (default 5000)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
QUERIES=${1:-5000}
[[ "$QUERIES" =~ ^[0-9]+$ ]] || { echo "usage: scripts/sqlsmith.sh [QUERIES_PER_ROLE]" >&2; exit 2; }
command -v sqlsmith >/dev/null || die "sqlsmith is not installed (apt-get install sqlsmith; scripts/test.sh installs it)"

unset DATABASE_URL
start_cluster "log_line_prefix=%e:" "statement_timeout=5s" "log_min_messages=error" \
  "log_error_verbosity=verbose"
migrate
step "Seeding venues with well-formed, malformed and deeply nested image arrays"
dbsql <<'SQL'
INSERT INTO venues (name, slug, city_id, venue_images)
SELECT 'v' || g, 's' || g, g % 7,
       CASE g % 10
         WHEN 0 THEN NULL
         WHEN 1 THEN '{"not": "an array"}'::jsonb
         WHEN 2 THEN jsonb_build_array(1, 'x', jsonb_build_object('upload_status', 7))
         WHEN 3 THEN jsonb_build_array(jsonb_build_object('upload_status', 'failed',
                       'provider_url', 'https://p.example/' || g || '?key=SECRET',
                       'retry_count', 2.9999999999999999999,
                       'notes', (repeat('[', 2000) || repeat(']', 2000))::jsonb))
         ELSE jsonb_build_array(
                jsonb_build_object('provider', (ARRAY['here', 'google_places', 'foursquare'])[1 + g % 3],
                  'provider_url', 'https://p.example/' || g || '/a.jpg',
                  'upload_status', (ARRAY['failed', 'uploaded', 'permanently_failed'])[1 + g % 3],
                  'quality_score', (g % 100) / 100.0,
                  'error_details', jsonb_build_object('error_type',
                    (ARRAY['rate_limited', 'not_found', 'odd', NULL])[1 + g % 4])),
                jsonb_build_object('url', 'https://p.example/' || g || '/b.jpg', 'upload_status', 'failed'))
       END
  FROM generate_series(1, 300) g;
SELECT venue_images.venue_image_set_provider_rate('*', 'Infinity');
SQL
dbsql -c "DO \$\$ BEGIN
  CREATE ROLE smith_nobody LOGIN;
  CREATE ROLE smith_reader LOGIN IN ROLE venue_image_reader;
  CREATE ROLE smith_uploader LOGIN IN ROLE venue_image_uploader;
EXCEPTION WHEN duplicate_object THEN NULL; END \$\$"

started=$(dbsql -At -c "SELECT pg_postmaster_start_time()")
seed=1
for login in postgres smith_nobody smith_reader smith_uploader; do
  step "SQLsmith: $QUERIES queries as $login"
  sqlsmith --target="host=$PGHOST port=$PGPORT user=$login dbname=venue_images" \
    --max-queries="$QUERIES" --seed="$seed" >"$CLUSTER_DIR/sqlsmith-$login.out" 2>&1 ||
    die "sqlsmith stopped as $login: $(tail -5 "$CLUSTER_DIR/sqlsmith-$login.out")"
  seed=$((seed + 1))
  info "$(grep -c '' "$CLUSTER_DIR/sqlsmith-$login.out") lines of output"
done

step "Checking the server log"
log=$CLUSTER_DIR/server.log
if grep -q "terminated by signal\|was terminated by\|server process .* exited" "$log" ||
   [ "$(dbsql -At -c "SELECT pg_postmaster_start_time()")" != "$started" ]; then
  grep -n "terminated by signal\|exited" "$log" | head -20 >&2
  die "the server restarted during the run"
fi
# An internal error of ours: its LOCATION (log_error_verbosity=verbose) is in the
# extension's Rust code, not in one of PostgreSQL's C files; PostgreSQL's parser and
# planner raise XX000s of their own on SQLSmith's queries whatever functions they call
# ("failed to find conversion function from unknown to text", "invalid INTERVAL typmod").
# An error without a LOCATION counts as ours when its statement or context calls one of
# the extension's functions. Each error is its ERROR line and the STATEMENT, CONTEXT,
# DETAIL, HINT and LOCATION lines that follow it, with their continuation lines.
ours=$(python3 - "$log" <<'PY'
import re, sys
errors, cur = [], None
for line in open(sys.argv[1], errors="replace"):
    m = re.match(r"^([0-9A-Z]{5}):(\w+):", line)
    if m and m.group(2) == "ERROR":
        cur = [m.group(1), line]
        errors.append(cur)
    elif m and m.group(2) not in ("STATEMENT", "CONTEXT", "DETAIL", "HINT", "LOCATION"):
        cur = None
    elif cur is not None:
        cur.append(line)
calls = re.compile(r"\bvenue_image\w*\s*\(")
for code, *lines in errors:
    if code != "XX000":
        continue
    text = "".join(lines)
    where = [l for l in lines if re.match(r"^XX000:LOCATION:", l)]
    if where:
        mine = not re.search(r"\.c:\d+\s*$", where[0])
    else:
        mine = calls.search(text) is not None
    if mine:
        print(text[:800])
PY
)
[ -z "$ours" ] || die "internal errors (XX000) from the extension's functions: $ours"
info "no crash; internal errors (XX000), all PostgreSQL's own: $(grep -c '^XX000:ERROR' "$log" || true)"
info "errors by SQLSTATE: $(grep -o '^[0-9A-Z]\{5\}:ERROR' "$log" | sort | uniq -c | sort -rn | head -8 | tr '\n' ' ')"
stop_cluster
step_times
