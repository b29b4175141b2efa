#!/usr/bin/env bash
# Builds the Debian packages into target/packages/ and checks each with lintian:
#
#   postgresql-<N>-venue-images_<version>_<arch>.deb   the extension for PostgreSQL N (15, 18):
#       the shared library, the control file, the install script and every upgrade script, in
#       Debian's layout for PostgreSQL extensions (/usr/lib/postgresql/N/lib,
#       /usr/share/postgresql/N/extension)
#   venue-image-uploader_<version>_<arch>.deb          the sidecar: /usr/bin/venue-image-uploader,
#       its man page (generated from the clap definition), a hardened systemd unit and
#       /etc/venue-image-uploader/env (a conffile, mode 0600)
#
# Usage: scripts/package.sh [--profile release|ci] [--majors "15 18"] [--no-lintian]
#
# --profile picks the cargo profile of the binaries (release by default; the test command
# passes ci to reuse what it built). The packaging files are in packaging/; the version is
# the workspace's, and packaging/changelog must have an entry for it.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

USAGE='scripts/package.sh [--profile release|ci] [--majors "15 18"] [--no-lintian]'
PROFILE=release
MAJORS=("${SUPPORTED_PG_MAJORS[@]}")
LINTIAN=1
while [ $# -gt 0 ]; do
  case $1 in
    --profile) [ $# -ge 2 ] || usage_error "$USAGE"; PROFILE=$2; shift 2 ;;
    --majors) [ $# -ge 2 ] || usage_error "$USAGE"; read -r -a MAJORS <<<"$2"; shift 2 ;;
    --no-lintian) LINTIAN=0; shift ;;
    -h | --help) printf 'usage: %s\n' "$USAGE"; exit 0 ;;
    *) usage_error "$USAGE" "unknown argument: $1" ;;
  esac
