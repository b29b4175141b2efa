#!/usr/bin/env bash
# The test command: formatting, lints, unit/property tests, #[pg_test]s of the SQL
# surface, and the integration tests against a real PostgreSQL 15 with the extension
# installed. Installs whatever is missing first (see scripts/lib.sh).
#
# Uses DATABASE_URL when set; otherwise starts a private, throwaway cluster.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
bootstrap

step "Formatting and lints"
cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings

step "Unit and property tests (pure Rust)"
cargo test --profile ci -p venue_images_core -p venue-image-uploader

step "SQL surface: #[pg_test]s in a pgrx-managed PostgreSQL 15"
PGRX_TEST_DIR=$(mktemp -d /tmp/venue-images-pgrx.XXXXXX)
chmod 755 "$PGRX_TEST_DIR"
pgrx_test_args=(pg$PG_MAJOR)
if [ "$(id -u)" = 0 ]; then
  chown postgres:postgres "$PGRX_TEST_DIR"
  pgrx_test_args+=(--runas postgres --pgdata "$PGRX_TEST_DIR")
fi
(cd extension && cargo pgrx test "${pgrx_test_args[@]}")
rm -rf "$PGRX_TEST_DIR"

install_extension release
install_released_scripts
start_cluster
migrate

step "Building the uploader binary the end-to-end and chaos tests run"
cargo build --profile ci -p venue-image-uploader

step "Integration tests (real PostgreSQL, the installed extension, the uploader, the fakes)"
RESTART_CLUSTER_CMD=$(restart_cluster_cmd) cargo test --profile ci -p venue-images-tests -- --test-threads 2

step "The SQL and attack suites again, on an extension upgraded from 0.2.0 (ALTER EXTENSION ... UPDATE)"
VENUE_IMAGES_UPGRADE_FROM=0.2.0 cargo test --profile ci -p venue-images-tests \
  --test analytics --test queue --test security -- --test-threads 2

step "All tests passed"
