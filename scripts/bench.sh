#!/usr/bin/env bash
# The benchmarks. Every figure is a ratio against a baseline measured in the same run.
#   scripts/bench.sh analytics   # analytics + dedupe vs the original SQL and the floor scan
#   scripts/bench.sh queue       # claim -> record throughput and claim latency
#   scripts/bench.sh uploader    # the uploader binary against the fakes (50 ms, 1 MB images)
# VENUES (default 200000) and RUNS (default 5) tune the analytics benchmark.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
what=${1:-analytics}
bootstrap
install_extension release
start_cluster
migrate
cargo build --release -q -p venue-images-tests --bin venue-images-dev -p venue-image-uploader
case "$what" in
  analytics)
    step "Analytics and dedupe benchmark (${VENUES:-200000} venues)"
    ./target/release/venue-images-dev bench-analytics --venues "${VENUES:-200000}" --runs "${RUNS:-5}"
    ;;
  queue)
    step "Queue benchmark: 100,000 queued images, 10,000 venues, 4 workers, no HTTP"
    ./target/release/venue-images-dev bench-queue
    step "The same with one write-back call per image"
    dbsql -c "DROP TABLE IF EXISTS venues CASCADE" >/dev/null
    ./target/release/venue-images-dev bench-queue --per-image
    ;;
  uploader)
    step "Uploader benchmark: the real binary against the fakes, over this cluster"
    ./target/release/venue-images-dev bench-uploader --scale "${SCALE:-1}"
    ;;
  *) die "unknown benchmark '$what' (try: analytics, queue, uploader)" ;;
esac