done
case $PROFILE in release | ci) ;; *) usage_error "$USAGE" "--profile: release or ci, not $PROFILE" ;; esac
[ ${#MAJORS[@]} -gt 0 ] || usage_error "$USAGE" "--majors: at least one major"
for m in "${MAJORS[@]}"; do
  [[ " ${SUPPORTED_PG_MAJORS[*]} " == *" $m "* ]] ||
    usage_error "$USAGE" "--majors: PostgreSQL $m is not supported (${SUPPORTED_PG_MAJORS[*]})"
done

APT_PACKAGES+=(dpkg-dev binutils)
[ "$LINTIAN" = 1 ] && APT_PACKAGES+=(lintian)
bootstrap
for m in "${MAJORS[@]}"; do
  [ "$m" = 18 ] && ensure_pg18
done
ensure_pgrx_configured "${MAJORS[@]}"

TARGET_DIR=$(cargo_target_dir)
OUT=$TARGET_DIR/packages
STAGE=$OUT/stage
VERSION=$(cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json,sys; print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"] == "venue_images"))')
CHANGELOG=$ROOT/packaging/changelog
[ "$(dpkg-parsechangelog -l "$CHANGELOG" -S Version)" = "$VERSION" ] ||
  die "packaging/changelog has no entry for $VERSION at the top: add one (dch -c packaging/changelog -v $VERSION)"
MAINTAINER=$(dpkg-parsechangelog -l "$CHANGELOG" -S Maintainer)
ARCH=$(dpkg --print-architecture)
# Reproducible: file times in the packages are clamped to the changelog's date. (Only
# dpkg-deb gets it as SOURCE_DATE_EPOCH: build scripts that compile C, through the cc crate,
# rebuild when SOURCE_DATE_EPOCH changes, and the test command's builds do not set it.)
CHANGELOG_EPOCH=$(dpkg-parsechangelog -l "$CHANGELOG" -S Timestamp)
MAN_DATE=$(date -u -d "@$CHANGELOG_EPOCH" +%Y-%m-%d)

rm -rf "$STAGE"
mkdir -p "$STAGE/debian" "$OUT"
# dpkg-shlibdeps wants to run in a source tree: a minimal debian/control is enough.
printf 'Source: venue-images\n\nPackage: venue-images\nArchitecture: any\n' >"$STAGE/debian/control"

# The Depends of a binary's libraries (libc6, libgcc-s1), computed by dpkg-shlibdeps.
# Argument: the binary's path in a package root under $STAGE/debian/.
shlibs_depends() {
  (cd "$STAGE" && dpkg-shlibdeps -O -e "${1#"$STAGE"/}") | sed -n 's/^shlibs:Depends=//p'
}

# Common parts of a package root: docs, lintian overrides, md5sums, control file; then the
# .deb. Arguments: package name, its packaging/ directory (control.in, lintian-overrides),
# the libraries' Depends, the PostgreSQL major (extension packages).
finish_package() {
  local pkg=$1 dir=$ROOT/packaging/$2 depends=$3 major=${4:-} root=$STAGE/debian/$1
  install -d -m 755 "$root/usr/share/doc/$pkg" "$root/DEBIAN"
  install -m 644 "$ROOT/packaging/copyright" "$root/usr/share/doc/$pkg/copyright"
  gzip -9nc "$CHANGELOG" >"$root/usr/share/doc/$pkg/changelog.gz"
  chmod 644 "$root/usr/share/doc/$pkg/changelog.gz"
  if [ -f "$dir/lintian-overrides" ]; then
    install -d -m 755 "$root/usr/share/lintian/overrides"
    sed "s/@PG_MAJOR@/$major/g" "$dir/lintian-overrides" >"$root/usr/share/lintian/overrides/$pkg"
    chmod 644 "$root/usr/share/lintian/overrides/$pkg"
  fi
  (cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\n' | LC_ALL=C sort |
    xargs -r md5sum) >"$root/DEBIAN/md5sums"
  chmod 644 "$root/DEBIAN/md5sums"
  local size
  size=$(du -k -s --apparent-size --exclude=DEBIAN "$root" | cut -f1)
  sed -e "s/@VERSION@/$VERSION/g" -e "s/@ARCH@/$ARCH/g" -e "s/@MAINTAINER@/$MAINTAINER/g" \
      -e "s/@INSTALLED_SIZE@/$size/g" -e "s/@SHLIBS_DEPENDS@/$depends/g" -e "s/@PG_MAJOR@/$major/g" \
      "$dir/control.in" >"$root/DEBIAN/control"
  chmod 644 "$root/DEBIAN/control"
  local deb=$OUT/${pkg}_${VERSION}_$ARCH.deb
  SOURCE_DATE_EPOCH=$CHANGELOG_EPOCH dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
  info "$(basename "$deb") ($(du -h "$deb" | cut -f1))"
  DEBS+=("$deb")
}

DEBS=()

# The extension, once per major: `cargo pgrx package` builds it (the same build as `cargo pgrx
# install` of the test command) and lays it out as that major's pg_config says; the files
# are then put where Debian's PostgreSQL looks for them.
package_extension() {
  use_pg_major "$1"
  local pkg=postgresql-$PG_MAJOR-venue-images pgrx_out=$STAGE/pgrx-pg$PG_MAJOR
  local root=$STAGE/debian/$pkg
  step "Building $pkg ($PROFILE)"
  (cd extension && cargo pgrx package --profile "$PROFILE" \
     --pg-config "$PG_CONFIG" --no-default-features --features "pg$PG_MAJOR" --out-dir "$pgrx_out" >/dev/null)
  local libdir=$root/usr/lib/postgresql/$PG_MAJOR/lib extdir=$root/usr/share/postgresql/$PG_MAJOR/extension
  install -d -m 755 "$libdir" "$extdir"
  local so
  so=$(find "$pgrx_out" -name venue_images.so -type f)
  [ -n "$so" ] || die "cargo pgrx package made no venue_images.so"
  install -m 644 "$so" "$libdir/venue_images.so"
  strip --strip-unneeded --remove-section=.comment --remove-section=.note "$libdir/venue_images.so"
  local sql
  while IFS= read -r sql; do
    install -m 644 "$sql" "$extdir/"
  done < <(find "$pgrx_out" -type f \( -name venue_images.control -o -name 'venue_images--*.sql' \))
  # The control file, the install script of this version, and every upgrade script.
  if [ ! -f "$extdir/venue_images.control" ] || [ ! -f "$extdir/venue_images--$VERSION.sql" ]; then
    die "$pkg: no control file or install script for $VERSION"
  fi
  for sql in extension/sql/venue_images--*--*.sql; do
    cmp -s "$sql" "$extdir/$(basename "$sql")" || die "$pkg: $(basename "$sql") missing or different"
  done
  finish_package "$pkg" extension "$(shlibs_depends "$libdir/venue_images.so")" "$PG_MAJOR"
}

package_uploader() {
  local pkg=venue-image-uploader root=$STAGE/debian/venue-image-uploader
  step "Building $pkg ($PROFILE)"
  cargo build -q --profile "$PROFILE" -p venue-image-uploader
  install -d -m 755 "$root/usr/bin" "$root/usr/share/man/man1" "$root/lib/systemd/system" \
    "$root/etc/venue-image-uploader"
  install -m 755 "$TARGET_DIR/$PROFILE/venue-image-uploader" "$root/usr/bin/venue-image-uploader"
  strip --strip-unneeded --remove-section=.comment --remove-section=.note "$root/usr/bin/venue-image-uploader"
  # The man page generator (uploader/examples/man.rs) only needs the clap definition. It is
  # built as the test command's unit tests build it (ci profile, the same packages, so the
  # same features): there it is already built.
  cargo build -q --profile ci -p venue_images_core -p venue-image-uploader --example man
  "$TARGET_DIR/ci/examples/man" "$MAN_DATE" | gzip -9n >"$root/usr/share/man/man1/venue-image-uploader.1.gz"
  chmod 644 "$root/usr/share/man/man1/venue-image-uploader.1.gz"
  install -m 644 packaging/uploader/venue-image-uploader.service "$root/lib/systemd/system/"
  install -m 600 packaging/uploader/env "$root/etc/venue-image-uploader/env"
  install -d -m 755 "$root/DEBIAN"
  install -m 644 packaging/uploader/conffiles "$root/DEBIAN/conffiles"
  install -m 755 packaging/uploader/postinst packaging/uploader/prerm packaging/uploader/postrm "$root/DEBIAN/"
  finish_package "$pkg" uploader "$(shlibs_depends "$root/usr/bin/venue-image-uploader")"
}

for m in "${MAJORS[@]}"; do package_extension "$m"; done
package_uploader

if [ "$LINTIAN" = 1 ]; then
  step "lintian"
  # Errors and warnings fail the build; info and pedantic tags are shown. The overrides,
  # each with its reason, are in packaging/*/lintian-overrides (`lintian --show-overrides`
  # lists them; with it, lintian also fails on overridden warnings).
  # Its output is kept in $OUT/lintian.txt (for release notes).
  lintian --fail-on error,warning --display-info --pedantic "${DEBS[@]}" 2>&1 | tee "$OUT/lintian.txt"
  info "lintian: no error or warning (overrides: packaging/extension/lintian-overrides, packaging/uploader/lintian-overrides)"
fi
step "Packages in $OUT"
for deb in "${DEBS[@]}"; do info "$deb"; done
