#!/usr/bin/env bash
# The run command: installs what is missing, builds and installs the extension, starts a
# private throwaway PostgreSQL 15 (or uses DATABASE_URL), starts local fakes of ImageKit
# and the image providers, loads sample venues whose failed images point at the fake
# provider, prints the statistics, recovers the failures with the uploader (progress bar),
# prints the statistics again, and starts the web dashboard: on a terminal it prints its URL
# and keeps it up until Ctrl-C; otherwise (CI, a pipe) it saves a screenshot of every page
# under target/demo-screenshots/ (or, without Chromium, fetches each page) and exits.
#
# Usage: scripts/demo.sh   (no arguments; settings in the environment:)
#   VENUES=300               sample venues to load (a positive integer)
#   DASHBOARD_LISTEN=127.0.0.1:8780   the dashboard's address (another free port when taken)
#   DATABASE_URL=...         use that database (as a superuser, on this machine) instead of a
#                            private cluster
#   DEMO_SKIP_INSTALL=1      do not build and install the extension: the one installed in the
#                            system PostgreSQL 15 is used (it must be the current version)
#
# It builds what the test command builds, with the same `ci` profile (scripts/test.sh), so
# after the test command nothing is compiled again and the demo starts in about a minute.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
no_arguments "$@"
VENUES=${VENUES:-300}
[[ $VENUES =~ ^[1-9][0-9]*$ ]] || usage_error "VENUES=<a positive integer> scripts/demo.sh   (got VENUES=$VENUES)"
cd "$ROOT"
if [ -n "${DEMO_SKIP_INSTALL:-}" ]; then
  ensure_apt_packages
  info "DEMO_SKIP_INSTALL is set: using the venue_images extension installed in PostgreSQL $PG_MAJOR"
else
  bootstrap
  install_extension ci
fi
start_cluster
migrate

step "Building the uploader, the fakes and the dev tool (the test command's ci build: nothing to do after scripts/test.sh)"
# The same two commands as scripts/test.sh: the uploader alone, then the tests crate as
# `cargo test` builds it (its binaries share that build's dependency features).
cargo build --profile ci -q -p venue-image-uploader
cargo test --profile ci -q -p venue-images-tests --no-run
BIN=$(cargo_target_dir)/ci

step "Starting the fake ImageKit and the fake image providers"
FAKES_OUT=$(mktemp /tmp/venue-images-fakes.XXXXXX)
"$BIN/venue-images-fakes" >"$FAKES_OUT" 2>/dev/null &
FAKES_PID=$!
DASH_PID=""
DASH_DIR=$(mktemp -d /tmp/venue-images-dashboard.XXXXXX)
trap 'kill $FAKES_PID $DASH_PID 2>/dev/null; wait $DASH_PID 2>/dev/null; rm -rf "$FAKES_OUT" "$DASH_DIR"; stop_cluster' EXIT
for _ in $(seq 1 100); do [ -s "$FAKES_OUT" ] && break; sleep 0.1; done
json_field() { python3 -c "import json,sys; print(json.loads(open(sys.argv[1]).readline())[sys.argv[2]])" "$FAKES_OUT" "$1"; }
PROVIDER_BASE=$(json_field provider_base_url)
export IMAGEKIT_UPLOAD_URL=$(json_field imagekit_upload_url)
export IMAGEKIT_PRIVATE_KEY=$(json_field private_key)
info "fake provider at $PROVIDER_BASE, fake ImageKit at $IMAGEKIT_UPLOAD_URL"

step "Loading $VENUES sample venues (deterministic; failed images point at the fake provider)"
"$BIN/venue-images-dev" seed --venues "$VENUES" --provider-base "$PROVIDER_BASE"
# Short backoff so that retries happen within the demo (a superuser's setting).
dbsql -c "ALTER DATABASE $(dbsql -Atc 'SELECT current_database()') SET venue_images.retry_base_seconds = 1" >/dev/null

step "Logins with the extension's roles (sql/002_roles.sql): the sidecar, an operator, and the dashboard's reader"
dbsql >/dev/null <<'SQL'
DO $$ BEGIN
  CREATE ROLE demo_uploader LOGIN IN ROLE venue_image_uploader;
EXCEPTION WHEN duplicate_object THEN NULL; END $$;
DO $$ BEGIN
  CREATE ROLE demo_admin LOGIN IN ROLE venue_image_admin;
EXCEPTION WHEN duplicate_object THEN NULL; END $$;
DO $$ BEGIN
  CREATE ROLE demo_reader LOGIN IN ROLE venue_image_reader;
EXCEPTION WHEN duplicate_object THEN NULL; END $$;
SQL
as_login() { python3 -c "import sys,urllib.parse as u; p=u.urlsplit(sys.argv[1]); print(p._replace(netloc=sys.argv[2]+'@'+p.hostname+(':'+str(p.port) if p.port else '')).geturl())" "$DATABASE_URL" "$1"; }
UPLOADER_URL=$(as_login demo_uploader)
ADMIN_URL=$(as_login demo_admin)
READER_URL=$(as_login demo_reader)
info "uploader: $UPLOADER_URL"
info "admin:    $ADMIN_URL"

UPLOADER=$BIN/venue-image-uploader
export VENUE_UPLOADER_ALLOW_LOOPBACK=true        # the fakes listen on 127.0.0.1
export VENUE_UPLOADER_INSECURE_IMAGEKIT_LOOPBACK=true   # the fake ImageKit speaks http

