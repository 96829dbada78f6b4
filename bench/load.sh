#!/usr/bin/env bash
# HTTP load run against the real server, the sample bundle, keep-alive, every request a prompt
# the server has not seen (engine/src/synth.rs; natural lengths, median ~350 B, mean ~500 B).
#   1. warm-up: 5 s on prompts from another seed (the server meets new text, as in production);
#   2. saturation: closed loop, CONNECTIONS connections, SECONDS seconds;
#   3. half load: open loop at half the measured rate, latency from the scheduled send time;
#   4. hot swap: open loop at a quarter of the measured rate for SECONDS seconds while the
#      baseline pack's version is bumped every 2 s (each bump is a new bundle: compiled off the
#      request path, then swapped in); p99 of each second, the seconds with a swap marked;
#   5. the server's peak and current RSS (VmHWM, VmRSS) after each phase: reloads (phase 4)
#      are what raise the peak, since a new bundle is compiled beside the one serving.
# Client and server share the machine (2 cores here), so the server gets about one core.
#
#   bash bench/load.sh [SECONDS] [CONNECTIONS] [PROMPT_BYTES]   (PROMPT_BYTES 0 = natural)
#
# PD_SCANNER_BIN=path serves with another pd-scanner binary, e.g. the container image's static
# one: `cargo build --profile image --target x86_64-unknown-linux-musl -p pd-scanner --bin
# pd-scanner` (what .ci/images runs) writes it to $CARGO_TARGET_DIR/x86_64-unknown-linux-musl/image/.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
conns=${2:-32}
bytes=${3:-0}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
cargo build --release -q -p pd-scanner --bin pd-scanner --example load
bin="${PD_SCANNER_BIN:-$CARGO_TARGET_DIR/release/pd-scanner}"
load="$CARGO_TARGET_DIR/release/examples/load"
# shellcheck source=bench/lib.sh
. bench/lib.sh
samples_dir
key="bench-key-0123456789abcdef"
echo "bench=$key" > "$work/keys"
serve_samples "$bin" --keys "$work/keys" --hmac-key-file "$work/hmac.key" \
  --rate-limit 1000000 --rate-burst 1000000
# A pool large enough that no prompt repeats at 60,000 requests/s (the output counts repeats).
pool=$(( secs * 60000 ))
"$load" "127.0.0.1:$port" "$key" 8 5 0 "$bytes" 1001 100000 > /dev/null
echo "server RSS after the warm-up: $(rss)"
sat=$("$load" "127.0.0.1:$port" "$key" "$conns" "$secs" 0 "$bytes" 1 "$pool")
echo "saturation: $sat"
echo "            server RSS: $(rss)"
rps=$(echo "$sat" | sed -E 's/.*"rps": ([0-9]+).*/\1/')
half=$("$load" "127.0.0.1:$port" "$key" "$conns" "$secs" $((rps / 2)) "$bytes" 2 "$pool")
echo "half load:  $half"
echo "            server RSS: $(rss)"
# Phase 4: a bundle swap every 2 s under a steady open-loop load.
(
  for i in $(seq 1 $(( (secs - 1) / 2 ))); do
    sleep 2
    bump_version "$i"
  done
) &
swapper=$!
swap=$("$load" "127.0.0.1:$port" "$key" "$conns" "$secs" $((rps / 4)) "$bytes" 3 "$pool")
wait "$swapper"
echo "hot swap:   $swap"
echo "            bundles loaded: $(grep -c 'bundle loaded' "$work/server.log" || true) (the first at start)"
# Each swap lands in second 2k (a change at 2k s, seen within the 250 ms poll, compiled in
# 0.1-0.4 s): compare those seconds' p99 with the others'.
echo "$swap" | python3 -c '
import json, statistics, sys
s = json.load(sys.stdin)["p99_by_second_us"]
swap = [s[i] for i in range(2, len(s) - 1, 2)]
other = [s[i] for i in range(1, len(s) - 1, 2)]
print(f"            p99 in the seconds with a swap: median {statistics.median(swap) / 1000:.1f} ms, "
      f"max {max(swap) / 1000:.1f} ms; other seconds: median {statistics.median(other) / 1000:.1f} ms, "
      f"max {max(other) / 1000:.1f} ms")'
echo "server RSS after the reloads: $(rss)"
