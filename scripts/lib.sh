# shellcheck shell=bash
# Shared helpers for scripts/demo.sh, scripts/test.sh and scripts/bench.sh.
# Source it; it sets `set -euo pipefail` and defines the functions below.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PG_MAJOR=15
PG_BIN=/usr/lib/postgresql/$PG_MAJOR/bin
PG_CONFIG=$PG_BIN/pg_config
PGRX_VERSION=0.18.1
APT_PACKAGES=(postgresql-$PG_MAJOR postgresql-server-dev-$PG_MAJOR postgresql-contrib postgresql-$PG_MAJOR-cron
              libclang-dev clang pkg-config sudo chromium chromium-driver)

step() { printf '\n\033[1m==> %s\033[0m\n' "$*" >&2; }
info() { printf '    %s\n' "$*" >&2; }
die() { printf '\033[31merror:\033[0m %s\n' "$*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    die "need root (or sudo) to run: $*"; fi
}

# Installs the Debian packages that are missing (PostgreSQL 15 with server headers, clang
# for bindgen, sudo for running the test cluster as the postgres user).
ensure_apt_packages() {
  local missing=()
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    step "Installing packages: ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

# cargo-pgrx must match the pgrx crate exactly. Building it takes ~12 minutes, so it is
# installed only when `cargo pgrx --version` does not already report the right version.
ensure_cargo_pgrx() {
  command -v cargo >/dev/null || die "cargo not found: install Rust (https://rustup.rs) first"
  if [ "$(cargo pgrx --version 2>/dev/null | awk '{print $2}')" != "$PGRX_VERSION" ]; then
    step "Installing cargo-pgrx $PGRX_VERSION (one-off, ~12 minutes)"
    cargo install cargo-pgrx --version "$PGRX_VERSION" --locked
  fi
  if ! grep -qs "pg$PG_MAJOR" "${PGRX_HOME:-$HOME/.pgrx}/config.toml"; then
    step "Configuring pgrx for the system PostgreSQL $PG_MAJOR"
    cargo pgrx init --pg$PG_MAJOR "$PG_CONFIG" >/dev/null
  fi
}

bootstrap() {
  ensure_apt_packages
  ensure_cargo_pgrx
}

# Builds the extension and installs it into the system PostgreSQL 15.
# Argument: release (default) or debug.
install_extension() {
  local profile=${1:-release}
  step "Building and installing the venue_images extension ($profile)"
  local args=(--pg-config "$PG_CONFIG")
  [ "$profile" = release ] && args+=(--release)
  [ "$(id -u)" = 0 ] || args+=(--sudo)
  (cd "$ROOT/extension" && cargo pgrx install "${args[@]}" >/dev/null)
}

# Installs the frozen install scripts of released versions (extension/sql/released/), so
# that upgrade tests can CREATE EXTENSION ... VERSION '<old>' and ALTER EXTENSION UPDATE.
# Their control files say schema = public: versions before 0.3.0 lived in the schema they
# were created in. (Test fixtures only; packages ship the current version and upgrades.)
install_released_scripts() {
  local dir
  dir="$("$PG_CONFIG" --sharedir)/extension"
  as_root cp "$ROOT"/extension/sql/released/venue_images--*.sql "$ROOT"/extension/sql/released/venue_images--*.control "$dir/"
}

free_port() {
  python3 - <<'EOF'
import socket
s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1]); s.close()
EOF
}

# Runs a command as the cluster's owner.
as_pg_owner() {
  if [ "$(id -u)" = 0 ]; then
    sudo -u postgres -- "$@"
  else
    "$@"
  fi
}

# Starts a private, throwaway PostgreSQL 15 cluster unless DATABASE_URL is already set,
# and exports DATABASE_URL. The cluster is removed when the calling script exits.
# Extra `-c name=value` settings may be given as arguments.
start_cluster() {
  if [ -n "${DATABASE_URL:-}" ]; then
    info "using DATABASE_URL from the environment"
    return
  fi
  step "Starting a private PostgreSQL $PG_MAJOR cluster"
  CLUSTER_DIR=$(mktemp -d /tmp/venue-images-pg.XXXXXX)
  chmod 755 "$CLUSTER_DIR"
  [ "$(id -u)" = 0 ] && chown postgres:postgres "$CLUSTER_DIR"
  CLUSTER_PORT=$(free_port)
  as_pg_owner "$PG_BIN/initdb" -D "$CLUSTER_DIR/data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 >/dev/null
  local opts="-c listen_addresses=127.0.0.1 -c port=$CLUSTER_PORT -c unix_socket_directories=$CLUSTER_DIR"
  opts+=" -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
  opts+=" -c shared_buffers=512MB -c work_mem=64MB -c maintenance_work_mem=256MB"
  # pg_cron, when installed, so that the in-database schedule of the scan can be used
  # (and tested): jobs live in the venue_images database and run in any database.
  if [ -f "$("$PG_CONFIG" --pkglibdir)/pg_cron.so" ]; then
    opts+=" -c shared_preload_libraries=pg_cron -c cron.database_name=venue_images"
    opts+=" -c cron.use_background_workers=on -c max_worker_processes=32"
  fi
  for extra in "$@"; do opts+=" -c $extra"; done
  as_pg_owner "$PG_BIN/pg_ctl" -D "$CLUSTER_DIR/data" -l "$CLUSTER_DIR/server.log" -o "$opts" -w start >/dev/null
  trap stop_cluster EXIT
  export DATABASE_URL="postgres://postgres@127.0.0.1:$CLUSTER_PORT/venue_images"
  export PGHOST=127.0.0.1 PGPORT=$CLUSTER_PORT PGUSER=postgres
  psql -X -q -d postgres -c "CREATE DATABASE venue_images" >/dev/null
  info "cluster at $CLUSTER_DIR, $DATABASE_URL"
}

# Restarts the private cluster (used by chaos tests through RESTART_CLUSTER_CMD).
restart_cluster_cmd() {
  [ -n "${CLUSTER_DIR:-}" ] || return 0
  local sudo=""
  [ "$(id -u)" = 0 ] && sudo="sudo -u postgres "
  echo "${sudo}$PG_BIN/pg_ctl -D $CLUSTER_DIR/data -l $CLUSTER_DIR/server.log -m fast -w restart"
}

stop_cluster() {
  if [ -n "${CLUSTER_DIR:-}" ] && [ -d "$CLUSTER_DIR/data" ]; then
    as_pg_owner "$PG_BIN/pg_ctl" -D "$CLUSTER_DIR/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$CLUSTER_DIR"
  fi
}

# psql against DATABASE_URL, stopping at the first error.
dbsql() {
  psql "$DATABASE_URL" -X -q -v ON_ERROR_STOP=1 "$@"
}

# Creates the application's venues table (demo, tests, benchmarks: in production the
# application owns it), then applies sql/*.sql migrations in order.
migrate() {
  step "Creating the venues table and applying migrations from sql/"
  dbsql -f "$ROOT/sql/fixtures/venues_schema.sql" >/dev/null
  for f in "$ROOT"/sql/[0-9]*.sql; do
    info "$(basename "$f")"
    PGOPTIONS="-c client_min_messages=warning" dbsql -f "$f" >/dev/null
  done
}
