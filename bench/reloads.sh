#!/usr/bin/env bash
# Reloads alone: an idle scanner on a copy of the sample packs, the baseline pack's version
# bumped every 0.6 s (each bump is a new bundle, compiled beside the serving one), then the
# server's RSS at the start, at the end and at its peak (VmRSS, VmHWM), and how long the
# bundles took to build (`pd_bundle_build_seconds`; the first is the start-up compile, which
# builds every DFA).
#
#   bash bench/reloads.sh [RELOADS]          (default 30)
#
# PD_SCANNER_BIN=path runs another pd-scanner binary (see bench/load.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
reloads=${1:-30}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
if [ -z "${PD_SCANNER_BIN:-}" ]; then
  cargo build --release -q -p pd-scanner --bin pd-scanner
fi
bin="${PD_SCANNER_BIN:-$CARGO_TARGET_DIR/release/pd-scanner}"
# shellcheck source=bench/lib.sh
. bench/lib.sh
samples_dir
serve_samples "$bin"
sleep 1
start=$(status_kib VmRSS)
for i in $(seq "$reloads"); do
  bump_version "$i"
  sleep 0.6
done
sleep 1
loaded=$(grep -c '"bundle loaded"' "$work/server.log" || true)
build=$(curl -s "127.0.0.1:$port/metrics" | awk '/^pd_bundle_build_seconds_sum/ {s=$2} /^pd_bundle_build_seconds_count/ {n=$2} END {if (n) printf "%d builds, %.1f s in all", n, s}')
echo "bundles loaded: $loaded (the first at start); $build"
echo "server RSS: start $((start / 1024)) MiB, end $(( $(status_kib VmRSS) / 1024 )) MiB, peak $(( $(status_kib VmHWM) / 1024 )) MiB"
