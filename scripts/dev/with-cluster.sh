#!/usr/bin/env bash
# Runs one command against a private, throwaway PostgreSQL cluster, as the test command does
# for its integration suites: the cluster starts in a temporary directory (pg_cron loaded
# when installed), the command runs with DATABASE_URL (a superuser), PGHOST, PGPORT, PGUSER,
# PG_BIN and RESTART_CLUSTER_CMD set, and the cluster is removed when it ends, whatever its
# exit status. With DATABASE_URL already set, that server is used instead.
#
# The extension must already be installed in that major's server: scripts/test.sh installs
# it, or `cd extension && cargo pgrx install ...` (docs/operations.md, From source). Tests
# that start the uploader need it built with the same cargo profile as the tests.
#
# Usage: scripts/dev/with-cluster.sh COMMAND [ARG...]
#   PG_MAJOR=18   a cluster of PostgreSQL 18 (/opt/venue-images/pg18) instead of 15
# e.g.   scripts/dev/with-cluster.sh cargo test --profile ci -p venue-images-tests --test queue
set -euo pipefail
major=${PG_MAJOR:-15}
source "$(dirname "$0")/../lib.sh"
USAGE="scripts/dev/with-cluster.sh COMMAND [ARG...]   (PG_MAJOR=15|18)"
[ $# -gt 0 ] || usage_error "$USAGE"
[[ " ${SUPPORTED_PG_MAJORS[*]} " == *" $major "* ]] ||
  usage_error "$USAGE" "PG_MAJOR: PostgreSQL $major is not supported (${SUPPORTED_PG_MAJORS[*]})"
use_pg_major "$major"
[ -x "$PG_BIN/initdb" ] || die "no PostgreSQL $major server in $PG_BIN (scripts/test.sh installs it)"
command -v python3 >/dev/null || die "python3 is required (scripts/test.sh installs it)"
start_cluster
PG_BIN=$PG_BIN RESTART_CLUSTER_CMD=$(restart_cluster_cmd) "$@"
