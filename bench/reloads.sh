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
work=$(mktemp -d)
trap 'kill "$server" 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir "$work/packs"
cp config/samples/*.yaml "$work/packs/"
port=$((20000 + RANDOM % 20000))
"$bin" -f "$work/packs" serve --listen "127.0.0.1:$port" --log-format json 2> "$work/server.log" &
server=$!
for _ in $(seq 100); do
  grep -q '"listening"' "$work/server.log" 2>/dev/null && break
  sleep 0.1
done
kb() { awk -v k="$1:" '$1 == k {print $2}' "/proc/$server/status"; }
sleep 1
start=$(kb VmRSS)
for i in $(seq "$reloads"); do
  sed -i "0,/version: .*/s//version: \"1.0.$i\"/" "$work/packs/baseline-rulepack.yaml"
  sleep 0.6
done
sleep 1
loaded=$(grep -c '"bundle loaded"' "$work/server.log" || true)
build=$(curl -s "127.0.0.1:$port/metrics" | awk '/^pd_bundle_build_seconds_sum/ {s=$2} /^pd_bundle_build_seconds_count/ {n=$2} END {if (n) printf "%d builds, %.1f s in all", n, s}')
echo "bundles loaded: $loaded (the first at start); $build"
echo "server RSS: start $((start / 1024)) MiB, end $(( $(kb VmRSS) / 1024 )) MiB, peak $(( $(kb VmHWM) / 1024 )) MiB"
