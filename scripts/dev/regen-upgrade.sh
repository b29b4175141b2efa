#!/usr/bin/env bash
# Regenerates the update scripts extension/sql/venue_images--OLD--NEW.sql (one per released
# version, each a single step to the current version) from the current code: the new
# install script (cargo pgrx schema), the frozen install scripts of released versions
# (extension/sql/released/) and the hand-written parts in scripts/dev/upgrade/. Run it
# after changing any SQL of the extension; tests/tests/upgrade.rs checks that an updated
# catalog equals a fresh install's.
#
# Usage: scripts/dev/regen-upgrade.sh   (no arguments; needs cargo-pgrx and python3, which
# scripts/test.sh installs; NEW_INSTALL_SQL=FILE uses that install script, e.g. the one
# `cargo pgrx install` just wrote, instead of building the schema again)
set -euo pipefail
[ $# -eq 0 ] || { echo "usage: scripts/dev/regen-upgrade.sh   (no arguments)" >&2; exit 2; }
cd "$(dirname "$0")/../.."
command -v python3 >/dev/null || { echo "python3 is required (apt-get install python3, or run scripts/test.sh once)" >&2; exit 1; }
command -v cargo-pgrx >/dev/null || { echo "cargo-pgrx is required (scripts/test.sh installs it)" >&2; exit 1; }
new_version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
new=$(mktemp /tmp/venue_images-new.XXXXXX.sql)
trap 'rm -f "$new"' EXIT
if [ -n "${NEW_INSTALL_SQL:-}" ]; then cp "$NEW_INSTALL_SQL" "$new"; else (cd extension && cargo pgrx schema pg15 -o "$new" >/dev/null 2>&1); fi
u=scripts/dev/upgrade
gen() {
  local from=$1
  shift
  python3 scripts/dev/gen-upgrade.py "extension/sql/released/venue_images--$from.sql" "$new" "$@" \
    >"extension/sql/venue_images--$from--$new_version.sql"
  echo "wrote extension/sql/venue_images--$from--$new_version.sql"
}
# 0.1.0 had no tables (all are created) and lived in the caller's schema.
gen 0.1.0 --before-bootstrap $u/from-public.sql --pre $u/move-into-schema.sql \
  --post $u/redact-stored.sql
# 0.2.0 lived in the caller's schema.
gen 0.2.0 --before-bootstrap $u/from-public.sql --pre $u/move-into-schema.sql \
  --pre $u/0.2.0--0.3.0.tables.sql --pre $u/0.3.0--0.4.0.tables.sql --post $u/redact-stored.sql
gen 0.3.0 --pre $u/0.3.0--0.4.0.tables.sql --post $u/redact-stored.sql
