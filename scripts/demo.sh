#!/usr/bin/env bash
# The run command: installs what is missing, builds and installs the extension, starts a
# private throwaway PostgreSQL 15 (or uses DATABASE_URL), loads sample venues, and prints
# the summary statistics and the failure breakdown.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
VENUES=${VENUES:-2000}
bootstrap
install_extension release
start_cluster
migrate

step "Loading $VENUES sample venues (deterministic)"
cargo build --release -q -p venue-images-tests --bin venue-images-dev
./target/release/venue-images-dev seed --venues "$VENUES"

step "SELECT * FROM venue_image_summary_stats();"
dbsql -x -c "SELECT total_venues_with_failures, total_failed_images, total_uploaded_images,
                    average_failure_rate, venues_with_transient, venues_with_permanent,
                    venues_with_ambiguous, venues_scanned, null_image_values, non_array_values,
                    non_object_elements
               FROM venue_image_summary_stats()"

step "SELECT * FROM venue_image_failure_breakdown();"
dbsql -c "SELECT * FROM venue_image_failure_breakdown()"

step "SELECT * FROM venue_image_high_priority_venues(5);"
dbsql -c "SELECT id, name, failed_count, uploaded_count, failure_rate_pct, priority_score
            FROM venue_image_high_priority_venues(5)"
