#!/usr/bin/env bash
# Regenerates extension/sql/venue_images--0.2.0--0.3.0.sql from the current code: the new
# install script (cargo pgrx schema), the frozen 0.2.0 script and the hand-written parts in
# scripts/dev/upgrade/. Run it after changing any SQL of the extension; tests/tests/upgrade.rs
# checks that an upgraded catalog equals a fresh install's.
set -euo pipefail
cd "$(dirname "$0")/../.."
new=$(mktemp /tmp/venue_images-new.XXXXXX.sql)
trap 'rm -f "$new"' EXIT
(cd extension && cargo pgrx schema pg15 -o "$new" >/dev/null 2>&1)
python3 scripts/dev/gen-upgrade.py extension/sql/released/venue_images--0.2.0.sql "$new" \
    scripts/dev/upgrade/0.2.0--0.3.0.pre.sql scripts/dev/upgrade/0.2.0--0.3.0.post.sql \
    > extension/sql/venue_images--0.2.0--0.3.0.sql
echo "wrote extension/sql/venue_images--0.2.0--0.3.0.sql"