step "venue-image-uploader rates (as the admin: shared provider rates)"
DATABASE_URL=$ADMIN_URL "$UPLOADER" rates '*=40' google_places=10

step "Before: venue-image-uploader stats (as the uploader)"
DATABASE_URL=$UPLOADER_URL "$UPLOADER" stats

step "venue-image-uploader check"
DATABASE_URL=$UPLOADER_URL "$UPLOADER" check

step "venue-image-uploader scan (the nightly scan: queue transient failures, finalise hopeless ones)"
DATABASE_URL=$UPLOADER_URL "$UPLOADER" scan

step "venue-image-uploader once (recover everything due; waits up to 15 s for quick retries)"
DATABASE_URL=$UPLOADER_URL "$UPLOADER" once --concurrency 16 --linger 15 --log error

step "After: venue-image-uploader stats"
DATABASE_URL=$UPLOADER_URL "$UPLOADER" stats

step "SELECT * FROM venue_image_retry_report();"
dbsql -c "SELECT * FROM venue_image_retry_report()"

step "SELECT * FROM venue_image_high_priority_venues(5);"
dbsql -c "SELECT id, name, failed_count, uploaded_count, failure_rate_pct, priority_score
            FROM venue_image_high_priority_venues(5)"

step "The dashboard: venue-image-uploader dashboard (as the reader; actions as the admin, with a token)"
# A fresh random admin token for this demo, in a file only this user can read.
DASH_TOKEN_FILE=$DASH_DIR/admin-token
(umask 077; python3 -c 'import secrets; print(secrets.token_urlsafe(24))' >"$DASH_TOKEN_FILE")
DASH_LISTEN=${DASHBOARD_LISTEN:-127.0.0.1:8780}
if ! python3 -c 'import socket,sys; h,p=sys.argv[1].rsplit(":",1); socket.socket().bind((h,int(p)))' "$DASH_LISTEN" 2>/dev/null; then
  info "$DASH_LISTEN is taken: using another free port"
  DASH_LISTEN=127.0.0.1:0
fi
DATABASE_URL=$READER_URL "$UPLOADER" dashboard --listen "$DASH_LISTEN" --refresh 10 \
  --admin-token-file "$DASH_TOKEN_FILE" --admin-database-url "$ADMIN_URL" \
  >"$DASH_DIR/stdout" 2>"$DASH_DIR/log" &
DASH_PID=$!
DASH_URL=""
for _ in $(seq 1 100); do
  DASH_URL=$(sed -n 's|^dashboard: \(http://.*\)/$|\1|p' "$DASH_DIR/stdout" 2>/dev/null | head -1)
  [ -n "$DASH_URL" ] && break
  kill -0 "$DASH_PID" 2>/dev/null || { cat "$DASH_DIR/log" >&2; die "the dashboard did not start"; }
  sleep 0.1
done
[ -n "$DASH_URL" ] || { cat "$DASH_DIR/log" >&2; die "the dashboard printed no URL"; }
step_times   # up to here: the demo is ready, the dashboard serving
TOP_VENUE=$(dbsql -Atc "SELECT id FROM venue_image_high_priority_venues(1)")
PAGES=(/ /failures "/recovery?range=24h" "/recovery?range=7d" "/recovery?range=30d" /venues)
[ -n "$TOP_VENUE" ] && PAGES+=("/venues/$TOP_VENUE")

if [ -t 1 ]; then
  printf '\n    \033[1mDashboard: %s/\033[0m   (read-only; to use the actions, log in with the token in %s)\n' \
    "$DASH_URL" "$DASH_TOKEN_FILE"
  printf '    Open it in a browser on this machine (it listens on 127.0.0.1 only). Ctrl-C stops it and the demo.\n'
  wait "$DASH_PID" || true
else
  # Not a terminal: nobody to look at it now, so show each page once and exit.
  printf '\n    Dashboard: %s/ (stopped when the demo ends; on a terminal it stays up until Ctrl-C)\n' "$DASH_URL"
  for p in "${PAGES[@]}"; do
    python3 - "$DASH_URL$p" <<'EOF' || die "dashboard page $p failed"
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=60) as r:
    body = r.read()
    assert r.status == 200 and b"</html>" in body, r.status
print(f"    GET {sys.argv[1]}: {r.status} OK, {len(body) // 1024} KB")
EOF
  done
  CHROME=$(command -v chromium || command -v chromium-browser || true)
  if [ -n "$CHROME" ]; then
    SHOTS=$ROOT/target/demo-screenshots
    mkdir -p "$SHOTS"
    for p in "${PAGES[@]}"; do
      name=$(printf '%s' "${p#/}" | tr -c 'a-zA-Z0-9' '-' | sed 's/-*$//')
      out=$SHOTS/${name:-overview}.png
      timeout 60 "$CHROME" --headless=new --no-sandbox --disable-gpu --disable-dev-shm-usage \
        --no-first-run --disable-background-networking --disable-component-update \
        --disable-sync --disable-extensions --hide-scrollbars --user-data-dir="$DASH_DIR/chromium" \
        --window-size=1280,1400 --screenshot="$out" "$DASH_URL$p" >/dev/null 2>&1 ||
        die "Chromium could not take a screenshot of $p"
      info "screenshot of $p: $out"
    done
  else
    info "(no chromium: install chromium to get screenshots of the pages)"
  fi
fi
