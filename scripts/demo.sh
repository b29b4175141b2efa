#!/usr/bin/env bash
# The run command: installs what is missing, builds and installs the extension, starts a
# private throwaway PostgreSQL 15 (or uses DATABASE_URL), starts local fakes of ImageKit
# and the image providers, loads sample venues whose failed images point at the fake
# provider, prints the statistics, recovers the failures with the uploader (progress bar),
# and prints the statistics again.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
VENUES=${VENUES:-300}
bootstrap
install_extension release
start_cluster
migrate

step "Building the uploader, the fakes and the dev tool"
cargo build --release -q -p venue-image-uploader -p venue-images-tests --bins

step "Starting the fake ImageKit and the fake image providers"
FAKES_OUT=$(mktemp /tmp/venue-images-fakes.XXXXXX)
./target/release/venue-images-fakes >"$FAKES_OUT" 2>/dev/null &
FAKES_PID=$!
trap 'kill $FAKES_PID 2>/dev/null; rm -f "$FAKES_OUT"; stop_cluster' EXIT
for _ in $(seq 1 100); do [ -s "$FAKES_OUT" ] && break; sleep 0.1; done
json_field() { python3 -c "import json,sys; print(json.loads(open(sys.argv[1]).readline())[sys.argv[2]])" "$FAKES_OUT" "$1"; }
PROVIDER_BASE=$(json_field provider_base_url)
export IMAGEKIT_UPLOAD_URL=$(json_field imagekit_upload_url)
export IMAGEKIT_PRIVATE_KEY=$(json_field private_key)
info "fake provider at $PROVIDER_BASE, fake ImageKit at $IMAGEKIT_UPLOAD_URL"

step "Loading $VENUES sample venues (deterministic; failed images point at the fake provider)"
./target/release/venue-images-dev seed --venues "$VENUES" --provider-base "$PROVIDER_BASE"
# Short backoff so that retries happen within the demo (a superuser's setting).
dbsql -c "ALTER DATABASE $(dbsql -Atc 'SELECT current_database()') SET venue_images.retry_base_seconds = 1" >/dev/null

step "Logins with the extension's roles (sql/002_roles.sql): the sidecar and an operator"
dbsql >/dev/null <<'SQL'
DO $$ BEGIN
  CREATE ROLE demo_uploader LOGIN IN ROLE venue_image_uploader;
EXCEPTION WHEN duplicate_object THEN NULL; END $$;
DO $$ BEGIN
  CREATE ROLE demo_admin LOGIN IN ROLE venue_image_admin;
EXCEPTION WHEN duplicate_object THEN NULL; END $$;
SQL
as_login() { python3 -c "import sys,urllib.parse as u; p=u.urlsplit(sys.argv[1]); print(p._replace(netloc=sys.argv[2]+'@'+p.hostname+(':'+str(p.port) if p.port else '')).geturl())" "$DATABASE_URL" "$1"; }
UPLOADER_URL=$(as_login demo_uploader)
ADMIN_URL=$(as_login demo_admin)
info "uploader: $UPLOADER_URL"
info "admin:    $ADMIN_URL"

UPLOADER=./target/release/venue-image-uploader
export VENUE_UPLOADER_ALLOW_LOOPBACK=true        # the fakes listen on 127.0.0.1

step "venue-image-uploader rates (as the admin: shared provider rates)"
DATABASE_URL=$ADMIN_URL $UPLOADER rates '*=40' google_places=10

step "Before: venue-image-uploader stats (as the uploader)"
DATABASE_URL=$UPLOADER_URL $UPLOADER stats

step "venue-image-uploader check"
DATABASE_URL=$UPLOADER_URL $UPLOADER check

step "venue-image-uploader scan (the nightly scan: queue transient failures, finalise hopeless ones)"
DATABASE_URL=$UPLOADER_URL $UPLOADER scan

step "venue-image-uploader once (recover everything due; waits up to 15 s for quick retries)"
DATABASE_URL=$UPLOADER_URL $UPLOADER once --concurrency 16 --linger 15 --log error

step "After: venue-image-uploader stats"
DATABASE_URL=$UPLOADER_URL $UPLOADER stats

step "SELECT * FROM venue_image_retry_report();"
dbsql -c "SELECT * FROM venue_image_retry_report()"

step "SELECT * FROM venue_image_high_priority_venues(5);"
dbsql -c "SELECT id, name, failed_count, uploaded_count, failure_rate_pct, priority_score
            FROM venue_image_high_priority_venues(5)"
