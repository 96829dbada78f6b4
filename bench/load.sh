#!/usr/bin/env bash
# HTTP load run against the real server: 1 KiB prompts, keep-alive, default sample bundle.
# Phase 1 saturates (closed loop); phase 2 runs at half the measured rate (open loop,
# latency from the scheduled send time). Client and server share the machine.
#
#   bash bench/load.sh [SECONDS] [CONNECTIONS]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
conns=${2:-32}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
cargo build --release -q -p pd-scanner --bin pd-scanner --example load
bin="$CARGO_TARGET_DIR/release/pd-scanner"
load="$CARGO_TARGET_DIR/release/examples/load"
work=$(mktemp -d)
trap 'kill "$server" 2>/dev/null || true; rm -rf "$work"' EXIT
key="bench-key-0123456789abcdef"
echo "bench=$key" > "$work/keys"
port=$((20000 + RANDOM % 20000))
"$bin" serve --listen "127.0.0.1:$port" --keys "$work/keys" --hmac-key-file "$work/hmac.key" \
  --rate-limit 1000000 --rate-burst 1000000 --log-format json 2> "$work/server.log" &
server=$!
for _ in $(seq 100); do
  grep -q '"listening"' "$work/server.log" 2>/dev/null && break
  sleep 0.1
done
# Warm the automata, then measure.
"$load" "127.0.0.1:$port" "$key" 4 2 0 1024 > /dev/null
sat=$("$load" "127.0.0.1:$port" "$key" "$conns" "$secs" 0 1024)
echo "saturation: $sat"
rps=$(echo "$sat" | sed -E 's/.*"rps": ([0-9]+).*/\1/')
half=$("$load" "127.0.0.1:$port" "$key" "$conns" "$secs" $((rps / 2)) 1024)
echo "half load:  $half"
echo "server RSS: $(awk '/VmHWM/ {print $2, $3}' "/proc/$server/status") peak, $(awk '/VmRSS/ {print $2, $3}' "/proc/$server/status") now"
