#!/usr/bin/env bash
# The benchmarks. Every figure is a ratio against a baseline measured in the same run.
#   scripts/bench.sh analytics   # analytics on both shapes of data + dedupe, vs the floor and the original SQL
#   scripts/bench.sh growth      # the growth table (compact shape) and the cleanup scan's peak memory
#   scripts/bench.sh queue       # claim -> record at two queue depths, and per-image write-back
#   scripts/bench.sh uploader    # the uploader binary against the fakes (50 ms, 1 MB images)
#   scripts/bench.sh dashboard   # each dashboard page with a warm cache (200,000 venues)
#   scripts/bench.sh all
# Knobs:
#   VENUES   analytics: venues per shape (default 200000);
#            growth: comma-separated sizes (default 20000,200000; the issue's table is
#            VENUES=200000,1000000,2000000, about 40 minutes with generation)
#   RUNS     interleaved rounds (default 7, never fewer)
#   SHAPE    analytics: wide, compact or both (default both)
#   DEPTHS   queue: queued images at each depth (default 100000,1000000)
#   SCALE    uploader: scales the image counts (default 1)
# Datasets are generated once into databases named vi_bench_<shape>_<venues> and reused.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
what=${1:-analytics}
bootstrap
install_extension release
start_cluster
migrate
cargo build --release -q -p venue-images-tests --bin venue-images-dev -p venue-image-uploader
dev=./target/release/venue-images-dev

analytics() {
  step "Analytics on the ${SHAPE:-both} shape(s), ${VENUES:-200000} venues, ${RUNS:-7} interleaved rounds"
  "$dev" bench-analytics --venues "${VENUES:-200000}" --runs "${RUNS:-7}" --shape "${SHAPE:-both}"
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
case "$what" in
  analytics | growth | queue | uploader) "$what" ;;
  dashboard)
    step "Dashboard: each page with a warm cache, ${VENUES:-200000} venues (target < 50 ms)"
    "$dev" bench-dashboard --venues "${VENUES:-200000}" ;;
  all) analytics; growth; queue; uploader ;;
  *) die "unknown benchmark '$what' (try: analytics, growth, queue, uploader, dashboard, all)" ;;
esac
